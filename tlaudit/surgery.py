"""Model surgery: find, replace and remove classification heads, slice backbones."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tlaudit._names import closest, strip_wrapper_prefix, unwrap

__all__ = [
    "HeadNotFoundError",
    "find_heads",
    "replace_head",
    "remove_head",
    "truncate",
]

_HEAD_ATTRIBUTES = ("fc", "classifier", "head", "heads", "last_linear")


class HeadNotFoundError(ValueError):
    """No classification head could be identified (or the one named does not exist)."""


HeadNotFoundError.__module__ = "tlaudit"  # tracebacks name the public path


def _is_head_layer(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1) and module.groups == 1


def _last_head_layer(module: nn.Module, prefix: str) -> str | None:
    found = None
    for name, sub in module.named_modules(prefix=prefix):
        if _is_head_layer(sub):
            found = name
    return found


def _is_aux_name(name: str) -> bool:
    return "aux" in name.lower()


def find_heads(model: nn.Module) -> list[str]:
    """Qualified names of the classification head layer(s): the main head first, auxiliary heads after.

    Read from timm's ``get_classifier()`` where the model has one (all of them for distilled
    models), else from the conventional ``fc`` / ``classifier`` / ``head`` / ``heads`` child, else
    the last Linear or 1x1 Conv2d; auxiliary heads are children whose name contains ``aux``.

    Names never carry wrapper prefixes (``module.``, ``_orig_mod.``).

    Example:
        >>> import torchvision
        >>> find_heads(torchvision.models.resnet18())
        ['fc']
        >>> find_heads(torchvision.models.inception_v3(init_weights=False))
        ['fc', 'AuxLogits.fc']

    Raises:
        HeadNotFoundError: nothing that looks like a head; pass ``head=`` to the function you called.
    """
    model = unwrap(model)
    heads = _from_get_classifier(model) or [_main_head(model)]
    for name, child in model.named_children():
        if child is not None and _is_aux_name(name):
            layer = _last_head_layer(child, name)
            if layer is not None and layer not in heads:
                heads.append(layer)
    return heads


def _from_get_classifier(model: nn.Module) -> list[str]:
    """timm's ``get_classifier()``: one module, or a tuple of them (distilled DeiT: ``head``, ``head_dist``)."""
    get_classifier = getattr(model, "get_classifier", None)
    if not callable(get_classifier):
        return []
    try:
        classifier = get_classifier()
    except Exception:  # a foreign get_classifier() that cannot answer: fall back to the conventions
        return []
    wanted = list(classifier) if isinstance(classifier, (tuple, list)) else [classifier]
    found = []
    for target in wanted:
        if not isinstance(target, nn.Module):
            continue
        for name, module in model.named_modules():
            if module is target and name:
                layer = _last_head_layer(module, name)
                if layer is not None:
                    found.append(layer)
                break
    return found


def _main_head(model: nn.Module) -> str:
    modules = dict(model.named_modules())
    for attribute in _HEAD_ATTRIBUTES:
        child = model._modules.get(attribute)
        if child is not None:
            layer = _last_head_layer(child, attribute)
            if layer is not None:
                return layer
            # the conventional head slot holds no layer (remove_head made it Identity): the head is
            # gone, and a backbone layer must not be mistaken for it
            raise HeadNotFoundError(
                f"no classification head found: `{attribute}` of {type(model).__name__} holds no Linear or 1x1 "
                f"Conv2d layer ({type(child).__name__}; removed?) (model); pass head='<module name>'"
            )
    last = None
    for name, module in modules.items():
        if name and _is_head_layer(module) and not _is_aux_name(name.split(".")[0]):
            last = name
    if last is None:
        children = ", ".join(n for n, _ in model.named_children()) or "none"
        raise HeadNotFoundError(
            f"no classification head found: {type(model).__name__} has no `fc`, `classifier`, `head` or `heads` "
            f"child and no Linear or 1x1 Conv2d layer (model); pass head='<module name>' "
            f"(top-level children: {children})"
        )
    return last


