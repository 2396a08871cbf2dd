"""Class-index targets checked on every loss call while a run is watched: a min and a max per call.

``torch.nn.functional.cross_entropy`` and ``nll_loss`` (which ``nn.CrossEntropyLoss``,
``nn.NLLLoss`` and the Hugging Face models' own losses call) are wrapped **on the functional module**
while the watch is open, never on a user object, and the module's own functions are put back, the
same objects, when it closes. The wrapper looks at the targets before the loss runs: an index below
0 or at or past the number of classes the input has (``ignore_index`` excepted) is recorded as a
:class:`LabelProblem`, then the loss runs unchanged (on CPU it raises, on a GPU it asserts later).
The watcher reports the problem beside the program's own exception, or at the next step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["LabelProblem", "LabelWatch"]

_WRAPPED = ("cross_entropy", "nll_loss")


@dataclass(frozen=True)
class LabelProblem:
    """Targets of one loss call outside ``[0, classes)``."""

    function: str
    targets: torch.Tensor
    classes: int
    low: int
    high: int
    declared: tuple[int, str] | None = None
    """The class count the dataset being iterated declares, and where it was read, when the problem
    was seen (a crash unwinds the loop, and its DataLoader iterator with it)."""


def _classes(input: Any) -> int | None:
    if not isinstance(input, torch.Tensor) or input.ndim == 0:
        return None
    return int(input.shape[1] if input.ndim >= 2 else input.shape[0])


class LabelWatch:
    """The wrappers; ``problems`` holds what they found, in order (the first is kept per watch)."""

    def __init__(self, declared: Callable[[], tuple[int, str] | None] | None = None) -> None:
        self.problems: list[LabelProblem] = []
        self._declared = declared
        self._originals: dict[str, Callable[..., Any]] = {}

    def open(self) -> None:
        for name in _WRAPPED:
            original = F.__dict__[name]
            self._originals[name] = original
            setattr(F, name, self._wrap(name, original))

    def close(self) -> None:
        """Put the functional module's own functions back; safe to call more than once."""
        while self._originals:
            name, original = self._originals.popitem()
            setattr(F, name, original)

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        problems = self.problems
        declared = self._declared

        @functools.wraps(original)
        def checked(input: Any, target: Any = None, *args: Any, **kwargs: Any) -> Any:
            if not problems and isinstance(target, torch.Tensor) and not target.is_floating_point() and target.numel():
                classes = _classes(input)
                ignore = kwargs.get("ignore_index", -100)
                if classes is not None and not torch.compiler.is_compiling():
                    kept = target[target != ignore] if target.dtype != torch.bool else target
                    if kept.numel():
                        low, high = int(kept.min()), int(kept.max())
                        if low < 0 or high >= classes:
                            known = declared() if declared is not None else None  # once: the problem is kept
                            problems.append(LabelProblem(name, target.detach(), classes, low, high, known))
            return original(input, target, *args, **kwargs)

        return checked
