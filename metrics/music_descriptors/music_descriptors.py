"""Music descriptors: a Hugging Face `evaluate` module for symbolic-music samples.

Load it from its folder, which works offline (nothing is fetched from the Hub)::

    import evaluate
    descriptors = evaluate.load("metrics/music_descriptors")
    result = descriptors.compute(predictions=["sample_000.mid", ...],
                                 reference_files=["test_000.mid", ...])

Each MIDI file is described by six MusPy descriptors (Dong et al. 2020, "MusPy: A Toolkit
for Symbolic Music Generation", ISMIR, sec. 5; definitions in ``muspy.metrics``):
pitch-class entropy (bits), pitch range (semitones), polyphony (pitches sounding at once),
scale consistency, groove consistency and empty-beat rate. With ``reference_files`` the
distribution of each descriptor over the predictions is compared with the one over the
references: overlapping area (OA) and KL divergence of Gaussian kernel density estimates,
the two measures of Yang & Lerch 2020 ("On the evaluation of generative models in music",
Neural Computing and Applications 32, sec. 4), applied here to the descriptor values
themselves rather than to pairwise distances.

The module depends only on muspy, symusic, numpy and scipy, so it can be pushed to the
Hub as it is.
"""

from __future__ import annotations

import math

import datasets
import evaluate
import muspy
import numpy as np
import symusic
from scipy.stats import norm

DESCRIPTORS = ("pitch_class_entropy", "pitch_range", "polyphony", "scale_consistency",
               "groove_consistency", "empty_beat_rate")
GRID_POINTS = 512  # points of the grid the densities are integrated on
_MIN_BANDWIDTH = 1e-3  # keeps a density proper when every value of a set is equal

_CITATION = """\
@inproceedings{dong2020muspy,
  title={MusPy: A Toolkit for Symbolic Music Generation},
  author={Dong, Hao-Wen and Chen, Ke and McAuley, Julian and Berg-Kirkpatrick, Taylor},
  booktitle={Proceedings of the 21st International Society for Music Information Retrieval Conference (ISMIR)},
  year={2020}
}
@article{yang2020evaluation,
  title={On the evaluation of generative models in music},
  author={Yang, Li-Chia and Lerch, Alexander},
  journal={Neural Computing and Applications},
  volume={32}, pages={4773--4784}, year={2020}
}
"""

_DESCRIPTION = """\
Six MusPy descriptors of each MIDI file (pitch-class entropy, pitch range, polyphony,
scale consistency, groove consistency, empty-beat rate), their means, and, given reference
files, the overlapping area and KL divergence between the descriptor distributions of the
predictions and of the references (Yang & Lerch 2020).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (list of str): paths of MIDI files (e.g. generated samples).
    reference_files (list of str, optional): paths of MIDI files to compare with (e.g. the
        test split). Named so because `evaluate` keeps ``references`` for row-aligned pairs.
Returns:
    n_pieces: files read; n_failed: files that could not be read (their errors in
        ``failed``, path -> message; they are left out, never fatal);
    descriptors: descriptor -> mean over the pieces where it is defined (NaN-free; None
        when defined for none);
    per_piece: descriptor -> list of values in input order (None where undefined, e.g.
        groove consistency of a piece shorter than two bars);
    with reference_files also: reference (the same three entries for the references),
    overlapping_area and kl_divergence (descriptor -> value; OA 0 and KL None when a
    descriptor is defined for references but for no prediction, e.g. groove consistency of
    one-bar samples), mean_overlapping_area (over the descriptors the references define).
Examples:
    >>> descriptors = evaluate.load("metrics/music_descriptors")
    >>> descriptors.compute(predictions=["a.mid"])["descriptors"]["pitch_range"]
    12.0
"""


def score_to_music(score: symusic.Score) -> muspy.Music:
    """Converts a symusic Score (any time unit) to a muspy Music in ticks.

    Resolution is the Score's ticks per quarter note; tracks keep program and drum flag.
    """
    score = score if score.ttype == "Tick" else score.to("tick")
    tracks = [muspy.Track(program=t.program, is_drum=t.is_drum,
                          notes=[muspy.Note(time=n.time, pitch=n.pitch, duration=max(n.duration, 1),
                                            velocity=n.velocity) for n in t.notes])
              for t in score.tracks if len(t.notes)]
    time_signatures = [muspy.TimeSignature(time=ts.time, numerator=ts.numerator, denominator=ts.denominator)
                       for ts in score.time_signatures]
    return muspy.Music(resolution=score.ticks_per_quarter, tracks=tracks, time_signatures=time_signatures)


def measure_resolution(music: muspy.Music) -> int:
    """Ticks per bar under the first time signature (4/4 when there is none)."""
    ts = music.time_signatures[0] if music.time_signatures else None
    numerator, denominator = (ts.numerator, ts.denominator) if ts else (4, 4)
    return max(1, round(music.resolution * 4 * numerator / denominator))


