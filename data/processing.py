"""Per-piece work: load a score, check it, tokenize it, hash its musical content.

Each function here takes one item (see ``data.sources``) and never raises for bad
input: a piece that cannot be used comes back with ``status="skipped"``, a ``reason``
from :data:`SKIP_REASONS` and a short ``message``, so one bad file never stops a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from symusic import Score

from data.isolation import IsolatedRunner, die_with_parent
from data.near_duplicates import track_minhashes
from tokenizer import load_tokenizer

# The fixed set of reasons a piece is skipped (documented in the README).
SKIP_REASONS = {
    "not_midi": "not a MIDI file (no MThd header) or an empty file",
    "truncated": "the MIDI parser failed and a chunk runs past the end of the file (cut short, e.g. an "
                 "interrupted download or copy)",
    "corrupt": "the MIDI/ABC parser rejected the file (malformed content)",
    "bad_header": "parsed, but ticks per quarter <= 0 (SMPTE timing is refused by the parser: corrupt)",
    "no_notes": "parsed, but holds no note",
    "too_short": "fewer notes than --min-notes",
    "too_long": "more notes than --max-notes or longer than --max-duration-sec (with --over-limit skip, "
                "the default), or nothing left to keep after truncation",
    "tokenize_error": "the tokenizer raised on this piece",
    "timeout": "no result within --piece-timeout-sec; the worker was killed",
    "crash": "the worker process died on this piece (e.g. a segfault in a parser)",
    "error": "an unexpected Python exception while processing this piece",
    "format_2": "a MIDI format 2 file (independent sequences, not one piece)",
    "duplicate": "same musical content (base token ids) as an earlier piece",
    "near_duplicate": "with --near-duplicates drop: a track shares most of its note n-grams with a track of an "
                      "earlier piece (another part, a transposed or re-rendered copy); see data/near_duplicates.py",
    "excluded": "matched an --exclude pattern (not read)",
}


@dataclass(frozen=True)
class PieceLimits:
    """Bounds on the work one piece may cost.

    Attributes:
        min_notes: pieces with fewer notes are skipped as ``too_short`` (default 1:
            a one-note file is music too).
        max_notes: pieces with more notes are skipped as ``too_long`` (default 200,000,
            about 15x the longest POP909 song; bounds tokenizer time and memory).
        max_duration_sec: pieces lasting longer are skipped as ``too_long`` (default one
            hour; catches absurd delta times that would explode the token count).
        over_limit: what happens to a piece over ``max_notes`` or ``max_duration_sec``:
            ``"skip"`` (default: in web-scraped corpora such pieces are mostly broken
            files) or ``"truncate"`` (keep its beginning: the notes that start before the
            cut, with notes that cross it shortened to end there).
    """

    min_notes: int = 1
    max_notes: int = 200_000
    max_duration_sec: float = 3600.0
    over_limit: str = "skip"

    def __post_init__(self) -> None:
        if not 0 < self.min_notes <= self.max_notes:
            msg = f"Need 0 < min_notes <= max_notes, got {self.min_notes} and {self.max_notes}."
            raise ValueError(msg)
        if self.max_duration_sec <= 0:
            msg = f"max_duration_sec must be positive, got {self.max_duration_sec}."
            raise ValueError(msg)
        if self.over_limit not in ("skip", "truncate"):
            msg = f"over_limit must be 'skip' or 'truncate', got {self.over_limit!r}."
            raise ValueError(msg)


@contextlib.contextmanager
def silence_stdout_fd() -> Iterator[None]:
    """Silence file descriptor 1 (C-level prints, e.g. abc2midi inside symusic)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class SkipPiece(Exception):
    """Raised inside the per-piece pipeline; carries a reason from SKIP_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in SKIP_REASONS, reason
        super().__init__(message)
        self.reason = reason


def chunk_past_end(path: str | Path) -> str:
    """Describe the first chunk that runs past the end of a MIDI file, or return "".

    Walks the chunk headers (4-byte ASCII tag, 4-byte big-endian length; Standard MIDI File
    1.0, "Chunks"). A chunk with a valid tag whose declared length exceeds what is left is a
    file cut short. A chunk whose tag is not ASCII letters means the previous length was
    wrong instead (malformed, not truncated), and the walk stops with "".
    """
    data = Path(path).read_bytes()
    pos, index = 0, 0
    while pos + 8 <= len(data):
        tag, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "big")
        if not tag.isalpha():
            return ""
        if pos + 8 + length > len(data):
            return (f"chunk {index} ({tag.decode()}) declares {length} bytes but the file ends "
                    f"{len(data) - pos - 8} bytes after its header")
        pos, index = pos + 8 + length, index + 1
    return ""


def complete_track_chunks(data: bytes) -> int:
    """Number of whole ``MTrk`` chunks in MIDI file bytes (the chunk walk of :func:`chunk_past_end`)."""
    pos, count = 0, 0
    while pos + 8 <= len(data):
        tag, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "big")
        if not tag.isalpha() or pos + 8 + length > len(data):
            break
        count += tag == b"MTrk"
        pos += 8 + length
    return count


def read_midi_bytes(data: bytes, notes: list[str] | None = None) -> bytes:
    """MIDI file bytes as the parser should see them, after two header checks.

    - Format 2 (independent sequences, e.g. separate patterns) is not one piece: a reader
      that merges the sequences plays them at once. Raises ``SkipPiece("format_2")``.
    - A header that declares fewer tracks than the file holds hides the rest from the
      parser (often every note): the count is raised to the number of complete ``MTrk``
      chunks, as most readers do, and a warning is appended to ``notes``.
    """
    if len(data) < 14:
        return data
    fmt, declared = int.from_bytes(data[8:10], "big"), int.from_bytes(data[10:12], "big")
    if fmt == 2:
        raise SkipPiece("format_2", f"MIDI format 2: {declared} independent sequences, not one piece; export "
                                    "each sequence as a format 0 or 1 file to use it")
    complete = complete_track_chunks(data)
    if complete > declared:
        if notes is not None:
            notes.append(f"warning: the header declares {declared} track(s) but the file holds {complete} "
                         "complete ones; all were read")
        data = data[:10] + min(complete, 0xFFFF).to_bytes(2, "big") + data[12:]
    return data


def load_score(item: dict[str, str], notes: list[str] | None = None) -> Score:
    """Parse an item into a ``symusic.Score`` (ticks).

    Args:
        item: ``{"path", "abc"}`` (see ``data.sources``).
        notes: warnings about a file that was read despite a fault are appended here
            (see :func:`read_midi_bytes`).

    Raises:
        SkipPiece: not_midi, truncated, corrupt, format_2 or bad_header.
    """
    if item.get("abc"):
        try:
            with silence_stdout_fd():
                score = Score.from_abc(item["abc"])
        except Exception as err:  # symusic raises RuntimeError/ValueError variants
            raise SkipPiece("corrupt", f"ABC parse error: {err}") from err
    else:
        path = Path(item["path"])
        data = path.read_bytes()
        head = data[:4]
        if head != b"MThd":
            raise SkipPiece("not_midi", "empty file" if not head else f"starts with {head!r}, not MThd")
        data = read_midi_bytes(data, notes)
        try:
            score = Score.from_midi(data)
        except Exception as err:
            cut = chunk_past_end(path)
            if cut:
                raise SkipPiece("truncated", f"{cut} (parser: {err})") from err
            raise SkipPiece("corrupt", f"MIDI parse error: {err}") from err
    if score.ticks_per_quarter <= 0:
        raise SkipPiece("bad_header", f"ticks per quarter = {score.ticks_per_quarter}")
    return score


def played_duration_sec(score: Score, max_tempo_qpm: float) -> float:
    """Seconds the piece lasts as the model will see it.

    The tokenizer clamps tempos into its ``tempo_range``, so a piece lasts at least
    ``quarters * 60 / max_tempo_qpm`` seconds. This catches absurd delta times even when a
    broken tempo (0 us per quarter, read as an infinite tempo) makes the file's own clock
    say the piece lasts no time at all. Returns ``inf`` if the file's clock overflows.
    """
    quarters = score.end() / score.ticks_per_quarter
    seconds = float(score.to("second").end())
    return max(seconds if np.isfinite(seconds) else 0.0, quarters * 60.0 / max_tempo_qpm)


def tick_at_seconds(score: Score, seconds: float, max_tempo_qpm: float) -> int:
    """First tick at which :func:`played_duration_sec` of the piece cut there exceeds ``seconds``.

    Walks the tempo map (120 qpm before the first tempo event, as MIDI specifies) and
    takes the earlier of the file clock and the clamped-tempo bound.
    """
    tpq = score.ticks_per_quarter
    cut = seconds * max_tempo_qpm / 60.0 * tpq
    tempos = sorted((int(t.time), int(t.mspq)) for t in score.tempos)
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0, 500_000))
    elapsed = 0.0
    for i, (tick, mspq) in enumerate(tempos):
        sec_per_tick = mspq / 1e6 / tpq
        next_tick = tempos[i + 1][0] if i + 1 < len(tempos) else None
        if sec_per_tick > 0 and (next_tick is None or elapsed + (next_tick - tick) * sec_per_tick >= seconds):
            cut = min(cut, tick + (seconds - elapsed) / sec_per_tick)
            break
        if next_tick is not None:
            elapsed += (next_tick - tick) * sec_per_tick
    return int(cut)


def cut_score(score: Score, end_tick: int) -> Score:
    """The part of ``score`` before ``end_tick``; notes and sustain pedals that cross it are
    shortened to end there."""
    score = score.clip(0, end_tick, clip_end=False)  # keeps notes starting before end_tick, whole
    for track in score.tracks:
        for event in [*track.notes, *track.pedals]:  # the events that have a duration
            if event.time + event.duration > end_tick:
                event.duration = end_tick - event.time
    return score


def check_score(score: Score, limits: PieceLimits, max_tempo_qpm: float = 250.0) -> tuple[Score, int, float, str]:
    """Check a score against the limits, truncating it if ``limits.over_limit == "truncate"``.

    Args:
        score: parsed score (ticks).
        limits: the bounds.
        max_tempo_qpm: fastest tempo the tokenizer represents (quarter notes/minute); see
            :func:`played_duration_sec`.

    Returns:
        ``(score, num_notes, duration_sec, note)``: the score to tokenize (the input, or its
        truncated beginning), its note count and duration, and ``note`` saying what was
        cut ("" when nothing was).

    Raises:
        SkipPiece: no_notes, too_short or too_long.
    """
    num_notes = score.note_num()
    if num_notes == 0:
        raise SkipPiece("no_notes", "no note in any track")
    if num_notes < limits.min_notes:
        raise SkipPiece("too_short", f"{num_notes} notes < min_notes {limits.min_notes}")
    note = ""
    if num_notes > limits.max_notes:
        if limits.over_limit == "skip":
            raise SkipPiece("too_long", f"{num_notes} notes > max_notes {limits.max_notes}")
        starts = np.sort(np.concatenate([t.notes.numpy()["time"] for t in score.tracks if len(t.notes)]))
        score = cut_score(score, int(starts[limits.max_notes]))
        note = f"cut to the first {score.note_num()} of {num_notes} notes (max_notes)"
        num_notes = score.note_num()
    duration_sec = played_duration_sec(score, max_tempo_qpm)
    if not np.isfinite(duration_sec) or duration_sec > limits.max_duration_sec:
        if limits.over_limit == "skip":
            raise SkipPiece("too_long", f"lasts {duration_sec:.0f} s > max_duration_sec {limits.max_duration_sec:.0f}")
        cut = tick_at_seconds(score, limits.max_duration_sec, max_tempo_qpm)
        score = cut_score(score, cut)
        note = (note + "; " if note else "") + (
            f"cut to the first {limits.max_duration_sec:.0f} s of {duration_sec:.0f} s (max_duration_sec)")
        num_notes = score.note_num()
        duration_sec = played_duration_sec(score, max_tempo_qpm)
    if num_notes < limits.min_notes:
        raise SkipPiece("too_long", f"{note}: {num_notes} notes left, fewer than min_notes {limits.min_notes}")
    return score, num_notes, duration_sec, note


def content_hash(ids: list[int] | np.ndarray) -> str:
    """SHA-1 of base token ids: equal for the same music under any file name or resolution."""
    return hashlib.sha1(np.asarray(ids, dtype=np.int32).tobytes()).hexdigest()


@lru_cache(maxsize=4)
def _cached_tokenizer(path: str, file_hash: str):  # file_hash keys the cache on content
    return load_tokenizer(path)


def file_sha1(path: str | Path) -> str:
    """SHA-1 of a file's bytes (used to key caches on the tokenizer's content)."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def encode_score(tok, score: Score) -> list[int]:
    """Token ids of a score (BPE-encoded when the tokenizer is trained).

    Raises:
        SkipPiece: tokenize_error.
    """
    try:
        return list(tok.encode(score).ids)
    except Exception as err:
        raise SkipPiece("tokenize_error", f"{type(err).__name__}: {err}") from err


