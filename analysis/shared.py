"""What the fitters and results of `analysis` share: input checks, JSON-ready numbers, one BLAS thread.

Pure functions, no I/O. Each check raises ``ValueError`` with the name of the argument, what is
allowed and what was received, so every fitter words the same mistake the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from threadpoolctl import threadpool_limits

P = ParamSpec("P")
R = TypeVar("R")


def positive_array(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a float64 array, any shape, checked finite and > 0.

    Args:
        x: Values, any shape (scalars included).
        name: The argument's name, for the message.

    Returns:
        float64 array of the shape of ``x``.

    Raises:
        ValueError: A value is nan, infinite or <= 0.
    """
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0; got {arr.tolist()}.")
    return arr


def positive_vectors(**arrays: ArrayLike) -> tuple[np.ndarray, ...]:
    """The named arrays as float64 vectors of one length, each value finite and > 0.

    Example: ``n_arr, loss_arr = positive_vectors(n=n, loss=loss)``.

    Args:
        **arrays: name -> values of shape ``(k,)``, the same ``k`` for all (0 allowed).

    Returns:
        float64 arrays of shape ``(k,)``, in argument order.

    Raises:
        ValueError: One is not 1-D, their lengths differ, or a value is nan, infinite or <= 0
            (checked in that order).
    """
    values = [np.asarray(v, dtype=float) for v in arrays.values()]
    names = _join(list(arrays))
    if any(v.ndim != 1 for v in values):
        raise ValueError(f"{names} must be 1-D; got shapes {_join([str(v.shape) for v in values])}.")
    if len({len(v) for v in values}) > 1:
        raise ValueError(f"{names} must have the same length; got {_join([str(len(v)) for v in values])}.")
    for name, v in zip(arrays, values, strict=True):
        positive_array(v, name)
    return tuple(values)


def one_blas_thread(fit: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run ``fit`` with the BLAS that numpy and scipy load limited to one thread (threadpoolctl).

    The fits here are many small L-BFGS-B runs, whose vectors and matrices are far too small for
    threads to help. On a busy 2-core machine OpenBLAS's threads spun against the other work: one
    SMS-law fit took 31 s with them and 2.4 s without (`analysis.sms_law`), and every fit in the
    test suite paid the same way. Costs about 1.5 ms per call.
    """

    @functools.wraps(fit)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        with threadpool_limits(limits=1, user_api="blas"):
            return fit(*args, **kwargs)

    return limited


def check_positive(value: float, name: str) -> None:
    """Raises ``ValueError`` unless the scalar option ``value`` is finite and > 0."""
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0; got {value}.")


def check_confidence(confidence: float) -> None:
    """Raises ``ValueError`` unless the two-sided interval level lies in (0, 1)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")


def check_bootstrap(n_bootstrap: int, confidence: float) -> None:
    """Raises ``ValueError`` unless ``n_bootstrap >= 0`` (0: no intervals) and ``confidence`` is in (0, 1)."""
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0; got {n_bootstrap}.")
    check_confidence(confidence)


def json_float(x: float) -> float | None:
    """``x`` as a Python float for JSON; None when it is nan or infinite (JSON has neither)."""
    return float(x) if np.isfinite(x) else None


def json_safe(obj: Any) -> Any:
    """Nested copy of dicts, lists and tuples (tuples become lists) with numpy scalars as Python
    numbers and non-finite floats as None; anything else is kept as it is."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, np.ndarray):
        obj = obj.item()
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def _join(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


__all__ = ["check_bootstrap", "check_confidence", "check_positive", "json_float", "json_safe", "positive_array",
           "positive_vectors"]
