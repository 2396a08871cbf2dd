"""Tiny models and model builders shared by the test modules.

Import them as ``from tests.support.helpers import ...`` (``tests`` is a package, so this works with the
project's ``--import-mode=importlib``, with ``python -m pytest`` and under pytest-xdist).

Every model here is small enough to run a real CPU forward in milliseconds. Each documents the names
of its head and of its parts, because the tests assert those names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn.modules import module as _module

from tlaudit import freeze_backbone, param_groups

__all__ = [
    "ALL_TORCHVISION_MODELS",
    "SLOW_MODELS",
    "INPUT_SIZE",
    "TinyCNN",
    "WithGetClassifier",
    "TiedHead",
    "linear_sequential",
    "conv_head_sequential",
    "headless_sequential",
    "build_torchvision",
    "build_torchvision_meta",
    "input_size",
    "meta_input",
    "params_by_id",
    "expected_heads",
    "TINY_PARAMS",
    "trainable",
    "flags",
    "frozen_setup",
]

ALL_TORCHVISION_MODELS: list[str] = torchvision.models.list_models(module=torchvision.models)
"""Every classification builder in ``torchvision.models`` (80 in torchvision 0.29)."""

SLOW_MODELS: frozenset[str] = frozenset(
    {
        "densenet161",
        "densenet169",
        "densenet201",
        "efficientnet_b5",
        "efficientnet_b6",
        "efficientnet_b7",
        "efficientnet_v2_m",
        "efficientnet_v2_l",
        "maxvit_t",
        "regnet_y_128gf",
        "resnet152",
        "swin_v2_s",
        "swin_v2_b",
        "vit_h_14",
        "vit_l_16",
        "vit_l_32",
    }
)
"""The largest builders (by parameters, or by modules: a meta forward costs per BatchNorm/module call).

Tests over every model mark these ``slow`` (``-m "not slow"`` skips them for a quick run).
"""

# The head layer(s) per model family, main head first. Every torchvision builder must fall in one family.
_FAMILY_HEADS: list[tuple[tuple[str, ...], list[str]]] = [
    (("googlenet",), ["fc", "aux1.fc2", "aux2.fc2"]),
    (("inception_v3",), ["fc", "AuxLogits.fc"]),
    (("resnet", "resnext", "wide_resnet", "regnet_", "shufflenet_"), ["fc"]),
    (("vgg", "alexnet"), ["classifier.6"]),
    (("squeezenet",), ["classifier.1"]),
    (("vit_",), ["heads.head"]),
    (("swin_",), ["head"]),
    (("convnext_",), ["classifier.2"]),
    (("mobilenet_v3_",), ["classifier.3"]),
    (("efficientnet_", "mobilenet_v2", "mnasnet"), ["classifier.1"]),
    (("densenet",), ["classifier"]),
    (("maxvit_",), ["classifier.5"]),
]


def expected_heads(name: str) -> list[str]:
    """The head layer name(s) of torchvision's ``name``, main head first (see ``_FAMILY_HEADS``)."""
    for prefixes, heads in _FAMILY_HEADS:
        if name.startswith(prefixes):
            return heads
    raise AssertionError(f"no expected head for torchvision model {name!r}: add its family to _FAMILY_HEADS")


INPUT_SIZE: dict[str, int] = {"inception_v3": 299}
"""Input side length per model where it is not 224."""

# Builders that warn (FutureWarning) unless told how to initialise; False keeps the default init and is quiet.
_QUIET_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"init_weights": False},
    "inception_v3": {"init_weights": False},
}


class TinyCNN(nn.Module):
    """Conv + BatchNorm stem, two ``nn.Sequential`` stages, a Linear head ``fc``; input ``(N, 3, H, W)``.

    Parameters (in order): ``stem.0.weight``, ``stem.1.weight``, ``stem.1.bias`` (BatchNorm),
    ``layer1.0.weight``, ``layer1.1.weight``, ``layer1.1.bias``, ``layer1.3.weight``, ``layer1.3.bias``,
    ``layer2.0.weight``, ``layer2.0.bias``, ``layer2.1.weight``, ``layer2.1.bias``, ``fc.weight``, ``fc.bias``.
    BatchNorm layers: ``stem.1``, ``layer1.1``. It stores ``num_classes`` like many torchvision models.
    """

    def __init__(self, num_classes: int = 5, width: int = 8, head_bias: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.layer2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes, bias=head_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


TINY_PARAMS: list[str] = [
    "stem.0.weight",
    "stem.1.weight",
    "stem.1.bias",
    "layer1.0.weight",
    "layer1.1.weight",
    "layer1.1.bias",
    "layer1.3.weight",
    "layer1.3.bias",
    "layer2.0.weight",
    "layer2.0.bias",
    "layer2.1.weight",
    "layer2.1.bias",
    "fc.weight",
    "fc.bias",
]
"""The parameter names of :class:`TinyCNN`, in order."""


class WithGetClassifier(nn.Module):
    """A timm-style model: the head is ``logits`` (unconventional name), reported by ``get_classifier()``.

    It also has a backbone ``fc`` projection, so the naming conventions alone would pick the wrong layer.
    With ``broken=True``, ``get_classifier()`` raises, and the conventions are all that is left.
    """

    def __init__(self, num_classes: int = 3, broken: bool = False) -> None:
        super().__init__()
        self.broken = broken
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 6)
        self.logits = nn.Linear(6, num_classes)

    def get_classifier(self) -> nn.Module:
        if self.broken:
            raise RuntimeError("this get_classifier cannot answer")
        return self.logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(torch.relu(self.fc(self.features(x))))


