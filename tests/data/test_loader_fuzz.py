"""Fuzzing read_bars_file with randomly corrupted real files (hypothesis).

The seeds are slices of the shipped real samples (FX, US equities, crypto) written as CSV, gzip CSV and
Parquet. Hypothesis flips, inserts, deletes and truncates bytes, and rewrites CSV cells with hostile text.
Every outcome must be either a canonical bars frame or one of our errors (an ``AlphaloomError`` with a
message); any other exception, a crash or a malformed frame fails the test. Run with
``--hypothesis-show-statistics`` to see how many examples ran.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import AlphaloomError, DataFormatError
from alphaloom.core.types import BAR_COLUMNS
from alphaloom.data import read_bars_file
from alphaloom.data.sample import sample_path

SETS = ("fx_daily", "us_equities_daily", "crypto_daily")
# ALPHALOOM_FUZZ_EXAMPLES=5000 for a longer run (nightly, or after changing the loaders).
FUZZ = settings(
    max_examples=int(os.environ.get("ALPHALOOM_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)


def _seed_text(name: str, rows: int = 30) -> str:
    with gzip.open(sample_path(name), "rt", encoding="utf-8") as fh:
        return "".join(next(fh) for _ in range(rows + 1))


SEED_CSV = {name: _seed_text(name) for name in SETS}


def _parquet_bytes(text: str) -> bytes:
    frame = pd.read_csv(io.StringIO(text), dtype={"symbol": "str"})
    buf = io.BytesIO()
    frame.to_parquet(buf)
    return buf.getvalue()


SEED_BYTES = {
    (name, suffix): data
    for name, text in SEED_CSV.items()
    for suffix, data in (
        (".csv", text.encode()),
        (".csv.gz", gzip.compress(text.encode(), mtime=0)),
        (".parquet", _parquet_bytes(text)),
    )
}


def check_outcome(data: bytes, suffix: str, **kwargs: object) -> pd.DataFrame | None:
    """Read ``data`` as a file with ``suffix``; the frame if valid, ``None`` if one of our errors."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bars{suffix}"
        path.write_bytes(data)
        try:
            frame = read_bars_file(path, **kwargs)  # type: ignore[arg-type]
        except AlphaloomError as exc:
            message = str(exc).strip()
        else:
            message = None
    if message is not None:
        assert message, "an error without a message"
        return None
    assert list(frame.columns) == list(BAR_COLUMNS)
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"].notna().all()
    assert len(frame) > 0
    for col in ("open", "high", "low", "close", "volume"):
        assert frame[col].dtype == "float64"
    return frame


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[bytes, str]:
    name = draw(st.sampled_from(SETS))
    suffix = draw(st.sampled_from([".csv", ".csv.gz", ".parquet"]))
    data = bytearray(SEED_BYTES[(name, suffix)])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif kind == "truncate":
            del data[pos:]
        else:
            span = draw(st.integers(1, 64))
            data[pos:pos] = data[pos : pos + span]
    return bytes(data), suffix


@FUZZ
@given(case=corrupted())
def test_randomly_corrupted_files_give_a_frame_or_our_error(case: tuple[bytes, str]) -> None:
    data, suffix = case
    check_outcome(data, suffix)


_HOSTILE = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e309",
            "-0",
            "0x1F",
            "1,5",
            '"quoted"',
            "'",
            '"',
            "\n",
            "\r\n",
            "9999-12-31",
            "0001-01-01",
            "2020-02-30",
            "2020-01-01T25:00:00",
            "2020-01-01 00:00:00+99:00",
            "1700000000",
            "True",
            "None",
            "NULL",
            "\x00",
            "é",
            "\ufeff",
            "ts",
            "symbol",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
)


@FUZZ
@given(
    name=st.sampled_from(SETS),
    edits=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 6), _HOSTILE), min_size=1, max_size=8),
    gz=st.booleans(),
    symbol=st.sampled_from([None, "EURGBP", "SPY", "BTCUSD", "NOPE"]),
)
def test_hostile_csv_cells_give_a_frame_or_our_error(
    name: str, edits: list[tuple[int, int, str]], gz: bool, symbol: str | None
) -> None:
    lines = SEED_CSV[name].splitlines()
    rows = [line.split(",") for line in lines]
    for row_i, col_i, value in edits:
        row = rows[row_i % len(rows)]
        row[col_i % len(row)] = value
    text = "\n".join(",".join(r) for r in rows) + "\n"
    data = text.encode("utf-8", errors="surrogatepass")
    frame = check_outcome(
        gzip.compress(data, mtime=0) if gz else data, ".csv.gz" if gz else ".csv", symbol=symbol
    )
    if frame is not None and symbol is not None:
        assert set(frame["symbol"]) == {symbol}


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
@pytest.mark.parametrize("name", SETS)
def test_uncorrupted_seeds_read_as_the_real_data(name: str, suffix: str) -> None:
    frame = check_outcome(SEED_BYTES[(name, suffix)], suffix)
    assert frame is not None
    assert len(frame) == 30


# ------------------------------------------------------------ crashes the fuzzing found (regressions)


def test_a_row_longer_than_the_header_is_refused_not_shifted_or_truncated() -> None:
    # pandas took the first column as the index (so every value moved one column left), or with
    # index_col=False dropped the extra value with only a warning.
    lines = SEED_CSV["us_equities_daily"].splitlines()
    lines[1] = lines[1].replace(",", ",0,", 1)
    for at in (1, 5):
        rows = list(lines)
        if at == 5:
            rows[1], rows[5] = SEED_CSV["us_equities_daily"].splitlines()[1], lines[1]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bars.csv"
            path.write_text("\n".join(rows) + "\n")
            with pytest.raises(
                DataFormatError, match=rf"(more fields than its 7 header|fields) .*line {at + 1}"
            ):
                read_bars_file(path)


def test_parquet_text_with_invalid_utf8_is_a_format_error() -> None:
    data = SEED_BYTES[("fx_daily", ".parquet")]
    assert data.count(b"EURGBP") >= 1
    broken = data.replace(b"EURGBP", b"EUR\xffBP")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bars.parquet"
        path.write_bytes(broken)
        with pytest.raises(DataFormatError, match="not a readable Parquet file"):
            read_bars_file(path)
