"""Lightning with a Hugging Face backbone: Lightning's own "Finetune Transformers Models with PyTorch
Lightning" module, transcribed with a tiny BERT built from a config (nothing is downloaded), fitted
on CPU with the ``TransferAudit`` callback: clean, and with one seeded mistake at a time.

Source: https://lightning.ai/docs/pytorch/stable/notebooks/lightning_examples/text-transformers.html
(``GLUETransformer``: ``forward(**inputs)`` returns ``self.model(**inputs)``, the loss is the
model's own ``outputs[0]`` computed from ``labels=``, AdamW over two weight-decay groups, and a
linear warm-up schedule stepped per ``"step"``). Adapted: ``BertConfig`` instead of
``from_pretrained``, a synthetic three-class dataset of token ids instead of GLUE, two epochs of two
batches, no metric.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

pl = pytest.importorskip("lightning.pytorch")
transformers = pytest.importorskip("transformers")

from tests.integrations.test_lightning import fit as lightning_fit  # noqa: E402
from tests.support.hf import bert_config  # noqa: E402
from tlaudit import AuditFailed  # noqa: E402
from tlaudit.integrations.lightning import TransferAudit  # noqa: E402

NUM_LABELS = 3


class GLUETransformer(pl.LightningModule):
    """The notebook's module, as written there (``freeze`` added for the seeded mistakes)."""

    def __init__(
        self,
        num_labels: int = NUM_LABELS,
        learning_rate: float = 2e-5,
        adam_epsilon: float = 1e-8,
        warmup_steps: int = 0,
        weight_decay: float = 0.0,
        freeze: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.config = bert_config(num_labels)
        self.model = transformers.BertForSequenceClassification(self.config)
        if freeze == "everything":  # seeded: the classifier frozen with the encoder
            for p in self.model.parameters():
                p.requires_grad = False
        elif freeze == "encoder":  # the maintainers' "train only the classifier" (transformers#400)
            for p in self.model.bert.parameters():
                p.requires_grad = False

    def forward(self, **inputs: Any) -> Any:
        return self.model(**inputs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        outputs = self(**batch)
        loss = outputs[0]
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        outputs = self(**batch)
        val_loss, logits = outputs[:2]
        preds = torch.argmax(logits, axis=1)
        self.log("val_loss", val_loss)
        self.log("val_acc", (preds == batch["labels"]).float().mean())

    def configure_optimizers(self) -> Any:
        model = self.model
        no_decay = ["bias", "LayerNorm.weight"]
        optimizer_grouped_parameters = [
            {
                "params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)],
                "weight_decay": self.hparams.weight_decay,
            },
            {
                "params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)],
                "weight_decay": 0.0,
            },
        ]
        optimizer = torch.optim.AdamW(optimizer_grouped_parameters, lr=self.hparams.learning_rate, eps=self.hparams.adam_epsilon)
        scheduler = transformers.get_linear_schedule_with_warmup(
            optimizer,
            num_warmup_steps=self.hparams.warmup_steps,
            num_training_steps=self.trainer.estimated_stepping_batches,
        )
        scheduler = {"scheduler": scheduler, "interval": "step", "frequency": 1}
        return [optimizer], [scheduler]


def loader(seed: int) -> DataLoader:
    """Tokenizer-shaped batches: ``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels``."""
    gen = torch.Generator().manual_seed(seed)
    rows = [
        {
            "input_ids": torch.randint(1, 100, (12,), generator=gen),
            "attention_mask": torch.ones(12, dtype=torch.long),
            "token_type_ids": torch.zeros(12, dtype=torch.long),
            "labels": torch.tensor(i % NUM_LABELS),
        }
        for i in range(8)
    ]
    return DataLoader(rows, batch_size=4)


def fit(module: pl.LightningModule, *callbacks: pl.Callback) -> pl.Trainer:
    return lightning_fit(module, *callbacks, data=(loader(1), loader(2)))


def final_state(module: pl.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("warmup_steps", [0, 2], ids=["no-warm-up", "warm-up"])
def test_the_notebooks_module_audits_clean_and_trains_as_without_the_callback(warmup_steps):
    plain = GLUETransformer(warmup_steps=warmup_steps)
    fit(plain)
    watched = GLUETransformer(warmup_steps=warmup_steps)
    audit = TransferAudit(stream=io.StringIO())
    trainer = fit(watched, audit)
    assert trainer.global_step == 4
    assert list(audit.reports) == ["static", "inference", "train"]  # the sanity check validates first
    # the tokenizer-shaped batch is the sample, passed as keywords, its labels the targets: the
    # traced checks replay the module's own training_step
    train = audit.reports["train"]
    assert {"frozen-changed", "trainable-no-grad", "user-code-error"} <= set(train.checks_run), train.to_text()
    assert (
        "sample (the first batch, input_ids (4, 12), attention_mask (4, 12), token_type_ids (4, 12)); targets (the first batch)"
        in "\n".join(train.notes)
    )
    assert {"eval-mode", "grad-inference"} <= set(audit.reports["inference"].checks_run)
    for stage, report in audit.reports.items():
        assert not report.errors and not report.warnings, f"{stage}: {report.to_text()}"
    expected = final_state(plain)
    for name, value in final_state(watched).items():
        assert torch.equal(value, expected[name]), name  # the audit changed nothing the fit computes


def test_training_only_the_classifier_is_clean_as_feature_extraction():
    audit = TransferAudit(strategy="feature_extraction", stream=io.StringIO())
    fit(GLUETransformer(freeze="encoder", learning_rate=1e-3), audit)
    for stage, report in audit.reports.items():
        assert not report.errors, f"{stage}: {report.to_text()}"


def test_the_classifier_frozen_with_the_encoder_stops_the_fit_at_its_start():
    audit = TransferAudit(stream=io.StringIO())
    with pytest.raises(AuditFailed, match="static audit at the start of the fit"):
        fit(GLUETransformer(freeze="everything"), audit)
    assert "head-frozen" in {f.check for f in audit.reports["static"].errors}


def test_a_too_high_lr_behind_the_warm_up_is_caught_before_the_first_step():
    audit = TransferAudit(stream=io.StringIO())
    with pytest.raises(AuditFailed, match="static audit at the start of the fit"):
        fit(GLUETransformer(learning_rate=1e-1, warmup_steps=2), audit)
    [error, *_] = audit.reports["static"].by_check("lr-threshold")
    assert error.severity.value == "error"
    assert "the scheduler raises its lr to 0.1 > lr_max 0.001" in error.message
