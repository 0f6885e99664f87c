"""Share a finished run or a prepared dataset on the Hugging Face Hub, with a card.

Everything that decides *what* is pushed is local and testable offline: the cards are
pure functions of ``run_summary.json`` / ``stats.json`` (and ``fit.json``), and the
``stage_*`` helpers copy exactly the files that would be uploaded into a folder. The
``push_*`` functions then stage into a temporary folder and upload it with
``huggingface_hub.HfApi`` (one repository per model size, one per dataset).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from data.pipeline import MANIFEST_FILENAME, SPLITS, STATS_FILENAME
from data.prepared import read_prepared_dataset
from tokenizer import TOKENIZER_FILENAME
from training.run import RUN_SUMMARY_FILENAME

logger = logging.getLogger(__name__)

README_FILENAME = "README.md"
TRAINER_STATE_FILENAME = "trainer_state.json"
MODEL_CONFIG_FILES = ("config.json", "generation_config.json")  # the second is optional
SAFETENSORS_FILENAME = "model.safetensors"
SAFETENSORS_INDEX_FILENAME = "model.safetensors.index.json"  # sharded checkpoints
MODEL_TAGS = ("music", "midi", "symbolic-music", "scaling-laws", "gpt2")
DATASET_TAGS = ("music", "midi", "symbolic-music", "tokenized", "scaling-laws")
DEFAULT_LICENSE = "mit"


# --- names and formatting


def size_label(size: str) -> str:
    """The size as shown in cards and repository names: ``"small"``, or a YAML file's stem."""
    return Path(size).stem


def repo_id_for_size(hub_model_id: str, size: str) -> str:
    """Repository of one size when a whole study is pushed: ``<hub_model_id>-<size>``.

    E.g. ``repo_id_for_size("me/midi-gpt2", "configs/sizes/small.yaml") == "me/midi-gpt2-small"``.
    """
    return f"{hub_model_id}-{size_label(size)}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _count(n: int | None) -> str:
    return "-" if n is None else f"{int(n):,}"


