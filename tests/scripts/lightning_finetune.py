"""Lightning's computer-vision fine-tuning example, small: a pretrained ResNet-18 as
``feature_extractor``, a new ``fc``, ``MilestonesFinetuning(BaseFinetuning)`` with ``train_bn=False``
(or ``BackboneFinetuning(train_bn=False)``), ``training_step`` calling ``self.forward``, the loss
called with keywords, ``Adam`` over the trainable parameters and ``MultiStepLR``.

Written the way
https://github.com/Lightning-AI/pytorch-lightning/blob/master/examples/pytorch/domain_templates/computer_vision_fine_tuning.py
is written; ImageFolder data and a local "pretrained" checkpoint (the architecture's own init).

Usage: lightning_finetune.py DATA_DIR CHECKPOINT_DIR [--finetuning milestones|backbone] [--bug milestone-lr]
       [--audit-callback] [--epochs N]
"""

import argparse
import os

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
from torch import nn, optim
from torch.optim.lr_scheduler import MultiStepLR
from torch.utils.data import DataLoader
from torchmetrics import Accuracy
from torchvision import models, transforms
from torchvision.datasets import ImageFolder

parser = argparse.ArgumentParser()
parser.add_argument("data_dir")
parser.add_argument("checkpoint_dir")
parser.add_argument("--finetuning", choices=["milestones", "backbone"], default="milestones")
parser.add_argument("--bug", choices=["milestone-lr"])
parser.add_argument("--audit-callback", action="store_true", help="add tlaudit's TransferAudit callback")
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()

checkpoint = os.path.join(args.checkpoint_dir, "resnet18-lightning.pth")
if not os.path.exists(checkpoint):
    torch.save(models.resnet18(weights=None).state_dict(), checkpoint)
pl.seed_everything(0, verbose=False)


class MilestonesFinetuning(BaseFinetuning):
    def __init__(self, milestones: tuple = (1, 2), train_bn: bool = False):
        super().__init__()
        self.milestones = milestones
        self.train_bn = train_bn

    def freeze_before_training(self, pl_module: pl.LightningModule):
        self.freeze(modules=pl_module.feature_extractor, train_bn=self.train_bn)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: optim.Optimizer):
        denom = 0.01 if args.bug == "milestone-lr" else 10.0  # the seeded mistake: 100x the LR, not a tenth
        if epoch == self.milestones[0]:
            self.unfreeze_and_add_param_group(
                modules=pl_module.feature_extractor[-5:], optimizer=optimizer, train_bn=self.train_bn, initial_denom_lr=denom
            )
        elif epoch == self.milestones[1]:
            self.unfreeze_and_add_param_group(
                modules=pl_module.feature_extractor[:-5], optimizer=optimizer, train_bn=self.train_bn, initial_denom_lr=denom
            )


class CatDogImageDataModule(pl.LightningDataModule):
    def __init__(self, dl_path: str, batch_size: int = 4):
        super().__init__()
        self._dl_path = dl_path
        self._batch_size = batch_size

    @property
    def normalize_transform(self):
        return transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])

    @property
    def train_transform(self):
        return transforms.Compose(
            [transforms.Resize((32, 32)), transforms.RandomHorizontalFlip(), transforms.ToTensor(), self.normalize_transform]
        )

    @property
    def valid_transform(self):
        return transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor(), self.normalize_transform])

    def train_dataloader(self):
        dataset = ImageFolder(os.path.join(self._dl_path, "train"), transform=self.train_transform)
        return DataLoader(dataset, batch_size=self._batch_size, shuffle=True, num_workers=0)

    def val_dataloader(self):
        dataset = ImageFolder(os.path.join(self._dl_path, "val"), transform=self.valid_transform)
        return DataLoader(dataset, batch_size=self._batch_size, shuffle=False, num_workers=0)


class TransferLearningModel(pl.LightningModule):
    def __init__(self, lr: float = 1e-3, lr_scheduler_gamma: float = 1e-1, milestones: tuple = (1, 2)):
        super().__init__()
        self.lr = lr
        self.lr_scheduler_gamma = lr_scheduler_gamma
        self.milestones = milestones
        self.__build_model()
        self.train_acc = Accuracy(task="binary")
        self.valid_acc = Accuracy(task="binary")

    def __build_model(self):
        backbone = models.resnet18(weights=None)
        backbone.load_state_dict(torch.load(checkpoint, weights_only=True))
        _layers = list(backbone.children())[:-1]
        self.feature_extractor = nn.Sequential(*_layers)
        _fc_layers = [nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 16), nn.Linear(16, 1)]
        self.fc = nn.Sequential(*_fc_layers)
        self.loss_func = F.binary_cross_entropy_with_logits

    @property
    def backbone(self):  # the name BackboneFinetuning looks for
        return self.feature_extractor

    def forward(self, x):
        x = self.feature_extractor(x)
        x = x.squeeze(-1).squeeze(-1)
        x = self.fc(x)
        return x

    def loss(self, logits, labels):
        return self.loss_func(input=logits, target=labels)

    def training_step(self, batch, batch_idx):
        x, y = batch
        y_logits = self.forward(x)
        y_scores = torch.sigmoid(y_logits)
        y_true = y.view((-1, 1)).type_as(x)
        train_loss = self.loss(y_logits, y_true)
        self.log("train_acc", self.train_acc(y_scores, y_true.int()), prog_bar=True)
        return train_loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        y_logits = self.forward(x)
        y_scores = torch.sigmoid(y_logits)
        y_true = y.view((-1, 1)).type_as(x)
        self.log("val_loss", self.loss(y_logits, y_true), prog_bar=True)
        self.log("val_acc", self.valid_acc(y_scores, y_true.int()), prog_bar=True)

    def configure_optimizers(self):
        parameters = list(self.parameters())
        trainable_parameters = list(filter(lambda p: p.requires_grad, parameters))
        optimizer = optim.Adam(trainable_parameters, lr=self.lr)
        scheduler = MultiStepLR(optimizer, milestones=self.milestones, gamma=self.lr_scheduler_gamma)
        return [optimizer], [scheduler]


finetuning = (
    MilestonesFinetuning(milestones=(1, 2), train_bn=False)
    if args.finetuning == "milestones"
    else BackboneFinetuning(unfreeze_backbone_at_epoch=1, train_bn=False)
)
callbacks = [finetuning]
if args.audit_callback:
    from tlaudit.integrations.lightning import TransferAudit

    callbacks.append(TransferAudit())
trainer = pl.Trainer(
    accelerator="cpu",
    devices=1,
    max_epochs=args.epochs,
    logger=False,
    enable_checkpointing=False,
    enable_model_summary=False,
    log_every_n_steps=1,
    num_sanity_val_steps=1,
    callbacks=callbacks,
)
model = TransferLearningModel()
trainer.fit(model, datamodule=CatDogImageDataModule(args.data_dir))
print(f"checksum {sum(p.detach().double().sum().item() for p in model.parameters())!r}")
