"""Tests for the Hugging Face callback (tlaudit/integrations/huggingface.py) with a real ``Trainer`` on CPU.

A tiny ``ResNetForImageClassification`` built from a config (nothing is downloaded) trains for two
steps on in-memory images, with an evaluation after each step.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tlaudit import AuditFailed  # noqa: E402
from tlaudit.integrations.huggingface import TransferAuditCallback  # noqa: E402


class Images(torch.utils.data.Dataset):
    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(8, 3, 32, 32, generator=gen)
        self.y = torch.randint(3, (8,), generator=gen)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def train(callback: TransferAuditCallback, tmp_path: Any, freeze_typo: bool = False) -> Any:
    torch.manual_seed(0)
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    model = transformers.ResNetForImageClassification(config)
    if freeze_typo:
        for p in model.resnet.parameters():
            p.requires_grad == False  # noqa: E712, B015 -- the seeded typo
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Images(), eval_dataset=Images(), callbacks=[callback])
    trainer.train()
    return trainer


def test_a_clean_trainer_run_audits_clean(tmp_path):
    callback = TransferAuditCallback(stream=io.StringIO())
    trainer = train(callback, tmp_path)
    assert trainer.state.global_step == 2
    assert list(callback.reports) == ["static", "train", "inference"]
    for stage, report in callback.reports.items():
        assert not report.findings, f"{stage}: {report.to_text()}"
    notes = "\n".join(callback.reports["train"].notes)
    assert "targets (the model's labels= argument)" in notes and "the model computed its own loss" in notes


def test_a_freeze_typo_stops_the_trainer_before_its_first_step(tmp_path):
    callback = TransferAuditCallback(strategy="feature_extraction", stream=io.StringIO())
    with pytest.raises(AuditFailed, match="frozen-grad"):
        train(callback, tmp_path, freeze_typo=True)
    assert callback.reports["static"].ok  # the optimizer holds every parameter; only the traced audit sees the freeze failed
    assert {"frozen-grad"} <= {f.check for f in callback.reports["train"].errors}