def _loss(x: float | None) -> str:
    """Losses in nats/token, 4 decimals (as in the analysis report)."""
    return "not measured" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _front_matter(meta: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _source_name(stats: dict[str, Any]) -> str:
    # Only the folder's name: the full local path says nothing to a reader of the card.
    source = str(stats.get("source", "unknown"))
    return source if source == "builtin" else Path(source).name or source


def _tokenization_line(stats: dict[str, Any]) -> str:
    params = stats.get("tokenizer_params") or {}
    switches = [k.removeprefix("use_") for k in ("use_programs", "use_tempos", "use_time_signatures",
                                                  "use_chords", "use_rests", "use_velocities",
                                                  "use_sustain_pedals", "use_pitch_bends") if params.get(k)]
    parts = [f"MidiTok `{stats['tokenization']}`"]
    if params.get("pitch_range"):
        low, high = params["pitch_range"]  # MidiTok's range is half-open: [low, high)
        parts.append(f"pitch range {low}-{high - 1}")
    if switches:
        parts.append("with " + ", ".join(switches))
    if stats.get("bpe_vocab_size"):
        parts.append(f"BPE to {stats['bpe_vocab_size']:,} tokens (trained on the train split)")
    return "; ".join(parts)


def _split_rows(stats: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows = []
    for s in SPLITS:
        d = stats["splits"].get(s)
        if d is not None:
            rows.append((s, _count(d["pieces"]), _count(d["tokens"]), _count(d["blocks"]),
                         _count(d.get("dropped_tokens"))))
    return rows


def _dataset_section(stats: dict[str, Any], heading: str) -> list[str]:
    out = [f"## {heading}", "",
           f"- Source: `{_source_name(stats)}`; {_count(stats.get('items_kept'))} pieces kept out of "
           f"{_count(stats.get('items_seen'))} items ({_count(stats.get('items_skipped'))} skipped, "
           "duplicates included)",
           f"- Tokenization: {_tokenization_line(stats)}",
           f"- Vocabulary: {_count(stats['vocab_size'])} tokens; block size {_count(stats['block_size'])} tokens "
           "(pieces joined as `BOS piece EOS`, no padding)",
           "- Splits by piece, from a hash of the musical content (a piece and its duplicates never "
           "span two splits):", ""]
    out += _table(("split", "pieces", "tokens", "blocks", "dropped tail tokens"), _split_rows(stats))
    if stats.get("augmented_sequences"):
        out += ["", f"The train split also holds {_count(stats['augmented_sequences'])} transposed copies "
                    "of its pieces (`--augment-transpose`)."]
    return [*out, ""]


# --- model card


def _warmup(training: dict[str, Any], steps: int) -> str:
    warmup = training.get("warmup_steps") or 0
    ratio = training.get("warmup_ratio") or 0
    if 0 < warmup < 1:  # Transformers reads a float below 1 as a fraction of the steps
        ratio, warmup = warmup, 0
    if ratio:
        return f"{ratio:g} of the steps ({_plural(math.ceil(ratio * steps), 'step')})"
    return _plural(int(warmup), "step")


def _precision(summary: dict[str, Any], training: dict[str, Any]) -> str:
    if summary.get("bf16", training.get("bf16")):
        return "bf16 mixed precision"
    return "fp16 mixed precision" if training.get("fp16") else "fp32"


def _fit_section(fit: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    convention = ("total parameters" if fit.get("n_convention") == "total"
                  else "non-embedding parameters (Kaplan et al. 2020)")
    pct = f"{100 * fit.get('confidence', 0.95):g} %"
    lo, hi = (fit.get("alpha_ci") or [None, None])[:2]
    interval = f"{pct} interval [{lo:.4f}, {hi:.4f}]" if lo is not None and hi is not None else "no interval"
    c_lo, c_hi = (fit.get("c_ci") or [None, None])[:2]
    c_interval = f" ({pct} interval [{c_lo:.4f}, {c_hi:.4f}])" if c_lo is not None and c_hi is not None else ""
    member = (" This model is one of them." if summary.get("run_name") in (fit.get("runs_used") or []) else "")
    return ["## Scaling law of the study", "",
            f"Fitted by `scripts/analyze.py` to {fit['n_points']} sizes of the same study (loss: "
            f"{fit.get('metric', 'eval_loss')}; N = {convention}).{member}", "",
            f"**L(N) = a·N^-α + c**, α = {fit['alpha']:.4f} ({interval}), a = {fit['a']:.4g}, "
            f"c = {fit['c']:.4f} nats/token{c_interval}.", ""]


def model_card(summary: dict[str, Any], fit: dict[str, Any] | None = None, *,
               license: str = DEFAULT_LICENSE, repo_id: str | None = None) -> str:
    """README.md model card of one trained size.

    Args:
        summary: a ``run_summary.json`` written by :func:`training.run.train_size`.
        fit: optional ``fit.json`` of ``scripts/analyze.py``; the fitted law
            ``L(N) = a * N**(-alpha) + c`` and its interval are included only when
            ``fit["fitted"]`` is true.
        license: the ``license`` field of the card's metadata (a Hub license id).
        repo_id: repository named in the "How to use" code; a placeholder when None.

    Returns:
        Markdown with YAML front matter (library_name, pipeline_tag, license, tags).
    """
    config = summary.get("config", {})
    training = config.get("training", {})
    study = config.get("study", {})
    stats = config.get("dataset", {}).get("stats", {})
    size = size_label(summary["size"])
    tokenization = stats.get("tokenization", "REMI")
    meta = {"library_name": "transformers", "pipeline_tag": "text-generation", "license": license,
            "tags": list(MODEL_TAGS)}
    out = [_front_matter(meta),
           f"# GPT-2 on MIDI, size `{size}`", "",
           f"A GPT-2 causal language model over MidiTok {tokenization} tokens of symbolic music (MIDI), "
           f"one size of the scaling-law study `{study.get('study_name', 'music-scaling')}`: every size saw the "
           "same tokens in the same order and differs only in shape. Losses are in nats per token.", "",
           "## Model", ""]
    out += _table(("", ""), [
        ("size", f"`{size}`"),
        ("N, non-embedding parameters", _count(summary["n_params_non_embedding"])),
        ("total parameters", _count(summary["n_params"])),
        ("shape (n_layer / n_embd / n_head)", f"{summary['n_layer']} / {summary['n_embd']} / {summary['n_head']}"),
        ("vocabulary", _count(summary["vocab_size"])),
        ("context (block size)", f"{_count(summary['block_size'])} tokens"),
        ("D, tokens trained", _count(summary["tokens_trained"])),
        ("C = 6ND, FLOPs", f"{summary['flops']:.3e}" if summary.get("flops") else "-"),
    ])
    out += ["", "## Results", ""]
    out += _table(("loss (nats/token)", "value"), [
        ("eval (validation)", _loss(summary.get("eval_loss"))),
        ("test", _loss(summary.get("test_loss"))),
        ("train (last logged window)", _loss(summary.get("train_loss"))),
    ])
    out.append("")
    if fit and fit.get("fitted"):
        out += _fit_section(fit, summary)
    if stats.get("splits"):
        out += _dataset_section(stats, "Training data")
    schedule = training.get("lr_scheduler_type", "-")
    if training.get("lr_scheduler_kwargs"):
        schedule += f" {json.dumps(training['lr_scheduler_kwargs'])}"
    optim = training.get("optim", "-")
    if "adam_beta1" in training:
        optim += f" (betas {training['adam_beta1']:g}, {training['adam_beta2']:g}; eps {training['adam_epsilon']:g})"
    out += ["## Training configuration", ""]
    out += _table(("setting", "value"), [
        ("global batch", f"{_count(summary['global_batch_tokens'])} tokens per step "
                         f"({summary.get('per_device_batch_size', '-')} sequences per device × "
                         f"{summary.get('gradient_accumulation_steps', '-')} accumulation × "
                         f"{summary.get('world_size', '-')} process(es))"),
        ("steps", _count(summary["steps"])),
        ("learning rate", f"{training.get('learning_rate', float('nan')):g}, schedule {schedule}"),
        ("warmup", _warmup(training, summary["steps"])),
        ("optimizer", optim),
        ("weight decay", f"{training.get('weight_decay', 0):g}"),
        ("gradient clipping", f"{training.get('max_grad_norm', 0):g}"),
        ("seed", training.get("seed", "-")),
        ("precision", _precision(summary, training)),
        ("hardware", f"{summary.get('device', '-')}, {summary.get('wall_clock_s', 0):.0f} s of training"),
    ])
    out += ["", "`run_summary.json` holds every setting (study, TrainingArguments, GPT2Config, dataset "
                "statistics); `trainer_state.json` holds the loss curves.", "",
            "## How to use", "",
            "```python",
            "import torch",
            f"from miditok import {tokenization}",
            "from transformers import AutoModelForCausalLM",
            "",
            f'repo = "{repo_id or "<this repository id>"}"',
            "model = AutoModelForCausalLM.from_pretrained(repo)",
            f"tokenizer = {tokenization}.from_pretrained(repo)  # reads tokenizer.json (MidiTok)",
            "",
            "prompt = torch.tensor([[model.config.bos_token_id]])",
            "ids = model.generate(prompt, max_new_tokens=512, do_sample=True, top_k=50,",
            "                     pad_token_id=tokenizer.pad_token_id)",
            "score = tokenizer.decode(ids[0].tolist())  # a symusic.Score",
            'score.dump_midi("sample.mid")',
            "```", "",
            f"The tokenizer is MidiTok's `{tokenization}` class (named in `tokenizer.json`); the text "
            "`pipeline` and `AutoTokenizer` do not apply. Encode a MIDI file with "
            '`tokenizer.encode("song.mid")`. In the midi-scaling repository, '
            "`tokenizer.load_tokenizer(folder)` loads it from a downloaded folder.", "",
            "## Limitations", "",
            "Trained as one point of a scaling-law study under a fixed token budget, not tuned for "
            "generation quality.", ""]
    return "\n".join(out)


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
    (staging_dir / README_FILENAME).write_text(model_card(summary, fit, license=license, repo_id=repo_id))
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


def _size_category(n: int) -> str:
    # The Hub's size_categories buckets, counted in rows (packed blocks here).
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M" if n < 100_000_000 else "n>100M"


def dataset_card(stats: dict[str, Any], *, license: str = DEFAULT_LICENSE, repo_id: str | None = None) -> str:
    """README.md dataset card of a prepared dataset.

    Args:
        stats: the ``stats.json`` of ``scripts/prepare_data.py``.
        license: Hub license id; it must match the license of the source MIDI files.
        repo_id: repository named in the "How to load" code; a placeholder when None.

    Returns:
        Markdown with YAML front matter. ``DatasetDict.push_to_hub`` later adds its
        ``dataset_info`` and ``configs`` metadata to this card and keeps the text.
    """
    tokenization = stats["tokenization"]
    blocks = sum(d["blocks"] for d in stats["splits"].values())
    meta = {"license": license, "task_categories": ["text-generation"], "tags": list(DATASET_TAGS),
            "pretty_name": f"{_source_name(stats)} MIDI, {tokenization} tokens in blocks of {stats['block_size']}",
            "size_categories": [_size_category(blocks)]}
    out = [_front_matter(meta),
           f"# {_source_name(stats)} MIDI as {tokenization} tokens", "",
           f"Symbolic music tokenized with MidiTok {tokenization} and packed into blocks of exactly "
           f"{stats['block_size']} token ids for causal language modelling, written by `scripts/prepare_data.py` "
           "of midi-scaling. Each row holds `input_ids`: int32, length `block_size`; pieces are laid end to end "
           "as `BOS piece EOS BOS piece EOS ...` in a seeded random order, so a block may span two pieces, "
           "and only each split's final partial block is dropped.", ""]
    out += _dataset_section(stats, "Contents")
    skipped = stats.get("skipped_by_reason") or {}
    out += ["## Skipped items", ""]
    if skipped:
        meanings = stats.get("skip_reasons") or {}
        out += _table(("reason", "items", "meaning"),
                      [(f"`{r}`", _count(n), meanings.get(r, "")) for r, n in skipped.items()])
        out += ["", f"`{MANIFEST_FILENAME}` has one line per input item with its status and reason."]
    else:
        out += [f"None: every item was kept. `{MANIFEST_FILENAME}` has one line per input item."]
    out += ["", "## How to load", "",
            "```python",
            "from datasets import load_dataset",
            "from huggingface_hub import hf_hub_download",
            f"from miditok import {tokenization}",
            "",
            f'repo = "{repo_id or "<this repository id>"}"',
            "blocks = load_dataset(repo)  # DatasetDict: train / validation / test, column input_ids",
            f'tokenizer = {tokenization}(params=hf_hub_download(repo, "{TOKENIZER_FILENAME}", repo_type="dataset"))',
            'score = tokenizer.decode(blocks["train"][0]["input_ids"])  # a symusic.Score',
            "```", "",
            f"Files beside the data: `{TOKENIZER_FILENAME}` (the MidiTok tokenizer that made the ids), "
            f"`{STATS_FILENAME}` (these figures and the preparation arguments) and `{MANIFEST_FILENAME}`.", ""]
    return "\n".join(out)


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
    stats = read_prepared_dataset(data_dir).stats
    files = [data_dir / f for f in (TOKENIZER_FILENAME, STATS_FILENAME, MANIFEST_FILENAME)]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir} lacks {', '.join(missing)}; prepare it again with "
                                f"python scripts/prepare_data.py --output {data_dir} ...")
    staging_dir = _empty_staging_dir(staging_dir)
    for f in files:
        shutil.copy2(f, staging_dir / f.name)
    (staging_dir / README_FILENAME).write_text(dataset_card(stats, license=license, repo_id=repo_id))
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
    read_prepared_dataset(data_dir)  # fails before any upload when there is no dataset
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
