"""Self-supervised linear evaluation transcribed from the research repositories' own scripts.

The protocols keep the pretrained backbone fixed and train a linear layer: some by
``requires_grad = False`` (MoCo, SimCLR), others by running the backbone under ``torch.no_grad()``
and leaving it out of the optimizer, with ``requires_grad`` left ``True`` (DINO, lightly). Adapted
everywhere: no checkpoint is downloaded; ResNets are built with ``weights=None`` and
pretrained-looking BatchNorm statistics, ViTs are one- or two-block timm models at 32px.
"""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch
import torchvision
from torch import nn
from torchvision import transforms

import tlaudit
from tests.realistic.corpus import (
    IMAGENET,
    IMAGENET_MEAN,
    IMAGENET_STD,
    assert_correct,
    assert_named,
    eval_predict,
    images,
    labels,
    rows,
)
from tlaudit.examples._common import pretend_pretrained

LINCLS_TRAIN = transforms.Compose(
    [
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ]
)


def lincls_step(model: nn.Module, images: torch.Tensor, target: torch.Tensor, optimizer: Any) -> None:
    """main_lincls.py ``train``: "switch to eval mode" (BatchNorm statistics are part of the frozen model)."""
    model.eval()
    output = model(images)
    loss = nn.CrossEntropyLoss()(output, target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def moco_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A MoCo checkpoint's ``state_dict``: the query encoder under ``module.encoder_q.``, its MLP fc."""
    return {f"module.encoder_q.{k}": v.clone() for k, v in model.state_dict().items()}


def moco_load(model: nn.Module, checkpoint: dict[str, torch.Tensor], strip: bool = True) -> Any:
    """main_lincls.py: rename moco pre-trained keys, drop the fc, ``load_state_dict(strict=False)``."""
    state_dict = dict(checkpoint)
    if strip:
        for k in list(state_dict.keys()):
            if k.startswith("module.encoder_q") and not k.startswith("module.encoder_q.fc"):
                state_dict[k[len("module.encoder_q.") :]] = state_dict[k]
            del state_dict[k]
    return model.load_state_dict(state_dict, strict=False)


# https://github.com/facebookresearch/moco/blob/main/main_lincls.py: every parameter but fc frozen,
# fc re-initialized (normal 0.01, zero bias), the checkpoint loaded with strict=False and the
# missing keys asserted to be exactly fc's, SGD(lr=30) over the two fc tensors, model.eval()
# during training. Adapted: resnet18, 4 classes.
def moco_main_lincls() -> tlaudit.TransferSetup:
    pretrained = pretend_pretrained(torchvision.models.resnet18())
    model = torchvision.models.resnet18(num_classes=4)
    for name, param in model.named_parameters():
        if name not in ["fc.weight", "fc.bias"]:
            param.requires_grad = False
    model.fc.weight.data.normal_(mean=0.0, std=0.01)
    model.fc.bias.data.zero_()
    checkpoint = {k: v for k, v in moco_state_dict(pretrained).items() if ".fc." not in k}
    msg = moco_load(model, checkpoint)
    assert set(msg.missing_keys) == {"fc.weight", "fc.bias"}
    parameters = list(filter(lambda p: p.requires_grad, model.parameters()))
    assert len(parameters) == 2  # fc.weight, fc.bias
    optimizer = torch.optim.SGD(parameters, 30.0, momentum=0.9, weight_decay=0.0)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=4,
        sample=images(),
        targets=labels(classes=4),
        optimizer=optimizer,
        weights=IMAGENET,
        transform=LINCLS_TRAIN,
        strategy="feature_extraction",
        train_step=lincls_step,
        predict=eval_predict,
        load_result=msg,
    )


# https://github.com/facebookresearch/moco-v3/blob/main/main_lincls.py with a ViT: the linear
# keyword is ``head``; everything else frozen, the head re-initialized, SGD over the head, LR 0.1
# x batch/256, model.eval() in train. Adapted: a 2-block timm ViT at 32px.
def mocov3_vit_lincls() -> tlaudit.TransferSetup:
    model = timm.create_model(
        "vit_small_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2
    )
    linear_keyword = "head"
    for name, param in model.named_parameters():
        if name not in [f"{linear_keyword}.weight", f"{linear_keyword}.bias"]:
            param.requires_grad = False
    getattr(model, linear_keyword).weight.data.normal_(mean=0.0, std=0.01)
    getattr(model, linear_keyword).bias.data.zero_()
    parameters = list(filter(lambda p: p.requires_grad, model.parameters()))
    optimizer = torch.optim.SGD(parameters, 0.1 * 256 / 256, momentum=0.9, weight_decay=0.0)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=5,
        sample=images(2, 32),
        targets=labels(classes=5),
        optimizer=optimizer,
        weights=IMAGENET,
        transform=LINCLS_TRAIN,
        strategy="feature_extraction",
        train_step=lincls_step,
        predict=eval_predict,
    )


