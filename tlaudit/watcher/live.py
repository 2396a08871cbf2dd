"""The run's live objects of a kind (its DataLoaders, schedulers, modules), found without changing them.

Nothing hands the watcher a run's DataLoader or scheduler: they are found among the objects the
garbage collector tracks (``gc.get_objects()``). One pass over them costs about as much as a small
model's step in a large process (a program that imported transformers holds over half a million), and
an audit asks several questions; inside :func:`one_pass` the objects are sorted by type once and
every question is answered from that, so an audit moment costs one pass, made at its first
question: a moment that asks nothing (most steps before the first validation pass) costs none.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

__all__ = ["instances", "one_pass"]

_by_type: dict[type, list[Any]] | None = None
_armed = False
"""Inside a :func:`one_pass` block: the first :func:`instances` call makes the pass (a step that asks
nothing, as most steps before the first validation pass, costs nothing)."""


@contextlib.contextmanager
def one_pass() -> Iterator[None]:
    """Answer :func:`instances` from one pass over the live objects until the block ends (nested
    blocks share the outer one's pass). The pass is made at the block's first question, not before;
    objects created after it are not seen."""
    global _by_type, _armed
    if _armed:
        yield
        return
    _armed = True
    try:
        yield
    finally:
        _armed = False
        _by_type = None


def _sorted_by_type() -> dict[type, list[Any]]:
    by_type: dict[type, list[Any]] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        found = by_type.get(kind)
        if found is None:
            by_type[kind] = [obj]
        else:
            found.append(obj)
    return by_type


def instances(kinds: type | tuple[type, ...]) -> list[Any]:
    """The live objects whose type is a subclass of ``kinds`` (one pass now, or the block's)."""
    global _by_type
    if not _armed:
        return [obj for obj in gc.get_objects() if issubclass(type(obj), kinds)]
    if _by_type is None:
        _by_type = _sorted_by_type()
    return [obj for kind, objs in _by_type.items() if issubclass(kind, kinds) for obj in objs]
