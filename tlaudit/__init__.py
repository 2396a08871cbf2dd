"""tlaudit: make PyTorch transfer learning correct and fast.

The package is lazy (PEP 562): ``import tlaudit`` imports neither torch nor the engine; each name
below is imported from its module on first use, so ``tlaudit --help`` and the pytest plugin stay
cheap while ``from tlaudit import audit`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tlaudit._version import __version__

if TYPE_CHECKING:  # what static type checkers and IDEs see; at run time __getattr__ imports these
    from tlaudit._names import PatternError
    from tlaudit.auditing.checks import REGISTRY, Check, get_check
    from tlaudit.auditing.engine import audit
    from tlaudit.auditing.report import AuditFailed, Finding, Report, Severity
    from tlaudit.auditing.rules.new_layers import new_modules
    from tlaudit.auditing.setup import Strategy, TransferSetup, load_setup
    from tlaudit.batchnorm import FrozenBatchNorm, eval_frozen_batchnorm, freeze_batchnorm
    from tlaudit.errors import SetupError
    from tlaudit.evaluation import inference
    from tlaudit.extract import ExtractConfig, FeatureExtractor, Features, load_features
    from tlaudit.freezing import BatchNormMode, freeze, freeze_backbone, unfreeze
    from tlaudit.groups import param_groups
    from tlaudit.inspection import Description, TrainableReport, describe, trainable_report
    from tlaudit.normalization import Normalization, expected_normalization, find_normalization, find_normalizations
    from tlaudit.staged import Stage, StagedUnfreezer
    from tlaudit.surgery import HeadNotFoundError, find_heads, remove_head, replace_head, truncate
    from tlaudit.watcher import watch

_EXPORTS: dict[str, str] = {
    "PatternError": "tlaudit._names",
    "FrozenBatchNorm": "tlaudit.batchnorm",
    "eval_frozen_batchnorm": "tlaudit.batchnorm",
    "freeze_batchnorm": "tlaudit.batchnorm",
    "REGISTRY": "tlaudit.auditing.checks",
    "Check": "tlaudit.auditing.checks",
    "get_check": "tlaudit.auditing.checks",
    "audit": "tlaudit.auditing.engine",
    "SetupError": "tlaudit.errors",
    "ExtractConfig": "tlaudit.extract",
    "FeatureExtractor": "tlaudit.extract",
    "Features": "tlaudit.extract",
    "load_features": "tlaudit.extract",
    "BatchNormMode": "tlaudit.freezing",
    "freeze": "tlaudit.freezing",
    "freeze_backbone": "tlaudit.freezing",
    "unfreeze": "tlaudit.freezing",
    "param_groups": "tlaudit.groups",
    "Description": "tlaudit.inspection",
    "TrainableReport": "tlaudit.inspection",
    "describe": "tlaudit.inspection",
    "trainable_report": "tlaudit.inspection",
    "inference": "tlaudit.evaluation",
    "new_modules": "tlaudit.auditing.rules.new_layers",
    "Normalization": "tlaudit.normalization",
    "expected_normalization": "tlaudit.normalization",
    "find_normalization": "tlaudit.normalization",
    "find_normalizations": "tlaudit.normalization",
    "AuditFailed": "tlaudit.auditing.report",
    "Finding": "tlaudit.auditing.report",
    "Report": "tlaudit.auditing.report",
    "Severity": "tlaudit.auditing.report",
    "Strategy": "tlaudit.auditing.setup",
    "TransferSetup": "tlaudit.auditing.setup",
    "load_setup": "tlaudit.auditing.setup",
    "Stage": "tlaudit.staged",
    "StagedUnfreezer": "tlaudit.staged",
    "HeadNotFoundError": "tlaudit.surgery",
    "find_heads": "tlaudit.surgery",
    "remove_head": "tlaudit.surgery",
    "replace_head": "tlaudit.surgery",
    "truncate": "tlaudit.surgery",
    "watch": "tlaudit.watcher",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tlaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
