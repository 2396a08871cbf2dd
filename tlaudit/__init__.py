"""tlaudit: make PyTorch transfer learning correct and fast."""
from __future__ import annotations

from tlaudit._names import PatternError
from tlaudit.freezing import (
    BatchNormMode,
    FrozenBatchNorm,
    Stage,
    StagedUnfreezer,
    TrainableReport,
    eval_frozen_batchnorm,
    freeze,
    freeze_backbone,
    freeze_batchnorm,
    inference,
    param_groups,
    trainable_report,
    unfreeze,
)
from tlaudit.surgery import Description, HeadNotFoundError, describe, find_heads, remove_head, replace_head, truncate

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BatchNormMode",
    "Description",
    "FrozenBatchNorm",
    "HeadNotFoundError",
    "PatternError",
    "Stage",
    "StagedUnfreezer",
    "TrainableReport",
    "describe",
    "eval_frozen_batchnorm",
    "find_heads",
    "freeze",
    "freeze_backbone",
    "freeze_batchnorm",
    "inference",
    "param_groups",
    "remove_head",
    "replace_head",
    "trainable_report",
    "truncate",
    "unfreeze",
]
