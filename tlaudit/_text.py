"""Small wording helpers shared by the checks' findings and the pytest assertions."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["count", "examples", "fmt"]


def count(n: int, word: str) -> str:
    """``1 parameter`` / ``3 parameters``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def examples(names: Sequence[str], limit: int = 3) -> str:
    """```a`, `b`, `c` and 4 more``."""
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def fmt(values: Sequence[float]) -> str:
    """``[0.485, 0.456, 0.406]``: four significant digits."""
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
