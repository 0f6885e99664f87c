"""W&B logging: the mode chosen without prompting, the naming, and what the run holds."""

from __future__ import annotations

import json
import socket

import wandb
from tests_helpers import load_script

from training.tracking import RUN_ID_FILENAME, dataset_fingerprint, git_commit, wandb_mode


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_mode_is_offline_without_credentials_or_network(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert wandb_mode(home)[0] == "offline" and "credentials" in wandb_mode(home)[1]
    assert wandb_mode({**home, "WANDB_MODE": "disabled"}) == ("disabled", "WANDB_MODE is set")
    unreachable = {**home, "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{_closed_port()}"}
    mode, reason = wandb_mode(unreachable, probe_timeout_sec=1.0)
    assert mode == "offline" and "cannot be reached" in reason
    with socket.socket() as server:  # a reachable host with a key in ~/.netrc (as `wandb login` writes)
        server.bind(("127.0.0.1", 0))
        server.listen()
        (tmp_path / ".netrc").write_text("machine 127.0.0.1\n  login user\n  password " + "k" * 40 + "\n")
        online = {**home, "WANDB_BASE_URL": f"http://127.0.0.1:{server.getsockname()[1]}"}
        assert wandb_mode(online) == ("online", "")


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
    out = tmp_path / "w16"
    assert train.main(["--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(study),
                       "--output-dir", str(out), "--study_name", "unit-study", "--wandb_project", "unit-proj"]) == 0
    printed = capsys.readouterr().out
    assert "W&B offline (no W&B credentials" in printed and f"wandb sync {out / 'wandb'}/offline-run-*" in printed
    init = captured["init"]
    assert (init["project"], init["group"], init["name"], init["mode"]) == ("unit-proj", "unit-study", "w16",
                                                                            "offline")
    summary = json.loads((out / "run_summary.json").read_text())
    config = init["config"]
    assert config["N"] == summary["n_params_non_embedding"] and config["N_total"] == summary["n_params"]
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
