"""Does transfer learning pay off? Measured on scikit-learn's 8x8 digits, four ways, audited first.

The source task is one half of the digits; the target task is the *other* half in a shifted
domain: with Gaussian noise (std 0.3 on 0..1 pixels). Same ten classes and the same stroke shapes,
so what a CNN learns on the source (strokes, loops, their arrangement) is what the target needs,
while the noise makes the target hard to learn from a few labels alone.
``--shift rotated`` and ``--shift inverted`` change what the first layers see, and
``--source disjoint`` pretrains on digits 0-4 and targets 5-9: shapes the tiny CNN never saw. Those
transfer worse; the README shows by how much.

A small CNN is pretrained on the source and saved; then the target is learned from ``k`` labels per
class (1, 3, 10) four ways:

* ``scratch``: the same CNN, randomly initialised, every layer trained;
* ``feature extraction``: the pretrained backbone frozen with its BatchNorm statistics, a new head;
* ``fine-tuning``: every layer trains, the backbone at a 10x lower LR than the new head;
* ``staged unfreezing``: the head first, then ``block3``, ``block2``, ``block1`` at epochs 2, 4, 6.

Each setup is audited with ``tlaudit.audit`` before it trains, and each has a broken twin with a
mistake from ``examples/common_mistakes/`` (the audit must catch it) to show what the mistake
costs in accuracy. Held-out accuracy is measured on target images never used for training, after
a short and a long budget, with the mean and spread over seeds. The hyperparameters were fixed
before measuring (Adam, batch 16, LR 3e-3 for new layers, 3e-4 for pretrained ones) and are the
same for every method.

    python examples/digits_transfer.py                  # one to two minutes on a CPU
    python examples/digits_transfer.py --plot curves.png  # needs matplotlib (pip install tlaudit[plot])
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tabulate import tabulate
from torch import nn
from torchvision.transforms import v2

import tlaudit

NUM_CLASSES = 10
BATCH = 16
NEW_LR = 3e-3  # every layer of a model trained from scratch, and every new head
PRETRAINED_LR = 3e-4  # pretrained layers that train
STAGES = {2: "block3", 4: "block2", 6: "block1"}  # staged unfreezing: epoch -> block
METHODS = ("scratch", "feature extraction", "fine-tuning", "staged unfreezing")
MISTAKES = {  # method -> the gallery mistake its broken twin makes, and the check that must catch it
    "scratch": ("no eval() at inference", "eval-mode"),
    "feature extraction": ("frozen BatchNorm drifting", "frozen-bn-train"),
    "fine-tuning": ("LR too high on pretrained layers", "lr-threshold"),
    "staged unfreezing": ("optimizer built before the head swap", "optimizer-missing"),
}


# -- data ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """Images (N, 1, 8, 8) in 0..1 and labels, before normalization."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class Data:
    """The source task, the target's labelled pool and its held-out test set, and the input transform."""

    source: Domain
    target_pool: Domain
    target_test: Domain
    transform: v2.Normalize
    classes: tuple[int, ...]


SHIFTS = ("noisy", "rotated", "inverted")


def shift(images: torch.Tensor, generator: torch.Generator, how: str = "noisy") -> torch.Tensor:
    """The target domain, on 0..1 pixels.

    ``noisy``: Gaussian noise (std 0.3), clipped to 0..1. ``rotated``: turned 90 degrees, plus noise
    of std 0.1. ``inverted``: contrast inverted, plus noise of std 0.1.
    """
    if how == "noisy":
        out = images + 0.3 * torch.randn(images.shape, generator=generator)
    elif how == "rotated":
        out = images.rot90(1, dims=(2, 3)) + 0.1 * torch.randn(images.shape, generator=generator)
    elif how == "inverted":
        out = 1.0 - images + 0.1 * torch.randn(images.shape, generator=generator)
    else:
        raise ValueError(f"unknown shift: {how!r} (--shift); expected one of {', '.join(SHIFTS)}")
    return out.clamp(0.0, 1.0)