def resolve_heads(model: nn.Module, head: str | Sequence[str] | None, *, field_name: str = "head") -> list[str]:
    """``head`` validated against the model, or :func:`find_heads` when it is None."""
    if head is None:
        return find_heads(model)
    names = [head] if isinstance(head, str) else list(head)
    if not names:
        raise HeadNotFoundError(f"no head named: {head!r} ({field_name})")
    modules = dict(unwrap(model).named_modules())
    resolved = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"head must be a module name (str): {name!r} ({field_name})")
        clean = strip_wrapper_prefix(name)
        if not clean or clean not in modules:
            near = closest(clean, [n for n in modules if n])
            hint = f"; closest: {', '.join(near)}" if near else ""
            raise HeadNotFoundError(f"no module named {name!r} ({field_name}){hint}; hint: use find_heads(model)")
        resolved.append(clean)
    return resolved


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, module)


def _new_head(old: nn.Module, num_classes: int, name: str) -> nn.Module:
    ref = next(iter(old.parameters()), None)
    factory: dict[str, Any] = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **factory)
    if isinstance(old, nn.Conv2d):
        return nn.Conv2d(
            old.in_channels,
            num_classes,
            kernel_size=old.kernel_size,  # type: ignore[arg-type]  # a Conv2d's own 2-tuples, typed tuple[int, ...]
            stride=old.stride,  # type: ignore[arg-type]
            padding=old.padding,  # type: ignore[arg-type]
            dilation=old.dilation,  # type: ignore[arg-type]
            bias=old.bias is not None,
            **factory,
        )
    raise HeadNotFoundError(
        f"head is neither Linear nor Conv2d: `{name}` is {type(old).__name__} (head); pass head= naming the last Linear or 1x1 Conv2d layer"
    )


def _check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int: {num_classes!r} (num_classes)")
    return num_classes


def replace_head(model: nn.Module, num_classes: int, *, head: str | Sequence[str] | None = None, aux: bool = True) -> nn.Module:
    """Replace the head (and, with ``aux=True``, auxiliary heads) with fresh layers, in place.

    The new layers have the same kind (Linear or 1x1 Conv2d), input size, bias, dtype and device
    as the old ones, ``num_classes`` outputs, and are trainable. A timm model (one whose
    ``get_classifier()`` names its head) is reset with its own ``reset_classifier(num_classes)``,
    which keeps its ``num_classes`` and head structure consistent; a Hugging Face model's config gets
    the new ``num_labels`` (and ``id2label``/``label2id``), so that its own loss still works. Returns ``model``.

    Example:
        >>> import torchvision
        >>> m = replace_head(torchvision.models.resnet18(), 10)
        >>> m.fc
        Linear(in_features=512, out_features=10, bias=True)
    """
    num_classes = _check_num_classes(num_classes)
    inner = unwrap(model)
    names = resolve_heads(model, head)
    if head is None and not aux:
        names = names[:1]
    if head is None and _reset_classifier(inner, num_classes):
        names = [n for n in names if n not in _from_get_classifier(inner)]  # aux heads timm does not know of
    for name in names:
        _set_submodule(inner, name, _new_head(inner.get_submodule(name), num_classes, name))
    classes = getattr(inner, "num_classes", None)
    if isinstance(classes, int) and not isinstance(classes, bool):
        setattr(inner, "num_classes", num_classes)  # noqa: B010 - a plain attribute of timm models, not a submodule
    _update_config(inner, num_classes)
    return model


