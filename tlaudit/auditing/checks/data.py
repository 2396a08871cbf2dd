"""Checks on what goes into the model: normalization, the sample's range, the labels."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from tlaudit._text import count, fmt
from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.evidence import Evidence, Skip
from tlaudit.auditing.report import Finding, Severity
from tlaudit.auditing.rules.inputs import describe_sample
from tlaudit.auditing.rules.labels import label_problem
from tlaudit.auditing.rules.normalization import (
    compare_normalization,
    effect_severity,
    expects_transform_input,
    model_normalizations,
    normalization_effect,
)
from tlaudit.auditing.rules.outputs import named_outputs
from tlaudit.normalization import IMAGENET_NORMALIZATION, Normalization

IDENTITY = Normalization((0.0,), (1.0,), source="no normalization")


@register(
    "normalization",
    "error",
    "the transform's mean/std differ from the weights' expected ones",
    needs=("weights",),
    phase="static",
    points_to="transform",
)
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


    Evidence:
    Read, not guessed: a ``Normalize`` step (torchvision v1/v2, timm's pipelines, a weights
    preset) is read whatever augmentations surround it; the model's own normalization
    (``GeneralizedRCNNTransform``'s ``image_mean``/``image_std``) is read inside the model; only a
    pipeline with no readable step is measured on constant images, and a measurement that is not
    consistent (not affine, not repeatable, a non-positive or implausible std) is no reading. The
    severity follows the effect: how far a typical pixel (the weights' mean plus or minus one std)
    moves in the weights' normalized units, ``max_c |m_w - m| / s + |s_w / s - 1|``. Error: an effect of
    0.25 or more (0.5/0.5 or CIFAR statistics on ImageNet weights, no normalization), a double
    normalization, or ``transform_input`` contradicting the weights. Warning: 0.1 to 0.25. Info:
    below 0.1 (a dataset's own statistics a few thousandths off the weights'). Skip: no
    ``transform`` (unless the model's ``transform_input`` speaks), normalization left to a loader on
    the device, or a pipeline that can be neither read nor measured.
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
    assert expected is not None  # needs=("weights",): audit() runs this check only with weights
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
    inside = model_normalizations(ctx.inner)
    mismatch = compare_normalization([*found, *inside], expected)
    if mismatch is None:
        return
    measured = [n for n in mismatch.found if n.measured]
    how = f" ({measured[0].source})" if measured else ""
    hint = f"Normalize(mean={fmt(expected.mean)}, std={fmt(expected.std)}), or use weights.transforms()"
    severity = Severity.ERROR
    if mismatch.kind == "double":
        if inside:
            message = f"the input is normalized {len(mismatch.found)} times (double normalization, once in {inside[0].source})"
        else:
            message = f"the transform normalizes {len(mismatch.found)} times (double normalization)"
        hint = "drop Normalize from the transform: the model normalizes inside" if inside else "keep a single Normalize step"
    else:
        actual = mismatch.found[0] if mismatch.kind == "different" else IDENTITY
        effect = normalization_effect(actual, expected)
        severity = Severity(effect_severity(effect))
        moved = f"a typical pixel moves by {effect:.2f} of the weights' normalized units"
        if mismatch.kind == "missing":
            message = (
                f"the transform applies no normalization{how}; the weights expect mean {fmt(expected.mean)}, "
                f"std {fmt(expected.std)} ({moved})"
            )
        else:
            message = (
                f"the transform normalizes with mean {fmt(actual.mean)}, std {fmt(actual.std)}{how}; "
                f"the weights ({expected.source}) expect mean {fmt(expected.mean)}, std {fmt(expected.std)} ({moved})"
            )
    yield check.finding(message, subject="transform", hint=hint, severity=severity)


def _transform_input_findings(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """The model's ``transform_input`` flag against the weights (torchvision Inception v3, GoogLeNet)."""
    flag = getattr(ctx.inner, "transform_input", None)
    if not isinstance(flag, bool):
        return
    name = type(ctx.inner).__name__
    expected = ctx.expected
    assert expected is not None  # called by the normalization check, which needs weights
    weights = expected.source
    if not flag and expects_transform_input(ctx.setup.weights):
        yield check.finding(
            f"`{name}` has `transform_input=False`, but torchvision builds it with `transform_input=True` for "
            f"{weights}: the weights see input normalized with ImageNet's mean/std instead of the mean/std 0.5 "
            "they were trained on",
            subject="transform_input",
            hint="build the model with transform_input=True (the weights' builder does), or set model.transform_input = True",
        )
    elif flag and not expected.matches(IMAGENET_NORMALIZATION):
        yield check.finding(
            f"`{name}` has `transform_input=True`, which re-normalizes input from ImageNet's mean/std, but the "
            f"weights ({weights}) expect mean {fmt(expected.mean)}, std {fmt(expected.std)}",
            subject="transform_input",
            hint="build the model with transform_input=False, or declare the weights it was trained with",
        )


