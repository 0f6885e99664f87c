"""Known-answer tests of `analysis.fit.fit_power_law` on synthetic losses."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analysis.fit import PowerLawFit, fit_power_law

# Six sizes over 2.5 decades, as in a small study; parameters in the range of small LMs.
N = np.logspace(4, 6.5, 6)
A, ALPHA, C = 40.0, 0.35, 1.2


def synthetic(noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (A * N ** -ALPHA + C) * np.exp(noise * rng.standard_normal(len(N)))


def test_recovers_parameters_with_tiny_noise():
    fit = fit_power_law(N, synthetic(1e-4, seed=1), n_bootstrap=200)
    assert fit.alpha == pytest.approx(ALPHA, rel=0.02)
    assert fit.a == pytest.approx(A, rel=0.05)
    assert fit.c == pytest.approx(C, rel=0.01)
    assert fit.n_points == 6 and fit.n_bootstrap_used == 200
    assert fit.rmse_log < 1e-3 and fit.r2_log > 0.9999


def test_interval_covers_truth_and_estimate_with_larger_noise():
    fit = fit_power_law(N.tolist(), synthetic(0.01, seed=2).tolist(), n_bootstrap=500, seed=3)
    for value, ci in ((fit.alpha, fit.alpha_ci), (fit.a, fit.a_ci), (fit.c, fit.c_ci)):
        assert ci[0] <= value <= ci[1]
    assert fit.alpha_ci[0] <= ALPHA <= fit.alpha_ci[1]
    assert fit.alpha_ci[1] - fit.alpha_ci[0] > 0
    assert fit.samples.shape == (fit.n_bootstrap_used, 3)
    low, high = fit.predict_band(N)
    assert np.all(low <= fit.predict(N) + 1e-12) and np.all(fit.predict(N) <= high + 1e-12)


def test_seeded_bootstrap_is_reproducible():
    y = synthetic(0.01, seed=4)
    assert fit_power_law(N, y, n_bootstrap=50, seed=7) == fit_power_law(N, y, n_bootstrap=50, seed=7)


def test_predict_matches_formula():
    fit = fit_power_law(N, synthetic(0.0, seed=0), n_bootstrap=0)
    n = np.array([3e3, 1e5, 1e8])
    np.testing.assert_allclose(fit.predict(n), fit.a * n ** (-fit.alpha) + fit.c)
    assert fit.predict(1e5).shape == ()


def test_frozen_and_to_dict_is_json():
    fit = fit_power_law(N, synthetic(0.01, seed=5), n_bootstrap=20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.alpha = 1.0  # type: ignore[misc]
    d = fit.to_dict()
    assert "samples" not in d and "samples" not in repr(fit)
    assert d["alpha"] == fit.alpha and d["n_bootstrap_used"] == 20
    json.dumps(d, allow_nan=False)


def test_three_points_fit_without_interval():
    fit = fit_power_law([1e4, 1e5, 1e6], [3.0, 2.5, 2.2])
    assert isinstance(fit, PowerLawFit) and fit.n_bootstrap_used == 0
    assert np.isnan(fit.alpha_ci[0]) and fit.to_dict()["alpha_ci"] == [None, None]
    np.testing.assert_allclose(fit.predict([1e4, 1e5, 1e6]), [3.0, 2.5, 2.2], rtol=1e-6)


@pytest.mark.parametrize(
    ("n", "loss", "match"),
    [
        ([1e4, 1e5], [3.0, 2.5], "at least 3"),
        ([1e4, 1e5, 1e6], [3.0, -2.5, 2.2], "finite and > 0"),
        ([1e4, -1e5, 1e6], [3.0, 2.5, 2.2], "finite and > 0"),
        ([1e4, 1e5, 1e6], [3.0, np.nan, 2.2], "finite and > 0"),
        ([1e4, 1e5, 1e6], [3.0, 2.5], "same length"),
        ([1e4, 1e4, 1e4, 1e5], [3.0, 3.0, 3.0, 2.5], "distinct N"),
    ],
)
def test_rejects_bad_input(n, loss, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(n, loss)


def test_rejects_bad_options():
    with pytest.raises(ValueError, match="confidence"):
        fit_power_law(N, synthetic(0.0, 0), confidence=1.5)
    with pytest.raises(ValueError, match="n_bootstrap"):
        fit_power_law(N, synthetic(0.0, 0), n_bootstrap=-1)
