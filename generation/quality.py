"""The music-descriptor metric, loaded with ``evaluate`` from this repository (works offline)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

MUSIC_DESCRIPTORS_PATH = Path(__file__).resolve().parents[1] / "metrics" / "music_descriptors"
DESCRIPTORS = ("pitch_class_entropy", "pitch_range", "polyphony", "scale_consistency",
               "groove_consistency", "empty_beat_rate")


@cache
def load_music_descriptors() -> Any:
    """``evaluate.load`` of ``metrics/music_descriptors`` (see its docstring for inputs and outputs).

    Raises:
        FileNotFoundError: the module folder is missing (a non-editable install); says what to do.
    """
    import evaluate

    if not (MUSIC_DESCRIPTORS_PATH / "music_descriptors.py").is_file():
        raise FileNotFoundError(f"The metric module is not at {MUSIC_DESCRIPTORS_PATH}. Install this "
                                "repository in editable mode (pip install -e .) or run from its checkout.")
    return evaluate.load(str(MUSIC_DESCRIPTORS_PATH))


def describe_and_compare(sample_paths: list[str], reference_paths: list[str] | None = None) -> dict[str, Any]:
    """Descriptors of the samples and, with references, their distance from them.

    Args:
        sample_paths: MIDI files of generated pieces.
        reference_paths: MIDI files of reference pieces (e.g. the test split), or None.

    Returns:
        The metric's result dict: ``descriptors`` (means), ``per_piece``, ``n_pieces``,
        ``n_failed``, ``failed`` and, with references, ``reference``, ``overlapping_area``,
        ``kl_divergence`` and ``mean_overlapping_area``.
    """
    metric = load_music_descriptors()
    kwargs = {"reference_files": [str(p) for p in reference_paths]} if reference_paths else {}
    return metric.compute(predictions=[str(p) for p in sample_paths], **kwargs)
