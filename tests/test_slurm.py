"""scripts/run_study.py --executor slurm on a real one-node SLURM cluster (scripts/slurm_local_cluster.sh):
each run is a job, ``after`` is an afterok dependency, a failed run's dependents are cancelled, a cancelled job
resumes from its checkpoint when the command is rerun, a preempted one is requeued and resumes by itself, and a
rerun of a finished study submits nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from tests_helpers import REPO, load_script, wait_for

from training.checkpoints import checkpoint_problem
from training.slurm import SlurmSettings, check_cluster, slurm_settings
from training.study import PlannedRun, StudyRunnerArguments, run_study

CLUSTER = REPO / "scripts" / "slurm_local_cluster.sh"



def _jobs(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """SLURM's own record of these jobs (squeue keeps ended jobs for MinJobAge, 300 s)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-O",
                          "JobID:|,State:|,StartTime:|,EndTime:|,Name:"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    rows = [line.split("|") for line in out.splitlines()]
    return {r[0].strip(): {"state": r[1].strip(), "start": r[2].strip(), "end": r[3].strip(), "name": r[4].strip()}
            for r in rows}


@pytest.fixture(scope="session")
def slurm_cluster():
    """The local cluster, started by scripts/slurm_local_cluster.sh and stopped (by its pids) at the end unless it
    was running before. Where it cannot start the tests skip with the reason, except under CI, where they fail."""
    def unavailable(reason: str):
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the SLURM tests)", pytrace=False)
        pytest.skip(reason)

    if os.geteuid() != 0:
        unavailable("the local SLURM cluster needs root (apt-get, /etc/slurm, the daemons)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        unavailable("SLURM is not installed and there is no apt-get to install it")
    was_running = subprocess.run([str(CLUSTER), "status"], capture_output=True, timeout=60).returncode == 0
    start = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        unavailable(f"scripts/slurm_local_cluster.sh start failed: {(start.stderr or start.stdout).strip()}")
    yield
    if not was_running:
        stop = subprocess.run([str(CLUSTER), "stop"], capture_output=True, text=True, timeout=300)
        assert stop.returncode == 0, stop.stderr


@pytest.fixture(scope="module")
def slurm_setup(tiny_setup, slurm_cluster, tmp_path_factory):
    """``(study command without --output-dir, tmp folder)``: the tiny dataset and sizes, 10 steps a run,
    a checkpoint every 5 steps, on the local cluster with 1 CPU per job."""
    root, study, sizes = tiny_setup
    tmp = tmp_path_factory.mktemp("slurm")
    study_yaml = tmp / "study.yaml"
    study_yaml.write_text(study.read_text().replace("max_tokens: 15360", "max_tokens: 5120")
                          .replace("save_strategy: 'no'", "save_strategy: steps\nsave_steps: 5"))
    command = [sys.executable, str(REPO / "scripts" / "run_study.py"), "--dataset", str(root / "data"),
               "--study", str(study_yaml), "--executor", "slurm", "--gpus_per_run", "0", "--slurm_time_min", "10",
               "--slurm_cpus_per_task", "1", "--slurm_signal_delay_s", "60"]
    return command, tmp, sizes


def _run_study(command: list[str], out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*command, "--output-dir", str(out), *extra], capture_output=True, text=True, timeout=600,
                          cwd=REPO)


@pytest.fixture(scope="module")
def grid(slurm_setup):
    """Three sizes trained as SLURM jobs through scripts/run_study.py: ``(study folder, its output)``."""
    command, tmp, sizes = slurm_setup
    out = tmp / "grid"
    done = _run_study(command, out, "--sizes", *map(str, sizes.values()))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


