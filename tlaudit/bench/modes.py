"""The extraction modes ``tlaudit bench`` compares, measured side by side in one process.

* ``naive``: ``model.eval()`` with gradients enabled, fp32 (the common mistake: autograd records
  every activation).
* ``baseline``: ``model.eval()`` plus ``torch.no_grad()``, fp32, the default layout.
* ``optimized``: :class:`~tlaudit.FeatureExtractor` with the configuration it picks for the device.
* ``compiled``: the same plus ``torch.compile`` (on CPU it pays off only on some models: measure).
* ``channels-last``: ``baseline`` on a channels-last copy, nothing else (what the layout alone gives).
* ``openvino``, ``onnxruntime``, ``tensorrt``: the engines of :mod:`tlaudit.extract.engines` that
  convert the backbone (the first batch's time, the conversion, is reported as ``compile_seconds``).
* ``auto``: ``engine="auto"``, which measures the available engines on the benchmark's batch first.

The modes are declared once, in :data:`tlaudit.bench.names.MODE_REGISTRY`.

Every mode gets the same inputs. Timing: ``warmup`` batches first (compilation and autotuning
happen there; the first batch's time is reported as ``compile_seconds`` for compiled modes), then
``repeats`` rounds, each timing ``iters`` batches per mode in turn with device synchronization, so
noise from other processes hits every mode alike. With ``input="uint8-host"`` the images start as
uint8 on the host: ``naive``/``baseline`` normalize them on the CPU and copy float32 (the plain
loader); the extractor's modes copy uint8 through its prefetching path and normalize on the device.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlaudit.evaluation import training_flags_kept
from tlaudit.extract.config import ExtractConfig, choose_config
from tlaudit.extract.extractor import FeatureExtractor, _first_tensor
from tlaudit.extract.inputs import normalize_uint8, prefetch

__all__ = ["INPUTS", "MODES", "Measurement", "measure_modes"]

from tlaudit.bench.names import INPUTS, MODE_REGISTRY, MODES

_BASELINE_CONFIG: dict[str, Any] = {"dtype": "float32", "channels_last": False, "fold_batchnorm": False, "compile": False}


@dataclass(frozen=True)
class Measurement:
    """One mode at one batch size: the raw figures before speedups and sanity checks."""

    mode: str
    batch_size: int
    repeats_ips: tuple[float, ...]
    cosine_vs_fp32: float
    peak_memory_bytes: int | None
    compile_seconds: float | None
    config: dict[str, Any]

    @property
    def images_per_second(self) -> float:
        """The median over the repeats."""
        return statistics.median(self.repeats_ips)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Runner:
    """One mode: ``run(n)`` processes ``n`` batches; ``features()`` returns the reference batch's features."""

    def __init__(
        self, name: str, model: nn.Module, device: torch.device, host: torch.Tensor, weights_norm: Any, overrides: dict[str, Any]
    ) -> None:
        self.name = name
        self.device = device
        self.model = model
        self.host = host  # uint8 host batch (uint8-host input) or the device float batch (synthetic)
        self.uint8 = host.dtype == torch.uint8
        self.mean = torch.tensor(weights_norm.mean) if weights_norm is not None else None
        self.std = torch.tensor(weights_norm.std) if weights_norm is not None else None
        self.extractor: FeatureExtractor | None = None
        self.config: dict[str, Any]
        self.mode = MODE_REGISTRY[name]
        if self.mode.plain is not None:
            self.config = choose_config(device, **_BASELINE_CONFIG).to_dict() | {"grad": self.mode.plain == "grad"}
            self.config["reasons"] = {}
        else:
            options = dict(self.mode.options)
            if self.mode.user_overrides:
                options = {k: v for k, v in overrides.items() if v is not None} | options
            weights = {"mean": weights_norm.mean, "std": weights_norm.std} if weights_norm is not None else None
            self.extractor = FeatureExtractor(model, device=device, weights=weights, **options)
            if self.extractor._auto:  # choose now, on the benchmark's batch, without the cache
                self.extractor.select_engine(host, cache=False)
            self.config = self.extractor.config.to_dict()
            if self.extractor.choice is not None:
                self.config["auto"] = self.extractor.choice.to_dict()

    def _plain_input(self) -> torch.Tensor:
        if not self.uint8:
            return self.host
        if self.mean is None or self.std is None:
            raise ValueError("uint8-host input needs the weights' mean and std: normalization=None (input)")
        return normalize_uint8(self.host, self.mean, self.std).to(self.device, non_blocking=True)

    def _plain(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode.plain == "grad":
            return _first_tensor(self.model(x))
        with torch.no_grad():
            return _first_tensor(self.model(x))

    def run(self, n: int) -> None:
        if self.extractor is None:
            for _ in range(n):
                self._plain(self._plain_input())
        else:
            with self.extractor._running():
                for images, _ in prefetch(((self.host, torch.empty(0)) for _ in range(n)), self.device):
                    self.extractor._forward(images)
        _sync(self.device)

    def features(self) -> torch.Tensor:
        if self.extractor is None:
            out = self._plain(self._plain_input()).detach()
        else:
            out = self.extractor(self.host)
        return out.float().flatten(1).cpu()


def _reset_peak(device: torch.device) -> Callable[[], int | None]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return lambda: int(torch.cuda.max_memory_allocated(device))
    clear_refs, status = Path("/proc/self/clear_refs"), Path("/proc/self/status")
    try:
        clear_refs.write_text("5")  # Linux: reset the resident-set high-water mark (VmHWM)
    except OSError:
        return lambda: None

    def read() -> int | None:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None

    return read


@contextlib.contextmanager
def _on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` in eval mode on ``device`` (a copy when it lives elsewhere), training flags restored."""
    ref = next(iter(model.parameters()), None)
    if ref is not None and ref.device != device:
        model = copy.deepcopy(model).to(device)
    with training_flags_kept(model):
        model.eval()
        yield model


def measure_modes(
    model: nn.Module,
    *,
    modes: Sequence[str],
    device: torch.device,
    batch_size: int,
    image_size: int,
    iters: int,
    warmup: int,
    repeats: int,
    input: str,
    normalization: Any,
    overrides: dict[str, Any],
    generator: torch.Generator | None = None,
) -> list[Measurement]:
    """Measure ``modes`` side by side at one batch size; see the module docstring for the protocol.

    Raises:
        EngineUnavailable: a mode's engine cannot run here (not installed, another device).
    """
    shape = (batch_size, 3, image_size, image_size)
    if input == "uint8-host":
        host = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        if device.type == "cuda":
            host = host.pin_memory()
    else:
        host = torch.randn(shape, generator=generator).to(device)
    with _on_device(model, device) as model:
        runners = [_Runner(m, model, device, host, normalization, overrides) for m in modes]
        compile_seconds: dict[str, float | None] = {}
        for runner in runners:
            started = time.perf_counter()
            runner.run(1)
            first = time.perf_counter() - started
            converts = runner.config.get("engine", "eager") not in ("eager", "torch-compile")
            compile_seconds[runner.name] = first if runner.config.get("compile") or converts else None
            if warmup > 1:
                runner.run(warmup - 1)
        times: dict[str, list[float]] = {r.name: [] for r in runners}
        for _ in range(repeats):
            for runner in runners:
                started = time.perf_counter()
                runner.run(iters)
                times[runner.name].append(batch_size * iters / (time.perf_counter() - started))
        reference = next((r for r in runners if r.name == "baseline"), None)
        ref_features = (reference or _Runner("baseline", model, device, host, normalization, {})).features()
        results = []
        for runner in runners:
            read_peak = _reset_peak(device)
            features = runner.features()
            peak = read_peak()
            cosine = float(F.cosine_similarity(features, ref_features, dim=1, eps=1e-12).min())
            results.append(
                Measurement(runner.name, batch_size, tuple(times[runner.name]), cosine, peak, compile_seconds[runner.name], runner.config)
            )
    return results


def baseline_config(device: torch.device) -> ExtractConfig:
    """The configuration ``baseline`` and ``naive`` run with (fp32, default layout, nothing folded)."""
    return choose_config(device, **_BASELINE_CONFIG)
