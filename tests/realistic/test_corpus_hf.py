"""Hugging Face fine-tuning (transformers and PEFT LoRA) transcribed from their docs.

Adapted everywhere: models are built from tiny configs (``from_pretrained`` would download), the
image processor's statistics stand for the checkpoint's; the Trainer's step is written out as the
docs' "native PyTorch" loop (``outputs = model(**batch); outputs.loss.backward()``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model
from torch import nn
from torchvision import transforms
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

import tlaudit
from tests.realistic.corpus import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    assert_correct,
    assert_named,
    images,
    labels,
    rows,
)

# PEFT calls transformers' deprecated ``is_gradient_checkpointing`` in get_peft_model (third-party).
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

PROCESSOR = ViTImageProcessor()  # google/vit-base-patch16-224-in21k's: mean = std = 0.5
VIT_WEIGHTS = {"mean": PROCESSOR.image_mean, "std": PROCESSOR.image_std}
LABELS = ["apple", "banana", "cherry", "date"]


def vit_config(**kw: Any) -> ViTConfig:
    return ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **kw)


def vit_pixels(n: int = 2) -> torch.Tensor:
    return (images(n, 32, normalize=False) - 0.5) / 0.5


def image_step(model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, optimizer: Any) -> None:
    model.train()
    outputs = model(pixel_values=pixel_values, labels=labels)
    outputs.loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def image_predict(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(pixel_values=pixel_values).logits


def text_step(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, optimizer: Any) -> None:
    """https://huggingface.co/docs/transformers/training ("Train in native PyTorch")."""
    model.train()
    outputs = model(input_ids=input_ids, labels=labels)
    loss = outputs.loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def text_predict(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def tokens(n: int = 2, length: int = 12, vocab: int = 100) -> torch.Tensor:
    return (torch.arange(n * length).view(n, length) * 7) % vocab


# https://huggingface.co/docs/transformers/tasks/image_classification: AutoModelForImageClassification
# with num_labels, id2label and label2id; ``Normalize(mean=image_processor.image_mean,
# std=image_processor.image_std)`` after RandomResizedCrop and ToTensor; learning_rate 5e-5.
def hf_image_classification_guide() -> tlaudit.TransferSetup:
    id2label = dict(enumerate(LABELS))
    model = ViTForImageClassification(vit_config(num_labels=len(LABELS), id2label=id2label, label2id={v: k for k, v in id2label.items()}))
    normalize = transforms.Normalize(mean=PROCESSOR.image_mean, std=PROCESSOR.image_std)
    train = transforms.Compose([transforms.RandomResizedCrop(32), transforms.ToTensor(), normalize])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=len(LABELS),
        sample=vit_pixels(),
        targets=labels(classes=4),
        optimizer=optimizer,
        weights=VIT_WEIGHTS,
        transform=train,
        train_step=image_step,
        predict=image_predict,
    )


# https://huggingface.co/docs/transformers/training ("Train in native PyTorch"): a sequence
# classifier, AdamW(lr=5e-5), a linear schedule without warm-up, model.eval() under no_grad.
def hf_text_native_loop() -> tlaudit.TransferSetup:
    model = BertForSequenceClassification(
        BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / 1000))
    return tlaudit.TransferSetup(
        model=model,
        num_classes=3,
        sample=tokens(),
        targets=labels(classes=3),
        optimizer=optimizer,
        scheduler=scheduler,
        train_step=text_step,
        predict=text_predict,
    )


# The "freeze the body" pattern a transformers maintainer gives for training only the classifier
# (https://github.com/huggingface/transformers/issues/400: "for param in model.bert.parameters():
# param.requires_grad = False ... Then only the classification layer should have requires_grad=True"),
# written with ``model.base_model`` as transformers' old training tutorial did
# (https://github.com/huggingface/transformers/pull/11533, the removed lines of docs/source/training.rst).
# Source: https://github.com/huggingface/transformers/issues/400
def hf_frozen_base_model() -> tlaudit.TransferSetup:
    model = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, num_labels=2)
    )
    for param in model.base_model.parameters():
        param.requires_grad = False
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=2,
        sample=tokens(),
        targets=labels(),
        optimizer=optimizer,
        strategy="feature_extraction",
        train_step=text_step,
        predict=text_predict,
    )


