"""Beyond L(N): L(D), L(C), the compute frontier, and compute-optimal allocation.

Takes the finished runs of a study (any mix of sizes and token budgets) and answers: for a
budget of C FLOPs, which N and D give the lowest loss? Pure functions over a DataFrame from
`analysis.loaders.load_local_runs`; fits come from `analysis.power_law`, `analysis.chinchilla`,
`analysis.isoflop` and `analysis.frontier`.

Counting conventions (what N and C mean) change the fitted exponents, so every fit here is
made under a named convention:

- ``non_embedding``: N = non-embedding parameters, C = 6 N D (Kaplan et al. 2020, sec. 2.1).
- ``total``: N = all parameters, embeddings included, C = 6 N D (Hoffmann et al. 2022).
- ``flops``: C = (FLOPs per token) x D, with FLOPs per token = 6 N' + 12 n_layer d T, N'
  counting the output head (nanoGPT / PaLM appendix B), and N = FLOPs per token / 6. Porian
  et al. 2024 ("Resolving discrepancies in compute-optimal scaling of language models")
  trace most of the Kaplan-vs-Chinchilla gap to ignoring the head's and attention's FLOPs
  at small scale, which this convention counts.

Final losses only enter the fits. The eval losses logged during a run are biased upwards
(the cosine schedule has not decayed yet; Hoffmann et al. 2022, sec. 3.1 and fig. A1), so
they are drawn as curves for context and never fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.chinchilla import ChinchillaFit, fit_chinchilla
from analysis.data_constrained import DataConstrainedFit, fit_data_constrained
from analysis.frontier import compute_frontier
from analysis.intervals import t_quantile
from analysis.isoflop import IsoFlopFit, fit_isoflop
from analysis.law_comparison import LawScore, compare_repeated_data_laws
from analysis.power_law import PowerLawFit, fit_power_law
from analysis.prediction_check import HoldoutCheck, no_check
from analysis.shared import json_safe
from analysis.sms_law import SMSLawFit, fit_sms_law

# a series of runs over more epochs of one U_D "turns up" when its last run ends this much above its
# lowest: rises below it are read as flat (the run-to-run noise of the demo's runs is of this order)
TURN_UP_RISE = 0.01
# convention -> the N column of analysis.loaders.load_local_runs (N_flops = FLOPs per token / 6)
CONVENTION_COLUMNS = {"non_embedding": "N", "total": "N_total", "flops": "N_flops"}
CONVENTIONS = tuple(CONVENTION_COLUMNS)
CONVENTION_TEXT = {
    "non_embedding": "N = non-embedding parameters, C = 6ND (Kaplan et al. 2020)",
    "total": "N = all parameters incl. embeddings, C = 6ND (Hoffmann et al. 2022)",
    "flops": "C = FLOPs per token (incl. output head and attention) x D, N = C / 6D (Porian et al. 2024)",
}
PREDICTION_FACTORS = (10.0, 100.0)  # budgets beyond the largest run, for the report's table


def convention_columns(runs: pd.DataFrame, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C)`` of each run under a counting convention.

    Args:
        runs: frame with ``D`` and the N columns of `CONVENTION_COLUMNS`.
        convention: one of `CONVENTIONS`.

    Returns:
        Two float64 arrays of shape ``(len(runs),)``: N, and C = 6 N D (for ``flops``, FLOPs
        per token x D); nan where the run lacks the field.

    Raises:
        ValueError: unknown convention.
    """
    if convention not in CONVENTION_COLUMNS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}.")
    n = runs[CONVENTION_COLUMNS[convention]].to_numpy(float)
    return n, 6.0 * n * runs["D"].to_numpy(float)


