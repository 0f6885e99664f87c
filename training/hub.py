"""Share a finished run or a prepared dataset on the Hugging Face Hub, with a card.

Everything that decides *what* is pushed is local and testable offline: the cards
(:mod:`sharing.cards`) are pure functions of ``run_summary.json`` / ``stats.json`` (and
``fit.json``), and the ``stage_*`` helpers copy exactly the files that would be uploaded into a folder. The
``push_*`` functions then stage into a temporary folder and upload it with
``huggingface_hub.HfApi`` (one repository per model size, one per dataset).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data.pipeline import MANIFEST_FILENAME, STATS_FILENAME
from sharing.cards import DEFAULT_LICENSE, dataset_card, model_card, size_label
from tokenizer import TOKENIZER_FILENAME
from training.run import RUN_SUMMARY_FILENAME, read_dataset_stats

logger = logging.getLogger(__name__)

README_FILENAME = "README.md"
TRAINER_STATE_FILENAME = "trainer_state.json"
MODEL_CONFIG_FILES = ("config.json", "generation_config.json")  # the second is optional
SAFETENSORS_FILENAME = "model.safetensors"
SAFETENSORS_INDEX_FILENAME = "model.safetensors.index.json"  # sharded checkpoints


def repo_id_for_size(hub_model_id: str, size: str) -> str:
    """Repository of one size when a whole study is pushed: ``<hub_model_id>-<size>``.

    E.g. ``repo_id_for_size("me/midi-gpt2", "configs/sizes/small.yaml") == "me/midi-gpt2-small"``.
    """
    return f"{hub_model_id}-{size_label(size)}"


# --- model staging and push


def _model_files(run_dir: Path) -> list[Path]:
    """Files of a finished run that are pushed (the card aside).

    Raises:
        FileNotFoundError: no finished run in ``run_dir``; says what to run.
    """
    index = run_dir / SAFETENSORS_INDEX_FILENAME
    if index.is_file():
        weights = [index, *(run_dir / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values())))]
    else:
        weights = [run_dir / SAFETENSORS_FILENAME]
    required = [*weights, run_dir / MODEL_CONFIG_FILES[0], run_dir / TOKENIZER_FILENAME,
                run_dir / RUN_SUMMARY_FILENAME, run_dir / TRAINER_STATE_FILENAME]
    missing = [p.name for p in required if not p.is_file()]
    if missing:
        msg = (f"No finished run in {run_dir}: missing {', '.join(missing)}. Train it first, e.g.\n"
               f"  python scripts/train.py --size <size> --dataset <prepared dataset> --output-dir {run_dir}")
        raise FileNotFoundError(msg)
    optional = [run_dir / f for f in MODEL_CONFIG_FILES[1:] if (run_dir / f).is_file()]
    return required + optional


def _empty_staging_dir(staging_dir: str | Path) -> Path:
    staging_dir = Path(staging_dir)
    if staging_dir.exists() and any(staging_dir.iterdir()):
        raise ValueError(f"Staging folder {staging_dir} is not empty; everything in it would be pushed. "
                         "Choose a new folder or remove it.")
    staging_dir.mkdir(parents=True, exist_ok=True)
    return staging_dir


def stage_model_folder(run_dir: str | Path, staging_dir: str | Path, fit: dict[str, Any] | None = None, *,
                       license: str = DEFAULT_LICENSE, repo_id: str | None = None) -> Path:
    """Copy exactly what :func:`push_model` uploads into ``staging_dir``.

    That is the weights (``model.safetensors``, or its shards and index), ``config.json``
    (and ``generation_config.json`` when present), ``tokenizer.json``,
    ``run_summary.json``, ``trainer_state.json`` and a generated ``README.md``
    (:func:`model_card`). ``training_args.bin`` (a pickle) is left out.

    Args:
        run_dir: ``--output-dir`` of a finished ``scripts/train.py`` run.
        staging_dir: new or empty folder (created).
        fit: optional ``fit.json`` dictionary of ``scripts/analyze.py``.
        license: Hub license id written into the card.
        repo_id: repository named in the card's code; a placeholder when None.

    Returns:
        ``staging_dir`` as a Path.

    Raises:
        FileNotFoundError: ``run_dir`` holds no finished run (says what to run).
        ValueError: the run is not finished, or ``staging_dir`` is not empty.
    """
    run_dir = Path(run_dir)
    files = _model_files(run_dir)
    summary = json.loads((run_dir / RUN_SUMMARY_FILENAME).read_text())
    if summary.get("status", "finished") != "finished":
        raise ValueError(f"The run in {run_dir} has status {summary['status']!r}, not 'finished'; "
                         "train it again before pushing.")
    staging_dir = _empty_staging_dir(staging_dir)
    for f in files:
        shutil.copy2(f, staging_dir / f.name)
    (staging_dir / README_FILENAME).write_text(str(model_card(summary, fit, license=license, repo_id=repo_id)))
    return staging_dir


def _hf_api(api: Any, token: str | None) -> Any:
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _log_upload(folder: Path, repo_id: str) -> None:
    files = ", ".join(f"{f.name} ({f.stat().st_size:,} B)" for f in sorted(folder.iterdir()))
    logger.info("uploading to %s: %s", repo_id, files)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(repo_id)  # HFValidationError is a ValueError naming the rule broken


def _is_network_error(err: BaseException) -> bool:
    """A connection, DNS, proxy or timeout failure of the Hub client (``httpx``'s transport
    errors are not OSErrors, and the client's HTTP library has changed between releases)."""
    names = {c.__name__ for c in type(err).__mro__}
    return isinstance(err, ConnectionError | TimeoutError) or bool(
        names & {"TransportError", "ConnectError", "ConnectTimeout", "TimeoutException", "ProxyError"})


@contextlib.contextmanager
def hub_errors(repo_id: str, local: str | Path) -> Iterator[None]:
    """Turn the Hub client's failures inside the block into one-line errors that say what to do.

    Args:
        repo_id: the repository being pushed to (named in the message).
        local: the folder being pushed; the message says it is untouched.

    Raises:
        ConnectionError: ``HF_HUB_OFFLINE`` is set, or the Hub cannot be reached (network,
            DNS, proxy, timeout) or answers a server error.
        PermissionError: the Hub refused the token (HTTP 401/403).
    """
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    after = f"{local} is unchanged; run the same command again to push it."
    try:
        yield
    except OfflineModeIsEnabled as err:
        raise ConnectionError(f"Cannot push to {repo_id}: HF_HUB_OFFLINE is set, which turns the Hub off; "
                              f"unset it (or run where the Hub can be reached). {after}") from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise PermissionError(f"The Hub refused to let this token write {repo_id} (HTTP {status}): log in with "
                                  f"`hf auth login` or set HF_TOKEN to a token with write access. {after}") from err
        raise ConnectionError(f"The Hub failed while pushing {repo_id} (HTTP {status}): "
                              f"{str(err).splitlines()[0]}. {after}") from err
    except Exception as err:
        if not _is_network_error(err):
            raise
        raise ConnectionError(f"Cannot reach the Hugging Face Hub to push {repo_id} ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else 'no answer'}); check the network "
                              f"or proxy (HTTPS_PROXY). {after}") from err


def push_model(run_dir: str | Path, repo_id: str, *, fit: dict[str, Any] | None = None, private: bool = False,
               token: str | None = None, revision: str | None = None, license: str = DEFAULT_LICENSE,
               api: Any = None) -> str:
    """Push a finished run to a model repository on the Hub (created if missing).

    Args:
        run_dir: ``--output-dir`` of a finished ``scripts/train.py`` run.
        repo_id: ``"user/name"`` (or ``"name"`` in the token's namespace); for a study,
            one repository per size, see :func:`repo_id_for_size`.
        fit: optional ``fit.json`` dictionary; its fitted law goes into the card.
        private: create the repository private (an existing one keeps its visibility).
        token: Hub token; ``None`` uses ``HF_TOKEN`` or the cached ``hf auth login``.
        revision: branch to commit to (created from main when missing); ``None`` is main.
        license: Hub license id written into the card.
        api: a ``huggingface_hub.HfApi`` (or a stand-in for tests); ``None`` makes one.

    Returns:
        URL of the upload commit.

    Raises:
        FileNotFoundError / ValueError: see :func:`stage_model_folder`; a malformed repo_id.
        ConnectionError / PermissionError: the Hub cannot be reached or refuses the token
            (:func:`hub_errors`); the run folder is untouched.
    """
    _check_repo_id(repo_id)
    api = _hf_api(api, token)
    with tempfile.TemporaryDirectory(prefix="hub_model_") as tmp:
        staged = stage_model_folder(run_dir, tmp, fit, license=license, repo_id=repo_id)
        summary = json.loads((staged / RUN_SUMMARY_FILENAME).read_text())
        _log_upload(staged, repo_id)
        with hub_errors(repo_id, run_dir):
            api.create_repo(repo_id, exist_ok=True, private=private)
            if revision is not None:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id, folder_path=str(staged), revision=revision,
                commit_message=f"Upload size {size_label(summary['size'])} "
                               f"(N={summary['n_params_non_embedding']:,}, D={summary['tokens_trained']:,})")
    return info.commit_url


