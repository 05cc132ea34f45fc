"""Labelled counters and their Prometheus / dict renderings."""

from __future__ import annotations

from beemesh.metrics import Metrics


def test_counters_start_at_zero_and_increase() -> None:
    m = Metrics()
    assert m.get("messages_dropped", "stale") == 0
    m.inc("messages_dropped", "stale")
    m.inc("messages_dropped", "stale", 2)
    m.inc("messages_dropped", "replayed")
    m.inc("records_published")
    assert m.get("messages_dropped", "stale") == 3
    assert m.get("messages_dropped", "replayed") == 1
    assert m.get("records_published") == 1


def test_as_dict_groups_labels() -> None:
    m = Metrics()
    m.inc("messages_dropped", "stale")
    m.inc("messages_dropped", "replayed", 4)
    m.inc("records_published", n=2)
    assert m.as_dict() == {
        "messages_dropped": {"replayed": 4, "stale": 1},
        "records_published": 2,
    }


def test_prometheus_text() -> None:
    m = Metrics()
    m.describe("messages_dropped", "Messages dropped, by reason")
    m.describe("messages_accepted", "Messages accepted, by kind", label_name="kind")
    m.inc("messages_dropped", "stale")
    m.inc("messages_dropped", "replayed", 2)
    m.inc("messages_accepted", "MachineRecord", 5)
    m.inc("restarts")
    assert m.prometheus() == (
        "# HELP beemesh_messages_accepted_total Messages accepted, by kind\n"
        "# TYPE beemesh_messages_accepted_total counter\n"
        'beemesh_messages_accepted_total{kind="MachineRecord"} 5\n'
        "# HELP beemesh_messages_dropped_total Messages dropped, by reason\n"
        "# TYPE beemesh_messages_dropped_total counter\n"
        'beemesh_messages_dropped_total{reason="replayed"} 2\n'
        'beemesh_messages_dropped_total{reason="stale"} 1\n'
        "# HELP beemesh_restarts_total restarts\n"
        "# TYPE beemesh_restarts_total counter\n"
        "beemesh_restarts_total 1\n"
    )


def test_prometheus_help_once_per_metric() -> None:
    m = Metrics()
    for reason in ("a", "b", "c"):
        m.inc("dropped", reason)
    text = m.prometheus()
    assert text.count("# HELP beemesh_dropped_total") == 1
    assert text.count("# TYPE beemesh_dropped_total counter") == 1
    assert text.endswith("\n")
