"""Data-quality checks for bars frames: quarantine what is unusable, report what is suspicious.

The validator never drops a row silently: every input row ends up either in ``clean`` or in ``quarantined``
(with the check it failed and why), so ``len(clean) + len(quarantined) == len(bars)``.

Checks, in the order a row is judged:

=====================  =========  ===========  ====================================================
check                  severity   quarantined  what
=====================  =========  ===========  ====================================================
``missing_price``      error      yes          an OHLC value is NaN or infinite
``non_positive_price`` error      yes          an OHLC value is zero or negative
``ohlc_inconsistent``  error      yes          ``high`` below, or ``low`` above, another price
``negative_volume``    error      yes          volume below zero (or infinite)
``duplicate``          error      yes          a repeat of (symbol, ts); the first valid copy is kept
``return_outlier``     warning    optional     close-to-close log return with robust |z| above threshold
``zero_volume``        warning    no           volume 0 for an instrument that trades volume
``missing_volume``     warning    no           NaN volume; *info* for forex and other quote-only data
``gap``                warning    no           missing days against the instrument's calendar
``off_calendar``       warning    no           weekend bars on XNYS; *info* for 24/5 (Sunday opens)
``no_instrument``      info       no           no instrument metadata: gap and calendar checks skipped
=====================  =========  ===========  ====================================================

Everything is vectorised; the 63k-row sample stock panel validates in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import DataValidationError
from alphaloom.core.types import BAR_COLUMNS
from alphaloom.data._frames import PRICE_COLUMNS, coerce_bars
from alphaloom.data.instruments import Instrument

__all__ = ["CHECKS", "DataValidator", "Issue", "Severity", "ValidationResult", "ValidatorConfig"]

Severity = Literal["error", "warning", "info"]

#: Names of the checks, in the order they are applied and reported.
CHECKS: tuple[str, ...] = (
    "missing_price",
    "non_positive_price",
    "ohlc_inconsistent",
    "negative_volume",
    "duplicate",
    "return_outlier",
    "zero_volume",
    "missing_volume",
    "gap",
    "off_calendar",
    "no_instrument",
)

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
_WEEKDAYS = "1111100"
_MAX_LISTED = 5


class ValidatorConfig(ComponentConfig):
    """Settings of :class:`DataValidator`.

    Parameters
    ----------
    outlier_z_threshold
        A close-to-close log return whose robust z-score (distance from the symbol's median return in units
        of 1.4826 x MAD) exceeds this is an outlier. 12 flags crashes and bad ticks, not ordinary volatility.
    quarantine_outliers
        Move outlier bars to the quarantine instead of only warning. Off by default: real crashes are
        outliers too. A one-bar spike that reverts on the next bar flags only the spike.
    min_returns_for_outliers
        Symbols with fewer returns than this are not outlier-checked (median and MAD would be noise).
    max_gap_business_days
        XNYS: report gaps of more than this many missing Monday-to-Friday days. Holidays are not modelled,
        so the default of 4 keeps them (and holiday-adjacent closures) out of the report.
    max_gap_weekdays
        24/5: report gaps of more than this many missing weekdays. Forex feeds skip one or two weekday bars
        around Christmas and New Year, so the default of 2 keeps those out of the report.
    max_gap_days
        24/7: report gaps of more than this many missing calendar days.
    strict
        Raise :class:`~alphaloom.core.exceptions.DataValidationError` when any row is quarantined.
    """

    outlier_z_threshold: float = Field(default=12.0, gt=0)
    quarantine_outliers: bool = False
    min_returns_for_outliers: int = Field(default=20, ge=3)
    max_gap_business_days: int = Field(default=4, ge=0)
    max_gap_weekdays: int = Field(default=2, ge=0)
    max_gap_days: int = Field(default=0, ge=0)
    strict: bool = False


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding about one symbol.

    Row checks give one issue per (check, symbol): ``count`` rows, ``ts`` of the first. A gap gives one
    issue per gap: ``ts`` is its first missing day and ``count`` the missing days. ``ts`` is ``None`` for
    findings about the symbol as a whole (``no_instrument``).
    """

    check: str
    severity: Severity
    symbol: str
    ts: pd.Timestamp | None
    message: str
    count: int = 1

    def __str__(self) -> str:
        return f"[{self.severity}] {self.check} {self.symbol}: {self.message}"


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of :meth:`DataValidator.validate`.

    Attributes
    ----------
    clean
        Bars that passed, as a canonical bars frame sorted by (symbol, ts), unique on (symbol, ts).
    quarantined
        The other rows, with their original values plus ``check`` (the first check failed) and ``reason``
        (every failure, ``"; "``-separated), sorted by (symbol, ts).
    issues
        Findings, ordered by check (see :data:`CHECKS`), then symbol and time.
    """

    clean: pd.DataFrame
    quarantined: pd.DataFrame
    issues: tuple[Issue, ...] = field(default_factory=tuple)

    @property
    def n_input(self) -> int:
        return len(self.clean) + len(self.quarantined)

    @property
    def has_errors(self) -> bool:
        return any(i.severity == "error" for i in self.issues)

    def by_check(self, check: str) -> list[Issue]:
        """Issues of one check."""
        return [i for i in self.issues if i.check == check]

    def summary(self) -> pd.DataFrame:
        """The issues as a frame: ``check, severity, symbol, ts, count, message``."""
        return pd.DataFrame(
            {
                "check": pd.Series([i.check for i in self.issues], dtype="str"),
                "severity": pd.Series([i.severity for i in self.issues], dtype="str"),
                "symbol": pd.Series([i.symbol for i in self.issues], dtype="str"),
                "ts": pd.Series([i.ts for i in self.issues], dtype="datetime64[ns, UTC]"),
                "count": pd.Series([i.count for i in self.issues], dtype="int64"),
                "message": pd.Series([i.message for i in self.issues], dtype="str"),
            }
        )

    def to_text(self) -> str:
        """A short human-readable report: totals, then one line per issue."""
        counts = {s: sum(i.severity == s for i in self.issues) for s in _SEVERITY_ORDER}
        lines = [
            f"{self.n_input:,} bars: {len(self.clean):,} clean, {len(self.quarantined):,} quarantined; "
            f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info."
        ]
        lines.extend(f"  {issue}" for issue in self.issues)
        return "\n".join(lines)


class DataValidator:
    """Checks a bars frame and splits it into clean and quarantined rows.

    Parameters
    ----------
    config
        :class:`ValidatorConfig`; the defaults suit daily bars.

    Examples
    --------
    >>> from alphaloom.data import SAMPLE_INSTRUMENTS, DataValidator, ValidatorConfig, load_sample
    >>> result = DataValidator(ValidatorConfig()).validate(load_sample("fx_daily"), SAMPLE_INSTRUMENTS)
    >>> len(result.quarantined)
    0
    """

    def __init__(self, config: ValidatorConfig | None = None) -> None:
        self.config = config if config is not None else ValidatorConfig()

    def validate(
        self, bars: pd.DataFrame, instruments: Mapping[str, Instrument] | None = None
    ) -> ValidationResult:
        """Run every check on ``bars``.

        Parameters
        ----------
        bars
            A bars frame (``symbol, ts, open, high, low, close, volume``; ``ts`` timezone-aware). It may be
            unsorted and hold bad values: judging them is the point. Not modified.
        instruments
            Metadata by symbol, for the calendar and whether volume is expected (e.g.
            :data:`~alphaloom.data.instruments.SAMPLE_INSTRUMENTS` or ``store.instruments()``). Symbols
            without metadata are checked as if they trade volume, and gap and calendar checks are skipped.

        Returns
        -------
        ValidationResult

        Raises
        ------
        DataFormatError
            ``bars`` is structurally invalid (missing columns, naive or missing timestamps).
        DataValidationError
            ``config.strict`` is set and some rows were quarantined.
        """
        frame = coerce_bars(bars, where="validate()")
        instruments = dict(instruments or {})
        # Stable sort: among duplicate keys the earliest input row comes first and is the one kept.
        frame = frame.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        issues: list[Issue] = []

        failures = _row_failures(frame)
        bad_any = np.zeros(len(frame), dtype=bool)
        for mask, _reason in failures.values():
            bad_any |= mask
        dup = _duplicates(frame, bad_any)
        failures["duplicate"] = dup
        bad_any |= dup[0]

        ok = frame.loc[~bad_any]
        outlier_mask, outlier_issues = self._outliers(ok)
        issues.extend(outlier_issues)
        if self.config.quarantine_outliers and outlier_mask.any():
            flagged = np.zeros(len(frame), dtype=bool)
            flagged[ok.index[outlier_mask]] = True
            reason = np.full(len(frame), "", dtype=object)
            reason[flagged] = "close-to-close return is an outlier (robust z above threshold)"
            failures["return_outlier"] = (flagged, reason)
            bad_any |= flagged
            ok = frame.loc[~bad_any]

        for check, (mask, _) in failures.items():
            if check != "return_outlier":
                issues.extend(_row_issues(frame, mask, check, "error", _ROW_MESSAGES[check]))
        issues.extend(_volume_issues(ok, instruments))
        issues.extend(self._calendar_issues(ok, instruments))

        clean = ok.loc[:, list(BAR_COLUMNS)].reset_index(drop=True)
        quarantined = _quarantined(frame, bad_any, failures)
        order = {c: k for k, c in enumerate(CHECKS)}
        issues.sort(
            key=lambda i: (
                order[i.check],
                i.symbol,
                i.ts if i.ts is not None else pd.Timestamp(0, tz="UTC"),
            )
        )
        result = ValidationResult(clean=clean, quarantined=quarantined, issues=tuple(issues))
        if self.config.strict and len(quarantined):
            raise DataValidationError(
                f"strict validation failed: {len(quarantined)} row(s) quarantined.\n{result.to_text()}"
            )
        return result

    # ------------------------------------------------------------------ series checks

    def _outliers(self, ok: pd.DataFrame) -> tuple[np.ndarray, list[Issue]]:
        cfg = self.config
        if ok.empty:
            return np.zeros(0, dtype=bool), []
        symbol = ok["symbol"].to_numpy()
        same = np.r_[False, symbol[1:] == symbol[:-1]]
        log_close = np.log(ok["close"].to_numpy())
        ret = np.where(same, log_close - np.r_[np.nan, log_close[:-1]], np.nan)
        returns = pd.Series(ret, index=ok.index)
        groups = returns.groupby(ok["symbol"], sort=False)
        median = groups.transform("median")
        mad = (returns - median).abs().groupby(ok["symbol"], sort=False).transform("median")
        n_returns = groups.transform("count")
        scale = _MAD_TO_SIGMA * mad
        usable = (scale > 0) & (n_returns >= cfg.min_returns_for_outliers)
        z = ((returns - median) / scale.where(usable)).to_numpy()
        out = np.abs(np.nan_to_num(z, nan=0.0)) > cfg.outlier_z_threshold
        # The return out of a one-bar spike is an outlier of opposite sign: flag only the spike itself.
        prev_out = np.r_[False, out[:-1]] & same
        prev_sign = np.r_[0.0, np.sign(ret[:-1])]
        reversal = out & prev_out & (np.sign(ret) == -prev_sign)
        flagged = out & ~reversal
        issues = []
        for sym in pd.unique(symbol[flagged]):
            idx = np.flatnonzero(flagged & (symbol == sym))
            listed = ", ".join(
                f"{_day(ok['ts'].iloc[k])} ({np.expm1(ret[k]):+.1%}, z={z[k]:+.1f})"
                for k in idx[:_MAX_LISTED]
            )
            more = f" and {len(idx) - _MAX_LISTED} more" if len(idx) > _MAX_LISTED else ""
            action = "quarantined" if cfg.quarantine_outliers else "kept"
            issues.append(
                Issue(
                    "return_outlier",
                    "warning",
                    str(sym),
                    ok["ts"].iloc[idx[0]],
                    f"{len(idx)} close-to-close return(s) beyond |z| {cfg.outlier_z_threshold:g} ({action}): "
                    f"{listed}{more}.",
                    len(idx),
                )
            )
        return flagged, issues

    def _calendar_issues(self, ok: pd.DataFrame, instruments: Mapping[str, Instrument]) -> list[Issue]:
        cfg = self.config
        if ok.empty:
            return []
        issues: list[Issue] = []
        symbols = pd.unique(ok["symbol"])
        issues.extend(
            Issue(
                "no_instrument",
                "info",
                str(sym),
                None,
                "no instrument metadata: gap and calendar checks skipped, volume expected; "
                "pass instruments= to check them.",
            )
            for sym in symbols
            if sym not in instruments
        )
        days = ok.loc[ok["symbol"].isin(instruments), ["symbol"]].copy()
        if days.empty:
            return issues
        days["day"] = ok.loc[days.index, "ts"].dt.tz_convert(None).to_numpy().astype("datetime64[D]")
        days = days.drop_duplicates().reset_index(drop=True)  # ok is sorted, so days stay sorted
        symbol = days["symbol"].to_numpy()
        day = days["day"].to_numpy().astype("datetime64[D]")
        calendar = np.array([instruments[s].calendar for s in symbol])

        weekday = (day.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        weekend = weekday >= 5
        for cal, severity, label in (
            ("XNYS", "warning", "weekend bar(s) on an exchange calendar"),
            ("24/5", "info", "weekend boundary bar(s) (usual for forex feeds)"),
        ):
            hit = weekend & (calendar == cal)
            for sym in pd.unique(symbol[hit]):
                sel = hit & (symbol == sym)
                first, last = day[sel][0], day[sel][-1]
                issues.append(
                    Issue(
                        "off_calendar",
                        severity,
                        str(sym),
                        pd.Timestamp(first, tz="UTC"),
                        f"{int(sel.sum())} {label}, {first}..{last}.",
                        int(sel.sum()),
                    )
                )

        same = symbol[1:] == symbol[:-1]
        prev, cur, cal = day[:-1][same], day[1:][same], calendar[1:][same]
        sym_pairs = symbol[1:][same]
        one = np.timedelta64(1, "D")
        missing = np.zeros(len(prev), dtype="int64")
        weekly = cal != "24/7"
        missing[~weekly] = (cur[~weekly] - prev[~weekly]).astype("int64") - 1
        missing[weekly] = np.busday_count(prev[weekly] + one, cur[weekly], weekmask=_WEEKDAYS)
        limit = np.select(
            [cal == "XNYS", cal == "24/5"],
            [cfg.max_gap_business_days, cfg.max_gap_weekdays],
            cfg.max_gap_days,
        )
        for k in np.flatnonzero(missing > limit):
            if cal[k] == "24/7":
                first, last, unit = prev[k] + one, cur[k] - one, "day(s)"
            else:
                first = np.busday_offset(prev[k], 1, roll="backward", weekmask=_WEEKDAYS)
                last = np.busday_offset(cur[k], -1, roll="forward", weekmask=_WEEKDAYS)
                unit = "business day(s)" if cal[k] == "XNYS" else "weekday(s)"
            issues.append(
                Issue(
                    "gap",
                    "warning",
                    str(sym_pairs[k]),
                    pd.Timestamp(first, tz="UTC"),
                    f"no bars from {first} to {last}: {missing[k]} {unit} missing on calendar {cal[k]} "
                    f"(bars {prev[k]} and {cur[k]}).",
                    int(missing[k]),
                )
            )
        return issues


# ---------------------------------------------------------------------- row checks


def _day(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def _span(ts: pd.Series) -> str:
    first, last = ts.iloc[0], ts.iloc[-1]
    return _day(first) if first == last else f"{_day(first)}..{_day(last)}"


def _row_failures(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per check: a mask over ``frame`` and per-row reason text (filled only where the mask is True)."""
    prices = frame.loc[:, list(PRICE_COLUMNS)].to_numpy()
    n = len(frame)
    finite = np.isfinite(prices)
    missing = ~finite.all(axis=1)
    with np.errstate(invalid="ignore"):
        non_positive = (finite & (prices <= 0)).any(axis=1)
        o, h, lo, c = prices.T
        usable = ~missing & ~non_positive
        high_bad = usable & (h < np.maximum(np.maximum(o, c), lo))
        low_bad = usable & (lo > np.minimum(np.minimum(o, c), h))
    inconsistent = high_bad | low_bad
    volume = frame["volume"].to_numpy()
    with np.errstate(invalid="ignore"):
        bad_volume = (volume < 0) | np.isposinf(volume)

    def reasons(mask: np.ndarray, text: Callable[[int], str]) -> np.ndarray:
        out = np.full(n, "", dtype=object)
        for k in np.flatnonzero(mask):
            out[k] = text(k)
        return out

    names = PRICE_COLUMNS

    def describe_missing(k: int) -> str:
        cols = [names[j] for j in range(4) if not finite[k, j]]
        return f"{', '.join(cols)} missing or infinite"

    def describe_non_positive(k: int) -> str:
        cols = [f"{names[j]}={prices[k, j]:g}" for j in range(4) if finite[k, j] and prices[k, j] <= 0]
        return f"non-positive price ({', '.join(cols)})"

    def describe_inconsistent(k: int) -> str:
        return (
            f"OHLC inconsistent: need low <= open, close <= high, got open={o[k]:g} high={h[k]:g} "
            f"low={lo[k]:g} close={c[k]:g}"
        )

    return {
        "missing_price": (missing, reasons(missing, describe_missing)),
        "non_positive_price": (non_positive, reasons(non_positive, describe_non_positive)),
        "ohlc_inconsistent": (inconsistent, reasons(inconsistent, describe_inconsistent)),
        "negative_volume": (bad_volume, reasons(bad_volume, lambda k: f"volume {volume[k]:g} is not >= 0")),
    }


