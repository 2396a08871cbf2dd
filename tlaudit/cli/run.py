"""``tlaudit run SCRIPT [ARGS...]``: run a training script in this process under :func:`tlaudit.watch`.

As ``coverage run`` does: the script runs as ``__main__`` with ``sys.argv = [SCRIPT, *ARGS]`` and its
directory first on ``sys.path``; both are put back afterwards. Exit codes:

* the script's own (0 when it ends normally, its ``sys.exit`` code, 1 for an uncaught exception,
  whose traceback is printed as Python prints it);
* 1 when an audit found a problem at or above ``--fail-on`` (the run is stopped before the step);
* 2 when the script cannot be started (no such file) or an option or the intent is bad.

``--stop-after-audit`` ends the run once both audits are done and ``--max-steps N`` after N optimizer
steps; a run ended so exits 0 (or 1 if an audit failed it).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from tlaudit.options import FAIL_ON_CHOICES, FAIL_ON_HELP, LR_MAX_HELP, positive_float_arg, positive_int_arg
from tlaudit.reports import Format

__all__ = ["add_parser", "run", "run_script"]

_NEVER = "never"

_EPILOG = """\
exit codes:
  the script's own exit code (1 for an uncaught exception), or
  1  an audit found a problem at or above --fail-on (the run was stopped before the step)
  2  the script cannot be started, or a bad option or intent value
"""


_positive_float, _positive_int = positive_float_arg, positive_int_arg  # argparse types


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``run`` subcommand to the ``tlaudit`` parser's ``commands``."""
    p = commands.add_parser(
        "run",
        parents=[common],
        help="run a training script and audit it at its first optimizer step",
        description=(
            "Run SCRIPT (with ARGS) in this process under tlaudit.watch(): the train audit at the first "
            "optimizer step, before it executes, and the inference audit after the first validation pass. "
            "The reports go to stderr (or --output); the script keeps stdout."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("script", metavar="SCRIPT", help="the training script (a .py file)")
    p.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments passed to the script")
    p.add_argument("--format", choices=[f.value for f in Format], default=Format.TABLE.value, help="report format (default: table)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the reports to FILE instead of stderr")
    p.add_argument("--select", metavar="IDS", help="comma-separated check IDs to run (default: all)")
    p.add_argument("--ignore", metavar="IDS", help="comma-separated check IDs not to run")
    p.add_argument("--lr-max", type=_positive_float, metavar="X", help=LR_MAX_HELP)
    p.add_argument(
        "--fail-on",
        choices=[*FAIL_ON_CHOICES, _NEVER],
        default=FAIL_ON_CHOICES[0],
        help=FAIL_ON_HELP + "; the run stops before the step and exits 1. never: report and go on",
    )
    intent = p.add_argument_group("intent (what no hook can observe; wins over what is inferred)")
    intent.add_argument("--strategy", choices=["feature_extraction", "fine_tuning"], help="the transfer strategy")
    intent.add_argument("--frozen", type=_names, metavar="PATTERNS", help="comma-separated module names meant frozen")
    intent.add_argument("--num-classes", type=_positive_int, metavar="N", help="classes of the new task")
    intent.add_argument("--weights", metavar="NAME", help="the pretrained weights, e.g. ResNet18_Weights.IMAGENET1K_V1")
    intent.add_argument("--head", type=_names, metavar="NAMES", help="comma-separated head module names")
    p.add_argument("--stop-after-audit", action="store_true", help="end the run once both audits are done (for CI)")
    p.add_argument("--max-steps", type=_positive_int, metavar="N", help="end the run after N optimizer steps")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The ``run`` command: watch ``args.script`` and return its exit code, or 1 / 2 (see the module doc)."""
    from tlaudit.watcher import watch

    try:
        watcher = watch(
            strategy=args.strategy,
            frozen=args.frozen,
            num_classes=args.num_classes,
            weights=args.weights,
            head=args.head,
            lr_max=args.lr_max,
            fail_on=None if args.fail_on == _NEVER else args.fail_on,
            select=args.select,
            ignore=args.ignore,
            output=args.output,
            format=args.format,
            max_steps=args.max_steps,
            stop_after_audit=args.stop_after_audit,
        )
    except (ValueError, TypeError, OSError) as err:
        print(f"tlaudit run: error: {err}", file=sys.stderr)
        return 2
    script = Path(args.script)
    if not script.is_file():
        print(f"tlaudit run: error: cannot run the script: no such file: {args.script} (SCRIPT)", file=sys.stderr)
        return 2
    code = run_script(script, args.script_args, watcher)
    return 1 if watcher.failed else code


def run_script(script: Path, argv: list[str], context: Any) -> int:
    """Run ``script`` as ``__main__`` with ``argv`` inside ``context`` (a watch); return its exit code."""
    from tlaudit.auditing.report import AuditFailed
    from tlaudit.errors import SetupError

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *argv]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        with context:
            runpy.run_path(str(script), run_name="__main__")
        return 0
    except SystemExit as exit_:
        return _exit_code(exit_.code)
    except AuditFailed:
        return 1  # the report is already written
    except SetupError as err:
        print(f"tlaudit run: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # the script's own crash: Python prints the traceback and exits 1
        _print_script_traceback(err, script)
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _print_script_traceback(err: BaseException, script: Path) -> None:
    """The traceback from the script's first frame on, as ``python SCRIPT`` would print it."""
    tb = err.__traceback__
    target = os.path.abspath(script)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != target:
        tb = tb.tb_next
    traceback.print_exception(type(err), err, tb or err.__traceback__, file=sys.stderr)
