"""Shared by the corpus modules: tiny inputs, the two verdicts, and the table rows.

Every corpus module holds two parametrized tables: ``CORRECT`` (name -> builder; the source's authors
say the setup is right, so the audit must report no error and must not crash) and ``BUGGY`` (name ->
``(builder, check, fragment)``; the source's maintainers confirm the bug, so the audit must name it
with that check and a message holding the fragment). Where the audit is wrong today, the row is
wrapped in :func:`known_gap`, an ``xfail(strict=True)`` that says what the audit gets wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import tlaudit
from tlaudit.examples._common import pixels

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
IMAGENET = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}

Builder = Callable[[], tlaudit.TransferSetup]


def images(n: int = 2, size: int = 64, normalize: bool = True) -> torch.Tensor:
    """Crops of real photographs, normalized with ImageNet statistics as the transforms would."""
    x = pixels(n, size)
    if not normalize:
        return x
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def labels(n: int = 2, classes: int = 2) -> torch.Tensor:
    return torch.arange(n) % classes


def eval_predict(model: nn.Module, x: torch.Tensor) -> Any:
    """The evaluation loop every source writes: ``model.eval()`` under ``torch.no_grad()``."""
    model.eval()
    with torch.no_grad():
        return model(x)


def known_gap(row: Any, reason: str) -> Any:
    """A row (a builder, or ``(builder, check, fragment)``) whose right verdict the audit does not
    give yet: a strict xfail naming what is wrong."""
    values = row if isinstance(row, tuple) else (row,)
    return pytest.param(*values, marks=pytest.mark.xfail(strict=True, reason=reason))


def rows(table: dict[str, Any]) -> list[Any]:
    """``pytest.param`` rows with ids from a table whose values may already be ``known_gap`` params."""
    out = []
    for name, value in table.items():
        if isinstance(value, type(pytest.param(None))):
            out.append(pytest.param(*value.values, marks=value.marks, id=name))
        elif isinstance(value, tuple):
            out.append(pytest.param(*value, id=name))
        else:
            out.append(pytest.param(value, id=name))
    return out


def assert_correct(build: Builder) -> tlaudit.Report:
    """No error finding, no crash of the user's code blamed on them, no SetupError."""
    report = tlaudit.audit(build())
    assert report.errors == [], str(report)
    return report


def assert_named(build: Builder, check: str, fragment: str) -> tlaudit.Report:
    """The bug is named by ``check`` (at error where the check's default is error) with a message or
    hint holding ``fragment``."""
    report = tlaudit.audit(build())
    found = report.by_check(check)
    if tlaudit.get_check(check).severity is tlaudit.Severity.ERROR:
        found = [f for f in found if f.severity is tlaudit.Severity.ERROR]
    assert found, str(report)
    assert any(fragment in f.message or fragment in (f.hint or "") for f in found), str(report)
    return report
