"""Train one model size on a prepared dataset and write ``run_summary.json``.

The Trainer owns the loop; this module derives the batch layout and step count from the
study's token budget, adds throughput / memory logging, evaluates on validation during
training and on test at the end, and records N, D and C as structured fields.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments, set_seed

from analysis.lr_sweep import RULE_FORMULA, LrRule
from common.io import default_file_mode, write_json_atomic
from configs.models import build_model_config, count_parameters, load_size
from configs.naming import RUN_SUMMARY_FILENAME, size_name
from configs.study import DATASET_COMMANDS, StudyArguments
from data.prepared import DATASET_DICT_FILENAME, PreparedDataset, read_prepared_dataset
from tokenizer import save_tokenizer
from training.batch import BatchLayout, check_plan, unique_blocks
from training.branches import KeepBranchPoints, branch_start, write_stable_plan
from training.checkpoints import (
    CHECKPOINT_PREFIX,
    RUN_PLAN_FILENAME,
    _out_of_space_as_os_error,
    checkpoint_to_resume,
    run_recipe,
)
from training.efficiency import device_peak_flops, flops_per_token, mfu
from training.tracking import git_commit, start_wandb_run, wandb_mode

logger = logging.getLogger(__name__)
LR_RULE_FILENAME = "lr_rule.json"  # written by scripts/run_study.py after a learning-rate sweep


@dataclass
class RunArguments:
    """What to train: one size on one prepared dataset, and its place in the study (budget role,
    IsoFLOP budget, where its learning rate comes from). The settings shared by every run are
    `configs.study.StudyArguments`."""

    _argument_group_name = "run"

    size: str = field(default="", metadata={
        "help": "Model size: a name in configs/sizes/ (tiny ... xl, micro1, micro2, demo0 ... demo5) or a YAML path "
                "(required by scripts/train.py; scripts/run_study.py takes --sizes)."})
    dataset: str = field(default="", metadata={
        "help": "Folder written by scripts/prepare_data.py (default: the study file's dataset; configs/study.yaml: "
                "data_out/builtin, made by make data)."})
    wandb: bool = field(default=True, metadata={
        "help": "Log to Weights & Biases (project/group/run = study project/study_name/run name); offline by itself "
                "without credentials or network. --no-wandb turns it off."})
    resume: bool = field(default=False, metadata={
        "help": "Require a checkpoint-* in --output-dir to resume from (without this flag a run resumes "
                "from its last complete checkpoint when there is one, and starts fresh otherwise)."})
    restart: bool = field(default=False, metadata={
        "help": "Start over: delete the checkpoints and any finished run in --output-dir first."})
    # Where this run sits in its study (set by scripts/run_study.py, recorded for the analysis)
    budget_role: str = field(default="main", metadata={
        "help": "Which budget of its study this run trains on: 'main' (max_tokens), 'grid' (token_budgets) or "
                "'isoflop' (isoflop_budgets), or 'stable' (the stable phase of a warmup-stable-decay schedule, which "
                "its cooldown branches resume from; not a finished schedule, so no law is fitted to it); set by "
                "scripts/run_study.py. L(N) is fitted on the main runs.",
        "choices": ["main", "grid", "isoflop", "stable"]})
    compute_budget: float = field(default=0.0, metadata={
        "help": "The IsoFLOP budget this run belongs to (set by scripts/run_study.py; recorded for the analysis)."})
    lr_rule: str = field(default="", metadata={
        "help": "A learning-rate rule file (lr_rule.json of a study with a sweep): this run's learning rate is the "
                "rule's at its N. scripts/train.py uses <output-dir>/../lr_rule.json by itself when there is one "
                "and --learning_rate is not given."})
    lr_source: str = field(default="fixed", metadata={
        "help": "Where this run's learning rate came from: 'fixed' (learning_rate), 'swept' (one point of a sweep) "
                "or 'rule' (lr_rule); set by scripts/run_study.py and scripts/train.py, recorded for the analysis.",
        "choices": ["fixed", "swept", "rule"]})
    # Warmup-stable-decay branches (Hagele et al. 2024; set by scripts/run_study.py with cooldown_fraction)
    branch_points: list[int] = field(default_factory=list, metadata={
        "help": "A stable run (budget_role stable): keep the checkpoint of each of these optimizer steps in "
                "<output-dir>/branch_points/, where cooldown branches resume from."})
    branch_of: str = field(default="", metadata={
        "help": "A cooldown branch: the stable run's folder (a bare name is a sibling of --output-dir). The run "
                "resumes from its branch point at step max_steps - num_decay_steps (lr_scheduler_type "
                "warmup_stable_decay) and trains the cooldown only."})


def given_flags(argv: list[str]) -> set[str]:
    """The options named in ``argv``, as field names (``--output-dir`` -> ``output_dir``)."""
    return {a.split("=")[0][2:].replace("-", "_") for a in argv if a.startswith("--")}


def run_defaults(run: RunArguments, study: StudyArguments, training_args: TrainingArguments,
                 argv: list[str], output_dir: Path, output_dir_rule: str) -> tuple[TrainingArguments, dict[str, str]]:
    """The defaults of the two places a command needs: its dataset (the study file's ``dataset``,
    checked to be prepared) and its output folder (scripts/train.py: ``runs/<study_name>/<run_name>``;
    scripts/run_study.py: ``runs/<study_name>``); and what was taken by default, for the first
    lines printed and the run's ``run_summary.json``.

    Args:
        run: the parsed run; its dataset is the study file's ``dataset`` unless ``--dataset`` was given.
        study: the parsed study settings (its file).
        training_args: the parsed Trainer arguments.
        argv: the command line, to tell given options from defaults.
        output_dir: the output folder when ``--output-dir`` is not given; ``output_dir_rule`` says
            how it was formed (printed beside it).

    Returns:
        ``(training_args, defaults_used)``: the arguments with the output folder set, and
        option -> "value (where it came from)" for each default taken.

    Raises:
        ValueError: no dataset given and none in the study file.
        FileNotFoundError: the study file's dataset is not prepared; says which command makes it.
    """
    given, used = given_flags(argv), {}
    if "dataset" not in given:
        if not run.dataset:
            raise ValueError(f"--dataset is required: the study file {study.study} names no dataset (a folder "
                             "written by scripts/prepare_data.py).")
        used["dataset"] = f"{run.dataset} (from the study file {_shown(study.study)})"
        if not (Path(run.dataset) / DATASET_DICT_FILENAME).is_file():
            make = DATASET_COMMANDS.get(Path(run.dataset).as_posix(),
                                        f"python scripts/prepare_data.py --source <your MIDI folder> --output "
                                        f"{run.dataset}")
            raise FileNotFoundError(f"The study's dataset {run.dataset} ({_shown(study.study)}) is not prepared yet; "
                                    f"make it with: {make}; or give --dataset DIR.")
    if "output_dir" not in given:
        training_args = dataclasses.replace(training_args, output_dir=str(output_dir))
        used["output_dir"] = f"{output_dir} ({output_dir_rule})"
    return training_args, used


def _shown(path: str | Path) -> str:
    """A path as a user typed it: relative to the working folder when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_lr_rule(path: str | Path) -> LrRule:
    """The learning-rate rule a study's sweep wrote (``lr_rule.json``, see `analysis.lr_sweep.LrRule`).

    Raises:
        FileNotFoundError: no such file; says where rules come from.
        ValueError: the file is not a rule.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No learning-rate rule at {path}: scripts/run_study.py writes <study>/lr_rule.json "
                                "after a sweep (lr_sweep_factors in the study file).")
    data = json.loads(path.read_text())
    return LrRule.from_dict(data.get("rule") if isinstance(data.get("rule"), dict) else data)


def swept_sizes(path: str | Path) -> list[tuple[str, float, float]]:
    """``(size, N, lr*)`` of every size swept by the study whose ``lr_rule.json`` is ``path`` (none
    for a rule file without its sweeps)."""
    data = json.loads(Path(path).read_text())
    sweeps = data.get("sweeps") if isinstance(data.get("sweeps"), dict) else {}
    return [(str(s["size"]), float(s["N"]), float(s["lr_star"])) for s in sweeps.values()]


def rule_rate(rule: LrRule, swept: list[tuple[str, float, float]], n: float) -> tuple[float, str]:
    """The learning rate of a size with N = ``n`` from the study's rule lr*(N), and why it was
    capped ("" when it was not).

    A size wider than every swept size never trains above the widest swept size's lr*: a rule
    that rises with N (gamma < 0, a fit to noisy sweeps; with standard parametrisation lr*
    falls with width, Porian et al. 2024, sec. 4) would otherwise be extrapolated to rates that
    diverge.

    Args:
        rule: the fitted rule.
        swept: ``(size, N, lr*)`` of each swept size (`swept_sizes`).
        n: the size's N (non-embedding parameters).
    """
    rate = rule.predict(n)
    size, widest_n, lr_star = max(swept, key=lambda s: s[1], default=("", math.inf, math.inf))
    if n > widest_n and rate > lr_star:
        return lr_star, (f"capped at {lr_star:.3g}, the lr* of {size}, the widest size swept: the rule rises with N "
                         f"and would give {rate:.3g}")
    return rate, ""


def collate_blocks(features: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack packed blocks into ``input_ids``/``labels`` of shape (batch, block_size), int64.

    Labels equal the inputs, except that the first position of each block is -100 (ignored).
    ``GPT2LMHeadModel`` shifts the labels by one internally, so position 0 is never a target,
    and a block of ``block_size`` tokens has ``block_size - 1`` predicted positions. Marking
    it makes every count of labels count exactly those: the Trainer divides the summed
    cross-entropy by the number of labels that are not -100 (``num_items_in_batch``) and, for
    a model whose ``loss_type`` is unset (GPT-2 in transformers 5), counts the whole label
    tensor, which made train and eval loss ``(block_size - 1) / block_size`` of the mean
    next-token cross-entropy (0.39 % low at block 256). tests/test_training.py checks both
    losses against a log-softmax computed from the saved model.
    """
    ids = torch.from_numpy(np.stack([f["input_ids"] for f in features]).astype(np.int64))
    labels = ids.clone()
    labels[:, 0] = -100
    return {"input_ids": ids, "labels": labels}


