"""Build, train (BPE), save and load MidiTok tokenizers.

The tokenization scheme and its ``miditok.TokenizerConfig`` come from a YAML file
(default: ``configs/tokenizer/remi.yaml``), so REMI, TSD, MIDILike and the other
single-stream MidiTok schemes work without code changes. The tokenizer a dataset was
made with is saved as ``tokenizer.json`` beside it; training, generation and analysis
load it from there (one source of truth).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import miditok
import yaml

from configs import DEFAULT_TOKENIZER_CONFIG

TOKENIZER_FILENAME = "tokenizer.json"
# TokenizerConfig arguments that MidiTok expects as tuples, and beat_res whose keys are
# (start_beat, end_beat) tuples written "0_4" in YAML/JSON as MidiTok itself does.
_TUPLE_KEYS = {"pitch_range", "tempo_range", "pitch_bend_range", "drums_pitch_range"}


def load_tokenizer_spec(path: str | Path | None = None) -> tuple[str, dict[str, Any]]:
    """Read a tokenizer YAML file into a MidiTok class name and TokenizerConfig kwargs.

    Args:
        path: YAML file with keys ``tokenization`` (a MidiTok class name such as
            ``REMI``, ``TSD``, ``MIDILike``) and ``config`` (``TokenizerConfig``
            arguments). ``None`` uses ``configs/tokenizer/remi.yaml``.

    Returns:
        ``(tokenization, config_kwargs)`` ready for :func:`build_tokenizer`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown tokenization, unknown ``TokenizerConfig`` keys (MidiTok would
            silently keep a misspelled key), or a malformed file.
    """
    path = Path(path) if path is not None else DEFAULT_TOKENIZER_CONFIG
    if not path.is_file():
        msg = (f"Tokenizer config {path} not found. Pass --tokenizer-config with one of "
               f"{sorted(p.name for p in DEFAULT_TOKENIZER_CONFIG.parent.glob('*.yaml'))} "
               "from configs/tokenizer/ or your own YAML file.")
        raise FileNotFoundError(msg)
    spec = yaml.safe_load(path.read_text()) or {}
    unknown_top = set(spec) - {"tokenization", "config"}
    if unknown_top:
        msg = f"{path}: unknown keys {sorted(unknown_top)}; expected 'tokenization' and 'config'."
        raise ValueError(msg)
    tokenization = spec.get("tokenization", "REMI")
    _tokenizer_class(tokenization)  # validate early
    kwargs = dict(spec.get("config") or {})
    allowed = set(inspect.signature(miditok.TokenizerConfig.__init__).parameters) - {"self", "kwargs"}
    strangers = set(kwargs) - allowed
    if strangers:
        msg = (f"{path}: unknown TokenizerConfig keys {sorted(strangers)}. Allowed keys are the "
               "arguments of miditok.TokenizerConfig, e.g. use_programs, beat_res, pitch_range.")
        raise ValueError(msg)
    for key in _TUPLE_KEYS & set(kwargs):
        kwargs[key] = tuple(kwargs[key])
    if "beat_res" in kwargs:
        kwargs["beat_res"] = {
            tuple(int(x) for x in str(k).split("_")): int(v) for k, v in kwargs["beat_res"].items()
        }
    return tokenization, kwargs


def _tokenizer_class(tokenization: str) -> type[miditok.MusicTokenizer]:
    cls = getattr(miditok, tokenization, None)
    if not (inspect.isclass(cls) and issubclass(cls, miditok.MusicTokenizer)) or cls is miditok.MusicTokenizer:
        msg = (f"Unknown tokenization {tokenization!r}: use a MidiTok tokenizer class name "
               "such as REMI, TSD, MIDILike, Structured.")
        raise ValueError(msg)
    return cls


def build_tokenizer(config_path: str | Path | None = None) -> miditok.MusicTokenizer:
    """Create an untrained MidiTok tokenizer from a YAML config file.

    Args:
        config_path: see :func:`load_tokenizer_spec`; ``None`` gives REMI with programs,
            tempos and time signatures.

    Returns:
        A ``miditok.MusicTokenizer`` producing one flat stream of ids per piece.

    Raises:
        ValueError: the scheme is multi-vocabulary (CPWord, Octuple, MuMIDI: a GPT-2 LM
            needs one id per position) or yields one sequence per track (set
            ``use_programs: true`` and ``one_token_stream_for_programs: true``).
    """
    tokenization, kwargs = load_tokenizer_spec(config_path)
    tok = _tokenizer_class(tokenization)(miditok.TokenizerConfig(**kwargs))
    _check_single_stream(tok, tokenization)
    return tok


def _check_single_stream(tok: miditok.MusicTokenizer, tokenization: str) -> None:
    if tok.is_multi_voc:
        msg = (f"{tokenization} uses several vocabularies (one token per attribute), which a "
               "GPT-2 language model cannot take. Use REMI, TSD, MIDILike or Structured.")
        raise ValueError(msg)
    if not tok.one_token_stream:
        msg = (f"{tokenization} with this config makes one sequence per track; set "
               "use_programs: true and one_token_stream_for_programs: true in the tokenizer YAML.")
        raise ValueError(msg)


def special_token_ids(tok: miditok.MusicTokenizer) -> dict[str, int]:
    """Ids of the PAD, BOS and EOS tokens.

    Raises:
        ValueError: the tokenizer was built without BOS/EOS special tokens.
    """
    try:
        return {"pad": tok.pad_token_id, "bos": tok["BOS_None"], "eos": tok["EOS_None"]}
    except KeyError as err:
        msg = "The tokenizer needs special_tokens PAD, BOS and EOS (see configs/tokenizer/remi.yaml)."
        raise ValueError(msg) from err


def train_bpe(tok: miditok.MusicTokenizer, iterator: Iterable[list[str]], vocab_size: int) -> None:
    """Train BPE in place with ``tokenizers`` through ``MusicTokenizer.train``.

    Args:
        tok: untrained tokenizer.
        iterator: sized iterable yielding, per training piece, its base tokens as byte
            strings, e.g. ``miditok.TokTrainingIterator(tok, train_files)``. Only train
            split pieces belong here.
        vocab_size: target vocabulary size, larger than the base vocabulary.

    Raises:
        ValueError: vocab_size is not larger than the base vocabulary.
    """
    if vocab_size <= len(tok):
        msg = f"--bpe-vocab-size {vocab_size} must exceed the base vocabulary size {len(tok)}."
        raise ValueError(msg)
    tok.train(vocab_size=vocab_size, model="BPE", iterator=iterator)


def save_tokenizer(tok: miditok.MusicTokenizer, directory: str | Path) -> Path:
    """Save the tokenizer as ``<directory>/tokenizer.json`` and return that path."""
    path = Path(directory) / TOKENIZER_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return path


def load_tokenizer(path: str | Path) -> miditok.MusicTokenizer:
    """Load a tokenizer saved by :func:`save_tokenizer`.

    Args:
        path: a ``tokenizer.json`` file, or a folder holding one (a prepared dataset,
            a run folder or a saved model).

    Raises:
        FileNotFoundError: no tokenizer there; says how to make one.
    """
    path = Path(path)
    file = path / TOKENIZER_FILENAME if path.is_dir() else path
    if not file.is_file():
        msg = (f"No {TOKENIZER_FILENAME} at {path}. Prepare a dataset first: "
               "python scripts/prepare_data.py --source builtin --output <dir>")
        raise FileNotFoundError(msg)
    tokenization = json.loads(file.read_text()).get("tokenization", "REMI")
    return _tokenizer_class(tokenization)(params=file)
