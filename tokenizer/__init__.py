"""MIDI <-> tokens with MidiTok: build from a config file, optional BPE, save and load."""

from tokenizer.music_tokenizer import (
    TOKENIZER_FILENAME,
    build_tokenizer,
    load_tokenizer,
    load_tokenizer_spec,
    save_tokenizer,
    special_token_ids,
    train_bpe,
)

__all__ = [
    "TOKENIZER_FILENAME",
    "build_tokenizer",
    "load_tokenizer",
    "load_tokenizer_spec",
    "save_tokenizer",
    "special_token_ids",
    "train_bpe",
]
