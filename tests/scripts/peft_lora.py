"""LoRA fine-tuning with PEFT in a plain PyTorch loop: a ViT "checkpoint" (a tiny ``ViTConfig``'s own
init, saved locally) loaded for a new label set, ``LoraConfig(target_modules=["q_proj", "v_proj"],
modules_to_save=["classifier"])``, ``get_peft_model``, then ``AdamW(model.parameters())`` and
``get_linear_schedule_with_warmup``; the model computes its own loss from ``labels``.

Written the way PEFT's examples are written:
https://github.com/huggingface/peft/blob/main/examples/image_classification/image_classification_peft_lora.ipynb
(the config) and https://github.com/huggingface/peft/blob/main/examples/sequence_classification/LoRA.ipynb (the loop).

Usage: peft_lora.py CHECKPOINT_DIR [--bug no-modules-to-save|optimizer-before-peft] [--epochs N]
"""

import argparse
import os

import torch
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader, TensorDataset
from transformers import AutoModelForImageClassification, ViTConfig, ViTForImageClassification, get_linear_schedule_with_warmup

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint_dir")
parser.add_argument("--bug", choices=["no-modules-to-save", "optimizer-before-peft"])
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()

model_name_or_path = os.path.join(args.checkpoint_dir, "tiny-vit-lora")
if not os.path.exists(model_name_or_path):
    torch.manual_seed(1)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=10
    )
    pretrained = ViTForImageClassification(config)
    with torch.no_grad():  # trained norms, as a real checkpoint has them (an untrained init looks unloaded)
        for module in pretrained.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.1)
    pretrained.save_pretrained(model_name_or_path)
torch.manual_seed(0)

labels = ["ants", "bees", "wasps"]
gen = torch.Generator().manual_seed(0)
train_data = TensorDataset(torch.randn(16, 3, 32, 32, generator=gen), torch.arange(16) % len(labels))
eval_data = TensorDataset(torch.randn(8, 3, 32, 32, generator=gen), torch.arange(8) % len(labels))
train_dataloader = DataLoader(train_data, batch_size=4, shuffle=True)
eval_dataloader = DataLoader(eval_data, batch_size=4)

model = AutoModelForImageClassification.from_pretrained(
    model_name_or_path,
    label2id={l: i for i, l in enumerate(labels)},
    id2label=dict(enumerate(labels)),
    ignore_mismatched_sizes=True,
)
if args.bug == "optimizer-before-peft":  # the seeded mistake: the optimizer holds the base model's parameters
    optimizer = torch.optim.AdamW(params=model.parameters(), lr=1e-3)
config = LoraConfig(
    r=4,
    lora_alpha=8,
    target_modules=["q_proj", "v_proj"],
    lora_dropout=0.1,
    bias="none",
    modules_to_save=None if args.bug == "no-modules-to-save" else ["classifier"],
)
model = get_peft_model(model, config)
if args.bug != "optimizer-before-peft":
    optimizer = torch.optim.AdamW(params=model.parameters(), lr=1e-3)
lr_scheduler = get_linear_schedule_with_warmup(
    optimizer=optimizer,
    num_warmup_steps=1,
    num_training_steps=len(train_dataloader) * args.epochs,
)

for epoch in range(args.epochs):
    model.train()
    for pixel_values, y in train_dataloader:
        outputs = model(pixel_values=pixel_values, labels=y)
        loss = outputs.loss
        loss.backward()
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
    model.eval()
    correct = 0
    for pixel_values, y in eval_dataloader:
        with torch.no_grad():
            outputs = model(pixel_values=pixel_values, labels=y)
        correct += (outputs.logits.argmax(-1) == y).sum().item()
    print(f"epoch {epoch} loss {loss.item():.4f} eval correct {correct}")
print(f"checksum {sum(p.detach().double().sum().item() for p in model.parameters())!r}")
