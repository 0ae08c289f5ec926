"""A small deterministic toy market whose forward returns are predictable from its features.

Used by "can it learn" tests, examples and benchmarks: a model that cannot beat chance here is broken.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphaloom.core.exceptions import ConfigError

__all__ = ["make_toy_frames"]


def make_toy_frames(
    n_symbols: int = 2,
    n_bars: int = 1000,
    n_features: int = 6,
    *,
    signal: float = 1.0,
    noise: float = 0.5,
    vol: float = 0.01,
    warmup: int = 5,
    seed: int = 0,
    start: str = "2020-01-01",
) -> dict[str, pd.DataFrame]:
    """Per-symbol frames of AR(1) features and a close whose next log return depends on them.

    The one-bar log return into bar ``t + 1`` is ``vol * (signal * s[t] + noise * eps)`` with
    ``s[t] = (f0[t] + f1[t - 2]) / sqrt(2)``, so predicting it needs the current bar and one two bars back.
    The other features are distractors.

    Parameters
    ----------
    n_symbols, n_bars, n_features
        Frame count, rows per frame and feature columns ``f0 .. f{n_features - 1}`` (at least 2).
    signal, noise
        Weights of the predictable part and of the unit Gaussian noise in each return.
    vol
        Scale of one-bar log returns.
    warmup
        Leading rows whose features are NaN, like indicator warm-up.
    seed
        Seed of the generator; the same arguments always give the same frames.
    start
        First bar (daily bars, UTC midnight).

    Returns
    -------
    dict of str to DataFrame
        ``{"TOY0": frame, ...}``; each indexed by UTC ``ts`` with float columns ``f0 ..`` and ``close``.
    """
    if n_features < 2 or n_bars < 4 or n_symbols < 1:
        raise ConfigError(
            f"make_toy_frames needs n_features >= 2, n_bars >= 4 and n_symbols >= 1, got {n_features}, "
            f"{n_bars} and {n_symbols}."
        )
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=n_bars, freq="D", tz="UTC", name="ts")
    phi = 0.6
    frames = {}
    for k in range(n_symbols):
        shocks = rng.standard_normal((n_bars, n_features)) * np.sqrt(1 - phi**2)
        feats = np.empty_like(shocks)
        feats[0] = rng.standard_normal(n_features)
        for t in range(1, n_bars):
            feats[t] = phi * feats[t - 1] + shocks[t]
        lagged = np.concatenate([np.zeros(2), feats[:-2, 1]])
        s = (feats[:, 0] + lagged) / np.sqrt(2.0)
        step = vol * (signal * s[:-1] + noise * rng.standard_normal(n_bars - 1))
        close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(step)]))
        feats[:warmup] = np.nan
        frame = pd.DataFrame(feats, index=index, columns=[f"f{i}" for i in range(n_features)])
        frame["close"] = close
        frames[f"TOY{k}"] = frame
    return frames
