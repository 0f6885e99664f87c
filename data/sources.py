"""Where music comes from: a folder of MIDI/ABC files, or the ABC corpus inside music21.

Every source is turned into a flat list of *items*, one per piece to tokenize:
``{"source_id": str, "path": str, "abc": str}``. A MIDI file is one item (``abc`` empty);
an ABC file holds many tunes, each one item carrying its own text (``path`` names the
file, ``source_id`` the file and the tune's ``X:`` number).
"""

from __future__ import annotations

import re
from pathlib import Path

MIDI_SUFFIXES = (".mid", ".midi")
ABC_SUFFIXES = (".abc",)
BUILTIN = "builtin"
_X_HEADER = re.compile(r"(?m)^(?=X:)")


def builtin_corpus_dir() -> Path:
    """Folder of the public-domain corpus that ships with ``pip install music21``.

    Raises:
        FileNotFoundError: music21 is installed without its corpus.
    """
    import music21

    path = Path(music21.__file__).resolve().parent / "corpus"
    if not path.is_dir():
        msg = f"music21 is installed but has no corpus folder at {path}; reinstall music21."
        raise FileNotFoundError(msg)
    return path


def split_abc_tunes(text: str) -> list[tuple[str, str]]:
    """Split an ABC file into tunes on its ``X:`` reference-number headers.

    The file header (text before the first ``X:``: global fields such as ``L:`` or
    ``%%`` directives, per the ABC 2.1 standard, section 2.2) is prepended to each tune
    so the tune parses on its own.

    Args:
        text: whole content of an ``.abc`` file.

    Returns:
        ``[(x_number, tune_text), ...]`` in file order; empty when no ``X:`` line.
    """
    parts = _X_HEADER.split(text)
    header = parts[0] if not parts[0].startswith("X:") else ""
    header = "\n".join(line for line in header.splitlines() if not line.startswith("%abc"))
    tunes = []
    for part in parts[1:]:
        first_line = part.split("\n", 1)[0]
        number = first_line[2:].strip() or str(len(tunes) + 1)
        tunes.append((number, (header + "\n" + part) if header.strip() else part))
    return tunes


def list_source_items(source: str | Path) -> list[dict[str, str]]:
    """List every piece of a source as items, in a deterministic (sorted) order.

    Args:
        source: a folder scanned recursively for ``.mid``/``.midi``/``.abc`` files
            (case-insensitive), or ``"builtin"`` for the ABC tunes of music21's corpus.

    Returns:
        Items ``{"source_id", "path", "abc"}``; ``source_id`` is unique (relative path,
        plus ``#X:<n>`` for ABC tunes, made unique when a file repeats a number).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: the folder holds no music file.
    """
    if str(source) == BUILTIN:
        root = builtin_corpus_dir()
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in ABC_SUFFIXES)
    else:
        root = Path(source)
        if not root.is_dir():
            msg = (f"--source {source} is neither 'builtin' nor an existing folder. Give a "
                   "folder of .mid/.midi/.abc files (searched recursively) or 'builtin'.")
            raise FileNotFoundError(msg)
        files = sorted(p for p in root.rglob("*")
                       if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES + ABC_SUFFIXES)
    if not files:
        msg = f"No .mid, .midi or .abc file under {root}."
        raise ValueError(msg)

    items: list[dict[str, str]] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() in MIDI_SUFFIXES:
            items.append({"source_id": rel, "path": str(path), "abc": ""})
            continue
        seen: dict[str, int] = {}
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, tune in split_abc_tunes(text):
            seen[number] = seen.get(number, 0) + 1
            suffix = "" if seen[number] == 1 else f"~{seen[number]}"
            items.append({"source_id": f"{rel}#X:{number}{suffix}", "path": str(path), "abc": tune})
    return items