class _MarkTrainStart(TrainerCallback):
    """Restart the throughput clock when the loop starts (after a checkpoint is loaded), and
    skip the Trainer's end-of-run checkpoint and evaluation (done once, after the loop)."""

    def __init__(self, trainer: StudyTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if state.global_step >= state.max_steps:
            # train_size evaluates and saves the final model right after the loop: a last
            # checkpoint (weights + optimizer) and evaluation here would only cost time
            control.should_save = False
            control.should_evaluate = False
        return control

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        self.trainer.start_time = time.time()
        self.trainer.start_step = state.global_step
        self.trainer.eval_seconds = 0.0
        # a resumed run's clock goes on from where the checkpoint's log left it
        clocks = [e["wall_clock_s"] for e in state.log_history if "wall_clock_s" in e]
        self.trainer.wall_clock_offset = clocks[-1] if clocks else 0.0


class StudyTrainer(Trainer):
    """Trainer that adds tokens/s, MFU, wall clock and GPU memory to every log (tokens seen are the
    Trainer's own ``num_input_tokens_seen``).

    Throughput counts from the step the loop started at (the checkpoint's, when resumed).
    """

    def __init__(self, *args: Any, tokens_per_step: int, flops_per_token: int = 0,
                 peak_flops: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops  # per device; None: MFU not logged
        self.start_time = time.time()
        self.start_step = 0
        self.eval_seconds = 0.0
        self.wall_clock_offset = 0.0  # seconds trained before a resume
        self.add_callback(_MarkTrainStart(self))

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        t0 = time.time()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.eval_seconds += time.time() - t0

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        wall = time.time() - self.start_time
        logs["wall_clock_s"] = round(self.wall_clock_offset + wall, 3)
        train_seconds = max(wall - self.eval_seconds, 1e-9)
        logs["tokens_per_second"] = (self.state.global_step - self.start_step) * self.tokens_per_step / train_seconds
        if self.peak_flops:
            logs["mfu"] = mfu(logs["tokens_per_second"], self.flops_per_token, self.peak_flops, self.args.world_size)
        if torch.cuda.is_available():
            logs["gpu_max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
        super().log(logs, *args, **kwargs)


def _prepared_for_training(path: str) -> PreparedDataset:
    """The prepared dataset at ``path``, refused when its train or validation split has no block."""
    prepared = read_prepared_dataset(path)
    for split in ("train", "validation"):
        if prepared.blocks[split] == 0:
            raise ValueError(f"The {split} split of {path} has no block; prepare it again with more "
                             "files, a smaller --block-size or a larger --val-fraction.")
    return prepared


def _trainer_arguments(training_args: TrainingArguments, layout: BatchLayout, max_steps: int,
                       use_wandb: bool) -> TrainingArguments:
    """The Trainer's arguments for this run: the batch layout and steps derived from the study,
    W&B on or off, the run's name, and this project's fixed choices (bf16 where supported, fused
    AdamW on CUDA, the Trainer's token count, no Trainer push)."""
    report_to = [r for r in training_args.report_to if r not in ("wandb", "none")] + (["wandb"] if use_wandb else [])
    return dataclasses.replace(
        training_args,
        report_to=report_to or "none",
        push_to_hub=False,  # pushed by scripts/train.py after the run, with this project's model card
        # the same AdamW update in one fused CUDA kernel per step
        optim="adamw_torch_fused" if torch.cuda.is_available() and training_args.optim == "adamw_torch"
        else training_args.optim,
        # the run's name (configs.naming.run_name, given by scripts/run_study.py) names its W&B run and
        # its summary; a run started by hand is named after its folder
        run_name=training_args.run_name or Path(training_args.output_dir).name,
        per_device_train_batch_size=layout.per_device_batch_size,
        per_device_eval_batch_size=layout.per_device_batch_size,
        gradient_accumulation_steps=layout.gradient_accumulation_steps,
        max_steps=max_steps,
        bf16=(torch.cuda.is_available() and torch.cuda.is_bf16_supported()) or training_args.bf16,
        eval_strategy="steps" if training_args.eval_steps else "no",
        include_num_input_tokens_seen="all",
        remove_unused_columns=False,
        dataloader_pin_memory=training_args.dataloader_pin_memory and torch.cuda.is_available(),
    )


def _rate_from_rule(run: RunArguments, training_args: TrainingArguments,
                    n_params_non_embedding: int) -> tuple[RunArguments, TrainingArguments, LrRule | None]:
    """With ``run.lr_rule``, the learning rate of the study's rule lr*(N) at this size's N (`rule_rate`)."""
    if not run.lr_rule:
        return run, training_args, None
    rule = read_lr_rule(run.lr_rule)
    rate, cap = rule_rate(rule, swept_sizes(run.lr_rule), n_params_non_embedding)
    training_args = dataclasses.replace(training_args, learning_rate=rate)
    logger.info("learning rate %.4g from the rule %s at N = %d (%s)%s", rate, RULE_FORMULA, n_params_non_embedding,
                run.lr_rule, f"; {cap}" if cap else "")
    return dataclasses.replace(run, lr_source="rule"), training_args, rule


def _train_and_evaluate(trainer: StudyTrainer, checkpoint: Path | None, eval_set: Any, test_set: Any,
                        wandb_run: Any) -> tuple[Any, float, float, dict[str, float], float | None]:
    """Train (from ``checkpoint`` when resuming), then evaluate on validation and test once.

    Returns:
        ``(train_output, train_wall, train_eval_seconds, eval_metrics, test_loss)``: the loop's
        wall clock and the periodic evaluations' share of it; ``test_loss`` is None without
        a test block. A failure marks the W&B run failed (the checkpoints stay for a resume).
    """
    try:
        train_output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        train_wall = time.time() - trainer.start_time
        train_eval_seconds = trainer.eval_seconds  # periodic evaluations inside the training loop
        eval_metrics = trainer.evaluate(eval_set, metric_key_prefix="eval")
        test_loss = trainer.evaluate(test_set, metric_key_prefix="test")["test_loss"] if len(test_set) else None
    except BaseException:
        if wandb_run is not None:
            wandb_run.finish(exit_code=1)
        raise
    return train_output, train_wall, train_eval_seconds, eval_metrics, test_loss


def _save_finished_run(trainer: StudyTrainer, tok: Any, summary: dict[str, Any], wandb_run: Any) -> None:
    """Write the model, tokenizer, trainer state and ``run_summary.json`` (last), then drop the
    checkpoints and the run plan, which only served resuming, and close the W&B run."""
    output_dir = Path(trainer.args.output_dir)
    trainer.save_model(str(output_dir))  # safetensors + config.json
    for weights in output_dir.glob("*.safetensors"):
        os.chmod(weights, default_file_mode())  # written owner-only; readable like the other files
    save_tokenizer(tok, output_dir)
    trainer.save_state()  # trainer_state.json: the log history analysis reads
    write_json_atomic(output_dir / RUN_SUMMARY_FILENAME, summary)
    for path in output_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        shutil.rmtree(path)
    (output_dir / RUN_PLAN_FILENAME).unlink(missing_ok=True)
    if wandb_run is not None:
        wandb_run.summary.update({k: v for k, v in summary.items() if k != "config"})
        wandb_run.finish()


def train_size(run: RunArguments, study: StudyArguments, training_args: TrainingArguments,
               defaults_used: dict[str, str] | None = None) -> dict[str, Any]:
    """Train one size; write the model, tokenizer, trainer state and run_summary.json.

    Args:
        run: size and dataset.
        study: shared hyperparameters (batch in tokens, budget, eval cap).
        training_args: Trainer settings; batch sizes, accumulation and max_steps are
            overwritten from the study (they are derived, never hand-set).
        defaults_used: options taken by default (`run_defaults`), recorded in the summary.

    Returns:
        The run summary (also written to ``<output_dir>/run_summary.json``); empty on
        processes other than the main one.

    Raises:
        FileNotFoundError: missing dataset. ValueError: inconsistent batch/budget, or a
            checkpoint made with other settings.
    """
    t_start = time.time()
    load_size(run.size)  # an unknown or malformed size fails before any work
    prepared = _prepared_for_training(run.dataset)
    datasets, tok, stats = prepared.load(), prepared.load_tokenizer(), prepared.stats
    world_size = training_args.world_size  # processes started by torchrun / accelerate launch
    layout, max_steps = check_plan(prepared, study, world_size)
    unique = unique_blocks(prepared, study)
    if unique < prepared.blocks["train"]:  # U_D: the same first blocks for every size and seed
        datasets["train"] = datasets["train"].select(range(unique))
    main_process = training_args.process_index == 0
    wandb_mode_reason = wandb_mode() if run.wandb and main_process else ("disabled", "--no-wandb or not the main "
                                                                                      "process")
    training_args = _trainer_arguments(training_args, layout, max_steps, wandb_mode_reason[0] != "disabled")

    set_seed(training_args.seed)
    ids = prepared.special_ids
    config = build_model_config(run.size, len(tok), prepared.block_size, ids["bos"], ids["eos"], ids["pad"])
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    counts = count_parameters(config)
    assert counts["n_params"] == model.num_parameters(), "closed-form count disagrees with the model"
    assert counts["n_params_non_embedding"] == model.num_parameters(exclude_embeddings=True)
    run, training_args, rule = _rate_from_rule(run, training_args, counts["n_params_non_embedding"])

    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # every process reads the fingerprint (about a second per GB), so all of them refuse a mismatched resume alike
    plan = {**run_recipe(run.dataset, prepared.fingerprint, prepared.block_size, layout.tokens_per_step,
                         training_args.to_dict()),
            "size": str(run.size), "model": {k: getattr(config, k) for k in ("n_layer", "n_embd", "n_head", "n_inner")},
            "learning_rate": training_args.learning_rate, "seed": training_args.seed, "max_steps": max_steps,
            "unique_tokens": unique * prepared.block_size}
    own_checkpoint = checkpoint_to_resume(output_dir, max_steps, layout.tokens_per_step, plan, resume=run.resume,
                                          restart=run.restart)
    checkpoint, branch_step = own_checkpoint, None
    if run.branch_of:  # a cooldown branch starts from its stable run's checkpoint, then resumes from its own
        branch_checkpoint, branch_step = branch_start(run.branch_of, output_dir, training_args, max_steps, plan)
        checkpoint = own_checkpoint or branch_checkpoint
    if own_checkpoint is None and main_process:
        write_json_atomic(output_dir / RUN_PLAN_FILENAME, plan)
    if run.branch_points and main_process:
        write_stable_plan(output_dir, plan)
    n_tokens = max_steps * layout.tokens_per_step
    provenance = {"dataset_fingerprint": prepared.fingerprint, "git_commit": git_commit()} if main_process else {}
    wandb_run = None
    if wandb_mode_reason[0] != "disabled":  # only ever on the main process
        wandb_run = start_wandb_run(output_dir, *wandb_mode_reason, project=study.wandb_project, group=study.study_name,
                                    name=training_args.run_name, config={
            # the run's place in the study's grid, as flat keys to filter and group by in the W&B interface
            "size": size_name(run.size), "run_name": training_args.run_name, "budget_role": run.budget_role,
            "compute_budget": run.compute_budget, "learning_rate": training_args.learning_rate,
            "lr_source": run.lr_source, "seed": training_args.seed, "branch_of": run.branch_of or None,
            "lr_scheduler_type": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
            "N": counts["n_params_non_embedding"], "N_total": counts["n_params"], "D_planned": n_tokens,
            "C_planned": 6 * counts["n_params_non_embedding"] * n_tokens,
            "C_total_planned": 6 * counts["n_params"] * n_tokens, "steps": max_steps,
            "global_batch_tokens": layout.tokens_per_step, "world_size": world_size, **provenance,
            **_wandb_dataset(prepared), "run": dataclasses.asdict(run), "study": dataclasses.asdict(study)})

    eval_set = _eval_blocks(datasets, "validation", study.eval_max_blocks)
    fpt = flops_per_token(config)
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = device_peak_flops(device_name, study.peak_tflops)
    trainer = StudyTrainer(
        model=model, args=training_args, train_dataset=datasets["train"].with_format("numpy"),
        eval_dataset=eval_set, data_collator=collate_blocks, tokens_per_step=layout.tokens_per_step,
        flops_per_token=fpt, peak_flops=peak,
    )
    if run.branch_points:
        trainer.add_callback(KeepBranchPoints(trainer, run.branch_points))
    logger.info("size=%s N=%d (total %d) D=%d tokens, %d steps x %d tokens (%d per device x %d accum x %d "
                "processes x %d block_size)", run.size, counts["n_params_non_embedding"], counts["n_params"],
                n_tokens, max_steps, layout.tokens_per_step, layout.per_device_batch_size,
                layout.gradient_accumulation_steps, world_size, prepared.block_size)
    if checkpoint:
        logger.info("Resuming from %s (step %d of %d)", checkpoint, int(checkpoint.name.split("-")[1]), max_steps)
    checkpoint_bytes = 12 * counts["n_params"] + (1 << 20)  # fp32 weights and two Adam moments, plus small files
    with _out_of_space_as_os_error(output_dir, checkpoint_bytes):
        train_output, train_wall, train_eval_seconds, eval_metrics, test_loss = _train_and_evaluate(
            trainer, checkpoint, eval_set, _eval_blocks(datasets, "test", study.eval_max_blocks), wandb_run)
        summary: dict[str, Any] = {}
        if trainer.is_world_process_zero():
            train_losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
            # training throughput: tokens of this process's loop over its wall clock minus periodic evaluations
            tokens_per_second = (max_steps - trainer.start_step) * layout.tokens_per_step / max(
                train_wall - train_eval_seconds, 1e-9)
            summary = {
                "run_name": training_args.run_name, "size": run.size, "status": "finished",
                **counts, "n_layer": config.n_layer, "n_embd": config.n_embd, "n_head": config.n_head,
                "vocab_size": config.vocab_size, "block_size": prepared.block_size,
                "tokens_trained": n_tokens,
                # U_D and the passes over it (repeated data: Muennighoff et al. 2023); epochs <= 1 without repeats
                "unique_tokens": unique * prepared.block_size, "epochs": n_tokens / (unique * prepared.block_size),
                "flops": 6 * counts["n_params_non_embedding"] * n_tokens,  # C = 6ND, Kaplan et al. 2020, sec. 2.1
                "flops_total_params": 6 * counts["n_params"] * n_tokens,
                "train_loss": train_losses[-1] if train_losses else train_output.training_loss,
                # mean of the logged training losses over the whole run (a resumed run included)
                "train_loss_mean": float(np.mean(train_losses)) if train_losses else train_output.training_loss,
                "eval_loss": eval_metrics["eval_loss"], "test_loss": test_loss,
                "eval_blocks": len(eval_set),
                "steps": max_steps, "global_batch_tokens": layout.tokens_per_step,
                "per_device_batch_size": layout.per_device_batch_size,
                "gradient_accumulation_steps": layout.gradient_accumulation_steps, "world_size": world_size,
                # the training loop's wall clock, sessions before a resume included; tokens_per_second
                # is this session's throughput
                "wall_clock_s": trainer.wall_clock_offset + train_wall, "eval_wall_clock_s": train_eval_seconds,
                "tokens_per_second": tokens_per_second,
                "learning_rate": training_args.learning_rate, "seed": training_args.seed, "lr_source": run.lr_source,
                **({"lr_rule": rule.to_dict()} if rule is not None else {}),
                "budget_role": run.budget_role, "compute_budget": run.compute_budget,
                # a cooldown branch: the stable run it resumed from, and at which step
                "branch_of": run.branch_of or None, "branch_step": branch_step,
                "flops_per_token": fpt, "device_name": device_name,
                "peak_flops_per_device": peak,
                "mfu": mfu(tokens_per_second, fpt, peak, world_size) if peak else None,
                "total_wall_clock_s": time.time() - t_start,
                "device": str(training_args.device), "bf16": training_args.bf16,
                "torch_version": torch.__version__, "resumed_from_step": trainer.start_step,
                "defaults_used": defaults_used or {},
                **provenance,
                "config": {"run": dataclasses.asdict(run), "study": dataclasses.asdict(study),
                           "training": training_args.to_dict(), "model": config.to_dict(),
                           "dataset": {"path": str(run.dataset), "stats": stats}},
            }
            _save_finished_run(trainer, tok, summary, wandb_run)
    # every process leaves together, once the main one has saved, and closes its process group: a rank
    # exiting while another still holds the group can abort in the collective backend's teardown
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return summary


def _eval_blocks(datasets: Any, split: str, max_blocks: int) -> Any:
    """The first ``max_blocks`` blocks of ``split`` (all when 0), as numpy rows: the same blocks for
    every size, a random sample of the split's pieces (`data.pipeline` packs them shuffled)."""
    blocks = datasets[split]
    if max_blocks and len(blocks) > max_blocks:
        blocks = blocks.select(range(max_blocks))
    return blocks.with_format("numpy")


def _wandb_dataset(prepared: PreparedDataset) -> dict[str, Any]:
    """The dataset and tokenizer of a run for its W&B config: stats.json without its long text fields
    (the skip-reason glossary, the arguments)."""
    stats = prepared.stats
    return {"dataset": {"path": str(prepared.path), "stats": {k: v for k, v in stats.items()
                                                             if k not in ("skip_reasons", "arguments",
                                                                          "tokenizer_params")}},
            "tokenizer": {"tokenization": stats.get("tokenization"), "vocab_size": stats.get("vocab_size"),
                          "bpe_vocab_size": stats.get("bpe_vocab_size"), "params": stats.get("tokenizer_params")}}
