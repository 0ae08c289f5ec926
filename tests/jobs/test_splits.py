"""Walk-forward segments: ordered, disjoint, embargoed, and refusing too little data."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alphaloom.core.exceptions import EmptyRangeError
from alphaloom.jobs.config import RunConfig, SplitConfig
from alphaloom.jobs.splits import split_segments


@given(
    n=st.integers(1000, 5000),
    ff=st.floats(0.2, 0.6),
    af=st.floats(0.1, 0.3),
    embargo=st.integers(0, 20),
)
def test_segments_are_ordered_disjoint_and_embargoed(n: int, ff: float, af: float, embargo: int) -> None:
    ts = pd.date_range("2000-01-01", periods=n, freq="D", tz="UTC")
    seg = split_segments(ts, SplitConfig(forecaster_fraction=ff, agent_fraction=af, embargo_bars=embargo))
    assert seg.forecaster.start == 0
    assert seg.agent.start - seg.forecaster.stop == embargo
    assert seg.test.start - seg.agent.stop == embargo
    assert seg.test.stop == n
    assert seg.test.stop - seg.test.start >= 30
    bounds = seg.bounds()
    assert bounds["forecaster"][1] < bounds["agent"][0] < bounds["agent"][1] < bounds["test"][0]


def test_too_few_bars_is_a_clear_error() -> None:
    ts = pd.date_range("2000-01-01", periods=40, freq="D", tz="UTC")
    with pytest.raises(EmptyRangeError, match="too few to split"):
        split_segments(ts, SplitConfig())


def test_split_fractions_must_leave_a_test_segment() -> None:
    with pytest.raises(ValueError, match="left for testing"):
        SplitConfig(forecaster_fraction=0.7, agent_fraction=0.3)


def test_quick_config_is_smaller_than_default() -> None:
    quick, full = RunConfig.quick(), RunConfig()
    assert set(quick.symbols) < set(full.symbols)
    assert quick.rl_budget.ppo < full.rl_budget.ppo
    assert quick.config_hash() != full.config_hash()


def test_example_config_file_loads_and_rejects_typos(tmp_path) -> None:
    from pathlib import Path

    from alphaloom.core.config import read_config_file
    from alphaloom.core.exceptions import ConfigError

    example = Path(__file__).resolve().parents[2] / "examples" / "run.toml"
    cfg = RunConfig.from_dict(read_config_file(example), source=str(example))
    assert cfg.symbols == ("SPY", "AAPL", "EURUSD", "BTCUSD")
    assert cfg.split.embargo_bars == 5
    bad = tmp_path / "bad.toml"
    bad.write_text(example.read_text().replace("ensemble_window", "ensemble_windw"))
    with pytest.raises(ConfigError, match="Did you mean 'ensemble_window'"):
        RunConfig.from_dict(read_config_file(bad), source=str(bad))
