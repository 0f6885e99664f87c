"""Piano-roll pictures of pieces: a symusic Score in, a matplotlib Figure out (no pyplot)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from symusic import Score

_DRUM_COLOR = "0.55"


def draw_pianoroll(ax: object, score: Score, title: str | None = None) -> None:
    """Draw each note as a bar: x = time in quarter notes, y = MIDI pitch.

    Tracks get their own colour (drums grey); bar lines follow the time signatures
    (4/4 when there are none).

    Args:
        ax: a matplotlib Axes.
        score: the piece (any time unit; ticks are used).
        title: axes title.
    """
    score = score if score.ttype == "Tick" else score.to("tick")
    tpq = score.ticks_per_quarter
    colors = colormaps["tab10"]
    low, high, end = 127, 0, 0.0
    for i, track in enumerate(t for t in score.tracks if len(t.notes)):
        notes = track.notes.numpy()
        start, length = notes["time"] / tpq, np.maximum(notes["duration"], 1) / tpq
        ax.barh(notes["pitch"], length, left=start, height=0.9, align="center", linewidth=0,
                color=_DRUM_COLOR if track.is_drum else colors(i % 10))
        low, high = min(low, int(notes["pitch"].min())), max(high, int(notes["pitch"].max()))
        end = max(end, float((start + length).max()))
    if end == 0:
        ax.text(0.5, 0.5, "no notes", ha="center", va="center", transform=ax.transAxes, color="0.4")
    else:
        ax.set_xlim(0, end)
        ax.set_ylim(low - 2, high + 2)
        sigs = sorted((ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures) or [(0, 4, 4)]
        for k, (time, num, den) in enumerate(sigs):
            stop = sigs[k + 1][0] / tpq if k + 1 < len(sigs) else end
            bar = 4 * num / den
            for x in np.arange(time / tpq, stop, bar):
                ax.axvline(x, color="0.85", linewidth=0.5, zorder=0)
    ax.set_xlabel("time (quarter notes)")
    ax.set_ylabel("pitch (MIDI)")
    if title:
        ax.set_title(title, fontsize=9)


def pianoroll_figure(score: Score, title: str | None = None) -> Figure:
    """One piece's piano roll as a 8 x 3 inch Figure."""
    fig = Figure(figsize=(8, 3), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    draw_pianoroll(fig.add_subplot(), score, title)
    return fig


def side_by_side_figure(pieces: Sequence[tuple[str, Score]], title: str | None = None) -> Figure:
    """Piano rolls of several pieces in one row (e.g. one sample per model size, smallest first).

    Args:
        pieces: ``(label, score)`` pairs, drawn left to right.
        title: figure title.

    Raises:
        ValueError: no pieces.
    """
    if not pieces:
        raise ValueError("side_by_side_figure needs at least one piece.")
    fig = Figure(figsize=(3.2 * len(pieces), 3.2), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(pieces), squeeze=False)[0]
    for ax, (label, score) in zip(axes, pieces, strict=True):
        draw_pianoroll(ax, score, label)
    if title:
        fig.suptitle(title)
    return fig
