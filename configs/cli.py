"""Command-line helpers shared by the scripts: strict dataclass parsing, clean user errors."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # analysis scripts use run_main without importing transformers
    from transformers import HfArgumentParser

TRACEBACK_ENV = "MIDI_SCALING_TRACEBACK"


def make_parser(dataclass_types: Sequence[type], description: str | None = None) -> HfArgumentParser:
    """``HfArgumentParser`` that refuses abbreviated flags (``--max_token`` is not ``--max_tokens``)."""
    import argparse

    from transformers import HfArgumentParser

    # Raw description: the scripts' docstrings open with commands, one per line
    return HfArgumentParser(tuple(dataclass_types), description=description, allow_abbrev=False,
                            formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_strict(parser: HfArgumentParser, argv: list[str]) -> tuple[Any, ...]:
    """Parse into dataclasses; an unknown flag is a usage error (exit 2) naming it and --help."""
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        parser.error(f"unrecognized arguments: {' '.join(remaining)} (see --help)")
    return tuple(parsed)


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a script's ``main``; a bad input or a fault of the machine prints one ``error:``
    line instead of a traceback: FileNotFoundError/ValueError and ConnectionError, whose
    messages say what to do, and the OSErrors of :func:`os_error_message` (a folder that
    cannot be written, a full disk). Set ``MIDI_SCALING_TRACEBACK=1`` to see the traceback.
    """
    try:
        return main(argv)
    except (FileNotFoundError, ValueError, ConnectionError, PermissionError) as err:
        error = err
        message = str(err) if not isinstance(err, OSError) or err.filename is None else os_error_message(err)
    except OSError as err:
        error = err
        message = os_error_message(err)
        if message is None:
            raise
    if os.environ.get(TRACEBACK_ENV):
        raise error
    print(f"error: {message}\n(set {TRACEBACK_ENV}=1 to see the traceback)", file=sys.stderr)
    return 2


def os_error_message(err: OSError) -> str | None:
    """One line for an OSError a user can act on, or None for any other.

    - no permission or a read-only file system (EACCES, EPERM, EROFS): the path, and to
      choose a writable folder (``--output`` / ``--output-dir``) or fix its permissions;
    - no space left (ENOSPC, EDQUOT): the path, the space free on its file system, and that
      what was written before stays (a dataset is replaced only once complete, a run
      resumes from its last complete checkpoint).
    """
    path = err.filename or ""
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write {path}: {err.strerror}. Choose a folder you can write to (--output / --output-dir) "
                "or change its permissions.")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device of {path} ({free_space(path)} free; {err.strerror}). Free some "
                "space or write elsewhere; what was written before is intact, and the same command resumes.")
    if isinstance(err, FileNotFoundError | PermissionError):
        return str(err)
    return None


def free_space(path: str | os.PathLike) -> str:
    """Free space on the file system holding ``path`` (or its nearest existing parent), e.g. '1.2 MB'."""
    import shutil
    from pathlib import Path

    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown"
    units = ["B", "KB", "MB", "GB", "TB"]
    while free >= 1000 and len(units) > 1:
        free /= 1000
        units.pop(0)
    return f"{free:.3g} {units[0]}"
