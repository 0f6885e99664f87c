"""Token budgets as cooldown branches of one warmup-stable-decay run per size (Hagele et al. 2024):
the plan, the learning rate at every step, the resume point, and the analysis; real tiny runs."""

from __future__ import annotations

import json
import math

import pytest
from tests_helpers import load_script

from analysis.report import run_analysis
from training.study import PlannedRun, own_tokens, plan_cooldown_branches

TOKENS_PER_STEP = 512


def _wsd_factor(step: int, warmup: int, start: int, cooldown: int) -> float:
    """The WSD multiplier written out from the paper (Hagele et al. 2024, sec. 3): linear warmup,
    constant, then (1 - sqrt) down to 0 over the cooldown; independent of transformers' code."""
    if step < warmup:
        return step / warmup
    if step < start:
        return 1.0
    return 1.0 - math.sqrt(min(step - start, cooldown) / cooldown)


def test_each_size_gets_one_stable_run_and_a_branch_per_budget():
    main = [PlannedRun("a", "a"), PlannedRun("b", "b")]
    extra = [PlannedRun(size, f"{size}-D{t * TOKENS_PER_STEP}", t * TOKENS_PER_STEP)
             for size in ("a", "b") for t in (20, 40, 60, 80)]
    runs = plan_cooldown_branches(main + extra, tokens_per_step=TOKENS_PER_STEP, cooldown_fraction=0.2,
                                  warmup_steps=0.1)
    assert runs[:2] == main
    stable = {r.size: r for r in runs if r.branch_points}
    assert [r.run_name for r in stable.values()] == [f"a-D{64 * TOKENS_PER_STEP}-stable",
                                                    f"b-D{64 * TOKENS_PER_STEP}-stable"]
    assert stable["a"].branch_points == (16, 32, 48, 64)  # T - 0.2 T
    assert stable["a"].schedule == {"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 2,  # 0.1 x 20 steps
                                    "lr_scheduler_kwargs": {}}
    assert "--budget_role stable" in " ".join(stable["a"].train_args())
    branches = [r for r in runs if r.branch_of]
    assert [r.run_name for r in branches] == [r.run_name for r in extra]
    for run in branches:
        steps = run.max_tokens // TOKENS_PER_STEP
        assert run.after == (stable[run.size].run_name,) and run.branch_of == stable[run.size].run_name
        assert run.schedule["lr_scheduler_kwargs"] == {"num_decay_steps": steps // 5, "decay_type": "1-sqrt",
                                                       "min_lr_ratio": 0.0}
        args = run.train_args()
        assert args[args.index("--lr_scheduler_kwargs") + 1] == json.dumps(run.schedule["lr_scheduler_kwargs"])
    # per size 64 stable steps + 0.2 x (20 + 40 + 60 + 80) cooldown steps against 200 steps in separate runs
    trained = sum(own_tokens(r, TOKENS_PER_STEP) for r in runs[2:] if r.size == "a")
    assert trained == (64 + 40) * TOKENS_PER_STEP
    with pytest.raises(ValueError, match="warmup of 17 steps does not end before the first cooldown branch"):
        plan_cooldown_branches(extra, tokens_per_step=TOKENS_PER_STEP, cooldown_fraction=0.2, warmup_steps=17)


@pytest.fixture(scope="module")
def branch_study(tiny_setup, tmp_path_factory):
    """A study of one size with three extra token budgets (20, 30 and 40 steps) as cooldown branches."""
    root, study, sizes = tiny_setup
    yaml = tmp_path_factory.mktemp("wsd") / "wsd.yaml"
    yaml.write_text(study.read_text().replace("logging_steps: 2", "logging_steps: 1")
                    # no periodic checkpoints (save_strategy 'no'): the branch points are saved all the same, and
                    # kept when the Trainer rotates its checkpoints
                    + "token_budgets: [10240, 15360, 20480]\ncooldown_fraction: 0.2\nsave_total_limit: 1\n")
    out = yaml.parent / "runs"
    argv = ["--dataset", str(root / "data"), "--study", str(yaml), "--output-dir", str(out), "--sizes",
            str(sizes["w16"])]
    code = load_script("run_study").main(argv)
    return out, yaml, argv, code


def _state(folder):
    return json.loads((folder / "trainer_state.json").read_text())


