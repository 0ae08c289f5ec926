"""ResultsStore on both backends: round trips, listing, comparison, run ids, replacement, migrations.

Every test runs on DuckDB (a temporary file) and on PostgreSQL (the shared server, database ``test``, a schema
of its own per test, dropped afterwards).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from alphaloom.core.exceptions import ConfigError, DataFormatError, DataNotFoundError, StorageError
from alphaloom.data.storage import DuckDBBarStore, DuckDBResultsStore, PostgresResultsStore, ResultRun
from alphaloom.data.storage.results import (
    EQUITY_COLUMNS,
    RESULTS_MIGRATIONS,
    STATS_COLUMNS,
    TRADE_COLUMNS,
    ResultKind,
    ResultsStore,
    make_run_id,
)

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
_SESSION = f"al_restest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
_numbers = itertools.count()
T0 = datetime(2024, 6, 14, 15, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def admin() -> Iterator[psycopg.Connection]:
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=10) as con:
        yield con
        for (name,) in con.execute(
            "SELECT nspname FROM pg_namespace WHERE left(nspname, %s) = %s", [len(_SESSION), _SESSION]
        ).fetchall():
            con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["duckdb", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, object]]:
    """(kind, how to open it): a DuckDB file, or a PostgreSQL schema dropped after the test."""
    if request.param == "duckdb":
        yield "duckdb", tmp_path / "results.duckdb"
        return
    admin = request.getfixturevalue("admin")
    schema = f"{_SESSION}_{next(_numbers)}"
    yield "postgres", schema
    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def open_store(backend: tuple[str, object], **kwargs) -> ResultsStore:
    kind, where = backend
    if kind == "duckdb":
        return DuckDBResultsStore(where, **kwargs)
    return PostgresResultsStore(PG_DSN, schema=str(where), **kwargs)


@pytest.fixture
def store(backend) -> Iterator[ResultsStore]:
    with open_store(backend) as s:
        yield s


def backtest_frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2021-01-04", periods=30, freq="D", tz="UTC")
    stats, equity, trades = [], [], []
    for symbol in ("SPY", "BTCUSD"):
        for label in ("buy_and_hold", "ppo"):
            r = rng.normal(0.0005, 0.01, len(ts))
            r[0] = 0.0
            eq = 100_000.0 * np.cumprod(1.0 + r)
            equity.append(
                pd.DataFrame(
                    {"symbol": symbol, "label": label, "ts": ts, "equity": eq, "returns": r, "weight": 1.0}
                )
            )
            stats += [
                (symbol, label, "sharpe", float(r.mean() / r.std() * np.sqrt(252))),
                (symbol, label, "total_return", float(eq[-1] / 100_000.0 - 1.0)),
                (symbol, label, "calmar", np.nan),
            ]
            trades.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "label": label,
                        "entry_ts": [ts[1], ts[10]],
                        "exit_ts": [ts[5], pd.NaT],
                        "side": ["long", "short"],
                        "units": [3.0, 2.5],
                        "entry_price": [101.0, 99.0],
                        "exit_price": [103.0, np.nan],
                        "bars_held": [4, 20],
                        "pnl": [6.0, -1.25],
                        "trade_return": [0.0198, -0.005],
                        "is_open": [False, True],
                    }
                )
            )
    return (
        pd.DataFrame(stats, columns=list(STATS_COLUMNS)),
        pd.concat(equity, ignore_index=True),
        pd.concat(trades, ignore_index=True),
    )


def backtest_run(run_id: str = "bt-20240614-153000-aaaa", created: datetime = T0, **extra) -> ResultRun:
    return ResultRun(
        run_id=run_id,
        kind=ResultKind.BACKTEST,
        name="demo",
        created_at=created,
        config_hash="0123456789abcdef",
        data_fingerprint="f" * 64,
        code_version="0.1.0+gtest",
        summary={"mean_sharpe": 0.5, "undefined": float("nan"), "best_strategy": "ppo"},
        params={"symbols": ["BTCUSD", "SPY"], "costs": {"commission_bps": 1.0}},
        **extra,
    )


def test_backtest_round_trip(store: ResultsStore) -> None:
    stats, equity, trades = backtest_frames()
    stored = store.write(backtest_run(), stats=stats, equity=equity, trades=trades)
    again = store.run(stored.run_id)
    assert again == ResultRun(
        run_id="bt-20240614-153000-aaaa",
        kind=ResultKind.BACKTEST,
        name="demo",
        created_at=T0,
        config_hash="0123456789abcdef",
        data_fingerprint="f" * 64,
        code_version="0.1.0+gtest",
        summary={"mean_sharpe": 0.5, "undefined": None, "best_strategy": "ppo"},  # NaN is not JSON
        params={"symbols": ["BTCUSD", "SPY"], "costs": {"commission_bps": 1.0}},
    )
    expected_stats = stats.sort_values(["symbol", "label", "stat"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(store.stats(stored.run_id), expected_stats, check_dtype=False)
    got_equity = store.equity(stored.run_id)
    assert list(got_equity.columns) == list(EQUITY_COLUMNS)
    expected_equity = equity.sort_values(["symbol", "label", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got_equity, expected_equity, check_exact=True, check_dtype=False)
    assert str(got_equity["ts"].dtype) == "datetime64[ns, UTC]"
    spy_ppo = store.equity(stored.run_id, symbol="SPY", label="ppo")
    assert len(spy_ppo) == 30
    assert set(spy_ppo["label"]) == {"ppo"}
    got_trades = store.trades(stored.run_id)
    assert list(got_trades.columns) == list(TRADE_COLUMNS)
    expected_trades = trades.sort_values(["symbol", "label"], kind="stable").reset_index(drop=True)
    expected_trades["exit_ts"] = expected_trades["exit_ts"].astype("datetime64[ns, UTC]")
    pd.testing.assert_frame_equal(got_trades, expected_trades, check_dtype=False)
    assert got_trades["is_open"].dtype == bool
    assert got_trades["bars_held"].dtype == np.int64


@pytest.mark.parametrize("kind", [ResultKind.FEATURES, ResultKind.PREDICTIONS])
def test_vectors_round_trip_with_their_names_and_nans(store: ResultsStore, kind: ResultKind) -> None:
    ts = pd.date_range("2020-03-02", periods=40, freq="D", tz="UTC")
    rng = np.random.default_rng(3)
    frames = []
    for symbol in ("EURUSD", "AAPL"):
        values = rng.normal(size=(len(ts), 5))
        values[:3, 1] = np.nan  # a warm-up
        frame = pd.DataFrame(values, columns=["rsi_14", "macd", "p_up", "emb_0", "vol_20"])
        frame.insert(0, "ts", ts)
        frame.insert(0, "symbol", symbol)
        frames.append(frame)
    vectors = pd.concat(frames, ignore_index=True)
    vectors["ts"] = vectors["ts"].astype("datetime64[ns, UTC]")  # what the store reads back
    run = ResultRun(make_run_id(kind, T0), kind, "cnn_lstm", T0)
    stored = store.write(run, vectors=vectors)
    assert stored.vector_names == ("rsi_14", "macd", "p_up", "emb_0", "vol_20")
    assert store.run(run.run_id).vector_names == stored.vector_names
    expected = vectors.sort_values(["symbol", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(store.vectors(run.run_id), expected, check_exact=True)
    only = store.vectors(run.run_id, symbols="EURUSD")
    pd.testing.assert_frame_equal(only, vectors[vectors["symbol"] == "EURUSD"].reset_index(drop=True))


def test_list_filters_by_kind_and_name_newest_first(store: ResultsStore) -> None:
    assert store.runs() == []
    stats, _, _ = backtest_frames()
    for i in range(3):
        store.write(backtest_run(f"bt-2024061{i}", created=T0 + timedelta(days=i)), stats=stats)
    ts = pd.date_range("2020-01-01", periods=3, tz="UTC")
    feats = pd.DataFrame({"symbol": "SPY", "ts": ts, "x": [1.0, 2.0, 3.0]})
    store.write(ResultRun("feat-1", "features", "features", T0 - timedelta(days=1)), vectors=feats)
    store.write(ResultRun("live-1", "live", "paper", T0 + timedelta(days=9)))
    assert [r.run_id for r in store.runs()] == [
        "live-1",
        "bt-20240612",
        "bt-20240611",
        "bt-20240610",
        "feat-1",
    ]
    assert [r.run_id for r in store.runs("backtest")] == ["bt-20240612", "bt-20240611", "bt-20240610"]
    assert [r.run_id for r in store.runs(ResultKind.FEATURES)] == ["feat-1"]
    assert [r.run_id for r in store.runs(name="paper")] == ["live-1"]
    with pytest.raises(ConfigError, match="Did you mean 'backtest'"):
        store.runs("backtests")


def test_compare_puts_statistics_side_by_side_with_differences(store: ResultsStore) -> None:
    stats_a, equity, _ = backtest_frames(seed=1)
    stats_b = stats_a.copy()
    stats_b["value"] = stats_b["value"] + 0.25
    extra = pd.DataFrame([("SPY", "sac", "sharpe", 1.5)], columns=list(STATS_COLUMNS))
    store.write(backtest_run("bt-a"), stats=stats_a, equity=equity)
    store.write(backtest_run("bt-b"), stats=pd.concat([stats_b, extra], ignore_index=True))
    table = store.compare(["bt-a", "bt-b"])
    assert list(table.columns) == ["symbol", "label", "stat", "bt-a", "bt-b", "diff bt-b"]
    assert len(table) == len(stats_a) + 1  # the union of both runs' statistics
    finite = table.dropna(subset=["bt-a", "bt-b"])
    np.testing.assert_allclose(finite["diff bt-b"], 0.25, rtol=0, atol=1e-12)
    only_b = table[(table["label"] == "sac")].iloc[0]
    assert np.isnan(only_b["bt-a"])
    assert only_b["bt-b"] == 1.5
    assert np.isnan(only_b["diff bt-b"])
    calmar = table[table["stat"] == "calmar"]
    assert calmar[["bt-a", "bt-b", "diff bt-b"]].isna().all().all()  # NaN stays NaN, never 0
    with pytest.raises(ConfigError, match="two or more"):
        store.compare(["bt-a"])
    with pytest.raises(ConfigError, match="two different runs"):
        store.compare(["bt-a", "bt-a"])


def test_unknown_run_id_says_what_is_recorded_and_suggests_the_closest(store: ResultsStore) -> None:
    with pytest.raises(DataNotFoundError, match="no runs are recorded yet"):
        store.run("bt-20240614-153000-aaaa")
    stats, _, _ = backtest_frames()
    store.write(backtest_run("bt-20240614-153000-aaaa"), stats=stats)
    store.write(backtest_run("bt-20240614-160000-bbbb"), stats=stats)
    with pytest.raises(DataNotFoundError, match="Did you mean 'bt-20240614-153000-aaaa'") as err:
        store.stats("bt-20240614-153000-aaab")
    assert "2 runs are recorded" in str(err.value)
    assert "alphaloom results list" in str(err.value)
    assert store.run("bt-20240614-16").run_id == "bt-20240614-160000-bbbb"  # a unique prefix is enough
    with pytest.raises(ConfigError, match="start of 2 runs"):
        store.run("bt-20240614")
    with pytest.raises(DataNotFoundError, match="Did you mean"):
        store.compare(["bt-20240614-153000-aaaa", "bt-20240614-160000-bbbc"])


def test_a_taken_id_needs_replace_and_replacing_drops_the_old_details(store: ResultsStore) -> None:
    stats, equity, trades = backtest_frames()
    store.write(backtest_run(), stats=stats, equity=equity, trades=trades)
    with pytest.raises(ConfigError, match="already recorded"):
        store.write(backtest_run(), stats=stats)
    store.write(backtest_run(), stats=stats.head(2), replace=True)
    assert len(store.stats("bt-20240614-153000-aaaa")) == 2
    assert store.equity("bt-20240614-153000-aaaa").empty
    assert store.trades("bt-20240614-153000-aaaa").empty
    store.delete("bt-20240614-153000-aaaa")
    assert store.runs() == []


def test_bad_frames_are_refused_and_nothing_is_recorded(store: ResultsStore) -> None:
    stats, equity, _trades = backtest_frames()
    naive = equity.assign(ts=equity["ts"].dt.tz_localize(None))
    with pytest.raises(DataFormatError, match="naive timestamps"):
        store.write(backtest_run(), stats=stats, equity=naive)
    with pytest.raises(DataFormatError, match="lacks column"):
        store.write(backtest_run(), stats=stats.drop(columns="label"))
    with pytest.raises(DataFormatError, match="more than once"):
        store.write(backtest_run(), stats=pd.concat([stats, stats.head(1)]))
    with pytest.raises(DataFormatError, match="two rows at"):
        store.write(backtest_run(), equity=pd.concat([equity, equity.head(1)]))
    with pytest.raises(ConfigError, match="only features and predictions runs hold vectors"):
        store.write(backtest_run(), vectors=pd.DataFrame({"symbol": ["A"], "ts": equity["ts"][:1], "x": 1.0}))
    assert store.runs() == []
    with pytest.raises(ConfigError, match="run id"):
        ResultRun("bad id!", "backtest", "demo", T0)
    with pytest.raises(ConfigError, match="Did you mean 'predictions'"):
        ResultRun("x", "prediction", "demo", T0)


def test_migrations_are_idempotent_and_a_newer_schema_is_refused(backend) -> None:
    with open_store(backend, migrate=False) as fresh:
        assert fresh.schema_version() == 0
        assert fresh.runs() == []  # nothing recorded, nothing created
        with pytest.raises(StorageError, match="alphaloom results migrate"):
            fresh.write(backtest_run())
        assert fresh.migrate() == [m.version for m in RESULTS_MIGRATIONS]
        assert fresh.migrate() == []
        with fresh._session("test") as s:  # a database written by a later alphaloom
            s.run(
                "INSERT INTO results_schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                [99, "from the future", T0],
            )
    with pytest.raises(StorageError, match="schema version 99, newer"):
        open_store(backend)


def test_duckdb_results_share_the_bar_store_file_without_disturbing_it(tmp_path: Path) -> None:
    path = tmp_path / "alphaloom.duckdb"
    ts = pd.date_range("2020-01-01", periods=3, tz="UTC")
    with DuckDBBarStore(path) as bars:
        bars.write_frame("features", pd.DataFrame({"symbol": "SPY", "ts": ts, "x": [1.0, 2.0, 3.0]}))
    stats, equity, _ = backtest_frames()
    with DuckDBResultsStore(path) as store:
        store.write(backtest_run(), stats=stats, equity=equity)
    with DuckDBBarStore(path) as bars:
        assert bars.frame_names() == ["features"]
    with DuckDBResultsStore(path, read_only=True) as reader:
        assert [r.run_id for r in reader.runs()] == ["bt-20240614-153000-aaaa"]
        with pytest.raises(StorageError):
            reader.write(backtest_run("bt-other"))
    with pytest.raises(DataNotFoundError, match="no results store"):
        DuckDBResultsStore(tmp_path / "missing.duckdb", read_only=True)


def test_run_ids_sort_by_time_and_carry_the_kind() -> None:
    a = make_run_id("backtest", T0)
    b = make_run_id(ResultKind.FEATURES, T0 + timedelta(seconds=1))
    assert a.startswith("bt-20240614-153000-")
    assert b.startswith("feat-20240614-153001-")
    assert len({make_run_id("live", T0) for _ in range(20)}) > 1