# https://github.com/sthalles/SimCLR/blob/master/feature_eval/mini_batch_logistic_regression_evaluator.ipynb:
# resnet18(num_classes=10), every parameter but fc frozen, ``Adam(model.parameters(), lr=3e-4,
# weight_decay=0.0008)`` (the frozen ones included), the loop never calls model.eval(); the
# images are ``ToTensor()`` only, as in the SimCLR pretraining. Adapted: 64px crops, 2 per batch.
def simclr_logistic_regression() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18(num_classes=10))
    for name, param in model.named_parameters():
        if name not in ["fc.weight", "fc.bias"]:
            param.requires_grad = False
    parameters = list(filter(lambda p: p.requires_grad, model.parameters()))
    assert len(parameters) == 2
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=0.0008)

    def step(m: nn.Module, x_batch: torch.Tensor, y_batch: torch.Tensor, opt: Any) -> None:
        logits = m(x_batch)
        loss = nn.CrossEntropyLoss()(logits, y_batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return tlaudit.TransferSetup(
        model=model,
        num_classes=10,
        sample=images(2, normalize=False),
        targets=labels(classes=10),
        optimizer=optimizer,
        transform=transforms.ToTensor(),
        strategy="feature_extraction",
        train_step=step,
        predict=eval_predict,
    )


class DinoLinearEval(nn.Module):
    """eval_linear.py's two objects, the frozen ViT and ``LinearClassifier``, in one module."""

    def __init__(self, model: nn.Module, num_labels: int, n_last_blocks: int = 2) -> None:
        super().__init__()
        self.model = model
        self.n = n_last_blocks
        embed_dim = model.embed_dim * n_last_blocks
        self.linear_classifier = nn.Linear(embed_dim, num_labels)
        self.linear_classifier.weight.data.normal_(mean=0.0, std=0.01)
        self.linear_classifier.bias.data.zero_()

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            intermediate_output = self.model.get_intermediate_layers(inp, self.n, return_prefix_tokens=True)
            output = torch.cat([prefix[:, 0] for _, prefix in intermediate_output], dim=-1)
        return self.linear_classifier(output.flatten(1))


# https://github.com/facebookresearch/dino/blob/main/eval_linear.py: ``model.eval()``, the
# features of the last 4 blocks' CLS tokens under ``torch.no_grad()``, ``LinearClassifier``
# trained by SGD(linear_classifier.parameters(), lr=0.001 x batch/256, momentum 0.9, wd 0) with a
# cosine schedule; the backbone's requires_grad stays True. Adapted: the two objects in one module,
# a 2-block timm ViT at 32px, the last 2 blocks.
def dino_eval_linear() -> tlaudit.TransferSetup:
    vit = timm.create_model(
        "vit_small_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2
    )
    model = DinoLinearEval(vit, num_labels=5)
    model.model.eval()
    optimizer = torch.optim.SGD(model.linear_classifier.parameters(), 0.001 * 256 / 256, momentum=0.9, weight_decay=0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 100, eta_min=0)

    def step(m: nn.Module, inp: torch.Tensor, target: torch.Tensor, opt: Any) -> None:
        m.linear_classifier.train()
        output = m(inp)
        loss = nn.CrossEntropyLoss()(output, target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def predict(m: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        m.eval()
        with torch.no_grad():
            return m(inp)

    return tlaudit.TransferSetup(
        model=model,
        num_classes=5,
        sample=images(2, 32),
        targets=labels(classes=5),
        optimizer=optimizer,
        scheduler=scheduler,
        weights=IMAGENET,
        transform=LINCLS_TRAIN,
        train_step=step,
        predict=predict,
    )


class LightlyLinearClassifier(nn.Module):
    """lightly/utils/benchmarking/linear_classifier.py, ``freeze_model=True``: the features under
    ``torch.no_grad()``, only the classification head handed to the optimizer."""

    def __init__(self, model: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.classification_head = nn.Linear(feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.model.forward(images).flatten(start_dim=1)
        return self.classification_head(features)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        parameters = list(self.classification_head.parameters())
        return torch.optim.SGD(parameters, lr=0.1 * 2 / 256, momentum=0.9, weight_decay=0.0)


# https://github.com/lightly-ai/lightly/blob/master/lightly/utils/benchmarking/linear_classifier.py
# (its benchmarks' linear evaluation): a ResNet-18 without its fc, frozen by no_grad, the model in
# eval mode at each train epoch (``on_train_epoch_start: self.model.eval()``). Adapted: the
# Lightning hooks as plain calls.
def lightly_linear_classifier() -> tlaudit.TransferSetup:
    resnet = pretend_pretrained(torchvision.models.resnet18())
    backbone = nn.Sequential(*list(resnet.children())[:-1])
    module = LightlyLinearClassifier(backbone, 512, 4)
    optimizer = module.configure_optimizers()

    def step(m: nn.Module, images: torch.Tensor, targets: torch.Tensor, opt: Any) -> None:
        m.train()
        m.model.eval()  # on_train_epoch_start
        loss = nn.functional.cross_entropy(m(images), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return tlaudit.TransferSetup(
        model=module,
        num_classes=4,
        sample=images(),
        targets=labels(classes=4),
        optimizer=optimizer,
        weights=IMAGENET,
        transform=LINCLS_TRAIN,
        train_step=step,
        predict=eval_predict,
    )


# https://github.com/facebookresearch/moco/blob/main/main_moco.py fine-tuned end to end (the
# paper's detection transfer and many downstream scripts): the loaded encoder, a new fc, SGD over
# everything at a fine-tuning LR, ``model.train()``.
def moco_full_finetune() -> tlaudit.TransferSetup:
    pretrained = pretend_pretrained(torchvision.models.resnet18())
    model = torchvision.models.resnet18(num_classes=4)
    checkpoint = {k: v for k, v in moco_state_dict(pretrained).items() if ".fc." not in k}
    msg = moco_load(model, checkpoint)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
        m.train()
        loss = nn.CrossEntropyLoss()(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return tlaudit.TransferSetup(
        model=model,
        num_classes=4,
        sample=images(),
        targets=labels(classes=4),
        optimizer=optimizer,
        weights=IMAGENET,
        transform=LINCLS_TRAIN,
        strategy="fine_tuning",
        train_step=step,
        predict=eval_predict,
        load_result=msg,
    )


class LARS(torch.optim.Optimizer):
    """MAE's ``util/lars.py``: LARS, no rate scaling or weight decay for parameters of one dimension or less."""

    def __init__(self, params: Any, lr: float = 0, weight_decay: float = 0, momentum: float = 0.9, trust_coefficient: float = 0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self) -> None:  # type: ignore[override]
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if p.ndim > 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                    param_norm, update_norm = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(
                        param_norm > 0.0, torch.where(update_norm > 0, g["trust_coefficient"] * param_norm / update_norm, one), one
                    )
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                state["mu"].mul_(g["momentum"]).add_(dp)
                p.add_(state["mu"], alpha=-g["lr"])


def mae_vit(num_classes: int, global_pool: bool) -> nn.Module:
    """``models_vit.vit_base_patch16(global_pool=True)``: timm's VisionTransformer whose final ``norm``
    gives way to an ``fc_norm`` after the average pool (MAE deletes ``norm``; timm makes it Identity)."""
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=2, num_classes=num_classes,
        global_pool="avg" if global_pool else "token", fc_norm=global_pool,
    )  # fmt: skip


# https://github.com/facebookresearch/mae/blob/main/main_linprobe.py: the pretrained encoder (no head,
# no fc_norm) loaded with strict=False, and the script asserts ``set(msg.missing_keys) ==
# {'head.weight', 'head.bias', 'fc_norm.weight', 'fc_norm.bias'}``; ``model.head =
# Sequential(BatchNorm1d(affine=False, eps=1e-6), model.head)``; every parameter frozen, then the
# head's unfrozen; LARS over ``model.head.parameters()`` at blr 0.1 x batch 16384 / 256 = 6.4;
# ``train_one_epoch`` calls ``model.train(True)``. Adapted: a two-block ViT at 32px, the encoder's
# checkpoint is its own init; ``head=`` names what the script's assert names new (``declared``).
def mae_main_linprobe(declared: bool = False) -> tlaudit.TransferSetup:
    torch.manual_seed(0)
    model = mae_vit(10, global_pool=True)
    encoder = mae_vit(0, global_pool=False)
    msg = model.load_state_dict(encoder.state_dict(), strict=False)
    assert set(msg.missing_keys) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    timm.layers.trunc_normal_(model.head.weight, std=0.01)
    model.head = nn.Sequential(nn.BatchNorm1d(model.head.in_features, affine=False, eps=1e-6), model.head)
    for _, p in model.named_parameters():
        p.requires_grad = False
    for _, p in model.head.named_parameters():
        p.requires_grad = True
    optimizer = LARS(model.head.parameters(), lr=0.1 * 16384 / 256, weight_decay=0.0)

    def train_one_epoch(model: nn.Module, samples: torch.Tensor, targets: torch.Tensor, optimizer: Any) -> None:
        model.train(True)
        loss = nn.CrossEntropyLoss()(model(samples), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return tlaudit.TransferSetup(
        model=model,
        sample=images(4, 32),
        targets=labels(4, 10),
        num_classes=10,
        optimizer=optimizer,
        weights=IMAGENET,
        transform=LINCLS_TRAIN,
        load_result=msg,
        head=["head", "fc_norm"] if declared else None,
        train_step=train_one_epoch,
        predict=eval_predict,
    )


# The same probe with ``head=["head", "fc_norm"]``: the layers main_linprobe.py's assert names new.
# Source: https://github.com/facebookresearch/mae/blob/main/main_linprobe.py
def mae_main_linprobe_declared() -> tlaudit.TransferSetup:
    return mae_main_linprobe(declared=True)


CORRECT: dict[str, Any] = {
    "mae-main-linprobe": mae_main_linprobe,
    "mae-main-linprobe-new-layers-declared": mae_main_linprobe_declared,
    "moco-main-lincls": moco_main_lincls,
    "mocov3-vit-main-lincls": mocov3_vit_lincls,
    "simclr-logistic-regression-eval": simclr_logistic_regression,
    "dino-eval-linear": dino_eval_linear,
    "lightly-linear-classifier": lightly_linear_classifier,
    "moco-full-finetune": moco_full_finetune,
}


@pytest.mark.parametrize("build", rows(CORRECT))
def test_correct_source_audits_without_errors(build: Any) -> None:
    assert_correct(build)


# -- the sources' own bugs -----------------------------------------------------------------------


# main_lincls.py asserts ``set(msg.missing_keys) == {"fc.weight", "fc.bias"}`` because a
# checkpoint whose keys keep the ``module.encoder_q.`` prefix, loaded with strict=False, loads
# nothing at all and trains a linear layer on random features. Here the prefix is not stripped.
# Source: https://github.com/facebookresearch/moco/blob/main/main_lincls.py
def moco_prefix_not_stripped() -> tlaudit.TransferSetup:
    setup = moco_main_lincls()
    checkpoint = moco_state_dict(pretend_pretrained(torchvision.models.resnet18()))
    msg = moco_load(setup.model, checkpoint, strip=False)
    return setup.replace(load_result=msg)


# main_lincls.py's docstring: "BatchNorm in train mode may revise running mean/std (even if it
# receives no gradient), which are part of the model parameters too" -- the linear protocol
# with ``model.train()`` instead.
# Source: https://github.com/facebookresearch/moco/blob/main/main_lincls.py
def moco_lincls_in_train_mode() -> tlaudit.TransferSetup:
    def step(model: nn.Module, images: torch.Tensor, target: torch.Tensor, optimizer: Any) -> None:
        model.train()
        loss = nn.CrossEntropyLoss()(model(images), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return moco_main_lincls().replace(train_step=step)


# The protocol's backbone must not train (MoCo: "it is not legitimate to change any part of the
# pre-trained model"): a linear evaluation that forgot the freeze loop keeps SGD at lr 30 on the
# whole network.
# Source: https://github.com/facebookresearch/moco/blob/main/main_lincls.py
def lincls_without_freeze() -> tlaudit.TransferSetup:
    setup = moco_main_lincls()
    setup.model.requires_grad_(True)
    optimizer = torch.optim.SGD(setup.model.parameters(), 30.0, momentum=0.9, weight_decay=0.0)
    return setup.replace(optimizer=optimizer)


BUGGY: dict[str, Any] = {
    "moco-lincls-prefix-not-stripped": (moco_prefix_not_stripped, "pretrained-not-loaded", "wrapper prefix"),
    "moco-lincls-bn-in-train-mode": (moco_lincls_in_train_mode, "frozen-bn-train", "running stats"),
    "moco-lincls-without-freeze": (lincls_without_freeze, "frozen-grad", "layer1"),
}


@pytest.mark.parametrize(("build", "check", "fragment"), rows(BUGGY))
def test_the_sources_bug_is_named(build: Any, check: str, fragment: str) -> None:
    assert_named(build, check, fragment)
