from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time

import pytest
from tests_helpers import BAD_MIDI

import data.processing
from data.isolation import IsolatedRunner
from data.pipeline import DataArguments, prepare_dataset
from data.processing import SKIP_REASONS


def _work(x: str) -> str:
    if x == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == "hang":
        time.sleep(60)
    if x == "raise":
        raise KeyError("boom")
    return x.upper()


def test_runner_turns_crashes_and_hangs_into_answers_and_recovers():
    runner = IsolatedRunner(_work, timeout_sec=1.0)
    try:
        assert runner("a") == ("ok", "A")
        assert runner("segfault") == ("crash", "the worker process was killed by signal SIGSEGV")
        assert runner("b") == ("ok", "B")
        kind, message = runner("hang")
        assert kind == "timeout" and "1 s" in message
        assert runner("raise") == ("crash", "KeyError: 'boom'")
        assert runner("c") == ("ok", "C")
    finally:
        runner.close()


def test_a_crashing_or_hanging_file_is_skipped_and_the_run_goes_on(tmp_path, pop909_files, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in pop909_files[:6]:
        shutil.copy(p, corpus / p.name)
    shutil.copy(pop909_files[6], corpus / "crash_me.mid")
    shutil.copy(pop909_files[7], corpus / "hang_me.mid")
    real_load_score = data.processing.load_score

    def fragile_load_score(item):  # stands in for a parser bug on two particular files
        if item["path"].endswith("crash_me.mid"):
            os.kill(os.getpid(), signal.SIGSEGV)
        if item["path"].endswith("hang_me.mid"):
            time.sleep(60)
        return real_load_score(item)

    monkeypatch.setattr(data.processing, "load_score", fragile_load_score)
    stats = prepare_dataset(DataArguments(source=str(corpus), output=str(tmp_path / "out"), block_size=128,
                                          num_proc=1, val_fraction=0.2, test_fraction=0.2, seed=3,
                                          piece_timeout_sec=3))
    manifest = {r["source_id"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").open())}
    assert (manifest["crash_me.mid"]["status"], manifest["crash_me.mid"]["reason"]) == ("skipped", "crash")
    assert "SIGSEGV" in manifest["crash_me.mid"]["message"]
    assert (manifest["hang_me.mid"]["status"], manifest["hang_me.mid"]["reason"]) == ("skipped", "timeout")
    assert stats["items_kept"] == 6 and stats["skipped_by_reason"] == {"crash": 1, "timeout": 1}


def _expectations() -> dict[str, tuple[set[int] | None, bool]]:
    """Per file of bad_midi/README.md: (allowed note counts if kept, skipping allowed)."""
    table = {}
    for line in (BAD_MIDI / "README.md").read_text().splitlines():
        m = re.match(r"\| `([^`]+\.mid)` \|.*\| (.+) \|$", line)
        if not m:
            continue
        name, expected = m.groups()
        if expected.startswith("skip"):
            table[name] = (None, True)
            continue
        counts = re.search(r"with ([\d ]+(?:or [\d ]+)?)notes?", expected).group(1)
        table[name] = ({int(n) for n in re.findall(r"\d+", counts)}, "skip" in expected)
    return table


def test_every_bad_midi_file_gets_its_expected_outcome(tmp_path, pop909_files):
    if not BAD_MIDI.is_dir():
        pytest.skip(f"bad_midi not found at {BAD_MIDI}")
    expectations = _expectations()
    assert len(expectations) == len(list(BAD_MIDI.glob("*.mid"))) == 28
    corpus = tmp_path / "corpus"
    shutil.copytree(BAD_MIDI, corpus / "bad")
    for p in pop909_files:  # real songs so that every split gets pieces
        shutil.copy(p, corpus / p.name)
    prepare_dataset(DataArguments(source=str(corpus), output=str(tmp_path / "out"), block_size=64, num_proc=2,
                                  val_fraction=0.2, test_fraction=0.2, seed=3))
    manifest = {r["source_id"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").open())}
    for name, (note_counts, may_skip) in expectations.items():
        row = manifest[f"bad/{name}"]
        # a duplicate is kept music: the same notes are in the dataset under the first file's name
        kept = row["status"] == "kept" or row["reason"] == "duplicate"
        if note_counts is None:
            assert not kept and row["reason"] in SKIP_REASONS and row["message"], (name, row)
        elif kept:
            assert row["num_notes"] in note_counts, (name, row)
        else:
            assert may_skip and row["reason"] in SKIP_REASONS and row["message"], (name, row)
