#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try and test `scripts/run_study.py --executor slurm`.
#
#     sudo scripts/slurm_local_cluster.sh start    # install slurm-wlm + munge if missing, configure, start, wait for idle
#     scripts/slurm_local_cluster.sh status        # the daemons' pids and `sinfo`; exit 0 when running, 3 when not
#     sudo scripts/slurm_local_cluster.sh stop     # cancel every job, stop exactly the daemons `start` started
#
# Needs root (apt-get, /etc/slurm, the daemons run as root and munge). Writes /etc/slurm/slurm.conf and
# /etc/slurm/cgroup.conf with the settings measured to work with Debian's slurm 22.05 (../shared/notes/
# slurm-local.md): one node named `hostname -s` with `nproc` CPUs and 90 % of MemTotal, one partition `local`.
# A slurm.conf this script did not write is never overwritten. The daemons' pids, logs and spool folders
# live in $SLURM_LOCAL_STATE (default /var/tmp/midi-scaling-slurm); jobs that ended are listed in its
# jobcomp.log (JobId, JobName, JobState, StartTime, EndTime, ExitCode: there is no slurmdbd, so no sacct).
# `start` when the cluster already runs says so and succeeds; each start clears the controller's state
# (job ids start again from 1).
set -euo pipefail

STATE=${SLURM_LOCAL_STATE:-/var/tmp/midi-scaling-slurm}
CONF_DIR=/etc/slurm
MARKER="# written by midi-scaling scripts/slurm_local_cluster.sh"
DAEMONS=(munged slurmctld slurmd)
START_DEADLINE_S=60

say() { echo "slurm_local_cluster: $*"; }
die() { echo "slurm_local_cluster: ERROR: $*" >&2; exit 1; }

# pid recorded for daemon $1, if that process still runs the daemon (guards against a reused pid)
live_pid() {
    local file="$STATE/$1.pid.started" pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ -r /proc/$pid/comm && $(</proc/$pid/comm) == "$1" ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
    echo "$pid"
}

# a live process named $1 (zombies left for a parent to reap do not count), or nothing
other_pid() {
    local pid
    for pid in $(pgrep -x "$1" || true); do
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) =~ ^[RSDT]$ ]] && { echo "$pid"; return 0; }
    done
    return 1
}

running() {
    local d
    for d in "${DAEMONS[@]}"; do live_pid "$d" >/dev/null || return 1; done
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    say "installing slurm-wlm and munge with apt-get (about a minute)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } \
        >"$STATE/apt.log" 2>&1; then
        die "apt-get install slurm-wlm munge failed (see $STATE/apt.log); install them by hand and run start again."
    fi
}

write_config() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)  # leave 10 % to the system
    mkdir -p "$CONF_DIR"
    for f in slurm.conf cgroup.conf; do
        if [[ -f $CONF_DIR/$f ]] && ! grep -qF "$MARKER" "$CONF_DIR/$f"; then
            die "$CONF_DIR/$f exists and was not written by this script: this machine has its own SLURM set-up; use it, or move that file away."
        fi
    done
    cat >"$CONF_DIR/slurm.conf" <<EOF
$MARKER
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# a requeued job (time limit, preemption) may start again after cred_expire s, not the default 120, and the
# scheduler looks at pending jobs every 2 s, not 60 (backfill: 30): a test cluster answers in seconds
AuthInfo=cred_expire=5
SchedulerParameters=sched_interval=2,bf_interval=2
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# the only record of ended jobs without slurmdbd (sacct needs one)
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
# a job without --mem gets its CPUs' share of the memory, not the whole node (as on most clusters)
DefMemPerCPU=$((mem_mb / cpus))
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # slurm 22.05 does not know CgroupPlugin=disabled; cgroup/v1 without automount or constraints works here
    cat >"$CONF_DIR/cgroup.conf" <<EOF
$MARKER
CgroupPlugin=cgroup/v1
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
EOF
}

