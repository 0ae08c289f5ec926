"""``alphaloom data ingest --venue oanda``: the CLI fetching history from a local OANDA v20 server."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.data.connectors.servers import LocalServer
from tests.data.connectors.servers.oanda_server import OandaVenue, OandaVenueConfig

from alphaloom.data.storage import DuckDBBarStore

ACCOUNT = "101-004-7777777-001"
NOW = datetime(2024, 3, 6, 12, 0, 30, tzinfo=UTC)


def test_ingest_history_from_oanda_with_a_venue_config_file(tmp_path: Path) -> None:
    token = "tok-" + secrets.token_hex(16)
    venue = OandaVenue(OandaVenueConfig(token=token, account_id=ACCOUNT, now=NOW))
    server = LocalServer(venue.app).start()
    try:
        config = tmp_path / "oanda.toml"
        config.write_text(f'base_url = "{server.url}"\nstream_url = "{server.url}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHALOOM_")}
        env |= {"ALPHALOOM_OANDA_TOKEN": token, "ALPHALOOM_OANDA_ACCOUNT": ACCOUNT, "COLUMNS": "200"}
        args = ["data", "ingest", "--venue", "oanda", "--venue-config", str(config), "--symbols", "EURUSD"]
        args += [
            "--timeframe",
            "1h",
            "--start",
            "2024-03-04",
            "--end",
            "2024-03-06",
            "--data-dir",
            str(tmp_path),
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "alphaloom.cli.main", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert token not in proc.stdout + proc.stderr
    finally:
        server.stop()
    with DuckDBBarStore(tmp_path / "alphaloom.duckdb") as store:
        bars = store.read_bars(["EURUSD"], timeframe="1h")
    assert len(bars) == 48  # two full days of hourly candles, each once
    assert bars["ts"].is_unique
    assert bars["ts"].iloc[0] == datetime(2024, 3, 4, tzinfo=UTC)
