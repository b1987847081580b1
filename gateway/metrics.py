"""Prometheus metrics, rendered in the text exposition format (version 0.0.4).

A deliberately small implementation: counters, gauges and histograms keyed by a tuple
of label values, kept in plain dicts so that recording costs one dict update on the
hot path. ``METRICS`` is the process-wide registry; ``render()`` produces the body of
``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metric:
    kind = "untyped"

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.doc = doc
        self.label_names = tuple(labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterator[str]:
        raise NotImplementedError


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, doc, labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0)

    def samples(self) -> Iterator[str]:
        if not self.values and not self.label_names:
            yield f"{self.name} 0"
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(Counter):
    kind = "gauge"

    def __init__(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        collect: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name, doc, labels)
        self.collect = collect

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value

    def dec(self, *labels: str, amount: float = 1) -> None:
        self.inc(*labels, amount=-amount)

    def samples(self) -> Iterator[str]:
        if self.collect is not None:
            self.values[()] = self.collect()
        yield from super().samples()


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, doc: str, buckets: Sequence[float]) -> None:
        super().__init__(name, doc)
        self.bounds = sorted(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def samples(self) -> Iterator[str]:
        running = 0
        for bound, count in zip([*self.bounds, math.inf], self.counts, strict=True):
            running += count
            yield f'{self.name}_bucket{{le="{_number(bound)}"}} {running}'
        yield f"{self.name}_sum {_number(self.sum)}"
        yield f"{self.name}_count {self.count}"


def _tasks() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # no running loop
        return 0.0


M = TypeVar("M", bound=Metric)


class Registry:
    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def add(self, metric: M) -> M:
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.metrics:
            lines += metric.header()
            lines += metric.samples()
        return "\n".join(lines) + "\n"


class GatewayMetrics:
    """Every metric the gateway exports, in one place."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        p = "stomp_gateway_"
        self.connections_open = r.add(
            Gauge(p + "connections_open", "Client connections open now.", ["transport"])
        )
        self.connections_total = r.add(
            Counter(p + "connections_total", "Client connections accepted.", ["transport"])
        )
        self.sessions_total = r.add(
            Counter(p + "sessions_total", "STOMP sessions that reached CONNECTED.", ["transport"])
        )
        self.frames_in = r.add(
            Counter(p + "frames_received_total", "STOMP frames received, by command.", ["command"])
        )
        self.frames_out = r.add(
            Counter(p + "frames_sent_total", "STOMP frames sent, by command.", ["command"])
        )
        self.bytes_in = r.add(Counter(p + "bytes_received_total", "Bytes of STOMP received."))
        self.bytes_out = r.add(Counter(p + "bytes_sent_total", "Bytes of STOMP sent."))
        self.published = r.add(
            Counter(p + "messages_published_total", "Messages published to RabbitMQ (SEND).")
        )
        self.delivered = r.add(
            Counter(p + "messages_delivered_total", "Messages delivered to clients (MESSAGE).")
        )
        self.errors = r.add(
            Counter(p + "errors_total", "ERROR frames sent, by message header.", ["message"])
        )
        self.closes = r.add(
            Counter(p + "session_closes_total", "Sessions ended, by reason.", ["reason"])
        )
        self.heartbeat_timeouts = r.add(
            Counter(p + "heartbeat_timeouts_total", "Sessions dropped for client silence.")
        )
        self.limit_breaches = r.add(
            Counter(
                p + "limit_breaches_total", "Connections refused or ended by a limit.", ["limit"]
            )
        )
        self.confirm_latency = r.add(
            Histogram(
                p + "publish_confirm_seconds",
                "Time from publish to the broker's confirm.",
                [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
            )
        )
        self.broker_up = r.add(
            Gauge(p + "broker_up", "1 when RabbitMQ was reachable at the last attempt, else 0.")
        )
        self.broker_up.set(1)
        self.tasks = r.add(
            Gauge(p + "asyncio_tasks", "asyncio tasks alive in the process.", collect=_tasks)
        )

    def render(self) -> str:
        return self.registry.render()


METRICS = GatewayMetrics()
