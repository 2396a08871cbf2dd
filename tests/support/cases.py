"""Case builders for ``tests/auditing/checks/`` and ``tests/auditing/engine/``: real torchvision models, setups, train steps
and predict functions, and the user-state fingerprint.

Every builder returns a fresh :class:`~tlaudit.TransferSetup`. Models are built once per process
(weights=None, never downloaded) and handed out as deep copies, so no case can change another's model.
Inputs are small: batch 2, 64x64 images, except Inception v3 (299, its auxiliary head needs it in
training mode), the real ViT-B/32 (224) and a one-layer ViT (32).
"""

from __future__ import annotations

import copy
import functools
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import tlaudit
from tlaudit.examples._common import pixels as _example_pixels
from tlaudit.examples._common import pretend_pretrained

__all__ = [
    "NC",
    "RESNET18_WEIGHTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Case",
    "model",
    "size_of",
    "pixels",
    "normalized",
    "make",
    "fingerprint",
    "fingerprint_diff",
    "pretend_pretrained",
    "perturb_layernorm",
    "warm_up",
    "trainable",
    "step_keep_zero_grads",
    "step_main_output_only",
    "predict_inference",
]

NC = 5
"""Classes of the new task in every case."""

RESNET18_WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Case:
    """A setup for one check.

    ``match`` is searched (``re.search``) in the message of a finding of the check, whose severity
    must be ``severity`` (the check's default when None). ``count`` is the exact number of findings
    of the check, when given. ``raises`` is the ``SetupError`` message a full audit must raise instead
    of returning (the setup is unusable for another check), with the user's state still unchanged.
    ``xfail`` marks a case the library gets wrong today (strict; only wrong findings or an unexpected
    ``SetupError`` count as the expected failure, a changed fingerprint still fails), in every test of
    the case; ``xfail_full`` only in the full-audit test.
    """

    id: str
    build: Callable[[], tlaudit.TransferSetup]
    match: str = ""
    severity: str | None = None
    count: int | None = None
    raises: str | None = None
    xfail: str | None = None
    xfail_full: str | None = None


# -- the test environment --------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One intra-op thread per worker: the suite runs under xdist on a shared two-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- models ----------------------------------------------------------------------------------------

SIZES = {"inception_v3": 299, "vit_b_32": 224, "vit_tiny": 32}


def size_of(name: str) -> int:
    """The input side length the cases use for ``name``."""
    return SIZES.get(name, 64)


def _vgg11_narrow() -> nn.Module:
    """VGG-11 (``torchvision.models.VGG``, configuration "A") with its classifier narrowed to 256 units.

    Same modules and names as ``vgg11()`` (``features``, ``avgpool``, ``classifier.0`` .. ``classifier.6``
    with dropout at ``classifier.2`` and ``classifier.5``); the two 4096-wide layers (120M parameters)
    would cost seconds per case on a CPU, and no check depends on their width.
    """
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["A"])
    with torch.device("meta"):
        vgg = torchvision.models.VGG(features, init_weights=False)
    vgg.classifier[0] = nn.Linear(512 * 7 * 7, 256)
    vgg.classifier[3] = nn.Linear(256, 256)
    vgg.classifier[6] = nn.Linear(256, 1000)
    assert not any(p.is_meta for p in vgg.parameters())
    return vgg


_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "vgg11": _vgg11_narrow,
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(weights=None),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(weights=None),
    "densenet121": lambda: torchvision.models.densenet121(weights=None),
    "squeezenet1_1": lambda: torchvision.models.squeezenet1_1(weights=None),
    "inception_v3": lambda: torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False),
    "googlenet": lambda: torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False),
    "vit_b_32": lambda: torchvision.models.vit_b_32(weights=None),
    "vit_tiny": lambda: torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=1000
    ),
}


@functools.cache
def _template(name: str) -> nn.Module:
    torch.manual_seed(0)
    return _BUILDERS[name]()


def model(name: str, *, head: bool = True, pretrained: bool = True) -> nn.Module:
    """A fresh copy of torchvision's ``name`` (training mode, everything trainable).

    ``head``: replace the head(s) for :data:`NC` classes. ``pretrained``: stand in for loaded weights
    (non-initial BatchNorm statistics; LayerNorm affine terms moved off 1/0 for models without BatchNorm).
    """
    m = copy.deepcopy(_template(name))
    if head:
        tlaudit.replace_head(m, NC)
    if pretrained:
        pretend_pretrained(m)
        if not any(isinstance(x, nn.BatchNorm2d) for x in m.modules()):
            perturb_layernorm(m)
    return m