def test_each_run_is_a_slurm_job_and_the_study_is_analyzed(grid):
    out, stdout = grid
    results = json.loads((out / "results.json").read_text())
    jobs = json.loads((out / "slurm_jobs.json").read_text())
    assert {r["run_name"]: r["status"] for r in results} == {"w16": "finished", "w32": "finished", "w48": "finished"}
    assert set(jobs) == {"w16", "w32", "w48"}
    seen = _jobs([j["job_id"] for j in jobs.values()])
    for name, job in jobs.items():
        assert seen[job["job_id"]] == {**seen[job["job_id"]], "state": "COMPLETED", "name": name}
        assert f"{name}: submitted as SLURM job {job['job_id']}" in stdout
        assert f"--output_dir {out / name}" in job["command"] and "scripts/train.py" in job["command"]
        assert next(r for r in results if r["run_name"] == name)["job_id"] == job["job_id"]
        log = (out / name / "train.log").read_text()
        assert log.startswith(f"=== SLURM job {job['job_id']} on ") and "training exited with code 0" in log
        assert (out / name / "slurm" / f"{job['job_id']}_submission.sh").is_file()  # submitit's batch script
    assert "study: 3 finished" in stdout
    analysis = out / "analysis"
    assert load_script("analyze").main(["--runs", str(out), "--output", str(analysis), "--n-bootstrap", "0",
                                        "--coverage-studies", "5"]) == 0
    report = (analysis / "report.md").read_text()
    assert all(name in report for name in ("w16", "w32", "w48"))


def test_a_rerun_of_a_finished_study_submits_nothing(grid, slurm_setup):
    out, _ = grid
    command, _, sizes = slurm_setup
    jobs_before = (out / "slurm_jobs.json").read_text()
    again = _run_study(command, out, "--sizes", *map(str, sizes.values()))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "submitted as SLURM job" not in again.stdout
    assert all(f"{n}: run_summary.json exists, skipped" in again.stdout for n in ("w16", "w32", "w48"))
    assert (out / "slurm_jobs.json").read_text() == jobs_before


# Stands in for scripts/train.py (a command of the study): records when it started and whether the runs it
# waits for (FAKE_AFTER) had finished then; the runs named in FAKE_FAILS exit 3.
FAKE_TRAIN = r"""
import json, os, sys, time
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--output_dir") + 1])
out.mkdir(parents=True, exist_ok=True)
if out.name in os.environ.get("FAKE_FAILS", "").split(","):
    sys.exit(3)
after = [a for a in os.environ.get("FAKE_AFTER", "").split(",") if a]
(out / "started.json").write_text(json.dumps({"time": time.time(), "finished_before": {
    a: (out.parent / a / "run_summary.json").is_file() for a in after}}))
(out / "run_summary.json").write_text(json.dumps({"n_params_non_embedding": 1, "eval_loss": 1.0,
                                                  "tokens_per_second": 1.0}))
"""


