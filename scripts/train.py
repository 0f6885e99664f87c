r"""Train one model size of a study on a prepared dataset.

    accelerate launch scripts/train.py --size large --dataset data_out/lmd --output-dir runs/study/large
    python scripts/train.py --size demo1 --dataset data_out/builtin --output-dir runs/demo/demo1 \
        --study configs/demo_study.yaml          # CPU-sized, about a minute on 2 cores

Hyperparameters come from the study YAML (--study, default configs/study.yaml); any
StudyArguments or TrainingArguments field can be overridden by a flag
(e.g. --learning_rate 1e-3). Writes the model (safetensors), tokenizer.json,
trainer_state.json and run_summary.json into --output-dir.
"""

from __future__ import annotations

import json
import logging
import sys

from configs.cli import run_main
from configs.study import StudyArguments, TrainingArguments, parse_with_study
from training.run import RunArguments, train_size


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run, study, training_args = parse_with_study((RunArguments, StudyArguments, TrainingArguments), argv,
                                                 description=__doc__.split("\n\n")[0])
    if not any(a.split("=")[0] in ("--output_dir", "--output-dir") for a in argv):
        raise ValueError("--output-dir is required: the run folder for the model and run_summary.json.")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = train_size(run, study, training_args)
    if summary:
        keys = ("size", "n_params_non_embedding", "tokens_trained", "eval_loss", "test_loss", "tokens_per_second")
        print(json.dumps({k: summary[k] for k in keys}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
