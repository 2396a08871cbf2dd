"""Numbers read from the objects users hand over (statistics in weights, transforms, processors)."""

from __future__ import annotations

from typing import Any

__all__ = ["float_tuple"]


def float_tuple(values: Any, field: str) -> tuple[float, ...]:
    """``values`` (a number, a sequence, a tensor) as a tuple of floats.

    Raises:
        ValueError: not numbers, or empty; the message names ``field``.
    """
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        return (float(values),)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{field} must be a sequence of numbers: {values!r} ({field})") from err
    if not out:
        raise ValueError(f"{field} is empty ({field})")
    return out
