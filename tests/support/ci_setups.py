"""Small setup files for the CI-report tests (SARIF, baselines, suppressions, folder audits).

Each is the source of a file whose ``setup()`` returns a TransferSetup over a tiny CNN (a conv, a
BatchNorm, a linear head ``4``) that audits in well under a second. ``write_setups`` writes some of
them into a folder.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["SETUPS", "write_setups"]

TINY = """
import torch
from torch import nn
import tlaudit


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def setup():
    model = tiny()
    tlaudit.freeze(model, {frozen})
    optimizer = torch.optim.SGD(model.parameters(), lr={lr})
    sample = torch.randn(2, 3, 8, 8)
    return tlaudit.TransferSetup(model=model, num_classes=3, sample=sample, targets=torch.tensor([0, 2]),
                                 optimizer=optimizer, strategy="fine_tuning", head="4"{extra})
"""

RESNET_BUGGY = """
import torch
import torchvision
from torchvision.transforms import v2

import tlaudit


def predict(model, sample):
    return model(sample)  # no eval(), no no_grad()


def setup():
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.fc = torch.nn.Linear(512, 5)
    for name, param in model.named_parameters():
        if not name.startswith("fc"):
            param.requires_grad == False
    transform = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])
    sample = transform(torch.rand(2, 3, 64, 64))
    return tlaudit.TransferSetup(model=model, num_classes=5, sample=sample, targets=torch.tensor([0, 4]),
                                 optimizer=optimizer, weights="ResNet18_Weights.IMAGENET1K_V1",
                                 transform=transform, strategy="feature_extraction", predict=predict)
"""

STALE = TINY.replace(
    "    tlaudit.freeze(model, {frozen})\n",
    "    model(torch.randn(2, 3, 8, 8)).sum().backward()  # gradients left from an earlier step\n    tlaudit.freeze(model, {frozen})\n",
)
"""TINY frozen after a backward pass: the frozen parameters keep a stale ``.grad`` the optimizer would step."""

SETUPS: dict[str, str] = {
    # no findings
    "clean": TINY.replace("    tlaudit.freeze(model, {frozen})\n", "").format(lr="0.001", extra=""),
    # the frozen conv sits in the optimizer with a stale .grad: optimizer-frozen (warning)
    "warn": STALE.format(frozen="'0'", lr="0.001", extra=""),
    # a pretrained-layer LR of 0.1 > the SGD default lr_max 0.05: lr-threshold (error)
    "high_lr": TINY.replace("    tlaudit.freeze(model, {frozen})\n", "").format(lr="0.1", extra=""),
    # conv and BatchNorm frozen with stale .grad, BatchNorm in train mode: frozen-bn-train and optimizer-frozen (warnings)
    "bn": STALE.format(frozen="'0', '1'", lr="0.001", extra=""),
    # the same, with frozen-bn-train suppressed on purpose
    "bn_ignored": STALE.format(
        frozen="'0', '1'", lr="0.001", extra=', ignore={"frozen-bn-train": "AdaBN: statistics adapt to the new domain"}'
    ),
    # a new head with 5 outputs for 3 classes: head-size (error)
    "wrong_head": TINY.replace("    tlaudit.freeze(model, {frozen})\n", "    model[4] = nn.Linear(4, 5)\n").format(lr="0.001", extra=""),
    # a real ResNet-18 with the usual mistakes (the bundled buggy example's, on a 64x64 sample)
    "resnet_buggy": RESNET_BUGGY,
    "raises": "def setup():\n    raise RuntimeError('no GPU here')\n",
}


def write_setups(folder: Path, *kinds: str, names: dict[str, str] | None = None) -> list[Path]:
    """Write the setups ``kinds`` into ``folder`` as ``<kind>.py`` (or ``names[kind]``); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in kinds:
        path = folder / (names or {}).get(kind, f"{kind}.py")
        path.write_text(textwrap.dedent(SETUPS[kind]), encoding="utf-8")
        paths.append(path)
    return paths
