"""Weights & Biases for a study: naming, the run config, and going offline by itself.

One run per size: project = the study's ``project``, group = ``study_name``, run name = the
size. The run is created here (so its config holds N, D, C, the dataset and the tokenizer
before the first step) and the Trainer's ``WandbCallback`` logs into it.
"""

from __future__ import annotations

import base64
import json
import netrc
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASE_URL = "https://api.wandb.ai"
RUN_ID_FILENAME = "wandb_run_id.txt"  # lets a resumed training continue the same W&B run
DEFAULT_INIT_TIMEOUT_SEC = 15.0  # WANDB_INIT_TIMEOUT overrides it


VIEWER_QUERY = "query Viewer { viewer { id } }"  # the query wandb's own login check sends


def wandb_mode(env: dict[str, str] | None = None, probe_timeout_sec: float = 3.0) -> tuple[str, str]:
    """The W&B mode to use, and why: never a login prompt, never a hang.

    ``WANDB_MODE`` set by the user wins. Otherwise ``"offline"`` when there are no
    credentials (``WANDB_API_KEY`` or an entry for the W&B host, ``WANDB_BASE_URL`` or
    wandb's default server, in ``~/.netrc``, which is where ``wandb login`` stores the key),
    or when the server does not answer a viewer query with that key within
    ``probe_timeout_sec`` (:func:`probe_server`: unreachable, an error status such as 503, a
    rejected key, or a proxy or captive portal that answers something else); else ``"online"``.

    Returns:
        ``(mode, reason)``; ``reason`` is "" for online.

    Raises:
        ValueError: ``WANDB_MODE=online`` without credentials (wandb would prompt for a key
            or fail after the dataset was loaded); says how to log in or go offline.
    """
    env = dict(os.environ) if env is None else env
    base_url = env.get("WANDB_BASE_URL") or _default_base_url()
    host = urlparse(base_url).hostname or "api.wandb.ai"
    api_key = env.get("WANDB_API_KEY") or _netrc_key(host, env)
    if env.get("WANDB_MODE"):
        if env["WANDB_MODE"] == "online" and not api_key:
            raise ValueError(f"WANDB_MODE=online but there are no W&B credentials for {host}: set WANDB_API_KEY "
                             "or run `wandb login`, or unset WANDB_MODE to log offline and `wandb sync` later.")
        return env["WANDB_MODE"], "WANDB_MODE is set"
    if not api_key:
        return "offline", "no W&B credentials (set WANDB_API_KEY or run `wandb login`)"
    problem = probe_server(base_url, api_key, probe_timeout_sec)
    return ("offline", problem) if problem else ("online", "")


def probe_server(base_url: str, api_key: str, timeout_sec: float = 3.0) -> str | None:
    """Ask the W&B server at ``base_url`` who owns ``api_key`` (POST ``/graphql``, the viewer
    query), waiting at most ``timeout_sec`` per connect or read.

    Returns:
        None when it answers as a W&B server that accepts the key; otherwise why not, in a
        phrase: cannot be reached, no answer in time, an HTTP error status (503 during an
        outage), a rejected key (401/403), or an answer that is not W&B's JSON (a proxy or
        captive portal).
    """
    url = base_url.rstrip("/") + "/graphql"
    token = base64.b64encode(f"api:{api_key}".encode()).decode()
    request = urllib.request.Request(url, data=json.dumps({"query": VIEWER_QUERY}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_sec) as response:
            body = response.read(1 << 20)
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            return f"{base_url} rejected the API key (HTTP {err.code}; check WANDB_API_KEY or `wandb login --relogin`)"
        return f"{base_url} answered HTTP {err.code} {err.reason}"
    except (urllib.error.URLError, OSError) as err:  # refused, unknown host, timeout (socket.timeout is OSError)
        reason = getattr(err, "reason", err)
        return f"{base_url} cannot be reached within {timeout_sec:g} s ({reason})"
    try:
        viewer = json.loads(body)["data"]["viewer"]
    except (ValueError, KeyError, TypeError):
        return f"{base_url} did not answer as a W&B server (a proxy or captive portal?)"
    return None if viewer else f"{base_url} did not accept the API key (check WANDB_API_KEY or `wandb login`)"


def _default_base_url() -> str:
    """The server wandb talks to when ``WANDB_BASE_URL`` is unset (it changed across wandb versions)."""
    try:
        import wandb

        return str(wandb.Settings().base_url)
    except Exception:  # noqa: BLE001 - any failure here means: use the classic default
        return DEFAULT_BASE_URL


def _netrc_key(host: str, env: dict[str, str]) -> str | None:
    """The password ``wandb login`` stored for ``host`` in ``~/.netrc`` (``$NETRC``), or None."""
    path = env.get("NETRC") or str(Path(env.get("HOME", str(Path.home()))) / ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry else None


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
    the same W&B run. An online start that fails or takes longer than ``WANDB_INIT_TIMEOUT``
    seconds (default 15) falls back to an offline run, with the reason in the printed line.

    Returns:
        The ``wandb`` run.
    """
    import wandb

    id_file = output_dir / RUN_ID_FILENAME
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
    id_file.write_text(run_id + "\n")
    # the server answered a probe just now (wandb_mode), so a start that takes longer than
    # this is a fault: fall back to offline rather than hold up training
    init_timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", DEFAULT_INIT_TIMEOUT_SEC))

    def init(mode: str):
        return wandb.init(project=project, group=group, name=name, id=run_id, resume="allow", config=config,
                          dir=str(output_dir), mode=mode,
                          settings=wandb.Settings(init_timeout=init_timeout, silent=True, console="off"))

    if mode == "online":
        try:
            return init("online")
        except Exception as err:  # noqa: BLE001 - wandb raises several kinds (CommError, UsageError, timeouts)
            mode, reason = "offline", f"starting the online run failed: {type(err).__name__}: {_first_line(err)}"
    run = init(mode)
    if mode == "offline":
        # every session of a resumed run has its own offline-run folder with the same run id
        print(f"W&B offline ({reason}). Upload later with:\n  wandb sync {output_dir / 'wandb'}/offline-run-*")
    return run


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""
