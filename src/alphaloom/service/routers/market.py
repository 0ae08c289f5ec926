"""Market data and features from the workspace store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request

from alphaloom.core.exceptions import (
    ConfigError,
    DataNotFoundError,
    EmptyRangeError,
    UnknownSymbolError,
    did_you_mean,
)
from alphaloom.service.routers._common import Viewer, errors, services
from alphaloom.service.schemas import SYMBOL_PATTERN, Bar, FeatureRows

router = APIRouter(tags=["market"])

SymbolQuery = Annotated[str, Query(min_length=1, max_length=32, pattern=SYMBOL_PATTERN, examples=["SPY"])]


def _known(store, symbol: str) -> None:
    symbols = store.symbols()
    if symbol not in symbols:
        raise UnknownSymbolError(
            f"{symbol!r} is not in the store.{did_you_mean(symbol, symbols)} Symbols: {', '.join(symbols)}."
        )


@router.get(
    "/market/symbols", response_model=list[str], summary="Symbols in the store.", responses=errors(503)
)
async def symbols(request: Request, _: Viewer) -> list[str]:
    return list(services(request).need("store").symbols())


@router.get(
    "/market/bars",
    response_model=list[Bar],
    summary="Stored bars of one symbol, oldest first (the latest `limit` in [start, end)).",
    responses=errors(404, 503),
)
async def bars(
    request: Request,
    _: Viewer,
    symbol: SymbolQuery,
    start: datetime | None = Query(None, description="Inclusive start, ISO 8601 with a timezone."),
    end: datetime | None = Query(None, description="Exclusive end, ISO 8601 with a timezone."),
    limit: int = Query(500, ge=1, le=10_000),
) -> list[Bar]:
    store = services(request).need("store")
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise ConfigError(
                f"{name} must carry a timezone, e.g. 2024-01-02T00:00:00Z; got {value.isoformat()}."
            )
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"start ({start.isoformat()}) must be before end ({end.isoformat()}).")
    _known(store, symbol)
    try:
        frame = store.read_bars([symbol], start, end).tail(limit)
    except EmptyRangeError as exc:  # a valid question with no bars in the range: 404 with what there is
        raise DataNotFoundError(str(exc)) from exc
    cols = ["symbol", "ts", "open", "high", "low", "close", "volume"]
    return [Bar.model_validate(r) for r in frame[cols].to_dict(orient="records")]


@router.get(
    "/features",
    response_model=FeatureRows,
    summary="The latest stored feature rows of one symbol.",
    responses=errors(404, 503),
)
async def features(
    request: Request, _: Viewer, symbol: SymbolQuery, limit: int = Query(50, ge=1, le=5000)
) -> FeatureRows:
    from alphaloom.jobs.stages import FEATURES_TABLE

    store = services(request).need("store")
    _known(store, symbol)
    if not store.has_frame(FEATURES_TABLE):
        raise UnknownSymbolError(
            f"no features stored; run `alphaloom features --data-dir {services(request).ws.root}`."
        )
    frame = store.read_frame(FEATURES_TABLE, [symbol])
    if frame.empty:
        raise UnknownSymbolError(f"no features stored for {symbol!r}; run `alphaloom features` with it.")
    frame = frame.sort_values("ts").tail(limit)
    columns = [c for c in frame.columns if c not in ("symbol", "ts")]
    values = frame[columns].to_numpy(dtype=np.float64)
    rows = []
    for ts, row in zip(frame["ts"], values, strict=True):
        rows.append(
            {
                "ts": ts.isoformat(),
                **{c: (float(v) if np.isfinite(v) else None) for c, v in zip(columns, row, strict=True)},
            }
        )
    return FeatureRows(symbol=symbol, columns=columns, rows=rows)
