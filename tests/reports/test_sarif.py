"""SARIF 2.1.0 output (tlaudit/reports/sarif.py) and the locations it reports (tlaudit/auditing/locations.py).

Logs are validated against the OASIS SARIF 2.1.0 schema (errata 01), vendored in
tests/data/sarif-schema-2.1.0.json (see tests/data/README.md), and parsed back to the findings.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from tests.support.ci_setups import write_setups
from tlaudit.auditing.checks import REGISTRY
from tlaudit.auditing.files import audit_file
from tlaudit.auditing.findings import Severity
from tlaudit.auditing.report import Report
from tlaudit.cli import ExitCode, main
from tlaudit.reports import Format, SetupAudit
from tlaudit.reports.sarif import FINGERPRINT_KEY, LEVELS, sarif_log

SCHEMA = json.loads((Path(__file__).parent.parent / "data" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
SEVERITY_OF_LEVEL = {level: severity for severity, level in LEVELS.items()}


def validate(log: dict) -> None:
    jsonschema.Draft4Validator(SCHEMA).validate(log)


@pytest.fixture(scope="module")
def buggy(tmp_path_factory) -> Report:
    """A real ResNet-18 setup with the usual mistakes, audited once (with locations)."""
    [path] = write_setups(tmp_path_factory.mktemp("sarif"), "resnet_buggy")
    return audit_file(str(path))


def test_the_schema_rejects_a_broken_log():
    """The validator is real: a result without a message fails it."""
    log = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"ruleId": "a"}]}]}
    with pytest.raises(jsonschema.ValidationError, match=r"'message' is a required property"):
        validate(log)


def test_buggy_example_validates_and_round_trips(buggy):
    log = json.loads(Format.SARIF.render([SetupAudit("buggy.py", buggy)]))
    validate(log)
    run = log["runs"][0]
    back = [(r["ruleId"], SEVERITY_OF_LEVEL[r["level"]], r["message"]["text"], r["properties"]["subject"]) for r in run["results"]]
    assert back == [(f.check, f.severity, f.message, f.subject) for f in buggy.findings]
    assert {check for check, *_ in back} == {
        "frozen-grad",
        "frozen-changed",
        "frozen-bn-train",
        "optimizer-missing",
        "optimizer-frozen",
        "lr-threshold",
        "eval-mode",
        "grad-inference",
        "normalization",
        "pretrained-not-loaded",
    }
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(REGISTRY)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["partialFingerprints"][FINGERPRINT_KEY] == next(
            f.fingerprint for f in buggy.findings if f.message == result["message"]["text"]
        )
        assert "suppressions" not in result and "baselineState" not in result


def test_one_rule_per_check_with_descriptions_help_and_level():
    rules = {r["id"]: r for r in sarif_log([])["runs"][0]["tool"]["driver"]["rules"]}
    assert set(rules) == set(REGISTRY)
    for check_id, check in REGISTRY.items():
        rule = rules[check_id]
        assert rule["shortDescription"]["text"] == check.summary
        assert rule["fullDescription"]["text"] == " ".join(check.section("What").split())
        assert "Fix: " + " ".join(check.section("Fix").split()) in rule["help"]["text"]
        assert "Why it is silent: " in rule["help"]["text"]
        assert "**References.**" in rule["help"]["markdown"]
        assert rule["defaultConfiguration"]["level"] == LEVELS[check.severity]
    assert rules["grad-inference"]["defaultConfiguration"]["level"] == "warning"


def _line(finding) -> str:
    return Path(finding.location.path).read_text(encoding="utf-8").splitlines()[finding.location.line - 1]


def test_locations_point_at_the_line_that_built_the_object(buggy):
    """Each finding of the buggy setup points at the line with the mistake."""
    found = {f.check: f for f in buggy.findings}
    assert all(f.location is not None and f.location.path.endswith("resnet_buggy.py") for f in buggy.findings)
    expected = {
        "optimizer-missing": ("optimizer construction", "optimizer = torch.optim.SGD(model.parameters(), lr=0.1"),
        "lr-threshold": ("optimizer construction", "optimizer = torch.optim.SGD("),
        "frozen-changed": ("optimizer construction", "optimizer = torch.optim.SGD("),
        "frozen-grad": ("freeze statement", "param.requires_grad == False"),
        "frozen-bn-train": ("freeze statement", "param.requires_grad == False"),
        "normalization": ("Normalize transform", "v2.Normalize([0.5] * 3, [0.5] * 3)"),
        "eval-mode": ("predict function", "def predict(model"),
        "grad-inference": ("predict function", "def predict(model"),
        "pretrained-not-loaded": ("weights declared", 'weights="ResNet18_Weights.IMAGENET1K_V1"'),
    }
    for check, (anchor, text) in expected.items():
        assert found[check].location.anchor == anchor, check
        assert text in _line(found[check]), check


def test_location_falls_back_to_the_setup_function(tmp_path, monkeypatch):
    """A setup built in another module cannot be searched: the finding points at ``def setup``."""
    write_setups(tmp_path, "high_lr", names={"high_lr": "helper_high_lr.py"})
    (tmp_path / "thin.py").write_text(
        textwrap.dedent(
            """
            import helper_high_lr


            def setup():
                return helper_high_lr.setup()
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    report = audit_file("thin.py")
    [finding] = report.findings
    assert finding.check == "lr-threshold"
    assert (finding.location.path, finding.location.line, finding.location.anchor) == ("thin.py", 5, "setup function")
    direct = audit_file("helper_high_lr.py").findings[0].location
    assert (direct.path, direct.anchor) == ("helper_high_lr.py", "optimizer construction")
    assert "torch.optim.SGD" in (tmp_path / "helper_high_lr.py").read_text().splitlines()[direct.line - 1]


