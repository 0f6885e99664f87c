from __future__ import annotations

import hashlib
import json
import os
import random
import shutil

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from data.packing import pack_dataset, pack_sequences
from data.pipeline import DataArguments, assign_split, prepare_dataset
from data.processing import SKIP_REASONS
from data.sources import list_source_items, split_abc_tunes

# --- packing ------------------------------------------------------------------------

def test_pack_sequences_known_answer():
    blocks, dropped = pack_sequences([[5, 6, 7], [8], [9, 10]], block_size=4, bos_id=1, eos_id=2)
    # stream: 1 5 6 7 2 | 1 8 2 1 9 10 2  -> 12 tokens, 3 blocks, nothing dropped
    assert blocks == [[1, 5, 6, 7], [2, 1, 8, 2], [1, 9, 10, 2]]
    assert dropped == 0
    blocks, dropped = pack_sequences([[5, 6, 7], [8, 9]], block_size=5, bos_id=1, eos_id=2)
    assert blocks == [[1, 5, 6, 7, 2]] and dropped == 4  # "1 8 9 2" is the dropped tail
    blocks, dropped = pack_sequences([[5, 6, 7], [8, 9]], block_size=3, bos_id=1, eos_id=2)
    assert blocks == [[1, 5, 6], [7, 2, 1], [8, 9, 2]] and dropped == 0


def test_pack_dataset_matches_reference_and_drops_only_the_tail():
    rng = random.Random(0)
    seqs = [[rng.randint(3, 99) for _ in range(rng.randint(0, 200))] for _ in range(300)]
    pieces = Dataset.from_dict({"input_ids": seqs, "num_tokens": [len(s) for s in seqs]})
    total = sum(len(s) + 2 for s in seqs)
    for block_size in (5, 64, 333):
        reference, ref_dropped = pack_sequences(seqs, block_size, 1, 2)
        packed, dropped = pack_dataset(pieces, block_size, 1, 2, batch_size=17)
        rows = [list(r) for r in packed["input_ids"]]
        assert rows == reference
        assert all(len(r) == block_size for r in rows)  # no padding, no short block
        assert dropped == ref_dropped == total % block_size < block_size
        assert len(rows) * block_size + dropped == total


# --- sources, hashing, splits -------------------------------------------------------

def test_split_abc_tunes_keeps_file_header():
    text = "%abc-2.1\nL:1/8\n\nX:1\nT:a\nK:C\nCDE|\n\nX:7\nT:b\nK:G\nGAB|\n"
    tunes = split_abc_tunes(text)
    assert [n for n, _ in tunes] == ["1", "7"]
    assert all(t.startswith("L:1/8") for _, t in tunes)
    assert "T:b" in tunes[1][1] and "T:a" not in tunes[1][1]


def test_builtin_corpus_lists_about_13000_tunes():
    items = list_source_items("builtin")
    assert 12_000 < len(items) < 14_000
    assert len({i["source_id"] for i in items}) == len(items)
    assert all(i["abc"].lstrip().startswith(("X:", "%", "L:", "M:", "I:")) or "X:" in i["abc"] for i in items[:50])


def test_missing_source_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="builtin"):
        list_source_items(tmp_path / "nope")


def test_assign_split_is_deterministic_and_proportional():
    hashes = [f"{i:040x}" for i in range(20_000)]
    splits = [assign_split(h, 0.1, 0.05, seed=3) for h in hashes]
    assert splits == [assign_split(h, 0.1, 0.05, seed=3) for h in hashes]
    assert abs(splits.count("validation") / len(splits) - 0.10) < 0.01
    assert abs(splits.count("test") / len(splits) - 0.05) < 0.01
    assert splits != [assign_split(h, 0.1, 0.05, seed=4) for h in hashes]


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="val-fraction"):
        DataArguments(source="builtin", output="x", val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="block-size"):
        DataArguments(source="builtin", output="x", block_size=1)


