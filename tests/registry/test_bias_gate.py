"""The promotion gate's slice floors: off by default, and when set they reject a model whose worst market
slice falls below them (real SPY rule returns, worst slices from a real bias report)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.registry import (
    Approver,
    BiasConfig,
    ModelRegistry,
    PromotionEvidence,
    PromotionGate,
    PromotionGateConfig,
    Stage,
    returns_bias,
    slice_labels,
)

ADMIN, TRADER = Approver("alice", "admin"), Approver("bob", "trader")
LENIENT = {"min_deflated_sharpe": 0.0}


@pytest.fixture(scope="module")
def trend_worst(spy_bars: pd.DataFrame, strategy_returns: dict[str, np.ndarray]) -> dict:
    """The worst slices of the 200-day trend rule's real out-of-sample returns on SPY."""
    r = strategy_returns["trend_200"]
    test = spy_bars[spy_bars["ts"] >= pd.Timestamp("2010-01-01", tz="UTC")]
    frame = pd.DataFrame(
        {"symbol": "SPY", "ts": test["ts"].to_numpy()[1:], "return": r}
    )  # returns from bar 2
    report = returns_bias(frame, slice_labels(spy_bars), config=BiasConfig(n_permutations=199))
    return report.worst_slices()


def _evidence(returns: np.ndarray, worst: dict | None) -> PromotionEvidence:
    return PromotionEvidence(challenger_returns=returns, worst_slices=worst, source="SPY 2010-2021")


def test_floors_are_off_by_default(strategy_returns, trend_worst) -> None:
    assert PromotionGateConfig().min_slice_hit_rate is None
    assert PromotionGateConfig().min_slice_sharpe is None
    r = strategy_returns["trend_200"]
    decision = PromotionGate(PromotionGateConfig(**LENIENT)).evaluate("champion", ADMIN, _evidence(r, None))
    assert decision.accepted
    assert not any(c.name.startswith("worst slice") for c in decision.checks)


def test_a_floor_below_the_worst_slice_accepts(strategy_returns, trend_worst) -> None:
    label, value = trend_worst["sharpe"]
    cfg = PromotionGateConfig(**LENIENT, min_slice_sharpe=value - 0.1, min_slice_hit_rate=0.0)
    decision = PromotionGate(cfg).evaluate(
        "champion", ADMIN, _evidence(strategy_returns["trend_200"], trend_worst)
    )
    assert decision.accepted, decision.summary()
    check = next(c for c in decision.checks if c.name == "worst slice sharpe")
    assert check.passed
    assert check.value == pytest.approx(value)
    assert decision.statistics["worst_slice_sharpe_at"] == label


def test_a_floor_above_the_worst_slice_rejects(strategy_returns, trend_worst) -> None:
    label, value = trend_worst["hit_rate"]
    cfg = PromotionGateConfig(**LENIENT, min_slice_hit_rate=value + 0.01)
    decision = PromotionGate(cfg).evaluate(
        "champion", ADMIN, _evidence(strategy_returns["trend_200"], trend_worst)
    )
    assert not decision.accepted
    assert decision.reasons == (f"worst slice {label}: hit_rate {value:.4g} < floor {value + 0.01}",)


def test_a_floor_without_a_bias_report_fails_closed(strategy_returns) -> None:
    cfg = PromotionGateConfig(**LENIENT, min_slice_sharpe=0.0)
    decision = PromotionGate(cfg).evaluate("champion", ADMIN, _evidence(strategy_returns["trend_200"], None))
    assert not decision.accepted
    assert "bias report" in decision.reasons[0]


def test_registry_promotion_with_floor_is_audited_and_changes_nothing_on_rejection(
    registry: ModelRegistry, register_rule, strategy_returns, trend_worst
) -> None:
    info = register_rule("trend", {"rule": "trend_200"})
    registry.promote("trend", info.version, TRADER)
    strict = PromotionGate(PromotionGateConfig(**LENIENT, min_slice_sharpe=trend_worst["sharpe"][1] + 1.0))
    result = registry.promote(
        "trend",
        info.version,
        ADMIN,
        evidence=_evidence(strategy_returns["trend_200"], trend_worst),
        gate=strict,
    )
    assert not result.accepted
    assert registry.show("trend", info.version).stage == Stage.CHALLENGER
    rejected = registry.audit.audit_log(action="model.promotion_rejected")
    assert rejected[-1].payload["gate"]["min_slice_sharpe"] == pytest.approx(trend_worst["sharpe"][1] + 1.0)
    loose = PromotionGate(PromotionGateConfig(**LENIENT, min_slice_sharpe=trend_worst["sharpe"][1] - 1.0))
    result = registry.promote(
        "trend",
        info.version,
        ADMIN,
        evidence=_evidence(strategy_returns["trend_200"], trend_worst),
        gate=loose,
    )
    assert result.accepted
    assert registry.champion("trend").version == info.version


def test_bad_floor_settings_and_evidence_are_refused(strategy_returns) -> None:
    with pytest.raises(ConfigError, match="min_slice_hit_rate"):
        PromotionGateConfig.from_dict({"min_slice_hit_rate": 1.5})
    with pytest.raises(DataFormatError, match="worst_slices"):
        _evidence(strategy_returns["trend_200"], {"hit_rate": 0.4})
