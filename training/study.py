"""Run every run of a study, one process each, one after another or several at once.

Each run is its own process (``python scripts/train.py`` or a launcher such as ``accelerate
launch``) so that a crash, an out-of-memory kill or a hung collective in one run is recorded
and the others still run, and memory is returned between runs. Independent runs can share a
machine (`run_slots`: one per GPU, or the CPU cores split); a run can wait for others
(`PlannedRun.after`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis.lr_sweep import LrRule, SizeSweep, fit_lr_rule, sweep_of_size
from common.io import write_json_atomic
from configs.naming import RUN_SUMMARY_FILENAME, run_name, size_name
from configs.sampling import SamplingArguments
from data.isolation import die_with_parent
from training.branches import WSD_SCHEDULER
from training.checkpoints import recipe_differences, recipe_of_summary

if TYPE_CHECKING:
    from training.slurm import SlurmSettings

RESULTS_FILENAME = "results.json"
_SUMMARY_KEYS = ("n_params", "n_params_non_embedding", "tokens_trained", "flops", "train_loss",
                 "eval_loss", "test_loss", "wall_clock_s", "tokens_per_second")


@dataclass
class StudyRunnerArguments:
    """How scripts/run_study.py starts each run (its other options are the study's settings)."""

    _argument_group_name = "runner (how the runs are started)"

    launcher: str = field(default=shlex.quote(sys.executable), metadata={
        "help": 'Command that runs a script, e.g. "accelerate launch --num_processes 4".'})
    parallel: int = field(default=1, metadata={
        "help": "Runs trained at once on this machine: with GPUs each gets --gpus_per_run of them "
                "(CUDA_VISIBLE_DEVICES), on CPU the cores are split between them (OMP_NUM_THREADS); 0 = one per "
                "--gpus_per_run GPUs (1 without a GPU). Runs that wait for others (a size's sweep) start when "
                "those have finished."})
    gpus_per_run: int = field(default=1, metadata={
        "help": "GPUs each run gets when --parallel runs share a machine; with --executor slurm, each job's "
                "--gpus-per-node (0: CPU-only jobs)."})
    executor: str = field(default="local", metadata={
        "help": "Where runs train: local (processes on this machine) or slurm (one SLURM job per run, submitted "
                "with submitit; the study folder must be on storage every node sees). See README, 'Running a "
                "study on a SLURM cluster'."})
    slurm_partition: str = field(default="", metadata={"help": "SLURM partition (--executor slurm); '' = default."})
    slurm_time_min: int = field(default=24 * 60, metadata={
        "help": "Time limit of each job in minutes (at most the partition's); near it the job is requeued and "
                "resumes from its last complete checkpoint."})
    slurm_account: str = field(default="", metadata={"help": "SLURM account (--executor slurm); '' = default."})
    slurm_cpus_per_task: int = field(default=0, metadata={
        "help": "CPUs of each job; 0 = the cluster's default. On CPU, OMP_NUM_THREADS follows it."})
    slurm_mem_gb: float = field(default=0.0, metadata={"help": "Memory of each job in GB; 0 = the cluster's default."})
    slurm_signal_delay_s: int = field(default=120, metadata={
        "help": "Seconds between SLURM's warning signal (time limit near, or preemption) and the kill, in which "
                "training is stopped and the job requeued."})
    slurm_parameters: str = field(default="", metadata={
        "help": 'Other sbatch options as a JSON object, e.g. \'{"qos": "high", "constraint": "a100"}\'.'})

    def __post_init__(self) -> None:
        if self.executor not in ("local", "slurm"):
            raise ValueError(f"--executor must be local or slurm; got {self.executor!r}.")
        if self.gpus_per_run < (0 if self.executor == "slurm" else 1):
            raise ValueError(f"--gpus_per_run must be at least {0 if self.executor == 'slurm' else 1}; "
                             f"got {self.gpus_per_run}.")


# set for each run by the runner (its rate, Hub repository, name, folder, place in the study), or the
# runner's own: never passed on to scripts/train.py as given
NOT_PASSED_ON = ("size", "dataset", "study", "output_dir", "run_name", "learning_rate", "hub_model_id", "budget_role",
                 "compute_budget", "lr_rule", "lr_source", "branch_of", "branch_points",
                 *(f.name for t in (StudyRunnerArguments, SamplingArguments) for f in dataclasses.fields(t)))


def flags_for_each_run(argv: list[str]) -> list[str]:
    """The flags of scripts/run_study.py's ``argv`` that every run's scripts/train.py is given: the study's and the
    Trainer's settings (``--max_tokens 2048``, ``--no-wandb``), without `NOT_PASSED_ON`."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in NOT_PASSED_ON:  # each takes one value, the lists one or more
        parser.add_argument(f"--{name}", *([f"--{name.replace('_', '-')}"] if "_" in name else []),
                            nargs="+" if name == "branch_points" else None)
    return parser.parse_known_args(argv)[1]


MIN_STEPS_PER_RUN = 20  # fewer optimizer steps leave warmup + cosine decay meaningless


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a study: a size trained on a token budget at a learning rate.

    Attributes:
        size: size name or size file (``--size``).
        run_name: its name (`configs.naming.run_name`): its folder under the study, its W&B run
            and ``run_name`` in its summary.
        max_tokens: D, tokens to train on (a whole number of optimizer steps); None = the
            study's own ``max_tokens``.
        compute_budget: the IsoFLOP budget C (FLOPs) the run belongs to, 0 for none.
        learning_rate: the peak learning rate; None = the study's ``learning_rate``.
        lr_source: where it came from (``fixed``, ``swept``, ``rule``); "" = the study's default.
        lr_rule: the rule file that sets the rate (with ``lr_source`` ``rule``), "" for none.
        seed: the seed; None = the study's ``seed``.
        after: names of runs this one starts after (it is not started when one of them fails).
        branch_points: for the stable run of a warmup-stable-decay schedule, the steps it keeps
            a checkpoint at, one per cooldown branch (`plan_cooldown_branches`); empty otherwise.
        branch_of: for a cooldown branch, the name of the stable run it resumes from.
        schedule: TrainingArguments this run sets apart from the study's (the WSD schedule of a
            stable run or a branch: ``lr_scheduler_type``, ``warmup_steps``, ``lr_scheduler_kwargs``).
        unique_tokens: U_D of a run on repeated data (`plan_repeated_data_runs`), 0 for the study's own.
    """

    size: str
    run_name: str
    max_tokens: int | None = None
    compute_budget: float = 0.0
    learning_rate: float | None = None
    lr_source: str = ""
    lr_rule: str = ""
    seed: int | None = None
    after: tuple[str, ...] = ()
    branch_points: tuple[int, ...] = ()
    branch_of: str = ""
    schedule: dict[str, Any] = field(default_factory=dict)
    unique_tokens: int = 0

    @property
    def main_budget(self) -> bool:
        """Whether the run trains on the study's own budget (the runs L(N) is fitted on)."""
        return self.max_tokens is None

    def train_args(self) -> list[str]:
        """Extra ``scripts/train.py`` arguments (name, budget, IsoFLOP label, learning rate, seed) for this run."""
        args = ["--run_name", self.run_name]
        if self.max_tokens is not None:
            role = ["--budget_role", "stable"] if self.branch_points else \
                ["--budget_role", "isoflop", "--compute_budget", repr(float(self.compute_budget))] \
                if self.compute_budget else ["--budget_role", "grid"]
            args += ["--max_tokens", str(self.max_tokens), *role]
        if self.unique_tokens:
            args += ["--unique_tokens", str(self.unique_tokens), "--repeat_data", "true"]
        if self.branch_points:
            args += ["--branch_points", *map(str, self.branch_points)]
        if self.branch_of:
            args += ["--branch_of", self.branch_of]
        for key, value in self.schedule.items():
            args += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
        if self.lr_rule:
            args += ["--lr_rule", self.lr_rule]
        elif self.learning_rate is not None:
            args += ["--learning_rate", repr(float(self.learning_rate))]
        if self.lr_source and not self.lr_rule:
            args += ["--lr_source", self.lr_source]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        return args


def plan_study_runs(sizes: list[str], n_params: dict[str, int], *, tokens_per_step: int, epoch_tokens: int,
                    token_budgets: list[int] = (), isoflop_budgets: list[float] = (),
                    min_steps: int = MIN_STEPS_PER_RUN,
                    repeat_data: bool = False) -> tuple[list[PlannedRun], list[str]]:
    """Every run of a study: each size on the main budget, on each extra token budget, and
    on each IsoFLOP budget.

    For an IsoFLOP budget C, a size with N non-embedding parameters trains on
    D = C / (6 N) tokens (C = 6ND, Kaplan et al. 2020, sec. 2.1), rounded to whole optimizer
    steps; sizes for which that is under ``min_steps`` steps or over one epoch are left out
    with a note (an IsoFLOP profile needs sizes on both sides of its minimum, Hoffmann et al.
    2022, sec. 3.2, so choose budgets that leave at least three sizes each).

    Args:
        sizes: sizes in study order (smallest first).
        n_params: size -> non-embedding N.
        tokens_per_step: tokens per optimizer step (global batch).
        epoch_tokens: tokens in one epoch of the train split (of its unique data), in whole steps.
        token_budgets: extra D values trained by every size (a grid over N and D).
        isoflop_budgets: C values in FLOPs.
        min_steps: fewest optimizer steps a planned extra run may have.
        repeat_data: a D beyond one epoch is planned (the data repeated) instead of refused or
            left out.

    Returns:
        ``(runs, notes)``: the main-budget runs first (in ``sizes`` order), then the grid,
        then the IsoFLOP runs; ``notes`` says which (size, budget) pairs were left out and why.

    Raises:
        ValueError: a token budget under ``min_steps`` steps or over one epoch (its value,
            the limits and what to change).
    """
    runs = [PlannedRun(size, run_name(size)) for size in sizes]
    notes = []
    low, high = min_steps * tokens_per_step, float("inf") if repeat_data else epoch_tokens
    for d in token_budgets:
        steps = int(d) // tokens_per_step
        if not min_steps <= steps <= high // tokens_per_step:
            raise ValueError(f"token budget {d:,} gives {steps} steps of {tokens_per_step:,} tokens; token_budgets "
                             f"must lie between {low:,} ({min_steps} steps) and {high:,} (one epoch).")
        runs += [PlannedRun(size, run_name(size, tokens=steps * tokens_per_step), steps * tokens_per_step)
                 for size in sizes]
    for c in isoflop_budgets:
        kept = 0
        for size in sizes:
            steps = round(c / (6 * n_params[size]) / tokens_per_step)
            d = steps * tokens_per_step
            if steps < min_steps or d > high:
                why = f"under {min_steps} steps" if steps < min_steps else "over one epoch"
                notes.append(f"IsoFLOP C={c:.3g}: {size} left out (D = C/6N = {c / (6 * n_params[size]):,.0f} "
                             f"tokens, {why})")
                continue
            runs.append(PlannedRun(size, run_name(size, compute=c), d, float(c)))
            kept += 1
        if kept < 3:
            notes.append(f"IsoFLOP C={c:.3g} keeps only {kept} size(s); its profile needs 3 or more "
                         "(a parabola), so the analysis will not use it.")
    seen = set()
    for run in runs:
        if run.run_name in seen:
            raise ValueError(f"Two planned runs share the folder {run.run_name}; remove the duplicate budget.")
        seen.add(run.run_name)
    return runs, notes


def plan_repeated_data_runs(sizes: list[str], *, tokens_per_step: int, block_size: int, train_blocks: int,
                            unique_budgets: list[int], epoch_budgets: list[float] = (), token_budgets: list[int] = (),
                            min_steps: int = MIN_STEPS_PER_RUN) -> list[PlannedRun]:
    """Every size on each unique-data size U_D, for each number of epochs or up to each token budget:
    the runs of a study of repeated data (Muennighoff et al. 2023), named ``<size>-U<U_D>-e<epochs>``.

    Two designs. With ``epoch_budgets``, every U_D for every number of epochs (a grid; runs of equal
    D appear only where U_D x epochs coincide). With ``token_budgets``, every D from every U_D at or
    below it, in D / U_D epochs: the same D from less and less unique data, which measures what a
    repeat costs at equal compute (their fig. 3); the runs that see D once are the study's own
    token budgets on the whole split.

    U_D is rounded up to whole optimizer steps (the train split's first blocks,
    `training.batch.unique_blocks`), so that every pass ends on a full step and D counts only
    tokens trained; D = epochs x U_D, or the token budget, down to whole steps.

    Args:
        sizes: sizes in study order.
        tokens_per_step: tokens per optimizer step; block_size: tokens per block (a divisor of it).
        train_blocks: blocks in the train split.
        unique_budgets: U_D values in tokens.
        epoch_budgets: passes over each U_D; or
        token_budgets: D values in tokens, each reached from every U_D at or below it.
        min_steps: fewest optimizer steps a run may have.

    Returns:
        The runs, by U_D, then epochs or D, then size.

    Raises:
        ValueError: both designs or neither; a U_D beyond the train split; a run under ``min_steps``
            steps; or, with ``token_budgets``, a U_D above every D (each says what to change).
    """
    if bool(epoch_budgets) == bool(token_budgets):
        raise ValueError(f"give epoch_budgets {list(epoch_budgets)} or token_budgets {list(token_budgets)}, one of "
                         "the two.")
    runs = []
    for unique in unique_budgets:
        epoch_steps = -(-int(unique) // tokens_per_step)
        unique_tokens = epoch_steps * tokens_per_step
        if unique_tokens > train_blocks * block_size:
            raise ValueError(f"unique budget {unique:,} ({unique_tokens:,} in whole steps of {tokens_per_step:,} "
                             f"tokens) exceeds the train split ({train_blocks * block_size:,} tokens).")
        if epoch_budgets:
            plan = [(epochs, int(epochs * epoch_steps)) for epochs in epoch_budgets]
        else:
            plan = [(steps / epoch_steps, steps) for steps in (int(d) // tokens_per_step for d in token_budgets)
                    if steps >= epoch_steps]
            if not plan:
                raise ValueError(f"unique budget {unique:,} is above every repeat_token_budgets D "
                                 f"({', '.join(f'{d:,}' for d in token_budgets)}); lower it or add a larger D.")
        for epochs, steps in plan:
            if steps < min_steps:
                raise ValueError(f"U_D {unique:,} for {epochs:g} epochs gives {steps} steps of {tokens_per_step:,} "
                                 f"tokens, under {min_steps}; raise the smallest unique budget or lower "
                                 "global_batch_tokens.")
            runs += [PlannedRun(size, run_name(size, unique=unique_tokens, epochs=epochs), steps * tokens_per_step,
                                unique_tokens=unique_tokens) for size in sizes]
    return runs


def plan_cooldown_branches(runs: list[PlannedRun], *, tokens_per_step: int, cooldown_fraction: float,
                           warmup_steps: float) -> list[PlannedRun]:
    """Each size's extra-budget runs as cooldown branches of one warmup-stable-decay run (per unique-data
    size, for runs on repeated data).

    Hagele et al. 2024 (sec. 3-4) train at a constant rate after warmup and, for each budget of
    T optimizer steps, branch a cooldown from the stable phase's checkpoint at step
    ``T - round(fraction * T)`` that decays over the remaining steps with the (1 - sqrt) shape,
    lr(t) = peak * (1 - sqrt((t - s) / K)) for s <= t < T (their eq. 1 and fig. 3), to 0; a
    branch matches a cosine run of the same length. A size's stable run trains up to its
    largest branch point and keeps a checkpoint at each; every branch waits for it and is a run
    of its own (its budget's name and role, with ``branch_of``). The stable phase, as the
    branches' warmup, is shared, so it is the study's ``warmup_steps`` in steps (>= 1), or that
    fraction of the size's shortest budget (< 1).

    Runs on repeated data (`plan_repeated_data_runs`) branch from a stable run of their own size
    and U_D, ``<size>-U<U_D>-e<epochs>-stable``, which passes over those U_D tokens as often as its
    longest branch needs (a new order each pass, from accelerate's seeded sampler: the seed plus
    the pass number), so a branch of k epochs is fed what one run of k epochs with its schedule is
    fed, whether it resumes at the end of a pass or inside one.

    Args:
        runs: planned runs (`plan_study_runs`, `plan_repeated_data_runs`); those with a
            ``max_tokens`` are replaced, the main-budget runs are kept as they are.
        tokens_per_step: tokens per optimizer step.
        cooldown_fraction: the share of each budget spent in its cooldown, in (0, 1).
        warmup_steps: the study's ``warmup_steps`` (a count, or a fraction of a run below 1).

    Returns:
        The main-budget runs, then each stable run (by size, then U_D, as they first appear in
        ``runs``), then the branches.

    Raises:
        ValueError: the warmup does not end before a stable run's first branch point.
    """
    keep, by_stable = [], {}
    for run in runs:
        if run.max_tokens is None:
            keep.append(run)
        else:  # the same data: one size on the whole split, or on one U_D
            by_stable.setdefault((run.size, run.unique_tokens), []).append(run)
    stables, branches = [], []
    for (size, unique), budget_runs in by_stable.items():
        steps = {run.run_name: run.max_tokens // tokens_per_step for run in budget_runs}
        cooldown = {name: max(1, round(cooldown_fraction * t)) for name, t in steps.items()}
        starts = {name: steps[name] - cooldown[name] for name in steps}
        warmup = int(warmup_steps) if warmup_steps >= 1 else round(warmup_steps * min(steps.values()))
        if warmup >= min(starts.values()):
            on = f" on U_D {unique:,}" if unique else ""
            raise ValueError(f"{size_name(size)}{on}: a warmup of {warmup} steps does not end before the first "
                             f"cooldown branch starts (step {min(starts.values())}); lower warmup_steps or "
                             "cooldown_fraction, or raise the shortest token budget.")
        last = max(starts.values())
        name = run_name(size, unique=unique, epochs=last * tokens_per_step / unique, stable=True) if unique else \
            run_name(size, tokens=last * tokens_per_step, stable=True)
        stable = PlannedRun(size, name, last * tokens_per_step, unique_tokens=unique,
                            branch_points=tuple(sorted(set(starts.values()))),
                            # WSD's warmup and stable phase; the rate stays at its peak through the last branch
                            # point, where the optimizer's rate is saved and the largest branch resumes
                            schedule={"lr_scheduler_type": "constant_with_warmup", "warmup_steps": warmup,
                                      "lr_scheduler_kwargs": {}})
        stables.append(stable)
        branches += [dataclasses.replace(run, after=(*run.after, stable.run_name), branch_of=stable.run_name, schedule={
            "lr_scheduler_type": WSD_SCHEDULER, "warmup_steps": warmup,
            "lr_scheduler_kwargs": {"num_decay_steps": cooldown[run.run_name], "decay_type": "1-sqrt",
                                    "min_lr_ratio": 0.0}}) for run in budget_runs]
    return keep + stables + branches


def own_tokens(run: PlannedRun, tokens_per_step: int) -> int:
    """Tokens a planned run trains itself: its D, or for a cooldown branch its cooldown only (its stable
    run trained the rest). ``max_tokens`` must be set (an extra budget)."""
    if run.branch_of:
        return run.schedule["lr_scheduler_kwargs"]["num_decay_steps"] * tokens_per_step
    return run.max_tokens


def stale_reason(summary: dict[str, Any], run: PlannedRun, main_tokens: int | None,
                 recipe: dict[str, Any] | None = None) -> str:
    """Why a finished run does not match its plan (D, learning rate, seed, dataset, batch,
    schedule), or "".

    Args:
        summary: the run's run_summary.json (older runs keep the rate and seed in
            ``config.training`` only).
        run: its plan; a rate or seed left None is not compared.
        main_tokens: the study's own D, for runs on the main budget (None: D is not compared).
        recipe: the study's `training.checkpoints.run_recipe` (dataset fingerprint, block size, batch,
            schedule); None: not compared.
    """
    training = (summary.get("config") or {}).get("training") or {}
    tokens = run.max_tokens if run.max_tokens is not None else main_tokens
    trained = summary.get("tokens_trained")
    if tokens is not None and trained != tokens:
        return f"was trained on {trained:,} tokens, not {tokens:,}" if trained else "has no tokens_trained"
    trained_lr = summary.get("learning_rate", training.get("learning_rate"))
    if run.learning_rate and trained_lr and abs(trained_lr / run.learning_rate - 1) > 1e-3:
        return (f"was trained at learning rate {trained_lr:.4g}, but the study plans {run.learning_rate:.4g} "
                f"({run.lr_source or 'fixed'})")
    if run.unique_tokens and summary.get("unique_tokens") != run.unique_tokens:
        return f"was trained on {summary.get('unique_tokens')} unique tokens, not {run.unique_tokens:,}"
    trained_seed = summary.get("seed", training.get("seed"))
    if run.seed is not None and trained_seed is not None and trained_seed != run.seed:
        return f"was trained with seed {trained_seed}, but the study plans {run.seed}"
    # a run with its own schedule (a WSD stable run or branch) is compared with that schedule
    differences = recipe_differences(recipe_of_summary(summary), {**recipe, **run.schedule}) if recipe else []
    return "; ".join(differences)


def run_slots(parallel: int, gpus_per_run: int = 1, *, num_gpus: int | None = None,
              num_cpus: int | None = None) -> list[dict[str, str]]:
    """The environment of each of ``parallel`` runs trained at once on this machine.

    With GPUs, run ``i`` sees its own ``gpus_per_run`` of them (``CUDA_VISIBLE_DEVICES``); on CPU
    the cores are split between the runs (``OMP_NUM_THREADS``, which sets torch's threads), so
    that runs side by side do not oversubscribe the cores.

    Args:
        parallel: runs at once; 0 = one per ``gpus_per_run`` GPUs, or 1 without a GPU.
        gpus_per_run: GPUs given to each run (a launcher such as ``accelerate launch
            --num_processes K`` uses them).
        num_gpus, num_cpus: what the machine has (default: counted).

    Raises:
        ValueError: more GPUs asked for than the machine has.
    """
    if num_gpus is None:
        import torch

        num_gpus = torch.cuda.device_count()
    num_cpus = num_cpus or len(os.sched_getaffinity(0))
    if num_gpus:
        parallel = parallel or max(1, num_gpus // gpus_per_run)
        if parallel * gpus_per_run > num_gpus:
            raise ValueError(f"--parallel {parallel} x --gpus_per_run {gpus_per_run} needs {parallel * gpus_per_run} "
                             f"GPUs; this machine has {num_gpus}.")
        return [{"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in range(i * gpus_per_run, (i + 1) * gpus_per_run))}
                for i in range(parallel)]
    parallel = parallel or 1
    return [{"OMP_NUM_THREADS": str(max(1, num_cpus // parallel))} for _ in range(parallel)]


class StudyInterrupted(Exception):
    """The study runner was told to stop (SIGINT or SIGTERM); every run it started was stopped."""


def run_study(sizes: list[str | PlannedRun], study_dir: str | Path, train_command: list[str], *,
              log: Any = print, size_args: Callable[[str], list[str]] | None = None,
              main_tokens: int | None = None, recipe: dict[str, Any] | None = None,
              slots: list[dict[str, str]] | None = None,
              slurm: SlurmSettings | None = None) -> list[dict[str, Any]]:
    """Train each run unless its ``run_summary.json`` exists, up to ``len(slots)`` at once; write ``results.json``.

    Each run is a process of its own (its own process group), so a crash, an out-of-memory
    kill or a hung collective in one run is recorded and the others go on. A run waits for
    the runs named in its ``after``; a run whose dependency failed is not started
    (``dependency_failed``). SIGINT or SIGTERM stops every run started (SIGTERM to its process
    group, SIGKILL 30 s later), records them as ``interrupted`` and raises `StudyInterrupted`;
    the same command resumes each from its last complete checkpoint.

    Args:
        sizes: size names (one run each, on the study's budget) or `PlannedRun` entries
            (see `plan_study_runs`), smallest first: the order runs start in.
        study_dir: one sub-folder per run is created in it.
        train_command: command prefix that trains one size, e.g. ``[python,
            scripts/train.py, --dataset, D, --study, S]``; ``--size`` and
            ``--output-dir`` are appended per run.
        log: called with one progress line as each run starts and ends, and a last line
            counting what finished, failed and was left.
        size_args: extra arguments for one size (e.g. its own ``--hub_model_id``); main-budget
            runs only.
        main_tokens: the study's own D; with it, a finished run is checked against its planned
            D, learning rate and seed before it is reused.
        recipe: the study's `training.checkpoints.run_recipe`; with it, a finished run is also checked
            for its dataset, block size, batch and schedule.
        slots: the environment of each run trained at once (`run_slots`); default one run at a
            time in this process's environment.
        slurm: with it, each run not finished is a SLURM job instead (`training.slurm.run_on_slurm`:
            submitted at once, ``after`` as ``afterok`` dependencies, reattached when rerun); an
            interruption leaves the jobs running (status ``submitted``).

    Raises:
        ValueError: a finished run was trained on another D, learning rate, seed, dataset, batch or
            schedule than planned, or a run waits for a run that is not in the study.
        StudyInterrupted: SIGINT or SIGTERM (results.json is written first).
        ConnectionError: with ``slurm``, the SLURM controller does not answer.

    Returns:
        One entry per run, in the order of ``sizes``: ``size``, ``run_name``, ``max_tokens``,
        ``compute_budget``, ``status`` (``finished``, ``existing``, ``failed``,
        ``dependency_failed``), ``run_dir``, ``seconds``, the main summary fields when finished,
        and ``returncode`` / ``error`` (last lines of the log) when failed.
    """
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    runs = [r if isinstance(r, PlannedRun) else PlannedRun(r, run_name(r)) for r in sizes]
    names = {r.run_name for r in runs}
    for run in runs:  # a run may wait for one finished before, outside this list
        unknown = [d for d in run.after if d not in names and not (study_dir / d / RUN_SUMMARY_FILENAME).is_file()]
        if unknown:
            raise ValueError(f"{run.run_name} waits for {unknown}, which neither this study plans nor has finished.")
    try:  # entries of runs not run this time stay in results.json
        earlier = [e for e in json.loads((study_dir / RESULTS_FILENAME).read_text())
                   if e.get("run_name", run_name(str(e.get("size")))) not in names]
    except (OSError, ValueError, AttributeError):
        earlier = []
    entries: dict[str, dict[str, Any]] = {}
    for run in runs:
        entries[run.run_name] = {"size": run.size, "run_name": run.run_name, "max_tokens": run.max_tokens,
                                 "compute_budget": run.compute_budget or None, "run_dir": str(study_dir / run.run_name)}
        if (study_dir / run.run_name / RUN_SUMMARY_FILENAME).is_file():
            stale = stale_reason(_read_summary(study_dir, run.run_name) or {}, run, main_tokens, recipe)
            if stale:
                raise ValueError(f"{study_dir / run.run_name} {stale}; delete the folder to retrain it, or use another "
                                 "--output-dir.")
            summary = _read_summary(study_dir, run.run_name) or {}
            entries[run.run_name].update(status="existing", **{k: summary.get(k) for k in _SUMMARY_KEYS})
            log(f"{run.run_name}: run_summary.json exists, skipped")

    def save() -> None:  # partial results survive a crash
        write_json_atomic(study_dir / RESULTS_FILENAME,
                          earlier + [entries[r.run_name] for r in runs if "status" in entries[r.run_name]])

    def command(run: PlannedRun) -> list[str]:
        first = run.main_budget and run.seed is None and run.lr_source != "swept"
        extra = (size_args(run.size) if size_args and first else []) + run.train_args()
        return [*train_command, "--size", run.size, "--output_dir", str(study_dir / run.run_name), *extra]

    save()
    free = list(slots or [{}])
    width = len(free)
    pending = [r for r in runs if "status" not in entries[r.run_name]]
    if slurm is not None:  # SLURM schedules them: submit all, wait for the jobs here
        from training.slurm import run_on_slurm

        run_on_slurm(pending, entries, command, study_dir, slurm, log=log, save=save)
        pending = []
    running: dict[Future, tuple[PlannedRun, subprocess.Popen, float, dict[str, str]]] = {}
    waiter = ThreadPoolExecutor(max_workers=width)  # threads only wait; every run starts from this thread
    try:
        with _signals_as_interruption():
            while pending or running:
                for run in list(pending):
                    deps = [entries[d].get("status") if d in entries else "existing" for d in run.after]
                    if any(d in ("failed", "dependency_failed", "interrupted") for d in deps):
                        pending.remove(run)
                        entries[run.run_name].update(status="dependency_failed",
                                                     error=f"not started: {', '.join(run.after)} did not finish")
                        log(f"{run.run_name}: not started, a run it waits for ({', '.join(run.after)}) failed")
                        save()
                    elif all(d in ("finished", "existing") for d in deps) and free:
                        pending.remove(run)
                        slot = free.pop(0)
                        proc = _start_run(command(run), study_dir / run.run_name, slot)
                        running[waiter.submit(proc.wait)] = (run, proc, time.time(), slot)
                        log(f"{run.run_name}: training ({len(running)} running, {len(pending)} waiting; log: "
                            f"{study_dir / run.run_name / 'train.log'})")
                if not running:
                    if pending:
                        raise ValueError(f"runs wait for each other in a circle: {[r.run_name for r in pending]}")
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    run, proc, t0, slot = running.pop(future)
                    free.append(slot)
                    _record_result(entries[run.run_name], proc.returncode, round(time.time() - t0, 1),
                                   study_dir / run.run_name, log)
                    save()
    except (KeyboardInterrupt, StudyInterrupted) as err:
        procs = [proc for _, proc, _, _ in running.values()]
        log(f"interrupted: stopping {len(procs)} running run(s); run the same command to resume them")
        _stop_process_groups(procs)
        for run, *_ in running.values():
            entries[run.run_name]["status"] = "interrupted"
        save()
        raise StudyInterrupted(f"stopped by {type(err).__name__}; {len(procs)} run(s) stopped, each resumes from "
                               "its last complete checkpoint when the same command is run again") from err
    finally:
        waiter.shutdown(wait=True)
    results = [entries[r.run_name] for r in runs]
    counts = {status: sum(e["status"] == status for e in results) for status in
              ("finished", "existing", "failed", "dependency_failed")}
    log("study: " + ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items() if n))
    return results


def _start_run(command: list[str], run_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start one run, its output into ``run_dir/train.log``, in its own session and process group
    (stopped as a whole by `_stop_process_groups`) and killed if the study runner dies."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "train.log").open("w") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                start_new_session=True, preexec_fn=die_with_parent)


def _record_result(entry: dict[str, Any], returncode: int, seconds: float, run_dir: Path, log: Any) -> None:
    """Fill a run's results.json entry from its exit and its run_summary.json; one progress line."""
    name, summary_path = entry["run_name"], run_dir / RUN_SUMMARY_FILENAME
    entry["seconds"] = seconds
    if returncode == 0 and summary_path.is_file():
        entry["status"] = "finished"
        summary = json.loads(summary_path.read_text())
        entry.update({k: summary.get(k) for k in _SUMMARY_KEYS})
        log(f"{name}: finished, N={summary['n_params_non_embedding']:,} eval_loss={summary['eval_loss']:.4f} "
            f"{summary['tokens_per_second']:,.0f} tokens/s, {entry['seconds']} s")
        return
    tail = (run_dir / "train.log").read_text(errors="replace").replace("\r", "\n").splitlines()[-15:]
    entry.update(status="failed", returncode=returncode, error="\n".join(tail))
    log(f"{name}: FAILED (exit {returncode}) after {entry['seconds']} s; last lines:\n"
        + "\n".join("      " + line for line in tail[-5:]))


def _stop_process_groups(procs: list[subprocess.Popen], grace_sec: float = 30.0) -> None:
    """SIGTERM each run's process group (its launcher and every process under it), SIGKILL what is
    left after ``grace_sec``, and reap them; each run's last complete checkpoint stays for a resume."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace_sec
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        procs = [p for p in procs if p.poll() is None]
        if not procs:
            return


@contextlib.contextmanager
def _signals_as_interruption() -> Iterator[None]:
    """Inside the block, SIGTERM raises `StudyInterrupted` in the main thread, as SIGINT raises
    KeyboardInterrupt (a scheduler's or ``kill``'s stop then stops the runs too)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise StudyInterrupted(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _read_summary(study_dir: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((study_dir / name / RUN_SUMMARY_FILENAME).read_text())
    except (OSError, ValueError):
        return None


def closing_block(study_dir: Path, *, wandb_project: str, study_name: str, wandb: bool) -> list[str]:
    """What to do once a study's runs are trained, in the order the design goes: the report, the
    runs in W&B (one ``wandb sync`` for every run logged offline), the models on the Hub."""
    offline = sorted(study_dir.glob("*/wandb/offline-run-*"))
    lines = ["Next:",
             f"  report:  python scripts/analyze.py --runs {study_dir} --output {study_dir / 'analysis'}"
             f"   (writes {study_dir / 'analysis' / 'report.md'})"]
    if not wandb:
        lines.append("  W&B:     off (--no-wandb)")
    else:
        lines.append(f"  W&B:     project {wandb_project}, group {study_name} (one W&B run per run of the study)")
        if offline:
            lines.append(f"  upload:  wandb sync {study_dir}/*/wandb/offline-run-*   ({len(offline)} runs logged "
                         "offline)")
    lines.append(f"  Hub:     python scripts/push_to_hub.py --study {study_dir} --repo-id USER/NAME "
                 f"--fit {study_dir / 'analysis'}   (each size to USER/NAME-<size>)")
    return lines


def chosen_runs(study_dir: str | Path) -> dict[str, Path]:
    """Each size's model of a study: its finished run on the study's own budget at its chosen rate
    (a swept size's best rate, `analysis.lr_sweep.SizeSweep.run_names`; the rule's or the study's
    rate otherwise), with the study's own seed.

    Args:
        study_dir: the folder of scripts/run_study.py (its ``results.json`` and ``lr_rule.json``).

    Returns:
        size -> run folder, in the order the study trained them.

    Raises:
        FileNotFoundError: no ``results.json`` (not a study folder, or nothing trained yet).
    """
    study_dir = Path(study_dir)
    if not (study_dir / RESULTS_FILENAME).is_file():
        raise FileNotFoundError(f"No {RESULTS_FILENAME} in {study_dir}: give the --output-dir of scripts/run_study.py.")
    results = json.loads((study_dir / RESULTS_FILENAME).read_text())
    try:
        sweeps = json.loads((study_dir / "lr_rule.json").read_text()).get("sweeps") or {}
    except (OSError, ValueError):
        sweeps = {}
    chosen = {}
    for entry in results:
        size = size_name(str(entry["size"]))
        name = sweeps[size]["run_names"][0] if size in sweeps else run_name(size)
        if entry.get("run_name") == name and entry.get("status") in ("finished", "existing"):
            chosen[size] = study_dir / name
    return chosen


def _sweep_grid(centre: float, factors: list[float]) -> list[float]:
    """``centre * factor`` for each factor, rounded to 3 significant digits (the folder names' precision)."""
    return sorted({float(f"{centre * f:.3g}") for f in factors})


def sweep_learning_rates(sizes: list[str], n_params: dict[str, int], study_dir: str | Path,
                         train_command: list[str], *, centre: float, factors: list[float], extend: int = 2,
                         metric: str = "eval_loss", log: Any = print,
                         main_tokens: int | None = None, recipe: dict[str, Any] | None = None,
                         slots: list[dict[str, str]] | None = None,
                         slurm: SlurmSettings | None = None) -> tuple[dict[str, SizeSweep], LrRule | str]:
    """Sweep each size's learning rate on the main budget, smallest size first, and fit lr*(N).

    Each size trains at ``centre_i * f`` for every factor ``f`` (runs ``<size>-lr<rate>``, see
    `configs.naming.run_name`), where ``centre_i`` is ``centre`` for the first size, then the rule
    lr*(N) = k N^-gamma fitted to the sizes swept so far (or the previous size's lr* while
    only one is known), since on text the best rate falls with width. When the best rate is the
    lowest or highest tried, up to ``extend`` further rates are added beyond it, one at a
    time, with the grid's outer ratio. Finished runs are reused, so a killed sweep resumes.

    Args:
        sizes: sizes to sweep.
        n_params: size -> non-embedding N.
        study_dir: the study folder.
        train_command: as for `run_study`.
        centre: the first size's centre learning rate (the study's ``learning_rate``).
        factors: the grid's multiples of the centre (>= 3 of them).
        extend: most rates added beyond an edge, per size.
        metric: the loss that picks the best (``eval_loss``: validation).
        log: progress lines.
        main_tokens, recipe: the study's D and recipe, to check finished runs before reusing them
            (see `run_study`).
        slots: the environments of runs trained at once (`run_slots`): a size's rates train side by side.
        slurm: train on SLURM instead (see `run_study`); a size's rates are jobs side by side.

    Returns:
        ``(sweeps, rule)``: size -> `analysis.lr_sweep.SizeSweep` for every size with a
        finished run, and the `analysis.lr_sweep.LrRule` fitted to them (or why there is none).
    """
    study_dir = Path(study_dir)
    sweeps: dict[str, SizeSweep] = {}
    rule: LrRule | str = "no size swept yet"
    for size in sorted(sizes, key=lambda s: n_params[s]):
        known = list(sweeps.values())
        size_centre = (rule.predict(n_params[size]) if isinstance(rule, LrRule)
                       else known[-1].lr_star if known else centre)
        rates = _sweep_grid(size_centre, factors)
        ratio_low, ratio_high = rates[1] / rates[0], rates[-1] / rates[-2]
        log(f"sweep {size_name(size)}: learning rates {', '.join(f'{r:.3g}' for r in rates)}"
            f" around {size_centre:.3g}")
        for added in range(extend + 1):
            planned = [PlannedRun(size, run_name(size, learning_rate=r), learning_rate=r, lr_source="swept")
                       for r in rates]
            run_study(planned, study_dir, train_command, log=log, main_tokens=main_tokens, recipe=recipe, slots=slots,
                      slurm=slurm)
            rows = [{"run_name": r.run_name, "learning_rate": r.learning_rate, metric: summary.get(metric)}
                    for r in planned if (summary := _read_summary(study_dir, r.run_name)) and summary.get(metric)]
            if not rows:
                log(f"sweep {size_name(size)}: no run finished; the size is left out of the sweep")
                break
            sweep = sweep_of_size(size_name(size), n_params[size], pd.DataFrame(rows), metric)
            if not sweep.edge or added == extend:
                break
            rates.append(float(f"{rates[-1] * ratio_high:.3g}") if sweep.edge == "high"
                         else float(f"{rates[0] / ratio_low:.3g}"))
            rates.sort()
            log(f"sweep {size_name(size)}: best rate {sweep.best_lr:.3g} at the {sweep.edge} edge; adding "
                f"{rates[-1] if sweep.edge == 'high' else rates[0]:.3g}")
        if rows:
            sweeps[size_name(size)] = sweep
            log(f"sweep {size_name(size)}: best {sweep.best_lr:.3g} ({metric} {sweep.best_loss:.4f}), "
                f"lr* {sweep.lr_star:.3g}" + (f"; WARNING: {sweep.warning}" if sweep.edge else ""))
            rule = fit_lr_rule(sweeps)
    return sweeps, rule
