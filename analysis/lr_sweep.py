"""Learning-rate sweeps: the best learning rate of each size, and a rule lr*(N) across sizes.

A scaling law measures the recipe unless every size is trained at its own best learning
rate: a rate that suits one width starves another and bends L(N) (Porian et al. 2024,
"Resolving discrepancies in compute-optimal scaling of language models", sec. 4, where
tuning the learning rate, batch and AdamW beta2 per size removed the Kaplan-Chinchilla gap).
This module reads the runs of a sweep (one size at several learning rates, same data and
budget), picks each size's best, refines it by a parabola in log learning rate, and fits
the power law lr*(N) = k * N**(-gamma) that sets the rate of sizes too costly to sweep (the
form of Bi et al. 2024, DeepSeek LLM, eq. 1, and Porian et al. 2024, sec. 4). Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.intervals import Interval, linear_fit_interval, linear_prediction_interval
from analysis.shared import json_float, one_blas_thread

RULE_FORMULA = "lr*(N) = k * N**(-gamma)"
# Two learning rates closer than this ratio count as the same grid point (float noise in YAML and JSON).
_SAME_LR = 1e-6


@dataclass(frozen=True)
class SizeSweep:
    """One size's sweep over learning rates, at one token budget.

    Attributes:
        size: the size's name.
        n: its N (non-embedding parameters, or the analysis's convention).
        learning_rates: the learning rates tried, ascending, shape ``(k,)``.
        losses: mean loss at each rate over the seeds that every rate was trained with (the
            study's seed; repeats of the chosen rate with further seeds are left out so they
            cannot change the choice), nats/token, shape ``(k,)``.
        run_counts: runs at each rate.
        best_lr: the rate with the lowest mean loss (a grid point).
        best_loss: that mean loss.
        lr_star: the minimum of a parabola in ``log lr`` through the best rate and its two
            neighbours (Porian et al. 2024 fit loss against log learning rate near its
            minimum the same way); ``best_lr`` when the best is at an edge or fewer than 3
            rates were tried.
        edge: ``"low"`` or ``"high"`` when the best rate is the lowest or highest tried (the
            true optimum may lie beyond it), else ``""``.
        run_names: the runs at ``best_lr``, every seed.
        selection_runs: those of them that chose the rate (the seeds every rate shares). Their
            loss is the minimum over rates, biased low by the run-to-run noise (the winner's
            curse), so L(N) leaves them out when other seeds of the best rate exist.
    """

    size: str
    n: float
    learning_rates: tuple[float, ...]
    losses: tuple[float, ...]
    run_counts: tuple[int, ...]
    best_lr: float
    best_loss: float
    lr_star: float
    edge: str
    run_names: tuple[str, ...] = field(default=())
    selection_runs: tuple[str, ...] = field(default=())

    @property
    def warning(self) -> str:
        """One sentence when the optimum may lie outside the grid, else ""."""
        if not self.edge:
            return ""
        low = self.edge == "low"
        return (f"{self.size}: the best learning rate {self.best_lr:.3g} is the {'lowest' if low else 'highest'} "
                f"tried; widen its grid {'downward' if low else 'upward'} (try rates {'below' if low else 'above'} "
                f"{self.best_lr:.3g}) before trusting its loss")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"size": self.size, "N": self.n, "learning_rates": list(self.learning_rates),
                "losses": list(self.losses), "run_counts": list(self.run_counts), "best_lr": self.best_lr,
                "best_loss": self.best_loss, "lr_star": self.lr_star, "edge": self.edge,
                "run_names": list(self.run_names), "selection_runs": list(self.selection_runs)}


def parabola_minimum(learning_rates: np.ndarray, losses: np.ndarray) -> float:
    """Minimum of the parabola through three (log lr, loss) points, clipped to their range.

    Args:
        learning_rates: shape ``(3,)``, ascending, > 0.
        losses: shape ``(3,)``.

    Returns:
        The learning rate at the vertex; the middle rate when the three points are not
        convex (no minimum between them).
    """
    u = np.log(learning_rates)
    a, b, _ = np.polyfit(u, losses, 2)
    if not a > 0:
        return float(learning_rates[1])
    return float(np.exp(np.clip(-b / (2 * a), u[0], u[-1])))


def sweep_of_size(size: str, n: float, runs: pd.DataFrame, metric: str) -> SizeSweep:
    """Summarise one size's runs at several learning rates.

    Args:
        size: the size's name.
        n: its N.
        runs: that size's finished runs at one token budget, with ``learning_rate``,
            ``run_name``, ``metric`` and optionally ``seed`` columns.
        metric: loss column, nats/token.

    Returns:
        A `SizeSweep`.

    Raises:
        ValueError: no run has a learning rate and a loss.
    """
    ok = runs[np.isfinite(runs["learning_rate"].to_numpy(float)) & np.isfinite(runs[metric].to_numpy(float))]
    if ok.empty:
        raise ValueError(f"{size}: no run with both a learning rate and {metric}.")
    lrs = np.sort(ok["learning_rate"].to_numpy(float))
    grid = [lrs[0]]
    for lr in lrs[1:]:
        if lr > grid[-1] * (1 + _SAME_LR):
            grid.append(lr)
    groups = [ok[np.abs(ok["learning_rate"].to_numpy(float) / g - 1) <= _SAME_LR] for g in grid]
    # rates are compared on the seeds every rate was trained with (the study's own seed), so
    # that repeats of the chosen rate with other seeds do not change which rate is best
    seeds = [set(g["seed"].dropna()) if "seed" in g else set() for g in groups]
    common = set.intersection(*seeds) if all(seeds) else set()
    losses = np.array([(g[g["seed"].isin(common)] if common else g)[metric].mean() for g in groups])
    best = int(np.argmin(losses))
    edge = "" if len(grid) < 2 or 0 < best < len(grid) - 1 else ("low" if best == 0 else "high")
    lr_star = float(grid[best])
    if len(grid) >= 3 and not edge:
        lr_star = parabola_minimum(np.array(grid[best - 1:best + 2]), losses[best - 1:best + 2])
    chosen = groups[best]
    selection = chosen[chosen["seed"].isin(common)] if common else chosen
    return SizeSweep(size=str(size), n=float(n), learning_rates=tuple(float(g) for g in grid),
                     losses=tuple(float(v) for v in losses), run_counts=tuple(len(g) for g in groups),
                     best_lr=float(grid[best]), best_loss=float(losses[best]), lr_star=lr_star, edge=edge,
                     run_names=tuple(chosen["run_name"].astype(str)),
                     selection_runs=tuple(selection["run_name"].astype(str)))


def sweeps_by_size(runs: pd.DataFrame, metric: str, n_column: str = "N") -> dict[str, SizeSweep]:
    """Every size that was trained at two or more learning rates, smallest N first.

    Args:
        runs: finished runs at one token budget (`analysis.loaders.load_local_runs` rows),
            with ``size``, ``learning_rate``, ``run_name``, ``n_column`` and ``metric``.
        metric: loss column.
        n_column: the N column.

    Returns:
        size -> `SizeSweep`, only for sizes with at least two distinct learning rates.
    """
    out = {}
    for size, group in runs.groupby("size", sort=False):
        lrs = group["learning_rate"].dropna().to_numpy(float)
        if len(lrs) and np.ptp(np.log(lrs)) > _SAME_LR:
            out[str(size)] = sweep_of_size(str(size), float(group[n_column].iloc[0]), group, metric)
    return dict(sorted(out.items(), key=lambda kv: kv[1].n))


@dataclass(frozen=True)
class LrRule:
    """The fitted rule ``lr*(N) = k * N**(-gamma)`` (`RULE_FORMULA`).

    Fitted by least squares on ``log lr* = log k - gamma log N`` over swept sizes whose best
    rate is inside their grid; intervals are Student-t (exact for this linear fit under
    Gaussian errors in log lr*).

    Attributes:
        k: scale, for raw N.
        gamma: exponent (lr* falls with N when > 0).
        gamma_ci: ``(low, high)`` interval at ``confidence``; nan with only two sizes.
        confidence: two-sided level.
        sizes: the sizes fitted.
        n: their N, shape ``(m,)``.
        lr_star: their refined best learning rates, shape ``(m,)``.
        n_convention: what N counts (``non_embedding`` for rules used by training).
        excluded: sizes left out of the fit, with the reason.
    """

    k: float
    gamma: float
    gamma_ci: Interval
    confidence: float
    sizes: tuple[str, ...]
    n: tuple[float, ...]
    lr_star: tuple[float, ...]
    n_convention: str = "non_embedding"
    excluded: tuple[str, ...] = ()

    def _linear(self) -> dict[str, float]:
        return linear_fit_interval(np.log(np.array(self.n)), np.log(np.array(self.lr_star)), self.confidence)

    def predict(self, n: float) -> float:
        """The rule's learning rate for a size of ``n`` parameters."""
        return float(self.k * n ** (-self.gamma))

    def interval(self, n: float) -> Interval:
        """Interval for the best learning rate of a new size of ``n`` parameters (a new
        observation of lr*, so it includes the sizes' scatter about the rule); nan with two sizes."""
        lo, hi = linear_prediction_interval(self._linear(), float(np.log(n)), self.confidence)
        return float(np.exp(lo)), float(np.exp(hi))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; `LrRule.from_dict` reads it back."""
        return {"formula": RULE_FORMULA, "k": self.k, "gamma": self.gamma,
                "gamma_ci": [json_float(v) for v in self.gamma_ci], "confidence": self.confidence,
                "sizes": list(self.sizes), "N": list(self.n), "lr_star": list(self.lr_star),
                "n_convention": self.n_convention, "excluded": list(self.excluded)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LrRule:
        """Inverse of `to_dict`.

        Raises:
            ValueError: a key is missing or malformed (says which).
        """
        try:
            return cls(k=float(data["k"]), gamma=float(data["gamma"]),
                       gamma_ci=tuple(float("nan") if v is None else float(v) for v in data["gamma_ci"]),
                       confidence=float(data["confidence"]), sizes=tuple(data["sizes"]),
                       n=tuple(float(v) for v in data["N"]), lr_star=tuple(float(v) for v in data["lr_star"]),
                       n_convention=str(data.get("n_convention", "non_embedding")),
                       excluded=tuple(data.get("excluded", ())))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"Not a learning-rate rule ({type(err).__name__}: {err}); expected the keys of "
                             "LrRule.to_dict (k, gamma, gamma_ci, confidence, sizes, N, lr_star).") from err


@one_blas_thread
def fit_lr_rule(sweeps: dict[str, SizeSweep], *, confidence: float = 0.95,
                n_convention: str = "non_embedding") -> LrRule | str:
    """Fit ``lr*(N) = k * N**(-gamma)`` to the swept sizes' refined best learning rates.

    Sizes whose best rate is at the edge of their grid are left out (their optimum is not
    known), and said so in ``excluded``.

    Args:
        sweeps: `sweeps_by_size` output.
        confidence: level of the exponent's interval.
        n_convention: recorded with the rule.

    Returns:
        An `LrRule`, or the reason there is none (fewer than two usable sizes).
    """
    usable = [s for s in sweeps.values() if not s.edge]
    excluded = tuple(f"{s.size}: best rate at the {s.edge} edge of its grid" for s in sweeps.values() if s.edge)
    if len({s.n for s in usable}) < 2:
        return (f"{len(usable)} swept size(s) with an optimum inside the grid; the rule {RULE_FORMULA} needs 2 or more"
                + (f" ({'; '.join(excluded)})" if excluded else ""))
    n = np.array([s.n for s in usable])
    lr = np.array([s.lr_star for s in usable])
    fit = linear_fit_interval(np.log(n), np.log(lr), confidence)
    return LrRule(k=float(np.exp(fit["intercept"])), gamma=-fit["slope"],
                  gamma_ci=(-fit["slope_high"], -fit["slope_low"]), confidence=confidence,
                  sizes=tuple(s.size for s in usable), n=tuple(n.tolist()), lr_star=tuple(lr.tolist()),
                  n_convention=n_convention, excluded=excluded)


__all__ = ["LrRule", "RULE_FORMULA", "SizeSweep", "fit_lr_rule", "parabola_minimum", "sweep_of_size", "sweeps_by_size"]
