"""docs/extraction.md: every ``>>>`` block runs (the other blocks are pasted shell output from real runs)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "extraction.md"


def test_the_extraction_page_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write their folders under the working directory
    result = doctest.testfile(str(PAGE), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10
    if result.failed:
        pytest.fail(f"{result.failed} of {result.attempted} examples in {PAGE.name} failed (doctest output above)")


def test_every_code_block_is_a_doctest_or_shell_output():
    blocks = PAGE.read_text(encoding="utf-8").split("```")[1::2]
    for block in blocks:
        kind, _, body = block.partition("\n")
        assert kind in ("", "text", "pycon", "console"), f"unexpected code block kind {kind!r}"
        if kind == "pycon":
            assert body.lstrip().startswith(">>>")
