"""Pack tokenized pieces into fixed-length training blocks.

Pieces are laid end to end as ``BOS piece EOS BOS piece EOS ...`` and cut into blocks
of exactly ``block_size`` tokens: no padding, a block may span a piece boundary, and
only the last partial block of the whole split is dropped (the idea behind
``group_texts`` in Transformers' ``run_clm.py``, without its per-batch tail loss).
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset, Features, List, Value

PACKED_FEATURES = Features({"input_ids": List(Value("int32"))})


def pack_sequences(sequences: list[list[int]], block_size: int, bos_id: int,
                   eos_id: int) -> tuple[list[list[int]], int]:
    """Pack pieces into blocks (pure reference implementation).

    Args:
        sequences: token ids of each piece, in order.
        block_size: tokens per block (> 0).
        bos_id, eos_id: ids wrapped around each piece.

    Returns:
        ``(blocks, num_dropped_tokens)``: ``len(blocks) == total // block_size`` where
        ``total = sum(len(s) + 2)``, each block of exactly ``block_size`` ids, and
        ``num_dropped_tokens = total % block_size``.

    Raises:
        ValueError: block_size < 1.
    """
    if block_size < 1:
        msg = f"block_size must be >= 1, got {block_size}."
        raise ValueError(msg)
    stream = [tok for seq in sequences for tok in (bos_id, *seq, eos_id)]
    num_blocks = len(stream) // block_size
    blocks = [stream[i * block_size:(i + 1) * block_size] for i in range(num_blocks)]
    return blocks, len(stream) - num_blocks * block_size


def _pack_batch(batch: dict[str, list], indices: list[int], *, pieces: Dataset,
                offsets: np.ndarray, block_size: int, bos_id: int, eos_id: int) -> dict[str, list]:
    """Blocks whose first token lies in this batch's pieces; reads ahead to finish the last."""
    i0, i1 = indices[0], indices[-1] + 1
    start, end = int(offsets[i0]), int(offsets[i1])
    num_blocks_total = int(offsets[-1]) // block_size
    k_first = -(-start // block_size)
    k_last = min(-(-end // block_size), num_blocks_total)
    if k_first >= k_last:
        return {"input_ids": []}
    parts = []
    for ids in batch["input_ids"]:
        parts += [[bos_id], ids, [eos_id]]
    need_end, j = k_last * block_size, i1
    while int(offsets[j]) < need_end:  # the last block runs into the next pieces
        parts += [[bos_id], pieces[j]["input_ids"], [eos_id]]
        j += 1
    stream = np.concatenate([np.asarray(p, dtype=np.int32) for p in parts])
    blocks = [stream[k * block_size - start:(k + 1) * block_size - start] for k in range(k_first, k_last)]
    return {"input_ids": blocks}


def pack_dataset(pieces: Dataset, block_size: int, bos_id: int, eos_id: int, *,
                 num_proc: int | None = None, batch_size: int = 256) -> tuple[Dataset, int]:
    """Pack a dataset of pieces with ``datasets.map(batched=True)``, in parallel.

    Gives exactly the blocks of :func:`pack_sequences` on the same pieces: each batch
    emits the blocks that start inside it, reading ahead into later pieces to complete
    its last block, so batches can be processed independently.

    Args:
        pieces: dataset with an ``input_ids`` column (one piece per row, in packing
            order). For ``num_proc > 1`` it should be backed by files on disk so that
            workers read it instead of copying it.
        block_size: tokens per block.
        bos_id, eos_id: piece separators.
        num_proc: worker processes for ``map``.
        batch_size: pieces per map batch.

    Returns:
        ``(blocks, num_dropped_tokens)``: a dataset with one ``input_ids`` column of
        ``block_size`` int32 ids per row, and the tokens of the final partial block.
    """
    if block_size < 1:
        msg = f"block_size must be >= 1, got {block_size}."
        raise ValueError(msg)
    lengths = np.asarray(pieces["num_tokens"], dtype=np.int64) + 2
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    if len(pieces) == 0:
        return Dataset.from_dict({"input_ids": []}, features=PACKED_FEATURES), 0
    packed = pieces.map(
        _pack_batch, batched=True, batch_size=batch_size, with_indices=True,
        remove_columns=pieces.column_names, features=PACKED_FEATURES,
        num_proc=num_proc if num_proc and num_proc > 1 and len(pieces) > batch_size else None,
        fn_kwargs={"pieces": pieces, "offsets": offsets, "block_size": block_size,
                   "bos_id": bos_id, "eos_id": eos_id},
        desc=f"Packing into {block_size}-token blocks",
    )
    return packed, total - (total // block_size) * block_size
