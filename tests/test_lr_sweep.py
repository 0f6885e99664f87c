"""Learning-rate sweeps, the rule lr*(N), seed noise and the prediction check, on synthetic runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.lr_sweep import LrRule, fit_lr_rule, parabola_minimum, sweep_of_size, sweeps_by_size
from analysis.noise import seed_noise
from analysis.power_law import fit_power_law
from analysis.prediction_check import holdout_largest_size


def quadratic_loss(lr: float, lr_opt: float, floor: float, curvature: float = 0.2) -> float:
    """A loss that is a parabola in log lr with its minimum at lr_opt."""
    return floor + curvature * math.log(lr / lr_opt) ** 2


def sweep_frame(size: str, n: float, rates: list[float], lr_opt: float, floor: float, seed: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"size": size, "N": n, "learning_rate": rates, "seed": seed,
                         "run_name": [f"{size}-lr{r:.3g}" for r in rates],
                         "eval_loss": [quadratic_loss(r, lr_opt, floor) for r in rates]})


def test_parabola_minimum_recovers_the_optimum_between_grid_points():
    rates = np.array([2e-3, 4e-3, 8e-3])
    losses = np.array([quadratic_loss(r, 5e-3, 1.0) for r in rates])
    assert parabola_minimum(rates, losses) == pytest.approx(5e-3, rel=1e-9)
    assert parabola_minimum(rates, np.array([1.0, 0.9, 1.2])) < 4e-3  # lower side: left of the middle
    assert parabola_minimum(rates, np.array([1.0, 1.2, 1.1])) == 4e-3  # concave: no minimum, keep the middle


def test_sweep_picks_the_best_rate_and_refines_it():
    sweep = sweep_of_size("demo1", 2.5e4, sweep_frame("demo1", 2.5e4, [5e-3, 1e-2, 2e-2, 4e-2], 1.5e-2, 0.8),
                          "eval_loss")
    assert sweep.best_lr == 2e-2 and sweep.edge == ""
    assert sweep.lr_star == pytest.approx(1.5e-2, rel=1e-9)  # parabola through 1e-2, 2e-2, 4e-2
    assert sweep.run_names == ("demo1-lr0.02",) and sweep.warning == ""


@pytest.mark.parametrize(("lr_opt", "edge", "words"), [(1e-1, "high", "upward"), (1e-3, "low", "downward")])
def test_sweep_warns_when_the_best_rate_is_at_an_edge(lr_opt, edge, words):
    sweep = sweep_of_size("demo2", 5e4, sweep_frame("demo2", 5e4, [5e-3, 1e-2, 2e-2], lr_opt, 0.8), "eval_loss")
    assert sweep.edge == edge and sweep.lr_star == sweep.best_lr
    assert words in sweep.warning and f"{sweep.best_lr:.3g}" in sweep.warning


def test_repeats_with_other_seeds_do_not_change_the_choice():
    runs = sweep_frame("demo1", 2.5e4, [5e-3, 1e-2, 2e-2], 1.1e-2, 0.8)
    # the chosen rate repeated with a seed that lands unluckily high: the rates are still compared on seed 1
    repeat = runs.iloc[[1]].assign(seed=2, run_name="demo1-lr0.01-s2", eval_loss=0.95)
    sweep = sweep_of_size("demo1", 2.5e4, pd.concat([runs, repeat]), "eval_loss")
    assert sweep.best_lr == 1e-2 and sweep.run_names == ("demo1-lr0.01", "demo1-lr0.01-s2")
    assert sweep.run_counts == (1, 2, 1)


def test_rule_recovers_an_exact_power_law():
    sizes = {"a": 1e4, "b": 3e4, "c": 1e5, "d": 3e5}
    runs = pd.concat([sweep_frame(s, n, [0.5 * n ** -0.4 * f for f in (0.25, 0.5, 1, 2)], 0.5 * n ** -0.4, 1.0)
                      for s, n in sizes.items()])
    sweeps = sweeps_by_size(runs, "eval_loss")
    assert list(sweeps) == ["a", "b", "c", "d"]
    rule = fit_lr_rule(sweeps)
    assert isinstance(rule, LrRule)
    assert rule.gamma == pytest.approx(0.4, rel=1e-6) and rule.k == pytest.approx(0.5, rel=1e-5)
    assert rule.predict(1e6) == pytest.approx(0.5 * 1e6 ** -0.4, rel=1e-5)
    lo, hi = rule.gamma_ci
    assert lo <= 0.4 <= hi and hi - lo < 1e-6  # exact data: a zero-width interval
    assert LrRule.from_dict(rule.to_dict()) == rule


def test_rule_interval_from_scattered_optima_and_edge_sizes_left_out():
    rng = np.random.default_rng(0)
    frames = []
    for i, n in enumerate([1e4, 2e4, 5e4, 1e5, 2e5]):
        opt = 0.5 * n ** -0.4 * math.exp(0.1 * rng.standard_normal())
        frames.append(sweep_frame(f"s{i}", n, [opt * f for f in (0.5, 0.8, 1.25, 2.0)], opt, 1.0))
    frames.append(sweep_frame("edge", 4e5, [1e-3, 2e-3, 4e-3], 1e-1, 1.0))  # optimum far above its grid
    rule = fit_lr_rule(sweeps_by_size(pd.concat(frames), "eval_loss"))
    assert rule.sizes == ("s0", "s1", "s2", "s3", "s4") and "edge" in rule.excluded[0]
    lo, hi = rule.gamma_ci
    assert lo < rule.gamma < hi and lo < 0.4 < hi
    r_lo, r_hi = rule.interval(1e6)
    assert r_lo < rule.predict(1e6) < r_hi


def test_rule_needs_two_sizes_inside_their_grids():
    one = sweeps_by_size(sweep_frame("a", 1e4, [1e-3, 2e-3, 4e-3], 2e-3, 1.0), "eval_loss")
    assert "needs 2 or more" in fit_lr_rule(one)
    with pytest.raises(ValueError, match="Not a learning-rate rule"):
        LrRule.from_dict({"k": 1.0})


def test_seed_noise_is_the_pooled_standard_deviation_of_log_loss():
    runs = pd.DataFrame({"size": ["a", "a", "a", "b", "b", "c"], "D": 1e6, "learning_rate": 1e-3,
                         "seed": [1, 2, 3, 1, 2, 1], "eval_loss": [1.0, 1.02, 0.99, 2.0, 2.04, 3.0]})
    noise = seed_noise(runs, "eval_loss")
    la, lb = np.log([1.0, 1.02, 0.99]), np.log([2.0, 2.04])
    expected = math.sqrt((np.sum((la - la.mean()) ** 2) + np.sum((lb - lb.mean()) ** 2)) / (2 + 1))
    assert noise.sigma_log == pytest.approx(expected) and noise.dof == 3
    assert noise.groups == ("a x3", "b x2") and noise.max_abs_spread == pytest.approx(0.0303, abs=1e-3)
    assert not seed_noise(runs[runs["seed"] == 1], "eval_loss").measured


def test_prediction_check_arithmetic():
    n = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 1e6])  # the largest size twice (two seeds)
    rng = np.random.default_rng(4)
    loss = (40 * n ** -0.35 + 1.2) * np.exp(0.005 * rng.standard_normal(len(n)))
    names = [f"r{i}" for i in range(len(n))]
    sizes = ["s1", "s2", "s3", "s4", "s5", "s5"]
    check = holdout_largest_size(n, loss, names, sizes)
    refit = fit_power_law(n[:4], loss[:4])
    assert check.run_names == ("r4", "r5") and check.fitted_on == 4 and "s5" in check.held_out
    assert check.measured == pytest.approx(loss[4:].mean())
    assert check.predicted == pytest.approx(float(refit.predict(1e6)))
    assert check.rel_error == pytest.approx((check.predicted - check.measured) / check.measured)
    lo, hi = refit.prediction_interval([1e6], replicates=2)
    assert check.interval == pytest.approx((lo[0], hi[0]))
    assert check.inside == (lo[0] <= check.measured <= hi[0])
    # a measurement far off the law falls outside
    off = holdout_largest_size(n, np.where(n == 1e6, loss * 1.5, loss), names, sizes)
    assert off.inside is False and off.rel_error < -0.2
    assert "2 sizes below" in holdout_largest_size(n[2:], loss[2:], names[2:], sizes[2:]).reason


def test_the_law_leaves_out_the_run_that_chose_the_rate_when_other_seeds_exist():
    from analysis.report import runs_for_law

    swept = sweep_frame("demo1", 2.5e4, [5e-3, 1e-2, 2e-2], 1.1e-2, 0.8)
    repeats = swept.iloc[[1, 1]].assign(seed=[2, 3], run_name=["demo1-lr0.01-s2", "demo1-lr0.01-s3"],
                                        eval_loss=[0.83, 0.84])
    fixed = pd.DataFrame({"size": "demo2", "N": 5e4, "learning_rate": 1e-2, "seed": [1, 2],
                          "run_name": ["demo2", "demo2-s2"], "eval_loss": [0.7, 0.71]})
    runs = pd.concat([swept, repeats, fixed], ignore_index=True)
    sweeps = sweeps_by_size(runs, "eval_loss")
    assert sweeps["demo1"].selection_runs == ("demo1-lr0.01",)
    law, others = runs_for_law(runs, sweeps)
    assert sorted(law["run_name"]) == ["demo1-lr0.01-s2", "demo1-lr0.01-s3", "demo2", "demo2-s2"]
    assert "demo1-lr0.01" in set(others["run_name"])
    # without repeats the choosing run is all there is, and it stays
    law, _ = runs_for_law(pd.concat([swept, fixed], ignore_index=True), sweeps_by_size(
        pd.concat([swept, fixed], ignore_index=True), "eval_loss"))
    assert "demo1-lr0.01" in set(law["run_name"])


def _swept(sweeps: dict) -> list[tuple[str, float, float]]:
    return [(s.size, s.n, s.lr_star) for s in sweeps.values()]


def test_an_unswept_size_never_trains_above_the_widest_swept_rate():
    from training.run import rule_rate

    def sweeps_with(exponent: float) -> dict:
        return sweeps_by_size(pd.concat([sweep_frame(s, n, [0.5 * n ** exponent * f for f in (0.25, 0.5, 1, 2)],
                                                     0.5 * n ** exponent, 1.0)
                                         for s, n in {"a": 1e4, "b": 3e4, "c": 1e5}.items()]), "eval_loss")

    falling = sweeps_with(-0.4)
    rule = fit_lr_rule(falling)
    assert rule_rate(rule, _swept(falling), 1e6) == (pytest.approx(0.5 * 1e6 ** -0.4, rel=1e-5), "")  # the rule's own
    rising = sweeps_with(0.3)  # noise can fit lr* rising with N; extrapolated, it diverges
    rule = fit_lr_rule(rising)
    assert rule.gamma == pytest.approx(-0.3, rel=1e-6)
    rate, why = rule_rate(rule, _swept(rising), 1e6)
    assert rate == pytest.approx(rising["c"].lr_star) and rate < rule.predict(1e6)
    assert why.startswith(f"capped at {rising['c'].lr_star:.3g}, the lr* of c, the widest size swept")
    # inside the swept range: as fitted
    assert rule_rate(rule, _swept(rising), 5e4) == (pytest.approx(rule.predict(5e4)), "")


def test_the_report_says_when_a_rate_was_capped_below_the_rule():
    from analysis.report import _lr_lines
    from training.run import rule_rate

    sizes = {"a": 1e4, "b": 3e4, "c": 1e5}
    runs = pd.concat([sweep_frame(s, n, [0.5 * n ** 0.3 * f for f in (0.25, 0.5, 1, 2)], 0.5 * n ** 0.3, 1.0)
                      for s, n in sizes.items()])
    sweeps = sweeps_by_size(runs, "eval_loss")
    rule = fit_lr_rule(sweeps)  # rising with N
    rate, _ = rule_rate(rule, _swept(sweeps), 1e6)
    used = pd.DataFrame({"size": ["d", "e"], "N": [1e6, 5e4], "lr_source": "rule", "eval_loss": 1.0,
                         "learning_rate": [rate, rule.predict(5e4)]})
    text = "\n".join(_lr_lines(sweeps, rule, used, "N"))
    assert (f"- d: trained at {rate:.3g}, the widest swept size's lr*: the rule gives {rule.predict(1e6):.3g} at this "
            "N, above what any swept size measured (the runner caps it)") in text
    assert f"- e: trained at the rule's {rule.predict(5e4):.3g}" in text
