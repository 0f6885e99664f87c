"""Run every size of a study in sequence, one process per size.

Each size runs as its own process (``python scripts/train.py`` or a launcher such as
``accelerate launch``) so that a crash, an out-of-memory kill or a hung collective in one
size is recorded and the next size still runs, and memory is returned between sizes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data.io import write_json_atomic
from training.run import RUN_SUMMARY_FILENAME

RESULTS_FILENAME = "results.json"
_SUMMARY_KEYS = ("n_params", "n_params_non_embedding", "tokens_trained", "flops", "train_loss",
                 "eval_loss", "test_loss", "wall_clock_s", "tokens_per_second")


def run_study(sizes: list[str], study_dir: str | Path, train_command: list[str], *,
              log: Any = print, size_args: Callable[[str], list[str]] | None = None) -> list[dict[str, Any]]:
    """Train each size unless its ``run_summary.json`` exists; write ``results.json``.

    Args:
        sizes: size names, smallest first.
        study_dir: one sub-folder per size is created in it.
        train_command: command prefix that trains one size, e.g. ``[python,
            scripts/train.py, --dataset, D, --study, S]``; ``--size`` and
            ``--output-dir`` are appended per size.
        log: called with one progress line per size.
        size_args: extra arguments for one size (e.g. its own ``--hub_model_id``).

    Returns:
        One entry per size: ``size``, ``status`` (``finished``, ``existing``,
        ``failed``), ``run_dir``, ``seconds``, the main summary fields when finished,
        and ``returncode`` / ``error`` (last lines of the log) when failed.
    """
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    try:  # entries of sizes not run this time stay in results.json
        earlier = [e for e in json.loads((study_dir / RESULTS_FILENAME).read_text()) if e.get("size") not in sizes]
    except (OSError, ValueError, AttributeError):
        earlier = []
    for i, size in enumerate(sizes, 1):
        run_dir = study_dir / Path(size).stem
        summary_path = run_dir / RUN_SUMMARY_FILENAME
        entry: dict[str, Any] = {"size": size, "run_dir": str(run_dir)}
        if summary_path.is_file():
            entry["status"] = "existing"
            log(f"[{i}/{len(sizes)}] {size}: run_summary.json exists, skipped")
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            log_path = run_dir / "train.log"
            log(f"[{i}/{len(sizes)}] {size}: training (log: {log_path})")
            t0 = time.time()
            with log_path.open("w") as f:
                extra = size_args(size) if size_args else []
                proc = subprocess.run([*train_command, "--size", size, "--output_dir", str(run_dir), *extra],
                                      stdout=f, stderr=subprocess.STDOUT, check=False)
            entry["seconds"] = round(time.time() - t0, 1)
            if proc.returncode == 0 and summary_path.is_file():
                entry["status"] = "finished"
            else:
                tail = log_path.read_text(errors="replace").replace("\r", "\n").splitlines()[-15:]
                entry.update(status="failed", returncode=proc.returncode, error="\n".join(tail))
                log(f"    {size} FAILED (exit {proc.returncode}) after {entry['seconds']} s; last lines:\n"
                    + "\n".join("      " + line for line in tail[-5:]))
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            entry.update({k: summary.get(k) for k in _SUMMARY_KEYS})
            if entry["status"] == "finished":
                log(f"    {size}: N={summary['n_params_non_embedding']:,} eval_loss={summary['eval_loss']:.4f} "
                    f"{summary['tokens_per_second']:,.0f} tokens/s, {entry['seconds']} s")
        if entry["status"] == "finished" and list((run_dir / "wandb").glob("offline-run-*")):
            log(f"    {size}: W&B run saved offline; upload with: wandb sync {run_dir / 'wandb'}/offline-run-*")
        results.append(entry)
        write_json_atomic(study_dir / RESULTS_FILENAME, earlier + results)  # partial results survive a crash
    return results
