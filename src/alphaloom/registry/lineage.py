"""Lineage of a registered model: the data, features, config and code it came from, and its parents."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

import alphaloom
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import DataFormatError
from alphaloom.core.timeutil import ensure_utc

__all__ = ["DataFingerprint", "Lineage", "code_version"]


def _config_dict(config: ComponentConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, ComponentConfig):
        return {"class": type(config).__name__, **config.model_dump(mode="json")}
    if isinstance(config, Mapping):
        return json.loads(json.dumps(dict(config), sort_keys=True, default=str))
    raise DataFormatError(
        f"training_config must be a ComponentConfig or a mapping of settings, got {type(config).__name__}."
    )


def _hash_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class DataFingerprint:
    """What a model was trained on: symbols, date range, row count and a hash of the bars themselves.

    Attributes
    ----------
    symbols
        The symbols, sorted.
    start, end
        First and last bar time (UTC) of the training data.
    n_rows
        Number of bars.
    sha256
        SHA-256 (hex) of the bars' ``symbol, ts, open, high, low, close, volume`` values, row order
        included: the same bars give the same hash on any machine.
    """

    symbols: tuple[str, ...]
    start: datetime
    end: datetime
    n_rows: int
    sha256: str

    @classmethod
    def from_bars(cls, bars: pd.DataFrame) -> DataFingerprint:
        """Fingerprint a canonical bars frame (``symbol, ts, open, high, low, close, volume``)."""
        required = ["symbol", "ts", "open", "high", "low", "close", "volume"]
        if not isinstance(bars, pd.DataFrame):
            raise DataFormatError(f"from_bars expects a bars DataFrame, got {type(bars).__name__}.")
        missing = [c for c in required if c not in bars.columns]
        if missing:
            raise DataFormatError(
                f"the bars frame lacks column(s) {missing}; a fingerprint needs {required} (a canonical bars "
                "frame, as load_sample or the store returns)."
            )
        if bars.empty:
            raise DataFormatError("cannot fingerprint an empty bars frame; the model was trained on no data.")
        frame = bars[required].sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        ts = pd.DatetimeIndex(frame["ts"])
        if ts.tz is None:
            raise DataFormatError("bar times must be timezone-aware UTC to fingerprint them.")
        digest = hashlib.sha256()
        digest.update(",".join(required).encode())
        # Times as UTC nanoseconds: the hash must not depend on how pandas renders a timezone.
        hashable = frame.assign(ts=ts.asi8, symbol=frame["symbol"].astype(str))
        digest.update(pd.util.hash_pandas_object(hashable, index=False).to_numpy().tobytes())
        return cls(
            symbols=tuple(sorted(frame["symbol"].astype(str).unique())),
            start=ts.min().to_pydatetime(),
            end=ts.max().to_pydatetime(),
            n_rows=len(frame),
            sha256=digest.hexdigest(),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbols": list(self.symbols),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "n_rows": self.n_rows,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataFingerprint:
        try:
            return cls(
                symbols=tuple(data["symbols"]),
                start=ensure_utc(datetime.fromisoformat(data["start"]), name="start"),
                end=ensure_utc(datetime.fromisoformat(data["end"]), name="end"),
                n_rows=int(data["n_rows"]),
                sha256=str(data["sha256"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"malformed data fingerprint {dict(data)!r}: {exc}") from exc


@dataclass(frozen=True, slots=True, init=False)
class Lineage:
    """Where a model version came from; stored with it in the registry and returned by ``show``.

    Attributes
    ----------
    data
        Fingerprint of the training bars.
    feature_config_hash
        :meth:`ComponentConfig.config_hash` of the feature pipeline's config.
    training_config
        The model's training config as JSON-able values (a ``ComponentConfig`` is dumped with its class).
    code_version
        alphaloom's version and git commit (:func:`code_version`).
    parents
        References ``"name/version"`` of the registered models this one was built from (the forecaster
        whose forecasts an agent observes, the agents of an ensemble).
    """

    data: DataFingerprint
    feature_config_hash: str
    training_config: Mapping[str, Any]
    code_version: str
    parents: tuple[str, ...]

    def __init__(
        self,
        data: DataFingerprint,
        feature_config_hash: str,
        training_config: ComponentConfig | Mapping[str, Any],
        code_version: str | None = None,
        parents: Sequence[str] = (),
    ) -> None:
        if not isinstance(data, DataFingerprint):
            raise DataFormatError(
                f"Lineage.data must be a DataFingerprint (DataFingerprint.from_bars(bars)), got "
                f"{type(data).__name__}."
            )
        if not isinstance(feature_config_hash, str) or not feature_config_hash:
            raise DataFormatError(
                f"feature_config_hash must be a non-empty string (FeatureConfig.config_hash()), got "
                f"{feature_config_hash!r}."
            )
        refs = tuple(parents)
        for ref in refs:
            if not (isinstance(ref, str) and ref.count("/") == 1 and ref.split("/")[1].isdigit()):
                raise DataFormatError(
                    f"a parent must be a 'name/version' reference like 'cnn_lstm/3', got {ref!r}."
                )
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "feature_config_hash", feature_config_hash)
        object.__setattr__(self, "training_config", _config_dict(training_config))
        object.__setattr__(self, "code_version", code_version or _code_version())
        object.__setattr__(self, "parents", refs)

    @property
    def training_config_hash(self) -> str:
        """A 16-hex-digit hash of :attr:`training_config`."""
        return _hash_json(self.training_config)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data.to_dict(),
            "feature_config_hash": self.feature_config_hash,
            "training_config": dict(self.training_config),
            "training_config_hash": self.training_config_hash,
            "code_version": self.code_version,
            "parents": list(self.parents),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        try:
            return cls(
                data=DataFingerprint.from_dict(data["data"]),
                feature_config_hash=data["feature_config_hash"],
                training_config=data["training_config"],
                code_version=data["code_version"],
                parents=tuple(data.get("parents", ())),
            )
        except KeyError as exc:
            raise DataFormatError(f"malformed lineage record: missing {exc}.") from exc


_CODE_VERSION: str | None = None


def _code_version() -> str:
    global _CODE_VERSION
    if _CODE_VERSION is None:
        _CODE_VERSION = code_version()
    return _CODE_VERSION


def code_version() -> str:
    """alphaloom's version and, in a git checkout, its commit: ``"0.1.0+g1a2b3c4d5e6f"`` (``.dirty`` when the
    working tree has uncommitted changes); the bare version outside a checkout."""
    base = alphaloom.__version__
    root = Path(alphaloom.__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+g{sha[:12]}" + (".dirty" if dirty else "") if sha else base
