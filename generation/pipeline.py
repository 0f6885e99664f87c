"""Sample a trained model into a folder of MIDI files, piano rolls and a quality report.

``generate_to_folder`` is what ``scripts/generate.py`` and ``scripts/run_study.py`` call.
It writes, under the output folder:

- ``sample_000.mid`` ... and ``sample_000.png`` (piano roll) for each sample that decoded;
- ``samples.json``: the settings, one `SampleReport` per sample and their totals;
- ``reference/test_000.mid`` ...: pieces of the test split, cropped to the samples' length;
- ``quality.json``: MusPy descriptors of samples and references and the distance between
  their distributions (``metrics/music_descriptors``), when the dataset is known.
"""

from __future__ import annotations

import io
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.io import write_bytes_atomic, write_json_atomic
from configs.naming import RUN_SUMMARY_FILENAME
from configs.sampling import SamplingArguments
from generation.pianoroll import pianoroll_figure
from generation.quality import describe_and_compare
from generation.reference import reference_pieces
from generation.sampling import (
    SampleReport,
    decode_sample,
    grammar_error_rate,
    load_model_and_tokenizer,
    prompt_ids,
    sample_ids,
    score_seconds,
)
from tokenizer import special_token_ids

SAMPLES_DIRNAME = "samples"
SAMPLES_FILENAME = "samples.json"
QUALITY_FILENAME = "quality.json"
REFERENCE_DIRNAME = "reference"


