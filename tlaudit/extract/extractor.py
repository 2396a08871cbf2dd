"""``FeatureExtractor``: a frozen backbone run as fast as the device allows, without changing its features."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from tlaudit._names import closest, unwrap
from tlaudit.evaluation import inference, training_flags_kept
from tlaudit.extract._run import aggregate_rate, data_length, progress_bar, rank_and_world
from tlaudit.extract.config import ExtractConfig, backend_flags, choose_config, with_engine, with_overrides
from tlaudit.extract.engines import get_engine
from tlaudit.extract.engines._built import Built
from tlaudit.extract.inputs import batches, normalize_uint8, prefetch, shard_range
from tlaudit.extract.storage import ChunkWriter, Features
from tlaudit.normalization import Normalization, expected_normalization

__all__ = ["FeatureExtractor"]


class _PreLogits(nn.Module):
    """A timm model's pooled pre-logits features: ``forward_head(forward_features(x), pre_logits=True)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)  # type: ignore[operator]


def _node_backbone(model: nn.Module, node: str) -> nn.Module:
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    with training_flags_kept(model):  # create_feature_extractor sets every module to the top module's mode
        try:
            return create_feature_extractor(model, return_nodes={node: "features"})
        except ValueError as err:
            names = get_graph_node_names(model)[1]
            near = closest(node, names)
            hint = f"; closest: {', '.join(near)}" if near else ""
            raise ValueError(
                f"no graph node named: {node!r} (node){hint}; hint: torchvision.models.feature_extraction.get_graph_node_names(model)"
            ) from err


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and output:
        return _first_tensor(next(iter(output.values())))
    if isinstance(output, (tuple, list)) and output:
        return _first_tensor(output[0])
    raise TypeError(f"the backbone returned no tensor: {type(output).__name__} (model output)")


def _fingerprint(module: nn.Module) -> tuple[tuple[int, int, int], ...]:
    """Identity, storage and version of every parameter and buffer: changes when the weights do."""
    tensors = [*module.parameters(), *module.buffers()]
    return tuple((id(t), t.data_ptr(), t._version) for t in tensors)


