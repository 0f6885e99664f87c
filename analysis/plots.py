"""Plotters: data and fit results in, a matplotlib Figure out.

Figures are built on the Agg canvas directly (no pyplot), so nothing is ever shown, no global
figure registry grows, and a headless machine needs no backend setting. Saving is left to
scripts (``fig.savefig(path)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

from analysis.isoflop import IsoFlopFit
from analysis.lr_sweep import LrRule, SizeSweep
from analysis.power_law import PowerLawFit
from analysis.prediction_check import HoldoutCheck
from analysis.sms_law import SMSLawFit

N_LABELS = {
    "N": "non-embedding parameters N",
    "N_total": "total parameters N (incl. embeddings)",
    "N_flops": "N = FLOPs per token / 6 (incl. head and attention)",
}
METRIC_LABELS = {
    "eval_loss": "validation loss (nats/token)",
    "test_loss": "test loss (nats/token)",
    "train_loss": "training loss (nats/token)",
}


def _new_figure(figsize: tuple[float, float] = (6.4, 4.8)) -> tuple[Figure, object]:
    fig = Figure(figsize=figsize, dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _si(count: float) -> str:
    """1234567 -> '1.23M': parameter counts read faster with a suffix than as 1.23e+06."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(count) >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.3g}"


def _readable_log_yaxis(ax: object) -> None:
    """Losses usually span less than a decade, where a log axis gets only one or two labels;
    place about six evenly spaced, plainly labelled ticks instead."""
    low, high = ax.get_ylim()
    locator = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10])
    ticks = [t for t in locator.tick_values(low, high) if low <= t <= high and t > 0]
    ax.set_yticks(ticks)
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _empty_note(ax: object, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def plot_scaling(
    df: pd.DataFrame,
    fit: PowerLawFit | None,
    metric: str = "eval_loss",
    n_column: str = "N",
    *,
    d_text: str = "",
    holdout: HoldoutCheck | None = None,
) -> Figure:
    """Log-log plot of final loss against model size, with the fitted law and its band.

    Args:
        df: Runs to draw, with columns ``n_column``, ``metric`` and ``size`` (e.g. the used
            rows of `analysis.loaders.load_local_runs`); rows with nan are skipped.
        fit: Result of `analysis.power_law.fit_power_law` on the same points, or None (fewer
            than 3 sizes): then only the points are drawn.
        metric: Loss column, nats/token (default ``"eval_loss"``).
        n_column: Parameter-count column, ``"N"`` (non-embedding) or ``"N_total"``.
        d_text: the token budget D of the runs, for the title.
        holdout: the prediction check (`analysis.prediction_check.HoldoutCheck`); its
            prediction and interval are drawn at the held-out size.

    Returns:
        A Figure with labelled log-log axes, a legend and, with a fit, the curve
        ``a * N**(-alpha) + c``, its pointwise profile-likelihood band (lighter where it
        extrapolates beyond the largest run), and an annotation of alpha with its interval.
    """
    fig, ax = _new_figure()
    data = df[[n_column, metric, "size"]].dropna(subset=[n_column, metric]) if len(df) else df
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(N_LABELS.get(n_column, n_column))
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(True, which="both", alpha=0.3)
    at_d = f" at D = {d_text} tokens" if d_text else ""
    if len(data) == 0:
        _empty_note(ax, "no finished runs to plot")
        return fig

    n, loss = data[n_column].to_numpy(float), data[metric].to_numpy(float)
    ax.scatter(n, loss, color="C0", zorder=3, label=f"runs ({len(data)})")
    ax.margins(0.08)  # room for the size labels next to the extreme points
    labelled = set()
    for x, y, size in zip(n, loss, data["size"], strict=True):
        if size not in labelled:  # one label per size when seeds repeat it
            ax.annotate(str(size), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
            labelled.add(size)

    if fit is None:
        ax.set_title(f"Final loss vs. model size{at_d}\n(no fit: fewer than 3 sizes)", fontsize=10)
    else:
        grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 200)
        ax.plot(grid, fit.predict(grid), color="C1",
                label=rf"fit $L = a N^{{-\alpha}} + c$, $c$ = {fit.c:.3g}")
        pct = f"{100 * fit.confidence:g}%"
        if fit.has_intervals:
            # the profile band is costly per point: 16 points up to the largest run, 6 beyond it
            band = np.concatenate([np.geomspace(grid[0], n.max(), 16), np.geomspace(n.max(), grid[-1], 7)[1:]])
            low, high = fit.predict_band(band)
            ax.fill_between(band[:16], low[:16], high[:16], color="C1", alpha=0.25, linewidth=0,
                            label=f"{pct} band of the law (profile likelihood)")
            ax.fill_between(band[15:], low[15:], high[15:], color="C1", alpha=0.1, linewidth=0, hatch="//",
                            label="band beyond the largest run: extrapolation")
        if holdout is not None and np.isfinite(holdout.predicted):
            lo, hi = holdout.interval
            yerr = [[holdout.predicted - lo], [hi - holdout.predicted]] if np.isfinite(lo) else None
            ax.errorbar([holdout.x], [holdout.predicted], yerr=yerr, fmt="D", color="C3", mfc="none", capsize=4,
                        zorder=4, label=f"predicted without the largest size ({100 * holdout.rel_error:+.1f} %)")
        lo, hi = fit.alpha_ci
        ci = (f"\n{pct} CI [{lo:.3f}, {hi:.3f}]" if fit.has_intervals else "\n(no interval: no residual dof)")
        ax.text(0.97, 0.97, rf"$\alpha$ = {fit.alpha:.3f}{ci}", transform=ax.transAxes,
                ha="right", va="top", bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
        ax.set_title(f"Final loss vs. model size{at_d}", fontsize=10)
    _readable_log_yaxis(ax)
    ax.legend(loc="lower left", fontsize=7)
    return fig


def plot_lr_sweeps(sweeps: dict[str, SizeSweep], rule: LrRule | None, used: pd.DataFrame, metric: str,
                   n_column: str) -> Figure:
    """Left: loss against learning rate for each swept size, its best rate marked. Right: the
    refined best rate lr* against N with the fitted rule and its interval, and the sizes the
    rule set.

    Args:
        sweeps: size -> `analysis.lr_sweep.SizeSweep`.
        rule: the fitted `analysis.lr_sweep.LrRule`, or None.
        used: the runs L(N) uses (for the rule-set sizes' N and rate).
        metric: loss column (the y label).
        n_column: N column.
    """
    fig = Figure(figsize=(10, 4.2), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_rule = fig.subplots(1, 2)
    colors = _size_colors(list(sweeps))
    for size, sweep in sweeps.items():
        ax.plot(sweep.learning_rates, sweep.losses, "o-", color=colors[size], markersize=4,
                label=f"{size} (N = {_si(sweep.n)})" + (" — edge!" if sweep.edge else ""))
        ax.plot([sweep.best_lr], [sweep.best_loss], "*", color=colors[size], markersize=13, markeredgecolor="black")
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title("Loss vs. learning rate (star: best of each size)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax_rule.set_xscale("log")
    ax_rule.set_yscale("log")
    ax_rule.set_xlabel(N_LABELS.get(n_column, n_column))
    ax_rule.set_ylabel("best learning rate lr*")
    ax_rule.grid(True, which="both", alpha=0.3)
    for size, sweep in sweeps.items():
        ax_rule.plot([sweep.n], [sweep.lr_star], "o", color=colors[size], mfc="none" if sweep.edge else colors[size])
    ruled = used[used["lr_source"] == "rule"].drop_duplicates("size")
    if rule is not None:
        n_all = [*rule.n, *ruled[n_column].tolist()]
        grid = np.geomspace(min(n_all) / 1.3, max(n_all) * 1.3, 50)
        ax_rule.plot(grid, [rule.predict(x) for x in grid], color="black",
                     label=rf"lr* = k N$^{{-\gamma}}$, $\gamma$ = {rule.gamma:.2f}")
        bands = np.array([rule.interval(x) for x in grid])
        if np.all(np.isfinite(bands)):
            ax_rule.fill_between(grid, bands[:, 0], bands[:, 1], color="0.5", alpha=0.2, linewidth=0,
                                 label=f"{100 * rule.confidence:g}% interval for a new size")
    if len(ruled):
        ax_rule.plot(ruled[n_column], ruled["learning_rate"], "s", color="C3", mfc="none",
                     label="sizes trained at the rule's rate")
    ax_rule.set_title("Best learning rate vs. size (open: edge of grid)", fontsize=10)
    if ax_rule.get_legend_handles_labels()[0]:
        ax_rule.legend(fontsize=7)
    return fig


def plot_training_curves(curves_df: pd.DataFrame) -> Figure:
    """Validation loss against training tokens, one line per run (size).

    Args:
        curves_df: Frame with columns ``run_name``, ``size``, ``N``, ``tokens`` and
            ``eval_loss`` (nats/token), as from `analysis.loaders.load_eval_curves`.

    Returns:
        A Figure with tokens on a log x-axis; lines are coloured by N (small to large) and
        labelled with size and N.
    """
    fig, ax = _new_figure((7.6, 4.8))
    ax.set_xscale("log")
    ax.set_xlabel("training tokens seen D (tokens)")
    ax.set_ylabel(METRIC_LABELS["eval_loss"])
    ax.grid(True, which="both", alpha=0.3)
    data = curves_df.dropna(subset=["tokens", "eval_loss"]) if len(curves_df) else curves_df
    data = data[data["tokens"] > 0] if len(data) else data
    if len(data) == 0:
        _empty_note(ax, "no evaluation entries in trainer_state.json")
        return fig
    groups = list(data.groupby("run_name", sort=False))  # curves_df is sorted by N
    for i, (run_name, run) in enumerate(groups):
        run = run.sort_values("tokens")
        n = run["N"].iloc[0]
        label = f"{run['size'].iloc[0]} (N = {_si(n)})" if np.isfinite(n) else str(run_name)
        # viridis stops at 0.9: its last yellow is unreadable on white
        color = colormaps["viridis"](0.9 * i / max(len(groups) - 1, 1))
        ax.plot(run["tokens"], run["eval_loss"], marker="o", markersize=3, color=color, label=label)
    ax.set_title("Validation loss during training")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # outside: never hides a curve
    return fig



def _loss_log_log_axes(figsize: tuple[float, float], xlabel: str, metric: str) -> tuple[Figure, object]:
    """A Figure with log-log axes, the loss on y, and a light grid."""
    fig, ax = _new_figure(figsize)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def _size_colors(sizes: list[str]) -> dict[str, object]:
    """One viridis colour per size, in the given (small to large) order."""
    return {s: colormaps["viridis"](0.9 * i / max(len(sizes) - 1, 1)) for i, s in enumerate(sizes)}


def plot_isoflop(isoflop: IsoFlopFit | None, runs: pd.DataFrame, metric: str, n_label: str) -> Figure:
    """IsoFLOP profiles: final loss against N for each compute budget, the fitted parabolas
    (in log N) and their minima (Hoffmann et al. 2022, fig. 3).

    Args:
        isoflop: result of `analysis.isoflop.fit_isoflop`, or None (points only).
        runs: the IsoFLOP runs, with ``N_x``, ``compute_budget`` and ``metric``.
        metric: loss column, nats/token.
        n_label: x-axis label (the counting convention).
    """
    fig, ax = _new_figure()
    ax.set_xscale("log")
    ax.set_xlabel(n_label)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(True, which="both", alpha=0.3)
    labelled = runs[runs["compute_budget"].fillna(0) > 0] if len(runs) else runs
    if len(labelled) == 0:
        _empty_note(ax, "no IsoFLOP runs (isoflop_budgets in the study file)")
        return fig
    budgets = sorted(labelled["compute_budget"].unique())
    for i, c in enumerate(budgets):
        color = colormaps["plasma"](0.85 * i / max(len(budgets) - 1, 1))
        group = labelled[labelled["compute_budget"] == c]
        ax.scatter(group["N_x"], group[metric], color=color, zorder=3, label=f"C = {c:.2g} FLOPs")
    if isoflop is not None:
        # fit_isoflop got each profile's mean C_x as its budget (see analyze_compute)
        profile_c = labelled.groupby("compute_budget")["C_x"].transform("mean").to_numpy(float)
        for i, budget in enumerate(sorted(isoflop.budgets, key=lambda b: b.compute_flops)):
            color = colormaps["plasma"](0.85 * i / max(len(budgets) - 1, 1))
            group = labelled[np.isclose(profile_c, budget.compute_flops, rtol=1e-6)]
            if budget.coeffs is None or len(group) == 0:
                continue
            grid = np.geomspace(group["N_x"].min() / 1.3, group["N_x"].max() * 1.3, 100)
            ax.plot(grid, np.polyval(budget.coeffs, np.log(grid)), color=color, alpha=0.7,
                    linestyle="-" if budget.used else ":")
            if budget.used:
                ax.plot([budget.n_opt], [budget.loss_opt], marker="*", markersize=12, color=color,
                        markeredgecolor="black", zorder=4)
        ax.set_title(f"IsoFLOP profiles: N_opt ∝ C^{isoflop.a:.2f}, D_opt ∝ C^{isoflop.b:.2f}")
    else:
        ax.set_title("IsoFLOP profiles (no fit)")
    ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on a short log axis
    ax.legend(fontsize=8)
    return fig


def plot_frontier(runs: pd.DataFrame, curves: pd.DataFrame, fit: PowerLawFit | None, metric: str,
                  c_label: str, extrapolate_to: float | None = None) -> Figure:
    """Final loss against compute for every run, the compute-efficient frontier and L(C).

    Intermediate evaluations are drawn as faint lines (C at each evaluation = the run's
    C per token x tokens seen); they lie above what a run of that length would reach, since
    its cosine schedule had not decayed, and are not fitted.

    Args:
        runs: runs with ``C_x``, ``N_x``, ``D``, ``size``, ``frontier`` and ``metric``.
        curves: eval curves (`analysis.loaders.load_eval_curves`) of the same runs.
        fit: L(C) power law on the frontier runs, or None.
        metric: loss column.
        c_label: x-axis label (the counting convention).
        extrapolate_to: draw the fit up to this C (e.g. 100x the largest run).
    """
    fig, ax = _loss_log_log_axes((7.6, 4.8), c_label, metric)
    if len(runs) == 0:
        _empty_note(ax, "no finished runs")
        return fig
    sizes = list(dict.fromkeys(runs.sort_values("N_x")["size"]))
    colors = _size_colors(sizes)
    c_per_token = (runs["C_x"] / runs["D"]).to_numpy(float)
    for (_, run), per_token in zip(runs.iterrows(), c_per_token, strict=True):
        curve = curves[curves["run_name"] == run["run_name"]].dropna(subset=["tokens", "eval_loss"])
        if len(curve) and metric == "eval_loss":
            ax.plot(curve["tokens"] * per_token, curve["eval_loss"], color=colors[run["size"]], alpha=0.25,
                    linewidth=0.8)
    for size in sizes:
        group = runs[runs["size"] == size]
        ax.scatter(group["C_x"], group[metric], color=colors[size], zorder=3, s=18,
                   label=f"{size} (N = {_si(group['N_x'].iloc[0])})")
    front = runs[runs["frontier"]].sort_values("C_x")
    ax.plot(front["C_x"], front[metric], color="black", linestyle="--", linewidth=1, label="frontier (final losses)")
    if fit is not None:
        top = max(extrapolate_to or 0, front["C_x"].max() * 1.2)
        grid = np.geomspace(front["C_x"].min() / 1.2, top, 200)
        ax.plot(grid, fit.predict(grid), color="C3",
                label=rf"$L(C) = a C^{{-\gamma}} + c$, $\gamma$ = {fit.alpha:.3f}, $c$ = {fit.c:.3g}")
        band = np.geomspace(grid[0], grid[-1], 24)  # the profile band is costly per point
        low, high = fit.predict_band(band)
        if np.all(np.isfinite(low)):
            ax.fill_between(band, low, high, color="C3", alpha=0.15, linewidth=0)
    ax.set_title("Loss vs. compute (faint: evaluations during training)")
    _readable_log_yaxis(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    return fig


def plot_loss_vs_tokens(runs: pd.DataFrame, fits: dict[str, PowerLawFit | str], metric: str) -> Figure:
    """Final loss against training tokens D, one colour per size, with each size's L(D) fit."""
    fig, ax = _loss_log_log_axes((6.4, 4.8), "training tokens D", metric)
    if len(runs) == 0:
        _empty_note(ax, "no finished runs")
        return fig
    sizes = list(dict.fromkeys(runs.sort_values("N_x")["size"]))
    colors = _size_colors(sizes)
    for size in sizes:
        group = runs[runs["size"] == size].sort_values("D")
        fit = fits.get(str(size))
        label = f"{size}" + (rf": $\beta$ = {fit.alpha:.2f}" if isinstance(fit, PowerLawFit) else "")
        ax.scatter(group["D"], group[metric], color=colors[size], zorder=3, s=18, label=label)
        if isinstance(fit, PowerLawFit):
            grid = np.geomspace(group["D"].min() / 1.2, group["D"].max() * 1.2, 100)
            ax.plot(grid, fit.predict(grid), color=colors[size], alpha=0.8)
    ax.set_title("Final loss vs. training tokens (one run per point)")
    _readable_log_yaxis(ax)
    ax.legend(fontsize=7)
    return fig


def plot_loss_vs_epochs(runs: pd.DataFrame, sms_law: SMSLawFit | None, metric: str) -> Figure:
    """Final loss against epochs over U_D, one panel per unique-data size U_D, one colour per size,
    with MuPT's SMS law (Qu et al. 2024, eq. 3) drawn through each size where it was fitted.

    Args:
        runs: runs with ``size``, ``N_x``, ``U_D``, ``epochs`` and ``metric`` (each point one run;
            a U_D with fewer than two epoch counts, or never repeated, is not drawn).
        sms_law: the fitted law (`analysis.sms_law.fit_sms_law`), or None (points only).
        metric: loss column, nats/token.
    """
    counts = runs.groupby("U_D")["epochs"].agg(["nunique", "max"]) if len(runs) else pd.DataFrame()
    uniques = sorted(counts[(counts["nunique"] >= 2) & (counts["max"] > 1 + 1e-9)].index) if len(counts) else []
    fig = Figure(figsize=(3.6 * max(len(uniques), 1) + 0.8, 4.2), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(uniques), 1), sharey=True, squeeze=False)[0]
    if not uniques:
        _empty_note(axes[0], "no unique-data size was trained for two or more epoch counts")
        return fig
    sizes = list(dict.fromkeys(runs.sort_values("N_x")["size"]))
    colors = _size_colors(sizes)
    for ax, unique in zip(axes, uniques, strict=True):
        group = runs[runs["U_D"] == unique]
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("epochs over U_D")
        ax.set_title(f"U_D = {_si(unique)} tokens", fontsize=9)
        grid = np.geomspace(1.0, group["epochs"].max() * 2, 80)
        for size in sizes:
            points = group[group["size"] == size].sort_values("epochs")
            if points.empty:
                continue
            ax.plot(points["epochs"], points[metric], "o-", color=colors[size], ms=4, lw=1, label=str(size))
            if sms_law is not None:
                n = float(points["N_x"].iloc[0])
                ax.plot(grid, sms_law.predict(n, grid * unique, unique), "--", color=colors[size], lw=0.9, alpha=0.8)
    axes[0].set_ylabel(METRIC_LABELS.get(metric, metric))
    _readable_log_yaxis(axes[0])
    axes[-1].legend(fontsize=7, title="points: runs; dashed: SMS law" if sms_law is not None else None,
                    title_fontsize=7)
    fig.suptitle("Final loss vs. epochs of repeated data, per unique-data size", fontsize=10)
    return fig
