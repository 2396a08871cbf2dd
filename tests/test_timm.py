"""timm models (the optional ``timm`` extra): heads through get_classifier()/reset_classifier(), the data
config timm resolves, its transform pipelines (prefetcher included), its freeze(), and model names in the CLI."""

from __future__ import annotations

import pytest
import torch

import tlaudit
from tlaudit.cli import ExitCode, main
from tlaudit.normalization import deferred_normalization, find_normalizations

timm = pytest.importorskip("timm")
from timm.data import create_transform, resolve_model_data_config  # noqa: E402
from timm.data.loader import PrefetchLoader  # noqa: E402
from timm.utils.model import freeze as timm_freeze  # noqa: E402
from torchvision.transforms import CenterCrop, Resize  # noqa: E402

CASES = [
    ("resnet18", ["fc"], 512),
    ("vit_tiny_patch16_224", ["head"], 192),
    ("convnext_atto", ["head.fc"], 320),
    ("efficientnet_b0", ["classifier"], 1280),
    ("regnetx_002", ["head.fc"], 368),
    ("deit_tiny_distilled_patch16_224", ["head", "head_dist"], 192),
]
FAMILIES = ["resnet18", "vit_tiny_patch16_224", "convnext_atto", "efficientnet_b0"]


@pytest.mark.parametrize(("name", "heads", "features"), CASES, ids=[c[0] for c in CASES])
def test_heads_replace_and_remove(name, heads, features):
    model = timm.create_model(name, pretrained=False).eval()
    size = model.pretrained_cfg["input_size"][-1]
    x = torch.randn(2, 3, size, size)
    assert tlaudit.find_heads(model) == heads
    tlaudit.replace_head(model, 7)  # through reset_classifier: timm's own bookkeeping follows
    assert model.num_classes == 7
    assert tlaudit.find_heads(model) == heads
    classifiers = model.get_classifier()
    for layer in classifiers if isinstance(classifiers, tuple) else (classifiers,):
        assert layer.out_features == 7 and layer.weight.requires_grad
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    assert tlaudit.remove_head(model) == features
    with torch.no_grad():
        assert model(x).shape == (2, features)  # a distilled DeiT loses both heads, so it still runs
    with pytest.raises(
        tlaudit.HeadNotFoundError,
        match=r"holds no Linear or 1x1 Conv2d layer \((Identity|ClassifierHead|NormMlpClassifierHead); removed\?\)",
    ):
        tlaudit.find_heads(model)


def test_replace_head_keeps_the_heads_dtype():
    model = timm.create_model("regnetx_002", pretrained=False).to(torch.float64)
    tlaudit.replace_head(model, 3)
    assert model.head.fc.weight.dtype == torch.float64
    assert model.eval()(torch.randn(1, 3, 32, 32, dtype=torch.float64)).shape == (1, 3)


def test_an_explicit_head_name_bypasses_reset_classifier():
    model = timm.create_model("convnext_atto", pretrained=False)
    tlaudit.replace_head(model, 4, head="head.fc")
    assert model.head.fc.out_features == 4 and model.num_classes == 4


@pytest.mark.parametrize("name", FAMILIES)
def test_expected_normalization_is_what_timm_resolves_and_its_eval_transform_does(name):
    model = timm.create_model(name, pretrained=False)
    config = resolve_model_data_config(model)
    norm = tlaudit.expected_normalization(model)
    assert norm.mean == pytest.approx(config["mean"]) and norm.std == pytest.approx(config["std"])
    assert (norm.crop_size, norm.interpolation, norm.crop_pct, norm.crop_mode) == (
        config["input_size"][-1],
        config["interpolation"],
        config["crop_pct"],
        config["crop_mode"],
    )
    assert norm.source == f"timm.data.resolve_model_data_config({type(model).__name__})"
    steps = create_transform(**config).transforms
    resize = next(s for s in steps if isinstance(s, Resize))
    crop = next(s for s in steps if isinstance(s, CenterCrop))
    assert (resize.size, crop.size[-1]) == (norm.resize_size, norm.crop_size)
    assert tlaudit.expected_normalization(model.pretrained_cfg).matches(norm)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "convnext_atto"])
def test_find_normalization_reads_create_transform_pipelines(name, training):
    model = timm.create_model(name, pretrained=False)
    transform = create_transform(**resolve_model_data_config(model), is_training=training)
    found = find_normalizations(transform)
    assert len(found) == 1 and found[0].matches(tlaudit.expected_normalization(model))
    assert deferred_normalization(transform) is None


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_a_prefetcher_pipeline_defers_normalization_to_the_prefetch_loader(training):
    model = timm.create_model("convnext_atto", pretrained=False)
    config = resolve_model_data_config(model)
    transform = create_transform(**config, is_training=training, use_prefetcher=True)
    assert tlaudit.find_normalization(transform) is None  # not in this transform ...
    assert deferred_normalization(transform) == "timm PrefetchLoader"  # ... done by the prefetcher
    loader = PrefetchLoader(torch.utils.data.DataLoader([]), mean=config["mean"], std=config["std"], device=torch.device("cpu"))
    on_device = tlaudit.find_normalization(loader)
    assert on_device.on_device and on_device.source == "PrefetchLoader (on the device)"
    assert on_device.matches(tlaudit.expected_normalization(model))
    assert deferred_normalization(loader) is None


