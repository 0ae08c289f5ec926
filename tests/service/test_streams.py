"""WebSocket streams: authentication, the live signals of the paper session, and the hub's fan-out rules."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from alphaloom.service.app import API_PREFIX
from alphaloom.service.ws import Hub


def test_signals_stream_sends_hello_then_live_signals(client: TestClient, keys) -> None:
    with client.websocket_connect(f"{API_PREFIX}/ws/signals?api_key={keys['viewer']}") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello"
        assert hello["data"] == {"stream": "signals", "name": "test-viewer", "role": "viewer"}
        msg = ws.receive_json()  # the session replays a bar every 0.02 s
        assert msg["type"] == "signals"
        assert abs(time.time() - msg["sent_at"]) < 60
        signal = msg["data"]
        assert signal["action"] in ("BUY", "SELL", "HOLD")
        assert {"symbol", "confidence", "position_size", "source", "fallback", "votes", "ts"} <= set(signal)
        assert (signal["fallback"] is None) == (signal["source"] == "rl_ensemble")


def test_token_in_the_first_message_authenticates(client: TestClient, headers) -> None:
    token = client.post(f"{API_PREFIX}/auth/token", headers=headers["admin"]).json()["token"]
    with client.websocket_connect(f"{API_PREFIX}/ws/risk") as ws:
        ws.send_text(json.dumps({"token": token}))
        assert ws.receive_json()["data"]["role"] == "admin"
        current = ws.receive_json()  # the risk stream starts with the current state
        assert current["type"] == "risk"
        assert current["data"]["why"] == "current state"
        assert current["data"]["state"] in ("normal", "reducing", "halted")


@pytest.mark.parametrize("query", ["?api_key=alk_000000000000_" + "A" * 43, "?token=alt.x.y"])
def test_bad_credentials_close_with_1008(client: TestClient, query: str) -> None:
    with client.websocket_connect(f"{API_PREFIX}/ws/fills{query}") as ws:
        error = ws.receive_json()
        assert error["type"] == "error"
        assert "POST /api/v1/auth/token" in error["data"]["detail"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1008


def test_hub_encodes_once_and_drops_only_the_slow_client() -> None:
    async def scenario() -> None:
        hub = Hub(max_queue=3)
        with hub.subscribe("signals") as fast, hub.subscribe("signals") as slow:
            assert hub.publish("signals", {"i": 0}) == 2
            a, b = fast.queue.get_nowait(), slow.queue.get_nowait()
            assert a is b  # one encoding for every client
            assert json.loads(a)["data"] == {"i": 0}
            for i in (1, 2, 3):  # slow stops reading: its queue fills up
                assert hub.publish("signals", {"i": i}) == 2
                assert json.loads(fast.queue.get_nowait())["data"] == {"i": i}
            assert hub.publish("signals", {"i": 4}) == 1  # slow is full: dropped, fast still served
            assert slow.overflowed
            assert hub.dropped_clients == 1
            assert [slow.queue.get_nowait() for _ in range(slow.queue.qsize())][-1] is None  # end marker
            assert hub.publish("signals", {"i": 5}) == 1  # a dropped client gets nothing more
            assert [json.loads(fast.queue.get_nowait())["data"]["i"] for _ in range(2)] == [4, 5]
        assert hub.count("signals") == 0

    asyncio.run(scenario())
