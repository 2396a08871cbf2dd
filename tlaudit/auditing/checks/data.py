"""Checks on what goes into the model: normalization, the sample's range, the labels."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from tlaudit._text import count, fmt
from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.rules.labels import label_problem
from tlaudit.auditing.evidence import Evidence, Skip
from tlaudit.auditing.rules.normalization import compare_normalization, expects_transform_input
from tlaudit.normalization import IMAGENET_NORMALIZATION
from tlaudit.auditing.report import Finding, Severity


@register("normalization", "error", "the transform's mean/std differ from the weights' expected ones", needs=("weights",), phase="static", points_to="transform")
def normalization(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Compares the normalization the ``transform`` applies with the mean/std the ``weights`` were
    trained with; also a transform with no normalization, or with two. torchvision v1/v2
    ``Normalize``, preset transforms and nested ``Compose`` are read step by step; a pipeline with a
    step that cannot be read (a ``Lambda``, a function, a custom class, timm's or albumentations'
    transforms) is measured as a whole on constant images of known levels (the message says
    "measured"), and where neither tells, the check is skipped with the reason. Without a
    ``transform`` the check still reads the model's ``transform_input`` flag (torchvision Inception v3
    and GoogLeNet), the input re-normalization inside the model: it is part of this check because it
    decides which normalization the weights see. The weights' builder turns it on
    (``Inception_V3_Weights``, ``GoogLeNet_Weights``) and it must stay on; on, it re-normalizes from
    ImageNet's mean/std, so weights that expect any other normalization must not have it.

    Why:
    Pretrained features assume the input statistics they were trained on. The wrong mean/std (or
    none) shifts every activation; the model still trains, only worse, and nobody notices.

    Why it is silent:
    Any mean and std produce tensors of the right shape and a model that trains; the pretrained
    features just see inputs shifted from what they were trained on, and accuracy is lower with no
    error or warning anywhere.

    Example:
    ``Normalize([0.5] * 3, [0.5] * 3)`` with ``ResNet50_Weights.IMAGENET1K_V2``, which expects
    ``[0.485, 0.456, 0.406]`` / ``[0.229, 0.224, 0.225]``; ``inception_v3(transform_input=False)``
    with ``Inception_V3_Weights.IMAGENET1K_V1`` loaded by hand.

    Fix:
    Use the weights' own preset (``weights.transforms()``) or ``Normalize(mean=..., std=...)`` with
    ``tlaudit.expected_normalization(weights)``; build Inception v3 and GoogLeNet with the weights'
    builder (``inception_v3(weights=...)``) or ``transform_input=True``.

    References:
    - torchvision "Models and pre-trained weights" (``weights.transforms()``), https://pytorch.org/vision/stable/models.html
    - timm ``resolve_model_data_config`` / ``create_transform`` (the model's ``pretrained_cfg`` mean and std), https://huggingface.co/docs/timm/main/en/reference/data
    - ``torchvision.transforms.v2.Normalize``, https://pytorch.org/vision/stable/generated/torchvision.transforms.v2.Normalize.html
    - torchvision ``inception_v3`` / ``googlenet`` builders (``transform_input`` set with weights), https://pytorch.org/vision/stable/models/generated/torchvision.models.inception_v3.html
    """
    expected = ctx.expected
    findings = list(_transform_input_findings(check, ctx))
    if ctx.setup.transform is None:
        if not findings:
            raise Skip("no `transform` given")
        yield from findings
        return
    try:
        found = ctx.found_normalizations
    except Skip:
        if not findings:
            raise
        yield from findings
        return
    yield from findings
    mismatch = compare_normalization(found, expected)
    if mismatch is None:
        return
    measured = [n for n in mismatch.found if n.measured]
    how = f" ({measured[0].source})" if measured else ""
    hint = f"Normalize(mean={fmt(expected.mean)}, std={fmt(expected.std)}), or use weights.transforms()"
    if mismatch.kind == "missing":
        message = (
            f"the transform applies no normalization{how}; the weights expect mean {fmt(expected.mean)}, "
            f"std {fmt(expected.std)}"
        )
    elif mismatch.kind == "double":
        message, hint = f"the transform normalizes {len(mismatch.found)} times (double normalization)", "keep a single Normalize step"
    else:
        actual = mismatch.found[0]
        message = (
            f"the transform normalizes with mean {fmt(actual.mean)}, std {fmt(actual.std)}{how}; "
            f"the weights ({expected.source}) expect mean {fmt(expected.mean)}, std {fmt(expected.std)}"
        )
    yield check.finding(message, subject="transform", hint=hint)


