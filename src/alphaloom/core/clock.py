"""Clocks: one interface for live time and simulated (backtest/replay) time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from alphaloom.core.exceptions import AlphaloomError
from alphaloom.core.timeutil import ensure_utc

__all__ = ["Clock", "LiveClock", "SimulatedClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class LiveClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """A clock that only moves when told to, and never backwards.

    Used by the backtester and by replaying exchanges so that every component sees the same "now".
    """

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start, name="start")

    def now(self) -> datetime:
        return self._now

    def advance_to(self, ts: datetime) -> None:
        """Move the clock to ``ts``; moving backwards raises, since it would let code see the past twice."""
        ts = ensure_utc(ts)
        if ts < self._now:
            raise AlphaloomError(
                f"SimulatedClock cannot go back from {self._now.isoformat()} to {ts.isoformat()}; "
                "events must be replayed in time order."
            )
        self._now = ts
