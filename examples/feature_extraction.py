"""Feature extraction on real data (scikit-learn's digits), audited before it trains.

The backbone is frozen with its BatchNorm statistics, the new head trains with a higher LR than
the (frozen) backbone would get, and the audit confirms it before the first step. Weights cannot
be downloaded here, so the backbone is randomly initialised: the point is the wiring, not accuracy.

    python examples/feature_extraction.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from sklearn.datasets import load_digits

import tlaudit

torch.manual_seed(0)
digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32)[:256] / 16.0  # 8x8 grey, 0..1
labels = torch.tensor(digits.target)[:256]
weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
norm = tlaudit.expected_normalization(weights)
mean, std = torch.tensor(norm.mean)[:, None, None], torch.tensor(norm.std)[:, None, None]
inputs = (F.interpolate(images[:, None], size=32, mode="bilinear").repeat(1, 3, 1, 1) - mean) / std

model = torchvision.models.resnet18()  # real code: resnet18(weights=weights)
tlaudit.replace_head(model, 10)
tlaudit.freeze_backbone(model, batchnorm="frozen")
optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4, head_lr=1e-2), lr=1e-2)


def predict(model: torch.nn.Module, sample: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(sample)


report = tlaudit.audit(
    tlaudit.TransferSetup(
        model=model,
        num_classes=10,
        sample=inputs[:16],
        targets=labels[:16],
        optimizer=optimizer,
        strategy="feature_extraction",
        predict=predict,
    )
)
print(report.summary())
report.raise_for_errors()

for epoch in range(3):
    model.train()
    for start in range(0, len(inputs), 64):
        x, y = inputs[start : start + 64], labels[start : start + 64]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    accuracy = (predict(model, inputs).argmax(1) == labels).float().mean().item()
    print(f"epoch {epoch}: loss {loss.item():.3f}, train accuracy {accuracy:.2f}")
