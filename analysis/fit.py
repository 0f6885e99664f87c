"""Fitters: arrays in, a frozen dataclass of parameters and uncertainties out.

No I/O and no global state here; loaders produce the arrays and plotters draw the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import least_squares

FORMULA = "L(N) = a * N**(-alpha) + c"
N_PARAMS = 3  # a, alpha, c
# Starting values for c as fractions of min(loss): the irreducible term is the parameter
# the optimiser gets stuck on, so we try it across its whole allowed range.
C_START_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 0.9, 0.97)
# Keep c strictly below the smallest loss so that log(L - c) in the initialisation is finite.
C_MARGIN = 1e-6


@dataclass(frozen=True)
class PowerLawFit:
    """Result of fitting ``L(N) = a * N**(-alpha) + c``.

    Attributes:
        a: Scale, for raw ``N`` (not the internally rescaled one); units of the loss.
        alpha: Exponent (dimensionless, > 0).
        c: Irreducible loss, same units as the loss (nats/token), ``0 <= c < min(loss)``.
        a_ci: ``(low, high)`` bootstrap interval for ``a``; ``(nan, nan)`` when none was
            possible (3 points leave no residuals, or every refit failed).
        alpha_ci: Same for ``alpha``.
        c_ci: Same for ``c``.
        n_points: Number of (N, L) points fitted.
        n_bootstrap: Bootstrap replicates requested.
        n_bootstrap_used: Replicates whose refit succeeded (failed refits are skipped).
        confidence: Two-sided level of the intervals, e.g. 0.95.
        rmse_log: Root-mean-square residual of ``log L`` (natural log).
        r2_log: Coefficient of determination of ``log L``; nan if all losses are equal.
        samples: ``(n_bootstrap_used, 3)`` float64 array of bootstrap ``(a, alpha, c)``,
            kept for prediction bands; excluded from ``repr``, equality and ``to_dict``.
    """

    a: float
    alpha: float
    c: float
    a_ci: tuple[float, float]
    alpha_ci: tuple[float, float]
    c_ci: tuple[float, float]
    n_points: int
    n_bootstrap: int
    n_bootstrap_used: int
    confidence: float
    rmse_log: float
    r2_log: float
    samples: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty((0, 3)))

    def predict(self, n: ArrayLike) -> np.ndarray:
        """Evaluates the fitted law.

        Args:
            n: Parameter counts, any shape (same convention as the fit).

        Returns:
            float64 array of predicted losses, same shape as ``n``.
        """
        return _model(np.asarray(n, dtype=float), self.a, self.alpha, self.c)

    def predict_band(self, n: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise bootstrap interval of the prediction at level ``confidence``.

        Args:
            n: 1-D array of parameter counts, shape ``(k,)``.

        Returns:
            ``(low, high)``, each float64 of shape ``(k,)``; all nan when there are no
            bootstrap samples.
        """
        n = np.atleast_1d(np.asarray(n, dtype=float))
        if len(self.samples) == 0:
            nan = np.full(n.shape, np.nan)
            return nan, nan.copy()
        a, alpha, c = (self.samples[:, i, None] for i in range(3))
        curves = _model(n[None, :], a, alpha, c)  # (n_bootstrap_used, k)
        tail = 100 * (1 - self.confidence) / 2
        low, high = np.percentile(curves, [tail, 100 - tail], axis=0)
        return low, high

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (nan becomes None); ``samples`` is left out."""

        def clean(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {
            "formula": FORMULA,
            "a": clean(self.a),
            "alpha": clean(self.alpha),
            "c": clean(self.c),
            "a_ci": [clean(v) for v in self.a_ci],
            "alpha_ci": [clean(v) for v in self.alpha_ci],
            "c_ci": [clean(v) for v in self.c_ci],
            "n_points": self.n_points,
            "n_bootstrap": self.n_bootstrap,
            "n_bootstrap_used": self.n_bootstrap_used,
            "confidence": self.confidence,
            "bootstrap_method": "residual bootstrap in log space, percentile intervals",
            "rmse_log": clean(self.rmse_log),
            "r2_log": clean(self.r2_log),
        }


def _model(n: np.ndarray, a: Any, alpha: Any, c: Any) -> np.ndarray:
    return a * n ** (-alpha) + c


def _log_residuals(theta: np.ndarray, x: np.ndarray, log_loss: np.ndarray) -> np.ndarray:
    log_a, alpha, c = theta
    return np.log(np.exp(log_a) * x ** (-alpha) + c) - log_loss


def _log_residuals_jac(theta: np.ndarray, x: np.ndarray, log_loss: np.ndarray) -> np.ndarray:
    log_a, alpha, c = theta
    power = np.exp(log_a) * x ** (-alpha)
    model = power + c
    return np.stack([power / model, -power * np.log(x) / model, 1 / model], axis=1)


def _fit_once(x: np.ndarray, log_loss: np.ndarray, starts: list[np.ndarray]) -> np.ndarray | None:
    """Best least-squares fit in scaled units over ``starts``; None when every start fails."""
    c_max = np.exp(log_loss.min()) * (1 - C_MARGIN)
    lower, upper = [-np.inf, 0.0, 0.0], [np.inf, np.inf, c_max]
    best, best_cost = None, np.inf
    for start in starts:
        start = np.clip(start, [-np.inf, 1e-6, 0.0], [np.inf, np.inf, c_max * (1 - C_MARGIN)])
        try:
            res = least_squares(_log_residuals, start, jac=_log_residuals_jac, args=(x, log_loss),
                                bounds=(lower, upper), method="trf", x_scale="jac")
        except (ValueError, FloatingPointError):
            continue
        if res.success and np.all(np.isfinite(res.x)) and res.cost < best_cost:
            best, best_cost = res.x, res.cost
    return best


def _grid_starts(x: np.ndarray, loss: np.ndarray) -> list[np.ndarray]:
    """Starting points: c on a grid of fractions of min(loss), a and alpha from a linear fit
    of log(L - c) against log x."""
    starts = []
    for frac in C_START_FRACTIONS:
        c0 = frac * loss.min()
        slope, intercept = np.polyfit(np.log(x), np.log(loss - c0), 1)
        starts.append(np.array([intercept, max(-slope, 1e-3), c0]))
    return starts


def _validate(n: ArrayLike, loss: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    n_arr, loss_arr = np.asarray(n, dtype=float), np.asarray(loss, dtype=float)
    if n_arr.ndim != 1 or loss_arr.ndim != 1:
        raise ValueError(f"n and loss must be 1-D; got shapes {n_arr.shape} and {loss_arr.shape}.")
    if len(n_arr) != len(loss_arr):
        raise ValueError(f"n and loss must have the same length; got {len(n_arr)} and {len(loss_arr)}.")
    for name, arr in (("n", n_arr), ("loss", loss_arr)):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be finite and > 0; got {arr.tolist()}.")
    if len(np.unique(n_arr)) < N_PARAMS:
        raise ValueError(
            f"Fitting {FORMULA} needs at least {N_PARAMS} points with distinct N; got "
            f"{len(n_arr)} point(s) with {len(np.unique(n_arr))} distinct N. Train more sizes."
        )
    return n_arr, loss_arr


def fit_power_law(
    n: ArrayLike,
    loss: ArrayLike,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PowerLawFit:
    """Fits ``L(N) = a * N**(-alpha) + c`` by least squares on ``log L``.

    The form is Kaplan et al. (2020), eq. 1.1, ``L = (N_c / N)**alpha_N`` (so
    ``a = N_c**alpha``), plus the irreducible term of Henighan et al. (2020), eq. 1.1, and
    Hoffmann et al. (2022), eq. 2 (``E + A / N**alpha``). Residuals are taken in log space so
    that every size weighs equally whatever its loss. ``N`` is divided by its geometric mean
    before fitting for conditioning; the reported ``a`` is for raw ``N``. Bounds: ``a > 0``
    (fitted as ``log a``), ``alpha >= 0``, ``0 <= c < min(loss)``. Starting points put ``c`` at
    several fractions of ``min(loss)`` and take ``a``, ``alpha`` from a linear fit of
    ``log(L - c)`` on ``log N``; the lowest-cost solution wins.

    Intervals come from a residual bootstrap in log space (Efron & Tibshirani 1993, sec. 9.5):
    the fitted log-residuals are centred, inflated by ``sqrt(n / (n - 3))`` for the degrees of
    freedom the fit used, resampled with replacement onto the fitted curve and refitted (from
    the point estimate); percentile intervals follow. Case resampling is avoided because with
    5-6 sizes many resamples have fewer than 3 distinct N and the fit is undetermined. With
    exactly 3 points the fit interpolates, no residuals remain, and intervals are nan.
    Failed refits are skipped and counted in ``n_bootstrap_used``.

    Args:
        n: Parameter counts N, shape ``(k,)``, list or array, finite and > 0.
        loss: Losses (nats/token), shape ``(k,)``, finite and > 0.
        n_bootstrap: Bootstrap replicates (default 1000); 0 skips the intervals.
        confidence: Two-sided interval level in (0, 1) (default 0.95).
        seed: Seed of the bootstrap's random generator (default 0).

    Returns:
        A `PowerLawFit`.

    Raises:
        ValueError: Fewer than 3 distinct N, mismatched lengths, non-positive or non-finite
            values, or ``n_bootstrap``/``confidence`` out of range.
        RuntimeError: The optimiser failed from every starting point.
    """
    n_arr, loss_arr = _validate(n, loss)
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0; got {n_bootstrap}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")

    n_scale = float(np.exp(np.log(n_arr).mean()))
    x, log_loss = n_arr / n_scale, np.log(loss_arr)
    theta = _fit_once(x, log_loss, _grid_starts(x, loss_arr))
    if theta is None:
        raise RuntimeError(f"least_squares failed to fit {FORMULA} from every starting point.")

    def to_raw(t: np.ndarray) -> np.ndarray:  # scaled (log A, alpha, c) -> raw-N (a, alpha, c)
        return np.array([np.exp(t[0]) * n_scale ** t[1], t[1], t[2]])

    resid = _log_residuals(theta, x, log_loss)
    fitted = log_loss + resid
    ss_tot = float(np.sum((log_loss - log_loss.mean()) ** 2))
    r2 = 1 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else float("nan")

    k = len(n_arr)
    samples = []
    if n_bootstrap and k > N_PARAMS:
        rng = np.random.default_rng(seed)
        centred = (resid - resid.mean()) * np.sqrt(k / (k - N_PARAMS))
        for _ in range(n_bootstrap):
            boot = _fit_once(x, fitted - centred[rng.integers(0, k, size=k)], [theta])
            if boot is not None:
                samples.append(to_raw(boot))
    samples_arr = np.array(samples).reshape(-1, 3)

    tail = 100 * (1 - confidence) / 2
    if len(samples_arr):
        cis = np.percentile(samples_arr, [tail, 100 - tail], axis=0).T
    else:
        cis = np.full((3, 2), np.nan)
    a, alpha, c = to_raw(theta)
    return PowerLawFit(
        a=float(a), alpha=float(alpha), c=float(c),
        a_ci=tuple(map(float, cis[0])), alpha_ci=tuple(map(float, cis[1])), c_ci=tuple(map(float, cis[2])),
        n_points=k, n_bootstrap=n_bootstrap, n_bootstrap_used=len(samples_arr), confidence=confidence,
        rmse_log=float(np.sqrt(np.mean(resid**2))), r2_log=r2, samples=samples_arr,
    )
