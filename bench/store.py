"""Bulk ingest into the stores: alphaloom's idempotent upserts against plain appends (DuckDB, PostgreSQL).

DuckDB: the peer (``duckdb``) appends the same Arrow table into an unindexed table, the floor for any DuckDB
write. Our store also checks the frame and de-duplicates on (symbol, timeframe, ts), so re-ingesting is free
of duplicates; the ratio says what that safety costs. Rows outside the range a symbol already holds are
appended without a merge, and ``bars`` carries no key index (the write path keeps keys unique), so a fresh
history is close to a plain append. Target: >= 1,000,000 rows/s for new bars.

PostgreSQL: ``PostgresBarStore`` ingests into a fresh schema each repeat (yearly partitions, primary key,
BRIN index, range bookkeeping); the peer (``postgres``) is a text ``COPY`` of the same rows, already encoded
as CSV, into an unlogged table with no key or index, the floor for any write into that server. The server
comes from ``ALPHALOOM_BENCH_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``); when it cannot
be reached the PostgreSQL rows are left out and a note says why. Target: >= 200,000 rows/s for new bars.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, best_of, parse_args
from alphaloom.core.exceptions import StorageError
from alphaloom.data.storage import DuckDBBarStore, PostgresBarStore

PG_DSN = os.environ.get("ALPHALOOM_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


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
    figs.add("alphaloom", "ingest_new_rows_per_s", n / t_ours, "rows/s", "target >= 1,000,000")
    figs.add("alphaloom", "reingest_unchanged_rows_per_s", n / t_again, "rows/s", "idempotent upsert")
    figs.add("duckdb", "plain_append_rows_per_s", n / t_peer, "rows/s", "no key, no checks")
    figs.add("alphaloom", "ingest_time_ratio_vs_duckdb_append", t_ours / t_peer, "x", "lower is better")
    bench_postgres(bars, figs)
    figs.emit(args.json)


def bench_postgres(bars: pd.DataFrame, figs: Figures) -> None:
    """Add the PostgreSQL figures: fresh ingest, re-ingest, read and a plain COPY, each in its own schema."""
    import psycopg

    n = len(bars)
    run = f"al_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    counter = iter(range(1000))
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        figs.add("alphaloom", "pg_ingest_new_rows_per_s", float("nan"), "rows/s", f"no server: {exc}"[:60])
        return
    try:

        def ours_fresh() -> None:
            with PostgresBarStore(PG_DSN, schema=f"{run}_{next(counter)}") as store:
                store.write_bars(bars, timeframe="1m")

        t_ours = best_of(ours_fresh, repeats=3)
        with PostgresBarStore(PG_DSN, schema=f"{run}_again") as store:
            store.write_bars(bars, timeframe="1m")
            t_again = best_of(lambda: store.write_bars(bars, timeframe="1m"), repeats=3)
            t_read = best_of(lambda: store.read_bars(timeframe="1m"), repeats=3)
        text = io.StringIO()
        bars.assign(ts=bars["ts"].dt.strftime("%Y-%m-%d %H:%M:%S+00")).to_csv(text, index=False, header=False)
        payload = text.getvalue().encode()

        def peer() -> None:
            table = f'"{run}_peer{next(counter)}"'
            admin.execute(
                f"CREATE UNLOGGED TABLE {table} (symbol text, ts timestamptz, open float8, high float8, "
                f"low float8, close float8, volume float8)"
            )
            with admin.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
                copy.write(payload)
            admin.execute(f"DROP TABLE {table}")

        t_peer = best_of(peer, repeats=3)
    except (psycopg.Error, StorageError) as exc:
        figs.add("alphaloom", "pg_ingest_new_rows_per_s", float("nan"), "rows/s", f"failed: {exc}"[:60])
        return
    finally:
        for (name,) in admin.execute(
            "SELECT nspname FROM pg_namespace WHERE left(nspname, %s) = %s", [len(run), run]
        ).fetchall():
            admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.close()
    figs.add("alphaloom", "pg_ingest_new_rows_per_s", n / t_ours, "rows/s", "target >= 200,000")
    figs.add("alphaloom", "pg_reingest_unchanged_rows_per_s", n / t_again, "rows/s", "idempotent upsert")
    figs.add("alphaloom", "pg_read_rows_per_s", n / t_read, "rows/s", "binary COPY out")
    figs.add("postgres", "plain_copy_rows_per_s", n / t_peer, "rows/s", "unlogged, no key, pre-encoded CSV")
    figs.add("alphaloom", "pg_ingest_time_ratio_vs_plain_copy", t_ours / t_peer, "x", "lower is better")


if __name__ == "__main__":
    main()
