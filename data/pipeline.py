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

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from datasets import Dataset, DatasetDict, Features, List, Value, concatenate_datasets, load_from_disk
from miditok import TokTrainingIterator

from common.io import open_atomic, write_json_atomic
from configs import DEFAULT_TOKENIZER_CONFIG
from data.isolation import die_with_parent
from data.near_duplicates import NearDuplicateGroups
from data.packing import pack_dataset
from data.prepared import DATASET_DICT_FILENAME, MANIFEST_FILENAME, SPLITS, STATS_FILENAME
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
from tokenizer import TOKENIZER_FILENAME, build_tokenizer, save_tokenizer, special_token_ids, train_bpe


@dataclass
class DataArguments:
    """Options of ``scripts/prepare_data.py`` (each field is a ``--flag``)."""

    source: str = field(metadata={"help": "Folder scanned recursively for .mid/.midi/.abc, or 'builtin' "
                                          "for the ~13,000 ABC tunes shipped with music21."})
    output: str = field(metadata={"help": "Output folder for the DatasetDict, tokenizer.json, "
                                          "manifest.jsonl and stats.json."})
    block_size: int = field(default=1024, metadata={"help": "Tokens per packed training block."})
    num_proc: int = field(default=os.cpu_count() or 1,
                          metadata={"help": "Worker processes for datasets.map (the default is this machine's cores)."})
    val_fraction: float = field(default=0.05, metadata={"help": "Share of unique pieces in validation."})
    test_fraction: float = field(default=0.05, metadata={"help": "Share of unique pieces in test."})
    augment_transpose: int = field(default=0, metadata={
        "help": "Add train copies shifted by -K..+K semitones (drums untouched, pitches kept in range)."})
    bpe_vocab_size: int = field(default=0, metadata={
        "help": "Train BPE to this vocabulary size on the train split (0: no BPE)."})
    tokenizer_config: str = field(default=str(DEFAULT_TOKENIZER_CONFIG), metadata={
        "help": "Tokenizer YAML: a MidiTok scheme and its TokenizerConfig (see configs/tokenizer/)."})
    min_notes: int = field(default=PieceLimits.min_notes, metadata={"help": "Skip pieces with fewer notes."})
    max_notes: int = field(default=PieceLimits.max_notes, metadata={
        "help": "Skip pieces with more notes, or cut them (see --over-limit)."})
    max_duration_sec: float = field(default=PieceLimits.max_duration_sec, metadata={
        "help": "Skip pieces lasting longer (seconds), or cut them (see --over-limit)."})
    over_limit: str = field(default=PieceLimits.over_limit, metadata={
        "help": "What to do with a piece over --max-notes or --max-duration-sec: 'skip' it (reason too_long) "
                "or 'truncate' it to its beginning (kept, with what was cut in its manifest message).",
        "choices": ["skip", "truncate"]})
    piece_timeout_sec: float = field(default=120.0, metadata={
        "help": "Tokenize each piece in a separate worker process and skip it (reason 'timeout') after this "
                "many seconds; a piece that crashes the worker is skipped as 'crash'. 0: no isolation."})
    max_files: int = field(default=0, metadata={"help": "Use only the first N items (0: all); for quick tries."})
    shard_size: int = field(default=0, metadata={
        "help": "Items tokenized per shard, each saved to OUTPUT/_work/shards as soon as it is done "
                "(0: 500 x --num-proc). Memory is bounded by one shard; a killed run resumes at the "
                "first unfinished shard."})
    resume: bool = field(default=True, metadata={
        "help": "Reuse the shards an interrupted run with the same items, tokenizer and limits left in "
                "OUTPUT/_work (--no-resume: start over)."})
    seed: int = field(default=42, metadata={"help": "Seed of the split hash and the train piece order."})
    near_duplicates: str = field(default="group", metadata={
        "help": "Pieces whose tracks share most note n-grams (another part of the same tune, a transposed or "
                "re-rendered copy): 'group' puts each group in one split and keeps every member, 'drop' keeps "
                "only its first member (the others are skipped as near_duplicate), 'off' ignores them.",
        "choices": ["group", "drop", "off"]})
    near_duplicate_threshold: float = field(default=0.5, metadata={
        "help": "Least Jaccard similarity of two tracks' note n-gram sets (MinHash estimate) that makes their "
                "pieces near-duplicates."})
    exclude: list[str] = field(default_factory=list, metadata={
        "help": "Leave out items whose path (relative to --source) or any folder name on it matches one of these "
                "glob patterns, e.g. --exclude melody chords 'Lakh/*-live.mid'; they are listed in the manifest "
                "as excluded."})
    push_to_hub: str = field(default="", metadata={
        "help": "Then push the DatasetDict, tokenizer.json, stats.json, manifest.jsonl and a dataset card to "
                "this Hub dataset repository (USER/NAME); needs `hf auth login` or HF_TOKEN."})

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
        if self.shard_size < 0:
            raise ValueError(f"--shard-size must be >= 0, got {self.shard_size}.")
        if not 0 < self.min_notes <= self.max_notes:
            raise ValueError(f"Need 0 < --min-notes <= --max-notes, got {self.min_notes} and {self.max_notes}.")
        if self.max_duration_sec <= 0:
            raise ValueError(f"--max-duration-sec must be positive, got {self.max_duration_sec}.")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise ValueError(f"--near-duplicate-threshold must be in (0, 1], got {self.near_duplicate_threshold}.")
        if self.near_duplicates not in ("group", "drop", "off"):
            raise ValueError(f"--near-duplicates must be group, drop or off, got {self.near_duplicates!r}.")
        self.limits()  # and the rest of PieceLimits' checks

    def limits(self) -> PieceLimits:
        """The per-piece bounds set by --min-notes, --max-notes, --max-duration-sec and --over-limit."""
        return PieceLimits(self.min_notes, self.max_notes, self.max_duration_sec, self.over_limit)


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


