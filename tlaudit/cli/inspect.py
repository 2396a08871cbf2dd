"""``tlaudit inspect MODEL``: describe a model's modules and what is trainable."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tlaudit.cli._console import ExitCode, emit
from tlaudit.errors import UsageError
from tlaudit.options import positive_int_arg

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> ExitCode:
    """The ``inspect`` command."""
    from tlaudit.cli._models import load_model
    from tlaudit.inspection import describe, trainable_report
    from tlaudit.surgery import replace_head

    model, optimizer, head = load_model(args.model)
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


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``inspect`` sub-command to the ``tlaudit`` parser's ``commands``."""
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
    p.add_argument("--num-classes", type=positive_int_arg, metavar="N", help="replace the head with an N-class one first")
    p.add_argument("--depth", type=positive_int_arg, default=1, metavar="N", help="levels of modules to list (default: 1)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default: table)")
    p.set_defaults(run=run)
