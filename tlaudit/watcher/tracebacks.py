"""The traceback of a watched run's crash, as the unwatched program's would be.

A loss or a model call that raises while the watch is open passes through the watcher's wrappers on
the way (the label check around ``F.cross_entropy``, :mod:`tlaudit.watcher.labels`; the loss
function mode, :mod:`tlaudit.watcher.observe`, which torch enters through
``torch.overrides.handle_torch_function``). Those frames are the tool's, not the program's: the user
reading the traceback must see their own code and torch's, as without the watch.
:func:`hide_watcher_frames` rewrites the exception's traceback (and those of its cause and context)
without them; the exception itself, its message and its type are untouched.

Python's own traceback printing does not honour pytest's ``__tracebackhide__``, so the frames are
removed from the chain (``types.TracebackType`` builds the new one).
"""

from __future__ import annotations

import os
import types

__all__ = ["hide_watcher_frames"]

_WATCHER = os.path.dirname(os.path.abspath(__file__)) + os.sep
_OVERRIDES = os.path.join("torch", "overrides.py")


def _ours(tb: types.TracebackType) -> bool:
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_WATCHER)


def _without(tb: types.TracebackType | None) -> types.TracebackType | None:
    frames: list[types.TracebackType] = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    if not frames:
        return None
    last = frames[-1]
    # raised in the watcher's own code: its bug, shown whole; unless the frame is the loss mode's
    # dispatch, where the torch function it hands on raised (a shape mismatch in the program's loss)
    if _ours(last) and last.tb_frame.f_code.co_name != "__torch_function__":
        return frames[0]
    kept: list[types.TracebackType] = []
    for frame in frames:
        if _ours(frame):
            # torch entered the watcher's function mode through handle_torch_function, called by the
            # function that is entered again (past the dispatch) right after: both are the mode's doing
            if kept and kept[-1].tb_frame.f_code.co_filename.endswith(_OVERRIDES):
                kept.pop()
                if kept:
                    kept.pop()
            continue
        kept.append(frame)
    if len(kept) == len(frames):
        return frames[0]
    rebuilt: types.TracebackType | None = None
    for frame in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, frame.tb_frame, frame.tb_lasti, frame.tb_lineno)
    return rebuilt


def hide_watcher_frames(error: BaseException) -> BaseException:
    """``error`` with the watcher's frames left out of its traceback and of its cause's and context's."""
    seen: set[int] = set()
    current: BaseException | None = error
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = _without(current.__traceback__)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return error
