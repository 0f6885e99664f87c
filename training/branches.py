"""Cooldown branches of a warmup-stable-decay schedule (Hagele et al. 2024): the stable run keeps a
checkpoint at each branch point, and a branch resumes from one and trains its cooldown only.

The schedule itself is transformers' ``warmup_stable_decay`` (`transformers.get_wsd_schedule`);
`training.study.plan_cooldown_branches` plans the runs. A branch is resumed with the Trainer's own
``resume_from_checkpoint``: weights, optimizer moments, scheduler step, RNG states and data
position come from the stable run, and the scheduler's shape from the branch's arguments (a
``LambdaLR`` saves its step, not its function), so the branch follows the stable run's rate up to
its branch point and its own decay after it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainingArguments

from common.io import write_json_atomic
from training.checkpoints import CHECKPOINT_PREFIX, checkpoint_problem, recipe_differences

logger = logging.getLogger(__name__)

BRANCH_POINTS_DIR = "branch_points"  # in a stable run's folder: checkpoint-<step> per branch, and the run's plan
STABLE_PLAN_FILENAME = "stable_plan.json"
WSD_SCHEDULER = "warmup_stable_decay"


class KeepBranchPoints(TrainerCallback):
    """Keep the checkpoint of each branch point of a stable run in ``<output_dir>/branch_points/``.

    The Trainer saves a checkpoint at each of ``steps`` (besides its ``save_steps``); once it is
    written, every process waits and the main one hard-links it into ``branch_points/`` (a copy
    where links are not possible), out of reach of ``save_total_limit`` and of the clean-up of a
    finished run. A resumed run first links the branch points its checkpoints still hold.
    """

    def __init__(self, trainer: Any, steps: list[int]) -> None:
        self.trainer = trainer
        self.steps = set(steps)
        self.folder = Path(trainer.args.output_dir) / BRANCH_POINTS_DIR

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if state.is_world_process_zero:
            for step in sorted(self.steps):
                if step <= state.global_step and not (self.folder / f"{CHECKPOINT_PREFIX}{step}").is_dir():
                    self._keep(step)
        return control

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if state.global_step in self.steps:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if state.global_step in self.steps:
            self.trainer.accelerator.wait_for_everyone()  # every process has written its part
            if state.is_world_process_zero:
                self._keep(state.global_step)
        return control

    def _keep(self, step: int) -> None:
        source = Path(self.trainer.args.output_dir) / f"{CHECKPOINT_PREFIX}{step}"
        if checkpoint_problem(source) is not None:
            logger.warning("branch point %d: %s is missing or incomplete; its branch cannot start until the stable "
                           "run is trained again (--restart)", step, source)
            return
        target = self.folder / f"{CHECKPOINT_PREFIX}{step}"
        partial = self.folder / f".{target.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copytree(source, partial, copy_function=os.link)
        except OSError:  # a file system without hard links
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(source, partial)
        partial.rename(target)
        logger.info("branch point %d kept in %s", step, target)


def write_stable_plan(output_dir: Path, plan: dict[str, Any]) -> None:
    """Record a stable run's plan beside its branch points: branches are checked against it (the
    run's own ``run_plan.json`` is removed when it finishes)."""
    (output_dir / BRANCH_POINTS_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / BRANCH_POINTS_DIR / STABLE_PLAN_FILENAME, plan)


def branch_start(branch_of: str, output_dir: Path, training_args: TrainingArguments, max_steps: int,
                 plan: dict[str, Any]) -> tuple[Path, int]:
    """The stable run's checkpoint a cooldown branch starts from, and its step.

    The branch point is step ``max_steps - num_decay_steps``: the branch trains its cooldown,
    ``num_decay_steps`` steps of ``lr_scheduler_kwargs``, on top of the stable phase.

    Args:
        branch_of: the stable run's folder (a bare name: a sibling of ``output_dir``).
        output_dir: the branch's folder.
        training_args: the branch's arguments (``lr_scheduler_type`` ``warmup_stable_decay``).
        max_steps: the branch's optimizer steps T (its budget D over the batch).
        plan: the branch's run plan (`training.checkpoints.run_recipe` plus model, learning rate, seed).

    Returns:
        ``(checkpoint, step)``.

    Raises:
        ValueError: another schedule; a branch point outside the run; a stable run without a
            complete checkpoint at that step; or a stable run trained on another dataset, batch,
            model, learning rate, seed or warmup. Each message says what to do.
    """
    kwargs = training_args.lr_scheduler_kwargs or {}
    scheduler = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    if scheduler != WSD_SCHEDULER or "num_decay_steps" not in kwargs:
        raise ValueError(f"--branch_of needs --lr_scheduler_type {WSD_SCHEDULER} with num_decay_steps in "
                         f"--lr_scheduler_kwargs (the cooldown's steps); got {scheduler} "
                         f"{kwargs}.")
    step = max_steps - int(kwargs["num_decay_steps"])
    if not 0 < step < max_steps:
        raise ValueError(f"A cooldown of {kwargs['num_decay_steps']} steps does not fit a run of {max_steps} steps.")
    stable = Path(branch_of) if os.sep in branch_of else output_dir.parent / branch_of
    checkpoint = stable / BRANCH_POINTS_DIR / f"{CHECKPOINT_PREFIX}{step}"
    problem = checkpoint_problem(checkpoint) if checkpoint.is_dir() else "not found"
    if problem:
        raise ValueError(f"No branch point at step {step} in {stable} ({checkpoint}: {problem}); train the stable run "
                         f"with --branch_points {step} first (scripts/run_study.py with cooldown_fraction does).")
    try:
        stable_plan = json.loads((stable / BRANCH_POINTS_DIR / STABLE_PLAN_FILENAME).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{stable} has no readable {BRANCH_POINTS_DIR}/{STABLE_PLAN_FILENAME} ({err}); train the "
                         "stable run again with --restart.") from None
    own = ("lr_scheduler_type", "lr_scheduler_kwargs", "max_steps")  # the stable run's constant rate, the cooldown
    differences = recipe_differences({k: v for k, v in stable_plan.items() if k not in own},
                                     {k: v for k, v in plan.items() if k not in own}) + [
        f"has {key} {stable_plan.get(key)}, not {plan.get(key)}" for key in ("model", "learning_rate", "seed",
                                                                           "unique_tokens")
        if stable_plan.get(key) != plan.get(key)]
    if differences:
        raise ValueError(f"Cannot branch from {stable}: the stable run {'; '.join(differences)}. A branch continues "
                         "its stable run: give it the same settings, or train the stable run again.")
    return checkpoint, step
