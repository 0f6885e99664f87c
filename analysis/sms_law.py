"""MuPT's Symbolic Music Scaling (SMS) law: repeated data with an interaction and an overfitting term.

Qu et al. (2024), "MuPT: A Generative Symbolic Music Pretrained Transformer", sec. 3.4.2 and
appendix A.2-A.5. Three changes to the Chinchilla form (Hoffmann et al. 2022, eq. 2):

1. A continuous effective data size (their eq. 12 and 13), Muennighoff et al. (2023)'s D' with
   the decay written as a rate k = 1 - delta per epoch, defined for any D / U_D:

       D'' = U_D * (1 - k**(D / U_D)) / (1 - k),

   here with k = R_D* / (1 + R_D*), so that D'' -> U_D (1 + R_D*) as D' does (their A.1.2:
   R_D* = (1 - delta) / delta) and R_D* reads as in `analysis.data_constrained`.
2. An interaction term (their eq. 2): L = d / (N**alpha * D''**beta) + A / N**alpha + B / D''**beta + E.
3. An overfitting term (their eq. 3 and 4) that lets the loss turn up after many epochs:

       L_overfit = GELU(k_d * D + k_n * ln N - k_u * ln U_D - k_in).

Fitted as they fit it (sec. 3.4.2, "Parameter fitting", and A.5): the parameters of eq. 2 by
L-BFGS on the Huber loss (delta 1e-3) of ln L predicted through log-sum-exp, then the four
overfitting constants by least squares on the residuals L - L_eq2. Arrays in, a frozen
dataclass out; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import least_squares, minimize
from scipy.special import ndtr

from analysis.chinchilla import _huber
from analysis.data_constrained import LOG_R_STAR_BOUNDS
from analysis.intervals import Interval, percentile_intervals
from analysis.shared import check_bootstrap, check_positive, json_float, one_blas_thread, positive_vectors

SMS_FORMULA = ("L(N, D, U_D) = d / (N**alpha * D''**beta) + A / N**alpha + B / D''**beta + E "
               "+ GELU(k_d * D + k_n * ln N - k_u * ln U_D - k_in), "
               "D'' = U_D * (1 - k**(D / U_D)) / (1 - k), k = R_D* / (1 + R_D*)")
EQ2_PARAM_NAMES = ("E", "A", "B", "d", "alpha", "beta", "R_D_star")
OVERFIT_PARAM_NAMES = ("k_d", "k_n", "k_u", "k_in")
SMS_PARAM_NAMES = EQ2_PARAM_NAMES + OVERFIT_PARAM_NAMES
# bounds of the eq. 2 stage, in its centred log coordinates (see `_eq2_log_terms`): exponents in
# [0, 5] and E >= 2e-9 as for Chinchilla; ln d >= -40 lets the interaction term vanish
_EXPONENT_MAX = 5.0
_LOG_E_MIN = -20.0
_LOG_D_MIN = -40.0
_LBFGS_OPTIONS = {"ftol": 1e-13, "gtol": 1e-10, "maxiter": 3000, "maxcor": 20}
# the joint fit runs from 37 starts: most converge in 100-250 iterations, and a start still moving
# after 400 is one of the flat GELU-off valleys, not the optimum
_JOINT_LBFGS_OPTIONS = {**_LBFGS_OPTIONS, "maxiter": 400}
# starts of the eq. 2 stage: R_D* over the searched range, each with the interaction term off and on
_START_LOG_R = np.log([0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
# starts of the joint fit's overfitting constants (scaled, see `_overfit_features`), each with eq. 2
# at stage 1's fit. Ranking them by their starting objective and keeping the best few missed the
# optimum on synthetic runs (the term's effect depends on where eq. 2 moves), so L-BFGS-B runs
# from all 36 (about 1 s).
_OVERFIT_GRID = np.stack([g.ravel() for g in np.meshgrid([0.5, 2.0, 8.0], [-0.5, 0.5], [-1.0, 1.0], [-1.0, 1.0, 3.0],
                                                         indexing="ij")], axis=1)


def sms_effective_data(d: ArrayLike, unique: ArrayLike, r_star: float) -> np.ndarray:
    """D'' = U_D (1 - k**(D / U_D)) / (1 - k) with k = R_D* / (1 + R_D*) (Qu et al. 2024, eq. 12 and 13).

    Args:
        d: tokens trained on, shape ``(k,)``, > 0.
        unique: unique tokens U_D they were drawn from, shape ``(k,)``, > 0.
        r_star: R_D* (> 0): 1 / R_D* is the share of a pass's value a repeat loses
            (delta = 1 / (1 + R_D*)).

    Returns:
        D'' in tokens, shape ``(k,)``: exactly U_D after one epoch, U_D (1 + R_D*) after many, and,
        unlike Muennighoff's D', not D below one epoch (``D (1 + R_D*) ln(1 + 1 / R_D*)`` for
        ``D << U_D``, 12 % above D at R_D* = 4).
    """
    d, unique = np.asarray(d, dtype=float), np.asarray(unique, dtype=float)
    return unique * (1.0 + r_star) * -np.expm1(-(d / unique) * np.log1p(1.0 / r_star))


def gelu(x: ArrayLike) -> np.ndarray:
    """GELU(x) = x Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel 2016), elementwise."""
    x = np.asarray(x, dtype=float)
    return x * ndtr(x)


def _gelu_slope(z: np.ndarray) -> np.ndarray:
    """GELU'(z) = Phi(z) + z phi(z)."""
    return ndtr(z) + z * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)


