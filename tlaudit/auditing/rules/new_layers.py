"""Which layers are new: the user's model compared with the architecture the pretrained weights belong to.

The reference is built on the meta device (no memory, no weights) from the weights' own builder:
a torchvision weights enum member (or its name), or a timm ``pretrained_cfg`` (its
``architecture``). A module of the user's model whose path, type or parameter shapes the
reference lacks is new: a replaced or multi-layer head, a bottleneck, an adapter. Adapter
parameters (LoRA's ``lora_A``/``lora_B``, peft's layers, recognised by name without importing peft)
are new with or without a reference.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from tlaudit._names import unwrap
from tlaudit.normalization import torchvision_weights

__all__ = ["is_adapter_name", "new_modules", "new_modules_and_scope", "reference_model"]

_ADAPTER_MARKERS = ("lora_", "lora.", "adapter", "prompt_encoder")


def is_adapter_name(name: str) -> bool:
    """A module or parameter path that belongs to an adapter (LoRA ``lora_A``/``lora_B``, peft's adapters)."""
    return any(
        part.startswith(_ADAPTER_MARKERS) or part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")
        for part in name.split(".")
    )


def _torchvision_builder(weights: Any) -> str | None:
    import torchvision
    from torchvision.models import get_model_weights, list_models

    weights = torchvision_weights(weights)
    if weights is None:
        return None
    for name in list_models(module=torchvision.models):
        try:
            if get_model_weights(name) is type(weights):
                return name
        except (ValueError, KeyError):  # pragma: no cover - a builder without weights
            continue
    return None


def reference_model(weights: Any) -> nn.Module | None:
    """The architecture ``weights`` were trained as, on the meta device; None where it cannot be told."""
    builder = _torchvision_builder(weights)
    if builder is not None:
        import torchvision

        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. GoogLeNet's init_weights FutureWarning: the reference is never run
            return torchvision.models.get_model(builder, weights=None)
    architecture = weights.get("architecture") if isinstance(weights, dict) else getattr(weights, "architecture", None)
    if isinstance(architecture, str):
        try:
            import timm
        except ImportError:
            return None
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return timm.create_model(architecture, pretrained=False)
        except Exception:  # an unknown or changed architecture name: cannot tell
            return None
    return None


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters(recurse=False)}


