from __future__ import annotations

import json

import pytest
from symusic import Score

from configs import TOKENIZER_CONFIG_DIR
from tokenizer import (
    build_tokenizer,
    load_tokenizer,
    load_tokenizer_spec,
    save_tokenizer,
    special_token_ids,
)


def test_default_is_remi_with_programs_tempos_time_signatures():
    tok = build_tokenizer()
    assert type(tok).__name__ == "REMI"
    assert tok.config.use_programs and tok.config.use_tempos and tok.config.use_time_signatures
    assert special_token_ids(tok) == {"pad": 0, "bos": 1, "eos": 2}
    assert tok.config.beat_res == {(0, 4): 8, (4, 12): 4}


@pytest.mark.parametrize("name,cls", [("tsd.yaml", "TSD"), ("midilike.yaml", "MIDILike")])
def test_other_schemes_from_config_files(name, cls):
    tok = build_tokenizer(TOKENIZER_CONFIG_DIR / name)
    assert type(tok).__name__ == cls


def test_misspelled_config_key_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tokenization: REMI\nconfig:\n  use_program: true\n")
    with pytest.raises(ValueError, match="use_program"):
        load_tokenizer_spec(path)


def test_multi_vocabulary_scheme_is_refused(tmp_path):
    path = tmp_path / "cp.yaml"
    path.write_text("tokenization: CPWord\nconfig:\n  use_programs: true\n")
    with pytest.raises(ValueError, match="vocabularies"):
        build_tokenizer(path)


def test_unknown_scheme(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("tokenization: NotAScheme\n")
    with pytest.raises(ValueError, match="MidiTok tokenizer class"):
        load_tokenizer_spec(path)


def test_save_load_round_trip(tmp_path):
    tok = build_tokenizer(TOKENIZER_CONFIG_DIR / "tsd.yaml")
    path = save_tokenizer(tok, tmp_path)
    assert json.loads(path.read_text())["tokenization"] == "TSD"
    again = load_tokenizer(tmp_path)
    assert type(again).__name__ == "TSD" and again.vocab == tok.vocab
    with pytest.raises(FileNotFoundError, match="prepare_data.py"):
        load_tokenizer(tmp_path / "nowhere")


def test_tokens_midi_tokens_is_stable(pop909_files):
    tok = build_tokenizer()
    for path in pop909_files[:3]:
        score = Score(path)
        ids = tok.encode(score).ids
        decoded = tok.decode(ids)
        assert decoded.note_num() == tok.preprocess_score(score).note_num()
        assert tok.encode(decoded).ids == ids
