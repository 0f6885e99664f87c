"""IsoFLOP profiles (Chinchilla approach 2): N_opt ∝ C**a and D_opt ∝ C**b, with bootstrap intervals.

Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models", sec. 3.2. Arrays in,
a frozen dataclass out; no I/O. `fit_isoflop` composes four steps: fit one parabola per budget
(`_fit_parabola`), find its vertex (`_vertex`, judged by `_profile_of_budget`), regress the
vertices on compute (`_slopes`), bootstrap (`_isoflop_bootstrap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from analysis.intervals import Interval, percentile_intervals
from analysis.shared import (
    check_bootstrap,
    check_positive,
    json_float,
    one_blas_thread,
    positive_array,
    positive_vectors,
)

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
            "coeffs": [json_float(v) for v in self.coeffs],
            "n_opt": json_float(self.n_opt),
            "d_opt": json_float(self.d_opt),
            "loss_opt": json_float(self.loss_opt),
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
    a_ci: Interval
    b_ci: Interval
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
        return _power_of_c(c_flops, self.n_opt_log_intercept, self.a)

    def predict_d_opt(self, c_flops: ArrayLike) -> np.ndarray:
        """Compute-optimal token count ``exp(d_opt_log_intercept) * C**b``: float64 D_opt (tokens)
        of the shape of ``c_flops``; arguments and ``ValueError`` as in `predict_n_opt`."""
        return _power_of_c(c_flops, self.d_opt_log_intercept, self.b)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (nan becomes None); ``samples`` is left out."""
        return {
            "formula": ISOFLOP_FORMULA,
            "a": json_float(self.a),
            "b": json_float(self.b),
            "a_ci": [json_float(v) for v in self.a_ci],
            "b_ci": [json_float(v) for v in self.b_ci],
            "n_opt_log_intercept": json_float(self.n_opt_log_intercept),
            "d_opt_log_intercept": json_float(self.d_opt_log_intercept),
            "flops_per_param_token": self.flops_per_param_token,
            "n_points": self.n_points,
            "n_budgets_used": self.n_budgets_used,
            "n_bootstrap": self.n_bootstrap,
            "n_bootstrap_used": self.n_bootstrap_used,
            "confidence": self.confidence,
            "bootstrap_method": "pooled residual bootstrap of the parabolas, percentile intervals",
            "budgets": [budget.to_dict() for budget in self.budgets],
        }


def _power_of_c(c_flops: ArrayLike, log_intercept: float, slope: float) -> np.ndarray:
    """``exp(log_intercept) * C**slope`` for budgets ``c_flops`` checked finite and > 0."""
    return np.exp(log_intercept + slope * np.log(positive_array(c_flops, "c_flops")))


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


@one_blas_thread
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
    n_arr, loss_arr, c_arr = positive_vectors(n=n, loss=loss, c=c)
    check_positive(flops_per_param_token, "flops_per_param_token")
    check_bootstrap(n_bootstrap, confidence)
    log_n = np.log(n_arr)

    budgets, profiles = [], []
    for idx in _group_budgets(c_arr):
        budget, profile = _profile_of_budget(idx, n_arr, log_n, loss_arr, float(c_arr[idx].mean()),
                                             flops_per_param_token)
        budgets.append(budget)
        if profile is not None:
            profiles.append(profile)
    if len(profiles) < ISOFLOP_MIN_BUDGETS:
        listing = "; ".join(f"C={b.compute_flops:.4g}: {'used' if b.used else b.reason}" for b in budgets)
        raise ValueError(
            f"fit_isoflop needs at least {ISOFLOP_MIN_BUDGETS} usable compute budgets (>= {ISOFLOP_MIN_SIZES} "
            f"sizes each, with a minimum inside the sampled range); got {len(profiles)} of {len(budgets)}. "
            f"Budgets: {listing}."
        )

    used = [b for b in budgets if b.used]
    log_c = np.log([b.compute_flops for b in used])
    a, n0 = _slopes(log_c, np.log([b.n_opt for b in used]))
    b, d0 = _slopes(log_c, np.log([b.d_opt for b in used]))
    samples_arr = _isoflop_bootstrap(profiles, loss_arr, log_c, flops_per_param_token, n_bootstrap, seed)
    a_ci, b_ci = percentile_intervals(samples_arr[:, [0, 2]], confidence)
    return IsoFlopFit(
        budgets=tuple(budgets), a=float(a), b=float(b), a_ci=a_ci, b_ci=b_ci,
        n_opt_log_intercept=float(n0), d_opt_log_intercept=float(d0), flops_per_param_token=flops_per_param_token,
        n_points=len(n_arr), n_budgets_used=len(profiles), n_bootstrap=n_bootstrap,
        n_bootstrap_used=len(samples_arr), confidence=confidence, samples=samples_arr,
    )


class _Profile(NamedTuple):
    """A budget's least-squares parabola, as the bootstrap refits it."""

    idx: np.ndarray  # the budget's runs, shape (m,)
    centre: float  # mean ln N of those runs
    u: np.ndarray  # ln N - centre, shape (m,)
    pinv: np.ndarray  # (3, m) pseudo-inverse of the design (u**2, u, 1): coefficients = pinv @ loss
    fitted: np.ndarray  # the parabola at u, shape (m,)


