"""Feature extraction on an ImageFolder, written the usual way; ``--bug`` seeds one mistake.

Usage: imagefolder_train.py DATA_DIR [--bug typo-freeze|optimizer-before-head|wrong-normalization] [--epochs N] [--pretrained]
"""

import argparse

import torch
import torchvision
from torch import nn
from torchvision import transforms

parser = argparse.ArgumentParser()
parser.add_argument("data")
parser.add_argument("--bug", choices=["typo-freeze", "optimizer-before-head", "wrong-normalization"])
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--pretrained", action="store_true")
args = parser.parse_args()

torch.manual_seed(0)
mean, std = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) if args.bug == "wrong-normalization" else ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
transform = transforms.Compose([transforms.Resize(32), transforms.ToTensor(), transforms.Normalize(mean, std)])
dataset = torchvision.datasets.ImageFolder(args.data, transform=transform)
loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True)

model = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1 if args.pretrained else None)
for name, param in model.named_parameters():
    if args.bug == "typo-freeze":
        param.requires_grad == False  # noqa: E712, B015 -- the seeded typo: a comparison, not an assignment
    else:
        param.requires_grad = False
if args.bug == "optimizer-before-head":
    optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.01, momentum=0.9)
model.fc = nn.Linear(model.fc.in_features, len(dataset.classes))
if args.bug != "optimizer-before-head":
    optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.01, momentum=0.9)
criterion = nn.CrossEntropyLoss()

for epoch in range(args.epochs):
    model.train()
    for m in model.modules():  # frozen BatchNorm keeps its pretrained statistics
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    for step, (images, labels) in enumerate(loader):
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        print(f"epoch {epoch} step {step} loss {loss.item():.3f}")
print("trained")
