"""Known-answer tests of the compute-optimal fitters (`analysis.chinchilla`, `analysis.isoflop`,
`analysis.frontier`, imported through `analysis.fit`) on synthetic losses.

`fit_chinchilla` (approach 3), `fit_isoflop` (approach 2) and `compute_frontier`; the losses
come from ``L = E + A / N**alpha + B / D**beta`` with known parameters plus seeded noise.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from analysis.chinchilla import _chinchilla_objective
from analysis.fit import (
    ChinchillaFit,
    IsoFlopFit,
    compute_frontier,
    fit_chinchilla,
    fit_isoflop,
)

# Hoffmann et al. (2022), eq. 10: the fitted Chinchilla law, on 6 sizes x 5 token budgets over
# three decades each, roughly the range of their smaller runs.
LM = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
LM_N, LM_D = np.logspace(7, 10, 6), np.logspace(9, 12, 5)
# Music-model magnitudes: 1e4-1e7 parameters, 1e6-1e9 tokens, losses 1.1-3.3 nats/token.
MUSIC = {"E": 0.8, "A": 30.0, "B": 40.0, "alpha": 0.35, "beta": 0.25}
MUSIC_N, MUSIC_D = np.logspace(4, 7, 6), np.logspace(6, 9, 5)


def law(n: np.ndarray, d: np.ndarray, p: dict[str, float]) -> np.ndarray:
    return p["E"] + p["A"] * n ** -p["alpha"] + p["B"] * d ** -p["beta"]


def synthetic(p: dict[str, float], sizes: np.ndarray, tokens: np.ndarray, noise: float, seed: int):
    """Every (N, D) pair of the grid, losses times lognormal noise of relative size ``noise``."""
    n, d = (v.ravel() for v in np.meshgrid(sizes, tokens))
    rng = np.random.default_rng(seed)
    return n, d, law(n, d, p) * np.exp(noise * rng.standard_normal(n.size))


def huber_sum(n, d, loss, p, delta=1e-3):
    r = np.log(law(n, d, p)) - np.log(loss)
    return float(np.sum(np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))))


@pytest.fixture(scope="module")
def music_noisy() -> tuple[ChinchillaFit, tuple[np.ndarray, ...]]:
    """A bootstrapped fit at music magnitudes with 0.3 % noise, shared by several tests."""
    data = synthetic(MUSIC, MUSIC_N, MUSIC_D, noise=3e-3, seed=2)
    return fit_chinchilla(*data, n_bootstrap=60, seed=1), data


# --- fit_chinchilla --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "sizes", "tokens"), [(LM, LM_N, LM_D), (MUSIC, MUSIC_N, MUSIC_D)], ids=["lm", "music"]
)
def test_chinchilla_recovers_parameters(params, sizes, tokens):
    n, d, loss = synthetic(params, sizes, tokens, noise=1e-3, seed=0)
    fit = fit_chinchilla(n, d, loss, n_bootstrap=0)
    for name, true in params.items():
        assert getattr(fit, name) == pytest.approx(true, rel=0.05), name
    assert fit.a == pytest.approx(params["beta"] / (params["alpha"] + params["beta"]), rel=0.02)
    assert fit.a + fit.b == pytest.approx(1.0, abs=1e-12)
    # The optimiser found at least as good a point as the truth, and the fit is tight.
    assert fit.objective <= huber_sum(n, d, loss, params) * (1 + 1e-9)
    assert fit.rmse_log < 2e-3 and fit.n_points == 30
    assert fit.n_bootstrap_used == 0 and np.isnan(fit.alpha_ci[0])


def test_chinchilla_gradient_matches_finite_differences():
    n, d, loss = synthetic(MUSIC, MUSIC_N, MUSIC_D, noise=3e-3, seed=0)
    x, y, log_loss = np.log(n) - np.log(n).mean(), np.log(d) - np.log(d).mean(), np.log(loss)
    rng = np.random.default_rng(0)
    # Points near the optimum (residuals straddle the Huber kink) and far from it; a large
    # delta checks the quadratic branch everywhere.
    thetas = [np.array([-1.0, -1.2, -0.2, 0.35, 0.25]) + 0.05 * rng.standard_normal(5) for _ in range(3)]
    thetas += [np.array([2.0, -3.0, 0.5, 1.2, 0.1]), np.array([-0.5, 0.5, -2.0, 0.05, 1.5])]
    for delta in (1e-3, 10.0):
        for theta in thetas:
            _, grad = _chinchilla_objective(theta, x, y, log_loss, delta)
            step = 1e-6
            numeric = np.array([
                (_chinchilla_objective(theta + step * e, x, y, log_loss, delta)[0]
                 - _chinchilla_objective(theta - step * e, x, y, log_loss, delta)[0]) / (2 * step)
                for e in np.eye(5)
            ])
            np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4 * np.abs(numeric).max())


def test_chinchilla_intervals_contain_truth_and_estimate(music_noisy):
    fit, _ = music_noisy
    truth = {**MUSIC, "a": 0.25 / 0.6, "b": 0.35 / 0.6}
    assert fit.n_bootstrap == 60 and 50 <= fit.n_bootstrap_used <= 60
    assert fit.samples.shape == (fit.n_bootstrap_used, 5)
    for name, true in truth.items():
        low, high = getattr(fit, f"{name}_ci")
        assert low < high, name
        assert low <= true <= high, name
        assert low <= getattr(fit, name) <= high, name


def test_chinchilla_compute_optimal_matches_numerical_minimum(music_noisy):
    fit, _ = music_noisy
    budgets = np.array([1e15, 1e17, 1e19])
    n_opt, d_opt = fit.compute_optimal(budgets)
    np.testing.assert_allclose(6 * n_opt * d_opt, budgets, rtol=1e-12)
    for c, n_star in zip(budgets, n_opt, strict=True):
        along = minimize_scalar(lambda log_n, c=c: fit.predict(np.exp(log_n), c / (6 * np.exp(log_n))),
                                bounds=(0.0, 40.0), method="bounded", options={"xatol": 1e-10})
        assert np.exp(along.x) == pytest.approx(n_star, rel=1e-4)
    # Exponents: N_opt ∝ C**a and D_opt ∝ C**b, whatever k is.
    n2, d2 = fit.compute_optimal(budgets * 10, flops_per_param_token=2.0)
    n1, d1 = fit.compute_optimal(budgets, flops_per_param_token=2.0)
    np.testing.assert_allclose(n2 / n1, 10**fit.a, rtol=1e-12)
    np.testing.assert_allclose(d2 / d1, 10**fit.b, rtol=1e-12)
    (n_low, n_high), (d_low, d_high) = fit.compute_optimal_band(budgets)
    assert np.all(n_low <= n_opt) and np.all(n_opt <= n_high) and np.all(d_low <= d_opt) and np.all(d_opt <= d_high)
    assert fit.compute_optimal(1e18)[0].shape == ()
    with pytest.raises(ValueError, match="c_flops"):
        fit.compute_optimal([1e18, -1.0])
    with pytest.raises(ValueError, match="alpha > 0 and beta > 0"):
        dataclasses.replace(fit, beta=0.0).compute_optimal(1e18)


def test_chinchilla_predict_broadcasts_and_band_brackets(music_noisy):
    fit, (n, d, loss) = music_noisy
    grid = fit.predict(MUSIC_N[:, None], MUSIC_D[None, :])
    assert grid.shape == (6, 5)
    np.testing.assert_allclose(grid, law(MUSIC_N[:, None], MUSIC_D[None, :], dataclasses.asdict(fit)))
    low, high = fit.predict_band(n, d)
    assert np.all(low <= fit.predict(n, d) + 1e-12) and np.all(fit.predict(n, d) <= high + 1e-12)


def test_chinchilla_frozen_and_to_dict_is_json(music_noisy):
    fit, _ = music_noisy
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.alpha = 1.0  # type: ignore[misc]
    out = fit.to_dict()
    assert "samples" not in out and "samples" not in repr(fit)
    assert out["A"] == fit.A and out["a"] == fit.a and out["beta_ci"] == list(fit.beta_ci)
    json.dumps(out, allow_nan=False)


def test_chinchilla_five_points_fit_without_interval():
    n = np.array([1e4, 1e5, 1e6, 1e5, 1e6])
    d = np.array([1e7, 1e7, 1e8, 1e9, 1e9])
    fit = fit_chinchilla(n, d, law(n, d, MUSIC), n_bootstrap=50)
    assert fit.n_points == 5 and fit.n_bootstrap_used == 0
    assert fit.to_dict()["E_ci"] == [None, None] and np.isnan(fit.a_ci[1])
    np.testing.assert_allclose(fit.predict(n, d), law(n, d, MUSIC), rtol=1e-3)


@pytest.mark.parametrize(
    ("n", "d", "loss", "match"),
    [
        ([1e4, 1e5, 1e6, 1e7], [1e6, 1e7, 1e8, 1e9], [3.0, 2.5, 2.2, 2.0], "at least 5 runs.*got 4.*Train more runs"),
        ([1e4, 1e5, 1e6, 1e4, 1e5], [1e6] * 3 + [1e7] * 2, [3.0, 2.5, 2.2, 2.8, 2.3], "2 distinct D.*token"),
        ([1e4, 1e5, 1e4, 1e5, 1e4], [1e6, 1e7, 1e8, 1e6, 1e7], [3.0, 2.5, 2.2, 2.8, 2.3], "2 distinct N"),
        ([1e4, 1e5, 1e6, 1e7, 1e8], [1e6, 1e7, 1e8, 1e9, 1e9], [3.0, 2.5, -2.2, 2.0, 1.9], "loss must be finite"),
        ([1e4, 1e5, 1e6, 1e7, 1e8], [1e6, np.nan, 1e8, 1e9, 1e9], [3.0, 2.5, 2.2, 2.0, 1.9], "d must be finite"),
        ([1e4, 0.0, 1e6, 1e7, 1e8], [1e6, 1e7, 1e8, 1e9, 1e9], [3.0, 2.5, 2.2, 2.0, 1.9], "n must be finite"),
        ([1e4, 1e5, 1e6, 1e7, 1e8], [1e6, 1e7, 1e8, 1e9], [3.0, 2.5, 2.2, 2.0, 1.9], "same length"),
        ([[1e4, 1e5, 1e6, 1e7, 1e8]], [[1e6, 1e7, 1e8, 1e9, 1e9]], [[3.0, 2.5, 2.2, 2.0, 1.9]], "1-D"),
    ],
)
def test_chinchilla_rejects_bad_input(n, d, loss, match):
    with pytest.raises(ValueError, match=match):
        fit_chinchilla(n, d, loss)


@pytest.mark.parametrize(
    ("option", "match"),
    [({"delta": 0.0}, "delta"), ({"n_bootstrap": -1}, "n_bootstrap"), ({"confidence": 1.0}, "confidence")],
)
def test_chinchilla_rejects_bad_options(option, match):
    with pytest.raises(ValueError, match=match):
        fit_chinchilla(*synthetic(MUSIC, MUSIC_N, MUSIC_D, 0.0, 0), **option)


# --- fit_isoflop -----------------------------------------------------------------------------

# Model sizes a study would have: powers of 2 (factor 2 apart), shared by all budgets.
SIZES = 2.0 ** np.arange(10, 40)


def isoflop_runs(p: dict[str, float], budgets, per_budget: int = 5):
    """For each budget, the ``per_budget`` sizes of SIZES nearest the true optimum, D = C / 6N."""
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    n, c = [], []
    for budget in budgets:
        n_opt = g * (budget / 6) ** (p["beta"] / (p["alpha"] + p["beta"]))
        n += list(np.sort(SIZES[np.argsort(np.abs(np.log(SIZES / n_opt)))[:per_budget]]))
        c += [budget] * per_budget
    n, c = np.array(n), np.array(c)
    return n, law(n, c / (6 * n), p), c


@pytest.mark.parametrize(
    ("params", "budgets"), [(LM, [1e18, 1e19, 1e20, 1e21]), (MUSIC, [1e13, 1e14, 1e15])], ids=["lm", "music"]
)
def test_isoflop_recovers_allocation_exponents(params, budgets):
    n, loss, c = isoflop_runs(params, budgets)
    rng = np.random.default_rng(0)
    fit = fit_isoflop(n, loss * np.exp(1e-3 * rng.standard_normal(n.size)), c, n_bootstrap=500)
    a_true = params["beta"] / (params["alpha"] + params["beta"])
    assert fit.a == pytest.approx(a_true, rel=0.1) and fit.b == pytest.approx(1 - a_true, rel=0.1)
    assert fit.a + fit.b == pytest.approx(1.0, abs=1e-10)
    assert fit.n_budgets_used == len(budgets) and all(b.used and b.reason == "" for b in fit.budgets)
    assert fit.n_bootstrap_used > 400 and fit.a_ci[0] <= fit.a <= fit.a_ci[1]
    assert fit.samples.shape == (fit.n_bootstrap_used, 4)
    for budget in fit.budgets:
        assert budget.n_runs == budget.n_sizes == 5
        assert budget.d_opt == pytest.approx(budget.compute_flops / (6 * budget.n_opt))
        assert np.polyval(budget.coeffs, np.log(budget.n_opt)) == pytest.approx(budget.loss_opt, rel=1e-9)
    np.testing.assert_allclose(fit.predict_n_opt(c) * fit.predict_d_opt(c) * 6, c, rtol=1e-9)
    assert fit.predict_n_opt(budgets[1]) == pytest.approx(fit.budgets[1].n_opt, rel=0.1)
    json.dumps(fit.to_dict(), allow_nan=False)


def test_isoflop_exact_slope_when_sizes_sit_at_the_same_offsets():
    # Along an IsoFLOP line the profile in ln(N / N_opt) has the same shape at every budget, so
    # sizes at the same offsets from N_opt bias every vertex equally and the slope is exact.
    g = (LM["alpha"] * LM["A"] / (LM["beta"] * LM["B"])) ** (1 / 0.62)
    budgets = np.array([1e18, 1e19, 1e20])
    n = np.concatenate([g * (c / 6) ** (0.28 / 0.62) * np.array([0.25, 0.5, 1, 2, 4]) for c in budgets])
    c = np.repeat(budgets, 5)
    fit = fit_isoflop(n, law(n, c / (6 * n), LM), c, n_bootstrap=0)
    assert fit.a == pytest.approx(0.28 / 0.62, rel=1e-6)
    assert fit.n_bootstrap_used == 0 and np.isnan(fit.a_ci[0]) and fit.to_dict()["b_ci"] == [None, None]


def test_isoflop_groups_budgets_equal_to_relative_1e6():
    n, loss, c = isoflop_runs(MUSIC, [1e13, 1e14, 1e15])
    jitter = c * (1 + 1e-8 * np.random.default_rng(0).standard_normal(c.size))  # as 6 * N * D in floats
    exact, jittered = fit_isoflop(n, loss, c, n_bootstrap=0), fit_isoflop(n, loss, jitter, n_bootstrap=0)
    assert len(jittered.budgets) == 3 and jittered.a == pytest.approx(exact.a, rel=1e-6)


def test_isoflop_reports_unusable_budgets():
    good_n, good_loss, good_c = isoflop_runs(MUSIC, [1e13, 1e15])
    small = 2.0 ** np.arange(10, 15)  # far below N_opt ~ 1e6 at C = 1e16: loss still falling
    concave = 2.0 ** np.arange(14, 19)
    n = np.concatenate([good_n, [2**14, 2**16], small, concave])
    c = np.concatenate([good_c, [1e14] * 2, [1e16] * 5, [1e17] * 5])
    loss = np.concatenate([
        good_loss,
        [2.0, 1.9],
        law(small, 1e16 / (6 * small), MUSIC),
        2.0 - 0.01 * (np.log(concave) - np.log(concave).mean()) ** 2,
    ])
    fit = fit_isoflop(n, loss, c)
    assert isinstance(fit, IsoFlopFit) and fit.n_budgets_used == 2 and fit.n_points == len(n)
    by_c = {b.compute_flops: b for b in fit.budgets}
    assert [b.compute_flops for b in fit.budgets] == [1e13, 1e14, 1e15, 1e16, 1e17]
    assert by_c[1e13].used and by_c[1e15].used
    assert not by_c[1e14].used and "only 2 distinct N" in by_c[1e14].reason and np.isnan(by_c[1e14].n_opt)
    assert not by_c[1e16].used and "outside the sampled range" in by_c[1e16].reason
    assert "train larger models" in by_c[1e16].reason and by_c[1e16].n_opt > small.max()
    assert not by_c[1e17].used and "curvature" in by_c[1e17].reason and np.isnan(by_c[1e17].loss_opt)
    assert fit.to_dict()["budgets"][1]["reason"] == by_c[1e14].reason


def test_isoflop_needs_two_usable_budgets():
    good_n, good_loss, good_c = isoflop_runs(MUSIC, [1e13])
    n = np.concatenate([good_n, [2**14, 2**16]])
    with pytest.raises(ValueError, match=r"at least 2 usable.*got 1 of 2.*C=1e\+14: only 2 distinct N"):
        fit_isoflop(n, np.concatenate([good_loss, [2.0, 1.9]]), np.concatenate([good_c, [1e14, 1e14]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"c": [1e13, 1e13, -1.0]}, "c must be finite"),
        ({"loss": [2.0, np.inf, 1.9]}, "loss must be finite"),
        ({"n": [1e4, 1e5]}, "same length"),
        ({"flops_per_param_token": 0.0}, "flops_per_param_token"),
        ({"n_bootstrap": -1}, "n_bootstrap"),
        ({"confidence": 0.0}, "confidence"),
    ],
)
def test_isoflop_rejects_bad_input(kwargs, match):
    args = {"n": [1e4, 1e5, 1e6], "loss": [2.0, 1.8, 1.9], "c": [1e13, 1e13, 1e13], **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_isoflop(**args)


# --- compute_frontier ------------------------------------------------------------------------


def test_compute_frontier_hand_made():
    # Sorted by compute: c=1 L=3.0 (on), c=2 L=2.5 (on) and 2.8 (not: same compute, higher),
    # c=3 L=2.6 (not: above 2.5), c=4 L=2.0 (on), c=5 L=2.0 (not: only equal), c=6 L=1.5 (on).
    c = np.array([4.0, 2.0, 6.0, 1.0, 3.0, 2.0, 5.0])
    loss = np.array([2.0, 2.8, 1.5, 3.0, 2.6, 2.5, 2.0])
    frontier = compute_frontier(c, loss)
    assert frontier.dtype == np.int64 and frontier.tolist() == [3, 5, 0, 2]
    assert np.all(np.diff(c[frontier]) > 0) and np.all(np.diff(loss[frontier]) < 0)
    assert compute_frontier([1.0, 1.0], [2.0, 2.0]).tolist() == [0]  # exact tie: first one
    assert compute_frontier([], []).tolist() == []
    with pytest.raises(ValueError, match="same length"):
        compute_frontier([1.0, 2.0], [2.0])
    with pytest.raises(ValueError, match="loss must be finite"):
        compute_frontier([1.0, 2.0], [2.0, np.nan])
