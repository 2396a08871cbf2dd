"""A backbone built WITH its weights, and the preprocessing those weights expect.

Every process that builds the model (a DataLoader-free job, each ``torchrun`` rank, each Ray actor)
must get the same weights. A builder called without weights gives each process its own random
initialization (features that agree with nothing, cosine about 0.3 between two runs on one image),
so :func:`build_backbone` refuses it unless ``random_weights=True`` says that is the intent (and
then seeds the initialization, so that every process still builds the same model).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlaudit.normalization import Normalization, expected_normalization

__all__ = ["Backbone", "build_backbone", "load_checkpoint"]


@dataclass(frozen=True)
class Backbone:
    """What :func:`build_backbone` returns: the model (head removed), the weights' preprocessing, and where both came from."""

    model: nn.Module
    normalization: Normalization | None
    weights: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": type(self.model).__name__,
            "weights": self.weights,
            "normalization": self.normalization.to_dict() if self.normalization else None,
        }


def load_checkpoint(model: nn.Module, checkpoint: str | os.PathLike[str]) -> None:
    """Load a local state dict (or a dict with ``state_dict`` / ``model``) into ``model``, strictly."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r} (checkpoint)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint holds {type(state).__name__}, not a state dict: {str(path)!r} (checkpoint)")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ
        detail = " ".join(line.strip() for line in str(err).splitlines()[1:3])
        raise ValueError(f"checkpoint does not fit {type(model).__name__}: {detail} ({path})") from err
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"checkpoint does not fit {type(model).__name__}: missing {result.missing_keys[:3]}, unexpected "
            f"{result.unexpected_keys[:3]} ({path})"
        )


def _torchvision_weights(name: str, weights: Any) -> Any:
    from torchvision.models import WeightsEnum, get_model_weights, get_weight

    if isinstance(weights, WeightsEnum):
        return weights
    enum = get_model_weights(name)
    text = str(weights)
    if "." in text:
        try:
            return get_weight(text)
        except (ValueError, KeyError, AttributeError) as err:
            raise ValueError(f"unknown weights: {text!r} (weights); expected one of {', '.join(str(w) for w in enum)}") from err
    try:
        return enum[text] if text != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(
            f"unknown weights for {name}: {text!r} (weights); expected DEFAULT or one of {', '.join(w.name for w in enum)}"
        ) from None


def _refuse(what: str) -> ValueError:
    return ValueError(
        f"{what} would be built without weights: every process (each rank, each Ray actor) would extract with "
        "its own random initialization (model); pass weights= (a torchvision weights enum or name, "
        "'pretrained' for timm), checkpoint= (a local state dict), or random_weights=True if that is the intent"
    )


def _build(model: Any, weights: Any, checkpoint: Any, random_weights: bool) -> tuple[nn.Module, Any, str]:
    """``(module, what gives the preprocessing, where the weights came from)``."""
    import torchvision

    if isinstance(model, nn.Module):
        return model, model if getattr(model, "pretrained_cfg", None) else None, "the given module"
    if isinstance(model, str) and ":" not in model:
        names = torchvision.models.list_models()
        if model in names or model.lower() in names:
            name = model if model in names else model.lower()
            if weights is not None:
                enum = _torchvision_weights(name, weights)
                return torchvision.models.get_model(name, weights=enum), enum, str(enum)
            default = getattr(torchvision.models.get_model_weights(name), "DEFAULT", None)
            if checkpoint is None and not random_weights:
                raise _refuse(f"{name!r}")
            return torchvision.models.get_model(name, weights=None), default, str(checkpoint or "random")
        import timm

        spec = model.removeprefix("timm/")
        if not timm.is_model(spec):
            from tlaudit._names import closest

            near = closest(model, names)
            raise ValueError(f"unknown model: {model!r} (model); closest torchvision models: {', '.join(near) or 'none'}")
        if weights is not None and weights not in (True, "pretrained"):
            raise ValueError(f"timm models take weights='pretrained' or a checkpoint: {weights!r} (weights)")
        if weights is None and checkpoint is None and not random_weights:
            raise _refuse(f"timm model {spec!r}")
        built = timm.create_model(spec, pretrained=weights is not None)
        return built, built, "timm pretrained" if weights is not None else str(checkpoint or "random")
    if isinstance(model, str):
        module_name, _, attr = model.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"cannot import the model builder: {model!r} (model)") from err
    elif callable(model):
        factory = model
    else:
        raise TypeError(f"model must be a name, 'module:function', a callable or an nn.Module, got {type(model).__name__} (model)")
    if weights is None and checkpoint is None and not random_weights:
        raise _refuse(f"{getattr(factory, '__name__', model)!r} called without arguments")
    built = factory(weights=weights) if weights is not None else factory()
    return built, weights, str(weights or checkpoint or "random")


def build_backbone(
    model: str | Callable[..., nn.Module] | nn.Module,
    *,
    weights: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
    remove_head: bool = True,
    node: str | None = None,
    seed: int = 0,
) -> Backbone:
    """The model ``model`` names, with its weights, ready for :class:`~tlaudit.FeatureExtractor`.

    ``model``: a torchvision name (``"resnet50"``), a timm name (``"timm/resnet18"``), ``"module:function"``,
    a callable, or an ``nn.Module``. ``weights``: a torchvision weights enum, its name
    (``"ResNet50_Weights.IMAGENET1K_V2"``) or member (``"IMAGENET1K_V2"``, ``"DEFAULT"``); for timm,
    ``"pretrained"``; for a builder, passed as ``weights=``. ``checkpoint``: a local state dict loaded
    strictly (the preprocessing is then the default weights' for torchvision names). The head is
    removed with :func:`~tlaudit.remove_head` unless ``remove_head=False``, ``node`` is given or the
    model is timm's (its pooled pre-logits are used).

    Raises:
        ValueError: no weights, checkpoint or ``random_weights=True``; unknown names; a checkpoint that does not fit.
    """
    if weights is not None and checkpoint is not None:
        raise ValueError(f"pass weights or checkpoint, not both: weights={weights!r}, checkpoint={str(checkpoint)!r} (weights)")
    if random_weights:
        torch.manual_seed(seed)
    module, preprocessing, source = _build(model, weights, checkpoint, random_weights)
    if not isinstance(module, nn.Module):
        raise TypeError(f"the model builder returned {type(module).__name__}, not an nn.Module (model)")
    if checkpoint is not None:
        load_checkpoint(module, checkpoint)
    if remove_head and node is None and not callable(getattr(module, "forward_head", None)):
        from tlaudit.surgery import remove_head as _remove_head

        _remove_head(module)
    norm = None
    if preprocessing is not None:
        try:
            norm = expected_normalization(preprocessing)
        except (ValueError, TypeError):
            norm = None
    return Backbone(module, norm, source)
