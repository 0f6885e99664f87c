"""Loader source: a study's runs on Weights & Biases, pulled into local run folders.

There is one analysis path. `pull_wandb_runs` writes each W&B run of a project (optionally one
group, i.e. one study) as an ordinary run folder, ``run_summary.json`` plus a
``trainer_state.json`` whose ``log_history`` is rebuilt from the W&B history, into a cache;
`analysis.report.run_analysis` then reads that folder exactly as it reads a local study. The
cache also makes a second analysis work offline: when the API cannot be reached the last pull
is analyzed, with a note saying so.

What training logs (``training/``): run name = size, group = study name, summary = the scalar
keys of ``run_summary.json``, config = its ``"config"`` (plus the TrainingArguments), and the
history of transformers' ``WandbCallback``: every Trainer log through ``rewrite_logs``
(``eval_x -> eval/x``, ``test_x -> test/x``, other keys ``-> train/x``) plus
``train/global_step``. `history_to_log_history` inverts that.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from analysis.loaders import STATE_FILE, SUMMARY_FILE
from common.io import write_json_atomic

logger = logging.getLogger(__name__)

DEFAULT_CACHE_ROOT = Path("~/.cache/midi-scaling/wandb")
ALL_GROUPS = "_all"  # cache folder name when no --group is given
MANIFEST_FILE = "wandb_source.json"  # in the cache folder: what was pulled, when, into which folders
# Seconds per HTTP request to the W&B API. Long enough for a page of history on a slow link,
# short enough that an unreachable server costs seconds before the cache is used.
API_TIMEOUT_SEC = 15
FINISHED = "finished"
# Prefixes `transformers.integrations.integration_utils.rewrite_logs` adds, and the Trainer
# key prefix each stands for.
_LOG_PREFIXES = {"eval/": "eval_", "test/": "test_", "train/": ""}
_GLOBAL_STEP = "train/global_step"
_SCALARS = (bool, int, float, str, type(None))


class WandbSourceError(RuntimeError):
    """The W&B source has nothing to analyze (API unreachable and no cache, or no runs)."""


@dataclass(frozen=True)
class WandbPull:
    """Outcome of `pull_wandb_runs`.

    Attributes:
        cache_dir: Folder of run folders to analyze (pass it to `run_analysis`).
        n_runs: Runs in the cache.
        from_cache: True when the API failed and an earlier pull was used as is.
        pulled_at: ISO 8601 UTC time of the pull the cache holds.
        note: One line for the user when ``from_cache`` (why, and which pull), else "".
    """

    cache_dir: Path
    n_runs: int
    from_cache: bool
    pulled_at: str
    note: str = ""


@dataclass
class _PulledRun:
    """One run's data in plain Python, fetched before anything is written."""

    id: str
    name: str
    group: str | None
    state: str
    entity: str
    project: str
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]


def parse_project_path(path: str) -> tuple[str, str]:
    """Splits ``"ENTITY/PROJECT"`` into its two parts.

    Args:
        path: W&B project path, e.g. ``"my-team/midi-scaling"``.

    Returns:
        ``(entity, project)``.

    Raises:
        ValueError: ``path`` is not two non-empty names separated by one ``/``.
    """
    parts = path.strip().split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"--wandb must be ENTITY/PROJECT (e.g. my-team/midi-scaling); got {path!r}.")
    return parts[0], parts[1]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("._") or "run"


def default_cache_dir(path: str, group: str | None = None) -> Path:
    """``~/.cache/midi-scaling/wandb/<entity>/<project>/<group or _all>``, user folder expanded.

    Args:
        path: ``"ENTITY/PROJECT"``.
        group: W&B group (the study name), or None for all runs of the project.

    Returns:
        The cache folder (not created).

    Raises:
        ValueError: As `parse_project_path`.
    """
    entity, project = parse_project_path(path)
    leaf = ALL_GROUPS if group is None else _safe_name(group)
    return DEFAULT_CACHE_ROOT.expanduser() / _safe_name(entity) / _safe_name(project) / leaf


