"""The corpus as a table: each transcribed setup, its family, its source, the source's verdict and what
the audit says of it now, as Markdown on stdout. Run outside pytest, as a user runs the audit:

    .venv/bin/python -m tests.realistic.table > corpus.md

A row the audit gets wrong (an error on a correct setup, a bug not named by its check, a crash) is
marked **wrong**, and the exit code is 1. The source is the first link in the comment above the
builder, else in the module's docstring.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import warnings
from typing import Any

import pytest
import torch

import tlaudit

FAMILIES = ("classification", "detection", "segmentation", "ssl", "hf", "lightning", "augmentation", "bugs")
_LINK = re.compile(r"https?://[^\s)>\"'`]+")


def _values(row: Any) -> tuple[Any, ...]:
    if isinstance(row, type(pytest.param(None))):
        return tuple(row.values)
    return row if isinstance(row, tuple) else (row,)


def source(build: Any, module: Any) -> str:
    lines, start = inspect.findsource(build)
    comment = []
    i = start - 1
    while i >= 0 and lines[i].startswith(("#", "@")):
        comment.insert(0, lines[i])
        i -= 1
    links = _LINK.findall("".join(comment) + (inspect.getdoc(build) or "")) or _LINK.findall(module.__doc__ or "")
    return links[0].rstrip(".,;:") if links else "(none)"


def said(report: tlaudit.Report) -> str:
    errors = sorted({f.check for f in report.errors})
    warned = sorted({f.check for f in report.findings if f.severity is tlaudit.Severity.WARNING})
    text = "error " + ", ".join(f"`{c}`" for c in errors) if errors else "no error"
    return text + ("; warning " + ", ".join(f"`{c}`" for c in warned) if warned else "")


def rows() -> tuple[list[str], int]:
    out = ["| # | setup | family | source | verdict (the source's) | what the audit says |", "|---|---|---|---|---|---|"]
    wrong = 0
    for family in FAMILIES:
        module = importlib.import_module(f"tests.realistic.test_corpus_{family}")
        for kind in ("CORRECT", "BUGGY"):
            for name, row in getattr(module, kind).items():
                values = _values(row)
                try:
                    report = tlaudit.audit(values[0]())
                    text = said(report)
                    right = not report.errors if kind == "CORRECT" else bool(report.by_check(values[1]))
                except Exception as error:  # a crash is a wrong row, not the end of the table
                    text, right = f"raised {type(error).__name__}: {error}", False
                wrong += not right
                verdict = "correct" if kind == "CORRECT" else f"bug: `{values[1]}`"
                mark = "" if right else " **wrong**"
                out.append(f"| {len(out) - 1} | {name} | {family} | {source(values[0], module)} | {verdict} | {text}{mark} |")
    return out, wrong


def main() -> int:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    table, wrong = rows()
    print("\n".join(table))
    print(f"{len(table) - 2} setups, {len(table) - 2 - wrong} judged right", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
