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

from analysis.fit import PowerLawFit

N_LABELS = {
    "N": "non-embedding parameters N",
    "N_total": "total parameters N (incl. embeddings)",
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
) -> Figure:
    """Log-log plot of final loss against model size, with the fitted law and its band.

    Args:
        df: Runs to draw, with columns ``n_column``, ``metric`` and ``size`` (e.g. the used
            rows of `analysis.loaders.load_local_runs`); rows with nan are skipped.
        fit: Result of `analysis.fit.fit_power_law` on the same points, or None (fewer than
            3 runs): then only the points are drawn.
        metric: Loss column, nats/token (default ``"eval_loss"``).
        n_column: Parameter-count column, ``"N"`` (non-embedding) or ``"N_total"``.

    Returns:
        A Figure with labelled log-log axes, a legend and, with a fit, the curve
        ``a * N**(-alpha) + c``, its pointwise bootstrap band and an annotation of alpha
        with its interval.
    """
    fig, ax = _new_figure()
    data = df[[n_column, metric, "size"]].dropna(subset=[n_column, metric]) if len(df) else df
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(N_LABELS.get(n_column, n_column))
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(True, which="both", alpha=0.3)
    if len(data) == 0:
        _empty_note(ax, "no finished runs to plot")
        return fig

    n, loss = data[n_column].to_numpy(float), data[metric].to_numpy(float)
    ax.scatter(n, loss, color="C0", zorder=3, label=f"runs ({len(data)})")
    ax.margins(0.08)  # room for the size labels next to the extreme points
    for x, y, size in zip(n, loss, data["size"], strict=True):
        ax.annotate(str(size), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)

    if fit is None:
        ax.set_title("Final loss vs. model size (no fit: fewer than 3 runs)")
    else:
        grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 200)
        ax.plot(grid, fit.predict(grid), color="C1",
                label=rf"fit $L = a N^{{-\alpha}} + c$, $c$ = {fit.c:.3g}")
        low, high = fit.predict_band(grid)
        pct = f"{100 * fit.confidence:g}%"
        if np.all(np.isfinite(low)):
            ax.fill_between(grid, low, high, color="C1", alpha=0.2, linewidth=0,
                            label=f"{pct} bootstrap band ({fit.n_bootstrap_used} refits)")
        lo, hi = fit.alpha_ci
        ci = f"\n{pct} CI [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "\n(no interval: 3 points)"
        ax.text(0.97, 0.97, rf"$\alpha$ = {fit.alpha:.3f}{ci}", transform=ax.transAxes,
                ha="right", va="top", bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
        ax.set_title("Final loss vs. model size")
    _readable_log_yaxis(ax)
    ax.legend(loc="lower left", fontsize=8)
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

