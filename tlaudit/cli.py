"""The ``tlaudit`` command line: ``audit`` a transfer setup, ``inspect`` a model, list the ``checks``.

``main(argv)`` returns an :class:`ExitCode`; ``python -m tlaudit`` and the ``tlaudit`` console
script call it. The report goes to stdout (or ``--output``); the summary sentence, progress and
error messages go to stderr, so ``tlaudit audit --format json > report.json`` gives clean JSON.

Progress: ``tlaudit audit`` shows the check that is running (``[3/16] frozen-bn-train`` on one
line, cleared at the end) when stderr is a terminal, and nothing otherwise, so CI logs stay clean.
``--progress`` forces it on, ``--no-progress`` off.

Adding a command (a future ``tlaudit bench``, say) takes an ``_add_<name>(commands, common)``
function that adds its subparser with ``set_defaults(run=<handler>)``, listed in ``_COMMANDS``;
a handler takes the parsed arguments and returns an :class:`ExitCode`.

Building the parser imports neither torch nor the engine (``tlaudit --help`` is instant); each
handler imports what it needs.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tlaudit._version import __version__
from tlaudit.bench.command import add_parser as _add_bench
from tlaudit.errors import SetupError, UsageError
from tlaudit.extract.command import add_parser as _add_extract
from tlaudit.models import load_model as _load_model
from tlaudit.examples import EXAMPLES
from tlaudit.findings import Severity
from tlaudit.formats import Format
from tlaudit.options import FAIL_ON_CHOICES, FAIL_ON_HELP, LR_CAUTION_HELP, LR_MAX_HELP, positive_float_arg, positive_int_arg
from tlaudit.console import ExitCode, Progress, emit, show_progress
from tlaudit.run import add_parser as _add_run

if TYPE_CHECKING:
    from torch import nn

    from tlaudit.report import Report

__all__ = ["ExitCode", "build_parser", "main", "run_audit"]






_EXIT_CODES_HELP = """\
exit codes:
  0  no finding at or above --fail-on (or --exit-zero); other commands: done
  1  the audit found a problem at or above --fail-on
  2  the input could not be used: setup file/function missing, setup() raised or returned
     no TransferSetup, the model cannot take the sample, or a bad option value or baseline file
a folder audit exits with the worst code of its files (2 > 1 > 0)
"""


# -- argument types --------------------------------------------------------------------------------


_positive_float, _positive_int = positive_float_arg, positive_int_arg  # argparse types


# -- loading ---------------------------------------------------------------------------------------


def run_audit(
    spec: str,
    *,
    select: str | None = None,
    ignore: str | None = None,
    lr_max: float | None = None,
    lr_caution: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Load the setup ``spec`` names (see :func:`tlaudit.load_setup`) and audit it: ``tlaudit audit`` without the output.

    Findings get locations in the setup file (see :mod:`tlaudit.locations`).

    Raises:
        SetupError: the setup could not be loaded or run; the message names the file, function and field.
    """
    from tlaudit.engine import audit
    from tlaudit.setup import load_setup, split_spec

    from tlaudit.locations import locate, source_file

    setup = load_setup(spec)
    target, func = split_spec(spec)
    where = f"{target}:{func}()"
    try:
        if lr_max is not None:
            caution = setup.lr_caution if setup.lr_caution is None or setup.lr_caution <= lr_max else lr_max
            setup = setup.replace(lr_max=lr_max, lr_caution=caution)
        if lr_caution is not None:
            setup = setup.replace(lr_caution=lr_caution)
        report = audit(setup, select, ignore, progress=progress)
        return locate(report, setup, source_file(spec), func)
    except SetupError as err:
        raise SetupError(f"{where}: {err}", field=err.field) from err
    except Exception as err:  # a crash must not read as "findings" (exit 1) or as a clean run
        raise SetupError(f"{where}: the audit raised {type(err).__name__}: {err}") from err


# -- commands --------------------------------------------------------------------------------------


