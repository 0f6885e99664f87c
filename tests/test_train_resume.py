"""Training killed halfway resumes from its last checkpoint and ends where an uninterrupted run does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests_helpers import REPO

# scripts/train.py in a child process, each optimizer step slowed down so the test can kill
# it between checkpoints (the training code itself is unchanged).
SLOW_TRAIN = """
import runpy, sys, time
import training.run as run

real_step = run.StudyTrainer.training_step

def slow_step(self, *args, **kwargs):
    time.sleep(0.3)
    return real_step(self, *args, **kwargs)

run.StudyTrainer.training_step = slow_step
sys.argv = ["scripts/train.py", *sys.argv[1:]]
runpy.run_path("scripts/train.py", run_name="__main__")
"""


def _train_args(tiny_setup, out: Path) -> list[str]:
    root, study, sizes = tiny_setup
    return ["--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(study),
            "--output-dir", str(out), "--save_strategy", "steps", "--save_steps", "10", "--no-wandb"]


def _run(args: list[str], slow: bool = False, **kwargs) -> subprocess.Popen:
    code = ["-c", SLOW_TRAIN] if slow else [str(REPO / "scripts" / "train.py")]
    return subprocess.Popen([sys.executable, *code, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_killed_training_resumes_from_its_checkpoint(tiny_setup, tmp_path):
    reference = _run(_train_args(tiny_setup, tmp_path / "ref"))
    killed = _run(_train_args(tiny_setup, tmp_path / "run"), slow=True)
    deadline = time.time() + 180
    while not (tmp_path / "run" / "checkpoint-10" / "trainer_state.json").is_file() and time.time() < deadline:
        assert killed.poll() is None, killed.stdout.read()[-3000:]
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "run" / "run_summary.json").exists()  # it really stopped halfway
    assert not (tmp_path / "run" / "checkpoint-30").exists()

    resumed = _run(_train_args(tiny_setup, tmp_path / "run"))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:]
    assert "Resuming from" in out and "checkpoint-" in out
    reference.communicate(timeout=300)
    assert reference.returncode == 0
    ref = json.loads((tmp_path / "ref" / "run_summary.json").read_text())
    got = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert got["resumed_from_step"] in (10, 20) and ref["resumed_from_step"] == 0
    assert got["train_loss_mean"] == pytest.approx(ref["train_loss_mean"], abs=1e-3)
    clocks = [e["wall_clock_s"] for e in json.loads((tmp_path / "run" / "trainer_state.json").read_text())[
        "log_history"] if "wall_clock_s" in e]
    assert clocks == sorted(clocks) and got["wall_clock_s"] >= clocks[-1] - 1  # the clock never goes back
    assert got["tokens_trained"] == ref["tokens_trained"] and got["steps"] == ref["steps"]
    assert got["eval_loss"] == pytest.approx(ref["eval_loss"], abs=1e-4)
    assert got["test_loss"] == pytest.approx(ref["test_loss"], abs=1e-4)
    # the loss curve after the resume point is the uninterrupted one
    def curve(folder: Path) -> dict[int, float]:
        state = json.loads((folder / "trainer_state.json").read_text())
        return {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e}
    assert curve(tmp_path / "run").keys() == curve(tmp_path / "ref").keys()
    for step, loss in curve(tmp_path / "ref").items():
        assert curve(tmp_path / "run")[step] == pytest.approx(loss, abs=1e-4), step
    assert not list((tmp_path / "run").glob("checkpoint-*"))  # removed once the model is saved


def test_which_checkpoint_is_resumed(tmp_path):
    from training.run import RunArguments, _checkpoint_to_resume, last_complete_checkpoint

    def checkpoint(step: int, max_steps: int = 30, complete: bool = True) -> None:
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"max_steps": max_steps}))

    def args(resume=False, restart=False):
        return RunArguments(size="demo1", dataset="x", resume=resume, restart=restart)

    assert _checkpoint_to_resume(args(), tmp_path, 30, 512) is None  # nothing to resume: start
    with pytest.raises(ValueError, match="no complete checkpoint"):
        _checkpoint_to_resume(args(resume=True), tmp_path, 30, 512)
    checkpoint(10)
    checkpoint(20)
    checkpoint(30, complete=False)  # being written when the process was killed
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-20"
    assert _checkpoint_to_resume(args(), tmp_path, 30, 512).name == "checkpoint-20"
    with pytest.raises(ValueError, match="belongs to a run of 30 steps, this one plans 20"):
        _checkpoint_to_resume(args(), tmp_path, 20, 512)  # another budget would change D
    (tmp_path / "run_summary.json").write_text("{}")
    with pytest.raises(ValueError, match="holds a finished run"):
        _checkpoint_to_resume(args(), tmp_path, 30, 512)  # never retrain over a finished run silently
    assert _checkpoint_to_resume(args(restart=True), tmp_path, 30, 512) is None
    assert not list(tmp_path.glob("checkpoint-*")) and not (tmp_path / "run_summary.json").exists()
