"""Loaders: a study on local disk to tidy DataFrames.

This is the only layer that knows where runs come from. The W&B source
(`analysis.wandb_source`) writes what it pulls as run folders and is read through these same
functions, so both sources give the same two frames (`RUN_COLUMNS`, `CURVE_COLUMNS`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from configs.naming import RUN_SUMMARY_FILENAME as SUMMARY_FILE
from configs.naming import TRAINER_STATE_FILENAME as STATE_FILE
from configs.naming import size_name

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"  # scripts/run_study.py's list of {size, run_dir, status, error, ...}
RUN_COLUMNS = [
    "run_name", "size", "N", "N_total", "N_flops", "D", "C", "train_loss", "eval_loss", "test_loss",
    "wall_clock_s", "tokens_per_second", "n_layer", "n_embd", "n_head", "block_size",
    "global_batch_tokens", "flops_per_token", "budget_role", "compute_budget", "learning_rate", "seed",
    "lr_source", "branch_of", "U_D", "epochs", "tokens_per_note_validation", "tokens_per_note_test", "status",
    "note", "path",
]
# Files that mark a top-level folder as something other than a run (an analysis output, a
# prepared dataset from scripts/prepare_data.py), so it is not reported as a failed run.
_NOT_A_RUN_MARKERS = ("fit.json", "report.md", "dataset_dict.json", "manifest.jsonl")
CURVE_COLUMNS = ["run_name", "size", "N", "step", "tokens", "eval_loss"]
# Summary key -> DataFrame column; names follow Kaplan et al. (2020): N, D, C = 6ND.
_SUMMARY_KEYS = {
    "n_params_non_embedding": "N", "n_params": "N_total", "tokens_trained": "D", "flops": "C",
    "train_loss": "train_loss", "eval_loss": "eval_loss", "test_loss": "test_loss",
    "wall_clock_s": "wall_clock_s", "tokens_per_second": "tokens_per_second",
    "n_layer": "n_layer", "n_embd": "n_embd", "n_head": "n_head", "block_size": "block_size",
    "global_batch_tokens": "global_batch_tokens", "flops_per_token": "flops_per_token",
    # repeated data (Muennighoff et al. 2023): the unique tokens U_D and the passes over them; nan for older runs
    "unique_tokens": "U_D", "epochs": "epochs",
}


def _number(value: Any) -> float:
    """Float or nan: a null, string or missing field must not crash the analysis."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def _find_summaries(study_dir: str | Path) -> list[Path]:
    root = Path(study_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Study directory {root} does not exist. Train runs first, e.g. "
            f"`python scripts/run_study.py ...` (all sizes) or `python scripts/train.py --size ...`, "
            f"then pass their output folder to --runs."
        )
    summaries = sorted(root.rglob(SUMMARY_FILE))
    if not summaries:
        raise FileNotFoundError(
            f"No {SUMMARY_FILE} found under {root}. Every finished run writes one; run "
            f"`python scripts/run_study.py ...` or `python scripts/train.py --size ...` with its "
            f"output under this folder first."
        )
    return summaries


