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


def plan_steps(num_train_blocks: int, layout: BatchLayout, max_tokens: int, epochs: float = 0.0,
               repeat_data: bool = False) -> int:
    """Optimizer steps for a token budget (or one epoch, or ``epochs`` passes over the train blocks).

    Args:
        num_train_blocks: blocks trained on (the unique data, `unique_blocks`).
        layout: the batch layout.
        max_tokens: D in tokens (0: one epoch); more than one epoch only with ``repeat_data``.
        epochs: passes over the blocks (0: use ``max_tokens``); D = epochs x blocks x block_size,
            in whole steps, data repeated.
        repeat_data: allow a ``max_tokens`` beyond one epoch.

    Raises:
        ValueError: the budget exceeds one epoch, or it or the epoch is shorter than one step.
    """
    epoch_steps = num_train_blocks // layout.sequences_per_step
    if epoch_steps < 1:
        raise ValueError(f"The train split has {num_train_blocks} blocks, fewer than one step of "
                         f"{layout.sequences_per_step}; lower global_batch_tokens or use more data.")
    if epochs:
        steps = int(epochs * num_train_blocks // layout.sequences_per_step)
        if steps < 1:
            raise ValueError(f"epochs {epochs} of {num_train_blocks} blocks is less than one step.")
        return steps
    if not max_tokens:
        return epoch_steps
    steps = max_tokens // layout.tokens_per_step
    if steps > epoch_steps and not repeat_data:
        raise ValueError(f"max_tokens {max_tokens} exceeds one epoch of the train split "
                         f"({epoch_steps * layout.tokens_per_step} tokens in whole steps); lower it, "
                         "add data, prepare with --augment-transpose, or set repeat_data to repeat it.")
    if steps < 1:
        raise ValueError(f"max_tokens {max_tokens} is less than one step of {layout.tokens_per_step} tokens.")
    return steps


def unique_blocks(dataset: PreparedDataset, study: StudyArguments) -> int:
    """The train blocks a study trains on: the first ``ceil(unique_tokens / block_size)`` (all when
    ``unique_tokens`` is 0). The split is packed shuffled, so they are a random sample of its pieces,
    the same for every size and seed.

    Raises:
        ValueError: ``unique_tokens`` exceeds the train split.
    """
    blocks = dataset.blocks["train"]
    if not study.unique_tokens:
        return blocks
    wanted = -(-study.unique_tokens // dataset.block_size)
    if wanted > blocks:
        raise ValueError(f"unique_tokens {study.unique_tokens:,} exceeds the train split "
                         f"({blocks * dataset.block_size:,} tokens); lower it, or prepare more data.")
    return wanted


def check_plan(dataset: PreparedDataset, study: StudyArguments, world_size: int = 1) -> tuple[BatchLayout, int]:
    """Check a study against a prepared dataset (`data.prepared.read_prepared_dataset`).

    Returns:
        ``(layout, steps)`` for ``world_size`` processes.

    Raises:
        ValueError: batch or budget do not fit.
    """
    layout = compute_batch_layout(study.global_batch_tokens, dataset.block_size, world_size,
                                  study.max_device_batch_size)
    return layout, plan_steps(unique_blocks(dataset, study), layout, study.max_tokens, study.epochs,
                              repeat_data=study.repeat_data)
