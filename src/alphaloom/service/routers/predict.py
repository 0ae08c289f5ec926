"""CNN+LSTM predictions: one symbol (micro-batched with concurrent requests) or many in one pass."""

from __future__ import annotations

from fastapi import APIRouter, Request

from alphaloom.service.routers._common import Viewer, errors, services
from alphaloom.service.schemas import BatchPredictRequest, PredictionOut, PredictRequest

router = APIRouter(tags=["predictions"])


@router.post(
    "/predict",
    response_model=PredictionOut,
    summary="Forecast one symbol at its latest complete feature window.",
    responses=errors(400, 404, 503),
)
async def predict(request: Request, body: PredictRequest, _: Viewer) -> PredictionOut:
    out = await services(request).need("inference").predict(body.symbol)
    return PredictionOut.model_validate(out)


@router.post(
    "/predict/batch",
    response_model=list[PredictionOut],
    summary="Forecast many symbols in one forward pass (cache hits answered without it).",
    responses=errors(400, 404, 503),
)
async def predict_batch(request: Request, body: BatchPredictRequest, _: Viewer) -> list[PredictionOut]:
    out = await services(request).need("inference").predict_batch(body.symbols)
    return [PredictionOut.model_validate(o) for o in out]
