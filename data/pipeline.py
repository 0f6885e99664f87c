"""Corpus -> tokenized, deduplicated, split, packed Arrow ``DatasetDict``.

Stages (each a ``datasets.map`` with ``num_proc`` workers where the work is per piece):

1. list items (MIDI files, ABC tunes) -> 2. tokenize each with the base tokenizer,
   recording kept/skipped -> 3. deduplicate on the content hash of the base ids ->
4. split train/validation/test by piece from the hash -> 5. optional BPE trained on the
   train split, then re-encode -> 6. optional transposition of train pieces ->
7. pack each split into ``block_size`` blocks -> 8. save the DatasetDict, the tokenizer,
   ``manifest.jsonl`` (one line per input item) and ``stats.json``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk
from miditok import TokTrainingIterator

from configs import DEFAULT_TOKENIZER_CONFIG
from data.io import write_json_atomic, write_jsonl_atomic
from data.packing import pack_dataset
from data.processing import (
    SKIP_REASONS,
    PieceLimits,
    SkipPiece,
    close_isolated_workers,
    file_sha1,
    load_score,
    tokenize_item,
    transpose_item,
)
from data.sources import list_source_items
from tokenizer import build_tokenizer, save_tokenizer, special_token_ids, train_bpe

SPLITS = ("train", "validation", "test")
MANIFEST_FILENAME = "manifest.jsonl"
STATS_FILENAME = "stats.json"


@dataclass
class DataArguments:
    """Options of ``scripts/prepare_data.py`` (each field is a ``--flag``)."""

    source: str = field(metadata={"help": "Folder scanned recursively for .mid/.midi/.abc, or 'builtin' "
                                          "for the ~13,000 ABC tunes shipped with music21."})
    output: str = field(metadata={"help": "Output folder for the DatasetDict, tokenizer.json, "
                                          "manifest.jsonl and stats.json."})
    block_size: int = field(default=1024, metadata={"help": "Tokens per packed training block."})
    num_proc: int = field(default=os.cpu_count() or 1,
                          metadata={"help": "Worker processes for datasets.map (default: the number of cores)."})
    val_fraction: float = field(default=0.05, metadata={"help": "Share of unique pieces in validation."})
    test_fraction: float = field(default=0.05, metadata={"help": "Share of unique pieces in test."})
    augment_transpose: int = field(default=0, metadata={
        "help": "Add train copies shifted by -K..+K semitones (drums untouched, pitches kept in range)."})
    bpe_vocab_size: int = field(default=0, metadata={
        "help": "Train BPE to this vocabulary size on the train split (0: no BPE)."})
    tokenizer_config: str = field(default=str(DEFAULT_TOKENIZER_CONFIG), metadata={
        "help": "Tokenizer YAML: a MidiTok scheme and its TokenizerConfig (see configs/tokenizer/)."})
    min_notes: int = field(default=PieceLimits.min_notes, metadata={"help": "Skip pieces with fewer notes."})
    max_notes: int = field(default=PieceLimits.max_notes, metadata={"help": "Skip pieces with more notes."})
    max_duration_sec: float = field(default=PieceLimits.max_duration_sec,
                                    metadata={"help": "Skip pieces lasting longer (seconds)."})
    piece_timeout_sec: float = field(default=120.0, metadata={
        "help": "Tokenize each piece in a separate worker process and skip it (reason 'timeout') after this "
                "many seconds; a piece that crashes the worker is skipped as 'crash'. 0: no isolation."})
    max_files: int = field(default=0, metadata={"help": "Use only the first N items (0: all); for quick tries."})
    seed: int = field(default=42, metadata={"help": "Seed of the split hash and the train piece order."})

    def __post_init__(self) -> None:
        if self.block_size < 2:
            raise ValueError(f"--block-size must be >= 2, got {self.block_size}.")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("--val-fraction and --test-fraction must be in [0, 1) and sum below 1, "
                             f"got {self.val_fraction} and {self.test_fraction}.")
        if self.augment_transpose < 0 or self.augment_transpose > 12:
            raise ValueError(f"--augment-transpose must be in 0..12 semitones, got {self.augment_transpose}.")
        if self.piece_timeout_sec < 0:
            raise ValueError(f"--piece-timeout-sec must be >= 0, got {self.piece_timeout_sec}.")
        if self.num_proc < 1:
            raise ValueError(f"--num-proc must be >= 1, got {self.num_proc}.")

    def limits(self) -> PieceLimits:
        """The per-piece bounds set by --min-notes, --max-notes and --max-duration-sec."""
        return PieceLimits(self.min_notes, self.max_notes, self.max_duration_sec)


def assign_split(content_hash: str, val_fraction: float, test_fraction: float, seed: int) -> str:
    """Split of a piece, decided by its content hash alone (so duplicates agree).

    ``u = int(sha1(f"{seed}:{hash}")[:15], 16) / 16**15`` is uniform in [0, 1):
    ``u < test_fraction`` -> test, ``< test + val`` -> validation, else train.
    """
    u = int(hashlib.sha1(f"{seed}:{content_hash}".encode()).hexdigest()[:15], 16) / 16**15
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "validation"
    return "train"


def mark_duplicates(statuses: list[str], hashes: list[str]) -> list[int]:
    """Index of the first kept piece with the same hash, or -1, for each row.

    Rows are in source order (sorted paths), so the first occurrence is kept.
    """
    first: dict[str, int] = {}
    out = []
    for i, (status, h) in enumerate(zip(statuses, hashes, strict=True)):
        if status != "kept":
            out.append(-1)
        elif h in first:
            out.append(first[h])
        else:
            first[h] = i
            out.append(-1)
    return out


def bpe_training_files(items: list[dict[str, str]], work_dir: Path) -> list[Path]:
    """Files for MidiTok's ``TokTrainingIterator``: MIDI paths as they are, ABC tunes
    written once as MIDI files into ``work_dir`` (unparsable ones are left out)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, item in enumerate(items):
        if not item["abc"]:
            paths.append(Path(item["path"]))
            continue
        try:
            score = load_score(item)
        except SkipPiece:
            continue
        paths.append(work_dir / f"{i}.mid")
        score.dump_midi(paths[-1])
    return paths


