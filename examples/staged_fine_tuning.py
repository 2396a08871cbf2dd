"""Staged fine-tuning: head first, then `layer4`, then `layer3`, each with its own LR, resumable.

python examples/staged_fine_tuning.py
"""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F
import torchvision

import tlaudit

torch.manual_seed(0)


def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, tlaudit.StagedUnfreezer]:
    model = tlaudit.replace_head(torchvision.models.resnet18(), 4)
    tlaudit.freeze_backbone(model, batchnorm="frozen")
    optimizer = torch.optim.SGD(tlaudit.param_groups(model, 1e-3, head_lr=1e-2), lr=1e-2, momentum=0.9)
    schedule = {1: {"patterns": "layer4", "lr": 1e-3}, 2: {"patterns": "layer3", "lr": 3e-4}}
    return model, optimizer, tlaudit.StagedUnfreezer(model, optimizer, schedule)


model, optimizer, unfreezer = build()
x, y = torch.randn(8, 3, 64, 64), torch.randint(4, (8,))
for epoch in range(3):
    unfrozen = unfreezer.step(epoch)
    model.train()
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    report = tlaudit.trainable_report(model, optimizer)
    lrs = [group["lr"] for group in optimizer.param_groups]
    print(f"epoch {epoch}: unfroze {len(unfrozen)} parameters, {report.trainable_params:,} trainable, group LRs {lrs}")

checkpoint = io.BytesIO()
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "unfreezer": unfreezer.state_dict()}, checkpoint)
checkpoint.seek(0)
state = torch.load(checkpoint)

resumed_model, resumed_optimizer, resumed_unfreezer = build()
resumed_model.load_state_dict(state["model"])
resumed_unfreezer.load_state_dict(state["unfreezer"])  # re-applies the stages: same groups again
resumed_optimizer.load_state_dict(state["optimizer"])
same = all(a.requires_grad == b.requires_grad for a, b in zip(model.parameters(), resumed_model.parameters()))
print(f"resumed: {len(resumed_optimizer.param_groups)} groups, requires_grad flags match: {same}")
