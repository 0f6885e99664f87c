r"""Train one model size of a study on a prepared dataset.

    make data && accelerate launch scripts/train.py --size large   # the study file's dataset, runs/<study>/large
    accelerate launch scripts/train.py --size large --dataset data_out/lmd --output-dir runs/lmd/large
    python scripts/train.py --size demo1 --study configs/demo_study.yaml   # CPU-sized, about a minute on 2 cores

The dataset is the study file's ``dataset`` (configs/study.yaml: data_out/builtin, made by
``make data``) unless --dataset is given; the run folder is runs/<study_name>/<run_name> unless
--output-dir is given. The defaults taken are printed first and recorded in run_summary.json.

Hyperparameters come from the study YAML (--study, default configs/study.yaml); any
StudyArguments or TrainingArguments field can be overridden by a flag
(e.g. --learning_rate 1e-3). In a study whose learning-rate sweep fitted a rule
lr*(N) (<study>/lr_rule.json beside --output-dir, or --lr_rule PATH), the learning rate is
the rule's at this size's N unless --learning_rate is given. Writes the model (safetensors), tokenizer.json,
trainer_state.json and run_summary.json into --output-dir, and checkpoints while it
trains: run the same command again after a crash or a kill and it resumes from the last
one. Logs to Weights & Biases (offline by itself without credentials; --no-wandb: off).
--push-to-hub --hub-model-id USER/NAME pushes the model, tokenizer and a model card.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

from configs.cli import run_main
from configs.naming import size_name
from configs.study import TRAINER_OPTIONS_SHOWN, StudyArguments, TrainingArguments, parse_with_study
from training.run import LR_RULE_FILENAME, RunArguments, run_defaults, train_size


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run, study, training_args = parse_with_study(
        (RunArguments, StudyArguments, TrainingArguments), argv, description=__doc__.split("\n\n")[0],
        usage="train.py --size SIZE [--dataset DIR] [--output-dir DIR] [--study FILE] [options]",
        helps={"output_dir": "The run folder: model, checkpoints, run_summary.json (default: "
                              "runs/<study_name>/<run_name>)."},
        brief={RunArguments: ("size", "dataset", "wandb", "resume", "restart", "lr_rule"),
               StudyArguments: ("study", "study_name", "wandb_project", "global_batch_tokens", "max_device_batch_size",
                                "max_tokens", "eval_max_blocks"),
               TrainingArguments: TRAINER_OPTIONS_SHOWN})
    if not run.size:
        raise ValueError("--size is required: a name in configs/sizes/ (e.g. --size demo1) or a size YAML file.")
    run_folder = Path("runs") / study.study_name / (training_args.run_name or size_name(run.size))
    training_args, defaults_used = run_defaults(run, study, training_args, argv, run_folder,
                                                "runs/<study_name>/<run_name>")
    if training_args.process_index == 0:
        for option, value in defaults_used.items():
            print(f"{option}: {value}")
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise ValueError("--push-to-hub needs --hub-model-id USER/NAME (the Hub repository to create or update).")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lr_given = any(a.split("=")[0] in ("--learning_rate", "--learning-rate") for a in argv)
    if run.lr_rule and lr_given:
        raise ValueError("--lr_rule and --learning_rate contradict each other: the rule sets the learning rate; "
                         "give one.")
    study_rule = Path(training_args.output_dir).parent / LR_RULE_FILENAME
    if not run.lr_rule and not lr_given and study_rule.is_file() and json.loads(study_rule.read_text()).get("rule"):
        # a new size in a study whose sweep fitted lr*(N) trains at the rule's rate, as the study's sizes did
        print(f"Learning rate from the study's rule {study_rule} (give --learning_rate to override)")
        run = dataclasses.replace(run, lr_rule=str(study_rule))
    summary = train_size(run, study, training_args, defaults_used)
    if summary:
        keys = ("size", "n_params_non_embedding", "tokens_trained", "eval_loss", "test_loss", "tokens_per_second")
        print(json.dumps({k: summary[k] for k in keys}, indent=2))
    if summary and not training_args.push_to_hub:
        print(f"Share it on the Hub: python scripts/push_to_hub.py --run {training_args.output_dir} "
              "--repo-id USER/NAME")
    if summary and training_args.push_to_hub:
        from sharing.push import push_model

        try:
            url = push_model(training_args.output_dir, training_args.hub_model_id,
                             private=bool(training_args.hub_private_repo), token=training_args.hub_token)
        except Exception as err:  # the run itself is saved; say how to push it later
            print(f"warning: the push to the Hub failed ({type(err).__name__}: {err}). The run is saved; push it "
                  f"later with:\n  python scripts/push_to_hub.py --run {training_args.output_dir} "
                  f"--repo-id {training_args.hub_model_id}", file=sys.stderr)
        else:
            print(f"Pushed to {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