def perturb_layernorm(m: nn.Module) -> nn.Module:
    """Move LayerNorm weights and biases off their initial 1 and 0, as trained weights have them."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in m.modules():
            if isinstance(module, nn.LayerNorm) and module.weight is not None:
                module.weight.add_(torch.randn(module.weight.shape, generator=g) * 0.1)
                module.bias.add_(torch.randn(module.bias.shape, generator=g) * 0.1)
    return m


def warm_up(m: nn.Module, size: int, optimizer: torch.optim.Optimizer | None = None) -> None:
    """One forward and backward (and ``optimizer.step()``) before the audit: every parameter gets a ``.grad``."""
    m.train()
    x = normalized(size)
    out = m(x)
    logits = out[0] if isinstance(out, tuple) else out
    F.cross_entropy(logits, torch.arange(2) % logits.shape[1]).backward()
    if optimizer is not None:
        optimizer.step()


# -- train steps and predict functions cases of several modules use --------------------------------


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


def step_keep_zero_grads(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
    """A train step that zeroes every gradient in place (``set_to_none=False``): stale grads become zeros."""
    m.train()
    m.zero_grad(set_to_none=False)
    F.cross_entropy(_logits(m(x)), y).backward()
    opt.step()


def step_main_output_only(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
    """A loss over the main output only: auxiliary heads get no gradient."""
    m.train()
    opt.zero_grad()
    F.cross_entropy(_logits(m(x)), y).backward()
    opt.step()


def predict_inference(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(m):
        return m(x)


def trainable(m: nn.Module) -> list[nn.Parameter]:
    return [p for p in m.parameters() if p.requires_grad]


# -- inputs ----------------------------------------------------------------------------------------


@functools.cache
def _pixels(size: int) -> torch.Tensor:
    return _example_pixels(batch=2, size=size)


def pixels(size: int = 64) -> torch.Tensor:
    """Two real photographs as 0..1 float pixels (ToTensor output, no normalization)."""
    return _pixels(size).clone()


def normalized(size: int = 64) -> torch.Tensor:
    """:func:`pixels` normalized once with the ImageNet mean/std, as ``weights.transforms()`` does."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels(size) - mean) / std


def make(m: nn.Module, size: int = 64, **fields: Any) -> tlaudit.TransferSetup:
    """A setup of ``m`` for :data:`NC` classes with a normalized batch of two and labels ``[0, 1]``."""
    fields.setdefault("num_classes", NC)
    fields.setdefault("sample", normalized(size))
    if "targets" not in fields:
        fields["targets"] = torch.arange(2) % fields["num_classes"]
    return tlaudit.TransferSetup(model=m, **fields)


# -- what the user owns, bit for bit ---------------------------------------------------------------


def _copy(value: Any) -> Any:
    """A deep copy that keeps tensors' values (and dtype, shape) and records their identity."""
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value), value.detach().clone())
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value) if not hasattr(value, "_fields") else tuple(_copy(v) for v in value)
    if callable(value):
        return ("callable", id(value))
    return copy.deepcopy(value)


def _hooks(obj: Any) -> dict[str, int]:
    names = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks_with_kwargs",
        "_state_dict_hooks",
        "_load_state_dict_pre_hooks",
        "_post_accumulate_grad_hooks",
    )
    return {n: len(getattr(obj, n) or {}) for n in names if hasattr(obj, n)}


def fingerprint(setup: tlaudit.TransferSetup) -> dict[str, Any]:
    """Everything of the user's an audit could touch, copied: compare two with :func:`fingerprint_diff`."""
    import numpy

    m = setup.model
    fp: dict[str, Any] = {}
    fp["modules"] = [(name, id(mod), type(mod).__name__, mod.training, _hooks(mod)) for name, mod in m.named_modules()]
    fp["params"] = [
        (
            name,
            id(p),
            p.detach().clone(),
            p.requires_grad,
            None if p.grad is None else (id(p.grad), p.grad.detach().clone()),
            _hooks(p),
        )
        for name, p in m.named_parameters()
    ]
    fp["buffers"] = [(name, id(b), b.clone()) for name, b in m.named_buffers()]
    opt = setup.optimizer
    if opt is not None:
        fp["optimizer.state"] = [(id(p), _copy(dict(state))) for p, state in opt.state.items()]
        fp["optimizer.param_groups"] = [
            ({k: _copy(v) for k, v in g.items() if k != "params"}, [id(p) for p in g["params"]]) for g in opt.param_groups
        ]
        fp["optimizer.defaults"] = _copy(opt.defaults)
    if setup.scheduler is not None:
        fp["scheduler.state_dict"] = _copy(setup.scheduler.state_dict())
        fp["scheduler.last_lr"] = list(setup.scheduler.get_last_lr())
    for name in ("sample", "targets"):
        t = getattr(setup, name)
        fp[name] = None if t is None else (id(t), t.clone(), t.requires_grad)
    fp["rng.torch"] = torch.get_rng_state()
    fp["rng.python"] = random.getstate()
    fp["rng.numpy"] = numpy.random.get_state()
    fp["grad_enabled"] = torch.is_grad_enabled()
    fp["inference_mode"] = torch.is_inference_mode_enabled()
    from torch.nn.modules import module as _module

    fp["global_hooks"] = [
        len(getattr(_module, n))
        for n in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks")
        if hasattr(_module, n)
    ]
    return fp


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        # bit for bit (NaN equals NaN, -0.0 differs from 0.0)
        return bool(torch.equal(a.detach().reshape(-1).view(torch.uint8), b.detach().reshape(-1).view(torch.uint8)))
    if "numpy" in sys.modules and isinstance(a, sys.modules["numpy"].ndarray):
        return bool(sys.modules["numpy"].array_equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def fingerprint_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, item by item (empty: nothing changed)."""
    diffs = []
    for key in before.keys() | after.keys():
        a, b = before.get(key), after.get(key)
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for x, y in zip(a, b):
                if not _same(x, y):
                    label = x[0] if isinstance(x, tuple) and x and isinstance(x[0], str) else repr(x)[:80]
                    diffs.append(f"{key}: {label}")
        elif not _same(a, b):
            diffs.append(key)
    return sorted(diffs)