PIECE_FEATURES = Features({
    "source_id": Value("string"), "path": Value("string"), "abc": Value("string"),
    "status": Value("string"), "reason": Value("string"), "message": Value("string"),
    "num_notes": Value("int64"), "duration_sec": Value("float64"), "num_tokens": Value("int64"),
    "content_hash": Value("string"), "input_ids": List(Value("int32")),
    "note_minhash": List(List(Value("uint32"))),
})
MANIFEST_COLUMNS = ["source_id", "path", "status", "reason", "message", "num_notes", "num_tokens",
                    "duration_sec", "content_hash"]
WORK_PLAN_VERSION = 2  # bump when the meaning of saved shards changes (2: note_minhash)


def work_plan(items: list[dict[str, str]], tokenizer_sha1: str, limits: PieceLimits,
              timeout_sec: float) -> dict[str, Any]:
    """What tokenized shards depend on; a resumed run reuses shards only if this is equal.

    The items enter through a hash of their ids, paths, sizes and modification times (MIDI)
    or text (ABC), so an edited, added or removed file starts the work over.
    """
    h = hashlib.sha1()
    for item in items:
        if item["abc"]:
            stamp = hashlib.sha1(item["abc"].encode()).hexdigest()
        else:
            st = os.stat(item["path"])
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        h.update(f"{item['source_id']}\0{item['path']}\0{stamp}\n".encode())
    return {"version": WORK_PLAN_VERSION, "num_items": len(items), "items_sha1": h.hexdigest(),
            "tokenizer_sha1": tokenizer_sha1, "limits": asdict(limits), "piece_timeout_sec": timeout_sec}


def _open_work_dir(work: Path, plan: dict[str, Any], resume: bool) -> None:
    """Keep ``work`` if it was made under the same plan, else empty it and record the plan."""
    plan_path = work / "plan.json"
    if resume and plan_path.is_file() and json.loads(plan_path.read_text()) == plan:
        (work / "shards").mkdir(exist_ok=True)
        return
    if resume and plan_path.is_file():
        print(f"{work} was made from other items, tokenizer or limits: starting over.")
    shutil.rmtree(work, ignore_errors=True)
    (work / "shards").mkdir(parents=True)
    write_json_atomic(plan_path, plan)


