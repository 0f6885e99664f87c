"""Sample token sequences from a trained model and decode them into MIDI.

The model and the tokenizer come from one place: a run folder written by
``scripts/train.py`` (``config.json``, ``model.safetensors``, ``tokenizer.json``) or a Hub
repository pushed by ``scripts/push_to_hub.py``. Sampling uses ``model.generate`` (ancestral
sampling with temperature, top-k and nucleus/top-p filtering, Holtzman et al. 2020), and is
reproducible: the same seed, settings and device give the same tokens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import miditok
import torch
from miditok.utils import get_bars_ticks
from symusic import Score
from transformers import AutoModelForCausalLM, PreTrainedModel, set_seed
from transformers.utils import logging as hf_logging

from configs.sampling import SamplingArguments
from data.processing import SkipPiece, cut_score, encode_score, load_score
from tokenizer import TOKENIZER_FILENAME, load_tokenizer, special_token_ids


def load_model_and_tokenizer(source: str | Path, *, device: str | None = None,
                             revision: str | None = None) -> tuple[PreTrainedModel, miditok.MusicTokenizer]:
    """Load a trained model and the tokenizer it was trained with.

    Args:
        source: a run folder (or any folder with ``config.json``, the weights and
            ``tokenizer.json``), or a Hub model id ``USER/NAME``.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available.
        revision: Hub branch, tag or commit (Hub ids only).

    Returns:
        ``(model, tokenizer)``, the model in eval mode on ``device``.

    Raises:
        FileNotFoundError: a local folder without a model or a tokenizer; says what to run.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this PyTorch sees no CUDA GPU; use --device cpu (or leave it out).")
    local = Path(source)
    if not local.exists() and _looks_local(str(source)):
        raise FileNotFoundError(f"No run folder at {source}. Pass a run folder written by scripts/train.py "
                                "(e.g. runs/demo/demo3) or a Hub id USER/NAME.")
    if local.exists():
        if not (local / "config.json").is_file():
            msg = (f"{local} holds no trained model (no config.json). Pass a run folder written by "
                   "scripts/train.py (e.g. runs/demo/demo3) or a Hub id USER/NAME.")
            raise FileNotFoundError(msg)
        tok = load_tokenizer(local)
    else:
        from huggingface_hub import hf_hub_download

        tok = load_tokenizer(hf_hub_download(str(source), TOKENIZER_FILENAME, revision=revision))
    model = AutoModelForCausalLM.from_pretrained(str(source), revision=None if local.exists() else revision)
    if model.config.vocab_size != tok.vocab_size:
        msg = (f"The model's vocabulary ({model.config.vocab_size}) differs from the tokenizer's "
               f"({tok.vocab_size}) at {source}: the tokenizer.json there is not the one it was trained with.")
        raise ValueError(msg)
    return model.to(device).eval(), tok


def _looks_local(source: str) -> bool:
    """A path rather than a Hub id: absolute, relative with ./ ../ ~, several parts, or its parent exists."""
    parts = source.split("/")
    return source.startswith(("/", ".", "~")) or len(parts) != 2 or Path(parts[0]).is_dir()


def prompt_ids(tok: miditok.MusicTokenizer, midi_path: str | Path, num_bars: int) -> list[int]:
    """Token ids of the first ``num_bars`` bars of a MIDI file, as the model saw pieces.

    The piece is read, cut at the start of bar ``num_bars + 1`` (bars from its time
    signatures, 4/4 when it has none; notes crossing the cut are shortened) and encoded like
    the training data, then ``BOS`` is put in front (``data.packing`` wraps every piece in
    BOS ... EOS).

    Args:
        tok: the model's tokenizer.
        midi_path: a .mid file.
        num_bars: bars to keep (>= 1).

    Returns:
        ``[BOS, ids...]`` (BPE ids when the tokenizer has BPE).

    Raises:
        ValueError: ``num_bars < 1``, an unreadable file, or no notes in those bars.
    """
    if num_bars < 1:
        raise ValueError(f"--prompt-bars must be >= 1; got {num_bars}.")
    try:
        score = load_score({"path": str(midi_path)})
        bar_ticks = get_bars_ticks(score, only_notes_onsets=True)
        if len(bar_ticks) > num_bars:
            score = cut_score(score, bar_ticks[num_bars])
        ids = encode_score(tok, score)
    except (SkipPiece, OSError) as err:
        reason = f"{err.reason}: {err}" if isinstance(err, SkipPiece) else str(err)
        raise ValueError(f"Cannot use {midi_path} as a prompt ({reason}). Pass a readable MIDI file.") from err
    if score.note_num() == 0:
        raise ValueError(f"The first {num_bars} bars of {midi_path} hold no notes; raise --prompt-bars "
                         "or pick another prompt file.")
    return [special_token_ids(tok)["bos"], *ids]


