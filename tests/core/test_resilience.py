"""Retry policy, circuit breaker, rate limiter and call_resilient, on fake clocks (no test waits)."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import (
    AuthenticationError,
    ConfigError,
    OrderRejectedError,
    RateLimitError,
    VenueUnavailableError,
)
from alphaloom.core.resilience import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    RateLimiter,
    RetryPolicy,
    call_resilient,
)


class FakeTime:
    """A monotonic clock and an async sleep that advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# ---------------------------------------------------------------------- RetryPolicy


def test_retry_defaults_and_config_checks() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay_s, policy.max_delay_s, policy.jitter) == (
        5,
        0.2,
        10.0,
        "full",
    )
    assert len(list(policy.delays())) == 4
    with pytest.raises(ConfigError, match="max_delay_s"):
        RetryPolicy.from_dict({"base_delay_s": 5.0, "max_delay_s": 1.0})
    with pytest.raises(ConfigError, match="Did you mean 'max_attempts'"):
        RetryPolicy.from_dict({"max_attempt": 3})


def test_unjittered_delays_grow_exponentially_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay_s=0.5, max_delay_s=5.0, jitter="none")
    assert list(policy.delays()) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert policy.ceiling(10_000) == 5.0  # no overflow


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(0.0, 5.0),
    extra=st.floats(0.0, 60.0),
    multiplier=st.floats(1.0, 4.0),
    attempt=st.integers(1, 200),
    jitter=st.sampled_from(["full", "equal", "none"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_backoff_stays_within_its_jitter_bounds(
    base: float, extra: float, multiplier: float, attempt: int, jitter: str, seed: int
) -> None:
    policy = RetryPolicy(
        max_attempts=3, base_delay_s=base, max_delay_s=base + extra, multiplier=multiplier, jitter=jitter
    )
    cap = policy.ceiling(attempt)
    assert 0.0 <= cap <= policy.max_delay_s
    assert cap == pytest.approx(min(policy.max_delay_s, base * multiplier ** (attempt - 1)), rel=1e-9)
    delay = policy.delay(attempt, rng=random.Random(seed))
    low = {"full": 0.0, "equal": cap / 2, "none": cap}[jitter]
    assert low - 1e-12 <= delay <= cap + 1e-12


@settings(max_examples=100, deadline=None)
@given(retry_after=st.floats(0.0, 100.0), attempt=st.integers(1, 20), seed=st.integers(0, 1000))
def test_retry_after_is_a_floor_on_the_delay(retry_after: float, attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=1.0)
    delay = policy.delay(attempt, rng=random.Random(seed), retry_after_s=retry_after)
    assert delay >= retry_after
    assert delay <= max(retry_after, policy.ceiling(attempt))


def test_full_jitter_spreads_over_the_whole_range() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=1.0)
    rng = random.Random(0)
    draws = [policy.delay(1, rng=rng) for _ in range(2000)]
    assert min(draws) < 0.05
    assert max(draws) > 0.95
    assert sum(draws) / len(draws) == pytest.approx(0.5, abs=0.03)


# ---------------------------------------------------------------------- CircuitBreaker


def test_breaker_opens_half_opens_and_closes_on_a_fake_clock() -> None:
    clock = FakeTime()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=3, reset_timeout_s=30.0), clock=clock, name="v")
    for _ in range(2):
        breaker.allow()
        breaker.record_failure(VenueUnavailableError("503"))
    assert breaker.state is BreakerState.CLOSED
    breaker.allow()
    breaker.record_failure("timeout")
    assert breaker.state is BreakerState.OPEN
    assert breaker.times_opened == 1
    with pytest.raises(VenueUnavailableError, match=r"'v' is open .* trial call in 30\.0 s"):
        breaker.allow()
    clock.now += 29.0
    assert breaker.retry_in_s() == pytest.approx(1.0)
    with pytest.raises(VenueUnavailableError):
        breaker.allow()
    clock.now += 1.0
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.allow()  # the one trial call
    with pytest.raises(VenueUnavailableError, match="half-open"):
        breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.rejected_calls == 3


def test_failed_trial_call_reopens_and_restarts_the_cool_down() -> None:
    clock = FakeTime()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, reset_timeout_s=10.0), clock=clock)
    breaker.allow()
    breaker.record_failure()
    clock.now += 10.0
    breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in_s() == pytest.approx(10.0)
    assert breaker.times_opened == 2


def test_released_trial_slot_can_be_used_again() -> None:
    clock = FakeTime()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, reset_timeout_s=0.0), clock=clock)
    breaker.allow()
    breaker.record_failure()
    breaker.allow()
    breaker.release()
    breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


@settings(max_examples=150, deadline=None)
@given(
    threshold=st.integers(1, 5),
    reset=st.floats(0.5, 50.0),
    steps=st.lists(st.tuples(st.sampled_from(["ok", "fail", "wait"]), st.floats(0.0, 60.0)), max_size=60),
)
def test_breaker_matches_a_reference_state_machine(
    threshold: int, reset: float, steps: list[tuple[str, float]]
) -> None:
    clock = FakeTime()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=threshold, reset_timeout_s=reset), clock=clock)
    state, failures, opened_at = "closed", 0, 0.0
    for action, dt in steps:
        if action == "wait":
            clock.now += dt
            continue
        if state == "open" and clock.now - opened_at >= reset:
            state = "half_open"
        allowed = state != "open"
        if allowed:
            breaker.allow()
        else:
            with pytest.raises(VenueUnavailableError):
                breaker.allow()
            assert breaker.state is BreakerState.OPEN
            continue
        if action == "ok":
            breaker.record_success()
            state, failures = "closed", 0
        else:
            breaker.record_failure()
            failures += 1
            if state == "half_open" or failures >= threshold:
                state, opened_at = "open", clock.now
        assert breaker.state.value == (
            "half_open" if state == "open" and clock.now - opened_at >= reset else state
        )
        assert breaker.consecutive_failures == failures