def load_data(source: str = "shifted", how: str = "noisy") -> Data:
    """Split the 1,797 digits in two fixed halves: the source task and the target task.

    ``source="shifted"``: source = half A (all classes, as scanned), target = half B shifted.
    ``source="disjoint"``: source = digits 0-4 of half A, target = digits 5-9 of half B, not shifted.
    Half of the target half is the labelled pool the k-shot sets are drawn from, the other half is
    the held-out test set.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=g)
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2 :]
    if source == "shifted":
        src = Domain(images[half_a], labels[half_a])
        tgt_images, tgt_labels, classes = shift(images[half_b], g, how), labels[half_b], tuple(range(10))
    elif source == "disjoint":
        a = half_a[labels[half_a] < 5]
        b = half_b[labels[half_b] >= 5]
        src = Domain(images[a], labels[a])
        tgt_images, tgt_labels, classes = images[b], labels[b] - 5, tuple(range(5))
    else:
        raise ValueError(f"unknown source task: {source!r} (--source); expected 'shifted' or 'disjoint'")
    pool = torch.arange(len(tgt_labels)) % 2 == 0
    mean, std = float(src.images.mean()), float(src.images.std())
    return Data(
        source=src,
        target_pool=Domain(tgt_images[pool], tgt_labels[pool]),
        target_test=Domain(tgt_images[~pool], tgt_labels[~pool]),
        transform=v2.Normalize(mean=[mean], std=[std]),
        classes=classes,
    )


def k_shot(pool: Domain, k: int, classes: Sequence[int], seed: int) -> Domain:
    """``k`` labelled images per class, drawn from the pool with ``seed``."""
    g = torch.Generator().manual_seed(1000 + seed)
    picked = []
    for c in classes:
        members = (pool.labels == c).nonzero().flatten()
        picked.append(members[torch.randperm(len(members), generator=g)[:k]])
    index = torch.cat(picked)
    return Domain(pool.images[index], pool.labels[index])


# -- the model -------------------------------------------------------------------------------------


def block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """Three conv blocks (8x8 -> 4x4 -> 2x2), global average pooling, a linear head ``fc``."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.block1 = block(1, 16, pool=True)
        self.block2 = block(16, 32, pool=True)
        self.block3 = block(32, 64, pool=False)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def pretrain(data: Data, path: Path, *, epochs: int = 15) -> float:
    """Train a DigitsCNN on the source task, save its state_dict to ``path``, return its source accuracy."""
    torch.manual_seed(0)
    num_classes = int(data.source.labels.max()) + 1
    model = DigitsCNN(num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=NEW_LR)
    x, y = data.transform(data.source.images), data.source.labels
    train, held = torch.arange(len(y)) % 5 != 0, torch.arange(len(y)) % 5 == 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(int(train.sum())).split(32):
            optimizer.zero_grad()
            F.cross_entropy(model(x[train][idx]), y[train][idx]).backward()
            optimizer.step()
    torch.save(model.state_dict(), path)
    with tlaudit.inference(model):
        return (model(x[held]).argmax(1) == y[held]).float().mean().item()


# -- the four ways, and their broken twins ---------------------------------------------------------


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(images)


