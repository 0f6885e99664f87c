"""Study hyperparameters: one YAML file shared by every size, parsed with the command-line flags.

The batch arithmetic they imply lives in `training.batch`.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments
from transformers.utils import is_torch_cuda_available, is_torch_mps_available

from configs import CONFIG_DIR
from configs.cli import make_parser, parse_strict
from configs.models import STUDY_SIZES
from configs.sampling import SamplingArguments

DEFAULT_STUDY = CONFIG_DIR / "study.yaml"
DEMO_STUDY = CONFIG_DIR / "demo_study.yaml"
# Fields derived from global_batch_tokens and the token budget; setting them by hand would
# silently change D between sizes or world sizes.
DERIVED_TRAINING_FIELDS = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps",
                           "num_train_epochs")


@dataclass
class StudyArguments:
    """Settings shared by every run of a study (besides TrainingArguments): its sizes and budgets, the
    batch in tokens, the learning-rate sweep, the repeats and how many pieces to sample. What sets
    one run apart (its budget role, its learning rate's source) is `training.run.RunArguments`."""

    _argument_group_name = "study (shared by every run; from the study file unless given)"

    study: str = field(default=str(DEFAULT_STUDY), metadata={
        "help": "Study YAML: StudyArguments and TrainingArguments values shared by all sizes."})
    study_name: str = field(default="music-scaling", metadata={
        "help": "Name of the study: the W&B group of its runs."})
    wandb_project: str = field(default="midi-scaling", metadata={"help": "W&B project the runs are logged to."})
    sizes: list[str] = field(default_factory=lambda: list(STUDY_SIZES),
                             metadata={"help": "Sizes trained by scripts/run_study.py, smallest first."})
    global_batch_tokens: int = field(default=524288, metadata={
        "help": "Tokens per optimizer step across all devices (default 512 x 1024, Kaplan et al. 2020)."})
    max_device_batch_size: int = field(default=16, metadata={
        "help": "Largest micro-batch per device, in sequences; accumulation makes up the rest."})
    max_tokens: int = field(default=0, metadata={
        "help": "Token budget D per run (0: one epoch of the train split). More than one epoch only with "
                "repeat_data."})
    unique_tokens: int = field(default=0, metadata={
        "help": "U_D: train on the first U_D tokens (whole blocks) of the train split only, a random sample of its "
                "pieces (the split is packed shuffled) and the same for every size and seed. 0: the whole split."})
    epochs: float = field(default=0.0, metadata={
        "help": "Passes over the unique data: D = epochs x U_D in whole steps, each pass in a new order (repeated "
                "data, Muennighoff et al. 2023). 0: D is max_tokens, at most one epoch."})
    unique_budgets: list[int] = field(default_factory=list, metadata={
        "help": "With epoch_budgets (or repeat_token_budgets): every size also trains on each U_D (tokens, whole "
                "optimizer steps of the train split's start) for each number of epochs (runs <size>-U<U>-e<epochs>, "
                "data repeated; Muennighoff et al. 2023). Include runs that see their data once (epochs 1, or "
                "token_budgets): the law's first stage is fitted on them."})
    epoch_budgets: list[float] = field(default_factory=list, metadata={
        "help": "Passes over each of unique_budgets, e.g. [1, 2, 4, 8, 16]."})
    repeat_token_budgets: list[int] = field(default_factory=list, metadata={
        "help": "Instead of epoch_budgets: token budgets D that every size reaches from each U_D of unique_budgets "
                "at or below D, in D / U_D epochs (runs <size>-U<U>-e<epochs>): the same D from less and less "
                "unique data, which measures what a repeat costs at equal compute (Muennighoff et al. 2023, fig. 3). "
                "Give the same D in token_budgets for the runs that see D once (the whole train split)."})
    repeat_data: bool = field(default=False, metadata={
        "help": "Let D exceed one epoch of the unique data (max_tokens, token_budgets, IsoFLOP D values), repeating "
                "it in a new order each pass; the IsoFLOP planner then keeps sizes it would leave out for needing "
                "more than one epoch. Off: D never exceeds one epoch."})
    eval_max_blocks: int = field(default=512, metadata={
        "help": "Evaluate on at most this many validation/test blocks (0: all)."})
    peak_tflops: float = field(default=0.0, metadata={
        "help": "Peak bf16 TFLOP/s of one device for MFU (0: look the GPU up in training.efficiency; "
                "no MFU on CPU or an unlisted device)."})
    token_budgets: list[int] = field(default_factory=list, metadata={
        "help": "Extra token budgets D: scripts/run_study.py trains every size on each as well (a grid over N "
                "and D, folders <size>-D<tokens>)."})
    isoflop_budgets: list[float] = field(default_factory=list, metadata={
        "help": "IsoFLOP budgets C (FLOPs): scripts/run_study.py trains every size on D = C / 6N tokens "
                "(folders <size>-C<C>), leaving out sizes under 20 steps or over one epoch."})
    cooldown_fraction: float = field(default=0.0, metadata={
        "help": "Train each size's extra budgets (token_budgets, isoflop_budgets) as cooldown branches of one "
                "warmup-stable-decay run (Hagele et al. 2024): a stable run at the peak rate up to the largest "
                "budget's branch point, and for each budget D a branch resumed from it at (1 - fraction) D that "
                "decays over the last fraction of D ((1 - sqrt) shape, to 0). 0: each budget is a run of its own "
                "with the study's schedule. Hagele et al. use 0.2."})
    # Learning rate per size (read by scripts/run_study.py; Porian et al. 2024, sec. 4)
    lr_sweep_factors: list[float] = field(default_factory=list, metadata={
        "help": "Sweep the learning rate: each swept size trains at its centre rate times each factor (log-spaced, "
                "e.g. [0.5, 0.71, 1.0, 1.41, 2.0]) on the main budget, and the study keeps the best by validation "
                "loss. The centre is learning_rate for the first swept size, then the rule fitted to the sizes swept "
                "so far (the previous size's lr* while there is one). Empty: every size trains at learning_rate."})
    lr_sweep_sizes: list[str] = field(default_factory=list, metadata={
        "help": "Sizes to sweep (empty: every size). The others train at the rule lr*(N) = k N^-gamma fitted to "
                "the swept sizes' best rates (written to <study>/lr_rule.json)."})
    lr_sweep_extend: int = field(default=2, metadata={
        "help": "When a swept size's best rate is the lowest or highest of its grid, add up to this many rates "
                "beyond it, one at a time, until the best is inside."})
    repeat_seeds: list[int] = field(default_factory=list, metadata={
        "help": "Further seeds (model initialisation and data order): each size's run at its chosen learning rate "
                "is repeated with each, so the analysis can measure the run-to-run noise."})
    repeat_sizes: list[str] = field(default_factory=list, metadata={
        "help": "Sizes repeated with repeat_seeds (empty: every size)."})
    # Read by scripts/run_study.py once every size has trained (how: configs.sampling.SamplingArguments,
    # whose keys a study file may hold as well)
    sample_count: int = field(default=0, metadata={
        "help": "Pieces scripts/run_study.py samples from each finished size (0: none), with piano rolls "
                "and descriptors against the test split, for the report."})

    def __post_init__(self) -> None:
        if self.global_batch_tokens < 1 or self.max_device_batch_size < 1:
            raise ValueError("global_batch_tokens and max_device_batch_size must be positive, got "
                             f"{self.global_batch_tokens} and {self.max_device_batch_size}.")
        if self.max_tokens < 0 or self.eval_max_blocks < 0 or self.unique_tokens < 0 or self.epochs < 0:
            raise ValueError("max_tokens, eval_max_blocks, unique_tokens and epochs must be >= 0.")
        if bool(self.unique_budgets) != (bool(self.epoch_budgets) or bool(self.repeat_token_budgets)) \
                or (self.epoch_budgets and self.repeat_token_budgets) or any(u <= 0 for u in self.unique_budgets) \
                or any(not e > 0 for e in self.epoch_budgets) or any(d <= 0 for d in self.repeat_token_budgets):
            raise ValueError(f"unique_budgets {self.unique_budgets} goes with one of epoch_budgets "
                             f"{self.epoch_budgets} (passes over each U_D) or repeat_token_budgets "
                             f"{self.repeat_token_budgets} (D reached from each U_D), and all must be positive "
                             "(e.g. unique_budgets [24576, 98304] with epoch_budgets [1, 2, 4, 8], or with "
                             "repeat_token_budgets [1572864, 3145728]).")
        if self.epochs and self.max_tokens:
            raise ValueError(f"epochs {self.epochs} and max_tokens {self.max_tokens} both set D; give one (epochs: D = "
                             "epochs x unique_tokens).")
        if any(d <= 0 for d in self.token_budgets) or any(not c > 0 for c in self.isoflop_budgets):
            raise ValueError(f"token_budgets and isoflop_budgets must be positive; got {self.token_budgets} "
                             f"and {self.isoflop_budgets}.")
        if any(not f > 0 for f in self.lr_sweep_factors) or self.lr_sweep_extend < 0:
            raise ValueError(f"lr_sweep_factors must be > 0 and lr_sweep_extend >= 0; got {self.lr_sweep_factors} "
                             f"and {self.lr_sweep_extend}.")
        if self.lr_sweep_factors and len(self.lr_sweep_factors) < 3:
            raise ValueError(f"lr_sweep_factors {self.lr_sweep_factors}: a sweep needs 3 or more rates to place a "
                             "best rate between two others (e.g. [0.5, 0.71, 1.0, 1.41, 2.0]).")
        if self.lr_sweep_sizes and not self.lr_sweep_factors:
            raise ValueError("lr_sweep_sizes is set but lr_sweep_factors is empty; give the factors of the sweep.")
        if not 0 <= self.cooldown_fraction < 1:
            raise ValueError(f"cooldown_fraction must be in [0, 1) (0: no branches; 0.2 in Hagele et al. 2024); got "
                             f"{self.cooldown_fraction}.")
        if self.sample_count < 0:
            raise ValueError(f"sample_count must be >= 0; got {self.sample_count}.")


# what a study file may hold (each script takes the keys of the dataclasses it parses), and the
# prepared dataset it trains on (`dataset`, the default of training.run.RunArguments.dataset)
STUDY_FILE_TYPES = (StudyArguments, SamplingArguments, TrainingArguments)
STUDY_FILE_KEYS = ("dataset",)
# the command that makes each dataset the project's study files name
DATASET_COMMANDS = {
    "data_out/builtin": "make data  (python scripts/prepare_data.py --source builtin --output data_out/builtin "
                        "--block-size 1024)",
    "demo/data": "make demo-data  (python scripts/prepare_data.py --source builtin --output demo/data "
                 "--block-size 256)",
}


def load_study_defaults(path: str | Path, dataclass_types: tuple[type, ...]) -> dict[str, Any]:
    """Read a study YAML: the values of its keys that are fields of ``dataclass_types``.

    Every key must name a field of `STUDY_FILE_TYPES` (or of ``dataclass_types``) or be one of
    `STUDY_FILE_KEYS` (``dataset``, the default of ``--dataset``); the keys of the others are
    left to the scripts that read them (the sampling settings to scripts/run_study.py, for
    instance).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a key that no dataclass has (``set_defaults`` would keep a typo quietly).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Study file {path} not found; see configs/study.yaml for the format.")
    values = yaml.safe_load(path.read_text()) or {}
    fields = {f.name for t in dataclass_types for f in dataclasses.fields(t)}
    strangers = sorted(set(values) - fields - {f.name for t in STUDY_FILE_TYPES for f in dataclasses.fields(t)}
                       - set(STUDY_FILE_KEYS))
    if strangers:
        raise ValueError(f"{path}: unknown keys {strangers}; keys must be StudyArguments, SamplingArguments or "
                         "TrainingArguments fields, or dataset.")
    derived = sorted(set(values) & set(DERIVED_TRAINING_FIELDS))
    if derived:
        raise ValueError(f"{path}: {derived} are derived from global_batch_tokens, max_device_batch_size "
                         "and max_tokens; remove them.")
    return {k: v for k, v in values.items() if k in fields}


# Trainer options a study sets (configs/study.yaml), shown by a script's short --help
TRAINER_OPTIONS_SHOWN = ("output_dir", "learning_rate", "seed", "weight_decay", "max_grad_norm", "warmup_steps",
                         "lr_scheduler_type", "lr_scheduler_kwargs", "eval_steps", "save_steps", "push_to_hub",
                         "hub_model_id")
REFUSED_TRAINING_FIELDS = {name: "derived from global_batch_tokens, max_device_batch_size and max_tokens"
                           for name in DERIVED_TRAINING_FIELDS}


def parse_with_study(dataclass_types: tuple[type, ...], argv: list[str],
                     description: str | None = None, *, brief: dict[type, tuple[str, ...]] | None = None,
                     usage: str | None = None, helps: dict[str, str] | None = None) -> tuple[Any, ...]:
    """Parse argv into dataclasses with precedence: default < study YAML < flag.

    ``--study PATH`` (a :class:`StudyArguments` field) selects the YAML. ``brief``, ``usage`` and
    ``helps`` shape ``--help`` (`configs.cli.make_parser`); the derived Trainer fields are never
    listed there, and marked as refused in ``--help-all``.

    Raises:
        FileNotFoundError / ValueError: bad study file, or a derived field set by hand.
        SystemExit: unknown flag (argparse usage error).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--study", default=str(DEFAULT_STUDY))
    known, _ = pre.parse_known_args(argv)
    parser = make_parser(dataclass_types, description, brief=brief, usage=usage, refused=REFUSED_TRAINING_FIELDS,
                         helps=helps)
    defaults = load_study_defaults(known.study, dataclass_types)
    if TrainingArguments in dataclass_types and "use_cpu" not in defaults:
        # Without an accelerator, TrainingArguments only forms a multi-process (gloo) group
        # under torchrun / accelerate launch when use_cpu is set; harmless for one process.
        defaults["use_cpu"] = not (is_torch_cuda_available() or is_torch_mps_available())
    parser.set_defaults(**defaults)
    derived_flags = [a.split("=")[0] for a in argv
                     if a.lstrip("-").replace("-", "_").split("=")[0] in DERIVED_TRAINING_FIELDS]
    if derived_flags:
        raise ValueError(f"{', '.join(derived_flags)}: derived, not set: the batch per device and accumulation "
                         "come from --global-batch-tokens and --max-device-batch-size, the steps from --max-tokens; "
                         "set those instead.")
    return parse_strict(parser, argv)


__all__ = ["DEFAULT_STUDY", "DEMO_STUDY", "STUDY_FILE_TYPES", "TRAINER_OPTIONS_SHOWN", "StudyArguments",
           "TrainingArguments",
           "load_study_defaults", "parse_with_study"]
