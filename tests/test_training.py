from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from tests_helpers import load_script
from transformers import AutoModelForCausalLM

from tokenizer import load_tokenizer
from training.study import run_study

REPO = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = {"size", "n_params", "n_params_non_embedding", "tokens_trained", "flops", "train_loss",
                "eval_loss", "test_loss", "wall_clock_s", "tokens_per_second", "config", "status"}


def test_tiny_run_lowers_loss_and_writes_a_complete_summary(tiny_runs):
    run_dir = tiny_runs / "w32"
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["run_name"] == "w32"  # started by hand without --run_name: named after its folder
    assert summary["tokens_trained"] == 30 * 512 == summary["steps"] * summary["global_batch_tokens"]
    assert summary["flops"] == 6 * summary["n_params_non_embedding"] * summary["tokens_trained"]
    assert summary["n_params_non_embedding"] == 2 * (12 * 32**2 + 13 * 32) + 2 * 32
    assert summary["per_device_batch_size"] * summary["gradient_accumulation_steps"] == 8  # 512 / 64
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert losses[0] > losses[-1] + 1.0, losses  # from ~ln(518) = 6.2 nats down
    assert summary["eval_loss"] < math.log(summary["vocab_size"]) - 1.0
    assert math.isfinite(summary["test_loss"])
    assert max(e.get("num_input_tokens_seen", 0) for e in history) == summary["tokens_trained"]
    assert all("tokens_per_second" in e for e in history if "loss" in e)


def test_saved_model_and_tokenizer_load(tiny_runs):
    run_dir = tiny_runs / "w16"
    assert (run_dir / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(run_dir)
    tok = load_tokenizer(run_dir)
    assert model.config.vocab_size == len(tok) and model.config.n_embd == 16


def test_analysis_writes_every_file_from_tiny_runs(tiny_runs, tmp_path):
    analyze = load_script("analyze")
    assert analyze.main(["--runs", str(tiny_runs), "--output", str(tmp_path), "--n-bootstrap", "50"]) == 0
    for name in ("fit.json", "scaling_plot.png", "training_curves.png", "summary_table.json",
                 "summary_table.md", "report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    table = json.loads((tmp_path / "summary_table.json").read_text())
    assert len(table) == 3


def test_study_runner_records_failures_and_skips_finished_sizes(tiny_setup, tmp_path):
    root, study, sizes = tiny_setup
    broken = root / "broken.yaml"
    broken.write_text("n_layer: 2\nn_embd: 30\nn_head: 4\n")  # 30 % 4 != 0: fails in the child
    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--dataset", str(root / "data"),
               "--study", str(study), "--max_tokens", "2048"]
    lines = []
    results = run_study([str(broken), str(sizes["w16"])], tmp_path, command, log=lines.append)
    assert [r["status"] for r in results] == ["failed", "finished"]
    assert results[0]["returncode"] != 0 and "divisible" in results[0]["error"]
    assert results[1]["tokens_trained"] == 2048
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["status"] for r in saved] == ["failed", "finished"]
    again = run_study([str(sizes["w16"])], tmp_path, command, log=lines.append)
    assert again[0]["status"] == "existing" and again[0]["eval_loss"] == results[1]["eval_loss"]
    kept = json.loads((tmp_path / "results.json").read_text())  # the size not rerun keeps its entry
    assert [(r["size"], r["status"]) for r in kept] == [(str(broken), "failed"), (str(sizes["w16"]), "existing")]


def test_missing_dataset_says_what_to_run(tmp_path):
    train = load_script("train")
    with pytest.raises(FileNotFoundError, match="prepare_data.py"):
        train.main(["--size", "tiny", "--dataset", str(tmp_path / "none"), "--output_dir", str(tmp_path / "r")])


def test_user_mistakes_fail_fast_with_clear_messages(tiny_setup, tmp_path, capsys):
    root, study, sizes = tiny_setup
    run_study_script, train = load_script("run_study"), load_script("train")
    base = ["--dataset", str(root / "data"), "--study", str(study), "--output-dir", str(tmp_path / "s")]
    with pytest.raises(ValueError, match="choose one of"):  # before any size trains
        run_study_script.main([*base, "--sizes", str(sizes["w16"]), "dmo2"])
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="exceeds one epoch"):
        run_study_script.main([*base, "--sizes", str(sizes["w16"]), "--max_tokens", str(10**9)])
    with pytest.raises(ValueError, match="--dataset is required: the study file .* names no dataset"):
        train.main(["--size", str(sizes["w16"]), "--study", str(study)])
    with pytest.raises(ValueError, match="--size names the one size of scripts/train.py; a study trains --sizes"):
        run_study_script.main([*base, "--size", str(sizes["w16"])])
    with pytest.raises(ValueError, match=r"\['--budget_role', '--run_name'\] are set for each run by the study"):
        run_study_script.main([*base, "--budget_role", "isoflop", "--run_name", "x"])
    assert not (tmp_path / "s").exists()
    with pytest.raises(SystemExit) as exc:
        train.main(["--size", "tiny", "--dataset", "d", "--output_dir", str(tmp_path), "--max_tokes", "5"])
    assert exc.value.code == 2 and "--max_tokes" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # abbreviations are not accepted either
        train.main(["--size", "tiny", "--dataset", "d", "--output_dir", str(tmp_path), "--max_token", "5"])
    from configs.cli import run_main
    assert run_main(train.main, ["--size", "nope", "--dataset", "d", "--output_dir", str(tmp_path)]) == 2
    assert "error: Unknown --size 'nope'" in capsys.readouterr().err


