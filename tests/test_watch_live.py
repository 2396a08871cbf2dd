"""Tests for tlaudit/watcher/live.py: the run's live objects found in one pass per audit moment, and no
pass at all in a moment that asks nothing (a step before the first validation pass, in a process that
holds half a million objects, would pay for it at every step)."""

from __future__ import annotations

import gc
import types

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tlaudit.watcher import live


class Marker:
    """A kind of object no other test makes."""


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the passes over the live objects that live.py makes (its own ``gc``, not the process's)."""
    made: list[int] = []

    def counted() -> list[object]:
        made.append(1)
        return gc.get_objects()

    monkeypatch.setattr(live, "gc", types.SimpleNamespace(get_objects=counted))
    return made


def test_a_block_that_asks_nothing_makes_no_pass(passes):
    with live.one_pass():
        pass
    assert passes == []


def test_a_block_answers_every_question_from_one_pass(passes):
    loader = DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1)
    with live.one_pass():
        with live.one_pass():  # nested: the outer block's pass
            assert any(found is loader for found in live.instances(DataLoader))
        made_after = Marker()  # after the pass: the block's answers do not see it
        assert not any(found is made_after for found in live.instances(Marker))
    assert passes == [1]


def test_outside_a_block_each_question_makes_its_own_pass(passes):
    live.instances(DataLoader)
    live.instances(DataLoader)
    assert passes == [1, 1]


def test_a_new_block_sees_objects_made_after_the_last_one(passes):
    with live.one_pass():
        before = live.instances(TensorDataset)
    made = TensorDataset(torch.zeros(1))
    with live.one_pass():
        after = live.instances(TensorDataset)
    assert not any(d is made for d in before)
    assert any(d is made for d in after)
