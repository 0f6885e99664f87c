"""The W&B source of the analysis, against a stand-in API built from real local run folders.

No W&B server is reachable from the test machines, so `FakeRun` plays a
``wandb.apis.public.Run`` logged the way training logs it: the history is what transformers'
``WandbCallback`` sends for each entry of the run's ``trainer_state.json`` log_history (the
entry minus ``step`` through ``rewrite_logs``, plus ``train/global_step``), the summary is
``run_summary.json`` minus ``config``, and the config is its ``config``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tests_helpers import load_script
from transformers.integrations.integration_utils import rewrite_logs
from wandb.errors import CommError

from analysis.loaders import load_eval_curves, load_local_runs
from analysis.wandb_source import (
    MANIFEST_FILE,
    WandbSourceError,
    default_cache_dir,
    history_to_log_history,
    pull_wandb_runs,
)

REPO = Path(__file__).resolve().parents[1]
# WandbCallback.on_log puts these into the run summary only, never into the history.
SUMMARY_ONLY = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")
OUTPUT_FILES = ("fit.json", "summary_table.json", "summary_table.md", "report.md")


analyze = load_script("analyze")


def wandb_rows(log_history: list[dict]) -> tuple[list[dict], dict]:
    """History rows and summary-only scalars, as WandbCallback.on_log would log them."""
    rows, summary_only = [], {}
    for i, entry in enumerate(log_history):
        logs = {k: v for k, v in entry.items() if k != "step"}
        summary_only.update({k: v for k, v in logs.items() if k in SUMMARY_ONLY})
        row = rewrite_logs({k: v for k, v in logs.items() if k not in SUMMARY_ONLY})
        rows.append({**row, "train/global_step": entry["step"], "_step": i, "_runtime": 0.5 * i,
                     "_timestamp": 1.7e9 + i})
    return rows, summary_only


class FakeRun:
    """Stand-in for ``wandb.apis.public.Run``, from a real run folder.

    ``state`` other than "finished" leaves the run_summary.json keys out of the summary (the
    run died before training logged them); ``last_step`` cuts the history there.
    """

    def __init__(self, folder: Path, *, entity: str = "team", project: str = "midi", group: str = "tiny",
                 run_id: str | None = None, name: str | None = None, state: str = "finished",
                 last_step: int | None = None):
        summary_file = json.loads((folder / "run_summary.json").read_text())
        log_history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
        if last_step is not None:
            log_history = [e for e in log_history if e["step"] <= last_step]
        self.name = name or summary_file["run_name"]
        self.id = run_id or f"id{self.name}"
        self.entity, self.project, self.group, self.state = entity, project, group, state
        self._rows, summary_only = wandb_rows(log_history)
        summary = {}
        for row in self._rows:  # W&B's default summary: the last value of each history key
            summary.update(row)
        summary.update(summary_only)
        summary["_wandb"] = {"runtime": 21}
        if state == "finished":
            summary.update({k: v for k, v in summary_file.items() if k != "config"}, run_name=self.name)
        self.summary = summary
        self.config = {**summary_file["config"], **summary_file["config"].get("training", {})}

    def scan_history(self, keys: list[str] | None = None, page_size: int = 1000, min_step: int = 0,
                     max_step: int | None = None):
        for row in self._rows:
            if keys is None:
                yield dict(row)
            elif all(k in row for k in keys):  # like W&B: only rows holding every requested key
                yield {k: row[k] for k in keys}

    def history(self, samples: int = 500, keys: list[str] | None = None, x_axis: str = "_step",
                pandas: bool = True, stream: str = "default"):
        rows = list(self.scan_history(keys))
        return pd.DataFrame(rows) if pandas else rows


class FakeApi:
    """Stand-in for ``wandb.Api()``: ``runs(path, filters=...)`` with a ``{"group": ...}`` filter."""

    def __init__(self, runs: list[FakeRun]):
        self._runs = runs
        self.calls = []

    def runs(self, path: str, filters: dict | None = None, order: str = "+created_at", per_page: int = 50):
        self.calls.append((path, filters))
        entity, project = path.split("/")
        found = [r for r in self._runs if (r.entity, r.project) == (entity, project)]
        return [r for r in found if all(getattr(r, key) == value for key, value in (filters or {}).items())]


class DownApi:
    """The API with no network: every call raises the way wandb does."""

    def runs(self, path: str, filters: dict | None = None, **kwargs):
        raise CommError("Failed to execute API request: could not connect to api.wandb.ai\nretrying...")


def tiny_api(tiny_runs: Path, *extra: FakeRun) -> FakeApi:
    return FakeApi([FakeRun(tiny_runs / name) for name in ("w16", "w32", "w48")] + list(extra))


def read_outputs(folder: Path) -> dict[str, object]:
    out = {name: (folder / name).read_text() for name in OUTPUT_FILES}
    out["fit.json"] = json.loads(out["fit.json"])
    out["summary_table.json"] = json.loads(out["summary_table.json"])
    out["report.md"] = out["report.md"].split("\n", 1)[1]  # line 1 names the source folder
    return out


def test_history_rows_become_the_trainer_log_history(tiny_runs):
    log_history = json.loads((tiny_runs / "w32" / "trainer_state.json").read_text())["log_history"]
    rows, _ = wandb_rows(log_history)
    expected = [{k: v for k, v in e.items() if k not in SUMMARY_ONLY} for e in log_history]
    assert history_to_log_history(rows) == expected
    assert any("eval_loss" in e for e in expected) and any("test_loss" in e for e in expected)


def test_wandb_source_gives_the_local_analysis(tiny_runs, tmp_path, capsys):
    local, remote, cache = tmp_path / "local", tmp_path / "remote", tmp_path / "cache"
    assert analyze.main(["--runs", str(tiny_runs), "--output", str(local), "--n-bootstrap", "50"]) == 0
    api = tiny_api(tiny_runs)
    assert analyze.main(["--wandb", "team/midi", "--group", "tiny", "--wandb-cache", str(cache),
                         "--output", str(remote), "--n-bootstrap", "50"], wandb_api=api) == 0
    assert "pulled 3 runs from W&B team/midi (group 'tiny')" in capsys.readouterr().out
    assert api.calls == [("team/midi", {"group": "tiny"})]

    assert read_outputs(remote) == read_outputs(local)
    assert read_outputs(local)["fit.json"]["fitted"]
    assert (remote / "scaling_plot.png").stat().st_size > 0 and (remote / "training_curves.png").stat().st_size > 0
    runs_local, runs_remote = load_local_runs(tiny_runs), load_local_runs(cache)
    pd.testing.assert_frame_equal(runs_remote.drop(columns="path"), runs_local.drop(columns="path"))
    curves = load_eval_curves(cache)
    assert len(curves) >= 9  # 3 evaluations per run, at steps 10, 20, 30
    pd.testing.assert_frame_equal(curves, load_eval_curves(tiny_runs))
    cached = json.loads((cache / "w32-idw32" / "run_summary.json").read_text())
    assert cached["config"] == api._runs[1].config and cached["wandb_run"]["id"] == "idw32"


def test_group_filter_and_a_crashed_run(tiny_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default cache lives under ~/.cache
    crashed = FakeRun(tiny_runs / "w48", name="w64", state="crashed", last_step=10)
    other = FakeRun(tiny_runs / "w16", name="o16", group="other")
    api = tiny_api(tiny_runs, crashed, other)

    assert analyze.main(["--wandb", "team/midi", "--group", "tiny", "--output", str(tmp_path / "a"),
                         "--n-bootstrap", "0"], wandb_api=api) == 0
    cache = tmp_path / "home" / ".cache" / "midi-scaling" / "wandb" / "team" / "midi" / "tiny"
    assert default_cache_dir("team/midi", "tiny") == cache and (cache / MANIFEST_FILE).is_file()
    out = capsys.readouterr().out
    assert "not used: w64: status is 'crashed': W&B run team/midi/idw64 ended as 'crashed' before logging" in out
    table = json.loads((tmp_path / "a" / "summary_table.json").read_text())
    assert [r["run_name"] for r in table] == ["w16", "w32", "w48"]
    report = (tmp_path / "a" / "report.md").read_text()
    assert "`w64`" in report and "crashed" in report and "o16" not in report
    runs = load_local_runs(cache)
    assert runs.set_index("run_name").loc["w64", "status"] == "crashed"

    assert analyze.main(["--wandb", "team/midi", "--output", str(tmp_path / "b"), "--n-bootstrap", "0"],
                        wandb_api=api) == 0
    assert api.calls[-1] == ("team/midi", None)
    assert (cache.parent / "_all" / MANIFEST_FILE).is_file()
    table = json.loads((tmp_path / "b" / "summary_table.json").read_text())
    assert sorted(r["run_name"] for r in table) == ["o16", "w16", "w32", "w48"]


def test_second_analysis_uses_the_cache_when_the_api_fails(tiny_runs, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["--wandb", "team/midi", "--group", "tiny", "--wandb-cache", str(cache), "--n-bootstrap", "50"]
    assert analyze.main([*args, "--output", str(tmp_path / "online")], wandb_api=tiny_api(tiny_runs)) == 0
    capsys.readouterr()
    assert analyze.main([*args, "--output", str(tmp_path / "offline")], wandb_api=DownApi()) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: W&B API unavailable (CommError: Failed to execute API request")
    assert err.count("\n") == 1 and str(cache) in err
    for name in OUTPUT_FILES:
        assert (tmp_path / "offline" / name).read_text() == (tmp_path / "online" / name).read_text(), name

    # A cache of another group is not used in place of the one asked for.
    with pytest.raises(WandbSourceError, match="holds team/midi, group 'tiny'"):
        pull_wandb_runs("team/midi", group="other", cache_dir=cache, api=DownApi())


def test_no_cache_and_no_api_is_a_clear_error(tmp_path, capsys):
    assert analyze.main(["--wandb", "team/midi", "--wandb-cache", str(tmp_path / "none"),
                         "--output", str(tmp_path / "out")], wandb_api=DownApi()) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot read W&B project team/midi from the W&B API (CommError:")
    assert "wandb login" in err and "--runs" in err and not (tmp_path / "out").exists()


def test_a_new_pull_replaces_the_cache(tiny_runs, tmp_path):
    cache = tmp_path / "cache"
    crashed = FakeRun(tiny_runs / "w48", name="w48", run_id="old48", state="crashed", last_step=10)
    pull = pull_wandb_runs("team/midi", group="tiny", cache_dir=cache, api=tiny_api(tiny_runs, crashed))
    assert pull.n_runs == 4 and not pull.from_cache
    names = load_local_runs(cache).set_index("run_name")["status"].to_dict()
    # Two runs named w48: the finished one keeps the name, the crashed one gets its id.
    assert names == {"w16": "finished", "w32": "finished", "w48": "finished", "w48-old48": "crashed"}
    assert set(load_eval_curves(cache)["run_name"]) == {"w16", "w32", "w48", "w48-old48"}

    pull = pull_wandb_runs("team/midi", group="tiny", cache_dir=cache, api=tiny_api(tiny_runs))
    assert pull.n_runs == 3 and not (cache / "w48-old48").exists()
    with pytest.raises(WandbSourceError, match="has no runs"):
        pull_wandb_runs("team/midi", group="nope", cache_dir=tmp_path / "c2", api=tiny_api(tiny_runs))


def test_flag_mistakes_are_usage_errors(tmp_path):
    for argv in (["--wandb", "midi", "--output", str(tmp_path)],
                 ["--runs", str(tmp_path), "--group", "tiny", "--output", str(tmp_path)],
                 ["--runs", str(tmp_path), "--wandb", "team/midi", "--output", str(tmp_path)],
                 ["--output", str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            analyze.parse_args(argv)
        assert exc.value.code == 2, argv


def test_real_wandb_api_without_credentials_fails_fast(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    env.update(HOME=str(tmp_path), WANDB_BASE_URL="http://127.0.0.1:9")  # nothing listens on port 9
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "analyze.py"), "--wandb", "team/midi",
                           "--output", str(tmp_path / "out")], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: Cannot read W&B project team/midi") and "wandb login" in proc.stderr
