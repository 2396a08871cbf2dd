"""The README and docs/ stay true: every output block marked ``<!-- generated: tlaudit ... -->`` is what
that command prints today (stdout, then stderr), and every block marked ``<!-- excerpt: PATH -->`` is
the file's text, verbatim. (``>>>`` blocks run as doctests; pyproject's ``--doctest-glob``.)

After an intended change, ``TLAUDIT_UPDATE_DOCS=1 python -m pytest tests/test_docs.py`` rewrites the
generated blocks; review the diff.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from tlaudit.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
UPDATE = os.environ.get("TLAUDIT_UPDATE_DOCS") == "1"
_MARKED = re.compile(r"<!-- (generated|excerpt): (.+?) -->\n```[a-z]*\n(.*?)```", re.S)


def _blocks(kind: str) -> list[tuple[Path, str, str]]:
    return [(page, m.group(2), m.group(3)) for page in PAGES for m in _MARKED.finditer(page.read_text()) if m.group(1) == kind]


def _output(command: str) -> str:
    argv = shlex.split(command)
    assert argv[0] == "tlaudit", f"a generated block runs a tlaudit command, not {argv[0]!r}"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        main(argv[1:])
    return out.getvalue() + err.getvalue()


def test_the_pages_mark_their_blocks():
    assert _blocks("generated") and _blocks("excerpt")


@pytest.mark.parametrize(("page", "command", "block"), _blocks("generated"), ids=lambda v: v.name if isinstance(v, Path) else None)
def test_a_generated_block_is_what_the_command_prints(page: Path, command: str, block: str):
    printed = _output(command)
    if UPDATE:
        text = page.read_text()
        page.write_text(
            text.replace(f"<!-- generated: {command} -->\n```\n{block}```", f"<!-- generated: {command} -->\n```\n{printed}```")
        )
        return
    assert printed == block, f"{page.name}: the block after `{command}` differs from its output (TLAUDIT_UPDATE_DOCS=1 rewrites it)"


@pytest.mark.parametrize(("page", "path", "block"), _blocks("excerpt"), ids=lambda v: v.name if isinstance(v, Path) else None)
def test_an_excerpt_is_the_file_verbatim(page: Path, path: str, block: str):
    assert block in (ROOT / path).read_text(), f"{page.name}: the excerpt of {path} is no longer in that file"
