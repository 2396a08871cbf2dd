"""Fixtures of the engine tests: one intra-op thread per test module (see ``tests/support/cases.py``)."""

from __future__ import annotations

from tests.support.cases import _one_thread  # noqa: F401 - an autouse fixture, module-scoped
