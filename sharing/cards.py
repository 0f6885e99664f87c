"""The README.md cards of a model repository (one trained size) and of a dataset repository.

Both are pure functions of the files a run or a dataset preparation wrote
(``run_summary.json``, ``stats.json``, optionally ``fit.json``): no network, no I/O. The
Hub metadata is built with ``huggingface_hub``'s card-data classes (``ModelCardData``,
``DatasetCardData``), which write the YAML front matter the Hub reads; the Markdown text
below it is written here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from huggingface_hub import CardData, DatasetCard, DatasetCardData, ModelCard, ModelCardData, RepoCard

from configs.naming import size_name
from data.prepared import MANIFEST_FILENAME, SPLITS, STATS_FILENAME
from tokenizer import TOKENIZER_FILENAME

MODEL_TAGS = ("music", "midi", "symbolic-music", "scaling-laws", "gpt2")
DATASET_TAGS = ("music", "midi", "symbolic-music", "tokenized", "scaling-laws")
DEFAULT_LICENSE = "mit"


# --- names and formatting


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _count(n: int | None) -> str:
    return "-" if n is None else f"{int(n):,}"


def _loss(x: float | None) -> str:
    """Losses in nats/token, 4 decimals (as in the analysis report)."""
    return "not measured" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _card(card_class: type[RepoCard], data: CardData, lines: list[str]) -> RepoCard:
    # The layout the card classes document: the data's YAML between "---" lines, then the text.
    return card_class("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(lines))


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
               license: str = DEFAULT_LICENSE, repo_id: str | None = None) -> ModelCard:
    """README.md model card of one trained size.

    Args:
        summary: a ``run_summary.json`` written by :func:`training.run.train_size`.
        fit: optional ``fit.json`` of ``scripts/analyze.py``; the fitted law
            ``L(N) = a * N**(-alpha) + c`` and its interval are included only when
            ``fit["fitted"]`` is true.
        license: the ``license`` field of the card's metadata (a Hub license id).
        repo_id: repository named in the "How to use" code; a placeholder when None.

    Returns:
        The card; ``card.data`` is a ``ModelCardData`` (library_name ``transformers``,
        pipeline_tag ``text-generation``, license, tags) and ``str(card)`` the README.md text.
    """
    config = summary.get("config", {})
    training = config.get("training", {})
    study = config.get("study", {})
    stats = config.get("dataset", {}).get("stats", {})
    size = size_name(summary["size"])
    tokenization = stats.get("tokenization", "REMI")
    data = ModelCardData(library_name="transformers", pipeline_tag="text-generation", license=license,
                         tags=list(MODEL_TAGS))
    out = [f"# GPT-2 on MIDI, size `{size}`", "",
           f"A GPT-2 causal language model over MidiTok {tokenization} tokens of symbolic music (MIDI), "
           f"run `{summary.get('run_name') or size}` of the scaling-law study "
           f"`{study.get('study_name', 'music-scaling')}`: the study's sizes share the data, batch and schedule, "
           "and each has its own learning rate (below, with its source and seed). Losses are in nats per token.", "",
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
        ("learning rate", f"{summary.get('learning_rate', training.get('learning_rate', float('nan'))):g} "
                          f"({summary.get('lr_source') or 'fixed'}), schedule {schedule}"),
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
            f"ids = model.generate(prompt, max_new_tokens={summary['block_size'] - 1}, do_sample=True, top_k=50,  "
            "# the whole context",
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
    return _card(ModelCard, data, out)


# --- dataset card


def _size_category(n: int) -> str:
    # The Hub's size_categories buckets, counted in rows (packed blocks here).
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M" if n < 100_000_000 else "n>100M"


def dataset_card(stats: dict[str, Any], *, license: str = DEFAULT_LICENSE,
                 repo_id: str | None = None) -> DatasetCard:
    """README.md dataset card of a prepared dataset.

    Args:
        stats: the ``stats.json`` of ``scripts/prepare_data.py``.
        license: Hub license id; it must match the license of the source MIDI files.
        repo_id: repository named in the "How to load" code; a placeholder when None.

    Returns:
        The card; ``card.data`` is a ``DatasetCardData`` (license, task_categories, tags,
        pretty_name, size_categories) and ``str(card)`` the README.md text.
        ``DatasetDict.push_to_hub`` later adds its ``dataset_info`` and ``configs``
        metadata to this card on the Hub and keeps the text.
    """
    tokenization = stats["tokenization"]
    blocks = sum(d["blocks"] for d in stats["splits"].values())
    data = DatasetCardData(
        license=license, task_categories=["text-generation"], tags=list(DATASET_TAGS),
        pretty_name=f"{_source_name(stats)} MIDI, {tokenization} tokens in blocks of {stats['block_size']}",
        size_categories=[_size_category(blocks)])
    out = [f"# {_source_name(stats)} MIDI as {tokenization} tokens", "",
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
    return _card(DatasetCard, data, out)


