"""The real daily market data shipped inside the package, for demos, tests and offline development.

Three sets, all Apache-2.0 sources (see DATA.md at the repository root for provenance and quirks):

- ``"us_equities_daily"``: 14 US stocks and ETFs, 1998-2021, split- and dividend-adjusted.
- ``"fx_daily"``: EURUSD, GBPUSD, NZDUSD, EURGBP mid prices, 2007-2018, no volume.
- ``"crypto_daily"``: Bitstamp BTCUSD, ETHUSD, LTCUSD, 2014-2020.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pandas as pd

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, did_you_mean
from alphaloom.data._frames import sort_bars
from alphaloom.data.loaders import read_bars_file

__all__ = ["SAMPLE_SETS", "load_sample", "sample_path"]

#: Names of the shipped sample sets, accepted by :func:`sample_path` and :func:`load_sample`.
SAMPLE_SETS: tuple[str, ...] = ("us_equities_daily", "fx_daily", "crypto_daily")


def sample_path(name: str) -> Path:
    """Path of the gzip CSV of one sample set.

    Raises
    ------
    ConfigError
        ``name`` is not one of :data:`SAMPLE_SETS` (the message suggests the closest).
    DataNotFoundError
        The installed package lacks the file (a build without package data).
    """
    if name not in SAMPLE_SETS:
        raise ConfigError(
            f"unknown sample set {name!r}.{did_you_mean(str(name), SAMPLE_SETS)} "
            f"Available: {', '.join(SAMPLE_SETS)}."
        )
    # The package is installed from a directory (wheel or editable), so the resource is a real file.
    path = Path(str(resources.files("alphaloom.data").joinpath("sample", f"{name}.csv.gz")))
    if not path.is_file():
        raise DataNotFoundError(
            f"sample file {path} is missing from the installed package; reinstall alphaloom, or from a "
            f"checkout run `python scripts/build_sample_data.py`."
        )
    return path


def load_sample(names: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Load one or more sample sets as a single bars frame.

    Parameters
    ----------
    names
        A set name, a sequence of them, or ``None`` for all of :data:`SAMPLE_SETS`.

    Returns
    -------
    pandas.DataFrame
        A bars frame (``symbol, ts, open, high, low, close, volume``; ``ts`` UTC), sorted by (symbol, ts).
        Daily bars are labelled with their session date at 00:00 UTC. Forex volume is NaN.
    """
    if names is None:
        chosen: list[str] = list(SAMPLE_SETS)
    elif isinstance(names, str):
        chosen = [names]
    else:
        chosen = list(dict.fromkeys(names))
        if not chosen:
            raise ConfigError(
                f"load_sample() got no set names; pass some of {', '.join(SAMPLE_SETS)} or None."
            )
    frames = [read_bars_file(sample_path(name)) for name in chosen]
    return frames[0] if len(frames) == 1 else sort_bars(pd.concat(frames, ignore_index=True))
