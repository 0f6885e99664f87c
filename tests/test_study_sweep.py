"""A study that sweeps learning rates, fits the rule lr*(N), repeats seeds, and is analyzed: real tiny runs."""

from __future__ import annotations

import json

import pytest
from tests_helpers import load_script

from analysis.lr_sweep import LrRule
from analysis.report import run_analysis
from training.study import chosen_runs, closing_block


def _summary(folder):
    return json.loads((folder / "run_summary.json").read_text())


@pytest.fixture(scope="module")
def sweep_study(tiny_setup, tmp_path_factory):
    root, study, sizes = tiny_setup
    sweep_yaml = tmp_path_factory.mktemp("sweep") / "sweep.yaml"
    sweep_yaml.write_text(study.read_text().replace("max_tokens: 15360", "max_tokens: 5120")
                          + "lr_sweep_factors: [0.5, 1.0, 2.0]\n"
                          f"lr_sweep_sizes: [{sizes['w16']}, {sizes['w32']}]\nlr_sweep_extend: 1\n"
                          f"repeat_seeds: [8]\nrepeat_sizes: [{sizes['w16']}]\n")
    out = sweep_yaml.parent / "runs"
    code = load_script("run_study").main(["--dataset", str(root / "data"), "--study", str(sweep_yaml),
                                          "--output-dir", str(out), "--sizes", *map(str, sizes.values())])
    return out, sizes, code


def test_sweep_runs_are_recorded_and_the_best_is_chosen(sweep_study):
    out, _, code = sweep_study
    assert code == 0
    saved = json.loads((out / "lr_rule.json").read_text())
    assert set(saved["sweeps"]) == {"w16", "w32"}
    for size, sweep in saved["sweeps"].items():
        runs = {p.name: _summary(p) for p in out.glob(f"{size}-lr*") if (p / "run_summary.json").is_file()}
        assert {r["lr_source"] for r in runs.values()} == {"swept"}
        for name, summary in runs.items():
            rate = name.removeprefix(f"{size}-lr").split("-s")[0]
            assert summary["learning_rate"] == pytest.approx(float(rate))
        main_seed = {n: r for n, r in runs.items() if "-s" not in n.removeprefix(size)}
        best = min(main_seed, key=lambda n: main_seed[n]["eval_loss"])
        assert sweep["run_names"][0] == best and sweep["best_lr"] == pytest.approx(main_seed[best]["learning_rate"])
        assert len(main_seed) == len(sweep["learning_rates"])
        # 3 rates, plus one beyond the edge if the best was there (lr_sweep_extend: 1); a size
        # still at an edge has spent its extension
        assert len(sweep["learning_rates"]) in (3, 4)
        if sweep["edge"]:
            assert len(sweep["learning_rates"]) == 4
    # the first size's grid is the study's rate times the factors; the second is centred on the first's lr*
    assert {0.0015, 0.003, 0.006} <= set(saved["sweeps"]["w16"]["learning_rates"])
    centre = saved["sweeps"]["w16"]["lr_star"]
    assert {float(f"{centre * f:.3g}") for f in (0.5, 1.0, 2.0)} <= set(saved["sweeps"]["w32"]["learning_rates"])


def test_the_unswept_size_trains_at_the_rule_and_the_chosen_rate_is_repeated(sweep_study):
    out, _, _ = sweep_study
    saved = json.loads((out / "lr_rule.json").read_text())
    if saved["rule"] is None:  # both optima at an edge: no rule, and the size without a rate is not trained
        assert not (out / "w48").exists() and "needs 2 or more" in saved["reason"]
    else:
        rule = LrRule.from_dict(saved["rule"])
        summary = _summary(out / "w48")
        assert summary["lr_source"] == "rule" and summary["lr_rule"]["gamma"] == rule.gamma
        assert summary["n_params_non_embedding"] == 2 * (12 * 48**2 + 13 * 48) + 2 * 48
        assert summary["learning_rate"] == pytest.approx(rule.predict(summary["n_params_non_embedding"]))
    best = saved["sweeps"]["w16"]["run_names"][0]
    repeat = _summary(out / f"{best}-s8")
    assert repeat["seed"] == 8 and repeat["learning_rate"] == pytest.approx(saved["sweeps"]["w16"]["best_lr"])
    assert repeat["eval_loss"] != _summary(out / best)["eval_loss"]  # another initialisation and order