@dataclass
class ComputeAnalysis:
    """Everything the compute-optimal part of the report needs.

    Attributes:
        metric: loss column used (``eval_loss`` or ``test_loss``), nats/token.
        convention: the primary counting convention (the plots and predictions use it).
        runs: the runs used, with columns ``N_x`` and ``C_x`` (N and C under ``convention``)
            and ``frontier`` (bool).
        loss_vs_d: size -> `PowerLawFit` of L(D) = a D^-beta + c over that size's token
            budgets, or the reason there is none (fewer than 3 budgets).
        loss_vs_c: `PowerLawFit` of L(C) over the frontier runs, or None.
        loss_vs_c_reason: why there is no L(C) fit.
        isoflop: `IsoFlopFit` (Chinchilla approach 2), or None.
        isoflop_reason: why there is none.
        chinchilla: convention -> `ChinchillaFit` (approach 3), for each convention that could
            be fitted.
        chinchilla_reason: convention -> why it could not.
        predictions: rows of the predictions table (see `predictions_table`).
        max_c: the largest run's C under ``convention`` (FLOPs).
        holdout: the joint law of the primary convention refitted without the largest compute
            budget, one check per held-out run (`holdout_largest_budget`).
    """

    metric: str
    convention: str
    runs: pd.DataFrame
    loss_vs_d: dict[str, PowerLawFit | str] = field(default_factory=dict)
    loss_vs_c: PowerLawFit | None = None
    loss_vs_c_reason: str = ""
    isoflop: IsoFlopFit | None = None
    isoflop_reason: str = ""
    chinchilla: dict[str, ChinchillaFit] = field(default_factory=dict)
    chinchilla_reason: dict[str, str] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    max_c: float = math.nan
    holdout: list[HoldoutCheck] = field(default_factory=list)
    data_constrained: DataConstrainedFit | None = None
    data_constrained_reason: str = ""
    data_constrained_holdout: list[dict[str, Any]] = field(default_factory=list)
    repeated_runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    sms_law: SMSLawFit | None = None
    sms_law_reason: str = ""
    law_comparison: list[LawScore] = field(default_factory=list)
    turning_points: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (fits as their ``to_dict``; reasons as strings; nan -> None)."""
        return json_safe({
            "metric": self.metric, "convention": self.convention, "max_c": self.max_c,
            "loss_vs_d": {k: ({**v.to_dict(), "formula": "L(D) = a * D**(-alpha) + c"} if isinstance(v, PowerLawFit)
                              else {"reason": v}) for k, v in self.loss_vs_d.items()},
            "loss_vs_c": ({**self.loss_vs_c.to_dict(), "formula": "L(C) = a * C**(-alpha) + c"} if self.loss_vs_c
                          else {"reason": self.loss_vs_c_reason}),
            "isoflop": self.isoflop.to_dict() if self.isoflop else {"reason": self.isoflop_reason},
            "chinchilla": {k: v.to_dict() for k, v in self.chinchilla.items()},
            "chinchilla_reason": self.chinchilla_reason,
            "predictions": self.predictions,
            "holdout": [c.to_dict() for c in self.holdout],
            "data_constrained": (self.data_constrained.to_dict() if self.data_constrained
                                 else {"reason": self.data_constrained_reason}),
            "data_constrained_holdout": self.data_constrained_holdout,
            "repeated_runs": self.repeated_runs["run_name"].tolist() if len(self.repeated_runs) else [],
            "sms_law": self.sms_law.to_dict() if self.sms_law else {"reason": self.sms_law_reason},
            "law_comparison": [row.to_dict() for row in self.law_comparison],
            "turning_points": self.turning_points,
        })


def analyze_compute(runs: pd.DataFrame, *, metric: str = "eval_loss", convention: str = "non_embedding",
                    n_bootstrap: int = 200, seed: int = 0) -> ComputeAnalysis:
    """L(D), L(C), frontier, IsoFLOP (approach 2) and joint-law (approach 3) fits.

    Args:
        runs: finished runs (any sizes and budgets) with ``N``, ``N_total``, ``N_flops``,
            ``D``, ``compute_budget`` and ``metric`` columns (`analysis.loaders.load_local_runs`).
        metric: loss column, nats/token.
        convention: primary counting convention (one of `CONVENTIONS`); approach 3 is fitted
            under every convention the runs allow.
        n_bootstrap: bootstrap refits per fit (0: no intervals).
        seed: bootstrap seed.

    Returns:
        A `ComputeAnalysis`; each part that cannot be fitted carries its reason instead.

    Raises:
        ValueError: unknown convention.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}.")
    runs = runs[np.isfinite(runs[metric].to_numpy(float)) & (runs[metric].to_numpy(float) > 0)].copy()
    runs["N_x"], runs["C_x"] = convention_columns(runs, convention)
    # a repeated token is not a new one (Muennighoff et al. 2023): runs over several epochs are fitted
    # only by the laws of repeated data, the laws below would count their repeats as new data
    repeated = (runs["epochs"].to_numpy(float) > 1 + 1e-9) if "epochs" in runs else np.zeros(len(runs), bool)
    all_runs, runs = runs, runs[~repeated].copy()
    c_x = runs["C_x"].to_numpy(float)
    loss = runs[metric].to_numpy(float)
    result = ComputeAnalysis(metric=metric, convention=convention, runs=runs,
                             max_c=float(np.nanmax(c_x)) if len(runs) else math.nan)

    # --- L(D) per size, over its token budgets (final losses only)
    for size, group in runs.groupby("size", sort=False):
        if group["D"].nunique() < 3:
            result.loss_vs_d[str(size)] = f"{group['D'].nunique()} token budget(s); L(D) needs 3 or more"
            continue
        try:
            result.loss_vs_d[str(size)] = fit_power_law(group["D"], group[metric])
        except (ValueError, RuntimeError) as err:
            result.loss_vs_d[str(size)] = f"fit failed: {err}"

    # --- compute frontier and L(C) over it
    finite = np.isfinite(c_x)
    runs["frontier"] = False
    if finite.sum():
        idx = np.flatnonzero(finite)[compute_frontier(c_x[finite], loss[finite])]
        runs.iloc[idx, runs.columns.get_loc("frontier")] = True
        if len(idx) >= 3:
            try:
                result.loss_vs_c = fit_power_law(c_x[idx], loss[idx])
            except (ValueError, RuntimeError) as err:
                result.loss_vs_c_reason = f"fit failed: {err}"
        else:
            result.loss_vs_c_reason = (f"{len(idx)} run(s) on the compute frontier; L(C) needs 3 or more "
                                       "(add sizes or budgets)")

    # --- approach 2: IsoFLOP profiles (runs labelled with their planned budget)
    labelled = runs[runs["compute_budget"].fillna(0).to_numpy(float) > 0]
    if labelled.empty:
        result.isoflop_reason = ("no IsoFLOP runs (set isoflop_budgets in the study file; "
                                 "scripts/run_study.py trains each size on D = C/6N)")
    else:
        # each profile's budget under this convention: the mean C_x of its runs (= the label for non_embedding)
        budget = labelled.groupby("compute_budget")["C_x"].transform("mean").to_numpy(float)
        try:
            result.isoflop = fit_isoflop(labelled["N_x"], labelled[metric], budget, n_bootstrap=n_bootstrap, seed=seed)
        except ValueError as err:
            result.isoflop_reason = str(err)

    # --- approach 3: the joint law under every convention
    for conv in CONVENTIONS:
        n_c, _ = convention_columns(runs, conv)
        ok = np.isfinite(n_c) & (n_c > 0)
        try:
            result.chinchilla[conv] = fit_chinchilla(n_c[ok], runs["D"].to_numpy(float)[ok], loss[ok],
                                                     n_bootstrap=n_bootstrap, seed=seed)
        except (ValueError, RuntimeError) as err:
            result.chinchilla_reason[conv] = str(err)

    if repeated.any():
        result.repeated_runs = all_runs[np.isfinite(all_runs["U_D"].to_numpy(float))].copy()
    _fit_repeated_data(result, metric, n_bootstrap, seed)
    result.predictions = predictions_table(result)
    if result.chinchilla.get(convention) is not None:
        result.holdout = holdout_largest_budget(runs, metric, convention, n_bootstrap=n_bootstrap, seed=seed)
    return result


