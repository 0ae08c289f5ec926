"""Small deterministic toy markets for "can it learn" tests and demos.

:func:`toy_market` builds a series whose next-bar return has a known sign, and an observation matrix that
reveals that sign (a perfect forecaster's output, the role the CNN+LSTM plays for real data) next to pure
noise columns. An agent that reads the signal column and trades every bar earns about ``edge`` per bar
minus costs; a random policy earns about minus its costs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ToyMarket", "toy_market"]


class ToyMarket(NamedTuple):
    """``obs`` (T, 1 + n_noise) float32; ``open_prices`` and ``close_prices`` (T,) float64."""

    obs: np.ndarray
    open_prices: np.ndarray
    close_prices: np.ndarray


def toy_market(
    n_bars: int = 2048, *, edge: float = 0.005, noise_std: float = 0.001, n_noise: int = 2, seed: int = 0
) -> ToyMarket:
    """A market where ``obs[t, 0]`` is the sign of the return of bar ``t + 1``.

    Parameters
    ----------
    n_bars
        Bars in the series.
    edge
        Absolute size of each bar's open-to-close return (0.005 = 0.5%).
    noise_std
        Standard deviation of extra return noise that the signal does not reveal.
    n_noise
        Uninformative standard-normal observation columns.
    seed
        Seed of the generator; the same seed gives the same market.
    """
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=n_bars)
    bar_ret = signs * edge + rng.normal(0.0, noise_std, n_bars)
    bar_ret[0] = 0.0
    close = 100.0 * np.cumprod(1.0 + bar_ret)
    open_ = np.empty(n_bars)
    open_[0] = 100.0
    open_[1:] = close[:-1]
    signal = np.zeros(n_bars)
    signal[:-1] = signs[1:]
    noise = rng.normal(size=(n_bars, n_noise))
    obs = np.column_stack([signal, noise]).astype(np.float32)
    return ToyMarket(obs=obs, open_prices=open_, close_prices=close)
