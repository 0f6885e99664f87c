"""Near-duplicate pieces: the same music in another file that is not byte-identical.

Corpora hold the same tune more than once: a full arrangement beside its melody-only and
chords-only parts (Nottingham), a transposed or re-rendered copy, thousands of versions of
one song (Lakh MIDI). Exact hashing of token ids misses all of them, and if the copies land
in different splits, test loss measures memorisation.

Method: each track with enough notes becomes a set of note n-grams that ignore key, tempo
and resolution: at every onset the track's top pitch, and n-gram = ``NGRAM`` successive
(interval in semitones, inter-onset interval in 1/12 quarter notes) pairs. Two tracks are
near-duplicates when the Jaccard similarity of their sets is at least a threshold, estimated
with MinHash (Broder 1997) and found with locality-sensitive hashing (``datasketch``). Pieces
linked by any pair of tracks form one group (union-find), so a tune, its melody part (which
shares the melody track) and its chords part (which shares the accompaniment) are one group
even though the two parts share nothing. The splits are assigned per group.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from symusic import Score

NGRAM = 4  # (interval, inter-onset interval) pairs per shingle
NUM_PERM = 64  # MinHash permutations: the Jaccard estimate's standard error is about 0.06
MIN_ONSETS = 16  # tracks with fewer onsets are too short to tell apart
MIN_SHINGLES = 8  # nor are tracks with fewer distinct n-grams (a repeated pattern, a drone)
SEED = 1
SCHEME = "affine32"
DEFAULT_THRESHOLD = 0.5


def track_shingles(score: Score) -> list[np.ndarray]:
    """The note n-gram set of each usable non-drum track of ``score``.

    Returns:
        One sorted, unique uint32 array per track with at least `MIN_ONSETS` onsets and
        `MIN_SHINGLES` distinct n-grams (tracks in score order).
    """
    tpq = max(int(score.ticks_per_quarter), 1)
    out = []
    for track in score.tracks:
        if track.is_drum or len(track.notes) < MIN_ONSETS:
            continue
        notes = track.notes.numpy()
        order = np.lexsort((-notes["pitch"], notes["time"]))  # by onset, the highest pitch first
        time, pitch = notes["time"][order], notes["pitch"][order].astype(np.int64)
        first = np.concatenate([[True], time[1:] != time[:-1]])
        onsets, top = time[first].astype(np.int64), pitch[first]
        if len(onsets) < MIN_ONSETS:
            continue
        interval = np.diff(top) + 128  # 1..255
        ioi = np.minimum(np.rint(np.diff(onsets) * 12 / tpq).astype(np.int64), 4095)
        events = (interval << 12) | ioi  # one 20-bit code per step
        k = len(events) - NGRAM + 1
        if k < MIN_SHINGLES:
            continue
        h = np.zeros(k, dtype=np.uint64)
        with np.errstate(over="ignore"):  # FNV-style mixing, wrapping modulo 2**64
            for j in range(NGRAM):
                h = (h * np.uint64(1099511628211)) ^ events[j:j + k].astype(np.uint64)
        shingles = np.unique((h ^ (h >> np.uint64(32))).astype(np.uint32))
        if len(shingles) >= MIN_SHINGLES:
            out.append(shingles)
    return out


@lru_cache(maxsize=1)
def _permutations() -> object:
    return MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME).permutations


def track_minhashes(score: Score) -> list[list[int]]:
    """MinHash signatures (`NUM_PERM` uint32 values) of each track of :func:`track_shingles`."""
    out = []
    for shingles in track_shingles(score):
        m = MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=int, permutations=_permutations(), scheme=SCHEME)
        m.update_batch(shingles.tolist())
        out.append(m.hashvalues.astype(np.uint32).tolist())
    return out


def _lean(hashvalues: list[int]) -> LeanMinHash:
    return LeanMinHash(seed=SEED, hashvalues=np.asarray(hashvalues, dtype=np.uint32), scheme=SCHEME)


class NearDuplicateGroups:
    """Groups of pieces linked by near-duplicate tracks, built one piece at a time.

    Args:
        threshold: least estimated Jaccard similarity of two tracks' n-gram sets to link
            their pieces (0 < threshold <= 1).

    Pieces are numbered in the order they are added; :meth:`group_of` gives each piece's
    group as the number of its first member, and :meth:`similarity` the best track
    similarity that joined a piece to an earlier one.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"The near-duplicate threshold must be in (0, 1], got {threshold}.")
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._parent: list[int] = []
        self._similarity: dict[int, float] = {}
        self._signature: dict[tuple[int, int], LeanMinHash] = {}

    def add(self, signatures: list[list[int]]) -> int:
        """Add a piece given its tracks' signatures (:func:`track_minhashes`); returns its number."""
        piece = len(self._parent)
        self._parent.append(piece)
        for t, values in enumerate(signatures):
            m = _lean(values)
            for key in self._lsh.query(m):
                similarity = m.jaccard(self._signature[key])
                if similarity >= self.threshold:
                    self._union(piece, key[0])
                    self._similarity[piece] = max(self._similarity.get(piece, 0.0), similarity)
            self._lsh.insert((piece, t), m, check_duplication=False)
            self._signature[(piece, t)] = m
        return piece

    def _find(self, i: int) -> int:
        while self._parent[i] != i:
            self._parent[i] = self._parent[self._parent[i]]
            i = self._parent[i]
        return i

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:  # the earlier piece stays the root: a group is named by its first member
            self._parent[max(ra, rb)] = min(ra, rb)

    def group_of(self, piece: int) -> int:
        """The number of the first piece of ``piece``'s group (itself when it has no near-duplicate)."""
        return self._find(piece)

    def similarity(self, piece: int) -> float:
        """The highest estimated Jaccard that linked ``piece`` to an earlier piece (0: none)."""
        return self._similarity.get(piece, 0.0)
