"""``tlaudit run`` on small versions of real training programs (tests/scripts/), clean and with one
seeded mistake at a time: the verdict each run must get.

* ``timm_train.py`` (timm's train.py: ``ClassificationTask`` computes the loss, ``PrefetchLoader``
  normalizes, ``CosineLRScheduler`` with warm-up, ``create_model(pretrained=True)`` from a file);
* ``transfer_tutorial.py`` (PyTorch's tutorial: two models trained one after the other, then
  ``visualize_model``);
* ``staged_unfreeze.py`` (gradual unfreezing in plain PyTorch with ``add_param_group`` or a rebuilt
  optimizer).

Clean runs: exit 0, no error finding, and the same final parameters as the unwatched run. Seeded
runs: the right check, at the moment the mistake appears. Where tlaudit does not do so yet, the test
says what is right and is marked ``xfail(strict=True)`` with the reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.programs import Run, run_plain, run_watched, write_image_folder

pytestmark = pytest.mark.filterwarnings(
    # timm's ImageDataset opens each image file without closing it (the ResourceWarning is raised in __del__)
    "ignore::pytest.PytestUnraisableExceptionWarning",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("hymenoptera"))


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("three-classes"), classes=("ants", "bees", "wasps"), per_class=(2, 1))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the programs save their "pretrained" checkpoints (each architecture's own init) once."""
    return tmp_path_factory.mktemp("checkpoints")


def assert_clean(run: Run) -> None:
    assert run.code == 0, run.err[-3000:]
    assert not run.checks("error"), run.findings()
    assert "the run is stopped" not in run.err


# -- timm's train.py ---------------------------------------------------------------------------


def test_timm_train_clean_is_not_stopped_and_unchanged(data, checkpoints):
    plain = run_plain("timm_train.py", str(data), str(checkpoints))
    watched = run_watched("timm_train.py", str(data), str(checkpoints))
    assert_clean(watched)
    assert watched.stages == ["train", "inference"]
    assert watched.checksum == plain.checksum


def test_timm_train_facts_are_read(data, checkpoints):
    watched = run_watched("timm_train.py", str(data), str(checkpoints))
    assert_clean(watched)
    notes = watched.notes()
    assert "scheduler (CosineLRScheduler" in notes
    assert "num_classes (2" in notes
    assert "targets (" in notes
    for name in ("scheduler", "weights", "targets", "num_classes"):
        assert f"not observed: {name}" not in notes and not any(
            name in line for line in notes.splitlines() if line.startswith("not observed")
        ), notes


def test_timm_train_labels_from_1_crash_is_diagnosed(data, checkpoints):
    watched = run_watched("timm_train.py", str(data), str(checkpoints), "--bug", "labels-from-1")
    assert watched.code == 1  # the program's own exit code for its uncaught exception
    assert "RuntimeError: index 2 is out of bounds" in watched.err  # the user's traceback is kept
    assert "tlaudit" + os.sep + "watcher" not in watched.err
    assert "label-range" in watched.checks("error")


def test_timm_train_prefetcher_statistics_are_checked(data, checkpoints):
    watched = run_watched("timm_train.py", str(data), str(checkpoints), "--bug", "prefetch-stats")
    assert watched.code == 1
    assert watched.findings("error") == [("train", "normalization")]
    assert "epoch 0" not in watched.out  # stopped before the first step


# -- PyTorch's transfer-learning tutorial ------------------------------------------------------


def test_tutorial_two_models_clean_is_not_stopped_and_unchanged(data, checkpoints):
    plain = run_plain("transfer_tutorial.py", str(data), str(checkpoints))
    watched = run_watched("transfer_tutorial.py", str(data), str(checkpoints))
    assert_clean(watched)
    assert watched.checksum == plain.checksum
    assert watched.out.count("Training complete") == 2


def test_tutorial_second_model_is_audited_at_its_first_step(data, checkpoints):
    watched = run_watched("transfer_tutorial.py", str(data), str(checkpoints))
    assert_clean(watched)
    # the fine-tuned model at its first step; the fixed feature extractor at its first step (the checks
    # that need no step, before it runs) and traced at its second
    assert watched.stages[0] == "train"
    second = [s for s in watched.stages if s.endswith(": a new optimizer steps)")]
    assert len(second) == 1, watched.stages
    traced = watched.audits[watched.stages.index(second[0]) + 1]
    assert traced["stage"].startswith("train (step ")
    assert "frozen-bn-train" in {f["check"] for f in traced["findings"]}  # train() on a frozen backbone: a warning


def test_tutorial_second_model_freeze_typo_is_caught(data, checkpoints):
    watched = run_watched("transfer_tutorial.py", str(data), str(checkpoints), "--bug", "second-freeze-typo")
    assert watched.code == 1
    assert "optimizer-missing" in watched.checks("error")
    assert watched.out.count("Training complete") == 1  # the second model was stopped before its first step
    assert watched.out.count("train Loss") == 1


def traceback_frames(err: str) -> list[str]:
    """The ``File "...", line N, in NAME`` lines of a printed traceback, but torch's module-call
    frames (global hooks make torch call a module through an extra ``inner`` frame)."""
    frames = re.findall(r'^  File "([^"]+)", line (\d+), in (\S+)$', err, flags=re.MULTILINE)
    return [
        f"{path}:{line} {name}" for path, line, name in frames if not path.endswith(os.path.join("torch", "nn", "modules", "module.py"))
    ]


