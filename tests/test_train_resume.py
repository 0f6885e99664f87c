"""Training killed halfway resumes from its last complete checkpoint and ends where an
uninterrupted run does, even when the kill landed in the middle of writing a checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests_helpers import REPO

# scripts/train.py in a child process that SIGKILLs itself halfway through writing
# checkpoint-20's trainer_state.json, the Trainer's last file of a checkpoint: the kill that
# made a resume read a half-written checkpoint, at a fixed point rather than by timing.
DIES_WRITING_CHECKPOINT_20 = """
import dataclasses, json, os, runpy, signal, sys
from transformers import TrainerState

real_save = TrainerState.save_to_json

def save_then_die(self, json_path):
    if self.global_step == 20 and "checkpoint-20" in str(json_path):
        text = json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\\n"
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(text[: len(text) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(self, json_path)

TrainerState.save_to_json = save_then_die
sys.argv = ["scripts/train.py", *sys.argv[1:]]
runpy.run_path("scripts/train.py", run_name="__main__")
"""


def _train_args(tiny_setup, out: Path) -> list[str]:
    root, study, sizes = tiny_setup
    return ["--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(study),
            "--output-dir", str(out), "--save_strategy", "steps", "--save_steps", "10", "--no-wandb"]


def _run(args: list[str], dies: bool = False) -> subprocess.Popen:
    code = ["-c", DIES_WRITING_CHECKPOINT_20] if dies else [str(REPO / "scripts" / "train.py")]
    return subprocess.Popen([sys.executable, *code, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def killed_run(tiny_setup, tmp_path_factory):
    """``(folder of the killed run, folder of an uninterrupted reference, a copy of checkpoint-10)``."""
    tmp = tmp_path_factory.mktemp("resume")
    reference = _run(_train_args(tiny_setup, tmp / "ref"))
    killed = _run(_train_args(tiny_setup, tmp / "run"), dies=True)
    out, _ = killed.communicate(timeout=600)
    assert killed.returncode == -9, out[-3000:]  # died by its own SIGKILL, not by an error
    assert not (tmp / "run" / "run_summary.json").exists()
    with pytest.raises(json.JSONDecodeError):  # the fault: a trainer_state.json cut in half
        json.loads((tmp / "run" / "checkpoint-20" / "trainer_state.json").read_text())
    shutil.copytree(tmp / "run" / "checkpoint-10", tmp / "complete-checkpoint-10")
    out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, out[-3000:]
    return tmp / "run", tmp / "ref", tmp / "complete-checkpoint-10"


def test_killed_training_resumes_from_its_last_complete_checkpoint(tiny_setup, killed_run, other_datasets):
    run, ref_dir, _ = killed_run
    # first, resumes that would mix two runs in one folder: refused, and the checkpoints stay
    for other, phrase in ((other_datasets["corpus"], "(fingerprint "), (other_datasets["block_size"],
                                                                        "has block_size 64, not 32")):
        args = _train_args(tiny_setup, run)
        args[args.index("--dataset") + 1] = str(other)
        refused = _run(args)
        out, _ = refused.communicate(timeout=600)
        assert refused.returncode == 2, out[-3000:]
        error = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and "Traceback" not in out, out[-3000:]
        assert f"Cannot resume {run / 'checkpoint-10'}" in error[0] and phrase in error[0]
        assert f"dataset {tiny_setup[0] / 'data'} (fingerprint" in error[0] and f"not {other} (" in error[0]
        assert "--restart" in error[0] and "another --output-dir" in error[0]
        assert (run / "checkpoint-10" / "trainer_state.json").is_file()
    args = _train_args(tiny_setup, run) + ["--learning_rate", "0.01"]
    refused = _run(args)
    out, _ = refused.communicate(timeout=600)
    assert refused.returncode == 2 and "has learning_rate 0.003, not 0.01" in out, out[-3000:]

    resumed = _run(_train_args(tiny_setup, run))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    # one line says which checkpoint was passed over and why, then where it resumed
    assert f"{run / 'checkpoint-20'} is incomplete (trainer_state.json does not parse" in out
    assert f"Resuming from {run / 'checkpoint-10'} (step 10 of 30)" in out
    ref = json.loads((ref_dir / "run_summary.json").read_text())
    got = json.loads((run / "run_summary.json").read_text())
    assert got["resumed_from_step"] == 10 and ref["resumed_from_step"] == 0
    assert got["train_loss_mean"] == pytest.approx(ref["train_loss_mean"], abs=1e-3)
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    clocks = [e["wall_clock_s"] for e in history if "wall_clock_s" in e]
    assert clocks == sorted(clocks)  # the clock never goes back, across the resume
    # the loop's wall clock covers every log of the loop (the final evaluations come after it)
    assert got["wall_clock_s"] >= max(e["wall_clock_s"] for e in history if "loss" in e) - 1e-3  # logs: 3 decimals
    assert got["tokens_trained"] == ref["tokens_trained"] and got["steps"] == ref["steps"] == 30
    assert got["eval_loss"] == pytest.approx(ref["eval_loss"], abs=1e-4)
    assert got["test_loss"] == pytest.approx(ref["test_loss"], abs=1e-4)

    def curve(folder: Path) -> dict[int, float]:
        state = json.loads((folder / "trainer_state.json").read_text())
        return {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e}
    assert curve(run).keys() == curve(ref_dir).keys() == {10, 20, 30}
    for step, loss in curve(ref_dir).items():  # the loss curve after the resume point is the uninterrupted one
        assert curve(run)[step] == pytest.approx(loss, abs=1e-4), step
    assert not list(run.glob("checkpoint-*"))  # removed once the model is saved


def _checkpoint(folder: Path, complete: Path, step: int, max_steps: int = 30) -> Path:
    """A copy of a real complete checkpoint renamed to ``checkpoint-<step>`` of a ``max_steps`` run."""
    path = folder / f"checkpoint-{step}"
    shutil.copytree(complete, path)
    state = json.loads((path / "trainer_state.json").read_text())
    (path / "trainer_state.json").write_text(json.dumps({**state, "global_step": step, "max_steps": max_steps}))
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda p: _truncate(p / "trainer_state.json"), "trainer_state.json does not parse"),
    (lambda p: (p / "trainer_state.json").unlink(), "no trainer_state.json"),
    (lambda p: _truncate(p / "model.safetensors"), "model.safetensors is incomplete"),
    (lambda p: (p / "model.safetensors").unlink(), "no *.safetensors weights"),
    (lambda p: _truncate(p / "optimizer.pt"), "optimizer.pt is incomplete"),
    (lambda p: (p / "scheduler.pt").unlink(), "no scheduler.pt"),
    (lambda p: _truncate(p / "rng_state.pth"), "rng_state.pth is incomplete"),
    (lambda p: _truncate(p / "config.json"), "config.json does not parse"),
    (lambda p: (p / "trainer_state.json").write_text('{"global_step": 5}'), "trainer_state.json is at step 5,"),
])
def test_a_damaged_checkpoint_is_passed_over(killed_run, tmp_path, damage, reason):
    from training.checkpoints import checkpoint_problem, last_complete_checkpoint

    complete = killed_run[2]
    older, newer = _checkpoint(tmp_path, complete, 10), _checkpoint(tmp_path, complete, 20)
    assert checkpoint_problem(older) is None and checkpoint_problem(newer) is None
    assert last_complete_checkpoint(tmp_path) == newer
    damage(newer)
    assert reason in checkpoint_problem(newer)
    assert last_complete_checkpoint(tmp_path) == older
    damage(older)
    assert last_complete_checkpoint(tmp_path) is None


def test_which_checkpoint_is_resumed(killed_run, tmp_path):
    from training.checkpoints import checkpoint_to_resume

    complete = killed_run[2]
    assert checkpoint_to_resume(tmp_path, 30, 512) is None  # nothing to resume: start
    with pytest.raises(ValueError, match="no complete checkpoint"):
        checkpoint_to_resume(tmp_path, 30, 512, resume=True)
    _checkpoint(tmp_path, complete, 10)
    _checkpoint(tmp_path, complete, 20)
    (tmp_path / "checkpoint-30").mkdir()  # being written when the process was killed
    assert checkpoint_to_resume(tmp_path, 30, 512).name == "checkpoint-20"
    with pytest.raises(ValueError, match="belongs to a run of 30 steps, this one plans 20"):
        checkpoint_to_resume(tmp_path, 20, 512)  # another budget would change D
    (tmp_path / "run_summary.json").write_text("{}")
    with pytest.raises(ValueError, match="holds a finished run"):
        checkpoint_to_resume(tmp_path, 30, 512)  # never retrain over a finished run silently
    assert checkpoint_to_resume(tmp_path, 30, 512, restart=True) is None
    assert not list(tmp_path.glob("checkpoint-*")) and not (tmp_path / "run_summary.json").exists()
