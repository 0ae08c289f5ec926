"""The paper exchange: a simulated venue that replays stored bars and matches orders in memory.

:class:`PaperExchange` is alphaloom's embedded default venue. It replays bars (from a
:class:`~alphaloom.data.storage.BarStore` or a bars frame) on a
:class:`~alphaloom.core.clock.SimulatedClock`, as a real-time stream at a chosen speed, keeps the account,
positions and orders in memory, and matches orders at every replayed timestamp with the shared
:class:`~alphaloom.data.connectors.matching.MatchingEngine` (market, limit, stop and stop-limit orders, fees,
partial fills, latency).

Time works like this: the clock starts at the replay start; after the bars stamped ``ts`` are replayed it
stands at their close, ``ts + timeframe``. An order placed then is submitted at that time, so the earliest
bar that can fill it is the next one, and :meth:`get_historical_data` only shows bars that have closed by
the clock: nothing can peek at the future.

Its hooks never fail on their own except on bad input; a :class:`FaultPlan` injects failures (a share of
calls raising :class:`~alphaloom.core.exceptions.VenueUnavailableError`, lost order replies, stream drops
with missed and repeated events) so the base class's retry, idempotency, reconnect and backfill logic can be
tested without a network. All randomness is seeded: a run is reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from alphaloom.core.clock import Clock, SimulatedClock
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    ConfigError,
    ConnectorError,
    DataFormatError,
    EmptyRangeError,
    OrderRejectedError,
    StorageError,
    UnknownSymbolError,
    VenueUnavailableError,
    did_you_mean,
)
from alphaloom.core.secrets import SecretProvider
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import (
    BAR_COLUMNS,
    Account,
    Bar,
    Fill,
    Order,
    OrderResult,
    Portfolio,
    Position,
    Side,
)
from alphaloom.data._frames import coerce_bars
from alphaloom.data.connectors.base import (
    TIMEFRAMES,
    ConnectorConfig,
    ExchangeConnector,
    StreamEvent,
    timeframe_delta,
)
from alphaloom.data.connectors.matching import FeeModel, MatchingConfig, MatchingEngine
from alphaloom.data.storage.base import BarStore

__all__ = ["BpsFees", "FaultPlan", "PaperConfig", "PaperExchange"]

logger = logging.getLogger(__name__)


class BpsFees(ComponentConfig):
    """Proportional commission and slippage in basis points, with a minimum commission per order.

    The paper exchange's default fee model; it prices exactly like the backtester's ``CostModel`` (which
    can be passed as ``fees=`` instead).
    """

    commission_bps: float = Field(1.0, ge=0.0, le=1000.0)
    slippage_bps: float = Field(2.0, ge=0.0, le=1000.0)
    min_commission: float = Field(0.0, ge=0.0)

    def fill_price(self, units: float, ref_price: float) -> float:
        """Execution price of ``units`` (signed) at ``ref_price``: buys pay up, sells receive less."""
        if units == 0.0:
            return ref_price
        return ref_price * (1.0 + math.copysign(1.0, units) * self.slippage_bps * 1e-4)

    def commission(self, units: float, fill_price: float) -> float:
        """Commission in account currency for ``units`` (signed) at ``fill_price``."""
        if units == 0.0:
            return 0.0
        return max(abs(units) * fill_price * self.commission_bps * 1e-4, self.min_commission)


class FaultPlan(ComponentConfig):
    """Failures the paper exchange injects, for testing fault tolerance without a network.

    Parameters
    ----------
    fail_share
        Share of hook calls (history, orders, positions, account) that raise ``VenueUnavailableError``
        before doing anything.
    timeout_share
        Share of hook calls that hang for ``hang_s`` seconds before doing anything and then time out (the
        connector's own ``timeout_s`` fires first when it is shorter); drawn before ``fail_share``.
    hang_s
        How long a timed-out call hangs.
    lost_reply_share
        Share of order submissions that reach the book but whose reply is lost (``VenueUnavailableError``
        after the order exists): the case that creates duplicate orders in naive clients.
    stream_drop_after
        Drop the stream after this many events on each connection (``None``: never).
    stream_gap_steps
        Replay timestamps that pass unseen while the stream is reconnecting (they must be backfilled).
    stream_repeat_events
        Events of the previous connection sent again after a reconnect (they must be de-duplicated).
    seed
        Seed of the fault dice.
    max_in_a_row
        At most this many calls in a row fail (errors, timeouts and lost replies together); the next one
        goes through. Below the connector's retry attempts and breaker threshold, every fault is one the
        retries absorb (``None``: no bound, and a run of bad luck exhausts the retries as a real outage
        would).
    log
        A file each injected fault is appended to (one line: ``<kind> <operation>``) the moment it happens, so
        a harness that kills the process still counts them (``None``: not logged).
    """

    fail_share: float = Field(0.0, ge=0.0, lt=1.0)
    timeout_share: float = Field(0.0, ge=0.0, lt=1.0)
    hang_s: float = Field(0.05, ge=0.0, le=60.0, allow_inf_nan=False)
    lost_reply_share: float = Field(0.0, ge=0.0, lt=1.0)
    stream_drop_after: int | None = Field(None, ge=1)
    stream_gap_steps: int = Field(0, ge=0)
    stream_repeat_events: int = Field(0, ge=0)
    seed: int = 0
    max_in_a_row: int | None = Field(None, ge=1)
    log: Path | None = None


class PaperConfig(ConnectorConfig):
    """Settings of the :class:`PaperExchange`.

    Parameters
    ----------
    timeframe
        Timeframe of the replayed bars.
    symbols
        Symbols to replay (all in the source when ``None``).
    start, end
        Replay window ``[start, end)``; bars before ``start`` are history from the first moment.
    speed
        Replay speed: 0 = as fast as possible, 1 = real time, 60 = a minute of market time per second.
    initial_cash
        Starting cash, in ``currency``.
    currency, account_id
        Account identity.
    fees
        Default fee model (replaced by the ``fees=`` argument of :class:`PaperExchange`).
    matching
        Participation cap and latency of the matching engine.
    max_leverage
        Reject orders that would take gross exposure above this multiple of equity (``None``: no check).
    faults
        Injected failures (none by default).
    journal
        A SQLite file the exchange journals its orders, cancels and replay steps to (``None``: memory only).
        An exchange opened on an existing journal replays it and stands exactly where the last one left
        off (account, positions, orders, fills, clock), so the venue outlives the process that trades on it,
        as a real venue does. A journal written with other settings or data is refused.
    """

    venue: str = "paper"
    rate_limit_per_s: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    timeframe: str = "1d"
    symbols: tuple[str, ...] | None = None
    start: datetime | None = None
    end: datetime | None = None
    speed: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    initial_cash: float = Field(100_000.0, ge=0.0, allow_inf_nan=False)
    currency: str = "USD"
    account_id: str = "paper"
    fees: BpsFees = BpsFees()
    matching: MatchingConfig = MatchingConfig()
    max_leverage: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    faults: FaultPlan = FaultPlan()
    journal: Path | None = None

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return None if v is None else ensure_utc(v)

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, v: str) -> str:
        if v not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {v!r}; valid: {', '.join(TIMEFRAMES)}")
        return v

    @model_validator(mode="after")
    def _checks(self) -> PaperConfig:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start {self.start.isoformat()} must be before end {self.end.isoformat()}")
        return self


class PaperExchange(ExchangeConnector):
    """A simulated venue replaying stored bars; see the module docstring.

    Parameters
    ----------
    config
        A :class:`PaperConfig`.
    secrets, http
        Accepted for the common signature; the paper exchange needs neither.
    clock
        A :class:`~alphaloom.core.clock.SimulatedClock` to share with other components; one starting at the
        replay start is created when ``None``.
    store
        Where bars come from (read once for the replay; :meth:`get_historical_data` reads it).
    bars
        A bars frame instead of a store.
    fees
        A :class:`~alphaloom.data.connectors.matching.FeeModel` (e.g. the backtester's ``CostModel``);
        ``config.fees`` when ``None``.

    Examples
    --------
    >>> paper = PaperExchange(PaperConfig(symbols=("SPY",)), bars=load_sample("us_equities_daily"))
    >>> risk = RiskManager(RiskLimits())                       # every order goes through the risk manager
    >>> async for bar in paper.get_real_time_data(["SPY"]):   # doctest: +SKIP
    ...     await risk.submit(Order(symbol="SPY", side=Side.BUY, quantity=1, ts=paper.clock.now()), paper)
    """

    name: ClassVar[str] = "paper"
    config_class: ClassVar[type[ConnectorConfig]] = PaperConfig
    config: PaperConfig

    def __init__(
        self,
        config: PaperConfig | None = None,
        *,
        secrets: SecretProvider | None = None,
        http: Any = None,
        clock: Clock | None = None,
        store: BarStore | None = None,
        bars: pd.DataFrame | None = None,
        fees: FeeModel | None = None,
    ) -> None:
        config = config if config is not None else PaperConfig()
        if (store is None) == (bars is None):
            raise ConfigError(
                "PaperExchange replays bars from exactly one source: pass store=BarStore(...) or "
                "bars=<bars frame>, e.g. bars=load_sample('us_equities_daily')."
            )
        if clock is not None and not isinstance(clock, SimulatedClock):
            raise ConfigError(
                f"PaperExchange runs on simulated time; pass a SimulatedClock, got {type(clock).__name__}."
            )
        super().__init__(config, secrets=secrets, http=http, clock=clock)
        self._tf = timeframe_delta(config.timeframe)
        self._store = store
        self._history = self._load(store, bars)
        replay = self._history
        if config.start is not None:
            replay = replay[replay["ts"] >= pd.Timestamp(config.start)]
        if config.end is not None:
            replay = replay[replay["ts"] < pd.Timestamp(config.end)]
        if replay.empty:
            raise EmptyRangeError(
                f"the paper exchange has no {config.timeframe} bars to replay in "
                f"[{config.start or 'open'}, {config.end or 'open'}); widen the window or load more data."
            )
        self._replay = replay.reset_index(drop=True)
        ts_ns = self._replay["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        self._steps = np.unique(ts_ns)
        self._step_bounds = [*np.searchsorted(ts_ns, self._steps, side="left").tolist(), len(ts_ns)]
        self._cursor = 0
        first = self._replay["ts"].iloc[0].to_pydatetime()
        if clock is None:
            self.clock = SimulatedClock(config.start or first)
        self._sim: SimulatedClock = self.clock  # type: ignore[assignment]
        self._universe = sorted(self._history["symbol"].unique().tolist())
        self.engine = MatchingEngine(config.matching, fees if fees is not None else config.fees)
        self._portfolio = Portfolio(
            account_id=config.account_id, cash=config.initial_cash, ts=self.clock.now()
        )
        self._last_close: dict[str, float] = {}
        self._fills: list[Fill] = []
        self._faults = random.Random(config.faults.seed)
        self._stream_token = 0
        self._stream_connects = 0
        self._recent: list[Bar] = []
        self.skipped_rows = 0
        self.injected_faults = 0
        self._in_a_row = 0
        self._journal: _Journal | None = None
        if config.journal is not None:
            self._journal = _Journal(config.journal, self._fingerprint())
            self._replay_journal()

    # ------------------------------------------------------------------ public extras

    @property
    def portfolio(self) -> Portfolio:
        """Cash and positions now, marked at the last replayed closes."""
        return self._portfolio

    @property
    def fills(self) -> tuple[Fill, ...]:
        """Every fill so far, in order."""
        return tuple(self._fills)

    @property
    def universe(self) -> list[str]:
        """Symbols the exchange knows."""
        return list(self._universe)

    @property
    def finished(self) -> bool:
        """Whether every replay timestamp has been played."""
        return self._cursor >= len(self._steps)

    @property
    def steps_left(self) -> int:
        """Replay timestamps not yet played."""
        return len(self._steps) - self._cursor

    def step(self) -> list[Bar] | None:
        """Play the next replay timestamp: match orders on its bars, book fills, mark, advance the clock.

        Returns
        -------
        list of Bar or None
            The bars played (all symbols), or ``None`` when the replay is over.
        """
        if self.finished:
            return None
        if self._journal is not None:  # write-ahead: a step in the journal is a step that happened
            self._journal.append("step", {"cursor": self._cursor})
        return self._play()

    def _play(self) -> list[Bar]:
        lo, hi = self._step_bounds[self._cursor], self._step_bounds[self._cursor + 1]
        self._cursor += 1
        ts = pd.Timestamp(self._steps[self._cursor - 1], tz="UTC").to_pydatetime()
        if ts > self._sim.now():
            self._sim.advance_to(ts)
        bars = self._bars_of(lo, hi)
        portfolio = self._portfolio
        for bar in bars:
            for fill in self.engine.on_bar(bar):
                portfolio = portfolio.apply_fill(fill)
                self._fills.append(fill)
            self._last_close[bar.symbol] = bar.close
        self._portfolio = self._mark(portfolio, bars)
        close = ts + self._tf
        self._sim.advance_to(max(close, self._sim.now()))
        return bars

    def run(self, n_steps: int | None = None) -> int:
        """Play ``n_steps`` timestamps (all that are left when ``None``); returns how many were played."""
        played = 0
        while (n_steps is None or played < n_steps) and self.step() is not None:
            played += 1
        return played

    # ------------------------------------------------------------------ hooks

    async def _fetch_bars(
        self, venue_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        await self._maybe_fail("get_historical_data")
        self._require_symbol(venue_symbol)
        if timeframe != self.config.timeframe:
            raise ConfigError(
                f"the paper exchange holds {self.config.timeframe} bars, not {timeframe}; resample with the "
                f"aggregator or configure PaperConfig(timeframe={timeframe!r})."
            )
        # Only bars that have closed by the simulated clock are history.
        visible_end = min(end, self.clock.now() - self._tf + timedelta(microseconds=1))
        if visible_end <= start:
            return pd.DataFrame(columns=list(BAR_COLUMNS))
        if self._store is not None:
            try:
                return self._store.read_bars(venue_symbol, start, visible_end, timeframe=timeframe)
            except EmptyRangeError:
                return pd.DataFrame(columns=list(BAR_COLUMNS))
        h = self._history
        mask = (
            (h["symbol"] == venue_symbol)
            & (h["ts"] >= pd.Timestamp(start))
            & (h["ts"] < pd.Timestamp(visible_end))
        )
        return h.loc[mask]

    async def _stream(self, venue_symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:
        for s in venue_symbols:
            self._require_symbol(s)
        # One replay, one consumer: a newer stream takes over and an older one still iterating stops with
        # an error (a stream abandoned with `break` is only closed later, by the garbage collector).
        self._stream_token += 1
        token = self._stream_token
        wanted = set(venue_symbols)
        faults = self.config.faults
        self._stream_connects += 1
        sent = 0
        if self._stream_connects > 1:
            for _ in range(faults.stream_gap_steps):  # the market moves on while we are away
                if self.step() is None:
                    break
            for bar in self._recent[-faults.stream_repeat_events :] if faults.stream_repeat_events else []:
                yield bar
        while True:
            if token != self._stream_token:
                raise ConnectorError(
                    "this paper stream was superseded by a newer get_real_time_data() call; the paper "
                    "exchange replays one stream at a time, so subscribe every symbol in one call."
                )
            prev = self._sim.now()
            bars = self.step()
            if bars is None:
                return
            await self._pace(prev)
            for bar in bars:
                if bar.symbol not in wanted:
                    continue
                if faults.stream_drop_after is not None and sent >= faults.stream_drop_after:
                    self._note_fault("stream_drop", "stream")
                    raise VenueUnavailableError("paper: injected stream drop")
                self._recent.append(bar)
                del self._recent[: -max(1, faults.stream_repeat_events)]
                sent += 1
                yield bar

    def _stream_finished(self) -> bool:
        return self.finished

    async def _submit_order(self, order: Order) -> OrderResult:
        await self._maybe_fail("place_order")
        now = self.clock.now()
        if order.symbol not in self._universe:
            self._journal_order("reject", order, now, f"unknown symbol {order.symbol!r}")
            self.engine.reject(order, now, f"unknown symbol {order.symbol!r}")
            raise OrderRejectedError(
                f"paper: unknown symbol {order.symbol!r}.{did_you_mean(order.symbol, self._universe)} "
                f"The paper exchange trades {', '.join(self._universe[:20])}."
            )
        reason = self._leverage_problem(order)
        if reason:
            self._journal_order("reject", order, now, reason)
            self.engine.reject(order, now, reason)
            raise OrderRejectedError(f"paper: {reason}")
        self._journal_order("submit", order, now)
        record = self.engine.submit(order, now)
        if self._roll(self.config.faults.lost_reply_share):
            self._note_fault("lost_reply", "place_order")
            raise VenueUnavailableError(
                "paper: injected fault: the order reached the book but the reply was lost"
            )
        self._in_a_row = 0
        return record.to_result(venue_order_id=self._venue_id(record.seq))

    async def _find_order(self, client_order_id: str) -> OrderResult | None:
        await self._maybe_fail("get_order")
        record = self.engine.get(client_order_id)
        return None if record is None else record.to_result(venue_order_id=self._venue_id(record.seq))

    async def _cancel_order(self, client_order_id: str) -> OrderResult:
        await self._maybe_fail("cancel_order")
        held = self.engine.get(client_order_id)
        if self._journal is not None and held is not None and held.is_working:
            self._journal.append("cancel", {"cid": client_order_id, "now": self.clock.now().isoformat()})
        record = self.engine.cancel(client_order_id, self.clock.now())
        return record.to_result(venue_order_id=self._venue_id(record.seq))

    async def _fetch_positions(self) -> dict[str, Position]:
        await self._maybe_fail("get_positions")
        return {s: p for s, p in self._portfolio.positions.items() if p.quantity != 0}

    async def _fetch_account(self) -> Account:
        await self._maybe_fail("get_account")
        p = self._portfolio
        equity = p.total_value
        lev = self.config.max_leverage
        return Account(
            account_id=self.config.account_id,
            currency=self.config.currency,
            cash=p.cash,
            equity=equity,
            buying_power=p.cash if lev is None else max(0.0, lev * equity - p.gross_exposure),
            venue=self.name,
            ts=self.clock.now(),
        )

    async def get_open_orders(self) -> list[tuple[Order, OrderResult]]:
        """Every order still working, with its state, in submission order (for reconciliation).

        Injected faults here are retried and translated like those of the hooks (through the same resilient
        call), so a timeout never escapes as a bare ``TimeoutError``.
        """

        async def fetch() -> list[tuple[Order, OrderResult]]:
            await self._maybe_fail("get_open_orders")
            working = self.engine.working()
            return [(w.order, w.to_result(venue_order_id=self._venue_id(w.seq))) for w in working]

        return await self._call("get_open_orders", fetch)

    async def _aclose(self) -> None:
        if self._journal is not None:
            self._journal.close()

    # ------------------------------------------------------------------ journal

    def _fingerprint(self) -> str:
        cfg = self.config
        settings = cfg.model_dump(
            mode="json",
            include={
                "timeframe",
                "symbols",
                "start",
                "end",
                "initial_cash",
                "currency",
                "account_id",
                "fees",
                "matching",
                "max_leverage",
            },
        )
        data = {
            "settings": settings,
            "steps": [int(self._steps[0]), int(self._steps[-1]), len(self._steps), len(self._replay)],
            "fees": repr(self.engine.fees),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def _journal_order(self, kind: str, order: Order, now: datetime, reason: str = "") -> None:
        if self._journal is not None and self.engine.get(order.client_order_id) is None:
            self._journal.append(
                kind, {"order": order.model_dump(mode="json"), "now": now.isoformat(), "reason": reason}
            )

    def _replay_journal(self) -> None:
        assert self._journal is not None
        for seq, kind, data in self._journal.entries():
            if kind == "step":
                if data["cursor"] != self._cursor or self.finished:
                    raise StorageError(
                        f"the paper journal {self._journal.path} is inconsistent at entry {seq}: step "
                        f"{data['cursor']} where the replay stands at {self._cursor}; delete the file to "
                        "start the venue afresh."
                    )
                self._play()
            elif kind in ("submit", "reject"):
                order = Order(**data["order"])
                now = datetime.fromisoformat(data["now"])
                if kind == "submit":
                    self.engine.submit(order, now)
                else:
                    self.engine.reject(order, now, data["reason"])
            else:
                self.engine.cancel(data["cid"], datetime.fromisoformat(data["now"]))

    # ------------------------------------------------------------------ internals

    def _load(self, store: BarStore | None, bars: pd.DataFrame | None) -> pd.DataFrame:
        cfg = self.config
        if store is not None:
            if not isinstance(store, BarStore):
                raise ConfigError(f"store must be a BarStore, got {type(store).__name__}.")
            frame = store.read_bars(
                list(cfg.symbols) if cfg.symbols else None, None, cfg.end, timeframe=cfg.timeframe
            )
        else:
            frame = coerce_bars(bars, where="PaperExchange bars")  # type: ignore[arg-type]
            if cfg.symbols:
                missing = sorted(set(cfg.symbols) - set(frame["symbol"].unique()))
                if missing:
                    raise UnknownSymbolError(
                        f"the bars given to PaperExchange have no {', '.join(missing)}."
                        f"{did_you_mean(missing[0], frame['symbol'].unique())}"
                    )
                frame = frame[frame["symbol"].isin(cfg.symbols)]
            if cfg.end is not None:
                frame = frame[frame["ts"] < pd.Timestamp(cfg.end)]
        frame = frame.sort_values(["ts", "symbol"], kind="stable")
        frame = frame.drop_duplicates(["symbol", "ts"], keep="last").reset_index(drop=True)
        return frame.loc[:, list(BAR_COLUMNS)]

    def _bars_of(self, lo: int, hi: int) -> list[Bar]:
        rows = self._replay.iloc[lo:hi]
        out = []
        for sym, ts, o, h, low, c, v in zip(
            rows["symbol"],
            rows["ts"],
            rows["open"],
            rows["high"],
            rows["low"],
            rows["close"],
            rows["volume"],
            strict=True,
        ):
            try:
                out.append(
                    Bar(
                        symbol=sym,
                        ts=ts.to_pydatetime(),
                        open=o,
                        high=h,
                        low=low,
                        close=c,
                        volume=None if math.isnan(v) else v,
                        exchange=self.name,
                        timeframe=self.config.timeframe,
                    )
                )
            except DataFormatError as exc:
                # Bad rows are the validator's business; a replay goes on without them.
                self.skipped_rows += 1
                logger.warning("paper replay skipped an invalid bar of %s at %s: %s", sym, ts, exc)
        return out

    def _mark(self, portfolio: Portfolio, bars: list[Bar]) -> Portfolio:
        closes = {b.symbol: b.close for b in bars}
        held = [s for s in portfolio.positions if s in closes]
        if not held:
            return Portfolio(
                account_id=portfolio.account_id,
                cash=portfolio.cash,
                positions=portfolio.positions,
                ts=self._sim.now(),
            )
        positions = dict(portfolio.positions)
        for s in held:
            positions[s] = positions[s].mark(closes[s])
        return Portfolio(
            account_id=portfolio.account_id, cash=portfolio.cash, positions=positions, ts=self._sim.now()
        )

    def _leverage_problem(self, order: Order) -> str:
        lev = self.config.max_leverage
        if lev is None:
            return ""
        price = order.limit_price or order.stop_price or self._last_close.get(order.symbol)
        if price is None:
            return ""
        p = self._portfolio
        pos = p.positions.get(order.symbol)
        current = pos.quantity if pos is not None else 0.0
        after = current + (order.quantity if order.side is Side.BUY else -order.quantity)
        gross = p.gross_exposure - abs(current) * price + abs(after) * price
        limit = lev * p.total_value
        if gross > limit:
            return (
                f"order would take gross exposure to {gross:,.2f} {self.config.currency}, above "
                f"max_leverage={lev} x equity {p.total_value:,.2f}; reduce the quantity."
            )
        return ""

    async def _maybe_fail(self, op: str) -> None:
        faults = self.config.faults
        if self._roll(faults.timeout_share):
            self._note_fault("timeout", op)
            await asyncio.sleep(faults.hang_s)
            raise TimeoutError(f"paper: injected timeout in {op} after {faults.hang_s:g} s")
        if self._roll(faults.fail_share):
            self._note_fault("error", op)
            raise VenueUnavailableError(f"paper: injected fault in {op}")
        if op != "place_order":  # an order's reply can still be lost; _submit_order settles the run
            self._in_a_row = 0

    def _roll(self, share: float) -> bool:
        if not share:
            return False
        limit = self.config.faults.max_in_a_row
        if limit is not None and self._in_a_row >= limit:
            return False  # a transient fault: this call goes through
        return self._faults.random() < share

    def _note_fault(self, kind: str, op: str) -> None:
        self._in_a_row += 1
        self.injected_faults += 1
        path = self.config.faults.log
        if path is not None:
            try:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(f"{kind} {op}\n")
            except OSError as exc:  # counting faults must never become a fault of its own
                logger.warning("cannot append to the fault log %s: %s", path, exc)

    def _require_symbol(self, symbol: str) -> None:
        if symbol not in self._universe:
            raise UnknownSymbolError(
                f"the paper exchange has no bars for {symbol!r}.{did_you_mean(symbol, self._universe)} "
                f"It holds {len(self._universe)} symbol(s): {', '.join(self._universe[:20])}."
            )

    async def _pace(self, prev: datetime) -> None:
        speed = self.config.speed
        if speed <= 0:
            await asyncio.sleep(0)  # let order-placing tasks run between timestamps
            return
        gap_s = (self._sim.now() - prev).total_seconds()
        await asyncio.sleep(max(0.0, gap_s) / speed)

    @staticmethod
    def _venue_id(seq: int) -> str:
        return f"paper-{seq}"


class _Journal:
    """An append-only SQLite log of the paper venue's commands, each committed before it takes effect."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
            self._con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
                "payload TEXT NOT NULL)"
            )
            self._con.execute("INSERT OR IGNORE INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
            stored = self._con.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()[0]
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the paper journal {self.path}: {exc}.") from exc
        if stored != fingerprint:
            self.close()
            raise ConfigError(
                f"the paper journal {self.path} was written by a paper exchange with other settings or data "
                "(symbols, window, cash, fees or bars differ); use another journal file, or delete this one "
                "to start the venue afresh."
            )

    def entries(self) -> list[tuple[int, str, dict[str, Any]]]:
        try:
            rows = self._con.execute("SELECT seq, kind, payload FROM journal ORDER BY seq").fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the paper journal {self.path}: {exc}.") from exc
        return [(int(seq), str(kind), json.loads(payload)) for seq, kind, payload in rows]

    def append(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            self._con.execute(
                "INSERT INTO journal (kind, payload) VALUES (?, ?)",
                (kind, json.dumps(payload, sort_keys=True)),
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the paper journal {self.path}: {exc}.") from exc

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._con.close()
