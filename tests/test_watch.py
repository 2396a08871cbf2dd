"""Tests for ``tlaudit.watch()`` (tlaudit/watcher/): real training loops on a tiny CNN, watched.

Each loop is ordinary PyTorch: zero_grad, forward, loss, backward, step, then a validation pass.
The guarantees under test: the audits see the real run (model, batch, loss, optimizer, modes), a
finding at ``fail_on`` stops the run before the step, the run is otherwise bit-for-bit the run it
would have been, and no hook, function mode or attribute is left behind.
"""

from __future__ import annotations

import io
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optimizer_hooks
from torch.utils.data import DataLoader, TensorDataset

import tlaudit
from tlaudit import AuditFailed, SetupError


def tiny(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return nn.Sequential(OrderedDict(backbone=backbone, dropout=nn.Dropout(0.2), fc=nn.Linear(8, 3)))


def loader() -> DataLoader:
    gen = torch.Generator().manual_seed(1)
    return DataLoader(TensorDataset(torch.randn(8, 3, 16, 16, generator=gen), torch.randint(3, (8,), generator=gen)), batch_size=4)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DataLoader,
    *,
    epochs: int = 2,
    validate: Callable[[nn.Module, torch.Tensor], Any] | None = None,
    before_step: Callable[[], None] | None = None,
) -> list[float]:
    """The loop under watch; ``validate(model, x)`` is the validation pass (default: eval + no_grad)."""
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
    losses = []
    for _ in range(epochs):
        model.train()
        for x, y in data:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
        for x, _ in data:
            if validate is None:
                model.eval()
                with torch.no_grad():
                    model(x)
            else:
                validate(model, x)
    return losses


def no_hooks_left() -> bool:
    """No global hook, function mode or wrapped torchvision method of the watcher's is left."""
    from torchvision.models._api import WeightsEnum

    if WeightsEnum.__dict__["get_state_dict"].__qualname__ != "WeightsEnum.get_state_dict":
        return False
    if nn.Module.__dict__["load_state_dict"].__qualname__ != "Module.load_state_dict":
        return False
    if "__wrapped__" in vars(F.cross_entropy) or "__wrapped__" in vars(F.nll_loss):  # the label check's wrappers
        return False
    return not (
        module_hooks._global_forward_hooks
        or module_hooks._global_forward_pre_hooks
        or module_hooks._global_forward_hooks_always_called
        or module_hooks._global_forward_hooks_with_kwargs
        or optimizer_hooks._global_optimizer_pre_hooks
        or torch.overrides._get_current_function_mode_stack()
    )


def quiet(**options: Any) -> tlaudit.watcher.Watch:
    return tlaudit.watch(stream=io.StringIO(), **options)


def test_watch_is_the_function_even_after_its_module_is_imported():
    import tlaudit.watcher

    assert callable(tlaudit.watch) and tlaudit.watch is tlaudit.watcher.watch


def test_a_clean_run_audits_clean_twice_and_leaves_nothing_behind():
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    with quiet() as watched:
        train(model, optimizer, loader())
        # after the audits only the step hook (a fingerprint a step), the light pre-hook (a grad-mode
        # read on a training call: it notes another model's first prediction) and the label check stay
        assert not module_hooks._global_forward_hooks
        assert [h.__func__.__name__ for h in module_hooks._global_forward_pre_hooks.values()] == ["_light_pre_forward"]
        assert not torch.overrides._get_current_function_mode_stack()
        assert len(optimizer_hooks._global_optimizer_pre_hooks) == 1
        assert "__wrapped__" in vars(F.cross_entropy)
    assert set(watched.reports) == {"train", "inference"}
    assert all(not r.findings for r in watched.reports.values()), [r.to_text() for r in watched.reports.values()]
    assert {"frozen-grad", "optimizer-missing", "lr-threshold"} <= set(watched.reports["train"].checks_run)
    assert watched.reports["inference"].checks_run == ("eval-mode", "eval-nondeterministic", "grad-inference")
    notes = "\n".join(watched.reports["train"].notes)
    assert "scheduler (StepLR)" in notes and "targets (the targets given to cross_entropy)" in notes
    assert watched.steps == 4  # the step hook counts every step
    assert no_hooks_left()


