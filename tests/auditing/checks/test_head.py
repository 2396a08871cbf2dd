"""The checks of ``tlaudit/auditing/checks/head.py``: head-frozen, head-size.

What they watch: that the new head is trainable and as wide as the new task. For each check ID, the
setups that must trigger it (``TRIGGERS``) next to the setups that must not (``CLEAN``);
``tests/auditing/checks/_cases.py`` turns the tables into tests.
"""

from __future__ import annotations

import torch
from torch import nn

import tlaudit
from tests.support import field_cases as fc
from tests.support.cases import NC, Case, make, model, size_of, trainable
from tests.support.check_cases import case_tests

TRIGGERS: dict[str, list[Case]] = {}
CLEAN: dict[str, list[Case]] = {}


# -- head-frozen -----------------------------------------------------------------------------------


def hf_freeze_after_replace() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze(m)  # after replace_head: the new head is frozen too
    return make(m, strategy="feature_extraction")


def hf_pattern_covers_head() -> tlaudit.TransferSetup:
    m = model("efficientnet_b0")
    tlaudit.freeze(m, "features")
    return make(m, frozen=["features", "classifier"], optimizer=torch.optim.AdamW(trainable(m), lr=1e-4))


def hf_head_lr_zero() -> tlaudit.TransferSetup:
    m = model("mobilenet_v3_small")
    return make(m, optimizer=torch.optim.AdamW(tlaudit.param_groups(m, 1e-4, head_lr=0.0)))


def hf_vit() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    tlaudit.freeze(m)
    return make(m, size_of("vit_tiny"), strategy="feature_extraction")


def hf_googlenet_aux_frozen() -> tlaudit.TransferSetup:
    m = model("googlenet", head=False)
    tlaudit.freeze(m)
    tlaudit.replace_head(m, NC, aux=False)  # only the main head is new (trainable); aux1.fc2, aux2.fc2 stay frozen
    return make(m, strategy="feature_extraction")


def hf_clean_resnet() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(tlaudit.param_groups(m, 0.01), lr=0.01))


def hf_clean_squeezenet() -> tlaudit.TransferSetup:
    m = model("squeezenet1_1")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", frozen=["features"], optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def hf_clean_vit_param_groups() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    return make(m, size_of("vit_tiny"), optimizer=torch.optim.AdamW(tlaudit.param_groups(m, 1e-5, head_lr=1e-3)))


TRIGGERS["head-frozen"] = [
    Case(
        "resnet18-freeze-after-replace",
        hf_freeze_after_replace,
        r"^head `fc` has requires_grad=False \(`fc\.weight`, `fc\.bias`\)",
        count=1,
    ),
    Case(
        "efficientnet-patterns-cover-head",
        hf_pattern_covers_head,
        r"^head `classifier\.1` is covered by TransferSetup\.frozen patterns \['features', 'classifier'\]",
        severity="warning",
        count=1,
    ),
    Case(
        "mobilenet-head-lr-zero",
        hf_head_lr_zero,
        r"^head `classifier\.3` sits in optimizer group\(s\) \[\d+(, \d+)*\] with lr 0",
        count=1,
    ),
    Case(
        "vit-freeze-after-replace",
        hf_vit,
        r"^head `heads\.head` has requires_grad=False",
        count=1,
    ),
    Case(
        "googlenet-aux-heads-frozen",
        hf_googlenet_aux_frozen,
        r"^head `aux2\.fc2` has requires_grad=False",
        count=2,
    ),
]


def hf_clean_warmup_from_zero() -> tlaudit.TransferSetup:
    """A linear warm-up (transformers' get_linear_schedule_with_warmup shape) starts every group at lr 0."""
    m = model("resnet18")
    opt = torch.optim.AdamW(tlaudit.param_groups(m, 1e-4))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, step / 500))
    return make(m, optimizer=opt, scheduler=sched)


