"""The pytest plugin (``pytest_tlaudit``), driven through ``pytester`` in subprocesses.

Each run is a fresh ``python -m pytest`` that loads the plugin from the installed ``pytest11`` entry
point, as in a user's suite. A run that imports torch costs seconds, so each heavy run checks many
things; the runs that must not import torch (options, markers, help) are cheap. The subprocesses
run with one intra-op thread: the tiny models gain nothing from more, and on a busy two-core
machine thread oversubscription makes every convolution ten times slower.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import pytest_tlaudit
import tlaudit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "test_transfer_example.py"
TIMEOUT = 300

TINYMODELS = '''
"""Tiny models for the plugin tests (written into each pytester directory)."""
from collections import OrderedDict

import torch
from torch import nn

import tlaudit


def tiny(num_classes=3):
    """Parameters: stem.weight, stem.bias, bn.weight, bn.bias, fc.weight, fc.bias; head `fc`."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(3, 4, 3, padding=1), bn=nn.BatchNorm2d(4), act=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(4, num_classes),
    ))


class WithAux(nn.Module):
    """Head `fc` and an auxiliary head `aux`, which only runs in training mode."""

    def __init__(self, num_classes, aux_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, num_classes)
        self.aux = nn.Linear(4, aux_classes)

    def forward(self, x):
        features = self.body(x)
        return (self.fc(features), self.aux(features)) if self.training else self.fc(features)


def sample(n=2, size=8):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def predict_eval(model, x):
    with tlaudit.inference(model):
        return model(x)


def predict_train_mode(model, x):
    return model(x)


def predict_with_grad(model, x):
    model.eval()
    return model(x)
