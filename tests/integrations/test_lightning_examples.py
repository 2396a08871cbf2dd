"""Lightning's computer-vision fine-tuning example (tests/scripts/lightning_finetune.py), under
``tlaudit run`` and with the ``TransferAudit`` callback, clean and with a seeded mistake.

The example's ways are what matter here: ``training_step`` calls ``self.forward`` (no module call of
the LightningModule itself), Lightning steps the optimizer with a closure, the loss is called with
keywords, and ``BaseFinetuning(train_bn=False)`` makes BatchNorm parameters trainable at a milestone
while leaving them out of the optimizer on purpose. Where tlaudit is wrong today, the test says what
is right and is marked ``xfail(strict=True)`` with the reason.
"""

from __future__ import annotations

import re
import runpy
import sys

import pytest

pytest.importorskip("lightning.pytorch")
pytest.importorskip("torchmetrics")

from tests.programs import SCRIPTS, Run, run_plain, run_watched, write_image_folder  # noqa: E402
from tlaudit import AuditFailed  # noqa: E402

SCRIPT = "lightning_finetune.py"
pytestmark = pytest.mark.filterwarnings(
    # Lightning's advice for a machine with more cores, about the example's num_workers=0 loaders
    "ignore:The '(train|val)_dataloader' does not have many workers:UserWarning",
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning",
)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    data = write_image_folder(tmp_path_factory.mktemp("cats-and-dogs"))
    return str(data), str(tmp_path_factory.mktemp("checkpoints"))


def assert_clean(run: Run) -> None:
    assert run.code == 0, run.err[-3000:]
    assert not run.checks("error"), run.findings()
    assert "the run is stopped" not in run.err


def test_the_example_under_tlaudit_run_is_not_stopped_and_unchanged(paths):
    plain = run_plain(SCRIPT, *paths)
    watched = run_watched(SCRIPT, *paths)
    assert_clean(watched)
    assert watched.checksum == plain.checksum
    assert watched.audits[0]["model"].startswith("TransferLearningModel"), watched.audits[0].get("model")


def test_backbone_finetuning_under_tlaudit_run_is_not_stopped(paths):
    watched = run_watched(SCRIPT, *paths, "--finetuning", "backbone", "--epochs", "1")  # the false stop came at the first step
    assert_clean(watched)


def test_a_too_high_lr_at_the_milestone_under_tlaudit_run_is_caught(paths):
    watched = run_watched(SCRIPT, *paths, "--bug", "milestone-lr")
    assert watched.code == 1
    assert watched.checks("error") == {"lr-threshold"}
    assert watched.stages[-1] == "train (step 3: the trainable parameters or param groups changed)"  # epoch 1's first step
    assert "checksum" not in watched.out  # stopped before that step ran


def test_the_example_with_the_callback_is_not_stopped(paths):
    run = run_plain(SCRIPT, *paths, "--audit-callback")
    assert_clean(run)
    assert any("train_bn=False" in note for note in run.notes().splitlines()), run.notes()  # says what is left out, and why


def test_backbone_finetuning_with_the_callback_is_not_stopped(paths):
    """``BackboneFinetuning`` freezes with ``train_bn=True`` before training: BatchNorm parameters are
    in the optimizer from the start, and the unfreeze at epoch 1 is re-audited clean."""
    run = run_plain(SCRIPT, *paths, "--finetuning", "backbone", "--audit-callback")
    assert_clean(run)
    assert run.stages[-1] == "train audit after the param groups or trainable parameters changed (epoch 1)"


def test_a_too_high_lr_at_the_milestone_with_the_callback_is_caught_once(paths, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPTS / SCRIPT), *paths, "--bug", "milestone-lr", "--audit-callback"])
    with pytest.raises(AuditFailed) as failed:
        runpy.run_path(str(SCRIPTS / SCRIPT), run_name="__main__")
    assert {f.check for f in failed.value.report.errors} == {"lr-threshold"}
    assert "\n" not in str(failed.value)  # one line: the report itself was written once, before
    err = capsys.readouterr().err
    assert len(re.findall(r"^error +lr-threshold ", err, flags=re.MULTILINE)) == 1
