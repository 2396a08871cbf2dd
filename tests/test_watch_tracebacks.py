"""Tests for tlaudit/watcher/tracebacks.py: a crash inside ``tlaudit.watch()`` shows the traceback the
unwatched program would show, without the watcher's wrapper frames; the exception is the same object."""

from __future__ import annotations

import io
import os
import traceback

import pytest
import torch
import torch.nn.functional as F

import tlaudit
from tests.test_watch import tiny

WATCHER = os.path.join("tlaudit", "watcher")


def crash(labels: torch.Tensor) -> None:
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer.zero_grad()
    F.cross_entropy(model(torch.randn(2, 3, 16, 16)), labels).backward()
    optimizer.step()


def printed(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def test_a_loss_that_raises_under_watch_shows_no_watcher_frame():
    with pytest.raises(IndexError, match="Target 3 is out of bounds") as unwatched:
        crash(torch.tensor([0, 3]))
    with pytest.raises(IndexError, match="Target 3 is out of bounds") as watched:
        with tlaudit.watch(stream=io.StringIO()):
            crash(torch.tensor([0, 3]))
    text = printed(watched.value)
    assert WATCHER not in text
    assert "handle_torch_function" not in text  # the loss mode's dispatch is the watcher's too
    names = [f.name for f in traceback.extract_tb(watched.value.__traceback__)]
    expected = [f.name for f in traceback.extract_tb(unwatched.value.__traceback__)]
    assert names[-len(expected) + 1 :] == expected[1:]  # from crash() down: the same frames


def test_a_crash_of_the_watcher_itself_keeps_its_frames():
    from tlaudit.watcher import build
    from tlaudit.watcher.tracebacks import hide_watcher_frames

    with pytest.raises(AttributeError) as raised:
        build.sample_slot(None)  # type: ignore[arg-type]  # the watcher's own code raising
    assert WATCHER in printed(hide_watcher_frames(raised.value))


def test_a_loss_that_raises_inside_the_loss_mode_shows_no_watcher_frame():
    """timm's SoftTargetCrossEntropy with Mixup targets for 1000 classes on a 3-class head: the
    multiplication raises in torch, dispatched through the watcher's loss mode after the model call;
    the frame of that dispatch is the watcher's, not the program's."""

    def soft_target_step() -> None:
        model = tiny()
        x = model(torch.randn(2, 3, 16, 16))
        target = torch.full((2, 1000), 1e-3)
        torch.sum(-target * F.log_softmax(x, dim=-1), dim=-1).mean().backward()

    with pytest.raises(RuntimeError, match="must match the size of tensor b") as watched:
        with tlaudit.watch(stream=io.StringIO()):
            soft_target_step()
    assert WATCHER not in printed(watched.value)
    assert traceback.extract_tb(watched.value.__traceback__)[-1].name == "soft_target_step"
