"""Training on repeated data: a unique subset U_D, the same for every size, seen several times in a
new order each pass, and recorded as U_D and epochs."""

from __future__ import annotations

import json

import pytest
from tests_helpers import load_script

import training.run
from configs.study import StudyArguments
from data.prepared import read_prepared_dataset
from training.batch import compute_batch_layout, plan_steps, unique_blocks
from training.study import plan_repeated_data_runs, plan_study_runs, stale_reason


def test_epochs_set_the_steps_and_one_epoch_stays_the_limit_without_them():
    layout = compute_batch_layout(512, 64, 1, 4)  # 8 blocks a step
    assert plan_steps(32, layout, 0, epochs=3) == 12
    assert plan_steps(32, layout, 0, epochs=2.5) == 10
    with pytest.raises(ValueError, match="exceeds one epoch"):
        plan_steps(32, layout, 512 * 5)
    assert plan_steps(32, layout, 512 * 5, repeat_data=True) == 5
    with pytest.raises(ValueError, match="both set D"):
        StudyArguments(max_tokens=512, epochs=2)


def test_a_run_repeats_only_its_unique_blocks_each_epoch_in_a_new_order(tiny_setup, tmp_path, monkeypatch):
    root, study, sizes = tiny_setup
    prepared = read_prepared_dataset(root / "data")
    assert unique_blocks(prepared, StudyArguments(unique_tokens=2048)) == 32  # 4 steps of 8 blocks per epoch
    train = prepared.load()["train"].with_format("numpy")
    unique_rows = {tuple(train[i]["input_ids"]) for i in range(32)}
    seen = []
    collate = training.run.collate_blocks

    def recording(features):  # what the Trainer feeds the model, in order
        seen.extend(tuple(f["input_ids"]) for f in features)
        return collate(features)

    monkeypatch.setattr(training.run, "collate_blocks", recording)
    for name in ("w16", "w32"):
        seen.clear()
        out = tmp_path / name
        load_script("train").main(["--size", str(sizes[name]), "--dataset", str(root / "data"), "--study", str(study),
                                   "--output_dir", str(out), "--no-wandb", "--max_tokens", "0", "--unique_tokens",
                                   "2048", "--epochs", "3", "--eval_steps", "0"])
        summary = json.loads((out / "run_summary.json").read_text())
        assert summary["unique_tokens"] == 2048 and summary["epochs"] == 3.0 and summary["tokens_trained"] == 6144
        trained = seen[:12 * 8]  # 12 steps of 8 blocks; the final evaluations' batches follow
        assert set(trained) == unique_rows  # every unique block, nothing outside them, for either size
        passes = [trained[i * 32:(i + 1) * 32] for i in range(3)]
        assert all(sorted(p) == sorted(unique_rows) for p in passes)  # each pass sees each block once
        assert passes[0] != passes[1] and passes[1] != passes[2]  # in a new order


