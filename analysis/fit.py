"""Fitters: arrays in, a frozen dataclass of parameters and uncertainties out.

No I/O and no global state here; loaders produce the arrays and plotters draw the result.
L(N) = a N^-alpha + c lives in `analysis.power_law` (re-exported here); this module holds the
joint law L(N, D) (Chinchilla approach 3), IsoFLOP profiles (approach 2) and the frontier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from analysis.power_law import FORMULA, N_PARAMS, PowerLawFit, fit_power_law  # noqa: F401 - re-exported

# --- Compute-optimal scaling: Chinchilla approach 3 (parametric loss) -------------------------

CHINCHILLA_FORMULA = "L(N, D) = E + A / N**alpha + B / D**beta"
CHINCHILLA_N_PARAMS = 5  # E, A, B, alpha, beta
CHINCHILLA_PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
# Initialisation grid of Hoffmann et al. (2022), appendix D.2, in (a, b, e, alpha, beta) with
# A = exp(a), B = exp(b), E = exp(e): 6 * 6 * 5 * 5 * 5 = 4500 starts.
CHINCHILLA_GRID_LOG_AB = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
CHINCHILLA_GRID_E = (-1.0, -0.5, 0.0, 0.5, 1.0)
CHINCHILLA_GRID_EXPONENTS = (0.0, 0.5, 1.0, 1.5, 2.0)
# L-BFGS from all 4500 starts would cost seconds per fit; instead the objective is evaluated at
# every start at once (a few ms) and L-BFGS runs from the best 16. On 24 random synthetic sets
# (6 N x 5 D at LM and music scales, E 0.05-2.5, exponents 0.1-0.8, noise 0.1-1 %) the best
# screened start always reached the best optimum of the top 64, and so did about half of them.
CHINCHILLA_N_STARTS = 16
# Exponents are bounded to [0, 5]: negative ones are not a scaling law, and 5 is far above the
# 0.05-0.8 reported for language models; the bound only keeps degenerate fits finite. e >= -20
# (E >= 2e-9) stops E drifting towards 0 for ever when the data show no floor.
CHINCHILLA_EXPONENT_MAX = 5.0
CHINCHILLA_LOG_E_MIN = -20.0
# The Huber sum is divided by delta**2 inside the optimiser so that each run contributes O(1):
# L-BFGS-B's ftol is relative to max(|f|, 1) and would stop at once on an O(1e-6) objective.
CHINCHILLA_LBFGS_OPTIONS = {"ftol": 1e-13, "gtol": 1e-10, "maxiter": 3000, "maxcor": 20}


@dataclass(frozen=True)
class ChinchillaFit:
    """Result of fitting ``L(N, D) = E + A / N**alpha + B / D**beta`` (Chinchilla approach 3).

    Attributes:
        E: Irreducible loss (nats/token), > 0.
        A: Scale of the parameter term, for raw ``N``; units of the loss.
        B: Scale of the data term, for raw ``D`` (tokens); units of the loss.
        alpha: Exponent of ``N`` (dimensionless, in ``[0, 5]``).
        beta: Exponent of ``D`` (dimensionless, in ``[0, 5]``).
        a: Allocation exponent ``beta / (alpha + beta)``: ``N_opt ∝ C**a`` (Hoffmann et al.
            2022, eq. 4 and table 2; not to be confused with ``A``).
        b: Allocation exponent ``alpha / (alpha + beta)``: ``D_opt ∝ C**b``; ``a + b = 1``.
        E_ci: ``(low, high)`` bootstrap percentile interval for ``E``; ``(nan, nan)`` when
            none was possible (5 points leave no residuals, ``n_bootstrap=0``, or every
            refit failed). ``A_ci``, ``B_ci``, ``alpha_ci``, ``beta_ci``, ``a_ci``, ``b_ci``
            likewise.
        delta: Huber threshold on the log-loss residual used by the fit.
        objective: Huber sum at the optimum, ``sum_i Huber_delta(log L_pred - log L_i)``.
        rmse_log: Root-mean-square residual of ``log L`` (natural log).
        n_points: Number of (N, D, L) runs fitted.
        n_bootstrap: Bootstrap replicates requested.
        n_bootstrap_used: Replicates whose refit succeeded (degenerate resamples and failed
            refits are skipped).
        confidence: Two-sided level of the intervals, e.g. 0.95.
        samples: ``(n_bootstrap_used, 5)`` float64 array of bootstrap ``(E, A, B, alpha,
            beta)``, kept for bands; excluded from ``repr``, equality and ``to_dict``.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    a: float
    b: float
    E_ci: tuple[float, float]
    A_ci: tuple[float, float]
    B_ci: tuple[float, float]
    alpha_ci: tuple[float, float]
    beta_ci: tuple[float, float]
    a_ci: tuple[float, float]
    b_ci: tuple[float, float]
    delta: float
    objective: float
    rmse_log: float
    n_points: int
    n_bootstrap: int
    n_bootstrap_used: int
    confidence: float
    samples: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty((0, 5)))

    def predict(self, n: ArrayLike, d: ArrayLike) -> np.ndarray:
        """Evaluates the fitted law.

        Args:
            n: Parameter counts N, any shape broadcastable with ``d``.
            d: Training tokens D, any shape broadcastable with ``n``.

        Returns:
            float64 array of predicted losses (nats/token), of the broadcast shape.
        """
        return _chinchilla_model(np.asarray(n, dtype=float), np.asarray(d, dtype=float),
                                 self.E, self.A, self.B, self.alpha, self.beta)

    def predict_band(self, n: ArrayLike, d: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise bootstrap interval of the prediction at level ``confidence``.

        Args:
            n: Parameter counts, shape broadcastable with ``d``.
            d: Training tokens, shape broadcastable with ``n``.

        Returns:
            ``(low, high)``, float64 arrays of the broadcast shape; all nan when there are no
            bootstrap samples.
        """
        n_arr, d_arr = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(d, dtype=float))
        if len(self.samples) == 0:
            nan = np.full(n_arr.shape, np.nan)
            return nan, nan.copy()
        e, a, b, alpha, beta = (self.samples[:, i].reshape((-1,) + (1,) * n_arr.ndim) for i in range(5))
        curves = _chinchilla_model(n_arr[None], d_arr[None], e, a, b, alpha, beta)
        return _percentile_interval(curves, self.confidence)

    def compute_optimal(
        self, c_flops: ArrayLike, flops_per_param_token: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Loss-minimising N and D for a compute budget, in closed form.

        Minimises ``L(N, D)`` subject to ``C = k * N * D`` (Hoffmann et al. 2022, eq. 3-4):
        ``G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))``,
        ``N_opt = G * (C / k) ** (beta / (alpha + beta))``,
        ``D_opt = (C / k) / N_opt = G**-1 * (C / k) ** (alpha / (alpha + beta))``.

        Args:
            c_flops: Compute budgets C (FLOPs), any shape, > 0.
            flops_per_param_token: ``k`` in ``C = k * N * D``; 6 (default) counts the forward
                and backward pass (Kaplan et al. 2020, sec. 2.1).

        Returns:
            ``(n_opt, d_opt)``: float64 arrays of the shape of ``c_flops`` (parameters,
            tokens).

        Raises:
            ValueError: ``alpha`` or ``beta`` is 0 (no finite optimum), or ``c_flops`` or
                ``flops_per_param_token`` is not finite and > 0.
        """
        c_arr = _positive_array(c_flops, "c_flops")
        if not np.isfinite(flops_per_param_token) or flops_per_param_token <= 0:
            raise ValueError(f"flops_per_param_token must be finite and > 0; got {flops_per_param_token}.")
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError(
                f"The compute-optimal allocation needs alpha > 0 and beta > 0; the fit has "
                f"alpha={self.alpha:.4g}, beta={self.beta:.4g}. One of the terms is flat over the "
                f"data: widen the range of N or D."
            )
        return _compute_optimal(c_arr / flops_per_param_token, self.A, self.B, self.alpha, self.beta)

    def compute_optimal_band(
        self, c_flops: ArrayLike, flops_per_param_token: float = 6.0
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Bootstrap interval of `compute_optimal` at level ``confidence``.

        Args:
            c_flops: Compute budgets C (FLOPs), any shape, > 0.
            flops_per_param_token: ``k`` in ``C = k * N * D`` (default 6).

        Returns:
            ``((n_low, n_high), (d_low, d_high))``, float64 arrays of the shape of
            ``c_flops``; all nan without bootstrap samples. Replicates with ``alpha`` or
            ``beta`` equal to 0 are ignored.

        Raises:
            ValueError: ``c_flops`` or ``flops_per_param_token`` is not finite and > 0.
        """
        c_arr = _positive_array(c_flops, "c_flops")
        if not np.isfinite(flops_per_param_token) or flops_per_param_token <= 0:
            raise ValueError(f"flops_per_param_token must be finite and > 0; got {flops_per_param_token}.")
        s = self.samples[(self.samples[:, 3] > 0) & (self.samples[:, 4] > 0)]
        if len(s) == 0:
            nan = np.full(c_arr.shape, np.nan)
            return (nan, nan.copy()), (nan.copy(), nan.copy())
        _, a, b, alpha, beta = (s[:, i].reshape((-1,) + (1,) * c_arr.ndim) for i in range(5))
        n_opt, d_opt = _compute_optimal(c_arr[None] / flops_per_param_token, a, b, alpha, beta)
        return (_percentile_interval(n_opt, self.confidence), _percentile_interval(d_opt, self.confidence))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (nan becomes None); ``samples`` is left out."""
        out: dict[str, Any] = {"formula": CHINCHILLA_FORMULA}
        for name in (*CHINCHILLA_PARAM_NAMES, "a", "b"):
            out[name] = _clean(getattr(self, name))
            out[f"{name}_ci"] = [_clean(v) for v in getattr(self, f"{name}_ci")]
        out.update({
            "delta": self.delta,
            "objective": _clean(self.objective),
            "rmse_log": _clean(self.rmse_log),
            "n_points": self.n_points,
            "n_bootstrap": self.n_bootstrap,
            "n_bootstrap_used": self.n_bootstrap_used,
            "confidence": self.confidence,
            "bootstrap_method": "case resampling of runs, refit, percentile intervals",
        })
        return out


def _clean(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of ``values``."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return low, high


def _positive_array(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0; got {arr.tolist()}.")
    return arr


def _chinchilla_model(n: np.ndarray, d: np.ndarray, e: Any, a: Any, b: Any, alpha: Any, beta: Any) -> np.ndarray:
    return e + a * n ** (-alpha) + b * d ** (-beta)


def _compute_optimal(x: np.ndarray, a: Any, b: Any, alpha: Any, beta: Any) -> tuple[np.ndarray, np.ndarray]:
    """N_opt and D_opt for ``x = C / k`` (Hoffmann et al. 2022, eq. 4)."""
    g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
    n_opt = g * x ** (beta / (alpha + beta))
    return n_opt, x / n_opt


def _chinchilla_residuals(
    theta: np.ndarray, x: np.ndarray, y: np.ndarray, log_loss: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Log-space residuals and softmax weights of the three terms.

    ``theta`` is ``(..., 5)`` in centred coordinates ``(a_c, b_c, e, alpha, beta)`` with
    ``a = a_c + alpha * mean(ln N)`` (likewise ``b``), and ``x``, ``y`` are ``ln N``, ``ln D``
    minus their means, shape ``(k,)``; centring removes the strong correlation of ``a`` with
    ``alpha`` that slows L-BFGS, without changing the objective. Returns ``r`` of shape
    ``(..., k)`` and the weights ``(w_N, w_D, w_E)`` of the logsumexp, each ``(..., k)``.
    """
    u_n = theta[..., 0, None] - theta[..., 3, None] * x
    u_d = theta[..., 1, None] - theta[..., 4, None] * y
    u_e = np.broadcast_to(theta[..., 2, None], u_n.shape)
    top = np.maximum(np.maximum(u_n, u_d), u_e)
    w_n, w_d, w_e = np.exp(u_n - top), np.exp(u_d - top), np.exp(u_e - top)
    total = w_n + w_d + w_e
    return top + np.log(total) - log_loss, (w_n / total, w_d / total, w_e / total)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    abs_r = np.abs(r)
    return np.where(abs_r <= delta, 0.5 * r**2, delta * (abs_r - 0.5 * delta))


def _chinchilla_objective(
    theta: np.ndarray, x: np.ndarray, y: np.ndarray, log_loss: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Huber sum divided by ``delta**2`` and its analytic gradient, for one centred ``theta``.

    With ``r = logsumexp(u_N, u_D, u_E) - log L`` the derivative of ``r`` with respect to
    each ``u`` is its softmax weight, so ``dr/da_c = w_N``, ``dr/dalpha = -w_N * x``, and
    likewise for ``D``; ``dr/de = w_E``. The Huber derivative is ``clip(r, -delta, delta)``.
    """
    r, (w_n, w_d, w_e) = _chinchilla_residuals(theta, x, y, log_loss)
    psi = np.clip(r, -delta, delta)
    grad = np.array([psi @ w_n, psi @ w_d, psi @ w_e, -psi @ (w_n * x), -psi @ (w_d * y)])
    return float(np.sum(_huber(r, delta))) / delta**2, grad / delta**2


def _chinchilla_grid(mean_log_n: float, mean_log_d: float) -> np.ndarray:
    """Hoffmann et al. (2022) D.2 grid as a ``(4500, 5)`` array of centred starts."""
    a, b, e, alpha, beta = np.meshgrid(CHINCHILLA_GRID_LOG_AB, CHINCHILLA_GRID_LOG_AB, CHINCHILLA_GRID_E,
                                       CHINCHILLA_GRID_EXPONENTS, CHINCHILLA_GRID_EXPONENTS, indexing="ij")
    grid = np.stack([g.ravel() for g in (a, b, e, alpha, beta)], axis=1)
    grid[:, 0] -= grid[:, 3] * mean_log_n
    grid[:, 1] -= grid[:, 4] * mean_log_d
    return grid


def _best_starts(grid: np.ndarray, x: np.ndarray, y: np.ndarray, log_loss: np.ndarray, delta: float,
                 n_starts: int) -> np.ndarray:
    """The ``n_starts`` rows of ``grid`` of lowest objective, all evaluated at once."""
    objective = _huber(_chinchilla_residuals(grid, x, y, log_loss)[0], delta).sum(axis=1)
    return grid[np.argsort(objective, kind="stable")[:n_starts]]


def _chinchilla_fit_once(starts: np.ndarray, x: np.ndarray, y: np.ndarray, log_loss: np.ndarray,
                         delta: float) -> np.ndarray | None:
    """Lowest-objective L-BFGS-B optimum (centred theta) over ``starts``; None if all fail.

    L-BFGS-B often ends with ABNORMAL_TERMINATION_IN_LNSRCH on the kinks of the Huber loss at
    a point that is already optimal, so ``success`` is not required; a finite result is.
    """
    bounds = [(None, None), (None, None), (CHINCHILLA_LOG_E_MIN, None),
              (0.0, CHINCHILLA_EXPONENT_MAX), (0.0, CHINCHILLA_EXPONENT_MAX)]
    lower = np.array([-np.inf, -np.inf, CHINCHILLA_LOG_E_MIN, 0.0, 0.0])
    upper = np.array([np.inf, np.inf, np.inf, CHINCHILLA_EXPONENT_MAX, CHINCHILLA_EXPONENT_MAX])
    best, best_f = None, np.inf
    for start in starts:
        try:
            res = minimize(_chinchilla_objective, np.clip(start, lower, upper), args=(x, y, log_loss, delta),
                           jac=True, method="L-BFGS-B", bounds=bounds, options=CHINCHILLA_LBFGS_OPTIONS)
        except (ValueError, FloatingPointError):
            continue
        if np.all(np.isfinite(res.x)) and np.isfinite(res.fun) and res.fun < best_f:
            best, best_f = res.x, res.fun
    return best


def _validate_chinchilla(n: ArrayLike, d: ArrayLike, loss: ArrayLike) -> tuple[np.ndarray, ...]:
    arrays = [np.asarray(v, dtype=float) for v in (n, d, loss)]
    shapes = [a.shape for a in arrays]
    if any(a.ndim != 1 for a in arrays):
        raise ValueError(f"n, d and loss must be 1-D; got shapes {shapes}.")
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"n, d and loss must have the same length; got {[len(a) for a in arrays]}.")
    for name, arr in zip(("n", "d", "loss"), arrays, strict=True):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be finite and > 0; got {arr.tolist()}.")
    n_arr, d_arr, _ = arrays
    k, k_n, k_d = len(n_arr), len(np.unique(n_arr)), len(np.unique(d_arr))
    if k < CHINCHILLA_N_PARAMS:
        raise ValueError(
            f"Fitting {CHINCHILLA_FORMULA} needs at least {CHINCHILLA_N_PARAMS} runs (one per free "
            f"parameter); got {k}. Train more runs: more sizes, or each size at more token budgets."
        )
    # Each power law needs 3 distinct values (its scale, exponent and a shared offset).
    if k_n < 3 or k_d < 3:
        raise ValueError(
            f"Fitting {CHINCHILLA_FORMULA} needs at least 3 distinct N and 3 distinct D; got {k_n} "
            f"distinct N and {k_d} distinct D over {k} runs. Train more sizes (N) or add token "
            f"budgets (D), e.g. stop each size at several step counts."
        )
    return tuple(arrays)


def fit_chinchilla(
    n: ArrayLike,
    d: ArrayLike,
    loss: ArrayLike,
    *,
    delta: float = 1e-3,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> ChinchillaFit:
    """Fits ``L(N, D) = E + A / N**alpha + B / D**beta`` (Chinchilla approach 3).

    The form is Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models",
    eq. 2; the fit follows its appendix D.2, as re-examined by Besiroglu et al. (2024),
    "Chinchilla Scaling: A replication attempt": with ``A = exp(a)``, ``B = exp(b)``,
    ``E = exp(e)``, minimise ``sum_i Huber_delta(LSE(a - alpha ln N_i, b - beta ln D_i, e) -
    ln L_i)`` with L-BFGS-B and an analytic gradient. Starts: the D.2 grid (``alpha, beta``
    in {0, 0.5, 1, 1.5, 2}, ``e`` in {-1, -0.5, 0, 0.5, 1}, ``a, b`` in {0, 5, ..., 25}) is
    evaluated at once, and L-BFGS-B runs from its best 16 points; the lowest objective wins.
    Bounds: ``0 <= alpha, beta <= 5``, ``e >= -20``; ``a`` and ``b`` are free.

    Intervals: runs are resampled with replacement ``n_bootstrap`` times and refitted from
    the full-data optimum; percentile intervals at ``confidence`` follow, for the five
    parameters and the allocation exponents. Resamples with fewer than 5 distinct runs or
    fewer than 3 distinct N or D are undetermined and skipped, like failed refits;
    ``n_bootstrap_used`` counts the rest. With exactly 5 runs the fit interpolates and no
    interval is computed.

    Args:
        n: Parameter counts N, shape ``(k,)``, finite and > 0, ``k >= 5``.
        d: Training tokens D, shape ``(k,)``, finite and > 0.
        loss: Losses (nats/token), shape ``(k,)``, finite and > 0.
        delta: Huber threshold on the log-loss residual (default 1e-3, as in Hoffmann D.2).
        n_bootstrap: Bootstrap replicates (default 200); 0 skips the intervals.
        confidence: Two-sided interval level in (0, 1) (default 0.95).
        seed: Seed of the bootstrap's random generator (default 0).

    Returns:
        A `ChinchillaFit`.

    Raises:
        ValueError: Fewer than 5 runs or fewer than 3 distinct N or D, mismatched lengths,
            non-positive or non-finite values, or ``delta``/``n_bootstrap``/``confidence`` out
            of range.
        RuntimeError: L-BFGS-B failed from every starting point.
    """
    n_arr, d_arr, loss_arr = _validate_chinchilla(n, d, loss)
    if not np.isfinite(delta) or delta <= 0:
        raise ValueError(f"delta must be finite and > 0; got {delta}.")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0; got {n_bootstrap}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")

    log_n, log_d, log_loss = np.log(n_arr), np.log(d_arr), np.log(loss_arr)
    mean_log_n, mean_log_d = float(log_n.mean()), float(log_d.mean())
    x, y = log_n - mean_log_n, log_d - mean_log_d
    starts = _best_starts(_chinchilla_grid(mean_log_n, mean_log_d), x, y, log_loss, delta, CHINCHILLA_N_STARTS)
    theta = _chinchilla_fit_once(starts, x, y, log_loss, delta)
    if theta is None:
        raise RuntimeError(f"L-BFGS-B failed to fit {CHINCHILLA_FORMULA} from every starting point.")

    def to_raw(t: np.ndarray) -> np.ndarray:  # centred (a_c, b_c, e, alpha, beta) -> (E, A, B, alpha, beta)
        return np.array([np.exp(t[2]), np.exp(t[0] + t[3] * mean_log_n), np.exp(t[1] + t[4] * mean_log_d),
                         t[3], t[4]])

    k = len(n_arr)
    samples = []
    if n_bootstrap and k > CHINCHILLA_N_PARAMS:
        rng = np.random.default_rng(seed)
        for _ in range(n_bootstrap):
            idx = rng.integers(0, k, size=k)
            distinct = np.unique(np.stack([n_arr[idx], d_arr[idx]], axis=1), axis=0)
            if (len(distinct) < CHINCHILLA_N_PARAMS or len(np.unique(n_arr[idx])) < 3
                    or len(np.unique(d_arr[idx])) < 3):
                continue
            # From the full-data optimum only: on 24 random synthetic sets (as above) x 30
            # resamples, refits from the resample's 3 best grid starts never found a lower
            # objective, and each costs ~5x the refit from the optimum.
            boot = _chinchilla_fit_once(theta[None], x[idx], y[idx], log_loss[idx], delta)
            if boot is not None:
                samples.append(to_raw(boot))
    samples_arr = np.array(samples).reshape(-1, CHINCHILLA_N_PARAMS)

    raw = to_raw(theta)
    alpha, beta = raw[3], raw[4]
    with np.errstate(divide="ignore", invalid="ignore"):  # alpha = beta = 0 gives nan, as it should
        alloc = np.stack([samples_arr[:, 4], samples_arr[:, 3]], axis=1) / (samples_arr[:, 3:4] + samples_arr[:, 4:5])
        a_alloc, b_alloc = beta / (alpha + beta), alpha / (alpha + beta)
    if len(samples_arr):
        cis = np.stack(_percentile_interval(np.hstack([samples_arr, alloc]), confidence), axis=1)
    else:
        cis = np.full((CHINCHILLA_N_PARAMS + 2, 2), np.nan)
    ci = [tuple(map(float, row)) for row in cis]
    r, _ = _chinchilla_residuals(theta, x, y, log_loss)
    return ChinchillaFit(
        E=float(raw[0]), A=float(raw[1]), B=float(raw[2]), alpha=float(alpha), beta=float(beta),
        a=float(a_alloc), b=float(b_alloc),
        E_ci=ci[0], A_ci=ci[1], B_ci=ci[2], alpha_ci=ci[3], beta_ci=ci[4], a_ci=ci[5], b_ci=ci[6],
        delta=delta, objective=float(np.sum(_huber(r, delta))), rmse_log=float(np.sqrt(np.mean(r**2))),
        n_points=k, n_bootstrap=n_bootstrap, n_bootstrap_used=len(samples_arr), confidence=confidence,
        samples=samples_arr,
    )


# --- Compute-optimal scaling: Chinchilla approach 2 (IsoFLOP profiles) ------------------------

ISOFLOP_FORMULA = "ln N_opt = a * ln C + n_opt_log_intercept; D_opt = C / (k * N_opt)"
ISOFLOP_MIN_SIZES = 3  # a parabola has 3 coefficients
ISOFLOP_MIN_BUDGETS = 2  # a line has 2
# Budgets equal to this relative tolerance form one profile: C computed as 6 * N * D in floating
# point differs in the last digits between runs meant to share a budget.
ISOFLOP_BUDGET_RTOL = 1e-6


@dataclass(frozen=True)
class IsoFlopBudget:
    """One IsoFLOP profile: the parabola ``L = p2 * x**2 + p1 * x + p0`` in ``x = ln N``.

    Attributes:
        compute_flops: The budget C (FLOPs), mean of the grouped runs' values.
        n_runs: Runs at this budget.
        n_sizes: Distinct N among them.
        coeffs: ``(p2, p1, p0)``, highest power first as in ``np.polyfit``, so
            ``np.polyval(coeffs, np.log(n))`` draws the profile; nan when fewer than 3 sizes.
        n_opt: Vertex ``exp(-p1 / (2 * p2))`` (parameters); nan when the parabola has no
            minimum (fewer than 3 sizes or curvature <= 0). Kept for diagnosis when the
            vertex lies outside the sampled range, but then not used.
        d_opt: ``C / (k * n_opt)`` (tokens); nan likewise.
        loss_opt: The parabola at the vertex (nats/token); nan likewise.
        used: Whether the profile enters the fit of ``N_opt(C)``.
        reason: Why it was left out; ``""`` when used.
    """

    compute_flops: float
    n_runs: int
    n_sizes: int
    coeffs: tuple[float, float, float]
    n_opt: float
    d_opt: float
    loss_opt: float
    used: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (nan becomes None)."""
        return {
            "compute_flops": self.compute_flops,
            "n_runs": self.n_runs,
            "n_sizes": self.n_sizes,
            "coeffs": [_clean(v) for v in self.coeffs],
            "n_opt": _clean(self.n_opt),
            "d_opt": _clean(self.d_opt),
            "loss_opt": _clean(self.loss_opt),
            "used": self.used,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class IsoFlopFit:
    """Result of Chinchilla approach 2: ``N_opt ∝ C**a`` and ``D_opt ∝ C**b`` from IsoFLOP vertices.

    Attributes:
        budgets: One `IsoFlopBudget` per distinct budget, sorted by compute, used or not.
        a: Slope of ``ln N_opt`` on ``ln C`` (Hoffmann et al. 2022, table 2).
        b: Slope of ``ln D_opt`` on ``ln C``; ``a + b = 1`` since ``D_opt = C / (k N_opt)``.
        a_ci: ``(low, high)`` bootstrap percentile interval for ``a``; ``(nan, nan)`` when
            none was possible (no residual degrees of freedom, ``n_bootstrap=0``, or every
            replicate lost a vertex). ``b_ci`` likewise.
        n_opt_log_intercept: ``ln N_opt = a * ln C + n_opt_log_intercept`` (C in FLOPs).
        d_opt_log_intercept: ``ln D_opt = b * ln C + d_opt_log_intercept``.
        flops_per_param_token: ``k`` in ``C = k * N * D`` used for ``D_opt``.
        n_points: Runs given.
        n_budgets_used: Profiles that entered the fit (>= 2).
        n_bootstrap: Bootstrap replicates requested.
        n_bootstrap_used: Replicates in which every used profile kept a valid vertex.
        confidence: Two-sided level of the intervals, e.g. 0.95.
        samples: ``(n_bootstrap_used, 4)`` float64 array of bootstrap ``(a,
            n_opt_log_intercept, b, d_opt_log_intercept)``; excluded from ``repr``, equality
            and ``to_dict``.
    """

    budgets: tuple[IsoFlopBudget, ...]
    a: float
    b: float
    a_ci: tuple[float, float]
    b_ci: tuple[float, float]
    n_opt_log_intercept: float
    d_opt_log_intercept: float
    flops_per_param_token: float
    n_points: int
    n_budgets_used: int
    n_bootstrap: int
    n_bootstrap_used: int
    confidence: float
    samples: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty((0, 4)))

    def predict_n_opt(self, c_flops: ArrayLike) -> np.ndarray:
        """Compute-optimal parameter count ``exp(n_opt_log_intercept) * C**a``.

        Args:
            c_flops: Compute budgets C (FLOPs), any shape, > 0.

        Returns:
            float64 array of N_opt (parameters), same shape as ``c_flops``.

        Raises:
            ValueError: ``c_flops`` is not finite and > 0.
        """
        return np.exp(self.n_opt_log_intercept + self.a * np.log(_positive_array(c_flops, "c_flops")))

    def predict_d_opt(self, c_flops: ArrayLike) -> np.ndarray:
        """Compute-optimal token count ``exp(d_opt_log_intercept) * C**b``.

        Args:
            c_flops: Compute budgets C (FLOPs), any shape, > 0.

        Returns:
            float64 array of D_opt (tokens), same shape as ``c_flops``.

        Raises:
            ValueError: ``c_flops`` is not finite and > 0.
        """
        return np.exp(self.d_opt_log_intercept + self.b * np.log(_positive_array(c_flops, "c_flops")))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (nan becomes None); ``samples`` is left out."""
        return {
            "formula": ISOFLOP_FORMULA,
            "a": _clean(self.a),
            "b": _clean(self.b),
            "a_ci": [_clean(v) for v in self.a_ci],
            "b_ci": [_clean(v) for v in self.b_ci],
            "n_opt_log_intercept": _clean(self.n_opt_log_intercept),
            "d_opt_log_intercept": _clean(self.d_opt_log_intercept),
            "flops_per_param_token": self.flops_per_param_token,
            "n_points": self.n_points,
            "n_budgets_used": self.n_budgets_used,
            "n_bootstrap": self.n_bootstrap,
            "n_bootstrap_used": self.n_bootstrap_used,
            "confidence": self.confidence,
            "bootstrap_method": "pooled residual bootstrap of the parabolas, percentile intervals",
            "budgets": [budget.to_dict() for budget in self.budgets],
        }


def _group_budgets(c: np.ndarray) -> list[np.ndarray]:
    """Indices of the runs of each budget, budgets ascending; equal up to ISOFLOP_BUDGET_RTOL."""
    order = np.argsort(c, kind="stable")
    groups, start = [], 0
    for i in range(1, len(order) + 1):
        # Compare with the group's smallest value so that a group cannot creep upwards.
        if i == len(order) or c[order[i]] > c[order[start]] * (1 + ISOFLOP_BUDGET_RTOL):
            groups.append(order[start:i])
            start = i
    return groups


def _vertex(coef: np.ndarray, u_min: float, u_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex ``u* = -c1 / (2 c2)`` of centred parabolas ``coef`` ``(..., 3)`` and its validity."""
    c2, c1 = coef[..., 0], coef[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        u_star = -c1 / (2 * c2)
    return u_star, (c2 > 0) & (u_star >= u_min) & (u_star <= u_max)


def _slopes(log_c: np.ndarray, log_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each row of ``log_y`` ``(..., m)`` on ``log_c`` ``(m,)``."""
    xc = log_c - log_c.mean()
    slope = (log_y - log_y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)
    return slope, log_y.mean(axis=-1) - slope * log_c.mean()


def fit_isoflop(
    n: ArrayLike,
    loss: ArrayLike,
    c: ArrayLike,
    *,
    flops_per_param_token: float = 6.0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> IsoFlopFit:
    """Fits ``N_opt ∝ C**a`` and ``D_opt ∝ C**b`` from IsoFLOP profiles (Chinchilla approach 2).

    Hoffmann et al. (2022), sec. 3.2: runs are grouped by compute budget (values equal to a
    relative 1e-6 form one budget); for each budget with at least 3 distinct N, a parabola of
    loss against ``ln N`` is fitted by least squares (``ln N`` centred first for
    conditioning) and its vertex gives ``N_opt(C)``, ``D_opt = C / (k * N_opt)`` and the loss
    there. A budget whose parabola has curvature <= 0 or whose vertex lies outside its sampled
    N range is left out with the reason, never extrapolated. Then ``ln N_opt`` and
    ``ln D_opt`` are each regressed on ``ln C`` over the used budgets (at least 2).

    Intervals come from a residual bootstrap of the parabolas (Efron & Tibshirani 1993, sec.
    9.5), as in `fit_power_law`: case resampling would leave many 5-run profiles with fewer
    than 3 sizes. The parabolas' residuals are pooled over the used budgets (the eval noise
    is the same at every budget), centred, inflated by ``sqrt(m / (m - 3 * n_budgets))`` for
    the degrees of freedom used, resampled onto each fitted parabola, and everything is
    refitted; percentile intervals follow. A replicate in which a profile loses its vertex
    (not convex, or outside the sampled range) is skipped and not counted in
    ``n_bootstrap_used``; many skips mean a budget is sampled too close to one side. The
    intervals cover the noise of the losses, not how well a parabola or a straight line
    describes the profiles.

    Args:
        n: Parameter counts N, shape ``(k,)``, finite and > 0.
        loss: Losses (nats/token), shape ``(k,)``, finite and > 0.
        c: Each run's compute budget C (FLOPs), shape ``(k,)``, finite and > 0; the label of
            its IsoFLOP profile, not recomputed from N and D.
        flops_per_param_token: ``k`` in ``C = k * N * D`` (default 6: Kaplan et al. 2020,
            sec. 2.1), for ``D_opt``.
        n_bootstrap: Bootstrap replicates (default 1000; they are vectorised, so cheap); 0
            skips the intervals.
        confidence: Two-sided interval level in (0, 1) (default 0.95).
        seed: Seed of the bootstrap's random generator (default 0).

    Returns:
        An `IsoFlopFit`.

    Raises:
        ValueError: Fewer than 2 usable budgets (the message lists each budget and why it
            failed), mismatched lengths, non-positive or non-finite values, or
            ``flops_per_param_token``/``n_bootstrap``/``confidence`` out of range.
    """
    arrays = [np.asarray(v, dtype=float) for v in (n, loss, c)]
    if any(a.ndim != 1 for a in arrays):
        raise ValueError(f"n, loss and c must be 1-D; got shapes {[a.shape for a in arrays]}.")
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"n, loss and c must have the same length; got {[len(a) for a in arrays]}.")
    for name, arr in zip(("n", "loss", "c"), arrays, strict=True):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be finite and > 0; got {arr.tolist()}.")
    if not np.isfinite(flops_per_param_token) or flops_per_param_token <= 0:
        raise ValueError(f"flops_per_param_token must be finite and > 0; got {flops_per_param_token}.")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0; got {n_bootstrap}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")
    n_arr, loss_arr, c_arr = arrays
    log_n = np.log(n_arr)

    # Per-budget parabolas
    budgets, profiles = [], []  # profiles: what the bootstrap needs of each used budget
    for idx in _group_budgets(c_arr):
        budget_c = float(c_arr[idx].mean())
        n_sizes = len(np.unique(n_arr[idx]))
        nan3 = (np.nan, np.nan, np.nan)
        if n_sizes < ISOFLOP_MIN_SIZES:
            reason = f"only {n_sizes} distinct N (need >= {ISOFLOP_MIN_SIZES} for a parabola); train more sizes"
            budgets.append(IsoFlopBudget(budget_c, len(idx), n_sizes, nan3, *nan3, used=False, reason=reason))
            continue
        centre = float(log_n[idx].mean())
        u = log_n[idx] - centre
        # Least squares of loss on (u**2, u, 1): the same solution as np.polyfit(u, loss, 2), as a
        # matrix so that the bootstrap can refit every replicate in one product.
        design = np.stack([u**2, u, np.ones_like(u)], axis=1)
        pinv = np.linalg.pinv(design)
        coef = pinv @ loss_arr[idx]
        u_star, valid = _vertex(coef, u.min(), u.max())
        c2, c1, c0 = coef
        coeffs = (float(c2), float(c1 - 2 * c2 * centre), float(c2 * centre**2 - c1 * centre + c0))
        if c2 <= 0:
            reason = (f"curvature {c2:.3g} <= 0: loss is not convex in ln N, so the parabola has no "
                      f"minimum; check these runs or add sizes on both sides of the optimum")
            budgets.append(IsoFlopBudget(budget_c, len(idx), n_sizes, coeffs, *nan3, used=False, reason=reason))
            continue
        n_opt = float(np.exp(centre + u_star))
        d_opt = budget_c / (flops_per_param_token * n_opt)
        loss_opt = float(c0 - c1**2 / (4 * c2))
        reason = ""
        if not valid:
            side = "smaller" if u_star < u.min() else "larger"
            reason = (f"vertex at N = {n_opt:.4g} lies outside the sampled range [{n_arr[idx].min():.4g}, "
                      f"{n_arr[idx].max():.4g}]; train {side} models at this budget")
        budgets.append(IsoFlopBudget(budget_c, len(idx), n_sizes, coeffs, n_opt, d_opt, loss_opt,
                                     used=bool(valid), reason=reason))
        if valid:
            profiles.append((idx, centre, u, pinv, design @ coef))

    if len(profiles) < ISOFLOP_MIN_BUDGETS:
        listing = "; ".join(f"C={b.compute_flops:.4g}: {'used' if b.used else b.reason}" for b in budgets)
        raise ValueError(
            f"fit_isoflop needs at least {ISOFLOP_MIN_BUDGETS} usable compute budgets (>= {ISOFLOP_MIN_SIZES} "
            f"sizes each, with a minimum inside the sampled range); got {len(profiles)} of {len(budgets)}. "
            f"Budgets: {listing}."
        )

    # Power laws across budgets
    used = [b for b in budgets if b.used]
    log_c = np.log([b.compute_flops for b in used])
    log_n_opt = np.log([b.n_opt for b in used])
    log_d_opt = np.log([b.d_opt for b in used])
    a, n0 = _slopes(log_c, log_n_opt)
    b, d0 = _slopes(log_c, log_d_opt)

    # Pooled residual bootstrap
    m = sum(len(p[0]) for p in profiles)
    dof = m - 3 * len(profiles)
    samples_arr = np.empty((0, 4))
    if n_bootstrap and dof > 0:
        rng = np.random.default_rng(seed)
        resid = np.concatenate([loss_arr[idx] - fitted for idx, _, _, _, fitted in profiles])
        centred = (resid - resid.mean()) * np.sqrt(m / dof)
        boot_log_n = np.empty((n_bootstrap, len(profiles)))
        keep = np.ones(n_bootstrap, dtype=bool)
        for j, (idx, centre, u, pinv, fitted) in enumerate(profiles):
            y = fitted + centred[rng.integers(0, m, size=(n_bootstrap, len(idx)))]
            u_star, valid = _vertex(y @ pinv.T, u.min(), u.max())
            boot_log_n[:, j] = centre + u_star
            keep &= valid
        boot_log_n = boot_log_n[keep]
        boot_log_d = log_c - np.log(flops_per_param_token) - boot_log_n
        samples_arr = np.stack([*_slopes(log_c, boot_log_n), *_slopes(log_c, boot_log_d)], axis=1)
    if len(samples_arr):
        cis = np.stack(_percentile_interval(samples_arr[:, [0, 2]], confidence), axis=1)
    else:
        cis = np.full((2, 2), np.nan)
    return IsoFlopFit(
        budgets=tuple(budgets), a=float(a), b=float(b),
        a_ci=tuple(map(float, cis[0])), b_ci=tuple(map(float, cis[1])),
        n_opt_log_intercept=float(n0), d_opt_log_intercept=float(d0), flops_per_param_token=flops_per_param_token,
        n_points=len(n_arr), n_budgets_used=len(profiles), n_bootstrap=n_bootstrap,
        n_bootstrap_used=len(samples_arr), confidence=confidence, samples=samples_arr,
    )


# --- Compute-efficient frontier ---------------------------------------------------------------


def compute_frontier(c: ArrayLike, loss: ArrayLike) -> np.ndarray:
    """Indices of the runs on the compute-efficient frontier, sorted by compute.

    A run is on the frontier when its loss is strictly lower than that of every run with
    smaller or equal compute: the lower envelope of loss against compute of Kaplan et al.
    (2020), fig. 1 and sec. 6. Among runs of equal compute only the lowest loss can be on it
    (on an exact tie of compute and loss, the first in input order).

    Args:
        c: Compute C (FLOPs) of each run, shape ``(k,)``, finite and > 0.
        loss: Losses (nats/token), shape ``(k,)``, finite and > 0.

    Returns:
        int64 array of indices into the inputs, shape ``(j,)``, ``j <= k``, in increasing
        compute (and so strictly decreasing loss); empty for empty input.

    Raises:
        ValueError: Mismatched lengths, or values that are not 1-D, finite and > 0.
    """
    c_arr, loss_arr = np.asarray(c, dtype=float), np.asarray(loss, dtype=float)
    if c_arr.ndim != 1 or loss_arr.ndim != 1 or len(c_arr) != len(loss_arr):
        raise ValueError(f"c and loss must be 1-D of the same length; got shapes {c_arr.shape} and {loss_arr.shape}.")
    for name, arr in (("c", c_arr), ("loss", loss_arr)):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be finite and > 0; got {arr.tolist()}.")
    order = np.lexsort((loss_arr, c_arr))  # by compute, then loss; stable, so ties keep input order
    best = np.minimum.accumulate(loss_arr[order])
    on = np.ones(len(order), dtype=bool)
    on[1:] = loss_arr[order[1:]] < best[:-1]
    return order[on].astype(np.int64)
