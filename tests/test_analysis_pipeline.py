"""End-to-end tests of the analysis: fake run folders -> scripts/analyze.py -> files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests_helpers import load_script

from analysis.loaders import load_eval_curves, load_local_runs
from analysis.report import run_analysis

A, ALPHA, C = 30.0, 0.3, 1.5  # generating law L = A * N**-ALPHA + C
BLOCK, BATCH_TOKENS, STEPS = 256, 8192, 40
SHAPES = {"demo1": (2, 32), "demo2": (2, 64), "demo3": (4, 96), "demo4": (4, 128), "demo5": (6, 192)}


analyze = load_script("analyze")


def n_non_embedding(n_layer: int, n_embd: int) -> int:
    return n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd  # GPT-2, default n_inner


def write_run(folder: Path, size: str, *, status: str = "finished", test_loss: float | None = 0.0,
              tokens_logged: bool = True) -> float:
    """Writes run_summary.json and trainer_state.json; returns the final eval loss."""
    n_layer, n_embd = SHAPES[size]
    n = n_non_embedding(n_layer, n_embd)
    loss = A * n**-ALPHA + C
    d = STEPS * BATCH_TOKENS
    folder.mkdir(parents=True)
    summary = {
        "run_name": f"{size}-remi-s0", "size": size, "status": status, "n_params": n + 300 * n_embd,
        "n_params_non_embedding": n, "n_layer": n_layer, "n_embd": n_embd, "n_head": 2,
        "tokens_trained": d, "flops": 6.0 * n * d, "train_loss": loss - 0.02, "eval_loss": loss,
        "test_loss": None if test_loss is None else loss + 0.01, "wall_clock_s": 10.0 + n / 1e4,
        "tokens_per_second": 1e5 / (1 + n / 1e5), "block_size": BLOCK,
        "global_batch_tokens": BATCH_TOKENS, "config": {"study": {"seed": 1234}, "lr": 2e-3},
    }
    (folder / "run_summary.json").write_text(json.dumps(summary))
    history = []
    for step in (10, 20, 30, 40):
        tokens = {"num_input_tokens_seen": step * BATCH_TOKENS} if tokens_logged else {}
        history.append({"step": step, "loss": loss + 2.0 / step, "learning_rate": 1e-3,
                        "epoch": step / STEPS, **tokens})
        history.append({"step": step, "eval_loss": loss + 1.0 / step, "eval_runtime": 0.5, **tokens})
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": STEPS, "log_history": history}))
    return loss


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    write_run(root / "demo1-remi-s0", "demo1")
    write_run(root / "demo2-remi-s0", "demo2", tokens_logged=False)  # tokens from step * batch
    write_run(root / "nested" / "demo3-remi-s0", "demo3")  # runs may sit at any depth
    write_run(root / "demo4-remi-s0", "demo4", test_loss=None)
    write_run(root / "demo5-remi-s0", "demo5", status="failed")
    (root / "xl-remi-s0").mkdir()  # crashed before writing a summary
    (root / "xl-remi-s0" / "train.log").write_text("CUDA out of memory\n")
    (root / "results.json").write_text(json.dumps([  # as scripts/run_study.py writes it
        {"size": "demo1", "run_dir": str(root / "demo1-remi-s0"), "status": "finished"},
        {"size": "xl", "run_dir": str(root / "xl-remi-s0"), "status": "failed", "returncode": 1,
         "error": "Traceback ...\nRuntimeError: CUDA out of memory\n"},
    ]))
    return root


def test_loaders(study: Path):
    runs = load_local_runs(study)
    assert list(runs["N"].iloc[:5]) == sorted(n_non_embedding(*SHAPES[f"demo{i}"]) for i in range(1, 6))
    assert runs["status"].tolist() == ["finished"] * 4 + ["failed", "no_summary"]
    demo1 = runs.iloc[0]
    assert demo1["C"] == 6 * demo1["N"] * demo1["D"] and demo1["N_total"] > demo1["N"]
    curves = load_eval_curves(study)
    assert len(curves) == 5 * 4 and curves["step"].tolist()[:4] == [10, 20, 30, 40]
    demo2 = curves[curves["size"] == "demo2"]
    assert demo2["tokens"].tolist() == [s * BATCH_TOKENS for s in (10, 20, 30, 40)]


def test_missing_study_says_what_to_run(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="scripts/train.py"):
        load_local_runs(tmp_path / "empty")
    assert analyze.main(["--runs", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 1
    assert "scripts/run_study.py" in capsys.readouterr().err


def test_analyze_writes_everything(study: Path, capsys):
    out = study / "analysis"  # inside the study: must not count as a failed run
    assert analyze.main(["--runs", str(study), "--output", str(out), "--n-bootstrap", "200"]) == 0
    names = ["fit.json", "scaling_plot.png", "training_curves.png", "summary_table.json",
             "summary_table.md", "report.md"]
    for name in names:
        assert (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temp files left
    assert (out / "scaling_plot.png").read_bytes()[:4] == b"\x89PNG"

    fit = json.loads((out / "fit.json").read_text())
    assert fit["fitted"] and fit["n_points"] == 4 and fit["metric"] == "eval_loss"
    assert fit["alpha"] == pytest.approx(ALPHA, rel=0.02)
    assert fit["alpha_ci"][0] <= fit["alpha"] <= fit["alpha_ci"][1]
    table = json.loads((out / "summary_table.json").read_text())
    assert [r["size"] for r in table] == ["demo1", "demo2", "demo3", "demo4"]
    assert {"N", "N_total", "D", "C", "train_loss", "eval_loss", "test_loss", "tokens_per_second",
            "wall_clock_s"} <= set(table[0])

    report = (out / "report.md").read_text()
    assert "α" in report and "interval" in report and f"{fit['alpha']:.4f}" in report
    assert "scaling_plot.png" in report and "training_curves.png" in report
    assert "demo5-remi-s0" in report and "status is 'failed'" in report
    assert "xl-remi-s0" in report and "CUDA out of memory" in report  # from results.json
    assert "analysis" not in load_local_runs(study, exclude=[out])["run_name"].tolist()
    assert "analysis" not in load_local_runs(study)["run_name"].tolist()  # fit.json marks it
    assert capsys.readouterr().out.strip().endswith(str(out / "report.md"))


def test_test_loss_metric_drops_runs_without_it(study: Path):
    result = run_analysis(study, metric="test_loss", n_convention="total", n_bootstrap=50)
    assert result.fit is not None and result.fit.n_points == 3
    reasons = {r["run_name"]: r["reason"] for r in result.not_used}
    assert "test_loss is missing" in reasons["demo4-remi-s0"]
    assert result.fit_dict["n_column"] == "N_total"


def test_two_runs_no_fit(tmp_path: Path, capsys):
    root = tmp_path / "study"
    write_run(root / "a", "demo1")
    write_run(root / "b", "demo2")
    out = tmp_path / "out"
    assert analyze.main(["--runs", str(root), "--output", str(out)]) == 0
    assert "no fit" in capsys.readouterr().out.lower()
    fit = json.loads((out / "fit.json").read_text())
    assert fit["fitted"] is False and "Fewer than 3" in fit["reason"]
    for name in ("scaling_plot.png", "training_curves.png", "summary_table.md", "report.md"):
        assert (out / name).stat().st_size > 0
    assert "fewer than 3 sizes have a finished run" in (out / "report.md").read_text().lower()
