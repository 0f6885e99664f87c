"""Intervals of the fits: profile likelihood, Student t, and bootstrap percentiles.

Profile-likelihood intervals for least-squares fits, with a small-sample threshold.
For a model fitted by least squares with ``n`` observations and ``p`` free parameters, the
interval of a quantity ``q`` (a parameter, or a prediction) at level ``1 - a`` is the set of
values ``v`` at which the residual sum of squares, minimised with ``q`` held at ``v``, exceeds
the overall minimum by at most ``s**2 * F(1, n - p; 1 - a)``, with ``s**2 = RSS / (n - p)``
(Bates & Watts 1988, "Nonlinear Regression Analysis and Its Applications", sec. 6.1, the
profile t statistic; for a linear model this is exactly the Student-t interval). Unlike
a bootstrap of a handful of residuals, it accounts for the noise variance being estimated
from few degrees of freedom, which is what makes 5-6-size scaling studies too confident.

An interval for a *new observation* (a run not yet trained) adds that observation to the
data as an unknown: ``v`` is inside when refitting with the point ``(x_new, v)`` raises the
minimum RSS by at most the same threshold. For a linear model this is the textbook
prediction interval ``y_hat ± t * sqrt(s**2 + se_fit**2)``.

The bootstrap fitters (`analysis.chinchilla`, `analysis.isoflop`) report percentile intervals
of their replicates instead (Efron & Tibshirani 1993, "An Introduction to the Bootstrap",
sec. 13.3).

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats
from scipy.optimize import brentq

from analysis.shared import check_confidence

# A two-sided interval ``(low, high)`` in the units of its quantity: the type of every ``*_ci``
# field of the fit results and of what the interval functions here return.
Interval = tuple[float, float]

# The bracket search doubles its step from this fraction of the search range (or of the
# estimate's magnitude) until the profile crosses the threshold or the limit is reached.
_FIRST_STEP = 0.02
_MAX_DOUBLINGS = 40


def profile_threshold(rss_min: float, dof: int, confidence: float) -> float:
    """How far the profiled RSS may rise above its minimum inside the interval.

    ``s**2 * F(1, dof; confidence)`` with ``s**2 = rss_min / dof`` (Bates & Watts 1988,
    sec. 6.1: ``|tau| <= t(dof; (1 - confidence) / 2)``, and ``t**2 = F(1, dof)``).

    Args:
        rss_min: residual sum of squares at the best fit (units of the squared residual).
        dof: residual degrees of freedom ``n - p`` (>= 1).
        confidence: two-sided level in (0, 1).

    Returns:
        The threshold (same units as ``rss_min``).

    Raises:
        ValueError: ``dof < 1`` or ``confidence`` outside (0, 1).
    """
    if dof < 1:
        raise ValueError(f"A profile interval needs at least 1 residual degree of freedom; got {dof}.")
    check_confidence(confidence)
    return rss_min / dof * float(stats.f.ppf(confidence, 1, dof))


def profile_interval(profile_rss: Callable[[float], float], estimate: float, rss_min: float, threshold: float, *,
                     lower: float, upper: float, scale: float | None = None) -> Interval:
    """Both ends of ``{v : profile_rss(v) - rss_min <= threshold}`` around ``estimate``.

    Each side is searched outwards from the estimate with a doubling step until the profile
    crosses the threshold (then the crossing is found by Brent's method) or the limit is
    reached (then the limit is returned: the data do not bound that side).

    Args:
        profile_rss: ``v -> min RSS with the quantity held at v``; ``inf`` where no fit exists.
        estimate: the quantity at the best fit.
        rss_min: RSS at the best fit.
        threshold: from `profile_threshold`.
        lower, upper: limits of the search (e.g. a parameter's bounds).
        scale: first step of the search; default a fraction of ``|estimate|`` (or 1).

    Returns:
        ``(low, high)`` with ``lower <= low <= estimate <= high <= upper``; ``(estimate,
        estimate)`` when the profile at the estimate already exceeds the threshold (data
        without noise, where round-off is all the RSS there is).
    """
    def excess(v: float) -> float:
        return profile_rss(v) - rss_min - threshold

    step0 = scale if scale else _FIRST_STEP * max(abs(estimate), 1.0)
    if not excess(estimate) <= 0:  # exact data (RSS ~ 0): the optimiser's round-off exceeds the threshold
        return estimate, estimate
    ends = []
    for direction, limit in ((-1.0, lower), (1.0, upper)):
        inside, step, end = estimate, step0, limit
        for _ in range(_MAX_DOUBLINGS):
            trial = estimate + direction * step
            trial = max(trial, limit) if direction < 0 else min(trial, limit)
            if excess(trial) > 0:
                lo, hi = sorted((inside, trial))
                end = brentq(lambda v: min(excess(v), 1e300), lo, hi, xtol=1e-3 * step0)
                break
            if trial == limit:
                break
            inside, step = trial, 2 * step
        ends.append(end)
    return ends[0], ends[1]


def t_quantile(dof: int, confidence: float) -> float:
    """Two-sided Student-t quantile ``t(dof; (1 + confidence) / 2)``."""
    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def linear_fit_interval(x: np.ndarray, y: np.ndarray, confidence: float) -> dict[str, float]:
    """Ordinary least squares ``y = b0 + b1 x`` with Student-t intervals.

    Args:
        x, y: float arrays of shape ``(k,)``, ``k >= 2``.
        confidence: two-sided level in (0, 1).

    Returns:
        ``intercept``, ``slope``, ``slope_low``, ``slope_high``, ``s`` (residual standard
        deviation), ``dof`` (``k - 2``), ``x_mean``, ``sxx`` (sum of squared deviations of x):
        enough for `linear_prediction_interval`. Intervals and ``s`` are nan when ``dof`` is 0.
    """
    k = len(x)
    x_mean = float(x.mean())
    sxx = float(np.sum((x - x_mean) ** 2))
    slope = float(np.sum((x - x_mean) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * x_mean)
    dof = k - 2
    out = {"intercept": intercept, "slope": slope, "dof": dof, "x_mean": x_mean, "sxx": sxx,
           "slope_low": np.nan, "slope_high": np.nan, "s": np.nan}
    if dof >= 1:
        s = float(np.sqrt(np.sum((y - intercept - slope * x) ** 2) / dof))
        half = t_quantile(dof, confidence) * s / np.sqrt(sxx)
        out.update(s=s, slope_low=slope - half, slope_high=slope + half)
    return out


def linear_prediction_interval(fit: dict[str, float], x_new: float, confidence: float) -> Interval:
    """Interval for a new observation at ``x_new`` of a `linear_fit_interval` fit.

    ``y_hat ± t(dof) * s * sqrt(1 + 1/k + (x_new - x_mean)**2 / sxx)`` (any regression
    textbook, e.g. Draper & Smith 1998, sec. 3.1); ``(nan, nan)`` when ``dof`` is 0.
    """
    y_hat = fit["intercept"] + fit["slope"] * x_new
    if not fit["dof"] >= 1:
        return np.nan, np.nan
    k = fit["dof"] + 2
    half = t_quantile(fit["dof"], confidence) * fit["s"] * np.sqrt(
        1 + 1 / k + (x_new - fit["x_mean"]) ** 2 / fit["sxx"])
    return y_hat - half, y_hat + half


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval over axis 0 of bootstrap replicates.

    The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles (Efron & Tibshirani
    1993, sec. 13.3), by `np.percentile`'s linear interpolation.

    Args:
        values: float array ``(n_replicates, ...)``, ``n_replicates >= 1``.
        confidence: two-sided level in (0, 1).

    Returns:
        ``(low, high)``, float64 arrays of shape ``values.shape[1:]``.
    """
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return low, high


def percentile_intervals(samples: np.ndarray, confidence: float) -> list[Interval]:
    """`percentile_interval` of each column of ``samples``, as ``(low, high)`` floats.

    Args:
        samples: float array ``(n_replicates, p)``, one column per quantity; no rows when no
            replicate succeeded.
        confidence: two-sided level in (0, 1).

    Returns:
        ``p`` pairs ``(low, high)``; ``(nan, nan)`` each when ``samples`` has no rows.
    """
    if len(samples) == 0:
        return [(np.nan, np.nan)] * samples.shape[1]
    return [(float(lo), float(hi)) for lo, hi in zip(*percentile_interval(samples, confidence), strict=True)]


__all__ = ["Interval", "linear_fit_interval", "linear_prediction_interval", "percentile_interval",
           "percentile_intervals", "profile_interval", "profile_threshold", "t_quantile"]
