"""The design's commands work as typed in a fresh clone: `accelerate launch scripts/train.py --size S`
takes the study file's dataset and a default run folder; a missing dataset is one line saying how
to make it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests_helpers import POP909, REPO

ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")
TRAIN = str(REPO / "scripts" / "train.py")


def test_a_missing_default_dataset_is_one_line_naming_the_command_that_makes_it(tmp_path):
    proc = subprocess.run([sys.executable, TRAIN, "--size", "demo1"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: The study's dataset data_out/builtin ({REPO / 'configs' / 'study.yaml'}) is not prepared yet; make "
        "it with: make data  (python scripts/prepare_data.py --source builtin --output data_out/builtin "
        "--block-size 1024); or give --dataset DIR."]
    assert "Traceback" not in proc.stderr
    # under the launcher the same single line (-q: without accelerate's own traceback of the exit status)
    proc = subprocess.run([ACCELERATE, "launch", "-q", TRAIN, "--size", "demo1"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == errors
    assert "Traceback" not in proc.stderr


def test_accelerate_launch_with_only_a_size_trains_into_the_default_folder(tmp_path):
    """The default study (configs/study.yaml: 524,288 tokens a step at block 1024) on a default
    dataset made small: 90 POP909 songs hold just over one step of train blocks."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for song in sorted(POP909.glob("*.mid"))[:90]:
        (corpus / song.name).write_bytes(song.read_bytes())
    subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_data.py"), "--source", str(corpus), "--output",
                    "data_out/builtin", "--block-size", "1024", "--num-proc", "2"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=600)
    proc = subprocess.run([ACCELERATE, "launch", TRAIN, "--size", "demo1"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "music-scaling" / "demo1"
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["defaults_used"] == {
        "dataset": f"data_out/builtin (from the study file {REPO / 'configs' / 'study.yaml'})",
        "output_dir": "runs/music-scaling/demo1 (runs/<study_name>/<run_name>)"}
    assert summary["tokens_trained"] == 524288 and summary["global_batch_tokens"] == 524288
    assert summary["config"]["dataset"]["path"] == "data_out/builtin"
    assert proc.stdout.splitlines()[:2] == [f"dataset: {summary['defaults_used']['dataset']}",
                                            f"output_dir: {summary['defaults_used']['output_dir']}"]
