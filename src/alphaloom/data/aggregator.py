"""Turn market data from any venue into canonical bars: normalise, resample, build, merge and de-duplicate.

:class:`DataAggregator` works on frames (batch); :class:`IncrementalBarBuilder` turns a stream of
:class:`~alphaloom.core.types.Trade`, :class:`~alphaloom.core.types.Quote` or finer
:class:`~alphaloom.core.types.Bar` events into completed bars, with results identical to the batch methods.

Bar rules, shared by batch and streaming
-----------------------------------------
- A bar of timeframe ``T`` covers ``[open, open + T)`` (closed left) and is labelled with its open time.
  Buckets are aligned to the Unix epoch in UTC (days start at 00:00 UTC); weeks start on Monday.
- OHLC: first, highest, lowest and last price by event time (ties keep arrival order). Volume is the exact
  (correctly rounded, order-independent) sum of sizes or sub-bar volumes, NaN when none has a volume.
- From trades: ``n_trades`` and, optionally, ``vwap`` = sum(price x size) / sum(size).
- From quotes: OHLC of the mid ``(bid + ask) / 2``; volume NaN; ``n_quotes``, ``spread_mean``, ``spread_min``,
  ``spread_max`` (``ask - bid``) and ``n_crossed`` (bid > ask), ``n_locked`` (bid == ask).
- **No partial last bar unless asked.** A bucket is complete once the data reaches its end: a later event of
  the same symbol (for trades and quotes, an event at or after the bucket end; for bars, a sub-bar whose own
  end reaches it), or an ``end``/``until`` time the caller declares the data complete to. Interior buckets
  with missing sub-bars are complete (time moved past them); buckets without any event give no bar.

Supported timeframes are a count and a unit: ``s``, ``m``, ``h``, ``d``, ``w`` (``"5m"``, ``"4h"``, ``"1d"``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError, did_you_mean
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import BAR_COLUMNS, Bar, Quote, Trade
from alphaloom.data._frames import PRICE_COLUMNS, TS_DTYPE, coerce_bars, sort_bars, to_float_column
from alphaloom.data.symbols import VENUES, canonical

__all__ = [
    "QUOTE_BAR_EXTRAS",
    "QUOTE_COLUMNS",
    "TRADE_BAR_EXTRAS",
    "TRADE_COLUMNS",
    "AggregatorConfig",
    "CompletedBar",
    "DataAggregator",
    "DedupResult",
    "IncrementalBarBuilder",
    "MergeResult",
    "parse_timeframe",
]

#: Columns of a normalised trades frame (``side`` and ``trade_id`` follow when the source has them).
TRADE_COLUMNS: tuple[str, ...] = ("symbol", "ts", "price", "size")
#: Columns of a normalised quotes frame (sizes NaN where the source has none).
QUOTE_COLUMNS: tuple[str, ...] = ("symbol", "ts", "bid", "ask", "bid_size", "ask_size")
#: Extra columns of bars built from trades (``vwap`` only when asked for).
TRADE_BAR_EXTRAS: tuple[str, ...] = ("n_trades", "vwap")
#: Extra columns of bars built from quotes.
QUOTE_BAR_EXTRAS: tuple[str, ...] = (
    "n_quotes",
    "spread_mean",
    "spread_min",
    "spread_max",
    "n_crossed",
    "n_locked",
)

Kind = Literal["bars", "trades", "quotes"]

_TIMEFRAME = re.compile(r"^([1-9][0-9]*)(s|m|h|d|w)$")
_UNIT_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}
_MONDAY_NS = 4 * 86400 * 10**9  # 1970-01-05, the first Monday after the epoch
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COUNT_EXTRAS = frozenset({"n_trades", "n_quotes", "n_crossed", "n_locked"})

# Accepted source column names (lower case, spaces as underscores), in order of preference.
_ALIASES: dict[str, tuple[str, ...]] = {
    "symbol": ("symbol", "ticker", "instrument", "pair", "product_id", "sym"),
    "ts": ("ts", "timestamp", "time", "datetime", "date", "t"),
    "open": ("open", "o", "open_price"),
    "high": ("high", "h", "high_price"),
    "low": ("low", "l", "low_price"),
    "close": ("close", "c", "close_price", "last"),
    "volume": ("volume", "vol", "v", "base_volume"),
    "price": ("price", "p", "trade_price", "last"),
    "size": ("size", "qty", "quantity", "amount", "volume", "q"),
    "side": ("side", "taker_side"),
    "trade_id": ("trade_id", "tid", "id"),
    "bid": ("bid", "bid_price", "bidprice", "best_bid", "bp"),
    "ask": ("ask", "ask_price", "askprice", "offer", "best_ask", "ap"),
    "bid_size": ("bid_size", "bid_qty", "bidsize", "bid_volume", "bs"),
    "ask_size": ("ask_size", "ask_qty", "asksize", "ask_volume", "as"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "bars": ("ts", *PRICE_COLUMNS),
    "trades": ("ts", "price", "size"),
    "quotes": ("ts", "bid", "ask"),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {
    "bars": ("volume",),
    "trades": ("side", "trade_id"),
    "quotes": ("bid_size", "ask_size"),
}


def parse_timeframe(timeframe: str) -> timedelta:
    """The length of ``timeframe`` (``"5m"`` -> 5 minutes).

    Raises
    ------
    ConfigError
        ``timeframe`` is not a positive count followed by ``s``, ``m``, ``h``, ``d`` or ``w``.
    """
    return timedelta(microseconds=_step_ns(timeframe) // 1000)


def _step_ns(timeframe: str) -> int:
    match = _TIMEFRAME.match(timeframe) if isinstance(timeframe, str) else None
    if match is None:
        raise ConfigError(
            f"timeframe {timeframe!r} is not valid; use a count and a unit s, m, h, d or w, "
            f"such as '1s', '5m', '4h', '1d' or '1w'."
        )
    return int(match.group(1)) * _UNIT_NS[match.group(2)]


def _origin_ns(timeframe: str) -> int:
    return _MONDAY_NS if timeframe.endswith("w") else 0


class AggregatorConfig(ComponentConfig):
    """Settings of :class:`DataAggregator`.

    Parameters
    ----------
    venue
        Symbol spelling of incoming frames (one of :data:`~alphaloom.data.symbols.VENUES`), or ``None`` to
        read any spelling. Per-call ``venue=`` arguments override it.
    source_tz
        IANA zone of timestamps written without an offset (``"America/New_York"``; ``"Etc/GMT+5"`` is the
        fixed UTC-05 of FXCM data). ``None`` refuses offset-less timestamps, so a zone is never guessed.
    precedence
        :meth:`DataAggregator.merge`: source names, highest precedence first.
    keep
        Which copy of a conflicting duplicate survives de-duplication: the ``"first"`` or ``"last"`` in
        input order. The others are reported, never dropped silently.
    vwap
        Add a ``vwap`` column to bars built from trades.
    include_partial
        Emit the last, incomplete bar of each symbol too.
    """

    venue: str | None = None
    source_tz: str | None = "UTC"
    precedence: tuple[str, ...] = ()
    keep: Literal["first", "last"] = "first"
    vwap: bool = False
    include_partial: bool = False


@dataclass(frozen=True)
class DedupResult:
    """What :meth:`DataAggregator.deduplicate` did.

    Attributes
    ----------
    bars
        The frame with one row per (symbol, ts), sorted.
    exact
        Removed rows identical to the kept copy (NaN equals NaN).
    conflicting
        Removed rows whose values differ from the kept copy, with a ``reason`` naming the differences.
    """

    bars: pd.DataFrame
    exact: pd.DataFrame
    conflicting: pd.DataFrame

    @property
    def n_removed(self) -> int:
        return len(self.exact) + len(self.conflicting)

    def __repr__(self) -> str:
        return (
            f"DedupResult({len(self.bars)} rows kept, {len(self.exact)} exact and "
            f"{len(self.conflicting)} conflicting duplicates removed)"
        )


@dataclass(frozen=True)
class MergeResult:
    """What :meth:`DataAggregator.merge` did.

    Attributes
    ----------
    bars
        One row per (symbol, ts): the bars columns plus ``source``, the source that won.
    overridden
        Rows that lost to a higher-precedence source: their values, ``source``, ``kept_source`` and
        ``differs`` (whether any value differs from the winner's).
    duplicates
        Rows removed while de-duplicating each source on its own, with ``source``, ``duplicate``
        (``"exact"`` or ``"conflicting"``) and ``reason``.
    """

    bars: pd.DataFrame
    overridden: pd.DataFrame
    duplicates: pd.DataFrame

    def counts(self) -> dict[str, int]:
        """Winning rows per source."""
        return {str(k): int(v) for k, v in self.bars["source"].value_counts(sort=False).items()}

    def __repr__(self) -> str:
        return (
            f"MergeResult({len(self.bars)} rows from {self.counts()}, {len(self.overridden)} overridden, "
            f"{len(self.duplicates)} duplicates)"
        )


@dataclass(frozen=True, slots=True)
class CompletedBar:
    """A bar finished by :class:`IncrementalBarBuilder`: the :class:`Bar` and its extra columns."""

    bar: Bar
    extras: Mapping[str, float] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """The bar as a frame row: the bars columns, then the extras."""
        b = self.bar
        row: dict[str, Any] = {
            "symbol": b.symbol,
            "ts": b.ts,
            "open": b.open,
            "high": b.high,
            "low": b.low,
            "close": b.close,
            "volume": math.nan if b.volume is None else b.volume,
        }
        row.update(self.extras)
        return row


class DataAggregator:
    """Normalise, resample, build, merge and de-duplicate market data frames.

    Parameters
    ----------
    config
        :class:`AggregatorConfig`; defaults read UTC timestamps and any symbol spelling.

    Examples
    --------
    >>> import pandas as pd
    >>> agg = DataAggregator(AggregatorConfig(venue="coinbase"))
    >>> trades = pd.DataFrame({"product_id": ["BTC-USD"] * 3, "time": ["2024-01-01T00:00:10Z",
    ...     "2024-01-01T00:00:50Z", "2024-01-01T00:01:05Z"], "price": [100.0, 101.0, 99.0],
    ...     "size": [1.0, 2.0, 1.0]})
    >>> bars = agg.bars_from_trades(agg.normalize(trades, kind="trades"), "1m")
    >>> bars[["symbol", "open", "close", "volume"]]
       symbol   open  close  volume
    0  BTCUSD  100.0  101.0     3.0
    """

    def __init__(self, config: AggregatorConfig | None = None) -> None:
        self.config = config if config is not None else AggregatorConfig()
        if self.config.venue is not None and self.config.venue not in VENUES:
            raise ConfigError(
                f"AggregatorConfig.venue {self.config.venue!r} is not a known venue."
                f"{did_you_mean(self.config.venue, VENUES)} Known: {', '.join(VENUES)}."
            )

    # ------------------------------------------------------------------ normalisation

    def normalize(
        self,
        frame: pd.DataFrame,
        *,
        kind: Kind = "bars",
        venue: str | None = None,
        source_tz: str | None = None,
        symbol: str | None = None,
        columns: Mapping[str, str] | None = None,
        ts_unit: Literal["s", "ms", "us", "ns"] | None = None,
        map_symbols: bool = True,
        keep: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Bring a venue's frame into alphaloom's canonical form.

        Parameters
        ----------
        frame
            Source rows with recognisable column names in any case (``timestamp``/``time``/``date``,
            ``o``/``open``, ``qty``/``amount``/``size``, ``bid_price``, ``product_id``, ...).
        kind
            ``"bars"`` (result: the bars columns), ``"trades"`` (:data:`TRADE_COLUMNS`, plus ``side`` and
            ``trade_id`` when present) or ``"quotes"`` (:data:`QUOTE_COLUMNS`).
        venue
            Symbol spelling of this frame; defaults to the config's.
        source_tz
            Zone of offset-less timestamps; defaults to the config's. Offsets in the data always win.
        symbol
            The symbol of every row, for a frame without a symbol column.
        columns
            Explicit source column per canonical column (``{"ts": "exch_time_ms"}``); overrides the aliases.
        ts_unit
            Unit of numeric (epoch) timestamps. Required when the time column is numeric.
        map_symbols
            Map symbols to the canonical scheme (:func:`~alphaloom.data.symbols.canonical`). Turn off for
            symbols outside it (derivatives such as ``BTCUSD_PERP``), which are then only upper-cased.
        keep
            Source columns to carry through unchanged after the canonical ones (``("exchange",
            "suspicious")``, or a quote bar's ``("bid_close", "ask_close")`` for the validator).

        Returns
        -------
        pandas.DataFrame
            Sorted by (symbol, ts), ``ts`` as ``datetime64[ns, UTC]``, numbers as float64. Values are not
            judged: run :class:`~alphaloom.data.validator.DataValidator` for that.

        Raises
        ------
        DataFormatError
            A required column is missing or holds values that are not numbers or times.
        UnknownSymbolError
            A symbol cannot be read (the message suggests the closest).
        ConfigError
            Unknown ``kind``, venue or zone.
        """
        if kind not in _REQUIRED:
            raise ConfigError(
                f"kind {kind!r} is not one of bars, trades, quotes.{did_you_mean(str(kind), _REQUIRED)}"
            )
        if not isinstance(frame, pd.DataFrame):
            raise DataFormatError(f"normalize() expects a pandas DataFrame, got {type(frame).__name__}.")
        venue = venue if venue is not None else self.config.venue
        zone = source_tz if source_tz is not None else self.config.source_tz
        where = f"normalize(kind={kind!r})"
        found = _resolve(frame, kind, columns, where)
        if "symbol" in found:
            raw_symbols = frame[found["symbol"]]
        elif symbol is not None:
            raw_symbols = pd.Series(symbol, index=frame.index)
        else:
            raise DataFormatError(
                f"{where}: no symbol column among {list(frame.columns)}; pass symbol='...' or "
                f"columns={{'symbol': '<column>'}}."
            )
        out = pd.DataFrame(index=frame.index)
        out["symbol"] = _map_symbols(raw_symbols, venue, map_symbols, where)
        out["ts"] = _to_utc(frame[found["ts"]], zone, ts_unit, f"{where}: column {found['ts']!r}")
        for col in _REQUIRED[kind][1:] + _OPTIONAL[kind]:
            if col in ("side", "trade_id"):
                if col in found:
                    text = frame[found[col]].astype("str").str.strip()
                    out[col] = (text.str.lower() if col == "side" else text).to_numpy()
                continue
            if col in found:
                out[col] = to_float_column(frame[found[col]], column=found[col], where=where).to_numpy()
            else:
                out[col] = np.nan
        extra = {}
        for col in keep:
            if col not in frame.columns:
                raise DataFormatError(
                    f"{where}: keep= names {col!r}, which is not in the frame."
                    f"{did_you_mean(str(col), map(str, frame.columns))}"
                )
            if col not in out.columns:
                extra[col] = frame[col].to_numpy()
        out = out.reset_index(drop=True)
        if kind == "bars":
            out = coerce_bars(out, where=where)
        for col, values in extra.items():
            out[col] = values
        return out.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)

    # ------------------------------------------------------------------ resampling and building

    def resample(
        self,
        bars: pd.DataFrame,
        timeframe: str,
        *,
        source_timeframe: str | None = None,
        end: datetime | None = None,
        include_partial: bool | None = None,
    ) -> pd.DataFrame:
        """Resample bars to a coarser timeframe (OHLCV rules, labelled by open time, closed left).

        Parameters
        ----------
        bars
            A bars frame, unique on (symbol, ts) (run :meth:`deduplicate` first when it may not be).
        timeframe
            Target length, a multiple of the source length (``"5m"``, ``"1h"``, ``"1d"``).
        source_timeframe
            Length of the input bars; inferred as the shortest spacing between bars when ``None``.
        end
            The data is known complete up to this time: buckets ending at or before it are complete.
        include_partial
            Keep each symbol's last, incomplete bucket too; defaults to the config's ``include_partial``.

        Returns
        -------
        pandas.DataFrame
            A bars frame sorted by (symbol, ts).
        """
        frame = sort_bars(coerce_bars(bars, where="resample()"))
        _require_unique(frame, "resample()")
        step = _step_ns(timeframe)
        src = _step_ns(source_timeframe) if source_timeframe is not None else _infer_step(frame, timeframe)
        if src > step or step % src:
            raise ConfigError(
                f"resample(): cannot build {timeframe} bars from {source_timeframe or _fmt_ns(src)} bars; "
                f"the target must be a multiple of the source length."
            )
        ts = _ns(frame["ts"])
        groups = _Groups(frame["symbol"].to_numpy(), ts, step, _origin_ns(timeframe))
        keep = self._complete(groups, ts + src, end, include_partial)
        values = {c: frame[c].to_numpy() for c in (*PRICE_COLUMNS, "volume")}
        out = groups.frame(keep)
        out["open"] = groups.first(values["open"])[keep]
        out["high"] = groups.max(values["high"])[keep]
        out["low"] = groups.min(values["low"])[keep]
        out["close"] = groups.last(values["close"])[keep]
        out["volume"] = groups.nansum(values["volume"])[keep]
        return out.reset_index(drop=True)

    def bars_from_trades(
        self,
        trades: pd.DataFrame,
        timeframe: str,
        *,
        vwap: bool | None = None,
        end: datetime | None = None,
        include_partial: bool | None = None,
    ) -> pd.DataFrame:
        """Build bars from trades: OHLC of prices, volume = sum of sizes, ``n_trades``, optional ``vwap``.

        Parameters
        ----------
        trades
            A trades frame (:data:`TRADE_COLUMNS`; see :meth:`normalize`). Order among equal timestamps is
            the input order.
        timeframe
            Bar length (``"1s"``, ``"1m"``, ...).
        vwap
            Add the volume-weighted average price; defaults to the config's ``vwap``.
        end, include_partial
            See :meth:`resample`.

        Returns
        -------
        pandas.DataFrame
            The bars columns, then ``n_trades`` (int64) and ``vwap`` when asked, sorted by (symbol, ts).
        """
        frame = _ticks(trades, ("price", "size"), "bars_from_trades()")
        step = _step_ns(timeframe)
        ts = _ns(frame["ts"])
        groups = _Groups(frame["symbol"].to_numpy(), ts, step, _origin_ns(timeframe))
        keep = self._complete(groups, ts, end, include_partial)
        price, size = frame["price"].to_numpy(), frame["size"].to_numpy()
        out = groups.frame(keep)
        out["open"] = groups.first(price)[keep]
        out["high"] = groups.max(price)[keep]
        out["low"] = groups.min(price)[keep]
        out["close"] = groups.last(price)[keep]
        volume = groups.nansum(size)
        out["volume"] = volume[keep]
        out["n_trades"] = groups.count()[keep]
        if self.config.vwap if vwap is None else vwap:
            with np.errstate(invalid="ignore", divide="ignore"):
                out["vwap"] = (groups.nansum(price * size) / volume)[keep]
        return out.reset_index(drop=True)

    def bars_from_quotes(
        self,
        quotes: pd.DataFrame,
        timeframe: str,
        *,
        end: datetime | None = None,
        include_partial: bool | None = None,
    ) -> pd.DataFrame:
        """Build mid-price bars from quotes, with spread statistics.

        Parameters
        ----------
        quotes
            A quotes frame (:data:`QUOTE_COLUMNS`; see :meth:`normalize`). Crossed and locked quotes are used
            as they are and counted; filter them with the validator first to leave them out.
        timeframe, end, include_partial
            See :meth:`resample`.

        Returns
        -------
        pandas.DataFrame
            The bars columns (OHLC of the mid, volume NaN), then :data:`QUOTE_BAR_EXTRAS`.
        """
        frame = _ticks(quotes, ("bid", "ask"), "bars_from_quotes()")
        step = _step_ns(timeframe)
        ts = _ns(frame["ts"])
        groups = _Groups(frame["symbol"].to_numpy(), ts, step, _origin_ns(timeframe))
        keep = self._complete(groups, ts, end, include_partial)
        bid, ask = frame["bid"].to_numpy(), frame["ask"].to_numpy()
        mid = 0.5 * (bid + ask)
        spread = ask - bid
        n = groups.count()
        out = groups.frame(keep)
        out["open"] = groups.first(mid)[keep]
        out["high"] = groups.max(mid)[keep]
        out["low"] = groups.min(mid)[keep]
        out["close"] = groups.last(mid)[keep]
        out["volume"] = np.nan
        out["n_quotes"] = n[keep]
        out["spread_mean"] = (groups.nansum(spread) / n)[keep]
        out["spread_min"] = groups.min(spread)[keep]
        out["spread_max"] = groups.max(spread)[keep]
        out["n_crossed"] = groups.sum_int(bid > ask)[keep]
        out["n_locked"] = groups.sum_int(bid == ask)[keep]
        return out.reset_index(drop=True)

    def incremental(self, timeframe: str, *, vwap: bool | None = None) -> IncrementalBarBuilder:
        """An :class:`IncrementalBarBuilder` with this aggregator's settings."""
        return IncrementalBarBuilder(timeframe, vwap=self.config.vwap if vwap is None else vwap)

    def _complete(
        self, groups: _Groups, covered: np.ndarray, end: datetime | None, include_partial: bool | None
    ) -> np.ndarray:
        partial = self.config.include_partial if include_partial is None else include_partial
        if partial or groups.n == 0:
            return np.ones(groups.n, dtype=bool)
        # A symbol's data reaches as far as its last row covers (rows are sorted by time within a symbol).
        reach_symbol = groups.symbol_end_reach(groups.last(covered))
        if end is not None:
            end_ns = _dt_ns(ensure_utc(end, name="end"))
            reach_symbol = np.maximum(reach_symbol, end_ns)
        return groups.ends <= reach_symbol

    # ------------------------------------------------------------------ merging and de-duplication

    def deduplicate(self, bars: pd.DataFrame) -> DedupResult:
        """Keep one row per (symbol, ts) and report every removed row.

        The kept copy is the first or last in input order (``config.keep``). Removed copies that equal it in
        every value (NaN equals NaN) are *exact* duplicates; the others are *conflicting*, with a reason
        naming the columns that differ.
        """
        frame = coerce_bars(bars, where="deduplicate()")
        frame["_row"] = np.arange(len(frame))
        frame = frame.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        removed = frame.duplicated(["symbol", "ts"], keep=self.config.keep).to_numpy()
        empty = frame.iloc[:0].drop(columns="_row")
        if not removed.any():
            return DedupResult(frame.drop(columns="_row"), empty, empty.assign(reason=pd.Series(dtype="str")))
        pick = "first" if self.config.keep == "first" else "last"
        kept = frame.groupby(["symbol", "ts"], sort=False)[[*PRICE_COLUMNS, "volume"]].transform(pick)
        same = np.ones(len(frame), dtype=bool)
        for col in (*PRICE_COLUMNS, "volume"):
            a, b = frame[col].to_numpy(), kept[col].to_numpy()
            same &= (a == b) | (np.isnan(a) & np.isnan(b))
        exact = removed & same
        conflicting = removed & ~same
        keep = self.config.keep
        reasons = [_conflict_reason(frame.iloc[k], kept.iloc[k], keep) for k in np.flatnonzero(conflicting)]
        out = frame.loc[~removed].drop(columns="_row").reset_index(drop=True)
        exact_rows = frame.loc[exact].sort_values("_row").drop(columns="_row").reset_index(drop=True)
        conflict_rows = frame.loc[conflicting].assign(reason=pd.Series(reasons, dtype="str").to_numpy())
        conflict_rows = conflict_rows.sort_values("_row").drop(columns="_row").reset_index(drop=True)
        return DedupResult(out, exact_rows, conflict_rows)

    def merge(
        self, sources: Mapping[str, pd.DataFrame], *, precedence: Sequence[str] | None = None
    ) -> MergeResult:
        """Combine bars of several sources: per (symbol, ts) the highest-precedence source wins.

        Parameters
        ----------
        sources
            Bars frames by source name (``{"coinbase": ..., "bitfinex": ...}``).
        precedence
            Source names, highest first. Defaults to ``config.precedence``, or, when that is empty, the order
            of ``sources``. Every source must be listed.

        Returns
        -------
        MergeResult
            The merged bars (with a ``source`` column), the overridden rows and the duplicates removed
            within each source.

        Raises
        ------
        ConfigError
            A source is missing from ``precedence`` (or ``precedence`` names an unknown one).
        """
        if not sources:
            raise ConfigError("merge() needs at least one source; pass {'name': bars_frame, ...}.")
        order = list(precedence if precedence is not None else self.config.precedence or sources)
        unknown = [s for s in order if s not in sources]
        missing = [s for s in sources if s not in order]
        if missing or len(set(order)) != len(order):
            hint = "".join(did_you_mean(m, unknown) for m in missing)
            raise ConfigError(
                f"merge(): precedence {order} must list every source exactly once; missing "
                f"{missing or 'none'}{', unknown ' + str(unknown) if unknown else ''}.{hint}"
            )
        rank = {name: k for k, name in enumerate(order)}
        parts, dups = [], []
        for name, bars in sources.items():
            dedup = self.deduplicate(bars)
            parts.append(dedup.bars.assign(source=name, _rank=rank[name]))
            for label, rows in (("exact", dedup.exact), ("conflicting", dedup.conflicting)):
                if len(rows):
                    extra = rows.assign(source=name, duplicate=label)
                    if "reason" not in extra.columns:
                        extra["reason"] = "identical to the kept copy"
                    dups.append(extra)
        frame = pd.concat(parts, ignore_index=True)
        frame = frame.sort_values(["symbol", "ts", "_rank"], kind="stable").reset_index(drop=True)
        lost = frame.duplicated(["symbol", "ts"], keep="first").to_numpy()
        winners = frame.loc[~lost]
        kept = frame.groupby(["symbol", "ts"], sort=False)[[*PRICE_COLUMNS, "volume", "source"]].transform(
            "first"
        )
        differs = np.zeros(len(frame), dtype=bool)
        for col in (*PRICE_COLUMNS, "volume"):
            a, b = frame[col].to_numpy(), kept[col].to_numpy()
            differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
        overridden = frame.loc[lost].assign(
            kept_source=kept.loc[lost, "source"].to_numpy(), differs=differs[lost]
        )
        bars_out = winners.drop(columns="_rank").reset_index(drop=True)
        bars_out["source"] = bars_out["source"].astype("str")
        overridden = overridden.drop(columns="_rank").reset_index(drop=True)
        dup_cols = [*BAR_COLUMNS, "source", "duplicate", "reason"]
        duplicates = (
            pd.concat(dups, ignore_index=True)[dup_cols]
            if dups
            else pd.DataFrame({c: pd.Series(dtype="str") for c in dup_cols}).pipe(_empty_bar_dtypes)
        )
        return MergeResult(bars_out, overridden, duplicates)