def test_the_analysis_uses_the_best_runs_and_opens_with_the_prediction_check(sweep_study):
    out, _, _ = sweep_study
    result = run_analysis(out, coverage_studies=20)
    saved = json.loads((out / "lr_rule.json").read_text())
    best16 = saved["sweeps"]["w16"]["run_names"][0]
    # w16's rate was chosen by its seed-7 run, which L(N) leaves out for its repeat (the winner's
    # curse); w32 has no repeat, so its choosing run stays
    assert {f"{best16}-s8", saved["sweeps"]["w32"]["run_names"][0]} <= set(result.used["run_name"])
    assert best16 not in set(result.used["run_name"]) and f"`{best16}`" in result.report_md
    assert set(result.sweeps) == {"w16", "w32"}
    assert result.sweeps["w16"].best_lr == pytest.approx(saved["sweeps"]["w16"]["best_lr"])
    assert result.noise.dof == 0 and not result.noise.measured  # one run per size is left in L(N)
    sections = [line for line in result.report_md.splitlines() if line.startswith("## ")]
    assert sections[:3] == ["## Prediction check", "## Fit", "## Learning rates"]
    assert "learning_rates.png" in result.figures
    others = set(result.runs["run_name"]) - set(result.used["run_name"])
    assert all(f"`{name}`" in result.report_md for name in others if name.startswith(("w16-lr", "w32-lr")))


def test_train_takes_the_studys_rule_unless_a_rate_is_given(tiny_setup, tmp_path):
    root, study, sizes = tiny_setup
    rule = LrRule(k=0.5, gamma=0.4, gamma_ci=(0.3, 0.5), confidence=0.95, sizes=("a", "b", "c"),
                  n=(1e3, 1e4, 1e5), lr_star=(0.5e-3 * 10 ** 1.2, 0.5e-3 * 10 ** 0.8, 0.5e-3 * 10 ** 0.4))
    (tmp_path / "lr_rule.json").write_text(json.dumps({"rule": rule.to_dict(), "sweeps": {}}))
    train = load_script("train")
    base = ["--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(study),
            "--max_tokens", "1024", "--eval_steps", "0"]
    assert train.main([*base, "--output_dir", str(tmp_path / "new")]) == 0
    summary = _summary(tmp_path / "new")
    assert summary["lr_source"] == "rule"
    assert summary["learning_rate"] == pytest.approx(0.5 * summary["n_params_non_embedding"] ** -0.4)
    assert train.main([*base, "--output_dir", str(tmp_path / "fixed"), "--learning_rate", "1e-3"]) == 0
    assert _summary(tmp_path / "fixed")["learning_rate"] == 1e-3
    assert _summary(tmp_path / "fixed")["lr_source"] == "fixed"
    with pytest.raises(ValueError, match="contradict"):
        train.main([*base, "--output_dir", str(tmp_path / "x"), "--learning_rate", "1e-3",
                    "--lr_rule", str(tmp_path / "lr_rule.json")])
    # a rule rising with N, swept only on narrower sizes: the new size trains at the widest swept lr*
    rising = LrRule(k=1e-4, gamma=-0.5, gamma_ci=(-0.6, -0.4), confidence=0.95, sizes=("a", "b"), n=(50.0, 100.0),
                    lr_star=(1e-4 * 50 ** 0.5, 1e-3))
    (tmp_path / "rising").mkdir()
    (tmp_path / "rising" / "lr_rule.json").write_text(json.dumps({"rule": rising.to_dict(), "sweeps": {
        "a": {"size": "a", "N": 50.0, "lr_star": 1e-4 * 50 ** 0.5}, "b": {"size": "b", "N": 100.0, "lr_star": 1e-3}}}))
    assert train.main([*base, "--output_dir", str(tmp_path / "rising" / "w16")]) == 0
    capped = _summary(tmp_path / "rising" / "w16")
    assert capped["learning_rate"] == 1e-3 < rising.predict(capped["n_params_non_embedding"])
    assert capped["lr_source"] == "rule" and capped["lr_rule"]["gamma"] == -0.5


