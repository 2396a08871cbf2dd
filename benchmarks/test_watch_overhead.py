"""What watching costs a run once its first audits are done, and what the Hugging Face callback costs
a short ``Trainer`` run. Goal: a watched run within 2% of the unwatched one after the first audits.

After its audits, ``tlaudit.watch()`` keeps one global optimizer step pre-hook (a fingerprint of the
param groups and the trainable parameters, to audit a later unfreeze or a new optimizer), a light
global forward pre-hook (a grad-mode read on a training call; it notes another model's first
prediction), the label check on ``F.cross_entropy``/``F.nll_loss`` (a min and a max per call) and a
forward pre-hook on the inference-audited model (one flag read on a training call). Before the first validation pass it
observes every model call and loss (to find that pass); that phase is measured too. Run:

    .venv/bin/python -m pytest benchmarks/test_watch_overhead.py -s --benchmark-only

On a shared machine the load changes from one second to the next, so the steps are interleaved: PAIRS
pairs of STEPS watched steps and STEPS steps (in turn first) with the watcher's attachments taken off (its step hook
and label check; the model's pre-hook stays, so that cost is in both and the ratio under-counts it
by one flag read a step), same process, model and batch; the median of the per-pair ratios is printed
and kept in ``benchmark.extra_info``.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision

import tlaudit

STEPS = 4
PAIRS = 31
PAIRS_BEFORE = 15  # each watched side audits a first step too
RATIO_GOAL = 1.02


def _setup() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = tlaudit.replace_head(torchvision.models.resnet18(), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    return model, optimizer, torch.randn(8, 3, 96, 96), torch.randint(10, (8,))


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, n: int) -> float:
    start = time.perf_counter()
    model.train()
    for _ in range(n):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return time.perf_counter() - start


def _audited(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """The run's first steps and a validation pass: both audits done, the watcher in its light mode."""
    _steps(model, optimizer, x, y, 1)
    model.eval()
    with torch.no_grad():
        model(x)
    _steps(model, optimizer, x, y, 1)


@contextlib.contextmanager
def _detached(watch: tlaudit.watcher.Watch) -> Iterator[None]:
    """The watcher's step hook, light pre-hook and label check taken off for the block, then put back."""
    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    observer = watch._observer
    assert observer is not None and observer.counting  # after the audits: the step hook and the light pre-hook
    for handle in observer._handles:
        handle.remove()
    watch._labels.close()
    try:
        yield
    finally:
        watch._labels.open()
        observer._step_handle = register_optimizer_step_pre_hook(observer._pre_step)
        observer._handles = [observer._step_handle, register_module_forward_pre_hook(observer._light_pre_forward)]


def _report(benchmark: Any, phase: str, ratios: list[float], plain: list[float]) -> None:
    """The median of the per-pair ratios and their quartiles, printed and kept in ``extra_info``."""
    ratio = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4)
    step_ms = 1e3 * statistics.median(plain) / STEPS
    benchmark.extra_info.update(ratio=ratio, quartiles=quartiles, step_ms_plain=step_ms)
    print(
        f"\nwatched/unwatched per step {phase}: median of {len(ratios)} pair ratios {ratio:.4f} "
        f"(quartiles {quartiles[0]:.4f}-{quartiles[2]:.4f}; unwatched {step_ms:.1f} ms a step, {STEPS} steps a side)"
    )


