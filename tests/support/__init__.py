"""Helpers shared by the test modules: tiny models and setups (helpers), setup cases (cases), CI setup files
(ci_setups) and the must-trigger / must-not case tables of the checks (check_cases)."""
