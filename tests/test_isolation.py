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
    # the limit only has to exceed a fork and a pipe round trip on a loaded machine; the hang costs it once
    runner = IsolatedRunner(_work, timeout_sec=5.0)
    try:
        assert runner("a") == ("ok", "A")
        assert runner("segfault") == ("crash", "the worker process was killed by signal SIGSEGV")
        assert runner("b") == ("ok", "B")
        kind, message = runner("hang")
        assert kind == "timeout" and "5 s" in message
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

    def fragile_load_score(item, notes=None):  # stands in for a parser bug on two particular files
        if item["path"].endswith("crash_me.mid"):
            os.kill(os.getpid(), signal.SIGSEGV)
        if item["path"].endswith("hang_me.mid"):
            time.sleep(60)
        return real_load_score(item, notes)

    monkeypatch.setattr(data.processing, "load_score", fragile_load_score)
    stats = prepare_dataset(DataArguments(source=str(corpus), output=str(tmp_path / "out"), block_size=128,
                                          num_proc=1, val_fraction=0.2, test_fraction=0.2, seed=3,
                                          piece_timeout_sec=10))  # a POP909 song takes ~0.03 s
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


# The exact outcome of each bad_midi file in this pipeline: (status, reason, notes). Every one is
# also checked against the outcomes bad_midi/README.md allows. Files with the same 4-note melody
# after parsing are duplicates of the first in path order.
EXACT_OUTCOMES = {
    "cc_value_over_127.mid": ("skipped", "corrupt", 0),
    "chunk_length_beyond_eof.mid": ("skipped", "truncated", 0),
    "empty_tracks_only_eot.mid": ("skipped", "no_notes", 0),
    "header_only_no_tracks.mid": ("skipped", "no_notes", 0),
    "high_resolution_tpq_32767.mid": ("kept", "", 4),
    "huge_delta_time.mid": ("skipped", "too_long", 0),
    "meta_seqnum_len0_no_eot.mid": ("skipped", "duplicate", 4),
    "missing_end_of_track.mid": ("skipped", "duplicate", 4),
    "not_midi_text.mid": ("skipped", "not_midi", 0),
    "note_on_vel0_running_status.mid": ("kept", "", 3),
    "note_pitch_over_127.mid": ("skipped", "corrupt", 0),
    "ntracks_header_65535.mid": ("skipped", "duplicate", 4),
    "overlapping_same_pitch.mid": ("kept", "", 2),
    "pitch_bend_extremes_after_last_note.mid": ("skipped", "duplicate", 4),
    "running_status_at_track_start.mid": ("skipped", "corrupt", 0),
    "smpte_division.mid": ("skipped", "corrupt", 0),
    "sysex_data_over_127.mid": ("skipped", "duplicate", 4),
    "tempo_changes_no_notes.mid": ("skipped", "no_notes", 0),
    "tempo_zero.mid": ("kept", "", 4),
    "ticks_per_beat_zero.mid": ("skipped", "bad_header", 0),
    "timesig_numerator_zero.mid": ("skipped", "duplicate", 4),
    "track_length_overstated.mid": ("skipped", "corrupt", 0),
    "truncated_track.mid": ("skipped", "truncated", 0),
    "valid_drums_only.mid": ("kept", "", 16),
    "valid_one_note_10min.mid": ("kept", "", 1),
    "valid_two_notes.mid": ("kept", "", 2),
    "zero_byte.mid": ("skipped", "not_midi", 0),
    "zero_duration_same_tick.mid": ("kept", "", 3),
}


def test_every_bad_midi_file_gets_its_expected_outcome(tmp_path, pop909_files):
    if not BAD_MIDI.is_dir():
        pytest.fail(f"bad_midi not found at {BAD_MIDI} (the team's shared data folder)")
    expectations = _expectations()
    assert len(expectations) == len(list(BAD_MIDI.glob("*.mid"))) == len(EXACT_OUTCOMES) == 28
    corpus = tmp_path / "corpus"
    shutil.copytree(BAD_MIDI, corpus / "bad")
    for p in pop909_files:  # real songs so that every split gets pieces
        shutil.copy(p, corpus / p.name)
    prepare_dataset(DataArguments(source=str(corpus), output=str(tmp_path / "out"), block_size=64, num_proc=2,
                                  val_fraction=0.2, test_fraction=0.2, seed=3))
    manifest = {r["source_id"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").open())}
    for name, (note_counts, may_skip) in expectations.items():
        row = manifest[f"bad/{name}"]
        assert (row["status"], row["reason"], row["num_notes"]) == EXACT_OUTCOMES[name], (name, row)
        assert row["status"] == "kept" or row["message"], (name, row)
        # a duplicate is kept music: the same notes are in the dataset under the first file's name
        kept = row["status"] == "kept" or row["reason"] == "duplicate"
        if note_counts is None:
            assert not kept and row["reason"] in SKIP_REASONS, (name, row)
        elif kept:
            assert row["num_notes"] in note_counts, (name, row)
        else:
            assert may_skip and row["reason"] in SKIP_REASONS, (name, row)


def _track(events: bytes) -> bytes:
    return b"MTrk" + len(events).to_bytes(4, "big") + events


def _melody(pitch: int, channel: int) -> bytes:
    """A track of four quarter notes from ``pitch`` up, on ``channel``."""
    events = b"".join(bytes([0, 0x90 | channel, pitch + k, 80, 0x60, 0x80 | channel, pitch + k, 0]) for k in range(4))
    return _track(events + b"\x00\xff\x2f\x00")


def _header(fmt: int, ntracks: int) -> bytes:
    return b"MThd" + bytes([0, 0, 0, 6, 0, fmt]) + ntracks.to_bytes(2, "big") + (96).to_bytes(2, "big")


TEMPO_TRACK = _track(b"\x00\xff\x51\x03\x07\xa1\x20\x00\xff\x2f\x00")


def test_headers_that_misstate_the_file(tmp_path, pop909_files):
    """Two kinds of unusual file built here: a header that declares 1 track of 3 (a tempo track and two
    of notes), and a format 2 file (two independent sequences)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "fewer_tracks_declared.mid").write_bytes(_header(1, 1) + TEMPO_TRACK + _melody(60, 0) + _melody(67, 1))
    (corpus / "format_2.mid").write_bytes(_header(2, 2) + _melody(60, 0) + _melody(72, 0))
    (corpus / "truncated_third_track.mid").write_bytes(  # declares 1, holds 2 whole tracks and a cut one
        _header(1, 1) + TEMPO_TRACK + _melody(48, 0) + _melody(55, 1)[:-6])
    for p in pop909_files:
        shutil.copy(p, corpus / p.name)
    prepare_dataset(DataArguments(source=str(corpus), output=str(tmp_path / "out"), block_size=64, num_proc=1,
                                  val_fraction=0.2, test_fraction=0.2, seed=3, piece_timeout_sec=0))
    manifest = {r["source_id"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").open())}
    fewer = manifest["fewer_tracks_declared.mid"]
    assert (fewer["status"], fewer["num_notes"]) == ("kept", 8)  # before: skipped as no_notes
    assert fewer["message"] == ("warning: the header declares 1 track(s) but the file holds 3 complete ones; "
                                "all were read")
    cut = manifest["truncated_third_track.mid"]
    assert (cut["status"], cut["num_notes"]) == ("kept", 4) and "holds 2 complete ones" in cut["message"]
    fmt2 = manifest["format_2.mid"]
    assert (fmt2["status"], fmt2["reason"]) == ("skipped", "format_2")  # before: kept, sequences merged
    assert "2 independent sequences" in fmt2["message"]
