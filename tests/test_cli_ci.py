"""The CI side of ``tlaudit audit``: folder audits, --baseline/--write-baseline, --show-suppressed.

Setups are the tiny ones of tests/support/ci_setups.py, written into ``tmp_path``; every test runs in
``tmp_path`` so the paths in the reports are relative (``setups/warn.py``) and the golden files
stable. Golden files (tests/golden/) hold output people read; regenerate them after an intended
change with ``TLAUDIT_UPDATE_GOLDEN=1 python -m pytest tests/test_cli_ci.py`` and review the diff.
"""

from __future__ import annotations

import difflib
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.ci_setups import write_setups
from tlaudit.auditing.checks import REGISTRY
from tlaudit.cli import ExitCode, main
from tlaudit.cli.folder import setup_files

N = len(REGISTRY)  # the counts follow the registry

GOLDEN = Path(__file__).with_name("golden")
UPDATE_GOLDEN = os.environ.get("TLAUDIT_UPDATE_GOLDEN") == "1"


def assert_golden(name: str, text: str) -> None:
    """``text`` equals tests/golden/``name``; with TLAUDIT_UPDATE_GOLDEN=1 the file is rewritten instead."""
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing golden file {path}; create it with TLAUDIT_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "actual"))
        pytest.fail(f"output differs from {path} (TLAUDIT_UPDATE_GOLDEN=1 regenerates it):\n{diff}")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- folder audits ----------------------------------------------------------------------------------


def test_setup_files_are_chosen_by_name_and_setup_function(here):
    write_setups(here / "setups", "warn", "clean")
    (here / "setups" / "_helpers.py").write_text("def setup():\n    pass\n")
    (here / "setups" / "test_model.py").write_text("def setup():\n    pass\n")
    (here / "setups" / "util.py").write_text("def build():\n    pass\n")
    (here / "setups" / "nested").mkdir()
    write_setups(here / "setups" / "nested", "high_lr")
    assert [p.name for p in setup_files(here / "setups")] == ["clean.py", "warn.py"]


def test_folder_table_golden_and_the_worst_exit_code(here, capsys):
    write_setups(here / "setups", "warn", "high_lr", "clean")
    code, out, err = run(capsys, "audit", "setups")
    assert code == ExitCode.FINDINGS
    assert_golden("audit-folder.txt", out)
    assert err.splitlines() == [
        f"setups/clean.py: tlaudit: Sequential: {N - 6} checks run, 0 errors, 0 warnings, 6 skipped.",
        f"setups/high_lr.py: tlaudit: Sequential: {N - 6} checks run, 1 error, 0 warnings, 6 skipped.",
        f"setups/warn.py: tlaudit: Sequential: {N - 6} checks run, 0 errors, 1 warning, 6 skipped.",
        "tlaudit: 3 of 3 setups audited, 1 error, 1 warning.",
    ]
    (here / "setups" / "high_lr.py").unlink()
    assert run(capsys, "audit", "setups")[0] == ExitCode.OK
    assert run(capsys, "audit", "setups", "--fail-on", "warning")[0] == ExitCode.FINDINGS


def test_a_setup_that_cannot_be_audited_makes_the_folder_exit_2(here, capsys):
    write_setups(here / "setups", "raises", "high_lr")
    code, out, err = run(capsys, "audit", "setups", "--exit-zero")
    assert code == ExitCode.SETUP_ERROR  # --exit-zero forgives findings, not a setup that could not be used
    assert "== setups/raises.py ==\nsetups/raises.py:setup() raised RuntimeError: no GPU here (setup)" in out
    assert "tlaudit audit: error: setups/raises.py:setup() raised RuntimeError: no GPU here (setup)" in err
    assert err.endswith("tlaudit: 1 of 2 setups audited, 1 error, 0 warnings, 1 could not be audited.\n")


def test_an_empty_folder_exits_2(here, capsys):
    (here / "empty").mkdir()
    code, out, err = run(capsys, "audit", "empty")
    assert (code, out) == (ExitCode.SETUP_ERROR, "")
    assert "tlaudit audit: error: no setup files in empty (PATH)" in err


def test_folder_json_and_junit_combine_every_file(here, capsys):
    write_setups(here / "setups", "raises", "warn", "high_lr")
    code, out, _ = run(capsys, "audit", "setups", "--format", "json")
    assert code == ExitCode.SETUP_ERROR
    data = json.loads(out)
    assert list(data) == ["version", "tlaudit", "ok", "summary", "audits"] and data["ok"] is False
    assert data["summary"] == {
        "setups": 3,
        "audited": 2,
        "failed": 1,
        "errors": 1,
        "warnings": 1,
        "infos": 0,
        "suppressed": 0,
        "baselined": 0,
        "stale": 0,
    }
    assert [(a["path"], a["error"] is None) for a in data["audits"]] == [
        ("setups/high_lr.py", True),
        ("setups/raises.py", False),
        ("setups/warn.py", True),
    ]
    source = (here / "setups" / "high_lr.py").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if text.startswith("    optimizer = torch.optim.SGD("))
    assert data["audits"][0]["report"]["findings"][0]["location"] == {
        "path": "setups/high_lr.py",
        "line": line,
        "anchor": "optimizer construction",
    }
    code, out, _ = run(capsys, "audit", "setups", "--format", "junit")
    suites = ET.fromstring(out)
    assert suites.tag == "testsuites"
    assert [s.get("name") for s in suites] == ["tlaudit: setups/high_lr.py", "tlaudit: setups/raises.py", "tlaudit: setups/warn.py"]
    assert (suites.get("failures"), suites.get("errors")) == ("1", "1")
    assert suites[1].find("testcase/error").get("message") == "setups/raises.py:setup() raised RuntimeError: no GPU here (setup)"