def test_watched_steps_after_the_audits(benchmark: Any) -> None:
    model, optimizer, x, y = _setup()
    _steps(model, optimizer, x, y, 2)  # warm-up
    ratios, plain = [], []
    with tlaudit.watch(stream=io.StringIO()) as watch:
        _audited(model, optimizer, x, y)
        assert set(watch.reports) == {"train", "inference"}
        for pair in range(PAIRS):
            if pair % 2:  # every other pair starts unwatched: ABBA, a drift within a pair cancels
                with _detached(watch):
                    unwatched = _steps(model, optimizer, x, y, STEPS)
                watched = _steps(model, optimizer, x, y, STEPS)
            else:
                watched = _steps(model, optimizer, x, y, STEPS)
                with _detached(watch):
                    unwatched = _steps(model, optimizer, x, y, STEPS)
            ratios.append(watched / unwatched)
            plain.append(unwatched)
        benchmark.pedantic(_steps, args=(model, optimizer, x, y, STEPS), rounds=3, iterations=1)
        assert watch.steps == 2 + PAIRS * STEPS + 3 * STEPS  # the watched steps, and only they, went through the hook
    _report(benchmark, "after the audits", ratios, plain)


def test_watched_steps_before_the_first_validation_pass(benchmark: Any) -> None:
    """Between the train audit and the first validation pass (often the whole first epoch) every model
    call and loss is still observed, so that the validation pass is found: the cost per step there.
    Each watched side is a new watch whose first step is its train audit, untimed."""
    model, optimizer, x, y = _setup()
    _steps(model, optimizer, x, y, 2)  # warm-up

    def watched_steps() -> float:
        with tlaudit.watch(stream=io.StringIO()) as watch:
            _steps(model, optimizer, x, y, 1)  # the train audit
            seconds = _steps(model, optimizer, x, y, STEPS)
            assert set(watch.reports) == {"train"}  # still waiting for a validation pass
        return seconds

    ratios, plain = [], []
    for pair in range(PAIRS_BEFORE):
        if pair % 2:  # ABBA, as above
            unwatched = _steps(model, optimizer, x, y, STEPS)
            watched = watched_steps()
        else:
            watched = watched_steps()
            unwatched = _steps(model, optimizer, x, y, STEPS)
        ratios.append(watched / unwatched)
        plain.append(unwatched)
    benchmark.pedantic(watched_steps, rounds=3, iterations=1)
    _report(benchmark, "before the first validation pass", ratios, plain)


def test_unwatched_steps(benchmark: Any) -> None:
    model, optimizer, x, y = _setup()
    _audited(model, optimizer, x, y)
    benchmark.pedantic(_steps, args=(model, optimizer, x, y, STEPS), rounds=3, iterations=1)


def test_huggingface_callback_cost_on_a_short_trainer_run(benchmark: Any, tmp_path: Any) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from tlaudit.integrations.huggingface import TransferAuditCallback

    class Images(torch.utils.data.Dataset):
        classes = ["a", "b", "c"]

        def __len__(self) -> int:
            return 64

        def __getitem__(self, i: int) -> dict[str, Any]:
            g = torch.Generator().manual_seed(i)
            return {"pixel_values": torch.randn(3, 32, 32, generator=g), "labels": i % 3}

    def train(callback: bool) -> float:
        torch.manual_seed(0)
        config = transformers.ViTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3
        )
        model = transformers.ViTForImageClassification(config)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path),
            max_steps=40,
            per_device_train_batch_size=8,
            warmup_steps=4,
            learning_rate=5e-5,
            eval_strategy="steps",
            eval_steps=20,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
        )
        callbacks = [TransferAuditCallback(stream=io.StringIO())] if callback else []
        trainer = transformers.Trainer(model=model, args=args, train_dataset=Images(), eval_dataset=Images(), callbacks=callbacks)
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start

    plain = [train(False) for _ in range(3)]
    watched = [train(True) for _ in range(3)]
    benchmark.pedantic(train, args=(True,), rounds=1, iterations=1)
    ratio = statistics.median(watched) / statistics.median(plain)
    benchmark.extra_info.update(ratio=ratio, seconds_plain=statistics.median(plain))
    print(
        f"\nTrainer.train() (40 steps, 2 evaluations) with the callback / without: {ratio:.3f} "
        f"({statistics.median(watched):.2f} s / {statistics.median(plain):.2f} s)"
    )