def hf_zero_lr_never_raised() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(tlaudit.param_groups(m, 1e-3, head_lr=0.0), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    return make(m, optimizer=opt, scheduler=sched)


TRIGGERS["head-frozen"].append(
    Case(
        "resnet18-head-lr-zero-with-scheduler",
        hf_zero_lr_never_raised,
        r"^head `fc` sits in optimizer group\(s\) \[\d+(, \d+)*\] with lr 0, and the scheduler never raises it$",
        count=1,
    )
)


def hf_head_with_norm(norm_at_identity: bool) -> tlaudit.TransferSetup:
    """A head of a LayerNorm and a linear layer with the norm frozen: at its identity affine (weight 1,
    bias 0, as MAE's linear probe leaves its new fc_norm) or with a learned one."""
    m = model("resnet18")
    m.fc = nn.Sequential(nn.LayerNorm(512), nn.Linear(512, NC))
    if not norm_at_identity:
        with torch.no_grad():
            m.fc[0].weight.mul_(1.5)
    m.fc[0].requires_grad_(False)
    return make(m, head=["fc"], optimizer=torch.optim.SGD(trainable(m), lr=0.01))


TRIGGERS["head-frozen"] += [
    Case(
        "head-norm-frozen-at-its-identity-affine",
        lambda: hf_head_with_norm(True),
        r"^head `fc` holds a norm layer frozen at its identity affine \(`fc\.0\.weight`, `fc\.0\.bias`: weight 1, bias 0\)",
        severity="info",
        count=1,
    ),
    Case(
        "head-norm-frozen-with-a-learned-affine",
        lambda: hf_head_with_norm(False),
        r"^head `fc` has requires_grad=False \(`fc\.0\.weight`, `fc\.0\.bias`\)$",
        count=1,
    ),
]
CLEAN["head-frozen"] = [
    Case("resnet18-linear-warmup-from-zero", hf_clean_warmup_from_zero),
    Case("resnet18-freeze-backbone", hf_clean_resnet),
    Case("squeezenet-freeze-backbone", hf_clean_squeezenet),
    Case("vit-param-groups", hf_clean_vit_param_groups),
]


# -- head-size -------------------------------------------------------------------------------------


def hs_resnet_head_1000() -> tlaudit.TransferSetup:
    return make(model("resnet18", head=False))


def hs_inception_aux_unreplaced() -> tlaudit.TransferSetup:
    m = model("inception_v3", head=False)
    m.fc = nn.Linear(2048, NC)  # AuxLogits.fc is left at 1000 classes
    return make(m, size_of("inception_v3"))


def hs_googlenet_aux_unreplaced() -> tlaudit.TransferSetup:
    m = model("googlenet", head=False)
    m.fc = nn.Linear(1024, NC)  # aux1.fc2 and aux2.fc2 are left at 1000 classes
    return make(m)


def hs_squeezenet_head_1000() -> tlaudit.TransferSetup:
    return make(model("squeezenet1_1", head=False))


def hs_vit_head_1000() -> tlaudit.TransferSetup:
    return make(model("vit_tiny", head=False), size_of("vit_tiny"))


def hs_clean_inception() -> tlaudit.TransferSetup:
    return make(model("inception_v3"), size_of("inception_v3"))


def hs_clean_googlenet() -> tlaudit.TransferSetup:
    return make(model("googlenet"))


def hs_clean_squeezenet() -> tlaudit.TransferSetup:
    return make(model("squeezenet1_1"))


def hs_clean_mobilenet() -> tlaudit.TransferSetup:
    return make(model("mobilenet_v3_small"))


TRIGGERS["head-size"] = [
    Case(
        "resnet18-head-1000",
        hs_resnet_head_1000,
        r"^output `output` has shape \(2, 1000\), expected 5 columns \(num_classes\)",
        count=1,
    ),
    Case(
        "inception-aux-unreplaced",
        hs_inception_aux_unreplaced,
        r"^output `aux_logits` has shape \(2, 1000\), expected 5 columns",
        count=1,
    ),
    Case(
        "googlenet-aux-unreplaced",
        hs_googlenet_aux_unreplaced,
        r"^output `aux_logits1` has shape \(2, 1000\)",
        count=2,
    ),
    Case("squeezenet-head-1000", hs_squeezenet_head_1000, r"^output `output` has shape \(2, 1000\)", count=1),
    Case("vit-head-1000", hs_vit_head_1000, r"^output `output` has shape \(2, 1000\)", count=1),
]
CLEAN["head-size"] = [
    Case("inception-replace-head", hs_clean_inception),
    Case("googlenet-replace-head", hs_clean_googlenet),
    Case("squeezenet-replace-head", hs_clean_squeezenet),
    Case("mobilenet-replace-head", hs_clean_mobilenet),
]


# -- the tests -------------------------------------------------------------------------------------


def hf_declared_frozen_on_purpose() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze(m)  # the whole model, head included, declared frozen through frozen=
    return make(m, frozen=["layer1", "fc"])


TRIGGERS["head-frozen"] += [
    Case(
        "resnet-head-declared-frozen",
        hf_declared_frozen_on_purpose,
        r"^head `fc` has requires_grad=False \(`fc\.weight`, `fc\.bias`\), as TransferSetup\.frozen patterns "
        r"\['layer1', 'fc'\] declare: it will not train$",
        severity="warning",
        count=1,
    ),
]

# -- detection models: the class-score layers, never box regression ------------------------------
TRIGGERS["head-size"] += [
    Case(
        "detection-predictor-without-background",
        fc.det_predictor_without_background,
        r"^`roi_heads\.box_predictor\.cls_score` scores 2 classes, expected 3 \(num_classes, background included",
        count=1,
    ),
    Case(
        "retinanet-classification-head",
        lambda: fc.det_retinanet(5),
        r"^`head\.classification_head\.cls_logits` scores 5 classes, expected 3",
        count=1,
    ),
]
TRIGGERS["head-size"] += [
    Case(
        "ssdlite-coco-head-kept",
        lambda: fc.detection_setup(fc.ssdlite(None), weights="SSDLite320_MobileNet_V3_Large_Weights.COCO_V1"),
        r"^`head\.classification_head` scores 91 classes, expected 3",
        count=1,
    ),
]
CLEAN["head-size"] += [
    Case(
        "ssdlite-classification-head-replaced",
        lambda: fc.detection_setup(fc.ssdlite(3), weights="SSDLite320_MobileNet_V3_Large_Weights.COCO_V1"),
    ),
    Case("faster-rcnn-box-predictor", fc.det_tutorial),
    Case("retinanet-right-classes", fc.det_retinanet),
    Case("segmentation-per-pixel-logits", fc.seg_setup),
]


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)