def history_to_log_history(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rebuilds a Trainer ``log_history`` from W&B history rows logged by ``WandbCallback``.

    Inverts ``rewrite_logs``: ``eval/x -> eval_x``, ``test/x -> test_x``, ``train/x -> x``, and
    ``train/global_step`` becomes ``step``. Keys W&B adds (``_step``, ``_runtime``, ...), keys
    without one of those prefixes and None values are dropped, as are rows without
    ``train/global_step`` (not logged by the Trainer). The scalars ``WandbCallback`` sends to
    the summary only (``train_runtime``, ``train_loss``, ``total_flos``, ...) are not in the
    history, so they are absent here too.

    Args:
        rows: History rows in logging order (``run.scan_history()``).

    Returns:
        List of dicts like ``{"eval_loss": 5.1, "num_input_tokens_seen": 15360, "step": 30}``.
    """
    entries = []
    for row in rows:
        step = row.get(_GLOBAL_STEP)
        if step is None:
            continue
        entry = {}
        for key, value in row.items():
            if key == _GLOBAL_STEP or value is None:
                continue
            prefix = next((p for p in _LOG_PREFIXES if key.startswith(p)), None)
            if prefix is not None:
                entry[_LOG_PREFIXES[prefix] + key[len(prefix):]] = value
        entry["step"] = int(step)
        entries.append(entry)
    return entries


def _fetch(api: Any, path: str, group: str | None) -> list[_PulledRun]:
    """Every API call of a pull; only plain Python leaves this function."""
    filters = {"group": group} if group is not None else None
    pulled = []
    for run in api.runs(path, filters=filters):
        summary = run.summary
        pulled.append(_PulledRun(
            id=str(run.id), name=str(run.name or run.id), group=run.group, state=str(run.state),
            entity=str(run.entity), project=str(run.project), config=dict(run.config or {}),
            summary={key: summary.get(key) for key in summary.keys()},
            history=[dict(row) for row in run.scan_history()],
        ))
    return pulled


def _run_name_of(run: _PulledRun) -> str:
    return str(run.summary.get("run_name") or run.name)


def _unique_names(runs: list[_PulledRun]) -> dict[str, str]:
    """run id -> run_name; names shared by several runs get ``-<id>`` so curves never mix.

    When exactly one of the runs sharing a name finished (a size retrained after a crash), it
    keeps the plain name.
    """
    counts = Counter(_run_name_of(r) for r in runs)
    finished = Counter(_run_name_of(r) for r in runs if r.state == FINISHED)
    names = {}
    for run in runs:
        name = _run_name_of(run)
        keep = counts[name] == 1 or (finished[name] == 1 and run.state == FINISHED)
        names[run.id] = name if keep else f"{name}-{run.id}"
        if not keep:
            logger.warning("Several W&B runs are named %r; run %s is analyzed as %r.", name, run.id, names[run.id])
    return names


def _summary_file(run: _PulledRun, run_name: str) -> dict[str, Any]:
    """The run_summary.json a local run would have, from the W&B summary and config."""
    # Flat scalars only: keys with "/" are WandbCallback's last logged values, "_" keys are W&B's.
    summary = {k: v for k, v in run.summary.items()
               if "/" not in k and not k.startswith("_") and isinstance(v, _SCALARS)}
    where = f"W&B run {run.entity}/{run.project}/{run.id}"
    summary["run_name"] = run_name
    summary.setdefault("size", run.name)
    if run.state != FINISHED:
        summary["status"] = run.state
        summary["note"] = (f"{where} is still running; analyze again when it has finished" if run.state == "running"
                           else f"{where} ended as '{run.state}'"
                           + ("" if "eval_loss" in summary else " before logging its final summary"))
    elif not summary.get("status"):
        summary["status"] = "no_summary"
        summary["note"] = (f"{where} finished but its summary lacks the {SUMMARY_FILE} keys "
                           "(eval_loss, n_params_non_embedding, ...) that training/run.py logs at the end")
    summary["config"] = run.config
    summary["wandb_run"] = {"entity": run.entity, "project": run.project, "id": run.id, "name": run.name,
                            "group": run.group, "state": run.state}
    return summary


def _write_cache(cache_dir: Path, runs: list[_PulledRun], path: str, group: str | None) -> str:
    """Writes one folder per run and the manifest; removes folders of runs no longer listed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    old = _read_manifest(cache_dir)
    names = _unique_names(runs)
    folders = {}
    for run in runs:
        folder = cache_dir / f"{_safe_name(run.name)}-{_safe_name(run.id)}"
        folder.mkdir(exist_ok=True)
        log_history = history_to_log_history(run.history)
        write_json_atomic(folder / STATE_FILE, {"global_step": max((e["step"] for e in log_history), default=0),
                                                "log_history": log_history})
        write_json_atomic(folder / SUMMARY_FILE, _summary_file(run, names[run.id]))
        folders[run.id] = folder.name
    for entry in (old or {}).get("runs", []):
        stale = cache_dir / str(entry.get("folder", ""))
        if entry.get("folder") and entry["folder"] not in folders.values() and stale.is_dir():
            shutil.rmtree(stale)  # the run was deleted on W&B or left the group
    pulled_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(cache_dir / MANIFEST_FILE, {
        "source": "wandb", "path": path, "group": group, "pulled_at": pulled_at,
        "runs": [{"id": r.id, "name": r.name, "state": r.state, "folder": folders[r.id]} for r in runs],
    })
    return pulled_at


def _read_manifest(cache_dir: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((cache_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _default_api(timeout_sec: float) -> Any:
    import wandb

    # Silent settings make wandb raise instead of prompting for an API key in a terminal.
    wandb.setup(settings=wandb.Settings(silent=True))
    return wandb.Api(timeout=int(max(1, timeout_sec)))


def _one_line(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:200]}" if first else type(err).__name__


def pull_wandb_runs(
    path: str,
    *,
    group: str | None = None,
    cache_dir: str | Path | None = None,
    api: Any = None,
    timeout_sec: float = API_TIMEOUT_SEC,
) -> WandbPull:
    """Pulls a W&B project's runs into local run folders for `analysis.report.run_analysis`.

    Each run becomes ``<cache_dir>/<name>-<id>/`` holding ``run_summary.json`` (the summary's
    flat scalars, ``config`` = the run config, ``wandb_run`` = where it came from) and
    ``trainer_state.json`` (``log_history`` from `history_to_log_history`). A run whose state
    is not ``"finished"`` gets that state as its ``status`` and a ``note``, so the analysis
    lists it as not used; a finished run whose summary lacks the training keys gets status
    ``"no_summary"``. Files are written atomically and all API calls happen before the first
    write, so a failed pull leaves the previous cache intact. Folders of runs that are no
    longer listed are removed; ``wandb_source.json`` records the pull.

    If anything about the API fails (no network, no credentials, a W&B error) and the cache
    holds an earlier pull of the same project and group, that pull is used and
    ``WandbPull.note`` says so. The API never prompts for a key and each request times out.

    Args:
        path: ``"ENTITY/PROJECT"``.
        group: Only runs of this W&B group (the study name); None for all runs.
        cache_dir: Cache folder; default `default_cache_dir` (``~/.cache/midi-scaling/wandb/
            <entity>/<project>/<group or _all>``).
        api: Object with ``runs(path, filters=...)`` like ``wandb.Api()`` (tests pass a
            stand-in); default ``wandb.Api(timeout=timeout_sec)``.
        timeout_sec: HTTP timeout of the default API, seconds (default `API_TIMEOUT_SEC`).

    Returns:
        A `WandbPull`; analyze ``cache_dir``.

    Raises:
        ValueError: ``path`` is not ``ENTITY/PROJECT``.
        WandbSourceError: The API failed and there is no usable cache (the message says how to
            log in, or to pass --runs), or the API answered but lists no runs.
    """
    entity, project = parse_project_path(path)
    path = f"{entity}/{project}"
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(path, group)
    where = f"W&B project {path}" + (f", group {group!r}" if group is not None else "")
    try:
        runs = _fetch(api if api is not None else _default_api(timeout_sec), path, group)
    except Exception as err:  # any API failure (network, auth, a W&B error) means: use the cache
        manifest = _read_manifest(cache)
        if manifest is None or manifest.get("path") != path or manifest.get("group") != group:
            held = "" if manifest is None else (f" ({cache} holds {manifest.get('path')}, "
                                                f"group {manifest.get('group')!r})")
            raise WandbSourceError(
                f"Cannot read {where} from the W&B API ({_one_line(err)}) and there is no cached pull "
                f"of it in {cache}{held}. Check the network and the credentials (`wandb login`, or set "
                f"WANDB_API_KEY; WANDB_BASE_URL for a private server) and the ENTITY/PROJECT, or pass "
                f"--wandb-cache with an earlier pull, or analyze local run folders with --runs."
            ) from err
        pulled_at = str(manifest.get("pulled_at") or "unknown time")
        note = (f"note: W&B API unavailable ({_one_line(err)}); analyzing the cached pull of {where} "
                f"from {pulled_at} in {cache}")
        return WandbPull(cache_dir=cache, n_runs=len(manifest.get("runs") or []), from_cache=True,
                         pulled_at=pulled_at, note=note)
    if not runs:
        raise WandbSourceError(
            f"{where} has no runs. Check ENTITY/PROJECT and --group (the study name that "
            f"training logs as the W&B group), or drop --group to pull every run of the project."
        )
    pulled_at = _write_cache(cache, runs, path, group)
    return WandbPull(cache_dir=cache, n_runs=len(runs), from_cache=False, pulled_at=pulled_at)
