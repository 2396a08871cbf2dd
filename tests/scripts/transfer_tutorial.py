"""PyTorch's transfer-learning tutorial as a whole: fine-tune a model, then train a second one as a
fixed feature extractor, then look at its predictions (``visualize_model``).

Written the way https://github.com/pytorch/tutorials/blob/main/beginner_source/transfer_learning_tutorial.py
is written; the "pretrained" ResNet-18 is a local checkpoint (the architecture's own init).

Usage: transfer_tutorial.py DATA_DIR CHECKPOINT_DIR [--part both|finetuning|fixed-feature-extractor]
       [--bug labels-from-1|class-list|second-freeze-typo|visualize-train-mode] [--epochs N]
"""

import argparse
import os
import time

import torch
import torch.nn as nn
import torch.optim as optim
from torch.optim import lr_scheduler
from torchvision import datasets, models, transforms

parser = argparse.ArgumentParser()
parser.add_argument("data_dir")
parser.add_argument("checkpoint_dir")
parser.add_argument("--bug", choices=["labels-from-1", "class-list", "second-freeze-typo", "visualize-train-mode"])
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--part", choices=["both", "finetuning", "fixed-feature-extractor"], default="both", help="the tutorial's parts to run")
args = parser.parse_args()

checkpoint = os.path.join(args.checkpoint_dir, "resnet18-tutorial.pth")
if not os.path.exists(checkpoint):
    torch.save(models.resnet18(weights=None).state_dict(), checkpoint)
torch.manual_seed(0)

data_transforms = {
    "train": transforms.Compose(
        [
            transforms.RandomResizedCrop(32),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    ),
    "val": transforms.Compose(
        [
            transforms.Resize(36),
            transforms.CenterCrop(32),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    ),
}
target_transform = (lambda y: y + 1) if args.bug == "labels-from-1" else None  # the seeded mistake: classes counted from 1
image_datasets = {
    x: datasets.ImageFolder(os.path.join(args.data_dir, x), data_transforms[x], target_transform=target_transform) for x in ["train", "val"]
}
dataloaders = {x: torch.utils.data.DataLoader(image_datasets[x], batch_size=4, shuffle=True, num_workers=0) for x in ["train", "val"]}
dataset_sizes = {x: len(image_datasets[x]) for x in ["train", "val"]}
class_names = image_datasets["train"].classes
if args.bug == "class-list":  # the seeded mistake: the tutorial's class list kept for a dataset with more classes
    class_names = ["ants", "bees"]
device = torch.device("cpu")


def pretrained_resnet18():
    model = models.resnet18(weights=None)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return model


def train_model(model, criterion, optimizer, scheduler, num_epochs=25):
    since = time.time()
    best_acc = 0.0
    for epoch in range(num_epochs):
        print(f"Epoch {epoch}/{num_epochs - 1}")
        for phase in ["train", "val"]:
            if phase == "train":
                model.train()
            else:
                model.eval()
            running_loss = 0.0
            running_corrects = 0
            for inputs, labels in dataloaders[phase]:
                inputs = inputs.to(device)
                labels = labels.to(device)
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    _, preds = torch.max(outputs, 1)
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                running_loss += loss.item() * inputs.size(0)
                running_corrects += torch.sum(preds == labels.data)
            if phase == "train":
                scheduler.step()
            epoch_acc = running_corrects.double() / dataset_sizes[phase]
            print(f"{phase} Loss: {running_loss / dataset_sizes[phase]:.4f} Acc: {epoch_acc:.4f}")
            if phase == "val" and epoch_acc > best_acc:
                best_acc = epoch_acc
        if args.bug == "visualize-train-mode":
            model.train()  # back in training mode after validation, as many loops leave it (harmless by itself)
    print(f"Training complete in {time.time() - since:.0f}s")
    return model


def visualize_model(model, num_images=4):
    was_training = model.training
    if args.bug != "visualize-train-mode":  # the seeded mistake: predicting in training mode
        model.eval()
    predicted = []
    with torch.no_grad():
        for inputs, labels in dataloaders["val"]:
            outputs = model(inputs.to(device))
            _, preds = torch.max(outputs, 1)
            predicted.extend(class_names[p] for p in preds.tolist())
            if len(predicted) >= num_images:
                break
    model.train(mode=was_training)
    print("predicted:", " ".join(predicted[:num_images]))


criterion = nn.CrossEntropyLoss()
model = None
if args.part in ("both", "finetuning"):
    # Finetuning the ConvNet
    model_ft = pretrained_resnet18()
    num_ftrs = model_ft.fc.in_features
    model_ft.fc = nn.Linear(num_ftrs, len(class_names))
    model_ft = model_ft.to(device)
    optimizer_ft = optim.SGD(model_ft.parameters(), lr=0.001, momentum=0.9)
    exp_lr_scheduler = lr_scheduler.StepLR(optimizer_ft, step_size=7, gamma=0.1)
    model = model_ft = train_model(model_ft, criterion, optimizer_ft, exp_lr_scheduler, num_epochs=args.epochs)

if args.part in ("both", "fixed-feature-extractor"):
    # ConvNet as fixed feature extractor
    model_conv = pretrained_resnet18()
    for param in model_conv.parameters():
        if args.bug == "second-freeze-typo":
            param.requires_grad == False  # noqa: E712, B015 -- the seeded typo: a comparison, not an assignment
        else:
            param.requires_grad = False
    num_ftrs = model_conv.fc.in_features
    model_conv.fc = nn.Linear(num_ftrs, len(class_names))
    model_conv = model_conv.to(device)
    optimizer_conv = optim.SGD(model_conv.fc.parameters(), lr=0.001, momentum=0.9)
    exp_lr_scheduler = lr_scheduler.StepLR(optimizer_conv, step_size=7, gamma=0.1)
    model = model_conv = train_model(model_conv, criterion, optimizer_conv, exp_lr_scheduler, num_epochs=args.epochs)

visualize_model(model)
print(f"checksum {sum(p.detach().double().sum().item() for p in model.parameters())!r}")