def describe(score: symusic.Score) -> dict[str, float]:
    """The six descriptors of one piece; NaN where a descriptor is undefined.

    Pitch-based descriptors ignore drum tracks (MusPy's definitions); a piece without notes
    gets NaN everywhere. Groove consistency uses the bar length of the first time signature
    (MusPy's ``measure_resolution``) and is NaN for pieces shorter than two bars.
    """
    music = score_to_music(score)
    if not music.tracks:
        return dict.fromkeys(DESCRIPTORS, math.nan)
    pitched = any(not t.is_drum for t in music.tracks)
    return {
        "pitch_class_entropy": float(muspy.pitch_class_entropy(music)) if pitched else math.nan,
        "pitch_range": float(muspy.pitch_range(music)) if pitched else math.nan,
        "polyphony": float(muspy.polyphony(music)) if pitched else math.nan,
        "scale_consistency": float(muspy.scale_consistency(music)) if pitched else math.nan,
        "groove_consistency": float(muspy.groove_consistency(music, measure_resolution(music))),
        "empty_beat_rate": float(muspy.empty_beat_rate(music)),
    }


def _bandwidth(values: np.ndarray, fallback: float) -> float:
    """Silverman's rule of thumb, 0.9 * min(std, IQR/1.34) * n^(-1/5), floored by ``fallback``."""
    if len(values) < 2:
        return fallback
    spread = min(np.std(values, ddof=1), (np.subtract(*np.percentile(values, [75, 25]))) / 1.34)
    spread = spread if spread > 0 else np.std(values, ddof=1)
    return max(0.9 * spread * len(values) ** -0.2, fallback)


def _density(values: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian kernel density of ``values`` on ``grid``, shape ``(len(grid),)``."""
    return norm.pdf(grid[:, None], loc=values[None, :], scale=bandwidth).mean(axis=1)


def distribution_distance(predictions: list[float], references: list[float]) -> tuple[float, float]:
    """Overlapping area and KL(references || predictions) of two sets of descriptor values.

    Each set becomes a Gaussian kernel density (Silverman bandwidth, with a floor of 1 %
    of the pooled range so that a constant set stays a proper density); both are evaluated
    on one grid covering the two sets and integrated with the trapezoid rule
    (Yang & Lerch 2020, sec. 4.3: OA = ∫ min(p, q), KLD = ∫ p log(p / q)).

    Args:
        predictions: finite values for the generated pieces.
        references: finite values for the reference pieces.

    Returns:
        ``(overlapping_area, kl_divergence)``: OA in [0, 1] (1 = same distribution), KL in
        nats (0 = same); ``(nan, nan)`` when either set is empty.
    """
    p, q = np.asarray(references, float), np.asarray(predictions, float)
    if len(p) == 0 or len(q) == 0:
        return math.nan, math.nan
    pooled = np.concatenate([p, q])
    span = float(np.ptp(pooled))
    floor = max(0.01 * span, _MIN_BANDWIDTH)
    h_p, h_q = _bandwidth(p, floor), _bandwidth(q, floor)
    lo, hi = pooled.min() - 4 * max(h_p, h_q), pooled.max() + 4 * max(h_p, h_q)
    grid = np.linspace(lo, hi, GRID_POINTS)
    dens_p, dens_q = _density(p, grid, h_p), _density(q, grid, h_q)
    overlap = float(np.trapezoid(np.minimum(dens_p, dens_q), grid))
    tiny = 1e-12  # where p > 0 and q underflows, KL is dominated by log(p / tiny)
    kl = float(np.trapezoid(dens_p * np.log((dens_p + tiny) / (dens_q + tiny)), grid))
    return min(overlap, 1.0), max(kl, 0.0)


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def describe_files(paths: list[str]) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Descriptors of each readable file (NaN where undefined) and path -> error of the others."""
    values: dict[str, list[float]] = {name: [] for name in DESCRIPTORS}
    failed = {}
    for path in paths:
        try:
            row = describe(symusic.Score(str(path)))
        except Exception as err:  # noqa: BLE001 - one unreadable file must not stop the others
            failed[str(path)] = f"{type(err).__name__}: {err}"
            continue
        for name in DESCRIPTORS:
            values[name].append(row[name])
    return values, failed


def _summary(values: dict[str, list[float]], failed: dict[str, str]) -> dict:
    means = {}
    for name, column in values.items():
        finite = [v for v in column if math.isfinite(v)]
        means[name] = float(np.mean(finite)) if finite else None
    return {"n_pieces": len(next(iter(values.values()))), "n_failed": len(failed), "failed": failed,
            "descriptors": means, "per_piece": {k: [_nan_to_none(v) for v in col] for k, col in values.items()}}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MusicDescriptors(evaluate.Metric):
    """MusPy descriptors of MIDI files and their distance from a reference set."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
            reference_urls=["https://salu133445.github.io/muspy/metrics.html",
                            "https://github.com/RichardYang40148/mgeval"],
        )

    def _compute(self, predictions: list[str], reference_files: list[str] | None = None) -> dict:
        values, failed = describe_files(predictions)
        result = _summary(values, failed)
        if reference_files is None:
            return result
        ref_values, ref_failed = describe_files(reference_files)
        result["reference"] = _summary(ref_values, ref_failed)
        oa, kl = {}, {}
        for name in DESCRIPTORS:
            pred = [v for v in values[name] if math.isfinite(v)]
            ref = [v for v in ref_values[name] if math.isfinite(v)]
            if ref and not pred:  # defined for the references, for no prediction: nothing overlaps
                oa[name], kl[name] = 0.0, None
            else:
                oa[name], kl[name] = (_nan_to_none(x) for x in distribution_distance(pred, ref))
        result["overlapping_area"], result["kl_divergence"] = oa, kl
        defined = [v for v in oa.values() if v is not None]  # descriptors the references define
        result["mean_overlapping_area"] = float(np.mean(defined)) if defined else None
        return result