def test_tutorial_labels_from_1_crash_is_diagnosed(data, checkpoints):
    plain = run_plain("transfer_tutorial.py", str(data), str(checkpoints), "--bug", "labels-from-1")
    watched = run_watched("transfer_tutorial.py", str(data), str(checkpoints), "--bug", "labels-from-1")
    assert watched.code == plain.code == 1
    assert "IndexError: Target 2 is out of bounds." in watched.err
    assert "label-range" in watched.checks("error")
    # the traceback is the unwatched program's: no frame of the watcher's wrappers
    assert "tlaudit" + os.sep + "watcher" not in watched.err
    assert traceback_frames(watched.err) == traceback_frames(plain.err) != []


def test_tutorial_visualize_in_train_mode_is_caught(data, checkpoints):
    """visualize_model after train_model returns (the loop left the model in training mode), without
    eval(): the second model's inference was audited in eval mode at its validation pass; the later
    prediction in training mode is audited too (here when the watch ends: no step follows it)."""
    watched = run_watched("transfer_tutorial.py", str(data), str(checkpoints), "--bug", "visualize-train-mode")
    later = [stage for stage in watched.stages if stage.startswith("inference (later, ")]
    assert len(later) == 1, watched.stages
    assert "in training mode, no_grad" in later[0]
    assert (later[0], "eval-mode") in watched.findings("error")
    assert watched.code == 1


def test_tutorial_visualize_in_eval_mode_is_not_audited_again(data, checkpoints):
    """The clean run's visualize_model predicts in the modes its validation pass had: no new audit."""
    watched = run_watched("transfer_tutorial.py", str(data), str(checkpoints))
    assert not [stage for stage in watched.stages if stage.startswith("inference (later")]
    assert "predicted:" in watched.out


# -- staged unfreezing in plain PyTorch --------------------------------------------------------


def test_staged_unfreezing_done_right_is_not_stopped_and_unchanged(checkpoints):
    plain = run_plain("staged_unfreeze.py", str(checkpoints))
    watched = run_watched("staged_unfreeze.py", str(checkpoints))
    assert_clean(watched)
    assert watched.checksum == plain.checksum


def test_staged_unfreezing_with_a_rebuilt_optimizer_done_right_is_not_stopped(checkpoints):
    watched = run_watched("staged_unfreeze.py", str(checkpoints), "--rebuild")
    assert_clean(watched)
    assert "train (step 3: a new optimizer steps)" in watched.stages


def test_staged_unfreezing_is_re_audited_when_it_happens(checkpoints):
    watched = run_watched("staged_unfreeze.py", str(checkpoints))
    assert_clean(watched)
    # the checks that need no step, before the first step after the unfreeze; then that step traced
    assert watched.stages == ["train", "train (step 3: the trainable parameters or param groups changed)", "train (step 3)", "inference"]


def test_staged_unfreezing_with_the_optimizer_not_told_is_caught(checkpoints):
    watched = run_watched("staged_unfreeze.py", str(checkpoints), "--bug", "optimizer-not-told")
    assert watched.code == 1
    assert watched.checks("error") == {"optimizer-missing"}
    assert "epoch 1: unfroze layer4" in watched.out and "epoch 1 loss" not in watched.out  # stopped at epoch 1's first step
    assert "epoch 0 loss" in watched.out


def test_tutorial_class_list_short_of_the_data_crash_is_diagnosed_as_head_size(three_classes, checkpoints):
    """A class list of two for data of three: labels 2 pass the two-wide head and the loss raises
    before the first step. The labels are the dataset's own; the head is what does not fit."""
    plain = run_plain("transfer_tutorial.py", str(three_classes), str(checkpoints), "--bug", "class-list")
    watched = run_watched("transfer_tutorial.py", str(three_classes), str(checkpoints), "--bug", "class-list")
    assert watched.code == plain.code == 1
    assert "IndexError: Target 2 is out of bounds." in watched.err
    assert watched.findings("error") == [("crash", "head-size")]
    (crash,) = watched.audits
    assert "has shape (4, 2), expected 3 columns (num_classes)" in crash["findings"][0]["message"]
    assert "num_classes (3, ImageFolder.classes)" in watched.notes()  # read while the loop still ran
    assert "the loss input has 2 classes and the dataset 3" in watched.notes()


def test_tutorial_class_list_of_the_data_is_clean(three_classes, checkpoints):
    """The same three-class data with the class list read from the dataset: no crash, no error."""
    assert_clean(run_watched("transfer_tutorial.py", str(three_classes), str(checkpoints), "--epochs", "1"))


@pytest.mark.parametrize("style", [(), ("--rebuild",)], ids=["add_param_group", "rebuilt-optimizer"])
def test_staged_unfreezing_with_a_too_high_lr_is_caught(checkpoints, style):
    watched = run_watched("staged_unfreeze.py", str(checkpoints), "--bug", "high-lr", *style)
    assert watched.code == 1
    assert watched.checks("error") == {"lr-threshold"}
    assert "epoch 0 loss" in watched.out and "epoch 1 loss" not in watched.out


def test_a_label_only_a_later_batch_holds_is_caught_when_it_appears(checkpoints):
    plain = run_plain("staged_unfreeze.py", str(checkpoints), "--bug", "late-label")
    watched = run_watched("staged_unfreeze.py", str(checkpoints), "--bug", "late-label")
    assert watched.code == plain.code == 1
    assert traceback_frames(watched.err) == traceback_frames(plain.err) != []
    assert "label-range" in watched.checks("error")
    assert not [check for stage, check in watched.findings("error") if stage == "train"]  # the first batch was clean
