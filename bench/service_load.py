"""Load test of a real ``alphaloom serve`` (uvicorn) on loopback, against the targets of issue 10.

A demo workspace (``run_demo`` with ``RunConfig.quick()``, or ``--data-dir``) is served by the
``alphaloom serve`` command in a subprocess, with rate limits raised by a ``[service]`` config file so the
limiter does not answer 429 to the load. Measured, each for ``--duration-s`` after a warm-up:

- ``POST /predict`` (one symbol) at 1, 8 and 64 concurrent clients: p50 and p99 latency, requests/s.
  Twice: with the prediction cache (what a deployment runs: the input window only changes once a bar, so
  repeated questions are cache hits) and without it (``cache_size = 0``: every request is a forward pass,
  concurrent ones micro-batched), plus once without micro-batching (``batching = false``) for comparison.
- ``POST /predict/batch`` with 256 symbols a request: predictions/s (cache off: one forward pass each).
- The signals WebSocket fanned out to ``--ws-clients`` (100) clients: for each signal the paper session
  publishes, the time until the last client has it, from the hub's ``sent_at`` stamp (p50, p99).

Targets: p99 < 20 ms at 8 concurrent clients, >= 1,000 predictions/s with batching. The clients (aiohttp)
run in this process on the same 2 cores as the server, so the figures include the client's own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures
from alphaloom.jobs.workspace import Workspace
from alphaloom.service import KeyStore, keys_path

TARGET_P99_MS_AT_8 = 20.0
TARGET_PER_S = 1000.0  # predictions/s
CACHE_ON, CACHE_OFF, NO_BATCHING = "cache on", "cache off", "cache off, no batching"
console = Console(stderr=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    p.add_argument("--data-dir", type=Path, default=None, help="serve this workspace (default: a new demo)")
    p.add_argument("--duration-s", type=float, default=None, help="seconds per measurement (default 5)")
    p.add_argument("--ws-clients", type=int, default=100, help="WebSocket clients of the fan-out test")
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_workspace(data_dir: Path | None, tmp: Path) -> Workspace:
    if data_dir is not None:
        ws = Workspace.resolve(data_dir)
        if not ws.store_path.exists():
            raise SystemExit(f"--data-dir {ws.root} holds no workspace; run `alphaloom demo` there first.")
        return ws
    from alphaloom.jobs.config import RunConfig
    from alphaloom.jobs.demo import run_demo

    ws = Workspace.resolve(tmp / "ws")
    with console.status("building a demo workspace (RunConfig.quick, about 30 s) ..."):
        run_demo(ws, RunConfig.quick(seed=7))
    return ws


class Served(NamedTuple):
    base: str  # http://127.0.0.1:PORT
    pid: int


@contextmanager
def serve(ws: Workspace, tmp: Path, name: str, service: dict[str, Any] | None = None) -> Iterator[Served]:
    """Run ``alphaloom serve`` with a ``[service]`` table of ``service`` settings until the block ends."""
    port = free_port()
    table = {
        "viewer_rate_per_s": 1e7,
        "trader_rate_per_s": 1e7,
        "admin_rate_per_s": 1e7,
        **(service or {}),
    }
    config = tmp / f"{name}.toml"
    config.write_text(
        "[service]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items()), encoding="utf-8"
    )
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 (closed below, after the process)
    cmd = [
        sys.executable,
        "-m",
        "alphaloom.cli.main",
        "serve",
        "--data-dir",
        str(ws.root),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen([*cmd, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with console.status(f"starting alphaloom serve ({name}) on port {port} ..."):
            _wait_ready(base, proc, tmp / f"{name}.log")
        yield Served(base, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def _wait_ready(base: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180.0) -> None:
    import httpx

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"alphaloom serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(f"{base}/readyz", timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"alphaloom serve was not ready after {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


async def closed_loop(
    url: str, body: bytes, headers: dict[str, str], clients: int, duration_s: float, warmup_s: float
) -> tuple[np.ndarray, float]:
    """``clients`` tasks, each sending the next request when the last answered; latencies (s) and wall time
    of the measured window (requests that started during the warm-up are not counted)."""
    latencies: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        start = time.perf_counter()
        measure_from = start + warmup_s
        stop = measure_from + duration_s

        async def client() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop:
                    return
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors.append(f"{resp.status}: {(await resp.text())[:200]}")
                        return
                if t0 >= measure_from:
                    latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(client() for _ in range(clients)))
    if errors:
        raise SystemExit(f"{url} answered {errors[0]}")
    return np.asarray(latencies), duration_s


async def fan_out(base: str, token: str, clients: int, duration_s: float) -> tuple[np.ndarray, int]:
    """Per signal: seconds from the hub's ``sent_at`` until the last of ``clients`` received it."""
    url = base.replace("http://", "ws://") + f"/api/v1/ws/signals?token={token}"
    arrivals: dict[tuple[str, str], list[float]] = defaultdict(list)
    ready = asyncio.Event()
    connected = 0

    async with aiohttp.ClientSession() as session:

        async def client() -> None:
            nonlocal connected
            async with session.ws_connect(url, max_msg_size=0) as ws:
                hello = await ws.receive_json()
                assert hello["type"] == "hello", hello
                connected += 1
                if connected == clients:
                    ready.set()
                end = time.monotonic() + duration_s + 30
                async for msg in ws:
                    now = time.time()
                    data = json.loads(msg.data)
                    if data["type"] == "signals" and ready.is_set():
                        key = (data["data"]["symbol"], data["data"]["ts"])
                        arrivals[key].append(now - data["sent_at"])
                    if time.monotonic() > end:
                        return

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(duration_s)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    complete = [max(v) for v in arrivals.values() if len(v) == clients]
    return np.asarray(complete), len(arrivals)


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def main() -> None:
    args = parse_args()
    duration = args.duration_s or (2.0 if args.quick else 5.0)
    warmup = 0.5 if args.quick else 1.0
    figures = Figures("alphaloom serve under load (loopback, this machine); subject = server setup")
    checks: list[tuple[str, float, str, float]] = []  # measure, value, target text, ratio (>= 1 meets)

    with tempfile.TemporaryDirectory(prefix="alphaloom-load-") as tmp_dir:
        tmp = Path(tmp_dir)
        ws = demo_workspace(args.data_dir, tmp)
        key, _ = KeyStore(keys_path(ws)).create(f"bench-load-{os.getpid()}", "viewer")
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        symbols = _symbols(ws)
        one = json.dumps({"symbol": symbols[0]}).encode()
        many = json.dumps({"symbols": [symbols[i % len(symbols)] for i in range(256)]}).encode()

        def predict_at(base: str, setup: str, levels: tuple[int, ...]) -> None:
            for clients in levels:
                with console.status(f"/predict, {setup}, {clients} clients ..."):
                    lat, wall = asyncio.run(
                        closed_loop(f"{base}/api/v1/predict", one, headers, clients, duration, warmup)
                    )
                rate = len(lat) / wall
                p99 = pct(lat, 99) * 1e3
                figures.add(setup, f"/predict c={clients} p50", pct(lat, 50) * 1e3, "ms")
                figures.add(setup, f"/predict c={clients} p99", p99, "ms")
                figures.add(setup, f"/predict c={clients} throughput", rate, "req/s")
                if clients == 8 and setup != NO_BATCHING:
                    checks.append(
                        (f"/predict p99, 8 clients, {setup}", p99, "< 20 ms", TARGET_P99_MS_AT_8 / p99)
                    )
                if clients == 64 and setup == CACHE_OFF:
                    checks.append(
                        (
                            f"/predict, 64 clients, {setup}",
                            rate,
                            ">= 1,000 predictions/s",
                            rate / TARGET_PER_S,
                        )
                    )

        with serve(ws, tmp, "cache_on") as (base, _):
            predict_at(base, CACHE_ON, (1, 8, 64))
        with serve(ws, tmp, "cache_off", {"cache_size": 0}) as (base, _):
            predict_at(base, CACHE_OFF, (1, 8, 64))
            with console.status("/predict/batch (256 symbols a request) ..."):
                lat, wall = asyncio.run(
                    closed_loop(f"{base}/api/v1/predict/batch", many, headers, 4, duration, warmup)
                )
            per_s = 256 * len(lat) / wall
            figures.add(CACHE_OFF, "/predict/batch (256 symbols) p50", pct(lat, 50) * 1e3, "ms")
            figures.add(CACHE_OFF, "/predict/batch throughput", per_s, "predictions/s")
            checks.append(
                (f"/predict/batch, {CACHE_OFF}", per_s, ">= 1,000 predictions/s", per_s / TARGET_PER_S)
            )
        with serve(ws, tmp, "no_batching", {"cache_size": 0, "batching": False}) as (base, _):
            predict_at(base, NO_BATCHING, (8, 64))
        # a bar every 0.1 s, so the fan-out is measured over many signals
        with serve(ws, tmp, "fan_out", {"replay_interval_s": 0.1}) as (base, _):
            token = _token(base, headers)
            with console.status(f"signals WebSocket fan-out to {args.ws_clients} clients ..."):
                delays, seen = asyncio.run(fan_out(base, token, args.ws_clients, max(duration * 2, 8.0)))
            setup = f"{args.ws_clients} ws clients"
            note = f"{len(delays)} of {seen} signals reached all"
            figures.add(setup, "signal to every client p50", pct(delays, 50) * 1e3, "ms", note)
            figures.add(setup, "signal to every client p99", pct(delays, 99) * 1e3, "ms")

    wide = Console(width=max(120, Console().width))
    measured = Table(title=figures.title)
    for col in ("setup", "measure", "value", "unit", "note"):
        measured.add_column(col, justify="right" if col == "value" else "left")
    for setup, measure, value, unit, note in figures.rows:
        measured.add_row(setup, measure, f"{value:,.4g}", unit, note)
    wide.print(measured)
    table = Table(title="against the targets of issue 10 (ratio >= 1 meets the target)")
    for col in ("measure", "value", "target", "ratio"):
        table.add_column(col, justify="right" if col in ("value", "ratio") else "left")
    for measure, value, target, ratio in checks:
        colour = "green" if ratio >= 1 else "red"
        table.add_row(measure, f"{value:,.1f}", target, f"[{colour}]{ratio:.2f}x[/{colour}]")
    wide.print(table)
    if args.json:
        out = {f"{s}/{m}": {"value": v, "unit": u} for s, m, v, u, _ in figures.rows}
        print(json.dumps({"figures": out, "targets_met": all(r >= 1 for *_, r in checks)}))


def _symbols(ws: Workspace) -> list[str]:
    config = ws.load_config()
    if config is None:
        raise SystemExit(f"{ws.root} has no run config; run `alphaloom demo --data-dir {ws.root}`.")
    return list(config.symbols)


def _token(base: str, headers: dict[str, str]) -> str:
    import httpx

    r = httpx.post(f"{base}/api/v1/auth/token", headers=headers, timeout=10)
    r.raise_for_status()
    return str(r.json()["token"])


if __name__ == "__main__":
    main()
