"""Which torchvision pretrained weights the run loaded.

No PyTorch hook sees a download: while watching, ``WeightsEnum.get_state_dict`` (the call every
torchvision builder makes for ``weights=...``) is wrapped **on torchvision's class**, never on a user
object, and the class's own function is put back, the same object, when the watch stops. The wrap
records the weights and calls the original unchanged.
"""
from __future__ import annotations

from typing import Any

__all__ = ["WeightsObserver"]


class WeightsObserver:
    """``loaded``: the weights enum members whose state dict was loaded while open, in order."""

    def __init__(self) -> None:
        self.loaded: list[Any] = []
        self._original: Any = None
        self._cls: Any = None

    def open(self) -> None:
        from torchvision.models._api import WeightsEnum

        original = WeightsEnum.__dict__["get_state_dict"]
        loaded = self.loaded

        def get_state_dict(weights: Any, *args: Any, **kwargs: Any) -> Any:
            loaded.append(weights)
            return original(weights, *args, **kwargs)

        get_state_dict.__wrapped__ = original  # type: ignore[attr-defined]
        self._cls, self._original = WeightsEnum, original
        WeightsEnum.get_state_dict = get_state_dict  # type: ignore[method-assign]

    def close(self) -> None:
        """Put torchvision's own ``get_state_dict`` back; safe to call more than once."""
        if self._cls is not None:
            self._cls.get_state_dict = self._original
            self._cls = None

    def fields(self) -> tuple[dict[str, Any], dict[str, str], list[str]]:
        """``weights`` (the last loaded), where it came from, and a note when several were loaded."""
        if not self.loaded:
            return {}, {}, []
        last = self.loaded[-1]
        notes = [f"{len(self.loaded)} weights were loaded; the audit takes the last, {last}"] if len(set(self.loaded)) > 1 else []
        return {"weights": last}, {"weights": f"{last}, loaded by the run"}, notes
