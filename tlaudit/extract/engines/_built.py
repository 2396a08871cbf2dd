"""A converted engine at work: built once per input shape, fed fixed-size batches, outputs as float32."""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from tlaudit.extract.engines._interface import Engine, EngineUnavailable, Runner

if TYPE_CHECKING:
    from tlaudit.extract.config import ExtractConfig

__all__ = ["Built"]


@contextlib.contextmanager
def _quiet_conversion() -> Iterator[None]:
    """Conversion libraries warn about their own internals (tracer and exporter deprecations).

    Those warnings say nothing about the user's model; the conversion's result is checked against
    the fp32 features instead (cosine), so they are silenced for the conversion only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class Built:
    """``engine`` built for ``backbone`` on demand, for the batch shape it first sees.

    Batches of another size are cut into pieces of the built size, and a short piece is padded with
    zeros (its padded rows are dropped), so one conversion serves a whole run.
    """

    def __init__(self, engine: Engine, backbone: nn.Module, config: ExtractConfig) -> None:
        self.engine = engine
        self.backbone = backbone
        self.config = config
        self.runner: Runner | None = None
        self.shape: tuple[int, ...] | None = None
        self.build_seconds: float | None = None

    def _build(self, example: torch.Tensor) -> None:
        self.engine.check(example.device.type)
        own = copy.deepcopy(self.backbone).eval().requires_grad_(False).to(example.device)
        started = time.perf_counter()
        try:
            with _quiet_conversion(), torch.no_grad():
                self.runner = self.engine.build(own, example.contiguous(), self.config)
        except EngineUnavailable:
            raise
        except Exception as err:
            raise EngineUnavailable(
                f"engine {self.engine.name!r} could not convert the backbone: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''} (engine)"
            ) from err
        self.build_seconds = time.perf_counter() - started
        self.shape = tuple(example.shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Features of ``x`` (normalized float32 ``(N, C, H, W)``)."""
        x = x.contiguous()
        if self.runner is None or self.shape is None or tuple(x.shape[1:]) != self.shape[1:]:
            self._build(x)
        assert self.runner is not None and self.shape is not None
        size = self.shape[0]
        if x.shape[0] == size:
            return self.runner(x).float()
        pieces = []
        for start in range(0, x.shape[0], size):
            part = x[start : start + size]
            count = part.shape[0]
            if count < size:
                part = torch.cat([part, part.new_zeros((size - count, *part.shape[1:]))])
            pieces.append(self.runner(part)[:count].float())
        return torch.cat(pieces)
