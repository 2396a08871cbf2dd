"""Tests of ``tlaudit/checks/``, one module per module there."""
