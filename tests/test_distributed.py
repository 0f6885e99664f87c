"""Two processes (gloo, CPU) train exactly like one process with twice the accumulation."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from tests_helpers import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(tiny_setup, out, nproc: int) -> dict:
    root, study, sizes = tiny_setup
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                 "--master_port", str(_free_port())] if nproc > 1 else [sys.executable])
    proc = subprocess.run([*launcher, str(REPO / "scripts" / "train.py"), "--size", str(sizes["w16"]),
                           "--dataset", str(root / "data"), "--study", str(study), "--output-dir", str(out),
                           "--logging_steps", "1", "--max_tokens", "10240", "--no-wandb"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {"summary": summary, "loss": {e["step"]: e["loss"] for e in history if "loss" in e},
            "seen": {e["step"]: e["num_input_tokens_seen"] for e in history if "loss" in e}}


def test_two_processes_match_one_with_twice_the_accumulation(tiny_setup, tmp_path):
    one = _train(tiny_setup, tmp_path / "one", 1)
    two = _train(tiny_setup, tmp_path / "two", 2)
    s1, s2 = one["summary"], two["summary"]
    assert (s1["world_size"], s1["per_device_batch_size"], s1["gradient_accumulation_steps"]) == (1, 4, 2)
    assert (s2["world_size"], s2["per_device_batch_size"], s2["gradient_accumulation_steps"]) == (2, 4, 1)
    assert s1["tokens_trained"] == s2["tokens_trained"] == 10240 and s1["steps"] == s2["steps"] == 20
    # the Trainer's own count, gathered over processes: the global batch per step, whatever the layout
    assert one["seen"] == two["seen"] == {step: 512 * step for step in range(1, 21)}
    assert one["loss"].keys() == two["loss"].keys() == set(range(1, 21))
    for step, loss in one["loss"].items():  # the logged loss is the global mean, not rank 0's
        assert two["loss"][step] == pytest.approx(loss, abs=1e-3), step
    assert s2["eval_loss"] == pytest.approx(s1["eval_loss"], abs=1e-3)