def test_audit_of_a_timm_feature_extraction_setup_is_clean():
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    tlaudit.freeze_backbone(model, batchnorm="frozen")
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4))
    transform = create_transform(**resolve_model_data_config(model))
    setup = tlaudit.TransferSetup(
        model=model,
        num_classes=4,
        optimizer=optimizer,
        strategy="feature_extraction",
        transform=transform,
        weights=model,
        sample=torch.randn(2, 3, 64, 64),
    )
    report = tlaudit.audit(setup, ignore=["pretrained-not-loaded", "input-range"])
    assert report.findings == () and "normalization" in report.checks_run


@pytest.mark.parametrize(
    ("name", "frozen"),
    [("resnet18", ["conv1", "bn1", "layer1", "layer2"]), ("efficientnet_b0", ["conv_stem", "bn1", "blocks.0", "blocks.1"])],
)
def test_timm_freeze_and_its_frozen_batchnorm_audit_clean(name, frozen):
    """timm's freeze() sets requires_grad=False and swaps BatchNorm for FrozenBatchNorm2d / FrozenBatchNormAct2d."""
    model = timm.create_model(name, pretrained=False, num_classes=4)
    timm_freeze(model, frozen)
    assert any("FrozenBatchNorm" in type(m).__name__ for m in model.modules())
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4))
    setup = tlaudit.TransferSetup(model=model, num_classes=4, optimizer=optimizer, frozen=frozen, sample=torch.randn(2, 3, 64, 64))
    report = tlaudit.audit(setup)
    assert report.findings == (), report.to_text()
    assert {"frozen-grad", "frozen-changed", "frozen-bn-train"} <= set(report.checks_run)


def test_a_timm_freeze_that_forgets_the_stem_is_caught():
    """The same freeze loop that forgets the stem: frozen-grad names it."""
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    timm_freeze(model, ["layer1", "layer2"])
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4))
    setup = tlaudit.TransferSetup(
        model=model, num_classes=4, optimizer=optimizer, frozen=["conv1", "layer1", "layer2"], sample=torch.randn(2, 3, 64, 64)
    )
    found = tlaudit.audit(setup, select=["frozen-grad"]).findings
    assert [f.message for f in found] == ["`conv1.weight`: meant frozen (TransferSetup.frozen) but requires or receives a gradient"]


def test_pretrained_not_loaded_reads_timm_frozen_batchnorm():
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)  # nothing loaded: statistics at init
    timm_freeze(model, [n for n, _ in model.named_children() if n != "fc"])
    report = tlaudit.audit(tlaudit.TransferSetup(model=model, weights=model), select=["pretrained-not-loaded"])
    assert [f.check for f in report.findings] == ["pretrained-not-loaded"], report.skipped


def test_the_audit_does_not_call_a_prefetcher_pipeline_unnormalized():
    model = timm.create_model("convnext_atto", pretrained=False)
    transform = create_transform(**resolve_model_data_config(model), use_prefetcher=True)
    setup = tlaudit.TransferSetup(model=model, weights=model, transform=transform, sample=torch.randn(2, 3, 64, 64))
    report = tlaudit.audit(setup, select=["normalization"])
    assert report.findings == ()
    assert [(s.check, s.reason) for s in report.skipped] == [
        (
            "normalization",
            "the transform leaves normalization to timm PrefetchLoader on the device; pass that loader as transform= to "
            "compare its mean/std",
        )
    ]


def test_the_audit_compares_the_prefetch_loader_normalization():
    model = timm.create_model("convnext_atto", pretrained=False)
    wrong = PrefetchLoader(torch.utils.data.DataLoader([]), mean=(0.5,) * 3, std=(0.5,) * 3, device=torch.device("cpu"))
    setup = tlaudit.TransferSetup(model=model, weights=model, transform=wrong, sample=torch.randn(2, 3, 64, 64))
    [finding] = tlaudit.audit(setup, select=["normalization"]).findings
    assert finding.message.startswith("the transform normalizes with mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]; the weights")


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_inspect_takes_a_timm_model_name(capsys):
    code, out, _ = _run(capsys, "inspect", "vit_tiny_patch16_224", "--num-classes", "3")
    assert code == ExitCode.OK
    assert out.startswith("VisionTransformer: 5,524,995 parameters, 5,524,995 trainable\n")


def test_cli_timm_prefix_picks_timm_where_torchvision_has_the_same_name(capsys):
    _, torchvision_out, _ = _run(capsys, "inspect", "resnet18")
    code, timm_out, _ = _run(capsys, "inspect", "timm/resnet18")
    assert code == ExitCode.OK
    assert "avgpool" in torchvision_out and "global_pool" not in torchvision_out
    assert "global_pool  SelectAdaptivePool2d" in timm_out


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("timm/vit_tiny_patch16", "unknown timm model: 'timm/vit_tiny_patch16' (MODEL); closest: vit_tiny_patch16_384"),
        (
            "resnet81",
            "unknown torchvision model: 'resnet81' (MODEL); closest: resnet18, resnet152, resnet101; not a timm model either (closest: resnet18",
        ),
    ],
)
def test_cli_unknown_model_names_list_the_closest_of_both_libraries(capsys, model, message):
    code, out, err = _run(capsys, "inspect", model)
    assert code == ExitCode.SETUP_ERROR and out == ""
    assert err.startswith("tlaudit inspect: error: " + message)


def test_freeze_backbone_with_frozen_batchnorm_keeps_a_timm_models_output():
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    tlaudit.freeze_backbone(model, batchnorm="frozen")
    with torch.no_grad():
        after = model.eval()(x)
    torch.testing.assert_close(after, before)
