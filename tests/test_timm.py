"""timm models (the optional ``timm`` extra): heads from get_classifier(), normalization from pretrained_cfg."""
from __future__ import annotations

import pytest
import torch

import tlaudit

timm = pytest.importorskip("timm")

CASES = [
    ("resnet18", ["fc"], 512),
    ("vit_tiny_patch16_224", ["head"], 192),
    ("convnext_atto", ["head.fc"], 320),
    ("efficientnet_b0", ["classifier"], 1280),
    ("regnetx_002", ["head.fc"], 368),
    ("deit_tiny_distilled_patch16_224", ["head", "head_dist"], 192),
]


@pytest.mark.parametrize(("name", "heads", "features"), CASES, ids=[c[0] for c in CASES])
def test_heads_replace_and_remove(name, heads, features):
    model = timm.create_model(name, pretrained=False).eval()
    size = model.pretrained_cfg["input_size"][-1]
    x = torch.randn(2, 3, size, size)
    assert tlaudit.find_heads(model) == heads
    tlaudit.replace_head(model, 7)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    assert tlaudit.remove_head(model) == features
    if len(heads) > 1:  # distilled: the distillation head stays and is now the only one
        assert tlaudit.find_heads(model) == heads[1:]
        return
    with pytest.raises(tlaudit.HeadNotFoundError, match=r"holds no Linear or 1x1 Conv2d layer"):
        tlaudit.find_heads(model)


def test_expected_normalization_from_a_timm_model_and_its_cfg():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    norm = tlaudit.expected_normalization(model)
    assert (norm.mean, norm.std, norm.crop_size, norm.interpolation) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 224, "bicubic")
    assert tlaudit.expected_normalization(model.pretrained_cfg).matches(norm)


def test_audit_of_a_timm_feature_extraction_setup_is_clean():
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    tlaudit.freeze_backbone(model, batchnorm="frozen")
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4))
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    setup = tlaudit.TransferSetup(
        model=model, num_classes=4, optimizer=optimizer, strategy="feature_extraction", transform=transform,
        weights=model, sample=torch.randn(2, 3, 64, 64),
    )
    report = tlaudit.audit(setup, ignore=["pretrained-not-loaded", "input-range"])
    assert report.findings == () and "normalization" in report.checks_run