def _transform_input_findings(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """The model's ``transform_input`` flag against the weights (torchvision Inception v3, GoogLeNet)."""
    flag = getattr(ctx.inner, "transform_input", None)
    if not isinstance(flag, bool):
        return
    name = type(ctx.inner).__name__
    weights = ctx.expected.source
    if not flag and expects_transform_input(ctx.setup.weights):
        yield check.finding(
            f"`{name}` has `transform_input=False`, but torchvision builds it with `transform_input=True` for "
            f"{weights}: the weights see input normalized with ImageNet's mean/std instead of the mean/std 0.5 "
            "they were trained on",
            subject="transform_input",
            hint="build the model with transform_input=True (the weights' builder does), "
            "or set model.transform_input = True",
        )
    elif flag and not ctx.expected.matches(IMAGENET_NORMALIZATION):
        yield check.finding(
            f"`{name}` has `transform_input=True`, which re-normalizes input from ImageNet's mean/std, but the "
            f"weights ({weights}) expect mean {fmt(ctx.expected.mean)}, std {fmt(ctx.expected.std)}",
            subject="transform_input",
            hint="build the model with transform_input=False, or declare the weights it was trained with",
        )


@register("input-range", "warning", "the sample looks unnormalized or doubly normalized", needs=("sample",), phase="train", points_to="sample")
def input_range(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Per-channel statistics of the ``sample``: values all in 0..1 or 0..255 (pixels that were never
    normalized), or means and standard deviations far from a normalized input's (around 0 and 1),
    as double normalization produces. NaN or infinite values in the sample are an error.

    Why:
    The transform the audit sees is not always the one that ran: a second ``Normalize`` in the
    dataset, a ``ToTensor`` missing or doubled. The batch itself tells.

    Why it is silent:
    Convolutions accept any float values: a batch of 0..255 pixels or a doubly normalized one runs
    and trains, only with activations far from those the pretrained layers expect.

    Example:
    A batch from ``ToTensor()`` alone: every value in [0, 1], channel means near 0.45.

    Fix:
    Normalize once with the weights' mean/std: ``weights.transforms()``.

    References:
    - torchvision "Models and pre-trained weights" (``weights.transforms()``), https://pytorch.org/vision/stable/models.html
    - ``torchvision.transforms.v2.ToDtype`` (``scale=True``), https://pytorch.org/vision/stable/generated/torchvision.transforms.v2.ToDtype.html
    """
    x = ctx.sample
    if x.is_floating_point():
        finite = torch.isfinite(x.detach())
        if not bool(finite.all()):
            nan, inf = int(torch.isnan(x.detach()).sum()), int((~finite).sum()) - int(torch.isnan(x.detach()).sum())
            yield check.finding(
                f"the sample holds {count(nan, 'NaN value')} and {count(inf, 'infinite value')} "
                f"(of {x.numel()}, shape {tuple(x.shape)}): every loss and gradient they reach is NaN",
                subject="sample",
                hint="look for a division by a zero std, a log of 0, or corrupt images in the data pipeline",
                severity=Severity.ERROR,
            )
            return
    if not x.is_floating_point() or x.ndim < 3 or x.numel() == 0:
        raise Skip(f"the sample is not a float image batch (dtype {x.dtype}, shape {tuple(x.shape)})")
    flat = x.detach().float().transpose(0, 1).reshape(x.shape[1], -1)
    lo, hi = float(flat.min()), float(flat.max())
    means, stds = flat.mean(dim=1).tolist(), flat.std(dim=1).tolist()
    stats = f"range [{lo:.3g}, {hi:.3g}], channel means {fmt(means)}, stds {fmt(stds)}"
    hint = "normalize once with the weights' mean/std (weights.transforms())"
    if lo >= 0 and hi > 2 and hi <= 255:
        yield check.finding(f"the sample looks like 0..255 pixels, not normalized: {stats}", subject="sample", hint=hint)
    elif lo >= 0 and hi <= 1:
        yield check.finding(f"the sample looks like 0..1 pixels, not normalized: {stats}", subject="sample", hint=hint)
    elif any(abs(m) > 1.5 for m in means) or any(s > 3 or s < 0.2 for s in stds):
        yield check.finding(
            f"the sample's statistics are far from a normalized input's (means near 0, stds near 1): {stats}; "
            "doubly normalized?",
            subject="sample",
            hint=hint,
        )


@register("label-range", "error", "a target is outside [0, num_classes)", needs=("num_classes", "targets"), phase="train", points_to="targets")
def label_range(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Integer targets outside ``[0, num_classes)`` (the cross-entropy ignore index -100 is allowed),
    or one-hot/soft targets whose last dimension is not ``num_classes``. With ``num_classes=2``,
    0/1 targets of any dtype, shaped ``(N,)`` or ``(N, 1)``, are a binary classifier's (BCEWithLogitsLoss).

    Why:
    Labels from 1..N instead of 0..N-1 crash on CPU but can fail with an opaque device-side assert
    on GPU, and with a 1000-class head left in place they train silently against the wrong classes.

    Why it is silent:
    On GPU an out-of-range label fails later with a device-side assert that names no label; with a
    head larger than ``num_classes`` it does not fail at all and trains toward a class that does not
    exist.

    Example:
    ``ImageFolder`` classes remapped to start at 1; ``num_classes=10`` with a label 10.

    Fix:
    Map labels to ``0 .. num_classes - 1``, or set ``num_classes`` to the real count.

    References:
    - ``torch.nn.CrossEntropyLoss`` (class indices in [0, C), ``ignore_index``), https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html
    - torchvision ``datasets.ImageFolder`` (``class_to_idx`` starts at 0), https://pytorch.org/vision/stable/generated/torchvision.datasets.ImageFolder.html
    """
    problem = label_problem(ctx.targets, ctx.setup.num_classes)
    if problem is not None:
        yield check.finding(problem.message, subject="targets", hint=problem.hint)
