"""The trading engine: signals -> target weights -> orders -> risk manager -> venue, bar by bar.

Per timestamp of closed bars (:meth:`TradingEngine.on_bars`):

1. the bars join the per-symbol history cache (the fallback when market data fails);
2. the venue is asked for every open order: new fills are booked in the engine's portfolio, the risk
   manager, the relational store and the audit log;
3. the portfolio is marked at the closes and the risk manager re-evaluates drawdown and daily loss;
4. every ``reconcile_every`` bars the engine reconciles with the venue
   (:func:`~alphaloom.execution.reconcile.reconcile`; the venue is the source of truth);
5. stop-loss / take-profit exits due now come from the risk manager and are sent first; a symbol exited
   this way is not re-entered on the same bar;
6. each symbol with a new bar gets a signal from the primary source, or from the fallback source when the
   primary fails (logged, audited, counted in :attr:`TradingEngine.health`); every signal is audited with
   its model version and input hash;
7. target weights become lot-rounded orders (:func:`~alphaloom.execution.sizing.size_orders`, netting
   orders still working) with deterministic client order ids; each order is recorded (state ``new``) and
   audited *before* it goes to :meth:`RiskManager.submit <alphaloom.risk.manager.RiskManager.submit>`, the
   only path to the venue; refusals and venue rejections are recorded as ``rejected`` with the reasons;
8. the checkpoint (run id, last bar, bars processed) is saved.

Restarting is safe by construction: on :meth:`TradingEngine.start` the engine reloads the open orders it
recorded, reconciles them and the positions with the venue, loads history, and re-decides the latest closed
bar if the checkpoint does not cover it. Re-deciding produces the same client order ids, nets the orders that
did reach the venue, and the venue's idempotency de-duplicates the rest: nothing is lost or sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import pandas as pd
from pydantic import Field

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    AlphaloomError,
    ConfigError,
    ConnectorError,
    DataNotFoundError,
    OrderRejectedError,
    RiskLimitError,
    VenueUnavailableError,
)
from alphaloom.core.types import (
    BAR_COLUMNS,
    AssetClass,
    Bar,
    Fill,
    Order,
    OrderResult,
    OrderStatus,
    Portfolio,
)
from alphaloom.data.connectors.base import ConnectorHealth, timeframe_delta
from alphaloom.data.storage.base import BarStore
from alphaloom.data.storage.relational import RelationalStore
from alphaloom.execution.feeds import BarFeed
from alphaloom.execution.orders import ManagedOrder, deterministic_client_order_id
from alphaloom.execution.reconcile import Reconciliation, reconcile
from alphaloom.execution.signals import SignalDecision, SignalSource
from alphaloom.execution.sizing import SizingConfig, size_orders

if TYPE_CHECKING:
    from alphaloom.risk.manager import RiskManager

__all__ = [
    "BarReport",
    "EngineCheckpoint",
    "EngineConfig",
    "EngineHealth",
    "EngineState",
    "MemoryEngineCheckpoint",
    "StoreEngineCheckpoint",
    "TradingEngine",
]

logger = logging.getLogger(__name__)

_OPEN = (OrderStatus.NEW, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)


class EngineConfig(ComponentConfig):
    """Settings of the :class:`TradingEngine`.

    Parameters
    ----------
    timeframe
        Bar size traded; a decision is taken at each bar's close (``ts + timeframe``).
    history_bars
        Bars kept per symbol for the signal sources (and loaded from the venue at start).
    reconcile_every
        Reconcile with the venue every this many bars (and always at start).
    max_feed_failures
        Consecutive market-data failures tolerated (each degrades to cached bars) before the run stops.
    feed_retry_s
        Wall-clock seconds to wait after a market-data failure.
    sizing
        Lot rounding, gross cap and no-trade band (changes under 1 % of equity are not traded by default:
        a live book re-sized every bar would pay costs for nothing).
    """

    timeframe: str = "1d"
    history_bars: int = Field(300, ge=2)
    reconcile_every: int = Field(20, ge=1)
    max_feed_failures: int = Field(5, ge=0)
    feed_retry_s: float = Field(1.0, ge=0.0)
    sizing: SizingConfig = SizingConfig(min_trade_weight=0.01)

    def model_post_init(self, __context: Any) -> None:
        timeframe_delta(self.timeframe)


class EngineState(NamedTuple):
    """What the checkpoint keeps: the run, the last bar fully processed, and how many bars."""

    run_id: str
    last_bar_ts: datetime | None
    bars_processed: int


class EngineCheckpoint(Protocol):
    """Where the engine keeps its :class:`EngineState` between processes."""

    def load(self) -> EngineState | None: ...
    def save(self, state: EngineState) -> None: ...


class MemoryEngineCheckpoint:
    """A checkpoint that lives as long as the object (library use and tests)."""

    def __init__(self, state: EngineState | None = None) -> None:
        self.state = state

    def load(self) -> EngineState | None:
        return self.state

    def save(self, state: EngineState) -> None:
        self.state = state


class StoreEngineCheckpoint:
    """The checkpoint as the one-row derived table ``trade_checkpoint_<name>`` of a bar store."""

    def __init__(self, store: BarStore, name: str = "paper") -> None:
        if not isinstance(store, BarStore):
            raise ConfigError(f"StoreEngineCheckpoint needs a BarStore, got {type(store).__name__}.")
        self.store = store
        self.table = f"trade_checkpoint_{name}"

    def load(self) -> EngineState | None:
        try:
            frame = self.store.read_frame(self.table)
        except DataNotFoundError:
            return None
        if frame.empty:
            return None
        row = frame.iloc[-1]
        last = row["last_bar_ts"]
        return EngineState(
            str(row["run_id"]),
            None if pd.isna(last) else pd.Timestamp(last).to_pydatetime(),
            int(row["bars_processed"]),
        )

    def save(self, state: EngineState) -> None:
        frame = pd.DataFrame(
            {
                "run_id": pd.Series([state.run_id], dtype="str"),
                "last_bar_ts": pd.to_datetime([state.last_bar_ts], utc=True).astype("datetime64[ns, UTC]"),
                "bars_processed": [state.bars_processed],
                "saved_at": [pd.Timestamp.now(tz="UTC")],
            }
        )
        self.store.write_frame(self.table, frame)


@dataclass
class EngineHealth:
    """How the engine is doing: progress, degradations, reconciliation and the venue connection.

    ``degraded`` names what is running on a substitute right now (``"signal:<symbol>"`` while the primary
    source fails for a symbol, ``"market_data"`` while bars come from the cache).
    """

    bars_processed: int = 0
    last_bar_ts: datetime | None = None
    orders_sent: int = 0
    orders_refused: int = 0
    orders_rejected_by_venue: int = 0
    fills: int = 0
    signal_fallbacks: int = 0
    market_data_failures: int = 0
    reconciliations: int = 0
    reconcile_differences: int = 0
    degraded: set[str] = field(default_factory=set)
    last_degradation: str = ""
    connector: ConnectorHealth | None = None

    @property
    def healthy(self) -> bool:
        return not self.degraded and (self.connector is None or self.connector.healthy)


class BarReport(NamedTuple):
    """What one :meth:`TradingEngine.on_bars` call did."""

    ts: datetime
    skipped: bool
    signals: list[SignalDecision]
    orders: list[ManagedOrder]
    fills: list[Fill]
    reconciliation: Reconciliation | None


class TradingEngine:
    """Runs the trading loop against one venue through the risk manager; see the module docstring.

    Parameters
    ----------
    config
        Engine settings.
    connector
        The venue (an :class:`~alphaloom.data.connectors.ExchangeConnector`).
    risk
        The :class:`~alphaloom.risk.manager.RiskManager`: every order goes through its ``submit``.
    primary
        The signal source (e.g. the RL ensemble).
    fallback
        Used per symbol when ``primary`` fails; ``None`` means such a symbol is not traded on that bar.
    symbols
        Symbols traded.
    run_id
        Identifies the run; part of every client order id, so a restarted run re-creates the same ids.
    records
        The relational store for orders, fills and the audit log (``None``: nothing persisted).
    checkpoint
        Where progress is kept between processes.
    asset_classes
        Asset class per symbol (lot defaults).
    account_id
        The venue account; orders are recorded against it.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        connector: Any,
        risk: RiskManager,
        primary: SignalSource,
        fallback: SignalSource | None = None,
        symbols: Sequence[str],
        run_id: str,
        records: RelationalStore | None = None,
        checkpoint: EngineCheckpoint | None = None,
        asset_classes: Mapping[str, AssetClass] | None = None,
        account_id: str | None = None,
    ) -> None:
        if not isinstance(config, EngineConfig):
            raise ConfigError(f"config must be an EngineConfig, got {type(config).__name__}.")
        for name, source in (("primary", primary), ("fallback", fallback)):
            if source is not None and not isinstance(source, SignalSource):
                raise ConfigError(f"{name} must be a SignalSource, got {type(source).__name__}.")
        if records is not None and not isinstance(records, RelationalStore):
            raise ConfigError(f"records must be a RelationalStore, got {type(records).__name__}.")
        symbols = list(dict.fromkeys(symbols))
        if not symbols:
            raise ConfigError("the engine needs at least one symbol to trade.")
        if not isinstance(run_id, str) or not run_id.strip():
            raise ConfigError(f"run_id must be a non-empty string, got {run_id!r}.")
        self.config = config
        self.connector = connector
        self.risk = risk
        self.primary = primary
        self.fallback = fallback
        self.symbols = symbols
        self.run_id = run_id
        self.records = records
        self.checkpoint: EngineCheckpoint = checkpoint if checkpoint is not None else MemoryEngineCheckpoint()
        self.asset_classes = dict(asset_classes or {})
        self.account_id = account_id
        self.actor = f"engine:{run_id}"
        self.health = EngineHealth()
        self.orders: dict[str, ManagedOrder] = {}
        self.portfolio: Portfolio | None = None
        self._tf = timeframe_delta(config.timeframe)
        self._history: dict[str, deque[Bar]] = {s: deque(maxlen=config.history_bars) for s in symbols}
        self._since_reconcile = 0
        self._feed_failures = 0
        self._started = False
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Reconciliation:
        """Resume or begin the run: reload open orders, reconcile, load history, re-decide a missed bar.

        Returns
        -------
        Reconciliation
            The start-up reconciliation (its differences are audited).
        """
        state = self.checkpoint.load()
        if state is not None and state.run_id != self.run_id:
            raise ConfigError(
                f"the checkpoint belongs to run {state.run_id!r}, not {self.run_id!r}; resume that run or "
                "start a fresh one with a new checkpoint."
            )
        if state is not None:
            self.health.bars_processed = state.bars_processed
            self.health.last_bar_ts = state.last_bar_ts
        account = await self.connector.get_account()
        if self.account_id is None:
            self.account_id = account.account_id
        if self.records is not None:
            self.records.upsert_account(account)
            since = None if state is None or state.last_bar_ts is None else state.last_bar_ts + self._tf
            self._load_orders(since)
        self._audit(
            "execution.start",
            {
                "run_id": self.run_id,
                "resumed_from": state.last_bar_ts if state is not None else None,
                "bars_processed": self.health.bars_processed,
                "venue": account.venue,
                "account_id": account.account_id,
                "open_orders": sorted(self.orders),
                "primary": self.primary.name,
                "fallback": self.fallback.name if self.fallback is not None else None,
            },
        )
        local_positions = None if state is None else self._recorded_positions()
        report = await self._reconcile(local_positions)
        await self._load_history()
        self._started = True
        latest = self._latest_closed_ts()
        if (
            state is not None
            and latest is not None
            and (self.health.last_bar_ts is None or latest > self.health.last_bar_ts)
        ):
            # The venue moved on past the checkpoint (killed mid-bar): decide that bar now.
            bars = [h[-1] for h in self._history.values() if h and h[-1].ts == latest]
            await self._decide_bar(latest, bars, poll=False)
        return report

    async def run(
        self,
        feed: BarFeed,
        *,
        max_bars: int | None = None,
        on_bar: Callable[[BarReport], Awaitable[None] | None] | None = None,
    ) -> EngineHealth:
        """Trade until ``feed`` ends or ``max_bars`` timestamps were processed; returns the final health.

        A market-data failure degrades to the cached bars (open orders are still polled and protective
        exits still checked) and is retried; more than ``max_feed_failures`` in a row stops the run with
        the last error.
        """
        if not self._started:
            await self.start()
        done = 0
        while (max_bars is None or done < max_bars) and not self._stopping:
            try:
                bars = await feed.next_bars()
            except ConnectorError as exc:
                self._feed_failures += 1
                self.health.market_data_failures += 1
                await self._degrade_market_data(exc)
                if self._feed_failures > self.config.max_feed_failures:
                    raise VenueUnavailableError(
                        f"market data failed {self._feed_failures} times in a row (last: {exc}); stopping "
                        f"after max_feed_failures={self.config.max_feed_failures}. Restart to resume."
                    ) from exc
                await asyncio.sleep(self.config.feed_retry_s)
                continue
            if bars is None:
                break
            if self._feed_failures:
                self._feed_failures = 0
                self.health.degraded.discard("market_data")
            if not bars:
                continue
            report = await self.on_bars(bars)
            if not report.skipped:
                done += 1
            if on_bar is not None:
                maybe = on_bar(report)
                if asyncio.iscoroutine(maybe):
                    await maybe
        self.health.connector = self.connector.health()
        return self.health

    def stop(self) -> None:
        """Ask :meth:`run` to finish after the bar in progress (safe from a signal handler)."""
        self._stopping = True

    # ------------------------------------------------------------------ one bar

    async def on_bars(self, bars: Sequence[Bar]) -> BarReport:
        """Process the closed bars of one timestamp (see the module docstring)."""
        if not self._started:
            raise ConfigError("call `await engine.start()` before feeding bars (run() does it for you).")
        bars = [b for b in bars if b.symbol in self._history]
        if not bars:
            raise ConfigError(f"no bars for the traded symbols {self.symbols}.")
        ts = bars[0].ts
        if any(b.ts != ts for b in bars):
            raise ConfigError("on_bars() takes the bars of one timestamp.")
        if self.health.last_bar_ts is not None and ts <= self.health.last_bar_ts:
            return BarReport(ts, True, [], [], [], None)  # already processed before a restart
        for bar in bars:
            history = self._history[bar.symbol]
            if not history or bar.ts > history[-1].ts:
                history.append(bar)
        return await self._decide_bar(ts, bars, poll=True)

    async def _decide_bar(self, ts: datetime, bars: Sequence[Bar], *, poll: bool) -> BarReport:
        decided_at = ts + self._tf
        fills = await self._poll_open_orders() if poll else []
        closes = self._closes()
        self._mark(closes, decided_at)
        recon = None
        self._since_reconcile += 1
        if self._since_reconcile >= self.config.reconcile_every:
            recon = await self._reconcile(self._local_positions())
            fills += recon.new_fills
        seq: dict[str, int] = defaultdict(int)
        sent: list[ManagedOrder] = []
        exited: set[str] = set()
        for managed in await self._send_exits(decided_at, seq):
            sent.append(managed)
            exited.add(managed.order.symbol)
        decisions: list[SignalDecision] = []
        signal_ids: dict[str, int | None] = {}
        weights: dict[str, float] = {}
        for bar in bars:
            decision, audit_id = self._signal(bar.symbol, bar.ts, decided_at)
            if decision is None:
                continue
            decisions.append(decision)
            signal_ids[bar.symbol] = audit_id
            weights[bar.symbol] = 0.0 if bar.symbol in exited else decision.signal.position_size
        if weights and self.portfolio is not None and self.portfolio.total_value > 0:
            sizing = size_orders(
                weights,
                equity=self.portfolio.total_value,
                prices=closes,
                positions=self._local_positions(),
                pending=self._pending(),
                config=self.config.sizing,
                asset_classes=self.asset_classes,
            )
            for skip in sizing.skipped:
                self._audit(
                    "execution.sizing_skip", {"run_id": self.run_id, "ts": decided_at, **skip._asdict()}
                )
            for intent in sizing.intents:
                cid = self._next_cid(decided_at, intent.symbol, seq)
                order = Order(
                    symbol=intent.symbol,
                    side=intent.side,
                    quantity=intent.quantity,
                    client_order_id=cid,
                    ts=decided_at,
                )
                sent.append(
                    await self._send(
                        order, kind=intent.kind, target=intent.target, signal_id=signal_ids.get(intent.symbol)
                    )
                )
        elif weights:
            logger.warning("no equity to size orders on at %s; nothing traded", decided_at.isoformat())
            self._audit(
                "execution.sizing_skip", {"run_id": self.run_id, "ts": decided_at, "reason": "no equity"}
            )
        self.health.bars_processed += 1
        self.health.last_bar_ts = ts
        self.checkpoint.save(EngineState(self.run_id, ts, self.health.bars_processed))
        return BarReport(ts, False, decisions, sent, fills, recon)

    # ------------------------------------------------------------------ signals

    def _signal(
        self, symbol: str, bar_ts: datetime, decided_at: datetime
    ) -> tuple[SignalDecision | None, int | None]:
        frame = self._frame(symbol)
        key = f"signal:{symbol}"
        try:
            decision = self.primary.decide(symbol, bar_ts, frame)
        except Exception as exc:  # failure as data: any model error must not stop the trading loop
            error = f"{type(exc).__name__}: {exc}"
            self.health.signal_fallbacks += 1
            self.health.degraded.add(key)
            self.health.last_degradation = f"{decided_at.isoformat()} {key}: {error}"
            using = self.fallback.name if self.fallback is not None else None
            logger.warning(
                "primary signal source %s failed for %s (%s); using %s",
                self.primary.name,
                symbol,
                error,
                using or "no signal (not traded this bar)",
            )
            self._audit(
                "execution.degraded",
                {
                    "run_id": self.run_id,
                    "component": "signal",
                    "symbol": symbol,
                    "ts": decided_at,
                    "failed": self.primary.name,
                    "error": error,
                    "using": using,
                },
            )
            if self.fallback is None:
                return None, None
            try:
                decision = self.fallback.decide(symbol, bar_ts, frame)
            except AlphaloomError as exc2:
                logger.warning(
                    "fallback %s failed for %s too (%s); not traded", self.fallback.name, symbol, exc2
                )
                self._audit(
                    "execution.degraded",
                    {
                        "run_id": self.run_id,
                        "component": "signal",
                        "symbol": symbol,
                        "ts": decided_at,
                        "failed": self.fallback.name,
                        "error": f"{type(exc2).__name__}: {exc2}",
                        "using": None,
                    },
                )
                return None, None
        else:
            self.health.degraded.discard(key)
        s = decision.signal
        record = self._audit(
            "execution.signal",
            {
                "run_id": self.run_id,
                "symbol": symbol,
                "bar_ts": bar_ts,
                "ts": decided_at,
                "source": decision.source,
                "degraded": decision.source != self.primary.name,
                "model_version": s.model_version,
                "input_hash": decision.input_hash,
                "action": s.action,
                "position_size": s.position_size,
                "confidence": s.confidence,
            },
        )
        return decision, getattr(record, "id", None)

    # ------------------------------------------------------------------ orders

    def _next_cid(self, decided_at: datetime, symbol: str, seq: dict[str, int]) -> str:
        # An id already used (a re-decided bar whose order was sent before a restart; sizing nets it if it
        # is still working) is skipped, so the next order takes the number it had in the first attempt.
        while True:
            cid = deterministic_client_order_id(self.run_id, decided_at, symbol, seq[symbol])
            seq[symbol] += 1
            if cid not in self.orders:
                return cid

    async def _send(
        self, order: Order, *, kind: str, target: float, signal_id: int | None, replaces: str | None = None
    ) -> ManagedOrder:
        managed = ManagedOrder(order)
        self.orders[order.client_order_id] = managed
        if self.records is not None:
            self.records.record_order(order, account_id=self.account_id)
        self._audit(
            "execution.order",
            {
                "run_id": self.run_id,
                "client_order_id": order.client_order_id,
                "symbol": order.symbol,
                "side": order.side,
                "quantity": order.quantity,
                "order_type": order.order_type,
                "time_in_force": order.time_in_force,
                "ts": order.ts,
                "kind": kind,
                "target_position": target,
                "signal_audit_id": signal_id,
                "replaces_client_order_id": replaces,
            },
        )
        try:
            result = await self.risk.submit(order, self.connector)
        except RiskLimitError as exc:
            self.health.orders_refused += 1
            self._finish(managed, OrderStatus.REJECTED, f"refused by the risk manager: {exc}")
            return managed
        except OrderRejectedError as exc:
            self.health.orders_rejected_by_venue += 1
            self._finish(managed, OrderStatus.REJECTED, f"rejected by the venue: {exc}")
            return managed
        except ConnectorError as exc:
            # The order may or may not have reached the venue: leave it NEW; reconciliation settles it.
            logger.warning(
                "order %s unconfirmed (%s); the next reconciliation settles it", order.client_order_id, exc
            )
            self._audit(
                "execution.order_unconfirmed",
                {"run_id": self.run_id, "client_order_id": order.client_order_id, "error": str(exc)},
            )
            self._since_reconcile = self.config.reconcile_every
            return managed
        self.health.orders_sent += 1
        self._book(managed, result)
        return managed

    def _finish(self, managed: ManagedOrder, status: OrderStatus, message: str) -> None:
        result = OrderResult(
            client_order_id=managed.client_order_id, status=status, message=message, ts=managed.order.ts
        )
        self._book(managed, result)

    def _book(self, managed: ManagedOrder, result: OrderResult) -> list[Fill]:
        before = managed.status
        if (
            result.status is before
            and all(f.fill_id in managed.fills for f in result.fills)
            and (not result.venue_order_id or result.venue_order_id == managed.venue_order_id)
        ):
            return []  # nothing new (a poll of a working order)
        try:
            added = managed.apply_result(result)
        except ConnectorError as exc:
            logger.warning("%s; taking the venue's state", exc)
            replacement = ManagedOrder.from_venue(managed.order, result)
            added = [f for f in replacement.fills.values() if f.fill_id not in managed.fills]
            self.orders[managed.client_order_id] = managed = replacement
        self._record_result(managed, result)
        if managed.status is not before:
            self._audit(
                "execution.order_state",
                {
                    "run_id": self.run_id,
                    "client_order_id": managed.client_order_id,
                    "from": before,
                    "to": managed.status,
                    "filled_quantity": managed.filled_quantity,
                    "message": managed.message,
                },
            )
        for fill in added:
            self._apply_fill(fill)
        return added

    def _record_result(self, managed: ManagedOrder, result: OrderResult) -> None:
        if self.records is None:
            return
        try:
            self.records.record_order_result(result)
        except DataNotFoundError:
            # An adopted order the store has never seen: record it first.
            self.records.record_order(managed.order, account_id=self.account_id)
            self.records.record_order_result(result)

    def _apply_fill(self, fill: Fill) -> None:
        self.health.fills += 1
        if self.portfolio is not None:
            self.portfolio = self.portfolio.apply_fill(fill)
        self.risk.on_fill(fill)
        self._audit(
            "execution.fill",
            {
                "run_id": self.run_id,
                "client_order_id": fill.client_order_id,
                "fill_id": fill.fill_id,
                "symbol": fill.symbol,
                "side": fill.side,
                "quantity": fill.quantity,
                "price": fill.price,
                "fee": fill.fee,
                "ts": fill.ts,
            },
        )

    async def _poll_open_orders(self) -> list[Fill]:
        fills: list[Fill] = []
        for managed in [o for o in self.orders.values() if o.is_open]:
            try:
                result = await self.connector.get_order(managed.client_order_id)
            except ConnectorError as exc:
                logger.warning("could not poll order %s (%s); reconciling", managed.client_order_id, exc)
                self._since_reconcile = self.config.reconcile_every
                continue
            fills += self._book(self.orders[managed.client_order_id], result)
        return fills

    def _pending(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for managed in self.orders.values():
            if managed.is_open:
                out[managed.order.symbol] += managed.signed_remaining
        return dict(out)

    def _load_orders(self, since: datetime | None) -> None:
        """Reload the recorded orders still open, and every order of the bar being re-decided."""
        assert self.records is not None
        records = [r for st in _OPEN for r in self.records.orders(status=st, account_id=self.account_id)]
        if since is not None:
            records += self.records.orders(account_id=self.account_id, start=since)
        for rec in records:
            if rec.client_order_id in self.orders:
                continue
            fills = {f.fill_id: f for f in self.records.fills(client_order_id=rec.client_order_id)}
            self.orders[rec.client_order_id] = ManagedOrder(
                rec.order, rec.status, fills=fills, venue_order_id=rec.venue_order_id, message=rec.message
            )

    # ------------------------------------------------------------------ reconciliation

    async def _reconcile(self, local_positions: Mapping[str, float] | None) -> Reconciliation:
        before = {cid: (m.status, set(m.fills)) for cid, m in self.orders.items()}
        cash = None if self.portfolio is None else self.portfolio.cash
        report = await reconcile(
            self.connector,
            self.orders,
            local_positions if local_positions is not None else {},
            cash,
            ts=self.connector.clock.now(),
        )
        # Record what changed: statuses and fills of orders the venue updated, and adopted orders.
        for cid, managed in self.orders.items():
            old = before.get(cid)
            if old is None or old[0] is not managed.status or set(managed.fills) != old[1]:
                self._record_result(managed, self._result_of(managed, report.ts))
        for fill in report.new_fills:
            self.health.fills += 1
            self.risk.on_fill(fill)
            self._audit(
                "execution.fill",
                {
                    "run_id": self.run_id,
                    "client_order_id": fill.client_order_id,
                    "fill_id": fill.fill_id,
                    "symbol": fill.symbol,
                    "side": fill.side,
                    "quantity": fill.quantity,
                    "price": fill.price,
                    "fee": fill.fee,
                    "ts": fill.ts,
                    "recovered_by": "reconciliation",
                },
            )
        if report.positions is not None and report.account is not None:
            self.portfolio = Portfolio(
                account_id=report.account.account_id,
                cash=report.account.cash,
                positions=report.positions,
                ts=report.ts,
            )
            self.risk.sync_portfolio(self.portfolio)
        self._since_reconcile = 0
        self.health.reconciliations += 1
        self.health.reconcile_differences += len(report.differences)
        if report.differences:
            logger.warning(
                "reconciliation found %d difference(s): %s",
                len(report.differences),
                "; ".join(
                    f"{d.kind} {d.symbol or d.client_order_id}: {d.resolution}" for d in report.differences
                ),
            )
        self._audit(
            "execution.reconcile",
            {
                "run_id": self.run_id,
                "initial": local_positions is None and not self.health.bars_processed,
                **report.payload(),
            },
        )
        return report

    @staticmethod
    def _result_of(managed: ManagedOrder, now: datetime) -> OrderResult:
        fills = tuple(managed.fills.values())
        ts = max([now, managed.order.ts, *(f.ts for f in fills)])
        return OrderResult(
            client_order_id=managed.client_order_id,
            venue_order_id=managed.venue_order_id,
            status=managed.status,
            filled_quantity=managed.filled_quantity,
            avg_fill_price=managed.avg_fill_price,
            fills=fills,
            message=managed.message,
            ts=ts,
        )

    def _local_positions(self) -> dict[str, float]:
        if self.portfolio is None:
            return {}
        return {s: p.quantity for s, p in self.portfolio.positions.items() if p.quantity != 0}

    def _recorded_positions(self) -> dict[str, float]:
        """Positions implied by the fills recorded for this account (the local view after a restart)."""
        if self.records is None:
            return {}
        out: dict[str, float] = defaultdict(float)
        for rec in self.records.orders(account_id=self.account_id):
            if rec.filled_quantity > 0:
                out[rec.order.symbol] += rec.order.side.sign * rec.filled_quantity
        return {s: q for s, q in out.items() if abs(q) > 1e-12}

    # ------------------------------------------------------------------ market data

    async def _load_history(self) -> None:
        now = self.connector.clock.now()
        span = self._tf * self.config.history_bars * 2 + timedelta(days=7)
        for symbol in self.symbols:
            frame = await self.connector.get_historical_data(symbol, self.config.timeframe, now - span, now)
            history = self._history[symbol]
            history.clear()
            for row in frame.tail(self.config.history_bars).itertuples(index=False):
                history.append(
                    Bar(
                        symbol=symbol,
                        ts=row.ts.to_pydatetime(),
                        open=row.open,
                        high=row.high,
                        low=row.low,
                        close=row.close,
                        volume=None if math.isnan(row.volume) else row.volume,
                        timeframe=self.config.timeframe,
                    )
                )

    def _latest_closed_ts(self) -> datetime | None:
        stamps = [h[-1].ts for h in self._history.values() if h]
        return max(stamps) if stamps else None

    def _frame(self, symbol: str) -> pd.DataFrame:
        bars = self._history[symbol]
        return pd.DataFrame(
            {
                "symbol": [b.symbol for b in bars],
                "ts": pd.to_datetime([b.ts for b in bars], utc=True),
                "open": [b.open for b in bars],
                "high": [b.high for b in bars],
                "low": [b.low for b in bars],
                "close": [b.close for b in bars],
                "volume": [math.nan if b.volume is None else b.volume for b in bars],
            },
            columns=list(BAR_COLUMNS),
        )

    def _closes(self) -> dict[str, float]:
        return {s: h[-1].close for s, h in self._history.items() if h}

    def _mark(self, closes: Mapping[str, float], ts: datetime) -> None:
        if self.portfolio is not None:
            positions = {
                s: (p.mark(closes[s]) if s in closes else p) for s, p in self.portfolio.positions.items()
            }
            self.portfolio = Portfolio(
                account_id=self.portfolio.account_id,
                cash=self.portfolio.cash,
                positions=positions,
                ts=max(ts, self.portfolio.ts),
            )
            self.risk.sync_portfolio(self.portfolio)
        self.risk.mark(closes, ts)

    async def _degrade_market_data(self, exc: Exception) -> None:
        self.health.degraded.add("market_data")
        now = self.connector.clock.now()
        self.health.last_degradation = f"{now.isoformat()} market_data: {exc}"
        logger.warning("market data failed (%s); using the last cached bars", exc)
        self._audit(
            "execution.degraded",
            {
                "run_id": self.run_id,
                "component": "market_data",
                "ts": now,
                "error": f"{type(exc).__name__}: {exc}",
                "using": "last cached bars",
                "cached": {s: h[-1].ts for s, h in self._history.items() if h},
            },
        )
        # Risk management goes on with the cached prices: fills are booked, exits still checked.
        if self.orders:
            await self._poll_open_orders()
        self._mark(self._closes(), now)
        await self._send_exits(now, defaultdict(int))

    async def _send_exits(self, decided_at: datetime, seq: dict[str, int]) -> list[ManagedOrder]:
        # The risk manager's stop-loss / take-profit exits, under our deterministic ids so a refused or
        # rejected exit is recognised by the manager and issued again; a symbol with an order already
        # working is left for the next bar.
        busy = {o.order.symbol for o in self.orders.values() if o.is_open}
        exits = self.risk.protective_orders(lambda sym: self._next_cid(decided_at, sym, seq), exclude=busy)
        sent = []
        for order in exits:
            keyed = Order(**{**order.model_dump(), "ts": decided_at})
            sent.append(await self._send(keyed, kind="protective", target=0.0, signal_id=None))
        return sent

    # ------------------------------------------------------------------ audit

    def _audit(self, action: str, payload: Mapping[str, Any]) -> Any:
        if self.records is None:
            return None
        return self.records.append_audit(self.actor, action, payload)
