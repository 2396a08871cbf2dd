"""``tlaudit audit [PATH | --example NAME]``: audit a setup file, a ``module:function``, or a folder of setup files.

Progress: the check that is running (``[3/16] frozen-bn-train`` on one line, cleared at the end)
when stderr is a terminal, and nothing otherwise, so CI logs stay clean; ``--progress`` forces it
on, ``--no-progress`` off.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from tlaudit.cli._console import EXIT_CODES_HELP, ExitCode, Progress, emit, show_progress
from tlaudit.errors import UsageError
from tlaudit.examples import EXAMPLES
from tlaudit.options import FAIL_ON_CHOICES, FAIL_ON_HELP, LR_CAUTION_HELP, LR_MAX_HELP, positive_float_arg
from tlaudit.reports import Format

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> ExitCode:
    """The ``audit`` command."""
    from tlaudit.auditing.baseline import BaselineError, read_baseline
    from tlaudit.auditing.checks import select_checks
    from tlaudit.auditing.files import audit_file
    from tlaudit.auditing.findings import Severity
    from tlaudit.cli.folder import audit_target, rebaseline, summary_lines

    fmt = Format(args.format)
    fail_on = Severity(args.fail_on)
    try:
        checks = select_checks(args.select, args.ignore)  # unknown IDs fail here, before the setup is built
        baseline = read_baseline(args.baseline) if args.baseline is not None else None
    except ValueError as err:  # a BaselineError is a ValueError too
        raise UsageError(str(err)) from err

    def audit_one(spec: str) -> Any:
        progress = Progress(len(checks), sys.stderr) if show_progress(args.progress) else None
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the setup's own prints must not mix into the report
                return audit_file(spec, select=checks, progress=progress, lr_max=args.lr_max, lr_caution=args.lr_caution)
        finally:
            if progress is not None:
                progress.clear()

    target = args.path if args.path is not None else str(EXAMPLES[args.example or "correct"])
    try:
        results, folder = audit_target(target, audit_one, baseline, args.baseline)
        if args.write_baseline is not None:
            results, written = rebaseline(results, args.write_baseline, folder=folder)
            print(f"tlaudit: wrote {written} baseline entr{'y' if written == 1 else 'ies'} to {args.write_baseline}", file=sys.stderr)
    except BaselineError as err:
        raise UsageError(str(err)) from err
    emit(fmt.render(results, fail_on=fail_on, show_suppressed=args.show_suppressed, folder=folder), args.output)
    print("\n".join(summary_lines(results, folder=folder)), file=sys.stderr)
    reports = [r.report for r in results if r.report is not None]
    if len(reports) < len(results):
        return ExitCode.SETUP_ERROR
    if args.exit_zero or not any(r.at_or_above(fail_on) for r in reports):
        return ExitCode.OK
    return ExitCode.FINDINGS


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``audit`` sub-command to the ``tlaudit`` parser's ``commands``."""
    p = commands.add_parser(
        "audit",
        parents=[common],
        help="audit a transfer-learning setup",
        description=(
            "Run the checks over a TransferSetup and print the report. PATH is a Python file whose "
            "setup() returns a TransferSetup, file.py:function, or module:function. Without PATH the "
            "bundled 'correct' example is audited. With a folder, every *.py in it (not starting with _ "
            "or test_) that defines setup() is audited, in name order: one report per file, a combined "
            "json/sarif/junit, and the worst exit code."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("path", nargs="?", metavar="PATH", help="file.py, file.py:function, module:function, or a folder of setup files")
    source.add_argument("--example", choices=sorted(EXAMPLES), help="audit a bundled example setup instead of PATH")
    p.add_argument(
        "--format",
        choices=[f.value for f in Format],
        default=Format.TABLE.value,
        help="report format (default: table); json keys are documented in tlaudit.auditing.report",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--select", metavar="IDS", help="comma-separated check IDs to run (default: all)")
    p.add_argument("--ignore", metavar="IDS", help="comma-separated check IDs not to run")
    p.add_argument("--lr-max", type=positive_float_arg, metavar="X", help=LR_MAX_HELP)
    p.add_argument("--lr-caution", type=positive_float_arg, metavar="X", help=LR_CAUTION_HELP)
    p.add_argument(
        "--fail-on",
        choices=FAIL_ON_CHOICES,
        default=FAIL_ON_CHOICES[0],
        help=FAIL_ON_HELP + "; a finding at or above it makes the exit code 1",
    )
    p.add_argument("--exit-zero", action="store_true", help="exit 0 even with findings (2 still means the setup could not be used)")
    p.add_argument(
        "--baseline",
        metavar="FILE",
        help="accept the findings listed in FILE (from --write-baseline): only new findings fail; stale entries are reported",
    )
    p.add_argument(
        "--write-baseline",
        metavar="FILE",
        help="write the current findings to FILE as the accepted baseline; they then no longer fail this run",
    )
    p.add_argument(
        "--show-suppressed",
        action="store_true",
        help="list suppressed findings (TransferSetup.ignore) with their reasons in table and markdown reports",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the running check on stderr (default: only when stderr is a terminal)",
    )
    p.set_defaults(run=run)
