"""Tests of ``tlaudit/reports/``, one module per format."""