# --- dataset card, staging and push


def stage_dataset_extras(data_dir: str | Path, staging_dir: str | Path, *, license: str = DEFAULT_LICENSE,
                         repo_id: str | None = None) -> Path:
    """Copy what :func:`push_dataset` uploads beside the splits into ``staging_dir``.

    That is ``tokenizer.json``, ``stats.json``, ``manifest.jsonl`` and a generated
    ``README.md`` (:func:`dataset_card`); the splits themselves go up as Parquet through
    ``DatasetDict.push_to_hub``. ``license`` and ``repo_id`` go into the card
    (see :func:`dataset_card`).

    Returns:
        ``staging_dir`` as a Path.

    Raises:
        FileNotFoundError: no prepared dataset at ``data_dir`` (says what to run).
        ValueError: ``staging_dir`` is not empty.
    """
    data_dir = Path(data_dir)
    stats = read_dataset_stats(data_dir)
    files = [data_dir / f for f in (TOKENIZER_FILENAME, STATS_FILENAME, MANIFEST_FILENAME)]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir} lacks {', '.join(missing)}; prepare it again with "
                                f"python scripts/prepare_data.py --output {data_dir} ...")
    staging_dir = _empty_staging_dir(staging_dir)
    for f in files:
        shutil.copy2(f, staging_dir / f.name)
    (staging_dir / README_FILENAME).write_text(str(dataset_card(stats, license=license, repo_id=repo_id)))
    return staging_dir


