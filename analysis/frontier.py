"""The compute-efficient frontier: the runs no cheaper run beats (Kaplan et al. 2020, fig. 1).

Arrays in, indices out; no I/O.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from analysis.shared import positive_vectors


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
    c_arr, loss_arr = positive_vectors(c=c, loss=loss)
    order = np.lexsort((loss_arr, c_arr))  # by compute, then loss; stable, so ties keep input order
    best = np.minimum.accumulate(loss_arr[order])
    on = np.ones(len(order), dtype=bool)
    on[1:] = loss_arr[order[1:]] < best[:-1]
    return order[on].astype(np.int64)


__all__ = ["compute_frontier"]
