"""Helpers of the extraction tests."""
