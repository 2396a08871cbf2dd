"""The engine interface: what every way of running a backbone provides, and the registry they join.

An engine turns a frozen backbone into a callable from normalized float32 images to float32
features. ``eager`` and ``torch-compile`` are :class:`~tlaudit.FeatureExtractor`'s own paths
(``native``); the others convert the backbone once for a fixed input shape (``build``).

This module imports neither torch nor any engine's library: ``tlaudit --help`` lists the engines
from the registry alone.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tlaudit.extract.config import ExtractConfig

__all__ = ["ENGINES", "Engine", "EngineUnavailable", "Runner", "get_engine", "register"]

Runner = Callable[["torch.Tensor"], "torch.Tensor"]
"""A built engine: normalized float32 ``(N, C, H, W)`` images in, float32 ``(N, ...)`` features out."""


class EngineUnavailable(RuntimeError):
    """The engine cannot run here: its package is not installed, or it does not run on this device."""


class Engine:
    """One way of running a backbone; subclasses are registered with :func:`register`.

    Class attributes:
        name: the stable name users pass as ``engine=`` (kebab-case).
        summary: one line for help texts and the docs.
        devices: the device types it runs on.
        requires: importable packages it needs, with the pip name of each.
        extra: the ``tlaudit`` extra that installs them.
        native: runs inside :class:`~tlaudit.FeatureExtractor` by configuration (no conversion).
        static_batch: the converted model has one fixed batch size (short batches are padded).
        dtypes: compute dtypes it can run; the configuration's dtype is replaced by ``float32``
            (with the reason) when it cannot run that one.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    extra: ClassVar[str | None] = None
    native: ClassVar[bool] = False
    static_batch: ClassVar[bool] = True
    dtypes: ClassVar[tuple[str, ...]] = ("float32",)

    def unavailable(self, device_type: str) -> str | None:
        """Why the engine cannot run on ``device_type`` in this environment, or None when it can."""
        if device_type not in self.devices:
            return f"runs on {' or '.join(self.devices)} only, not {device_type}"
        missing = [pip for module, pip in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            how = f"pip install 'tlaudit[{self.extra}]'" if self.extra else f"pip install {' '.join(missing)}"
            return f"{', '.join(missing)} is not installed ({how})"
        return None

    def check(self, device_type: str) -> None:
        """Raise :class:`EngineUnavailable` with the reason when the engine cannot run on ``device_type``."""
        why = self.unavailable(device_type)
        if why is not None:
            raise EngineUnavailable(f"engine {self.name!r} cannot run: {why} (engine)")

    def overrides(self) -> dict[str, Any]:
        """Configuration overrides a native engine runs with (``{"compile": True}`` and so on)."""
        return {}

    def build(self, backbone: nn.Module, example: torch.Tensor, config: ExtractConfig) -> Runner:
        """Convert ``backbone`` (an eval-mode copy, on the device) for inputs shaped like ``example``."""
        raise NotImplementedError(f"engine {self.name!r} runs natively, it has no build step")

    def versions(self) -> dict[str, str]:
        """Versions of the packages the engine runs on (part of the measurement cache key)."""
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for _, pip in self.requires:
            try:
                out[pip] = version(pip)
            except PackageNotFoundError:
                out[pip] = "missing"
        return out


ENGINES: dict[str, Engine] = {}
"""Every registered engine by name, in registration order (the order ``auto`` measures them in)."""

_E = TypeVar("_E", bound=type[Engine])


def register(cls: _E) -> _E:
    """Class decorator: add an :class:`Engine` subclass to :data:`ENGINES` under its ``name``."""
    if not cls.name or cls.name in ENGINES:
        raise ValueError(f"engine name must be unique and non-empty: {cls.name!r} ({cls.__name__})")
    ENGINES[cls.name] = cls()
    return cls


def get_engine(name: str) -> Engine:
    """The registered engine called ``name``; the error names the closest ones.

    Example:
        >>> get_engine("eager").native
        True
    """
    from tlaudit._names import closest

    if not isinstance(name, str):
        raise TypeError(f"engine must be a name, got {type(name).__name__}: {name!r} (engine)")
    engine = ENGINES.get(name)
    if engine is None:
        near = closest(name, [*ENGINES, "auto"])
        hint = f"; closest: {', '.join(near)}" if near else ""
        raise ValueError(f"unknown engine: {name!r} (engine); expected auto or one of {', '.join(ENGINES)}{hint}")
    return engine
