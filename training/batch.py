"""The batch arithmetic of a study: the global batch in tokens laid out on the hardware, and the
optimizer steps of a token budget D."""

from __future__ import annotations

from dataclasses import dataclass

from configs.study import StudyArguments
from data.prepared import PreparedDataset


@dataclass(frozen=True)
class BatchLayout:
    """How a global token batch is laid out on the hardware.

    ``tokens_per_step = per_device_batch_size * gradient_accumulation_steps * world_size
    * block_size``.
    """

    per_device_batch_size: int
    gradient_accumulation_steps: int
    world_size: int
    block_size: int

    @property
    def sequences_per_step(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps * self.world_size

    @property
    def tokens_per_step(self) -> int:
        return self.sequences_per_step * self.block_size


def compute_batch_layout(global_batch_tokens: int, block_size: int, world_size: int,
                         max_device_batch_size: int) -> BatchLayout:
    """Derive micro-batch and accumulation from the global batch in tokens.

    ``S = global_batch_tokens / block_size`` sequences per step are split over
    ``world_size`` devices; the fewest accumulation steps ``g`` with
    ``S % (world_size * g) == 0`` and ``S / (world_size * g) <= max_device_batch_size``
    are chosen (largest micro-batch that fits).

    Args:
        global_batch_tokens: requested tokens per optimizer step.
        block_size: tokens per sequence.
        world_size: number of processes (devices).
        max_device_batch_size: memory cap on sequences per device per forward pass.

    Returns:
        The layout; its ``tokens_per_step`` equals ``global_batch_tokens``.

    Raises:
        ValueError: ``global_batch_tokens`` is not a multiple of ``block_size``, or the
            sequences per step cannot be shared evenly by ``world_size`` devices.
    """
    if global_batch_tokens % block_size:
        msg = (f"global_batch_tokens {global_batch_tokens} is not a multiple of block_size {block_size}; "
               f"use e.g. {max(1, round(global_batch_tokens / block_size)) * block_size}.")
        raise ValueError(msg)
    sequences = global_batch_tokens // block_size
    if sequences % world_size:
        msg = (f"{sequences} sequences per step cannot be split evenly over {world_size} processes; "
               f"choose global_batch_tokens as a multiple of {world_size * block_size}.")
        raise ValueError(msg)
    per_rank = sequences // world_size
    for accumulation in range(1, per_rank + 1):
        if per_rank % accumulation == 0 and per_rank // accumulation <= max_device_batch_size:
            return BatchLayout(per_rank // accumulation, accumulation, world_size, block_size)
    raise AssertionError("unreachable: accumulation == per_rank always fits")


def plan_steps(num_train_blocks: int, layout: BatchLayout, max_tokens: int) -> int:
    """Optimizer steps for a token budget (or one epoch), never repeating data.

    Raises:
        ValueError: the budget exceeds one epoch, or the epoch is shorter than one step.
    """
    epoch_steps = num_train_blocks // layout.sequences_per_step
    if epoch_steps < 1:
        raise ValueError(f"The train split has {num_train_blocks} blocks, fewer than one step of "
                         f"{layout.sequences_per_step}; lower global_batch_tokens or use more data.")
    if not max_tokens:
        return epoch_steps
    steps = max_tokens // layout.tokens_per_step
    if steps > epoch_steps:
        raise ValueError(f"max_tokens {max_tokens} exceeds one epoch of the train split "
                         f"({epoch_steps * layout.tokens_per_step} tokens in whole steps); lower it, "
                         "add data, or prepare with --augment-transpose.")
    if steps < 1:
        raise ValueError(f"max_tokens {max_tokens} is less than one step of {layout.tokens_per_step} tokens.")
    return steps


def check_plan(dataset: PreparedDataset, study: StudyArguments, world_size: int = 1) -> tuple[BatchLayout, int]:
    """Check a study against a prepared dataset (`data.prepared.read_prepared_dataset`).

    Returns:
        ``(layout, steps)`` for ``world_size`` processes.

    Raises:
        ValueError: batch or budget do not fit.
    """
    layout = compute_batch_layout(study.global_batch_tokens, dataset.block_size, world_size,
                                  study.max_device_batch_size)
    return layout, plan_steps(dataset.blocks["train"], layout, study.max_tokens)