def _run_row(summary_path: Path) -> dict[str, Any]:
    folder = summary_path.parent
    row: dict[str, Any] = {"run_name": folder.name, "size": None, "status": "unknown", "note": "",
                           "path": str(folder)}
    row.update({col: float("nan") for col in _SUMMARY_KEYS.values()})
    try:
        summary = _read_json(summary_path)
        if not isinstance(summary, dict):
            raise ValueError(f"top level is {type(summary).__name__}, not an object")
    except (OSError, ValueError) as err:
        logger.warning("Could not read %s (%s); the run is listed as not used.", summary_path, err)
        return row | {"status": "unreadable", "note": f"{SUMMARY_FILE} unreadable: {err}"}
    row.update({col: _number(summary.get(key)) for key, col in _SUMMARY_KEYS.items()})
    row["run_name"] = str(summary.get("run_name") or folder.name)
    size = str(summary.get("size") or row["run_name"])
    row["size"] = size_name(size)  # a size file -> its name
    row["status"] = str(summary.get("status") or "unknown")
    row["note"] = str(summary.get("note") or "")  # set by sources that know why a run is unusable
    config = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    row["N_flops"] = row["flops_per_token"] / 6.0  # C = 6 N D with the head's and attention's FLOPs counted
    # a run's place in its study: top-level keys (and config.run) now, config.study in runs made before
    place = {**(config.get("study") or {}), **(config.get("run") or {}), **summary}
    row["compute_budget"] = _number(place.get("compute_budget"))
    row["budget_role"] = place.get("budget_role") or ""  # "" for runs made before budgets had roles
    training = config.get("training") or {}
    # top-level keys since learning rates were swept; the Trainer's own config before (and on W&B)
    row["learning_rate"] = _number(summary.get("learning_rate", training.get("learning_rate",
                                                                            config.get("learning_rate"))))
    row["seed"] = _number(summary.get("seed", training.get("seed", config.get("seed"))))
    row["lr_source"] = str(place.get("lr_source") or "")
    row["branch_of"] = str(summary.get("branch_of") or "")  # a cooldown branch: its stable run
    splits = ((config.get("dataset") or {}).get("stats") or {}).get("splits") or {}
    for split, column in (("validation", "tokens_per_note_validation"), ("test", "tokens_per_note_test")):
        # every predicted token of the packed split per note, BOS/EOS included: block_size - 1 per
        # block, as the loss is a mean over those (training.run.collate_blocks)
        info = splits.get(split) or {}
        predicted = _number(info.get("packed_tokens")) - _number(info.get("blocks", 0))
        row[column] = predicted / _number(info.get("notes")) if info.get("notes") else np.nan
    if np.isnan(row["C"]) and np.isfinite(row["N"] * row["D"]):
        row["C"] = 6.0 * row["N"] * row["D"]  # C = 6ND, Kaplan et al. (2020), sec. 2.1
    return row


def _folders_without_summary(root: Path, summaries: list[Path], exclude: Iterable[str | Path]) -> list[Path]:
    """Top-level folders of the study with no run_summary.json anywhere below (failed sizes)."""
    excluded = {Path(p).resolve() for p in exclude}
    with_summary = {p.resolve() for s in summaries for p in s.parents}
    return [d for d in sorted(root.iterdir())
            if d.is_dir() and not d.name.startswith(".")
            and d.resolve() not in with_summary and d.resolve() not in excluded
            and not any((d / marker).exists() for marker in _NOT_A_RUN_MARKERS)]


def _failure_notes(root: Path) -> dict[Path, str]:
    """run_dir -> one-line failure note from the study's results.json, if it has one."""
    try:
        entries = _read_json(root / RESULTS_FILE)
    except (OSError, ValueError):
        return {}
    notes = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("run_dir") and entry.get("status") == "failed":
            last = [line.strip() for line in str(entry.get("error") or "").splitlines() if line.strip()]
            note = f"failed with exit code {entry.get('returncode')}"
            notes[Path(entry["run_dir"]).resolve()] = note + (f", last log line: {last[-1]}" if last else "")
    return notes


