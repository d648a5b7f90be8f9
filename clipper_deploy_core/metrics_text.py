"""Reading the Prometheus text a cluster serves on ``/metrics`` (for ``inspect_instance``, on the user's side)."""

from __future__ import annotations

from typing import Any


def parse_metrics(text: str) -> dict[str, Any]:
    """Prometheus text -> ``{metric_name: [{"labels": {...}, "value": v}, ...]}`` (for inspect_instance)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append({"labels": dict(sample.labels), "value": sample.value})
    return out