@dataclass
class GenerationArguments:
    """Options of ``scripts/generate.py`` (each field is a ``--flag``) besides the sampling
    settings, which are `configs.sampling.SamplingArguments`."""

    _argument_group_name = "generation"

    model: str = field(metadata={"help": "Run folder written by scripts/train.py, or a Hub model id USER/NAME."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Where to write the samples (default: <run folder>/samples; required for a Hub id)."})
    num_samples: int = field(default=8, metadata={"help": "Pieces to sample."})
    seed: int = field(default=0, metadata={"help": "Random seed; the same seed gives the same samples."})
    prompt: str | None = field(default=None, metadata={"help": "MIDI file whose first --prompt-bars bars each "
                                                               "sample continues (default: start from BOS)."})
    prompt_bars: int = field(default=4, metadata={"help": "Bars of --prompt to keep."})
    dataset: str | None = field(default=None, metadata={
        "help": "Prepared dataset whose test split the samples are compared with (default: the run's dataset, "
                "from run_summary.json; none for a Hub id)."})
    num_reference: int = field(default=64, metadata={"help": "Test pieces to compare with."})
    batch_size: int = field(default=16, metadata={"help": "Sequences sampled at once."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)."})
    revision: str | None = field(default=None, metadata={"help": "Hub branch, tag or commit (Hub ids only)."})

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.num_reference < 0 or self.batch_size < 1:
            raise ValueError("--num-samples and --batch-size must be >= 1 and --num-reference >= 0; got "
                             f"{self.num_samples}, {self.batch_size}, {self.num_reference}.")

    def resolved_output_dir(self) -> Path:
        """``output_dir``, or ``<run folder>/samples`` for a local run.

        Raises:
            ValueError: a Hub id without ``output_dir``.
        """
        if self.output_dir:
            return Path(self.output_dir)
        if Path(self.model).is_dir():
            return Path(self.model) / SAMPLES_DIRNAME
        raise ValueError(f"{self.model} is not a local run folder; check the path, or pass --output-dir for samples "
                         "of a Hub model.")

    def settings(self, sampling: SamplingArguments) -> dict[str, Any]:
        """The fields that determine the samples (compared to decide whether to resample)."""
        keys = ("num_samples", "seed", "batch_size", "prompt", "prompt_bars")  # batch_size: sequences
        settings = {k: getattr(self, k) for k in keys}  # drawn together share the RNG stream
        if not self.prompt:
            settings["prompt_bars"] = None
        return {**settings, **asdict(sampling)}


def run_dataset(run_dir: str | Path) -> str | None:
    """The dataset a run was trained on (from its run_summary.json), or None if unknown or gone."""
    summary = Path(run_dir) / RUN_SUMMARY_FILENAME
    if not summary.is_file():
        return None
    dataset = json.loads(summary.read_text()).get("config", {}).get("run", {}).get("dataset")
    return dataset if dataset and Path(dataset).is_dir() else None


def _png_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def generate_to_folder(args: GenerationArguments, sampling: SamplingArguments | None = None, *, model: Any = None,
                       tokenizer: Any = None) -> dict[str, Any]:
    """Sample, decode, draw and judge; write everything under ``args.resolved_output_dir()``.

    A sample that fails to decode is reported (``decoded: false`` and the error) and its
    file is not written; it never stops the others.

    Args:
        args: the options.
        sampling: the sampling settings (default: `SamplingArguments()`).
        model, tokenizer: an already loaded pair (default: loaded from ``args.model``).

    Returns:
        The content of ``samples.json``, with ``quality`` (the content of quality.json, or None).

    Raises:
        ValueError / FileNotFoundError: bad settings, prompt or paths (messages say what to do).
    """
    out = args.resolved_output_dir()
    sampling = sampling or SamplingArguments()
    if model is None or tokenizer is None:
        model, tokenizer = load_model_and_tokenizer(args.model, device=args.device, revision=args.revision)
    prompt = prompt_ids(tokenizer, args.prompt, args.prompt_bars) if args.prompt else None
    start = time.perf_counter()
    sequences = sample_ids(model, tokenizer, num_samples=args.num_samples, seed=args.seed, prompt=prompt,
                           sampling=sampling, batch_size=args.batch_size)
    sampling_sec = time.perf_counter() - start
    context = prompt or [special_token_ids(tokenizer)["bos"]]
    max_new = sampling.max_new_tokens or model.config.n_positions - len(context)

    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("sample_*.mid"), *out.glob("sample_*.png")]:
        old.unlink()  # a rerun with other settings must not leave stale samples behind
    reports = []
    for i, ids in enumerate(sequences):
        report = SampleReport(index=i, num_tokens=len(ids), ended_with_eos=len(ids) < max_new, decoded=False,
                              error="", num_notes=0, seconds=math.nan,
                              grammar_error_rate=grammar_error_rate(tokenizer, context, ids))
        if len(context) == 1 and not ids:
            report.error = "no tokens: the model ended the piece at once (EOS first)"
            reports.append(report)
            continue
        try:
            score = decode_sample(tokenizer, context, ids)
        except Exception as err:  # noqa: BLE001 - one undecodable sample must not stop the others
            report.error = f"{type(err).__name__}: {err}"
        else:
            report.decoded, report.num_notes, report.seconds = True, score.note_num(), score_seconds(score)
            path = out / f"sample_{i:03d}.mid"
            write_bytes_atomic(path, score.dumps_midi())
            write_bytes_atomic(path.with_suffix(".png"),
                               _png_bytes(pianoroll_figure(score, f"{args.model} — sample {i}")))
            report.path = path.name
        reports.append(report)

    summary = {
        "model": str(args.model),
        "settings": args.settings(sampling),
        "max_new_tokens": max_new,
        "prompt_tokens": len(context) - 1,
        "device": str(model.device),
        "sampling_sec": sampling_sec,
        "tokens_per_second": sum(len(s) for s in sequences) / sampling_sec if sampling_sec > 0 else None,
        "num_decoded": sum(r.decoded for r in reports),
        "num_ended_with_eos": sum(r.ended_with_eos for r in reports),
        "mean_num_tokens": _mean([r.num_tokens for r in reports]),
        "mean_num_notes": _mean([r.num_notes for r in reports if r.decoded]),
        "mean_seconds": _mean([r.seconds for r in reports if r.decoded]),
        "mean_grammar_error_rate": _mean([r.grammar_error_rate for r in reports]),
        "samples": [{**r.to_dict(), "ids": ids} for r, ids in zip(reports, sequences, strict=True)],
    }
    summary["quality"] = _judge(args, out, tokenizer, reports, max_new + len(context) - 1)
    write_json_atomic(out / SAMPLES_FILENAME, {k: v for k, v in summary.items() if k != "quality"})
    return summary


def _judge(args: GenerationArguments, out: Path, tokenizer: Any, reports: list[SampleReport],
           max_tokens: int) -> dict[str, Any] | None:
    """Descriptors of the samples against the test split; writes reference/ and quality.json."""
    sample_paths = [str(out / r.path) for r in reports if r.decoded]
    (out / QUALITY_FILENAME).unlink(missing_ok=True)
    if not sample_paths:
        warnings.warn(f"No sample of {args.model} decoded; no quality report.", stacklevel=2)
        return None
    dataset = args.dataset or (run_dataset(args.model) if Path(args.model).is_dir() else None)
    reference_paths = []
    if dataset and args.num_reference:
        special = special_token_ids(tokenizer)
        ref_dir = out / REFERENCE_DIRNAME
        ref_dir.mkdir(exist_ok=True)
        for old in ref_dir.glob("test_*.mid"):
            old.unlink()
        pieces = reference_pieces(dataset, special["bos"], special["eos"], max_pieces=args.num_reference,
                                  max_tokens=max_tokens)
        for j, piece in enumerate(pieces):
            try:
                score = decode_sample(tokenizer, [], piece)
            except Exception:  # noqa: BLE001, S112 - a reference that does not decode is left out
                continue
            if score.note_num():
                path = ref_dir / f"test_{j:03d}.mid"
                write_bytes_atomic(path, score.dumps_midi())
                reference_paths.append(str(path))
    elif not dataset:
        print(f"No dataset known for {args.model}: descriptors without a test-split comparison "
              "(pass --dataset to compare).")
    result = describe_and_compare(sample_paths, reference_paths or None)
    quality = {"dataset": dataset, "reference_split": "test", "reference_max_tokens": max_tokens,
               "num_reference": len(reference_paths), **result}
    write_json_atomic(out / QUALITY_FILENAME, quality)
    return quality


def sample_study(study_dir: str | Path, run_names: list[str], *, count: int, seed: int, dataset: str | None = None,
                 sampling: SamplingArguments | None = None, log: Any = print) -> dict[str, str]:
    """Sample ``count`` pieces from each finished run of a study, into ``<run>/samples``.

    A run whose samples.json has the same settings (and whose quality.json exists when a
    dataset is given) is left as it is, so rerunning a study does not resample. A failure
    in one run is logged and the next still runs.

    Args:
        study_dir: the study folder (one sub-folder per run).
        run_names: run names (`configs.naming.run_name`, e.g. ``demo3``, ``demo1-lr0.0141``).
        count: samples per run (>= 1).
        seed: sampling seed, the same for every run.
        dataset: the prepared dataset, for the test-split comparison.
        sampling: the sampling settings (default: `SamplingArguments()`).
        log: called with one line per run.

    Returns:
        run name -> ``"sampled"``, ``"existing"``, ``"no run"`` or ``"failed: <error>"``.
    """
    sampling = sampling or SamplingArguments()
    status = {}
    for size in run_names:
        run_dir = Path(study_dir) / size
        if not (run_dir / RUN_SUMMARY_FILENAME).is_file():
            status[size] = "no run"
            continue
        args = GenerationArguments(model=str(run_dir), num_samples=count, seed=seed, dataset=dataset)
        out = args.resolved_output_dir()
        try:
            previous = json.loads((out / SAMPLES_FILENAME).read_text()).get("settings")
        except (OSError, ValueError):
            previous = None
        if previous == args.settings(sampling) and (dataset is None or (out / QUALITY_FILENAME).is_file()):
            status[size] = "existing"
            log(f"    {size}: samples with these settings exist ({out})")
            continue
        try:
            summary = generate_to_folder(args, sampling)
        except Exception as err:  # noqa: BLE001 - samples are extras: a failure must not lose the study
            status[size] = f"failed: {type(err).__name__}: {err}"
            log(f"    {size}: sampling FAILED: {err}")
            continue
        status[size] = "sampled"
        quality = summary.get("quality") or {}
        oa = quality.get("mean_overlapping_area")
        log(f"    {size}: {summary['num_decoded']}/{count} samples decoded, grammar error rate "
            f"{summary['mean_grammar_error_rate']:.3f}" + (f", overlap with test {oa:.3f}" if oa is not None else "")
            + f" ({out})")
    return status


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """Human-readable lines: one per sample, then totals and the quality figures."""
    lines = [f"{'sample':>6} {'tokens':>6} {'EOS':>4} {'notes':>6} {'seconds':>8} {'grammar err':>11}  file"]
    for s in summary["samples"]:
        seconds = f"{s['seconds']:.1f}" if s["seconds"] is not None else "-"
        lines.append(f"{s['index']:>6} {s['num_tokens']:>6} {'yes' if s['ended_with_eos'] else 'no':>4} "
                     f"{s['num_notes']:>6} {seconds:>8} {s['grammar_error_rate']:>11.3f}  "
                     + (s["path"] or f"not decoded: {s['error']}"))
    lines.append(f"{summary['num_decoded']}/{len(summary['samples'])} decoded, "
                 f"mean grammar error rate {summary['mean_grammar_error_rate']:.3f}, "
                 f"{summary['tokens_per_second']:.0f} tokens/s on {summary['device']}")
    quality = summary.get("quality")
    if quality and quality.get("mean_overlapping_area") is not None:
        oa = ", ".join(f"{k} {v:.2f}" for k, v in quality["overlapping_area"].items() if v is not None)
        lines.append(f"overlap with {quality['num_reference']} test pieces: "
                     f"mean {quality['mean_overlapping_area']:.3f} ({oa})")
    return lines

