"""A prepared dataset, read back: the one reader of what ``scripts/prepare_data.py`` writes.

A prepared dataset is a folder holding an Arrow ``DatasetDict`` of packed blocks
(``dataset_dict.json`` and one folder per split), the tokenizer (``tokenizer.json``), one
manifest line per input item (``manifest.jsonl``) and ``stats.json``, which arrives last
(`data.pipeline`): a folder counts as prepared only with it. Training, the study runner,
sharing, generation and the command lines read it through :func:`read_prepared_dataset`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")
DATASET_DICT_FILENAME = "dataset_dict.json"
MANIFEST_FILENAME = "manifest.jsonl"
STATS_FILENAME = "stats.json"


def dataset_fingerprint(dataset_dir: str | Path) -> str:
    """SHA-1 of a prepared dataset's Arrow files (names and bytes, in sorted order), 40 hex digits.

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


@dataclass(frozen=True)
class PreparedDataset:
    """What a training run needs to know of a prepared dataset, typed.

    Attributes:
        path: the folder.
        block_size: tokens per packed block (every row of every split).
        vocab_size: tokens in the vocabulary (after BPE, when trained).
        special_ids: ``{"pad": id, "bos": id, "eos": id}``.
        blocks: split name -> number of blocks.
        tokenization: the MidiTok scheme (``REMI``, ...).
        stats: the whole ``stats.json`` (skip reasons, per-split notes and pieces, arguments),
            for records such as ``run_summary.json`` and the dataset card.
    """

    path: Path
    block_size: int
    vocab_size: int
    special_ids: dict[str, int]
    blocks: dict[str, int]
    tokenization: str
    stats: dict[str, Any] = field(repr=False, compare=False)

    def tokens(self, split: str) -> int:
        """Tokens in the blocks of ``split`` (``blocks * block_size``)."""
        return self.blocks[split] * self.block_size

    @cached_property
    def fingerprint(self) -> str:
        """`dataset_fingerprint` of the folder (read once, then kept; about a second per GB)."""
        return dataset_fingerprint(self.path)

    def load(self) -> Any:
        """The ``datasets.DatasetDict`` of packed blocks (memory-mapped, not read into memory).

        Raises:
            ValueError: the blocks disagree with ``stats.json`` (another block size or number
                of train blocks, e.g. a folder changed by hand); says to prepare it again.
        """
        from datasets import load_from_disk

        datasets = load_from_disk(str(self.path))
        train = datasets["train"]
        found = (len(train[0]["input_ids"]) if len(train) else self.block_size, len(train))
        if found != (self.block_size, self.blocks["train"]):
            raise ValueError(f"{self.path}: the train split has {found[1]} blocks of {found[0]} tokens, but "
                             f"{STATS_FILENAME} says {self.blocks['train']} of {self.block_size}; prepare it "
                             "again with scripts/prepare_data.py.")
        return datasets

    def load_tokenizer(self) -> Any:
        """The MidiTok tokenizer the blocks were made with (``tokenizer.json``)."""
        from tokenizer import load_tokenizer

        return load_tokenizer(self.path)


def read_prepared_dataset(path: str | Path) -> PreparedDataset:
    """Read a folder written by ``scripts/prepare_data.py`` (its ``stats.json``; the blocks
    are opened by `PreparedDataset.load`).

    Raises:
        FileNotFoundError: no prepared dataset there (no ``dataset_dict.json`` or no
            ``stats.json``, e.g. a preparation that was interrupted); says which command makes one.
        ValueError: ``stats.json`` lacks a field (written by an older version); says to prepare again.
    """
    path = Path(path)
    if not (path / DATASET_DICT_FILENAME).is_file() or not (path / STATS_FILENAME).is_file():
        raise FileNotFoundError(f"No prepared dataset at {path}. Run first:\n"
                                f"  python scripts/prepare_data.py --source builtin --output {path}")
    stats = json.loads((path / STATS_FILENAME).read_text())
    try:
        return PreparedDataset(
            path=path, block_size=int(stats["block_size"]), vocab_size=int(stats["vocab_size"]),
            special_ids={k: int(v) for k, v in stats["special_token_ids"].items()},
            blocks={split: int(stats["splits"][split]["blocks"]) for split in SPLITS},
            tokenization=str(stats.get("tokenization", "")), stats=stats)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path / STATS_FILENAME} has no usable {err} (written by an older version?); prepare "
                         "the dataset again with scripts/prepare_data.py.") from None
