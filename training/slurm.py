"""Run a study's runs as SLURM jobs (through submitit) instead of local processes.

`training.study.run_study` with ``slurm=`` `SlurmSettings` hands its runs here once it has
skipped the finished ones: each run becomes one batch job that runs exactly the command the
local runner would (the launcher, ``scripts/train.py`` and the run's own flags), its output
appended to ``<run>/train.log`` and submitit's files in ``<run>/slurm/``. A run that waits for
others (``PlannedRun.after``) is submitted at once with an ``afterok`` dependency on their jobs,
so a whole grid is queued in one go. The job ids go to ``<study>/slurm_jobs.json``; the same
command run again reattaches to jobs still pending or running and resubmits only runs that are
neither finished nor queued. The runner then polls ``squeue`` until every job has left the
queue and writes ``results.json`` as the local runner does.

Time limit and preemption: each job gets ``--signal=USR2@<signal_delay_s>`` and is
requeueable. On that signal (the time limit is near, or the job is preempted) submitit calls
`TrainJob.checkpoint`, which stops the training processes and requeues the job (after a time
limit at most ``max_timeouts`` times); the requeued job runs the same command, and
``scripts/train.py`` resumes from the newest complete ``checkpoint-*`` in its folder (it saves
one every ``--save_steps``; what was trained since is trained again). A job cancelled
(``scancel``) or failed is resubmitted by running the study command again, and resumes the
same way.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import submitit

from common.io import write_json_atomic
from configs.naming import RUN_SUMMARY_FILENAME
from training.study import PlannedRun, StudyInterrupted, _record_result, _signals_as_interruption

SLURM_JOBS_FILENAME = "slurm_jobs.json"
# a job in one of these states may still run (or run again): it is waited for, never submitted twice
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED",
                           "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED",
                           "SPECIAL_EXIT", "RESV_DEL_HOLD"})
COMMAND_TIMEOUT_S = 10  # squeue / scancel; a controller that does not answer in this is reported, not waited for
POLL_S = (2.0, 10.0)  # squeue every 2 s at first, then less often (x1.5) while nothing changes, up to 10 s


@dataclass(frozen=True)
class SlurmSettings:
    """What each run's SLURM job asks for (sbatch options).

    Attributes:
        partition: ``--partition``; "" = the cluster's default partition.
        time_min: ``--time`` in minutes, per job and per requeue (at most the partition's limit,
            ``sinfo -o '%P %l'``).
        account: ``--account``; "" = the user's default.
        gpus_per_node: ``--gpus-per-node``, the GPUs of one run (its launcher's processes); 0 = none.
        cpus_per_task: ``--cpus-per-task``; 0 = the cluster's default. On CPU, OMP_NUM_THREADS follows it.
        mem_gb: ``--mem`` in GB; 0 = the cluster's default.
        signal_delay_s: seconds between USR2 (time limit near, or preemption) and the kill: the
            training processes are stopped and the job requeued in that time.
        max_timeouts: times a job is requeued after reaching its time limit (preemptions do not count).
        additional: any other sbatch options, e.g. ``{"qos": "high", "constraint": "a100"}``
            (submitit's ``additional_parameters``: ``--qos=high --constraint=a100``).
    """

    partition: str = ""
    time_min: int = 24 * 60
    account: str = ""
    gpus_per_node: int = 0
    cpus_per_task: int = 0
    mem_gb: float = 0.0
    signal_delay_s: int = 120
    max_timeouts: int = 3
    additional: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time_min < 1:
            raise ValueError(f"--slurm_time_min must be at least 1 (minutes); got {self.time_min}.")
        if not 0 < self.signal_delay_s < self.time_min * 60:
            raise ValueError(f"--slurm_signal_delay_s must be between 1 and the time limit ({self.time_min * 60} s); "
                             f"got {self.signal_delay_s}.")
        ours = sorted({"dependency", "output", "error", "signal", "job-name", "job_name", "requeue", "open-mode",
                       "kill-on-invalid-dep"} & set(self.additional))
        if ours:
            raise ValueError(f"--slurm_parameters sets {ours}, which the study runner sets for each job "
                             "(dependencies, logs, signal, requeue); remove them.")

    def sbatch_parameters(self, job_name: str, dependencies: list[str]) -> dict[str, Any]:
        """The parameters of `submitit.SlurmExecutor.update_parameters` for one run's job.

        Args:
            job_name: the job's name (the run's name).
            dependencies: job ids the job may only start after, each finished successfully (``afterok``).
        """
        params: dict[str, Any] = {"job_name": job_name, "time": self.time_min, "nodes": 1, "ntasks_per_node": 1,
                                  "signal_delay_s": self.signal_delay_s}
        for key, value in (("partition", self.partition), ("account", self.account),
                           ("gpus_per_node", self.gpus_per_node), ("cpus_per_task", self.cpus_per_task),
                           ("mem_gb", self.mem_gb)):
            if value:
                params[key] = value
        additional = {"requeue": True, **self.additional}
        if dependencies:
            # kill-on-invalid-dep: SLURM cancels the job when a dependency failed, instead of holding it forever
            additional.update({"dependency": "afterok:" + ":".join(dependencies), "kill-on-invalid-dep": "yes"})
        params["additional_parameters"] = additional
        return params


def slurm_settings(runner: Any) -> SlurmSettings:
    """`SlurmSettings` from scripts/run_study.py's `training.study.StudyRunnerArguments`, after checking that
    this machine can submit jobs.

    Args:
        runner: its ``slurm_*`` fields and ``gpus_per_run``.

    Returns:
        The settings of each run's job.

    Raises:
        ValueError: ``--slurm_parameters`` is no JSON object, a setting is out of range, or the SLURM
            commands are not on PATH.
        ConnectionError: the SLURM controller does not answer.
    """
    try:
        additional = json.loads(runner.slurm_parameters or "{}")
    except json.JSONDecodeError as err:
        raise ValueError(f"--slurm_parameters must be a JSON object of sbatch options, e.g. "
                         f"'{{\"qos\": \"high\"}}'; got {runner.slurm_parameters!r} ({err}).") from err
    if not isinstance(additional, dict):
        raise ValueError(f"--slurm_parameters must be a JSON object (sbatch option -> value); got "
                         f"{runner.slurm_parameters!r}.")
    settings = SlurmSettings(partition=runner.slurm_partition, time_min=runner.slurm_time_min,
                             account=runner.slurm_account, gpus_per_node=runner.gpus_per_run,
                             cpus_per_task=runner.slurm_cpus_per_task, mem_gb=runner.slurm_mem_gb,
                             signal_delay_s=runner.slurm_signal_delay_s, additional=additional)
    check_cluster()
    return settings


def check_cluster() -> None:
    """Fail at once, in one line, when jobs cannot be submitted from here.

    Raises:
        ValueError: sbatch, squeue, scancel or srun is not on PATH.
        ConnectionError: ``squeue`` does not reach the controller within a few seconds.
    """
    missing = [c for c in ("sbatch", "squeue", "scancel", "srun") if shutil.which(c) is None]
    if missing:
        raise ValueError(f"--executor slurm needs the SLURM commands, but {', '.join(missing)} is not on PATH: run "
                         "the study on a SLURM login node (or start a local test cluster: sudo "
                         "scripts/slurm_local_cluster.sh start), or use --executor local.")
    _squeue()


class TrainJob(submitit.helpers.Checkpointable):
    """One run's training command, run inside its SLURM job by submitit.

    Its output is appended to ``<run_dir>/train.log`` after a line naming the job; the job fails
    (so that ``afterok`` dependents do not start) when the command exits non-zero. On USR2 (time
    limit near, or preemption) submitit calls `checkpoint`: the command is stopped and the job
    requeued with this same object, whose command resumes from the run's last complete checkpoint.

    Args:
        command: the training command (launcher, ``scripts/train.py`` and the run's flags).
        run_dir: the run's folder (``--output_dir``).
    """

    def __init__(self, command: list[str], run_dir: str | Path) -> None:
        self.command = list(command)
        self.run_dir = str(run_dir)
        self._proc: subprocess.Popen | None = None

    def __call__(self) -> int:
        """Run the command to its end.

        Returns:
            0 (its exit code).

        Raises:
            SystemExit: the command exited non-zero (or was stopped by a signal): the job ends with its code.
        """
        run_dir = Path(self.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        cpus = env.get("SLURM_CPUS_PER_TASK") or env.get("SLURM_CPUS_ON_NODE")
        if cpus and "OMP_NUM_THREADS" not in env and not env.get("CUDA_VISIBLE_DEVICES"):
            env["OMP_NUM_THREADS"] = cpus  # torch would use every core of the node, not the job's
        job = env.get("SLURM_JOB_ID", "?")
        with (run_dir / "train.log").open("a") as log:
            log.write(f"=== SLURM job {job} on {socket.gethostname()}, {datetime.now().isoformat(timespec='seconds')}"
                      f" (restart {env.get('SLURM_RESTART_COUNT', '0')}): {shlex.join(self.command)}\n")
            log.flush()
            # USR2 is submitit's (it stops this command itself); SLURM sends it to every process of the job step
            self._proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True, preexec_fn=_ignore_usr2)
            code = self._proc.wait()
            log.write(f"=== SLURM job {job}: training exited with code {code}\n")
        if code != 0:  # the job ends with the command's code (128 + signal, as a shell says), so it FAILED
            raise SystemExit(code if code > 0 else 128 - code)
        return code

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Stop the training command (its process group: SIGTERM, SIGKILL after 30 s) and return this job
        to be requeued: it resumes from the run's last complete checkpoint.

        Returns:
            The submission submitit requeues.
        """
        if self._proc is not None:
            _stop_process_group(self._proc.pid)
        with contextlib.suppress(OSError), (Path(self.run_dir) / "train.log").open("a") as log:
            log.write(f"=== SLURM job {os.environ.get('SLURM_JOB_ID', '?')}: time limit or preemption; training "
                      "stopped, the job is requeued and resumes from the last complete checkpoint\n")
        return super().checkpoint(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_proc": None}  # submitit pickles this object to requeue it


def _stop_process_group(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM the process group of child ``pid``, wait for the child (at most ``grace_s``), then SIGKILL what is
    left of the group. Reaps with ``os.waitpid``: this runs in a signal handler that may have interrupted
    ``Popen.wait``, which holds the lock that another ``Popen.wait`` would wait for."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.1)
    except ChildProcessError:  # already reaped
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _ignore_usr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


@dataclass
class JobState:
    """One line of ``squeue``: the job's state, why it waits, its name, exit status and times."""

    job_id: str
    state: str
    reason: str
    name: str
    exit_status: int | None
    start: str
    end: str

    @property
    def active(self) -> bool:
        return self.state.split()[0] in ACTIVE_STATES

    @property
    def returncode(self) -> int | None:
        """The batch script's exit code (negative: killed by that signal), when SLURM knows it."""
        if self.exit_status is None:
            return None
        return -(self.exit_status & 0x7F) if self.exit_status & 0x7F else self.exit_status >> 8

    def seconds(self) -> float | None:
        try:
            return (datetime.fromisoformat(self.end) - datetime.fromisoformat(self.start)).total_seconds()
        except ValueError:
            return None


def _squeue() -> dict[str, JobState]:
    """This user's jobs that the controller still knows (pending, running, and those that ended in the
    last ``MinJobAge`` seconds, 300 by default), by job id."""
    fields = "JobID:|,State:|,Reason:|,exit_code:|,StartTime:|,EndTime:|,Name:"  # the name last: it may hold a |
    try:
        out = subprocess.run(["squeue", "-h", "-t", "all", "-u", getpass.getuser(), "-O", fields],
                             capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise ConnectionError(f"squeue did not answer within {COMMAND_TIMEOUT_S} s: the SLURM controller is not "
                              "reachable; check `sinfo`, then run the same command again.") from err
    if out.returncode != 0:
        raise ConnectionError(f"squeue failed ({out.stderr.strip() or f'exit {out.returncode}'}): the SLURM "
                              "controller is not reachable; check `sinfo` (a local test cluster: sudo "
                              "scripts/slurm_local_cluster.sh start), then run the same command again.")
    jobs = {}
    for line in out.stdout.splitlines():
        parts = line.split("|", 6)
        if len(parts) < 7:
            continue
        job_id, state, reason, status, start, end, name = (p.strip() for p in parts)
        jobs[job_id] = JobState(job_id, state, reason, name, int(status) if status.isdigit() else None, start, end)
    return jobs


def _scancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)


def _in_dependency_order(runs: list[PlannedRun]) -> list[PlannedRun]:
    """``runs`` with each after the runs of the list it waits for (otherwise in their order)."""
    names = {r.run_name for r in runs}
    placed: set[str] = set()
    ordered: list[PlannedRun] = []
    left = list(runs)
    while left:
        ready = [r for r in left if all(d in placed or d not in names for d in r.after)]
        if not ready:
            raise ValueError(f"runs wait for each other in a circle: {[r.run_name for r in left]}")
        for run in ready:
            ordered.append(run)
            placed.add(run.run_name)
            left.remove(run)
    return ordered


def run_on_slurm(runs: list[PlannedRun], entries: dict[str, dict[str, Any]], command: Callable[[PlannedRun], list[str]],
                 study_dir: Path, settings: SlurmSettings, *, log: Callable[[str], Any] = print,
                 save: Callable[[], None] = lambda: None, poll_s: tuple[float, float] = POLL_S) -> None:
    """Submit each run as a SLURM job (reattaching to its job when one is still queued), wait for all, and
    fill their results.json entries.

    Args:
        runs: the runs to train (not finished); a run's ``after`` names runs of this list or finished ones.
        entries: run name -> its results.json entry (``run_study``'s), filled here with ``status``
            (``finished``, ``failed``, ``dependency_failed``; ``submitted`` when interrupted), ``job_id``,
            ``slurm_state`` and what `training.study._record_result` adds.
        command: the training command of a run (as the local runner would start it).
        study_dir: the study folder; ``slurm_jobs.json`` records run name -> job id, submission time,
            command and dependencies.
        settings: what each job asks for.
        log: progress lines.
        save: writes results.json (called after every change).
        poll_s: first and longest seconds between two ``squeue`` calls.

    Raises:
        StudyInterrupted: SIGINT or SIGTERM: the jobs keep running on the cluster (results.json
            says ``submitted``); the same command reattaches to them.
        ValueError: runs wait for each other in a circle, a queued job of a run was submitted with another
            command, or sbatch refused a job (its message says why).
        ConnectionError: the controller does not answer (the jobs keep running; results.json says
            ``submitted``).
    """
    check_cluster()
    try:
        jobs: dict[str, dict[str, Any]] = json.loads((study_dir / SLURM_JOBS_FILENAME).read_text())
    except (OSError, ValueError):
        jobs = {}
    queue = _squeue()
    ordered = _in_dependency_order(runs)
    # --- reattach to the jobs still queued; refuse one whose command is not the plan's
    active: dict[str, str] = {}  # run name -> job id
    for run in ordered:
        record = jobs.get(run.run_name) or {}
        state = queue.get(str(record.get("job_id")))
        if state and state.active and state.name == run.run_name:
            if record.get("command") != shlex.join(command(run)):
                raise ValueError(f"SLURM job {state.job_id} of {run.run_name} ({state.state}) runs another command "
                                 f"than this study plans: {record.get('command')}; wait for it to end, or "
                                 f"`scancel {state.job_id}`, then run the study again.")
            active[run.run_name] = state.job_id
            log(f"{run.run_name}: SLURM job {state.job_id} is {state.state.lower()}, waiting for it")
    by_name = {r.run_name: r for r in runs}
    t0 = time.time()
    try:
        with _signals_as_interruption():
            for run in ordered:  # --- submit the others, each after the jobs of the runs it waits for
                if run.run_name not in active:
                    active[run.run_name] = _submit(run, command(run), study_dir, settings, jobs, active, log)
            active = {r.run_name: active[r.run_name] for r in ordered}  # dependencies first, reattached ones too
            for name, job_id in active.items():
                entries[name]["job_id"] = job_id
            wait_s = poll_s[0]
            while active:  # --- wait for every job to leave the queue
                queue = _squeue()
                changed = False
                for name, job_id in list(active.items()):
                    state = queue.get(job_id)
                    if state is not None and state.active:
                        continue
                    del active[name]
                    changed = True
                    _record_job(entries[name], by_name[name], state, study_dir, entries, t0, log)
                    save()
                changed |= _cancel_dependents_of_failed(active, by_name, entries, queue, log, save)
                if active:
                    wait_s = poll_s[0] if changed else min(poll_s[1], wait_s * 1.5)
                    time.sleep(wait_s)
    except (KeyboardInterrupt, StudyInterrupted, ConnectionError) as err:
        for name, job_id in active.items():
            entries[name].update(status="submitted", job_id=job_id)
        save()
        jobs_left = f"{len(active)} SLURM job(s) ({', '.join(active.values()) or 'none'})"
        if isinstance(err, ConnectionError):
            raise ConnectionError(f"{err} The {jobs_left} keep running; the same command reattaches to them.") from err
        log(f"interrupted: the {jobs_left} keep running on the cluster; run the same command to reattach to them")
        raise StudyInterrupted(f"stopped by {type(err).__name__}; the {jobs_left} keep running; run the same command "
                               "to reattach") from err


def _submit(run: PlannedRun, command: list[str], study_dir: Path, settings: SlurmSettings,
            jobs: dict[str, dict[str, Any]], active: dict[str, str], log: Callable[[str], Any]) -> str:
    """Submit one run's job, after the queued jobs of the runs it waits for; record it in slurm_jobs.json at once
    (a runner killed right after still knows it). Returns its job id."""
    run_dir = study_dir / run.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    dependencies = [active[d] for d in run.after if d in active]
    executor = submitit.SlurmExecutor(folder=run_dir / "slurm", max_num_timeout=settings.max_timeouts)
    executor.update_parameters(**settings.sbatch_parameters(run.run_name, dependencies))
    try:
        job = executor.submit(TrainJob(command, run_dir))
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as err:
        reason = " ".join(str(err).split())
        before = (f"; the {len(active)} job(s) queued before it keep running and the same command reattaches "
                  "to them") if active else ""
        raise ValueError(f"sbatch refused the job of {run.run_name}: {reason}. Check --slurm_partition, "
                         "--slurm_account, --slurm_time_min, --slurm_parameters and --gpus_per_run (0 for CPU-only "
                         f"jobs){before}.") from err
    previous = jobs.get(run.run_name) or {}
    jobs[run.run_name] = {"job_id": job.job_id, "submitted_at": datetime.now().isoformat(timespec="seconds"),
                          "command": shlex.join(command), "after_job_ids": dependencies,
                          "earlier_job_ids": [*previous.get("earlier_job_ids", []),
                                              *([str(previous["job_id"])] if previous else [])]}
    write_json_atomic(study_dir / SLURM_JOBS_FILENAME, jobs)
    log(f"{run.run_name}: submitted as SLURM job {job.job_id}"
        + (f" (after job {', '.join(dependencies)})" if dependencies else "") + f"; log: {run_dir / 'train.log'}")
    return job.job_id


def _record_job(entry: dict[str, Any], run: PlannedRun, state: JobState | None, study_dir: Path,
                entries: dict[str, dict[str, Any]], t0: float, log: Callable[[str], Any]) -> None:
    """Fill the entry of a run whose job left the queue (``state`` None: the controller forgot it)."""
    run_dir = study_dir / run.run_name
    seconds = (state.seconds() if state else None) or round(time.time() - t0, 1)
    entry["slurm_state"] = state.state if state else "UNKNOWN"
    done = (run_dir / RUN_SUMMARY_FILENAME).is_file() and (state is None or state.state == "COMPLETED")
    failed_deps = [d for d in run.after if entries.get(d, {}).get("status") in ("failed", "dependency_failed")]
    if not done and failed_deps:  # SLURM cancelled it (kill-on-invalid-dep) before it started
        entry.update(status="dependency_failed", seconds=seconds,
                     error=f"not started: {', '.join(run.after)} did not finish")
        log(f"{run.run_name}: not started, a run it waits for ({', '.join(failed_deps)}) failed")
        return
    returncode = 0 if done else (state.returncode if state and state.returncode else 1)
    if not done:  # the log's last lines are the error; say what SLURM saw, and where its own log is
        with (run_dir / "train.log").open("a") as log_file:
            log_file.write(f"=== SLURM job {entry.get('job_id')} ended {entry['slurm_state']}"
                           + (f" ({state.reason})" if state and state.reason not in ("None", "") else "")
                           + f"; submitit's log: {run_dir / 'slurm'}/{entry.get('job_id')}_0_log.err\n")
    _record_result(entry, returncode, seconds, run_dir, log)


def _cancel_dependents_of_failed(active: dict[str, str], by_name: dict[str, PlannedRun],
                                 entries: dict[str, dict[str, Any]], queue: dict[str, JobState],
                                 log: Callable[[str], Any], save: Callable[[], None]) -> bool:
    """Cancel the queued jobs of runs that wait for a failed run (or that SLURM holds with
    DependencyNeverSatisfied), and record them ``dependency_failed``; True when any was."""
    cancelled = False
    while True:
        doomed = {}
        for name, job_id in active.items():
            failed = [d for d in by_name[name].after
                      if entries.get(d, {}).get("status") in ("failed", "dependency_failed")]
            state = queue.get(job_id)
            if failed or (state and state.reason == "DependencyNeverSatisfied"):
                doomed[name] = failed or list(by_name[name].after)
        if not doomed:
            return cancelled
        _scancel([active[n] for n in doomed])
        for name, failed in doomed.items():
            entries[name].update(status="dependency_failed", job_id=active.pop(name), slurm_state="CANCELLED",
                                 error=f"not started: {', '.join(by_name[name].after)} did not finish")
            log(f"{name}: not started, a run it waits for ({', '.join(failed)}) failed; its job was cancelled")
        save()
        cancelled = True


__all__ = ["SLURM_JOBS_FILENAME", "SlurmSettings", "TrainJob", "check_cluster", "run_on_slurm", "slurm_settings"]
