"""scripts/run_study.py trains independent runs side by side, in order of their dependencies,
and stops them all when it is interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests_helpers import wait_for

from training.study import PlannedRun, run_slots, run_study

# Stands in for scripts/train.py. MODE (env FAKE_MODE):
#   wait   - write started, wait until every run named in FAKE_TOGETHER has started (at most 300 s), then finish;
#   fail   - exit 1 without a summary;
#   hang   - write its pid and its child's (a sleeping grandchild), then wait for a file that never comes.
FAKE_TRAIN = r"""
import json, os, subprocess, sys, time
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--output_dir") + 1])
mode = os.environ.get("FAKE_MODE", "ok")
if out.name in os.environ.get("FAKE_FAILS", "").split(","):
    sys.exit(1)
(out / "started").write_text(str(time.time()))
if mode == "wait":
    others = [out.parent / name / "started" for name in os.environ["FAKE_TOGETHER"].split(",")]
    deadline = time.time() + 300
    while not all(p.exists() for p in others):
        if time.time() > deadline:
            sys.exit(3)  # the others never ran beside this one
        time.sleep(0.05)
if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (out / "pids").write_text(f"{os.getpid()} {child.pid}")
    while not (out / "never").exists():
        time.sleep(0.05)
(out / "run_summary.json").write_text(json.dumps({
    "n_params_non_embedding": 1, "eval_loss": 1.0, "tokens_per_second": 1.0,
    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "argv": args}))
"""


def _command() -> list[str]:
    return [sys.executable, "-c", FAKE_TRAIN]


def test_run_slots_share_the_machine():
    assert run_slots(2, num_gpus=0, num_cpus=8) == [{"OMP_NUM_THREADS": "4"}, {"OMP_NUM_THREADS": "4"}]
    assert run_slots(3, num_gpus=0, num_cpus=2) == [{"OMP_NUM_THREADS": "1"}] * 3
    assert run_slots(0, num_gpus=0, num_cpus=2) == [{"OMP_NUM_THREADS": "2"}]
    assert run_slots(0, 2, num_gpus=8, num_cpus=64) == [{"CUDA_VISIBLE_DEVICES": d} for d in ("0,1", "2,3", "4,5",
                                                                                             "6,7")]
    assert run_slots(2, num_gpus=8, num_cpus=64) == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    with pytest.raises(ValueError, match="needs 6 GPUs; this machine has 4"):
        run_slots(3, 2, num_gpus=4)


def test_independent_runs_train_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "wait")
    monkeypatch.setenv("FAKE_TOGETHER", "a,b")  # each waits until the other has started: one at a time never ends
    lines = []
    results = run_study([PlannedRun("a", "a"), PlannedRun("b", "b")], tmp_path, _command(), log=lines.append,
                        slots=[{"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "1"}])
    assert [(r["run_name"], r["status"]) for r in results] == [("a", "finished"), ("b", "finished")]
    assert all(json.loads((tmp_path / n / "run_summary.json").read_text())["omp_num_threads"] == "1" for n in "ab")
    assert lines[0].startswith("a: training (1 running, 1 waiting") and lines[1].startswith("b: training (2 running")
    assert lines[-1] == "study: 2 finished"


def test_a_failed_run_stops_only_its_dependents(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FAILS", "stable")
    (tmp_path / "before").mkdir()
    (tmp_path / "before" / "run_summary.json").write_text(json.dumps({"eval_loss": 2.0}))  # finished earlier
    runs = [PlannedRun("s", "stable"), PlannedRun("s", "branch", after=("stable",)),
            PlannedRun("s", "branch2", after=("branch",)), PlannedRun("s", "other"),
            PlannedRun("s", "later", after=("before",))]
    lines = []
    results = run_study(runs, tmp_path, _command(), log=lines.append, slots=[{}, {}])
    assert {r["run_name"]: r["status"] for r in results} == {
        "stable": "failed", "branch": "dependency_failed", "branch2": "dependency_failed", "other": "finished",
        "later": "finished"}
    assert not (tmp_path / "branch").exists()  # never started
    assert "branch: not started, a run it waits for (stable) failed" in lines
    assert lines[-1] == "study: 2 finished, 1 failed, 2 dependency failed"
    saved = {e["run_name"]: e["status"] for e in json.loads((tmp_path / "results.json").read_text())}
    assert saved == {r["run_name"]: r["status"] for r in results}
    with pytest.raises(ValueError, match=r"waits for \['nowhere'\]"):
        run_study([PlannedRun("s", "x", after=("nowhere",))], tmp_path, _command(), log=lines.append)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing



def test_sigterm_stops_every_run_and_the_same_command_resumes(tmp_path):
    runner = (f"import sys; sys.path[:0] = {sys.path!r}\n"
              "from pathlib import Path\n"
              "from training.study import PlannedRun, StudyInterrupted, run_study\n"
              "try:\n"
              f"    run_study([PlannedRun('s', 'a'), PlannedRun('s', 'b'), PlannedRun('s', 'c', after=('a',))],\n"
              f"              Path({str(tmp_path)!r}), [sys.executable, '-c', {FAKE_TRAIN!r}], slots=[{{}}, {{}}])\n"
              "except StudyInterrupted as err:\n"
              "    print('interrupted:', err); sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", runner], env={**os.environ, "FAKE_MODE": "hang"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: all((tmp_path / n / "pids").exists() for n in "ab"), 300, "both runs to start")
        pids = [int(p) for n in "ab" for p in (tmp_path / n / "pids").read_text().split()]
        assert all(_alive(pid) for pid in pids)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "interrupted: stopping 2 running run(s)" in out and "each resumes from its last complete checkpoint" in out
    wait_for(lambda: not any(_alive(pid) for pid in pids), 60, "the runs and their children to be gone")
    saved = {e["run_name"]: e["status"] for e in json.loads((tmp_path / "results.json").read_text())}
    assert saved == {"a": "interrupted", "b": "interrupted"}  # c never started
    results = run_study([PlannedRun("s", "a"), PlannedRun("s", "b"), PlannedRun("s", "c", after=("a",))], tmp_path,
                        _command(), log=lambda _: None, slots=[{}, {}])
    assert [r["status"] for r in results] == ["finished"] * 3
