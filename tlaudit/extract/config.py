"""The extraction configuration: what :class:`~tlaudit.FeatureExtractor` runs with, and why.

:func:`choose_config` is a pure function of the device's capabilities, so every branch (a CPU with
or without native bf16, a CUDA device of any compute capability) can be tested on any machine.
:func:`device_capabilities` reads them from the running process.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from tlaudit.extract import DTYPE_NAMES

__all__ = ["COMPILE_MODES", "DTYPES", "Capabilities", "ExtractConfig", "choose_config", "device_capabilities", "with_engine"]

DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_NAMES}
"""Compute dtypes by name; anything but ``float32`` runs the backbone under ``torch.autocast``."""

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes; ``reduce-overhead`` and ``max-autotune`` replay CUDA graphs."""

_CUDAGRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})


@dataclass(frozen=True)
class Capabilities:
    """What the device can do, as :func:`choose_config` needs it.

    Attributes:
        device_type: ``"cpu"`` or ``"cuda"`` (any other type gets the plain fp32 configuration).
        native_bf16: the CPU computes bf16 in hardware (AVX-512 BF16 or AMX); without it oneDNN
            emulates bf16 and autocast makes a CNN several times slower.
        cuda_capability: ``(major, minor)`` of the CUDA device; bf16 and TF32 need 8.0, fp16 tensor cores 7.0.
        has_triton: ``torch.compile``'s GPU backend is installed.
    """

    device_type: str
    native_bf16: bool = False
    cuda_capability: tuple[int, int] | None = None
    has_triton: bool = False


def _cpu_native_bf16() -> bool:
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        caps = get()
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def device_capabilities(device: torch.device | str) -> Capabilities:
    """The capabilities of ``device`` in this process.

    Example:
        >>> device_capabilities("cpu").device_type
        'cpu'
    """
    device = torch.device(device)
    if device.type == "cuda":
        return Capabilities(
            "cuda",
            cuda_capability=tuple(torch.cuda.get_device_capability(device)),  # type: ignore[arg-type]
            has_triton=importlib.util.find_spec("triton") is not None,
        )
    if device.type == "cpu":
        return Capabilities("cpu", native_bf16=_cpu_native_bf16())
    return Capabilities(device.type)