def sample_ids(model: PreTrainedModel, tok: miditok.MusicTokenizer, *, num_samples: int, seed: int,
               prompt: list[int] | None = None, sampling: SamplingArguments | None = None,
               batch_size: int = 16) -> list[list[int]]:
    """Sample ``num_samples`` continuations of ``prompt`` (default: ``[BOS]``).

    Sampling is ancestral, with the ``GenerationConfig`` of `configs.sampling.SamplingArguments`
    (whatever the model's own generation_config says). ``transformers.set_seed(seed)`` is
    called first, so the result depends only on the arguments (and the device: CPU and CUDA
    kernels differ).

    Args:
        model: causal LM (e.g. from :func:`load_model_and_tokenizer`).
        tok: its tokenizer (for the BOS/EOS/PAD ids).
        num_samples: sequences to return (>= 1).
        seed: random seed.
        prompt: ids to continue, starting with BOS (see :func:`prompt_ids`).
        sampling: the settings (default: `SamplingArguments()`, the model's own distribution
            up to the end of its context).
        batch_size: sequences generated at once.

    Returns:
        ``num_samples`` lists of new token ids (prompt excluded, EOS and what follows it
        removed).

    Raises:
        ValueError: a count out of range, or a prompt and length that do not fit the model's
            context of ``n_positions`` tokens.
    """
    special = special_token_ids(tok)
    prompt = list(prompt) if prompt else [special["bos"]]
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1; got {num_samples} and {batch_size}.")
    config = (sampling or SamplingArguments()).generation_config(
        context=model.config.n_positions, prompt_tokens=len(prompt), eos_token_id=special["eos"],
        pad_token_id=special["pad"])
    set_seed(seed)
    device = model.device
    out: list[list[int]] = []
    while len(out) < num_samples:
        n = min(batch_size, num_samples - len(out))
        input_ids = torch.tensor([prompt] * n, device=device)
        verbosity = hf_logging.get_verbosity()
        # generate pads finished rows with PAD and then warns that the input "may be padded"
        hf_logging.set_verbosity_error()
        try:
            with torch.no_grad():
                generated = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                           generation_config=config)
        finally:
            hf_logging.set_verbosity(verbosity)
        for row in generated[:, len(prompt):].tolist():
            out.append(row[:row.index(special["eos"])] if special["eos"] in row else row)
    return out


@dataclass
class SampleReport:
    """What became of one sampled sequence.

    Attributes:
        index: sample number.
        num_tokens: new tokens sampled (prompt excluded, EOS excluded).
        ended_with_eos: the model closed the piece itself (else it hit max_new_tokens).
        decoded: MidiTok turned the tokens into a Score without error.
        error: the decoding error, else "".
        num_notes: notes in the decoded piece (prompt included).
        seconds: its length in seconds, following its tempo changes.
        grammar_error_rate: errors per new token by MidiTok's ``tokens_errors`` (token-type
            successions, notes repeated at one position, time going back), special tokens
            other than EOS counted as errors; 0 is a well-formed sequence.
        path: the .mid file written, or "" when nothing was written.
    """

    index: int
    num_tokens: int
    ended_with_eos: bool
    decoded: bool
    error: str
    num_notes: int
    seconds: float
    grammar_error_rate: float
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nan -> None)."""
        row = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _special_ids(tok: miditok.MusicTokenizer) -> set[int]:
    """Ids of every special token (PAD, BOS, EOS, MASK, ...)."""
    return {tok[t] for t in tok.special_tokens}


def grammar_error_rate(tok: miditok.MusicTokenizer, prompt: list[int], new_ids: list[int]) -> float:
    """Share of the new tokens that break the tokenizer's grammar.

    MidiTok's ``tokens_errors`` is run on prompt + new tokens (so the first new token is
    judged in context) with special tokens removed; its error count is divided by the
    number of new tokens, and each special token (BOS, PAD, MASK) among the new tokens
    counts as one more error.

    Returns:
        A value in [0, 1] (0 when there are no new tokens).
    """
    if not new_ids:
        return 0.0
    specials = _special_ids(tok)
    stray = sum(1 for i in new_ids if i in specials)
    body = [i for i in [*prompt, *new_ids] if i not in specials]
    errors = tok.tokens_errors(body) * len(body) if body else 0.0
    return min(1.0, (round(errors) + stray) / len(new_ids))


def decode_sample(tok: miditok.MusicTokenizer, prompt: list[int], new_ids: list[int]) -> Score:
    """The Score of prompt + new tokens, special tokens left out.

    Raises:
        Exception: whatever MidiTok raises on a sequence it cannot decode.
    """
    specials = _special_ids(tok)
    return tok.decode([i for i in [*prompt, *new_ids] if i not in specials])


def score_seconds(score: Score) -> float:
    """Length of a Score in seconds (its end, following the tempo map); 0 when empty."""
    return float(score.to("second").end()) if score.note_num() else 0.0
