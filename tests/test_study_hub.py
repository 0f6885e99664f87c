"""scripts/run_study.py sends each size to its own Hub repository."""

from __future__ import annotations

import json
import sys

import pytest
from tests_helpers import load_script

from training.study import PlannedRun, flags_for_each_run, run_study

# stands in for scripts/train.py: records its arguments, writes a run summary
FAKE_TRAIN = """
import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--output_dir") + 1])
(out / "run_summary.json").write_text(json.dumps({"n_params_non_embedding": 1, "eval_loss": 1.0,
                                                  "tokens_per_second": 1.0, "argv": args}))
"""


def test_hub_model_id_becomes_one_repository_per_size(tmp_path):
    # what each run sets for itself, or the runner's and the sampling's own, is not passed on as given
    common = flags_for_each_run(["--push_to_hub", "--hub_model_id", "me/music", "--learning_rate", "1e-3",
                                 "--hub-model-id=me/other", "--max_tokens", "2048", "--launcher", "python -u",
                                 "--top-p", "0.9", "--run_name=x", "--no-wandb", "--sizes", "demo1", "demo2"])
    assert common == ["--push_to_hub", "--max_tokens", "2048", "--no-wandb", "--sizes", "demo1", "demo2"]
    results = run_study(["demo1", "demo2"], tmp_path, [sys.executable, "-c", FAKE_TRAIN, *common],
                        log=lambda _: None, size_args=lambda size: ["--hub_model_id", f"me/music-{size}"])
    for entry, size in zip(results, ("demo1", "demo2"), strict=True):
        argv = json.loads((tmp_path / size / "run_summary.json").read_text())["argv"]
        assert entry["status"] == "finished"
        assert argv[argv.index("--hub_model_id") + 1] == f"me/music-{size}" and argv.count("--hub_model_id") == 1


def test_a_finished_size_trained_on_another_budget_is_refused(tmp_path):
    script = load_script("run_study")
    (tmp_path / "demo1").mkdir()
    (tmp_path / "demo1" / "run_summary.json").write_text(json.dumps({"tokens_trained": 204800}))
    runs = [PlannedRun("demo1", "demo1"), PlannedRun("demo2", "demo2")]
    script._check_finished_runs(tmp_path, runs, 204800)  # same budget: skipped later
    with pytest.raises(ValueError, match="demo1 was trained on 204,800 tokens, not 81,920"):
        script._check_finished_runs(tmp_path, runs[:1], 81920)
    # an extra-budget run is checked against its own D, not the main budget
    (tmp_path / "demo1-D40960").mkdir()
    (tmp_path / "demo1-D40960" / "run_summary.json").write_text(json.dumps({"tokens_trained": 40960}))
    script._check_finished_runs(tmp_path, [PlannedRun("demo1", "demo1-D40960", 40960)], 204800)
    with pytest.raises(ValueError, match="demo1-D40960 was trained on 40,960 tokens, not 81,920"):
        script._check_finished_runs(tmp_path, [PlannedRun("demo1", "demo1-D40960", 81920)], 204800)