@dataclass
class PieceResult:
    """One row of the tokenized-pieces table (also a manifest row)."""

    status: str = "skipped"
    reason: str = ""
    message: str = ""
    num_notes: int = 0
    duration_sec: float = 0.0
    num_tokens: int = 0
    content_hash: str = ""
    input_ids: list[int] | None = None
    note_minhash: list[list[int]] | None = None  # per usable track, see data.near_duplicates

    def to_row(self) -> dict[str, Any]:
        """The fields as a dict, shallow (``dataclasses.asdict`` would deep-copy every
        token id: about a quarter of preparation time)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_RUNNERS: dict[float, IsolatedRunner] = {}
_IMPORTED_IN = os.getpid()  # the main process; map workers are forked from it
_BOUND_PID = 0  # the process that last checked whether it is a worker


def close_isolated_workers() -> None:
    """Stop the child processes this process started for :func:`tokenize_item`."""
    for runner in _RUNNERS.values():
        runner.close()
    _RUNNERS.clear()


def tokenize_item(item: dict[str, Any], tokenizer_path: str, tokenizer_sha1: str,
                  limits: dict[str, Any], timeout_sec: float = 0.0) -> dict[str, Any]:
    """``datasets.map`` function: one item in, one :class:`PieceResult` row out.

    Args:
        item: ``{"source_id", "path", "abc"}``.
        tokenizer_path: ``tokenizer.json`` to load (once per worker process).
        tokenizer_sha1: content hash of that file; part of the map fingerprint so a
            changed tokenizer never reuses stale cached results.
        limits: :class:`PieceLimits` fields.
        timeout_sec: if > 0, the work runs in a forked child process
            (:class:`data.isolation.IsolatedRunner`) and a piece that takes longer, or
            that kills the process, is skipped as ``timeout`` or ``crash``; 0 runs it
            in this process.

    Returns:
        PieceResult fields; ``input_ids`` empty for skipped pieces.
    """
    global _BOUND_PID
    if _BOUND_PID != os.getpid():  # first call in this process
        _BOUND_PID = os.getpid()
        if _BOUND_PID != _IMPORTED_IN:  # a datasets.map worker: end with the run, even on kill -9
            die_with_parent()
    if timeout_sec <= 0:
        return _tokenize_item_inline(item, tokenizer_path, tokenizer_sha1, limits)
    runner = _RUNNERS.get(timeout_sec)
    if runner is None:
        runner = _RUNNERS[timeout_sec] = IsolatedRunner(_tokenize_item_inline, timeout_sec)
    # a plain dict: the row datasets passes in may hold a reference to its whole table,
    # which would be pickled into the pipe on every call
    plain = {key: item[key] for key in ("source_id", "path", "abc")}
    kind, value = runner(plain, tokenizer_path, tokenizer_sha1, limits)
    if kind == "ok":
        return value
    return PieceResult(reason=kind, message=value, input_ids=[], note_minhash=[]).to_row()


def _tokenize_item_inline(item: dict[str, Any], tokenizer_path: str, tokenizer_sha1: str,
                          limits: dict[str, Any]) -> dict[str, Any]:
    tok = _cached_tokenizer(tokenizer_path, tokenizer_sha1)
    result = PieceResult(input_ids=[], note_minhash=[])
    try:
        warnings: list[str] = []
        score = load_score(item, warnings)
        score, result.num_notes, result.duration_sec, result.message = check_score(
            score, PieceLimits(**limits), tok.config.tempo_range[1])
        result.message = "; ".join([*warnings, *([result.message] if result.message else [])])
        ids = encode_score(tok, score)
        if not ids:
            raise SkipPiece("no_notes", "tokenizer produced no token")
        result.status, result.input_ids, result.num_tokens = "kept", ids, len(ids)
        result.content_hash = content_hash(ids)
        result.note_minhash = track_minhashes(score)
    except SkipPiece as skip:
        result.reason, result.message = skip.reason, str(skip)[:300]
    except Exception as err:  # a bug or an unforeseen library error: skip, keep the run going
        result = PieceResult(reason="error", message=f"{type(err).__name__}: {err}"[:300], input_ids=[],
                             note_minhash=[])
    return result.to_row()


def transpose_item(item: dict[str, Any], tokenizer_path: str, tokenizer_sha1: str,
                   max_shift: int) -> dict[str, list]:
    """Batched ``datasets.map`` function: transposed copies of training pieces.

    Shifts every non-drum track by ``k`` semitones for ``k`` in ``-max_shift..max_shift``
    (0 excluded); a shift that would move any pitch outside the tokenizer's
    ``pitch_range`` is left out for that piece. Drum tracks are never shifted (their
    pitches name instruments, not notes).

    Args:
        item: batch of pieces with ``source_id``, ``path``, ``abc`` columns.

    Returns:
        Batch with ``source_id``, ``transpose``, ``num_notes``, ``num_tokens``, ``input_ids``: one row per
        accepted (piece, shift).
    """
    tok = _cached_tokenizer(tokenizer_path, tokenizer_sha1)
    low, high = tok.config.pitch_range  # inclusive low, exclusive high (MidiTok)
    out: dict[str, list] = {"source_id": [], "transpose": [], "num_notes": [], "num_tokens": [], "input_ids": []}
    for source_id, path, abc in zip(item["source_id"], item["path"], item["abc"], strict=True):
        try:
            score = load_score({"path": path, "abc": abc})
        except SkipPiece:
            continue
        pitches = [n.pitch for t in score.tracks if not t.is_drum for n in t.notes]
        if not pitches:
            continue
        pmin, pmax = min(pitches), max(pitches)
        for shift in range(-max_shift, max_shift + 1):
            if shift == 0 or pmin + shift < low or pmax + shift >= high:
                continue
            shifted = score.copy()
            for track in shifted.tracks:
                if not track.is_drum:
                    track.shift_pitch(shift, inplace=True)
            try:
                ids = encode_score(tok, shifted)
            except SkipPiece:
                continue
            out["source_id"].append(source_id)
            out["transpose"].append(shift)
            out["num_notes"].append(shifted.note_num())
            out["num_tokens"].append(len(ids))
            out["input_ids"].append(ids)
    return out
