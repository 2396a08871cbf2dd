"""Tests of ``tlaudit/engine/``, one module per module there."""
