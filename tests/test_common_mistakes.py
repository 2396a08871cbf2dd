"""The gallery in examples/common_mistakes/: each mistake is caught by the check named here, each fixed twin audits clean.

Every file is loaded the way ``tlaudit audit FILE`` loads it (``load_setup``), and a few run through
the command line itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tlaudit

GALLERY = Path(__file__).resolve().parent.parent / "examples" / "common_mistakes"

# mistake file -> (the check that must fire, its severity, a pattern its message must match)
CAUGHT = {
    "freeze_module_attribute": (
        "frozen-grad",
        "error",
        r"in 4 modules \(`conv1`, `bn1`, `layer1` and 1 more\): meant frozen \(TransferSetup\.frozen\)",
    ),
    "freeze_name_typo": ("frozen-grad", "error", r"^5 parameters of `layer2`: meant frozen \(TransferSetup\.frozen\)"),
    "requires_grad_comparison": ("frozen-grad", "error", r"^60 parameters in 6 modules .*strategy='feature_extraction'"),
    "optimizer_before_head_swap": (
        "optimizer-missing",
        "error",
        r"^2 parameters of `fc`: trainable but in no optimizer group; the optimizer holds 2 parameters that are not in the model$",
    ),
    "head_not_replaced": ("head-size", "error", r"^output `output` has shape \(4, 1000\), expected 5 columns"),
    "inception_aux_head_forgotten": ("head-size", "error", r"^output `aux_logits` has shape \(2, 1000\), expected 5 columns"),
    # a warning: adapting BatchNorm statistics is sometimes meant (AdaBN); the message says which effect it has
    "frozen_batchnorm_drifting": (
        "frozen-bn-train",
        "warning",
        r"^20 BatchNorm layers in 5 modules .*running stats drift toward the new data",
    ),
    "no_eval_at_inference": (
        "eval-mode",
        "error",
        r"^`ResNet` ran in training mode during predict: 20 BatchNorm layers using batch statistics",
    ),
    "functional_dropout_at_inference": (
        "eval-nondeterministic",
        "error",
        r"^two predict calls on the same sample returned different outputs$",
    ),
    "wrong_normalization": (
        "normalization",
        "error",
        r"normalizes with mean \[0\.5, 0\.5, 0\.5\], std \[0\.5, 0\.5, 0\.5\]; the weights \(ResNet18_Weights\.IMAGENET1K_V1\)",
    ),
    "missing_normalization": ("normalization", "error", r"^the transform applies no normalization"),
    # only a warning: the Normalize step is right, the missing scaling shows in the batch statistics alone
    "pixels_not_scaled": ("input-range", "warning", r"^the sample's statistics are far from a normalized input's"),
    "labels_from_one": ("label-range", "error", r"^targets range over \[1, 5\], outside \[0, 5\) \(num_classes\): e\.g\. \[5\]$"),
    "lr_too_high_on_pretrained": ("lr-threshold", "error", r"^group 0 holds 60 pretrained parameters with lr 0\.01 > lr_max 0\.001$"),
    "warmup_peaks_too_high": (
        "lr-threshold",
        "error",
        r"^group 0 holds 60 pretrained parameters; the scheduler raises its lr to 0\.1 > lr_max 0\.05 at step 10$",
    ),
    "strict_false_loaded_nothing": ("pretrained-not-loaded", "error", r"^load_state_dict left 100 backbone keys missing"),
    "stale_gradients_with_momentum": (
        "frozen-changed",
        "error",
        r"in 4 modules \(`conv1`, `bn1`, `layer1` and 1 more\): frozen but changed value in one train step$",
    ),
}


def test_every_gallery_file_is_a_listed_mistake_or_its_twin():
    files = {p.stem for p in GALLERY.glob("*.py")}
    assert files == set(CAUGHT) | {f"{name}_fixed" for name in CAUGHT}


@pytest.mark.parametrize("path", sorted(GALLERY.glob("*.py")), ids=lambda p: p.stem)
def test_each_file_says_the_symptom_and_the_fix(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("# Symptom")]
    assert len(starts) == 1, path.name
    assert lines[starts[0] + 1].startswith("# Fix"), path.name


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_the_mistake_is_caught_by_its_check(name):
    check, severity, pattern = CAUGHT[name]
    report = tlaudit.audit(tlaudit.load_setup(GALLERY / f"{name}.py"))
    found = report.by_check(check)
    assert found, f"{check} did not fire on {name}.py:\n{report.to_text()}"
    assert {f.severity.value for f in found} == {severity}
    assert any(re.search(pattern, f.message) for f in found), report.to_text()


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_the_fixed_twin_audits_clean(name):
    """No finding at all, warnings included: every twin is the mistake's file with the fix applied."""
    report = tlaudit.audit(tlaudit.load_setup(GALLERY / f"{name}_fixed.py"))
    assert report.findings == (), report.to_text()
    assert CAUGHT[name][0] in report.checks_run  # the check that caught the mistake ran on the twin


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("optimizer_before_head_swap", 1, r"optimizer-missing"),
        ("optimizer_before_head_swap_fixed", 0, r"\b0 errors, 0 warnings\b"),
    ],
)
def test_the_command_line_audits_a_gallery_file(name, code, expected):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread, whatever else runs
    result = subprocess.run(
        [sys.executable, "-m", "tlaudit", "audit", str(GALLERY / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == code, result.stderr
    assert re.search(expected, result.stdout + result.stderr), result.stdout + result.stderr


def test_the_whole_gallery_audits_as_a_folder_with_the_worst_exit_code(capsys):
    """``tlaudit audit examples/common_mistakes/``: one report per file, exit code the worst (1: findings)."""
    from tlaudit.cli import main

    code = main(["audit", str(GALLERY), "--select", "label-range", "--format", "json", "--no-progress"])
    out, _ = capsys.readouterr()
    data = json.loads(out)
    files = sorted(p.name for p in GALLERY.glob("*.py") if not p.name.startswith("_"))
    assert code == 1
    assert sorted(Path(entry["path"]).name for entry in data["audits"]) == files
    flagged = sorted(Path(entry["path"]).name for entry in data["audits"] if entry["report"]["findings"])
    assert flagged == ["labels_from_one.py"]