def _fit_repeated_data(result: ComputeAnalysis, metric: str, n_bootstrap: int, seed: int) -> None:
    """The laws of repeated data on ``result.repeated_runs``: Muennighoff et al. (2023)'s
    data-constrained law (`analysis.data_constrained`) and its check (refitted on the runs of at
    most half the most epochs, it predicts the others), MuPT's SMS law (`analysis.sms_law`), the
    comparison of the laws (`analysis.law_comparison`) and where each size's loss turned up."""
    runs = result.repeated_runs
    if not len(runs):
        result.data_constrained_reason = ("no run repeats its data (set unique_tokens with epochs, or repeat_data, "
                                          "in the study file)")
        result.sms_law_reason = result.data_constrained_reason
        return
    result.turning_points = turning_points(runs, metric)
    columns = (runs["N_x"].to_numpy(float), runs["D"].to_numpy(float), runs["U_D"].to_numpy(float),
               runs[metric].to_numpy(float))
    try:
        result.sms_law = fit_sms_law(*columns, n_bootstrap=n_bootstrap, seed=seed)
    except (ValueError, RuntimeError) as err:
        result.sms_law_reason = str(err)
    result.law_comparison = compare_repeated_data_laws(*columns)
    try:
        result.data_constrained = fit_data_constrained(*columns, n_bootstrap=n_bootstrap, seed=seed)
    except (ValueError, RuntimeError) as err:
        result.data_constrained_reason = str(err)
        return
    epochs = runs["epochs"].to_numpy(float)
    early = epochs <= epochs.max() / 2
    try:
        refit = fit_data_constrained(*(c[early] for c in columns), n_bootstrap=0)
    except (ValueError, RuntimeError) as err:
        result.data_constrained_holdout = [{"reason": f"no refit on the runs of at most {epochs.max() / 2:g} "
                                                      f"epochs: {err}"}]
        return
    predicted = refit.predict(*(c[~early] for c in columns[:3]))
    result.data_constrained_holdout = [
        {"run_name": name, "epochs": float(e), "loss": float(measured), "predicted": float(p),
         "error": float(p / measured - 1)}
        for name, e, measured, p in zip(runs["run_name"][~early], epochs[~early], columns[3][~early], predicted,
                                        strict=True)]


