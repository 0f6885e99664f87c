"""Weights & Biases for a study: naming, the run config, and going offline by itself.

One run per size: project = the study's ``project``, group = ``study_name``, run name = the
size. The run is created here (so its config holds N, D, C, the dataset and the tokenizer
before the first step) and the Trainer's ``WandbCallback`` logs into it.
"""

from __future__ import annotations

import hashlib
import netrc
import os
import secrets
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASE_URL = "https://api.wandb.ai"
RUN_ID_FILENAME = "wandb_run_id.txt"  # lets a resumed training continue the same W&B run


def wandb_mode(env: dict[str, str] | None = None, probe_timeout_sec: float = 3.0) -> tuple[str, str]:
    """The W&B mode to use, and why: never a login prompt, never a hang.

    ``WANDB_MODE`` set by the user wins. Otherwise ``"offline"`` when there are no
    credentials (``WANDB_API_KEY`` or an entry for the W&B host, ``WANDB_BASE_URL`` or
    wandb's default server, in ``~/.netrc``, which is where ``wandb login`` stores the key)
    or when the host does not accept a TCP connection within ``probe_timeout_sec``; else
    ``"online"``.

    Returns:
        ``(mode, reason)``; ``reason`` is "" for online.
    """
    env = dict(os.environ) if env is None else env
    if env.get("WANDB_MODE"):
        return env["WANDB_MODE"], "WANDB_MODE is set"
    base_url = env.get("WANDB_BASE_URL") or _default_base_url()
    url = urlparse(base_url)
    host = url.hostname or "api.wandb.ai"
    if not env.get("WANDB_API_KEY") and not _netrc_has(host, env):
        return "offline", "no W&B credentials (set WANDB_API_KEY or run `wandb login`)"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=probe_timeout_sec).close()
    except OSError as err:
        return "offline", f"{host}:{port} cannot be reached ({err})"
    return "online", ""


def _default_base_url() -> str:
    """The server wandb talks to when ``WANDB_BASE_URL`` is unset (it changed across wandb versions)."""
    try:
        import wandb

        return str(wandb.Settings().base_url)
    except Exception:  # noqa: BLE001 - any failure here means: use the classic default
        return DEFAULT_BASE_URL


def _netrc_has(host: str, env: dict[str, str]) -> bool:
    path = env.get("NETRC") or str(Path(env.get("HOME", str(Path.home()))) / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def git_commit(repo: Path = REPO) -> str:
    """``git describe``-style commit of the code that trains: the hash, ``+dirty`` if the
    tree has uncommitted changes, or ``"unknown"`` outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def dataset_fingerprint(dataset_dir: str | Path) -> str:
    """SHA-1 of a prepared dataset's Arrow files (names and bytes, in sorted order).

    Equal for the same token content however it was made (unlike stats.json, which holds
    timings); read in 1 MiB chunks, so about a second per GB.
    """
    h = hashlib.sha1()
    root = Path(dataset_dir)
    for path in sorted(root.glob("*/*.arrow")):
        h.update(str(path.relative_to(root)).encode())
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def start_wandb_run(output_dir: Path, mode: str, reason: str, *, project: str, group: str, name: str,
                    config: dict[str, Any]):
    """Create (or, after a restart, continue) the W&B run for one training run.

    Args:
        output_dir: the run folder; offline runs are written under ``output_dir/wandb``.
        mode, reason: from :func:`wandb_mode`; for offline runs the reason and the
            ``wandb sync`` command that uploads them later are printed.
        project, group, name: W&B naming (the study's project, its name, the size).
        config: the run config (N, D, C, dataset, tokenizer, commit, ...).

    The run id is kept in ``output_dir/wandb_run_id.txt`` so a resumed training logs into
    the same W&B run.

    Returns:
        The ``wandb`` run.
    """
    import wandb

    id_file = output_dir / RUN_ID_FILENAME
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
    id_file.write_text(run_id + "\n")
    run = wandb.init(project=project, group=group, name=name, id=run_id, resume="allow", config=config,
                     dir=str(output_dir), mode=mode,
                     settings=wandb.Settings(init_timeout=60, silent=True, console="off"))
    if mode == "offline":
        # every session of a resumed run has its own offline-run folder with the same run id
        print(f"W&B offline ({reason}). Upload later with:\n  wandb sync {output_dir / 'wandb'}/offline-run-*")
    return run
