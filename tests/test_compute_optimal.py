"""Beyond L(N): study planning over N and D, and the compute-optimal analysis end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tests_helpers import load_script

from analysis.compute_optimal import per_note_loss
from training.study import PlannedRun, plan_study_runs

# generating joint law (music-model magnitudes)
E, A, B, ALPHA, BETA = 0.8, 30.0, 40.0, 0.35, 0.25
SIZES = {"s1": 25_000, "s2": 60_000, "s3": 150_000, "s4": 350_000, "s5": 800_000}
MAIN_D = 2_000_000
ISOFLOP = (1e13, 3e13, 1e14)


def law(n: float, d: float) -> float:
    return E + A / n**ALPHA + B / d**BETA


def write_run(root: Path, name: str, size: str, d: float, compute_budget: float = 0.0, noise: float = 0.0,
              role: str = "main") -> float:
    n = SIZES[size]
    loss = law(n, d) * (1 + noise)
    folder = root / name
    folder.mkdir(parents=True)
    summary = {
        "run_name": name, "size": size, "status": "finished", "n_params": n + 20_000, "n_params_non_embedding": n,
        "tokens_trained": d, "flops": 6.0 * n * d, "flops_per_token": 6.0 * (n + 5_000) + 1_000,
        "eval_loss": loss, "test_loss": loss + 0.01, "train_loss": loss, "block_size": 256,
        "global_batch_tokens": 8192,
        "config": {"study": {"compute_budget": compute_budget, "budget_role": role},
                   "dataset": {"stats": {"splits": {
                       # distinct per split, and blocks (one unpredicted position each) counted out
                       "validation": {"notes": 1000, "packed_tokens": 2560, "blocks": 10},
                       "test": {"notes": 2000, "packed_tokens": 6400, "blocks": 25}}}}},
    }
    if role == "isoflop":  # as training.run writes them now; the others as runs made before budget_role moved
        summary.update(budget_role=role, compute_budget=compute_budget)
        summary["config"]["study"] = {}
    (folder / "run_summary.json").write_text(json.dumps(summary))
    history = [{"step": s, "eval_loss": loss + 0.5 / s, "num_input_tokens_seen": d * s / 4} for s in (1, 2, 3, 4)]
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    return loss


@pytest.fixture(scope="module")
def grid_study(tmp_path_factory) -> Path:
    """Five sizes on the main budget, three IsoFLOP budgets, and two extra budgets for s3 (L(D))."""
    root = tmp_path_factory.mktemp("grid") / "runs"
    rng = np.random.default_rng(0)
    for size in SIZES:
        write_run(root, size, size, MAIN_D, noise=rng.normal(0, 1e-3))
    for c in ISOFLOP:
        for size, n in SIZES.items():
            write_run(root, f"{size}-C{c:.0e}", size, c / (6 * n), c, noise=rng.normal(0, 1e-3), role="isoflop")
    for d in (5e5, 8e6):
        write_run(root, f"s3-D{d:.0f}", "s3", d, noise=rng.normal(0, 1e-3), role="grid")
    for size in ("s1", "s2", "s4", "s5", "s3"):  # more runs at 5e5 than on the main budget: the role decides
        if size != "s3":
            write_run(root, f"{size}-D500000", size, 5e5, noise=rng.normal(0, 1e-3), role="grid")
    return root


def test_plan_study_runs():
    n = {"a": 10_000, "b": 100_000, "c": 1_000_000}
    runs, notes = plan_study_runs(["a", "b", "c"], n, tokens_per_step=1000, epoch_tokens=10_000_000,
                                  token_budgets=[50_500], isoflop_budgets=[6e10])
    assert runs[:3] == [PlannedRun("a", "a"), PlannedRun("b", "b"), PlannedRun("c", "c")]
    grid = runs[3:6]
    assert [r.run_name for r in grid] == ["a-D50000", "b-D50000", "c-D50000"]  # whole steps
    assert all(r.max_tokens == 50_000 and r.train_args() == ["--run_name", r.run_name, "--max_tokens", "50000",
                                                             "--budget_role", "grid"] for r in grid)
    iso = runs[6:]
    # C = 6e10: a -> D = 1e6 (1000 steps), b -> 1e5 (100 steps), c -> 1e4 (10 steps < 20: left out)
    assert [(r.run_name, r.max_tokens) for r in iso] == [("a-C6e10", 1_000_000), ("b-C6e10", 100_000)]
    assert iso[0].train_args() == ["--run_name", "a-C6e10", "--max_tokens", "1000000", "--budget_role", "isoflop",
                                   "--compute_budget", "60000000000.0"]
    assert any("c left out" in note and "under 20 steps" in note for note in notes)
    assert any("keeps only 2 size(s)" in note for note in notes)
    with pytest.raises(ValueError, match="one epoch"):
        plan_study_runs(["a"], n, tokens_per_step=1000, epoch_tokens=100_000, token_budgets=[200_000])
    with pytest.raises(ValueError, match="share the folder"):
        plan_study_runs(["a"], n, tokens_per_step=1000, epoch_tokens=10**7, token_budgets=[50_000, 50_400])


def test_per_note_loss():
    nats, bits = per_note_loss(1.2, 5.0)
    assert nats == pytest.approx(6.0) and bits == pytest.approx(6.0 / math.log(2))


def test_compute_optimal_analysis_end_to_end(grid_study, tmp_path):
    out = tmp_path / "analysis"
    assert load_script("analyze").main(["--runs", str(grid_study), "--output", str(out), "--n-bootstrap", "50"]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["n_points"] == 5  # L(N) on the main budget only, not on the IsoFLOP runs
    result = json.loads((out / "compute_optimal.json").read_text())
    joint = result["chinchilla"]["non_embedding"]
    for key, true in (("E", E), ("A", A), ("B", B), ("alpha", ALPHA), ("beta", BETA)):
        assert joint[key] == pytest.approx(true, rel=0.05), key
    iso = result["isoflop"]
    assert iso["a"] == pytest.approx(BETA / (ALPHA + BETA), rel=0.1)
    assert iso["a"] + iso["b"] == pytest.approx(1.0, abs=1e-9)
    # conventions: total and flops fits exist and their alpha differs from the non-embedding one
    assert set(result["chinchilla"]) == {"non_embedding", "total", "flops"}
    assert result["chinchilla"]["total"]["alpha"] != pytest.approx(joint["alpha"], rel=1e-3)
    # predictions at 10x and 100x the largest run, from the joint law
    largest = max(6.0 * SIZES[s] * d for s, d in [(s, MAIN_D) for s in SIZES] + [
        (s, c / (6 * n)) for c in ISOFLOP for s, n in SIZES.items()] + [("s3", 5e5), ("s3", 8e6)])
    assert result["max_c"] == pytest.approx(largest, rel=1e-9)
    g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    for row, factor in zip(result["predictions"], (10, 100), strict=True):
        assert row["C"] == pytest.approx(factor * largest)
        n_true = g * (row["C"] / 6) ** (BETA / (ALPHA + BETA))
        assert row["N_opt"] == pytest.approx(n_true, rel=0.25)  # exponent errors grow with extrapolation
        assert row["loss"] == pytest.approx(law(row["N_opt"], row["D_opt"]), rel=0.01)
        assert row["N_opt_ci"][0] <= row["N_opt"] <= row["N_opt_ci"][1]
    # L(D) per size over its budgets (main + IsoFLOP (+ grid for s3)): exponent near beta
    for size in SIZES:
        assert result["loss_vs_d"][size]["alpha"] == pytest.approx(BETA, rel=0.1), size
    assert result["loss_vs_d"]["s3"]["n_points"] == 6 and result["loss_vs_d"]["s1"]["n_points"] == 5

    report = (out / "report.md").read_text()
    for text in ("## Compute-optimal scaling", "### Joint law", "![IsoFLOP profiles](isoflop_profiles.png)",
                 "![Loss vs. compute](compute_frontier.png)", "### Predictions", "### How far to trust this",
                 "L(N) is fitted on the 5 runs of the main budget (D = 2,000,000 tokens)"):
        assert text in report, text
    for name in ("isoflop_profiles.png", "compute_frontier.png", "loss_vs_tokens.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "summary_table.json").read_text())
    s1 = next(r for r in rows if r["run_name"] == "s1")
    # bits per note = loss x predicted tokens (packed - one per block) per note of that split / ln 2
    assert s1["eval_bits_per_note"] == pytest.approx(s1["eval_loss"] * (2560 - 10) / 1000 / math.log(2), rel=1e-6)
    assert s1["test_bits_per_note"] == pytest.approx(s1["test_loss"] * (6400 - 25) / 2000 / math.log(2), rel=1e-6)


def test_single_budget_study_has_no_compute_section(tmp_path):
    root = tmp_path / "runs"
    for size in SIZES:
        write_run(root, size, size, MAIN_D)
    out = tmp_path / "analysis"
    assert load_script("analyze").main(["--runs", str(root), "--output", str(out), "--n-bootstrap", "0"]) == 0
    assert "Compute-optimal" not in (out / "report.md").read_text()
    assert not (out / "compute_optimal.json").exists()


def test_isoflop_plot_draws_each_profile(grid_study):
    from analysis.report import run_analysis

    result = run_analysis(grid_study, n_bootstrap=0)
    ax = result.figures["isoflop_profiles.png"].axes[0]
    # one parabola per budget plus a star at each minimum
    assert len(ax.lines) == 2 * len(ISOFLOP)
    assert len(ax.collections) == len(ISOFLOP)  # the scattered runs, one colour per budget


def test_flops_convention_is_primary_on_request(grid_study):
    from analysis.report import run_analysis

    result = run_analysis(grid_study, n_convention="flops", n_bootstrap=0)
    used = result.used.set_index("run_name")
    assert result.fit_dict["n_column"] == "N_flops"
    assert used.loc["s1", "N_flops"] == pytest.approx((6.0 * (SIZES["s1"] + 5_000) + 1_000) / 6)
    assert result.compute.convention == "flops"
    assert "Plots and predictions use `flops`." in result.report_md
    # C under the flops convention is FLOPs per token x D
    s1 = result.compute.runs.set_index("run_name").loc["s1"]
    assert s1["C_x"] == pytest.approx((6.0 * (SIZES["s1"] + 5_000) + 1_000) * MAIN_D)
