"""The ``tlaudit`` command line, one module per sub-command: ``audit`` (a setup, a file, a folder),
``inspect`` a model, list the ``checks``, ``run`` a training script under the watcher, ``bench`` the
feature extractor's engines, ``extract`` the features of a folder of images.

``main(argv)`` returns an :class:`ExitCode`; ``python -m tlaudit`` and the ``tlaudit`` console
script call it. Reports go to stdout (or ``--output``); the summary sentence, progress and error
messages go to stderr, so ``tlaudit audit --format json > report.json`` gives clean JSON.

A sub-command is a module with ``add_parser(commands, common)``, which adds its subparser with
``set_defaults(run=<handler>)``, listed in :data:`COMMANDS`; a handler takes the parsed arguments
and returns an exit code. Building the parser imports neither torch nor the engine (``tlaudit
--help`` is instant); each handler imports what it needs.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from tlaudit._version import __version__
from tlaudit.cli import audit, bench, checks, extract, inspect, run
from tlaudit.cli._console import EXIT_CODES_HELP, ExitCode
from tlaudit.errors import SetupError, UsageError

__all__ = ["COMMANDS", "ExitCode", "build_parser", "main"]

COMMANDS: tuple[Callable[[Any, argparse.ArgumentParser], None], ...] = (
    audit.add_parser,
    inspect.add_parser,
    checks.add_parser,
    run.add_parser,
    bench.add_parser,
    extract.add_parser,
)
"""Each sub-command's ``add_parser``, in the order ``tlaudit --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``tlaudit`` argument parser, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="tlaudit",
        description="Make PyTorch transfer learning correct: audit setups, inspect models, list the checks.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tlaudit {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback when the input cannot be used")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add in COMMANDS:
        add(commands, common)
    return parser


def _exit_status(code: object) -> int:
    """A SystemExit code (from argparse) as an exit status."""
    if code is None:
        return ExitCode.OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return ExitCode.SETUP_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tlaudit`` with ``argv`` (default: ``sys.argv[1:]``) and return the :class:`ExitCode`."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        return _exit_status(exit_.code)
    if args.command is None:
        parser.print_help(sys.stderr)
        return ExitCode.SETUP_ERROR
    try:
        return int(args.run(args))
    except (SetupError, UsageError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"tlaudit {args.command}: error: {err}", file=sys.stderr)
        if not args.debug and isinstance(err, SetupError) and err.__cause__ is not None:
            print("(rerun with --debug for the traceback)", file=sys.stderr)
        return ExitCode.SETUP_ERROR
    except Exception as err:  # a bug in tlaudit: exit 2, never 1, which CI would read as findings
        if args.debug:
            traceback.print_exc()
        print(f"tlaudit {args.command}: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        if not args.debug:
            print("(rerun with --debug for the traceback)", file=sys.stderr)
        return ExitCode.SETUP_ERROR
