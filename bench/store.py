"""Bulk ingest into the embedded store: alphaloom's idempotent upsert against a plain DuckDB append.

The peer (``duckdb``) appends the same Arrow table into an unindexed table: the floor for any DuckDB write.
Our store also checks the frame and de-duplicates on (symbol, timeframe, ts), so re-ingesting is free of
duplicates; the ratio says what that safety costs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, best_of, parse_args
from alphaloom.data.storage import DuckDBBarStore


def make_bars(n: int, n_symbols: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    per = n // n_symbols
    ts = pd.date_range("2000-01-01", periods=per, freq="min", tz="UTC")
    frames = []
    for i in range(n_symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, per)))
        spread = np.abs(rng.normal(0, 1e-3, per)) * close
        frames.append(
            pd.DataFrame(
                {
                    "symbol": f"S{i:03d}",
                    "ts": ts,
                    "open": close,
                    "high": close + spread,
                    "low": close - spread,
                    "close": close,
                    "volume": rng.integers(1, 1000, per).astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n = 200_000 if args.quick else 1_000_000
    bars = make_bars(n)
    figs = Figures(f"Bulk ingest of {n:,} one-minute bars")
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1000))

        def ours_fresh() -> None:
            with DuckDBBarStore(Path(tmp) / f"fresh{next(counter)}.duckdb") as store:
                store.write_bars(bars, timeframe="1m")

        t_ours = best_of(ours_fresh, repeats=3)
        with DuckDBBarStore(Path(tmp) / "again.duckdb") as store:
            store.write_bars(bars, timeframe="1m")
            t_again = best_of(lambda: store.write_bars(bars, timeframe="1m"), repeats=3)
        table = pa.Table.from_pandas(bars, preserve_index=False)

        def peer() -> None:
            con = duckdb.connect(str(Path(tmp) / f"peer{next(counter)}.duckdb"))
            con.execute(
                "CREATE TABLE bars (symbol VARCHAR, ts TIMESTAMPTZ, open DOUBLE, high DOUBLE, low DOUBLE, "
                "close DOUBLE, volume DOUBLE)"
            )
            con.register("src", table)
            con.execute("INSERT INTO bars SELECT * FROM src")
            con.close()

        t_peer = best_of(peer, repeats=3)
    figs.add("alphaloom", "ingest_new_rows_per_s", n / t_ours, "rows/s")
    figs.add("alphaloom", "reingest_unchanged_rows_per_s", n / t_again, "rows/s", "idempotent upsert")
    figs.add("duckdb", "plain_append_rows_per_s", n / t_peer, "rows/s", "no key, no checks")
    figs.add("alphaloom", "ingest_time_ratio_vs_duckdb_append", t_ours / t_peer, "x", "lower is better")
    figs.emit(args.json)


if __name__ == "__main__":
    main()