def _layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of ``module`` that hold parameters of their own, by path."""
    return [(n, m) for n, m in module.named_modules() if n and any(True for _ in m.parameters(recurse=False))]


def _differing(inner: nn.Module, ref_modules: dict[str, nn.Module]) -> list[str]:
    """Outermost paths of ``inner`` whose module the reference lacks or has with another type or shapes."""
    found: list[str] = []
    for name, module in inner.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in found):
            continue
        if is_adapter_name(name):
            found.append(name)
            continue
        ref = ref_modules.get(name)
        if ref is None or type(ref) is not type(module) or _shapes(ref) != _shapes(module):
            if not _shapes(module) and not any(True for _ in module.parameters()):
                continue  # a parameterless layer (ReLU, pooling) changes nothing pretrained
            found.append(name)
    return found


def _mostly_same(inner: nn.Module, found: list[str]) -> bool:
    layers = [n for n, _ in _layers(inner)]
    changed = [n for n in layers if any(n == f or n.startswith(f + ".") for f in found)]
    return bool(layers) and len(changed) <= len(layers) / 2


def _backbone_match(inner: nn.Module, reference: nn.Module) -> list[str] | None:
    """Where the weights describe a part of the model (a classification backbone inside a detection
    or segmentation model, as ``weights_backbone=`` builds it: ResNet's layers under ``backbone``,
    MobileNet's ``features`` as ``backbone``): the new paths, i.e. the part's own differences plus
    every layer outside it. None when no part matches at least half of the reference's (or its
    feature extractor's) layers with at most half of its own layers changed."""
    references = [("", reference)] + [(n, c) for n, c in reference.named_children() if any(True for _ in c.children())]
    best: tuple[int, str, list[str]] | None = None
    for _, ref in references:
        ref_modules = dict(ref.named_modules())
        wanted = len(_layers(ref))
        for prefix, part in inner.named_modules():
            if not prefix or prefix.count(".") > 2 or not any(True for _ in part.children()):
                continue
            found = _differing(part, ref_modules)
            if not _mostly_same(part, found):
                continue
            matched = sum(1 for n, _ in _layers(part) if not any(n == f or n.startswith(f + ".") for f in found))
            if matched * 2 >= wanted and (best is None or matched > best[0]):
                best = (matched, prefix, found)
    if best is None:
        return None
    _, prefix, found = best
    new = [f"{prefix}.{f}" for f in found]
    for name, _ in _layers(inner):
        if name != prefix and not name.startswith(prefix + ".") and not any(name.startswith(o + ".") for o in new):
            new.append(name)
    return _outermost(inner, new)


def _outermost(inner: nn.Module, paths: list[str]) -> list[str]:
    """The shortest module paths that cover exactly the layers in ``paths`` (a module whose every
    parameter-holding layer is listed replaces them)."""
    listed = set(paths)
    covered = {n for n, _ in _layers(inner) if any(n == p or n.startswith(p + ".") for p in listed)}
    out: list[str] = []
    for name, module in inner.named_modules():
        if not name or any(name.startswith(o + ".") for o in out):
            continue
        own = {f"{name}.{n}" for n, _ in _layers(module)} | ({name} if any(True for _ in module.parameters(recurse=False)) else set())
        if own and own <= covered:
            out.append(name)
    return out


def new_modules(model: nn.Module, weights: Any) -> list[str] | None:
    """Paths of the modules of ``model`` that the weights' architecture does not have (outermost only),
    plus adapter modules; None where no reference can be built (adapters are still found by name).
    When more than half of the model's layers differ from the reference, the weights may describe a
    part of the model (``weights_backbone=``: an ImageNet ResNet inside an FCN or a Faster R-CNN):
    the part that matches is pretrained and every layer outside it is new. When no part matches,
    the weights do not describe this model and only adapters are reported.

    Example:
        >>> import torchvision
        >>> from torch import nn
        >>> m = torchvision.models.resnet18()
        >>> m.fc = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 5))
        >>> new_modules(m, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
        ['fc']
        >>> fcn = torchvision.models.segmentation.fcn_resnet50(weights_backbone=None, num_classes=3, aux_loss=True)
        >>> new_modules(fcn, torchvision.models.ResNet50_Weights.IMAGENET1K_V1)
        ['classifier', 'aux_classifier']
    """
    return new_modules_and_scope(model, weights)[0]


def new_modules_and_scope(model: nn.Module, weights: Any) -> tuple[list[str] | None, bool]:
    """:func:`new_modules`, and whether the weights describe only a part of the model (a backbone's
    weights inside a detection or segmentation model): then the model as a whole is trained anew."""
    inner = unwrap(model)
    task_heads = hf_task_heads(inner)
    reference = reference_model(weights) if weights is not None else None
    part_only = False
    if reference is None:
        found = [name for name, _ in inner.named_modules() if name and is_adapter_name(name)]
        found = [f for f in found if not any(f.startswith(o + ".") for o in found if o != f)]
    else:
        ref_modules = dict(reference.named_modules())
        found = _differing(inner, ref_modules)
        if not _mostly_same(inner, found):  # not these weights' architecture as a whole
            part = _backbone_match(inner, reference)
            part_only = part is not None
            found = part if part is not None else [f for f in found if is_adapter_name(f)]
    found = list(dict.fromkeys([*found, *(h for h in task_heads if not any(h.startswith(f + ".") or h == f for f in found))]))
    if reference is None and not found:
        return None, False
    return found, part_only


def hf_task_heads(model: nn.Module) -> list[str]:
    """The task-head modules of Hugging Face models inside ``model``: every child with parameters of a
    ``PreTrainedModel`` other than its base model (``base_model_prefix``), such as DistilBERT's
    ``pre_classifier`` and ``classifier``. ``from_pretrained`` initializes them new for the task
    ("Some weights ... were newly initialized"); read without importing transformers. A model that
    is no Hugging Face model has none (``[]``); ``tests/test_reference.py`` shows DistilBERT's.
    """
    heads: list[str] = []
    for name, module in model.named_modules():
        prefix = getattr(type(module), "base_model_prefix", None)
        if not isinstance(prefix, str) or not prefix or not hasattr(module, "config"):
            continue
        base = getattr(module, prefix, None)
        if not isinstance(base, nn.Module) or base is module:
            continue
        for child_name, child in module.named_children():
            if child is not base and any(True for _ in child.parameters()):
                heads.append(f"{name}.{child_name}" if name else child_name)
    return heads