def _fold_batchnorm(module: nn.Module) -> tuple[nn.Module, bool, str]:
    """A copy of ``module`` with BatchNorm folded into convolutions, whether it was, and why (not)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return copy.deepcopy(module), False, "no BatchNorm layer to fold"
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module), True, "eval-mode BatchNorm folded into the preceding convolution"
    except Exception as err:  # fx cannot trace every model: fall back to an unfolded copy
        return copy.deepcopy(module), False, f"torch.fx cannot trace the model: {type(err).__name__}"


class FeatureExtractor:
    """Run a backbone over images in eval mode under ``torch.inference_mode()``, as fast as is safe.

    The backbone is ``model`` itself (after :func:`~tlaudit.remove_head`), the output of graph node
    ``node`` (torchvision's ``create_feature_extractor``), or, for a timm model (one with
    ``forward_features`` and ``forward_head``), its pooled pre-logits features.

    The configuration comes from :func:`~tlaudit.extract.choose_config` for the device; each keyword
    in ``overrides`` (``dtype``, ``channels_last``, ``fold_batchnorm``, ``compile``, ``compile_mode``,
    ``cudnn_benchmark``, ``tf32``) replaces a choice, or pass a whole ``config``.

    The user's model is never changed. Channels-last weights, folded BatchNorm, another device or
    ``torch.compile`` run on the extractor's own copy of the backbone, rebuilt when the model's
    parameters or buffers change (their version counters tell); it costs one more copy of the weights.
    Without any of them the model itself runs in eval mode, and every module's training flag is
    restored after each call.

    Args:
        model: the backbone, or the model to take ``node`` from.
        node: a graph node name (``"layer4"``, ``"avgpool"``, ``"flatten"``) whose output are the features.
        weights: what the pretrained weights expect for uint8 input (a torchvision weights enum or name,
            a timm model, ``{"mean": ..., "std": ...}``: see :func:`~tlaudit.expected_normalization`);
            a timm model's own ``pretrained_cfg`` is used by default.
        device: where to run (default: where the model's parameters are).
        config: a complete configuration instead of the automatic one.
        engine: what runs the backbone: ``eager`` (default), ``torch-compile``, ``openvino``,
            ``onnxruntime``, ``tensorrt`` (:mod:`tlaudit.extract.engines`), or ``auto``: the first
            batch measures every available engine and keeps the fastest whose features reach
            cosine >= 0.99 to fp32 (:meth:`select_engine`; the choice and why in :attr:`choice`).

    Example:
        >>> import torchvision, tlaudit
        >>> model = torchvision.models.resnet18()
        >>> _ = tlaudit.remove_head(model)
        >>> fx = FeatureExtractor(model, dtype="float32")
        >>> fx(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 512])
        >>> model.training  # the user's model is left as it was
        True
    """

    def __init__(
        self,
        model: nn.Module,
        node: str | None = None,
        *,
        weights: Any = None,
        device: torch.device | str | None = None,
        config: ExtractConfig | None = None,
        engine: str = "eager",
        **overrides: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} (model)")
        if node is not None and not isinstance(node, str):
            raise TypeError(f"node must be a graph node name, got {type(node).__name__}: {node!r} (node)")
        inner = unwrap(model)
        if node is not None:
            self.backbone = _node_backbone(inner, node)
        elif callable(getattr(inner, "forward_features", None)) and callable(getattr(inner, "forward_head", None)):
            self.backbone = _PreLogits(inner)
        else:
            self.backbone = inner
        self.model = model
        ref = next(iter(inner.parameters()), None)
        self.device = torch.device(device) if device is not None else (ref.device if ref is not None else torch.device("cpu"))
        if config is not None and not isinstance(config, ExtractConfig):
            raise TypeError(f"config must be an ExtractConfig, got {type(config).__name__} (config)")
        base = config if config is not None else choose_config(self.device)
        self._config = with_overrides(base, **overrides)
        self._options: dict[str, Any] = {"node": node, "weights": weights, "device": self.device, "config": config, **overrides}
        self._auto = engine == "auto"
        self._delegate: FeatureExtractor | None = None
        self.choice: Any = None
        """With ``engine="auto"``: the :class:`~tlaudit.extract.engines.auto.EngineChoice` (after the first batch)."""
        if not self._auto:
            self._config = with_engine(self._config, engine)
            get_engine(engine).check(self.device.type)
        self._built: Built | None = None
        if weights is None and callable(getattr(inner, "forward_features", None)) and getattr(inner, "pretrained_cfg", None):
            weights = inner
        self.normalization: Normalization | None = expected_normalization(weights) if weights is not None else None
        self._prepared: nn.Module | None = None
        self._runner: Any = None
        self._fingerprint: tuple[tuple[int, int, int], ...] | None = None
        self._batch: int | None = None
        self._prepare()

    @property
    def config(self) -> ExtractConfig:
        """The configuration in use, with the reason for each choice (``auto``: the chosen engine's)."""
        return self._delegate.config if self._delegate is not None else self._config

    def select_engine(self, example: torch.Tensor, **options: Any) -> Any:
        """With ``engine="auto"``: measure the candidates on ``example`` and adopt the fastest that keeps the features.

        Called by the first batch when not called before; ``options`` go to
        :func:`~tlaudit.extract.engines.auto.select_engine` (``candidates``, ``rounds``, ``cache``).
        Returns the :class:`~tlaudit.extract.engines.auto.EngineChoice`.
        """
        from tlaudit.extract.engines.auto import select_engine

        if not self._auto:
            raise ValueError(f"select_engine needs engine='auto'; this extractor runs {self._config.engine!r} (engine)")

        def make(name: str, **extra: Any) -> FeatureExtractor:
            return FeatureExtractor(self.model, **(self._options | extra), engine=name)

        self.choice = select_engine(make, example, self.device, **options)
        self._delegate = self.choice.extractor
        return self.choice

    def _needs_copy(self) -> bool:
        cfg = self._config
        if not get_engine(cfg.engine).native:
            return False
        ref = next(iter(self.backbone.parameters()), None)
        moved = ref is not None and ref.device != self.device
        return cfg.channels_last or cfg.fold_batchnorm or cfg.compile or moved

    def _prepare(self) -> None:
        """Build the extractor's copy (or decide to run the model itself) for the current weights."""
        self._fingerprint = _fingerprint(self.backbone)
        if not self._auto and not get_engine(self._config.engine).native:
            self._built = Built(get_engine(self._config.engine), self.backbone, self._config)
        if not self._needs_copy():
            self._prepared = self._runner = None
            return
        with training_flags_kept(self.backbone), torch.no_grad():
            self.backbone.eval()
            if self._config.fold_batchnorm:
                own, folded, why = _fold_batchnorm(self.backbone)
                reasons = dict(self._config.reasons) | {"fold_batchnorm": why}
                self._config = dataclasses.replace(self._config, fold_batchnorm=folded, reasons=tuple(sorted(reasons.items())))
            else:
                own = copy.deepcopy(self.backbone)
        own = own.eval().requires_grad_(False).to(self.device)
        if self._config.channels_last:
            own = own.to(memory_format=torch.channels_last)
        self._prepared = own
        self._runner = torch.compile(own, mode=self._config.compile_mode, dynamic=False) if self._config.compile else own
        self._batch = None

    def _ensure_current(self) -> None:
        if _fingerprint(self.backbone) != self._fingerprint:
            self._prepare()

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        self._ensure_current()
        with backend_flags(self._config):
            if self._prepared is None:
                with inference(self.backbone):
                    yield
            else:
                yield

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__} (images)")
        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:
            if self.normalization is None:
                raise ValueError(
                    "uint8 images need the weights' mean and std: weights=None (FeatureExtractor); "
                    "pass weights= (a weights enum, a timm model or {'mean': ..., 'std': ...})"
                )
            mean = torch.tensor(self.normalization.mean)
            std = torch.tensor(self.normalization.std)
            return normalize_uint8(images, mean, std, channels_last=self._config.channels_last)
        if not images.is_floating_point():
            raise TypeError(f"images must be uint8 or floating point, got {images.dtype} (images)")
        if self._config.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._auto:
            if self._delegate is None:
                self.select_engine(images)
            assert self._delegate is not None  # set by select_engine
            with self._delegate._running():
                return self._delegate._forward(images)
        x = self._input(images)
        if self._built is not None:
            with torch.inference_mode():
                return self._built(x)
        count = x.shape[0]
        if self._config.compile:  # pad a short last batch: one shape, no recompilation
            self._batch = self._batch or count
            if count < self._batch:
                x = torch.cat([x, x.new_zeros((self._batch - count, *x.shape[1:]))])
        cfg = self._config
        run = self._runner if self._runner is not None else self.backbone
        autocast = torch.autocast(self.device.type, dtype=cfg.torch_dtype) if cfg.dtype != "float32" else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            if cfg.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            out = _first_tensor(run(x))
        out = out[:count]
        if out.dtype != torch.float32:
            return out.float()  # a new tensor: safe from the next CUDA graph replay too
        return out.clone() if cfg.cuda_graphs else out  # a CUDA graph overwrites its output on the next replay

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features (float32, on the extractor's device) of one batch of normalized floats or uint8 pixels."""
        with self._running():
            return self._forward(images)

    def extract(
        self,
        data: Any,
        *,
        batch_size: int = 64,
        output: str | os.PathLike[str] | None = None,
        chunk_size: int = 4096,
        num_workers: int = 0,
        progress: bool | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> Features:
        """Features of every sample of ``data``, with their indices; in memory or as chunks in ``output``.

        ``data``: a ``(N, C, H, W)`` tensor (float or uint8), a map-style ``Dataset`` or a ``DataLoader``
        without shuffling. Under ``torch.distributed`` (``torchrun``), or with ``rank`` and
        ``world_size``, this process takes its contiguous shard only: every sample is extracted by
        exactly one rank, with no padding. With ``output`` the features go to disk in ``.npy``
        chunks of ``chunk_size`` samples (see :mod:`tlaudit.extract.storage`); a rerun skips the chunks
        already written. ``progress``: a tqdm bar (default: when stderr is a terminal, on rank 0).

        Example:
            >>> import torchvision, tlaudit
            >>> model = torchvision.models.resnet18()
            >>> _ = tlaudit.remove_head(model)
            >>> out = FeatureExtractor(model).extract(torch.randn(5, 3, 32, 32), batch_size=2)
            >>> out.features.shape, out.indices.tolist()
            (torch.Size([5, 512]), [0, 1, 2, 3, 4])
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int: {batch_size!r} (batch_size)")
        rank, world_size = rank_and_world(rank, world_size)
        total = data_length(data)
        shard = shard_range(total, rank, world_size)
        writer, done = None, 0
        if output is not None:
            manifest = {
                "samples": total,
                "shard_start": shard.start,
                "shard_stop": shard.stop,
                "world_size": world_size,
                "config": self._config.to_dict(),
            }
            writer = ChunkWriter(output, rank=rank, manifest=manifest, chunk_size=chunk_size)
            done = min(writer.resume(), len(shard))
        pin = self.device.type == "cuda"
        _, source = batches(data, shard[done:], batch_size=batch_size, pin_memory=pin, num_workers=num_workers)
        bar = progress_bar(len(shard) - done, progress, rank)
        rows, idx, count = [], [], 0
        started = time.perf_counter()
        selecting = self._auto and self._delegate is None
        with self._running():
            for images, indices in prefetch(source, self.device):
                features = self._forward(images).cpu()
                if selecting and bar is not None:  # the first batch measured the engines: restart the bar's clock
                    bar.reset()
                selecting = False
                count += len(indices)
                idx.append(indices)
                if writer is not None:
                    writer.add(features, indices)
                else:
                    rows.append(features)
                if bar is not None:
                    bar.update(len(indices))
        elapsed = time.perf_counter() - started
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
        rate = count / elapsed if elapsed > 0 else 0.0
        features = torch.cat(rows) if rows else torch.empty(0)
        indices = torch.cat(idx) if idx else torch.empty(0, dtype=torch.int64)
        return Features(features, indices, rate, aggregate_rate(count, elapsed, rate), None if output is None else str(output), done)
