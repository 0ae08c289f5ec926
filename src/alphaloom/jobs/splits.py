"""Per-symbol walk-forward segments for the main job."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from alphaloom.core.exceptions import EmptyRangeError
from alphaloom.jobs.config import SplitConfig

__all__ = ["Segments", "split_segments"]


class Segments(NamedTuple):
    """Row ranges ``[start, stop)`` of one symbol's bars, and their first/last timestamps."""

    forecaster: slice
    agent: slice
    test: slice
    ts: pd.DatetimeIndex

    def bounds(self) -> dict[str, tuple[str, str]]:
        out = {}
        for name in ("forecaster", "agent", "test"):
            sl = getattr(self, name)
            out[name] = (self.ts[sl.start].isoformat(), self.ts[sl.stop - 1].isoformat())
        return out


def split_segments(ts: pd.DatetimeIndex, config: SplitConfig, *, min_test_bars: int = 30) -> Segments:
    """Split ``ts`` (one symbol's bar times, sorted) into forecaster / agent / test segments.

    Raises
    ------
    EmptyRangeError
        If a segment would be empty or the test segment shorter than ``min_test_bars``.
    """
    n = len(ts)
    e = config.embargo_bars
    n_f = int(n * config.forecaster_fraction)
    n_a = int(n * config.agent_fraction)
    f = slice(0, n_f)
    a = slice(n_f + e, n_f + e + n_a)
    t = slice(a.stop + e, n)
    if n_f < 1 or n_a < 1 or t.stop - t.start < min_test_bars:
        raise EmptyRangeError(
            f"{n} bars are too few to split into forecaster/agent/test segments with a {e}-bar embargo "
            f"and at least {min_test_bars} test bars; widen the date range or lower max_bars_per_symbol."
        )
    return Segments(f, a, t, ts)