class TiedHead(nn.Module):
    """Token classifier whose head ``fc`` shares its weight with the embedding ``embed`` (weight tying).

    ``embed.weight`` and ``fc.weight`` are one Parameter of ``vocab * dim`` elements; ``fc.bias`` has
    ``vocab``. Unique parameter count: ``vocab * dim + vocab``. Input: LongTensor ``(N, T)``.
    """

    def __init__(self, vocab: int = 10, dim: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, vocab)
        self.fc.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.embed(tokens).mean(1)))


def linear_sequential(num_classes: int = 4) -> nn.Sequential:
    """``nn.Sequential`` of ``Flatten``, ``Linear(12, 16)``, ``ReLU``, ``Linear(16, num_classes)``; head ``3``.

    Input ``(N, 3, 2, 2)``; no conventional head attribute, so the head is found as the last Linear.
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, num_classes))


def conv_head_sequential(num_classes: int = 5, bias: bool = True) -> nn.Sequential:
    """SqueezeNet-style ``nn.Sequential``: 3x3 conv (3->8), ReLU, 1x1 conv head ``2`` (8->classes), pool, flatten."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, num_classes, 1, bias=bias),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def headless_sequential() -> nn.Sequential:
    """A feature extractor with no Linear and no 1x1 Conv2d: nothing looks like a head."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def input_size(name: str) -> int:
    """The input side length ``name`` needs (299 for inception_v3, else 224)."""
    return INPUT_SIZE.get(name, 224)


def meta_input(name: str, batch: int = 2) -> torch.Tensor:
    """An image batch on the meta device for ``name``: shapes only, no data, no compute."""
    side = input_size(name)
    return torch.empty(batch, 3, side, side, device="meta")


def build_torchvision(name: str, **kwargs: Any) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None)`` on the current device, without init warnings."""
    return torchvision.models.get_model(name, weights=None, **{**_QUIET_KWARGS.get(name, {}), **kwargs})


@contextlib.contextmanager
def _parameters_to_meta() -> Iterator[None]:
    """Move every parameter and buffer to the meta device as it is registered on a module."""

    def parameter_hook(module: nn.Module, name: str, param: nn.Parameter | None) -> nn.Parameter | None:
        if param is None or param.is_meta:
            return None
        return nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    def buffer_hook(module: nn.Module, name: str, buffer: torch.Tensor | None) -> torch.Tensor | None:
        if buffer is None or buffer.is_meta:
            return None
        return buffer.to("meta")

    handles = [
        _module.register_module_parameter_registration_hook(parameter_hook),
        _module.register_module_buffer_registration_hook(buffer_hook),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def build_torchvision_meta(name: str, **kwargs: Any) -> nn.Module:
    """The real torchvision architecture ``name`` with all parameters and buffers on the meta device.

    Built under ``torch.device("meta")``. Builders that compute their layout with tensor data (the
    RegNets call ``.tolist()``) raise NotImplementedError there; those are built on the CPU with every
    parameter and buffer moved to meta as it is registered, so no weights are allocated or initialised
    (``regnet_y_128gf`` has 645M parameters) and the result is the same architecture.
    """
    try:
        with torch.device("meta"):
            return build_torchvision(name, **kwargs)
    except NotImplementedError:
        with _parameters_to_meta():
            model = build_torchvision(name, **kwargs)
        return model.to("meta")


def params_by_id(params: Any) -> dict[int, nn.Parameter]:
    """``{id(p): p}`` for an iterable of parameters (identity, not value, is what optimizers care about)."""
    return {id(p): p for p in params}


def trainable(model: nn.Module) -> list[str]:
    """The names of the parameters of ``model`` that require a gradient, in order."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def flags(model: nn.Module) -> dict[str, bool]:
    """``requires_grad`` of every parameter of ``model``, by name."""
    return {n: p.requires_grad for n, p in model.named_parameters()}


def frozen_setup(seed: int = 0):
    """A :class:`TinyCNN` with its backbone frozen and an AdamW over ``param_groups`` (lr 1e-3, weight decay 0.01)."""
    torch.manual_seed(seed)
    model = TinyCNN()
    freeze_backbone(model)
    opt = torch.optim.AdamW(param_groups(model, 1e-3, weight_decay=0.01))
    return model, opt
