"""Prometheus families: one per metric, labels that sum to the total, shared figures apart."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.prometheus import RequestMetrics, process_exposition, shared_exposition
from tokenwindow.metrics import build_snapshot


def shared_text() -> str:
    counters = {
        "compressions": "5",
        "compressions:hybrid": "3",
        "compressions:summarization": "1",
        "turns_completed": "7",
        "provider_calls": "4",
        "provider_calls:openai": "4",
    }
    snapshot = build_snapshot(counters, {"le:0.5": "2", "count": "2", "sum": "0.4"}, 1)
    return shared_exposition(snapshot, {"fast": 0, "completions": 2}).decode()


def test_each_metric_is_one_family_with_its_label() -> None:
    families = list(text_string_to_metric_families(shared_text()))
    names = [family.name for family in families]
    assert len(names) == len(set(names))
    assert not [name for name in names if "_by_" in name]
    compressions = next(f for f in families if f.name == "tokenwindow_compressions")
    samples = {s.labels["strategy"]: s.value for s in compressions.samples}
    # One increment had no strategy: it shows as "other", so the sum is the total.
    assert samples == {"hybrid": 3, "summarization": 1, "other": 1}
    calls = next(f for f in families if f.name == "tokenwindow_provider_calls")
    assert [(s.labels, s.value) for s in calls.samples] == [({"provider": "openai"}, 4)]
    completed = next(f for f in families if f.name == "tokenwindow_turns_completed")
    assert [(s.labels, s.value) for s in completed.samples] == [({}, 7)]


def test_process_metrics_hold_no_shared_figure() -> None:
    requests = RequestMetrics()
    requests.requests.labels("/healthz", "GET", "200").inc()
    names = {f.name for f in text_string_to_metric_families(process_exposition(requests).decode())}
    assert names == {"tokenwindow_gateway_requests", "tokenwindow_gateway_request_duration_seconds"}
    shared = {f.name for f in text_string_to_metric_families(shared_text())}
    assert not names & shared
