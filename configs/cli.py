"""Command-line helpers shared by the scripts: strict dataclass parsing, clean user errors."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # analysis scripts use run_main without importing transformers
    from transformers import HfArgumentParser

TRACEBACK_ENV = "MIDI_SCALING_TRACEBACK"


HELP_ALL = "--help-all"


def make_parser(dataclass_types: Sequence[type], description: str | None = None, *,
                brief: Mapping[type, Collection[str]] | None = None, usage: str | None = None,
                refused: Mapping[str, str] | None = None, helps: Mapping[str, str] | None = None) -> HfArgumentParser:
    """``HfArgumentParser`` that refuses abbreviated flags (``--max_token`` is not ``--max_tokens``),
    with a short ``--help`` and the whole list behind ``--help-all``.

    Args:
        dataclass_types: the dataclasses parsed; each of ours names its help group
            (``_argument_group_name``, HfArgumentParser's documented hook).
        description: shown above the options (the script's docstring: commands, one per line).
        brief: dataclass -> the fields ``--help`` shows; a dataclass not in it shows all of its
            fields. ``--help-all`` shows every field.
        usage: the usage line (default: argparse's, which lists every option).
        refused: field -> why it is refused if set (derived fields): hidden from ``--help``,
            marked in ``--help-all``.
        helps: field -> help text replacing the dataclass's (a Trainer field this project gives
            a default of its own, such as ``output_dir``).
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser(tuple(dataclass_types), description=description, allow_abbrev=False, usage=usage,
                              formatter_class=_HelpFormatter,
                              epilog=f"{HELP_ALL}: every option, the Trainer's included." if brief else None)
    if any(t.__name__ == "TrainingArguments" for t in dataclass_types):
        # the dataclass without a group of its own (TrainingArguments) is the Trainer's; listed last
        parser._optionals.title = "Trainer options (transformers.TrainingArguments)"  # noqa: SLF001
        parser._action_groups.append(parser._action_groups.pop(parser._action_groups.index(parser._optionals)))  # noqa: SLF001
    for action in parser._actions:  # noqa: SLF001 - argparse keeps no public list of its actions
        if action.choices and len(action.choices) > 8:  # optim, lr_scheduler_type: dozens of names
            action.metavar = "NAME"
        if action.option_strings and action.option_strings[0].startswith("--no_") and action.const is False:
            action.help = f"turn --{action.dest.replace('_', '-')} off"
    for action in parser._actions:  # noqa: SLF001
        if action.dest in (helps or {}):
            action.help = helps[action.dest]
    # what --help-all shows (parse_strict), kept before --help hides the rest
    parser._midi_scaling_full_help = {id(a): a.help for a in parser._actions}  # noqa: SLF001
    parser._midi_scaling_refused = dict(refused or {})  # noqa: SLF001
    if brief:
        hidden = {f.name for t in brief for f in dataclasses.fields(t)} - {n for names in brief.values() for n in names}
        for action in parser._actions:  # noqa: SLF001 - argparse keeps no public list of its actions
            if action.dest in hidden or action.dest in (refused or {}):
                action.help = argparse.SUPPRESS
    return parser


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The scripts' docstrings open with commands, one per line (raw description); each option is
    shown once, by its dashed spelling (``--output-dir DIR``, not also ``--output_dir OUTPUT_DIR``)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        name = next((o for o in action.option_strings if "-" in o[2:]), action.option_strings[-1])
        if action.nargs == 0:
            return name
        return f"{name} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


def _show_every_option(parser: HfArgumentParser) -> None:
    """Print the whole help (every option; the refused ones marked) and exit 0."""
    full, refused = parser._midi_scaling_full_help, parser._midi_scaling_refused  # noqa: SLF001
    for action in parser._actions:  # noqa: SLF001
        action.help = f"REFUSED if set: {refused[action.dest]}" if action.dest in refused else full[id(action)]
    parser.usage = None
    parser.epilog = None
    parser.print_help()
    parser.exit()


def parse_strict(parser: HfArgumentParser, argv: list[str]) -> tuple[Any, ...]:
    """Parse into dataclasses; an unknown flag is a usage error (exit 2) naming it and --help.
    ``--help-all`` prints every option and exits."""
    if HELP_ALL in argv and getattr(parser, "_midi_scaling_full_help", None) is not None:
        _show_every_option(parser)
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
    if os.environ.get("RANK", "0") == "0" or not isinstance(error, FileNotFoundError | ValueError):
        # under torchrun / accelerate launch every process meets the same bad input: the first one says it
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