# ---------------------------------------------------------------------- the incremental builder


class _Bucket:
    __slots__ = (
        "close",
        "close_ts",
        "end",
        "high",
        "k",
        "low",
        "n",
        "n_crossed",
        "n_locked",
        "notional",
        "open",
        "open_ts",
        "spread_max",
        "spread_min",
        "spreads",
        "volumes",
    )

    def __init__(self, k: int, end: datetime) -> None:
        self.k = k
        self.end = end
        self.n = 0
        self.volumes: list[float] = []
        self.notional: list[float] = []
        self.spreads: list[float] = []
        self.n_crossed = 0
        self.n_locked = 0
        self.spread_min = math.inf
        self.spread_max = -math.inf

    def add(self, ts: datetime, o: float, h: float, lo: float, c: float) -> None:
        if self.n == 0:
            self.open, self.high, self.low, self.close = o, h, lo, c
            self.open_ts = self.close_ts = ts
        else:
            if ts < self.open_ts:
                self.open, self.open_ts = o, ts
            if ts >= self.close_ts:
                self.close, self.close_ts = c, ts
            if h > self.high:
                self.high = h
            if lo < self.low:
                self.low = lo
        self.n += 1


class IncrementalBarBuilder:
    """Turn a stream of trades, quotes or finer bars into completed bars, one event at a time.

    The result equals the batch builders' (:meth:`DataAggregator.bars_from_trades`,
    :meth:`~DataAggregator.bars_from_quotes`, :meth:`~DataAggregator.resample`) on the same events, exactly:
    volumes and sums use correctly rounded summation, so the order of additions cannot change a bit.

    Parameters
    ----------
    timeframe
        Bar length (``"1s"``, ``"1m"``, ``"1h"``, ``"1d"``, ...).
    vwap
        Add ``vwap`` to the extras of bars built from trades.

    Notes
    -----
    A symbol's bar is emitted as soon as its bucket is complete (see the module docstring): when an event of
    a later bucket arrives, or when a sub-bar reaching the bucket end arrives. :meth:`flush` closes buckets by
    time (a clock or a declared end of data). Events older than the symbol's open bucket are *late*: they
    cannot change an emitted bar, so they are counted in :attr:`late` and kept in :attr:`late_events`, never
    silently dropped. Each symbol is built from one kind of event.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> from alphaloom.core.types import Trade
    >>> builder = IncrementalBarBuilder("1m")
    >>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
    >>> builder.update(Trade(symbol="BTCUSD", ts=t0, price=100.0, size=1.0))
    []
    >>> [c.bar.close for c in builder.update(Trade(symbol="BTCUSD", ts=t0.replace(minute=1), price=101.0,
    ...     size=1.0))]
    [100.0]
    """

    def __init__(self, timeframe: str, *, vwap: bool = False) -> None:
        self.timeframe = timeframe
        self.vwap = vwap
        self._step = timedelta(microseconds=_step_ns(timeframe) // 1000)
        self._origin = _EPOCH + timedelta(microseconds=_origin_ns(timeframe) // 1000)
        self._open: dict[str, _Bucket] = {}
        self._kind: dict[str, type] = {}
        self._done: dict[str, int] = {}  # last emitted bucket per symbol
        self._sub_steps: dict[str, timedelta] = {}
        self._sub_tf: dict[str, str] = {}
        self.late = 0
        self.late_events: list[Bar | Quote | Trade] = []

    @property
    def step(self) -> timedelta:
        """The bar length."""
        return self._step

    def update(self, event: Bar | Quote | Trade) -> list[CompletedBar]:
        """Add one event; return the bars it completed (usually none or one), oldest first.

        Raises
        ------
        DataFormatError
            ``event`` is not a Bar, Quote or Trade, a symbol switches kind, or a bar's timeframe does not
            divide this builder's.
        """
        try:
            symbol = event.symbol
        except AttributeError:
            raise DataFormatError(
                f"IncrementalBarBuilder takes Bar, Quote or Trade events, got {type(event).__name__}."
            ) from None
        kind = type(event)
        known = self._kind.get(symbol)
        if known is not kind or (kind is Bar and event.timeframe != self._sub_tf[symbol]):
            self._check_kind(symbol, kind, known, event)
        ts = event.ts
        k = (ts - self._origin) // self._step
        done = self._done.get(symbol)
        if done is not None and k <= done:
            self.late += 1
            self.late_events.append(event)
            return []
        out: list[CompletedBar] = []
        bucket = self._open.get(symbol)
        if bucket is not None and k != bucket.k:
            if k < bucket.k:
                self.late += 1
                self.late_events.append(event)
                return []
            out.append(self._emit(symbol, bucket))
            bucket = None
        if bucket is None:
            bucket = _Bucket(k, self._origin + (k + 1) * self._step)
            self._open[symbol] = bucket
        if kind is Trade:
            price, size = event.price, event.size
            bucket.add(ts, price, price, price, price)
            bucket.volumes.append(size)
            bucket.notional.append(price * size)
        elif kind is Quote:
            bid, ask = event.bid, event.ask
            mid = 0.5 * (bid + ask)
            spread = ask - bid
            bucket.add(ts, mid, mid, mid, mid)
            bucket.spreads.append(spread)
            if spread < bucket.spread_min:
                bucket.spread_min = spread
            if spread > bucket.spread_max:
                bucket.spread_max = spread
            if bid > ask:
                bucket.n_crossed += 1
            elif bid == ask:
                bucket.n_locked += 1
        else:
            bucket.add(ts, event.open, event.high, event.low, event.close)
            if event.volume is not None and not math.isnan(event.volume):
                bucket.volumes.append(event.volume)
            if ts + self._sub_steps[symbol] >= bucket.end:
                out.append(self._emit(symbol, bucket))
        return out

    def flush(self, until: datetime | None = None) -> list[CompletedBar]:
        """Close open buckets by time.

        Parameters
        ----------
        until
            Close the buckets that end at or before this time (the data is known complete up to it). ``None``
            closes every open bucket, partial ones included.

        Returns
        -------
        list of CompletedBar
            Sorted by (symbol, ts).
        """
        limit = None if until is None else ensure_utc(until, name="until")
        out = [
            self._emit(symbol, bucket)
            for symbol, bucket in sorted(self._open.items())
            if limit is None or bucket.end <= limit
        ]
        return out

    def open_buckets(self) -> dict[str, datetime]:
        """Open time of each symbol's bucket in progress."""
        return {s: b.end - self._step for s, b in self._open.items()}

    def reset(self) -> None:
        """Forget all state (open buckets, emitted buckets and late events)."""
        self._open.clear()
        self._kind.clear()
        self._done.clear()
        self._sub_steps.clear()
        self._sub_tf.clear()
        self.late = 0
        self.late_events.clear()

    def to_frame(self, completed: Iterable[CompletedBar]) -> pd.DataFrame:
        """Completed bars as a frame with the batch builders' columns, sorted by (symbol, ts)."""
        rows = [c.to_row() for c in completed]
        if not rows:
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS}).pipe(_empty_bar_dtypes)
        frame = pd.DataFrame(rows)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype(TS_DTYPE)
        frame["symbol"] = frame["symbol"].astype("str")
        for col in frame.columns:
            if col in _COUNT_EXTRAS:
                frame[col] = frame[col].astype("int64")
            elif col not in ("symbol", "ts"):
                frame[col] = frame[col].astype("float64")
        return frame.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)

    def _check_kind(self, symbol: str, kind: type, known: type | None, event: Any) -> None:
        if kind not in (Bar, Quote, Trade):
            raise DataFormatError(
                f"IncrementalBarBuilder takes Bar, Quote or Trade events, got {type(event).__name__}."
            )
        if known is not None and known is not kind:
            raise DataFormatError(
                f"IncrementalBarBuilder builds {symbol} from {known.__name__} events and got a "
                f"{kind.__name__}; use one builder per kind of event."
            )
        if kind is Bar:
            if known is Bar:
                raise DataFormatError(
                    f"IncrementalBarBuilder builds {symbol} from {self._sub_tf[symbol]} bars and got a "
                    f"{event.timeframe} bar; one symbol's bars must share a timeframe."
                )
            sub = _step_ns(event.timeframe)
            if sub > _step_ns(self.timeframe) or _step_ns(self.timeframe) % sub:
                raise DataFormatError(
                    f"cannot build {self.timeframe} bars from {event.timeframe} bars of {symbol}; the target "
                    f"must be a multiple of the source length."
                )
            self._sub_steps[symbol] = timedelta(microseconds=sub // 1000)
            self._sub_tf[symbol] = event.timeframe
        self._kind[symbol] = kind

    def _emit(self, symbol: str, b: _Bucket) -> CompletedBar:
        del self._open[symbol]
        self._done[symbol] = b.k
        kind = self._kind[symbol]
        extras: dict[str, float] = {}
        if kind is Quote:
            volume = None
            extras = {
                "n_quotes": b.n,
                "spread_mean": math.fsum(b.spreads) / b.n,
                "spread_min": b.spread_min,
                "spread_max": b.spread_max,
                "n_crossed": b.n_crossed,
                "n_locked": b.n_locked,
            }
        else:
            volume = math.fsum(b.volumes) if b.volumes else None
            if kind is Trade:
                extras = {"n_trades": b.n}
                if self.vwap:
                    extras["vwap"] = math.fsum(b.notional) / volume if volume else math.nan
        bar = Bar(
            symbol=symbol,
            ts=b.end - self._step,
            open=b.open,
            high=b.high,
            low=b.low,
            close=b.close,
            volume=volume,
            timeframe=self.timeframe,
        )
        return CompletedBar(bar, extras)


# ---------------------------------------------------------------------- helpers


class _Groups:
    """Consecutive runs of (symbol, bucket) over rows sorted by (symbol, ts)."""

    def __init__(self, symbols: np.ndarray, ts_ns: np.ndarray, step: int, origin: int) -> None:
        self.symbols = symbols
        bucket = (ts_ns - origin) // step
        n = len(ts_ns)
        change = np.ones(n, dtype=bool)
        if n:
            change[1:] = (symbols[1:] != symbols[:-1]) | (bucket[1:] != bucket[:-1])
        self.starts = np.flatnonzero(change)
        self.stops = np.r_[self.starts[1:], n].astype(np.int64) if n else np.zeros(0, dtype=np.int64)
        self.n = len(self.starts)
        self.opens = bucket[self.starts] * step + origin if n else np.zeros(0, dtype=np.int64)
        self.ends = self.opens + step
        self.group_symbols = symbols[self.starts] if n else symbols[:0]

    def frame(self, keep: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "symbol": pd.Series(self.group_symbols[keep], dtype="str"),
                "ts": pd.to_datetime(self.opens[keep], utc=True).astype(TS_DTYPE),
            }
        )

    def first(self, values: np.ndarray) -> np.ndarray:
        return values[self.starts] if self.n else values[:0]

    def last(self, values: np.ndarray) -> np.ndarray:
        return values[self.stops - 1] if self.n else values[:0]

    def max(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values, self.starts) if self.n else values[:0].astype("float64")

    def min(self, values: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(values, self.starts) if self.n else values[:0].astype("float64")

    def count(self) -> np.ndarray:
        return (self.stops - self.starts).astype("int64")

    def sum_int(self, mask: np.ndarray) -> np.ndarray:
        return np.add.reduceat(mask.astype("int64"), self.starts) if self.n else np.zeros(0, dtype="int64")

    def nansum(self, values: np.ndarray) -> np.ndarray:
        """Exact per-group sum of the non-NaN values; NaN where a group has none."""
        out = np.full(self.n, np.nan)
        finite = ~np.isnan(values)
        vals = np.where(finite, values, 0.0).tolist()
        has = np.add.reduceat(finite.astype("int64"), self.starts) if self.n else np.zeros(0, dtype="int64")
        fsum = math.fsum
        for g, (a, b) in enumerate(zip(self.starts.tolist(), self.stops.tolist(), strict=True)):
            if has[g]:
                out[g] = fsum(vals[a:b])
        return out

    def symbol_end_reach(self, reach: np.ndarray) -> np.ndarray:
        """Per group: how far the same symbol's data reaches (its last group's reach)."""
        if not self.n:
            return reach
        sym = self.group_symbols
        last_of_run = np.r_[sym[1:] != sym[:-1], True]
        idx = np.flatnonzero(last_of_run)
        run_id = np.cumsum(np.r_[False, last_of_run[:-1]])
        return reach[idx][run_id]


def _resolve(
    frame: pd.DataFrame, kind: str, explicit: Mapping[str, str] | None, where: str
) -> dict[str, str]:
    """Map canonical column names to the frame's columns."""
    by_key = {str(c).strip().lower().replace(" ", "_"): c for c in frame.columns}
    wanted = ("symbol", *_REQUIRED[kind], *_OPTIONAL[kind])
    found: dict[str, str] = {}
    explicit = dict(explicit or {})
    for key, col in explicit.items():
        if key not in wanted:
            raise ConfigError(
                f"{where}: columns= names {key!r}, which is not a {kind} column.{did_you_mean(key, wanted)} "
                f"Valid: {', '.join(wanted)}."
            )
        if col not in frame.columns:
            raise DataFormatError(
                f"{where}: columns= maps {key!r} to {col!r}, which is not in the frame."
                f"{did_you_mean(str(col), map(str, frame.columns))}"
            )
        found[key] = col
    used = set(found.values())
    for key in wanted:
        if key in found:
            continue
        for alias in _ALIASES[key]:
            col = by_key.get(alias)
            if col is not None and col not in used:
                found[key] = col
                used.add(col)
                break
    missing = [k for k in _REQUIRED[kind] if k not in found]
    if missing:
        names = "; ".join(f"{m} ({', '.join(_ALIASES[m])})" for m in missing)
        raise DataFormatError(
            f"{where}: missing column(s) for {names}; found {list(frame.columns)}. Rename them or pass "
            f"columns={{'{missing[0]}': '<column>'}}."
        )
    return found


def _map_symbols(values: pd.Series, venue: str | None, mapped: bool, where: str) -> np.ndarray:
    text = values.astype("str").str.strip()
    blank = values.isna().to_numpy() | (text == "").to_numpy()
    if blank.any():
        pos = int(np.flatnonzero(blank)[0])
        raise DataFormatError(f"{where}: the symbol is empty at position {pos}; every row needs one.")
    codes, uniques = pd.factorize(text)
    if mapped:
        table = np.array([canonical(u, venue) for u in uniques], dtype=object)
    else:
        table = np.array([u.upper() for u in uniques], dtype=object)
    return table[codes]


def _to_utc(
    values: pd.Series, zone: str | None, unit: str | None, where: str
) -> pd.api.extensions.ExtensionArray:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        if unit is None:
            raise DataFormatError(
                f"{where} holds numbers, not times; pass ts_unit='s', 'ms', 'us' or 'ns' for epoch times."
            )
        parsed = pd.to_datetime(values, unit=unit, utc=True)
    elif isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC")
    else:
        try:
            parsed = pd.to_datetime(values, format="ISO8601")
        except (ValueError, TypeError) as exc:
            if "Mixed timezones" not in str(exc):
                raise DataFormatError(f"{where}: cannot parse times ({exc}); expected ISO-8601.") from exc
            try:
                parsed = pd.to_datetime(values, format="ISO8601", utc=True)
            except (ValueError, TypeError) as exc2:
                raise DataFormatError(f"{where}: cannot parse times ({exc2}); expected ISO-8601.") from exc2
        if parsed.isna().any():
            pos = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise DataFormatError(f"{where}: time missing at position {pos}; every row needs one.")
        if parsed.dt.tz is None:
            if zone is None:
                raise DataFormatError(
                    f"{where}: times carry no offset and no source zone was declared; pass source_tz "
                    f"(e.g. 'UTC', 'America/New_York', 'Etc/GMT+5' for fixed UTC-05)."
                )
            try:
                parsed = parsed.dt.tz_localize(zone, ambiguous="raise", nonexistent="raise")
            except (ValueError, TypeError, KeyError) as exc:  # pytz/zoneinfo and DST errors
                raise DataFormatError(
                    f"{where}: cannot place the times in zone {zone!r}: {exc}. Check the zone name; times "
                    f"that fall in a daylight-saving change need data with offsets."
                ) from exc
        parsed = parsed.dt.tz_convert("UTC")
    # The array, not to_numpy(): an aware column as NumPy is an object array of Timestamps (slow).
    return parsed.astype(TS_DTYPE).array


def _ticks(frame: pd.DataFrame, value_cols: tuple[str, str], where: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DataFormatError(f"{where}: expected a pandas DataFrame, got {type(frame).__name__}.")
    missing = [c for c in ("symbol", "ts", *value_cols) if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{where}: missing column(s) {missing}; found {list(frame.columns)}. Run "
            f"DataAggregator.normalize(frame, kind=...) first."
        )
    if not isinstance(frame["ts"].dtype, pd.DatetimeTZDtype):
        raise DataFormatError(f"{where}: column 'ts' must be timezone-aware; run normalize() first.")
    out = pd.DataFrame(
        {
            "symbol": frame["symbol"].astype("str").to_numpy(),
            "ts": frame["ts"].dt.tz_convert("UTC").astype(TS_DTYPE).array,
        }
    )
    for col in value_cols:
        out[col] = to_float_column(frame[col].reset_index(drop=True), column=col, where=where).to_numpy()
    bad = ~np.isfinite(out[list(value_cols)].to_numpy()).all(axis=1)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{where}: {int(bad.sum())} row(s) with a missing or infinite {' or '.join(value_cols)}, first "
            f"at position {pos}; validate and drop them first (DataValidator.validate_trades/_quotes)."
        )
    return out.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def _ns(ts: pd.Series) -> np.ndarray:
    return ts.astype(TS_DTYPE).dt.tz_convert(None).to_numpy().astype("int64")


def _dt_ns(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _fmt_ns(step: int) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        if step % _UNIT_NS[unit] == 0:
            return f"{step // _UNIT_NS[unit]}{unit}"
    return f"{step}ns"


def _infer_step(frame: pd.DataFrame, timeframe: str) -> int:
    ts = _ns(frame["ts"])
    sym = frame["symbol"].to_numpy()
    if len(ts) > 1:
        same = sym[1:] == sym[:-1]
        diffs = (ts[1:] - ts[:-1])[same]
        diffs = diffs[diffs > 0]
        if len(diffs):
            return int(diffs.min())
    if len(ts) == 0:
        return _step_ns(timeframe)
    raise ConfigError(
        "resample(): cannot infer the length of the input bars from one bar per symbol; pass "
        "source_timeframe (e.g. '1m')."
    )


def _require_unique(frame: pd.DataFrame, where: str) -> None:
    dup = frame.duplicated(["symbol", "ts"]).to_numpy()
    if dup.any():
        row = frame.iloc[int(np.flatnonzero(dup)[0])]
        raise DataFormatError(
            f"{where}: {int(dup.sum())} repeated (symbol, ts) row(s), first {row['symbol']} "
            f"{row['ts'].isoformat()}; run DataAggregator.deduplicate() first to see and resolve them."
        )


def _conflict_reason(row: pd.Series, kept: pd.Series, keep: str) -> str:
    diffs = []
    for col in (*PRICE_COLUMNS, "volume"):
        a, b = row[col], kept[col]
        if not (a == b or (math.isnan(a) and math.isnan(b))):
            diffs.append(f"{col} {a:g} vs kept {b:g}")
    return f"conflicts with the {keep} copy: {', '.join(diffs)}"


def _empty_bar_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    for col in frame.columns:
        if col == "ts":
            frame[col] = frame[col].astype(TS_DTYPE)
        elif col in ("open", "high", "low", "close", "volume"):
            frame[col] = frame[col].astype("float64")
    return frame