# -- which outputs are logits (by where they come from) ---------------------------------------------


class FeaturesAndLogits(nn.Module):
    """A re-identification style model: ``forward`` returns ``(embedding, logits)``."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.backbone = model("resnet18")
        self.backbone.fc = nn.Identity()
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.backbone(x)
        return embedding, self.fc(embedding)


def _features_and_logits(classes: int) -> tlaudit.TransferSetup:
    m = FeaturesAndLogits(classes)

    def step(mm: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        mm.train()
        opt.zero_grad()
        _, logits = mm(x)
        torch.nn.functional.cross_entropy(logits, y % logits.shape[1]).backward()
        opt.step()

    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.001), head="fc", train_step=step)


def test_feature_outputs_are_not_judged_as_logits():
    report = tlaudit.audit(_features_and_logits(NC), select=["head-size"])
    [note] = report.findings
    assert note.severity is tlaudit.Severity.INFO and note.subject == "fc"
    assert note.message == (
        "the model returns 2 tensors (`output[0]`, `output[1]`): read the outputs of `fc` as logits, the others as features (not checked)"
    )


def test_a_wrong_head_beside_feature_outputs_is_still_named():
    report = tlaudit.audit(_features_and_logits(NC + 2), select=["head-size"])
    errors = [f.message for f in report.errors]
    assert errors == [f"output `fc` has shape (2, {NC + 2}), expected {NC} columns (num_classes)"]
