"""Request and response models of the API; every route declares its response model so the OpenAPI is exact.

Request models forbid unknown fields and validate ranges, so bad input is a 422 with a message naming the
field, what was expected and what was received.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "ABStatus",
    "AuditVerifyOut",
    "BacktestJob",
    "BacktestRequest",
    "Bar",
    "BatchPredictRequest",
    "ErrorOut",
    "FeatureRows",
    "HealthOut",
    "MeOut",
    "ModelDetail",
    "ModelVersionOut",
    "OrderOut",
    "OrderRefusedOut",
    "OrderRequest",
    "PortfolioOut",
    "PositionOut",
    "PredictRequest",
    "PredictionOut",
    "ReadyOut",
    "ReasonRequest",
    "RiskLimitsUpdate",
    "RiskOut",
    "SignalOut",
    "TokenOut",
]

SymbolStr = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._\-/=^]+$"),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """Every error: what was wrong and how to fix it."""

    detail: str = Field(examples=["no credentials: send an `X-API-Key: <key>` header ..."])


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class Dependencies(BaseModel):
    store: str = Field(description="'ok' or what is wrong with the workspace store.")
    redis: str = Field(description="'ok', 'disabled' (no redis_url) or 'unavailable: ...'.")
    registry: str = Field(description="The served model, and why it is a fallback if it is one.")
    connectors: dict[str, str] = Field(description="Circuit breaker state per connector.")
    trading: str = Field(description="The paper session: 'running', 'finished', 'off' or its error.")


class ReadyOut(BaseModel):
    ready: bool
    dependencies: Dependencies


class TokenOut(BaseModel):
    token: str
    expires_at: datetime
    role: Literal["viewer", "trader", "admin"]


class MeOut(BaseModel):
    name: str
    role: Literal["viewer", "trader", "admin"]


class Bar(BaseModel):
    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class FeatureRows(BaseModel):
    symbol: str
    columns: list[str]
    rows: list[dict[str, Any]] = Field(description="One object per bar: ts and each feature (null for NaN).")


class PredictRequest(_In):
    symbol: SymbolStr = Field(examples=["SPY"])


class BatchPredictRequest(_In):
    symbols: list[SymbolStr] = Field(min_length=1, max_length=256, examples=[["SPY", "BTCUSD"]])


class PredictionOut(BaseModel):
    symbol: str
    ts: datetime = Field(description="The bar whose feature window ends the model input.")
    p_down: float = Field(ge=0, le=1)
    p_flat: float = Field(ge=0, le=1)
    p_up: float = Field(ge=0, le=1)
    pred_return: float = Field(description="Forecast forward log return over the model's horizon.")
    model_version: str
    cached: bool


class Vote(BaseModel):
    agent: str
    position_size: float | None = Field(
        description="The agent's proposed target exposure (null if it failed)."
    )
    weight: float


class SignalOut(BaseModel):
    symbol: str
    action: Literal["BUY", "SELL", "HOLD"]
    confidence: float
    position_size: float
    target_price: float | None = None
    stop_loss: float | None = None
    ts: datetime
    model_version: str
    source: str = Field(
        description="The signal source that decided (rl_ensemble, or the fallback trend rule)."
    )
    input_hash: str
    votes: list[Vote]


class EquityPoint(BaseModel):
    ts: datetime
    equity: float


class PortfolioOut(BaseModel):
    equity: list[EquityPoint]
    cash: float
    total_value: float
    pnl: float = Field(description="total_value minus the initial cash, account currency.")
    gross_exposure: float
    net_exposure: float
    risk_state: Literal["normal", "reducing", "halted"]


class PositionOut(BaseModel):
    symbol: str
    quantity: float
    avg_cost: float
    current_price: float
    market_value: float
    realized_pnl: float


OrderStatusLit = Literal["new", "accepted", "partially_filled", "filled", "cancelled", "rejected"]


class OrderRequest(_In):
    symbol: SymbolStr = Field(examples=["SPY"])
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0, le=1e12, allow_inf_nan=False, examples=[10])
    order_type: Literal["market", "limit"] = "market"
    limit_price: float | None = Field(default=None, gt=0, le=1e12, allow_inf_nan=False)


class OrderOut(BaseModel):
    client_order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    order_type: str
    limit_price: float | None
    status: OrderStatusLit
    filled_quantity: float
    avg_fill_price: float | None
    message: str
    ts: datetime


class OrderRefusedOut(BaseModel):
    detail: str
    reasons: list[str]
    order: OrderOut


class BacktestRequest(_In):
    symbols: list[SymbolStr] | None = Field(
        default=None, min_length=1, max_length=32, description="Default: the run's symbols."
    )
    strategy: Literal["all", "buy_and_hold", "ppo", "sac", "td3", "rainbow", "ensemble"] = "all"


class BacktestJob(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    symbols: list[str] = []
    strategy: str = "all"
    created_at: datetime | None = None
    finished_at: datetime | None = None
    stats: list[dict[str, Any]] | None = None
    error: str | None = None


class ModelVersionOut(BaseModel):
    name: str
    version: int
    kind: str
    stage: str
    metrics: dict[str, float | None]
    lineage: dict[str, Any]
    created_at: datetime
    aliases: list[str]
    serving: bool = Field(description="Whether the API's predictions come from this version.")


class ModelDetail(BaseModel):
    name: str
    champion: int | None
    versions: list[ModelVersionOut]


class ABStatus(BaseModel):
    available: bool
    champion: str | None = None
    challenger: str | None = None
    decision: str | None = None
    summary: list[dict[str, Any]] = []
    detail: str = ""


class RiskOut(BaseModel):
    state: Literal["normal", "reducing", "halted"]
    limits: dict[str, Any]
    halt_reasons: list[str]
    measures: dict[str, Any]


class RiskLimitsUpdate(_In):
    """Only the limits to change; each is validated by :class:`alphaloom.risk.RiskLimits`."""

    model_config = ConfigDict(extra="allow")


class ReasonRequest(_In):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


class AuditVerifyOut(BaseModel):
    ok: bool
    records: int
    head_hash: str
    problems: list[str]
