"""tlaudit: make PyTorch transfer learning correct and fast."""
from __future__ import annotations

from tlaudit._names import PatternError
from tlaudit.engine import audit
from tlaudit.extract import ExtractConfig, FeatureExtractor, Features, load_features
from tlaudit.checks import REGISTRY, Check, get_check
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
from tlaudit.normalization import Normalization, expected_normalization, find_normalization, find_normalizations
from tlaudit.report import AuditFailed, Finding, Report, Severity
from tlaudit.setup import SetupError, Strategy, TransferSetup, load_setup
from tlaudit.surgery import Description, HeadNotFoundError, describe, find_heads, remove_head, replace_head, truncate

__version__ = "0.1.0"

for _error in (PatternError, HeadNotFoundError, SetupError, AuditFailed):
    _error.__module__ = "tlaudit"  # tracebacks name the public path
del _error

__all__ = [
    "__version__",
    "AuditFailed",
    "BatchNormMode",
    "Check",
    "Finding",
    "Normalization",
    "REGISTRY",
    "Report",
    "SetupError",
    "Severity",
    "Strategy",
    "TransferSetup",
    "audit",
    "expected_normalization",
    "ExtractConfig",
    "FeatureExtractor",
    "Features",
    "load_features",
    "find_normalization",
    "find_normalizations",
    "get_check",
    "load_setup",
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