def turning_points(runs: pd.DataFrame, metric: str) -> list[dict[str, Any]]:
    """Where each size's validation loss turns up on each unique-data size: the epochs of its
    lowest final loss among the runs of that size and U_D.

    Args:
        runs: runs with ``size``, ``N_x``, ``U_D``, ``epochs`` and ``metric`` columns.
        metric: loss column, nats/token.

    Returns:
        One dict per (size, U_D) with two or more epoch counts, one of them above 1, ordered by N
        then U_D: ``size``, ``N``, ``U_D``, ``epochs`` (the counts trained), ``losses``,
        ``best_epochs``, ``rise`` (the last run's loss over the lowest, minus 1) and ``turned_up``:
        whether the last run ended more than `TURN_UP_RISE` above the lowest (a smaller rise is read
        as flat, since the run-to-run noise is of that order).
    """
    out = []
    for (n, unique), group in runs.sort_values(["N_x", "U_D", "epochs"]).groupby(["N_x", "U_D"], sort=False):
        if group["epochs"].nunique() < 2 or group["epochs"].max() <= 1 + 1e-9:
            continue
        losses = group[metric].to_numpy(float)
        best = int(np.argmin(losses))
        rise = float(losses[-1] / losses[best] - 1)
        out.append({"size": str(group["size"].iloc[0]), "N": float(n), "U_D": float(unique),
                    "epochs": group["epochs"].astype(float).tolist(), "losses": losses.tolist(),
                    "best_epochs": float(group["epochs"].iloc[best]), "rise": rise, "turned_up": rise > TURN_UP_RISE})
    return out