def test_the_watched_run_is_the_run_it_would_have_been():
    """Same seed, same model: losses, parameters, buffers, optimizer state and RNG are identical."""
    plain_model, watched_model = tiny(), tiny()
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.005, momentum=0.9)
    watched_opt = torch.optim.SGD(watched_model.parameters(), lr=0.005, momentum=0.9)
    torch.manual_seed(5)
    plain = train(plain_model, plain_opt, loader())
    plain_rng = torch.get_rng_state()
    torch.manual_seed(5)
    with quiet() as watched:
        losses = train(watched_model, watched_opt, loader())
    assert "train" in watched.reports
    assert losses == plain
    assert torch.equal(torch.get_rng_state(), plain_rng)
    for (name, a), b in zip(plain_model.state_dict().items(), watched_model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(plain_opt.state_dict()["state"].values(), watched_opt.state_dict()["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert (set(vars(watched_model)), set(vars(watched_opt))) == (set(vars(plain_model)), set(vars(plain_opt)))


def test_a_typo_in_the_freeze_loop_stops_the_run_before_the_step():
    model = tiny()
    for name, p in model.named_parameters():
        if not name.startswith("fc"):
            p.requires_grad == False  # noqa: E712, B015 -- the seeded typo
    optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.005)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    stream = io.StringIO()
    with pytest.raises(
        AuditFailed,
        match=r"^train audit at the first optimizer step: frozen-grad, optimizer-missing at or "
        r"above fail_on=error \(the report is above\)$",
    ) as failed:
        with tlaudit.watch(strategy="feature_extraction", stream=stream):
            train(model, optimizer, loader())
    assert {f.check for f in failed.value.report.errors} == {"frozen-grad", "optimizer-missing"}
    # the report was written once, before the one-line reason was raised
    assert re.search(r"error +frozen-grad +backbone +4 parameters of `backbone`: meant frozen", stream.getvalue())
    assert stream.getvalue().count("frozen-grad  ") == 1
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())  # no step ran
    assert no_hooks_left()


def test_fail_on_none_reports_and_lets_the_run_go_on():
    model = tiny()
    for p in model.backbone.parameters():
        p.requires_grad == False  # noqa: E712, B015 -- the seeded typo
    optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.005)
    stream = io.StringIO()
    with tlaudit.watch(strategy="feature_extraction", fail_on=None, stream=stream) as watched:
        losses = train(model, optimizer, loader())
    assert len(losses) == 4
    assert {f.check for f in watched.reports["train"].errors} == {"frozen-grad", "optimizer-missing"}
    assert "tlaudit watch: train audit at the first optimizer step" in stream.getvalue()
    assert not watched.failed


def test_the_replayed_step_keeps_the_runs_batchnorm_modes():
    """A loop that keeps frozen BatchNorm in eval mode is clean; the same loop without it is not.
    (The engine's default step would call model.train() and flag both.)"""

    def frozen_backbone() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = tiny()
        tlaudit.freeze(model, "backbone")
        return model, torch.optim.SGD(model.fc.parameters(), lr=0.005)

    model, optimizer = frozen_backbone()
    with quiet(strategy="feature_extraction") as watched:
        model.train()
        tlaudit.eval_frozen_batchnorm(model)
        x, y = next(iter(loader()))
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert not watched.reports["train"].findings, watched.reports["train"].to_text()

    model, optimizer = frozen_backbone()
    with pytest.raises(AuditFailed, match="frozen-bn-train"):  # a warning: the drift may be meant (AdaBN)
        with quiet(strategy="feature_extraction", fail_on="warning"):
            train(model, optimizer, loader())


def test_validation_in_training_mode_with_gradients_is_caught():
    def forgot_eval(model: nn.Module, x: torch.Tensor) -> None:
        model(x)

    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    with quiet(fail_on=None) as watched:
        train(model, optimizer, loader(), validate=forgot_eval)
    report = watched.reports["inference"]
    assert {f.check for f in report.findings} == {"eval-mode", "eval-nondeterministic", "grad-inference"}
    assert "modules in training mode, grad enabled" in "\n".join(report.notes)
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    with pytest.raises(AuditFailed, match="inference audit after the first validation pass"):
        with quiet():
            train(model, optimizer, loader(), validate=forgot_eval)
    assert no_hooks_left()


def test_intent_wins_over_what_is_observed():
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    with pytest.raises(AuditFailed, match=r"head-size"):
        with quiet(num_classes=5):
            train(model, optimizer, loader())


