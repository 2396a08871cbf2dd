"""The loss the watcher replays at the first step is the run's: every loss the step computed on the
model's outputs, auxiliary heads' included, so the gradients of the replay reach what the run's did
(tlaudit/watcher/observe.py records them, tlaudit/watcher/build.py replays their sum)."""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F
import torchvision

import tlaudit


def googlenet_step(aux_weight: float) -> tlaudit.Report:
    """PyTorch's "Finetuning Torchvision Models" tutorial's loss for a model with auxiliary outputs
    (https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html):
    ``loss = loss1 + 0.4 * loss2``, here GoogLeNet's two auxiliary classifiers."""
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    tlaudit.replace_head(model, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    with tlaudit.watch(stream=io.StringIO(), fail_on=None) as watched:
        model.train()
        outputs = model(x)
        loss = F.cross_entropy(outputs.logits, y)
        if aux_weight:
            loss = loss + aux_weight * (F.cross_entropy(outputs.aux_logits1, y) + F.cross_entropy(outputs.aux_logits2, y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return watched.reports["train"]


def test_auxiliary_losses_are_part_of_the_replayed_step():
    report = googlenet_step(aux_weight=0.4)
    assert report.by_check("trainable-no-grad") == [], report.to_text()


def test_auxiliary_heads_left_out_of_the_loss_receive_no_gradient():
    report = googlenet_step(aux_weight=0.0)
    found = report.by_check("trainable-no-grad")
    assert found and all("aux" in f.subject for f in found), report.to_text()