def holdout_largest_budget(runs: pd.DataFrame, metric: str, convention: str, *, n_bootstrap: int = 200,
                           seed: int = 0, confidence: float = 0.95) -> list[HoldoutCheck]:
    """Refit the joint law without the largest compute budget and predict each of its runs.

    Held out: every run whose C is at least the smallest C among the runs of the largest
    IsoFLOP budget (or, without IsoFLOP labels, the runs at the largest C), so that the refit
    has only less compute than what it predicts. Each interval is the refit's bootstrap band at
    that run's (N, D) widened, in log space and in quadrature, by ``t(n - 5) * s`` with ``s``
    the refit's residual scatter, so that it covers a new run's noise as well as the law's
    uncertainty.

    Args:
        runs: finished runs (`analyze_compute`'s frame, with ``N_x`` and ``C_x``).
        metric: loss column.
        convention: counting convention of N.
        n_bootstrap: bootstrap refits of the refitted law.
        seed: bootstrap seed.
        confidence: level of the intervals.

    Returns:
        One `HoldoutCheck` per held-out run, or a single one whose ``reason`` says why there is none.
    """
    budgets = runs["compute_budget"].fillna(0).to_numpy(float)
    c_x = runs["C_x"].to_numpy(float)
    # every run of at least the held-out compute leaves the refit (a main-budget run can spend
    # more than the largest IsoFLOP budget), so the check extrapolates in C
    if (budgets > 0).any():
        threshold = float(np.nanmin(c_x[budgets == budgets.max()]))
        what = (f"every run of C >= {threshold:.3g} FLOPs (the largest IsoFLOP budget, {budgets.max():.3g}, "
                "and above)")
    else:
        threshold = float(np.nanmax(c_x))
        what = f"the largest compute (C = {threshold:.3g} FLOPs)"
    top = c_x >= threshold * (1 - 1e-6)
    n, d, loss = runs["N_x"].to_numpy(float), runs["D"].to_numpy(float), runs[metric].to_numpy(float)
    rest = ~top
    law = f"L(N, D) ({convention})"
    try:
        fit = fit_chinchilla(n[rest], d[rest], loss[rest], n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
    except (ValueError, RuntimeError) as err:
        return [no_check(law, f"refitting without {what} failed: {err}")]
    dof = fit.n_points - 5
    noise = fit.rmse_log * math.sqrt(fit.n_points / dof) if dof > 0 else math.nan
    t = t_quantile(dof, confidence) if dof > 0 else math.nan
    checks = []
    for i in np.flatnonzero(top):
        predicted = float(np.asarray(fit.predict(n[i], d[i])).item())
        lo, hi = (float(np.asarray(v).item()) for v in fit.predict_band(n[i], d[i]))
        if math.isfinite(lo) and math.isfinite(noise):
            centre = math.log(predicted)
            lo = math.exp(centre - math.hypot(centre - math.log(lo), t * noise))
            hi = math.exp(centre + math.hypot(math.log(hi) - centre, t * noise))
        else:
            lo = hi = math.nan
        checks.append(HoldoutCheck(
            law=law, held_out=(f"{what}: run {runs['run_name'].iloc[i]} (N = {n[i]:.3g}, D = {d[i]:.3g}, "
                               f"C = {c_x[i]:.3g}; the refit's largest C is {np.nanmax(c_x[rest]):.3g})"),
            run_names=(str(runs["run_name"].iloc[i]),), x=float(c_x[i]), measured=float(loss[i]), predicted=predicted,
            interval=(lo, hi), confidence=confidence, fitted_on=int(rest.sum()),
            interval_method="bootstrap band of the refitted law widened by the runs' residual scatter",
            reason="" if math.isfinite(lo) else "the refit has no bootstrap band (too few runs)"))
    return checks


def predictions_table(result: ComputeAnalysis, factors: tuple[float, ...] = PREDICTION_FACTORS) -> list[dict[str, Any]]:
    """Compute-optimal N, D and predicted loss at budgets ``factor`` x the largest run.

    Uses the joint law of the primary convention (approach 3) for N_opt, D_opt and L, with
    bootstrap intervals, and the IsoFLOP fit (approach 2) for a second N_opt, D_opt.

    Returns:
        One dict per factor: ``factor``, ``C`` (FLOPs), ``N_opt``, ``N_opt_ci``, ``D_opt``,
        ``D_opt_ci``, ``loss``, ``loss_ci`` (approach 3; None when not fitted) and
        ``N_opt_isoflop``, ``D_opt_isoflop`` (approach 2; None when not fitted).
    """
    rows = []
    if not math.isfinite(result.max_c):
        return rows
    joint = result.chinchilla.get(result.convention)
    for factor in factors:
        c = factor * result.max_c
        row: dict[str, Any] = {"factor": factor, "C": c, "N_opt": None, "N_opt_ci": None, "D_opt": None,
                               "D_opt_ci": None, "loss": None, "loss_ci": None,
                               "N_opt_isoflop": None, "D_opt_isoflop": None}
        if joint is not None:
            n_opt, d_opt = (float(np.asarray(x).item()) for x in joint.compute_optimal(c))
            (n_lo, n_hi), (d_lo, d_hi) = joint.compute_optimal_band(c)
            lo, hi = joint.predict_band(n_opt, d_opt)
            row.update(N_opt=n_opt, D_opt=d_opt, loss=float(np.asarray(joint.predict(n_opt, d_opt)).item()),
                       N_opt_ci=_pair(n_lo, n_hi), D_opt_ci=_pair(d_lo, d_hi), loss_ci=_pair(lo, hi))
        if result.isoflop is not None:
            row["N_opt_isoflop"] = float(np.asarray(result.isoflop.predict_n_opt(c)).item())
            row["D_opt_isoflop"] = float(np.asarray(result.isoflop.predict_d_opt(c)).item())
        rows.append(row)
    return rows


def _pair(lo: Any, hi: Any) -> list[float | None] | None:
    lo, hi = float(np.asarray(lo).item()), float(np.asarray(hi).item())
    return [lo, hi] if math.isfinite(lo) and math.isfinite(hi) else None


def per_note_loss(loss_nats_per_token: float, tokens_per_note: float) -> tuple[float, float]:
    """Loss per note: ``(nats, bits)`` = loss per token x tokens per note (and / ln 2).

    Tokenizations differ in tokens per note (REMI vs BPE vs TSD), so loss per token does not
    compare across them; loss per note does, like bits per byte for text.

    Args:
        loss_nats_per_token: mean cross-entropy, nats/token.
        tokens_per_note: predicted tokens of the split (BOS/EOS included) per note.

    Returns:
        ``(nats_per_note, bits_per_note)``; nan when either input is missing.
    """
    nats = float(loss_nats_per_token) * float(tokens_per_note)
    return nats, nats / math.log(2)
