"""``alphaloom data stream``: kill the process mid-stream, restart, and nothing is lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import redis

from alphaloom.data.sample import load_sample
from alphaloom.data.storage import DuckDBBarStore

REDIS_URL = "redis://127.0.0.1:6379/0"
ARGS = [
    "--venue",
    "paper",
    "--symbols",
    "SPY",
    "--start",
    "2015-01-01",
    "--end",
    "2017-01-01",
    "--bus",
    "redis",
]


def _cli(*args: str, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "alphaloom.cli.main", "data", "stream", *args, "--data-dir", str(data_dir)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ALPHALOOM_DATA_DIR"}
    env["COLUMNS"] = "200"
    return env


def _row(stdout: str) -> dict[str, int]:
    header = next(ln for ln in stdout.splitlines() if "bars_committed" in ln)
    row = next(ln for ln in stdout.splitlines() if ln.startswith("│ paper"))
    names = [c.strip() for c in header.strip("┃ ").split("┃")]
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    return {n: int(float(c)) for n, c in zip(names, cells, strict=True) if n != "venue"}


@pytest.fixture
def stream_dir(tmp_path: Path):
    data_dir = tmp_path / f"stream{os.getpid()}{time.monotonic_ns()}"
    yield data_dir
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"alphaloom:{data_dir.name}:*"):
        client.delete(key)
    client.close()


def test_kill_and_restart_loses_and_duplicates_no_bar(stream_dir: Path) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    key = f"alphaloom:{stream_dir.name}:bars"
    slow = subprocess.Popen(
        _cli(*ARGS, "--speed", str(86_400 * 60), data_dir=stream_dir),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while client.xlen(key) < 40 and time.monotonic() < deadline and slow.poll() is None:
            time.sleep(0.05)
        assert slow.poll() is None, "the stream ended before it could be killed; slow it down"
        published_before_kill = client.xlen(key)
        assert published_before_kill >= 40
        slow.send_signal(signal.SIGKILL)  # no clean-up, no final checkpoint
        slow.wait(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()

    rerun = subprocess.run(
        _cli(*ARGS, "--speed", "0", data_dir=stream_dir),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    stats = _row(rerun.stdout)
    assert stats["skipped_already_committed"] > 0  # the killed run had committed part of the stream
    assert stats["bars_committed"] > 0  # ... and the restart finished the rest

    sample = load_sample("us_equities_daily")
    expected = sample[(sample["symbol"] == "SPY") & sample["ts"].between("2015-01-01", "2016-12-31")]
    with DuckDBBarStore(stream_dir / "alphaloom.duckdb") as store:
        stored = store.read_bars(["SPY"])
    assert len(stored) == len(expected)  # none lost, none duplicated
    assert stored["ts"].is_unique
    pd.testing.assert_frame_equal(
        stored[["ts", "open", "high", "low", "close"]].reset_index(drop=True),
        expected[["ts", "open", "high", "low", "close"]].reset_index(drop=True),
    )

    # The bus is at-least-once with stable ids: every bar arrived, re-publications carry the same id.
    events = [json.loads(fields[b"e"]) for _, fields in client.xrange(key)]
    ids = {(e["symbol"], e["ts"]) for e in events}
    assert len(ids) == len(expected)
    client.close()