def test_cli_sarif_with_suppressed_and_baselined_findings_validates(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_setups(tmp_path, "bn_ignored")
    assert main(["audit", "bn_ignored.py", "--write-baseline", "base.json", "--format", "json"]) == ExitCode.OK
    capsys.readouterr()
    code = main(["audit", "bn_ignored.py", "--baseline", "base.json", "--format", "sarif", "-o", "out.sarif"])
    assert code == ExitCode.OK
    log = json.loads((tmp_path / "out.sarif").read_text(encoding="utf-8"))
    validate(log)
    results = log["runs"][0]["results"]
    states = sorted((r["ruleId"], r.get("baselineState"), bool(r.get("suppressions"))) for r in results)
    assert states == [("frozen-bn-train", None, True), ("optimizer-frozen", "unchanged", False), ("optimizer-frozen", "unchanged", False)]
    [suppressed] = [r for r in results if r.get("suppressions")]
    assert suppressed["suppressions"] == [{"kind": "inSource", "justification": "AdaBN: statistics adapt to the new domain"}]
    location = suppressed["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "bn_ignored.py", "uriBaseId": "%SRCROOT%"}
    assert "tlaudit.freeze(model, '0', '1')" in (tmp_path / "bn_ignored.py").read_text().splitlines()[location["region"]["startLine"] - 1]
    assert all(r["properties"]["setup"] == "bn_ignored.py" for r in results)


def test_folder_sarif_names_each_file_and_the_one_that_failed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_setups(tmp_path / "setups", "high_lr", "raises", "warn")
    code = main(["audit", "setups", "--format", "sarif"])
    out, err = capsys.readouterr()
    assert code == ExitCode.SETUP_ERROR
    log = json.loads(out)
    validate(log)
    run = log["runs"][0]
    files = sorted(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"])
    assert files == ["setups/high_lr.py", "setups/warn.py"]
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False
    [note] = invocation["toolExecutionNotifications"]
    assert note["message"]["text"] == "setups/raises.py:setup() raised RuntimeError: no GPU here (setup)"
    assert [r["setup"] for r in run["properties"]["reports"]] == ["setups/high_lr.py", "setups/warn.py"]
    assert Severity.ERROR.value == run["results"][0]["level"]


def test_head_findings_point_at_the_head_assignment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [path] = write_setups(tmp_path, "wrong_head")
    [finding] = audit_file(str(path)).findings
    assert (finding.check, finding.location.path, finding.location.anchor) == ("head-size", "wrong_head.py", "module assignment")
    assert _line(finding) == "    model[4] = nn.Linear(4, 5)"
