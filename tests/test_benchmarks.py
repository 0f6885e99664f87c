"""The benchmark helpers measure what they claim (their figures are printed, never asserted)."""

from __future__ import annotations

from symusic import Score

from benchmarks.data_prep import make_edited_copies, plain_miditok_files_per_sec
from data.processing import content_hash
from tokenizer import build_tokenizer


def test_edited_copies_are_valid_and_all_distinct(tmp_path, pop909_files):
    copies = make_edited_copies(pop909_files[:2], 6, tmp_path / "copies")
    assert len(copies) == 6 and all(p.is_file() for p in copies)
    tok = build_tokenizer()
    hashes = {content_hash(tok.encode(Score(p)).ids) for p in copies}
    originals = {content_hash(tok.encode(Score(p)).ids) for p in pop909_files[:2]}
    assert len(hashes) == 6 and not hashes & originals  # dedup keeps every copy
    source_notes = Score(pop909_files[0]).note_num()
    assert Score(copies[0]).note_num() == source_notes - 1  # one note dropped, nothing else lost


def test_plain_miditok_loop_counts_failures(tmp_path, pop909_files):
    (tmp_path / "bad.mid").write_bytes(b"not midi")
    rate, encoded = plain_miditok_files_per_sec([*pop909_files[:2], tmp_path / "bad.mid"])
    assert encoded == 2 and rate > 0


def test_bare_loop_trains_the_same_model_on_the_same_batch(tiny_setup):
    from benchmarks.training_loop import bare_loop_tokens_per_second

    root, study, sizes = tiny_setup
    row = bare_loop_tokens_per_second(str(sizes["w16"]), str(root / "data"), str(study), steps=3)
    assert row["tokens"] == 3 * 512 and row["tokens_per_second"] > 0  # the study's 512-token batch
    assert 4.0 < row["final_loss"] < 7.0  # about ln(vocab 518) = 6.25 after three steps
