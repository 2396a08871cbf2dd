"""Tests for tlaudit/watcher/predictions.py: a later prediction in other modes than the audited
inference is audited again (in eval or inference mode before it runs; with a module in training mode
at the next optimizer step or the watch's end, since it may be part of a training step); the same
modes, training calls, calls within a training step and BatchNorm recalibration are left alone.

The loop is ordinary PyTorch on a tiny CNN (tests/test_watch.py's): two epochs, each with a
validation pass in eval mode under ``no_grad``, so the inference audit happens at the second epoch's
first step; then the program predicts in its own code.
"""

from __future__ import annotations

import io

import pytest
import torch

import tlaudit
from tests.test_watch import loader, no_hooks_left, tiny, train
from tlaudit import AuditFailed


def trained_and_watched(predict, **options):
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    data = loader()
    stream = io.StringIO()
    with tlaudit.watch(stream=stream, **options) as watched:
        train(model, optimizer, data)
        predict(model, next(iter(data))[0])
    return watched, model, stream.getvalue()


def later(watched) -> list[str]:
    return [stage for stage in watched.reports if stage.startswith("inference (later")]


def test_a_later_prediction_in_training_mode_is_an_error_at_the_watchs_end():
    """No optimizer step follows the prediction: it was no part of a training step, so the watch's
    end audits it (it ran: a call in training mode is only told apart from a step's own at the step)."""
    ran = []

    def predict(model, x):
        model.train()  # the prediction forgot eval()
        with torch.no_grad():
            model(x)
        ran.append(True)

    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    stream = io.StringIO()
    with pytest.raises(AuditFailed, match="eval-mode"):
        with tlaudit.watch(stream=stream):
            train(model, optimizer, loader())
            predict(model, next(iter(loader()))[0])
    assert ran == [True]
    assert (
        "inference audit of a later prediction in other modes (after optimizer step 4: 9 of 9 modules in training mode, no_grad)"
        in stream.getvalue()
    )
    assert "ran in other modes than the audited inference (0 of 9 modules in training mode, no_grad)" in stream.getvalue()
    assert no_hooks_left() and not model._forward_pre_hooks


def test_a_later_validation_that_forgot_eval_stops_the_run_at_the_next_step():
    """Epoch 2's validation runs in training mode (steps are 2 an epoch). The next epoch's training
    forward follows it, so at step 7 it may still be part of that step; it does not come again
    before step 8, so step 8 audits it and is stopped: an error one step after the prediction."""

    def validate(model, x, epoch):
        if epoch == 2:  # the third epoch's validation forgot eval()
            model.train()
        with torch.no_grad():
            model(x)

    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    stream = io.StringIO()
    steps = []
    with pytest.raises(AuditFailed, match="eval-mode"):
        with tlaudit.watch(stream=stream) as watched:
            for epoch in range(5):
                model.train()
                for x, y in loader():
                    optimizer.zero_grad()
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    optimizer.step()
                    steps.append(epoch)
                model.eval()
                validate(model, next(iter(loader()))[0], epoch)
    assert len(steps) == 7  # steps 1-7 ran; step 8 was stopped before it ran
    assert "inference (later, step 8" in "\n".join(watched.reports)


def test_pseudo_labels_computed_first_from_some_epoch_on_are_part_of_the_step():
    """A supervised warm-up epoch, then each step computes pseudo-labels without gradients in training
    mode before its training forward: part of the step, never stopped."""
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    stream = io.StringIO()
    with tlaudit.watch(stream=stream) as watched:
        for epoch in range(4):
            model.train()
            for x, y in loader():
                if epoch >= 2:
                    with torch.no_grad():
                        y = model(x.flip(-1)).argmax(1)  # pseudo-labels
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                model(next(iter(loader()))[0])
    assert not any(r.errors for r in watched.reports.values()), stream.getvalue()
    assert not later(watched)


def test_a_later_prediction_in_the_audited_modes_is_not_audited_again():
    def predict(model, x):
        model.eval()
        with torch.no_grad():
            model(x)

    watched, model, _ = trained_and_watched(predict)
    assert set(watched.reports) == {"train", "inference"}
    assert not model._forward_pre_hooks  # the hook is gone with the watch


def test_a_later_prediction_in_other_clean_modes_is_audited_and_reported():
    def predict(model, x):
        model.eval()
        with torch.inference_mode():
            model(x)

    watched, _, text = trained_and_watched(predict)
    (stage,) = later(watched)
    assert stage == "inference (later, step 4: 0 of 9 modules in training mode, inference mode)"
    assert not watched.reports[stage].findings


def test_more_training_after_the_audits_is_no_prediction():
    def predict(model, x):
        model.train()
        model(x).sum().backward()  # gradients on, the model training: a training call

    watched, _, _ = trained_and_watched(predict)
    assert not later(watched)


def test_batchnorm_recalibration_is_no_prediction():
    """``torch.optim.swa_utils.update_bn`` runs the model in training mode under no_grad with the
    BatchNorm momentum at None, to recompute the statistics: not a prediction."""

    def predict(model, x):
        torch.optim.swa_utils.update_bn([(x,)], model)

    watched, _, _ = trained_and_watched(predict)
    assert not later(watched)


def test_a_later_prediction_is_reported_with_fail_on_none_and_the_run_goes_on():
    outputs = []

    def predict(model, x):
        with torch.no_grad():
            model.train()
            outputs.append(model(x))

    watched, _, _ = trained_and_watched(predict, fail_on=None)
    (stage,) = later(watched)
    assert "eval-mode" in {f.check for f in watched.reports[stage].findings}
    assert outputs  # the prediction ran