# --- the whole preparation ----------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory, pop909_files, make_corpus):
    root = tmp_path_factory.mktemp("prep")
    expected = make_corpus(root / "corpus", pop909_files)
    args = DataArguments(source=str(root / "corpus"), output=str(root / "out"), block_size=128, num_proc=2,
                         val_fraction=0.25, test_fraction=0.25, augment_transpose=1, seed=0)
    stats = prepare_dataset(args, command_line="test")
    manifest = [json.loads(line) for line in (root / "out" / "manifest.jsonl").read_text().splitlines()]
    return root / "out", stats, manifest, expected


def test_manifest_accounts_for_every_input_with_reasons(prepared):
    out, stats, manifest, expected = prepared
    by_id = {r["source_id"]: r for r in manifest}
    assert set(by_id) == set(expected)
    for source_id, reason in expected.items():
        row = by_id[source_id]
        assert row["status"] == ("skipped" if reason else "kept"), (source_id, row)
        assert row["reason"] == reason, (source_id, row)
        assert row["reason"] == "" or row["reason"] in SKIP_REASONS
        assert row["status"] == "kept" or row["message"]
    assert stats["items_seen"] == len(expected) == stats["items_kept"] + stats["items_skipped"]
    assert stats["skipped_by_reason"] == {"corrupt": 1, "duplicate": 1, "no_notes": 1, "not_midi": 1,
                                       "truncated": 1}
    assert "same content as 001.mid" in by_id["nested/deeper/same_song_other_name.MID"]["message"]


def test_splits_share_no_piece_and_augment_train_only(prepared):
    out, stats, manifest, _ = prepared
    kept = [r for r in manifest if r["status"] == "kept"]
    hashes = {s: {r["content_hash"] for r in kept if r["split"] == s} for s in ("train", "validation", "test")}
    assert not (hashes["train"] & hashes["validation"]) and not (hashes["train"] & hashes["test"])
    assert not (hashes["validation"] & hashes["test"])
    assert all(stats["splits"][s]["pieces"] >= 1 for s in hashes)
    sp = stats["splits"]
    assert sp["train"]["sequences_with_augmentation"] > sp["train"]["pieces"]  # +-1 semitone copies
    for s in ("validation", "test"):
        assert sp[s]["sequences_with_augmentation"] == sp[s]["pieces"]


def test_saved_dataset_blocks_and_stats(prepared):
    out, stats, _, _ = prepared
    ds = load_from_disk(str(out))
    assert set(ds) == {"train", "validation", "test"}
    for split, d in ds.items():
        ids = np.asarray(d["input_ids"])
        assert ids.shape == (stats["splits"][split]["blocks"], 128)
        s = stats["splits"][split]
        # every piece contributes its tokens plus BOS and EOS; only the last partial block goes
        total = s["tokens"] + 2 * s["sequences_with_augmentation"]
        assert s["dropped_tokens"] == total - len(d) * 128 and 0 <= s["dropped_tokens"] < 128
        assert (ids == 1).sum() >= 1 and ids.max() < stats["vocab_size"]
    assert stats["vocab_size"] == 518 and stats["tokenization"] == "REMI"
    assert (out / "tokenizer.json").is_file() and not (out / "_work").exists()
    assert stats["splits"]["train"]["tokens_per_note"] > 1


