"""Retry, circuit breaking and rate limiting for calls to unreliable venues.

Pure asyncio with no I/O of its own: every time source (``sleep`` and a monotonic ``clock``) can be injected,
so tests drive these classes with a fake clock and never wait.

The pieces compose in :func:`call_resilient`, which runs one call as::

    for each attempt (at most RetryPolicy.max_attempts):
        RateLimiter.acquire()        wait for a token (token bucket, rate per second + burst)
        CircuitBreaker.allow()       refuse fast with VenueUnavailableError while the breaker is open
        fn()                         the call itself
        success -> record_success() and return
        retryable error -> record_failure(), sleep(backoff with full jitter or Retry-After), try again

Breaker states::

    CLOSED --(failure_threshold consecutive failures)--> OPEN
    OPEN   --(reset_timeout_s elapsed)-----------------> HALF_OPEN
    HALF_OPEN --(a trial call succeeds)----------------> CLOSED
    HALF_OPEN --(a trial call fails)-------------------> OPEN   (the cool-down starts again)
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from enum import StrEnum
from typing import Literal, TypeVar

from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    ConfigError,
    RateLimitError,
    VenueUnavailableError,
)

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "MonotonicClock",
    "RateLimiter",
    "RetryPolicy",
    "Sleep",
    "call_resilient",
]

T = TypeVar("T")

#: ``async def sleep(seconds)``: :func:`asyncio.sleep` by default, a fake in tests.
Sleep = Callable[[float], Awaitable[None]]
#: A monotonic clock in seconds: :func:`time.monotonic` by default, a fake in tests.
MonotonicClock = Callable[[], float]
#: Called before each retry with the attempt number that failed (1-based), its error and the delay in seconds.
BeforeRetry = Callable[[int, BaseException, float], Awaitable[None] | None]


class RetryPolicy(ComponentConfig):
    """Exponential backoff with jitter.

    The un-jittered delay after failed attempt ``k`` (1-based) is ``min(max_delay_s, base_delay_s *
    multiplier ** (k - 1))``. With ``jitter="full"`` the actual delay is uniform on ``[0, that]`` (the AWS
    "full jitter" scheme, which spreads a herd of retrying clients best); ``"equal"`` draws from
    ``[that / 2, that]``; ``"none"`` uses it as is.

    A :class:`~alphaloom.core.exceptions.RateLimitError` carrying ``retry_after_s`` is honoured: the delay is
    at least ``retry_after_s``, even above ``max_delay_s``, unless it exceeds ``max_retry_after_s``, in which
    case the error is raised at once rather than stalling the caller.

    Parameters
    ----------
    max_attempts
        Total attempts including the first (1 = no retry).
    base_delay_s, max_delay_s
        First backoff step and the cap on any backoff step, in seconds.
    multiplier
        Growth factor between steps.
    jitter
        ``"full"``, ``"equal"`` or ``"none"``.
    max_retry_after_s
        The longest venue-requested wait (``Retry-After``) worth sleeping through.
    """

    max_attempts: int = Field(5, ge=1, le=100)
    base_delay_s: float = Field(0.2, ge=0.0, allow_inf_nan=False)
    max_delay_s: float = Field(10.0, ge=0.0, allow_inf_nan=False)
    multiplier: float = Field(2.0, ge=1.0, allow_inf_nan=False)
    jitter: Literal["full", "equal", "none"] = "full"
    max_retry_after_s: float = Field(60.0, ge=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _caps_ordered(self) -> RetryPolicy:
        if self.max_delay_s < self.base_delay_s:
            raise ValueError(
                f"max_delay_s ({self.max_delay_s}) must be >= base_delay_s ({self.base_delay_s})"
            )
        return self

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay in seconds after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise ConfigError(f"attempt numbers start at 1, got {attempt}.")
        # Exponent capped so huge attempt numbers cannot overflow a float.
        step = self.base_delay_s * self.multiplier ** min(attempt - 1, 1023)
        return min(self.max_delay_s, step) if math.isfinite(step) else self.max_delay_s

    def delay(
        self, attempt: int, *, rng: random.Random | None = None, retry_after_s: float | None = None
    ) -> float:
        """The delay in seconds before the attempt after ``attempt`` (1-based), jitter applied.

        Parameters
        ----------
        attempt
            The attempt that just failed, counting from 1.
        rng
            Source of jitter; the module's global generator when ``None``.
        retry_after_s
            The venue's requested wait, if any; the result is never below it.
        """
        cap = self.ceiling(attempt)
        draw = (rng or random).random()
        if self.jitter == "full":
            wait = cap * draw
        elif self.jitter == "equal":
            wait = cap / 2 + cap / 2 * draw
        else:
            wait = cap
        if retry_after_s is not None and retry_after_s > wait:
            wait = float(retry_after_s)
        return wait

    def delays(self, *, rng: random.Random | None = None) -> Iterator[float]:
        """The ``max_attempts - 1`` delays between attempts, in seconds, jitter applied."""
        for attempt in range(1, self.max_attempts):
            yield self.delay(attempt, rng=rng)


class BreakerConfig(ComponentConfig):
    """Settings of a :class:`CircuitBreaker`.

    Parameters
    ----------
    failure_threshold
        Consecutive failures that open the breaker.
    reset_timeout_s
        Seconds the breaker stays open before letting trial calls through (half-open).
    half_open_max_calls
        Trial calls allowed at once while half-open.
    """

    failure_threshold: int = Field(5, ge=1)
    reset_timeout_s: float = Field(30.0, ge=0.0, allow_inf_nan=False)
    half_open_max_calls: int = Field(1, ge=1)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stop calling a venue that keeps failing, and probe it again after a cool-down.

    Parameters
    ----------
    config
        Thresholds and timeouts.
    clock
        Monotonic seconds; injectable for tests.
    name
        Named in error messages (the venue).

    Notes
    -----
    Only calls that show the venue is unhealthy should be recorded as failures (timeouts, 5xx); a rejected
    order or a rate limit means the venue answered. Each successful :meth:`allow` must be followed by exactly
    one :meth:`record_success`, :meth:`record_failure` or :meth:`release`, so half-open trial slots are
    returned.
    """

    def __init__(
        self, config: BreakerConfig | None = None, *, clock: MonotonicClock = time.monotonic, name: str = ""
    ) -> None:
        self.config = config or BreakerConfig()
        self.name = name
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._half_open_in_flight = 0
        self.consecutive_failures = 0
        self.total_failures = 0
        self.total_successes = 0
        self.times_opened = 0
        self.rejected_calls = 0
        self.last_error: str = ""

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(name={self.name!r}, state={self.state.value}, "
            f"consecutive_failures={self.consecutive_failures})"
        )

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down has elapsed reads as half-open."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.config.reset_timeout_s
        ):
            self._state = BreakerState.HALF_OPEN
            self._half_open_in_flight = 0
        return self._state

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.config.reset_timeout_s - self._clock())

    def allow(self) -> None:
        """Admit one call or refuse it.

        Raises
        ------
        VenueUnavailableError
            While open, or while half-open with all trial slots taken; the message says when to retry.
        """
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and self._half_open_in_flight < self.config.half_open_max_calls:
            self._half_open_in_flight += 1
            return
        self.rejected_calls += 1
        venue = f"{self.name!r} " if self.name else ""
        if state is BreakerState.OPEN:
            wait = self.retry_in_s()
            raise VenueUnavailableError(
                f"circuit breaker for venue {venue}is open after {self.consecutive_failures} consecutive "
                f"failures (last: {self.last_error or 'unknown'}); it will allow a trial call in "
                f"{wait:.1f} s."
            )
        raise VenueUnavailableError(
            f"circuit breaker for venue {venue}is half-open and its {self.config.half_open_max_calls} trial "
            "call(s) are in flight; retry when they finish."
        )

    def record_success(self) -> None:
        """A call admitted by :meth:`allow` succeeded: closes a half-open breaker."""
        self.total_successes += 1
        self.consecutive_failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._half_open_in_flight = max(0, self._half_open_in_flight - 1)
            self._state = BreakerState.CLOSED

    def record_failure(self, error: BaseException | str | None = None) -> None:
        """A call admitted by :meth:`allow` failed: may open the breaker (always re-opens a half-open one)."""
        self.total_failures += 1
        self.consecutive_failures += 1
        if error is not None:
            self.last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._half_open_in_flight = max(0, self._half_open_in_flight - 1)
            self._open()
        elif state is BreakerState.CLOSED and self.consecutive_failures >= self.config.failure_threshold:
            self._open()

    def release(self) -> None:
        """A call admitted by :meth:`allow` ended without evidence either way (e.g. it was cancelled)."""
        if self._state is BreakerState.HALF_OPEN:
            self._half_open_in_flight = max(0, self._half_open_in_flight - 1)

    def reset(self) -> None:
        """Force the breaker closed and clear the consecutive-failure count."""
        self._state = BreakerState.CLOSED
        self._half_open_in_flight = 0
        self.consecutive_failures = 0

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._half_open_in_flight = 0
        self.times_opened += 1