@dataclass(frozen=True)
class SMSLawFit:
    """Result of `fit_sms_law`.

    Attributes:
        E, A, B, alpha, beta: the Chinchilla parameters for raw N and D'' (nats/token).
        d: the interaction term's scale (units of the loss times N**alpha D''**beta), >= 0.
        R_D_star: the repeat decay constant of D'' (repetitions), as R_D* of Muennighoff et al.
        k_d (per token), k_n, k_u, k_in: the overfitting term's constants (eq. 4); all 0 when
            fitted with ``overfitting=False`` (their eq. 2 alone).
        overfitting: whether the overfitting term was fitted.
        intervals: parameter name -> bootstrap percentile interval at ``confidence``;
            ``(nan, nan)`` without bootstrap (measured coverage: `fit_sms_law`).
        rmse_log: root-mean-square residual of ln L.
        n_points: runs fitted; n_bootstrap_used: resamples whose refit succeeded.
        confidence: two-sided interval level.
        samples: ``(n_bootstrap_used, 11)`` bootstrap parameters; excluded from repr and equality.
    """

    E: float
    A: float
    B: float
    d: float
    alpha: float
    beta: float
    R_D_star: float
    k_d: float
    k_n: float
    k_u: float
    k_in: float
    overfitting: bool
    intervals: dict[str, Interval]
    rmse_log: float
    n_points: int
    n_bootstrap_used: int
    confidence: float
    samples: np.ndarray = field(repr=False, compare=False)

    @property
    def n_params(self) -> int:
        """Free parameters: 7 for eq. 2, 11 with the overfitting term."""
        return len(SMS_PARAM_NAMES) if self.overfitting else len(EQ2_PARAM_NAMES)

    def predict(self, n: ArrayLike, d: ArrayLike, unique: ArrayLike) -> np.ndarray:
        """L(N, D, U_D) in nats/token for arrays of N, D and U_D (broadcast)."""
        n, d, unique = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (n, d, unique)))
        return _sms_predict(np.array([getattr(self, p) for p in SMS_PARAM_NAMES]), n, d, unique)

    def overfitting_epochs(self, n: float, unique: float, max_epochs: float = 1000.0) -> float:
        """Epochs of U_D unique tokens at which the predicted loss of a model of N parameters is
        lowest: where validation loss turns up. ``inf`` when it still falls at ``max_epochs``
        (always so without the overfitting term, whose absence leaves the loss monotone)."""
        if not self.overfitting:
            return float("inf")
        epochs = np.geomspace(1.0, max_epochs, 801)
        loss = self.predict(n, epochs * unique, unique)
        i = int(np.argmin(loss))
        # a plateau (D'' saturated, the overfitting term still ~0) is not a turn: its argmin is rounding
        return float("inf") if loss[-1] - loss[i] <= 1e-9 * loss[i] else float(epochs[i])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters, intervals and fit quality."""
        return {"formula": SMS_FORMULA if self.overfitting else SMS_FORMULA.split(" + GELU")[0],
                **{name: json_float(getattr(self, name)) for name in SMS_PARAM_NAMES},
                **{f"{name}_ci": [json_float(v) for v in ci] for name, ci in self.intervals.items()},
                "overfitting": self.overfitting, "rmse_log": json_float(self.rmse_log), "n_points": self.n_points,
                "n_bootstrap_used": self.n_bootstrap_used, "confidence": self.confidence}


def _sms_predict(params: np.ndarray, n: np.ndarray, d: np.ndarray, unique: np.ndarray) -> np.ndarray:
    """The law at raw parameters ``params`` (`SMS_PARAM_NAMES` order)."""
    e, a, b, dd, alpha, beta, r_star, k_d, k_n, k_u, k_in = params
    d2 = sms_effective_data(d, unique, r_star)
    eq2 = dd * n**-alpha * d2**-beta + a * n**-alpha + b * d2**-beta + e
    return eq2 + gelu(k_d * d + k_n * np.log(n) - k_u * np.log(unique) - k_in)


def _eq2_residuals(theta: np.ndarray, x: np.ndarray, d: np.ndarray, unique: np.ndarray, log_loss: np.ndarray,
                   mean_log_d: float) -> tuple[np.ndarray, np.ndarray]:
    """ln L residuals of eq. 2 (through log-sum-exp, their eq. 16), shape ``(k,)``, and their
    Jacobian, ``(7, k)``, at centred ``theta = (a_c, b_c, e, g_c, alpha, beta, ln R_D*)``:
    ``ln A = a_c + alpha mean(ln N)``, ``ln B = b_c + beta mean(ln D)``, ``ln d = g_c + alpha
    mean(ln N) + beta mean(ln D)``; ``x = ln N - mean(ln N)``, ``y = ln D'' - mean(ln D)``.

    The derivative of the log-sum-exp by each term's log is its softmax weight w; ``y`` moves
    with R_D* = R as ``dy/d ln R = R / (1 + R) - t q**t / ((1 + R)(1 - q**t))``, ``t = D / U_D``,
    ``q = R / (1 + R)`` (from ``ln D'' = ln U_D + ln(1 + R) + ln(1 - q**t)``).
    """
    a_c, b_c, e, g_c, alpha, beta, log_r = theta
    r_star = float(np.exp(log_r))
    t = d / unique
    one_minus_qt = -np.expm1(-t * np.log1p(1.0 / r_star))
    y = np.log(unique * (1.0 + r_star) * one_minus_qt) - mean_log_d
    terms = np.stack([a_c - alpha * x, b_c - beta * y, np.full_like(x, e), g_c - alpha * x - beta * y])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    weights /= total
    w_n, w_d, w_e, w_i = weights
    dy = r_star / (1.0 + r_star) - t * (1.0 - one_minus_qt) / ((1.0 + r_star) * one_minus_qt)
    jacobian = np.stack([w_n, w_d, w_e, w_i, -x * (w_n + w_i), -y * (w_d + w_i), -beta * (w_d + w_i) * dy])
    return top + np.log(total) - log_loss, jacobian


def _eq2_objective(theta: np.ndarray, x: np.ndarray, d: np.ndarray, unique: np.ndarray, log_loss: np.ndarray,
                   mean_log_d: float, delta: float) -> tuple[float, np.ndarray]:
    """Huber sum of `_eq2_residuals` over delta**2 (so each run counts O(1) for L-BFGS-B's ftol)
    and its gradient (the Huber derivative is ``clip(r, -delta, delta)``)."""
    r, jacobian = _eq2_residuals(theta, x, d, unique, log_loss, mean_log_d)
    return float(np.sum(_huber(r, delta))) / delta**2, jacobian @ np.clip(r, -delta, delta) / delta**2


def _fit_eq2(starts: list[np.ndarray], x: np.ndarray, d: np.ndarray, unique: np.ndarray, log_loss: np.ndarray,
             mean_log_d: float, delta: float) -> np.ndarray | None:
    """Lowest-objective L-BFGS-B optimum (centred theta) over ``starts``; None if every start fails."""
    bounds = [(None, None), (None, None), (_LOG_E_MIN, None), (_LOG_D_MIN, None), (0.0, _EXPONENT_MAX),
              (0.0, _EXPONENT_MAX), LOG_R_STAR_BOUNDS]
    lower = np.array([-np.inf if lo is None else lo for lo, _ in bounds])
    upper = np.array([np.inf if hi is None else hi for _, hi in bounds])
    best, best_f = None, np.inf
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for start in starts:
            res = minimize(_eq2_objective, np.clip(start, lower, upper),
                           args=(x, d, unique, log_loss, mean_log_d, delta), jac=True, method="L-BFGS-B",
                           bounds=bounds,
                           options=_LBFGS_OPTIONS)
            if np.all(np.isfinite(res.x)) and np.isfinite(res.fun) and res.fun < best_f:
                best, best_f = res.x, res.fun
    return best


def _eq2_starts(x: np.ndarray, d: np.ndarray, unique: np.ndarray, log_loss: np.ndarray,
                mean_log_d: float) -> list[np.ndarray]:
    """Starts for eq. 2: for each R_D* in `_START_LOG_R`, a Chinchilla-like start (the floor at
    half the lowest loss, the N and D terms sharing the rest, exponents 0.3) with the interaction
    term off (ln d at its bound) and on (d / (N^a D''^b) as large as either term at the means)."""
    floor = 0.5 * float(np.exp(log_loss.min()))
    share = float(np.log(max(np.exp(log_loss).mean() - floor, 1e-6) / 2))
    starts = []
    for log_r in _START_LOG_R:
        for g_c in (_LOG_D_MIN, share):
            starts.append(np.array([share, share, np.log(floor), g_c, 0.3, 0.3, log_r]))
    return starts


def _to_raw_eq2(theta: np.ndarray, mean_log_n: float, mean_log_d: float) -> np.ndarray:
    """Centred theta -> (E, A, B, d, alpha, beta, R_D*)."""
    a_c, b_c, e, g_c, alpha, beta, log_r = theta
    return np.array([np.exp(e), np.exp(a_c + alpha * mean_log_n), np.exp(b_c + beta * mean_log_d),
                     np.exp(g_c + alpha * mean_log_n + beta * mean_log_d), alpha, beta, np.exp(log_r)])


def _to_centred_eq2(raw: np.ndarray, mean_log_n: float, mean_log_d: float) -> np.ndarray:
    e, a, b, dd, alpha, beta, r_star = np.maximum(raw, 1e-300)  # a vanished term starts at e**-690, not -inf
    return np.array([np.log(a) - alpha * mean_log_n, np.log(b) - beta * mean_log_d, max(np.log(e), _LOG_E_MIN),
                     max(np.log(dd) - alpha * mean_log_n - beta * mean_log_d, _LOG_D_MIN), alpha, beta,
                     np.log(r_star)])


def _overfit_features(n: np.ndarray, d: np.ndarray, unique: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled features of the overfitting term, shape ``(4, k)``: D over its largest value, ln N and
    -ln U_D centred, and -1; and the scales ``(D_max, mean ln N, mean ln U_D)`` to convert back."""
    scales = np.array([d.max(), np.log(n).mean(), np.log(unique).mean()])
    return np.stack([d / scales[0], np.log(n) - scales[1], -(np.log(unique) - scales[2]), -np.ones_like(d)]), scales


def _overfit_to_raw(k: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Scaled (k_d', k_n, k_u, k_in') -> raw (k_d, k_n, k_u, k_in):
    ``k_n (ln N - m_N) - k_u (ln U - m_U) - k_in' = k_n ln N - k_u ln U - (k_in' + k_n m_N - k_u m_U)``."""
    k_ds, k_n, k_u, k_inc = k
    return np.array([k_ds / scales[0], k_n, k_u, k_inc + k_n * scales[1] - k_u * scales[2]])


def _overfit_to_scaled(k: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Raw (k_d, k_n, k_u, k_in) -> scaled (k_d', k_n, k_u, k_in'), the inverse of `_overfit_to_raw`."""
    k_d, k_n, k_u, k_in = k
    return np.array([k_d * scales[0], k_n, k_u, k_in - k_n * scales[1] + k_u * scales[2]])


def _fit_overfit(residual: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Scaled overfitting constants by least squares of GELU(k . features) on the residuals
    L - L_eq2 (loss units; their "linear regression"), from the term switched off (k_in' = 3)
    and two starts where it is on; the best kept."""
    best = None
    for start in ([0.0, 0.0, 0.0, 3.0], [1.0, 0.0, 0.0, 1.0], [5.0, 0.0, 0.0, 3.0]):
        res = least_squares(lambda k: gelu(k @ features) - residual, np.array(start), method="trf",
                            jac=lambda k: (_gelu_slope(k @ features) * features).T)
        if best is None or res.cost < best.cost:
            best = res
    return best.x


def _joint_objective(params: np.ndarray, x: np.ndarray, d: np.ndarray, unique: np.ndarray, log_loss: np.ndarray,
                     mean_log_d: float, features: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Huber sum of the ln L residuals of the whole law (eq. 3) over delta**2, and its gradient, at
    ``params`` = centred eq. 2 theta (7) then the scaled overfitting constants (4).
    ``dr/dtheta = (L_eq2 / L) dr_eq2/dtheta`` and ``dr/dk = GELU'(z) features / L`` with
    ``GELU'(z) = Phi(z) + z phi(z)``."""
    r_eq2, jacobian = _eq2_residuals(params[:7], x, d, unique, log_loss, mean_log_d)
    eq2 = np.exp(r_eq2 + log_loss)
    z = params[7:] @ features
    total = eq2 + gelu(z)
    if np.any(total <= 0):
        return np.inf, np.zeros_like(params)
    r = np.log(total) - log_loss
    slope = _gelu_slope(z)
    psi = np.clip(r, -delta, delta) / total
    grad = np.concatenate([jacobian @ (psi * eq2), features @ (psi * slope)])
    return float(np.sum(_huber(r, delta))) / delta**2, grad / delta**2


def _fit_both(starts: list[np.ndarray], n: np.ndarray, d: np.ndarray, unique: np.ndarray, loss: np.ndarray,
              delta: float, overfitting: bool, overfit_starts: np.ndarray = (),
              start_raw: np.ndarray | None = None) -> np.ndarray | None:
    """Both stages on one set of runs; raw parameters in `SMS_PARAM_NAMES` order, or None.

    With the overfitting term, the two stages' result starts a joint L-BFGS-B fit of all eleven
    parameters on the same Huber loss of ln L: stage 1 alone, as Qu et al. describe it, leaves
    eq. 2 bent by the overfitted runs (on synthetic runs whose loss turns up by 0.2 nats, R_D*
    came out up to 2x off and the residual twice the noise). ``start_raw`` (raw parameters of the
    fit on all runs, for a bootstrap refit) starts one more joint fit, so the refit can stay in its basin.
    """
    mean_log_n, mean_log_d = float(np.log(n).mean()), float(np.log(d).mean())
    x, log_loss = np.log(n) - mean_log_n, np.log(loss)
    theta = _fit_eq2(starts, x, d, unique, log_loss, mean_log_d, delta)
    if theta is None:
        return None
    raw = np.append(_to_raw_eq2(theta, mean_log_n, mean_log_d), [0.0, 0.0, 0.0, 0.0])
    if not overfitting:
        return raw if np.all(np.isfinite(raw)) else None
    features, scales = _overfit_features(n, d, unique)
    args = (x, d, unique, log_loss, mean_log_d, features, delta)
    k_starts = [_fit_overfit(loss - _sms_predict(raw, n, d, unique), features), *overfit_starts]
    bounds = [(None, None), (None, None), (_LOG_E_MIN, None), (_LOG_D_MIN, None), (0.0, _EXPONENT_MAX),
              (0.0, _EXPONENT_MAX), LOG_R_STAR_BOUNDS] + [(None, None)] * 4
    best = np.concatenate([theta, k_starts[0]])  # the two stages' own result, kept unless a joint fit beats it
    best_f = _joint_objective(best, *args)[0]
    joint_starts = [np.concatenate([theta, k]) for k in k_starts]
    if start_raw is not None:
        joint_starts.append(np.concatenate([_to_centred_eq2(start_raw[:7], mean_log_n, mean_log_d),
                                            _overfit_to_scaled(start_raw[7:], scales)]))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for start in joint_starts:
            res = minimize(_joint_objective, start, args=args, jac=True, method="L-BFGS-B",
                           bounds=bounds, options=_JOINT_LBFGS_OPTIONS)
            if np.all(np.isfinite(res.x)) and np.isfinite(res.fun) and res.fun < best_f:
                best, best_f = res.x, res.fun
    raw = np.concatenate([_to_raw_eq2(best[:7], mean_log_n, mean_log_d), _overfit_to_raw(best[7:], scales)])
    return raw if np.all(np.isfinite(raw)) else None


@one_blas_thread
def fit_sms_law(n: ArrayLike, d: ArrayLike, unique: ArrayLike, loss: ArrayLike, *, overfitting: bool = True,
                delta: float = 1e-3, n_bootstrap: int = 200, confidence: float = 0.95, seed: int = 0) -> SMSLawFit:
    """Fit MuPT's SMS law (Qu et al. 2024, eq. 3 with eq. 2, 4 and 12) to runs that may repeat their data.

    ``L = d / (N**alpha D''**beta) + A / N**alpha + B / D''**beta + E + GELU(k_d D + k_n ln N
    - k_u ln U_D - k_in)`` with ``D'' = U_D (1 - k**(D / U_D)) / (1 - k)``, ``k = R_D* / (1 + R_D*)``
    (`sms_effective_data`). In their two stages (sec. 3.4.2 and A.5): eq. 2's seven parameters on
    every run by L-BFGS-B on the Huber loss (``delta``) of ln L through log-sum-exp, from 12 starts
    (R_D* from 0.3 to 100, interaction term off and on), the best kept; then the overfitting
    constants by least squares on the residuals ``L - L_eq2`` (their "linear regression" through the
    GELU). N is not discounted (they found k_N = 0.999 and dropped N', A.2).

    Args:
        n: non-embedding parameters N, shape ``(k,)``, > 0.
        d: tokens trained on D (all epochs), shape ``(k,)``, > 0.
        unique: unique tokens U_D each run drew from, shape ``(k,)``, > 0.
        loss: losses (nats/token), shape ``(k,)``, > 0.
        overfitting: fit the overfitting term (eq. 3); False fits eq. 2 alone.
        delta: Huber threshold on ln L residuals.
        n_bootstrap: refits on runs resampled with replacement, each started from the fit itself and
            from its own two stages (0: no intervals). Measured coverage of the 95 % intervals in 40
            synthetic music-like studies (tests/test_sms_law.py's design, 0.5 % noise, 100 refits):
            R_D*, E, d, k_d, k_n and k_in 40 of 40, B, beta and k_u 39, alpha 38, A 37. Refits started
            from their two stages alone stayed in a biased basin: R_D* held the truth in 39 of 40, but
            7 fits lay outside their own interval and the overfitting constants' intervals held it in
            4-16 of 40.
        confidence: two-sided interval level.
        seed: bootstrap seed.

    Returns:
        A `SMSLawFit`.

    Raises:
        ValueError: fewer runs than parameters plus one, fewer than 3 distinct N or D, mismatched
            or non-positive values.
        RuntimeError: the eq. 2 stage failed from every start.
    """
    n_arr, d_arr, u_arr, loss_arr = positive_vectors(n=n, d=d, unique=unique, loss=loss)
    check_positive(delta, "delta")
    check_bootstrap(n_bootstrap, confidence)
    n_params = len(SMS_PARAM_NAMES) if overfitting else len(EQ2_PARAM_NAMES)
    if len(n_arr) <= n_params or len(np.unique(n_arr)) < 3 or len(np.unique(d_arr)) < 3:
        raise ValueError(f"The SMS law has {n_params} parameters: it needs {n_params + 1} or more runs over 3 or more "
                         f"sizes and 3 or more D (got {len(n_arr)} runs, {len(np.unique(n_arr))} sizes, "
                         f"{len(np.unique(d_arr))} D); train more sizes or epoch counts.")
    mean_log_n, mean_log_d = float(np.log(n_arr).mean()), float(np.log(d_arr).mean())
    log_loss = np.log(loss_arr)
    starts = _eq2_starts(np.log(n_arr) - mean_log_n, d_arr, u_arr, log_loss, mean_log_d)
    raw = _fit_both(starts, n_arr, d_arr, u_arr, loss_arr, delta, overfitting, _OVERFIT_GRID)
    if raw is None:
        raise RuntimeError("The SMS law's eq. 2 stage failed from every start; check the runs' losses.")
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(n_arr), size=len(n_arr))
        if len(np.unique(n_arr[idx])) < 3 or len(np.unique(d_arr[idx])) < 3:
            continue
        m_n, m_d = float(np.log(n_arr[idx]).mean()), float(np.log(d_arr[idx]).mean())
        row = _fit_both([_to_centred_eq2(raw[:7], m_n, m_d)], n_arr[idx], d_arr[idx], u_arr[idx], loss_arr[idx],
                        delta, overfitting, start_raw=raw)
        if row is not None:
            samples.append(row)
    samples_arr = np.array(samples).reshape(-1, len(SMS_PARAM_NAMES))
    names = SMS_PARAM_NAMES if overfitting else EQ2_PARAM_NAMES
    intervals = dict(zip(names, percentile_intervals(samples_arr[:, :len(names)], confidence), strict=True))
    residuals = np.log(_sms_predict(raw, n_arr, d_arr, u_arr)) - log_loss
    return SMSLawFit(**dict(zip(SMS_PARAM_NAMES, map(float, raw), strict=True)), overfitting=overfitting,
                     intervals=intervals, rmse_log=float(np.sqrt(np.mean(residuals**2))), n_points=len(n_arr),
                     n_bootstrap_used=len(samples_arr), confidence=confidence, samples=samples_arr)


__all__ = ["EQ2_PARAM_NAMES", "OVERFIT_PARAM_NAMES", "SMSLawFit", "SMS_FORMULA", "SMS_PARAM_NAMES", "fit_sms_law",
           "gelu", "sms_effective_data"]