def test_branches_resume_the_stable_run_at_their_branch_point_and_follow_the_wsd_formula(branch_study):
    out, _, _, code = branch_study
    assert code == 0
    results = {r["run_name"]: r["status"] for r in json.loads((out / "results.json").read_text())}
    stable_name = f"w16-D{32 * TOKENS_PER_STEP}-stable"  # the 40-step budget's branch point
    assert results == {"w16": "finished", stable_name: "finished", "w16-D10240": "finished",
                       "w16-D15360": "finished", "w16-D20480": "finished"}
    stable = json.loads((out / stable_name / "run_summary.json").read_text())
    assert stable["budget_role"] == "stable" and stable["steps"] == 32
    assert sorted(p.name for p in (out / stable_name / "branch_points").glob("checkpoint-*")) == [
        "checkpoint-16", "checkpoint-24", "checkpoint-32"]
    peak = stable["learning_rate"]
    warmup = 2  # 0.1 x the shortest budget's 20 steps
    rates = {e["step"]: e["learning_rate"] for e in _state(out / stable_name)["log_history"] if "learning_rate" in e}
    assert rates == {s: pytest.approx(peak * _wsd_factor(s - 1, warmup, 32, 1)) for s in range(1, 33)}
    for name, steps in (("w16-D10240", 20), ("w16-D15360", 30), ("w16-D20480", 40)):
        summary = json.loads((out / name / "run_summary.json").read_text())
        cooldown = steps // 5
        start = steps - cooldown
        assert summary["budget_role"] == "grid" and summary["branch_of"] == stable_name
        assert summary["branch_step"] == start and summary["resumed_from_step"] == start
        assert summary["tokens_trained"] == steps * TOKENS_PER_STEP and summary["learning_rate"] == peak
        rates = {e["step"]: e["learning_rate"] for e in _state(out / name)["log_history"] if "learning_rate" in e}
        assert sorted(rates) == list(range(1, steps + 1))
        for step, rate in rates.items():  # logged at optimizer step s (1, 2, ...): the rate it trained at, f(s - 1)
            assert rate == pytest.approx(peak * _wsd_factor(step - 1, warmup, start, cooldown), rel=1e-6,
                                         abs=1e-12), step
        # up to its branch point the branch's history is the stable run's
        stable_losses = {e["step"]: e["loss"] for e in _state(out / stable_name)["log_history"] if "loss" in e}
        branch_losses = {e["step"]: e["loss"] for e in _state(out / name)["log_history"] if "loss" in e}
        assert all(branch_losses[s] == stable_losses[s] for s in range(1, start + 1))


def test_a_branch_equals_the_same_schedule_trained_in_one_piece(branch_study, tiny_setup, tmp_path):
    """Resuming restores weights, optimizer, scheduler step, RNG and data position: the branch of 30
    steps ends where one uninterrupted run of the same WSD schedule ends."""
    out, yaml, _, _ = branch_study
    root, _, sizes = tiny_setup
    whole = tmp_path / "whole"
    load_script("train").main(["--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(yaml),
                               "--output_dir", str(whole), "--max_tokens", "15360", "--no-wandb",
                               "--lr_scheduler_type", "warmup_stable_decay", "--warmup_steps", "2",
                               "--lr_scheduler_kwargs", '{"num_decay_steps": 6, "decay_type": "1-sqrt", '
                                                        '"min_lr_ratio": 0.0}'])
    one_piece = json.loads((whole / "run_summary.json").read_text())
    branch = json.loads((out / "w16-D15360" / "run_summary.json").read_text())
    assert branch["eval_loss"] == pytest.approx(one_piece["eval_loss"], rel=1e-5)
    assert branch["test_loss"] == pytest.approx(one_piece["test_loss"], rel=1e-5)


def test_a_rerun_reuses_every_branch_and_the_analysis_leaves_out_the_stable_phase(branch_study, capsys):
    out, _, argv, _ = branch_study
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/run_summary.json")}
    assert load_script("run_study").main(argv) == 0
    assert "cooldown branches: 25,600 tokens trained for these budgets, against 46,080" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/run_summary.json")} == before
    result = run_analysis(out, coverage_studies=0)
    not_used = {r["run_name"]: r["reason"] for r in result.not_used}
    assert "stable phase of a warmup-stable-decay schedule" in not_used[f"w16-D{32 * TOKENS_PER_STEP}-stable"]
    branches = result.runs[result.runs["branch_of"] != ""]
    assert sorted(branches["run_name"]) == ["w16-D10240", "w16-D15360", "w16-D20480"]
    assert set(branches["budget_role"]) == {"grid"}
    assert "3 of these runs are cooldown branches" in result.report_md and "`w16-D15360` (of `w16-D16384-stable`)" \
        in result.report_md


def test_a_branch_refuses_a_stable_run_of_another_rate(branch_study, tiny_setup, tmp_path):
    out, yaml, _, _ = branch_study
    root, _, sizes = tiny_setup
    branch = out / "other-branch"
    with pytest.raises(ValueError, match="Cannot branch from .*has learning_rate 0.003, not 0.005"):
        load_script("train").main([
            "--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(yaml), "--output_dir",
            str(branch), "--max_tokens", "15360", "--no-wandb", "--learning_rate", "0.005",
            "--branch_of", f"w16-D{32 * TOKENS_PER_STEP}-stable", "--lr_scheduler_type", "warmup_stable_decay",
            "--warmup_steps", "2", "--lr_scheduler_kwargs", '{"num_decay_steps": 6, "decay_type": "1-sqrt"}'])
