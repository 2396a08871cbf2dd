"""Tests of ``tlaudit/integrations/``, one module per framework."""