def _update_config(inner: nn.Module, num_classes: int) -> None:
    """A Hugging Face model's config follows its new head: ``num_labels`` (its own loss reads it),
    and ``id2label``/``label2id`` renumbered ``LABEL_0``... where they no longer fit."""
    config = getattr(inner, "config", None)
    if config is None or not isinstance(getattr(config, "num_labels", None), int):
        return
    if getattr(config, "num_labels", None) != num_classes or len(getattr(config, "id2label", None) or {}) != num_classes:
        config.num_labels = num_classes  # transformers renumbers id2label/label2id to LABEL_0...
    id2label = getattr(config, "id2label", None)
    if not isinstance(id2label, dict) or len(id2label) != num_classes:
        config.id2label = {i: f"LABEL_{i}" for i in range(num_classes)}
        config.label2id = {f"LABEL_{i}": i for i in range(num_classes)}


def _reset_classifier(inner: nn.Module, num_classes: int) -> bool:
    """timm's ``reset_classifier(num_classes)`` where the model has one and ``get_classifier()`` names a head.

    timm rebuilds its head(s) itself (both of a distilled DeiT, the ``fc`` of a ``NormMlpClassifierHead``)
    and keeps ``num_classes`` and the pooling consistent; ``num_classes=0`` makes them ``nn.Identity``.
    The new layers get the device and dtype of the old ones. Returns False where this does not apply.
    """
    reset = getattr(inner, "reset_classifier", None)
    before = _from_get_classifier(inner)
    if not callable(reset) or not before:
        return False
    ref = next(iter(inner.get_submodule(before[0]).parameters()), None)
    reset(num_classes)
    if ref is not None:
        for name in _from_get_classifier(inner):
            inner.get_submodule(name).to(device=ref.device, dtype=ref.dtype)
    return True


def remove_head(model: nn.Module, *, head: str | None = None) -> int:
    """Replace the main head with ``nn.Identity``, in place, and return the feature dimension.

    Auxiliary heads are left as they are (they only run in training mode). A timm model's head(s)
    are removed with its own ``reset_classifier(0)``: a distilled DeiT loses both, so its output is
    the features again.

    Example:
        >>> import torchvision
        >>> remove_head(torchvision.models.resnet18())
        512
    """
    inner = unwrap(model)
    name = resolve_heads(model, head)[0]
    old = inner.get_submodule(name)
    if isinstance(old, nn.Linear):
        features = old.in_features
    elif isinstance(old, nn.Conv2d):
        features = old.in_channels
    else:
        raise HeadNotFoundError(
            f"head is neither Linear nor Conv2d: `{name}` is {type(old).__name__} (head); "
            "pass head= naming the last Linear or 1x1 Conv2d layer"
        )
    if head is None and _reset_classifier(inner, 0):
        return features
    _set_submodule(inner, name, nn.Identity())
    return features


def truncate(model: nn.Module, upto: str) -> nn.Sequential:
    """The model's children up to and including ``upto``, as an ``nn.Sequential`` sharing their modules.

    ``upto`` may be dotted (``features.10``) when the path goes through ``nn.Sequential`` children.
    Children that the original ``forward`` calls functionally (``torch.flatten`` in ResNet) are not part of it.

    Example:
        >>> import torchvision
        >>> list(dict(truncate(torchvision.models.resnet18(), "layer2").named_children()))
        ['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2']
    """
    if not isinstance(upto, str) or not upto:
        raise TypeError(f"upto must be a child module name: {upto!r} (upto)")
    return _truncate(unwrap(model), strip_wrapper_prefix(upto), upto)


def _truncate(module: nn.Module, path: str, original: str) -> nn.Sequential:
    first, _, rest = path.partition(".")
    children = list(module.named_children())
    names = [n for n, _ in children]
    if first not in names:
        raise KeyError(f"no child named {first!r} in {type(module).__name__} (upto={original!r}); valid names: {', '.join(names)}")
    index = names.index(first)
    kept = OrderedDict(children[:index])
    child = children[index][1]
    if rest:
        kept[first] = _truncate(child, rest, original)
    else:
        kept[first] = child
    return nn.Sequential(kept)


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    ref = next(iter(unwrap(model).parameters()), None)
    if ref is None:
        return torch.device("cpu"), torch.float32
    return ref.device, ref.dtype
