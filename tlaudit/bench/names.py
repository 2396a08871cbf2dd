"""The modes ``tlaudit bench`` offers: one registry, torch-free, so that ``tlaudit --help`` is cheap.

A mode is declared once with :func:`register_mode`: its name, a one-line summary (the help text and
the docs are generated from it), how it runs (``plain``: the model itself, with or without autograd;
otherwise :class:`~tlaudit.FeatureExtractor` with ``options``) and whether it runs by default.
Every engine of :mod:`tlaudit.extract.engines` that converts the backbone is a mode under its own
name, and ``auto`` is the engine the extractor would choose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tlaudit.extract import DTYPE_NAMES
from tlaudit.extract.engines import ENGINES

__all__ = ["DTYPE_NAMES", "INPUTS", "MODES", "MODE_REGISTRY", "Mode", "engine_modes", "register_mode"]

_BASELINE = MappingProxyType({"dtype": "float32", "channels_last": False, "fold_batchnorm": False, "compile": False})


@dataclass(frozen=True)
class Mode:
    """One way ``tlaudit bench`` runs the backbone.

    Attributes:
        name: the stable, kebab-case name ``--modes`` takes.
        summary: one line for ``--help`` and the docs.
        plain: ``"grad"`` or ``"no_grad"``: the model itself in eval mode, fp32 (no extractor).
        options: :class:`~tlaudit.FeatureExtractor` keywords (``engine``, configuration overrides).
        user_overrides: the command line's ``--dtype``/``--channels-last``/``--compile`` apply.
        default: run when ``--modes`` is not given.
    """

    name: str
    summary: str
    plain: str | None = None
    options: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    user_overrides: bool = False
    default: bool = False

    @property
    def engine(self) -> str | None:
        """The engine the mode runs (None for the plain modes)."""
        return None if self.plain else str(self.options.get("engine", "eager"))


MODE_REGISTRY: dict[str, Mode] = {}
"""Every mode by name, in the order tables list them."""


def register_mode(mode: Mode) -> Mode:
    """Add ``mode`` to :data:`MODE_REGISTRY` (names are unique)."""
    if mode.name in MODE_REGISTRY:
        raise ValueError(f"mode registered twice: {mode.name!r}")
    MODE_REGISTRY[mode.name] = mode
    return mode


register_mode(Mode("naive", "model.eval() with autograd on, fp32: the common mistake", plain="grad", default=True))
register_mode(Mode("baseline", "model.eval() + torch.no_grad(), fp32, default layout: the reference", plain="no_grad", default=True))
register_mode(Mode("optimized", "FeatureExtractor's choice for the device (engine eager)", user_overrides=True, default=True))
register_mode(
    Mode(
        "compiled",
        "the optimized configuration through torch.compile (engine torch-compile)",
        options=MappingProxyType({"compile": True}),
        user_overrides=True,
    )
)
register_mode(
    Mode(
        "channels-last",
        "baseline on a channels-last copy: what the layout alone gives",
        options=MappingProxyType(dict(_BASELINE, channels_last=True)),
    )
)
for _name, _engine in ENGINES.items():
    if not _engine.native:
        register_mode(Mode(_name, _engine.summary, options=MappingProxyType({"engine": _name}), user_overrides=True))
register_mode(
    Mode(
        "auto",
        "engine='auto': the fastest available engine whose features keep cosine >= 0.99",
        options=MappingProxyType({"engine": "auto"}),
        user_overrides=True,
    )
)

MODES: tuple[str, ...] = tuple(MODE_REGISTRY)
"""Every mode name; ``tlaudit bench`` runs the default ones unless ``--modes`` says otherwise."""


def default_modes() -> tuple[str, ...]:
    """The modes run without ``--modes``."""
    return tuple(m.name for m in MODE_REGISTRY.values() if m.default)


def engine_modes(device_type: str) -> tuple[str, ...]:
    """``baseline``, ``optimized`` and every engine mode that can run on ``device_type``, then ``auto``:
    the table ``--modes engines`` asks for."""
    out = ["baseline", "optimized"]
    for name, engine in ENGINES.items():
        if engine.native:
            continue
        if engine.unavailable(device_type) is None:
            out.append(name)
    return (*out, "auto")


INPUTS = ("synthetic", "uint8-host")
"""``synthetic``: normalized float32 already on the device; ``uint8-host``: uint8 pixels in host memory."""