def test_a_finished_run_is_reused_only_if_it_matches_its_plan():
    from training.study import PlannedRun, stale_reason

    summary = {"tokens_trained": 5120, "config": {"training": {"learning_rate": 0.003, "seed": 7}}}
    run = PlannedRun("w16", "w16-lr0.003", learning_rate=0.003, lr_source="swept")
    assert stale_reason(summary, run, 5120) == ""
    assert "5,000" in stale_reason(summary, run, 5000)  # another D
    assert "learning rate 0.003" in stale_reason(summary, PlannedRun("w16", "w16", learning_rate=0.006), 5120)
    assert "seed 7" in stale_reason(summary, PlannedRun("w16", "w16-s8", learning_rate=0.003, seed=8), 5120)
    # top-level fields, written since the sweep, win over the Trainer's config
    assert stale_reason({**summary, "learning_rate": 0.006}, run, 5120).startswith("was trained at learning rate")


def test_a_finished_study_refuses_another_dataset_or_schedule(sweep_study, tiny_setup, other_datasets):
    """Re-running the study on another dataset, block size or warmup reuses nothing and trains nothing."""
    out, sizes, _ = sweep_study
    root = tiny_setup[0]
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/run_summary.json")}
    study_yaml = out.parent / "sweep.yaml"
    run_study = load_script("run_study")
    for dataset, extra, phrase in (
            (other_datasets["corpus"], [], f"was trained on the dataset {root / 'data'} (fingerprint "),
            (other_datasets["block_size"], [], "has block_size 64, not 32"),
            (root / "data", ["--warmup_steps", "0.5"], "has warmup_steps 0.1, not 0.5")):
        with pytest.raises(ValueError, match="another --output-dir") as err:
            run_study.main(["--dataset", str(dataset), "--study", str(study_yaml), "--output-dir", str(out),
                            "--sizes", *map(str, sizes.values()), *extra])
        assert phrase in str(err.value) and "retrain" in str(err.value)
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*/run_summary.json")}  # nothing retrained


def test_each_sizes_chosen_model_is_staged_for_the_hub_in_one_command(sweep_study, tmp_path, capsys):
    out, sizes, _ = sweep_study
    saved = json.loads((out / "lr_rule.json").read_text())
    chosen = chosen_runs(out)
    # w48 trains at the rule's rate, when the sweeps gave a rule (see the test above)
    assert chosen == {"w16": out / saved["sweeps"]["w16"]["run_names"][0],
                      "w32": out / saved["sweeps"]["w32"]["run_names"][0],
                      **({"w48": out / "w48"} if saved["rule"] else {})}
    assert load_script("push_to_hub").main(["--study", str(out), "--repo-id", "me/midi", "--stage-only",
                                            str(tmp_path / "hub")]) == 0
    for size, run in chosen.items():
        card = (tmp_path / "hub" / size / "README.md").read_text()
        assert f"me/midi-{size}" in card
        staged = json.loads((tmp_path / "hub" / size / "run_summary.json").read_text())
        assert staged["run_name"] == run.name
    assert capsys.readouterr().out.count("staged ") == len(chosen)


def test_the_closing_block_gives_one_sync_command_for_every_offline_run(tmp_path):
    for run in ("a", "b"):
        (tmp_path / run / "wandb" / "offline-run-20261203_000000-x").mkdir(parents=True)
    lines = closing_block(tmp_path, wandb_project="midi-scaling", study_name="demo", wandb=True)
    assert f"  upload:  wandb sync {tmp_path}/*/wandb/offline-run-*   (2 runs logged offline)" in lines
    assert any(line.startswith(f"  report:  python scripts/analyze.py --runs {tmp_path}") for line in lines)
    assert any(f"push_to_hub.py --study {tmp_path} --repo-id USER/NAME" in line for line in lines)
    assert "  W&B:     off (--no-wandb)" in closing_block(tmp_path, wandb_project="p", study_name="s", wandb=False)
