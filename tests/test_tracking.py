"""W&B logging: the mode chosen without prompting, the naming, and what the run holds."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
import wandb
from tests_helpers import REPO, closed_port, load_script, local_http_server

from data.prepared import dataset_fingerprint
from training.tracking import RUN_ID_FILENAME, git_commit, wandb_mode


def _server(answer: str):
    """A local stand-in for a W&B server (`tests_helpers.local_http_server`); yields its URL.

    ``answer``: "ok" (W&B's viewer JSON for key "k"*40, 401 for any other key), "503" (an
    outage), "portal" (a captive portal: 200 with an HTML page), or "silent" (accepts the
    connection and the request, never answers).
    """
    good_key = "Basic " + base64.b64encode(b"api:" + b"k" * 40).decode()

    def reply(handler):
        if answer == "silent":
            return None
        if answer == "ok":
            return ((200, b'{"data": {"viewer": {"id": "VXNlcjox"}}}', "application/json")
                    if handler.headers.get("Authorization") == good_key
                    else (401, b'{"errors": ["unauthorized"]}', "application/json"))
        return {"503": (503, b"Service Unavailable", "text/plain"),
                "portal": (200, b"<html><body>Log in to the hotel Wi-Fi</body></html>", "text/html")}[answer]

    return local_http_server(reply)


def test_mode_is_offline_without_credentials_or_network(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert wandb_mode(home)[0] == "offline" and "credentials" in wandb_mode(home)[1]
    assert wandb_mode({**home, "WANDB_MODE": "disabled"}) == ("disabled", "WANDB_MODE is set")
    unreachable = {**home, "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{closed_port()}"}
    mode, reason = wandb_mode(unreachable, probe_timeout_sec=1.0)
    assert mode == "offline" and "cannot be reached" in reason
    with _server("ok") as url:  # a W&B server, the key in ~/.netrc (as `wandb login` writes it)
        (tmp_path / ".netrc").write_text("machine 127.0.0.1\n  login user\n  password " + "k" * 40 + "\n")
        assert wandb_mode({**home, "WANDB_BASE_URL": url}) == ("online", "")
        mode, reason = wandb_mode({**home, "WANDB_BASE_URL": url, "WANDB_API_KEY": "b" * 40})
        assert mode == "offline" and "rejected the API key (HTTP 401" in reason


@pytest.mark.parametrize(("answer", "reason"), [
    ("503", "answered HTTP 503"),
    ("portal", "did not answer as a W&B server"),
    ("silent", "cannot be reached within 1 s"),
])
def test_a_server_that_does_not_work_means_offline(tmp_path, answer, reason):
    with _server(answer) as url:
        env = {"HOME": str(tmp_path), "WANDB_API_KEY": "k" * 40, "WANDB_BASE_URL": url}
        mode, why = wandb_mode(env, probe_timeout_sec=1.0)
    assert mode == "offline" and why.startswith(url) and reason in why


def test_online_mode_without_a_key_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="WANDB_MODE=online but there are no W&B credentials.*wandb login"):
        wandb_mode({"HOME": str(tmp_path), "WANDB_MODE": "online"})
    assert wandb_mode({"HOME": str(tmp_path), "WANDB_MODE": "online", "WANDB_API_KEY": "k" * 40}) == (
        "online", "WANDB_MODE is set")


def test_training_against_an_outage_starts_offline(tiny_setup, tmp_path):
    """scripts/train.py with a key and a server answering 503: trains, offline, one line says why."""
    root, study, sizes = tiny_setup
    with _server("503") as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        env.update(HOME=str(tmp_path), WANDB_API_KEY="k" * 40, WANDB_BASE_URL=url)
        out = tmp_path / "w16"
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), "--size", str(sizes["w16"]),
                               "--dataset", str(root / "data"), "--study", str(study), "--output-dir", str(out)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"W&B offline ({url} answered HTTP 503" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (out / "run_summary.json").is_file() and list((out / "wandb").glob("offline-run-*"))


def test_provenance_fields(tmp_path):
    commit = git_commit()
    assert commit == "unknown" or len(commit.split("+")[0]) == 40
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "data-00000-of-00001.arrow").write_bytes(b"tokens")
    first = dataset_fingerprint(tmp_path)
    (tmp_path / "train" / "data-00000-of-00001.arrow").write_bytes(b"tokenz")
    assert first != dataset_fingerprint(tmp_path) and len(first) == 40


def test_offline_run_is_named_and_holds_the_study(tiny_setup, tmp_path, monkeypatch, capsys):
    """A real offline W&B run (no server here): init arguments and final summary are captured
    around the real wandb calls."""
    root, study, sizes = tiny_setup
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no credentials
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DISABLED"):
        monkeypatch.delenv(var, raising=False)
    captured = {}
    real_init = wandb.init

    def recording_init(**kwargs):
        run = real_init(**kwargs)
        captured["init"] = kwargs
        real_finish = run.finish

        def finish(*args, **kw):
            captured["summary"] = dict(run.summary)
            return real_finish(*args, **kw)

        run.finish = finish
        return run

    monkeypatch.setattr(wandb, "init", recording_init)
    train = load_script("train")
    out = tmp_path / "w16"  # the study runner names each run (configs.naming.run_name); W&B and the summary use it
    assert train.main(["--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(study),
                       "--output-dir", str(out), "--study_name", "unit-study", "--wandb_project", "unit-proj",
                       "--run_name", "w16-D15360"]) == 0
    printed = capsys.readouterr().out
    assert "W&B offline (no W&B credentials" in printed and f"wandb sync {out / 'wandb'}/offline-run-*" in printed
    init = captured["init"]
    assert (init["project"], init["group"], init["name"], init["mode"]) == ("unit-proj", "unit-study", "w16-D15360",
                                                                            "offline")
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["run_name"] == "w16-D15360" and summary["size"] == str(sizes["w16"])
    config = init["config"]
    assert config["N"] == summary["n_params_non_embedding"] and config["N_total"] == summary["n_params"]
    assert (config["size"], config["run_name"], config["budget_role"], config["lr_source"]) == (
        "w16", "w16-D15360", "main", "fixed")
    assert config["learning_rate"] == summary["learning_rate"] == 3e-3 and config["seed"] == summary["seed"] == 7
    assert config["D_planned"] == summary["tokens_trained"] == 15360
    assert config["C_planned"] == 6 * config["N"] * config["D_planned"]
    assert config["dataset"]["stats"]["splits"]["train"]["blocks"] > 0
    assert config["dataset_fingerprint"] == summary["dataset_fingerprint"] == dataset_fingerprint(root / "data")
    assert config["tokenizer"]["tokenization"] == "REMI" and config["tokenizer"]["params"]["pitch_range"]
    assert config["git_commit"] == summary["git_commit"] and config["study"]["study_name"] == "unit-study"
    assert init["id"] == (out / RUN_ID_FILENAME).read_text().strip()  # a resumed run logs into the same one
    assert captured["summary"]["eval_loss"] == summary["eval_loss"]
    assert captured["summary"]["n_params_non_embedding"] == summary["n_params_non_embedding"]
    assert list((out / "wandb").glob("offline-run-*"))


def test_an_online_start_that_fails_falls_back_to_offline(tmp_path, monkeypatch, capsys):
    """wandb.init failing online (here: its CommError, as after init_timeout) is not fatal."""
    from training.tracking import start_wandb_run

    monkeypatch.setenv("HOME", str(tmp_path))
    real_init = wandb.init
    modes = []

    def init(**kwargs):
        modes.append(kwargs["mode"])
        if kwargs["mode"] == "online":
            raise wandb.errors.CommError("Run initialization has timed out after 15.0 sec.\nPlease try again.")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    run = start_wandb_run(tmp_path, "online", "", project="p", group="g", name="n", config={"N": 1})
    run.finish()
    assert modes == ["online", "offline"]
    printed = capsys.readouterr().out
    assert ("W&B offline (starting the online run failed: CommError: Run initialization has timed out after "
            "15.0 sec.). Upload later with:") in printed