def _duplicates(frame: pd.DataFrame, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Repeats of (symbol, ts) among rows that passed the value checks; the first such copy is kept."""
    good = frame.loc[~bad, ["symbol", "ts", "close"]]
    repeat = good.duplicated(["symbol", "ts"], keep="first")
    mask = np.zeros(len(frame), dtype=bool)
    reason = np.full(len(frame), "", dtype=object)
    if not repeat.any():
        return mask, reason
    kept_close = good.groupby(["symbol", "ts"], sort=False)["close"].transform("first")
    for label in repeat.index[repeat.to_numpy()]:
        mask[label] = True
        kept, this = kept_close.at[label], frame.at[label, "close"]
        differs = "" if kept == this else f" (its close {kept:g} differs from this copy's {this:g})"
        reason[label] = f"duplicate (symbol, ts); the first copy is kept{differs}"
    return mask, reason


_ROW_MESSAGES = {
    "missing_price": "bar(s) with a missing or infinite price",
    "non_positive_price": "bar(s) with a zero or negative price",
    "ohlc_inconsistent": "bar(s) whose high/low do not bracket open and close",
    "negative_volume": "bar(s) with negative or infinite volume",
    "duplicate": "repeated (symbol, ts) bar(s); the first valid copy is kept",
}


def _row_issues(
    frame: pd.DataFrame, mask: np.ndarray, check: str, severity: Severity, what: str
) -> list[Issue]:
    if not mask.any():
        return []
    hits = frame.loc[mask, ["symbol", "ts"]]
    issues = []
    for sym, grp in hits.groupby("symbol", sort=True):
        span = _span(grp["ts"])
        issues.append(
            Issue(
                check,
                severity,
                str(sym),
                grp["ts"].iloc[0],
                f"{len(grp)} {what} ({span}); quarantined.",
                len(grp),
            )
        )
    return issues


def _volume_issues(ok: pd.DataFrame, instruments: Mapping[str, Instrument]) -> list[Issue]:
    issues: list[Issue] = []
    if ok.empty:
        return issues
    volume = ok["volume"]
    stats = pd.DataFrame({"symbol": ok["symbol"], "ts": ok["ts"], "zero": volume.eq(0), "nan": volume.isna()})
    for sym, grp in stats.groupby("symbol", sort=True):
        inst = instruments.get(sym)
        has_volume = inst.has_volume if inst is not None else True
        n_nan = int(grp["nan"].sum())
        if n_nan:
            ts_nan = grp.loc[grp["nan"], "ts"]
            span = _span(ts_nan)
            if has_volume:
                issues.append(
                    Issue(
                        "missing_volume",
                        "warning",
                        str(sym),
                        ts_nan.iloc[0],
                        f"{n_nan} of {len(grp)} bar(s) have no volume ({span}).",
                        n_nan,
                    )
                )
            else:
                kind = inst.asset_class.value if inst is not None else "quote-only"
                issues.append(
                    Issue(
                        "missing_volume",
                        "info",
                        str(sym),
                        ts_nan.iloc[0],
                        f"{n_nan} of {len(grp)} bar(s) have no volume, as expected for {kind} quotes.",
                        n_nan,
                    )
                )
        n_zero = int(grp["zero"].sum())
        if n_zero and has_volume:
            ts_zero = grp.loc[grp["zero"], "ts"]
            span = _span(ts_zero)
            issues.append(
                Issue(
                    "zero_volume",
                    "warning",
                    str(sym),
                    ts_zero.iloc[0],
                    f"{n_zero} of {len(grp)} bar(s) have zero volume ({span}); kept.",
                    n_zero,
                )
            )
    return issues


def _quarantined(
    frame: pd.DataFrame, bad: np.ndarray, failures: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> pd.DataFrame:
    rows = frame.loc[bad, list(BAR_COLUMNS)].copy()
    idx = np.flatnonzero(bad)
    check = np.full(len(idx), "", dtype=object)
    reason = np.full(len(idx), "", dtype=object)
    for name in CHECKS:
        if name not in failures:
            continue
        mask, text = failures[name]
        sub_mask, sub_text = mask[idx], text[idx]
        first = sub_mask & (check == "")
        check[first] = name
        joined = np.where(reason == "", sub_text, reason + "; " + sub_text)
        reason = np.where(sub_mask, joined, reason)
    rows["check"] = pd.Series(check, index=rows.index, dtype="str")
    rows["reason"] = pd.Series(reason, index=rows.index, dtype="str")
    return rows.reset_index(drop=True)
