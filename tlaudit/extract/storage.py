"""Features on disk: ``.npy`` chunks with their sample indices, written atomically, resumable.

A run writes into one directory::

    run-00000.json                     rank 0's manifest (sample count, shard, chunk size, config)
    features-00000-000000.npy          rank 0, chunk 0: float32 (rows, ...)
    indices-00000-000000.npy           rank 0, chunk 0: int64 sample indices of those rows

Chunk ``k`` of a rank holds positions ``[k * chunk_size, (k + 1) * chunk_size)`` of the rank's shard.
Each file is written to a temporary name and renamed, the features file last, so a chunk whose
features file exists is complete. A rerun with the same directory skips the complete chunks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["ChunkWriter", "Features", "load_features"]


@dataclass(frozen=True)
class Features:
    """What :meth:`~tlaudit.FeatureExtractor.extract` returns.

    Attributes:
        features: float32 features of the samples this call extracted, one row per index (empty when
            they went to disk: read them with :func:`load_features`).
        indices: int64 indices of the samples this call extracted (a resumed run: only the new ones).
        images_per_second: this process's throughput (images over the wall time of the loop).
        aggregate_images_per_second: under ``torch.distributed``, every rank's images over the slowest
            rank's time; otherwise equal to ``images_per_second``.
        output: the directory the chunks went to, or None.
        skipped: samples not recomputed because a previous run had written them.
    """

    features: torch.Tensor
    indices: torch.Tensor
    images_per_second: float
    aggregate_images_per_second: float
    output: str | None = None
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Counts and rates (not the features) as a JSON-ready dict."""
        return {
            "samples": int(self.indices.numel()),
            "feature_shape": list(self.features.shape[1:]),
            "images_per_second": self.images_per_second,
            "aggregate_images_per_second": self.aggregate_images_per_second,
            "output": self.output,
            "skipped": self.skipped,
        }


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


class ChunkWriter:
    """Writes one rank's features to ``directory`` in chunks of ``chunk_size`` shard positions."""

    def __init__(self, directory: str | os.PathLike[str], *, rank: int, manifest: dict[str, Any], chunk_size: int) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int: {chunk_size!r} (chunk_size)")
        self.directory = Path(directory)
        self.rank = rank
        self.chunk_size = chunk_size
        self.manifest = dict(manifest, chunk_size=chunk_size, rank=rank)
        self._rows: list[np.ndarray] = []
        self._indices: list[np.ndarray] = []
        self._chunk = 0

    def _name(self, kind: str, chunk: int) -> Path:
        return self.directory / f"{kind}-{self.rank:05d}-{chunk:06d}.npy"

    def resume(self) -> int:
        """Check the directory against this run and return how many shard positions are done."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"run-{self.rank:05d}.json"
        keys = ("samples", "shard_start", "shard_stop", "chunk_size", "world_size")
        if path.exists():
            previous = json.loads(path.read_text(encoding="utf-8"))
            changed = [k for k in keys if previous.get(k) != self.manifest.get(k)]
            if changed:
                was = ", ".join(f"{k}={previous.get(k)!r}" for k in changed)
                now = ", ".join(f"{k}={self.manifest.get(k)!r}" for k in changed)
                raise ValueError(
                    f"output holds a different run: {was}, this run has {now} ({self.directory}); use another directory or delete it"
                )
        path.write_text(json.dumps(self.manifest, indent=2, default=str) + "\n", encoding="utf-8")
        while self._name("features", self._chunk).exists():
            self._chunk += 1
        return self._chunk * self.chunk_size

    def add(self, features: torch.Tensor, indices: torch.Tensor) -> None:
        """Buffer a batch; write every chunk that is full."""
        self._rows.append(features.numpy())
        self._indices.append(indices.numpy())
        while sum(len(i) for i in self._indices) >= self.chunk_size:
            self._flush(self.chunk_size)

    def close(self) -> None:
        """Write the last, partial chunk."""
        if self._indices and sum(len(i) for i in self._indices):
            self._flush(None)

    def _flush(self, count: int | None) -> None:
        rows, idx = np.concatenate(self._rows), np.concatenate(self._indices)
        count = len(idx) if count is None else count
        _save(self._name("indices", self._chunk), idx[:count])
        _save(self._name("features", self._chunk), rows[:count])
        self._rows, self._indices = [rows[count:]], [idx[count:]]
        self._chunk += 1


def load_features(directory: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every complete chunk in ``directory`` (all ranks), as ``(features, indices)`` sorted by index.

    Raises:
        FileNotFoundError: the directory holds no chunk.
        ValueError: a sample index appears twice (two runs wrote into one directory).
    """
    directory = Path(directory)
    feature_files = sorted(directory.glob("features-*-*.npy"))
    if not feature_files:
        raise FileNotFoundError(f"no feature chunks in: {str(directory)!r} (directory)")
    rows, idx = [], []
    for path in feature_files:
        rows.append(np.load(path))
        idx.append(np.load(path.with_name(path.name.replace("features-", "indices-", 1))))
    features, indices = np.concatenate(rows), np.concatenate(idx)
    order = np.argsort(indices, kind="stable")
    indices = indices[order]
    repeated = indices[1:][indices[1:] == indices[:-1]]
    if repeated.size:
        raise ValueError(f"sample indices appear more than once: {repeated[:5].tolist()} ({directory})")
    return torch.from_numpy(features[order]), torch.from_numpy(indices)
