"""Options shared by the CLI and the pytest plugin: choices, parsers, help texts, check-ID validation.

This module imports neither torch nor the engine, so ``tlaudit --help`` and the pytest plugin can
load it for free; :func:`validate_check_ids` imports the check registry only when it is called.
Parsers raise ``ValueError`` with ``<what is wrong>: <value> (<source>)``.
"""

from __future__ import annotations

import ast
import difflib
import math
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "FAIL_ON_CHOICES",
    "FAIL_ON_HELP",
    "LR_MAX_HELP",
    "LR_CAUTION_HELP",
    "is_positive_number",
    "parse_fail_on",
    "parse_lr_max",
    "parse_positive_int",
    "parse_check_ids",
    "positive_float_arg",
    "positive_int_arg",
    "declared_check_ids",
    "unknown_check_message",
    "validate_check_ids",
]

FAIL_ON_CHOICES = ("error", "warning")
"""The severities that can fail a run: ``error`` (the default) or ``warning``."""

FAIL_ON_HELP = "lowest severity of finding that fails: error (default) or warning"
LR_MAX_HELP = "LR ceiling for pretrained (non-head) parameter groups, a positive number; overrides the setup's lr_max"
LR_CAUTION_HELP = (
    "LR above which pretrained parameter groups get a warning (below lr_max, which makes an error); "
    "a positive number, default lr_max / 3; overrides the setup's lr_caution"
)


def parse_fail_on(value: object, source: str) -> str:
    """``"error"`` or ``"warning"`` (case and surrounding spaces ignored; a ``Severity`` member works too)."""
    text = value.strip().lower() if isinstance(value, str) else value
    for choice in FAIL_ON_CHOICES:
        if text == choice:  # also a tlaudit.Severity member, which is a str enum
            return choice
    raise ValueError(f"invalid fail_on: {value!r} ({source}); expected 'error' or 'warning'")


def is_positive_number(value: object) -> bool:
    """An int or float (not a bool) that is finite and above 0."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def parse_lr_max(value: object, source: str) -> float:
    """A positive, finite number, from a number or its text."""
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if not is_positive_number(number):
        raise ValueError(f"invalid lr_max: {value!r} ({source}); expected a positive number")
    return float(number)  # type: ignore[arg-type]


def parse_positive_int(value: object, source: str) -> int:
    """A positive int, from an int or its text."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"invalid value: {value!r} ({source}); expected a positive integer")
    return value


def positive_float_arg(text: str) -> float:
    """An ``argparse`` type: a positive number (the CLI's ``--lr-max``, ``--lr-caution``)."""
    import argparse

    try:
        return parse_lr_max(text, "command line")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None


def positive_int_arg(text: str) -> int:
    """An ``argparse`` type: a positive integer."""
    import argparse

    try:
        return parse_positive_int(text, "command line")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


def parse_check_ids(value: object, source: str) -> tuple[str, ...]:
    """Check IDs from a list of str or a comma-separated str (not yet looked up in the registry)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"expected check IDs (a list of str or a comma-separated str): {value!r} ({source})")
    return tuple(i.strip() for i in items if i.strip())


def unknown_check_message(check_id: str, known: Iterable[str], field: str) -> str:
    """``unknown check ID: 'x' (field); did you mean ...?``, the one wording for a bad check ID."""
    near = difflib.get_close_matches(check_id, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else "; `tlaudit checks` lists them"
    return f"unknown check ID: {check_id!r} ({field}){hint}"


def declared_check_ids() -> dict[str, str]:
    """Every check ID and alias declared with ``@register`` in ``tlaudit/auditing/checks/``, mapped to its check's ID.

    Read from the source with :mod:`ast`, so that option validation needs no torch; when the registry is
    already imported it is used instead (a test keeps the two equal).
    """
    checks = sys.modules.get("tlaudit.auditing.checks")
    if checks is not None:
        return {**{i: i for i in checks.REGISTRY}, **checks.ALIASES}
    found: dict[str, str] = {}
    for path in sorted((Path(__file__).parent / "auditing" / "checks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register" and node.args):
                continue
            check_id = ast.literal_eval(node.args[0])
            found[check_id] = check_id
            for keyword in node.keywords:
                if keyword.arg == "aliases":
                    found.update(dict.fromkeys(ast.literal_eval(keyword.value), check_id))
    return found


def validate_check_ids(select: Iterable[str] | None, ignore: Iterable[str] | None, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` for an unknown check ID, or when nothing is left to run.

    ``select``/``ignore``: sequences of check IDs or None (all / none). Needs no torch.
    """
    known = declared_check_ids()
    for key, ids in (("select", select), ("ignore", ignore)):
        for check_id in ids or ():
            if check_id not in known:
                raise ValueError(f"{source}: {unknown_check_message(check_id, known, key)}")
    chosen = {known[i] for i in select} if select is not None else set(known.values())  # both validated above
    if not chosen - {known[i] for i in ignore or ()}:
        raise ValueError(f"{source}: select and ignore leave no check to run")
