"""Calls that are part of a training step are no predictions (tlaudit/watcher/calls.py): a target
network (a no-grad call in training mode of a module no optimizer holds, made where a backward
reached another module's call), and a model's own extra views within its step.

Transcribed loops, on tlaudit's tiny CNN (tests/test_watch.py's) instead of the sources' ResNets:

* Mean Teacher, https://github.com/CuriousAI/mean-teacher/blob/master/pytorch/main.py: ``train()``
  puts both ``model`` and ``ema_model`` in training mode, the teacher's output is computed without
  gradients (``volatile=True`` there, ``torch.no_grad()`` today) as the consistency target, and the
  teacher follows the student by ``update_ema_variables`` after ``optimizer.step()``; the authors'
  code, correct. Validation runs ``model.eval()`` under no_grad.
* MoCo's momentum key encoder, https://github.com/facebookresearch/moco/blob/main/moco/builder.py:
  ``encoder_k`` updated by momentum and called under ``torch.no_grad()`` in training mode (its BN
  shuffled on purpose), here called from the loop rather than inside one wrapper module.

* Knowledge distillation, https://pytorch.org/tutorials/beginner/knowledge_distillation_tutorial.html
  (``train_knowledge_distillation``): ``teacher.eval()``, ``student.train()``, the teacher's logits
  under ``torch.no_grad()``, a soft-target loss plus cross-entropy, Adam over the student; then
  ``test(student)`` in eval mode under no_grad. The teacher's call is no prediction of the trained
  model: the inference audit is the student's.
* The Pi-model step of TorchSSL, https://github.com/TorchSSL/TorchSSL/blob/main/models/pimodel/pimodel.py:
  the labelled batch and two noisy views of the unlabelled one through the same model in training
  mode, the second view's output detached as the consistency target (no backward reaches it).
  Adapted twice more: that target computed under ``torch.no_grad()`` after the training forward, and
  before it (the pseudo-labels first, as pseudo-labelling loops often order it); the second is only
  told apart from a validation pass at the next step, where it recurs.

Seeded: the same loops validating the student without ``model.eval()`` stay an ``eval-mode`` error.
"""

from __future__ import annotations

import copy
import functools
import io

import pytest
import torch
import torch.nn.functional as F

import tlaudit
from tests.test_watch import loader, tiny
from tlaudit import AuditFailed


def update_ema_variables(model, ema_model, alpha: float) -> None:
    for ema_param, param in zip(ema_model.parameters(), model.parameters()):
        ema_param.data.mul_(alpha).add_(param.data, alpha=1 - alpha)


def mean_teacher(*, validate_in_eval: bool = True) -> list[str]:
    model = tiny()
    ema_model = copy.deepcopy(model)
    for param in ema_model.parameters():
        param.detach_()  # the source's create_model(ema=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    data = loader()
    ran = []
    for epoch in range(2):
        model.train()
        ema_model.train()
        for x, y in data:
            with torch.no_grad():
                ema_logit = ema_model(x + 0.05 * torch.randn_like(x))
            model_logit = model(x)
            consistency = F.mse_loss(F.softmax(model_logit, 1), F.softmax(ema_logit, 1))
            loss = F.cross_entropy(model_logit, y) + consistency
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            update_ema_variables(model, ema_model, 0.99)
        if validate_in_eval:
            model.eval()
        with torch.no_grad():
            for x, _ in data:
                model(x)
        ran.append(f"epoch {epoch}")
    return ran


