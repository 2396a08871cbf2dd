"""Tests for the ``tlaudit`` command line (tlaudit/cli/): ``audit``, ``inspect``, ``checks`` and the process entry points.

Most tests call ``main(argv)`` in-process. The bundled examples build a ResNet-18 and take seconds to
audit, so a module-scoped fixture runs each (example, --select, --ignore, --lr-max) audit once and
hands the same Report to every later ``main`` call; formatting, --output, --fail-on and --exit-zero
still run for real. Two tests run real processes: ``python -m tlaudit`` and the ``tlaudit`` script.

Golden files (tests/golden/) hold output people read. Regenerate them after an intended change with
``TLAUDIT_UPDATE_GOLDEN=1 python -m pytest tests/test_cli.py`` and review the diff.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import tlaudit
import tlaudit.inspection
from tlaudit.auditing import files
from tlaudit.auditing.report import Report
from tlaudit.cli import ExitCode, main
from tlaudit.examples import EXAMPLES

GOLDEN = Path(__file__).with_name("golden")
UPDATE_GOLDEN = os.environ.get("TLAUDIT_UPDATE_GOLDEN") == "1"

N = len(tlaudit.REGISTRY)  # every count below follows the registry: a new check changes no test here
CORRECT_SUMMARY = f"tlaudit: ResNet: {N} checks run, 0 errors, 0 warnings, 0 skipped."
BUGGY_SUMMARY = f"tlaudit: ResNet: {N} checks run, 6 errors, 3 warnings, 0 skipped."
BUGGY_ERRORS = {"frozen-grad", "frozen-changed", "optimizer-missing", "lr-threshold", "eval-mode", "normalization"}
BUGGY_WARNINGS = {"frozen-bn-train", "optimizer-frozen", "grad-inference"}


def assert_golden(name: str, text: str) -> None:
    """``text`` equals tests/golden/``name``; with TLAUDIT_UPDATE_GOLDEN=1 the file is rewritten instead."""
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing golden file {path}; create it with TLAUDIT_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "actual"))
        pytest.fail(f"output differs from {path} (TLAUDIT_UPDATE_GOLDEN=1 regenerates it):\n{diff}")


@pytest.fixture(scope="module", autouse=True)
def reuse_example_audits():
    """Audit each bundled example once per (select, ignore, lr_max); later ``main`` calls reuse the Report."""
    real = files.audit_file
    bundled = {str(path) for path in EXAMPLES.values()}
    cache: dict[tuple, Report] = {}

    def audit_file(spec, *, select=None, ignore=None, progress=None, lr_max=None, lr_caution=None):
        if spec not in bundled or progress is not None or lr_caution is not None:
            return real(spec, select=select, ignore=ignore, progress=progress, lr_max=lr_max, lr_caution=lr_caution)
        key = (spec, tuple(select or ()), tuple(ignore or ()), lr_max)
        if key not in cache:
            cache[key] = real(spec, select=select, ignore=ignore, lr_max=lr_max)
        return cache[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(files, "audit_file", audit_file)
        yield cache


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- small setup files written into tmp_path ------------------------------------------------------

TINY = """
import torch
from torch import nn
import tlaudit


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def setup():
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr={lr})
    sample = torch.randn(2, 3, 8, 8)
    return tlaudit.TransferSetup(model=model, num_classes=3, sample=sample, targets=torch.tensor([0, 2]),
                                 optimizer=optimizer, strategy="fine_tuning"{extra})
