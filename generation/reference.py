"""Reference pieces for judging samples: complete pieces recovered from a packed split.

Samples are compared with the test split *as the model saw it* (tokenized, quantized to the
tokenizer's grid, decoded again), and cropped to the samples' token length, so that the
comparison measures the model rather than tokenization or piece length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data.prepared import read_prepared_dataset


def iter_split_pieces(dataset_dir: str | Path, split: str, bos_id: int, eos_id: int,
                      batch_size: int = 256, min_unfinished_tokens: int | None = None) -> Iterator[list[int]]:
    """Yield the complete pieces of a packed split, in packing order.

    ``data.packing`` lays pieces end to end as ``BOS piece EOS`` and cuts the stream into
    blocks; walking the blocks in order and splitting at BOS/EOS gives the pieces back. The
    last piece, cut by the dropped partial block, is yielded only when it still has at least
    ``min_unfinished_tokens`` tokens (never by default).

    Args:
        dataset_dir: folder written by ``scripts/prepare_data.py``.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        bos_id, eos_id: the tokenizer's BOS and EOS ids.
        batch_size: blocks read at a time.
        min_unfinished_tokens: see above.

    Yields:
        Token ids of each piece, BOS and EOS excluded.

    Raises:
        FileNotFoundError: no prepared dataset there; says what to run.
        KeyError: no such split.
    """
    path = Path(dataset_dir)
    dataset = read_prepared_dataset(path).load()
    if split not in dataset:
        raise KeyError(f"{path} has no split {split!r}; it has {sorted(dataset)}.")
    current: list[int] | None = None  # None until the first BOS: a leading partial piece is skipped
    for batch in dataset[split].with_format("numpy").iter(batch_size=batch_size):
        stream = np.asarray(batch["input_ids"]).reshape(-1)
        bounds = np.flatnonzero((stream == bos_id) | (stream == eos_id))
        start = 0
        for b in bounds:
            if current is not None:
                current.extend(stream[start:b].tolist())
            if stream[b] == bos_id:
                current = []
            elif current is not None:
                yield current
                current = None
            start = b + 1
        if current is not None:
            current.extend(stream[start:].tolist())
    if current is not None and min_unfinished_tokens is not None and len(current) >= min_unfinished_tokens:
        yield current


def reference_pieces(dataset_dir: str | Path, bos_id: int, eos_id: int, *, split: str = "test",
                     max_pieces: int = 64, max_tokens: int | None = None) -> list[list[int]]:
    """The first ``max_pieces`` pieces of a split, each cut to ``max_tokens`` tokens.

    The last piece of the split, which packing cut short, counts when it has at least
    ``max_tokens`` tokens (it is then as complete as the others after cropping).

    Returns:
        Up to ``max_pieces`` lists of token ids (fewer when the split has fewer pieces).

    Raises:
        The errors of :func:`iter_split_pieces`.
    """
    pieces = []
    for piece in iter_split_pieces(dataset_dir, split, bos_id, eos_id, min_unfinished_tokens=max_tokens):
        pieces.append(piece[:max_tokens] if max_tokens else piece)
        if len(pieces) >= max_pieces:
            break
    return pieces