@register(
    "input-range", "warning", "the sample looks unnormalized or doubly normalized", needs=("sample",), phase="train", points_to="sample"
)
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


    Evidence:
    Warning: the sample's values look like raw 0..1 or 0..255 pixels, or far from normalized (a
    second normalization); for a model that normalizes inside (detection), 0..1 pixels are right and
    an already normalized or 0..255 sample is the warning. Error: NaN or infinite values in the
    sample. Skip: not a float image batch.
    Example:
    A batch from ``ToTensor()`` alone: every value in [0, 1], channel means near 0.45.

    Fix:
    Normalize once with the weights' mean/std: ``weights.transforms()``.

    References:
    - torchvision "Models and pre-trained weights" (``weights.transforms()``), https://pytorch.org/vision/stable/models.html
    - ``torchvision.transforms.v2.ToDtype`` (``scale=True``), https://pytorch.org/vision/stable/generated/torchvision.transforms.v2.ToDtype.html
    """
    x = ctx.sample
    if not isinstance(x, torch.Tensor):
        raise Skip(f"the sample is not a float image batch (named tensors: {describe_sample(x)})")
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
    inside = model_normalizations(ctx.inner)
    if inside:  # the model normalizes itself (detection models): its input is 0..1 pixels
        if lo < 0:
            yield check.finding(
                f"the sample looks normalized already, but the model normalizes inside ({inside[0].source}): {stats}",
                subject="sample",
                hint="give the model 0..1 pixels (ToDtype(torch.float, scale=True)), without Normalize",
            )
        elif hi > 2 and hi <= 255:
            yield check.finding(
                f"the sample looks like 0..255 pixels; the model ({inside[0].source}) expects 0..1: {stats}",
                subject="sample",
                hint="scale pixels to 0..1: ToDtype(torch.float, scale=True)",
            )
        return
    if lo >= 0 and hi > 2 and hi <= 255:
        yield check.finding(f"the sample looks like 0..255 pixels, not normalized: {stats}", subject="sample", hint=hint)
    elif lo >= 0 and hi <= 1:
        yield check.finding(f"the sample looks like 0..1 pixels, not normalized: {stats}", subject="sample", hint=hint)
    elif any(abs(m) > 1.5 for m in means) or any(s > 3 or s < 0.2 for s in stds):
        yield check.finding(
            f"the sample's statistics are far from a normalized input's (means near 0, stds near 1): {stats}; doubly normalized?",
            subject="sample",
            hint=hint,
        )


@register(
    "label-range", "error", "a target is outside [0, num_classes)", needs=("num_classes", "targets"), phase="train", points_to="targets"
)
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


    Evidence:
    Error: an integer target outside ``[0, num_classes)`` (``-100`` allowed), or soft targets of
    another width. Not an error: per-pixel targets whose only out-of-range values (VOC's 255) the
    user's completed train step fed to a loss that did not raise, so it ignores them (info). Skip:
    no ``num_classes`` or ``targets``.
    Example:
    ``ImageFolder`` classes remapped to start at 1; ``num_classes=10`` with a label 10.

    Fix:
    Map labels to ``0 .. num_classes - 1``, or set ``num_classes`` to the real count.

    References:
    - ``torch.nn.CrossEntropyLoss`` (class indices in [0, C), ``ignore_index``), https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html
    - torchvision ``datasets.ImageFolder`` (``class_to_idx`` starts at 0), https://pytorch.org/vision/stable/generated/torchvision.datasets.ImageFolder.html
    """
    ignored = _ignored_by_the_loss(ctx)
    num_classes = ctx.setup.num_classes
    assert num_classes is not None  # needs=("num_classes", ...): audit() runs this check only with it
    problem = label_problem(ctx.targets, num_classes, ignored=ignored)
    if problem is not None:
        yield check.finding(problem.message, subject="targets", hint=problem.hint)
    elif ignored:
        yield check.finding(
            f"per-pixel targets hold {fmt(sorted(ignored))} outside [0, {ctx.setup.num_classes}): the train step's "
            "loss ran on them without error, so it ignores them (ignore_index, VOC's 255 border label)",
            subject="targets",
            severity=Severity.INFO,
        )


def _ignored_by_the_loss(ctx: Evidence) -> set[int]:
    """Out-of-range values of dense (per-pixel) targets that the user's completed train step must have
    ignored: cross-entropy raises on a class index at or above the output's class dimension unless it
    is the ``ignore_index``. Empty without such evidence (no user step, a step that raised, a static audit)."""
    targets = ctx.targets
    if ctx.setup.train_step is None or targets.is_floating_point() or targets.ndim < 2:
        return set()
    if ctx.observed_gradients() is None:
        return set()
    widths = [t.shape[1] for _, t in named_outputs(ctx.train_trace().outputs) if t.ndim == targets.ndim + 1]
    if not widths:
        return set()
    values = {int(v) for v in targets.detach().unique().tolist()}
    return {v for v in values if v >= max(widths)}