def test_the_isoflop_planner_keeps_sizes_that_need_repeats_when_asked():
    n_params = {"a": 1_000, "b": 10_000, "c": 100_000}
    common = dict(tokens_per_step=512, epoch_tokens=512 * 400, isoflop_budgets=[6e9])  # D = 1e6, 1e5, 1e4
    runs, notes = plan_study_runs(list(n_params), n_params, **common)
    assert [r.run_name for r in runs[3:]] == ["b-C6e9", "c-C6e9"] and "a left out" in notes[0]
    runs, notes = plan_study_runs(list(n_params), n_params, **common, repeat_data=True)
    assert [(r.run_name, r.max_tokens // 512) for r in runs[3:]] == [("a-C6e9", 1953), ("b-C6e9", 195),
                                                                       ("c-C6e9", 20)]
    assert not notes


def test_the_repeated_data_grid_plans_each_size_unique_size_and_epoch_count():
    runs = plan_repeated_data_runs(["a", "b"], tokens_per_step=1024, block_size=256, train_blocks=1000,
                                   unique_budgets=[24_000, 96_000], epoch_budgets=[1, 4], min_steps=20)
    # U_D rounded up to whole steps, so that each pass ends on a full step: 24,000 -> 24 steps = 24,576 tokens
    # (94 whole blocks would leave a step of 2 blocks at the end of every pass); D = epochs x U_D
    assert [(r.run_name, r.max_tokens, r.unique_tokens) for r in runs[:4]] == [
        ("a-U24576-e1", 24 * 1024, 24576), ("b-U24576-e1", 24 * 1024, 24576),
        ("a-U24576-e4", 96 * 1024, 24576), ("b-U24576-e4", 96 * 1024, 24576)]
    args = runs[2].train_args()
    assert args[args.index("--unique_tokens") + 1] == "24576" and args[args.index("--max_tokens") + 1] == "98304"
    assert "--repeat_data" in args and args[args.index("--budget_role") + 1] == "grid"
    with pytest.raises(ValueError, match="exceeds the train split"):
        plan_repeated_data_runs(["a"], tokens_per_step=1024, block_size=256, train_blocks=10, unique_budgets=[24_000],
                                epoch_budgets=[1])
    with pytest.raises(ValueError, match="gives 5 steps"):
        plan_repeated_data_runs(["a"], tokens_per_step=1024, block_size=256, train_blocks=1000,
                                unique_budgets=[5_000], epoch_budgets=[1])
    # a finished run on other unique data is not reused
    assert "not 24,576" in stale_reason({"tokens_trained": 24 * 1024, "unique_tokens": 2048}, runs[0], None)


def test_the_equal_d_design_reaches_each_d_from_every_unique_size_at_or_below_it():
    runs = plan_repeated_data_runs(["a", "b"], tokens_per_step=1024, block_size=256, train_blocks=1000,
                                   unique_budgets=[3_000, 12_288, 30_000], token_budgets=[24_576, 49_152],
                                   min_steps=20)
    # U_D 3,000 -> 3 steps (3,072 tokens), 12,288 -> 12 steps, 30,000 -> 30 steps (above the first D: left out there)
    assert [(r.run_name, r.max_tokens // 1024, r.unique_tokens) for r in runs if r.size == "a"] == [
        ("a-U3072-e8", 24, 3072), ("a-U3072-e16", 48, 3072), ("a-U12288-e2", 24, 12288),
        ("a-U12288-e4", 48, 12288), ("a-U30720-e1.6", 48, 30720)]
    assert [r.run_name for r in runs[:2]] == ["a-U3072-e8", "b-U3072-e8"]  # every size at each (U_D, D)
    with pytest.raises(ValueError, match="unique budget 60,000 is above every repeat_token_budgets D"):
        plan_repeated_data_runs(["a"], tokens_per_step=1024, block_size=256, train_blocks=1000,
                                unique_budgets=[60_000], token_budgets=[24_576, 49_152])
    with pytest.raises(ValueError, match="one of the two"):
        plan_repeated_data_runs(["a"], tokens_per_step=1024, block_size=256, train_blocks=1000,
                                unique_budgets=[3_000], epoch_budgets=[2], token_budgets=[24_576])
    # the study file takes one design or the other, and neither without unique_budgets
    assert StudyArguments(unique_budgets=[3072], repeat_token_budgets=[24576]).repeat_token_budgets == [24576]
    for bad in ({"unique_budgets": [3072], "epoch_budgets": [2], "repeat_token_budgets": [24576]},
                {"repeat_token_budgets": [24576]}, {"unique_budgets": [3072]},
                {"unique_budgets": [3072], "repeat_token_budgets": [0]}):
        with pytest.raises(ValueError, match="goes with one of epoch_budgets"):
            StudyArguments(**bad)


def test_the_study_runner_trains_the_repeated_data_grid(tiny_setup, tmp_path):
    root, study, sizes = tiny_setup
    argv = ["--dataset", str(root / "data"), "--study", str(study), "--output-dir", str(tmp_path / "s"), "--sizes",
            str(sizes["w16"]), "--max_tokens", "10240", "--unique_budgets", "10240", "--epoch_budgets", "2",
            "--no-wandb"]
    assert load_script("run_study").main(argv) == 0
    for epochs in (2,):
        summary = json.loads((tmp_path / "s" / f"w16-U10240-e{epochs}" / "run_summary.json").read_text())
        assert (summary["unique_tokens"], summary["epochs"], summary["tokens_trained"]) == (10240, epochs,
                                                                                           10240 * epochs)
        assert summary["budget_role"] == "grid"

