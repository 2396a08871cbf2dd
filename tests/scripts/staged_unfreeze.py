"""Gradual unfreezing in plain PyTorch: train the new head on a frozen ResNet-18, then unfreeze
``layer4`` at a later epoch and give it to the optimizer with a lower LR (``add_param_group``, or a
rebuilt optimizer with ``--rebuild``). Frozen BatchNorm layers are put back in eval mode each epoch.

Written the way gradual-unfreezing loops are (Howard & Ruder 2018, https://arxiv.org/abs/1801.06146;
e.g. https://discuss.pytorch.org/t/how-to-add-parameters-to-an-optimizer-after-unfreezing/ threads and
https://github.com/pytorch/pytorch/blob/main/torch/optim/optimizer.py ``add_param_group``'s docstring:
"useful when fine tuning a pre-trained network as frozen layers can be made trainable and added to the
Optimizer as training progresses").

Usage: staged_unfreeze.py CHECKPOINT_DIR [--bug optimizer-not-told|high-lr|late-label] [--rebuild] [--epochs N]
"""

import argparse
import os

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint_dir")
parser.add_argument("--bug", choices=["optimizer-not-told", "high-lr", "late-label"])
parser.add_argument("--rebuild", action="store_true")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--unfreeze-at", type=int, default=1)
args = parser.parse_args()

checkpoint = os.path.join(args.checkpoint_dir, "resnet18-staged.pth")
if not os.path.exists(checkpoint):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), checkpoint)
torch.manual_seed(0)

num_classes = 3
images = torch.randn(8, 3, 32, 32)
labels = torch.arange(8) % num_classes
if args.bug == "late-label":  # the seeded mistake: one class id past the head, held by the second batch only
    labels[6] = num_classes
loader = DataLoader(TensorDataset(images, labels), batch_size=4, shuffle=False)

model = torchvision.models.resnet18(weights=None)
model.load_state_dict(torch.load(checkpoint, weights_only=True))
for param in model.parameters():
    param.requires_grad = False
model.fc = nn.Linear(model.fc.in_features, num_classes)
optimizer = torch.optim.SGD(model.fc.parameters(), lr=1e-2, momentum=0.9)


def set_frozen_bn_eval(model):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and not any(p.requires_grad for p in module.parameters()):
            module.eval()


for epoch in range(args.epochs):
    if epoch == args.unfreeze_at:
        for param in model.layer4.parameters():
            param.requires_grad = True
        backbone_lr = 1e-1 if args.bug == "high-lr" else 1e-3
        if args.rebuild:
            optimizer = torch.optim.SGD(
                [{"params": model.layer4.parameters(), "lr": backbone_lr}, {"params": model.fc.parameters()}], lr=1e-2, momentum=0.9
            )
        elif args.bug != "optimizer-not-told":
            optimizer.add_param_group({"params": model.layer4.parameters(), "lr": backbone_lr})
        print(f"epoch {epoch}: unfroze layer4")
    model.train()
    set_frozen_bn_eval(model)
    for step, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    print(f"epoch {epoch} loss {loss.item():.4f} accuracy {accuracy:.2f}")
print(f"checksum {sum(p.detach().double().sum().item() for p in model.parameters())!r}")
