"""Run-to-run noise, measured from runs that differ only in their seed.

Pure functions over a DataFrame from `analysis.loaders.load_local_runs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.shared import json_float


@dataclass(frozen=True)
class SeedNoise:
    """Pooled standard deviation of log loss between seeds of the same run.

    ``sigma_log = sqrt(sum_g sum_i (log L_gi - mean_g)**2 / sum_g (k_g - 1))`` over groups g
    of ``k_g >= 2`` runs that share size, token budget and learning rate (the "pure error"
    of a regression with replicates; Draper & Smith 1998, sec. 2.1). ``sigma_log`` is about the
    relative noise of one run's loss (0.01 = 1 %).

    Attributes:
        sigma_log: the pooled standard deviation; nan when no group has two runs.
        dof: its degrees of freedom, ``sum_g (k_g - 1)``.
        groups: the sizes that had replicates, with their run count, e.g. ``("demo1 x3",)``.
        max_abs_spread: the largest relative spread ``max/min - 1`` within a group.
    """

    sigma_log: float
    dof: int
    groups: tuple[str, ...]
    max_abs_spread: float

    @property
    def measured(self) -> bool:
        """Whether any size had runs with other seeds."""
        return self.dof >= 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (nan as None)."""
        return {"sigma_log": json_float(self.sigma_log), "dof": self.dof, "groups": list(self.groups),
                "max_abs_spread": json_float(self.max_abs_spread)}


def seed_noise(runs: pd.DataFrame, metric: str) -> SeedNoise:
    """Estimate the run-to-run noise from runs repeated with other seeds.

    Args:
        runs: finished runs with ``size``, ``D``, ``learning_rate``, ``seed`` and ``metric``
            columns; runs that share size, D and learning rate form a group.
        metric: loss column, nats/token.

    Returns:
        A `SeedNoise` (``sigma_log`` nan when no group has two distinct seeds).
    """
    ss, dof, groups, spread = 0.0, 0, [], 0.0
    keys = runs.assign(_lr=runs["learning_rate"].round(12).fillna(-1.0), _d=runs["D"].fillna(-1.0))
    for (size, _, _), group in keys.groupby(["size", "_d", "_lr"], sort=True):
        group = group.drop_duplicates("seed") if group["seed"].notna().all() else group
        values = np.log(group[metric].to_numpy(float))
        values = values[np.isfinite(values)]
        if len(values) < 2:
            continue
        ss += float(np.sum((values - values.mean()) ** 2))
        dof += len(values) - 1
        groups.append(f"{size} x{len(values)}")
        spread = max(spread, float(np.exp(values.max() - values.min()) - 1))
    return SeedNoise(sigma_log=math.sqrt(ss / dof) if dof else math.nan, dof=dof, groups=tuple(groups),
                     max_abs_spread=spread if dof else math.nan)


__all__ = ["SeedNoise", "seed_noise"]
