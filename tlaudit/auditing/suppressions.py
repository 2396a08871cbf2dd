"""Suppressions: findings a setup expects, reported as suppressed with their reason, never dropped.

A setup suppresses a check with ``TransferSetup(..., ignore={"frozen-bn-train": "AdaBN on purpose"})``
and a pytest test with ``@pytest.mark.tlaudit_suppress("frozen-bn-train", reason="AdaBN on purpose")``.
The check still runs; :func:`tlaudit.audit` moves its findings from ``Report.findings`` to
``Report.suppressed`` (with the reason), where every report format shows them and ``fail_on`` does
not count them. This is unlike ``select``/``ignore`` of the CLI and the marker, which do not run a
check at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tlaudit.auditing.findings import Finding, Suppressed

__all__ = ["apply_suppressions"]


def apply_suppressions(findings: Iterable[Finding], ignore: Mapping[str, str] | None) -> tuple[tuple[Finding, ...], tuple[Suppressed, ...]]:
    """Split ``findings`` into the active ones and those ``ignore`` (check ID -> reason) suppresses.

    >>> from tlaudit.auditing.findings import Severity
    >>> found = [Finding("frozen-bn-train", Severity.ERROR, "`layer1`: frozen but in training mode", "layer1"),
    ...          Finding("head-size", Severity.ERROR, "`fc` has 1000 outputs", "fc")]
    >>> active, suppressed = apply_suppressions(found, {"frozen-bn-train": "AdaBN on purpose"})
    >>> [f.check for f in active], [(s.finding.check, s.reason) for s in suppressed]
    (['head-size'], [('frozen-bn-train', 'AdaBN on purpose')])
    """
    active: list[Finding] = []
    suppressed: list[Suppressed] = []
    for finding in findings:
        reason = (ignore or {}).get(finding.check)
        if reason is None:
            active.append(finding)
        else:
            suppressed.append(Suppressed(finding, reason))
    return tuple(active), tuple(suppressed)