def predict_in_train_mode(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # the mistake: no model.eval(); BatchNorm uses the batch's statistics
        return model(images)


def train_step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """One optimizer step on a batch."""
    model.train()
    optimizer.zero_grad()
    F.cross_entropy(model(images), targets).backward()
    optimizer.step()


def train_step_frozen_bn_eval(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """One optimizer step, with the BatchNorm layers of still-frozen blocks in eval mode (their statistics kept)."""
    model.train()
    tlaudit.eval_frozen_batchnorm(model)
    optimizer.zero_grad()
    F.cross_entropy(model(images), targets).backward()
    optimizer.step()


@dataclass
class Run:
    """One method ready to train: what the audit sees (its train_step is the loop's), and what runs each epoch."""

    setup: tlaudit.TransferSetup
    on_epoch: Callable[[int], None] = lambda epoch: None


def pretrained(checkpoint: Path, source_classes: int) -> tuple[DigitsCNN, object]:
    """The source model loaded from ``checkpoint``, and what ``load_state_dict`` returned (for the audit)."""
    model = DigitsCNN(source_classes)
    result = model.load_state_dict(torch.load(checkpoint, weights_only=True))  # strict: every key must fit
    return model, result


def build(method: str, checkpoint: Path, data: Data, sample: torch.Tensor, targets: torch.Tensor, *, broken: bool) -> Run:
    """The model, optimizer and audit setup of ``method``; ``broken`` makes the gallery mistake of MISTAKES."""
    n = len(data.classes)
    source_classes = int(data.source.labels.max()) + 1
    weights = {"mean": list(data.transform.mean), "std": list(data.transform.std)}
    common = {
        "num_classes": n,
        "sample": sample,
        "targets": targets,
        "transform": data.transform,
        "predict": predict,
        "train_step": train_step,
    }
    if method == "scratch":
        model = DigitsCNN(n)
        optimizer = torch.optim.Adam(model.parameters(), lr=NEW_LR)
        # nothing here is pretrained, so a from-scratch LR is right: raise lr-threshold's ceiling to it
        setup = tlaudit.TransferSetup(model=model, optimizer=optimizer, lr_max=NEW_LR, **common)
        if broken:
            setup = setup.replace(predict=predict_in_train_mode)
        return Run(setup)
    model, loaded = pretrained(checkpoint, source_classes)
    common.update(weights=weights, load_result=loaded)
    if method == "feature extraction":
        tlaudit.replace_head(model, n)
        tlaudit.freeze_backbone(model, batchnorm="keep" if broken else "frozen")  # broken: statistics drift
        optimizer = torch.optim.Adam(tlaudit.param_groups(model, PRETRAINED_LR, head_lr=NEW_LR))
        setup = tlaudit.TransferSetup(model=model, optimizer=optimizer, strategy="feature_extraction", **common)
        return Run(setup)
    if method == "fine-tuning":
        tlaudit.replace_head(model, n)
        if broken:  # one high LR (3e-2) for every layer, pretrained ones included
            optimizer = torch.optim.Adam(model.parameters(), lr=10 * NEW_LR)
        else:
            optimizer = torch.optim.Adam(tlaudit.param_groups(model, PRETRAINED_LR, head_lr=NEW_LR))
        return Run(tlaudit.TransferSetup(model=model, optimizer=optimizer, strategy="fine_tuning", **common))
    if method == "staged unfreezing":
        if broken:  # the optimizer is built before the head swap: it holds the old head
            tlaudit.freeze_backbone(model)
            optimizer = torch.optim.Adam(tlaudit.param_groups(model, PRETRAINED_LR, head_lr=NEW_LR))
            tlaudit.replace_head(model, n)
        else:
            tlaudit.replace_head(model, n)
            tlaudit.freeze_backbone(model)
            optimizer = torch.optim.Adam(tlaudit.param_groups(model, PRETRAINED_LR, head_lr=NEW_LR))
        unfreezer = tlaudit.StagedUnfreezer(model, optimizer, {e: {"patterns": b, "lr": PRETRAINED_LR} for e, b in STAGES.items()})
        common["train_step"] = train_step_frozen_bn_eval
        setup = tlaudit.TransferSetup(model=model, optimizer=optimizer, frozen=list(STAGES.values()), **common)
        return Run(setup, on_epoch=unfreezer.step)
    raise ValueError(f"unknown method: {method!r}; expected one of {', '.join(METHODS)}")


# -- training and measuring ------------------------------------------------------------------------


@dataclass
class Result:
    """Held-out accuracy after every epoch of one run, and its wall time."""

    method: str
    k: int
    seed: int
    broken: bool
    curve: list[float] = field(default_factory=list)
    seconds: float = 0.0
    audit_flags: tuple[str, ...] = ()


def accuracy(run: Run, test_x: torch.Tensor, test_y: torch.Tensor, batch: int = 64) -> float:
    """Held-out accuracy, predicted in batches of ``batch`` with the setup's own ``predict``."""
    correct = 0
    for xs, ys in zip(test_x.split(batch), test_y.split(batch)):
        correct += int((run.setup.predict(run.setup.model, xs).argmax(1) == ys).sum())
    return correct / len(test_y)


def train(method: str, k: int, seed: int, epochs: int, data: Data, checkpoint: Path, *, broken: bool = False) -> Result:
    """Audit, then train ``method`` on ``k`` labels per class for ``epochs``, measuring after each epoch."""
    labelled = k_shot(data.target_pool, k, data.classes, seed)
    x, y = data.transform(labelled.images), labelled.labels
    test_x, test_y = data.transform(data.target_test.images), data.target_test.labels
    torch.manual_seed(seed)
    run = build(method, checkpoint, data, x[:BATCH], y[:BATCH], broken=broken)
    report = tlaudit.audit(run.setup)
    result = Result(method, k, seed, broken, audit_flags=tuple(sorted({f.check for f in report.at_or_above("warning")})))
    model, optimizer, step = run.setup.model, run.setup.optimizer, run.setup.train_step
    started = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        run.on_epoch(epoch)
        for idx in torch.randperm(len(y), generator=g).split(BATCH):
            step(model, x[idx], y[idx], optimizer)
        result.curve.append(accuracy(run, test_x, test_y))
    result.seconds = time.perf_counter() - started
    return result


def experiment(
    *,
    shots: Sequence[int] = (1, 3, 10),
    seeds: Sequence[int] = (0, 1, 2),
    short: int = 10,
    long: int = 60,
    methods: Sequence[str] = METHODS,
    broken_shots: Sequence[int] = (10,),
    source: str = "shifted",
    how: str = "noisy",
    workdir: Path | None = None,
) -> tuple[float, list[Result]]:
    """Pretrain once, then run every method, label budget and seed (broken twins at ``broken_shots``).

    Returns the source accuracy of the pretrained model and every run's result.
    """
    if not 0 < short <= long:
        raise ValueError(f"need 0 < short <= long epochs: short={short}, long={long} (--short/--long)")
    data = load_data(source, how)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(workdir or tmp) / "digits_source.pt"
        source_accuracy = pretrain(data, checkpoint)
        results = []
        for method in methods:
            for k in shots:
                for seed in seeds:
                    results.append(train(method, k, seed, long, data, checkpoint))
                    if k in broken_shots:
                        results.append(train(method, k, seed, long, data, checkpoint, broken=True))
    return source_accuracy, results


def _mean_spread(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {spread:.2f}"


def epochs_to(curve: Sequence[float], target: float) -> int | None:
    """The first epoch (1-based) at which the held-out accuracy reaches ``target``, or None."""
    return next((i + 1 for i, acc in enumerate(curve) if acc >= target), None)


def table(results: Sequence[Result], *, short: int, long: int, target: float) -> str:
    """One row per method, label budget and variant: mean ± standard deviation over seeds."""
    rows = []
    keys = list(dict.fromkeys((r.method, r.k, r.broken) for r in results))
    for method, k, broken in keys:
        group = [r for r in results if (r.method, r.k, r.broken) == (method, k, broken)]
        reached = [e for e in (epochs_to(r.curve, target) for r in group) if e is not None]
        if reached:
            epochs = f"{statistics.median(reached):g} ({len(reached)}/{len(group)} seeds)"
        else:
            epochs = f"never (0/{len(group)})"
        name = f"{method}, broken: {MISTAKES[method][0]}" if broken else method
        caught = sorted({c for r in group for c in r.audit_flags})
        rows.append(
            [
                name,
                k,
                _mean_spread([r.curve[short - 1] for r in group]),
                _mean_spread([r.curve[long - 1] for r in group]),
                epochs,
                f"{statistics.fmean(r.seconds for r in group):.2f}",
                ", ".join(caught) or "clean",
            ]
        )
    headers = ["method", "labels/class", f"acc @{short} ep", f"acc @{long} ep", f"epochs to {target:.2f}", "train s", "audit findings"]
    return tabulate(rows, headers=headers, colalign=("left", "right", "right", "right", "right", "right", "left"))


def plot(results: Sequence[Result], path: Path, *, long: int) -> None:
    """Held-out accuracy against epochs (one panel per label budget) and against labels per class."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise SystemExit("--plot needs matplotlib: pip install 'tlaudit[plot]' (or pip install matplotlib)") from err
    correct = [r for r in results if not r.broken]
    shots = sorted({r.k for r in correct})
    methods = list(dict.fromkeys(r.method for r in correct))
    fig, axes = plt.subplots(1, len(shots) + 1, figsize=(4 * (len(shots) + 1), 3.6), squeeze=False)
    for ax, k in zip(axes[0], shots):
        for method in methods:
            curves = torch.tensor([r.curve for r in correct if (r.method, r.k) == (method, k)])
            ax.plot(range(1, curves.shape[1] + 1), curves.mean(0), label=method)
            ax.fill_between(range(1, curves.shape[1] + 1), curves.min(0).values, curves.max(0).values, alpha=0.15)
        ax.set(title=f"{k} label(s) per class", xlabel="epoch", ylabel="held-out accuracy", ylim=(0, 1))
    ax = axes[0][-1]
    for method in methods:
        means = [statistics.fmean(r.curve[long - 1] for r in correct if (r.method, r.k) == (method, k)) for k in shots]
        ax.plot(shots, means, marker="o", label=method)
    ax.set(title=f"after {long} epochs", xlabel="labels per class", ylabel="held-out accuracy", ylim=(0, 1), xscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 3, 10], help="labels per class (default: 1 3 10)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method and label budget (default: 3)")
    parser.add_argument("--short", type=int, default=10, help="the short budget in epochs (default: 10)")
    parser.add_argument("--long", type=int, default=60, help="the long budget in epochs (default: 60)")
    parser.add_argument("--target", type=float, default=0.8, help="the accuracy whose epochs-to-reach is shown (default: 0.8)")
    parser.add_argument(
        "--broken-shots", type=int, nargs="*", default=[10], help="label budgets that also run the broken twins (default: 10)"
    )
    parser.add_argument("--source", choices=["shifted", "disjoint"], default="shifted", help="source/target pair (default: shifted)")
    parser.add_argument("--shift", choices=SHIFTS, default="noisy", help="how the target domain differs (default: noisy)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="draw accuracy vs epochs and vs labels per class (needs matplotlib)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny models: one thread is fastest and keeps the timings comparable
    started = time.perf_counter()
    source_accuracy, results = experiment(
        shots=args.shots,
        seeds=range(args.seeds),
        short=args.short,
        long=args.long,
        broken_shots=args.broken_shots,
        source=args.source,
        how=args.shift,
    )
    domain = "digits 0-4 -> 5-9" if args.source == "disjoint" else f"half A -> half B, {args.shift}"
    print(f"source -> target: {domain}; pretrained CNN, held-out source accuracy {source_accuracy:.2f}")
    print(
        f"target: held-out accuracy, mean ± std over {args.seeds} seeds; batch {BATCH}, Adam, LR {NEW_LR:g} new / {PRETRAINED_LR:g} pretrained layers"
    )
    print(table(results, short=args.short, long=args.long, target=args.target))
    missed = [(r.method, MISTAKES[r.method][1]) for r in results if r.broken and MISTAKES[r.method][1] not in r.audit_flags]
    flagged = [(r.method, r.audit_flags) for r in results if not r.broken and r.audit_flags]
    print(f"audit: every broken twin caught by its check: {not missed}; correct setups clean: {not flagged}")
    if args.plot:
        plot(results, args.plot, long=args.long)
        print(f"plot: {args.plot}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0 if not missed and not flagged else 1


if __name__ == "__main__":
    sys.exit(main())