# ---------------------------------------------------------------------- RateLimiter


def test_limiter_allows_a_burst_then_the_rate() -> None:
    clock = FakeTime()
    limiter = RateLimiter(5.0, burst=3, clock=clock, sleep=clock.sleep)

    async def run() -> None:
        for _ in range(3):
            assert await limiter.acquire() == 0.0
        for _ in range(10):
            await limiter.acquire()

    start = clock.now
    asyncio.run(run())
    # 3 free, then 10 more at 5 per second.
    assert clock.now - start == pytest.approx(2.0)
    assert limiter.total_acquired == 13
    assert not limiter.try_acquire()
    clock.now += 0.2
    assert limiter.try_acquire()


@settings(max_examples=50, deadline=None)
@given(rate=st.floats(0.5, 200.0), burst=st.integers(1, 20), n=st.integers(1, 80))
def test_limiter_never_exceeds_rate_times_time_plus_burst(rate: float, burst: int, n: int) -> None:
    clock = FakeTime()
    limiter = RateLimiter(rate, burst=burst, clock=clock, sleep=clock.sleep)
    times: list[float] = []

    async def run() -> None:
        for _ in range(n):
            await limiter.acquire()
            times.append(clock.now)

    asyncio.run(run())
    t0 = times[0]
    for k, t in enumerate(times, start=1):
        assert k <= burst + rate * (t - t0) + 1e-6


def test_limiter_serves_concurrent_waiters_in_order_and_none_means_unlimited() -> None:
    clock = FakeTime()
    limiter = RateLimiter(10.0, burst=1, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    async def worker(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    async def run() -> None:
        await asyncio.gather(*(worker(i) for i in range(5)))

    asyncio.run(run())
    assert order == [0, 1, 2, 3, 4]
    assert clock.now - 1000.0 == pytest.approx(0.4)
    unlimited = RateLimiter(None)
    assert all(unlimited.try_acquire() for _ in range(1000))
    with pytest.raises(ConfigError, match="rate_per_s"):
        RateLimiter(0.0)
    with pytest.raises(ConfigError, match="burst"):
        RateLimiter(1.0, burst=0)


# ---------------------------------------------------------------------- call_resilient


def test_call_resilient_retries_then_succeeds() -> None:
    clock = FakeTime()
    calls: list[int] = []
    seen: list[tuple[int, str, float]] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise VenueUnavailableError("503")
        return "ok"

    async def hook(attempt: int, exc: BaseException, wait: float) -> None:
        seen.append((attempt, type(exc).__name__, wait))

    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0, jitter="none")
    result = asyncio.run(call_resilient(flaky, retry=policy, before_retry=hook, sleep=clock.sleep))
    assert result == "ok"
    assert len(calls) == 3
    assert clock.slept == [1.0, 2.0]
    assert seen == [(1, "VenueUnavailableError", 1.0), (2, "VenueUnavailableError", 2.0)]


def test_call_resilient_honours_retry_after_and_gives_up_on_long_ones() -> None:
    clock = FakeTime()
    answers: list[Exception | str] = [RateLimitError("429", retry_after_s=7.5), "ok"]

    async def limited() -> str:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=1.0)
    assert asyncio.run(call_resilient(limited, retry=policy, sleep=clock.sleep)) == "ok"
    assert clock.slept == [7.5]

    async def very_limited() -> str:
        raise RateLimitError("429", retry_after_s=3600.0)

    with pytest.raises(RateLimitError):
        asyncio.run(call_resilient(very_limited, retry=policy, sleep=clock.sleep))


@pytest.mark.parametrize("error", [AuthenticationError("bad key"), OrderRejectedError("no"), ValueError("x")])
def test_non_retryable_errors_propagate_after_one_attempt(error: Exception) -> None:
    calls: list[int] = []

    async def fails() -> None:
        calls.append(1)
        raise error

    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1))
    with pytest.raises(type(error)):
        asyncio.run(call_resilient(fails, retry=RetryPolicy(), breaker=breaker, sleep=FakeTime().sleep))
    assert calls == [1]
    assert breaker.state is BreakerState.CLOSED  # the venue answered: not a breaker failure


def test_exhausted_retries_raise_the_last_error_and_open_breaker_is_not_hammered() -> None:
    clock = FakeTime()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=2, reset_timeout_s=5.0), clock=clock)
    limiter = RateLimiter(100.0, burst=10, clock=clock, sleep=clock.sleep)
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise VenueUnavailableError("503")

    policy = RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=1.0, jitter="none")
    with pytest.raises(VenueUnavailableError):
        asyncio.run(call_resilient(down, retry=policy, breaker=breaker, limiter=limiter, sleep=clock.sleep))
    # Two real calls open the breaker; later attempts wait for the cool-down (capped by max_delay_s) and
    # are refused without reaching the venue until it elapses.
    assert len(calls) <= 3
    assert breaker.times_opened >= 1
    assert limiter.total_acquired == 5


def test_cancellation_releases_a_half_open_slot() -> None:
    clock = FakeTime()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, reset_timeout_s=0.0), clock=clock)
    breaker.allow()
    breaker.record_failure()

    async def hang() -> None:
        await asyncio.sleep(10)

    async def run() -> None:
        task = asyncio.create_task(call_resilient(hang, breaker=breaker))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    breaker.allow()  # the slot was given back
