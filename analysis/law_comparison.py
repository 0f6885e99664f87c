"""Which law describes runs on repeated data: Chinchilla, data-constrained and SMS on the same runs.

Four laws, from the fewest parameters to the most, each fitted to every run and refitted on part
of them to predict the rest:

- Chinchilla (Hoffmann et al. 2022, eq. 2), repeated tokens counted as new: 5 parameters;
- data-constrained (Muennighoff et al. 2023, sec. 3.1): D' for D, 6;
- SMS eq. 2 (Qu et al. 2024): D'' and the interaction term, 7;
- SMS law (Qu et al. 2024, eq. 3): eq. 2 plus the overfitting term, 11.

Scores: the in-sample rms of ln L and AICc, and for each held-out check the refit's rms of
ln L, largest relative error and R^2 (of L, as Qu et al. table 3 report it) on the runs it did
not see. Arrays in, frozen dataclasses out; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from analysis.chinchilla import CHINCHILLA_FORMULA, fit_chinchilla
from analysis.data_constrained import DATA_CONSTRAINED_FORMULA, fit_data_constrained
from analysis.shared import json_float, positive_vectors
from analysis.sms_law import SMS_FORMULA, fit_sms_law

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _chinchilla(n: np.ndarray, d: np.ndarray, u: np.ndarray, loss: np.ndarray) -> Predictor:
    fit = fit_chinchilla(n, d, loss, n_bootstrap=0)
    return lambda n_, d_, u_: fit.predict(n_, d_)


def _data_constrained(n: np.ndarray, d: np.ndarray, u: np.ndarray, loss: np.ndarray) -> Predictor:
    return fit_data_constrained(n, d, u, loss, n_bootstrap=0).predict


def _sms_eq2(n: np.ndarray, d: np.ndarray, u: np.ndarray, loss: np.ndarray) -> Predictor:
    return fit_sms_law(n, d, u, loss, overfitting=False, n_bootstrap=0).predict


def _sms(n: np.ndarray, d: np.ndarray, u: np.ndarray, loss: np.ndarray) -> Predictor:
    return fit_sms_law(n, d, u, loss, n_bootstrap=0).predict


# name -> (parameters, formula, fitter returning its predict(N, D, U_D))
REPEATED_DATA_LAWS: dict[str, tuple[int, str, Callable[..., Predictor]]] = {
    "Chinchilla (repeats as new data)": (5, CHINCHILLA_FORMULA, _chinchilla),
    "Data-constrained (Muennighoff et al. 2023)": (6, DATA_CONSTRAINED_FORMULA, _data_constrained),
    "SMS eq. 2 (Qu et al. 2024)": (7, SMS_FORMULA.split(" + GELU")[0], _sms_eq2),
    "SMS law (Qu et al. 2024, eq. 3)": (11, SMS_FORMULA, _sms),
}


def aicc(log_residuals: ArrayLike, n_params: int) -> float:
    """Corrected Akaike criterion of a least-squares fit: ``n ln(RSS / n) + 2k + 2k(k + 1) / (n - k - 1)``
    (Burnham & Anderson 2002, eq. 2.13-2.14, Gaussian errors). Lower is better; differences
    above about 2 favour the lower.

    Args:
        log_residuals: ln predicted - ln measured loss, shape ``(n,)``.
        n_params: the law's free parameters k.

    Returns:
        AICc; ``nan`` when ``n <= k + 1`` (the correction is undefined).
    """
    r = np.asarray(log_residuals, dtype=float)
    n = len(r)
    if n <= n_params + 1:
        return float("nan")
    rss = max(float(np.sum(r**2)), 1e-300)
    return float(n * np.log(rss / n) + 2 * n_params + 2 * n_params * (n_params + 1) / (n - n_params - 1))


@dataclass(frozen=True)
class HeldOutScore:
    """One law refitted on part of the runs and scored on the others.

    Attributes:
        n_train, n_test: runs refitted on and predicted.
        rmse_log: rms of ln predicted - ln measured over the predicted runs.
        max_error: largest |predicted / measured - 1|.
        r2: 1 - SS_res / SS_tot of the loss over the predicted runs (can be < 0).
        reason: why there is no score (the refit failed); empty otherwise.
    """

    n_train: int
    n_test: int
    rmse_log: float = float("nan")
    max_error: float = float("nan")
    r2: float = float("nan")
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"n_train": self.n_train, "n_test": self.n_test, "rmse_log": json_float(self.rmse_log),
                "max_error": json_float(self.max_error), "r2": json_float(self.r2), "reason": self.reason}


@dataclass(frozen=True)
class LawScore:
    """One law on all the runs, and on each held-out check.

    Attributes:
        law: its name (a key of `REPEATED_DATA_LAWS`); formula: its formula.
        n_params: free parameters.
        n_points: runs fitted.
        rmse_log: in-sample rms of ln L residuals (nan when the fit failed).
        aicc: `aicc` of those residuals.
        held_out: check name -> `HeldOutScore`.
        reason: why the fit on all runs failed; empty otherwise.
    """

    law: str
    formula: str
    n_params: int
    n_points: int
    rmse_log: float = float("nan")
    aicc: float = float("nan")
    held_out: dict[str, HeldOutScore] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.law, "formula": self.formula, "n_params": self.n_params, "n_points": self.n_points,
                "rmse_log": json_float(self.rmse_log), "aicc": json_float(self.aicc),
                "held_out": {k: v.to_dict() for k, v in self.held_out.items()}, "reason": self.reason}


def held_out_splits(n: ArrayLike, d: ArrayLike, unique: ArrayLike) -> dict[str, np.ndarray]:
    """The two checks of a law of repeated data, as masks of the runs held out (shape ``(k,)``):

    - ``"more epochs"``: runs of more than half the most epochs (D / U_D) any run has: is the
      value of further repeats predicted from fewer?
    - ``"largest size"``: the runs of the largest N: does the law extrapolate in model size?

    A check is left out when it would hold out every run or none.
    """
    n, d, unique = (np.asarray(v, dtype=float) for v in (n, d, unique))
    epochs = d / unique
    splits = {"more epochs": epochs > epochs.max() / 2 + 1e-9, "largest size": n >= n.max()}
    return {name: mask for name, mask in splits.items() if 0 < mask.sum() < len(mask)}


def compare_repeated_data_laws(n: ArrayLike, d: ArrayLike, unique: ArrayLike, loss: ArrayLike,
                               splits: dict[str, np.ndarray] | None = None) -> list[LawScore]:
    """Fit each of `REPEATED_DATA_LAWS` to all runs, and refit it without each split's runs to predict them.

    Args:
        n: non-embedding parameters N, shape ``(k,)``, > 0.
        d: tokens trained on D (all epochs), shape ``(k,)``, > 0.
        unique: unique tokens U_D each run drew from, shape ``(k,)``, > 0.
        loss: losses (nats/token), shape ``(k,)``, > 0.
        splits: check name -> mask of the runs to hold out, shape ``(k,)``; default
            `held_out_splits`.

    Returns:
        One `LawScore` per law, in `REPEATED_DATA_LAWS` order; a law that cannot be fitted (too few
        runs, no single-epoch runs for the data-constrained law) carries its reason.

    Raises:
        ValueError: mismatched or non-positive inputs.
    """
    n_arr, d_arr, u_arr, loss_arr = positive_vectors(n=n, d=d, unique=unique, loss=loss)
    splits = held_out_splits(n_arr, d_arr, u_arr) if splits is None else splits
    scores = []
    for law, (n_params, formula, fitter) in REPEATED_DATA_LAWS.items():
        try:
            predict = fitter(n_arr, d_arr, u_arr, loss_arr)
        except (ValueError, RuntimeError) as err:
            scores.append(LawScore(law, formula, n_params, len(n_arr), reason=str(err)))
            continue
        residuals = np.log(predict(n_arr, d_arr, u_arr)) - np.log(loss_arr)
        held_out = {}
        for name, mask in splits.items():
            mask = np.asarray(mask, dtype=bool)
            train, test = ~mask, mask
            try:
                refit = fitter(n_arr[train], d_arr[train], u_arr[train], loss_arr[train])
            except (ValueError, RuntimeError) as err:
                held_out[name] = HeldOutScore(int(train.sum()), int(test.sum()), reason=str(err))
                continue
            predicted = refit(n_arr[test], d_arr[test], u_arr[test])
            measured = loss_arr[test]
            ss_tot = float(np.sum((measured - measured.mean()) ** 2))
            held_out[name] = HeldOutScore(
                int(train.sum()), int(test.sum()),
                rmse_log=float(np.sqrt(np.mean((np.log(predicted) - np.log(measured)) ** 2))),
                max_error=float(np.max(np.abs(predicted / measured - 1))),
                r2=1 - float(np.sum((predicted - measured) ** 2)) / ss_tot if ss_tot > 0 else float("nan"))
        scores.append(LawScore(law, formula, n_params, len(n_arr), rmse_log=float(np.sqrt(np.mean(residuals**2))),
                               aicc=aicc(residuals, n_params), held_out=held_out))
    return scores


__all__ = ["REPEATED_DATA_LAWS", "HeldOutScore", "LawScore", "aicc", "compare_repeated_data_laws",
           "held_out_splits"]
