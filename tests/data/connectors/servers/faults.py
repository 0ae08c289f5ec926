"""Fault injection for the local venue servers: failing, slow, truncated and garbled answers, dropped streams.

A :class:`FaultInjector` is an aiohttp middleware. For each request it draws, from a seeded generator, whether
the request fails and how (:class:`FaultKind`), and counts what it did in :class:`FaultStats`, so a test can
assert and report the figures ("requests failed", by kind).

Faults happen in one of two phases, because the dangerous ones for idempotency are those where the venue did
the work and the client never heard about it:

- ``before``: the handler never runs (a 500/503 from a load balancer, a 429 with ``Retry-After``).
- ``after``: the handler runs (an order is created), then the answer is lost: replaced by a 500/503, delayed
  beyond the client's timeout, cut short (truncated JSON), garbled, or the connection is closed without an
  answer.

Streams (newline-delimited JSON or similar) ask :meth:`FaultInjector.should_drop_stream` after each message
they send; a drop writes half a line and closes the connection without finishing the chunked body, which is
how a dropped TCP connection looks to the client.

Typical use::

    injector = FaultInjector(FaultPlan(failure_rate=0.25, seed=7), applies_to=lambda r: r.path != "/health")
    app = web.Application(middlewares=[injector.middleware])
    ...
    assert injector.stats.failed > 0
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from aiohttp import web

__all__ = [
    "DEFAULT_WEIGHTS",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "FaultStats",
    "write_partial_and_drop",
]


class FaultKind(StrEnum):
    """What goes wrong with one request."""

    HTTP_500 = "http_500"  # handler ran, answer replaced by 500 (phase "after")
    HTTP_503 = "http_503"  # handler never ran, 503 (phase "before")
    HTTP_429 = "http_429"  # handler never ran, 429 with Retry-After (phase "before")
    SLOW = "slow"  # handler ran, answer delayed beyond the client's timeout (phase "after")
    TRUNCATED = "truncated"  # handler ran, JSON body cut in half (phase "after")
    GARBLED = "garbled"  # handler ran, body replaced by non-JSON bytes (phase "after")
    DISCONNECT = "disconnect"  # handler ran, connection closed without an answer (phase "after")

    @property
    def phase(self) -> str:
        return "before" if self in (FaultKind.HTTP_503, FaultKind.HTTP_429) else "after"


#: An even mix of every fault kind.
DEFAULT_WEIGHTS: Mapping[FaultKind, float] = MappingProxyType(dict.fromkeys(FaultKind, 1.0))


@dataclass(frozen=True)
class FaultPlan:
    """How often and how requests fail.

    Parameters
    ----------
    failure_rate
        Share of eligible requests that fail, in [0, 1].
    weights
        Relative frequency of each :class:`FaultKind` among failures; kinds left out never happen.
    seed
        Seed of the generator that draws failures, so a run is reproducible (up to request ordering).
    retry_after
        The ``Retry-After`` header value sent with 429s (seconds as text; fractions keep tests fast).
    slow_delay_s
        How long a ``SLOW`` answer is held back; choose it above the client's timeout.
    stream_drop_after
        A stream connection is dropped after this many messages (``None``: streams never drop).
    max_stream_drops
        At most this many stream drops in all, so a stream eventually runs to its end.
    error_body
        Builds the JSON body of an injected 5xx/429 from the status, in the venue's error format.
    """

    failure_rate: float = 0.0
    weights: Mapping[FaultKind, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    seed: int = 0
    retry_after: str = "0.01"
    slow_delay_s: float = 0.5
    stream_drop_after: int | None = None
    max_stream_drops: int = 3
    error_body: Callable[[int], dict[str, object]] = field(
        default=lambda status: {"errorMessage": f"injected fault: HTTP {status}"}
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be in [0, 1], got {self.failure_rate}")
        if self.failure_rate > 0 and not any(w > 0 for w in self.weights.values()):
            raise ValueError("weights must give at least one fault kind a positive weight")
        if self.stream_drop_after is not None and self.stream_drop_after < 1:
            raise ValueError(f"stream_drop_after must be >= 1, got {self.stream_drop_after}")


@dataclass
class FaultStats:
    """What the injector did: counts of requests seen, failed (by kind) and stream drops."""

    requests: int = 0
    failed: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    stream_drops: int = 0

    @property
    def failure_share(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.by_kind.items()))
        return (
            f"requests={self.requests} failed={self.failed} ({self.failure_share:.0%}) [{kinds}] "
            f"stream_drops={self.stream_drops}"
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FaultInjector:
    """An aiohttp middleware that makes a share of requests fail according to a :class:`FaultPlan`.

    Parameters
    ----------
    plan
        Failure rate, mix and timings.
    applies_to
        Which requests are eligible (all by default).
    before_only
        Requests that may only fail before their handler runs (503, 429): streaming endpoints, whose answer
        is already on its way when the handler returns. They drop mid-way through :meth:`should_drop_stream`.
    on_delivered
        Called with each request whose answer went out unaltered (e.g. to log which quotes really reached
        the client).
    """

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        applies_to: Callable[[web.Request], bool] | None = None,
        before_only: Callable[[web.Request], bool] | None = None,
        on_delivered: Callable[[web.Request], None] | None = None,
    ) -> None:
        self.plan = plan or FaultPlan()
        self.applies_to = applies_to or (lambda request: True)
        self.before_only = before_only or (lambda request: False)
        self.on_delivered = on_delivered
        self.stats = FaultStats()
        self.enabled = True
        self._rng = random.Random(self.plan.seed)
        self._lock = threading.Lock()
        kinds = [k for k, w in self.plan.weights.items() if w > 0]
        self._kinds = kinds
        self._weights = [self.plan.weights[k] for k in kinds]

    def set_plan(self, plan: FaultPlan) -> None:
        """Switch to another plan (counts are kept)."""
        with self._lock:
            self.plan = plan
            self._rng = random.Random(plan.seed)
            self._kinds = [k for k, w in plan.weights.items() if w > 0]
            self._weights = [plan.weights[k] for k in self._kinds]

    def draw(self, *, before_only: bool = False) -> FaultKind | None:
        """Decide the fate of one request; counts it. ``before_only`` limits it to 503 and 429."""
        with self._lock:
            self.stats.requests += 1
            plan = self.plan
            if not self.enabled or plan.failure_rate <= 0 or self._rng.random() >= plan.failure_rate:
                return None
            pairs = [(k, w) for k, w in zip(self._kinds, self._weights, strict=True)]
            if before_only:
                pairs = [(k, w) for k, w in pairs if k.phase == "before"]
                if not pairs:
                    return None
            kind = self._rng.choices([k for k, _ in pairs], [w for _, w in pairs])[0]
            self.stats.failed += 1
            self.stats.by_kind[kind.value] += 1
            return kind

    def should_drop_stream(self, sent_on_connection: int) -> bool:
        """Whether a stream that has sent ``sent_on_connection`` messages should drop now (and count it)."""
        with self._lock:
            limit = self.plan.stream_drop_after
            if (
                not self.enabled
                or limit is None
                or sent_on_connection < limit
                or self.stats.stream_drops >= self.plan.max_stream_drops
            ):
                return False
            self.stats.stream_drops += 1
            return True

    def _error(self, status: int) -> web.Response:
        headers = {"Retry-After": self.plan.retry_after} if status == 429 else {}
        return web.json_response(self.plan.error_body(status), status=status, headers=headers)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The aiohttp middleware; pass ``injector.middleware`` to ``web.Application(middlewares=...)``."""
        if not self.applies_to(request):
            response = await handler(request)
            if self.on_delivered is not None:
                self.on_delivered(request)
            return response
        kind = self.draw(before_only=self.before_only(request))
        if kind is FaultKind.HTTP_503:
            return self._error(503)
        if kind is FaultKind.HTTP_429:
            return self._error(429)
        response = await handler(request)
        if kind is None:
            if self.on_delivered is not None:
                self.on_delivered(request)
            return response
        if kind is FaultKind.HTTP_500:
            return self._error(500)
        if kind is FaultKind.SLOW:
            await asyncio.sleep(self.plan.slow_delay_s)
            return response
        body = response.body if isinstance(response, web.Response) else None
        raw = body if isinstance(body, bytes) else b'{"result": "unavailable"}'
        if kind is FaultKind.TRUNCATED:
            return web.Response(
                body=raw[: max(1, len(raw) // 2)], status=response.status, content_type="application/json"
            )
        if kind is FaultKind.GARBLED:
            garbled = b"<html><body>502 Bad Gateway</body></html>" + raw[:8].replace(b"{", b"\x00")
            return web.Response(body=garbled, status=response.status, content_type="application/json")
        # DISCONNECT: close the socket without writing any answer.
        if request.transport is not None:
            request.transport.close()
        return response


async def write_partial_and_drop(request: web.Request, response: web.StreamResponse, line: bytes) -> None:
    """Write the first half of ``line`` and close the connection mid-body, as a dropped stream looks."""
    await response.write(line[: max(1, len(line) // 2)])
    if request.transport is not None:
        request.transport.close()