# A notebook's step calling ``model.forward(...)`` and the functional loss on ``.logits``.
# Source: https://huggingface.co/docs/transformers/training
def hf_forward_and_functional_loss() -> tlaudit.TransferSetup:
    setup = hf_text_native_loop()

    def step(m: nn.Module, input_ids: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
        m.train()
        opt.zero_grad()
        logits = m.forward(input_ids=input_ids).logits
        nn.functional.cross_entropy(logits, y).backward()
        opt.step()

    return setup.replace(train_step=step)


# https://huggingface.co/docs/peft/task_guides/image_classification_lora: LoraConfig(r=16,
# lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.1, bias="none",
# modules_to_save=["classifier"]); the Trainer at learning_rate=5e-3 over the trainable parameters.
# Adapted: transformers 5 names ViT's attention projections q_proj/v_proj (the guide's query/value).
def peft_vit_lora() -> tlaudit.TransferSetup:
    setup = hf_image_classification_guide()
    config = LoraConfig(
        r=16, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.1, bias="none", modules_to_save=["classifier"]
    )
    lora_model = get_peft_model(setup.model, config)
    optimizer = torch.optim.AdamW([p for p in lora_model.parameters() if p.requires_grad], lr=5e-3)
    return setup.replace(model=lora_model, optimizer=optimizer)


# https://github.com/huggingface/peft/blob/main/examples/sequence_classification/LoRA.ipynb:
# task_type=SEQ_CLS (the classifier is kept trainable by PEFT), r=8, lora_alpha=16, AdamW(lr=3e-4).
def peft_sequence_classification() -> tlaudit.TransferSetup:
    model = BertForSequenceClassification(
        BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2)
    )
    config = LoraConfig(task_type=TaskType.SEQ_CLS, inference_mode=False, r=8, lora_alpha=16, lora_dropout=0.1)
    model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW(params=model.parameters(), lr=3e-4)
    return tlaudit.TransferSetup(
        model=model, num_classes=2, sample=tokens(), targets=labels(), optimizer=optimizer, train_step=text_step, predict=text_predict
    )


CORRECT: dict[str, Any] = {
    "hf-image-classification-guide": hf_image_classification_guide,
    "hf-text-native-pytorch-loop": hf_text_native_loop,
    "hf-forum-frozen-base-model": hf_frozen_base_model,
    "hf-forward-functional-loss": hf_forward_and_functional_loss,
    "peft-image-classification-lora": peft_vit_lora,
    "peft-sequence-classification-lora": peft_sequence_classification,
}


@pytest.mark.parametrize("build", rows(CORRECT))
def test_correct_source_audits_without_errors(build: Any) -> None:
    assert_correct(build)


# -- the sources' own bugs -----------------------------------------------------------------------


# The image-classification guide passes ``num_labels=len(labels)``; without it the config keeps
# its default of 2 labels (the forum's "Target 3 is out of bounds" threads) for a 4-class dataset.
# Source: https://huggingface.co/docs/transformers/tasks/image_classification
def num_labels_left_at_default() -> tlaudit.TransferSetup:
    setup = hf_image_classification_guide()
    model = ViTForImageClassification(vit_config())
    return setup.replace(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=5e-5))


# The PEFT guide: "modules_to_save: ... the classifier ... is randomly initialized, so it needs to
# be trainable"; without it LoRA freezes the new classifier with the rest of the base model.
# Source: https://huggingface.co/docs/peft/task_guides/image_classification_lora
def lora_without_modules_to_save() -> tlaudit.TransferSetup:
    setup = hf_image_classification_guide()
    config = LoraConfig(r=16, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.1, bias="none")
    lora_model = get_peft_model(setup.model, config)
    optimizer = torch.optim.AdamW([p for p in lora_model.parameters() if p.requires_grad], lr=5e-4)
    return setup.replace(model=lora_model, optimizer=optimizer)


# The checkpoint's image processor says mean = std = 0.5 (ViT's pretraining); a pipeline copied
# from a torchvision tutorial normalizes with ImageNet's statistics instead.
# Source: https://huggingface.co/docs/transformers/tasks/image_classification
def vit_with_imagenet_statistics() -> tlaudit.TransferSetup:
    setup = hf_image_classification_guide()
    train = transforms.Compose([transforms.RandomResizedCrop(32), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return setup.replace(transform=train)


# The docs' evaluation loop calls ``model.eval()``; without it dropout stays on at inference.
# Source: https://huggingface.co/docs/transformers/training
def text_eval_without_eval_mode() -> tlaudit.TransferSetup:
    def predict(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=input_ids).logits

    return hf_text_native_loop().replace(predict=predict)


BUGGY: dict[str, Any] = {
    "hf-num-labels-left-at-default": (num_labels_left_at_default, "head-size", "config.num_labels` is 2, expected 4"),
    "peft-lora-without-modules-to-save": (lora_without_modules_to_save, "head-frozen", "classifier"),
    "hf-vit-with-imagenet-statistics": (vit_with_imagenet_statistics, "normalization", "0.5"),
    "hf-text-eval-without-eval-mode": (text_eval_without_eval_mode, "eval-mode", "dropout"),
}


@pytest.mark.parametrize(("build", "check", "fragment"), rows(BUGGY))
def test_the_sources_bug_is_named(build: Any, check: str, fragment: str) -> None:
    assert_named(build, check, fragment)
