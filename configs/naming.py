"""Names of sizes and runs, the one place they are made (folders, W&B, summaries, samples, tables,
Hub repositories), and of the two record files of a run folder that every layer reads
(``run_summary.json``, ``trainer_state.json``). Files that one module writes and reads keep their
name there (``run_plan.json`` in `training.checkpoints`, ``results.json`` in `training.study`).

Imports nothing but the standard library, so analysis and sharing use it without torch.
"""

from __future__ import annotations

from pathlib import Path

RUN_SUMMARY_FILENAME = "run_summary.json"  # a finished run's record (training.run writes it last)
TRAINER_STATE_FILENAME = "trainer_state.json"  # the Trainer's log history


def size_name(size: str) -> str:
    """A size as shown everywhere: its name (``"small"``), or a size file's stem
    (``"configs/sizes/small.yaml"`` -> ``"small"``)."""
    return Path(size).stem if str(size).endswith((".yaml", ".yml")) else str(size)


def flops_label(c: float) -> str:
    """A FLOP count for a folder name, 3 significant digits: 3e+11 -> ``"3e11"``, 1.5e12 -> ``"1.5e12"``."""
    mantissa, exponent = f"{c:.3g}".split("e") if "e" in f"{c:.3g}" else (f"{c:.3g}", "0")
    return f"{mantissa}e{int(exponent)}"


def run_name(size: str, *, tokens: int | None = None, compute: float | None = None,
             learning_rate: float | None = None, seed: int | None = None, stable: bool = False,
             unique: int | None = None, epochs: float | None = None) -> str:
    """The name of a study's run, from what sets it apart: its folder under the study, its W&B run
    name (``TrainingArguments.run_name``) and ``run_name`` in its ``run_summary.json``.

    ``<size>`` for the main budget, ``-D<tokens>`` for an extra token budget, ``-C<FLOPs>`` for
    an IsoFLOP budget, ``-lr<rate>`` for one point of a learning-rate sweep, ``-s<seed>`` for a
    repeat with another seed, ``-stable`` for the stable phase of a warmup-stable-decay schedule
    (trained on ``tokens``, its cooldown branches named like runs of their own budget),
    ``-U<tokens>-e<epochs>`` for ``epochs`` passes over ``unique`` tokens (repeated data); e.g.
    ``demo3``, ``demo3-C1e12``, ``demo1-lr0.0141-s2``, ``demo0-D1310720-stable``, ``micro1-U24576-e4``.
    """
    name = size_name(size)
    if tokens is not None:
        name += f"-D{tokens}"
    if compute is not None:
        name += f"-C{flops_label(compute)}"
    if unique is not None:
        name += f"-U{unique}-e{epochs:g}"
    if learning_rate is not None:
        name += f"-lr{learning_rate:.3g}"
    if seed is not None:
        name += f"-s{seed}"
    if stable:
        name += "-stable"
    return name
