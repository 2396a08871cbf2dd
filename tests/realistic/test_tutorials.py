"""Setups written the way tutorials and notebooks write them: the audit is clean where the code is
right, and names the bug where it is wrong.

Each builder transcribes a common pattern: PyTorch's transfer-learning tutorial (a freeze loop,
``model.train()`` on everything, StepLR per epoch), notebooks that call ``model.forward``, heads of
several layers, prints in setup code, long warm-up schedules, wrapped models, binary heads with
``BCEWithLogitsLoss``, labels that crash the step. Models are built with ``weights=None`` and given
pretrained-looking BatchNorm statistics (real code passes ``weights=...``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision import transforms

import tlaudit
from tlaudit.examples._common import pretend_pretrained

WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
TUTORIAL_TRANSFORM = transforms.Compose(
    [
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]
)


def batch(n: int = 4, classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 64, 64, generator=g), torch.arange(n) % classes


def tutorial_train_step(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, optimizer: Any) -> None:
    """The loop body of PyTorch's "Transfer Learning for Computer Vision" tutorial."""
    criterion = nn.CrossEntropyLoss()
    model.train()  # on everything, frozen backbone included
    optimizer.zero_grad()
    with torch.set_grad_enabled(True):
        outputs = model(inputs)
        _, preds = torch.max(outputs, 1)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()


def tutorial_predict(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(inputs)


def notebook_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: Any) -> None:
    """A notebook's step: ``model.forward(x)`` and the functional loss."""
    model.train()
    optimizer.zero_grad()
    loss = F.cross_entropy(model.forward(x), y)
    loss.backward()
    optimizer.step()


# -- correct code: no error ---------------------------------------------------------------------


def tutorial_feature_extraction() -> tlaudit.TransferSetup:
    model_conv = pretend_pretrained(torchvision.models.resnet18())  # real: resnet18(weights=WEIGHTS)
    for param in model_conv.parameters():
        param.requires_grad = False
    num_ftrs = model_conv.fc.in_features
    model_conv.fc = nn.Linear(num_ftrs, 2)
    optimizer_conv = torch.optim.SGD(model_conv.fc.parameters(), lr=0.001, momentum=0.9)
    exp_lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer_conv, step_size=7, gamma=0.1)
    x, y = batch()
    return tlaudit.TransferSetup(
        model=model_conv,
        num_classes=2,
        sample=x,
        targets=y,
        optimizer=optimizer_conv,
        scheduler=exp_lr_scheduler,
        weights=WEIGHTS,
        transform=TUTORIAL_TRANSFORM,
        strategy="feature_extraction",
        train_step=tutorial_train_step,
        predict=tutorial_predict,
    )


def tutorial_fine_tuning() -> tlaudit.TransferSetup:
    model_ft = pretend_pretrained(torchvision.models.resnet18())
    model_ft.fc = nn.Linear(model_ft.fc.in_features, 2)
    optimizer_ft = torch.optim.SGD(model_ft.parameters(), lr=0.001, momentum=0.9)
    x, y = batch()
    return tlaudit.TransferSetup(
        model=model_ft,
        num_classes=2,
        sample=x,
        targets=y,
        optimizer=optimizer_ft,
        scheduler=torch.optim.lr_scheduler.StepLR(optimizer_ft, step_size=7, gamma=0.1),
        weights=WEIGHTS,
        transform=TUTORIAL_TRANSFORM,
        strategy="fine_tuning",
        train_step=tutorial_train_step,
        predict=tutorial_predict,
    )


def notebook_multilayer_head() -> tlaudit.TransferSetup:
    print("building the model...")  # setup code prints; the CLI keeps them off the report
    model = pretend_pretrained(torchvision.models.resnet18())
    model.fc = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 3))
    backbone = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    optimizer = torch.optim.Adam([{"params": backbone, "lr": 1e-4}, {"params": model.fc.parameters(), "lr": 3e-3}])
    x, y = batch(classes=3)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=3,
        sample=x,
        targets=y,
        optimizer=optimizer,
        weights=WEIGHTS,
        train_step=notebook_step,
        predict=tutorial_predict,
    )


def long_warmup_schedule() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    model.fc = nn.Linear(512, 2)
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4, head_lr=1e-3, weight_decay=0.05))
    warmup, total = 2000, 20000  # transformers' get_linear_schedule_with_warmup, as a LambdaLR
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / warmup if s < warmup else max(0.0, (total - s) / (total - warmup))
    )
    x, y = batch()
    return tlaudit.TransferSetup(
        model=model, num_classes=2, sample=x, targets=y, optimizer=optimizer, scheduler=schedule, weights=WEIGHTS, strategy="fine_tuning"
    )


def data_parallel_with_prefixed_patterns() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    model.fc = nn.Linear(512, 2)
    tlaudit.freeze(model, "layer1", batchnorm="frozen")
    wrapped = nn.DataParallel(model)
    optimizer = torch.optim.SGD([p for p in wrapped.parameters() if p.requires_grad], lr=0.001, momentum=0.9)
    x, y = batch()
    return tlaudit.TransferSetup(
        model=wrapped,
        num_classes=2,
        sample=x,
        targets=y,
        optimizer=optimizer,
        frozen=["module.layer1"],
        weights=WEIGHTS,
        predict=tutorial_predict,
    )


