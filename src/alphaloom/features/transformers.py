"""The built-in feature transformers: price, returns, volatility and volume groups, spectral and fractal.

Every feature is **scale-free** (a log return, a ratio of two prices, a volatility in log units, a share of
volume, a dimension or exponent), so frames from stocks, forex and crypto can be pooled to train one model.

========== ===================================================================================================
kind       features (default windows)
========== ===================================================================================================
returns    ``log_ret_{k}``: log return over ``k`` bars (1, 5, 20)
price      ``close_sma_{n}`` / ``close_ema_{n}``: close over its SMA / EMA minus 1 (10, 50 / 20);
           ``bb_pctb_{n}`` and ``bb_width_{n}``: Bollinger %B and bandwidth (20, 2 sd); ``rsi_{n}``: RSI / 100
           (14); ``macd_line``, ``macd_signal``, ``macd_hist``: MACD 12/26/9 over the close
volatility ``atr_{n}``: ATR over the close (14); ``gk_vol_{n}``, ``parkinson_vol_{n}``, ``rs_vol_{n}``:
           Garman-Klass, Parkinson and Rogers-Satchell range volatility (20); ``realised_vol_{n}``: RMS of
           one-bar log returns (20); ``vol_ratio_{s}_{l}``: short over long realised volatility (5, 20)
volume     ``vwap_dist_{n}``: close over rolling VWAP minus 1 (20); ``session_vwap_dist`` (optional): close
           over the session-anchored VWAP minus 1; ``obv_slope_{n}``: OBV change over the volume traded in
           ``n`` bars, in [-1, 1] (20); ``volume_roc_{n}``: log of the volume of the last ``n`` bars over
           the ``n`` before, clipped to +-``VOLUME_ROC_CLIP`` (5)
wavelet    ``wav_energy_d{j}``, ``wav_energy_a{L}``: shares of the trailing window's wavelet energy per level;
           ``wav_trend_dist``: close over its wavelet-denoised trend minus 1 (window 64, db4, 3 levels)
fourier    ``fft_period``: dominant period over the window (a share, in (0, 1]); ``fft_band_{lo}_{hi}``:
           spectral-energy share of each period band (window 128)
fractal    ``katz_fd_{w}``, ``higuchi_fd_{w}``: fractal dimensions of the log-price path (64, 128)
hurst      ``hurst_rs_{w}``, ``hurst_dfa_{w}``: Hurst exponents of log returns by R/S and DFA (256)
========== ===================================================================================================

Cross-asset, sentiment and microstructure transformers live beside their kernels
(:mod:`~alphaloom.features.cross_asset`, :mod:`~alphaloom.features.sentiment`,
:mod:`~alphaloom.features.microstructure`) and read side inputs the pipeline aligns to the bars.

Each transformer's stream keeps exactly the state its features need: O(1) recursions for the smoothed
indicators (EMA, RSI, MACD, ATR, OBV), O(window) rings for window statistics and for the spectral and
fractal estimators (which have no recursion); the window ones recompute the same per-window kernel as the
batch path on the trailing window, so both modes agree to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import DataFormatError, UnknownSymbolError
from alphaloom.features import cross_asset, fractal, microstructure, sentiment, spectral
from alphaloom.features import indicators as ind
from alphaloom.features._online import (
    NAN,
    Ring,
    WindowMean,
    WindowStats,
    WindowSum,
    ema_smoother,
    wilder_smoother,
)
from alphaloom.features.base import (
    BarRow,
    FeatureContext,
    FeatureInput,
    FeatureTransformer,
    FloatArray,
    StreamState,
    register_transformer,
)

__all__ = [
    "VOLUME_ROC_CLIP",
    "CrossAssetConfig",
    "CrossAssetTransformer",
    "FourierConfig",
    "FourierTransformer",
    "FractalConfig",
    "FractalTransformer",
    "HurstConfig",
    "HurstTransformer",
    "MicrostructureTransformer",
    "PriceConfig",
    "PriceTransformer",
    "ReturnsConfig",
    "ReturnsTransformer",
    "SentimentFeatureConfig",
    "SentimentTransformer",
    "VolatilityConfig",
    "VolatilityTransformer",
    "VolumeConfig",
    "VolumeTransformer",
    "WaveletConfig",
    "WaveletTransformer",
]

#: Bound on ``volume_roc``: a factor of about 150 either way (reached when one window traded nothing).
VOLUME_ROC_CLIP = 5.0

Window = Annotated[int, Field(ge=1, le=10_000)]


def _distinct(name: str, windows: Sequence[int]) -> None:
    if len(set(windows)) != len(windows):
        raise ValueError(f"{name} must not repeat a window, got {tuple(windows)}")


def _ratio_minus_one(num: FloatArray, den: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den - 1.0


# --------------------------------------------------------------------------------------------- returns
class ReturnsConfig(ComponentConfig):
    """Horizons (bars) of the log-return features."""

    windows: tuple[Window, ...] = (1, 5, 20)

    @model_validator(mode="after")
    def _check(self) -> ReturnsConfig:
        if not self.windows:
            raise ValueError("windows must list at least one horizon")
        _distinct("windows", self.windows)
        return self


class _ReturnsStream(StreamState):
    def __init__(self, windows: tuple[int, ...]) -> None:
        self.windows = windows
        self.ring = Ring(max(windows) + 1)

    def update(self, row: BarRow) -> list[float]:
        self.ring.push(math.log(row.close))
        now = self.ring.ago(0)
        return [now - self.ring.ago(k) for k in self.windows]


@register_transformer
class ReturnsTransformer(FeatureTransformer[ReturnsConfig]):
    """Log returns over several horizons: ``log_ret_{k} = log(close[t] / close[t - k])``."""

    kind = "returns"
    config_class = ReturnsConfig

    def _names(self) -> tuple[str, ...]:
        return tuple(f"log_ret_{k}" for k in self.config.windows)

    def _warmups(self) -> tuple[int, ...]:
        return tuple(self.config.windows)

    def _transform(self, data: FeatureInput) -> FloatArray:
        return np.column_stack([ind.log_return(data.close, k) for k in self.config.windows])

    def _stream(self) -> StreamState:
        return _ReturnsStream(self.config.windows)


# ----------------------------------------------------------------------------------------------- price
class PriceConfig(ComponentConfig):
    """Windows (bars) of the price-trend features.

    Parameters
    ----------
    sma_windows, ema_windows
        Windows of the close-over-moving-average features (may be empty).
    bollinger_window, bollinger_k
        Bollinger window and band half-width in population standard deviations.
    rsi_window
        Wilder RSI period.
    macd_fast, macd_slow, macd_signal
        MACD spans (``macd_fast < macd_slow``), TA-Lib's seeding.
    """

    sma_windows: tuple[Window, ...] = (10, 50)
    ema_windows: tuple[Window, ...] = (20,)
    bollinger_window: Annotated[int, Field(ge=2, le=10_000)] = 20
    bollinger_k: float = Field(default=2.0, gt=0.0, le=10.0)
    rsi_window: Window = 14
    macd_fast: Window = 12
    macd_slow: Window = 26
    macd_signal: Window = 9

    @model_validator(mode="after")
    def _check(self) -> PriceConfig:
        _distinct("sma_windows", self.sma_windows)
        _distinct("ema_windows", self.ema_windows)
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"macd_fast ({self.macd_fast}) must be < macd_slow ({self.macd_slow})")
        return self


def _bollinger_parts(close: FloatArray, mid: float, var: float, k: float) -> tuple[float, float]:
    std = math.sqrt(max(var, 0.0))
    width = 2.0 * k * std
    if math.isnan(width):
        return NAN, NAN
    pctb = 0.5 if width <= 1e-12 * abs(mid) else (close - (mid - k * std)) / width
    return pctb, width / mid


class _PriceStream(StreamState):
    def __init__(self, c: PriceConfig) -> None:
        self.c = c
        self.smas = [WindowMean(n) for n in c.sma_windows]
        self.emas = [ema_smoother(n) for n in c.ema_windows]
        self.bb = WindowStats(c.bollinger_window)
        self.gain = wilder_smoother(c.rsi_window)
        self.loss = wilder_smoother(c.rsi_window)
        self.fast = ema_smoother(c.macd_fast)
        self.slow = ema_smoother(c.macd_slow)
        self.signal = ema_smoother(c.macd_signal)
        self.prev_close = NAN
        self.t = 0

    def _rsi(self, close: float) -> float:
        change = close - self.prev_close
        if math.isnan(change):
            gain = loss = NAN
        else:
            gain, loss = max(change, 0.0), max(-change, 0.0)
        g, lo = self.gain.push(gain), self.loss.push(loss)
        total = g + lo
        if math.isnan(total):
            return NAN
        return 50.0 if total == 0.0 else 100.0 * g / total

    def _macd(self, close: float) -> tuple[float, float, float]:
        c = self.c
        # TA-Lib seeds the fast EMA on the `fast` closes ending where the slow one's seed ends, so both
        # produce their first value at bar `slow - 1`.
        fast = self.fast.push(close) if self.t >= c.macd_slow - c.macd_fast else NAN
        line = fast - self.slow.push(close)
        signal = self.signal.push(line)
        return line, signal, line - signal

    def update(self, row: BarRow) -> list[float]:
        close = row.close
        out = [close / m.push(close) - 1.0 for m in self.smas]
        out += [close / e.push(close) - 1.0 for e in self.emas]
        mid, var = self.bb.push(close)
        out += _bollinger_parts(close, mid, var, self.c.bollinger_k)
        out.append(self._rsi(close) / 100.0)
        line, signal, hist = self._macd(close)
        out += [line / close, signal / close, hist / close]
        self.prev_close = close
        self.t += 1
        return out


@register_transformer
class PriceTransformer(FeatureTransformer[PriceConfig]):
    """Trend and momentum of the close: moving-average distances, Bollinger, RSI and MACD."""

    kind = "price"
    config_class = PriceConfig
    finite_memory = False  # EMA, RSI and MACD are recursions

    def _names(self) -> tuple[str, ...]:
        c = self.config
        bb = c.bollinger_window
        return (
            *(f"close_sma_{n}" for n in c.sma_windows),
            *(f"close_ema_{n}" for n in c.ema_windows),
            f"bb_pctb_{bb}",
            f"bb_width_{bb}",
            f"rsi_{c.rsi_window}",
            "macd_line",
            "macd_signal",
            "macd_hist",
        )

    def _warmups(self) -> tuple[int, ...]:
        c = self.config
        signal = c.macd_slow + c.macd_signal - 2
        return (
            *(n - 1 for n in c.sma_windows),
            *(n - 1 for n in c.ema_windows),
            c.bollinger_window - 1,
            c.bollinger_window - 1,
            c.rsi_window,
            c.macd_slow - 1,
            signal,
            signal,
        )

    def _transform(self, data: FeatureInput) -> FloatArray:
        c, close = self.config, data.close
        cols = [_ratio_minus_one(close, ind.sma(close, n)) for n in c.sma_windows]
        cols += [_ratio_minus_one(close, ind.ema(close, n)) for n in c.ema_windows]
        bb = ind.bollinger(close, c.bollinger_window, c.bollinger_k)
        cols += [bb.percent_b, bb.bandwidth, ind.rsi(close, c.rsi_window) / 100.0]
        macd = ind.macd(close, c.macd_fast, c.macd_slow, c.macd_signal)
        cols += [macd.line / close, macd.signal / close, macd.hist / close]
        return np.column_stack(cols)

    def _stream(self) -> StreamState:
        return _PriceStream(self.config)


# ------------------------------------------------------------------------------------------ volatility
class VolatilityConfig(ComponentConfig):
    """Windows (bars) of the volatility features.

    Parameters
    ----------
    atr_window
        Wilder ATR period.
    range_vol_window
        Window of the Garman-Klass, Parkinson and Rogers-Satchell range estimates.
    realised_vol_window
        Window of the realised volatility.
    vol_ratio_short, vol_ratio_long
        Windows of the volatility ratio (``short < long``).
    """

    atr_window: Window = 14
    range_vol_window: Window = 20
    realised_vol_window: Window = 20
    vol_ratio_short: Window = 5
    vol_ratio_long: Window = 20

    @model_validator(mode="after")
    def _check(self) -> VolatilityConfig:
        if self.vol_ratio_short >= self.vol_ratio_long:
            raise ValueError(
                f"vol_ratio_short ({self.vol_ratio_short}) must be < vol_ratio_long ({self.vol_ratio_long})"
            )
        return self


_GK_CLOSE_COEF = 2.0 * math.log(2.0) - 1.0
_PARKINSON_DENOM = 4.0 * math.log(2.0)


class _VolatilityStream(StreamState):
    def __init__(self, c: VolatilityConfig) -> None:
        self.atr = wilder_smoother(c.atr_window)
        self.gk = WindowMean(c.range_vol_window)
        self.parkinson = WindowMean(c.range_vol_window)
        self.rs = WindowMean(c.range_vol_window)
        self.realised = WindowMean(c.realised_vol_window)
        self.short = WindowMean(c.vol_ratio_short)
        self.long = WindowMean(c.vol_ratio_long)
        self.prev_close = NAN

    def update(self, row: BarRow) -> list[float]:
        o, h, lo, c = row.open, row.high, row.low, row.close
        prev = self.prev_close
        tr = NAN if math.isnan(prev) else max(h - lo, abs(h - prev), abs(lo - prev))
        atr = self.atr.push(tr) / c
        hl = math.log(h / lo)
        gk = math.sqrt(max(self.gk.push(0.5 * hl * hl - _GK_CLOSE_COEF * math.log(c / o) ** 2), 0.0))
        parkinson = math.sqrt(max(self.parkinson.push(hl * hl), 0.0) / _PARKINSON_DENOM)
        rs_term = math.log(h / c) * math.log(h / o) + math.log(lo / c) * math.log(lo / o)
        rs = math.sqrt(max(self.rs.push(rs_term), 0.0))
        r2 = (math.log(c) - math.log(prev)) ** 2 if not math.isnan(prev) else NAN
        realised = math.sqrt(max(self.realised.push(r2), 0.0))
        short = math.sqrt(max(self.short.push(r2), 0.0))
        long = math.sqrt(max(self.long.push(r2), 0.0))
        ratio = NAN if math.isnan(long) or math.isnan(short) else (1.0 if long == 0.0 else short / long)
        self.prev_close = c
        return [atr, gk, parkinson, rs, realised, ratio]


@register_transformer
class VolatilityTransformer(FeatureTransformer[VolatilityConfig]):
    """Per-bar volatility in log units: ATR, range estimators, realised volatility, short/long ratio."""

    kind = "volatility"
    config_class = VolatilityConfig
    finite_memory = False  # ATR is a Wilder recursion

    def _names(self) -> tuple[str, ...]:
        c = self.config
        rv = c.range_vol_window
        return (
            f"atr_{c.atr_window}",
            f"gk_vol_{rv}",
            f"parkinson_vol_{rv}",
            f"rs_vol_{rv}",
            f"realised_vol_{c.realised_vol_window}",
            f"vol_ratio_{c.vol_ratio_short}_{c.vol_ratio_long}",
        )

    def _warmups(self) -> tuple[int, ...]:
        c = self.config
        rv = c.range_vol_window - 1
        return (c.atr_window, rv, rv, rv, c.realised_vol_window, c.vol_ratio_long)

    def _transform(self, data: FeatureInput) -> FloatArray:
        c = self.config
        o, h, lo, close = data.open, data.high, data.low, data.close
        return np.column_stack(
            [
                ind.atr(h, lo, close, c.atr_window) / close,
                ind.garman_klass_volatility(o, h, lo, close, c.range_vol_window),
                ind.parkinson_volatility(h, lo, c.range_vol_window),
                ind.rogers_satchell_volatility(o, h, lo, close, c.range_vol_window),
                ind.realised_volatility(close, c.realised_vol_window),
                ind.volatility_ratio(close, c.vol_ratio_short, c.vol_ratio_long),
            ]
        )

    def _stream(self) -> StreamState:
        return _VolatilityStream(self.config)


# ---------------------------------------------------------------------------------------------- volume
class VolumeConfig(ComponentConfig):
    """Windows (bars) of the volume features, and the optional session-anchored VWAP.

    Parameters
    ----------
    vwap_window, obv_window, volume_roc_window
        Windows of the rolling VWAP distance, the OBV slope and the volume rate of change.
    session_vwap
        Add ``session_vwap_dist``: the close over the VWAP cumulated since the session began, minus 1.
    session_timezone, session_start
        Where sessions begin: at ``session_start`` (``HH:MM``) local time in ``session_timezone``
        (``"America/New_York"`` and ``"09:30"`` for US equities; the default is the UTC day).
    """

    vwap_window: Window = 20
    obv_window: Window = 20
    volume_roc_window: Window = 5
    session_vwap: bool = False
    session_timezone: str = "UTC"
    session_start: str = Field(default="00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


def _rolling_vwap_dist(close: FloatArray, vwap: FloatArray) -> FloatArray:
    # A window that traded nothing has no VWAP: neutral 0.0 rather than NaN, so the row stays usable.
    out = np.zeros_like(close)
    ok = ~np.isnan(vwap)
    out[ok] = close[ok] / vwap[ok] - 1.0
    return out


class _VolumeStream(StreamState):
    def __init__(self, c: VolumeConfig, has_volume: bool, session_ids: _SessionIds | None) -> None:
        self.c = c
        self.has_volume = has_volume
        self.pv = WindowSum(c.vwap_window)
        self.v = WindowSum(c.vwap_window)
        self.obv_ring = Ring(c.obv_window + 1)
        self.obv_volume = WindowSum(c.obv_window)
        self.obv = NAN
        self.prev_close = NAN
        self.roc = Ring(2 * c.volume_roc_window)
        self.sessions = session_ids
        self.session = None
        self.session_pv = 0.0
        self.session_v = 0.0

    def _session_dist(self, row: BarRow, typical: float) -> float:
        assert self.sessions is not None
        session = self.sessions.of(row.ts_ns)
        if session != self.session:
            self.session, self.session_pv, self.session_v = session, 0.0, 0.0
        self.session_pv += typical * row.volume
        self.session_v += row.volume
        return row.close / (self.session_pv / self.session_v) - 1.0 if self.session_v > 0.0 else 0.0

    def update(self, row: BarRow) -> list[float]:
        c, v, close = self.c, row.volume, row.close
        n_out = 3 + int(c.session_vwap)
        if not self.has_volume:
            return [0.0] * n_out
        typical = (row.high + row.low + close) / 3.0
        pv_sum = self.pv.push(typical * v)
        v_sum = self.v.push(v)
        vwap_dist = NAN if math.isnan(v_sum) else (close / (pv_sum / v_sum) - 1.0 if v_sum > 0.0 else 0.0)
        # OBV: TA-Lib's convention (obv[0] = volume[0]); only its changes enter the feature.
        if math.isnan(self.prev_close):
            self.obv = v
        elif close > self.prev_close:
            self.obv += v
        elif close < self.prev_close:
            self.obv -= v
        self.obv_ring.push(self.obv)
        traded = self.obv_volume.push(v)
        change = self.obv_ring.ago(0) - self.obv_ring.ago(c.obv_window)
        if math.isnan(traded) or math.isnan(change):
            obv_slope = NAN
        else:
            obv_slope = change / traded if traded > 0.0 else 0.0
        self.roc.push(v)
        n = c.volume_roc_window
        if self.roc.full:
            values = self.roc.values()
            before, recent = math.fsum(values[:n]), math.fsum(values[n:])
            if recent == 0.0 and before == 0.0:
                roc = 0.0
            elif before == 0.0:
                roc = VOLUME_ROC_CLIP
            elif recent == 0.0:
                roc = -VOLUME_ROC_CLIP
            else:
                roc = min(max(math.log(recent) - math.log(before), -VOLUME_ROC_CLIP), VOLUME_ROC_CLIP)
        else:
            roc = NAN
        self.prev_close = close
        out = [vwap_dist, obv_slope, roc]
        if c.session_vwap:
            out.append(self._session_dist(row, typical))
        return out


class _SessionIds:
    """Session number of a timestamp, as :func:`~alphaloom.features.indicators.session_ids` gives it.

    Per bar in plain Python (zoneinfo), about 2 us instead of a pandas call's 30 us; the constructor checks
    the timezone and start time through the batch function so both refuse the same settings.
    """

    _EPOCH = date(1970, 1, 1)

    def __init__(self, timezone: str, start: str) -> None:
        ind.session_ids(pd.DatetimeIndex([0], tz="UTC"), timezone=timezone, session_start=start)
        self.zone = ZoneInfo(timezone)
        hours, minutes = start.split(":")
        self.offset = timedelta(hours=int(hours), minutes=int(minutes))

    def of(self, ts_ns: int) -> int:
        seconds, ns = divmod(ts_ns, 1_000_000_000)
        local = datetime.fromtimestamp(seconds, tz=self.zone) + timedelta(microseconds=ns // 1000)
        return ((local.replace(tzinfo=None) - self.offset).date() - self._EPOCH).days


@register_transformer
class VolumeTransformer(FeatureTransformer[VolumeConfig]):
    """Volume features: VWAP distances, OBV slope and volume rate of change.

    Attributes
    ----------
    has_volume_ : bool
        Whether the fitted instrument reports volume; when ``False`` (most forex sources) every volume
        feature is 0.0 after its warm-up.
    """

    kind = "volume"
    config_class = VolumeConfig

    def _names(self) -> tuple[str, ...]:
        c = self.config
        names = (
            f"vwap_dist_{c.vwap_window}",
            f"obv_slope_{c.obv_window}",
            f"volume_roc_{c.volume_roc_window}",
        )
        return (*names, "session_vwap_dist") if c.session_vwap else names

    def _warmups(self) -> tuple[int, ...]:
        c = self.config
        warm = (c.vwap_window - 1, c.obv_window, 2 * c.volume_roc_window - 1)
        return (*warm, 0) if c.session_vwap else warm

    def _fit(self, data: FeatureInput) -> None:
        self.has_volume_ = bool(np.any(data.volume > 0.0))

    def _transform(self, data: FeatureInput) -> FloatArray:
        c, n_bars = self.config, data.n_bars
        if not self.has_volume_:
            return np.zeros((n_bars, len(self._names())))
        h, lo, close, v = data.high, data.low, data.close, data.volume
        cols = [_rolling_vwap_dist(close, ind.vwap(h, lo, close, v, c.vwap_window))]
        obv = ind.obv(close, v)
        change = np.full(n_bars, np.nan)
        change[c.obv_window :] = obv[c.obv_window :] - obv[: n_bars - c.obv_window]
        traded = ind.rolling_sum(v, c.obv_window)
        slope = np.zeros(n_bars)
        np.divide(change, traded, out=slope, where=traded > 0.0)
        cols.append(slope)
        n = c.volume_roc_window
        recent = ind.rolling_sum(v, n)
        before = np.full(n_bars, np.nan)
        before[n:] = recent[: n_bars - n]
        with np.errstate(divide="ignore", invalid="ignore"):
            roc = np.log(recent) - np.log(before)
        roc[(recent == 0.0) & (before == 0.0)] = 0.0
        cols.append(np.clip(roc, -VOLUME_ROC_CLIP, VOLUME_ROC_CLIP))
        if c.session_vwap:
            sessions = ind.session_ids(data.ts, timezone=c.session_timezone, session_start=c.session_start)
            cols.append(_rolling_vwap_dist(close, ind.session_vwap(h, lo, close, v, sessions)))
        return np.column_stack(cols)

    def _stream(self) -> StreamState:
        c = self.config
        sessions = _SessionIds(c.session_timezone, c.session_start) if c.session_vwap else None
        return _VolumeStream(c, self.has_volume_, sessions)


# ------------------------------------------------------------------------------- trailing-window kernels
class _TrailingWindowStream(StreamState):
    """Recomputes a per-window batch kernel on the last ``size`` closes (the estimator has no recursion).

    Outputs start once ``min_size`` closes are in (a kernel with several windows fills its shorter ones
    first); the kernel itself returns NaN for columns whose window is not yet full.
    """

    def __init__(
        self, size: int, n_out: int, kernel: Callable[[FloatArray], FloatArray], min_size: int | None = None
    ) -> None:
        self.ring = Ring(size)
        self.kernel = kernel
        self.min_size = size if min_size is None else min_size
        self.nan = [NAN] * n_out

    def update(self, row: BarRow) -> FloatArray | list[float]:
        self.ring.push(row.close)
        if len(self.ring) < self.min_size:
            return self.nan
        return np.atleast_2d(self.kernel(self.ring.array()))[-1]


class WaveletConfig(ComponentConfig):
    """Trailing-window wavelet features (PyWavelets).

    Parameters
    ----------
    window
        Closes per window.
    wavelet
        A discrete PyWavelets wavelet name.
    level
        Decomposition depth.
    """

    window: Annotated[int, Field(ge=8, le=4096)] = 64
    wavelet: str = "db4"
    level: Annotated[int, Field(ge=1, le=10)] = 3


@register_transformer
class WaveletTransformer(FeatureTransformer[WaveletConfig]):
    """Wavelet energy shares per level of trailing log returns, and the denoised-trend distance."""

    kind = "wavelet"
    config_class = WaveletConfig

    def __init__(self, config: WaveletConfig | None = None) -> None:
        super().__init__(config)
        # Validate wavelet name and level now, with the kernels' own error messages.
        spectral.WaveletStream(self.config.window, self.config.wavelet, self.config.level)

    def _names(self) -> tuple[str, ...]:
        level = self.config.level
        return (*(f"wav_energy_d{j}" for j in range(1, level + 1)), f"wav_energy_a{level}", "wav_trend_dist")

    def _warmups(self) -> tuple[int, ...]:
        return (self.config.window - 1,) * (self.config.level + 2)

    def _kernel(self, close: FloatArray) -> FloatArray:
        c = self.config
        energies = spectral.wavelet_energies(close, c.window, c.wavelet, c.level)
        trend = spectral.wavelet_denoised_trend(close, c.window, c.wavelet, c.level)
        return np.column_stack([energies, trend])

    def _transform(self, data: FeatureInput) -> FloatArray:
        return self._kernel(data.close)

    def _stream(self) -> StreamState:
        c = self.config
        return _TrailingWindowStream(c.window, c.level + 2, self._kernel)


def _band_name(low: float, high: float) -> str:
    return f"fft_band_{low:g}_{high:g}".replace(".", "p")


class FourierConfig(ComponentConfig):
    """Trailing-window Fourier features.

    Parameters
    ----------
    window
        Closes per window.
    bands
        ``(low, high)`` period bands in bars whose share of the spectral energy is reported.
    """

    window: Annotated[int, Field(ge=8, le=4096)] = 128
    bands: tuple[tuple[float, float], ...] = spectral.DEFAULT_BANDS


@register_transformer
class FourierTransformer(FeatureTransformer[FourierConfig]):
    """Dominant period (as a share of the window) and band energy shares of detrended trailing log prices."""

    kind = "fourier"
    config_class = FourierConfig

    def __init__(self, config: FourierConfig | None = None) -> None:
        super().__init__(config)
        spectral.FourierStream(self.config.window, self.config.bands)

    def _names(self) -> tuple[str, ...]:
        return ("fft_period", *(_band_name(lo, hi) for lo, hi in self.config.bands))

    def _warmups(self) -> tuple[int, ...]:
        return (self.config.window - 1,) * (1 + len(self.config.bands))

    def _kernel(self, close: FloatArray) -> FloatArray:
        out = spectral.fourier_features(close, self.config.window, self.config.bands)
        out[:, 0] /= self.config.window  # the period in bars, as a share of the window: scale-free
        return out

    def _transform(self, data: FeatureInput) -> FloatArray:
        return self._kernel(data.close)

    def _stream(self) -> StreamState:
        return _TrailingWindowStream(self.config.window, 1 + len(self.config.bands), self._kernel)


class FractalConfig(ComponentConfig):
    """Windows of the Katz and Higuchi fractal dimensions (of the log-price path)."""

    katz_window: Annotated[int, Field(ge=3, le=4096)] = 64
    higuchi_window: Annotated[int, Field(ge=4, le=4096)] = 128
    k_max: Annotated[int, Field(ge=2, le=64)] = 10


@register_transformer
class FractalTransformer(FeatureTransformer[FractalConfig]):
    """Katz and Higuchi fractal dimensions of the trailing log-price path."""

    kind = "fractal"
    config_class = FractalConfig

    def __init__(self, config: FractalConfig | None = None) -> None:
        super().__init__(config)
        fractal.FractalStream(self.config.katz_window, self.config.higuchi_window, self.config.k_max)

    def _names(self) -> tuple[str, ...]:
        return (f"katz_fd_{self.config.katz_window}", f"higuchi_fd_{self.config.higuchi_window}")

    def _warmups(self) -> tuple[int, ...]:
        return (self.config.katz_window - 1, self.config.higuchi_window - 1)

    def _kernel(self, close: FloatArray) -> FloatArray:
        c = self.config
        logp = np.log(close)
        return np.column_stack(
            [fractal.katz_fd(logp, c.katz_window), fractal.higuchi_fd(logp, c.higuchi_window, c.k_max)]
        )

    def _transform(self, data: FeatureInput) -> FloatArray:
        return self._kernel(data.close)

    def _stream(self) -> StreamState:
        c = self.config
        windows = (c.katz_window, c.higuchi_window)
        return _TrailingWindowStream(max(windows), 2, self._kernel, min_size=min(windows))


class HurstConfig(ComponentConfig):
    """Window and scales of the Hurst exponents (of log returns).

    Parameters
    ----------
    window
        Closes per window.
    min_chunk
        Smallest R/S chunk.
    scales
        DFA segment lengths; empty for powers of two from 8 to a quarter of the window.
    """

    window: Annotated[int, Field(ge=17, le=8192)] = 256
    min_chunk: Annotated[int, Field(ge=4, le=1024)] = 8
    scales: tuple[int, ...] = ()


@register_transformer
class HurstTransformer(FeatureTransformer[HurstConfig]):
    """Hurst exponent of trailing log returns by rescaled range and by detrended fluctuation analysis."""

    kind = "hurst"
    config_class = HurstConfig

    def __init__(self, config: HurstConfig | None = None) -> None:
        super().__init__(config)
        fractal.HurstStream(self.config.window, self.config.min_chunk, self._scales)

    @property
    def _scales(self) -> tuple[int, ...] | None:
        return self.config.scales or None

    def _names(self) -> tuple[str, ...]:
        w = self.config.window
        return (f"hurst_rs_{w}", f"hurst_dfa_{w}")

    def _warmups(self) -> tuple[int, ...]:
        return (self.config.window - 1,) * 2

    def _kernel(self, close: FloatArray) -> FloatArray:
        c = self.config
        return np.column_stack(
            [fractal.hurst_rs(close, c.window, c.min_chunk), fractal.hurst_dfa(close, c.window, self._scales)]
        )

    def _transform(self, data: FeatureInput) -> FloatArray:
        return self._kernel(data.close)

    def _stream(self) -> StreamState:
        return _TrailingWindowStream(self.config.window, 2, self._kernel)


# ---------------------------------------------------------------------------------------- cross-asset
class CrossAssetConfig(ComponentConfig):
    """Correlation and beta to a reference asset.

    Parameters
    ----------
    reference
        Symbol of the reference asset; taken from the panel when the panel holds it, else pass its bars as
        ``FeatureContext(reference=...)``.
    window
        Log returns per window.
    """

    reference: str = Field(default="SPY", min_length=1)
    window: Annotated[int, Field(ge=2, le=10_000)] = 60


class _CrossAssetStream(StreamState):
    def __init__(self, window: int) -> None:
        self.inner = cross_asset.CrossAssetStream(window)

    def update(self, row: BarRow) -> FloatArray:
        ref = row.extras.get("ref_close")
        if ref is None:
            raise DataFormatError(
                "the cross-asset stream needs each bar's reference close: "
                "stream.update(bar, extras={'ref_close': <reference close as of the bar>})."
            )
        return self.inner.update(row.close, ref)


@register_transformer
class CrossAssetTransformer(FeatureTransformer[CrossAssetConfig]):
    """Rolling correlation and beta of the asset's log returns to a reference asset's.

    The reference close is aligned to each bar by a backward as-of join (the last reference bar at or before
    the bar), so a reference that did not trade repeats its close and contributes a zero return.
    """

    kind = "cross_asset"
    config_class = CrossAssetConfig
    requires = ("ref_close",)

    def _names(self) -> tuple[str, ...]:
        w = self.config.window
        return (f"corr_ref_{w}", f"beta_ref_{w}")

    def _warmups(self) -> tuple[int, ...]:
        return (self.config.window,) * 2

    def _side_input_hint(self) -> str:
        return (
            f"Pass the reference asset's bars ({self.config.reference}) as FeatureContext(reference=bars), "
            "or include that symbol in the panel given to transform_panel."
        )

    def side_inputs(self, context: FeatureContext, data: FeatureInput) -> dict[str, FloatArray]:
        ref = context.reference
        if ref is None:
            return {}
        if not isinstance(ref, pd.DataFrame) or not {"ts", "close"} <= set(ref.columns):
            got = list(ref.columns) if isinstance(ref, pd.DataFrame) else type(ref).__name__
            raise DataFormatError(
                f"FeatureContext.reference must be a bars frame with 'ts' and 'close' columns, got {got}."
            )
        ref_ts = pd.DatetimeIndex(ref["ts"])
        return {"ref_close": cross_asset.align_reference(data.ts, ref_ts, ref["close"].to_numpy(np.float64))}

    def panel_context(self, context: FeatureContext, panel: pd.DataFrame) -> FeatureContext:
        if context.reference is not None:
            return context
        ref = panel[panel["symbol"] == self.config.reference]
        return replace(context, reference=ref) if len(ref) else context

    def _transform(self, data: FeatureInput) -> FloatArray:
        return cross_asset.cross_asset_features(data.close, data.extras["ref_close"], self.config.window)

    def _stream(self) -> StreamState:
        return _CrossAssetStream(self.config.window)


# ------------------------------------------------------------------------------------- microstructure
_MS_COLUMNS = ("quoted_spread_bps", "effective_spread_bps", "ofi_norm", "trade_sign_imbalance")
_MS_INPUTS = tuple(f"ms_{c}" for c in _MS_COLUMNS)


class _MicrostructureStream(StreamState):
    def __init__(self) -> None:
        self.last_effective = NAN

    def update(self, row: BarRow) -> list[float]:
        missing = [n for n in _MS_INPUTS if n not in row.extras]
        if missing:
            raise DataFormatError(
                f"the microstructure stream needs each bar's {', '.join(missing)} in extras: run a "
                "MicrostructureStream over the quotes and trades and pass each closed bar's values."
            )
        quoted, effective, ofi, imbalance = (row.extras[n] for n in _MS_INPUTS)
        if not math.isnan(effective):
            self.last_effective = effective
        return [quoted, self.last_effective, ofi, imbalance]


@register_transformer
class MicrostructureTransformer(FeatureTransformer[microstructure.MicrostructureConfig]):
    """Per-bar market microstructure from L1 quotes and trades.

    Features: ``quoted_spread_bps`` (time-weighted over the bar, the prevailing quote carried in),
    ``effective_spread_bps`` (size-weighted over the bar's trades; a bar without trades repeats the last
    value), ``ofi_norm`` (Cont-Kukanov-Stoikov order-flow imbalance over the mean best-level depth; NaN where
    the feed has no sizes) and ``trade_sign_imbalance`` (signed over total volume, 0 without trades). The
    config's ``interval`` must be the bars' spacing; quotes and trades come through
    ``FeatureContext(quotes=..., trades=...)`` (with a ``symbol`` column for panels).
    """

    kind = "microstructure"
    config_class = microstructure.MicrostructureConfig
    requires = _MS_INPUTS

    def _names(self) -> tuple[str, ...]:
        return _MS_COLUMNS

    def _warmups(self) -> tuple[int, ...]:
        return (0,) * len(_MS_COLUMNS)

    def _side_input_hint(self) -> str:
        return "Pass L1 quotes and/or trades as FeatureContext(quotes=..., trades=...)."

    def side_inputs(self, context: FeatureContext, data: FeatureInput) -> dict[str, FloatArray]:
        quotes, trades = context.quotes, context.trades
        if quotes is None and trades is None:
            return {}
        if data.symbol is not None:
            quotes = _rows_of(quotes, data.symbol)
            trades = _rows_of(trades, data.symbol)
        frame = microstructure.bar_microstructure(quotes, trades, self.config, bar_ts=data.ts).frame
        return {f"ms_{c}": frame[c].to_numpy(np.float64) for c in _MS_COLUMNS}

    def _transform(self, data: FeatureInput) -> FloatArray:
        cols = [data.extras[n] for n in _MS_INPUTS]
        cols[1] = pd.Series(cols[1]).ffill().to_numpy()
        return np.column_stack(cols)

    def _stream(self) -> StreamState:
        return _MicrostructureStream()


def _rows_of(frame: pd.DataFrame | None, symbol: str) -> pd.DataFrame | None:
    if frame is None or "symbol" not in frame.columns:
        return frame
    return frame[frame["symbol"] == symbol].drop(columns="symbol")


# ------------------------------------------------------------------------------------------ sentiment
_SENT_INPUTS = ("sent_mean", "sent_count", "sent_ewm", "sent_ewm_weight")


class SentimentFeatureConfig(ComponentConfig):
    """News and social sentiment aligned to the bars.

    Parameters
    ----------
    ewm_halflife, ewm_unit
        Half-life of the smoothed sentiment, in bars or days.
    news_symbol
        Whose items to use: ``None`` for the bars' own symbol, ``"*"`` for market-wide headlines.
    """

    ewm_halflife: Annotated[float, Field(gt=0.0, le=1e6)] = 5.0
    ewm_unit: Literal["bars", "days"] = "bars"
    news_symbol: str | None = None


class _SentimentStream(StreamState):
    def update(self, row: BarRow) -> list[float]:
        missing = [n for n in _SENT_INPUTS if n not in row.extras]
        if missing:
            raise DataFormatError(
                f"the sentiment stream needs each bar's {', '.join(missing)} in extras: feed the news to a "
                "sentiment.SentimentStream and pass its on_bar(ts) row's fields."
            )
        mean, count, ewm, weight = (row.extras[n] for n in _SENT_INPUTS)
        return [mean, math.log1p(count), ewm, weight]


@register_transformer
class SentimentTransformer(FeatureTransformer[SentimentFeatureConfig]):
    """Finance-lexicon sentiment of the news that became available before each bar.

    Features: ``sent_mean`` (mean compound score of the items that arrived since the previous bar, 0 when
    none), ``sent_count_log1p`` (their number, log1p), ``sent_ewm`` (decayed mean) and ``sent_ewm_weight``
    (decayed item count). An item counts for the bar at ``ts`` only when it was available at ``ts`` (a
    date-only headline from the end of its date), see :func:`alphaloom.features.sentiment.align_sentiment`.
    A symbol without any item gets zeros (no news). Items come through ``FeatureContext(news=...)``, as
    returned by :func:`~alphaloom.features.sentiment.prepare_items` (scored or not).
    """

    kind = "sentiment"
    config_class = SentimentFeatureConfig
    requires = _SENT_INPUTS

    def _names(self) -> tuple[str, ...]:
        return ("sent_mean", "sent_count_log1p", "sent_ewm", "sent_ewm_weight")

    def _warmups(self) -> tuple[int, ...]:
        return (0, 0, 0, 0)

    def _side_input_hint(self) -> str:
        return "Pass news items (sentiment.prepare_items) as FeatureContext(news=...)."

    def side_inputs(self, context: FeatureContext, data: FeatureInput) -> dict[str, FloatArray]:
        if context.news is None:
            return {}
        c = self.config
        symbol = c.news_symbol or data.symbol
        if symbol is None:
            raise DataFormatError(
                "the bars carry no symbol, so the sentiment transformer cannot pick their news; add a "
                "'symbol' column or set [sentiment] news_symbol (\"*\" for market-wide headlines)."
            )
        align = sentiment.SentimentAlignConfig(ewm_halflife=c.ewm_halflife, ewm_unit=c.ewm_unit)
        try:
            frame = sentiment.align_sentiment(context.news, data.ts, symbol=symbol, config=align)
        except UnknownSymbolError:
            return {name: np.zeros(data.n_bars) for name in _SENT_INPUTS}
        return {name: frame[name].to_numpy(np.float64) for name in _SENT_INPUTS}

    def _transform(self, data: FeatureInput) -> FloatArray:
        mean, count, ewm, weight = (data.extras[n] for n in _SENT_INPUTS)
        return np.column_stack([mean, np.log1p(count), ewm, weight])

    def _stream(self) -> StreamState:
        return _SentimentStream()