def _mean_next_token_nll(model_dir: Path, blocks: list[list[int]]) -> float:
    """Mean next-token cross-entropy (nats) over every predicted position, computed here
    with log-softmax and gather, independently of the Trainer and the model's loss."""
    import torch

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.tensor(blocks, dtype=torch.int64)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.double()  # (blocks, block_size, vocab)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (blocks, block_size - 1)
    return nll.mean().item()


def test_train_and_eval_loss_equal_an_independent_cross_entropy(tiny_setup, tmp_path):
    from datasets import load_from_disk

    root, study, sizes = tiny_setup
    data = load_from_disk(str(root / "data"))
    train_blocks = len(data["train"])
    # one optimizer step over the whole train split at learning rate 0: the saved model is the
    # model the train loss was computed on, and the train loss covers every train block
    out = tmp_path / "run"
    assert load_script("train").main([
        "--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(study), "--output_dir", str(out),
        "--global_batch_tokens", str(64 * train_blocks), "--max_tokens", "0", "--learning_rate", "0",
        "--logging_steps", "1", "--eval_steps", "0", "--eval_max_blocks", "0"]) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["steps"] == 1
    expected_train = _mean_next_token_nll(out, data["train"]["input_ids"])
    expected_eval = _mean_next_token_nll(out, data["validation"]["input_ids"])
    expected_test = _mean_next_token_nll(out, data["test"]["input_ids"])
    assert summary["train_loss"] == pytest.approx(expected_train, rel=1e-5)
    assert summary["eval_loss"] == pytest.approx(expected_eval, rel=1e-5)
    assert summary["test_loss"] == pytest.approx(expected_test, rel=1e-5)  # the test split, not validation
    assert abs(expected_test / expected_eval - 1) > 1e-4
    # the bias this guards against: dividing by block_size labels instead of block_size - 1 positions
    assert abs(summary["eval_loss"] / expected_eval - 63 / 64) > 1e-3


def test_periodic_evaluation_reads_validation_and_the_trainer_sees_the_planned_batch(tiny_setup, tmp_path,
                                                                                     monkeypatch):
    """Every evaluation during training, on the model as it is at that step, equals the
    cross-entropy computed here on the first eval_max_blocks validation blocks (not train blocks);
    and the Trainer's own count of the input tokens it was fed equals the plan."""
    import torch
    from datasets import load_from_disk

    import training.run

    root, study, sizes = tiny_setup
    data = load_from_disk(str(root / "data"))
    validation = torch.tensor(data["validation"]["input_ids"][:16], dtype=torch.int64)
    train = torch.tensor(data["train"]["input_ids"][:16], dtype=torch.int64)

    def nll(model, ids) -> float:
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits.double()[:, :-1], dim=-1)
        return -logp.gather(-1, ids[:, 1:, None]).mean().item()

    seen = []
    real_evaluate = training.run.StudyTrainer.evaluate

    def checked_evaluate(self, *args, **kwargs):
        metrics = real_evaluate(self, *args, **kwargs)
        if kwargs.get("metric_key_prefix", "eval") == "eval":
            was_training = self.model.training
            self.model.eval()
            seen.append((self.state.global_step, metrics["eval_loss"], nll(self.model, validation),
                         nll(self.model, train)))
            self.model.train(was_training)
        return metrics

    monkeypatch.setattr(training.run.StudyTrainer, "evaluate", checked_evaluate)
    out = tmp_path / "run"
    assert load_script("train").main([
        "--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(study), "--output_dir", str(out),
        "--max_tokens", "5120", "--learning_rate", "1e-2", "--logging_steps", "1", "--eval_steps", "3",
        "--eval_max_blocks", "16"]) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert [step for step, *_ in seen] == [3, 6, 9, 10]  # periodic, then the final evaluation
    for step, eval_loss, on_validation, on_train in seen:
        assert eval_loss == pytest.approx(on_validation, rel=1e-5), step
        assert abs(on_train / on_validation - 1) > 1e-3, step  # the splits tell apart at this step
    # num_input_tokens_seen is counted by the Trainer from the input tensors it really received
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    counted = [e["num_input_tokens_seen"] for e in history if "num_input_tokens_seen" in e and "loss" in e]
    assert counted[-1] == summary["tokens_trained"] == 10 * 512 == summary["steps"] * summary["global_batch_tokens"]
    assert counted[0] == 512  # one step of 512 tokens: the planned global batch