def push_dataset(data_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                 license: str = DEFAULT_LICENSE, api: Any = None) -> str:
    """Push a prepared dataset to a dataset repository on the Hub (created if missing).

    The card and files of :func:`stage_dataset_extras` are uploaded first, then the
    splits with ``DatasetDict.push_to_hub`` (Parquet), which adds its metadata to the
    card already there instead of replacing it.

    Args:
        data_dir: ``--output`` of ``scripts/prepare_data.py``.
        repo_id: ``"user/name"`` (or ``"name"`` in the token's namespace).
        private: create the repository private (an existing one keeps its visibility).
        token: Hub token; ``None`` uses ``HF_TOKEN`` or the cached ``hf auth login``.
        license: Hub license id; it must match the license of the source MIDI files.
        api: a ``huggingface_hub.HfApi`` (or a stand-in for tests); ``None`` makes one.

    Returns:
        URL of the last commit (the splits).

    Raises:
        FileNotFoundError: no prepared dataset at ``data_dir``. ValueError: malformed repo_id.
        ConnectionError / PermissionError: the Hub cannot be reached or refuses the token
            (:func:`hub_errors`); the dataset folder is untouched.
    """
    from datasets import load_from_disk

    _check_repo_id(repo_id)
    read_dataset_stats(data_dir)  # fails before any upload when there is no dataset
    api = _hf_api(api, token)
    with hub_errors(repo_id, data_dir):
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
        with tempfile.TemporaryDirectory(prefix="hub_dataset_") as tmp:
            staged = stage_dataset_extras(data_dir, tmp, license=license, repo_id=repo_id)
            _log_upload(staged, repo_id)
            api.upload_folder(repo_id=repo_id, folder_path=str(staged), repo_type="dataset",
                              commit_message="Upload dataset card, tokenizer, stats and manifest")
        logger.info("uploading to %s: the train/validation/test splits as Parquet", repo_id)
        info = load_from_disk(str(data_dir)).push_to_hub(repo_id, private=private, token=token,
                                                         commit_message="Upload packed splits")
    # push_to_hub returns None when the splits on the Hub are already identical
    return info.commit_url if info is not None else f"https://huggingface.co/datasets/{repo_id}"