start_munge() {
    if [[ ! -f /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge "$STATE/munge"
    chown munge:munge /run/munge "$STATE/munge"
    chmod 0755 /run/munge
    chmod 0700 "$STATE/munge"
    # foreground (-F) in a session of its own: $! is munged itself, and a Ctrl-C of the caller does not reach it
    setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
        --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
        --seed-file="$STATE/munge/munged.seed" </dev/null >"$STATE/munged.out" 2>&1 &
    echo $! >"$STATE/munged.pid.started"
    local deadline=$((SECONDS + 15))
    until munge -n 2>/dev/null | unmunge >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "munged did not answer within 15 s; see $STATE/munged.out and $STATE/munge/munged.log"
        sleep 0.2
    done
}

start_daemon() {  # $1 = slurmctld or slurmd, then its flags
    local name=$1
    shift
    setsid "/usr/sbin/$name" -D "$@" </dev/null >"$STATE/$name.out" 2>&1 &
    echo $! >"$STATE/$name.pid.started"
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "start needs root (apt-get, /etc/slurm, the daemons); run it with sudo."
    mkdir -p "$STATE/slurmctld" "$STATE/slurmd"
    if running; then
        say "already running (munged $(live_pid munged), slurmctld $(live_pid slurmctld), slurmd $(live_pid slurmd)); nothing to do"
        return 0
    fi
    local d
    for d in "${DAEMONS[@]}"; do
        if ! live_pid "$d" >/dev/null && other_pid "$d" >/dev/null; then
            die "a $d this script did not start is running (pid $(other_pid "$d")); stop it first, or use that cluster."
        fi
    done
    install_packages
    write_config
    live_pid munged >/dev/null || start_munge
    live_pid slurmctld >/dev/null || start_daemon slurmctld -c  # -c: a fresh controller state each start
    live_pid slurmd >/dev/null || start_daemon slurmd
    local deadline=$((SECONDS + START_DEADLINE_S)) state=""
    while :; do
        state=$(sinfo -h -o '%T' 2>/dev/null | head -1 || true)
        [[ $state == idle ]] && break
        for d in slurmctld slurmd; do
            live_pid "$d" >/dev/null || die "$d stopped at start; see $STATE/$d.log and $STATE/$d.out"
        done
        if ((SECONDS >= deadline)); then
            die "the node is '${state:-not listed}' after ${START_DEADLINE_S} s, not idle; see $STATE/slurmctld.log and $STATE/slurmd.log (stop with: $0 stop)"
        fi
        sleep 0.5
    done
    say "running: node $(hostname -s) idle in partition local ($(nproc) CPUs); munged $(live_pid munged), slurmctld $(live_pid slurmctld), slurmd $(live_pid slurmd); state in $STATE"
}

stop_pid() {  # $1 = daemon; SIGTERM, then SIGKILL after 30 s; waits until it is gone
    local name=$1 pid deadline
    pid=$(live_pid "$name") || { rm -f "$STATE/$name.pid.started"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    while [[ -e /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.2
    done
    rm -f "$STATE/$name.pid.started"
}

cmd_stop() {
    if ! live_pid slurmctld >/dev/null && ! live_pid slurmd >/dev/null && ! live_pid munged >/dev/null; then
        say "not running (no daemon started by this script is alive)"
        return 0
    fi
    if live_pid slurmctld >/dev/null; then  # jobs first, so that no slurmstepd outlives slurmd
        local jobs deadline=$((SECONDS + 30))
        jobs=$(squeue -h -o '%A' 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            say "cancelling $(wc -w <<<"$jobs") job(s)"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            while [[ -n $(squeue -h -o '%A' 2>/dev/null || true) ]] && ((SECONDS < deadline)); do sleep 0.5; done
        fi
    fi
    local d
    for d in slurmd slurmctld munged; do stop_pid "$d"; done
    say "stopped"
}

cmd_status() {
    local d any=0 all=1
    for d in "${DAEMONS[@]}"; do
        if pid=$(live_pid "$d"); then say "$d running (pid $pid)"; any=1; else say "$d not running"; all=0; fi
    done
    if ((any)); then sinfo 2>&1 || true; fi
    ((all)) || return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
