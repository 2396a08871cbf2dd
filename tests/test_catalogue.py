"""The check catalogue (tlaudit/auditing/catalogue.py): every part of every check's documentation, ``tlaudit
checks ID``, and docs/checks.md kept in sync with the registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tlaudit.auditing.catalogue import SECTIONS, format_catalogue_markdown, format_check_doc, format_check_markdown
from tlaudit.auditing.checks import REGISTRY
from tlaudit.cli import ExitCode, main

DOCS = Path(__file__).parent.parent / "docs" / "checks.md"
SOURCE = re.compile(r"https://\S+")


def test_sections_are_the_documented_seven():
    assert SECTIONS == ("What", "Why", "Why it is silent", "Evidence", "Example", "Fix", "References")


@pytest.mark.parametrize("check_id", list(REGISTRY))
def test_every_check_documents_every_part(check_id):
    check = REGISTRY[check_id]
    for title in SECTIONS:
        assert len(check.section(title)) > 40, f"{check_id}: docstring section {title!r} missing or too short"
    # the parts appear once each, in the documented order
    positions = [check.doc.index(f"\n{title}:\n") if title != "What" else check.doc.index("What:\n") for title in SECTIONS]
    assert positions == sorted(positions), check_id
    references = check.section("References").splitlines()
    assert references and all(line.startswith("- ") for line in references), check_id
    assert all(SOURCE.search(line) for line in references), f"{check_id}: every reference needs a checkable URL"


def test_why_it_is_silent_is_not_the_why():
    for check in REGISTRY.values():
        assert check.section("Why it is silent") != check.section("Why")
        assert "Why it is silent" not in check.section("Why")  # the section regex keeps them apart


@pytest.mark.parametrize("check_id", ["frozen-bn-train", "lr-threshold", "normalization"])
def test_checks_id_prints_every_part(capsys, check_id):
    assert main(["checks", check_id]) == ExitCode.OK
    out = capsys.readouterr().out
    check = REGISTRY[check_id]
    assert out == format_check_doc(check) + "\n"
    for title in SECTIONS:
        assert f"\n{title}:\n{check.section(title)}" in out


def test_checks_id_json_has_every_section(capsys):
    assert main(["checks", "frozen-bn-train", "--format", "json"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert list(data["sections"]) == list(SECTIONS)
    assert "arxiv.org/abs/1603.04779" in data["sections"]["References"]  # AdaBN


def test_check_markdown_has_a_heading_and_every_part():
    text = format_check_markdown(REGISTRY["lr-threshold"], heading_level=3)
    assert text.startswith(
        "### lr-threshold\n\n**A group of pretrained parameters has an LR above lr_max.** "
        "Default severity: `error`. Needs `optimizer` (skipped without)."
    )
    for title in SECTIONS:
        assert f"\n**{title}.**\n\n" in text


def test_docs_checks_md_is_generated_from_the_registry(capsys):
    """docs/checks.md is what ``python -m tlaudit checks --format markdown`` prints: regenerate it
    with that command after changing a check's docstring."""
    expected = format_catalogue_markdown(REGISTRY.values()) + "\n"
    assert DOCS.read_text(encoding="utf-8") == expected, (
        "docs/checks.md is out of date: python -m tlaudit checks --format markdown > docs/checks.md"
    )
    assert main(["checks", "--format", "markdown"]) == ExitCode.OK
    assert capsys.readouterr().out == expected
    for check_id in REGISTRY:
        assert f"| [`{check_id}`](#{check_id}) |" in expected and f"\n## {check_id}\n" in expected
