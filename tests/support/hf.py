"""Tiny Hugging Face models built from configs (nothing is downloaded), shared by the HF tests.

``transformers`` is imported when a builder is called, so importing this module needs no extra.
"""

from __future__ import annotations

from typing import Any

import torch

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def bert_config(num_labels: int = 3, **config: Any) -> Any:
    """A one-layer BERT over a 100-token vocabulary and 32 positions."""
    import transformers

    return transformers.BertConfig(vocab_size=100, max_position_embeddings=32, num_labels=num_labels, **{**TINY, **config})


def tiny_bert(num_labels: int = 3, **config: Any) -> torch.nn.Module:
    """``BertForSequenceClassification`` of :func:`bert_config`, seeded."""
    import transformers

    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(bert_config(num_labels, **config))


def vit_config(num_labels: int = 3, **config: Any) -> Any:
    """A one-layer ViT on 32 px images in 8 px patches."""
    import transformers

    return transformers.ViTConfig(image_size=32, patch_size=8, num_labels=num_labels, **{**TINY, **config})


def tiny_vit(num_labels: int = 3, **config: Any) -> torch.nn.Module:
    """``ViTForImageClassification`` of :func:`vit_config`, seeded."""
    import transformers

    torch.manual_seed(0)
    return transformers.ViTForImageClassification(vit_config(num_labels, **config))
