"""Module names without wrapper prefixes, and the pattern rules shared by every selector."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator, Sequence

from torch import nn

__all__ = ["PatternError", "unwrap", "strip_wrapper_prefix", "match_names", "closest", "named_parameters"]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class PatternError(ValueError):
    """A module-name pattern that names no module of the model."""


PatternError.__module__ = "tlaudit"  # tracebacks name the public path


def unwrap(model: nn.Module) -> nn.Module:
    """The user's own module inside DataParallel, DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "module", None) if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else None
        if inner is None and type(model).__name__ == "OptimizedModule":
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def traced_module(model: nn.Module) -> nn.Module:
    """What the audit runs the train step and ``predict`` on: the model, or the module inside a
    DistributedDataParallel or ``torch.compile`` wrapper, so that one rank's audit runs no collective
    and a compiled module is not recompiled. DataParallel (one process) is kept."""
    while True:
        inner = getattr(model, "module", None) if isinstance(model, nn.parallel.DistributedDataParallel) else None
        if inner is None and type(model).__name__ == "OptimizedModule":
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def strip_wrapper_prefix(name: str) -> str:
    """``module._orig_mod.layer1`` -> ``layer1``."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                changed = True
    return name


def _prefixes(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether ``pattern`` names ``name`` or one of its ancestors (dot boundary; globs allowed)."""
    for prefix in _prefixes(name):
        if prefix == pattern or fnmatch.fnmatchcase(prefix, pattern):
            return True
    return False


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates nearest to ``name``, for "did you mean" hints."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


def _clean_patterns(patterns: Sequence[str], field: str) -> list[str]:
    cleaned = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"module-name pattern must be a non-empty str: {pattern!r} ({field})")
        cleaned.append(strip_wrapper_prefix(pattern))
    return cleaned


def match_names(names: Sequence[str], patterns: Sequence[str], *, field: str = "patterns") -> list[str]:
    """The names that any pattern matches; a pattern that matches none raises :class:`PatternError`."""
    cleaned = _clean_patterns(patterns, field)
    selected = []
    hits = dict.fromkeys(cleaned, False)
    for name in names:
        matched = [pattern for pattern in cleaned if pattern_matches(pattern, name)]
        if matched:
            for pattern in matched:
                hits[pattern] = True
            selected.append(name)
    missing = [p for p, hit in hits.items() if not hit]
    if missing:
        pattern = missing[0]
        modules = sorted({prefix for name in names for prefix in _prefixes(name)})
        near = closest(pattern, modules)
        hint = f"; closest: {', '.join(near)}" if near else f"; top-level modules: {', '.join(_top_level(names))}"
        raise PatternError(f"pattern matches no module: {pattern!r} ({field}){hint}")
    return selected


def _top_level(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(name.split(".")[0] for name in names))


def named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the unwrapped model, each shared parameter once, under its first name."""
    return list(unwrap(model).named_parameters())
