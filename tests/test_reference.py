"""Which layers are new: the model against the weights' own architecture (built on the meta device)."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

import tlaudit
from tlaudit.auditing.rules.new_layers import (
    is_adapter_name,
    new_modules,
    reference_model,
)

R18 = torchvision.models.ResNet18_Weights.IMAGENET1K_V1


class LoRALinear(nn.Module):
    """A hand-written LoRA wrapper, shaped as peft's: the frozen ``base_layer`` plus ``lora_A``/``lora_B``."""

    def __init__(self, base: nn.Linear, rank: int = 4) -> None:
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # B = 0: the wrapped layer starts as the pretrained one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.lora_B(self.lora_A(x))


def test_the_reference_is_the_weights_architecture_on_the_meta_device():
    ref = reference_model(R18)
    assert type(ref).__name__ == "ResNet" and next(ref.parameters()).device.type == "meta"
    assert type(reference_model("ViT_B_16_Weights.IMAGENET1K_V1")).__name__ == "VisionTransformer"
    assert reference_model({"mean": [0.5] * 3, "std": [0.5] * 3}) is None
    assert reference_model("NoSuch_Weights.X") is None


def test_a_multi_layer_head_and_a_changed_layer_are_new_and_the_rest_is_not():
    m = torchvision.models.resnet18()
    m.fc = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 5))
    m.layer4[1].conv2 = nn.Conv2d(512, 512, 1, bias=False)  # a changed shape: no longer the pretrained layer
    assert new_modules(m, R18) == ["layer4.1.conv2", "fc"]


def test_frozen_batchnorm_and_parameterless_layers_are_not_new():
    m = tlaudit.replace_head(torchvision.models.resnet18(), 5)
    tlaudit.freeze_backbone(m, batchnorm="frozen")
    m.relu = nn.GELU()
    assert new_modules(m, R18) == ["fc"]


# torchvision's segmentation and detection references build these models with
# ``weights_backbone=`` (ImageNet classification weights) and train the rest from scratch:
# https://github.com/pytorch/vision/tree/main/references/segmentation,
# https://github.com/pytorch/vision/tree/main/references/detection
@pytest.mark.parametrize(
    ("build", "weights", "new"),
    [
        (
            lambda: torchvision.models.segmentation.fcn_resnet50(weights_backbone=None, num_classes=21, aux_loss=True),
            torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
            ["classifier", "aux_classifier"],
        ),
        (  # MobileNet's ``features`` become the ``backbone``: matched under another name
            lambda: torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights_backbone=None, num_classes=21),
            torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
            ["classifier"],
        ),
        (
            lambda: torchvision.models.detection.fasterrcnn_resnet50_fpn(weights_backbone=None, num_classes=3),
            torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
            ["backbone.fpn", "rpn", "roi_heads"],
        ),
    ],
    ids=["fcn-resnet50", "lraspp-mobilenet-v3", "faster-rcnn-resnet50-fpn"],
)
def test_backbone_weights_make_every_layer_outside_the_backbone_new(build, weights, new):
    assert new_modules(build(), weights) == new


def test_weights_of_another_architecture_describe_no_part_of_the_model():
    """ResNet-18 is not ResNet-50's backbone (other widths), MobileNet is not a ResNet: no reference."""
    assert new_modules(torchvision.models.resnet18(), torchvision.models.ResNet50_Weights.IMAGENET1K_V1) == []
    assert new_modules(torchvision.models.mobilenet_v2(), torchvision.models.ResNet50_Weights.IMAGENET1K_V1) == []


def test_lora_adapters_are_new_with_and_without_weights():
    assert is_adapter_name("encoder.layers.0.self_attention.lora_A") and not is_adapter_name("layer1.0.conv1")
    with torch.device("meta"):
        vit = torchvision.models.vit_b_16()
    vit.heads.head = LoRALinear(vit.heads.head)
    assert new_modules(vit, None) == ["heads.head.lora_A", "heads.head.lora_B"]
    assert new_modules(vit, "ViT_B_16_Weights.IMAGENET1K_V1") == ["heads.head"]


def test_new_layers_are_not_pretrained_for_the_lr_ceiling():
    m = torchvision.models.resnet18()
    m.fc = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 3))
    backbone = [p for n, p in m.named_parameters() if not n.startswith("fc.")]
    opt = torch.optim.Adam([{"params": backbone, "lr": 1e-4}, {"params": m.fc.parameters(), "lr": 3e-3}])
    setup = tlaudit.TransferSetup(model=m, num_classes=3, sample=torch.randn(2, 3, 32, 32), optimizer=opt, weights=R18)
    assert tlaudit.audit(setup, select=["lr-threshold"]).findings == ()
    [finding] = tlaudit.audit(setup.replace(weights=None), select=["lr-threshold"]).findings  # no reference: fc.0 looks pretrained
    assert finding.message.startswith("group 1 holds 2 pretrained parameters with lr 0.003 > lr_max 0.001")
    assert tlaudit.audit(setup.replace(weights=None, head=["fc"]), select=["lr-threshold"]).findings == ()


def test_lora_on_a_frozen_backbone_audits_clean_for_feature_extraction():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    for p in model.parameters():
        p.requires_grad = False
    model[2] = LoRALinear(model[2])
    model[4].requires_grad_(True)  # the head
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    setup = tlaudit.TransferSetup(
        model=model, num_classes=4, sample=torch.randn(8, 16), targets=torch.arange(8) % 4, optimizer=opt, strategy="feature_extraction"
    )
    report = tlaudit.audit(setup)
    assert report.errors == [] and not report.by_check("trainable-no-grad"), str(report)
    # the same adapters left frozen by mistake are named
    model[2].lora_A.requires_grad_(False)
    model[2].lora_B.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    report = tlaudit.audit(setup.replace(optimizer=opt), select=["frozen-grad", "head-frozen"])
    assert report.findings == ()  # frozen adapters are not a freezing error...
    assert tlaudit.audit(
        setup.replace(optimizer=opt, head=["2.lora_A", "2.lora_B", "4"]), select=["head-frozen"]
    ).errors  # ...but a frozen declared head is


def test_hugging_face_task_heads_are_new_and_the_base_model_is_not():
    """``from_pretrained`` initializes every child outside the base model for the task: DistilBERT's
    ``pre_classifier`` too, so feature extraction with both trainable audits clean."""
    transformers = pytest.importorskip("transformers")
    from tlaudit.auditing.rules.new_layers import hf_task_heads

    config = transformers.DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64, num_labels=2)
    model = transformers.DistilBertForSequenceClassification(config)
    assert hf_task_heads(model) == ["pre_classifier", "classifier"]
    assert hf_task_heads(torchvision.models.resnet18()) == []
    assert new_modules(model, None) == ["pre_classifier", "classifier"]
    for param in model.base_model.parameters():
        param.requires_grad = False
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step(m, ids, y, opt):
        m.train()
        opt.zero_grad()
        m(input_ids=ids, labels=y).loss.backward()
        opt.step()

    ids = (torch.arange(24).view(2, 12) * 7) % 100
    report = tlaudit.audit(
        tlaudit.TransferSetup(
            model=model,
            num_classes=2,
            sample=ids,
            targets=torch.tensor([0, 1]),
            optimizer=optimizer,
            strategy="feature_extraction",
            train_step=step,
        )
    )
    assert report.errors == [], str(report)
    unfrozen = model.pre_classifier.weight
    assert unfrozen.requires_grad