def _cmd_audit(args: argparse.Namespace) -> ExitCode:
    from tlaudit.baseline import BaselineError, read_baseline
    from tlaudit.batch import audit_target, rebaseline, render_results
    from tlaudit.checks import select_checks

    fmt = Format(args.format)
    fail_on = Severity(args.fail_on)
    try:
        checks = select_checks(args.select, args.ignore)  # unknown IDs fail here, before the setup is built
        baseline = read_baseline(args.baseline) if args.baseline is not None else None
    except ValueError as err:  # a BaselineError is a ValueError too
        raise UsageError(str(err)) from err

    def audit_one(spec: str) -> Report:
        progress = Progress(len(checks), sys.stderr) if show_progress(args.progress) else None
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the setup's own prints must not mix into the report
                return run_audit(spec, select=args.select, ignore=args.ignore, lr_max=args.lr_max,
                                 lr_caution=args.lr_caution, progress=progress)
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
    text, summary = render_results(results, fmt, folder=folder, fail_on=fail_on, show_suppressed=args.show_suppressed)
    emit(text, args.output)
    print("\n".join(summary), file=sys.stderr)
    reports = [r.report for r in results if r.report is not None]
    if len(reports) < len(results):
        return ExitCode.SETUP_ERROR
    if args.exit_zero or not any(r.at_or_above(fail_on) for r in reports):
        return ExitCode.OK
    return ExitCode.FINDINGS


def _cmd_inspect(args: argparse.Namespace) -> ExitCode:
    from tlaudit.inspection import describe, trainable_report
    from tlaudit.surgery import replace_head

    model, optimizer, head = _load_model(args.model)
    try:
        if args.num_classes is not None:
            replace_head(model, args.num_classes, head=head)
        description = describe(model, depth=args.depth, head=head)
        trainable = trainable_report(model, optimizer, depth=args.depth)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{args.model}: {err}") from err
    if args.format == "json":
        text = json.dumps({"describe": description.to_dict(), "trainable": trainable.to_dict()}, indent=2, default=str)
    else:
        text = f"{description}\n\n{trainable}"
    emit(text, None)
    return ExitCode.OK


def _cmd_checks(args: argparse.Namespace) -> ExitCode:
    from tlaudit.catalogue import format_catalogue_markdown, format_check_doc, format_check_list, format_check_markdown
    from tlaudit.checks import REGISTRY, get_check

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


# -- the parser ------------------------------------------------------------------------------------


def _add_audit(commands: Any, common: argparse.ArgumentParser) -> None:
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
        epilog=_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "path", nargs="?", metavar="PATH", help="file.py, file.py:function, module:function, or a folder of setup files"
    )
    source.add_argument("--example", choices=sorted(EXAMPLES), help="audit a bundled example setup instead of PATH")
    p.add_argument(
        "--format",
        choices=[f.value for f in Format],
        default=Format.TABLE.value,
        help="report format (default: table); json keys are documented in tlaudit.report",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--select", metavar="IDS", help="comma-separated check IDs to run (default: all)")
    p.add_argument("--ignore", metavar="IDS", help="comma-separated check IDs not to run")
    p.add_argument("--lr-max", type=_positive_float, metavar="X", help=LR_MAX_HELP)
    p.add_argument("--lr-caution", type=_positive_float, metavar="X", help=LR_CAUTION_HELP)
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
    p.set_defaults(run=_cmd_audit)


def _add_inspect(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "inspect",
        parents=[common],
        help="describe a model's modules and what is trainable",
        description=(
            "Print describe(model) and trainable_report(model). MODEL is a torchvision builder name "
            "(built with weights=None), a Python file (its setup()), file.py:function or module:function "
            "returning an nn.Module or a TransferSetup (whose model, head and optimizer are used)."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="resnet18, file.py[:function] or module:function")
    p.add_argument("--num-classes", type=_positive_int, metavar="N", help="replace the head with an N-class one first")
    p.add_argument("--depth", type=_positive_int, default=1, metavar="N", help="levels of modules to list (default: 1)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default: table)")
    p.set_defaults(run=_cmd_inspect)


def _add_checks(commands: Any, common: argparse.ArgumentParser) -> None:
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
    p.set_defaults(run=_cmd_checks)


_COMMANDS: tuple[Callable[[Any, argparse.ArgumentParser], None], ...] = (
    _add_audit, _add_inspect, _add_checks, _add_bench, _add_extract, _add_run,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``tlaudit`` argument parser, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="tlaudit",
        description="Make PyTorch transfer learning correct: audit setups, inspect models, list the checks.",
        epilog=_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tlaudit {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback when the input cannot be used")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add in _COMMANDS:
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
