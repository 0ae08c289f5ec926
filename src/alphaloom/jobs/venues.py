"""Building a venue connector for the CLI: the paper venue over the shipped data, or a live venue's config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alphaloom.core.exceptions import UnknownSymbolError

__all__ = ["make_connector", "venue_config"]


def venue_config(cls, config_file: Path | None):
    """A connector's config: its defaults (the vendor's live hosts) or a TOML/YAML file's settings.

    Credentials never go in this file: they come from the encrypted keystore (``$ALPHALOOM_KEYSTORE``) or
    ``ALPHALOOM_<VENUE>_*`` environment variables.
    """
    from alphaloom.core.config import read_config_file

    if config_file is None:
        return cls.config_class()
    return cls.config_class.from_dict(read_config_file(config_file), source=str(config_file))


def make_connector(
    venue: str,
    symbols: Sequence[str],
    *,
    config_file: Path | None = None,
    history: bool = False,
    **paper_settings: Any,
):
    """The connector for ``venue``.

    ``paper`` replays the shipped sample for ``symbols`` (``paper_settings`` go to its ``PaperConfig``); with
    ``history=True`` its clock is stood after the last bar, so every bar is closed history to fetch. Any
    other venue is built from its config (``config_file`` or the defaults).
    """
    from alphaloom.data.connectors import get_connector_class

    cls = get_connector_class(venue)
    if venue != "paper":
        from alphaloom.jobs.secrets import venue_secret_provider

        config = venue_config(cls, config_file)
        if config.secret_prefix:  # a custom environment prefix: the connector's own provider honours it
            return cls(config)
        # The keystore first (read at each use, so a rotated credential is picked up without a restart),
        # then the environment.
        return cls(config, secrets=venue_secret_provider(venue))
    from alphaloom.data.connectors.paper import PaperConfig
    from alphaloom.data.sample import load_sample

    sample = load_sample()
    missing = sorted(set(symbols) - set(sample["symbol"]))
    if missing:
        raise UnknownSymbolError(
            f"the paper venue replays the shipped sample, which has no {', '.join(missing)}; "
            f"choose from {', '.join(sorted(sample['symbol'].unique()))}."
        )
    bars = sample[sample["symbol"].isin(symbols)]
    if history:
        paper_settings = {**paper_settings, "start": bars["ts"].max()}
    connector = cls(PaperConfig(symbols=tuple(symbols), **paper_settings), bars=bars)
    if history:
        connector.run()
    return connector
