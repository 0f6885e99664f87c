"""Checkpoints of a run in progress: which one is complete, whether it may be resumed, and the
recipe (dataset, batch, schedule) a run is checked against before it is resumed or reused.

The Trainer writes checkpoints; this module decides what to do with them when a run starts
again after a crash, a kill or a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from configs.naming import RUN_SUMMARY_FILENAME, TRAINER_STATE_FILENAME

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


def checkpoint_problem(path: str | Path) -> str | None:
    """Why a ``checkpoint-N`` folder cannot be resumed, or None when it is complete.

    The Trainer writes a checkpoint file by file (weights, optimizer, scheduler, RNG states,
    then ``trainer_state.json``), none of them atomically, so a kill can leave any of them
    half-written. A checkpoint counts only when ``trainer_state.json`` parses and names step N,
    ``config.json`` parses, the weights open with ``safetensors`` (which checks that the file
    covers its header) and the optimizer, scheduler and RNG states are whole ``torch.save``
    archives (a truncated zip has no central directory).
    """
    path = Path(path)
    step = path.name[len(CHECKPOINT_PREFIX):]
    for name in (TRAINER_STATE_FILENAME, "config.json"):
        try:
            data = json.loads((path / name).read_text())
        except FileNotFoundError:
            return f"no {name}"
        except (OSError, ValueError) as err:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            return f"{name} does not parse ({err})"
        if name == TRAINER_STATE_FILENAME and str(data.get("global_step")) != step:
            return f"trainer_state.json is at step {data.get('global_step')}, not {step}"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return "no *.safetensors weights"
    for file in weights:
        try:
            with safe_open(str(file), "pt"):
                pass
        except Exception as err:  # noqa: BLE001 - SafetensorError, OSError: all mean unreadable
            return f"{file.name} is incomplete ({err})"
    rng = sorted(path.glob("rng_state*.pth"))
    for file in [path / "optimizer.pt", path / "scheduler.pt", *(rng or [path / "rng_state.pth"])]:
        if not file.is_file():
            return f"no {file.name}"
        if not zipfile.is_zipfile(file):
            return f"{file.name} is incomplete (not a whole torch.save archive)"
    return None


def last_complete_checkpoint(output_dir: str | Path, log: bool = True) -> Path | None:
    """The highest-step ``checkpoint-N`` folder that is complete (:func:`checkpoint_problem`).

    With ``log``, each newer checkpoint passed over is logged in one line with the reason
    (typically one being written when the process was killed), so a resume says where it
    fell back from.
    """
    steps = []
    for path in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name[len(CHECKPOINT_PREFIX):]
        if suffix.isdigit():
            steps.append((int(suffix), path))
    for _, path in sorted(steps, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if log:
            logger.warning("%s is incomplete (%s): falling back to the checkpoint before it", path, problem)
    return None


RUN_PLAN_FILENAME = "run_plan.json"  # what a run in progress trains on, checked when it is resumed
# TrainingArguments that change the result of a run of a given D, learning rate and seed
RECIPE_TRAINING_KEYS = ("warmup_steps", "lr_scheduler_type", "lr_scheduler_kwargs", "weight_decay", "adam_beta1",
                        "adam_beta2", "adam_epsilon", "max_grad_norm")


def run_recipe(dataset: str | Path, fingerprint: str, block_size: int, global_batch_tokens: int,
               training: dict[str, Any]) -> dict[str, Any]:
    """What a run was (or will be) trained on, besides its D, learning rate and seed.

    Args:
        dataset: the prepared dataset's folder (named in messages, not compared).
        fingerprint: its `data.prepared.dataset_fingerprint`.
        block_size: tokens per block; global_batch_tokens: tokens per optimizer step.
        training: ``TrainingArguments.to_dict()`` (or the study's settings); the
            `RECIPE_TRAINING_KEYS` are kept.

    Returns:
        A JSON-able dict; compare two with :func:`recipe_differences`.
    """
    return {"dataset": str(dataset), "dataset_fingerprint": fingerprint, "block_size": block_size,
            "global_batch_tokens": global_batch_tokens, **{k: training.get(k) for k in RECIPE_TRAINING_KEYS}}


def recipe_of_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The `run_recipe` of a finished run, read back from its ``run_summary.json``."""
    config = summary.get("config") or {}
    return run_recipe((config.get("dataset") or {}).get("path", "?"), summary.get("dataset_fingerprint"),
                      summary.get("block_size"), summary.get("global_batch_tokens"), config.get("training") or {})


def recipe_differences(trained: dict[str, Any], planned: dict[str, Any]) -> list[str]:
    """How ``planned`` differs from ``trained`` (two `run_recipe` dicts), one phrase each.

    A key missing or None on either side (a run from before it was recorded) is not compared.
    """
    out = []
    if None not in (trained.get("dataset_fingerprint"), planned.get("dataset_fingerprint")) \
            and trained["dataset_fingerprint"] != planned["dataset_fingerprint"]:
        same = " (the same folder, prepared again since)" if trained.get("dataset") == planned.get("dataset") else ""
        out.append(f"was trained on the dataset {trained.get('dataset')} (fingerprint "
                   f"{trained['dataset_fingerprint'][:8]}), not {planned.get('dataset')} "
                   f"(fingerprint {planned['dataset_fingerprint'][:8]}){same}")
    for key in ("block_size", "global_batch_tokens", *RECIPE_TRAINING_KEYS):
        old, new = trained.get(key), planned.get(key)
        if old is not None and new is not None and old != new and not (
                isinstance(old, float | int) and isinstance(new, float | int) and np.isclose(old, new, rtol=1e-9)):
            out.append(f"has {key} {old}, not {new}")
    return out


def checkpoint_to_resume(output_dir: Path, max_steps: int, tokens_per_step: int, plan: dict[str, Any] | None = None,
                         *, resume: bool = False, restart: bool = False) -> Path | None:
    """The checkpoint to resume from (None: start over), checked against the planned run.

    Args:
        output_dir: the run folder.
        max_steps, tokens_per_step: the planned optimizer steps and global batch in tokens.
        resume: ``--resume``: a checkpoint is required.
        restart: ``--restart``: delete the checkpoints, run plan and summary, and start over.
        plan: this run's `run_recipe` plus ``model``, ``learning_rate`` and ``seed``; compared
            with the ``run_plan.json`` the run wrote when it started (None: not compared).

    Raises:
        ValueError: ``--resume`` without a checkpoint; a checkpoint from another plan (steps or
            batch, which would silently change D; another dataset, block size, model, learning
            rate, seed or schedule, which would mix two runs in one); or a finished run
            without ``--restart``. Each message names both sides and the way out.
    """
    if resume and restart:
        raise ValueError("--resume and --restart contradict each other; give one.")
    if restart:
        for path in output_dir.glob(f"{CHECKPOINT_PREFIX}*"):
            shutil.rmtree(path)  # starting over: no stale checkpoint may be resumed later
        (output_dir / RUN_SUMMARY_FILENAME).unlink(missing_ok=True)
        (output_dir / RUN_PLAN_FILENAME).unlink(missing_ok=True)
        return None
    if (output_dir / RUN_SUMMARY_FILENAME).is_file():
        raise ValueError(f"{output_dir} holds a finished run ({RUN_SUMMARY_FILENAME}); use another --output-dir, "
                         "or --restart to train it again from scratch.")
    last = last_complete_checkpoint(output_dir)
    if last is None:
        if resume:
            raise ValueError(f"--resume: no complete checkpoint-* folder in {output_dir}; drop --resume to "
                             "start from scratch.")
        return None
    saved_steps = json.loads((last / TRAINER_STATE_FILENAME).read_text()).get("max_steps")
    if saved_steps != max_steps:
        raise ValueError(f"{last} belongs to a run of {saved_steps} steps, this one plans {max_steps} "
                         f"({tokens_per_step} tokens per step); use the same study and dataset, or pass "
                         "--restart to start over.")
    try:
        started = json.loads((output_dir / RUN_PLAN_FILENAME).read_text())
    except (OSError, ValueError):
        started = None  # a run from before run_plan.json was written: steps checked above only
    if plan is not None and started is not None:
        differences = recipe_differences(started, plan) + [
            f"has {key} {started.get(key)}, not {plan.get(key)}" for key in ("model", "learning_rate", "seed",
                                                                              "unique_tokens")
            if started.get(key) is not None and started.get(key) != plan.get(key)]
        if differences:
            raise ValueError(f"Cannot resume {last}: the run {'; '.join(differences)}. Resume with the same "
                             "arguments, pass --restart to start over, or use another --output-dir.")
    return last


@contextlib.contextmanager
def _out_of_space_as_os_error(output_dir: Path, checkpoint_bytes: int) -> Iterator[None]:
    """Turn a full disk while saving into ``OSError(ENOSPC)`` naming ``output_dir``.

    ``torch.save`` reports a failed write as ``RuntimeError`` (``basic_ios::clear: iostream
    error``, ``unexpected pos ...``) and ``safetensors`` as its own error, with no word of
    space: a failure while less than one checkpoint (``checkpoint_bytes``) is free on the
    output's file system is taken to be that. `configs.cli.run_main` prints it in one line
    with the free space; the last complete checkpoint stays for a resume.
    """
    try:
        yield
    except Exception as err:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        try:
            free = shutil.disk_usage(output_dir).free
        except OSError:
            raise err from None
        if free >= checkpoint_bytes or not isinstance(err, RuntimeError | OSError | SafetensorError):
            raise
        last = last_complete_checkpoint(output_dir, log=False)
        raise OSError(errno.ENOSPC, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; a "
                      f"checkpoint of this model takes about {checkpoint_bytes / 1e6:.2g} MB; "
                      + (f"{last.name} is complete and the run resumes from it" if last else
                         "no complete checkpoint yet"), str(output_dir)) from err