def prepare_dataset(args: DataArguments, command_line: str = "") -> dict[str, Any]:
    """Run the whole preparation and write everything into ``args.output``.

    Args:
        args: the options; see :class:`DataArguments`.
        command_line: recorded in stats.json for reproducibility.

    Returns:
        The stats dictionary also written to ``stats.json``.

    Raises:
        FileNotFoundError / ValueError: bad source or options (nothing is written).
        ValueError: no piece survived, or a split is empty (explains what to change).
    """
    t0 = time.time()
    out = Path(args.output)
    items = list_source_items(args.source)
    if args.max_files:
        items = items[: args.max_files]
    out.mkdir(parents=True, exist_ok=True)
    work = out / "_work"  # intermediate Arrow files; removed at the end
    shutil.rmtree(work, ignore_errors=True)

    # 1-2. tokenize every item with the base tokenizer
    tok = build_tokenizer(args.tokenizer_config or None)
    tok_path = save_tokenizer(tok, work / "base")
    tok_kwargs = {"tokenizer_path": str(tok_path), "tokenizer_sha1": file_sha1(tok_path)}
    num_proc = min(args.num_proc, max(1, len(items) // 8)) or 1
    pieces = Dataset.from_list(items).map(
        tokenize_item, fn_kwargs={**tok_kwargs, "limits": asdict(args.limits()),
                                  "timeout_sec": args.piece_timeout_sec},
        num_proc=num_proc if num_proc > 1 else None, desc="Tokenizing")
    close_isolated_workers()  # children started by an in-process map (num_proc 1)
    pieces.save_to_disk(work / "pieces")
    pieces = load_from_disk(work / "pieces")

    # 3-4. deduplicate, split by piece
    statuses = pieces["status"]
    hashes = pieces["content_hash"]
    dup_of = mark_duplicates(statuses, hashes)
    source_ids = pieces["source_id"]
    manifest = []
    for i, row in enumerate(pieces.select_columns(
            ["source_id", "path", "status", "reason", "message", "num_notes", "num_tokens",
             "duration_sec", "content_hash"])):
        row = dict(row)
        if dup_of[i] >= 0:
            row.update(status="skipped", reason="duplicate", message=f"same content as {source_ids[dup_of[i]]}")
        row["split"] = (assign_split(row["content_hash"], args.val_fraction, args.test_fraction, args.seed)
                        if row["status"] == "kept" else None)
        manifest.append(row)
    if not any(r["status"] == "kept" for r in manifest):
        raise ValueError(f"No usable piece among {len(items)} items from {args.source}; "
                           f"see the reasons in {out / MANIFEST_FILENAME}.")
    write_jsonl_atomic(out / MANIFEST_FILENAME, manifest)
    split_rows = {s: [i for i, r in enumerate(manifest) if r["split"] == s] for s in SPLITS}
    empty = [s for s in SPLITS if not split_rows[s] and (s == "train" or _fraction(args, s) > 0)]
    if empty:
        raise ValueError(f"Split(s) {empty} got no piece out of {sum(map(len, split_rows.values()))} "
                           "unique pieces; use more files or larger --val-fraction/--test-fraction.")
    splits = {s: pieces.select(rows) for s, rows in split_rows.items()}

    # 5. optional BPE, trained on train pieces only, then re-encode every split
    if args.bpe_vocab_size:
        train_items = [dict(r) for r in splits["train"].select_columns(["source_id", "path", "abc"])]
        files = bpe_training_files(train_items, work / "bpe_midi")
        train_bpe(tok, TokTrainingIterator(tok, files), args.bpe_vocab_size)
        tok_path = save_tokenizer(tok, work / "bpe")
        tok_kwargs = {"tokenizer_path": str(tok_path), "tokenizer_sha1": file_sha1(tok_path)}
        for s in SPLITS:
            splits[s] = splits[s].remove_columns("input_ids").map(
                lambda item, **kw: {k: v for k, v in tokenize_item(item, **kw).items()
                                    if k in ("input_ids", "num_tokens")},
                fn_kwargs={**tok_kwargs, "limits": asdict(args.limits())},
                num_proc=num_proc if num_proc > 1 and len(splits[s]) > 16 else None, desc=f"BPE-encoding {s}")

    # 6. transposition of train pieces only (after the split, so no leak)
    splits = {s: d.select_columns(["source_id", "num_notes", "num_tokens", "input_ids"]).add_column(
        "transpose", [0] * len(d)) for s, d in splits.items()}
    num_augmented = 0
    if args.augment_transpose:
        originals = pieces.select(split_rows["train"])
        shifted = originals.map(
            transpose_item, batched=True, batch_size=8, remove_columns=originals.column_names,
            fn_kwargs={**tok_kwargs, "max_shift": args.augment_transpose},
            num_proc=num_proc if num_proc > 1 and len(originals) > 16 else None, desc="Transposing")
        num_augmented = len(shifted)
        splits["train"] = concatenate_datasets([splits["train"], shifted.cast(splits["train"].features)])

    # 7. pack; pieces in a seeded random order so blocks mix sources, and the first
    #    eval_max_blocks validation/test blocks are a random sample of their pieces
    ids = special_token_ids(tok)
    packed, stats_splits = {}, {}
    for s in SPLITS:
        d = splits[s].shuffle(seed=args.seed)
        d.save_to_disk(work / f"split_{s}")
        d = load_from_disk(work / f"split_{s}")
        packed[s], dropped = pack_dataset(d, args.block_size, ids["bos"], ids["eos"], num_proc=num_proc)
        notes, tokens = int(np.sum(d["num_notes"])) if len(d) else 0, int(np.sum(d["num_tokens"])) if len(d) else 0
        stats_splits[s] = {
            "pieces": sum(1 for r in manifest if r["split"] == s),
            "sequences_with_augmentation": len(d),
            "notes": notes, "tokens": tokens,
            "tokens_per_note": tokens / notes if notes else None,
            "blocks": len(packed[s]), "packed_tokens": len(packed[s]) * args.block_size,
            "dropped_tokens": dropped,
        }

    # 8. save
    dataset_dict = DatasetDict(packed)
    dataset_dict.save_to_disk(str(out), num_proc=None)
    save_tokenizer(tok, out)
    skipped: dict[str, int] = {}
    for r in manifest:
        if r["status"] == "skipped":
            skipped[r["reason"]] = skipped.get(r["reason"], 0) + 1
    elapsed = time.time() - t0
    stats = {
        "source": str(args.source),
        "items_seen": len(manifest),
        "items_kept": sum(r["status"] == "kept" for r in manifest),
        "items_skipped": sum(r["status"] == "skipped" for r in manifest),
        "skipped_by_reason": dict(sorted(skipped.items())),
        "skip_reasons": SKIP_REASONS,
        "splits": stats_splits,
        "augmented_sequences": num_augmented,
        "block_size": args.block_size,
        "vocab_size": len(tok),
        "special_token_ids": ids,
        "tokenization": type(tok).__name__,
        "tokenizer_params": tok.config.to_dict(serialize=True),
        "bpe_vocab_size": args.bpe_vocab_size or None,
        "arguments": asdict(args),
        "command_line": command_line,
        "elapsed_sec": elapsed,
        "items_per_sec": len(manifest) / elapsed if elapsed else None,
    }
    write_json_atomic(out / STATS_FILENAME, stats)
    shutil.rmtree(work, ignore_errors=True)
    return stats


def _fraction(args: DataArguments, split: str) -> float:
    return {"validation": args.val_fraction, "test": args.test_fraction}.get(split, 1.0)
