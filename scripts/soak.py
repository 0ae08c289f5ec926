"""Soak test: ``alphaloom serve`` under steady load for minutes, its memory sampled throughout.

Runs a real ``alphaloom serve`` (uvicorn, paper session on) on loopback on a demo workspace (built with
``RunConfig.quick()`` unless ``--data-dir`` is given) and sends it a steady mix for ``--minutes``:
``POST /predict`` and ``/predict/batch``, ``GET /signals``, ``/portfolio``, ``/orders``, ``/readyz`` and
``/metrics``, paced at ``--rate`` requests/s, while ``--ws-clients`` WebSocket clients stay subscribed to the
signals and a few reconnect every ``--reconnect-s`` (connection set-up and tear-down are where leaks hide).

The server's resident memory (RSS, from psutil, else ``/proc/<pid>/status``) is sampled every
``--sample-s``. The report gives the RSS at the start of the measured window (after ``--warmup-s``, when the
caches and the allocator have settled), its peak and end, and the growth per minute from a least-squares
line through the samples, with a verdict against ``--max-growth-mib-per-min``. Not part of CI: ``make soak``
(``ARGS="--minutes 10"``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from alphaloom.jobs.workspace import Workspace
from alphaloom.service import KeyStore, keys_path
from service_load import demo_workspace, serve  # the same server launcher as the load benchmark

console = Console()
MIB = 1024 * 1024
REQUEST_TIMEOUT_S = 30.0  # a request or WebSocket close not answered in this time is an error, named


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0, help="how long the load runs (default 5)")
    p.add_argument("--data-dir", type=Path, default=None, help="serve this workspace (default: a new demo)")
    p.add_argument("--rate", type=float, default=200.0, help="HTTP requests per second (default 200)")
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    p.add_argument("--ws-clients", type=int, default=20, help="WebSocket clients on /ws/signals (default 20)")
    p.add_argument("--reconnect-s", type=float, default=10.0, help="a WebSocket client reconnects this often")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    p.add_argument("--warmup-s", type=float, default=30.0, help="left out of the growth fit (default 30)")
    p.add_argument("--max-growth-mib-per-min", type=float, default=2.0, help="verdict threshold (default 2)")
    p.add_argument(
        "--no-trade-paper",
        action="store_true",
        help="serve without the paper session (tells the session's memory from the request path's)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = p.parse_args()
    if args.minutes <= 0 or args.rate <= 0 or args.clients < 1 or args.sample_s <= 0:
        p.error("--minutes, --rate and --sample-s must be > 0 and --clients >= 1")
    return args


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (psutil when installed, else ``/proc/<pid>/status``)."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS in /proc/{pid}/status") from None
    return int(psutil.Process(pid).memory_info().rss)


@dataclass
class Load:
    requests: int = 0
    errors: int = 0
    ws_messages: int = 0
    ws_reconnects: int = 0
    latencies: list[float] = field(default_factory=list)
    last_error: str = ""
    timeouts: dict[str, int] = field(default_factory=dict)  # "METHOD path" -> requests not answered in time

    def timed_out(self, what: str) -> None:
        self.errors += 1
        self.timeouts[what] = self.timeouts.get(what, 0) + 1
        self.last_error = f"{what}: no answer within {REQUEST_TIMEOUT_S:g} s"


async def http_load(
    base: str, key: str, symbols: list[str], args: argparse.Namespace, load: Load, stop: float
):
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    batch = json.dumps({"symbols": symbols}).encode()
    mix: list[tuple[str, str, bytes | None]] = [
        *[("POST", "/api/v1/predict", json.dumps({"symbol": s}).encode()) for s in symbols],
        ("POST", "/api/v1/predict/batch", batch),
        ("GET", "/api/v1/signals", None),
        ("GET", "/api/v1/portfolio", None),
        ("GET", "/api/v1/orders", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
    ]
    per_client_s = args.clients / args.rate
    rng = random.Random(0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:

        async def client() -> None:
            next_at = time.monotonic()
            while next_at < stop:
                method, path, body = rng.choice(mix)
                t0 = time.perf_counter()
                try:
                    async with session.request(method, base + path, data=body) as resp:
                        await resp.read()
                        if resp.status >= 400 and not (path == "/readyz" and resp.status == 503):
                            load.errors += 1
                            load.last_error = f"{method} {path} -> {resp.status}"
                except TimeoutError:
                    load.timed_out(f"{method} {path}")
                except aiohttp.ClientError as exc:
                    load.errors += 1
                    load.last_error = f"{method} {path}: {exc}"
                load.requests += 1
                load.latencies.append(time.perf_counter() - t0)
                next_at += per_client_s
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        await asyncio.gather(*(client() for _ in range(args.clients)))


async def ws_load(base: str, token: str, args: argparse.Namespace, load: Load, stop: float) -> None:
    url = base.replace("http://", "ws://") + f"/api/v1/ws/signals?token={token}"

    async def client(i: int) -> None:
        reconnecting = i < max(1, args.ws_clients // 5)  # a fifth of them come and go
        # a bounded close handshake and heartbeats: a connection the server stops answering is an error
        ws_timeout = aiohttp.ClientWSTimeout(ws_close=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < stop:
                until = min(stop, time.monotonic() + (args.reconnect_s if reconnecting else 1e9))
                try:
                    async with session.ws_connect(url, timeout=ws_timeout, heartbeat=10.0) as ws:
                        while time.monotonic() < until:
                            try:
                                # wait_for, not receive(timeout=): with aiohttp 3.14 the latter now and then
                                # never fired, and idle clients outlived the soak
                                msg = await asyncio.wait_for(ws.receive(), max(0.1, until - time.monotonic()))
                            except TimeoutError:
                                break
                            if msg.type is not aiohttp.WSMsgType.TEXT:
                                break  # closed by the server: reconnect
                            load.ws_messages += 1
                except TimeoutError:
                    load.timed_out("websocket connect/close")
                except aiohttp.ClientError as exc:
                    load.errors += 1
                    load.last_error = f"websocket: {exc}"
                    await asyncio.sleep(1)
                load.ws_reconnects += 1

    await asyncio.gather(*(client(i) for i in range(args.ws_clients)))


async def soak(base: str, pid: int, key: str, token: str, symbols: list[str], args: argparse.Namespace):
    load = Load()
    start = time.monotonic()
    stop = start + args.minutes * 60
    samples: list[tuple[float, int]] = []
    work = asyncio.gather(
        http_load(base, key, symbols, args, load, stop), ws_load(base, token, args, load, stop)
    )

    def view() -> Table:
        t = Table(
            title=f"soak: {args.minutes:g} min at {args.rate:g} req/s, {args.ws_clients} WebSocket clients"
        )
        for col in ("elapsed", "RSS", "requests", "errors", "ws messages", "ws reconnects"):
            t.add_column(col, justify="right")
        rss = f"{samples[-1][1] / MIB:,.1f} MiB" if samples else "-"
        t.add_row(
            f"{time.monotonic() - start:,.0f} / {args.minutes * 60:,.0f} s",
            rss,
            f"{load.requests:,}",
            f"{load.errors:,}",
            f"{load.ws_messages:,}",
            f"{load.ws_reconnects:,}",
        )
        return t

    with Live(view(), console=console, refresh_per_second=2) as live:
        while not work.done():
            samples.append((time.monotonic() - start, rss_bytes(pid)))
            live.update(view())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(work), args.sample_s)
            if time.monotonic() > stop + 2 * REQUEST_TIMEOUT_S + args.reconnect_s:  # never hang the soak
                stuck = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
                where = sorted(
                    {
                        f"{t.get_coro().__qualname__} at line {t.get_stack()[-1].f_lineno}"
                        for t in stuck
                        if t.get_stack()
                    }
                )
                work.cancel()
                load.errors += 1
                load.last_error = f"load still running after its time was up, cancelled: {'; '.join(where)}"
                break
        with contextlib.suppress(asyncio.CancelledError):
            await work
        samples.append((time.monotonic() - start, rss_bytes(pid)))
        live.update(view())
    return load, samples


def report(load: Load, samples: list[tuple[float, int]], args: argparse.Namespace) -> dict:
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples], dtype=np.float64) / MIB
    window = t >= min(args.warmup_s, t[-1] / 2)  # a short run still fits its second half
    slope_per_s = float(np.polyfit(t[window], rss[window], 1)[0]) if window.sum() >= 3 else float("nan")
    growth = slope_per_s * 60
    # a leak keeps its pace; allocator and cache warm-up slows down: the second half tells them apart
    late = t >= (t[window][0] + t[-1]) / 2
    late_growth = float(np.polyfit(t[late], rss[late], 1)[0]) * 60 if late.sum() >= 3 else float("nan")
    lat = np.asarray(load.latencies) * 1e3
    out = {
        "minutes": args.minutes,
        "requests": load.requests,
        "errors": load.errors,
        "timeouts": dict(load.timeouts),
        "ws_messages": load.ws_messages,
        "ws_reconnects": load.ws_reconnects,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "rss_start_mib": float(rss[window][0]),
        "rss_peak_mib": float(rss.max()),
        "rss_end_mib": float(rss[-1]),
        "growth_mib_per_min": growth,
        "growth_second_half_mib_per_min": late_growth,
        "samples": len(samples),
    }
    leak = not np.isfinite(growth) or growth > args.max_growth_mib_per_min
    out["verdict"] = (
        f"memory growing {growth:.2f} MiB/min (> {args.max_growth_mib_per_min:g}): investigate"
        if leak
        else f"stable: {growth:+.2f} MiB/min (limit {args.max_growth_mib_per_min:g})"
    )
    if load.errors:
        out["verdict"] += f"; {load.errors} errors (last: {load.last_error})"
    table = Table(title="soak result")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in out.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    console.print(table)
    colour = "red" if leak or load.errors else "green"
    console.print(f"[{colour}]{out['verdict']}[/{colour}]")
    return out


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="alphaloom-soak-") as tmp_dir:
        tmp = Path(tmp_dir)
        ws: Workspace = demo_workspace(args.data_dir, tmp)
        config = ws.load_config()
        symbols = list(config.symbols) if config is not None else ["SPY"]
        key, _ = KeyStore(keys_path(ws)).create(f"soak-{os.getpid()}", "viewer")
        # replay every stored bar (not only the run's [trade] bars), so the paper session trades all along
        service = {"replay_bars": 1_000_000, "trade_paper": not args.no_trade_paper}
        with serve(ws, tmp, "soak", service) as (base, pid):
            import httpx

            token = httpx.post(f"{base}/api/v1/auth/token", headers={"X-API-Key": key}, timeout=10).json()[
                "token"
            ]
            load, samples = asyncio.run(soak(base, pid, key, token, symbols, args))
    out = report(load, samples, args)
    if args.json:
        print(json.dumps(out))
    if load.errors or out["verdict"].startswith("memory growing"):
        sys.exit(1)


if __name__ == "__main__":
    main()