def test_bpe_is_trained_and_used(tmp_path, pop909_files):
    (tmp_path / "c").mkdir()
    for p in pop909_files[:6]:
        (tmp_path / "c" / p.name).write_bytes(p.read_bytes())
    args = DataArguments(source=str(tmp_path / "c"), output=str(tmp_path / "o"), block_size=64, num_proc=1,
                         val_fraction=0.2, test_fraction=0.2, bpe_vocab_size=700, seed=3)
    stats = prepare_dataset(args)
    assert stats["vocab_size"] == 700
    ds = load_from_disk(str(tmp_path / "o"))
    assert max(int(np.max(d["input_ids"])) for d in ds.values() if len(d)) >= 518  # learned merges appear
    manifest = [json.loads(line) for line in (tmp_path / "o" / "manifest.jsonl").read_text().splitlines()]
    base_tokens = sum(r["num_tokens"] for r in manifest if r["split"] == "train")
    assert stats["splits"]["train"]["tokens"] < base_tokens  # BPE compresses the sequences


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _midi(events: bytes) -> bytes:
    track = events + b"\x00\xff\x2f\x00"
    return (b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0" + b"MTrk" + len(track).to_bytes(4, "big") + track)


@pytest.mark.parametrize("tempo", [b"\x07\xa1\x20", b"\x00\x00\x00"])  # 120 bpm, and 0 us/quarter
def test_absurd_delta_time_is_too_long_even_with_a_broken_tempo(tmp_path, tempo):
    from dataclasses import asdict

    from data.processing import PieceLimits, file_sha1, tokenize_item
    from tokenizer import build_tokenizer, save_tokenizer

    tok_path = save_tokenizer(build_tokenizer(), tmp_path)
    events = (b"\x00\xff\x51\x03" + tempo + b"\x00\x90\x3c\x40" + _vlq(480) + b"\x80\x3c\x40"
              + _vlq(0x0FFFFFFF) + b"\x90\x3e\x40" + _vlq(480) + b"\x80\x3e\x40")
    (tmp_path / "huge.mid").write_bytes(_midi(events))
    result = tokenize_item({"source_id": "huge.mid", "path": str(tmp_path / "huge.mid"), "abc": ""},
                           str(tok_path), file_sha1(tok_path), asdict(PieceLimits()))
    assert (result["status"], result["reason"]) == ("skipped", "too_long"), result
    # the same file without the gap is music and stays
    short = events.replace(_vlq(0x0FFFFFFF), _vlq(480))
    (tmp_path / "short.mid").write_bytes(_midi(short))
    result = tokenize_item({"source_id": "short.mid", "path": str(tmp_path / "short.mid"), "abc": ""},
                           str(tok_path), file_sha1(tok_path), asdict(PieceLimits()))
    assert result["status"] == "kept" and result["num_notes"] == 2 and result["duration_sec"] > 0.5


def _tokenize_file(tmp_path, midi: bytes, **limits):
    from dataclasses import asdict

    from data.processing import PieceLimits, file_sha1, tokenize_item
    from tokenizer import build_tokenizer, save_tokenizer

    tok_path = save_tokenizer(build_tokenizer(), tmp_path)
    (tmp_path / "piece.mid").write_bytes(midi)
    return tokenize_item({"source_id": "piece.mid", "path": str(tmp_path / "piece.mid"), "abc": ""},
                         str(tok_path), file_sha1(tok_path), asdict(PieceLimits(**limits)))


def _scale(num_notes: int, gap_ticks: int = 0) -> bytes:
    """120 bpm, 480 ticks per quarter: ``num_notes`` quarter notes C4, D4, ...; an optional
    silence of ``gap_ticks`` before the last one."""
    events = b"\x00\xff\x51\x03\x07\xa1\x20"
    for i in range(num_notes):
        delta = gap_ticks if (gap_ticks and i == num_notes - 1) else 0
        events += _vlq(delta) + bytes([0x90, 60 + i, 0x40]) + _vlq(480) + bytes([0x80, 60 + i, 0x40])
    return _midi(events)


def test_over_limit_pieces_are_skipped_by_default_or_truncated_on_request(tmp_path):
    skipped = _tokenize_file(tmp_path, _scale(10), max_notes=4)
    assert (skipped["status"], skipped["reason"]) == ("skipped", "too_long")
    cut = _tokenize_file(tmp_path, _scale(10), max_notes=4, over_limit="truncate")
    assert cut["status"] == "kept" and cut["num_notes"] == 4
    assert cut["message"] == "cut to the first 4 of 10 notes (max_notes)"
    whole4 = _tokenize_file(tmp_path, _scale(4))
    assert cut["input_ids"] == whole4["input_ids"]  # the beginning, exactly as a 4-note file

    # 3 quarters at 120 bpm (1.5 s), then a note after a 100,000-quarter silence
    long = _scale(4, gap_ticks=480 * 100_000)
    assert _tokenize_file(tmp_path, long)["reason"] == "too_long"
    cut = _tokenize_file(tmp_path, long, max_duration_sec=10, over_limit="truncate")
    assert cut["status"] == "kept" and cut["num_notes"] == 3, cut
    assert cut["duration_sec"] <= 10 and "max_duration_sec" in cut["message"]


def test_truncation_cuts_at_the_time_limit_and_shortens_crossing_notes():
    from symusic import Note, Pedal, Score, Tempo, Track

    from data.processing import PieceLimits, check_score, tick_at_seconds

    score = Score(480)
    score.tempos.append(Tempo(0, 120.0))       # 0.5 s per quarter for 4 quarters (2 s) ...
    score.tempos.append(Tempo(1920, 60.0))     # ... then 1 s per quarter
    track = Track(program=0)
    track.notes.append(Note(0, 1920 * 3, 60, 80))  # a long note across the cut
    track.notes.append(Note(1920 + 960, 240, 64, 80))  # starts at 4 s: after the cut
    track.pedals.append(Pedal(0, 1920 * 4))  # a sustain pedal held across the cut
    score.tracks.append(track)
    # 3 s = 2 s at 120 bpm + one quarter at 60 bpm -> tick 1920 + 480
    assert tick_at_seconds(score, 3.0, max_tempo_qpm=250.0) == 2400
    cut, num_notes, seconds, note = check_score(
        score, PieceLimits(max_duration_sec=3.0, over_limit="truncate"), max_tempo_qpm=250.0)
    assert num_notes == 1 and cut.tracks[0].notes[0].end == 2400 and seconds == pytest.approx(3.0)
    assert cut.tracks[0].pedals[0].end == 2400 and cut.end() == 2400
    assert "first 3 s" in note


def test_type0_file_using_all_16_channels_keeps_every_instrument(tmp_path):
    from tokenizer import build_tokenizer

    on = off = b""
    for ch in range(16):
        if ch != 9:  # channel 10 is drums
            on += b"\x00" + bytes([0xC0 | ch, ch * 8])
        on += b"\x00" + bytes([0x90 | ch, 40 + 3 * ch, 0x50])
        off += (_vlq(480) if ch == 0 else b"\x00") + bytes([0x80 | ch, 40 + 3 * ch, 0x40])
    result = _tokenize_file(tmp_path, _midi(on + off))  # _midi writes a type-0 header
    assert result["status"] == "kept" and result["num_notes"] == 16, result
    decoded = build_tokenizer().decode(result["input_ids"])
    programs = {(t.program, t.is_drum) for t in decoded.tracks for _ in t.notes}
    assert decoded.note_num() == 16 and len(programs) == 16 and (0, True) in programs


def test_tempo_changes_with_few_notes_are_music(tmp_path):
    tempo = b"\xff\x51\x03"
    events = (b"\x00" + tempo + b"\x07\xa1\x20" + b"\x00\x90\x3c\x40" + _vlq(960) + b"\x80\x3c\x40"
              + b"\x00" + tempo + b"\x0f\x42\x40" + b"\x00\x90\x40\x40" + _vlq(960) + b"\x80\x40\x40")
    result = _tokenize_file(tmp_path, _midi(events))
    assert result["status"] == "kept" and result["num_notes"] == 2
    assert result["duration_sec"] == pytest.approx(1.0 + 2.0)  # two beats at 120 bpm, two at 60 bpm
    from tokenizer import build_tokenizer

    tok = build_tokenizer()
    names = {i: name for name, i in tok.vocab.items()}
    tempo_tokens = [names[i] for i in result["input_ids"] if names[i].startswith("Tempo_")]
    assert len(set(tempo_tokens)) == 2  # the change survives tokenization


def _snapshot(folder) -> dict[str, str]:
    """Every file under ``folder`` except the resume state (_work): relative path -> SHA-1."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and "_work" not in p.relative_to(folder).parts}


def test_a_failed_rerun_leaves_a_finished_dataset_as_it_was(prepared, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(prepared[0], out)
    before = _snapshot(out)
    assert "manifest.jsonl" in before and "stats.json" in before and "train/dataset_info.json" in before
    args = DataArguments(source=str(prepared[0].parent / "corpus"), output=str(out), block_size=64, num_proc=1,
                         val_fraction=0.001, test_fraction=0.25, seed=0)  # 0.1 % of 10 pieces: none
    with pytest.raises(ValueError, match=r"Split\(s\) \['validation'\] got no piece"):
        prepare_dataset(args)
    assert _snapshot(out) == before  # the manifest of the failed run went to _work/result, not over this one
    assert (out / "_work" / "result" / "manifest.jsonl").is_file()


def test_a_replacement_killed_halfway_is_rolled_back(prepared, tmp_path):
    """The state a kill leaves inside _commit_outputs: old stats and train split moved aside,
    a new train split moved in; the next run first puts the old dataset back."""
    from data.pipeline import _roll_back_interrupted_commit

    out = tmp_path / "out"
    shutil.copytree(prepared[0], out)
    before = _snapshot(out)
    previous = out / "_work" / "previous"
    previous.mkdir(parents=True)
    for name in ("stats.json", "manifest.jsonl", "train"):
        os.replace(out / name, previous / name)
    (out / "train").mkdir()
    (out / "train" / "data-00000-of-00001.arrow").write_bytes(b"half of a new dataset")
    _roll_back_interrupted_commit(out)
    assert _snapshot(out) == before and not previous.exists()


# --- near-duplicates ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def near_duplicate_corpus(tmp_path_factory):
    """A tune, its melody-only part, its chords-only part, a copy transposed up a minor third,
    and eight unrelated songs (all from POP909: MELODY, BRIDGE and PIANO tracks)."""
    from symusic import Score
    from tests_helpers import POP909

    songs = sorted(POP909.glob("*.mid"))
    root = tmp_path_factory.mktemp("near") / "corpus"
    (root / "parts").mkdir(parents=True)
    tune = Score(str(songs[20]))
    tune.dump_midi(str(root / "a_tune.mid"))
    melody, chords, transposed = tune.copy(), tune.copy(), tune.copy()
    melody.tracks = [t for t in melody.tracks if t.name == "MELODY"]
    chords.tracks = [t for t in chords.tracks if t.name == "PIANO"]
    for track in transposed.tracks:
        track.shift_pitch(3, inplace=True)
    melody.dump_midi(str(root / "parts" / "a_tune_melody.mid"))
    chords.dump_midi(str(root / "parts" / "a_tune_chords.mid"))
    transposed.dump_midi(str(root / "a_tune_up3.mid"))
    for song in songs[30:38]:
        shutil.copy(song, root / f"other_{song.name}")
    return root


GROUP = ["a_tune.mid", "a_tune_up3.mid", "parts/a_tune_chords.mid", "parts/a_tune_melody.mid"]


def _prepare(corpus, out, **kw) -> tuple[dict, dict[str, dict]]:
    args = DataArguments(source=str(corpus), output=str(out), block_size=64, num_proc=1, val_fraction=0.3,
                         test_fraction=0.3, piece_timeout_sec=0, **kw)
    stats = prepare_dataset(args)
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return stats, {r["source_id"]: r for r in rows}


def test_near_duplicates_form_one_group_in_one_split(near_duplicate_corpus, tmp_path):
    for seed in range(4):
        stats, rows = _prepare(near_duplicate_corpus, tmp_path / f"s{seed}", seed=seed)
        assert {rows[m]["group"] for m in GROUP} == {"a_tune.mid"}, seed
        assert len({rows[m]["split"] for m in GROUP}) == 1, seed  # the group never spans two splits
        assert all(r["group"] is None for sid, r in rows.items() if sid.startswith("other_")), seed
        assert stats["near_duplicates"] == {"mode": "group", "threshold": 0.5, "groups": 1, "pieces_in_groups": 4,
                                            "largest_group": 4, "dropped": 0}
        assert stats["items_kept"] == 12 and all(r["status"] == "kept" for r in rows.values())
    # split by each piece's own hash, as exact deduplication did, these seeds scatter the group
    own = [{assign_split(rows[m]["content_hash"], 0.3, 0.3, seed) for m in GROUP} for seed in range(4)]
    assert any(len(splits) > 1 for splits in own)


def test_near_duplicates_can_be_dropped_or_excluded(near_duplicate_corpus, tmp_path):
    stats, rows = _prepare(near_duplicate_corpus, tmp_path / "drop", near_duplicates="drop")
    assert rows["a_tune.mid"]["status"] == "kept"
    for member in GROUP[1:]:
        assert rows[member]["reason"] == "near_duplicate" and "near-duplicate of a_tune.mid" in rows[member]["message"]
    assert stats["near_duplicates"]["dropped"] == 3 and stats["items_kept"] == 9
    assert stats["skipped_by_reason"] == {"near_duplicate": 3}

    stats, rows = _prepare(near_duplicate_corpus, tmp_path / "exclude", exclude=["parts"])
    assert {rows[m]["reason"] for m in GROUP[2:]} == {"excluded"} and stats["skipped_by_reason"] == {"excluded": 2}
    assert stats["near_duplicates"]["pieces_in_groups"] == 2 and stats["items_seen"] == 12

    stats, rows = _prepare(near_duplicate_corpus, tmp_path / "off", near_duplicates="off")
    assert stats["near_duplicates"]["groups"] == 0 and all(r["group"] is None for r in rows.values())


def test_exclude_patterns_match_paths_and_folder_names():
    from data.pipeline import is_excluded

    assert is_excluded("nottingham/melody/jigs.mid", ["melody"])  # a folder name anywhere on the path
    assert is_excluded("a/b_live.mid", ["*_live.mid"]) and is_excluded("a/b_live.mid", ["a/*"])
    assert is_excluded("tunes.abc#X:3", ["tunes.abc"]) and not is_excluded("tunes.abc#X:3", ["melody"])
    assert not is_excluded("melody.mid", ["melody"])  # a file name is matched as a whole path only


def test_transposed_copies_come_from_train_pieces_only(prepared):
    """The train split holds its own pieces plus the transposed copies of exactly those pieces:
    copies made here from the manifest's train rows account for every train token, so a copy of
    a validation or test piece in train (a leak) would break the sums."""
    from data.processing import file_sha1, transpose_item

    out, stats, manifest, _ = prepared
    items = {i["source_id"]: i for i in list_source_items(out.parent / "corpus")}
    for split in ("train", "validation", "test"):
        rows = [r for r in manifest if r["split"] == split]
        copies = {"num_tokens": []}
        if split == "train":
            batch = {k: [items[r["source_id"]][k] for r in rows] for k in ("source_id", "path", "abc")}
            copies = transpose_item(batch, str(out / "tokenizer.json"), file_sha1(out / "tokenizer.json"), max_shift=1)
        s = stats["splits"][split]
        assert s["pieces"] == len(rows)
        assert s["sequences_with_augmentation"] == len(rows) + len(copies["num_tokens"]), split
        assert s["tokens"] == sum(r["num_tokens"] for r in rows) + sum(copies["num_tokens"]), split
    assert stats["augmented_sequences"] > 0


def test_transposition_makes_every_shift_that_fits(pop909_files, tmp_path):
    """Shifts -K..+K except 0, each only while every pitch stays in the tokenizer's range."""
    from data.processing import file_sha1, transpose_item
    from tokenizer import build_tokenizer, save_tokenizer

    tok = build_tokenizer()
    path = save_tokenizer(tok, tmp_path)
    item = {"source_id": ["a"], "path": [str(pop909_files[0])], "abc": [""]}
    assert transpose_item(item, str(path), file_sha1(path), max_shift=2)["transpose"] == [-2, -1, 1, 2]
    low, high = tok.config.pitch_range  # inclusive low, exclusive high
    from symusic import Note, Score, Track

    score = Score(96)
    track = Track(name="high", program=0)
    for k, pitch in enumerate((60, 64, 67, high - 2)):  # the top note is 2 below the range's end
        track.notes.append(Note(k * 96, 90, pitch, 80))
    score.tracks.append(track)
    score.dump_midi(str(tmp_path / "high.mid"))
    high_item = {"source_id": ["b"], "path": [str(tmp_path / "high.mid")], "abc": [""]}
    # up 1 ends on high - 1, inside; up 2 would end on high, outside the range
    assert transpose_item(high_item, str(path), file_sha1(path), max_shift=2)["transpose"] == [-2, -1, 1]
    assert low < 60 - 2


def test_drum_tracks_are_not_fingerprinted():
    """Two pieces that share only a drum groove are not near-duplicates: drum 'pitches' name
    instruments, and grooves repeat across unrelated songs."""
    from symusic import Note, Score, Track

    from data.near_duplicates import track_minhashes, track_shingles

    def piece(drums: bool, melody_seed: int) -> Score:
        score = Score(96)
        groove = Track(name="drums", program=0, is_drum=True)
        for k in range(64):
            groove.notes.append(Note(k * 48, 24, [36, 38, 42, 46][k % 4] + (k % 3), 90))
        lead = Track(name="lead", program=0)
        rng = np.random.default_rng(melody_seed)
        for k in range(32):
            lead.notes.append(Note(k * 96, 90, int(rng.integers(60, 84)), 80))
        score.tracks.extend([groove, lead] if drums else [lead])
        return score

    with_drums = track_shingles(piece(True, 1))
    assert len(with_drums) == 1 and np.array_equal(with_drums[0], track_shingles(piece(False, 1))[0])
    assert len(track_minhashes(piece(True, 2))) == 1  # the lead only


# --- the prepared dataset, read back ---------------------------------------------------

def test_prepared_dataset_reader_agrees_with_the_blocks(tiny_setup, other_datasets, tmp_path):
    from data.prepared import dataset_fingerprint, read_prepared_dataset
    from tokenizer import load_tokenizer, special_token_ids

    root = tiny_setup[0]
    for path, block_size in ((root / "data", 64), (other_datasets["block_size"], 32)):
        prepared = read_prepared_dataset(path)
        blocks = load_from_disk(str(path))
        tok = load_tokenizer(path)
        assert prepared.block_size == block_size == len(blocks["train"][0]["input_ids"])
        assert prepared.blocks == {split: len(blocks[split]) for split in ("train", "validation", "test")}
        assert prepared.tokens("train") == sum(len(row) for row in blocks["train"]["input_ids"])
        assert prepared.vocab_size == len(tok) and prepared.special_ids == special_token_ids(tok)
        assert prepared.fingerprint == dataset_fingerprint(path)
        assert len(prepared.load()["validation"]) == prepared.blocks["validation"]
    assert read_prepared_dataset(root / "data").fingerprint != read_prepared_dataset(
        other_datasets["block_size"]).fingerprint
    with pytest.raises(FileNotFoundError, match="prepare_data.py --source builtin --output"):
        read_prepared_dataset(tmp_path / "none")
    # stats.json of one dataset beside the blocks of another: refused when the blocks are opened
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "data", mixed)
    shutil.copy(other_datasets["block_size"] / "stats.json", mixed / "stats.json")
    with pytest.raises(ValueError, match="blocks of 64 tokens, but stats.json says .* of 32; prepare it again"):
        read_prepared_dataset(mixed).load()
    stats = json.loads((mixed / "stats.json").read_text())
    del stats["special_token_ids"]
    (mixed / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(ValueError, match="no usable 'special_token_ids'.*prepare the dataset again"):
        read_prepared_dataset(mixed)