def moco_key_encoder(*, validate_in_eval: bool = True) -> list[str]:
    encoder_q = tiny()
    encoder_k = copy.deepcopy(encoder_q)
    for param_k in encoder_k.parameters():
        param_k.requires_grad = False  # not updated by gradient
    optimizer = torch.optim.SGD(encoder_q.parameters(), lr=0.03, momentum=0.9)
    ran = []
    for epoch in range(2):
        encoder_q.train()
        encoder_k.train()
        for x, _ in loader():
            q = F.normalize(encoder_q(x), dim=1)
            with torch.no_grad():
                for param_q, param_k in zip(encoder_q.parameters(), encoder_k.parameters()):
                    param_k.data = param_k.data * 0.999 + param_q.data * 0.001
                k = F.normalize(encoder_k(x.flip(-1)), dim=1)
            loss = F.cross_entropy(q @ k.t() / 0.2, torch.arange(len(x)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if validate_in_eval:
            encoder_q.eval()
        with torch.no_grad():
            encoder_q(next(iter(loader()))[0])
        ran.append(f"epoch {epoch}")
    return ran


def distillation(*, validate_in_eval: bool = True, teacher: torch.nn.Module | None = None) -> list[str]:
    torch.manual_seed(1)
    if teacher is None:
        teacher = torch.nn.Sequential(tiny(1), torch.nn.ReLU(), torch.nn.Linear(3, 3))  # 11 modules, the student 9
    student = tiny()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    T, soft_target_loss_weight, ce_loss_weight = 2, 0.25, 0.75
    teacher.eval()  # Teacher set to evaluation mode
    student.train()  # Student to train mode
    ran = []
    for epoch in range(2):
        for inputs, labels in loader():
            optimizer.zero_grad()
            with torch.no_grad():
                teacher_logits = teacher(inputs)
            student_logits = student(inputs)
            soft_targets = F.softmax(teacher_logits / T, dim=-1)
            soft_prob = F.log_softmax(student_logits / T, dim=-1)
            soft_targets_loss = torch.sum(soft_targets * (soft_targets.log() - soft_prob)) / soft_prob.size()[0] * (T**2)
            label_loss = F.cross_entropy(student_logits, labels)
            loss = soft_target_loss_weight * soft_targets_loss + ce_loss_weight * label_loss
            loss.backward()
            optimizer.step()
        ran.append(f"epoch {epoch}")
    if validate_in_eval:  # the tutorial's test(model, test_loader)
        student.eval()
    with torch.no_grad():
        for inputs, _ in loader():
            student(inputs)
    return ran


def pi_model(*, validate_in_eval: bool = True, target: str = "detached") -> list[str]:
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    ran = []

    def noisy(x):
        return x + 0.1 * torch.randn_like(x)

    for epoch in range(2):
        model.train()
        for x_lb, y_lb in loader():
            x_ulb = x_lb.flip(0)
            if target == "no-grad-first":
                with torch.no_grad():
                    logits_x_ulb_w2 = model(noisy(x_ulb))
            logits_x_lb = model(x_lb)
            logits_x_ulb_w1 = model(noisy(x_ulb))
            if target == "detached":
                logits_x_ulb_w2 = model(noisy(x_ulb)).detach()
            elif target == "no-grad-after":
                with torch.no_grad():
                    logits_x_ulb_w2 = model(noisy(x_ulb))
            sup_loss = F.cross_entropy(logits_x_lb, y_lb)
            unsup_loss = F.mse_loss(torch.softmax(logits_x_ulb_w1, -1), torch.softmax(logits_x_ulb_w2, -1))
            (sup_loss + unsup_loss).backward()
            optimizer.step()
            model.zero_grad()
        if validate_in_eval:
            model.eval()
        with torch.no_grad():
            for x, _ in loader():
                model(x)
        model.train()
        ran.append(f"epoch {epoch}")
    return ran


LOOPS = {
    "mean-teacher": mean_teacher,
    "moco-key-encoder": moco_key_encoder,
    "distillation": distillation,
    "pi-model-detached-view": pi_model,
    "pi-model-no-grad-view-after": functools.partial(pi_model, target="no-grad-after"),
    "pi-model-no-grad-view-first": functools.partial(pi_model, target="no-grad-first"),
}


@pytest.mark.parametrize("loop", LOOPS.values(), ids=LOOPS.keys())
def test_a_target_network_in_training_mode_is_no_prediction(loop):
    stream = io.StringIO()
    with tlaudit.watch(stream=stream) as watched:
        ran = loop()
    assert ran == ["epoch 0", "epoch 1"]  # never stopped
    assert not any(r.errors for r in watched.reports.values()), stream.getvalue()
    assert "train" in watched.reports and "inference" in watched.reports, list(watched.reports)
    assert "0 of 9 modules in training mode" in "\n".join(watched.reports["inference"].notes)  # the student's validation


@pytest.mark.parametrize("loop", LOOPS.values(), ids=LOOPS.keys())
def test_the_student_validated_without_eval_is_still_an_error(loop):
    with pytest.raises(AuditFailed, match="^inference audit after the first validation pass: eval-mode"):
        with tlaudit.watch(stream=io.StringIO()) as watched:
            loop(validate_in_eval=False)
    [error] = watched.reports["inference"].by_check("eval-mode")
    assert error.severity is tlaudit.Severity.ERROR
    assert error.message.startswith("`Sequential` ran in training mode during predict") and "BatchNorm" in error.message


def teacher_then_student(*, validate_in_eval: bool = True) -> list[str]:
    """The knowledge-distillation tutorial as a whole: ``train(teacher)`` with its own optimizer and
    ``test(teacher)`` first, then the distillation loop and ``test(student)``."""
    torch.manual_seed(1)
    teacher = torch.nn.Sequential(tiny(1), torch.nn.ReLU(), torch.nn.Linear(3, 3))
    teacher_optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-3)
    teacher.train()
    for inputs, labels in loader():
        teacher_optimizer.zero_grad()
        F.cross_entropy(teacher(inputs), labels).backward()
        teacher_optimizer.step()
    teacher.eval()
    with torch.no_grad():
        for inputs, _ in loader():
            teacher(inputs)
    return distillation(validate_in_eval=validate_in_eval, teacher=teacher)


def test_after_a_trained_teacher_the_new_models_inference_audit_is_the_students():
    with tlaudit.watch(stream=io.StringIO()) as watched:
        teacher_then_student()
    stage = next(s for s in watched.reports if s.startswith("inference (after step"))
    assert "0 of 9 modules in training mode" in "\n".join(watched.reports[stage].notes)  # the student, not the teacher (11)
    assert not any(r.errors for r in watched.reports.values())


def test_after_a_trained_teacher_the_student_tested_without_eval_is_an_error():
    with pytest.raises(
        AuditFailed, match=r"^inference audit after the first validation pass of the new model \(after step \d+\): eval-mode"
    ):
        with tlaudit.watch(stream=io.StringIO()):
            teacher_then_student(validate_in_eval=False)
