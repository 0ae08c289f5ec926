"""The promotion gate on real out-of-sample returns (rules on SPY, 2010-2021, after costs).

Run with ``-s`` to see the statistics of each decision (quoted in the closing note of issue 9).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.registry import (
    Approver,
    ModelRegistry,
    PromotionEvidence,
    PromotionGate,
    PromotionGateConfig,
    Stage,
)
from alphaloom.risk import measures

ADMIN = Approver("alice", "admin")


def _show(title: str, decision) -> None:
    print(f"\n--- {title}")
    print(decision.summary())
    for key, value in decision.statistics.items():
        print(f"    {key} = {value:.4f}" if isinstance(value, float) else f"    {key} = {value}")


def _champion(registry: ModelRegistry, register_rule, returns, params, name: str):
    model = register_rule("spy", params)
    registry.promote("spy", model.version, Approver("carol", "trader"))
    result = registry.promote(
        "spy", model.version, ADMIN, evidence=PromotionEvidence(returns[name], source=f"SPY 2010-2021 {name}")
    )
    assert result.accepted, result.decision.summary()
    return result.model


def _challenger(registry: ModelRegistry, register_rule, params):
    model = register_rule("spy", params)
    assert registry.promote("spy", model.version, Approver("carol", "trader")).accepted
    return model


def test_gate_accepts_a_challenger_with_evidence_and_no_significant_loss(
    registry: ModelRegistry, register_rule, strategy_returns
) -> None:
    _champion(registry, register_rule, strategy_returns, {"rule": "trend", "window": 200}, "trend_200")
    challenger = _challenger(registry, register_rule, {"rule": "buy_and_hold"})
    evidence = PromotionEvidence(
        strategy_returns["buy_and_hold"], strategy_returns["trend_200"], source="SPY 2010-2021"
    )
    result = registry.promote("spy", challenger.version, ADMIN, evidence=evidence)
    _show("ACCEPTED: buy-and-hold SPY replaces the 200-day trend rule", result.decision)
    assert result.accepted
    stats = result.decision.statistics
    assert stats["deflated_sharpe"] >= 0.95
    assert stats["p_loss"] >= 0.05
    assert stats["n_bars"] == len(strategy_returns["buy_and_hold"])
    assert math.isclose(
        stats["sharpe_annual"], measures.sharpe_ratio(strategy_returns["buy_and_hold"]), rel_tol=1e-12
    )
    assert registry.champion("spy").version == challenger.version
    assert result.previous_champion is not None
    assert result.previous_champion.version == 1


def test_gate_rejects_a_challenger_not_better_beyond_chance(
    registry: ModelRegistry, register_rule, strategy_returns
) -> None:
    _champion(registry, register_rule, strategy_returns, {"rule": "trend", "window": 200}, "trend_200")
    challenger = _challenger(registry, register_rule, {"rule": "buy_and_hold"})
    gate = PromotionGate(PromotionGateConfig(comparison="significantly_better"))
    evidence = PromotionEvidence(strategy_returns["buy_and_hold"], strategy_returns["trend_200"])
    result = registry.promote("spy", challenger.version, ADMIN, evidence=evidence, gate=gate)
    _show("REJECTED: buy-and-hold is not better than the trend rule beyond chance", result.decision)
    assert not result.accepted
    failed = [c.name for c in result.decision.checks if not c.passed]
    assert failed == ["better than champion"]
    assert result.decision.statistics["p_gain"] > 0.05
    # Nothing moved.
    assert registry.champion("spy").version == 1
    assert registry.show("spy", challenger.version).stage == Stage.CHALLENGER


def test_gate_rejects_a_deflated_sharpe_below_the_threshold(
    registry: ModelRegistry, register_rule, strategy_returns
) -> None:
    # Five rules were tried; the 50-day trend rule is judged against the best of five by luck.
    names = ["buy_and_hold", "trend_50", "trend_100", "trend_200", "reversal_5"]
    trials = np.column_stack([strategy_returns[n] for n in names])
    deflated = measures.deflated_sharpe_ratio_from_trials(trials, chosen=names.index("trend_50"))
    challenger = _challenger(registry, register_rule, {"rule": "trend", "window": 50})
    evidence = PromotionEvidence(
        strategy_returns["trend_50"],
        n_trials=deflated.n_trials,
        trials_sharpe_variance=deflated.sharpe_variance,
        source="SPY 2010-2021, best of 5 rules",
    )
    result = registry.promote("spy", challenger.version, ADMIN, evidence=evidence)
    _show("REJECTED: the 50-day trend rule's deflated Sharpe is below 0.95", result.decision)
    assert not result.accepted
    assert [c.name for c in result.decision.checks if not c.passed] == ["deflated Sharpe"]
    assert math.isclose(result.decision.statistics["deflated_sharpe"], deflated.dsr, rel_tol=1e-12)
    assert result.decision.statistics["deflated_sharpe"] < 0.95 < result.decision.statistics["psr"]
    assert registry.champion("spy") is None


def test_gate_rejects_an_unauthorised_approver(
    registry: ModelRegistry, register_rule, strategy_returns
) -> None:
    challenger = _challenger(registry, register_rule, {"rule": "buy_and_hold"})
    result = registry.promote(
        "spy",
        challenger.version,
        Approver("dave", "trader"),
        evidence=PromotionEvidence(strategy_returns["buy_and_hold"]),
    )
    _show("REJECTED: a trader may not crown a champion", result.decision)
    assert not result.accepted
    assert [c.name for c in result.decision.checks if not c.passed] == ["approver"]
    assert registry.audit.audit_log(action="model.promotion_rejected")[0].actor == "user:dave"
    candidate = register_rule("spy", {"rule": "trend", "window": 100})
    viewer = registry.promote("spy", candidate.version, Approver("erin", "viewer"))
    assert not viewer.accepted  # a viewer may not even make a challenger
    assert registry.show("spy", candidate.version).stage == Stage.CANDIDATE


def test_gate_rejects_a_significant_loss_and_missing_evidence(strategy_returns) -> None:
    gate = PromotionGate()
    worse = gate.evaluate(
        "champion",
        ADMIN,
        PromotionEvidence(strategy_returns["contrarian_20"], strategy_returns["buy_and_hold"]),
    )
    _show("REJECTED: short-the-trend loses to buy-and-hold", worse)
    assert {c.name for c in worse.checks if not c.passed} == {
        "deflated Sharpe",
        "no significant loss vs champion",
    }
    assert worse.statistics["p_loss"] < 0.05
    none = gate.evaluate("champion", ADMIN, None)
    assert [c.name for c in none.checks if not c.passed] == ["evidence"]


def test_evidence_and_config_are_checked() -> None:
    with pytest.raises(DataFormatError, match="same bars"):
        PromotionEvidence(np.zeros(100), np.zeros(99))
    with pytest.raises(DataFormatError, match="non-finite"):
        PromotionEvidence(np.array([0.01, np.nan, 0.0]))
    with pytest.raises(ConfigError, match="variance"):
        PromotionEvidence(np.zeros(100), n_trials=5)
    with pytest.raises(ConfigError, match="unknown role"):
        Approver("x", "superuser")
    with pytest.raises(ConfigError):
        PromotionGateConfig.from_dict({"champion_roles": ["root"]})


def test_the_risk_managers_actor_is_an_approver(strategy_returns) -> None:
    from alphaloom.risk.manager import Actor, Role

    evidence = PromotionEvidence(strategy_returns["buy_and_hold"])
    assert PromotionGate().evaluate("champion", Actor("alice", Role.ADMIN), evidence).accepted
    refused = PromotionGate().evaluate("champion", Actor("bob", Role.TRADER), evidence)
    assert [c.name for c in refused.checks if not c.passed] == ["approver"]
