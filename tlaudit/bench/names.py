"""The names ``tlaudit bench`` offers on its command line (torch-free, so that ``tlaudit --help`` is cheap)."""
from __future__ import annotations

__all__ = ["MODES", "INPUTS", "DTYPE_NAMES"]

MODES = ("naive", "baseline", "optimized", "compiled", "channels-last")
"""Every mode name; ``tlaudit bench`` runs the first three unless ``--modes`` says otherwise."""

INPUTS = ("synthetic", "uint8-host")
"""``synthetic``: normalized float32 already on the device; ``uint8-host``: uint8 pixels in host memory."""

DTYPE_NAMES = ("float32", "bfloat16", "float16")
"""Compute dtypes by name; anything but ``float32`` runs the backbone under ``torch.autocast``."""
