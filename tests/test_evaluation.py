"""Train and eval modes (tlaudit/evaluation.py): inference() and the training flags it puts back."""

from __future__ import annotations

import pytest
import torch

from tests.support.helpers import TinyCNN
from tlaudit import inference


def test_inference_sets_eval_and_inference_mode_and_restores_mixed_flags():
    model = TinyCNN().train()
    model.layer1.eval()
    model.stem[1].eval()
    before = [m.training for m in model.modules()]
    assert len(set(before)) == 2
    with inference(model) as inner:
        assert inner is model
        assert not any(m.training for m in model.modules())
        assert torch.is_inference_mode_enabled()
        out = model(torch.randn(2, 3, 8, 8))
    assert out.is_inference() and not out.requires_grad
    assert [m.training for m in model.modules()] == before
    assert not torch.is_inference_mode_enabled()


def test_inference_does_not_update_batchnorm_stats():
    model = TinyCNN().train()
    before = model.stem[1].running_mean.clone()
    with inference(model):
        model(torch.randn(2, 3, 8, 8))
    assert torch.equal(model.stem[1].running_mean, before)


def test_inference_restores_flags_after_an_exception():
    model = TinyCNN().train()
    model.layer2.eval()
    before = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError, match="boom"):
        with inference(model):
            raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == before
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()


def test_inference_mode_false_gives_no_grad():
    model = TinyCNN().train()
    with inference(model, inference_mode=False):
        assert not torch.is_inference_mode_enabled()
        assert not torch.is_grad_enabled()
        assert not model.training
        out = model(torch.randn(2, 3, 8, 8))
    assert not out.is_inference() and not out.requires_grad
    assert model.training and torch.is_grad_enabled()
