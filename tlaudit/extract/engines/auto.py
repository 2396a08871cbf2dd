"""``engine="auto"``: measure every available engine on a reference batch, keep the fastest that is right.

A candidate is kept only when its features reach cosine >= :data:`MIN_COSINE` to the plain fp32
features (eval, no folding, default layout) on the same batch, sample by sample. Rates are medians of
interleaved rounds (each round times every candidate once), so load from other processes hits all
alike. The measurement is cached per model, batch shape, device and library versions in
``$TLAUDIT_CACHE_DIR/engine-choices.json`` (default ``~/.cache/tlaudit``); a cached choice is still
checked for cosine on the current batch before it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tlaudit.extract.engines._interface import ENGINES, EngineUnavailable, get_engine

__all__ = ["MIN_COSINE", "EngineChoice", "EngineMeasurement", "cache_path", "select_engine"]

MIN_COSINE = 0.99
"""The lowest per-sample cosine similarity to fp32 features a candidate may have."""


@dataclass(frozen=True)
class EngineMeasurement:
    """One candidate: its rate (median, images/s), cosine to fp32, build time, and whether it was kept."""

    engine: str
    images_per_second: float | None
    cosine: float | None
    build_seconds: float | None
    kept: bool
    why: str
    config: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "images_per_second": self.images_per_second,
            "cosine": self.cosine,
            "build_seconds": self.build_seconds,
            "kept": self.kept,
            "why": self.why,
            "config": self.config,
        }


@dataclass(frozen=True)
class EngineChoice:
    """What ``auto`` chose (``engine``), why (``reason``), from which measurements, and whether they were cached."""

    engine: str
    reason: str
    measurements: tuple[EngineMeasurement, ...]
    cached: bool
    extractor: Any = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "reason": self.reason,
            "cached": self.cached,
            "seconds": self.seconds,
            "measurements": [m.to_dict() for m in self.measurements],
        }


def cache_path() -> Path:
    """Where measurements are cached: ``$TLAUDIT_CACHE_DIR`` or ``~/.cache/tlaudit``, file ``engine-choices.json``."""
    root = os.environ.get("TLAUDIT_CACHE_DIR") or Path.home() / ".cache" / "tlaudit"
    return Path(root) / "engine-choices.json"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    get = getattr(torch.cpu, "get_capabilities", None)
    return str(get().get("cpu_name", "cpu")) if get is not None else "cpu"


def _key(extractor: Any, example: torch.Tensor, device: torch.device, names: Sequence[str]) -> str:
    shapes = hashlib.sha1()
    for name, tensor in extractor.backbone.state_dict().items():
        shapes.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    parts = {
        "model": type(extractor.model).__name__,
        "params": shapes.hexdigest(),
        "batch": list(example.shape),
        "input": str(example.dtype),
        "device": _device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "engines": {n: get_engine(n).versions() for n in names},
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, key: str, entry: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read(path) | {key: entry}
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only home: the choice is still made, only not remembered
        pass


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(1).float().cpu(), b.flatten(1).float().cpu(), dim=1, eps=1e-12).min())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def select_engine(
    make: Callable[..., Any],
    example: torch.Tensor,
    device: torch.device | str,
    *,
    candidates: Sequence[str] | None = None,
    rounds: int = 3,
    cache: bool | str | os.PathLike[str] = True,
) -> EngineChoice:
    """Measure ``candidates`` (default: every engine available on the device) on ``example``; keep the fastest right one.

    ``make(name, **overrides)`` builds a :class:`~tlaudit.FeatureExtractor` running engine ``name``
    (the reference is ``make("eager", dtype="float32", channels_last=False, fold_batchnorm=False)``).
    ``torch-compile`` is measured only when named in ``candidates``: on CPU its compilation takes
    longer than most extraction jobs gain from it. ``cache``: True (the default file), a path, or
    False (measure every time).

    Raises:
        ValueError: an unknown candidate, or ``rounds`` < 1.
        EngineUnavailable: no candidate ran, or none kept the features.
    """
    device = torch.device(device)
    begun = time.perf_counter()
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int: {rounds!r} (rounds)")
    if candidates is None:
        names = [n for n, e in ENGINES.items() if n != "torch-compile" and e.unavailable(device.type) is None]
    else:
        names = [get_engine(n).name for n in candidates]
    reference = make("eager", dtype="float32", channels_last=False, fold_batchnorm=False)
    ref = reference(example)
    path = None if cache is False else (cache_path() if cache is True else Path(cache))
    key = _key(reference, example, device, names)
    if path is not None:
        entry = _read(path).get(key)
        if entry and entry.get("engine") in names:
            chosen = make(entry["engine"])
            if _cosine(chosen(example), ref) >= MIN_COSINE:
                measured = tuple(EngineMeasurement(**m) for m in entry["measurements"])
                return EngineChoice(
                    entry["engine"], entry["reason"] + " (cached measurement)", measured, True, chosen, time.perf_counter() - begun
                )
    results: dict[str, EngineMeasurement] = {}
    running: dict[str, Any] = {}
    for name in names:
        why = get_engine(name).unavailable(device.type)
        if why is not None:
            results[name] = EngineMeasurement(name, None, None, None, False, why)
            continue
        try:
            started = time.perf_counter()
            fx = make(name)
            cosine = _cosine(fx(example), ref)
            _sync(device)
            build = time.perf_counter() - started
        except (EngineUnavailable, RuntimeError, ValueError, TypeError) as err:
            results[name] = EngineMeasurement(name, None, None, None, False, f"failed: {str(err).splitlines()[0]}")
            continue
        if cosine < MIN_COSINE:
            results[name] = EngineMeasurement(
                name, None, cosine, build, False, f"cosine {cosine:.4f} < {MIN_COSINE} to fp32", fx.config.describe()
            )
            continue
        fx(example)  # a second warm-up call: allocators and autotuners settle
        running[name] = (fx, cosine, build)
    times: dict[str, list[float]] = {name: [] for name in running}
    for _ in range(rounds):
        for name, (fx, _, _) in running.items():
            started = time.perf_counter()
            fx(example)
            _sync(device)
            times[name].append(example.shape[0] / (time.perf_counter() - started))
    for name, (fx, cosine, build) in running.items():
        results[name] = EngineMeasurement(name, statistics.median(times[name]), cosine, build, True, "kept", fx.config.describe())
    kept = [results[n] for n in running]
    if not kept:
        detail = "; ".join(f"{m.engine}: {m.why}" for m in results.values())
        raise EngineUnavailable(f"no engine kept the features on {device}: {detail} (engine='auto')")
    best = max(kept, key=lambda m: m.images_per_second or 0.0)
    others = ", ".join(f"{m.engine} {m.images_per_second:,.1f}" for m in kept if m is not best)
    reason = (
        f"fastest of {len(kept)} engine(s) that keep the features: {best.engine} ({best.config}) "
        f"{best.images_per_second:,.1f} img/s, cosine {best.cosine:.4f} at batch {example.shape[0]}"
        + (f"; {others} img/s" if others else "")
    )
    dropped = [m for m in results.values() if not m.kept]
    if dropped:
        reason += "; not used: " + "; ".join(f"{m.engine} ({m.why})" for m in dropped)
    measured = tuple(results[n] for n in names)
    if path is not None:
        _write(path, key, {"engine": best.engine, "reason": reason, "measurements": [m.to_dict() for m in measured]})
    return EngineChoice(best.engine, reason, measured, False, running[best.engine][0], time.perf_counter() - begun)