@dataclass(frozen=True)
class ExtractConfig:
    """How the extractor runs the backbone; ``reasons`` says why each choice was made.

    Attributes:
        device: where the backbone runs (``"cpu"``, ``"cuda:0"``).
        dtype: compute dtype name; ``bfloat16``/``float16`` run under ``torch.autocast``. Features
            are always returned as float32.
        channels_last: the extractor's copy of the backbone and every input batch use
            ``torch.channels_last`` (NHWC), the layout oneDNN and cuDNN convolutions prefer.
        fold_batchnorm: eval-mode BatchNorm folded into the preceding convolution in the extractor's
            copy (exact up to rounding; skipped for models ``torch.fx`` cannot trace).
        compile: run the copy through ``torch.compile``.
        compile_mode: the ``torch.compile`` mode; ``reduce-overhead`` and ``max-autotune`` replay CUDA
            graphs, whose outputs the next call overwrites, so the extractor clones them.
        cudnn_benchmark: ``torch.backends.cudnn.benchmark`` during extraction (CUDA).
        tf32: TF32 matmuls and convolutions during extraction (CUDA, compute capability 8.0+).
        engine: what runs the backbone (:mod:`tlaudit.extract.engines`): ``eager`` (PyTorch, with the
            settings above), ``torch-compile``, ``openvino``, ``onnxruntime``, ``tensorrt``.
        reasons: ``(setting, why)`` pairs.
    """

    device: str
    dtype: str = "float32"
    channels_last: bool = False
    fold_batchnorm: bool = False
    compile: bool = False
    compile_mode: str = "default"
    cudnn_benchmark: bool = False
    tf32: bool = False
    engine: str = "eager"
    reasons: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def torch_dtype(self) -> torch.dtype:
        """The compute dtype as a ``torch.dtype``."""
        return DTYPES[self.dtype]

    @property
    def cuda_graphs(self) -> bool:
        """Whether the compiled backbone replays CUDA graphs (its outputs must be cloned)."""
        return self.compile and self.compile_mode in _CUDAGRAPH_MODES and self.device.startswith("cuda")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``reasons`` becomes a mapping."""
        return {
            "device": self.device,
            "dtype": self.dtype,
            "channels_last": self.channels_last,
            "fold_batchnorm": self.fold_batchnorm,
            "compile": self.compile,
            "compile_mode": self.compile_mode if self.compile else None,
            "cudnn_benchmark": self.cudnn_benchmark,
            "tf32": self.tf32,
            "engine": self.engine,
            "reasons": dict(self.reasons),
        }

    def describe(self) -> str:
        """A short label: ``channels-last+bf16`` and so on; ``fp32`` for the plain configuration."""
        parts = [] if self.engine in ("eager", "torch-compile") else [self.engine]
        if self.fold_batchnorm:
            parts.append("fold-bn")
        if self.channels_last:
            parts.append("channels-last")
        if self.dtype != "float32":
            parts.append({"bfloat16": "bf16", "float16": "fp16"}[self.dtype])
        if self.compile:
            parts.append(f"compile({self.compile_mode})")
        if self.tf32:
            parts.append("tf32")
        return "+".join(parts) or "fp32"


_OVERRIDES = ("dtype", "channels_last", "fold_batchnorm", "compile", "compile_mode", "cudnn_benchmark", "tf32")


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    for name, value in overrides.items():
        if name not in _OVERRIDES:
            raise TypeError(f"unknown configuration option: {name!r} (FeatureExtractor); expected one of {', '.join(_OVERRIDES)}")
        if value is None:
            continue
        if name == "dtype":
            if isinstance(value, torch.dtype):
                value = str(value).replace("torch.", "")
            if value not in DTYPES:
                raise ValueError(f"unknown dtype: {value!r} (dtype); expected one of {', '.join(DTYPES)}")
        elif name == "compile_mode":
            if value not in COMPILE_MODES:
                raise ValueError(f"unknown compile mode: {value!r} (compile_mode); expected one of {', '.join(COMPILE_MODES)}")
        elif not isinstance(value, bool):
            raise TypeError(f"{name} must be True, False or None (automatic): {value!r} ({name})")


def choose_config(device: torch.device | str, capabilities: Capabilities | None = None, **overrides: Any) -> ExtractConfig:
    """The fastest configuration that keeps the features (cosine >= 0.99 to fp32) on ``device``.

    * CPU: channels-last and BatchNorm folding always; bf16 autocast only with native bf16 (AVX-512
      BF16 or AMX), since emulated bf16 is slower than fp32; no ``torch.compile`` unless asked
      (measure it with ``tlaudit bench --compile``: on CPU it pays off only on some models).
    * CUDA: channels-last, BatchNorm folding, ``cudnn.benchmark``; bf16 autocast and TF32 from compute
      capability 8.0, fp16 autocast from 7.0; ``torch.compile`` when triton is installed, in
      ``reduce-overhead`` mode (CUDA graphs: no per-kernel launch cost; outputs are cloned).

    Every keyword in ``overrides`` (``dtype``, ``channels_last``, ``fold_batchnorm``, ``compile``,
    ``compile_mode``, ``cudnn_benchmark``, ``tf32``) replaces the automatic choice; ``None`` keeps it.

    Example:
        >>> cfg = choose_config("cuda", Capabilities("cuda", cuda_capability=(9, 0), has_triton=True))
        >>> cfg.describe()
        'fold-bn+channels-last+bf16+compile(reduce-overhead)+tf32'
        >>> choose_config("cpu", Capabilities("cpu", native_bf16=False)).describe()
        'fold-bn+channels-last'
        >>> choose_config("cpu", Capabilities("cpu"), channels_last=False, dtype="bfloat16").describe()
        'fold-bn+bf16'
    """
    _check_overrides(overrides)
    device = torch.device(device)
    caps = capabilities if capabilities is not None else device_capabilities(device)
    reasons: dict[str, str] = {}
    if caps.device_type == "cuda":
        major = (caps.cuda_capability or (0, 0))[0]
        dtype = "bfloat16" if major >= 8 else "float16" if major >= 7 else "float32"
        reasons["dtype"] = f"compute capability {major}.x: " + (
            "bf16 tensor cores" if major >= 8 else "fp16 tensor cores" if major >= 7 else "no tensor cores, fp32"
        )
        auto: dict[str, Any] = {
            "dtype": dtype,
            "channels_last": True,
            "fold_batchnorm": True,
            "compile": caps.has_triton,
            "compile_mode": "reduce-overhead",
            "cudnn_benchmark": True,
            "tf32": major >= 8,
        }
        reasons["compile"] = "triton is installed" if caps.has_triton else "triton is not installed"
        reasons["tf32"] = "compute capability 8.0+" if major >= 8 else "needs compute capability 8.0"
    elif caps.device_type == "cpu":
        auto = {
            "dtype": "bfloat16" if caps.native_bf16 else "float32",
            "channels_last": True,
            "fold_batchnorm": True,
            "compile": False,
            "compile_mode": "default",
            "cudnn_benchmark": False,
            "tf32": False,
        }
        reasons["dtype"] = (
            "the CPU has native bf16 (AVX-512 BF16 or AMX)"
            if caps.native_bf16
            else "no native bf16 on this CPU: emulated bf16 is slower than fp32"
        )
        reasons["compile"] = "on CPU only when measured faster (tlaudit bench --compile)"
    else:
        auto = {name: False for name in _OVERRIDES}
        auto.update(dtype="float32", compile_mode="default")
        reasons["dtype"] = f"no tuned configuration for device type {caps.device_type!r}"
    if auto["channels_last"]:
        reasons["channels_last"] = "NHWC is the layout oneDNN and cuDNN convolutions are fastest in"
    for name, value in overrides.items():
        if value is not None:
            auto[name] = str(value).replace("torch.", "") if name == "dtype" else value
            reasons[name] = "set by the caller"
    return ExtractConfig(device=str(device), reasons=tuple(sorted(reasons.items())), **auto)


def with_overrides(config: ExtractConfig, **overrides: Any) -> ExtractConfig:
    """``config`` with the non-None ``overrides`` applied (validated like :func:`choose_config`'s)."""
    _check_overrides(overrides)
    changes: dict[str, Any] = {k: (str(v).replace("torch.", "") if k == "dtype" else v) for k, v in overrides.items() if v is not None}
    reasons = dict(config.reasons) | {k: "set by the caller" for k in changes}
    return replace(config, reasons=tuple(sorted(reasons.items())), **changes)


def with_engine(config: ExtractConfig, engine: str) -> ExtractConfig:
    """``config`` for ``engine``: a converting engine lays out, folds and compiles on its own.

    The dtype stays when the engine can compute it (OpenVINO bf16 on a CPU with native bf16);
    otherwise it becomes float32, with the reason.

    Example:
        >>> cfg = with_engine(ExtractConfig("cpu", dtype="bfloat16", channels_last=True), "onnxruntime")
        >>> cfg.describe(), dict(cfg.reasons)["dtype"]
        ('onnxruntime', 'onnxruntime computes float32 only')
    """
    from tlaudit.extract.engines import get_engine

    chosen = get_engine(engine)
    reasons = dict(config.reasons)
    changes: dict[str, Any] = {"engine": engine}
    if chosen.native:
        changes.update(chosen.overrides())
        if changes.get("compile"):
            reasons["compile"] = f"engine {engine}"
    else:
        changes.update(channels_last=False, fold_batchnorm=False, compile=False)
        reasons.pop("channels_last", None)
        reasons["fold_batchnorm"] = f"{engine} folds BatchNorm and picks the layout itself"
        if config.dtype not in chosen.dtypes:
            changes["dtype"] = "float32"
            reasons["dtype"] = f"{engine} computes {' or '.join(chosen.dtypes)} only"
    reasons["engine"] = reasons.get("engine", "set by the caller")
    return replace(config, reasons=tuple(sorted(reasons.items())), **changes)


@contextlib.contextmanager
def backend_flags(config: ExtractConfig) -> Iterator[None]:
    """cuDNN benchmark and TF32 set as ``config`` says on CUDA, and restored on exit."""
    if not config.device.startswith("cuda"):
        yield
        return
    cudnn = torch.backends.cudnn
    conv: Any = getattr(cudnn, "conv", None)  # set on torch's module object; its annotations lack it
    matmul = torch.backends.cuda.matmul
    new_api = hasattr(matmul, "fp32_precision")
    saved = (
        (cudnn.benchmark, matmul.fp32_precision, conv.fp32_precision) if new_api else (cudnn.benchmark, matmul.allow_tf32, cudnn.allow_tf32)
    )
    try:
        cudnn.benchmark = config.cudnn_benchmark
        if config.tf32:
            if new_api:
                matmul.fp32_precision = conv.fp32_precision = "tf32"
            else:
                matmul.allow_tf32 = cudnn.allow_tf32 = True
        yield
    finally:
        if new_api:
            cudnn.benchmark, matmul.fp32_precision, conv.fp32_precision = saved
        else:
            cudnn.benchmark, matmul.allow_tf32, cudnn.allow_tf32 = saved
