"""Request and response models of the API; every route declares its response model so the OpenAPI is exact.

Request models forbid unknown fields and validate ranges, so bad input is a 422 with a message naming the
field, what was expected and what was received.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

from alphaloom.core.exceptions import did_you_mean
from alphaloom.risk import RiskLimits

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

#: The characters of :data:`alphaloom.core.types.Symbol` (what orders and the store accept).
SYMBOL_PATTERN = r"^[A-Za-z0-9._/\-^:]+$"
SymbolStr = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=SYMBOL_PATTERN)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """Every error: what was wrong and how to fix it."""

    detail: str = Field(examples=["no credentials: send an `X-API-Key: <key>` header ..."])


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class Dependencies(BaseModel):
    store: str = Field(description="'ok' or what is wrong with the workspace store.")
    redis: str = Field(
        description="'ok', 'disabled' (no redis_url) or 'down: <why>; ...' (in-process cache)."
    )
    registry: str = Field(description="The served model, and why it is a fallback if it is one.")
    connectors: dict[str, str] = Field(description="Circuit breaker state per connector.")
    trading: str = Field(description="The paper session: 'running', 'finished', 'off' or its error.")


class ReadyOut(BaseModel):
    ready: bool = Field(description="Whether the service can answer: store, model and session are up.")
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="'degraded': serving, with a fallback somewhere (a baseline model, the in-process "
        "cache, the trend rule); `degraded` says which and why."
    )
    degraded: list[str] = Field(description="Each fallback in use, and why.")
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
    source: Literal["cnn_lstm", "persistence_baseline"] = Field(
        description="The CNN+LSTM, or the persistence baseline served while it cannot be loaded (/readyz "
        "says why)."
    )
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
    fallback: str | None = Field(
        default=None,
        description="Why the fallback source decided (null when the primary RL ensemble did).",
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
    """A market order (no ``limit_price``) or a limit order (``limit_price`` required).

    The pairing is in the JSON schema too (``if``/``then``/``else`` on ``order_type``), so generated clients
    and fuzzers know it.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"order_type": {"const": "limit"}}, "required": ["order_type"]},
            "then": {"required": ["limit_price"], "properties": {"limit_price": {"type": "number"}}},
            "else": {"properties": {"limit_price": {"type": "null"}}},
        }
    )

    symbol: SymbolStr = Field(examples=["SPY"])
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0, le=1e12, allow_inf_nan=False, examples=[10])
    order_type: Literal["market", "limit"] = "market"
    limit_price: float | None = Field(default=None, gt=0, le=1e12, allow_inf_nan=False)

    @model_validator(mode="after")
    def _price_matches_type(self) -> OrderRequest:
        if self.order_type == "limit" and self.limit_price is None:
            raise ValueError("a limit order needs a limit_price (> 0)")
        if self.order_type == "market" and self.limit_price is not None:
            raise ValueError(
                f"a market order takes no limit_price (got {self.limit_price}); "
                "send order_type 'limit' to set a price"
            )
        return self


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


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # a limit left out is unchanged, not reset


class _LimitsUpdateBase(_In):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    @model_validator(mode="before")
    @classmethod
    def _known_and_not_empty(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if not data:
                raise ValueError(
                    'no limits given; send e.g. {"max_leverage": 1.5}. GET /api/v1/risk lists them'
                )
            unknown = [str(k) for k in data if k not in cls.model_fields]
            if unknown:
                raise ValueError(
                    f"unknown limit {unknown[0]!r}.{did_you_mean(unknown[0], cls.model_fields)} "
                    f"Limits: {', '.join(cls.model_fields)}"
                )
        return data


#: Only the limits to change, each with :class:`alphaloom.risk.RiskLimits`' own type and range (so the
#: schema lists them exactly); cross-field rules (halt above reduce, ...) are checked on the merged limits.
RiskLimitsUpdate: type[_LimitsUpdateBase] = create_model(  # type: ignore[call-overload]
    "RiskLimitsUpdate",
    __base__=_LimitsUpdateBase,
    __doc__="Only the limits to change; the others keep their values. See `GET /api/v1/risk`.",
    **{
        name: (
            # the field's own constraints (gt=0, ...) travel in its metadata
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation,
            Field(default=None, description=info.description, json_schema_extra=_no_default),
        )
        for name, info in RiskLimits.model_fields.items()
    },
)


class ReasonRequest(_In):
    reason: Annotated[
        str,
        StringConstraints(min_length=3, max_length=500, pattern=r"\S[\s\S]*\S[\s\S]*\S"),
        Field(description="Why, for the audit log: at least 3 characters that are not spaces."),
    ]


class AuditVerifyOut(BaseModel):
    ok: bool
    records: int
    head_hash: str
    problems: list[str]
