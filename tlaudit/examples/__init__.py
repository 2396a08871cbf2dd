"""Bundled example setups: ``correct`` (a sound feature-extraction setup) and ``buggy`` (the usual mistakes)."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = {"correct": Path(__file__).with_name("correct.py"), "buggy": Path(__file__).with_name("buggy.py")}
