"""A small CNN fine-tuned on in-memory tensors; ``--style`` picks how the loop is written.

Usage: tensors_train.py [--style functional|per-batch-scheduler|compiled] [--steps N] [--exit-code N] [--crash]
"""

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--style", choices=["functional", "per-batch-scheduler", "compiled"], default="functional")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--exit-code", type=int)
parser.add_argument("--crash", action="store_true")
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
data = TensorDataset(torch.randn(8, 3, 16, 16), torch.randint(3, (8,)))
loader = DataLoader(data, batch_size=4)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
if args.style == "per-batch-scheduler":
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=args.epochs * len(loader))
criterion = nn.CrossEntropyLoss()
net = torch.compile(model, backend="eager") if args.style == "compiled" else model

steps = 0
for epoch in range(args.epochs):
    net.train()
    for x, y in loader:
        optimizer.zero_grad()
        out = net(x)
        loss = F.cross_entropy(out, y, label_smoothing=0.1) if args.style == "functional" else criterion(out, y)
        loss.backward()
        optimizer.step()
        steps += 1
        if args.style == "per-batch-scheduler":
            scheduler.step()
        if args.crash:
            raise RuntimeError("the script's own crash")
    net.eval()
    with torch.no_grad():
        accuracy = sum((net(x).argmax(1) == y).sum().item() for x, y in loader) / len(data)
    print(f"epoch {epoch} steps {steps} accuracy {accuracy:.2f}")
print(f"finished after {steps} steps")
if args.exit_code is not None:
    sys.exit(args.exit_code)
