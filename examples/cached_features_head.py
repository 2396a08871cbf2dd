"""Extract features once, train the head on the cache: against recomputing the frozen backbone every epoch.

A frozen backbone gives the same features for an image in every epoch, so a head-only training loop
that runs the backbone on every batch of every epoch pays for the same forward passes again and
again. This script trains the same linear head (same initialization, same batches, same optimizer)
two ways on scikit-learn's digits (upsampled to 32 px RGB) and prints time and accuracy side by side:

* recompute: the usual loop, ``with torch.no_grad(): features = backbone(x)`` inside every step;
* cached: ``tlaudit.FeatureExtractor(backbone).extract(images)`` once, then epochs over the tensor.

Weights cannot be downloaded here, so the backbone is ResNet-18's seeded random initialization (its
features are still good enough for a linear probe on digits); real code builds it with
``weights=ResNet18_Weights.IMAGENET1K_V1`` or extracts a folder with ``tlaudit extract``.

    python examples/cached_features_head.py [--epochs 5] [--train 512] [--engine auto]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from sklearn.datasets import load_digits

import tlaudit

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ResNet18_Weights.IMAGENET1K_V1's


def digits_as_images(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` digits as uint8 ``(N, 3, 32, 32)`` pixels and their labels (shuffled with a fixed seed)."""
    digits = load_digits()
    order = torch.randperm(len(digits.images), generator=torch.Generator().manual_seed(0))[:count]
    grey = torch.tensor(digits.images, dtype=torch.float32)[order, None] / 16.0
    pixels = (F.interpolate(grey, size=32, mode="bilinear") * 255).round().clamp(0, 255).to(torch.uint8)
    return pixels.repeat(1, 3, 1, 1), torch.tensor(digits.target)[order]


def normalized(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def train_head(batches_per_epoch, epochs: int, features_of, width: int) -> torch.nn.Linear:
    """The same head, initialization, batches and optimizer for both ways; ``features_of(batch)`` differs."""
    torch.manual_seed(1)
    head = torch.nn.Linear(width, 10)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(epochs):
        for batch, labels in batches_per_epoch():
            loss = F.cross_entropy(head(features_of(batch)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train", type=int, default=512, help="training images (the next 256 are the test set)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--engine", default="eager", help="the extractor's engine (auto measures the installed ones)")
    args = parser.parse_args(argv)

    pixels, labels = digits_as_images(args.train + 256)
    train_x, train_y, test_x, test_y = pixels[: args.train], labels[: args.train], pixels[args.train :], labels[args.train :]
    torch.manual_seed(0)
    backbone = torchvision.models.resnet18()  # real code: resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
    tlaudit.remove_head(backbone)
    backbone.eval()
    width = 512

    def batches(x, y):
        def epoch():
            for start in range(0, len(x), args.batch_size):
                yield x[start : start + args.batch_size], y[start : start + args.batch_size]

        return epoch

    def recompute(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return backbone(normalized(batch))

    started = time.perf_counter()
    head = train_head(batches(train_x, train_y), args.epochs, recompute, width)
    with torch.no_grad():
        plain_acc = (head(recompute(test_x)).argmax(1) == test_y).float().mean().item()
    plain_s = time.perf_counter() - started

    started = time.perf_counter()
    fx = tlaudit.FeatureExtractor(backbone, weights={"mean": list(MEAN), "std": list(STD)}, engine=args.engine)
    cached = fx.extract(train_x, batch_size=args.batch_size).features  # once: uint8 in, normalized on the fly
    extract_s = time.perf_counter() - started
    feature_batches = batches(cached, train_y)  # the same slices as the images: row i is image i
    head = train_head(feature_batches, args.epochs, lambda features: features, width)
    with torch.no_grad():
        cached_acc = (head(fx(test_x)).argmax(1) == test_y).float().mean().item()
    cached_s = time.perf_counter() - started

    print(f"digits: {args.train} training and 256 test images at 32 px, {args.epochs} epochs, ResNet-18 backbone frozen")
    print(f"{'way':<38}{'time s':>8}{'test accuracy':>15}")
    print(f"{'recompute the backbone every epoch':<38}{plain_s:>8.1f}{plain_acc:>15.3f}")
    print(f"{'extract once, train on cached features':<38}{cached_s:>8.1f}{cached_acc:>15.3f}")
    print(
        f"cached: {plain_s / cached_s:.1f}x faster (extraction {extract_s:.1f} s, engine {fx.config.engine}, "
        f"{fx.config.describe()}); accuracy difference {cached_acc - plain_acc:+.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
