"""The service's trading session: the risk manager, a paper exchange replaying the stored bars, the engine.

The session mirrors ``alphaloom trade --paper`` (same risk limits from the run's ``[risk]``, same signal
sources: the trained RL ensemble, else the trend rule, recorded as degraded) but runs inside the API process,
in memory (no journal, no checkpoint: a restarted service starts a new session), so the API's orders,
positions, fills, equity and kill switch are live. Orders and the audit trail go to the workspace's
relational store like every other run's.

A background task replays one bar every ``replay_interval_s`` seconds. Each bar's signals (with each agent's
proposal and weight), fills and trading-state changes are published on the :class:`~alphaloom.service.ws.Hub`.
API orders go through the same path as the engine's own: recorded, audited, ``RiskManager.submit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from alphaloom.core.exceptions import ConfigError, ConnectorError, DataNotFoundError, EmptyRangeError
from alphaloom.core.types import Order, OrderStatus, OrderType, Side, new_client_order_id
from alphaloom.execution import MemoryEngineCheckpoint, TradingEngine, TrendRule
from alphaloom.execution.orders import ManagedOrder
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace
from alphaloom.risk import RiskLimits
from alphaloom.risk.manager import Actor, RiskManager, TradingState
from alphaloom.service.ws import Hub

__all__ = ["OrderRefused", "TradingSession", "order_view"]

logger = logging.getLogger(__name__)
_EQUITY_POINTS = 5000


class OrderRefused(Exception):
    """The risk manager or the venue refused an API order; ``reasons`` say why."""

    def __init__(self, order: ManagedOrder, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.order = order
        self.reasons = reasons


def _reasons(message: str) -> list[str]:
    # "refused by the risk manager: order X (...) refused by the risk manager: r1 | r2" -> [r1, r2]
    text = message.rsplit("refused by the risk manager: ", 1)[-1]
    return [r.strip() for r in text.split(" | ") if r.strip()]


class TradingSession:
    """See the module docstring.

    Parameters
    ----------
    ws, config
        The workspace and its run settings (symbols, ``[risk]``, ``[trade]``, costs).
    store
        The open bar store.
    hub
        Where events are published.
    replay_interval_s
        Wall seconds between replayed bars.
    replay_bars
        Bar times to replay (``config.trade.bars`` when ``None``).
    trade
        ``False``: no exchange or engine (the risk manager and its controls still work; orders get a 503).
    forecaster_problem
        Why the CNN+LSTM could not be loaded ('' when it was): the RL ensemble, whose observations are the
        CNN+LSTM's forecasts, is then not used and the session trades the trend rule, saying why in
        ``degraded`` and in each signal's ``fallback``.
    """

    def __init__(
        self,
        ws: Workspace,
        config: RunConfig,
        store: Any,
        hub: Hub,
        *,
        replay_interval_s: float = 1.0,
        replay_bars: int | None = None,
        trade: bool = True,
        forecaster_problem: str = "",
    ) -> None:
        from alphaloom.data.storage.relational import DuckDBRelationalStore

        self.ws = ws
        self.config = config
        self.hub = hub
        self.replay_interval_s = replay_interval_s
        self.records = DuckDBRelationalStore(ws.store_path)
        self.symbols = list(config.symbols)
        self.equity: deque[tuple[datetime, float]] = deque(maxlen=_EQUITY_POINTS)
        self.signals: dict[str, dict[str, Any]] = {}
        self.degraded: list[str] = []
        self.fallback_reason = ""
        self.exchange: Any = None
        self.engine: TradingEngine | None = None
        self.finished = False
        self.error = ""
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._state = TradingState.NORMAL
        self._initial_cash = float(config.initial_cash)
        classes = self._asset_classes(store)
        if not trade:
            self.risk = RiskManager(config.risk, audit=self.records, instruments=classes)
            return
        from alphaloom.data.connectors.paper import PaperConfig, PaperExchange

        fallback = TrendRule(config.trade.fallback)
        n_bars = replay_bars or config.trade.bars
        start = self._window_start(store, n_bars, fallback.lookback)
        run_id = (
            "api-"
            + hashlib.sha256(
                json.dumps(
                    {"symbols": self.symbols, "start": start.isoformat(), "t": datetime.now(UTC).isoformat()}
                ).encode()
            ).hexdigest()[:10]
        )
        self.run_id = run_id
        self.exchange = PaperExchange(
            PaperConfig(
                symbols=tuple(self.symbols),
                start=start,
                speed=0,
                initial_cash=config.initial_cash,
                account_id=f"paper-{run_id}",
            ),
            store=store,
            fees=config.costs,
        )
        self.risk = RiskManager(
            config.risk, audit=self.records, clock=self.exchange.clock, instruments=classes
        )
        if forecaster_problem:
            primary, why = None, f"{forecaster_problem}; the ensemble's agents read its forecasts"
        else:
            primary, why = self._primary(start)
        if primary is None:
            self.fallback_reason = f"no RL ensemble ({why}); trading the fallback trend rule"
            self.degraded.append(f"signals: {self.fallback_reason}")
        self.engine = TradingEngine(
            config.trade.engine,
            connector=self.exchange,
            risk=self.risk,
            primary=primary if primary is not None else fallback,
            fallback=fallback,
            symbols=self.symbols,
            run_id=run_id,
            records=self.records,
            checkpoint=MemoryEngineCheckpoint(),
            asset_classes=classes,
        )
        if primary is None:
            self.engine.health.degraded.add("model:primary_unavailable")

    # ------------------------------------------------------------------ set-up helpers

    def _asset_classes(self, store: Any) -> dict[str, Any]:
        from alphaloom.data.instruments import SAMPLE_INSTRUMENTS

        known = {**SAMPLE_INSTRUMENTS, **store.instruments()}
        return {s: known[s].asset_class for s in self.symbols if s in known}

    def _window_start(self, store: Any, n_bars: int, lookback: int) -> datetime:
        bars = store.read_bars(self.symbols)
        stamps = np.unique(bars["ts"].to_numpy(dtype="datetime64[ns]"))
        if len(stamps) < lookback + 2:
            raise EmptyRangeError(
                f"the store holds {len(stamps)} bar times for {', '.join(self.symbols)}; the paper session "
                f"needs at least {lookback + 2}. Ingest more data or start the service with --no-trade-paper."
            )
        n = min(n_bars, len(stamps) - lookback)
        return pd.Timestamp(stamps[-n], tz="UTC").to_pydatetime()

    def _primary(self, start: datetime) -> tuple[Any, str]:
        from alphaloom.jobs import stages
        from alphaloom.jobs.trade import RLEnsembleSource
        from alphaloom.rl import EnsembleConfig

        try:
            observations = stages.load_observations(self.ws, self.config)
            agents = stages.load_agents(self.ws)
        except (DataNotFoundError, EmptyRangeError, ConfigError) as exc:
            return None, str(exc)
        cfg = self.config
        ens = EnsembleConfig(
            method=cfg.ensemble_method,
            window=cfg.ensemble_window,
            confidence_threshold=cfg.ensemble_confidence,
            seed=cfg.seed,
        )
        return RLEnsembleSource(observations, agents, ens, start), ""

    # ------------------------------------------------------------------ lifecycle

    @property
    def trading(self) -> bool:
        return self.engine is not None

    async def start(self) -> None:
        """Start the engine (reconcile, load history) and the replay task."""
        if self.engine is None:
            self._publish_risk("session started without trading")
            return
        async with self._lock:
            await self.engine.start()
            self._mark_equity()
        self._state = self.risk.state
        self._task = asyncio.get_running_loop().create_task(self._replay(), name="alphaloom-paper-replay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.exchange is not None:
            try:
                await self.exchange.aclose()
            except ConnectorError as exc:
                logger.warning("closing the paper exchange: %s", exc)
        self.records.close()

    async def _replay(self) -> None:
        assert self.engine is not None
        assert self.exchange is not None
        try:
            while True:
                await asyncio.sleep(self.replay_interval_s)
                if not await self.step():
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the API stays up; /readyz and /risk say the session stopped and why
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("the paper session stopped")

    async def step(self) -> bool:
        """Replay one bar time through the engine; ``False`` when the replay has ended."""
        assert self.engine is not None
        assert self.exchange is not None
        async with self._lock:
            bars = self.exchange.step()
            if bars is None:
                self.finished = True
                return False
            bars = [b for b in bars if b.symbol in self.symbols]
            if not bars:
                return True
            report = await self.engine.on_bars(bars)
            self._mark_equity()
        for decision in report.signals:
            self._publish_signal(decision)
        for fill in report.fills:
            self.hub.publish("fills", _jsonable(fill.model_dump(mode="json")))
        for managed in report.orders:
            for fill in managed.fills.values():
                if fill.ts >= report.ts:
                    self.hub.publish("fills", _jsonable(fill.model_dump(mode="json")))
        if self.risk.state != self._state:
            self._publish_risk(f"state changed at {report.ts.isoformat()}")
        return True

    def _mark_equity(self) -> None:
        portfolio = self.engine.portfolio if self.engine is not None else None
        if portfolio is not None:
            self.equity.append((portfolio.ts, float(portfolio.total_value)))

    def _publish_signal(self, decision: Any) -> None:
        sig = decision.signal
        votes: list[dict[str, Any]] = []
        primary = self.engine.primary if self.engine is not None else None
        ensemble = (
            getattr(primary, "_ensembles", {}).get(sig.symbol)
            if decision.source == getattr(primary, "name", None)
            else None
        )
        if ensemble is not None and ensemble.steps_:
            step = ensemble.steps_[-1]
            for name, proposal, weight in zip(ensemble.names_, step.proposals, step.weights, strict=True):
                votes.append(
                    {
                        "agent": name,
                        "position_size": None if not np.isfinite(proposal[0]) else float(proposal[0]),
                        "weight": float(weight),
                    }
                )
        fallback = None
        backup = self.engine.fallback if self.engine is not None else None
        if backup is not None and decision.source == backup.name:
            fallback = self.fallback_reason or (
                f"the primary signal source failed for {sig.symbol} at this bar "
                f"({self.engine.health.last_degradation or 'see the logs'})"
            )
        data = {
            **_jsonable(sig.model_dump(mode="json")),
            "source": decision.source,
            "fallback": fallback,
            "input_hash": decision.input_hash,
            "votes": votes,
        }
        self.signals[sig.symbol] = data
        self.hub.publish("signals", data)

    def _publish_risk(self, why: str) -> None:
        self._state = self.risk.state
        self.hub.publish("risk", {**self.risk_view(), "why": why})

    # ------------------------------------------------------------------ views

    def risk_view(self) -> dict[str, Any]:
        try:
            measures: dict[str, Any] = self.risk.measures()._asdict()
        except Exception as exc:  # no prices yet for a position: say so instead of failing the view
            measures = {"unavailable": str(exc)}
        return {
            "state": self.risk.state.value,
            "limits": self.risk.limits.model_dump(mode="json"),
            "halt_reasons": list(self.risk.halt_reasons),
            "measures": _jsonable(measures),
        }

    def portfolio_view(self) -> dict[str, Any]:
        portfolio = self.engine.portfolio if self.engine is not None else None
        cash = float(portfolio.cash) if portfolio is not None else float(self.risk.cash or self._initial_cash)
        total = float(portfolio.total_value) if portfolio is not None else cash
        net = (
            float(sum(p.market_value for p in portfolio.positions.values())) if portfolio is not None else 0.0
        )
        return {
            "equity": [{"ts": ts.isoformat(), "equity": v} for ts, v in self.equity],
            "cash": cash,
            "total_value": total,
            "pnl": total - self._initial_cash,
            "gross_exposure": float(portfolio.gross_exposure) if portfolio is not None else 0.0,
            "net_exposure": net,
            "risk_state": self.risk.state.value,
        }

    def positions_view(self) -> list[dict[str, Any]]:
        portfolio = self.engine.portfolio if self.engine is not None else None
        if portfolio is None:
            return []
        return [
            {
                "symbol": p.symbol,
                "quantity": float(p.quantity),
                "avg_cost": float(p.avg_cost),
                "current_price": float(p.current_price),
                "market_value": float(p.market_value),
                "realized_pnl": float(p.realized_pnl),
            }
            for p in sorted(portfolio.positions.values(), key=lambda p: p.symbol)
            if p.quantity != 0
        ]

    def orders_view(self, status: OrderStatus | None = None) -> list[dict[str, Any]]:
        if self.engine is None:
            return []
        out = [order_view(m) for m in self.engine.orders.values() if status is None or m.status is status]
        return sorted(out, key=lambda o: (o["ts"], o["client_order_id"]))

    # ------------------------------------------------------------------ control

    def _require_trading(self) -> TradingEngine:
        if self.engine is None:
            raise ConfigError(
                "paper trading is off in this service (started with --no-trade-paper); restart it with "
                "--trade-paper to submit orders."
            )
        return self.engine

    async def submit(
        self,
        *,
        symbol: str,
        side: Side,
        quantity: float,
        order_type: OrderType,
        limit_price: float | None,
        actor: str,
    ) -> dict[str, Any]:
        """Send an order through the engine's path (record, audit, risk manager, venue).

        Raises
        ------
        OrderRefused
            The risk manager or the venue refused it (the refusal is recorded).
        """
        engine = self._require_trading()
        async with self._lock:
            order = Order(
                symbol=symbol,
                side=side,
                quantity=quantity,
                order_type=order_type,
                limit_price=limit_price,
                client_order_id=new_client_order_id(),
                ts=self.exchange.clock.now(),
            )
            engine._audit("api.order", {"actor": actor, "client_order_id": order.client_order_id})
            # The engine's own send path: the order is recorded and audited before RiskManager.submit.
            held = self.risk.positions.get(symbol, 0.0)
            managed = await engine._send(
                order, kind="api", target=held + order.signed_quantity, signal_id=None
            )
        for fill in managed.fills.values():
            self.hub.publish("fills", _jsonable(fill.model_dump(mode="json")))
        if managed.status is OrderStatus.REJECTED:
            raise OrderRefused(managed, _reasons(managed.message) or [managed.message])
        return order_view(managed)

    async def cancel(self, client_order_id: str, actor: str) -> dict[str, Any]:
        engine = self._require_trading()
        async with self._lock:
            managed = engine.orders.get(client_order_id)
            if managed is None:
                raise DataNotFoundError(
                    f"no order {client_order_id!r} in this session; GET /api/v1/orders lists them."
                )
            if not managed.is_open:
                raise OrderRefused(
                    managed, [f"order {client_order_id} is {managed.status.value}; only open orders cancel"]
                )
            result = await self.exchange.cancel_order(client_order_id)
            engine._audit("api.cancel", {"actor": actor, "client_order_id": client_order_id})
            engine._book(managed, result)
        return order_view(engine.orders[client_order_id])

    def kill(self, actor: Actor, reason: str) -> dict[str, Any]:
        self.risk.kill_switch(actor, reason)
        self._publish_risk(f"kill switch by {actor.name}: {reason}")
        return self.risk_view()

    def resume(self, actor: Actor, reason: str) -> dict[str, Any]:
        self.risk.resume(actor, reason)
        self._publish_risk(f"resumed by {actor.name}: {reason}")
        return self.risk_view()

    def set_limits(self, changes: dict[str, Any], actor: Actor) -> dict[str, Any]:
        merged = {**self.risk.limits.model_dump(), **changes}
        limits = RiskLimits.from_dict(merged, source="PUT /api/v1/risk/limits")
        self.risk.set_limits(limits, actor)
        self._publish_risk(f"limits changed by {actor.name}")
        return self.risk_view()


def order_view(m: ManagedOrder) -> dict[str, Any]:
    o = m.order
    return {
        "client_order_id": o.client_order_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "quantity": float(o.quantity),
        "order_type": o.order_type.value,
        "limit_price": o.limit_price,
        "status": m.status.value,
        "filled_quantity": float(m.filled_quantity),
        "avg_fill_price": m.avg_fill_price,
        "message": m.message,
        "ts": o.ts.isoformat(),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value
