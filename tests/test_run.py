"""Tests for ``tlaudit run`` (tlaudit/cli/run.py): real training scripts run in-process under the watcher.

The scripts live in ``tests/scripts/``: an ImageFolder feature-extraction loop with seeded mistakes,
PyTorch's transfer-learning tutorial (one part at a time), and a small CNN trained with
``F.cross_entropy``, a per-batch scheduler or ``torch.compile``. Images are tiny PNGs written by the
``image_folder`` fixture; models are built with ``weights=None`` at 32 px (nothing is downloaded).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tlaudit.cli import main

SCRIPTS = Path(__file__).parent / "scripts"
pytestmark = pytest.mark.filterwarnings(
    # torch warns that global module hooks (the watcher's) also fire for the OptimizedModule wrapper;
    # the watcher counts only the outermost call, so the wrapper's extra call is the one it records
    "ignore:Using `torch.compile\\(module\\)` when there are global hooks:UserWarning",
)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` (8 images) and ``val/`` (4 images) with classes ``ants`` and ``bees``, 40x40 PNGs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("hymenoptera")
    gen = torch.Generator().manual_seed(0)
    for split, per_class in (("train", 4), ("val", 2)):
        for label in ("ants", "bees"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = torch.randint(0, 256, (40, 40, 3), generator=gen, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_imagefolder_feature_extraction_audits_clean(capsys, image_folder):
    code, out, err = run(capsys, "--strategy", "feature_extraction", str(SCRIPTS / "imagefolder_train.py"), str(image_folder / "train"))
    assert code == 0, err
    assert "trained" in out and "epoch 0 step 1" in out  # the run went on after the audit
    assert "tlaudit: ResNet: 13 checks run, 0 errors, 0 warnings, 2 skipped." in err
    assert "transform (ImageFolder.transform)" in err
    assert "num_classes (2, ImageFolder.classes)" in err
    assert "given as intent: strategy" in err


def test_typo_freeze_is_caught_at_the_first_step_and_stops_the_run(capsys, image_folder):
    script = SCRIPTS / "imagefolder_train.py"
    code, out, err = run(capsys, "--strategy", "feature_extraction", str(script), str(image_folder / "train"), "--bug", "typo-freeze")
    assert code == 1
    assert "frozen-grad" in err and "meant frozen (strategy='feature_extraction')" in err
    assert "step 0" not in out  # stopped before the first step executed


def test_typo_freeze_with_fail_on_never_reports_and_continues(capsys, image_folder):
    script = SCRIPTS / "imagefolder_train.py"
    code, out, err = run(
        capsys, "--strategy", "feature_extraction", "--fail-on", "never", str(script), str(image_folder / "train"), "--bug", "typo-freeze"
    )
    assert code == 0
    assert "frozen-grad" in err
    assert "trained" in out


def test_typo_freeze_without_intent_is_not_an_error(capsys, image_folder):
    """Nothing is frozen and the optimizer holds only the head: without the intent, only the optimizer says so."""
    code, out, err = run(capsys, str(SCRIPTS / "imagefolder_train.py"), str(image_folder / "train"), "--bug", "typo-freeze")
    assert code == 1
    assert "frozen-grad" not in err
    assert "optimizer-missing" in err


def test_optimizer_built_before_the_head_swap_is_caught(capsys, image_folder):
    script = SCRIPTS / "imagefolder_train.py"
    code, out, err = run(capsys, str(script), str(image_folder / "train"), "--bug", "optimizer-before-head")
    assert code == 1
    assert "optimizer-missing" in err and "`fc`" in err
    assert "step 0" not in out


def test_wrong_normalization_is_caught_against_the_declared_weights(capsys, image_folder, tmp_path):
    report = tmp_path / "report.jsonl"
    script = SCRIPTS / "imagefolder_train.py"
    code, out, err = run(
        capsys,
        "--weights",
        "ResNet18_Weights.IMAGENET1K_V1",
        "--format",
        "json",
        "--output",
        str(report),
        str(script),
        str(image_folder / "train"),
        "--bug",
        "wrong-normalization",
    )
    assert code == 1
    (line,) = report.read_text().splitlines()  # stopped at the first step: no inference audit
    data = json.loads(line)
    assert data["stage"] == "train"
    checks = {f["check"]: f["severity"] for f in data["findings"]}
    assert checks["normalization"] == "error"
    # the random weights (weights=None: nothing can be downloaded here) are reported, as a warning
    assert checks["pretrained-not-loaded"] == "warning"


def test_the_weights_the_run_loads_are_observed(capsys, image_folder, monkeypatch):
    """``resnet18(weights=...)`` as the script has it; the download is replaced by a fresh model's state
    dict (nothing can be downloaded here), so the backbone is still untrained: a warning."""
    import torchvision
    from torchvision.models._api import WeightsEnum

    original = WeightsEnum.__dict__["get_state_dict"]
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda url, **kw: torchvision.models.resnet18().state_dict())
    script = SCRIPTS / "imagefolder_train.py"
    code, out, err = run(capsys, str(script), str(image_folder / "train"), "--pretrained", "--bug", "wrong-normalization")
    assert code == 1
    assert "weights (ResNet18_Weights.IMAGENET1K_V1, loaded by the run)" in err
    assert "error       normalization" in err and "warning     pretrained-not-loaded" in err
    assert WeightsEnum.__dict__["get_state_dict"] is original  # torchvision's own function is back


def test_tutorial_finetuning_audits_clean_with_the_validation_pass(capsys, image_folder, tmp_path):
    code, out, err = run(capsys, str(SCRIPTS / "transfer_tutorial.py"), str(image_folder), str(tmp_path), "--part", "finetuning")
    assert code == 0, err
    assert "Training complete" in out
    assert "train audit at the first optimizer step" in err
    assert "inference audit after the first validation pass" in err
    assert "scheduler (StepLR)" in err
    assert "0 of 68 modules in training mode, no_grad" in err
    assert err.count("0 errors, 0 warnings") == 2


def test_tutorial_fixed_feature_extractor_warns_about_drifting_batchnorm(capsys, image_folder, tmp_path):
    """The tutorial's fixed feature extractor calls model.train() on a frozen backbone: its BatchNorm
    statistics drift. A warning without intent; the run goes on."""
    code, out, err = run(
        capsys, str(SCRIPTS / "transfer_tutorial.py"), str(image_folder), str(tmp_path), "--part", "fixed-feature-extractor"
    )
    assert code == 0
    assert "frozen-bn-train" in err and "warning" in err
    assert "Training complete" in out


@pytest.mark.parametrize("style", ["functional", "per-batch-scheduler"])
def test_loops_written_other_ways_audit_clean(capsys, style):
    code, out, err = run(capsys, str(SCRIPTS / "tensors_train.py"), "--style", style)
    assert code == 0, err
    assert "finished after 4 steps" in out
    assert err.count("0 errors, 0 warnings") == 2
    expected = "targets given to cross_entropy"
    assert expected in err
    if style == "per-batch-scheduler":
        assert "scheduler (OneCycleLR)" in err


def test_compiled_model_audits_clean(capsys):
    if not hasattr(torch, "compile") or sys.version_info >= (3, 14):
        pytest.skip("torch.compile is not available on this Python")
    code, out, err = run(capsys, str(SCRIPTS / "tensors_train.py"), "--style", "compiled", "--epochs", "1")
    assert code == 0, err
    assert "OptimizedModule, the outermost module called" in err
    assert err.count("0 errors, 0 warnings") == 2


def test_max_steps_and_stop_after_audit_end_the_run(capsys):
    code, out, err = run(capsys, "--max-steps", "1", str(SCRIPTS / "tensors_train.py"))
    assert code == 0
    assert "finished" not in out and "epoch 0" not in out
    code, out, err = run(capsys, "--stop-after-audit", str(SCRIPTS / "tensors_train.py"))
    assert code == 0
    assert out.startswith("epoch 0 steps 2 accuracy") and "epoch 1" not in out  # stopped at the second epoch's first step
    assert "inference audit" in err


def test_the_scripts_exit_code_and_argv_are_its_own(capsys):
    argv0 = sys.argv[:]
    code, out, err = run(capsys, str(SCRIPTS / "tensors_train.py"), "--exit-code", "3")
    assert code == 3
    assert sys.argv == argv0
    code, out, err = run(capsys, str(SCRIPTS / "tensors_train.py"), "--crash")
    assert code == 1
    assert "RuntimeError: the script's own crash" in err
    assert 'tensors_train.py", line' in err and "runpy" not in err


def test_a_script_that_cannot_be_started_exits_2(capsys, tmp_path):
    code, out, err = run(capsys, str(tmp_path / "missing.py"))
    assert code == 2
    assert "cannot run the script: no such file" in err
    code, out, err = run(capsys, "--select", "frozen-grd", str(SCRIPTS / "tensors_train.py"))
    assert code == 2
    assert "unknown check ID: 'frozen-grd'" in err and "did you mean frozen-grad" in err


def test_an_intent_that_does_not_fit_the_model_exits_2(capsys):
    code, out, err = run(capsys, "--frozen", "backbone", str(SCRIPTS / "tensors_train.py"))
    assert code == 2
    assert "TransferSetup.frozen" in err and "'backbone'" in err
