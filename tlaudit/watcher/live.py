"""The run's live objects of a kind (its DataLoaders, schedulers, modules), found without changing them.

Nothing hands the watcher a run's DataLoader or scheduler: they are found among the objects the
garbage collector tracks (``gc.get_objects()``). One pass over them costs about as much as a small
model's step in a large process (a program that imported transformers holds over half a million), and
an audit asks several questions; inside :func:`one_pass` the objects are sorted by type once and
every question is answered from that, so an audit moment costs one pass.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

__all__ = ["instances", "one_pass"]

_by_type: dict[type, list[Any]] | None = None


@contextlib.contextmanager
def one_pass() -> Iterator[None]:
    """Answer :func:`instances` from one pass over the live objects until the block ends (nested
    blocks share the outer one's pass). Objects created inside the block are not seen."""
    global _by_type
    if _by_type is not None:
        yield
        return
    by_type: dict[type, list[Any]] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        found = by_type.get(kind)
        if found is None:
            by_type[kind] = [obj]
        else:
            found.append(obj)
    _by_type = by_type
    try:
        yield
    finally:
        _by_type = None


def instances(kinds: type | tuple[type, ...]) -> list[Any]:
    """The live objects whose type is a subclass of ``kinds`` (one pass now, or the block's)."""
    if _by_type is None:
        return [obj for obj in gc.get_objects() if issubclass(type(obj), kinds)]
    return [obj for kind, objs in _by_type.items() if issubclass(kind, kinds) for obj in objs]
