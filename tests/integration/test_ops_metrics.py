"""/metrics (Prometheus text) on the gateway port and on metrics_port."""

from __future__ import annotations

import re

import httpx

from gateway.metrics import METRICS


def sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name}{labels} not in /metrics"
    return float(match.group(1))


async def test_metrics_endpoint_counts_a_session(gateway_factory, stomp, unique):
    gw = await gateway_factory(metrics_port=0)
    base = f"http://127.0.0.1:{gw.port}"
    async with httpx.AsyncClient() as http:
        before = (await http.get(f"{base}/metrics")).text
        c = await stomp(gw.url)
        await c.subscribe(f"/topic/{unique}", id="s")
        await c.send_frame("SEND", {"destination": f"/topic/{unique}", "receipt": "r"}, "hi")
        assert sorted(f.command for f in await c.recv_frames(2)) == ["MESSAGE", "RECEIPT"]
        await c.send_frame("NOPE")
        assert (await c.recv_frame()).header("message") == "Bad command"
        reply = await http.get(f"{base}/metrics")
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        after = reply.text

        def delta(name: str, labels: str = "") -> float:
            old = sample(before, name, labels) if f"{name}{labels} " in before else 0.0
            return sample(after, name, labels) - old

        p = "stomp_gateway_"
        assert delta(p + "connections_total", '{transport="ws"}') == 1
        assert sample(after, p + "connections_open", '{transport="ws"}') >= 1
        assert delta(p + "sessions_total", '{transport="ws"}') == 1
        assert delta(p + "frames_received_total", '{command="SEND"}') == 1
        assert delta(p + "frames_received_total", '{command="other"}') == 1  # NOPE
        assert delta(p + "frames_sent_total", '{command="RECEIPT"}') == 2
        assert delta(p + "frames_sent_total", '{command="MESSAGE"}') == 1
        assert delta(p + "messages_published_total") == 1
        assert delta(p + "messages_delivered_total") == 1
        assert delta(p + "errors_total", '{message="Bad command"}') == 1
        assert delta(p + "publish_confirm_seconds_count") == 1
        assert delta(p + "bytes_received_total") > 0
        assert sample(after, p + "broker_up") == 1
        for name in ("heartbeat_timeouts_total", "limit_breaches_total", "session_closes_total"):
            assert f"# TYPE {p}{name} counter" in after
        # The same registry on the metrics-only port, with the probes.
        side = f"http://127.0.0.1:{gw.server.metrics_port}"
        assert (await http.get(f"{side}/healthz")).text == "ok\n"
        assert (await http.get(f"{side}/readyz")).text == "ready\n"
        metrics = await http.get(f"{side}/metrics")
        assert metrics.status_code == 200 and "stomp_gateway_connections_total" in metrics.text
        assert (await http.get(f"{side}/")).status_code == 404
    assert METRICS.render().startswith("# HELP stomp_gateway_connections_open")