def _fit_parabola(idx: np.ndarray, log_n: np.ndarray, loss: np.ndarray) -> tuple[_Profile, np.ndarray]:
    """Least squares of ``loss[idx]`` on ``(u**2, u, 1)``, ``u = ln N`` centred for conditioning.

    Returns the profile and its centred coefficients ``(c2, c1, c0)``, highest power first.
    """
    centre = float(log_n[idx].mean())
    u = log_n[idx] - centre
    # The same solution as np.polyfit(u, loss, 2), as a matrix so that the bootstrap can refit
    # every replicate in one product.
    design = np.stack([u**2, u, np.ones_like(u)], axis=1)
    pinv = np.linalg.pinv(design)
    coef = pinv @ loss[idx]
    return _Profile(idx, centre, u, pinv, design @ coef), coef


def _profile_of_budget(idx: np.ndarray, n_arr: np.ndarray, log_n: np.ndarray, loss_arr: np.ndarray,
                       budget_c: float, flops_per_param_token: float) -> tuple[IsoFlopBudget, _Profile | None]:
    """The budget's `IsoFlopBudget`, and its parabola when the vertex is usable (else None).

    Usable means at least 3 distinct N, curvature > 0 and the vertex inside the sampled N;
    otherwise the budget says why it was left out and what to train.
    """
    n_sizes = len(np.unique(n_arr[idx]))
    nan3 = (np.nan, np.nan, np.nan)
    if n_sizes < ISOFLOP_MIN_SIZES:
        reason = f"only {n_sizes} distinct N (need >= {ISOFLOP_MIN_SIZES} for a parabola); train more sizes"
        return IsoFlopBudget(budget_c, len(idx), n_sizes, nan3, *nan3, used=False, reason=reason), None
    profile, coef = _fit_parabola(idx, log_n, loss_arr)
    centre, u = profile.centre, profile.u
    u_star, valid = _vertex(coef, u.min(), u.max())
    c2, c1, c0 = coef
    coeffs = (float(c2), float(c1 - 2 * c2 * centre), float(c2 * centre**2 - c1 * centre + c0))
    if c2 <= 0:
        reason = (f"curvature {c2:.3g} <= 0: loss is not convex in ln N, so the parabola has no "
                  f"minimum; check these runs or add sizes on both sides of the optimum")
        return IsoFlopBudget(budget_c, len(idx), n_sizes, coeffs, *nan3, used=False, reason=reason), None
    n_opt = float(np.exp(centre + u_star))
    d_opt = budget_c / (flops_per_param_token * n_opt)
    loss_opt = float(c0 - c1**2 / (4 * c2))
    reason = ""
    if not valid:
        side = "smaller" if u_star < u.min() else "larger"
        reason = (f"vertex at N = {n_opt:.4g} lies outside the sampled range [{n_arr[idx].min():.4g}, "
                  f"{n_arr[idx].max():.4g}]; train {side} models at this budget")
    budget = IsoFlopBudget(budget_c, len(idx), n_sizes, coeffs, n_opt, d_opt, loss_opt, used=bool(valid),
                           reason=reason)
    return budget, (profile if valid else None)


def _isoflop_bootstrap(profiles: list[_Profile], loss_arr: np.ndarray, log_c: np.ndarray,
                       flops_per_param_token: float, n_bootstrap: int, seed: int) -> np.ndarray:
    """``(n_bootstrap_used, 4)`` replicates of ``(a, n_opt_log_intercept, b, d_opt_log_intercept)``.

    Pooled residual bootstrap of the used parabolas (see `fit_isoflop`); ``log_c`` is ``ln C``
    of the used budgets, in the order of ``profiles``. Replicates in which any profile loses
    its vertex are dropped; no rows without residual degrees of freedom or with
    ``n_bootstrap=0``.
    """
    m = sum(len(p.idx) for p in profiles)
    dof = m - 3 * len(profiles)
    if not (n_bootstrap and dof > 0):
        return np.empty((0, 4))
    rng = np.random.default_rng(seed)
    resid = np.concatenate([loss_arr[p.idx] - p.fitted for p in profiles])
    centred = (resid - resid.mean()) * np.sqrt(m / dof)
    boot_log_n = np.empty((n_bootstrap, len(profiles)))
    keep = np.ones(n_bootstrap, dtype=bool)
    for j, p in enumerate(profiles):
        y = p.fitted + centred[rng.integers(0, m, size=(n_bootstrap, len(p.idx)))]
        u_star, valid = _vertex(y @ p.pinv.T, p.u.min(), p.u.max())
        boot_log_n[:, j] = p.centre + u_star
        keep &= valid
    boot_log_n = boot_log_n[keep]
    boot_log_d = log_c - np.log(flops_per_param_token) - boot_log_n
    return np.stack([*_slopes(log_c, boot_log_n), *_slopes(log_c, boot_log_d)], axis=1)


__all__ = ["ISOFLOP_BUDGET_RTOL", "ISOFLOP_FORMULA", "ISOFLOP_MIN_BUDGETS", "ISOFLOP_MIN_SIZES", "IsoFlopBudget",
           "IsoFlopFit", "fit_isoflop"]