def test_a_run_waits_for_its_dependency_and_a_failure_cancels_its_dependents(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FAILS", "bad")
    monkeypatch.setenv("FAKE_AFTER", "stable")
    runs = [PlannedRun("s", "branch", after=("stable",)), PlannedRun("s", "stable"), PlannedRun("s", "bad"),
            PlannedRun("s", "after-bad", after=("bad",)), PlannedRun("s", "after-after-bad", after=("after-bad",))]
    lines = []
    results = run_study(runs, tmp_path, [sys.executable, "-c", FAKE_TRAIN], log=lines.append,
                        slurm=SlurmSettings(time_min=5, signal_delay_s=60))
    assert {r["run_name"]: r["status"] for r in results} == {
        "branch": "finished", "stable": "finished", "bad": "failed", "after-bad": "dependency_failed",
        "after-after-bad": "dependency_failed"}
    jobs = json.loads((tmp_path / "slurm_jobs.json").read_text())
    # the whole grid was submitted at once, the branch with an afterok dependency on the stable run's job
    assert jobs["branch"]["after_job_ids"] == [jobs["stable"]["job_id"]]
    assert lines.index(f"branch: submitted as SLURM job {jobs['branch']['job_id']} (after job "
                       f"{jobs['stable']['job_id']}); log: {tmp_path / 'branch' / 'train.log'}") < len(runs)
    assert json.loads((tmp_path / "branch" / "started.json").read_text())["finished_before"] == {"stable": True}
    seen = _jobs([jobs[n]["job_id"] for n in ("stable", "branch", "after-bad", "after-after-bad")])
    stable, branch = seen[jobs["stable"]["job_id"]], seen[jobs["branch"]["job_id"]]
    assert datetime.fromisoformat(branch["start"]) >= datetime.fromisoformat(stable["end"])
    assert {seen[jobs[n]["job_id"]]["state"] for n in ("after-bad", "after-after-bad")} == {"CANCELLED"}
    assert not (tmp_path / "after-bad" / "started.json").exists()
    bad = next(r for r in results if r["run_name"] == "bad")
    assert bad["returncode"] == 3 and "training exited with code 3" in bad["error"]
    assert lines[-1] == "study: 2 finished, 1 failed, 2 dependency failed"


def test_an_interrupted_runner_leaves_its_jobs_running_and_the_same_command_reattaches(slurm_cluster, tmp_path):
    waits = ("import sys, time; from pathlib import Path; args = sys.argv[1:]; "
             "out = Path(args[args.index('--output_dir') + 1]); (out / 'started').write_text('1')\n"
             "while not (out / 'release').exists(): time.sleep(0.1)\n"
             "(out / 'run_summary.json').write_text('{\"n_params_non_embedding\": 1, \"eval_loss\": 1.0, "
             "\"tokens_per_second\": 1.0}')")
    runner = (f"import sys; sys.path[:0] = {sys.path!r}\n"
              "from pathlib import Path\n"
              "from training.slurm import SlurmSettings\n"
              "from training.study import PlannedRun, StudyInterrupted, run_study\n"
              "try:\n"
              f"    run_study([PlannedRun('s', 'a')], Path({str(tmp_path)!r}), [sys.executable, '-c', {waits!r}],\n"
              "              slurm=SlurmSettings(time_min=5, signal_delay_s=60))\n"
              "except StudyInterrupted as err:\n"
              "    print('interrupted:', err); sys.exit(130)\n")
    # Ctrl-C reaches a runner started from a terminal; one started by a shell in the background (as CI may run
    # this suite) inherits SIGINT ignored and would never see it: start it as a terminal would.
    proc = subprocess.Popen([sys.executable, "-c", runner], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: (tmp_path / "a" / "started").exists() or proc.poll() is not None, 120, "the job to start")
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    job_id = json.loads((tmp_path / "slurm_jobs.json").read_text())["a"]["job_id"]
    assert proc.returncode == 130, out
    assert f"the 1 SLURM job(s) ({job_id}) keep running on the cluster; run the same command to reattach" in out
    assert json.loads((tmp_path / "results.json").read_text()) == [{
        "size": "s", "run_name": "a", "max_tokens": None, "compute_budget": None, "run_dir": str(tmp_path / "a"),
        "status": "submitted", "job_id": job_id}]
    assert _jobs([job_id])[job_id]["state"] == "RUNNING"
    (tmp_path / "a" / "release").write_text("")
    lines = []
    results = run_study([PlannedRun("s", "a")], tmp_path, [sys.executable, "-c", waits], log=lines.append,
                        slurm=SlurmSettings(time_min=5, signal_delay_s=60))
    assert lines[0] == f"a: SLURM job {job_id} is running, waiting for it"
    assert not any("submitted as" in line for line in lines)
    assert results[0]["status"] == "finished" and results[0]["job_id"] == job_id


# Runs scripts/train.py (given as its first argument) and, after the first checkpoint is complete (the Trainer
# writes trainer_state.json last), stops there for good: the test then cancels or preempts the job. A run whose
# folder has the marker (its second attempt) trains through.
PAUSE_AFTER_FIRST_CHECKPOINT = r"""
import runpy, sys, time
from pathlib import Path
from transformers import TrainerState
args = sys.argv[2:]
marker = Path(args[args.index("--output_dir") + 1]) / "paused-once"
real_save = TrainerState.save_to_json

def save_then_pause(self, json_path):
    real_save(self, json_path)
    if "checkpoint-" in str(json_path) and not marker.exists():
        marker.write_text(str(Path(json_path).parent))
        while True:
            time.sleep(1)

TrainerState.save_to_json = save_then_pause
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def stopped_runs(slurm_setup):
    """Two one-run studies started side by side, each paused as a SLURM job after its first checkpoint, then
    one job cancelled (``scancel``) and the other sent what SLURM sends before a time limit or on preemption
    (USR2, as submitit's own tests do): ``{"cancel" | "preempt": (study folder, runner process, job id,
    checkpoint folder), "launcher": the launcher}``. Both go on at once, so the two tests overlap."""
    command, tmp, sizes = slurm_setup
    wrapper = tmp / "pause_after_first_checkpoint.py"
    wrapper.write_text(PAUSE_AFTER_FIRST_CHECKPOINT)
    launcher = f"{sys.executable} {wrapper}"
    command = [*command, "--sizes", str(sizes["w16"]), "--launcher", launcher]
    started = {}
    for case in ("cancel", "preempt"):
        out = tmp / case
        started[case] = (out, subprocess.Popen([*command, "--output-dir", str(out)], cwd=REPO, text=True,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    paused = {}
    try:
        for case, (out, proc) in started.items():
            marker = out / "w16" / "paused-once"
            wait_for(lambda m=marker, p=proc: m.exists() or p.poll() is not None, 300, f"{case}: a checkpoint")
            assert marker.exists(), proc.communicate()[0][-3000:]
            checkpoint = Path(marker.read_text())
            assert checkpoint_problem(checkpoint) is None  # complete
            job_id = json.loads((out / "slurm_jobs.json").read_text())["w16"]["job_id"]
            paused[case] = (out, proc, job_id, checkpoint)
        subprocess.run(["scancel", "--signal=USR2", paused["preempt"][2]], check=True, timeout=30)
        subprocess.run(["scancel", paused["cancel"][2]], check=True, timeout=30)
        yield {**paused, "launcher": launcher}
    finally:
        for _, proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_cancelled_job_resumes_from_its_checkpoint_when_the_command_is_rerun(stopped_runs, slurm_setup):
    out, proc, job_id, checkpoint = stopped_runs["cancel"]
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout[-3000:]  # the runner records the cancelled run as failed
    assert "w16: FAILED" in stdout and "ended CANCELLED" in stdout
    assert not (out / "w16" / "run_summary.json").exists()
    command, _, sizes = slurm_setup
    again = _run_study(command, out, "--sizes", str(sizes["w16"]), "--launcher", stopped_runs["launcher"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    jobs = json.loads((out / "slurm_jobs.json").read_text())
    assert jobs["w16"]["earlier_job_ids"] == [job_id] and jobs["w16"]["job_id"] != job_id
    summary = json.loads((out / "w16" / "run_summary.json").read_text())
    step = int(checkpoint.name.split("-")[1])
    assert summary["resumed_from_step"] == step == 5
    log = (out / "w16" / "train.log").read_text()
    assert f"=== SLURM job {jobs['w16']['job_id']} on " in log and f"Resuming from {checkpoint}" in log
    assert json.loads((out / "results.json").read_text())[0]["status"] == "finished"


def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(stopped_runs):
    out, proc, job_id, checkpoint = stopped_runs["preempt"]
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout[-3000:]
    summary = json.loads((out / "w16" / "run_summary.json").read_text())
    assert summary["resumed_from_step"] == int(checkpoint.name.split("-")[1])
    log = (out / "w16" / "train.log").read_text()
    assert "the job is requeued and resumes from the last complete checkpoint" in log
    assert f"=== SLURM job {job_id} on " in log and "(restart 1)" in log and f"Resuming from {checkpoint}" in log
    jobs = json.loads((out / "slurm_jobs.json").read_text())
    assert jobs["w16"]["job_id"] == job_id  # the same job, requeued: nothing was submitted again


def test_errors_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no SLURM command on it
    with pytest.raises(ValueError, match="--executor slurm needs the SLURM commands, but sbatch"):
        check_cluster()
    with pytest.raises(ValueError, match="sets \\['dependency'\\], which the study runner sets"):
        SlurmSettings(additional={"dependency": "afterany:1"})
    with pytest.raises(ValueError, match="--executor must be local or slurm"):
        StudyRunnerArguments(executor="pbs")
    with pytest.raises(ValueError, match="--slurm_parameters must be a JSON object"):
        slurm_settings(StudyRunnerArguments(executor="slurm", slurm_parameters='["qos", "high"]'))
