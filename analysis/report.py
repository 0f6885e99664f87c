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

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.compute_optimal import CONVENTION_COLUMNS, ComputeAnalysis, analyze_compute, per_note_loss
from analysis.compute_report import (
    EPOCHS_PLOT_FILE,
    FRONTIER_PLOT_FILE,
    ISOFLOP_PLOT_FILE,
    LOSS_VS_D_PLOT_FILE,
    compute_section,
)
from analysis.loaders import load_eval_curves, load_local_runs
from analysis.lr_sweep import RULE_FORMULA, LrRule, SizeSweep, fit_lr_rule, sweeps_by_size
from analysis.noise import SeedNoise, seed_noise
from analysis.plots import (
    plot_frontier,
    plot_isoflop,
    plot_loss_vs_epochs,
    plot_loss_vs_tokens,
    plot_lr_sweeps,
    plot_scaling,
    plot_training_curves,
)
from analysis.power_law import (
    FORMULA,
    INTERVAL_METHOD,
    N_PARAMS,
    AlphaCoverage,
    PowerLawFit,
    fit_power_law,
    measure_alpha_coverage,
)
from analysis.prediction_check import HoldoutCheck, holdout_largest_size
from analysis.samples import PIANOROLL_FIGURE_FILE, load_sample_quality, pianoroll_comparison, samples_section
from analysis.shared import json_safe

METRICS = ("eval_loss", "test_loss")
N_CONVENTIONS = CONVENTION_COLUMNS  # convention -> N column, shared with analysis.compute_optimal
N_CONVENTION_TEXT = {
    "non_embedding": "N = non-embedding parameters (Kaplan et al. 2020, sec. 2.1)",
    "total": "N = total parameters, embeddings included (Hoffmann et al. 2022 convention)",
    "flops": "N = training FLOPs per token / 6, counting the output head and attention (Porian et al. 2024)",
}
COMPUTE_BOOTSTRAP = 200  # refits of the joint law each take ~10 ms; 200 keep the analysis under a minute
# Synthetic studies for the measured coverage of the alpha interval (~0.1 s each on one core):
# 200 give the coverage to about +-1.6 percentage points.
COVERAGE_STUDIES = 200
SCALING_PLOT_FILE = "scaling_plot.png"
LR_PLOT_FILE = "learning_rates.png"
CURVES_PLOT_FILE = "training_curves.png"
# The summary table's columns in order, grouped by kind: the (column, header) pairs of a kind
# share one cell format (names as they are, counts to 3 digits, losses to 4 decimals, bits to 3).
# Units are in the headers.
_TABLE_KINDS = [
    ((("run_name", "run"), ("size", "size")), "{}"),
    ((("N", "N (non-emb.)"), ("N_total", "N total"), ("D", "D (tokens)"), ("C", "C (FLOPs)")), "{:.3g}"),
    ((("train_loss", "train loss"), ("eval_loss", "eval loss"), ("test_loss", "test loss")), "{:.4f}"),
    ((("eval_bits_per_note", "eval bits/note"), ("test_bits_per_note", "test bits/note")), "{:.3f}"),
    ((("tokens_per_second", "tokens/s"),), "{:,.0f}"),
    ((("wall_clock_s", "wall clock (s)"),), "{:,.1f}"),
]
# (column, header, format), one per column of the table
_TABLE_COLUMNS = [(column, header, fmt) for pairs, fmt in _TABLE_KINDS for column, header in pairs]


