"""The prediction check: refit a law without its largest runs and predict them.

A law used to plan a bigger run has to pass exactly this test: fitted on the smaller sizes
(or budgets), does it predict what the largest one measured, inside its stated interval?
The report opens with it. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from analysis.intervals import Interval
from analysis.power_law import N_PARAMS, fit_power_law


@dataclass(frozen=True)
class HoldoutCheck:
    """A law refitted without held-out runs, against what those runs measured.

    Attributes:
        law: which law, e.g. ``"L(N)"``.
        held_out: what was held out, in words (e.g. ``"the largest size, demo5 (N = 7.9e5)"``).
        run_names: the held-out runs.
        x: their N (or C) under the law's convention.
        measured: their mean loss (nats/token).
        predicted: the refitted law's loss at ``x``.
        interval: ``(low, high)`` for the mean of ``len(run_names)`` new runs at ``x`` at level
            ``confidence``; ``(nan, nan)`` when the refit has no interval.
        confidence: two-sided level.
        fitted_on: runs the refit used.
        interval_method: how ``interval`` was made.
        reason: why there is no check ("" when there is one).
    """

    law: str
    held_out: str
    run_names: tuple[str, ...]
    x: float
    measured: float
    predicted: float
    interval: Interval
    confidence: float
    fitted_on: int
    interval_method: str = ""
    reason: str = ""

    @property
    def rel_error(self) -> float:
        """``(predicted - measured) / measured``."""
        return (self.predicted - self.measured) / self.measured if self.measured else math.nan

    @property
    def inside(self) -> bool | None:
        """Whether the measured loss lies in the interval; None without one."""
        lo, hi = self.interval
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        return bool(lo <= self.measured <= hi)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (nan as None)."""
        def clean(x: float) -> float | None:
            return float(x) if isinstance(x, float | int) and math.isfinite(x) else None
        return {"law": self.law, "held_out": self.held_out, "run_names": list(self.run_names), "x": clean(self.x),
                "measured": clean(self.measured), "predicted": clean(self.predicted),
                "interval": [clean(v) for v in self.interval], "confidence": clean(self.confidence),
                "rel_error": clean(self.rel_error), "inside": self.inside, "fitted_on": self.fitted_on,
                "interval_method": self.interval_method, "reason": self.reason}


def no_check(law: str, reason: str) -> HoldoutCheck:
    """A `HoldoutCheck` that says why there is none."""
    nan = math.nan
    return HoldoutCheck(law=law, held_out="", run_names=(), x=nan, measured=nan, predicted=nan,
                        interval=(nan, nan), confidence=nan, fitted_on=0, reason=reason)


def holdout_largest_size(n: ArrayLike, loss: ArrayLike, run_names: list[str], sizes: list[str], *,
                         confidence: float = 0.95) -> HoldoutCheck:
    """Refit ``L(N) = a N^-alpha + c`` without the largest N (every run of it) and predict it.

    The interval is `PowerLawFit.prediction_interval` for the mean of as many new runs as
    were held out (the held-out size's seeds), so it includes their run-to-run noise.

    Args:
        n: N of every run the full law uses, shape ``(k,)``.
        loss: their losses, nats/token, shape ``(k,)``.
        run_names: their names, length ``k``.
        sizes: their size names, length ``k``.
        confidence: level of the interval.

    Returns:
        A `HoldoutCheck` (with ``reason`` set when fewer than 3 smaller sizes remain).
    """
    n_arr, loss_arr = np.asarray(n, dtype=float), np.asarray(loss, dtype=float)
    top = n_arr == n_arr.max()
    rest = ~top
    if len(np.unique(n_arr[rest])) < N_PARAMS:
        return no_check("L(N)", f"{len(np.unique(n_arr[rest]))} sizes below the largest; refitting without it needs "
                                f"{N_PARAMS} (train more sizes)")
    fit = fit_power_law(n_arr[rest], loss_arr[rest], confidence=confidence)
    x, k = float(n_arr.max()), int(top.sum())
    low, high = fit.prediction_interval([x], replicates=k)
    size = sorted({sizes[i] for i in np.flatnonzero(top)})
    return HoldoutCheck(
        law="L(N)", held_out=f"the largest size, {', '.join(size)} (N = {x:.3g}, {k} run{'s' if k > 1 else ''})",
        run_names=tuple(run_names[i] for i in np.flatnonzero(top)), x=x, measured=float(loss_arr[top].mean()),
        predicted=float(fit.predict(x)), interval=(float(low[0]), float(high[0])), confidence=confidence,
        fitted_on=int(rest.sum()),
        interval_method=("profile-likelihood interval for the mean of the held-out runs (the law's uncertainty and "
                         "the run-to-run noise)" if fit.has_intervals else ""),
        reason="" if fit.has_intervals else f"the refit on {int(rest.sum())} runs leaves no degree of freedom "
                                            "for an interval")


__all__ = ["HoldoutCheck", "holdout_largest_size", "no_check"]
