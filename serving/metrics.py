"""Prometheus metrics of one router app, in their own registry (several apps can live in
one process, as in tests).

Hot-path metrics are looked up once per (model, version, role) and cached, so a request
costs a dict lookup plus one counter increment and one histogram observation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Model latencies of a text classifier: sub-millisecond to the candidate timeout and beyond.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass(frozen=True, slots=True)
class _RoleSeries:
    requests: Counter
    latency: Histogram
    errors: Counter


class RouterMetrics:
    """The router's counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model", "version", "role")
        self.requests = Counter(
            "router_predictions_total",
            "Predictions made, per model version and role",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "router_model_latency_seconds",
            "Model call latency, per model version and role",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "router_model_errors_total",
            "Model calls that raised or timed out, per model version and role",
            labels,
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "router_fallbacks_total",
            "Candidate requests answered by the champion, per model, candidate version, reason",
            ("model", "version", "reason"),
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "router_shadow_dropped_total",
            "Shadow calls dropped because ROUTER_SHADOW_QUEUE calls were outstanding",
            ("model",),
            registry=self.registry,
        )
        self.state_poll_errors = Counter(
            "router_state_poll_errors_total",
            "Failed reads of the rollout state (the last known state keeps serving)",
            registry=self.registry,
        )
        self.traffic_flushes = Histogram(
            "router_traffic_flush_seconds",
            "Duration of one batched traffic write",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=self.registry,
        )
        self._gauges: list[Gauge] = []
        self._series: dict[tuple[str, str, str], _RoleSeries] = {}

    def series(self, model: str, version: str, role: str) -> _RoleSeries:
        """The (cached) labelled children for one model version and role."""
        key = (model, version, role)
        found = self._series.get(key)
        if found is None:
            found = _RoleSeries(
                self.requests.labels(*key), self.latency.labels(*key), self.errors.labels(*key)
            )
            self._series[key] = found
        return found

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read at scrape time (costs nothing per request)."""
        gauge = Gauge(name, doc, registry=self.registry)
        gauge.set_function(read)
        self._gauges.append(gauge)

    def gauge_per_label(
        self, name: str, doc: str, label: str, reads: Mapping[str, Callable[[], float]]
    ) -> None:
        """A gauge with one child per `label` value, each read at scrape time."""
        gauge = Gauge(name, doc, (label,), registry=self.registry)
        for value, read in reads.items():
            gauge.labels(value).set_function(read)
        self._gauges.append(gauge)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
