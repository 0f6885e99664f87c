r"""Train every size of a study on one dataset, with identical hyperparameters.

    python scripts/run_study.py --dataset data_out/builtin --output-dir runs/demo --study configs/demo_study.yaml
    python scripts/run_study.py --dataset data_out/lmd --output-dir runs/lmd \
        --launcher "accelerate launch --num_processes 8"
    python scripts/run_study.py --dataset data_out/lmd --output-dir /shared/runs/lmd --executor slurm \
        --slurm_partition gpu --slurm_time_min 240 --gpus_per_run 8 \
        --launcher "accelerate launch --config_file configs/accelerate/multi_gpu.yaml"

Sizes come from the study YAML (``sizes:``) or --sizes. A size whose run_summary.json
exists is skipped (delete its folder to retrain); a size that fails is recorded in
results.json with its exit code and last log lines, and the next size runs (the exit
code is then 1). Sizes, dataset and token budget are checked before the first run. The study's
and the Trainer's settings given as flags (a StudyArguments or TrainingArguments field such as
--max_tokens; see `flags_for_each_run`) are passed to scripts/train.py for every run; the
learning rate is each run's own (the study's, its sweep's or the rule's). Sampling settings
(--temperature, --top_p, ...; configs/sampling.py) apply to the pieces sampled after training.
With --push-to-hub --hub-model-id USER/NAME each size is pushed to its own repository,
USER/NAME-<size>. With ``sample_count: K`` in the study (or
--sample_count K), K pieces are sampled from each finished size into <size>/samples (see
scripts/generate.py); scripts/analyze.py puts them in its report. With --executor slurm each run is
a SLURM job (training/slurm.py; README, "Running a study on a SLURM cluster"): all are submitted at
once, job ids go to slurm_jobs.json, and the same command reattaches to queued jobs.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path

from analysis.lr_sweep import LrRule
from common.io import write_json_atomic
from configs.cli import run_main
from configs.models import load_size, size_table
from configs.naming import run_name, size_name
from configs.sampling import SamplingArguments
from configs.study import (
    StudyArguments,
    TrainingArguments,
    parse_with_study,
)
from data.prepared import read_prepared_dataset
from sharing.push import repo_id_for_size
from training.batch import check_plan, unique_blocks
from training.checkpoints import run_recipe
from training.run import (
    LR_RULE_FILENAME,
    RUN_SUMMARY_FILENAME,
    RunArguments,
    rule_rate,
    run_defaults,
    swept_sizes,
)
from training.slurm import slurm_settings
from training.study import (
    RESULTS_FILENAME,
    PlannedRun,
    StudyInterrupted,
    StudyRunnerArguments,
    closing_block,
    flags_for_each_run,
    own_tokens,
    plan_cooldown_branches,
    plan_repeated_data_runs,
    plan_study_runs,
    run_slots,
    run_study,
    stale_reason,
    sweep_learning_rates,
)


def _check_finished_runs(study_dir: Path, runs: list[PlannedRun], main_tokens: int, recipe: dict | None = None) -> None:
    """A finished run is skipped; refuse, before any training, when it was trained on another token
    budget, dataset, block size, batch or schedule (`training.study.stale_reason`).

    Raises:
        ValueError: names each such run and what to do.
    """
    stale = []
    for run in runs:
        summary_path = study_dir / run.run_name / RUN_SUMMARY_FILENAME
        if summary_path.is_file():
            reason = stale_reason(json.loads(summary_path.read_text()), run, main_tokens, recipe)
            if reason:
                stale.append(f"{summary_path.parent} {reason}")
    if stale:
        raise ValueError("Finished runs do not match this study's plan: " + "; ".join(stale)
                         + ". Delete those folders to retrain them, or use another --output-dir.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # the study file and every flag are checked once, before any run starts
    run, runner, study, sampling, training_args = parse_with_study(
        (RunArguments, StudyRunnerArguments, StudyArguments, SamplingArguments, TrainingArguments), argv,
        description=__doc__.split("\n\n")[0],
        usage="run_study.py [--dataset DIR] [--output-dir DIR] [--study FILE] [options]",
        helps={"output_dir": "The study folder, one sub-folder per run (default: runs/<study_name>)."},
        brief={RunArguments: ("dataset", "wandb"),
               StudyRunnerArguments: ("launcher", "parallel", "gpus_per_run", "executor", "slurm_partition",
                                      "slurm_time_min"),
               StudyArguments: ("study", "study_name", "sizes", "max_tokens", "token_budgets", "isoflop_budgets",
                                "cooldown_fraction", "lr_sweep_factors", "repeat_seeds"),
               SamplingArguments: (),
               TrainingArguments: ("output_dir", "learning_rate", "seed", "push_to_hub", "hub_model_id")})
    if run.size:
        raise ValueError(f"--size names the one size of scripts/train.py; a study trains --sizes {run.size} ... "
                         "(default: the study file's sizes).")
    # the study's folder, one sub-folder per run
    training_args, defaults_used = run_defaults(run, study, training_args, argv, Path("runs") / study.study_name,
                                                "runs/<study_name>")
    for option, value in defaults_used.items():
        print(f"{option}: {value}")
    per_run = [f"--{k}" for k in ("budget_role", "compute_budget", "lr_rule", "lr_source", "branch_of",
                                  "branch_points") if getattr(run, k) != getattr(RunArguments(), k)]
    if per_run or training_args.run_name:
        raise ValueError(f"{per_run + (['--run_name'] if training_args.run_name else [])} are set for each run by "
                         "the study itself (its name, budget and learning rate's source); remove them.")
    hub_id = training_args.hub_model_id
    if training_args.push_to_hub and not hub_id:
        raise ValueError("--push-to-hub needs --hub-model-id USER/NAME; each size goes to USER/NAME-<size>.")
    passthrough = flags_for_each_run(argv)
    sizes = study.sizes
    # the swept sizes set the rule, so they are swept (finished runs reused) whatever --sizes says
    swept = (study.lr_sweep_sizes or sizes) if study.lr_sweep_factors else []
    for size in [*sizes, *swept]:  # fail before the first run, not after the smaller sizes trained
        load_size(size)
    dataset = read_prepared_dataset(run.dataset)
    layout, steps = check_plan(dataset, study)
    n_params = {row["size"]: row["n_params_non_embedding"]
                for row in size_table(dataset.vocab_size, dataset.block_size, list(dict.fromkeys([*sizes, *swept])))}
    epoch_steps = unique_blocks(dataset, study) // layout.sequences_per_step
    runs, notes = plan_study_runs(sizes, n_params, tokens_per_step=layout.tokens_per_step,
                                  epoch_tokens=epoch_steps * layout.tokens_per_step,
                                  token_budgets=study.token_budgets, isoflop_budgets=study.isoflop_budgets,
                                  repeat_data=study.repeat_data)
    if study.unique_budgets:  # repeated data: each size x U_D x (epochs, or D from each U_D below it)
        runs += plan_repeated_data_runs(sizes, tokens_per_step=layout.tokens_per_step, block_size=dataset.block_size,
                                        train_blocks=dataset.blocks["train"], unique_budgets=study.unique_budgets,
                                        epoch_budgets=study.epoch_budgets, token_budgets=study.repeat_token_budgets)
    if study.cooldown_fraction and len(runs) > len(sizes):
        # one stable run per size (and per U_D on repeated data), a cooldown branch per budget
        runs = plan_cooldown_branches(runs, tokens_per_step=layout.tokens_per_step,
                                      cooldown_fraction=study.cooldown_fraction,
                                      warmup_steps=training_args.warmup_steps)
    # what every run trains on besides D, rate and seed: a finished run made otherwise is not reused
    recipe = run_recipe(run.dataset, dataset.fingerprint, dataset.block_size,
                        layout.tokens_per_step, training_args.to_dict())
    _check_finished_runs(Path(training_args.output_dir), runs, steps * layout.tokens_per_step, recipe)
    print(f"{len(sizes)} sizes x {steps} steps x {layout.tokens_per_step:,} tokens = "
          f"{steps * layout.tokens_per_step:,} tokens each")
    if len(runs) > len(sizes):
        extra = runs[len(sizes):]
        print(f"plus {len(extra)} runs on other budgets: "
              + ", ".join(f"{r.run_name} (D={r.max_tokens:,}" + (f", branch of {r.branch_of}" if r.branch_of else "")
                          + (f", stable phase, branch points at steps {list(r.branch_points)}" if r.branch_points
                             else "") + ")" for r in extra))
        if any(r.branch_of for r in extra):
            trained = sum(own_tokens(r, layout.tokens_per_step) for r in extra)
            separate = sum(r.max_tokens for r in extra if not r.branch_points)
            print(f"cooldown branches: {trained:,} tokens trained for these budgets, against {separate:,} in separate "
                  f"runs ({separate / trained:.2f}x fewer)")
    for note in notes:
        print(f"note: {note}")
    train_script = Path(__file__).resolve().with_name("train.py")
    # every run is given its own rate (fixed, swept or the rule's), so --learning_rate is not passed on as is
    command = [*shlex.split(runner.launcher), str(train_script), "--dataset", run.dataset, "--study", study.study,
               *passthrough]
    main_tokens = steps * layout.tokens_per_step
    slurm = slurm_settings(runner) if runner.executor == "slurm" else None  # checks the cluster answers
    slots = run_slots(runner.parallel, runner.gpus_per_run) if slurm is None else None
    if slots and len(slots) > 1:
        print(f"{len(slots)} runs at once, each with " + " / ".join(f"{k}={v}" for k, v in slots[0].items()))
    per_size = (lambda size: ["--hub_model_id", repo_id_for_size(hub_id, size)]) if hub_id else None
    study_dir = Path(training_args.output_dir)

    # --- learning rate of each size: a sweep and the rule lr*(N), or the study's one rate
    lr_of = {size: PlannedRun(size, run_name(size), learning_rate=training_args.learning_rate, lr_source="fixed")
             for size in sizes}
    if swept:
        sweeps, rule = sweep_learning_rates(swept, n_params, study_dir, command, centre=training_args.learning_rate,
                                            factors=study.lr_sweep_factors, extend=study.lr_sweep_extend,
                                            main_tokens=main_tokens, recipe=recipe, slots=slots, slurm=slurm)
        write_json_atomic(study_dir / LR_RULE_FILENAME, {
            "rule": rule.to_dict() if isinstance(rule, LrRule) else None,
            "reason": rule if isinstance(rule, str) else "", "sweeps": {k: v.to_dict() for k, v in sweeps.items()}})
        for size in sizes:
            sweep = sweeps.get(size_name(size))
            if sweep is not None:  # its best sweep run is its run of the main budget
                lr_of[size] = PlannedRun(size, sweep.run_names[0], learning_rate=sweep.best_lr, lr_source="swept")
            elif isinstance(rule, LrRule):
                # the rate scripts/train.py takes from the rule file (capped the same way there)
                rate, cap = rule_rate(rule, swept_sizes(study_dir / LR_RULE_FILENAME), n_params[size])
                lr_of[size] = PlannedRun(size, run_name(size), learning_rate=rate, lr_source="rule",
                                         lr_rule=str(study_dir / LR_RULE_FILENAME))
                print(f"{size_name(size)}: learning rate {rate:.3g} from the rule "
                      f"lr*(N) = {rule.k:.3g} * N**{-rule.gamma:.3f}" + (f"; {cap}" if cap else ""))
            else:
                del lr_of[size]
                print(f"{size_name(size)}: not trained: no learning rate ({rule})")

    # --- every other run: unswept sizes, repeats with other seeds, extra budgets, each at its size's rate
    def at_rate(run: PlannedRun, **changes: object) -> PlannedRun:
        chosen = lr_of[run.size]
        return dataclasses.replace(run, learning_rate=chosen.learning_rate, lr_source=chosen.lr_source,
                                   lr_rule=chosen.lr_rule, **changes)

    todo = [lr_of[s] for s in lr_of if lr_of[s].lr_source != "swept"]
    repeated = [s for s in lr_of if not study.repeat_sizes or size_name(s) in map(size_name, study.repeat_sizes)]
    todo += [at_rate(lr_of[s], seed=seed, run_name=run_name(
                 s, learning_rate=lr_of[s].learning_rate if lr_of[s].lr_source == "swept" else None, seed=seed))
             for seed in study.repeat_seeds for s in repeated]
    todo += [at_rate(r) for r in runs[len(sizes):] if r.size in lr_of]
    run_study(todo, study_dir, command, size_args=per_size, main_tokens=main_tokens, recipe=recipe, slots=slots,
              slurm=slurm)
    results = json.loads((study_dir / RESULTS_FILENAME).read_text())  # every run of the study, sweeps included
    if study.sample_count:
        from generation.pipeline import sample_study

        print(f"Sampling {study.sample_count} pieces from each size")
        sample_study(study_dir, [r.run_name for r in lr_of.values()], count=study.sample_count,
                     seed=training_args.seed, dataset=run.dataset, sampling=sampling)
    failed = [r["run_name"] for r in results if r["status"] == "failed"]
    print(f"Results: {Path(training_args.output_dir) / RESULTS_FILENAME}"
          + (f" ({len(failed)} failed: {', '.join(failed)})" if failed else ""))
    print("\n".join(closing_block(study_dir, wandb_project=study.wandb_project, study_name=study.study_name,
                                  wandb=run.wandb)))
    return 1 if failed else 0


def _main_stopping_cleanly(argv: list[str] | None = None) -> int:
    """`main`, with an interruption (Ctrl-C, SIGTERM) reported in one line: exit 130."""
    try:
        return main(argv)
    except StudyInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(run_main(_main_stopping_cleanly))
