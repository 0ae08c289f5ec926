"""Prometheus metrics of one app (its own registry, so several apps in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BREAKER_STATES = ("closed", "half_open", "open")


class ServiceMetrics:
    """Request latency, predictions, batches, cache, orders, risk rejections and breaker states."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "alphaloom_http_request_duration_seconds",
            "HTTP request latency in seconds, by method, route template and status code.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.predictions = Counter(
            "alphaloom_predictions_total",
            "Predictions served, by whether they came from the cache.",
            ["cached"],
            registry=r,
        )
        self.batch_size = Histogram(
            "alphaloom_inference_batch_size",
            "Requests per batched forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.orders = Counter(
            "alphaloom_orders_total", "Orders submitted through the API, by outcome.", ["outcome"], registry=r
        )
        self.risk_rejections = Counter(
            "alphaloom_risk_rejections_total",
            "Orders refused by the risk manager, by first limit hit.",
            ["limit"],
            registry=r,
        )
        self.rate_limited = Counter(
            "alphaloom_rate_limited_total", "Requests refused with 429, by role.", ["role"], registry=r
        )
        self.breaker_state = Gauge(
            "alphaloom_breaker_state",
            "Circuit breaker state per connector (1 for the current state).",
            ["connector", "state"],
            registry=r,
        )
        self.ws_clients = Gauge(
            "alphaloom_websocket_clients", "Connected WebSocket clients, by stream.", ["stream"], registry=r
        )
        self.trading_state = Gauge(
            "alphaloom_trading_state",
            "Risk manager trading state (1 for the current state).",
            ["state"],
            registry=r,
        )

    def set_breaker(self, connector: str, state: str) -> None:
        for s in _BREAKER_STATES:
            self.breaker_state.labels(connector, s).set(1.0 if s == state else 0.0)

    def set_trading_state(self, state: str) -> None:
        for s in ("normal", "reducing", "halted"):
            self.trading_state.labels(s).set(1.0 if s == state else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