_SHARD_DIR = re.compile(r"(\d{9})-(\d{9})")


def tokenize_in_shards(items: list[dict[str, str]], shards_dir: Path, shard_size: int, num_proc: int,
                       fn_kwargs: dict[str, Any]) -> Dataset:
    """Tokenize ``items`` shard by shard with ``datasets.map``; each finished shard is saved
    (``save_to_disk`` into a temporary folder, then renamed) before the next starts.

    Shards already in ``shards_dir`` (named ``START-END``, item indices) are reused, whatever
    shard size made them, so a killed run resumes where it stopped and memory holds one
    shard at most.

    Returns:
        ``(pieces, reused)``: all rows (:data:`PIECE_FEATURES`) in item order, memory-mapped
        from the shards, and how many items came from shards an earlier run had saved.
    """
    done = {}
    for d in shards_dir.iterdir():
        m = _SHARD_DIR.fullmatch(d.name)
        if m:
            done[int(m.group(1))] = (int(m.group(2)), d)
        else:  # a shard being written when the run was killed
            shutil.rmtree(d, ignore_errors=True)
    parts, start, reused = [], 0, 0
    while start < len(items):
        if start in done:
            end, path = done[start]
            reused += end - start
        else:
            later = [s for s in done if s > start]
            end = min(start + shard_size, len(items), *later)
            path = shards_dir / f"{start:09d}-{end:09d}"
            tmp = shards_dir / f"{path.name}.tmp"
            shard = Dataset.from_list(items[start:end])
            procs = min(num_proc, max(1, (end - start) // 8))
            # written straight to an Arrow file (an in-memory dataset would keep results in RAM)
            shard = shard.map(tokenize_item, fn_kwargs=fn_kwargs, features=PIECE_FEATURES,
                              cache_file_name=str(tmp / "cache" / "pieces.arrow"),
                              num_proc=procs if procs > 1 else None,
                              desc=f"Tokenizing items {start}-{end} of {len(items)}")
            close_isolated_workers()  # children started by an in-process map (num_proc 1)
            shard.save_to_disk(str(tmp / "shard"))
            del shard
            os.replace(tmp / "shard", path)
            shutil.rmtree(tmp)
        parts.append(load_from_disk(str(path)))
        start = end
    if reused:
        print(f"Resumed: {reused} of {len(items)} items were already tokenized in {shards_dir}.")
    return concatenate_datasets(parts), reused


def is_excluded(source_id: str, patterns: list[str]) -> bool:
    """Whether an item's ``source_id`` (its path relative to the source, ``#X:n`` for ABC tunes)
    or any folder name on it matches one of the glob ``patterns`` (``fnmatch``)."""
    path = source_id.split("#", 1)[0]
    folders = path.split("/")[:-1]
    return any(fnmatch.fnmatchcase(path, p) or any(fnmatch.fnmatchcase(f, p) for f in folders) for p in patterns)


def write_manifest(pieces: Dataset, path: Path, args: DataArguments,
                   excluded: list[dict[str, str]] = ()) -> tuple[np.ndarray, dict[str, Any]]:
    """Deduplicate, group near-duplicates, assign splits and write one manifest line per item
    into ``path`` (atomically).

    Exact duplicates (same base token ids) are skipped. Near-duplicates (see
    `data.near_duplicates`) form groups, and a group's split is that of its first member, so no
    group spans two splits; with ``--near-duplicates drop`` only that member is kept. Rows are
    read in batches, twice; memory holds the kept pieces' hashes and MinHash signatures.

    Args:
        excluded: items left out by ``--exclude``; listed at the end as skipped ``excluded``.

    Returns:
        ``(split_codes, counts)``: per row the index into :data:`SPLITS` or -1 (skipped or
        duplicate); counts of items seen, kept, skipped by reason, cut to the limits, and of
        near-duplicate groups.
    """
    codes = np.full(len(pieces), -1, dtype=np.int8)
    first: dict[str, str] = {}  # content hash -> source_id of the kept piece
    groups = NearDuplicateGroups(args.near_duplicate_threshold)
    piece_of_row: dict[int, int] = {}  # row -> number in `groups`, for kept pieces
    source_of_piece: list[str] = []  # by piece number: a group is named by, and split by, its first piece
    hash_of_piece: list[str] = []
    duplicate_of: dict[int, str] = {}
    i = 0
    for batch in pieces.select_columns(["source_id", "status", "content_hash", "note_minhash"]).iter(batch_size=1000):
        for source_id, status, digest, signatures in zip(batch["source_id"], batch["status"], batch["content_hash"],
                                                         batch["note_minhash"], strict=True):
            if status == "kept":
                if digest in first:
                    duplicate_of[i] = first[digest]
                else:
                    first[digest] = source_id
                    piece_of_row[i] = groups.add(signatures if args.near_duplicates != "off" else [])
                    source_of_piece.append(source_id)
                    hash_of_piece.append(digest)
            i += 1

    skipped: dict[str, int] = {}
    kept = cut = 0
    members = Counter(groups.group_of(piece) for piece in range(len(source_of_piece)))  # group -> size
    with open_atomic(path) as f:
        i = 0
        for batch in pieces.select_columns(MANIFEST_COLUMNS).iter(batch_size=1000):
            for row in (dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)):
                row["split"], row["group"] = None, None
                if i in duplicate_of:
                    row.update(status="skipped", reason="duplicate", message=f"same content as {duplicate_of[i]}")
                elif i in piece_of_row:
                    piece = piece_of_row[i]
                    group = groups.group_of(piece)
                    if members[group] > 1:
                        row["group"] = source_of_piece[group]
                    if group != piece and args.near_duplicates == "drop":
                        row.update(status="skipped", reason="near_duplicate",
                                   message=f"near-duplicate of {row['group']} (track Jaccard "
                                           f"{groups.similarity(piece):.2f} >= {args.near_duplicate_threshold})")
                    else:
                        row["split"] = assign_split(hash_of_piece[group], args.val_fraction, args.test_fraction,
                                                    args.seed)
                        codes[i] = SPLITS.index(row["split"])
                        kept += 1
                        cut += "cut to the first" in row["message"]
                if row["status"] != "kept" or row["split"] is None:
                    skipped[row["reason"]] = skipped.get(row["reason"], 0) + 1
                f.write(json.dumps(row) + "\n")
                i += 1
        for item in excluded:
            skipped["excluded"] = skipped.get("excluded", 0) + 1
            f.write(json.dumps({"source_id": item["source_id"], "path": item["path"], "status": "skipped",
                                "reason": "excluded", "message": "matched --exclude", "split": None,
                                "group": None}) + "\n")
    sizes = [n for n in members.values() if n > 1]
    return codes, {"items_seen": len(pieces) + len(excluded), "items_kept": kept,
                   "items_skipped": len(pieces) + len(excluded) - kept,
                   "items_cut_to_limits": cut, "skipped_by_reason": dict(sorted(skipped.items())),
                   "near_duplicates": {"mode": args.near_duplicates, "threshold": args.near_duplicate_threshold,
                                       "groups": len(sizes), "pieces_in_groups": sum(sizes),
                                       "largest_group": max(sizes, default=0),
                                       "dropped": skipped.get("near_duplicate", 0)}}


@contextlib.contextmanager
def _children_end_with_sigterm() -> Iterator[None]:
    """On SIGTERM, stop every process this one started (map workers, isolation children,
    the queue manager of ``datasets``), then exit with 143 as a killed process would."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_FORK_HOOK_REGISTERED = False


def _forked_children_die_with_their_parent() -> None:
    """From now on, every process forked in this one (``datasets.map`` workers for tokenizing
    and packing, the queue manager ``datasets`` starts beside them, isolation children) asks
    the kernel for SIGKILL when its parent dies (`data.isolation.die_with_parent`), so a
    preparation killed with SIGKILL leaves no process behind. Registered once per process
    (``os.register_at_fork``); forks of those children inherit it."""
    global _FORK_HOOK_REGISTERED
    if not _FORK_HOOK_REGISTERED:
        os.register_at_fork(after_in_child=die_with_parent)
        _FORK_HOOK_REGISTERED = True


def prepare_dataset(args: DataArguments, command_line: str = "") -> dict[str, Any]:
    """See :func:`_prepare_dataset`; SIGTERM also stops the worker processes, and SIGKILL
    takes them with it (:func:`_forked_children_die_with_their_parent`)."""
    _forked_children_die_with_their_parent()
    try:
        with _children_end_with_sigterm():
            return _prepare_dataset(args, command_line)
    except OSError as err:  # Arrow reports a full disk without the path: name the output folder
        if err.errno in (errno.ENOSPC, errno.EDQUOT) and not err.filename:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), args.output) from err
        raise


# what a finished preparation writes into OUTPUT (the DatasetDict's files, tokenizer, manifest, stats)
OUTPUT_NAMES = (DATASET_DICT_FILENAME, *SPLITS, TOKENIZER_FILENAME, MANIFEST_FILENAME, STATS_FILENAME)


def _commit_outputs(staged: Path, out: Path) -> None:
    """Move a finished run's outputs from ``staged`` into ``out``, replacing the dataset there.

    Each move is an ``os.replace`` within one file system. ``stats.json`` leaves first and
    arrives last, and a dataset counts as prepared only with it (`data.prepared.read_prepared_dataset`),
    so a reader sees the old dataset, none, or the new one, never a mix. The old outputs wait
    in ``_work/previous`` until the new ones are in place; a process killed in between is
    rolled back by the next run (:func:`_roll_back_interrupted_commit`).
    """
    previous = staged.parent / "previous"
    shutil.rmtree(previous, ignore_errors=True)
    previous.mkdir()
    for name in (STATS_FILENAME, *[n for n in OUTPUT_NAMES if n != STATS_FILENAME]):
        if (out / name).exists():
            os.replace(out / name, previous / name)
    for name in (*[n for n in OUTPUT_NAMES if n != STATS_FILENAME], STATS_FILENAME):
        if (staged / name).exists():
            os.replace(staged / name, out / name)
    shutil.rmtree(previous)


def _roll_back_interrupted_commit(out: Path) -> None:
    """Put back the dataset a killed :func:`_commit_outputs` had begun to replace (no ``stats.json``
    in ``out`` yet), or finish clearing it away (the new one is complete)."""
    previous = out / "_work" / "previous"
    if not previous.is_dir():
        return
    if not (out / STATS_FILENAME).is_file():
        for name in OUTPUT_NAMES:
            if (previous / name).exists():
                if (out / name).is_dir():
                    shutil.rmtree(out / name)
                os.replace(previous / name, out / name)
        print(f"{out}: put back the dataset an interrupted run had begun to replace.")
    shutil.rmtree(previous)


def _prepare_dataset(args: DataArguments, command_line: str = "") -> dict[str, Any]:
    """Run the whole preparation and write everything into ``args.output``.

    Tokenized shards are kept in ``OUTPUT/_work`` until the end, so running the same
    command after a crash or a kill resumes from the first unfinished shard and gives
    the same dataset (see :func:`tokenize_in_shards`). Every output is written into
    ``OUTPUT/_work/result`` and moved into ``OUTPUT`` only once the run has succeeded
    (:func:`_commit_outputs`), so a run that fails leaves a dataset already there as it was.

    Args:
        args: the options; see :class:`DataArguments`.
        command_line: recorded in stats.json for reproducibility.

    Returns:
        The stats dictionary also written to ``stats.json``.

    Raises:
        FileNotFoundError / ValueError: bad source or options (nothing is written).
        ValueError: no piece survived, or a split is empty (explains what to change); the
            manifest stays in ``OUTPUT/_work/result``, and a dataset in ``OUTPUT`` is untouched.
    """
    t0 = time.time()
    out = Path(args.output)
    items, excluded = _items_to_prepare(args)
    out.mkdir(parents=True, exist_ok=True)
    _roll_back_interrupted_commit(out)
    work = out / "_work"  # tokenized shards and intermediate Arrow files; removed at the end

    # 1-2. tokenize every item with the base tokenizer, shard by shard
    tok = build_tokenizer(args.tokenizer_config or None)
    with tempfile.TemporaryDirectory() as tmp:
        tok_sha1 = file_sha1(save_tokenizer(tok, tmp))
    _open_work_dir(work, work_plan(items, tok_sha1, args.limits(), args.piece_timeout_sec), args.resume)
    tok_path = save_tokenizer(tok, work / "base")
    tok_kwargs = {"tokenizer_path": str(tok_path), "tokenizer_sha1": tok_sha1}
    num_proc = min(args.num_proc, max(1, len(items) // 8)) or 1
    pieces, reused = tokenize_in_shards(
        items, work / "shards", args.shard_size or 500 * args.num_proc, num_proc,
        {**tok_kwargs, "limits": asdict(args.limits()), "timeout_sec": args.piece_timeout_sec})

    # 3-4. deduplicate, split by piece, write the manifest (into result/, moved into out at the end)
    result = work / "result"
    shutil.rmtree(result, ignore_errors=True)
    result.mkdir()
    split_rows, counts = _split_by_piece(pieces, result / MANIFEST_FILENAME, args, excluded, len(items))
    splits = {s: pieces.select(rows) for s, rows in split_rows.items()}
    # 5. optional BPE, trained on train pieces only, then re-encode every split
    if args.bpe_vocab_size:
        tok_kwargs = _encode_with_bpe(tok, splits, args, work, num_proc)
    # 6. transposition of train pieces only (after the split, so no leak)
    splits = {s: d.select_columns(["source_id", "num_notes", "num_tokens", "input_ids"]).add_column(
        "transpose", [0] * len(d)) for s, d in splits.items()}
    num_augmented = 0
    if args.augment_transpose:
        num_augmented = _add_transpositions(splits, pieces.select(split_rows["train"]), tok_kwargs,
                                            args.augment_transpose, num_proc)
    # 7. pack
    ids = special_token_ids(tok)
    packed, stats_splits = _pack_splits(splits, split_rows, args, ids, work, num_proc)

    # 8. save
    dataset_dict = DatasetDict(packed)
    dataset_dict.save_to_disk(str(result), num_proc=None)
    save_tokenizer(tok, result)
    elapsed = time.time() - t0
    stats = {
        "source": str(args.source),
        **counts,
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
        "items_resumed": reused,  # tokenized by an interrupted earlier run, not timed in elapsed_sec
        "elapsed_sec": elapsed,
        # this run's own work over its own time: items resumed from an earlier run took none of it
        "items_tokenized": len(items) - reused,
        "items_per_sec": (len(items) - reused) / elapsed if elapsed else None,
    }
    write_json_atomic(result / STATS_FILENAME, stats)
    _commit_outputs(result, out)
    shutil.rmtree(work, ignore_errors=True)
    return stats


def _items_to_prepare(args: DataArguments) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The source's items less those ``--exclude`` names, cut to ``--max-files``: ``(items, excluded)``.

    Raises:
        ValueError: ``--exclude`` leaves no item.
    """
    items = list_source_items(args.source)
    excluded = [item for item in items if is_excluded(item["source_id"], args.exclude)]
    if excluded:
        left_out = {item["source_id"] for item in excluded}
        items = [item for item in items if item["source_id"] not in left_out]
        print(f"Excluded {len(excluded)} items matching {' '.join(args.exclude)}")
        if not items:
            raise ValueError(f"--exclude {' '.join(args.exclude)} leaves no item of {args.source}.")
    return (items[: args.max_files] if args.max_files else items), excluded


def _split_by_piece(pieces: Dataset, manifest: Path, args: DataArguments, excluded: list[dict[str, Any]],
                    num_items: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Deduplicate and split the tokenized pieces (`write_manifest`): split -> rows of ``pieces``,
    and the item counts.

    Raises:
        ValueError: no piece survived, or a split that should have pieces has none.
    """
    split_codes, counts = write_manifest(pieces, manifest, args, excluded)
    if not counts["items_kept"]:
        raise ValueError(f"No usable piece among {num_items} items from {args.source}; "
                         f"see the reasons in {manifest}.")
    split_rows = {s: np.flatnonzero(split_codes == k) for k, s in enumerate(SPLITS)}
    empty = [s for s in SPLITS if not len(split_rows[s]) and (s == "train" or _fraction(args, s) > 0)]
    if empty:
        raise ValueError(f"Split(s) {empty} got no piece out of {counts['items_kept']} "
                         "unique pieces; use more files or larger --val-fraction/--test-fraction.")
    return split_rows, counts


def _encode_with_bpe(tok: Any, splits: dict[str, Dataset], args: DataArguments, work: Path,
                     num_proc: int) -> dict[str, str]:
    """Train BPE on the train pieces only and re-encode every split in place; the new tokenizer's
    ``tokenize_item`` arguments (path and SHA-1)."""
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
    return tok_kwargs


def _add_transpositions(splits: dict[str, Dataset], originals: Dataset, tok_kwargs: dict[str, str],
                        max_shift: int, num_proc: int) -> int:
    """Append every transposition of the train pieces that fits (`transpose_item`) to
    ``splits["train"]``; the number of sequences added."""
    shifted = originals.map(
        transpose_item, batched=True, batch_size=8, remove_columns=originals.column_names,
        fn_kwargs={**tok_kwargs, "max_shift": max_shift},
        num_proc=num_proc if num_proc > 1 and len(originals) > 16 else None, desc="Transposing")
    splits["train"] = concatenate_datasets([splits["train"], shifted.cast(splits["train"].features)])
    return len(shifted)


def _pack_splits(splits: dict[str, Dataset], split_rows: dict[str, np.ndarray], args: DataArguments,
                 ids: dict[str, int], work: Path, num_proc: int) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """Pack each split into ``block_size`` blocks (`data.packing.pack_dataset`), its pieces in a
    seeded random order so blocks mix sources and the first ``eval_max_blocks`` validation/test
    blocks are a random sample of their pieces: ``(split -> blocks, split -> its stats)``."""
    packed, stats_splits = {}, {}
    for s in SPLITS:
        d = splits[s].shuffle(seed=args.seed)
        shutil.rmtree(work / f"split_{s}", ignore_errors=True)  # and any cache a killed run left there
        d.save_to_disk(work / f"split_{s}")
        d = load_from_disk(work / f"split_{s}")
        packed[s], dropped = pack_dataset(d, args.block_size, ids["bos"], ids["eos"], num_proc=num_proc)
        notes, tokens = int(np.sum(d["num_notes"])) if len(d) else 0, int(np.sum(d["num_tokens"])) if len(d) else 0
        stats_splits[s] = {
            "pieces": len(split_rows[s]),
            "sequences_with_augmentation": len(d),
            "notes": notes, "tokens": tokens,
            "tokens_per_note": tokens / notes if notes else None,
            "blocks": len(packed[s]), "packed_tokens": len(packed[s]) * args.block_size,
            "dropped_tokens": dropped,
        }
    return packed, stats_splits


def _fraction(args: DataArguments, split: str) -> float:
    return {"validation": args.val_fraction, "test": args.test_fraction}.get(split, 1.0)