class RateLimiter:
    """An async token bucket: ``rate_per_s`` tokens per second, holding at most ``burst``.

    Waiters are served in arrival order. ``rate_per_s=None`` disables limiting.

    Parameters
    ----------
    rate_per_s
        Sustained rate in tokens (calls) per second, or ``None`` for no limit.
    burst
        Bucket capacity: calls allowed back to back after an idle spell. The bucket starts full.
    clock, sleep
        Monotonic seconds and an async sleep; injectable for tests.
    """

    def __init__(
        self,
        rate_per_s: float | None,
        burst: int = 1,
        *,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_s is not None and not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ConfigError(
                f"rate_per_s must be a positive finite number or None (no limit), got {rate_per_s!r}."
            )
        if burst < 1:
            raise ConfigError(f"burst must be at least 1, got {burst!r}.")
        self.rate_per_s = rate_per_s
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock: asyncio.Lock | None = None
        self.total_acquired = 0
        self.total_wait_s = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter(rate_per_s={self.rate_per_s}, burst={self.burst})"

    @property
    def tokens(self) -> float:
        """Tokens available now (fractional)."""
        self._refill()
        return self._tokens

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if available now, without waiting."""
        self._check(tokens)
        if self.rate_per_s is None:
            self.total_acquired += 1
            return True
        self._refill()
        if self._tokens >= tokens - 1e-9:
            self._tokens = max(0.0, self._tokens - tokens)
            self.total_acquired += 1
            return True
        return False

    async def acquire(self, tokens: float = 1.0) -> float:
        """Wait until ``tokens`` are available and take them; returns the seconds waited."""
        self._check(tokens)
        if self.rate_per_s is None:
            self.total_acquired += 1
            return 0.0
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited = 0.0
        async with self._lock:
            while True:
                self._refill()
                # A tolerance, because a refill after sleeping exactly the computed wait can land a hair
                # short of a whole token in floating point (and a clock cannot resolve the remainder).
                if self._tokens >= tokens - 1e-9:
                    self._tokens = max(0.0, self._tokens - tokens)
                    break
                wait = (tokens - self._tokens) / self.rate_per_s
                await self._sleep(wait)
                waited += wait
        self.total_acquired += 1
        self.total_wait_s += waited
        return waited

    def _check(self, tokens: float) -> None:
        if not 0 < tokens <= self.burst:
            raise ConfigError(f"can acquire between 0 and burst={self.burst} tokens at once, got {tokens}.")

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        if self.rate_per_s is not None:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)


async def call_resilient(
    fn: Callable[[], Awaitable[T]],
    *,
    retry: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    limiter: RateLimiter | None = None,
    retry_on: tuple[type[BaseException], ...] = (VenueUnavailableError, RateLimitError),
    before_retry: BeforeRetry | None = None,
    breaker_failures: tuple[type[BaseException], ...] = (VenueUnavailableError,),
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run ``fn()`` behind a rate limiter and a circuit breaker, retrying retryable errors with backoff.

    Parameters
    ----------
    fn
        A zero-argument coroutine function; called once per attempt.
    retry
        Backoff policy; ``None`` means a single attempt.
    breaker, limiter
        Optional; each attempt takes a token and asks the breaker first.
    retry_on
        Error types worth another attempt. Everything else propagates at once.
    before_retry
        Called (sync or async) with ``(failed_attempt, error, delay_s)`` before sleeping for a retry; an
        exception it raises aborts the call.
    breaker_failures
        Error types that count as breaker failures; any other outcome shows the venue answered and counts as
        a success. A refusal by the open breaker itself is not counted again.
    sleep, rng
        Injectable async sleep and jitter source.

    Returns
    -------
    T
        What ``fn`` returned.

    Raises
    ------
    Exception
        The last error when attempts are exhausted, a non-retryable error at once, or a ``RateLimitError``
        whose ``retry_after_s`` exceeds ``retry.max_retry_after_s``.
    """
    policy = retry or RetryPolicy(max_attempts=1)
    attempt = 0
    while True:
        attempt += 1
        if limiter is not None:
            await limiter.acquire()
        try:
            if breaker is not None:
                breaker.allow()
        except VenueUnavailableError as exc:
            error: BaseException = exc
        else:
            try:
                result = await fn()
            except asyncio.CancelledError:
                if breaker is not None:
                    breaker.release()
                raise
            except Exception as exc:
                if breaker is not None:
                    if isinstance(exc, breaker_failures):
                        breaker.record_failure(exc)
                    else:
                        breaker.record_success()
                error = exc
            else:
                if breaker is not None:
                    breaker.record_success()
                return result
        if not isinstance(error, retry_on) or attempt >= policy.max_attempts:
            raise error
        retry_after = getattr(error, "retry_after_s", None)
        if retry_after is not None and retry_after > policy.max_retry_after_s:
            raise error
        wait = policy.delay(attempt, rng=rng, retry_after_s=retry_after)
        if breaker is not None and breaker.state is BreakerState.OPEN:
            # Sleeping less than the cool-down would only be refused again.
            wait = max(wait, min(breaker.retry_in_s(), policy.max_delay_s))
        if before_retry is not None:
            maybe = before_retry(attempt, error, wait)
            if inspect.isawaitable(maybe):
                await maybe
        await sleep(wait)
