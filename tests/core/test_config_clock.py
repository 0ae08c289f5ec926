"""Configs (unknown keys, files, hashing) and clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import Field

from alphaloom.core import AlphaloomError, ComponentConfig, ConfigError, DataNotFoundError, SimulatedClock
from alphaloom.core.clock import LiveClock
from alphaloom.core.config import load_config


class DemoCfg(ComponentConfig):
    learning_rate: float = Field(default=1e-3, gt=0)
    epochs: int = 3


def test_unknown_key_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'learning_rate'"):
        DemoCfg.from_dict({"learning_rat": 0.1})


def test_bad_value_names_the_field() -> None:
    with pytest.raises(ConfigError, match="learning_rate"):
        DemoCfg.from_dict({"learning_rate": -1})


def test_hash_is_stable_and_content_sensitive() -> None:
    assert DemoCfg().config_hash() == DemoCfg().config_hash()
    assert DemoCfg().config_hash() != DemoCfg(epochs=4).config_hash()
    assert DemoCfg().replace(epochs=4) == DemoCfg(epochs=4)


def test_configs_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        DemoCfg().epochs = 5  # type: ignore[misc]


def test_load_from_toml_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[model]\nepochs = 7\n")
    (tmp_path / "b.yaml").write_text("model:\n  learning_rate: 0.5\n")
    assert load_config(DemoCfg, tmp_path / "a.toml", "model").epochs == 7
    assert load_config(DemoCfg, tmp_path / "b.yaml", "model").learning_rate == 0.5
    with pytest.raises(ConfigError, match=r"no \[modle\] section. Did you mean 'model'"):
        load_config(DemoCfg, tmp_path / "a.toml", "modle")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_config(DemoCfg, tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(DemoCfg, tmp_path / "bad.toml")


def test_simulated_clock_never_goes_back() -> None:
    t0 = datetime(2021, 1, 1, tzinfo=UTC)
    clock = SimulatedClock(t0)
    clock.advance_to(t0 + timedelta(days=1))
    assert clock.now() == t0 + timedelta(days=1)
    with pytest.raises(AlphaloomError, match="cannot go back"):
        clock.advance_to(t0)
    assert LiveClock().now().tzinfo is UTC
