"""The checks of ``tlaudit/auditing/checks/weights.py``: pretrained-not-loaded.

What they watch: that the pretrained weights were actually loaded. For each check ID, the setups
that must trigger it (``TRIGGERS``) next to the setups that must not (``CLEAN``);
``tests/auditing/checks/_cases.py`` turns the tables into tests.
"""

from __future__ import annotations

import torch
import torchvision

import tlaudit
from tests.support.cases import RESNET18_WEIGHTS, Case, make, model, size_of
from tests.support.check_cases import case_tests

TRIGGERS: dict[str, list[Case]] = {}
CLEAN: dict[str, list[Case]] = {}


# -- pretrained-not-loaded -------------------------------------------------------------------------


def _checkpoint(name: str, *, head: bool = True) -> dict[str, torch.Tensor]:
    """A 'pretrained' checkpoint of ``name``: the stand-in weights' state dict."""
    return model(name, head=head).state_dict()


def pl_fresh_model_with_weights() -> tlaudit.TransferSetup:
    return make(model("resnet18", pretrained=False), weights=RESNET18_WEIGHTS)


def pl_missing_backbone_keys() -> tlaudit.TransferSetup:
    m = model("resnet18", pretrained=False)
    state = {k: v for k, v in _checkpoint("resnet18").items() if not k.startswith("layer4")}
    return make(m, load_result=m.load_state_dict(state, strict=False))


def pl_module_prefixed_keys() -> tlaudit.TransferSetup:
    m = model("resnet18", pretrained=False)
    state = {f"module.{k}": v for k, v in _checkpoint("resnet18").items()}  # saved from DataParallel/DDP
    return make(m, weights=RESNET18_WEIGHTS, load_result=m.load_state_dict(state, strict=False))


def pl_missing_keys_as_dict() -> tlaudit.TransferSetup:
    m = model("densenet121")
    return make(m, load_result={"missing_keys": ["features.conv0.weight"], "unexpected_keys": []})


def pl_vit_layernorm_at_init() -> tlaudit.TransferSetup:
    return make(model("vit_tiny", pretrained=False), size_of("vit_tiny"), weights=torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1)


def pl_efficientnet_fresh() -> tlaudit.TransferSetup:
    return make(model("efficientnet_b0", pretrained=False), weights="EfficientNet_B0_Weights.IMAGENET1K_V1")


def pl_clean_pretend_pretrained() -> tlaudit.TransferSetup:
    return make(model("resnet18"), weights=RESNET18_WEIGHTS)


def pl_clean_only_head_missing() -> tlaudit.TransferSetup:
    m = model("resnet18", pretrained=False)
    state = {k: v for k, v in _checkpoint("resnet18", head=False).items() if not k.startswith("fc.")}
    return make(m, weights=RESNET18_WEIGHTS, load_result=m.load_state_dict(state, strict=False))


def pl_clean_vit_trained_layernorm() -> tlaudit.TransferSetup:
    return make(model("vit_tiny"), size_of("vit_tiny"), weights=torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1)


def pl_clean_vit_b_32() -> tlaudit.TransferSetup:
    m = model("vit_b_32")
    return make(m, size_of("vit_b_32"), weights=torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1)


def pl_clean_googlenet_load_result() -> tlaudit.TransferSetup:
    m = model("googlenet", pretrained=False)
    heads = ("fc.", "aux1.fc2.", "aux2.fc2.")
    state = {k: v for k, v in _checkpoint("googlenet", head=False).items() if not k.startswith(heads)}
    return make(m, weights="GoogLeNet_Weights.IMAGENET1K_V1", load_result=m.load_state_dict(state, strict=False))


def _mae_probe(drop: str = "", declared: bool = False) -> tlaudit.TransferSetup:
    """MAE's linear probe (tests/realistic/test_corpus_ssl.py), its checkpoint without ``drop`` keys."""
    from tests.realistic.test_corpus_ssl import mae_main_linprobe

    setup = mae_main_linprobe(declared=declared)
    if not drop:
        return setup
    checkpoint = {k: v for k, v in setup.model.state_dict().items() if not k.startswith(drop) and not k.startswith(("head.", "fc_norm."))}
    return setup.replace(load_result=setup.model.load_state_dict(checkpoint, strict=False))


def pl_head_replaced_after_the_load() -> tlaudit.TransferSetup:
    """``fc`` missing from the load, then replaced by a new two-layer head: its old keys are gone."""
    m = model("resnet18", pretrained=False, head=False)
    state = {k: v for k, v in _checkpoint("resnet18", head=False).items() if not k.startswith("fc.")}
    result = m.load_state_dict(state, strict=False)
    m.fc = torch.nn.Sequential(torch.nn.Linear(512, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    return make(m, load_result=result)


TRIGGERS["pretrained-not-loaded"] = [
    Case(
        "vit-norm-inside-the-network-missing",
        lambda: _mae_probe(drop="blocks.0.norm1."),
        r"^load_state_dict left \d+ backbone keys missing \(`blocks\.0\.norm1\.weight`, `blocks\.0\.norm1\.bias`",
        severity="error",
    ),
    Case(
        "mae-fc-norm-missing-before-the-head",
        _mae_probe,
        r"^load_state_dict left 2 keys missing \(`fc_norm\.weight`, `fc_norm\.bias`\), after every loaded one",
        severity="warning",
    ),
    Case(
        "mae-unexpected-norm-keys",
        lambda: _mae_probe(declared=True),
        r"^load_state_dict ignored 2 checkpoint keys the model has no place for \(`norm\.weight`, `norm\.bias`\)",
        severity="info",
        count=1,
    ),
    Case(
        "resnet18-fresh-with-weights",
        pl_fresh_model_with_weights,
        r"^weights are declared but all 20 norm layers of the backbone are at their initial values",
        severity="warning",
        count=1,
    ),
    Case(
        "resnet18-missing-backbone-keys",
        pl_missing_backbone_keys,
        r"^load_state_dict left \d+ backbone keys missing \(`layer4\.0\.conv1\.weight`",
        severity="error",
        count=1,
    ),
    Case(
        "resnet18-module-prefixed-keys",
        pl_module_prefixed_keys,
        r"^load_state_dict found \d+ unexpected keys \(`module\.conv1\.weight`, .*\); they carry a wrapper prefix$",
        severity="error",
        count=2,  # and the same keys, unprefixed, are missing
    ),
    Case(
        "densenet121-missing-keys-dict",
        pl_missing_keys_as_dict,
        r"^load_state_dict left 1 backbone key missing \(`features\.conv0\.weight`\)$",
        severity="error",
        count=1,
    ),
    Case(
        "vit-layernorm-at-init",
        pl_vit_layernorm_at_init,
        r"^weights are declared but all 3 norm layers of the backbone are at their initial values",
        severity="warning",
        count=1,
    ),
    Case(
        "efficientnet-fresh-with-weights",
        pl_efficientnet_fresh,
        r"norm layers of the backbone are at their initial values",
        severity="warning",
        count=1,
    ),
]
CLEAN["pretrained-not-loaded"] = [
    Case("resnet18-head-replaced-after-the-load", pl_head_replaced_after_the_load),
    Case("resnet18-pretend-pretrained", pl_clean_pretend_pretrained),
    Case("resnet18-only-head-keys-missing", pl_clean_only_head_missing),
    Case("vit-trained-layernorm", pl_clean_vit_trained_layernorm),
    Case("vit_b_32-trained-layernorm", pl_clean_vit_b_32),
    Case("googlenet-only-head-keys-missing", pl_clean_googlenet_load_result),
]


# -- the tests -------------------------------------------------------------------------------------


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)
