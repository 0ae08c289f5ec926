"""WebSocket streams of live signals, fills and risk-state changes.

Authenticate with ``?token=<token>`` (or ``?api_key=``) in the URL, or send ``{"token": "..."}`` (or
``{"api_key": "..."}``) as the first message within 10 seconds. The server answers ``{"type": "hello",
"data": {"stream", "name", "role"}}`` and then one ``{"type", "data"}`` message per event; the ``risk``
stream also starts with the current state. A bad credential closes the socket with code 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from alphaloom.service.auth import Principal

router = APIRouter(tags=["streams"])
_AUTH_TIMEOUT_S = 10.0


async def _authenticate(ws: WebSocket) -> Principal | None:
    services = ws.app.state.services
    token = ws.query_params.get("token")
    key = ws.query_params.get("api_key")
    if not token and not key:
        try:
            first = json.loads(await asyncio.wait_for(ws.receive_text(), _AUTH_TIMEOUT_S))
            token, key = first.get("token"), first.get("api_key")
        except (TimeoutError, ValueError, AttributeError, WebSocketDisconnect):
            return None
    if isinstance(key, str) and key:
        return services.keys.verify(key)
    if isinstance(token, str) and token:
        principal, _ = services.tokens.verify(token)
        if principal is not None and services.keys.active(principal.key_id):
            return principal
    return None


async def _stream(ws: WebSocket, topic: str) -> None:
    await ws.accept()
    principal = await _authenticate(ws)
    if principal is None:
        await ws.send_json(
            {
                "type": "error",
                "data": {
                    "detail": "authenticate with ?token=<token> or a first "
                    'message {"token": "..."}; get a token from POST /api/v1/auth/token.'
                },
            }
        )
        await ws.close(code=1008)
        return
    hub = ws.app.state.services.hub
    with hub.subscribe(topic) as sub:
        await ws.send_json(
            {"type": "hello", "data": {"stream": topic, "name": principal.name, "role": principal.role.value}}
        )
        session = ws.app.state.services.session
        if topic == "risk" and session is not None:
            await ws.send_json({"type": "risk", "data": {**session.risk_view(), "why": "current state"}})
        reader = asyncio.ensure_future(_drain(ws))
        try:
            while True:
                getter = asyncio.ensure_future(sub.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    getter.cancel()
                    return
                text = getter.result()
                if text is None:  # too slow: dropped by the hub
                    await ws.close(code=1013)
                    return
                await ws.send_text(text)  # encoded once by the hub for every client
        except WebSocketDisconnect:
            return
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) client messages until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()


@router.websocket("/ws/signals")
async def ws_signals(ws: WebSocket) -> None:
    await _stream(ws, "signals")


@router.websocket("/ws/fills")
async def ws_fills(ws: WebSocket) -> None:
    await _stream(ws, "fills")


@router.websocket("/ws/risk")
async def ws_risk(ws: WebSocket) -> None:
    await _stream(ws, "risk")
