"""Sample quality against model size: read what ``scripts/generate.py`` wrote into each run.

Each run folder may hold ``samples/samples.json`` and ``samples/quality.json`` (see
``generation.pipeline``). This module turns them into one row per run, a markdown table of
quality against N and a figure with one piano roll per size; it does not sample anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from generation.quality import DESCRIPTORS

SAMPLES_SUBDIR = "samples"
PIANOROLL_FIGURE_FILE = "samples_pianoroll.png"
_SHORT = {"pitch_class_entropy": "PCE", "pitch_range": "range", "polyphony": "poly",
          "scale_consistency": "scale", "groove_consistency": "groove", "empty_beat_rate": "empty"}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_sample_quality(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with samples: counts, grammar errors, descriptor overlap with the test split.

    Args:
        runs: frame with ``run_name``, ``N`` and ``path`` columns
            (`analysis.loaders.load_local_runs`).

    Returns:
        Columns ``run_name``, ``N``, ``path``, ``num_samples``, ``num_decoded``,
        ``mean_num_notes``, ``mean_num_tokens``, ``num_ended_with_eos``, ``mean_grammar_error_rate``, ``num_reference``,
        ``mean_overlapping_area``, ``oa_<descriptor>`` for each descriptor,
        ``mean_<descriptor>`` (samples) and ``ref_<descriptor>`` (test split); sorted by N;
        empty when no run has samples. Missing values are NaN.
    """
    rows = []
    for _, run in runs.iterrows():
        folder = Path(run["path"]) / SAMPLES_SUBDIR
        samples = _read(folder / "samples.json")
        if not samples:
            continue
        quality = _read(folder / "quality.json") or {}
        row = {"run_name": run["run_name"], "N": run["N"], "path": str(folder),
               "num_samples": len(samples.get("samples", [])), "num_decoded": samples.get("num_decoded"),
               "mean_num_notes": samples.get("mean_num_notes"), "mean_num_tokens": samples.get("mean_num_tokens"),
               "num_ended_with_eos": samples.get("num_ended_with_eos"),
               "settings": json.dumps(samples.get("settings"), sort_keys=True),
               "mean_grammar_error_rate": samples.get("mean_grammar_error_rate"),
               "num_reference": quality.get("num_reference", 0),
               "mean_overlapping_area": quality.get("mean_overlapping_area")}
        for name in DESCRIPTORS:
            row[f"oa_{name}"] = (quality.get("overlapping_area") or {}).get(name)
            row[f"mean_{name}"] = (quality.get("descriptors") or {}).get(name)
            row[f"ref_{name}"] = ((quality.get("reference") or {}).get("descriptors") or {}).get(name)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("N", kind="stable").reset_index(drop=True)


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def quality_markdown(quality: pd.DataFrame) -> str:
    """Two markdown tables: quality against N, and descriptor means of samples vs the test split.

    Args:
        quality: output of `load_sample_quality` (non-empty).

    Returns:
        Markdown text ending with a newline.
    """
    head = ("| run | N | decoded | ended by EOS | tokens/sample | notes/sample | grammar errors | overlap (mean) | "
            + " | ".join(f"OA {_SHORT[d]}" for d in DESCRIPTORS) + " |")
    lines = [head, "|---|" + "---:|" * (7 + len(DESCRIPTORS))]
    for _, r in quality.iterrows():
        lines.append(f"| {r['run_name']} | {_fmt(r['N'], '{:.3g}')} | {r['num_decoded']}/{r['num_samples']} | "
                     f"{_fmt(r['num_ended_with_eos'], '{:.0f}')} | {_fmt(r['mean_num_tokens'], '{:.0f}')} | "
                     f"{_fmt(r['mean_num_notes'], '{:.1f}')} | {_fmt(r['mean_grammar_error_rate'], '{:.3f}')} | "
                     f"{_fmt(r['mean_overlapping_area'], '{:.3f}')} | "
                     + " | ".join(_fmt(r[f'oa_{d}'], "{:.2f}") for d in DESCRIPTORS) + " |")
    lines += ["", "Descriptor means (MusPy definitions; drums ignored for pitch descriptors):", "",
              "| pieces | " + " | ".join(DESCRIPTORS) + " |", "|---|" + "---:|" * len(DESCRIPTORS)]
    with_ref = quality[quality["num_reference"] > 0]
    if not with_ref.empty:
        r = with_ref.iloc[-1]
        lines.append(f"| test split ({int(r['num_reference'])} pieces) | "
                     + " | ".join(_fmt(r[f'ref_{d}'], "{:.3f}") for d in DESCRIPTORS) + " |")
    for _, r in quality.iterrows():
        lines.append(f"| {r['run_name']} samples | " + " | ".join(_fmt(r[f'mean_{d}'], "{:.3f}") for d in DESCRIPTORS)
                     + " |")
    return "\n".join(lines) + "\n"


def samples_section(quality: pd.DataFrame, figure_file: str | None) -> str:
    """The report's "Samples" section: how samples were judged, the figure, the tables."""
    out = ["## Samples", "",
           "Pieces sampled from each size (`scripts/generate.py`; settings in each run's "
           "`samples/samples.json`). *Grammar errors*: share of sampled tokens that break the "
           "tokenizer's token-type successions (MidiTok `tokens_errors`). *Overlap*: overlapping area "
           "between the distribution of a descriptor over the samples and over the test split "
           "(Gaussian kernel densities; 1 = the same distribution; Yang & Lerch 2020), for the six "
           "MusPy descriptors (Dong et al. 2020): pitch-class entropy, pitch range, polyphony, scale "
           "consistency, groove consistency, empty-beat rate. Test pieces are cropped to the samples' "
           "token length. With few samples these figures are noisy: compare sizes, not decimals.", ""]
    if quality["settings"].nunique() > 1:
        out += ["**Warning:** the sizes' samples were drawn with different settings (see each "
                "`samples/samples.json`; a prompt, temperature or length changes every figure below), so "
                "the rows do not compare. Resample them alike, e.g. `python scripts/generate.py --model <run> "
                "...` with the same options for every size.", ""]
    if figure_file:
        out += [f"![One sample per size]({figure_file})", ""]
    return "\n".join(out) + "\n" + quality_markdown(quality)


def pianoroll_comparison(quality: pd.DataFrame) -> Figure | None:
    """The first decoded sample of each run, side by side, smallest N first.

    Returns:
        The figure, or None when no run has a decoded sample file.
    """
    from symusic import Score

    from generation.pianoroll import side_by_side_figure

    pieces = []
    for _, r in quality.iterrows():
        files = sorted(Path(r["path"]).glob("sample_*.mid"))
        if files:
            pieces.append((f"{r['run_name']} (N = {r['N']:.3g})", Score(str(files[0]))))
    if not pieces:
        return None
    return side_by_side_figure(pieces, "First sample of each size")
