"""Fine-tuning a timm model, audited before it trains: ConvNeXt-Atto on scikit-learn's digits.

The model's data config comes from timm (``resolve_model_data_config``: mean, std, interpolation,
crop), the input pipeline is timm's own ``create_transform``, the head is replaced through timm's
``reset_classifier``, and the backbone learns with layer-wise LR decay. Weights cannot be downloaded
here, so the model is built with ``pretrained=False`` (real code: ``pretrained=True``) and the
audit skips the check that would say so; the inputs are 32 px instead of 224 to run in seconds.

    python examples/timm_fine_tuning.py [--model convnext_atto] [--epochs 2]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from timm.data import create_transform, resolve_model_data_config

import tlaudit

NUM_CLASSES = 10


def predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(images)


def digits_as_images(count: int) -> tuple[list[Image.Image], torch.Tensor]:
    """The first ``count`` digits as RGB PIL images (what a timm dataset yields), and their labels."""
    digits = load_digits()
    pixels = (digits.images[:count] * (255 / 16)).astype(np.uint8)
    return [Image.fromarray(p).convert("RGB") for p in pixels], torch.tensor(digits.target[:count])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnext_atto", help="a timm model name (default: convnext_atto)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs over 256 digits (default: 2)")
    parser.add_argument("--size", type=int, default=32, help="input size in pixels (default: 32)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    model = timm.create_model(args.model, pretrained=False)  # real code: pretrained=True
    tlaudit.replace_head(model, NUM_CLASSES)  # timm's reset_classifier under the hood
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4, head_lr=1e-3, layer_decay=0.75, weight_decay=0.05))
    config = resolve_model_data_config(model)
    config["input_size"] = (3, args.size, args.size)  # small inputs for speed; the mean/std stay the model's
    train_transform = create_transform(**config, is_training=True)
    eval_transform = create_transform(**config)

    images, labels = digits_as_images(256)
    eval_inputs = torch.stack([eval_transform(img) for img in images])

    report = tlaudit.audit(
        tlaudit.TransferSetup(
            model=model,
            num_classes=NUM_CLASSES,
            sample=eval_inputs[:16],
            targets=labels[:16],
            optimizer=optimizer,
            weights=model,  # its pretrained_cfg, resolved as timm resolves it
            transform=train_transform,
            strategy="fine_tuning",
            predict=predict,
        ),
        ignore=["pretrained-not-loaded"],  # built with pretrained=False: there is nothing to load here
    )
    print(report.summary())
    report.raise_for_errors()
    norm = tlaudit.expected_normalization(model)
    print(f"expected input: mean {list(norm.mean)}, std {list(norm.std)}, {norm.interpolation}, crop_pct {norm.crop_pct}")
    print(
        f"param groups: {len(optimizer.param_groups)}, LRs {min(g['lr'] for g in optimizer.param_groups):.2g}..{max(g['lr'] for g in optimizer.param_groups):.2g}"
    )

    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images))
        for batch in order.split(32):
            x = torch.stack([train_transform(images[i]) for i in batch])
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), labels[batch])
            loss.backward()
            optimizer.step()
        accuracy = (predict(model, eval_inputs).argmax(1) == labels).float().mean().item()
        print(f"epoch {epoch}: loss {loss.item():.3f}, train accuracy {accuracy:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
