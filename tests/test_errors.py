"""Faults of the machine, not of the input, end in one ``error:`` line that names the cause and
what to do, and what was written before stays usable: a read-only output folder, a full disk,
the Hub out of reach or turned off. Real parts: small tmpfs file systems mounted for the test
(read-only, or nearly full) and a local HTTP server standing in for the Hub."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests_helpers import REPO, closed_port, local_http_server


@contextlib.contextmanager
def _tmpfs(folder: Path, options: str):
    """A tmpfs mounted at ``folder`` with mount ``options`` (e.g. ``ro`` or ``size=1m``)."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                           text=True)
    if mount.returncode != 0:
        pytest.fail(f"these tests mount a small tmpfs (as root, or with CAP_SYS_ADMIN): {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), *args], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, **(env or {})}, timeout=600)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a failed script; there is no traceback."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def _train_args(tiny_setup, out: Path) -> list[str]:
    root, study, sizes = tiny_setup
    return ["--size", str(sizes["w16"]), "--dataset", str(root / "data"), "--study", str(study),
            "--output-dir", str(out), "--save_strategy", "steps", "--save_steps", "10", "--no-wandb"]


def test_a_read_only_output_folder_is_one_line(tiny_setup, tmp_path):
    root = tiny_setup[0]
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        line = _one_error_line(_script("train", *_train_args(tiny_setup, ro / "run")))
        assert line.startswith(f"error: cannot write {ro / 'run'}: Read-only file system.")
        assert "--output-dir" in line
        line = _one_error_line(_script("prepare_data", "--source", str(root / "corpus"), "--output",
                                       str(ro / "data"), "--block-size", "64", "--num-proc", "1"))
        assert line.startswith(f"error: cannot write {ro / 'data'}: Read-only file system.") and "--output" in line


def test_a_full_disk_while_training_is_one_line_and_the_run_resumes(tiny_setup, tmp_path):
    """A checkpoint of w16 takes ~240 KB: with ~360 KB free the first fits and the second does not."""
    with _tmpfs(tmp_path / "disk", "size=1m") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - 360_000))
        run = disk / "run"
        line = _one_error_line(_script("train", *_train_args(tiny_setup, run)))
        assert line.startswith(f"error: no space left on the device of {run} (")
        assert "a checkpoint of this model takes about" in line and "checkpoint-10 is complete" in line
        assert not (run / "run_summary.json").exists()
        filler.unlink()  # space freed: the same command resumes from the complete checkpoint
        resumed = _script("train", *_train_args(tiny_setup, run))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "checkpoint-20 is incomplete" in resumed.stderr + resumed.stdout
        assert f"Resuming from {run / 'checkpoint-10'}" in resumed.stderr + resumed.stdout


def test_a_full_disk_while_preparing_is_one_line_and_the_dataset_there_stays(tiny_setup, tmp_path):
    root = tiny_setup[0]
    with _tmpfs(tmp_path / "disk", "size=2m") as disk:
        shutil.copytree(root / "data", disk / "data")  # a finished dataset (~0.3 MB)
        before = {p: p.read_bytes() for p in (disk / "data").rglob("*") if p.is_file()}
        (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - 20_000))
        line = _one_error_line(_script("prepare_data", "--source", str(root / "corpus"), "--output",
                                       str(disk / "data"), "--block-size", "64", "--num-proc", "1"))
        assert line.startswith(f"error: no space left on the device of {disk / 'data'} (")
        after = {p: p.read_bytes() for p in (disk / "data").rglob("*") if p.is_file() and "_work" not in p.parts}
        assert after == before


def _hub_that_refuses_tokens():
    """A local server answering every request 401, as the Hub does for a bad token."""
    body = b'{"error": "Invalid credentials in Authorization header"}'
    return local_http_server(lambda handler: (401, body, "application/json"))


def test_pushing_without_the_hub_is_one_line(tiny_runs, tiny_setup, tmp_path):
    run = tiny_runs / "w16"
    push = ("--run", str(run), "--repo-id", "me/w16")
    token = {"HF_TOKEN": "hf_" + "x" * 34}
    line = _one_error_line(_script("push_to_hub", *push, env={**token, "HF_HUB_OFFLINE": "1"}))
    assert "HF_HUB_OFFLINE is set" in line and f"{run} is unchanged" in line
    line = _one_error_line(_script("push_to_hub", *push, env={**token, "HF_HUB_OFFLINE": "0",
                                                                "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}))
    assert "Cannot reach the Hugging Face Hub to push me/w16 (ConnectError" in line and "check the network" in line
    with _hub_that_refuses_tokens() as url:
        line = _one_error_line(_script("push_to_hub", *push, env={**token, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": url}))
    assert "The Hub refused to let this token write me/w16 (HTTP 401)" in line and "hf auth login" in line
    root = tiny_setup[0]
    line = _one_error_line(_script("prepare_data", "--source", str(root / "corpus"), "--output", str(tmp_path / "d"),
                                   "--block-size", "64", "--num-proc", "1", "--val-fraction", "0.2",
                                   "--test-fraction", "0.2", "--seed", "3", "--push-to-hub", "me/d",
                                   env={**token, "HF_HUB_OFFLINE": "1"}))
    assert "HF_HUB_OFFLINE is set" in line and f"{tmp_path / 'd'} is unchanged" in line
    assert (tmp_path / "d" / "stats.json").is_file()  # the prepared dataset is there to push later


def test_run_main_prints_one_line_or_reraises_the_original_error(monkeypatch, capsys, tmp_path):
    import errno

    from configs.cli import TRACEBACK_ENV, run_main

    def full_disk(argv):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out"))

    assert run_main(full_disk, []) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no space left on the device of {tmp_path / 'out'} (") and "free;" in err

    def unexpected(argv):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):  # not a fault a user can act on: the traceback
        run_main(unexpected, [])
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(OSError, match="No space left"):  # the original error, with its traceback
        run_main(full_disk, [])
