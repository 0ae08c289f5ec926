"""Incremental building blocks for the transformers' streams: rings, window sums and seeded smoothing.

They follow the conventions of :mod:`alphaloom.features.indicators` exactly (NaN during warm-up, exponential
smoothing seeded with the simple mean of its first ``n`` inputs, leading NaNs skipped, a later NaN poisoning
the recursion), so a stream fed bar by bar reproduces the batch kernels to rounding. Window sums use
:func:`math.fsum` over the ring (correctly rounded, O(window)) rather than a running sum, so they carry no
drift however long the stream runs.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

NAN = math.nan


class Ring:
    """The last ``size`` values, oldest first."""

    __slots__ = ("_values", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: deque[float] = deque(maxlen=size)

    def push(self, value: float) -> None:
        self._values.append(value)

    @property
    def full(self) -> bool:
        return len(self._values) == self.size

    def __len__(self) -> int:
        return len(self._values)

    def ago(self, k: int) -> float:
        """The value pushed ``k`` pushes ago (0 = the latest); NaN if not yet seen."""
        if k >= len(self._values):
            return NAN
        return self._values[-1 - k]

    def values(self) -> list[float]:
        return list(self._values)

    def array(self) -> np.ndarray:
        return np.fromiter(self._values, dtype=np.float64, count=len(self._values))


class WindowMean:
    """Mean of the last ``n`` values; NaN until ``n`` values are in or while a NaN is inside."""

    __slots__ = ("_ring", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self._ring = Ring(n)

    def push(self, value: float) -> float:
        self._ring.push(value)
        if not self._ring.full:
            return NAN
        total = math.fsum(self._ring._values)
        return total / self.n if math.isfinite(total) else NAN


class WindowSum:
    """Sum of the last ``n`` values; NaN until ``n`` values are in or while a NaN is inside."""

    __slots__ = ("_ring", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self._ring = Ring(n)

    def push(self, value: float) -> float:
        self._ring.push(value)
        if not self._ring.full:
            return NAN
        total = math.fsum(self._ring._values)
        return total if math.isfinite(total) else NAN


class WindowStats:
    """Mean and population variance of the last ``n`` values (two-pass, exact to rounding)."""

    __slots__ = ("_ring", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self._ring = Ring(n)

    def push(self, value: float) -> tuple[float, float]:
        self._ring.push(value)
        if not self._ring.full:
            return NAN, NAN
        values = self._ring._values
        mean = math.fsum(values) / self.n
        var = math.fsum((v - mean) * (v - mean) for v in values) / self.n
        return mean, var


class SeededSmoother:
    """``y[t] = y[t-1] + alpha * (x[t] - y[t-1])`` seeded with the mean of the first ``n`` finite inputs.

    Leading NaNs are skipped (the recursion starts at the first finite input); once started, a NaN input
    poisons every later output, as in the batch kernels.
    """

    __slots__ = ("_count", "_level", "_seed_sum", "alpha", "n")

    def __init__(self, n: int, alpha: float) -> None:
        self.n = n
        self.alpha = alpha
        self._count = 0
        self._seed_sum = 0.0
        self._level = NAN

    def push(self, value: float) -> float:
        if self._count == 0 and math.isnan(value):
            return NAN
        self._count += 1
        if self._count < self.n:
            self._seed_sum += value
            return NAN
        if self._count == self.n:
            self._seed_sum += value
            self._level = self._seed_sum / self.n
            return self._level
        self._level += self.alpha * (value - self._level)
        return self._level


def ema_smoother(n: int) -> SeededSmoother:
    """EMA with ``alpha = 2 / (n + 1)``."""
    return SeededSmoother(n, 2.0 / (n + 1.0))


def wilder_smoother(n: int) -> SeededSmoother:
    """Wilder's smoothing, ``alpha = 1 / n``."""
    return SeededSmoother(n, 1.0 / n)
