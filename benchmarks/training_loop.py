"""Training throughput: the real path (``scripts/train.py``, HF Trainer) against a bare
PyTorch loop on the same model, data, batch layout, optimizer and schedule.

The bare loop is the floor the Trainer is judged against: whatever the Trainer spends
beyond it (logging, callbacks, checkpoints, data loading) shows in the ratio. Each path
runs in its own process so neither inherits the other's threads or caches.

    python -m benchmarks.training_loop --size demo3 --dataset demo/data \
        --study configs/demo_study.yaml --steps 60          # prints one JSON line
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bare_loop_tokens_per_second(size: str, dataset: str, study_yaml: str, steps: int) -> dict:
    """Tokens/s of a plain loop: forward, backward, clip, AdamW step, scheduler step.

    Uses the study's batch layout (micro-batch x accumulation for one process), its
    AdamW settings (weight decay on all but biases and LayerNorm weights, as the
    Trainer does) and its schedule, on the train split in a seeded random order.

    Returns:
        ``{"tokens_per_second", "steps", "tokens", "seconds", "final_loss"}``.
    """
    import torch
    from torch.utils.data import DataLoader, RandomSampler
    from transformers import AutoModelForCausalLM, get_scheduler, set_seed
    from transformers.trainer_pt_utils import get_parameter_names

    from configs.models import build_model_config
    from configs.study import StudyArguments, TrainingArguments, parse_with_study
    from data.prepared import read_prepared_dataset
    from training.batch import check_plan
    from training.run import RunArguments, collate_blocks

    _, study, args = parse_with_study(
        (RunArguments, StudyArguments, TrainingArguments),
        ["--size", size, "--dataset", dataset, "--study", study_yaml, "--output_dir", "unused"])
    prepared = read_prepared_dataset(dataset)
    datasets = prepared.load()
    layout, _ = check_plan(prepared, study, world_size=1)
    ids = prepared.special_ids
    set_seed(args.seed)
    config = build_model_config(size, prepared.vocab_size, prepared.block_size, ids["bos"], ids["eos"], ids["pad"])
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model.train()
    decay = set(get_parameter_names(model, [torch.nn.LayerNorm])) - {n for n, _ in model.named_parameters()
                                                                     if n.endswith("bias")}
    groups = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": args.weight_decay},
              {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  eps=args.adam_epsilon)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, args.get_warmup_steps(steps), steps,
                              scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    loader = DataLoader(datasets["train"].with_format("numpy"), batch_size=layout.per_device_batch_size,
                        sampler=RandomSampler(datasets["train"], generator=torch.Generator().manual_seed(args.seed)),
                        collate_fn=collate_blocks)
    batches = iter(loader)
    t0 = time.perf_counter()
    for _ in range(steps):
        for _ in range(layout.gradient_accumulation_steps):
            loss = model(**next(batches)).loss / layout.gradient_accumulation_steps
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    tokens = steps * layout.tokens_per_step
    return {"tokens_per_second": tokens / seconds, "steps": steps, "tokens": tokens, "seconds": seconds,
            "final_loss": loss.item() * layout.gradient_accumulation_steps}


def trainer_tokens_per_second(size: str, dataset: str, study_yaml: str, steps: int, tokens_per_step: int) -> dict:
    """Tokens/s of ``scripts/train.py`` itself (W&B off), as its run_summary.json reports
    it: the training loop's wall clock minus its periodic evaluations.

    Raises:
        RuntimeError: the training failed (its last output is in the message).
    """
    with tempfile.TemporaryDirectory(prefix="bench_train_") as out:
        proc = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "train.py"), "--size", size, "--dataset", dataset,
             "--study", study_yaml, "--output-dir", out, "--max_tokens", str(steps * tokens_per_step), "--no-wandb",
             "--disable_tqdm", "true"], cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/train.py failed for {size}:\n{proc.stderr[-2000:]}")
        summary = json.loads((Path(out) / "run_summary.json").read_text())
    return {"tokens_per_second": summary["tokens_per_second"], "steps": summary["steps"],
            "tokens": summary["tokens_trained"], "final_loss": summary["train_loss"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tokens/s of a bare PyTorch training loop (one JSON line).")
    parser.add_argument("--size", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args(argv)
    print(json.dumps(bare_loop_tokens_per_second(args.size, args.dataset, args.study, args.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
