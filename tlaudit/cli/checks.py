"""``tlaudit checks [ID]``: list the checks, or show one check's documentation (the catalogue)."""

from __future__ import annotations

import argparse
from typing import Any

from tlaudit.cli._console import ExitCode, emit
from tlaudit.errors import UsageError

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> ExitCode:
    """The ``checks`` command."""
    from tlaudit.auditing.catalogue import format_catalogue_markdown, format_check_doc, format_check_list, format_check_markdown
    from tlaudit.auditing.checks import REGISTRY, get_check

    as_json = args.format == "json"
    if args.id is None:
        if args.format == "markdown":
            text = format_catalogue_markdown(REGISTRY.values())
        else:
            text = format_check_list(REGISTRY.values(), as_json=as_json)
    else:
        try:
            check = get_check(args.id)
        except ValueError as err:
            raise UsageError(str(err)) from err
        text = format_check_markdown(check) if args.format == "markdown" else format_check_doc(check, as_json=as_json)
    emit(text, None)
    return ExitCode.OK


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``checks`` sub-command to the ``tlaudit`` parser's ``commands``."""
    p = commands.add_parser(
        "checks",
        parents=[common],
        help="list the checks, or show one check's documentation",
        description=(
            "Without ID: every check's ID, default severity and summary. With ID: its documentation (what it "
            "checks, why it matters, why it is silent, an example, the fix, references)."
        ),
    )
    p.add_argument("id", nargs="?", metavar="ID", help="a check ID (or alias)")
    p.add_argument(
        "--format",
        choices=["table", "json", "markdown"],
        default="table",
        help="output format (default: table); markdown without ID is docs/checks.md",
    )
    p.set_defaults(run=run)
