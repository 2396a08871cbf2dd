"""What the run loaded: torchvision pretrained weights and ``load_state_dict`` results.

No PyTorch hook sees a download or a checkpoint load: until the first step, ``WeightsEnum.get_state_dict``
(the call every torchvision builder makes for ``weights=...``) and ``nn.Module.load_state_dict`` are
wrapped **on the library's classes**, never on a user object, and each class's own function is put
back, the same object, when the watch stops. The wraps record what was loaded and call the originals
unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from tlaudit._names import unwrap

__all__ = ["WeightsObserver"]


class WeightsObserver:
    """``loaded``: the weights enum members whose state dict was loaded while open, in order;
    ``loads``: ``(module, result)`` of every ``load_state_dict`` call."""

    def __init__(self) -> None:
        self.loaded: list[Any] = []
        self.loads: list[tuple[nn.Module, Any]] = []
        self._wrapped: list[tuple[Any, str, Any]] = []

    def open(self) -> None:
        from torchvision.models._api import WeightsEnum

        loaded, loads = self.loaded, self.loads
        get_state_dict = WeightsEnum.__dict__["get_state_dict"]
        load_state_dict = nn.Module.__dict__["load_state_dict"]

        def recording_get_state_dict(weights: Any, *args: Any, **kwargs: Any) -> Any:
            loaded.append(weights)
            return get_state_dict(weights, *args, **kwargs)

        def recording_load_state_dict(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
            result = load_state_dict(module, *args, **kwargs)
            loads.append((module, result))
            return result

        for cls, name, original, wrapper in (
            (WeightsEnum, "get_state_dict", get_state_dict, recording_get_state_dict),
            (nn.Module, "load_state_dict", load_state_dict, recording_load_state_dict),
        ):
            setattr(wrapper, "__wrapped__", original)  # noqa: B010 - as functools.wraps records it
            setattr(cls, name, wrapper)
            self._wrapped.append((cls, name, original))

    def close(self) -> None:
        """Put the classes' own functions back; safe to call more than once."""
        while self._wrapped:
            cls, name, original = self._wrapped.pop()
            setattr(cls, name, original)

    def timm_model(self, model: nn.Module) -> tuple[nn.Module, str] | None:
        """The timm model inside ``model`` (itself, or the model a wrapper such as timm's
        ``ClassificationTask`` holds) that the run loaded weights into: its ``pretrained_cfg`` says
        what those weights expect."""
        loaded = {id(module) for module, _ in self.loads}
        for module in model.modules():
            cfg: Any = getattr(module, "pretrained_cfg", None)
            if id(module) in loaded and cfg and type(module).__module__.startswith("timm."):
                name = cfg.get("architecture") or type(module).__name__
                return module, f"the pretrained_cfg of the timm model `{name}` the run loaded weights into"
        return None

    def fields(self, model: nn.Module) -> tuple[dict[str, Any], dict[str, str], list[str]]:
        """``weights`` (the last loaded) and ``load_result`` (the last load into ``model``), with provenance and notes."""
        fields: dict[str, Any] = {}
        observed: dict[str, str] = {}
        notes: list[str] = []
        if self.loaded:
            last = self.loaded[-1]
            fields["weights"] = last
            observed["weights"] = f"{last}, loaded by the run"
            if len(set(self.loaded)) > 1:
                notes.append(f"{len(self.loaded)} weights were loaded; the audit takes the last, {last}")
        targets = {id(model), id(unwrap(model))}
        results = [result for module, result in self.loads if id(module) in targets]
        if results:
            fields["load_result"] = results[-1]
            observed["load_result"] = "what the run's last load_state_dict into the model returned"
        return fields, observed, notes
