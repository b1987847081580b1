"""The Prometheus exposition: exact text for each kind of metric."""

from __future__ import annotations

from gateway.metrics import Counter, GatewayMetrics, Gauge, Histogram, Registry


def test_counter_gauge_histogram_render_exactly() -> None:
    r = Registry()
    c = r.add(Counter("x_total", "Things.", ["kind"]))
    g = r.add(Gauge("y", "Level."))
    h = r.add(Histogram("z_seconds", "Time.", [0.1, 1]))
    c.inc("a")
    c.inc("a", amount=2)
    c.inc('b"\n')
    g.set(5)
    g.dec()
    for value in (0.05, 0.1, 0.5, 3):
        h.observe(value)
    assert r.render() == (
        "# HELP x_total Things.\n# TYPE x_total counter\n"
        'x_total{kind="a"} 3\n'
        'x_total{kind="b\\"\\n"} 1\n'
        "# HELP y Level.\n# TYPE y gauge\ny 4\n"
        "# HELP z_seconds Time.\n# TYPE z_seconds histogram\n"
        'z_seconds_bucket{le="0.1"} 2\n'
        'z_seconds_bucket{le="1"} 3\n'
        'z_seconds_bucket{le="+Inf"} 4\n'
        "z_seconds_sum 3.65\n"
        "z_seconds_count 4\n"
    )


def test_unlabelled_counter_starts_at_zero_and_gauge_can_collect() -> None:
    r = Registry()
    r.add(Counter("n_total", "N."))
    r.add(Gauge("open", "Open.", collect=lambda: 7))
    assert "n_total 0\n" in r.render()
    assert "open 7\n" in r.render()


def test_gateway_metrics_names() -> None:
    text = GatewayMetrics().render()
    for name in (
        "stomp_gateway_connections_open",
        "stomp_gateway_frames_received_total",
        "stomp_gateway_publish_confirm_seconds_bucket",
        "stomp_gateway_broker_up 1",
    ):
        assert name in text