'''

_VERBOSE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
_XDIST = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+::\S+)")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    # when this suite itself runs under xdist, its workers' variables would make the inner
    # pytest (and pytest-benchmark, which then disables itself) believe it is a worker too
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


def esc(text: str) -> str:
    """``text`` with fnmatch's ``[`` and ``]`` made literal; ``*`` stays a wildcard."""
    return re.sub(r"[\[\]]", lambda m: f"[{m.group(0)}]", text)


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Node ID -> outcome, from the ``-v`` lines of a run (an ERROR at setup wins over the rest)."""
    found: dict[str, str] = {}
    for line in result.outlines:
        match = _VERBOSE.match(line)
        if match:
            nodeid, outcome = match.groups()
        else:
            match = _XDIST.match(line)
            if not match:
                continue
            _, outcome, nodeid = match.groups()
        if found.get(nodeid) != "ERROR":
            found[nodeid] = outcome
    return found


def workers(result: pytest.RunResult) -> dict[str, str]:
    """Node ID -> the xdist worker that ran it."""
    return {m.group(3): m.group(1) for m in map(_XDIST.match, result.outlines) if m}


def section(result: pytest.RunResult, title: str) -> str:
    """The text of a ``=== title ===`` section of the terminal output ('' if absent)."""
    text = result.stdout.str()
    match = re.search(rf"^=+ {re.escape(title)} =+$\n(.*?)(?=^=+ .* =+$|\Z)", text, flags=re.M | re.S)
    return match.group(1) if match else ""


def failure(result: pytest.RunResult, name: str) -> pytest.LineMatcher:
    """The failure (or error) block of one test, for fnmatch_lines."""
    text = result.stdout.str()
    header = r"^_{3,} (?:ERROR at setup of )?%s _{3,}$\n"  # not the "_ _ _" lines between traceback entries
    match = re.search(header % re.escape(name) + r"(.*?)(?=^_{3,} \S.* _{3,}$|^=+ )", text, flags=re.M | re.S)
    assert match, f"no failure block for {name}"
    return pytest.LineMatcher(match.group(1).splitlines())


# -- loading costs nothing -----------------------------------------------------------------------


def test_loading_the_plugin_imports_neither_torch_nor_the_engine(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_light="""
        import sys
        import pytest

        def plain_setup():  # named like a setup factory, but not marked: never collected
            raise AssertionError("collected by surprise")

        def test_plugin_is_loaded_without_torch(pytestconfig, tlaudit):
            assert pytestconfig.pluginmanager.hasplugin("tlaudit")
            assert "torch" not in sys.modules
            assert "tlaudit.auditing.engine" not in sys.modules
            # only the torch-free modules the plugin shares with the CLI
            loaded = {m for m in sys.modules if m == "tlaudit" or m.startswith("tlaudit.")}
            assert loaded <= {"tlaudit", "tlaudit._version", "tlaudit._text", "tlaudit.options"}, loaded
            assert (tlaudit.options.fail_on, tlaudit.options.lr_max) == ("error", None)
            assert tlaudit.options.sources["fail_on"] == "default"

        @pytest.mark.tlaudit(fail_on="warning", select=["head-size"])
        def test_marker_is_registered_and_checked_without_torch(pytestconfig):
            markers = pytestconfig.getini("markers")
            assert any(m.startswith("tlaudit(lr_max=None, lr_caution=None, select=None, ignore=None, fail_on=None): ") for m in markers)
            assert any(m.startswith("tlaudit_setup: ") for m in markers)
            assert "torch" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-v", "--strict-markers", timeout=TIMEOUT)
    assert outcomes(result) == {
        "test_light.py::test_plugin_is_loaded_without_torch": "PASSED",
        "test_light.py::test_marker_is_registered_and_checked_without_torch": "PASSED",
    }
    assert result.ret == pytest.ExitCode.OK
    assert section(result, "tlaudit") == ""
    assert not re.search(r"^=+ tlaudit =+$", result.stdout.str(), flags=re.M)


def test_a_mistyped_check_id_in_a_marker_fails_the_test_without_importing_torch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_typo="""
        import sys
        import pytest

        @pytest.mark.tlaudit(ignore=["frozen-bn-trian"])
        def test_typo_without_the_fixture():
            pass

        @pytest.mark.tlaudit(select=["head-size"], ignore=["head-size"])
        def test_nothing_left_to_run():
            pass

        def test_torch_still_not_imported():
            assert "torch" not in sys.modules and "tlaudit.auditing.checks" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-v", timeout=TIMEOUT)
    assert outcomes(result) == {
        "test_typo.py::test_typo_without_the_fixture": "ERROR",
        "test_typo.py::test_nothing_left_to_run": "ERROR",
        "test_typo.py::test_torch_still_not_imported": "PASSED",
    }
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.tlaudit on test_typo.py::test_typo_without_the_fixture: "
            "unknown check ID: 'frozen-bn-trian' (ignore); did you mean frozen-bn-train*",
            "*@pytest.mark.tlaudit on test_typo.py::test_nothing_left_to_run: select and ignore leave no check to run",
        ]
    )


def test_p_no_tlaudit_disables_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_off="""
        import sys

        def test_not_loaded(pytestconfig):
            assert not pytestconfig.pluginmanager.hasplugin("tlaudit")
            assert "pytest_tlaudit" not in sys.modules

        def test_fixture_is_gone(tlaudit):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-v", "-p", "no:tlaudit", timeout=TIMEOUT)
    assert outcomes(result) == {"test_off.py::test_not_loaded": "PASSED", "test_off.py::test_fixture_is_gone": "ERROR"}
    result.stdout.fnmatch_lines(["*fixture 'tlaudit' not found*"])
    helped = pytester.runpytest_subprocess("-p", "no:tlaudit", "--help", timeout=TIMEOUT)
    assert "--tlaudit-fail-on" not in helped.stdout.str()


def test_help_lists_the_options_and_ini_keys_with_one_help_text_each(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help", timeout=TIMEOUT)
    result.stdout.fnmatch_lines(
        [
            "transfer-learning audits (tlaudit):",
            "  --tlaudit-lr-max=LR*",
            "  --tlaudit-fail-on=error|warning",
            "  --tlaudit-report=PATH",
        ]
    )
    result.stdout.fnmatch_lines(["  tlaudit_lr_max (string):*", "  tlaudit_fail_on (string):*", "  tlaudit_report (string):*"])
    squeezed = re.sub(r"\s+", "", result.stdout.str())
    for text in (pytest_tlaudit.LR_MAX_HELP, pytest_tlaudit.FAIL_ON_HELP, pytest_tlaudit.REPORT_HELP):
        assert squeezed.count(re.sub(r"\s+", "", text)) == 2, text  # once for the option, once for the ini key


# -- options, ini keys and the marker ------------------------------------------------------------


def test_precedence_is_marker_then_command_line_then_ini_then_default(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        tlaudit_fail_on = warning
        tlaudit_lr_max = 0.5
        tlaudit_report = ini-audits.json
        """
    )
    pytester.makepyfile(
        test_precedence="""
        import sys
        import pytest

        def test_ini_and_command_line(tlaudit):
            options = tlaudit.options
            assert (options.fail_on, options.sources["fail_on"]) == ("warning", "tlaudit_fail_on in ini")
            assert (options.lr_max, options.sources["lr_max"]) == (0.25, "--tlaudit-lr-max")

        @pytest.mark.tlaudit(fail_on="error", lr_max=0.125)
        def test_marker_wins(tlaudit):
            options = tlaudit.options
            assert (options.fail_on, options.lr_max) == ("error", 0.125)
            assert options.sources["fail_on"] == "@pytest.mark.tlaudit on test_precedence.py::test_marker_wins"

        @pytest.mark.tlaudit(lr_max=0.1, fail_on="error")
        class TestClassMarker:
            @pytest.mark.tlaudit(fail_on="warning")
            def test_closest_marker_wins_per_keyword(self, tlaudit):
                assert (tlaudit.options.fail_on, tlaudit.options.lr_max) == ("warning", 0.1)
                assert "torch" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess(
        "-v", "--strict-markers", "--tlaudit-lr-max=0.25", "--tlaudit-report=cli-audits.json", timeout=TIMEOUT
    )
    assert set(outcomes(result).values()) == {"PASSED"} and len(outcomes(result)) == 3
    # the command line's report path replaces the ini's; no audit ran, so the report is empty
    assert json.loads((pytester.path / "cli-audits.json").read_text()) == {}
    assert not (pytester.path / "ini-audits.json").exists()


def test_bad_option_values_name_their_source(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--tlaudit-fail-on=fatal", "--tlaudit-lr-max=abc", timeout=TIMEOUT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: tlaudit: invalid lr_max: 'abc' (--tlaudit-lr-max); expected a positive number",
            "ERROR: tlaudit: invalid fail_on: 'fatal' (--tlaudit-fail-on); expected 'error' or 'warning'",
        ]
    )
    pytester.makeini("[pytest]\ntlaudit_fail_on = fatal\ntlaudit_lr_max = -1\n")
    result = pytester.runpytest_subprocess(timeout=TIMEOUT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: tlaudit: invalid lr_max: '-1' (tlaudit_lr_max in ini); expected a positive number",
            "ERROR: tlaudit: invalid fail_on: 'fatal' (tlaudit_fail_on in ini); expected 'error' or 'warning'",
        ]
    )


def test_bad_markers_are_test_errors_naming_the_marker_and_keyword(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_markers="""
        import pytest

        @pytest.mark.tlaudit(lrmax=1e-3)
        def test_unknown_keyword():
            pass

        @pytest.mark.tlaudit("warning")
        def test_positional():
            pass

        @pytest.mark.tlaudit(fail_on="fatal")
        def test_bad_fail_on(tlaudit):
            pass

        @pytest.mark.tlaudit(lr_max="fast")
        def test_bad_lr_max():
            pass

        @pytest.mark.tlaudit(select=3)
        def test_bad_select():
            pass

        @pytest.mark.tlaudit(fail_on="warning", lr_max=1e-4)
        def test_good(tlaudit):
            assert (tlaudit.options.fail_on, tlaudit.options.lr_max) == ("warning", 1e-4)
        """
    )
    result = pytester.runpytest_subprocess("-v", "--strict-markers", timeout=TIMEOUT)
    found = outcomes(result)
    assert found.pop("test_markers.py::test_good") == "PASSED"
    assert set(found.values()) == {"ERROR"} and len(found) == 5
    failure(result, "test_unknown_keyword").fnmatch_lines(
        [
            "@pytest.mark.tlaudit: unknown keyword: 'lrmax' (test_markers.py::test_unknown_keyword); "
            "expected lr_max, lr_caution, select, ignore, fail_on; did you mean lr_max?"
        ]
    )
    failure(result, "test_positional").fnmatch_lines(
        ["@pytest.mark.tlaudit takes keyword arguments only: ('warning',) (test_markers.py::test_positional)*"]
    )
    failure(result, "test_bad_fail_on").fnmatch_lines(
        [
            "tlaudit: invalid fail_on: 'fatal' (@pytest.mark.tlaudit(fail_on=...) on test_markers.py::test_bad_fail_on); "
            "expected 'error' or 'warning'"
        ]
    )
    failure(result, "test_bad_lr_max").fnmatch_lines(
        ["tlaudit: invalid lr_max: 'fast' (@pytest.mark.tlaudit(lr_max=...) on test_markers.py::test_bad_lr_max)*"]
    )
    failure(result, "test_bad_select").fnmatch_lines(
        ["@pytest.mark.tlaudit: select must be check IDs (a list of str or a comma-separated str): 3 (*test_bad_select)"]
    )
    assert "During handling of the above exception" not in result.stdout.str()


# -- the fixture ---------------------------------------------------------------------------------


def test_fixture_assertions_pass_silently_and_fail_naming_the_offender(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tinymodels=TINYMODELS)
    pytester.makepyfile(
        test_asserts="""
        import torch
        import torchvision
        from torchvision.transforms import v2

        from tlaudit import freeze_backbone
        from tinymodels import WithAux, predict_eval, predict_train_mode, predict_with_grad, sample, tiny

        def test_frozen_and_trainable_pass(tlaudit):
            model = tiny()
            freeze_backbone(model)
            tlaudit.assert_frozen(model, "stem", "bn")
            tlaudit.assert_frozen(model, "pool")  # no parameters: nothing can train
            tlaudit.assert_trainable(model, "fc")

        def test_frozen_fails(tlaudit):
            tlaudit.assert_frozen(tiny())

        def test_trainable_fails(tlaudit):
            model = tiny()
            freeze_backbone(model)
            tlaudit.assert_trainable(model, "bn", "fc")

        def test_pattern_naming_nothing(tlaudit):
            tlaudit.assert_frozen(tiny(), "stme")

        def test_head_passes_on_torchvision_and_restores_training_flags(tlaudit):
            model = torchvision.models.resnet18(num_classes=4).train()
            tlaudit.assert_head(model, 4, sample(2, 32))
            assert all(m.training for m in model.modules())

        def test_head_fails_on_an_aux_head(tlaudit):
            tlaudit.assert_head(WithAux(4, 7), 4)

        def test_head_fails_on_the_output(tlaudit):
            tlaudit.assert_head(tiny(3), 5, sample())

        def test_eval_inference_passes(tlaudit):
            tlaudit.assert_eval_inference(predict_eval, tiny(), sample())

        def test_eval_inference_fails_in_train_mode(tlaudit):
            tlaudit.assert_eval_inference(predict_train_mode, tiny(), sample())

        def test_eval_inference_fails_on_a_warning(tlaudit):
            tlaudit.assert_eval_inference(predict_with_grad, tiny(), sample())

        def test_normalization_passes(tlaudit):
            weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
            tlaudit.assert_normalization(weights.transforms(), weights)
            tlaudit.assert_normalization(v2.Normalize([0.5] * 3, [0.5] * 3), {"mean": [0.5] * 3, "std": [0.5] * 3})

        def test_normalization_fails(tlaudit):
            tlaudit.assert_normalization(v2.Compose([v2.Normalize([0.5] * 3, [0.5] * 3)]), "ResNet18_Weights.IMAGENET1K_V1")

        def lr_setup():
            model = tiny()
            optimizer = torch.optim.SGD(
                [
                    {"params": [model.stem.weight, model.stem.bias], "lr": 0.1, "name": "backbone"},
                    {"params": model.fc.parameters(), "lr": 1.0, "name": "head"},
                ],
                lr=0.1,
            )
            return model, optimizer

        def test_lr_below_passes(tlaudit):
            model, optimizer = lr_setup()
            tlaudit.assert_lr_below(optimizer, 0.1, exclude="fc", model=model)
            tlaudit.assert_lr_below(optimizer, 0.1, exclude=model.fc)
            tlaudit.assert_lr_below(optimizer, 0.1, exclude=[model.fc.weight, model.fc.bias])

        def test_lr_below_fails(tlaudit):
            model, optimizer = lr_setup()
            tlaudit.assert_lr_below(optimizer, 0.01, exclude="fc", model=model)

        def test_lr_below_checks_the_scheduled_peak(tlaudit):
            model = tiny()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=100)
            tlaudit.assert_lr_below(optimizer, 0.01, scheduler=scheduler)

        def test_lr_below_patterns_need_the_model(tlaudit):
            model, optimizer = lr_setup()
            tlaudit.assert_lr_below(optimizer, 0.5, exclude="fc")
        """
    )
    result = pytester.runpytest_subprocess("-v", timeout=TIMEOUT)
    passing = {
        "test_frozen_and_trainable_pass",
        "test_head_passes_on_torchvision_and_restores_training_flags",
        "test_eval_inference_passes",
        "test_normalization_passes",
        "test_lr_below_passes",
    }
    found = outcomes(result)
    assert len(found) == 16
    assert {n.split("::")[1] for n, o in found.items() if o == "PASSED"} == passing
    assert {o for n, o in found.items() if n.split("::")[1] not in passing} == {"FAILED"}
    failure(result, "test_frozen_fails").fnmatch_lines(
        [
            "E * tlaudit.assert_frozen: 6 parameters are trainable (requires_grad=True), expected frozen:",
            "E *   `stem`: 2 parameters (`stem.weight`, `stem.bias`)",
            "E *   `bn`: 2 parameters (`bn.weight`, `bn.bias`)",
            "E *   `fc`: 2 parameters (`fc.weight`, `fc.bias`)",
            "E * hint: tlaudit.freeze(model, 'stem', 'bn', 'fc')",
        ]
    )
    failure(result, "test_trainable_fails").fnmatch_lines(
        [
            "E * tlaudit.assert_trainable: 2 parameters are frozen (requires_grad=False), expected trainable:",
            "E *   `bn`: 2 parameters (`bn.weight`, `bn.bias`)",
            "E * hint: tlaudit.unfreeze(model, 'bn')",
        ]
    )
    failure(result, "test_pattern_naming_nothing").fnmatch_lines(
        ["E *PatternError: pattern matches no module: 'stme' (assert_frozen patterns); closest: stem"]
    )
    failure(result, "test_head_fails_on_an_aux_head").fnmatch_lines(
        ["E * tlaudit.assert_head:", "E *   head `aux` has 7 outputs, expected 4 (num_classes)"]
    )
    failure(result, "test_head_fails_on_the_output").fnmatch_lines(
        [
            "E *   head `fc` has 3 outputs, expected 5 (num_classes)",
            "E *   output `output` has shape (2, 3), expected 5 columns (num_classes)",
            "E * hint: tlaudit.replace_head(model, 5) (auxiliary heads included)",
        ]
    )
    failure(result, "test_eval_inference_fails_in_train_mode").fnmatch_lines(
        [
            "E * tlaudit.assert_eval_inference: predict is not eval-mode, gradient-free, deterministic inference",
            "E *error * eval-mode * `Sequential` ran in training mode during predict: 1 BatchNorm layer*",
            "E *warning * grad-inference * predict runs the model with gradients enabled",
        ]
    )
    train_mode = failure(result, "test_eval_inference_fails_on_a_warning")
    train_mode.fnmatch_lines(["E *warning * grad-inference * predict runs the model with gradients enabled"])
    train_mode.no_fnmatch_line("*eval-mode*ran in training mode*")
    failure(result, "test_normalization_fails").fnmatch_lines(
        [
            esc(
                "E * tlaudit.assert_normalization: the transform normalizes with mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]; "
                "the weights (ResNet18_Weights.IMAGENET1K_V1) expect mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"
            ),
            esc("E * hint: Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]), or use weights.transforms()"),
        ]
    )
    failure(result, "test_lr_below_fails").fnmatch_lines(
        [
            "E * tlaudit.assert_lr_below:",
            "E *   group 0 (`backbone`) has lr 0.1 > lr_max 0.01 (2 parameters: `stem.weight`, `stem.bias`)",
        ]
    )
    failure(result, "test_lr_below_fails").no_fnmatch_line("*group 1*")
    failure(result, "test_lr_below_checks_the_scheduled_peak").fnmatch_lines(
        ["E *   group 0 reaches lr 0.1 > lr_max 0.01 at scheduler step * (6 parameters)"]
    )
    failure(result, "test_lr_below_patterns_need_the_model").fnmatch_lines(
        [esc("E * TypeError: assert_lr_below: module-name patterns need model= to resolve them: ['fc'] (exclude)*")]
    )
    # assert_eval_inference is an audit: it is recorded and summarized
    summary = section(result, "tlaudit")
    assert "test_asserts.py::test_eval_inference_fails_in_train_mode" in summary
    assert re.search(r"test_eval_inference_fails_in_train_mode +1 error, 1 warning$", summary, flags=re.M)


def test_audit_marker_options_report_summary_and_bench(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tinymodels=TINYMODELS)
    pytester.makepyfile(
        test_audits="""
        import pytest
        import torch

        from tlaudit import Report, TransferSetup
        from tinymodels import predict_with_grad, sample, tiny

        def test_audit_passes_and_returns_the_report(tlaudit):
            report = tlaudit.audit(model=tiny(), num_classes=3, sample=sample())
            assert isinstance(report, Report) and report.findings == () and "head-size" in report.checks_run
            again = tlaudit.audit(TransferSetup(model=tiny(), num_classes=3, sample=sample()), select=["head-size"])
            assert again.checks_run == ("head-size",)
            assert tlaudit.reports == [report, again]

        def test_audit_fails_with_the_readable_report(tlaudit):
            tlaudit.audit(model=tiny(3), num_classes=5, sample=sample())

        def test_setup_and_fields_together_is_an_error(tlaudit):
            tlaudit.audit(TransferSetup(model=tiny()), num_classes=3)

        def test_unknown_field_is_an_error(tlaudit):
            tlaudit.audit(model=tiny(), num_clases=3)

        def test_command_line_fail_on_warning(tlaudit):
            tlaudit.audit(model=tiny(), num_classes=3, sample=sample(), predict=predict_with_grad)

        @pytest.mark.tlaudit(fail_on="error")
        def test_marker_fail_on_beats_the_command_line(tlaudit):
            report = tlaudit.audit(model=tiny(), num_classes=3, sample=sample(), predict=predict_with_grad)
            assert [f.check for f in report.warnings] == ["grad-inference"]

        def test_call_fail_on_beats_the_command_line(tlaudit):
            tlaudit.audit(model=tiny(), num_classes=3, sample=sample(), predict=predict_with_grad, fail_on="error")

        def test_default_lr_max_for_sgd(tlaudit):
            model = tiny()
            tlaudit.audit(model=model, num_classes=3, sample=sample(), optimizer=torch.optim.SGD(model.parameters(), lr=0.003))

        @pytest.mark.tlaudit(lr_max=0.001)
        def test_marker_lr_max_tightens_the_ceiling(tlaudit):
            model = tiny()
            tlaudit.audit(model=model, num_classes=3, sample=sample(), optimizer=torch.optim.SGD(model.parameters(), lr=0.005))

        @pytest.mark.tlaudit(select="head-size,head-frozen")
        def test_marker_select(tlaudit):
            assert tlaudit.audit(model=tiny(), num_classes=3, sample=sample()).checks_run == ("head-frozen", "head-size")

        @pytest.mark.tlaudit(select=["head-sise"])
        def test_marker_unknown_check_id(tlaudit):
            pass

        def test_bench(tlaudit_bench):
            result = tlaudit_bench(tiny(), sample(4, 16), rounds=3, warmup_rounds=1)
            assert (result.batch_size, result.device, result.dtype) == (4, "cpu", "float32")
            assert result.images_per_second == pytest.approx(4 / result.median_seconds)
        """
    )
    result = pytester.runpytest_subprocess(
        "-v",
        "--strict-markers",
        "--tlaudit-fail-on=warning",
        "--tlaudit-report=out/audits.json",
        "--benchmark-json=bench.json",
        timeout=TIMEOUT,
    )
    found = {n.split("::")[1]: o for n, o in outcomes(result).items()}
    assert found == {
        "test_audit_passes_and_returns_the_report": "PASSED",
        "test_audit_fails_with_the_readable_report": "FAILED",
        "test_setup_and_fields_together_is_an_error": "FAILED",
        "test_unknown_field_is_an_error": "FAILED",
        "test_command_line_fail_on_warning": "FAILED",
        "test_marker_fail_on_beats_the_command_line": "PASSED",
        "test_call_fail_on_beats_the_command_line": "PASSED",
        "test_default_lr_max_for_sgd": "PASSED",
        "test_marker_lr_max_tightens_the_ceiling": "FAILED",
        "test_marker_select": "PASSED",
        "test_marker_unknown_check_id": "ERROR",
        "test_bench": "PASSED",
    }
    failure(result, "test_audit_fails_with_the_readable_report").fnmatch_lines(
        [
            "tlaudit: 1 finding at or above warning (fail_on from --tlaudit-fail-on)",
            "severity*check*subject*message",
            "error*head-size*output*output `output` has shape (2, 3), expected 5 columns (num_classes)",
            "how to fix:",
            "  head-size: tlaudit.replace_head(model, 5) (auxiliary heads included)",
            "tlaudit: Sequential: * checks run, 1 error, 0 warnings, * skipped (most checks could not run: see why under skipped).",
        ]
    )
    failure(result, "test_setup_and_fields_together_is_an_error").fnmatch_lines(
        ["E * TypeError: tlaudit.audit(): pass a TransferSetup or its fields, not both: setup and num_classes"]
    )
    failure(result, "test_unknown_field_is_an_error").fnmatch_lines(
        ["E * TypeError: tlaudit.audit(): unknown TransferSetup field: 'num_clases' (fields); did you mean num_classes?"]
    )
    failure(result, "test_command_line_fail_on_warning").fnmatch_lines(
        [
            "tlaudit: 1 finding at or above warning (fail_on from --tlaudit-fail-on)",
            "warning*grad-inference*predict*predict runs the model with gradients enabled",
        ]
    )
    failure(result, "test_marker_lr_max_tightens_the_ceiling").fnmatch_lines(
        [
            "tlaudit: 1 finding at or above warning (fail_on from --tlaudit-fail-on)",
            esc("error*lr-threshold*param_groups[0]*group 0 holds 4 pretrained parameters with lr 0.005 > lr_max 0.001"),
        ]
    )
    failure(result, "test_marker_unknown_check_id").fnmatch_lines(
        [
            "@pytest.mark.tlaudit on test_audits.py::test_marker_unknown_check_id: "
            "unknown check ID: 'head-sise' (select); did you mean head-size*"
        ]
    )

    report = json.loads((pytester.path / "out" / "audits.json").read_text())
    assert sorted(report) == sorted(
        f"test_audits.py::{name}"
        for name in (
            "test_audit_passes_and_returns_the_report",
            "test_audit_fails_with_the_readable_report",
            "test_command_line_fail_on_warning",
            "test_marker_fail_on_beats_the_command_line",
            "test_call_fail_on_beats_the_command_line",
            "test_default_lr_max_for_sgd",
            "test_marker_lr_max_tightens_the_ceiling",
            "test_marker_select",
        )
    )
    twice = report["test_audits.py::test_audit_passes_and_returns_the_report"]
    assert isinstance(twice, list) and [r["ok"] for r in twice] == [True, True]
    assert twice[1]["checks_run"] == ["head-size"]
    failed = report["test_audits.py::test_audit_fails_with_the_readable_report"]
    assert failed["ok"] is False and failed["summary"]["errors"] == 1
    assert [f["check"] for f in failed["findings"]] == ["head-size"]
    lr = report["test_audits.py::test_marker_lr_max_tightens_the_ceiling"]["findings"]
    assert [(f["check"], f["subject"]) for f in lr] == [("lr-threshold", "param_groups[0]")]

    summary = section(result, "tlaudit")
    assert re.search(r"^test_audits.py::test_audit_passes_and_returns_the_report +0 errors, 0 warnings \(2 audits\)$", summary, flags=re.M)
    assert re.search(r"^test_audits.py::test_command_line_fail_on_warning +0 errors, 1 warning$", summary, flags=re.M)
    assert re.search(r"^tlaudit report written to .*audits\.json$", summary, flags=re.M)

    bench = json.loads((pytester.path / "bench.json").read_text())["benchmarks"]
    assert [b["name"] for b in bench] == ["test_bench"]
    extra = bench[0]["extra_info"]
    assert (extra["batch_size"], extra["device"], extra["dtype"]) == (4, "cpu", "float32")
    assert extra["images_per_second"] == pytest.approx(4 / bench[0]["stats"]["median"])


# -- setups as test items ------------------------------------------------------------------------


def test_setups_become_one_test_item_per_check(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntlaudit_report = reports/audits.json\n")
    pytester.makepyfile(tinymodels=TINYMODELS)
    pytester.makepyfile(
        test_models="""
        import pytest
        import torch
        import torchvision

        from tlaudit import TransferSetup, freeze_backbone
        from tinymodels import sample, tiny

        @pytest.mark.tlaudit_setup
        def resnet_setup():
            model = torchvision.models.resnet18(num_classes=10)  # the head was never replaced
            freeze_backbone(model, batchnorm="frozen")
            optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.01)
            return TransferSetup(
                model=model, num_classes=5, sample=sample(2, 32), optimizer=optimizer, strategy="feature_extraction"
            )

        @pytest.mark.tlaudit(select=["head-size", "eval-mode", "optimizer-missing"])
        @pytest.mark.tlaudit_setup
        def tiny_setup():
            return TransferSetup(model=tiny(), num_classes=3, sample=sample())

        @pytest.mark.tlaudit(select=["head-frozen", "head-size"])
        @pytest.mark.tlaudit_setup
        def broken_setup():
            raise RuntimeError("checkpoint not found")

        @pytest.mark.tlaudit(select=["head-size"])
        @pytest.mark.tlaudit_setup
        def wrong_type_setup():
            return 42

        def plain_setup():  # not marked: a helper, never collected
            raise AssertionError("collected by surprise")

        CALLS = []

        @pytest.mark.tlaudit(select=["head-frozen", "head-size"])
        @pytest.mark.tlaudit_setup
        def counted_setup():
            CALLS.append(1)
            return TransferSetup(model=tiny(), num_classes=3, sample=sample())

        def test_each_factory_ran_once():
            assert CALLS == [1]
        """
    )
    pytester.makepyfile(
        test_bad_setups="""
        import pytest

        @pytest.mark.tlaudit_setup
        def needs_a_model_setup(model):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-v", "-rs", "--strict-markers", "--continue-on-collection-errors", timeout=TIMEOUT)
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting test_bad_setups.py*",
            "@pytest.mark.tlaudit_setup: needs_a_model_setup() must take no arguments, it takes model "
            "(test_bad_setups.py::needs_a_model_setup)",
        ]
    )
    found = outcomes(result)
    resnet = {n.split("[")[1].rstrip("]"): o for n, o in found.items() if n.startswith("test_models.py::resnet_setup[")}
    assert len(resnet) == len(tlaudit.REGISTRY)  # one item per registered check
    assert resnet["head-size"] == "FAILED"
    assert {c for c, o in resnet.items() if o == "SKIPPED"} == {
        "eval-mode",
        "eval-nondeterministic",
        "grad-inference",
        "normalization",
        "label-range",
        "pretrained-not-loaded",
        "user-code-error",
    }
    assert {o for c, o in resnet.items() if c != "head-size"} == {"PASSED", "SKIPPED"}
    assert {n: o for n, o in found.items() if not n.startswith("test_models.py::resnet_setup[")} == {
        "test_models.py::tiny_setup[head-size]": "PASSED",
        "test_models.py::tiny_setup[optimizer-missing]": "SKIPPED",
        "test_models.py::tiny_setup[eval-mode]": "SKIPPED",
        "test_models.py::broken_setup[head-frozen]": "FAILED",
        "test_models.py::broken_setup[head-size]": "FAILED",
        "test_models.py::wrong_type_setup[head-size]": "FAILED",
        "test_models.py::counted_setup[head-frozen]": "PASSED",
        "test_models.py::counted_setup[head-size]": "PASSED",
        "test_models.py::test_each_factory_ran_once": "PASSED",
    }
    failure(result, "resnet_setup[head-size]").fnmatch_lines(
        [
            "tlaudit: 1 finding of `head-size` at or above error (fail_on from default)",
            "error*head-size*output*output `output` has shape (2, 10), expected 5 columns (num_classes)",
            "  head-size: tlaudit.replace_head(model, 5) (auxiliary heads included)",
        ]
    )
    failure(result, "broken_setup[head-frozen]").fnmatch_lines(
        [
            "tlaudit: setup factory broken_setup() raised RuntimeError: checkpoint not found",
            "Traceback (most recent call last):",
            '*File "*test_models.py", line *, in broken_setup',
        ]
    )
    failure(result, "broken_setup[head-size]").fnmatch_lines(
        ["tlaudit: setup factory broken_setup() raised RuntimeError: checkpoint not found (details: broken_setup[head-frozen])"]
    )
    failure(result, "wrong_type_setup[head-size]").fnmatch_lines(
        ["tlaudit: setup factory wrong_type_setup() returned int, not a tlaudit.TransferSetup"]
    )
    result.stdout.fnmatch_lines(
        [
            esc("SKIPPED [1] test_models.py:*: eval-mode: no `predict` given"),
            esc("SKIPPED [1] test_models.py:*: optimizer-missing: no `optimizer` given"),
        ]
    )
    assert "collected by surprise" not in result.stdout.str()

    report = json.loads((pytester.path / "reports" / "audits.json").read_text())  # relative to the ini file
    assert sorted(report) == ["test_models.py::counted_setup", "test_models.py::resnet_setup", "test_models.py::tiny_setup"]
    assert report["test_models.py::resnet_setup"]["model"] == "ResNet"
    assert [f["check"] for f in report["test_models.py::resnet_setup"]["findings"]] == ["head-size"]
    assert report["test_models.py::tiny_setup"]["checks_run"] == ["head-size"]
    summary = section(result, "tlaudit")
    assert re.search(r"^test_models.py::resnet_setup +1 error, 0 warnings$", summary, flags=re.M)


# -- where users are -----------------------------------------------------------------------------


def test_xdist_workers_send_their_audits_to_the_controller(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tinymodels=TINYMODELS)
    pytester.makepyfile(
        test_one="""
        from tinymodels import sample, tiny

        def test_a(tlaudit):
            tlaudit.audit(model=tiny(), num_classes=3, sample=sample())

        def test_b(tlaudit):
            tlaudit.audit(model=tiny(), num_classes=3, sample=sample())
            tlaudit.audit(model=tiny(), num_classes=3, sample=sample(), select=["head-size"])
        """,
        test_two="""
        import pytest

        from tlaudit import TransferSetup
        from tinymodels import sample, tiny

        def test_c(tlaudit):
            tlaudit.audit(model=tiny(4), num_classes=3, sample=sample())

        def test_d(tlaudit):
            tlaudit.audit(model=tiny(), num_classes=3, sample=sample(), select="head-size")

        @pytest.mark.tlaudit(select=["head-frozen", "head-size"])
        @pytest.mark.tlaudit_setup
        def tiny_setup():
            return TransferSetup(model=tiny(), num_classes=3, sample=sample())
        """,
    )
    result = pytester.runpytest_subprocess("-n", "2", "-v", "--strict-markers", "--tlaudit-report=audits.json", timeout=TIMEOUT)
    assert outcomes(result) == {
        "test_one.py::test_a": "PASSED",
        "test_one.py::test_b": "PASSED",
        "test_two.py::test_c": "FAILED",
        "test_two.py::test_d": "PASSED",
        "test_two.py::tiny_setup[head-frozen]": "PASSED",
        "test_two.py::tiny_setup[head-size]": "PASSED",
    }
    report = json.loads((pytester.path / "audits.json").read_text())
    audited = ["test_one.py::test_a", "test_one.py::test_b", "test_two.py::test_c", "test_two.py::test_d"]
    assert sorted(report) == sorted([*audited, "test_two.py::tiny_setup"])
    assert len({workers(result)[n] for n in audited}) == 2  # both workers' audits are in the one file
    assert [r["checks_run"] for r in report["test_one.py::test_b"]][1] == ["head-size"]
    assert report["test_two.py::test_c"]["ok"] is False
    assert isinstance(report["test_two.py::tiny_setup"], dict)  # audited on each worker that ran an item, kept once
    summary = section(result, "tlaudit")
    assert re.search(r"^test_two.py::test_c +1 error, 0 warnings$", summary, flags=re.M)
    assert re.search(r"^test_one.py::test_b +0 errors, 0 warnings \(2 audits\)$", summary, flags=re.M)
    assert re.search(r"^tlaudit report written to .*audits\.json$", summary, flags=re.M)


def test_readme_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_transfer_example=EXAMPLE.read_text(encoding="utf-8"))
    result = pytester.runpytest_subprocess("-v", "--strict-markers", timeout=TIMEOUT)
    found = outcomes(result)
    assert result.ret == pytest.ExitCode.OK
    tests = {n: o for n, o in found.items() if "::test_" in n}
    assert list(tests.values()) == ["PASSED"] * 4
    checks = {n.split("[")[1].rstrip("]"): o for n, o in found.items() if "::example_setup[" in n}
    assert len(checks) == len(tlaudit.REGISTRY) and checks["frozen-grad"] == checks["head-size"] == checks["eval-mode"] == "PASSED"
    assert {c for c, o in checks.items() if o == "SKIPPED"} == {"normalization", "label-range", "pretrained-not-loaded"}
    result.assert_outcomes(passed=19, skipped=3)