@pytest.mark.parametrize("max_steps", [2, 5])
def test_max_steps_ends_the_run_and_the_with_block_goes_on(max_steps):
    """2: stopped at the step after the validation pass (its audit still ran); 5: after both audits,
    only the step hook stays, to count."""
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    seen: list[int] = []
    with quiet(max_steps=max_steps) as watched:
        train(model, optimizer, loader(), epochs=3, before_step=lambda: seen.append(1))
        pytest.fail("the run was not stopped")  # pragma: no cover
    assert watched.stopped and len(seen) == max_steps + 1  # the next step was stopped before it ran
    assert set(watched.reports) == {"train", "inference"}
    assert no_hooks_left()


def test_as_a_decorator_each_call_is_watched_afresh(tmp_path):
    output = tmp_path / "audit.jsonl"

    @tlaudit.watch(format="json", output=output, select="optimizer-missing,eval-mode", stream=io.StringIO())
    def fit(seed: int) -> str:
        model = tiny(seed)
        train(model, torch.optim.SGD(model.parameters(), lr=0.005), loader(), epochs=1)
        return "fitted"

    assert fit(0) == "fitted"
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(d["stage"], d["checks_run"]) for d in lines] == [("train", ["optimizer-missing"]), ("inference", ["eval-mode"])]
    assert fit(1) == "fitted"
    assert len(output.read_text().splitlines()) == 2  # the file holds the last watched call
    assert no_hooks_left()


def test_bad_options_are_refused_with_their_source():
    with pytest.raises(SetupError, match=r"TransferSetup.strategy: expected 'feature_extraction', 'fine_tuning' or None, got 'feature'"):
        tlaudit.watch(strategy="feature")
    with pytest.raises(ValueError, match=r"watch: unknown check ID: 'frozen-grd' \(select\); did you mean frozen-grad"):
        tlaudit.watch(select="frozen-grd")
    with pytest.raises(ValueError, match=r"invalid fail_on: 'fatal' \(fail_on\)"):
        tlaudit.watch(fail_on="fatal")
    with pytest.raises(ValueError, match=r"invalid max_steps: 0 \(watch\)"):
        tlaudit.watch(max_steps=0)
    with quiet():
        with pytest.raises(RuntimeError, match="already watching this process"):
            with quiet():
                pass
    assert no_hooks_left()


def test_an_intent_that_names_no_module_raises_at_the_first_step():
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    with pytest.raises(
        SetupError, match=r"pattern matches no module: 'encoder' \(TransferSetup.frozen\); top-level modules: backbone, dropout, fc"
    ):
        with quiet(frozen="encoder"):
            train(model, optimizer, loader())
    assert no_hooks_left()


class OwnLoss(nn.Module):
    """A model called with keywords that computes its own loss, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.net(pixel_values)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def test_a_model_called_with_keywords_that_computes_its_own_loss():
    model = OwnLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    with quiet() as watched:
        for x, y in loader():
            optimizer.zero_grad()
            model(pixel_values=x, labels=y)["loss"].backward()
            optimizer.step()
    report = watched.reports["train"]
    assert not report.findings, report.to_text()
    notes = "\n".join(report.notes)
    assert "targets (the model's labels= argument)" in notes
    assert "the model computed its own loss" in notes
    assert "the replayed step uses cross-entropy" not in notes


def test_a_long_validation_pass_holds_at_most_six_batches():
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    x, y = next(iter(loader()))
    with quiet() as watched:
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            for _ in range(10):
                model(x)
        kept = len(watched._observer.calls)
        model.train()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert kept == 6
    assert not watched.reports["inference"].findings


def test_what_load_state_dict_returned_is_audited():
    """A strict load is evidence of loaded weights; a ``strict=False`` load of ``module.``-prefixed keys
    loaded nothing, and the run is stopped."""
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.003)
    with quiet() as watched:
        model.load_state_dict(tiny(1).state_dict())
        train(model, optimizer, loader(), epochs=1)
    assert not watched.reports["train"].findings
    assert "load_result (what the run's last load_state_dict into the model returned)" in "\n".join(watched.reports["train"].notes)

    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.003)
    checkpoint = {f"module.{key}": value for key, value in tiny(1).state_dict().items()}
    with pytest.raises(AuditFailed, match="pretrained-not-loaded") as failed:
        with quiet():
            model.load_state_dict(checkpoint, strict=False)
            train(model, optimizer, loader(), epochs=1)
    messages = [f.message for f in failed.value.report.by_check("pretrained-not-loaded")]
    assert any("they carry a wrapper prefix" in m for m in messages), messages
    assert no_hooks_left()
