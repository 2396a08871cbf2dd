"""Models by name, as the CLI takes them: torchvision builders, timm models, or a Python file's function."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlaudit.errors import SetupError, UsageError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["load_model", "timm_has", "timm_model"]


def load_model(spec: str) -> tuple[nn.Module, Any, Any]:
    """``(model, optimizer, head)`` from a model name, a Python file or ``module:function``.

    A name is a torchvision builder (built with ``weights=None``) or, with timm installed, a timm
    model (built with ``pretrained=False``); torchvision's wins where both have it, and a ``timm/``
    prefix (``timm/resnet18``) picks timm's.
    """
    from torch import nn

    from tlaudit._names import closest
    from tlaudit.auditing.setup import TransferSetup, load_object

    if spec.startswith("timm/"):
        obj, where = timm_model(spec[len("timm/") :], spec), spec
    elif ":" in spec or spec.endswith(".py") or Path(spec).exists():
        obj, where = load_object(spec, field="MODEL")
    else:
        import torchvision

        names = torchvision.models.list_models()
        name = spec if spec in names else spec.lower()
        if name in names:
            obj, where = torchvision.models.get_model(name, weights=None), name
        elif timm_has(spec):
            obj, where = timm_model(spec, spec), spec
        else:
            near = closest(name, names)
            hint = f"; closest: {', '.join(near)}" if near else "; see torchvision.models.list_models()"
            if importlib.util.find_spec("timm") is not None:
                import timm

                near_timm = closest(spec, timm.list_models())
                hint += f"; not a timm model either (closest: {', '.join(near_timm)})" if near_timm else "; not a timm model either"
            raise UsageError(f"unknown torchvision model: {spec!r} (MODEL){hint}")
    if isinstance(obj, TransferSetup):
        return obj.model, obj.optimizer, obj.head
    if isinstance(obj, nn.Module):
        return obj, None, None
    raise SetupError(f"{where} returned {type(obj).__name__}, not an nn.Module or a TransferSetup (MODEL)", field="setup")


def timm_has(name: str) -> bool:
    if importlib.util.find_spec("timm") is None:
        return False
    import timm

    return bool(timm.is_model(name))


def timm_model(name: str, spec: str) -> nn.Module:
    """``timm.create_model(name, pretrained=False)``, or a UsageError naming the closest timm models."""
    from tlaudit._names import closest

    try:
        import timm
    except ImportError as err:
        raise UsageError(f"timm is not installed: {spec!r} (MODEL); pip install 'tlaudit[timm]'") from err
    if not timm.is_model(name):
        near = closest(name, timm.list_models())
        hint = f"; closest: {', '.join(near)}" if near else "; see timm.list_models()"
        raise UsageError(f"unknown timm model: {spec!r} (MODEL){hint}")
    return timm.create_model(name, pretrained=False)
