"""Paths shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
POP909 = SHARED_DATA / "pop909"
BAD_MIDI = SHARED_DATA / "bad_midi"