def binary_head_with_bce() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    model.fc = nn.Linear(512, 1)

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
        m.train()
        opt.zero_grad()
        nn.BCEWithLogitsLoss()(m(x).squeeze(1), y.float()).backward()
        opt.step()

    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4))
    x, y = batch()
    return tlaudit.TransferSetup(
        model=model, num_classes=2, sample=x, targets=y, optimizer=optimizer, weights=WEIGHTS, train_step=step, predict=tutorial_predict
    )


CORRECT = {
    "tutorial-feature-extraction": tutorial_feature_extraction,
    "tutorial-fine-tuning": tutorial_fine_tuning,
    "notebook-multilayer-head-forward": notebook_multilayer_head,
    "long-warmup-schedule": long_warmup_schedule,
    "data-parallel-prefixed-patterns": data_parallel_with_prefixed_patterns,
    "binary-head-bce": binary_head_with_bce,
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_code_audits_without_errors(name: str) -> None:
    report = tlaudit.audit(CORRECT[name]())
    assert report.errors == [], str(report)
    assert not report.by_check("user-code-error") and not report.by_check("lr-threshold"), str(report)


def test_the_tutorials_batchnorm_adaptation_is_a_warning_that_explains_itself() -> None:
    [finding] = tlaudit.audit(tutorial_feature_extraction(), select=["frozen-bn-train"]).findings
    assert finding.severity is tlaudit.Severity.WARNING
    assert "AdaBN when meant; the pretrained features shift when not" in finding.message


def test_a_binary_head_is_read_as_one_logit() -> None:
    [note] = tlaudit.audit(binary_head_with_bce(), select=["head-size"]).findings
    assert note.severity is tlaudit.Severity.INFO
    assert note.message == "read `output` as a binary classifier's single logit (BCEWithLogitsLoss) for num_classes 2"


# -- the same code with its classic bug: the audit names it --------------------------------------


def typo_freeze_loop() -> tlaudit.TransferSetup:
    setup = tutorial_feature_extraction()
    model = setup.model
    for param in model.parameters():
        param.requires_grad = True  # the tutorial's loop, undone...
    for name, param in model.named_parameters():
        if "fc" not in name:
            param.requires_grad == False  # noqa: B015, E712  ...and "redone" with a comparison
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    return setup.replace(optimizer=optimizer, scheduler=None)


def optimizer_before_head_swap() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    model.fc = nn.Linear(512, 2)
    x, y = batch()
    return tlaudit.TransferSetup(
        model=model, num_classes=2, sample=x, targets=y, optimizer=optimizer, weights=WEIGHTS, train_step=tutorial_train_step
    )


def labels_numbered_from_one() -> tlaudit.TransferSetup:
    setup = tutorial_fine_tuning()
    return setup.replace(targets=setup.targets + 1)


def no_eval_at_inference() -> tlaudit.TransferSetup:
    def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return tutorial_fine_tuning().replace(predict=predict)


BUGGY = {
    "typo-freeze-loop": (typo_freeze_loop, "frozen-grad"),
    "optimizer-before-head-swap": (optimizer_before_head_swap, "optimizer-missing"),
    "labels-numbered-from-one": (labels_numbered_from_one, "user-code-error"),
    "no-eval-at-inference": (no_eval_at_inference, "eval-mode"),
}


@pytest.mark.parametrize("name", list(BUGGY))
def test_the_bug_is_named(name: str) -> None:
    build, check = BUGGY[name]
    report = tlaudit.audit(build())
    assert [f.severity for f in report.by_check(check)] == [tlaudit.Severity.ERROR], str(report)


def test_labels_from_one_point_at_label_range() -> None:
    report = tlaudit.audit(labels_numbered_from_one())
    assert report.by_check("label-range")[0].message == "targets range over [1, 2], outside [0, 2) (num_classes): e.g. [2]"
    assert report.by_check("user-code-error")[0].hint.endswith("(see `label-range`)")


def test_a_staged_unfreeze_at_1e_3_with_adam_is_a_warning_naming_the_typical_range():
    """A well-known course's staged unfreeze adds the pretrained stages at 1e-3 with Adam, where it
    measured accuracy getting worse: at the ceiling, not above it, so a warning, not an error."""
    model = pretend_pretrained(torchvision.models.resnet18())
    model.fc = nn.Linear(512, 2)
    tlaudit.freeze_backbone(model, batchnorm="frozen")
    optimizer = torch.optim.Adam(tlaudit.param_groups(model, 1e-4, head_lr=1e-3))
    unfreezer = tlaudit.StagedUnfreezer(model, optimizer, {1: ["layer3", "layer4"]}, lr=1e-3)
    unfreezer.step(1)
    x, y = batch()
    report = tlaudit.audit(
        tlaudit.TransferSetup(
            model=model, num_classes=2, sample=x, targets=y, optimizer=optimizer, weights=WEIGHTS, strategy="fine_tuning"
        ),
        select=["lr-threshold"],
    )
    [finding] = report.findings
    assert finding.severity is tlaudit.Severity.WARNING and finding.subject == "param_groups[2]"
    assert finding.message.endswith(
        "with lr 0.001 > the caution level 0.000333 (fine-tuning pretrained layers typically uses 1e-5 to 3e-4 with Adam-type optimizers)"
    )
