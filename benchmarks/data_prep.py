"""Data-preparation benchmarks: files/s against the number of processes, peak memory
against the corpus size, and a plain MidiTok loop as the floor.

Every figure comes from running ``scripts/prepare_data.py`` as a whole process, the way a
user runs it, so process start-up, imports and writing the dataset are included.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from symusic import Score

from data.prepared import read_prepared_dataset

REPO = Path(__file__).resolve().parents[1]
LAKH_MIDI_FILES = 176_581  # LMD-full (Raffel 2016), colinraffel.com/projects/lmd


@dataclass
class PrepRun:
    """One whole-process run of ``scripts/prepare_data.py``.

    Attributes:
        wall_sec: wall-clock seconds of the process.
        items: items (files) it saw.
        notes: notes in the pieces it kept.
        peak_rss_main_mb: peak resident set size of the main process (MiB), memory-mapped
            Arrow pages included.
        peak_anon_main_mb: peak anonymous memory (heap, Python objects; not memory-mapped
            files) of the main process (MiB).
        peak_anon_tree_mb: peak anonymous proportional set size summed over the process
            and all its children (MiB): what must fit in RAM; pages shared between forked
            workers are counted once.
        peak_file_tree_mb: peak memory-mapped file pages over the tree (MiB): the Arrow
            files ``datasets`` reads through mmap; page cache the kernel can drop.
    """

    wall_sec: float
    items: int
    notes: int
    peak_rss_main_mb: float
    peak_anon_main_mb: float
    peak_anon_tree_mb: float
    peak_file_tree_mb: float

    @property
    def files_per_sec(self) -> float:
        return self.items / self.wall_sec


def run_prepare(source: str | Path, output: str | Path, num_proc: int, block_size: int = 1024,
                extra: list[str] | None = None, poll_sec: float = 0.2) -> PrepRun:
    """Run ``scripts/prepare_data.py`` in a subprocess and sample its memory every ``poll_sec``.

    Raises:
        RuntimeError: the preparation failed (its last output lines are in the message).
    """
    cmd = [sys.executable, str(REPO / "scripts" / "prepare_data.py"), "--source", str(source),
           "--output", str(output), "--num-proc", str(num_proc), "--block-size", str(block_size),
           "--no-resume", *(extra or [])]
    log = Path(output).with_suffix(".log")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        main = psutil.Process(proc.pid)
        peak = {"rss": 0, "main": 0, "anon": 0, "file": 0}
        while proc.poll() is None:
            try:
                tree = [_rollup(p.pid) for p in [main, *main.children(recursive=True)]]
            except psutil.Error:  # the process ended between poll() and here
                continue
            peak["rss"] = max(peak["rss"], tree[0].get("Rss", 0))
            peak["main"] = max(peak["main"], tree[0].get("Pss_Anon", 0))
            peak["anon"] = max(peak["anon"], sum(t.get("Pss_Anon", 0) for t in tree))
            peak["file"] = max(peak["file"], sum(t.get("Pss_File", 0) for t in tree))
            time.sleep(poll_sec)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{tail}")
    stats = read_prepared_dataset(output).stats
    notes = sum(s["notes"] for s in stats["splits"].values())
    mib = {k: v / 1024 for k, v in peak.items()}
    return PrepRun(wall, stats["items_seen"], notes, mib["rss"], mib["main"], mib["anon"], mib["file"])


def _rollup(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` fields in KiB (Linux 4.14+); empty if the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines)}


def plain_miditok_files_per_sec(files: list[Path], tokenizer_config: str | None = None) -> tuple[float, int]:
    """Files/s of the simplest loop: ``Score(path)`` then ``tokenizer.encode`` in one process.

    The floor the pipeline is compared with: no checks, no isolation, no dedup, no
    packing, no writing. Returns ``(files_per_sec, files_encoded)``; a file that fails to
    load or encode is counted but not encoded.
    """
    from tokenizer import build_tokenizer

    tok = build_tokenizer(tokenizer_config)
    t0 = time.perf_counter()
    encoded = 0
    for path in files:
        try:
            tok.encode(Score(path))
            encoded += 1
        except Exception:  # noqa: BLE001 - the floor loop only counts failures
            pass
    return len(files) / (time.perf_counter() - t0), encoded


def make_edited_copies(files: list[Path], num_copies: int, folder: Path) -> list[Path]:
    """Write ``num_copies`` MIDI files into ``folder``, cycling through ``files``, each with a
    small edit that makes its content unique, so deduplication keeps them all.

    Copy ``k`` of a song drops the note at index ``k`` of its fullest track and transposes
    the pitched tracks by ``k % 5 - 2`` semitones (drums untouched).
    """
    folder.mkdir(parents=True, exist_ok=True)
    scores = [Score(p) for p in files]
    written = []
    for i in range(num_copies):
        path = folder / f"{i:06d}_{files[i % len(files)].stem}.mid"
        if path.is_file():  # made by an earlier call with the same sources
            written.append(path)
            continue
        k = i // len(files)
        score = scores[i % len(files)].copy()
        fullest = max(score.tracks, key=lambda t: len(t.notes))
        if len(fullest.notes) > 1:
            fullest.notes.pop(k % len(fullest.notes))
        for track in score.tracks:
            if not track.is_drum:
                track.shift_pitch(k % 5 - 2, inplace=True)
        score.dump_midi(path)
        written.append(path)
    return written
