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
from training.study import (
    PlannedRun,
    own_tokens,
    plan_cooldown_branches,
    plan_repeated_data_runs,
    plan_study_runs,
    stale_reason,
)


def _record_fed_blocks(monkeypatch) -> list[tuple[int, ...]]:
    """A list that collects, in order, every block the Trainer feeds the model from now on."""
    seen = []
    collate = training.run.collate_blocks

    def recording(features):
        seen.extend(tuple(f["input_ids"]) for f in features)
        return collate(features)

    monkeypatch.setattr(training.run, "collate_blocks", recording)
    return seen


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
    seen = _record_fed_blocks(monkeypatch)
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


def test_repeated_data_runs_branch_from_one_stable_run_per_size_and_unique_size():
    full = [PlannedRun(size, f"{size}-D{t * 1024}", t * 1024) for size in ("a", "b") for t in (40, 60)]
    repeated = plan_repeated_data_runs(["a", "b"], tokens_per_step=1024, block_size=256, train_blocks=1000,
                                       unique_budgets=[4096, 10240], token_budgets=[40 * 1024, 60 * 1024])
    runs = plan_cooldown_branches([PlannedRun("a", "a"), PlannedRun("b", "b"), *full, *repeated],
                                  tokens_per_step=1024, cooldown_fraction=0.2, warmup_steps=5)
    stables = [r for r in runs if r.branch_points]
    # one per size on the whole split, and one per size and U_D, each up to its longest branch's point (60 - 12)
    assert [(r.run_name, r.max_tokens // 1024, r.unique_tokens, r.branch_points) for r in stables] == [
        ("a-D49152-stable", 48, 0, (32, 48)), ("b-D49152-stable", 48, 0, (32, 48)),
        ("a-U4096-e12-stable", 48, 4096, (32, 48)), ("b-U4096-e12-stable", 48, 4096, (32, 48)),
        ("a-U10240-e4.8-stable", 48, 10240, (32, 48)), ("b-U10240-e4.8-stable", 48, 10240, (32, 48))]
    args = stables[2].train_args()
    assert args[args.index("--unique_tokens") + 1] == "4096" and "--repeat_data" in args
    assert args[args.index("--branch_points") + 1:args.index("--branch_points") + 3] == ["32", "48"]
    branches = {r.run_name: r for r in runs if r.branch_of}
    assert len(branches) == len(full) + len(repeated)
    # each branch resumes the stable run of its own size and U_D, with the unique data it was planned on
    assert branches["b-U4096-e15"].branch_of == "b-U4096-e12-stable" and branches["b-U4096-e15"].unique_tokens == 4096
    assert branches["a-U10240-e4"].after == ("a-U10240-e4.8-stable",)
    assert branches["a-D40960"].branch_of == "a-D49152-stable" and not branches["a-D40960"].unique_tokens
    assert branches["a-U4096-e10"].schedule["lr_scheduler_kwargs"]["num_decay_steps"] == 8  # 0.2 x 40 steps


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


def test_a_branch_on_repeated_data_sees_what_one_uninterrupted_run_sees_and_ends_where_it_ends(tiny_setup, tmp_path,
                                                                                             monkeypatch):
    """A stable run over U_D = 4 steps of blocks, branched after 4 passes (at a pass's end) and after 5.25
    passes (inside one): each branch is fed the blocks, in the order, that one run of the same schedule
    is fed at those steps (each pass reshuffled from the seed and the pass, however the run was resumed),
    and ends at its loss."""
    root, study, sizes = tiny_setup
    prepared = read_prepared_dataset(root / "data")
    runs = plan_repeated_data_runs(["w16"], tokens_per_step=512, block_size=64, train_blocks=prepared.blocks["train"],
                                   unique_budgets=[2048], token_budgets=[10240, 13312])
    runs = plan_cooldown_branches(runs, tokens_per_step=512, cooldown_fraction=0.2, warmup_steps=2)
    stable, *branches = runs
    assert stable.run_name == "w16-U2048-e5.25-stable" and stable.branch_points == (16, 21)
    assert [(r.run_name, r.max_tokens // 512) for r in branches] == [("w16-U2048-e5", 20), ("w16-U2048-e6.5", 26)]
    seen = _record_fed_blocks(monkeypatch)
    train = load_script("train").main
    common = ["--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(study), "--no-wandb",
              "--eval_steps", "0"]
    fed = {}
    for run in runs:  # as scripts/run_study.py starts them, each in its folder under the study
        seen.clear()
        assert train([*common, "--output_dir", str(tmp_path / run.run_name), *run.train_args()]) == 0
        trained_steps = own_tokens(run, 512) // 512  # a branch trains its cooldown only
        fed[run.run_name] = seen[:trained_steps * 8]  # 8 blocks a step; the final evaluations' batches follow
    one_piece = tmp_path / "one-piece"
    seen.clear()
    assert train([*common, "--output_dir", str(one_piece), "--max_tokens", "13312", "--unique_tokens", "2048",
                  "--repeat_data", "true", "--lr_scheduler_type", "warmup_stable_decay", "--warmup_steps", "2",
                  "--lr_scheduler_kwargs", json.dumps(branches[1].schedule["lr_scheduler_kwargs"])]) == 0
    whole = seen[:26 * 8]
    passes = [whole[i * 32:(i + 1) * 32] for i in range(6)]
    assert all(sorted(p) == sorted(passes[0]) and len(set(p)) == 32 for p in passes)  # each block once a pass
    assert all(passes[i] != passes[i + 1] for i in range(5))  # in a new order each pass
    # the stable run saw the first 21 steps; the branches go on from steps 16 and 21 as the uninterrupted run does
    assert fed[stable.run_name] == whole[:21 * 8]
    assert fed["w16-U2048-e5"] == whole[16 * 8:20 * 8]
    assert fed["w16-U2048-e6.5"] == whole[21 * 8:26 * 8]
    for name, step, epochs in (("w16-U2048-e5", 16, 5.0), ("w16-U2048-e6.5", 21, 6.5)):
        summary = json.loads((tmp_path / name / "run_summary.json").read_text())
        assert (summary["branch_step"], summary["resumed_from_step"], summary["unique_tokens"], summary["epochs"],
                summary["budget_role"]) == (step, step, 2048, epochs, "grid")
    branch = json.loads((tmp_path / "w16-U2048-e6.5" / "run_summary.json").read_text())
    whole_summary = json.loads((one_piece / "run_summary.json").read_text())
    assert branch["eval_loss"] == pytest.approx(whole_summary["eval_loss"], rel=1e-5)
    assert branch["test_loss"] == pytest.approx(whole_summary["test_loss"], rel=1e-5)
