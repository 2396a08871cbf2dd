"""A small version of timm's ``train.py``: ``create_model(pretrained=True)`` from a local file,
``create_dataset``/``create_loader`` with the prefetcher (normalization done by ``PrefetchLoader``),
``create_optimizer_v2``, ``create_scheduler_v2`` (``CosineLRScheduler`` with warm-up, stepped per
update and per epoch), the loss computed inside ``ClassificationTask``, and a validation pass.

Written the way https://github.com/huggingface/pytorch-image-models/blob/main/train.py is written.

Usage: timm_train.py DATA_DIR CHECKPOINT_DIR [--bug labels-from-1|prefetch-stats] [--epochs N]
"""

import argparse
import os

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_dataset, create_loader, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.task import ClassificationTask

parser = argparse.ArgumentParser()
parser.add_argument("data_dir")
parser.add_argument("checkpoint_dir")
parser.add_argument("--bug", choices=["labels-from-1", "prefetch-stats"])
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()

device = torch.device("cpu")
checkpoint = os.path.join(args.checkpoint_dir, "test_resnet.pth")
if not os.path.exists(checkpoint):  # the "pretrained" weights: the architecture's own init, saved locally
    torch.save(timm.create_model("test_resnet").state_dict(), checkpoint)
torch.manual_seed(0)

dataset_train = create_dataset(
    "", root=args.data_dir, split="train", is_training=True, target_transform=(lambda t: t + 1) if args.bug == "labels-from-1" else None
)
dataset_eval = create_dataset("", root=args.data_dir, split="val")
num_classes = len(dataset_train.reader.class_to_idx)
model = timm.create_model("test_resnet", pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint), num_classes=num_classes)
data_config = resolve_data_config({"input_size": (3, 32, 32)}, model=model)
if args.bug == "prefetch-stats":  # the seeded mistake: ImageNet statistics for a checkpoint trained with others
    data_config["mean"], data_config["std"] = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

loader_train = create_loader(
    dataset_train,
    input_size=data_config["input_size"],
    batch_size=4,
    is_training=True,
    no_aug=True,
    use_prefetcher=True,
    mean=data_config["mean"],
    std=data_config["std"],
    num_workers=0,
    device=device,
)
loader_eval = create_loader(
    dataset_eval,
    input_size=data_config["input_size"],
    batch_size=4,
    is_training=False,
    use_prefetcher=True,
    mean=data_config["mean"],
    std=data_config["std"],
    num_workers=0,
    crop_pct=1.0,
    device=device,
)
optimizer = create_optimizer_v2(model, opt="sgd", lr=0.01, weight_decay=2e-5, momentum=0.9)
updates_per_epoch = len(loader_train)
lr_scheduler, num_epochs = create_scheduler_v2(
    optimizer,
    sched="cosine",
    num_epochs=args.epochs,
    warmup_epochs=1,
    warmup_lr=1e-4,
    updates_per_epoch=updates_per_epoch,
)
train_loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1)
validate_loss_fn = torch.nn.CrossEntropyLoss()
task = ClassificationTask(model, criterion=train_loss_fn, device=device, verbose=False)

for epoch in range(num_epochs):
    task.train()
    num_updates = epoch * updates_per_epoch
    for input, target in loader_train:
        result = task(input, target)
        loss = result["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        num_updates += 1
        lr_scheduler.step_update(num_updates=num_updates)
    model.eval()
    correct = 0
    with torch.no_grad():
        for input, target in loader_eval:
            output = model(input)
            validate_loss_fn(output, target)
            correct += (output.argmax(1) == target).sum().item()
    lr_scheduler.step(epoch + 1)
    print(f"epoch {epoch} updates {num_updates} val correct {correct}")
print(f"checksum {sum(p.detach().double().sum().item() for p in model.parameters())!r}")
