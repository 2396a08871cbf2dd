"""Tests for tlaudit."""