"""

SETUPS = {
    # a sound setup: no findings; 5 checks skipped (no predict, no weights)
    "clean": TINY.format(lr="0.001", extra=""),
    # the optimizer holds the frozen conv, with a stale .grad: one warning (optimizer-frozen), no error
    "warn": TINY.replace(
        "    optimizer =",
        "    model(torch.randn(2, 3, 8, 8)).sum().backward()  # gradients left from an earlier step\n"
        "    tlaudit.freeze(model, '0')\n    optimizer =",
    ).format(lr="0.001", extra=""),
    # a pretrained-layer LR of 0.1 > the SGD default lr_max 0.05: lr-threshold error
    "high_lr": TINY.format(lr="0.1", extra=""),
    # a one-channel sample for a three-channel conv
    "wrong_channels": TINY.replace("torch.randn(2, 3, 8, 8)", "torch.randn(2, 1, 8, 8)").format(lr="0.001", extra=""),
    "no_setup": "def build():\n    return None\n",
    "raises": "def setup():\n    raise RuntimeError('no GPU here')\n",
    "not_a_setup": "def setup():\n    return {'model': None}\n",
}


@pytest.fixture
def setup_file(tmp_path):
    def write(kind: str) -> str:
        path = tmp_path / f"{kind}_setup.py"
        path.write_text(textwrap.dedent(SETUPS[kind]), encoding="utf-8")
        return str(path)

    return write


# -- top level --------------------------------------------------------------------------------------


def test_version(capsys):
    assert run(capsys, "--version") == (0, f"tlaudit {tlaudit.__version__}\n", "")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ((), ["usage: tlaudit", "audit", "inspect", "checks", "exit codes:"]),
        (
            ("audit",),
            [
                "usage: tlaudit audit",
                "--format {table,json,markdown,junit,sarif}",
                "--fail-on {error,warning}",
                "--exit-zero",
                "--progress",
                "--lr-max",
                "--example {buggy,correct}",
                "--debug",
            ],
        ),
        (("inspect",), ["usage: tlaudit inspect", "MODEL", "--num-classes", "--depth", "--format {table,json}"]),
        (("checks",), ["usage: tlaudit checks", "ID", "--format {table,json,markdown}"]),
    ],
)
def test_help_on_every_command(capsys, command, expected):
    code, out, err = run(capsys, *command, "--help")
    assert code == ExitCode.OK and err == ""
    for text in expected:
        assert text in out


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, err = run(capsys)
    assert code == ExitCode.SETUP_ERROR and out == ""
    assert "usage: tlaudit" in err and "commands:" in err


def test_exit_codes_are_documented():
    assert [(c.name, c.value) for c in ExitCode] == [("OK", 0), ("FINDINGS", 1), ("SETUP_ERROR", 2)]
    for name in ("OK", "FINDINGS", "SETUP_ERROR"):
        assert name in ExitCode.__doc__


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "--format", "xml"],
        ["audit", "--fail-on", "info"],
        ["audit", "--lr-max", "-1"],
        ["audit", "--lr-max", "fast"],
        ["inspect", "resnet18", "--depth", "0"],
        ["no-such-command"],
        ["bench", "resnet18", "--iters", "0"],
    ],
)
def test_bad_option_values_exit_2(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == ExitCode.SETUP_ERROR and out == ""
    assert "error: argument" in err and "Traceback" not in err


# -- audit: exit codes ----------------------------------------------------------------------------


def test_audit_without_path_audits_the_correct_example(capsys):
    code, out, err = run(capsys, "audit")
    assert code == ExitCode.OK
    assert out.startswith("no findings\n")
    assert err == CORRECT_SUMMARY + "\n"  # not a TTY: the summary and nothing else


def test_audit_example_correct(capsys):
    assert run(capsys, "audit", "--example", "correct") == (ExitCode.OK, "no findings\n", CORRECT_SUMMARY + "\n")


def test_audit_example_buggy_exits_1_with_the_table(capsys, reuse_example_audits):
    code, out, err = run(capsys, "audit", "--example", "buggy")
    assert code == ExitCode.FINDINGS
    assert err == BUGGY_SUMMARY + "\n"
    report = files.audit_file(
        str(EXAMPLES["buggy"]), select=[c.id for c in tlaudit.REGISTRY.values()]
    )  # the same (cached) Report main printed
    assert out == report.to_text(summary=False) + "\n"
    assert out.splitlines()[0].split() == ["severity", "check", "subject", "message"]
    assert {f.check for f in report.errors} == BUGGY_ERRORS
    assert {f.check for f in report.warnings} == BUGGY_WARNINGS


def test_audit_path_to_the_example_file_is_the_same_as_example(capsys):
    assert run(capsys, "audit", str(EXAMPLES["buggy"]))[:2] == run(capsys, "audit", "--example", "buggy")[:2]


def test_exit_zero_with_findings(capsys):
    code, out, err = run(capsys, "audit", "--example", "buggy", "--exit-zero")
    assert code == ExitCode.OK and "frozen-grad" in out and err == BUGGY_SUMMARY + "\n"


def test_fail_on_warning(capsys, setup_file):
    path = setup_file("warn")
    code, out, err = run(capsys, "audit", path)
    assert code == ExitCode.OK
    assert "optimizer-frozen" in out and "warning" in out
    assert err == f"tlaudit: Sequential: {N - 6} checks run, 0 errors, 1 warning, 6 skipped.\n"
    assert run(capsys, "audit", path, "--fail-on", "warning")[0] == ExitCode.FINDINGS
    assert run(capsys, "audit", path, "--fail-on", "warning", "--exit-zero")[0] == ExitCode.OK


def test_fail_on_warning_with_a_clean_setup_exits_0(capsys, setup_file):
    code, out, _ = run(capsys, "audit", setup_file("clean"), "--fail-on", "warning")
    assert code == ExitCode.OK and out.startswith("no findings\n")


def test_lr_max_overrides_the_setup(capsys, setup_file):
    path = setup_file("high_lr")
    code, out, _ = run(capsys, "audit", path)
    assert code == ExitCode.FINDINGS and "lr 0.1 > lr_max 0.05" in out
    code, out, _ = run(capsys, "audit", path, "--lr-max", "0.5")
    assert code == ExitCode.OK and out.startswith("no findings\n")
    code, out, _ = run(capsys, "audit", path, "--lr-max", "0.02")
    assert code == ExitCode.FINDINGS and "lr 0.1 > lr_max 0.02" in out


def test_example_and_path_are_exclusive(capsys, setup_file):
    code, out, err = run(capsys, "audit", setup_file("clean"), "--example", "buggy")
    assert code == ExitCode.SETUP_ERROR and out == ""
    assert "not allowed with argument" in err


# -- audit: the input could not be used (exit 2) ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "spec_suffix", "message"),
    [
        ("missing", "", "file not found: {path} (setup)"),
        ("no_setup", "", "no function setup() in {path} (setup)"),
        ("no_setup", ":make", "no function make() in {path} (setup)"),
        ("raises", "", "{path}:setup() raised RuntimeError: no GPU here (setup)"),
        ("not_a_setup", "", "{path}:setup() returned dict, not a TransferSetup (setup)"),
        ("wrong_channels", "", "{path}:setup(): TransferSetup.sample: the model cannot take the sample of shape (2, 1, 8, 8)"),
    ],
)
def test_setup_errors_exit_2_and_say_where(capsys, tmp_path, setup_file, kind, spec_suffix, message):
    path = str(tmp_path / "missing_setup.py") if kind == "missing" else setup_file(kind)
    code, out, err = run(capsys, "audit", path + spec_suffix)
    assert code == ExitCode.SETUP_ERROR
    assert out == ""
    assert err.startswith("tlaudit audit: error: " + message.format(path=path))
    assert "Traceback" not in err


def test_module_function_spec(capsys, setup_file, monkeypatch):
    path = Path(setup_file("warn"))
    monkeypatch.syspath_prepend(str(path.parent))
    monkeypatch.delitem(sys.modules, path.stem, raising=False)
    code, out, err = run(capsys, "audit", f"{path.stem}:setup", "--fail-on", "warning")
    assert code == ExitCode.FINDINGS and "optimizer-frozen" in out
    code, out, err = run(capsys, "audit", f"{path.stem}:tiny")
    assert code == ExitCode.SETUP_ERROR
    assert f"{path.stem}:tiny() returned Sequential, not a TransferSetup (setup)" in err


def test_debug_shows_the_traceback(capsys, setup_file):
    path = setup_file("raises")
    code, _, err = run(capsys, "audit", path)
    assert code == ExitCode.SETUP_ERROR and "Traceback" not in err and "--debug" in err
    code, _, err = run(capsys, "audit", path, "--debug")
    assert code == ExitCode.SETUP_ERROR
    assert "Traceback (most recent call last)" in err
    assert "RuntimeError: no GPU here" in err  # the user's own exception, with its frame
    assert err.rstrip().endswith(f"tlaudit audit: error: {path}:setup() raised RuntimeError: no GPU here (setup)")


@pytest.mark.parametrize(("option", "value"), [("--select", "frozen-grd"), ("--ignore", "frozen-grad,head-sise")])
def test_unknown_check_id_exits_2_before_loading(capsys, tmp_path, option, value):
    # the setup file does not exist: the IDs are checked first, with the engine's message
    code, out, err = run(capsys, "audit", str(tmp_path / "never_loaded.py"), option, value)
    assert code == ExitCode.SETUP_ERROR and out == ""
    bad = value.split(",")[-1]
    field = option.lstrip("-")
    assert err.startswith(f"tlaudit audit: error: unknown check ID: {bad!r} ({field}); did you mean ")
    with pytest.raises(ValueError) as info:
        tlaudit.get_check(bad, field_name=field)
    assert err == f"tlaudit audit: error: {info.value}\n"


# -- audit: formats and output --------------------------------------------------------------------


def test_json_on_stdout_only(capsys, reuse_example_audits):
    code, out, err = run(capsys, "audit", "--example", "buggy", "--format", "json")
    assert code == ExitCode.FINDINGS
    data = json.loads(out)
    assert err == BUGGY_SUMMARY + "\n"
    assert data["ok"] is False and data["model"] == "ResNet"
    assert data["summary"] == {
        "errors": 6,
        "warnings": 3,
        "infos": 0,
        "checks_run": 18,
        "checks_skipped": 0,
        "suppressed": 0,
        "baselined": 0,
        "stale": 0,
    }
    keys = {"check", "severity", "message", "subject", "hint", "fingerprint", "location"}
    assert all(set(f) == keys for f in data["findings"])
    assert {f["check"] for f in data["findings"] if f["severity"] == "error"} == BUGGY_ERRORS
    assert (
        out
        == json.dumps(files.audit_file(str(EXAMPLES["buggy"]), select=[c.id for c in tlaudit.REGISTRY.values()]).to_dict(), indent=2) + "\n"
    )


def test_markdown_golden(capsys):
    code, out, _ = run(capsys, "audit", "--example", "buggy", "--format", "markdown")
    assert code == ExitCode.FINDINGS
    assert out.startswith(f"## {BUGGY_SUMMARY}\n\n| severity | check | subject | message |\n|---|---|---|---|\n")
    assert "### How to fix" in out
    assert_golden("audit-buggy.md", out)


def junit(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "testsuite" and root.get("name") == "tlaudit"
    return root


def test_junit_buggy(capsys):
    code, out, err = run(capsys, "audit", "--example", "buggy", "--format", "junit")
    assert code == ExitCode.FINDINGS and err == BUGGY_SUMMARY + "\n"
    suite = junit(out)
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == list(tlaudit.REGISTRY)
    assert {c.get("classname") for c in cases.values()} == {"tlaudit.ResNet"}
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (str(N), "6", "0", "0")
    assert {name for name, c in cases.items() if c.find("failure") is not None} == BUGGY_ERRORS
    warned = {name for name, c in cases.items() if c.find("system-out") is not None}
    assert warned == BUGGY_WARNINGS  # warnings are output, not failures
    failure = cases["lr-threshold"].find("failure")
    assert failure.get("message") == "group 0 holds 60 pretrained parameters with lr 0.1 > lr_max 0.05"
    assert "hint: use a lower LR for pretrained layers" in failure.text


def test_junit_fail_on_warning_makes_warnings_failures(capsys):
    code, out, _ = run(capsys, "audit", "--example", "buggy", "--format", "junit", "--fail-on", "warning")
    suite = junit(out)
    assert code == ExitCode.FINDINGS and suite.get("failures") == "9"
    failed = {c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None}
    assert failed == BUGGY_ERRORS | BUGGY_WARNINGS
    assert suite.find(".//system-out") is None


def test_junit_select(capsys, setup_file):
    code, out, _ = run(capsys, "audit", setup_file("warn"), "--format", "junit", "--select", "optimizer-frozen,eval-mode,head-size")
    assert code == ExitCode.OK  # a warning, --fail-on error
    suite = junit(out)
    assert [c.get("name") for c in suite.iter("testcase")] == ["head-size", "optimizer-frozen", "eval-mode"]  # registry order
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "0", "1")
    assert suite.find("testcase[@name='eval-mode']/skipped").get("message") == "no `predict` given"
    out_text = suite.find("testcase[@name='optimizer-frozen']/system-out").text
    assert out_text.startswith("warning: 2 parameters of `0`: frozen but held by the optimizer")


def test_junit_ignore(capsys, setup_file):
    code, out, _ = run(
        capsys, "audit", setup_file("warn"), "--format", "junit", "--ignore", "optimizer-frozen, eval-mode", "--fail-on", "warning"
    )
    assert code == ExitCode.OK  # the only warning's check is ignored
    suite = junit(out)
    names = [c.get("name") for c in suite.iter("testcase")]
    assert len(names) == len(tlaudit.REGISTRY) - 2
    assert names == [c for c in tlaudit.REGISTRY if c not in {"optimizer-frozen", "eval-mode"}]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(N - 2), "0", "5")
    assert suite.find(".//system-out") is None and suite.find(".//failure") is None


def test_output_file(capsys, tmp_path):
    target = tmp_path / "report.md"
    code, out, err = run(capsys, "audit", "--example", "buggy", "--format", "markdown", "--output", str(target))
    assert code == ExitCode.FINDINGS and out == "" and err == BUGGY_SUMMARY + "\n"
    assert target.read_text(encoding="utf-8") == (GOLDEN / "audit-buggy.md").read_text(encoding="utf-8")


def test_output_file_that_cannot_be_written(capsys, tmp_path):
    target = tmp_path / "no-such-dir" / "report.json"
    code, out, err = run(capsys, "audit", "--example", "correct", "--format", "json", "-o", str(target))
    assert code == ExitCode.SETUP_ERROR and out == ""
    assert f"cannot write the report: {target} (--output)" in err and "Traceback" not in err


# -- audit: progress ------------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_flag_shows_each_check_then_clears(capsys, setup_file):
    code, out, err = run(capsys, "audit", setup_file("clean"), "--progress", "--select", "frozen-grad,head-size,eval-mode")
    assert code == ExitCode.OK
    assert "[1/3]" not in out
    line = "[3/3] eval-mode"  # the engine reports skipped checks too
    assert err == (
        "\r[1/3] frozen-grad"
        + "\r[2/3] head-size  "
        + "\r"
        + line.ljust(len("[1/3] frozen-grad"))
        + "\r"
        + " " * len("[1/3] frozen-grad")
        + "\r"
        + "tlaudit: Sequential: 2 checks run, 0 errors, 0 warnings, 1 skipped.\n"
    )


@pytest.mark.parametrize(("flag", "shown"), [((), True), (("--no-progress",), False)])
def test_progress_follows_the_terminal(capsys, monkeypatch, setup_file, flag, shown):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["audit", setup_file("clean"), *flag]) == ExitCode.OK
    text = tty.getvalue()
    assert (f"[{N}/{N}] {list(tlaudit.REGISTRY)[-1]}" in text) is shown
    assert text.endswith(
        f"\rtlaudit: Sequential: {N - 6} checks run, 0 errors, 0 warnings, 6 skipped.\n"
        if shown
        else f"tlaudit: Sequential: {N - 6} checks run, 0 errors, 0 warnings, 6 skipped.\n"
    )
    assert capsys.readouterr().out.startswith("no findings\n")


def test_progress_is_cleared_when_the_setup_fails(capsys, setup_file):
    code, _, err = run(capsys, "audit", setup_file("wrong_channels"), "--progress")
    assert code == ExitCode.SETUP_ERROR
    assert err.startswith("\r[1/18] frozen-grad\r" + " " * len("[1/18] frozen-grad") + "\rtlaudit audit: error: ")


# -- inspect --------------------------------------------------------------------------------------


def test_inspect_resnet18_golden(capsys):
    code, out, err = run(capsys, "inspect", "resnet18")
    assert code == ExitCode.OK and err == ""
    assert out.startswith("ResNet: 11,689,512 parameters, 11,689,512 trainable\n")
    assert "\n\ntrainable: 11,689,512 of 11,689,512 parameters\n" in out
    assert_golden("inspect-resnet18.txt", out)


def test_inspect_num_classes_depth_json(capsys):
    code, out, _ = run(capsys, "inspect", "resnet18", "--num-classes", "5", "--depth", "2", "--format", "json")
    assert code == ExitCode.OK
    data = json.loads(out)
    assert set(data) == {"describe", "trainable"}
    modules = {m["module"]: m for m in data["describe"]["modules"]}
    assert modules["fc"]["params"] == 512 * 5 + 5 and modules["fc"]["head"] is True
    assert "layer1.0" in modules and "layer1.0.conv1" not in modules
    assert data["trainable"]["total_params"] == 11_689_512 - 513_000 + 2_565
    assert "layer4.1" in [m["module"] for m in data["trainable"]["modules"]]


def test_inspect_setup_file_uses_its_optimizer(capsys, setup_file):
    code, out, _ = run(capsys, "inspect", setup_file("warn"))
    assert code == ExitCode.OK
    assert out.startswith("Sequential: 127 parameters, 15 trainable\n")
    assert "trainable: 15 of 127 parameters" in out
    group = out.splitlines()[-1].split()
    assert group == ["0", "0.001", "0", "4", "2"]  # group, lr, weight_decay, params, trainable (no name)


def test_inspect_function_returning_a_module(capsys, setup_file):
    code, out, _ = run(capsys, "inspect", setup_file("clean") + ":tiny", "--num-classes", "7")
    assert code == ExitCode.OK
    assert out.startswith("Sequential: 147 parameters, 147 trainable\n")  # 112 + 4*7 + 7
    assert "group" not in out  # no optimizer, no group table


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("resnet81", "unknown torchvision model: 'resnet81' (MODEL); closest: resnet18"),
        ("{tmp}/absent.py", "file not found: {tmp}/absent.py (MODEL)"),
        ("{raises}", "{raises}:setup() raised RuntimeError: no GPU here (MODEL)"),
        ("{not_a_setup}", "{not_a_setup}:setup() returned dict, not an nn.Module or a TransferSetup (MODEL)"),
    ],
)
def test_inspect_errors_exit_2(capsys, tmp_path, setup_file, model, message):
    names = {"tmp": str(tmp_path), "raises": setup_file("raises"), "not_a_setup": setup_file("not_a_setup")}
    code, out, err = run(capsys, "inspect", model.format(**names))
    assert code == ExitCode.SETUP_ERROR and out == ""
    assert err.startswith("tlaudit inspect: error: " + message.format(**names))
    assert "Traceback" not in err


# -- checks ---------------------------------------------------------------------------------------


def test_checks_table_golden(capsys):
    code, out, err = run(capsys, "checks")
    assert code == ExitCode.OK and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["id", "severity", "summary"]
    assert [line.split()[0] for line in lines[2:]] == list(tlaudit.REGISTRY)
    assert_golden("checks.txt", out)


def test_checks_json(capsys):
    code, out, _ = run(capsys, "checks", "--format", "json")
    data = json.loads(out)
    assert code == ExitCode.OK
    assert [c["id"] for c in data] == list(tlaudit.REGISTRY)
    frozen_changed = data[1]
    assert frozen_changed == {
        "id": "frozen-changed",
        "severity": "error",
        "summary": tlaudit.REGISTRY["frozen-changed"].summary,
        "needs": ["optimizer|train_step"],
        "aliases": [],
    }


def test_check_doc_golden(capsys):
    code, out, err = run(capsys, "checks", "frozen-grad")
    check = tlaudit.get_check("frozen-grad")
    assert code == ExitCode.OK and err == ""
    assert out.startswith(f"frozen-grad (error)\n{check.summary}\n\n")
    assert out.endswith(check.doc + "\n")
    assert_golden("checks-frozen-grad.txt", out)


def test_check_doc_json(capsys):
    code, out, _ = run(capsys, "checks", "lr-threshold", "--format", "json")
    data = json.loads(out)
    check = tlaudit.get_check("lr-threshold")
    assert code == ExitCode.OK
    assert data["doc"] == check.doc and data["severity"] == "error"
    assert data["sections"] == {
        t: check.section(t) for t in ("What", "Why", "Why it is silent", "Evidence", "Example", "Fix", "References")
    }
    assert all(data["sections"].values())


def test_unknown_check_exits_2_with_closest_ids(capsys):
    code, out, err = run(capsys, "checks", "frozen-grd")
    assert code == ExitCode.SETUP_ERROR and out == ""
    assert (
        err == "tlaudit checks: error: unknown check ID: 'frozen-grd' (check); did you mean frozen-grad, frozen-changed, frozen-bn-train?\n"
    )


# -- real processes -------------------------------------------------------------------------------


def test_python_dash_m(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tlaudit", "checks", "frozen-grad"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == (GOLDEN / "checks-frozen-grad.txt").read_text(encoding="utf-8")


def test_console_script(setup_file):
    script = shutil.which("tlaudit", path=str(Path(sys.executable).parent)) or shutil.which("tlaudit")
    assert script, "the `tlaudit` console script is not installed (pip install -e .)"
    path = setup_file("warn")
    proc = subprocess.run(
        [script, "audit", path, "--format", "json", "--fail-on", "warning"],
        capture_output=True,
        text=True,
        cwd=Path(path).parent,
        timeout=120,
    )
    assert proc.returncode == ExitCode.FINDINGS
    assert proc.stderr == f"tlaudit: Sequential: {N - 6} checks run, 0 errors, 1 warning, 6 skipped.\n"  # no progress: not a TTY
    data = json.loads(proc.stdout)
    assert [(f["check"], f["severity"], f["subject"]) for f in data["findings"]] == [("optimizer-frozen", "warning", "0")]


def test_a_crash_in_tlaudit_exits_2_not_1(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("rows")

    monkeypatch.setattr(tlaudit.inspection, "describe", broken)
    code, out, err = run(capsys, "inspect", "resnet18")
    assert code == ExitCode.SETUP_ERROR and out == ""
    assert err == "tlaudit inspect: internal error: KeyError: 'rows'\n(rerun with --debug for the traceback)\n"
    code, _, err = run(capsys, "inspect", "resnet18", "--debug")
    assert code == ExitCode.SETUP_ERROR and "Traceback (most recent call last)" in err


def test_building_the_parser_imports_no_torch():
    """``tlaudit --help`` (every subcommand's parser) stays cheap: torch is imported by the handlers only."""
    code = "import sys; from tlaudit.cli import build_parser; build_parser(); print(sorted(m for m in ('torch', 'tlaudit.auditing.engine', 'tlaudit.auditing.checks') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