def test_folder_markdown_golden(here, capsys):
    write_setups(here / "setups", "warn", "raises")
    code, out, _ = run(capsys, "audit", "setups", "--format", "markdown")
    assert code == ExitCode.SETUP_ERROR
    assert_golden("audit-folder.md", out)


# -- baselines --------------------------------------------------------------------------------------


def test_write_baseline_then_only_new_findings_fail_and_stale_entries_show(here, capsys):
    [bn] = write_setups(here, "bn")
    code, _, err = run(capsys, "audit", "bn.py", "--write-baseline", "tlaudit-baseline.json", "--fail-on", "warning")
    assert code == ExitCode.OK  # everything written is accepted
    assert err.splitlines()[0] == "tlaudit: wrote 3 baseline entries to tlaudit-baseline.json"
    assert run(capsys, "audit", "bn.py", "--baseline", "tlaudit-baseline.json", "--fail-on", "warning")[0] == ExitCode.OK
    # the BatchNorm layer is unfrozen (one finding fixed, one stale entry) and the LR raised (one new finding)
    bn.write_text(bn.read_text().replace("'0', '1'", "'0'").replace("lr=0.001", "lr=0.1"))
    code, out, err = run(capsys, "audit", "bn.py", "--baseline", "tlaudit-baseline.json")
    assert code == ExitCode.FINDINGS
    assert_golden("audit-baseline.txt", out)
    assert err == (
        f"tlaudit: Sequential: {N - 6} checks run, 1 error, 0 warnings, 6 skipped, 1 in the baseline, 2 stale baseline entries.\n"
    )
    data = json.loads(run(capsys, "audit", "bn.py", "--baseline", "tlaudit-baseline.json", "--format", "json")[1])
    assert [f["check"] for f in data["findings"]] == ["lr-threshold"]
    assert sorted(e["check"] for e in data["baseline"]["stale"]) == ["frozen-bn-train", "optimizer-frozen"]


def test_folder_baseline_entries_carry_their_file(here, capsys):
    write_setups(here / "setups", "warn", "high_lr")
    assert run(capsys, "audit", "setups", "--write-baseline", "base.json")[0] == ExitCode.OK
    entries = json.loads((here / "base.json").read_text())["findings"]
    assert sorted((e["path"], e["check"]) for e in entries) == [
        ("setups/high_lr.py", "lr-threshold"),
        ("setups/warn.py", "optimizer-frozen"),
    ]
    # the same finding in a file the baseline does not know is new
    write_setups(here / "setups", "high_lr", names={"high_lr": "copy.py"})
    code, out, err = run(capsys, "audit", "setups", "--baseline", "base.json")
    assert code == ExitCode.FINDINGS
    assert (
        err.splitlines()[0]
        == f"setups/copy.py: tlaudit: Sequential: {N - 6} checks run, 1 error, 0 warnings, 6 skipped, 0 in the baseline."
    )
    assert err.splitlines()[-1] == "tlaudit: 3 of 3 setups audited, 1 error, 0 warnings, 2 in the baseline."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "tlaudit audit: error: baseline file not found: base.json (--baseline); create it with --write-baseline"),
        ('{"version": 1}', "tlaudit audit: error: not a tlaudit baseline (version 1 with a findings list): base.json (--baseline)"),
    ],
)
def test_a_bad_baseline_exits_2_before_the_audit(here, capsys, content, message):
    write_setups(here, "raises")  # never run: the baseline is read first
    if content is not None:
        (here / "base.json").write_text(content)
    code, out, err = run(capsys, "audit", "raises.py", "--baseline", "base.json")
    assert (code, out, err) == (ExitCode.SETUP_ERROR, "", message + "\n")


def test_write_baseline_to_an_unwritable_place_exits_2(here, capsys):
    write_setups(here, "warn")
    code, _, err = run(capsys, "audit", "warn.py", "--write-baseline", "no-such-dir/base.json")
    assert code == ExitCode.SETUP_ERROR
    assert "tlaudit audit: error: cannot write the baseline: no-such-dir/base.json (--write-baseline): " in err


# -- suppressions -----------------------------------------------------------------------------------


def test_show_suppressed_golden(here, capsys):
    write_setups(here, "bn_ignored")
    code, out, err = run(capsys, "audit", "bn_ignored.py", "--fail-on", "warning", "--show-suppressed")
    assert code == ExitCode.FINDINGS  # the two optimizer-frozen warnings; the suppressed one does not count
    assert_golden("audit-suppressed.txt", out)
    assert err == f"tlaudit: Sequential: {N - 6} checks run, 0 errors, 2 warnings, 6 skipped, 1 suppressed.\n"
    _, hidden, _ = run(capsys, "audit", "bn_ignored.py")
    assert "suppressed: 1 finding (--show-suppressed lists them with their reasons)" in hidden
    assert "AdaBN" not in hidden