def split_runs(runs: pd.DataFrame, metric: str, n_column: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Separates runs a fit can use from the others, with the reason for each.

    A run is used when its status is ``"finished"``, it is not the stable phase of a
    warmup-stable-decay schedule (``budget_role`` ``stable``), and both ``n_column`` and
    ``metric`` are finite and > 0.

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
        elif row.get("budget_role") == "stable":
            reason = ("the stable phase of a warmup-stable-decay schedule, at its peak learning rate: its cooldown "
                      "branches are the runs of its budgets")
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
        row = {col: json_safe(run[col]) for col, _, _ in _TABLE_COLUMNS}
        for col in ("N", "N_total", "D"):
            if row[col] is not None:
                row[col] = int(row[col])
        rows.append(row)
    return rows


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """Renders `summary_table` rows as a GitHub markdown table (missing values as ``-``)."""
    lines = ["| " + " | ".join(h for _, h, _ in _TABLE_COLUMNS) + " |",
             "|" + "|".join("---" if c in ("run_name", "size") else "---:" for c, _, _ in _TABLE_COLUMNS) + "|"]
    for row in rows:
        cells = ["-" if row[c] is None else fmt.format(row[c]) for c, _, fmt in _TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    if not rows:
        lines.append("| " + " | ".join(["-"] * len(_TABLE_COLUMNS)) + " |")
    return "\n".join(lines) + "\n"


def _interval(ci: tuple[float, float] | list[float | None], fmt: str) -> str:
    """``[lo, hi]``; an unbounded side (inf) as ∞; "no interval" when there is none (nan or None)."""
    lo, hi = ci
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "no interval"
    return f"[{fmt.format(lo)}, {'∞' if math.isinf(hi) else fmt.format(hi)}]"


def _pct(x: float) -> str:
    return f"{100 * x:+.2f} %"


def _holdout_lines(check: HoldoutCheck | None, joint_checks: list[HoldoutCheck] = ()) -> list[str]:
    """The report's opening section: laws refitted without their largest runs, against those runs."""
    out = ["## Prediction check", ""]
    if check is None:
        return out + ["No L(N) fit, so nothing to check.", ""]
    for c in (check, *joint_checks):
        if not math.isfinite(c.predicted):
            out.append(f"- **{c.law}**: no check: {c.reason}.")
            continue
        lo, hi = c.interval
        pct = f"{100 * c.confidence:g} %"
        verdict = ("no interval to compare with" if c.inside is None
                   else "**inside** the interval" if c.inside else "**outside** the interval")
        out.append(f"- **{c.law}** refitted without {c.held_out} on the other {c.fitted_on} runs predicts "
                   f"**{c.predicted:.4f}** nats/token" + (f", {pct} interval [{lo:.4f}, {hi:.4f}]"
                                                          if c.inside is not None else "")
                   + f"; measured **{c.measured:.4f}**: error {_pct(c.rel_error)}, {verdict}."
                   + (f" Interval: {c.interval_method}." if c.interval_method and c.inside is not None else "")
                   + (f" ({c.reason}.)" if c.reason else ""))
    out += ["", "A law that misses the run it was not fitted on should not be used to plan a bigger one.", ""]
    return out


def _lr_lines(sweeps: dict[str, SizeSweep], rule: LrRule | str | None, used: pd.DataFrame,
              n_column: str, noise: SeedNoise | None = None) -> list[str]:
    """The learning-rate section: each size's sweep, the edge warnings and the rule."""
    sources = used.groupby("size")["lr_source"].first().to_dict() if len(used) else {}
    lrs = used.groupby("size")["learning_rate"].first().to_dict() if len(used) else {}
    out = ["## Learning rates", ""]
    if not sweeps and not any(v == "rule" for v in sources.values()):
        rates = sorted({f"{v:.3g}" for v in lrs.values() if isinstance(v, float) and math.isfinite(v)})
        return out + [f"Every size trained at {' / '.join(rates) or 'an unrecorded rate'} (no sweep). A rate that "
                      "suits one width and starves another bends L(N) (Porian et al. 2024): set `lr_sweep_factors` "
                      "in the study file to sweep.", ""]
    out += [f"![Loss vs. learning rate]({LR_PLOT_FILE})", "",
            "| size | N | learning rates tried (loss) | best | lr* (parabola) | source of the rate used |",
            "|---|---:|---|---:|---:|---|"]
    for size in used.sort_values(n_column)["size"].unique():
        sweep = sweeps.get(str(size))
        n = float(used.loc[used["size"] == size, n_column].iloc[0])
        if sweep is None:
            lr = lrs.get(size, math.nan)
            out.append(f"| {size} | {n:.3g} | - | - | - | {sources.get(size) or 'fixed'}: {lr:.3g} |")
            continue
        tried = ", ".join(f"{lr:.3g} ({loss:.4f})" for lr, loss in zip(sweep.learning_rates, sweep.losses, strict=True))
        out.append(f"| {size} | {n:.3g} | {tried} | {sweep.best_lr:.3g} | {sweep.lr_star:.3g} | swept |")
    out.append("")
    if noise is not None and noise.measured and sweeps:
        close = [f"{s.size} ({100 * (sorted(s.losses)[1] / s.best_loss - 1):.1f} %)" for s in sweeps.values()
                 if len(s.losses) > 1 and sorted(s.losses)[1] / s.best_loss - 1 < noise.sigma_log]
        out.append(f"Each rate was tried once (the study's seed), and runs of one rate differ by "
                   f"{100 * noise.sigma_log:.1f} % between seeds" + (
                       f": the runner-up rate is within that noise for {', '.join(close)}, so those best rates (and "
                       "the rule fitted to them) are not resolved; more seeds per rate would resolve them."
                       if close else "; every best rate beats the runner-up by more than that."))
        out.append("")
    out += [f"**Warning:** {s.warning}." for s in sweeps.values() if s.warning]
    if isinstance(rule, LrRule):
        lo, hi = rule.gamma_ci
        ci = (f", {100 * rule.confidence:g} % interval [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo)
              else " (no interval: 2 sizes)")
        out += ["", f"Rule {RULE_FORMULA}: k = {rule.k:.4g}, **γ = {rule.gamma:.3f}**{ci}, fitted on "
                f"{', '.join(rule.sizes)} (lr* of each; Porian et al. 2024, sec. 4)."
                + (f" Left out: {'; '.join(rule.excluded)}." if rule.excluded else "")]
        for size in used.sort_values(n_column)["size"].unique():
            if sources.get(size) == "rule":
                n = float(used.loc[used["size"] == size, n_column].iloc[0])
                lo, hi = rule.interval(n)
                predicted = rule.predict(n)
                capped = abs(lrs[size] / predicted - 1) > 1e-3  # the runner caps a rule rising with N
                out.append(f"- {size}: trained at the rule's {lrs[size]:.3g}" if not capped else
                           f"- {size}: trained at {lrs[size]:.3g}, the widest swept size's lr*: the rule gives "
                           f"{predicted:.3g} at this N, above what any swept size measured (the runner caps it)")
                out[-1] += (f"; the rule's {100 * rule.confidence:g} % interval for its best rate is [{lo:.3g}, "
                            f"{hi:.3g}]" if math.isfinite(lo) else "") + "."
    elif isinstance(rule, str):
        out += ["", f"No rule lr*(N): {rule}."]
    return [*out, ""]


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
    holdout: HoldoutCheck | None = None,
    joint_holdout: list[HoldoutCheck] = (),
    coverage: AlphaCoverage | None = None,
    noise: SeedNoise | None = None,
    lr_section: list[str] = (),
    d_text: str = "",
    sweep_runs: list[str] = (),
) -> str:
    """Markdown report of a scaling-law analysis; it opens with the prediction check.

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
        holdout: L(N) refitted without the largest size (`analysis.prediction_check`).
        joint_holdout: the joint law refitted without the largest compute budget, in grids.
        coverage: the measured coverage of the alpha interval for this design.
        noise: run-to-run noise from seeds.
        lr_section: markdown lines of the learning-rate section.
        d_text: the token budget D of L(N), in words.
        sweep_runs: sweep runs not in L(N) (other rates, and the runs that chose the rate).

    Returns:
        The report as markdown, linking to `SCALING_PLOT_FILE` and `CURVES_PLOT_FILE` in
        the same folder.
    """
    out = [f"# Scaling-law analysis: `{study_dir}`", ""]
    out += [f"- Loss metric: `{metric}` (nats/token)", f"- {N_CONVENTION_TEXT[n_convention]}",
            f"- Runs found: {n_runs_found}, usable: {n_runs_found - len(not_used)}"
            + ("" if fit is not None else " (no fit made)"), *([fit_subset_note] if fit_subset_note else []), ""]
    out += _holdout_lines(holdout if fit is not None else None, joint_holdout)
    out += ["## Fit", ""]
    if fit is None:
        out += [f"**No fit was possible.** {fit_reason}", ""]
    else:
        pct = f"{100 * fit.confidence:g} %"
        out += [
            f"Form: `{FORMULA}`, least squares on log L (Kaplan et al. 2020, eq. 1.1, with the "
            "constant term c of Henighan et al. 2020 and Hoffmann et al. 2022, eq. 2)"
            + (f", at D = {d_text} tokens" if d_text else "") + ".", "",
            "| parameter | estimate | " + pct + " interval |", "|---|---:|---:|",
            f"| alpha (α) | {fit.alpha:.4f} | {_interval(fit.alpha_ci, '{:.4f}')} |",
            f"| a | {fit.a:.4g} | {_interval(fit.a_ci, '{:.4g}')} |",
            f"| c (nats/token) | {fit.c:.4f} | {_interval(fit.c_ci, '{:.4f}')} |", "",
            f"**α = {fit.alpha:.4f}, "
            + (f"{pct} interval {_interval(fit.alpha_ci, '{:.4f}')}" if fit.has_intervals else "no interval")
            + f"** from {fit.n_points} runs ({fit.dof} residual degrees of freedom).",
        ]
        if fit.has_intervals:
            out.append(f"Intervals: {INTERVAL_METHOD}.")
        if coverage is not None:
            source = "measured between seeds" if noise is not None and noise.measured else "the fit's residual scatter"
            out.append(f"Measured coverage of this interval for this design: in {coverage.n_studies} synthetic studies "
                       f"with these {len(coverage.n)} runs' N, the fitted law and a run-to-run noise of "
                       f"{100 * coverage.noise_log:.2f} % ({source}), the {pct} interval held the true α in "
                       f"**{100 * coverage.coverage:.1f} %** of them (target {pct}; on 6-size studies with 1 % "
                       "noise the same method covers 93-96 %, README).")
        out.append(f"Fit quality in log space: RMSE {fit.rmse_log:.2e}, R² {fit.r2_log:.5f}"
                   + (f"; residual scatter about the law {100 * fit.noise_log:.2f} % per run" if fit.dof else "") + ".")
        if noise is not None and noise.measured:
            ratio = fit.noise_log / noise.sigma_log if fit.dof and noise.sigma_log > 0 else math.nan
            out.append(f"Run-to-run noise from seeds: {100 * noise.sigma_log:.2f} % of the loss ({noise.dof} degrees "
                       f"of freedom: {', '.join(noise.groups)}; largest spread {100 * noise.max_abs_spread:.2f} %)."
                       + (f" The law's residuals are {ratio:.1f}× that: "
                          + ("the law fits to within the noise." if ratio < 2 else
                             "more than the noise explains: the form or the recipe (learning rates, D) leaves "
                             "structure the law does not capture.") if math.isfinite(ratio) else ""))
        elif fit.dof:
            out.append("No run was repeated with another seed (set `repeat_seeds` in the study file), so the noise "
                       "is judged from the fit's own residuals alone.")
        noise_log = noise.sigma_log if noise is not None and noise.measured else fit.noise_log
        if fit.dof and math.isfinite(noise_log) and noise_log > 0:
            span = math.log(float(fit.predict(fit.n_min)) / float(fit.predict(fit.n_max)))
            out.append(f"From the smallest size to the largest the law falls {100 * (1 - math.exp(-span)):.1f} % "
                       f"({span:.3f} in log loss), {span / noise_log:.1f}× the run-to-run noise ({noise_log:.3f} "
                       "in log loss)"
                       + (": the sizes differ by well more than the noise." if span > 5 * noise_log else
                          ": **too little to resolve L(N)**; a longer D, more steps or a wider range of sizes "
                          "would separate them."))
        out += ["", f"c is the loss floor at this D: what an unboundedly large model would reach on these "
                f"{d_text or 'same'} tokens. It is the irreducible loss only in the limit where D grows too "
                "(Hoffmann et al. 2022, eq. 2: c = E + B / D^β)."]
        if fit.pure_power_law:
            out.append("c sits at 0, so the fit is a pure power law, the form of Kaplan et al. (2020), whose "
                       "α_N ≈ 0.076 for English text it can be compared with.")
        else:
            out.append("Kaplan et al. (2020) fit L = (N_c/N)^α_N without a constant (α_N ≈ 0.076 for text); a law with "
                       "c has a larger α for the same data, so the two exponents are not comparable.")
        out.append("")
    out += list(lr_section)
    out += [f"![Final loss vs. model size]({SCALING_PLOT_FILE})", "",
            f"![Validation loss during training]({CURVES_PLOT_FILE})", "",
            "## Runs used", "", table_md]
    if sweep_runs:
        out += ["## Sweep runs not in L(N)", "",
                "Trained for the learning-rate sweep, at other rates or as the run that chose its size's rate (a "
                "minimum over rates is biased low, so L(N) takes that rate's other seeds when it has them): "
                + ", ".join(f"`{r}`" for r in sweep_runs) + ".", ""]
    out += ["## Runs not used", ""]
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
        figures: File name -> Figure (`SCALING_PLOT_FILE`, `CURVES_PLOT_FILE`, `LR_PLOT_FILE`
            when learning rates were swept, and `analysis.samples.PIANOROLL_FIGURE_FILE` when
            runs have samples).
        sample_quality: `analysis.samples.load_sample_quality` of the used runs (may be empty).
        compute: The compute-optimal analysis (`analysis.compute_optimal.analyze_compute`) when
            the runs span several token budgets or IsoFLOP budgets, else None.
        table_rows: `summary_table` of the used runs.
        table_md: The same as markdown.
        report_md: The markdown report.
        sweeps: size -> `analysis.lr_sweep.SizeSweep` for sizes trained at several rates.
        lr_rule: the fitted `analysis.lr_sweep.LrRule`, its reason for absence, or None.
        holdout: L(N) refitted without the largest size (`analysis.prediction_check.HoldoutCheck`).
        coverage: measured coverage of the alpha interval for this design, or None.
        noise: run-to-run noise from seeds (`analysis.noise.SeedNoise`), or None.
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
    sweeps: dict[str, SizeSweep] = field(default_factory=dict)
    lr_rule: LrRule | str | None = None
    holdout: HoldoutCheck | None = None
    coverage: AlphaCoverage | None = None
    noise: SeedNoise | None = None


def runs_for_law(main: pd.DataFrame, sweeps: dict[str, SizeSweep]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split main-budget runs into those L(N) uses and the sweep runs it does not.

    A swept size contributes its runs at its best learning rate, without the run(s) that
    chose that rate when other seeds of it exist (a minimum over rates is biased low: the
    winner's curse); any other size all its runs.

    Args:
        main: finished runs at the main budget.
        sweeps: `analysis.lr_sweep.sweeps_by_size` of the same runs.

    Returns:
        ``(for_law, other_rates)``.
    """
    keep = np.ones(len(main), dtype=bool)
    for i, (_, run) in enumerate(main.iterrows()):
        sweep = sweeps.get(str(run["size"]))
        if sweep is not None:
            unbiased = set(sweep.run_names) - set(sweep.selection_runs)
            keep[i] = run["run_name"] in (unbiased or set(sweep.run_names))
    return main[keep], main[~keep]


def run_analysis(
    study_dir: str | Path,
    *,
    metric: str = "eval_loss",
    n_convention: str = "non_embedding",
    n_bootstrap: int = 1000,
    seed: int = 0,
    exclude: Iterable[str | Path] = (),
    coverage_studies: int = COVERAGE_STUDIES,
) -> AnalysisOutputs:
    """Loads a study, fits ``L(N) = a * N**(-alpha) + c``, checks it, and builds plots, tables and report.

    Args:
        study_dir: Root folder of the study (runs at any depth).
        metric: ``"eval_loss"`` (default) or ``"test_loss"``.
        n_convention: ``"non_embedding"`` (default, column ``N``), ``"total"`` (``N_total``) or
            ``"flops"`` (``N_flops`` = FLOPs per token / 6).
        n_bootstrap: Bootstrap refits of the joint law L(N, D) and the IsoFLOP fit, when the
            study has several budgets (capped at `COMPUTE_BOOTSTRAP`). L(N) has profile intervals.
        seed: Seed of the bootstraps and of the coverage simulation (default 0).
        exclude: Folders not to report as failed runs (e.g. the output folder).
        coverage_studies: Synthetic studies for the measured coverage of the alpha interval
            (0 skips it).

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
    main, fit_subset_note = usable, ""
    roles = usable["budget_role"].fillna("")
    if (roles.isin(["grid", "isoflop"])).any() and (roles == "main").any():
        main = usable[roles == "main"]  # the study's own max_tokens, as scripts/run_study.py recorded it
    elif usable["D"].nunique() > 1:  # runs without roles: the D shared by the most runs (ties: the largest)
        counts = usable.groupby("D").size()
        main_d = max(counts.index, key=lambda d: (counts[d], d))
        main = usable[usable["D"] == main_d]
    d_text = ", ".join(f"{d:,.0f}" for d in sorted(main["D"].unique()))
    if len(main) < len(usable):
        fit_subset_note = (f"- L(N) is fitted on the {len(main)} runs of the main budget (D = {d_text} tokens); the "
                           f"other {len(usable) - len(main)} runs (other budgets) enter the compute-optimal section.")
    sweeps = sweeps_by_size(main, metric, n_column)
    used, other_rates = runs_for_law(main, sweeps)
    lr_rule = fit_lr_rule(sweeps, n_convention=n_convention) if sweeps else None
    noise = seed_noise(used, metric)

    fit, reason, holdout, coverage = None, None, None, None
    if used[n_column].nunique() < N_PARAMS:
        reason = (f"Fewer than 3 sizes have a finished run with a value for {metric} (found "
                  f"{used[n_column].nunique()}); `{FORMULA}` has {N_PARAMS} free parameters. Train more sizes "
                  "(`python scripts/run_study.py ...`) and rerun this analysis.")
    else:
        try:
            fit = fit_power_law(used[n_column], used[metric])
        except (ValueError, RuntimeError) as err:
            reason = f"The fit failed: {err}"
    if fit is not None:
        holdout = holdout_largest_size(used[n_column], used[metric], used["run_name"].tolist(),
                                       used["size"].astype(str).tolist())
        noise_log = noise.sigma_log if noise.measured else fit.noise_log
        if fit.has_intervals and coverage_studies and math.isfinite(noise_log) and noise_log > 0:
            coverage = measure_alpha_coverage(used[n_column], fit.a, fit.alpha, fit.c, noise_log=noise_log,
                                              n_studies=coverage_studies, seed=seed)
    context = {"metric": metric, "n_convention": n_convention, "n_column": n_column,
               "runs_used": used["run_name"].tolist()}
    checks = {"holdout": holdout.to_dict() if holdout else None, "coverage": coverage.to_dict() if coverage else None,
              "seed_noise": noise.to_dict(), "lr_sweeps": {k: v.to_dict() for k, v in sweeps.items()},
              "lr_rule": lr_rule.to_dict() if isinstance(lr_rule, LrRule) else lr_rule}
    fit_dict = ({"fitted": True, **context, **fit.to_dict(), **checks} if fit is not None
                else {"fitted": False, "reason": reason, **context, **checks})

    all_curves = load_eval_curves(study_dir)  # read once: L(N) curves and the frontier plot share it
    curves = all_curves[all_curves["run_name"].isin(used["run_name"])]
    rows = summary_table(used)
    table_md = table_markdown(rows)
    figures = {SCALING_PLOT_FILE: plot_scaling(used, fit, metric, n_column, d_text=d_text, holdout=holdout),
               CURVES_PLOT_FILE: plot_training_curves(curves)}
    if sweeps:
        figures[LR_PLOT_FILE] = plot_lr_sweeps(sweeps, lr_rule if isinstance(lr_rule, LrRule) else None,
                                               used, metric, n_column)
    compute, compute_md = None, ""
    if usable["D"].nunique() > 1 or (usable["compute_budget"].fillna(0) > 0).any():
        compute_runs = pd.concat([used, usable[~usable.index.isin(main.index)]])
        compute = analyze_compute(compute_runs, metric=metric, convention=n_convention,
                                  n_bootstrap=min(n_bootstrap, COMPUTE_BOOTSTRAP), seed=seed)
        labels = {"non_embedding": "non-embedding parameters N", "total": "total parameters N (incl. embeddings)",
                  "flops": "N = FLOPs per token / 6 (incl. head and attention)"}
        figures[ISOFLOP_PLOT_FILE] = plot_isoflop(compute.isoflop, compute.runs, metric, labels[n_convention])
        figures[FRONTIER_PLOT_FILE] = plot_frontier(
            compute.runs, all_curves[all_curves["run_name"].isin(compute.runs["run_name"])], compute.loss_vs_c,
            metric, f"compute C (FLOPs, {n_convention} convention)", extrapolate_to=100 * compute.max_c)
        figures[LOSS_VS_D_PLOT_FILE] = plot_loss_vs_tokens(compute.runs, compute.loss_vs_d, metric)
        if len(compute.repeated_runs):
            figures[EPOCHS_PLOT_FILE] = plot_loss_vs_epochs(compute.repeated_runs, compute.sms_law, metric)
        compute_md = compute_section(compute, sum(1 for v in compute.loss_vs_d.values() if not isinstance(v, str)))
        fit_dict["joint_holdout"] = [c.to_dict() for c in compute.holdout]
    quality = load_sample_quality(used)
    samples_md = ""
    if not quality.empty:
        pianorolls = pianoroll_comparison(quality)
        if pianorolls is not None:
            figures[PIANOROLL_FIGURE_FILE] = pianorolls
        samples_md = samples_section(quality, PIANOROLL_FIGURE_FILE if pianorolls is not None else None)
    report_md = render_report(study_dir=study_dir, metric=metric, n_convention=n_convention, fit=fit,
                              fit_reason=reason, table_md=table_md, not_used=not_used,
                              n_runs_found=len(runs), extra_sections=(compute_md, samples_md),
                              fit_subset_note=fit_subset_note, holdout=holdout,
                              joint_holdout=compute.holdout if compute is not None else (), coverage=coverage,
                              noise=noise, lr_section=_lr_lines(sweeps, lr_rule, used, n_column, noise), d_text=d_text,
                              sweep_runs=other_rates["run_name"].tolist())
    return AnalysisOutputs(runs=runs, used=used, not_used=not_used, fit=fit, fit_dict=fit_dict,
                           figures=figures, table_rows=rows, table_md=table_md, report_md=report_md,
                           sample_quality=quality, compute=compute, sweeps=sweeps, lr_rule=lr_rule,
                           holdout=holdout, coverage=coverage, noise=noise)
