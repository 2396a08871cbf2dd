"""``run_bench`` and its result: modes side by side, speedups, cosine, the sanity check, the renderings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tlaudit.bench.environment import environment, flops_per_image, peak_flops, plausible
from tlaudit.bench.modes import INPUTS, MODES, Measurement, measure_modes
from tlaudit.evaluation import training_flags_kept
from tlaudit.normalization import Normalization, expected_normalization

__all__ = ["BenchReport", "BenchResult", "run_bench"]

MIN_COSINE = 0.99
"""The lowest per-sample cosine similarity to the fp32 features that counts as the same features."""

_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@dataclass(frozen=True)
class BenchResult:
    """One mode at one batch size. JSON keys are the attribute names plus ``images_per_second_spread``.

    Attributes:
        images_per_second: median over the repeats; ``spread`` is ``(min, max)``.
        speedup_vs_baseline: ``images_per_second`` over ``baseline``'s at the same batch size (None
            without a ``baseline`` mode).
        cosine_vs_fp32: the lowest per-sample cosine similarity to ``baseline``'s fp32 features.
        peak_memory_bytes: CUDA: peak allocated during one batch; CPU (Linux): the process's peak
            resident set during one batch (so it includes the model); None where unknown.
        compile_seconds: the first batch's time in compiled modes (compilation), apart from the rates.
        flops_per_second: achieved FLOP rate; ``plausible`` is False when it exceeds the device's ceiling.
        aggregate_images_per_second: under ``torch.distributed``, the sum over ranks; else the median.
    """

    mode: str
    batch_size: int
    images_per_second: float
    spread: tuple[float, float]
    repeats: int
    speedup_vs_baseline: float | None
    cosine_vs_fp32: float
    peak_memory_bytes: int | None
    compile_seconds: float | None
    config: dict[str, Any]
    flops_per_second: float
    plausible: bool
    aggregate_images_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "batch_size": self.batch_size,
            "images_per_second": self.images_per_second,
            "images_per_second_spread": list(self.spread),
            "repeats": self.repeats,
            "speedup_vs_baseline": self.speedup_vs_baseline,
            "cosine_vs_fp32": self.cosine_vs_fp32,
            "peak_memory_bytes": self.peak_memory_bytes,
            "compile_seconds": self.compile_seconds,
            "config": self.config,
            "flops_per_second": self.flops_per_second,
            "plausible": self.plausible,
            "aggregate_images_per_second": self.aggregate_images_per_second,
        }


@dataclass(frozen=True)
class BenchReport:
    """What :func:`run_bench` returns: ``str()`` is the table, ``to_dict()`` the JSON.

    JSON keys: ``model``, ``device``, ``input``, ``image_size``, ``flops_per_image``,
    ``ceiling_flops_per_second``, ``environment``, ``results`` (see :class:`BenchResult`), ``warnings``.
    """

    model: str
    device: str
    input: str
    image_size: int
    flops_per_image: float
    ceiling_flops_per_second: dict[str, float]
    environment: dict[str, Any]
    results: tuple[BenchResult, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "input": self.input,
            "image_size": self.image_size,
            "flops_per_image": self.flops_per_image,
            "ceiling_flops_per_second": dict(self.ceiling_flops_per_second),
            "environment": self.environment,
            "results": [r.to_dict() for r in self.results],
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_table(self) -> str:
        """The results as a table (tabulate, GitHub style) with the device line above it."""
        from tabulate import tabulate

        rows = []
        for r in self.results:
            rows.append(
                [
                    r.mode,
                    r.batch_size,
                    f"{r.images_per_second:,.1f}",
                    f"{r.spread[0]:,.1f}-{r.spread[1]:,.1f}",
                    "" if r.speedup_vs_baseline is None else f"{r.speedup_vs_baseline:.2f}x",
                    f"{r.cosine_vs_fp32:.4f}",
                    _mib(r.peak_memory_bytes),
                    "" if r.compile_seconds is None else f"{r.compile_seconds:.1f}",
                    _label(r.config) + ("" if r.plausible else " IMPOSSIBLE"),
                ]
            )
        headers = ["mode", "batch", "images/s", "spread", "vs baseline", "cosine min", "peak MiB", "compile s", "config"]
        env = self.environment
        head = (
            f"{self.model} on {self.device} ({env.get('device_name')}, {env.get('threads')} threads, "
            f"torch {env.get('torch')}), {self.input} input {self.image_size}px, "
            f"{self.flops_per_image / 1e9:.2f} GFLOP/image"
        )
        lines = [head, "", tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()

    def plot(self, path: str) -> None:
        """Images/s against batch size, one line per mode, saved to ``path`` (needs matplotlib)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ImportError(f"plotting needs matplotlib: {path} (plot); pip install 'tlaudit[plot]'") from err
        fig, ax = plt.subplots(figsize=(6, 4))
        for mode in dict.fromkeys(r.mode for r in self.results):
            points = sorted((r.batch_size, r.images_per_second) for r in self.results if r.mode == mode)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=mode)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s (median)")
        ax.set_title(f"{self.model} on {self.device}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:,.0f}"


def _label(config: dict[str, Any]) -> str:
    engine = config.get("engine", "eager")
    parts = [] if engine in ("eager", "torch-compile") else [engine]
    prefix = "auto: " if config.get("auto") else ""
    if config.get("grad"):
        parts.append("grad")
    if config.get("fold_batchnorm"):
        parts.append("fold-bn")
    if config.get("channels_last"):
        parts.append("channels-last")
    if config.get("dtype") not in (None, "float32"):
        parts.append({"bfloat16": "bf16", "float16": "fp16"}[config["dtype"]])
    if config.get("compile"):
        parts.append(f"compile({config.get('compile_mode')})")
    if config.get("tf32"):
        parts.append("tf32")
    return prefix + ("+".join(parts) or "fp32")


def _check_positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int: {value!r} ({name})")
    return value


def _aggregate(values: list[float], device: torch.device) -> list[float]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    total = torch.tensor(values, dtype=torch.float64, device=on)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.tolist()


def run_bench(
    model: nn.Module,
    *,
    name: str | None = None,
    device: torch.device | str = "cpu",
    batch_sizes: Sequence[int] = (32,),
    image_size: int = 224,
    iters: int = 5,
    warmup: int = 2,
    repeats: int = 3,
    modes: Sequence[str] = ("naive", "baseline", "optimized"),
    input: str = "synthetic",
    weights: Any = None,
    seed: int = 0,
    ceiling: float | None = None,
    **overrides: Any,
) -> BenchReport:
    """Measure ``modes`` of extracting features with ``model`` (a backbone: head removed) side by side.

    ``overrides`` (``dtype``, ``channels_last``, ``compile``, ...) change the ``optimized`` mode's
    configuration. ``weights`` gives the mean/std for uint8 input (default: ImageNet's). ``ceiling``
    replaces the device's peak FLOP/s in the sanity check. The model is moved to ``device`` on a copy
    when it lives elsewhere; its training flags are restored.

    Raises:
        ValueError: an unknown mode or input, fewer than 3 repeats, a non-positive count.
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown mode: {', '.join(map(repr, unknown)) or 'none given'} (modes); expected {', '.join(MODES)}")
    if input not in INPUTS:
        raise ValueError(f"unknown input: {input!r} (input); expected {', '.join(INPUTS)}")
    for value, what in ((iters, "iters"), (warmup, "warmup"), (image_size, "image_size"), *((b, "batch_size") for b in batch_sizes)):
        _check_positive(value, what)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 3:
        raise ValueError(f"repeats must be an int >= 3 (median and spread need three): {repeats!r} (repeats)")
    device = torch.device(device)
    norm: Normalization = expected_normalization(weights if weights is not None else _IMAGENET)
    generator = torch.Generator().manual_seed(seed)
    measured: list[Measurement] = []
    for batch_size in batch_sizes:
        measured += measure_modes(
            model,
            modes=modes,
            device=device,
            batch_size=batch_size,
            image_size=image_size,
            iters=iters,
            warmup=warmup,
            repeats=repeats,
            input=input,
            normalization=norm,
            overrides=overrides,
            generator=generator,
        )
    ref = next(iter(model.parameters()), None)
    probe = torch.zeros(1, 3, image_size, image_size, device=ref.device if ref is not None else "cpu")
    with training_flags_kept(model):
        model.eval()
        flops = flops_per_image(model, probe)
    ceilings = {
        d: ceiling if ceiling is not None else peak_flops(device, d, tf32=d == "float32" and device.type == "cuda")
        for d in ("float32", "bfloat16")
    }
    aggregate = _aggregate([m.images_per_second for m in measured], device)
    results, warnings = [], []
    for m, agg in zip(measured, aggregate):
        base = next((b for b in measured if b.mode == "baseline" and b.batch_size == m.batch_size), None)
        limit = ceilings["bfloat16" if m.config.get("dtype") in ("bfloat16", "float16") else "float32"]
        ok = plausible(m.images_per_second, flops, limit)
        if not ok:
            warnings.append(
                f"{m.mode} at batch {m.batch_size}: {m.images_per_second:,.0f} images/s x {flops / 1e9:.2f} "
                f"GFLOP = {m.images_per_second * flops / 1e12:.1f} TFLOP/s exceeds the device's ceiling of "
                f"{limit / 1e12:.1f} TFLOP/s: a measurement error (missing sync, cached result?)"
            )
        if m.cosine_vs_fp32 < MIN_COSINE:
            warnings.append(f"{m.mode} at batch {m.batch_size}: features differ from fp32: cosine {m.cosine_vs_fp32:.4f} < {MIN_COSINE}")
        results.append(
            BenchResult(
                mode=m.mode,
                batch_size=m.batch_size,
                images_per_second=m.images_per_second,
                spread=(min(m.repeats_ips), max(m.repeats_ips)),
                repeats=len(m.repeats_ips),
                speedup_vs_baseline=m.images_per_second / base.images_per_second if base is not None else None,
                cosine_vs_fp32=m.cosine_vs_fp32,
                peak_memory_bytes=m.peak_memory_bytes,
                compile_seconds=m.compile_seconds,
                config=m.config,
                flops_per_second=m.images_per_second * flops,
                plausible=ok,
                aggregate_images_per_second=agg,
            )
        )
    return BenchReport(
        model=name or type(model).__name__,
        device=str(device),
        input=input,
        image_size=image_size,
        flops_per_image=flops,
        ceiling_flops_per_second=ceilings,
        environment=environment(device),
        results=tuple(results),
        warnings=tuple(warnings),
    )
