"""Hugging Face's image-classification example, small: a ViT "checkpoint" (a tiny ``ViTConfig``'s own
init and its ``ViTImageProcessor``, saved locally), ``AutoModelForImageClassification.from_pretrained``
with the dataset's labels, transforms built from the image processor's statistics, a ``collate_fn``
giving ``pixel_values``/``labels``, and ``Trainer`` with LR warm-up.

Written the way
https://github.com/huggingface/transformers/blob/main/examples/pytorch/image-classification/run_image_classification.py
is written; after training it predicts on the validation images in its own loop.

Usage: hf_image_classification.py CHECKPOINT_DIR [--bug frozen-classifier|num-labels|lr-high|processor-stats|eval-train-mode]
       [--audit-callback] [--steps N]
"""

import argparse
import os

import torch
from PIL import Image
from torchvision.transforms import Compose, Normalize, RandomHorizontalFlip, Resize, ToTensor
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint_dir")
parser.add_argument("--bug", choices=["frozen-classifier", "num-labels", "lr-high", "processor-stats", "eval-train-mode"])
parser.add_argument("--audit-callback", action="store_true", help="add tlaudit's TransferAuditCallback")
parser.add_argument("--steps", type=int, default=4)
args = parser.parse_args()

model_name_or_path = os.path.join(args.checkpoint_dir, "tiny-vit")
if not os.path.exists(model_name_or_path):  # the "pretrained" checkpoint: a 10-class tiny ViT's own init
    torch.manual_seed(1)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
        hidden_dropout_prob=0.1,
    )
    pretrained = ViTForImageClassification(config)
    with torch.no_grad():  # trained norms, as a real checkpoint has them (an untrained init looks unloaded)
        for module in pretrained.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.1)
    pretrained.save_pretrained(model_name_or_path)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(
        model_name_or_path
    )
torch.manual_seed(0)


class ImageClassificationDataset(torch.utils.data.Dataset):
    """Images and class ids, with the class names in ``classes`` (as torchvision datasets have them)."""

    classes = ["ants", "bees", "wasps"]

    def __init__(self, size: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = [Image.fromarray(torch.randint(0, 256, (40, 40, 3), generator=gen, dtype=torch.uint8).numpy()) for _ in range(size)]
        self.labels = [i % len(self.classes) for i in range(size)]
        self.transform = None

    def set_transform(self, transform):
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"pixel_values": self.transform(self.images[i].convert("RGB")), "labels": self.labels[i]}


dataset = {"train": ImageClassificationDataset(16, 0), "validation": ImageClassificationDataset(6, 1)}
labels = ImageClassificationDataset.classes
if args.bug == "num-labels":  # the seeded mistake: a class list one class short of the dataset's
    labels = labels[:-1]
label2id, id2label = {}, {}
for i, label in enumerate(labels):
    label2id[label] = str(i)
    id2label[str(i)] = label
model = AutoModelForImageClassification.from_pretrained(
    model_name_or_path,
    num_labels=len(labels),
    label2id=label2id,
    id2label=id2label,
    ignore_mismatched_sizes=True,
)
image_processor = AutoImageProcessor.from_pretrained(model_name_or_path)
size = (image_processor.size["height"], image_processor.size["width"])
if args.bug == "processor-stats":  # the seeded mistake: statistics copied from another model card
    normalize = Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
else:
    normalize = Normalize(mean=image_processor.image_mean, std=image_processor.image_std)
_train_transforms = Compose([Resize(size), RandomHorizontalFlip(), ToTensor(), normalize])
_val_transforms = Compose([Resize(size), ToTensor(), normalize])
dataset["train"].set_transform(_train_transforms)
dataset["validation"].set_transform(_val_transforms)

if args.bug == "frozen-classifier":  # the seeded mistake: the new classifier frozen with the encoder
    for param in model.parameters():
        param.requires_grad = False
    for param in model.vit.layers[-1].parameters():
        param.requires_grad = True


def collate_fn(examples):
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    labels = torch.tensor([example["labels"] for example in examples])
    return {"pixel_values": pixel_values, "labels": labels}


def compute_metrics(p):
    return {"accuracy": float((p.predictions.argmax(axis=1) == p.label_ids).mean())}


training_args = TrainingArguments(
    output_dir=os.path.join(args.checkpoint_dir, "out"),
    max_steps=args.steps,
    per_device_train_batch_size=4,
    per_device_eval_batch_size=4,
    learning_rate=1e-1 if args.bug == "lr-high" else 5e-5,
    warmup_steps=2,
    eval_strategy="no" if args.bug == "eval-train-mode" else "steps",
    eval_steps=2,
    save_strategy="no",
    logging_strategy="no",
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    seed=0,
    dataloader_num_workers=0,
)
callbacks = []
if args.audit_callback:
    from tlaudit.integrations.huggingface import TransferAuditCallback

    callbacks.append(TransferAuditCallback())
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=dataset["train"],
    eval_dataset=dataset["validation"],
    compute_metrics=compute_metrics,
    processing_class=image_processor,
    data_collator=collate_fn,
    callbacks=callbacks,
)
train_result = trainer.train()
print(f"trained {trainer.state.global_step} steps")

# predictions on the validation images, in the script's own loop
if args.bug != "eval-train-mode":  # the seeded mistake: predicting with dropout active
    model.eval()
batch = collate_fn([dataset["validation"][i] for i in range(len(dataset["validation"]))])
with torch.no_grad():
    predicted = model(pixel_values=batch["pixel_values"]).logits.argmax(-1)
print("predicted:", " ".join(id2label[str(i)] for i in predicted.tolist()))
print(f"checksum {sum(p.detach().double().sum().item() for p in model.parameters())!r}")
