"""Push a finished run or a prepared dataset to the Hugging Face Hub, with its card.

What is pushed is decided offline: :func:`model_upload` and :func:`dataset_upload` name the
files of the local folder that go up and build the card (:mod:`sharing.cards`). The
``push_*`` functions then upload those files straight from the folder with
``HfApi.upload_folder(allow_patterns=...)``, nothing copied, and the card as ``README.md``
beside them (one repository per model size, one per dataset).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import RepoCard

from configs.naming import RUN_SUMMARY_FILENAME, TRAINER_STATE_FILENAME, size_name
from data.prepared import MANIFEST_FILENAME, STATS_FILENAME, read_prepared_dataset
from sharing.cards import DEFAULT_LICENSE, dataset_card, model_card
from tokenizer import TOKENIZER_FILENAME

logger = logging.getLogger(__name__)

README_FILENAME = "README.md"
MODEL_CONFIG_FILES = ("config.json", "generation_config.json")  # the second is optional
SAFETENSORS_FILENAME = "model.safetensors"
SAFETENSORS_INDEX_FILENAME = "model.safetensors.index.json"  # sharded checkpoints
DATASET_FILES = (TOKENIZER_FILENAME, STATS_FILENAME, MANIFEST_FILENAME)  # beside the splits


@dataclass(frozen=True)
class Upload:
    """What one push sends: ``files`` of ``folder`` and ``card`` as ``README.md``.

    Attributes:
        folder: the local run or dataset folder; the files are read from there, never copied.
        files: paths relative to ``folder``, each an exact name; passed as ``allow_patterns``
            to ``HfApi.upload_folder``, so nothing else in ``folder`` is uploaded.
        card: the README.md card (a ``ModelCard`` or ``DatasetCard``).
        commit_message: message of the commit that uploads ``files``.
    """

    folder: Path
    files: tuple[str, ...]
    card: RepoCard
    commit_message: str


def repo_id_for_size(hub_model_id: str, size: str) -> str:
    """Repository of one size when a whole study is pushed: ``<hub_model_id>-<size>``.

    E.g. ``repo_id_for_size("me/midi-gpt2", "configs/sizes/small.yaml") == "me/midi-gpt2-small"``.
    """
    return f"{hub_model_id}-{size_name(size)}"


# --- what is pushed


def _model_files(run_dir: Path) -> list[str]:
    """Files of a finished run that are pushed (the card aside), relative to ``run_dir``.

    Raises:
        FileNotFoundError: no finished run in ``run_dir``; says what to run.
    """
    index = run_dir / SAFETENSORS_INDEX_FILENAME
    if index.is_file():
        weights = [index.name, *sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    else:
        weights = [SAFETENSORS_FILENAME]
    required = [*weights, MODEL_CONFIG_FILES[0], TOKENIZER_FILENAME, RUN_SUMMARY_FILENAME, TRAINER_STATE_FILENAME]
    missing = [f for f in required if not (run_dir / f).is_file()]
    if missing:
        msg = (f"No finished run in {run_dir}: missing {', '.join(missing)}. Train it first, e.g.\n"
               f"  python scripts/train.py --size <size> --dataset <prepared dataset> --output-dir {run_dir}")
        raise FileNotFoundError(msg)
    return required + [f for f in MODEL_CONFIG_FILES[1:] if (run_dir / f).is_file()]


def model_upload(run_dir: str | Path, fit: dict[str, Any] | None = None, *, license: str = DEFAULT_LICENSE,
                 repo_id: str | None = None) -> Upload:
    """What :func:`push_model` uploads from a finished run, decided offline.

    That is the weights (``model.safetensors``, or its shards and index), ``config.json``
    (and ``generation_config.json`` when present), ``tokenizer.json``,
    ``run_summary.json``, ``trainer_state.json``, and the card of
    :func:`sharing.cards.model_card` as ``README.md``. ``training_args.bin`` (a pickle) and
    checkpoints stay home.

    Args:
        run_dir: ``--output-dir`` of a finished ``scripts/train.py`` run.
        fit: optional ``fit.json`` dictionary of ``scripts/analyze.py``.
        license: Hub license id written into the card.
        repo_id: repository named in the card's code; a placeholder when None.

    Returns:
        The :class:`Upload`: ``run_dir``, the file names, the card and the commit message.

    Raises:
        FileNotFoundError: ``run_dir`` holds no finished run (says what to run).
        ValueError: the run's status is not ``finished``.
    """
    run_dir = Path(run_dir)
    files = _model_files(run_dir)
    summary = json.loads((run_dir / RUN_SUMMARY_FILENAME).read_text())
    if summary.get("status", "finished") != "finished":
        raise ValueError(f"The run in {run_dir} has status {summary['status']!r}, not 'finished'; "
                         "train it again before pushing.")
    message = (f"Upload size {size_name(summary['size'])} "
               f"(N={summary['n_params_non_embedding']:,}, D={summary['tokens_trained']:,})")
    return Upload(run_dir, tuple(files), model_card(summary, fit, license=license, repo_id=repo_id), message)


def dataset_upload(data_dir: str | Path, *, license: str = DEFAULT_LICENSE, repo_id: str | None = None) -> Upload:
    """What :func:`push_dataset` uploads beside the splits, decided offline.

    That is ``tokenizer.json``, ``stats.json``, ``manifest.jsonl`` and the card of
    :func:`sharing.cards.dataset_card` as ``README.md``; the splits themselves go up as
    Parquet through ``DatasetDict.push_to_hub``.

    Args:
        data_dir: ``--output`` of ``scripts/prepare_data.py``.
        license: Hub license id; it must match the license of the source MIDI files.
        repo_id: repository named in the card's code; a placeholder when None.

    Returns:
        The :class:`Upload`: ``data_dir``, the file names, the card and the commit message.

    Raises:
        FileNotFoundError: no prepared dataset at ``data_dir``, or one of the files is
            missing (says what to run).
    """
    data_dir = Path(data_dir)
    stats = read_prepared_dataset(data_dir).stats
    missing = [f for f in DATASET_FILES if not (data_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir} lacks {', '.join(missing)}; prepare it again with "
                                f"python scripts/prepare_data.py --output {data_dir} ...")
    return Upload(data_dir, DATASET_FILES, dataset_card(stats, license=license, repo_id=repo_id),
                  "Upload tokenizer, stats and manifest")


# --- the Hub


def _hf_api(api: Any, token: str | None) -> Any:
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi(token=token)


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


def _upload(api: Any, upload: Upload, repo_id: str, card_message: str, **where: Any) -> Any:
    """Upload ``upload.files`` from its folder (one commit), then the card (a second one, so a
    failed file upload never leaves a card describing files that are not there).

    Returns:
        The ``CommitInfo`` of the card's commit, the last one.
    """
    sizes = ", ".join(f"{f} ({(upload.folder / f).stat().st_size:,} B)" for f in upload.files)
    logger.info("uploading to %s: %s, %s (%s B)", repo_id, sizes, README_FILENAME, f"{len(str(upload.card)):,}")
    api.upload_folder(repo_id=repo_id, folder_path=str(upload.folder), allow_patterns=list(upload.files),
                      commit_message=upload.commit_message, **where)
    return api.upload_file(path_or_fileobj=str(upload.card).encode(), path_in_repo=README_FILENAME,
                           repo_id=repo_id, commit_message=card_message, **where)


def push_model(run_dir: str | Path, repo_id: str, *, fit: dict[str, Any] | None = None, private: bool = False,
               token: str | None = None, revision: str | None = None, license: str = DEFAULT_LICENSE,
               api: Any = None) -> str:
    """Push a finished run to a model repository on the Hub (created if missing).

    The files of :func:`model_upload` go up from ``run_dir`` in one commit, then the card
    as ``README.md`` in a second.

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
        URL of the last commit (the card).

    Raises:
        FileNotFoundError / ValueError: see :func:`model_upload`; a malformed repo_id.
        ConnectionError / PermissionError: the Hub cannot be reached or refuses the token
            (:func:`hub_errors`); the run folder is untouched.
    """
    _check_repo_id(repo_id)
    upload = model_upload(run_dir, fit, license=license, repo_id=repo_id)
    api = _hf_api(api, token)
    with hub_errors(repo_id, run_dir):
        api.create_repo(repo_id, exist_ok=True, private=private)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = _upload(api, upload, repo_id, "Upload model card", revision=revision)
    return info.commit_url


def push_dataset(data_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                 license: str = DEFAULT_LICENSE, api: Any = None) -> str:
    """Push a prepared dataset to a dataset repository on the Hub (created if missing).

    The files and card of :func:`dataset_upload` are uploaded first, then the splits
    with ``DatasetDict.push_to_hub`` (Parquet), which adds its metadata to the card
    already there instead of replacing it.

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
    _check_repo_id(repo_id)
    upload = dataset_upload(data_dir, license=license, repo_id=repo_id)  # fails before any upload
    api = _hf_api(api, token)
    with hub_errors(repo_id, data_dir):
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
        _upload(api, upload, repo_id, "Upload dataset card", repo_type="dataset")
        logger.info("uploading to %s: the train/validation/test splits as Parquet", repo_id)
        info = read_prepared_dataset(data_dir).load().push_to_hub(repo_id, private=private, token=token,
                                                         commit_message="Upload packed splits")
    # push_to_hub returns None when the splits on the Hub are already identical
    return info.commit_url if info is not None else f"https://huggingface.co/datasets/{repo_id}"
