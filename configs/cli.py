"""Command-line helpers shared by the scripts: strict dataclass parsing, clean user errors."""

from __future__ import annotations

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
    """Run a script's ``main``; a bad input (FileNotFoundError/ValueError, whose messages
    say what to do) prints one ``error:`` line instead of a traceback. Set
    ``MIDI_SCALING_TRACEBACK=1`` to see the traceback.
    """
    try:
        return main(argv)
    except (FileNotFoundError, ValueError) as err:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {err}\n(set {TRACEBACK_ENV}=1 to see the traceback)", file=sys.stderr)
        return 2
