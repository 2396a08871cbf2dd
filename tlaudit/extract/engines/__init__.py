"""Engines: one small interface (:class:`Engine`), one module per engine, one registry (:data:`ENGINES`).

* ``eager``, ``torch-compile``: :mod:`tlaudit.extract.engines.torch_eager`.
* ``openvino``: :mod:`tlaudit.extract.engines.openvino` (the ``openvino`` extra).
* ``onnxruntime``: :mod:`tlaudit.extract.engines.onnxruntime` (the ``onnx`` extra).
* ``tensorrt``: :mod:`tlaudit.extract.engines.tensorrt` (torch-tensorrt, CUDA).
* ``auto``: :func:`tlaudit.extract.engines.auto.select_engine` measures the available ones.

Importing this package imports no engine library and not torch.
"""

from __future__ import annotations

# isort: off
# registration order is the order `auto` measures and tables list the engines in
from tlaudit.extract.engines import torch_eager as _torch_eager  # noqa: F401, I001  (registers eager, torch-compile)
from tlaudit.extract.engines import openvino as _openvino  # noqa: F401
from tlaudit.extract.engines import onnxruntime as _onnxruntime  # noqa: F401
from tlaudit.extract.engines import tensorrt as _tensorrt  # noqa: F401
from tlaudit.extract.engines._interface import ENGINES, Engine, EngineUnavailable, Runner, get_engine, register
# isort: on

__all__ = ["ENGINES", "ENGINE_NAMES", "Engine", "EngineUnavailable", "Runner", "available_engines", "get_engine", "register"]

ENGINE_NAMES: tuple[str, ...] = ("auto", *ENGINES)
"""What ``engine=`` accepts: ``auto`` and every registered engine."""


def available_engines(device_type: str) -> dict[str, str | None]:
    """Every engine's name with why it cannot run on ``device_type`` (None: it can).

    Example:
        >>> available_engines("cpu")["tensorrt"]
        'runs on cuda only, not cpu'
    """
    return {name: engine.unavailable(device_type) for name, engine in ENGINES.items()}