def load_local_runs(study_dir: str | Path, *, exclude: Iterable[str | Path] = ()) -> pd.DataFrame:
    """Loads every run of a study from its ``run_summary.json`` files.

    The study is scanned recursively, so runs may sit at any depth. Top-level folders with no
    summary below them (a size that crashed before finishing) get a row with status
    ``"no_summary"``, except hidden folders and those holding an analysis output or a prepared
    dataset (`_NOT_A_RUN_MARKERS`); ``results.json`` at the root, when present, only adds the
    failure's exit code and last log line to their notes. A summary's optional ``"note"`` key
    (written by `analysis.wandb_source` for crashed W&B runs) becomes the row's note. Nothing
    here decides which runs a fit uses: unfinished or broken runs keep their status and a note.

    Args:
        study_dir: Root folder of the study (e.g. ``runs/demo``).
        exclude: Folders to skip when looking for summary-less runs, e.g. an analysis
            output folder inside the study.

    Returns:
        DataFrame with columns `RUN_COLUMNS`, one row per run, sorted by ``N`` (nan last):
        ``N`` non-embedding parameters, ``N_total`` all parameters, ``N_flops`` training FLOPs
        per token / 6 (head and attention counted), ``D`` training tokens,
        ``C`` FLOPs (``6 * N * D``), losses in nats/token (``test_loss`` may be nan),
        ``wall_clock_s`` seconds, ``tokens_per_second``, ``flops_per_token`` (training FLOPs
        per token incl. output head and attention), ``budget_role`` (``main``, ``grid``,
        ``isoflop``; "" when unrecorded), ``compute_budget`` (the IsoFLOP budget C
        the run was planned for, nan for none), ``learning_rate`` (peak), ``seed`` (model
        initialisation and data order), ``lr_source`` (``swept``, ``rule``, ``fixed``; "" when
        unrecorded), ``tokens_per_note_validation`` and
        ``tokens_per_note_test`` (packed tokens per note of those splits, for loss per note),
        ``status`` (``"finished"`` for
        usable runs), ``note`` (why a row is incomplete) and ``path`` (run folder). Numeric
        columns are float64 with nan for missing values.

    Raises:
        FileNotFoundError: ``study_dir`` is missing or holds no ``run_summary.json``; the
            message says which training command to run.
    """
    summaries = _find_summaries(study_dir)
    rows = [_run_row(p) for p in summaries]
    failures = _failure_notes(Path(study_dir))
    for folder in _folders_without_summary(Path(study_dir), summaries, exclude):
        note = f"no {SUMMARY_FILE} in the folder (the run did not finish)"
        if folder.resolve() in failures:
            note += f"; {RESULTS_FILE}: {failures[folder.resolve()]}"
        rows.append({"run_name": folder.name, "size": folder.name, "status": "no_summary", "note": note,
                     "path": str(folder)})
    df = pd.DataFrame(rows).reindex(columns=RUN_COLUMNS)
    return df.sort_values(["N", "run_name"], na_position="last", kind="stable").reset_index(drop=True)


def _state_file(folder: Path) -> Path | None:
    """The run's own trainer_state.json, else the one of its latest checkpoint."""
    if (folder / STATE_FILE).is_file():
        return folder / STATE_FILE
    checkpoints = [p for p in folder.glob(f"checkpoint-*/{STATE_FILE}") if p.parent.name[11:].isdigit()]
    return max(checkpoints, key=lambda p: int(p.parent.name[11:]), default=None)


def load_eval_curves(study_dir: str | Path) -> pd.DataFrame:
    """Loads eval-loss curves from each run's ``trainer_state.json`` (Hugging Face Trainer).

    Evaluation entries of ``log_history`` are those with an ``eval_loss`` key. Tokens seen are
    ``num_input_tokens_seen`` when logged, else ``step * global_batch_tokens`` from the run
    summary. A run without a readable state file contributes no rows (logged as a warning).

    Args:
        study_dir: Root folder of the study.

    Returns:
        DataFrame with columns `CURVE_COLUMNS`: ``run_name``, ``size``, ``N`` (non-embedding),
        ``step`` (int), ``tokens`` (float, nan if unknown) and ``eval_loss`` (nats/token),
        sorted by ``N`` then ``step``.

    Raises:
        FileNotFoundError: As `load_local_runs`.
    """
    rows = []
    for summary_path in _find_summaries(study_dir):
        run = _run_row(summary_path)
        state_path = _state_file(summary_path.parent)
        if state_path is None:
            logger.warning("No %s for run %s in %s; it has no curve.", STATE_FILE, run["run_name"],
                           summary_path.parent)
            continue
        try:
            history = _read_json(state_path).get("log_history", [])
        except (OSError, ValueError, AttributeError) as err:
            logger.warning("Could not read %s (%s); run %s has no curve.", state_path, err, run["run_name"])
            continue
        for entry in history:
            if not isinstance(entry, dict) or "eval_loss" not in entry or "step" not in entry:
                continue
            tokens = _number(entry.get("num_input_tokens_seen"))
            if not tokens > 0:  # Trainer logs 0 or omits it unless include_num_input_tokens_seen
                tokens = _number(entry["step"]) * run["global_batch_tokens"]
            rows.append({"run_name": run["run_name"], "size": run["size"], "N": run["N"],
                         "step": int(entry["step"]), "tokens": tokens,
                         "eval_loss": _number(entry["eval_loss"])})
    df = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    return df.sort_values(["N", "run_name", "step"], na_position="last", kind="stable").reset_index(drop=True)
