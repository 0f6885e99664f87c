"""The whole analysis in memory: runs -> usable points -> fit -> figures, tables, report.

`run_analysis` returns everything a script needs to write; nothing here touches the disk
except through the loaders.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from analysis.compute_optimal import CONVENTION_COLUMNS, ComputeAnalysis, analyze_compute, per_note_loss
from analysis.compute_report import FRONTIER_PLOT_FILE, ISOFLOP_PLOT_FILE, LOSS_VS_D_PLOT_FILE, compute_section
from analysis.fit import FORMULA, N_PARAMS, PowerLawFit, fit_power_law
from analysis.loaders import load_eval_curves, load_local_runs
from analysis.plots import plot_frontier, plot_isoflop, plot_loss_vs_tokens, plot_scaling, plot_training_curves
from analysis.samples import PIANOROLL_FIGURE_FILE, load_sample_quality, pianoroll_comparison, samples_section

METRICS = ("eval_loss", "test_loss")
N_CONVENTIONS = CONVENTION_COLUMNS  # convention -> N column, shared with analysis.compute_optimal
N_CONVENTION_TEXT = {
    "non_embedding": "N = non-embedding parameters (Kaplan et al. 2020, sec. 2.1)",
    "total": "N = total parameters, embeddings included (Hoffmann et al. 2022 convention)",
    "flops": "N = training FLOPs per token / 6, counting the output head and attention (Porian et al. 2024)",
}
COMPUTE_BOOTSTRAP = 200  # refits of the joint law each take ~10 ms; 200 keep the analysis under a minute
SCALING_PLOT_FILE = "scaling_plot.png"
CURVES_PLOT_FILE = "training_curves.png"
# (column, header, format) of the summary table; units in the headers.
_TABLE_COLUMNS = [
    ("size", "size", "{}"),
    ("N", "N (non-emb.)", "{:.3g}"),
    ("N_total", "N total", "{:.3g}"),
    ("D", "D (tokens)", "{:.3g}"),
    ("C", "C (FLOPs)", "{:.3g}"),
    ("train_loss", "train loss", "{:.4f}"),
    ("eval_loss", "eval loss", "{:.4f}"),
    ("test_loss", "test loss", "{:.4f}"),
    ("eval_bits_per_note", "eval bits/note", "{:.3f}"),
    ("test_bits_per_note", "test bits/note", "{:.3f}"),
    ("tokens_per_second", "tokens/s", "{:,.0f}"),
    ("wall_clock_s", "wall clock (s)", "{:,.1f}"),
]


def _clean(value: Any) -> Any:
    """JSON-safe scalar: numpy scalars to Python, nan to None."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def split_runs(runs: pd.DataFrame, metric: str, n_column: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Separates runs a fit can use from the others, with the reason for each.

    A run is used when its status is ``"finished"`` and both ``n_column`` and ``metric`` are
    finite and > 0.

    Args:
        runs: Frame from `analysis.loaders.load_local_runs`.
        metric: Loss column, e.g. ``"eval_loss"``.
        n_column: ``"N"`` or ``"N_total"``.

    Returns:
        ``(used, not_used)``: the usable rows (sorted by ``n_column``) and one dict per other
        run with keys ``run_name``, ``size``, ``status``, ``reason`` and ``path``.
    """
    not_used, keep = [], []
    for _, row in runs.iterrows():
        if row["status"] != "finished":
            note = row["note"] if isinstance(row["note"], str) and row["note"] else ""
            reason = f"status is '{row['status']}'" + (f": {note}" if note else "")
        elif not row[n_column] > 0:
            reason = f"{n_column} is missing from run_summary.json"
        elif not row[metric] > 0:
            reason = f"{metric} is missing (null or absent in run_summary.json)"
        else:
            keep.append(True)
            continue
        keep.append(False)
        not_used.append({"run_name": row["run_name"], "size": row["size"], "status": row["status"],
                         "reason": reason, "path": row["path"]})
    used = runs[pd.Series(keep, index=runs.index, dtype=bool)]
    return used.sort_values(n_column, kind="stable").reset_index(drop=True), not_used


def summary_table(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON-ready dict per run: run_name, size, N, N_total, D, C, losses, tokens/s, wall clock.

    Args:
        runs: Rows of `analysis.loaders.load_local_runs` (usually the used ones).

    Returns:
        List of dicts in row order; counts (N, N_total, D) as int, missing values as None.
    """
    rows = []
    for _, run in runs.iterrows():
        row = {"run_name": run["run_name"]}
        row.update({col: _clean(run[col]) for col, _, _ in _TABLE_COLUMNS})
        for col in ("N", "N_total", "D"):
            if row[col] is not None:
                row[col] = int(row[col])
        rows.append(row)
    return rows


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """Renders `summary_table` rows as a GitHub markdown table (missing values as ``-``)."""
    lines = ["| " + " | ".join(h for _, h, _ in _TABLE_COLUMNS) + " |",
             "|" + "|".join("---" if c == "size" else "---:" for c, _, _ in _TABLE_COLUMNS) + "|"]
    for row in rows:
        cells = ["-" if row[c] is None else fmt.format(row[c]) for c, _, fmt in _TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    if not rows:
        lines.append("| " + " | ".join(["-"] * len(_TABLE_COLUMNS)) + " |")
    return "\n".join(lines) + "\n"


def _interval(ci: tuple[float, float] | list[float | None], fmt: str) -> str:
    lo, hi = ci
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "no interval"
    return f"[{fmt.format(lo)}, {fmt.format(hi)}]"


def render_report(
    *,
    study_dir: str | Path,
    metric: str,
    n_convention: str,
    fit: PowerLawFit | None,
    fit_reason: str | None,
    table_md: str,
    not_used: list[dict[str, Any]],
    n_runs_found: int,
    extra_sections: tuple[str, ...] = (),
    fit_subset_note: str = "",
) -> str:
    """Markdown report of a scaling-law analysis.

    Args:
        study_dir: Folder the runs were read from (shown in the report).
        metric: Loss column fitted (``"eval_loss"`` or ``"test_loss"``).
        n_convention: ``"non_embedding"``, ``"total"`` or ``"flops"``.
        fit: The fit, or None when none was possible.
        fit_reason: Why there is no fit (used when ``fit`` is None).
        table_md: Output of `table_markdown`.
        not_used: Second output of `split_runs`.
        n_runs_found: Number of runs (rows) the loader found.
        extra_sections: Further markdown sections appended in order (compute-optimal
            scaling, samples), "" for none.
        fit_subset_note: Says which token budget the L(N) fit used when runs have several.

    Returns:
        The report as markdown, linking to `SCALING_PLOT_FILE` and `CURVES_PLOT_FILE` in
        the same folder.
    """
    out = [f"# Scaling-law analysis: `{study_dir}`", ""]
    out += [f"- Loss metric: `{metric}` (nats/token)", f"- {N_CONVENTION_TEXT[n_convention]}",
            f"- Runs found: {n_runs_found}, usable: {n_runs_found - len(not_used)}"
            + ("" if fit is not None else " (no fit made)"), *([fit_subset_note] if fit_subset_note else []), "",
            "## Fit", ""]
    if fit is None:
        out += [f"**No fit was possible.** {fit_reason}", ""]
    else:
        pct = f"{100 * fit.confidence:g} %"
        out += [
            f"Form: `{FORMULA}`, least squares on log L (Kaplan et al. 2020, eq. 1.1, with the "
            "irreducible term c of Henighan et al. 2020 and Hoffmann et al. 2022, eq. 2).", "",
            "| parameter | estimate | " + pct + " interval |", "|---|---:|---:|",
            f"| alpha (α) | {fit.alpha:.4f} | {_interval(fit.alpha_ci, '{:.4f}')} |",
            f"| a | {fit.a:.4g} | {_interval(fit.a_ci, '{:.4g}')} |",
            f"| c (nats/token) | {fit.c:.4f} | {_interval(fit.c_ci, '{:.4f}')} |", "",
            f"**α = {fit.alpha:.4f}, "
            + (f"{pct} interval {_interval(fit.alpha_ci, '{:.4f}')}" if fit.n_bootstrap_used else "no interval")
            + f"** from {fit.n_points} runs.",
            f"Intervals: residual bootstrap in log space, {fit.n_bootstrap_used} of "
            f"{fit.n_bootstrap} refits succeeded (percentile intervals).",
            f"Fit quality in log space: RMSE {fit.rmse_log:.2e}, R² {fit.r2_log:.5f}.",
            "For scale: Kaplan et al. (2020) report α_N ≈ 0.076 for English text (no c term).", "",
        ]
        dof = fit.n_points - N_PARAMS
        if 0 < dof < 3 and fit.n_bootstrap_used:
            # Measured on synthetic data (6 vs 4-5 sizes, 1 % noise): 95 % intervals covered the
            # true alpha ~95 % of the time with 6 points but only ~70-85 % with 4-5.
            out += [f"**Caution:** {fit.n_points} runs leave {dof} degree(s) of freedom; the residual "
                    "bootstrap then understates the uncertainty (intervals too narrow). Treat them "
                    "as a lower bound, and add sizes for a firmer α.", ""]
        if fit.n_bootstrap_used == 0:
            out += [f"No interval: with {fit.n_points} points and {N_PARAMS} parameters the fit "
                    "leaves no residuals to resample (or bootstrapping was switched off); "
                    "train at least one more size for uncertainties.", ""]
    out += [f"![Final loss vs. model size]({SCALING_PLOT_FILE})", "",
            f"![Validation loss during training]({CURVES_PLOT_FILE})", "",
            "## Runs used", "", table_md, "## Runs not used", ""]
    out += [f"- `{r['run_name']}` ({r['path']}): {r['reason']}" for r in not_used] or ["None."]
    out += ["", "Loss per note = loss per token × tokens per note of that split (all predicted tokens, BOS/EOS "
            "included), in bits (÷ ln 2): unlike loss per token it compares studies with different "
            "tokenizations (REMI, TSD, BPE)."]
    return "\n".join(out) + "\n" + "".join("\n" + extra for extra in extra_sections if extra)


@dataclass
class AnalysisOutputs:
    """Everything an analysis produces, in memory; `scripts/analyze.py` writes it.

    Attributes:
        runs: All runs found (`analysis.loaders.load_local_runs`).
        used: Runs that entered the fit.
        not_used: One dict per other run, with the reason.
        fit: The fit, or None.
        fit_dict: JSON-ready fit summary; ``{"fitted": False, "reason": ...}`` without a fit.
        figures: File name -> Figure (`SCALING_PLOT_FILE`, `CURVES_PLOT_FILE`, and
            `analysis.samples.PIANOROLL_FIGURE_FILE` when runs have samples).
        sample_quality: `analysis.samples.load_sample_quality` of the used runs (may be empty).
        compute: The compute-optimal analysis (`analysis.compute_optimal.analyze_compute`) when
            the runs span several token budgets or IsoFLOP budgets, else None.
        table_rows: `summary_table` of the used runs.
        table_md: The same as markdown.
        report_md: The markdown report.
    """

    runs: pd.DataFrame
    used: pd.DataFrame
    not_used: list[dict[str, Any]]
    fit: PowerLawFit | None
    fit_dict: dict[str, Any]
    figures: dict[str, Figure] = field(default_factory=dict)
    table_rows: list[dict[str, Any]] = field(default_factory=list)
    table_md: str = ""
    report_md: str = ""
    sample_quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    compute: ComputeAnalysis | None = None


def run_analysis(
    study_dir: str | Path,
    *,
    metric: str = "eval_loss",
    n_convention: str = "non_embedding",
    n_bootstrap: int = 1000,
    seed: int = 0,
    exclude: Iterable[str | Path] = (),
) -> AnalysisOutputs:
    """Loads a study, fits ``L(N) = a * N**(-alpha) + c`` and builds plots, tables and report.

    Args:
        study_dir: Root folder of the study (runs at any depth).
        metric: ``"eval_loss"`` (default) or ``"test_loss"``.
        n_convention: ``"non_embedding"`` (default, column ``N``), ``"total"`` (``N_total``) or
            ``"flops"`` (``N_flops`` = FLOPs per token / 6).
        n_bootstrap: Bootstrap refits for the intervals (default 1000).
        seed: Bootstrap seed (default 0).
        exclude: Folders not to report as failed runs (e.g. the output folder).

    Returns:
        An `AnalysisOutputs`. With fewer than 3 usable runs ``fit`` is None, ``fit_dict`` says
        why, and plots, tables and report are still built.

    Raises:
        ValueError: Unknown ``metric`` or ``n_convention``.
        FileNotFoundError: No run_summary.json under ``study_dir`` (see `load_local_runs`).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")
    if n_convention not in N_CONVENTIONS:
        raise ValueError(f"n_convention must be one of {tuple(N_CONVENTIONS)}; got {n_convention!r}.")
    n_column = N_CONVENTIONS[n_convention]
    runs = load_local_runs(study_dir, exclude=exclude)
    for split, column in (("validation", "eval"), ("test", "test")):
        loss_column = "eval_loss" if split == "validation" else "test_loss"
        runs[f"{column}_bits_per_note"] = [per_note_loss(x, t)[1] for x, t in
                                           zip(runs[loss_column], runs[f"tokens_per_note_{split}"], strict=True)]
    usable, not_used = split_runs(runs, metric, n_column)
    # L(N) needs one token budget: the D shared by the most runs (ties: the largest D); runs on
    # other budgets go to the compute-optimal section instead
    used, fit_subset_note = usable, ""
    roles = usable["budget_role"].fillna("")
    if (roles.isin(["grid", "isoflop"])).any() and (roles == "main").any():
        used = usable[roles == "main"]  # the study's own max_tokens, as scripts/run_study.py recorded it
    elif usable["D"].nunique() > 1:  # runs without roles: the D shared by the most runs (ties: the largest)
        counts = usable.groupby("D").size()
        main_d = max(counts.index, key=lambda d: (counts[d], d))
        used = usable[usable["D"] == main_d]
    if len(used) < len(usable):
        d_text = ", ".join(f"{d:,.0f}" for d in sorted(used["D"].unique()))
        fit_subset_note = (f"- L(N) is fitted on the {len(used)} runs of the main budget (D = {d_text} tokens); the "
                           f"other {len(usable) - len(used)} runs (other budgets) enter the compute-optimal section.")

    fit, reason = None, None
    if len(used) < N_PARAMS:
        reason = (f"Fewer than 3 finished runs have a value for {metric} (found {len(used)}); "
                  f"`{FORMULA}` has {N_PARAMS} free parameters. Train more sizes "
                  "(`python scripts/run_study.py ...`) and rerun this analysis.")
    else:
        try:
            fit = fit_power_law(used[n_column], used[metric], n_bootstrap=n_bootstrap, seed=seed)
        except (ValueError, RuntimeError) as err:
            reason = f"The fit failed: {err}"
    context = {"metric": metric, "n_convention": n_convention, "n_column": n_column,
               "runs_used": used["run_name"].tolist()}
    fit_dict = ({"fitted": True, **context, **fit.to_dict()} if fit is not None
                else {"fitted": False, "reason": reason, **context})

    all_curves = load_eval_curves(study_dir)  # read once: L(N) curves and the frontier plot share it
    curves = all_curves[all_curves["run_name"].isin(used["run_name"])]
    rows = summary_table(used)
    table_md = table_markdown(rows)
    figures = {SCALING_PLOT_FILE: plot_scaling(used, fit, metric, n_column),
               CURVES_PLOT_FILE: plot_training_curves(curves)}
    compute, compute_md = None, ""
    if usable["D"].nunique() > 1 or (usable["compute_budget"].fillna(0) > 0).any():
        compute = analyze_compute(usable, metric=metric, convention=n_convention,
                                  n_bootstrap=min(n_bootstrap, COMPUTE_BOOTSTRAP), seed=seed)
        labels = {"non_embedding": "non-embedding parameters N", "total": "total parameters N (incl. embeddings)",
                  "flops": "N = FLOPs per token / 6 (incl. head and attention)"}
        figures[ISOFLOP_PLOT_FILE] = plot_isoflop(compute.isoflop, compute.runs, metric, labels[n_convention])
        figures[FRONTIER_PLOT_FILE] = plot_frontier(
            compute.runs, all_curves[all_curves["run_name"].isin(compute.runs["run_name"])], compute.loss_vs_c,
            metric, f"compute C (FLOPs, {n_convention} convention)", extrapolate_to=100 * compute.max_c)
        figures[LOSS_VS_D_PLOT_FILE] = plot_loss_vs_tokens(compute.runs, compute.loss_vs_d, metric)
        compute_md = compute_section(compute, sum(1 for v in compute.loss_vs_d.values() if not isinstance(v, str)))
    quality = load_sample_quality(usable)
    samples_md = ""
    if not quality.empty:
        pianorolls = pianoroll_comparison(quality)
        if pianorolls is not None:
            figures[PIANOROLL_FIGURE_FILE] = pianorolls
        samples_md = samples_section(quality, PIANOROLL_FIGURE_FILE if pianorolls is not None else None)
    report_md = render_report(study_dir=study_dir, metric=metric, n_convention=n_convention, fit=fit,
                              fit_reason=reason, table_md=table_md, not_used=not_used,
                              n_runs_found=len(runs), extra_sections=(compute_md, samples_md),
                              fit_subset_note=fit_subset_note)
    return AnalysisOutputs(runs=runs, used=used, not_used=not_used, fit=fit, fit_dict=fit_dict,
                           figures=figures, table_rows=rows, table_md=table_md, report_md=report_md,
                           sample_quality=quality, compute=compute)
