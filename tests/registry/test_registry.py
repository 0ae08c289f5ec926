"""The MLflow-backed registry: lineage round trip, stages through aliases, rollback, and the audit trail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError, DataFormatError, DataNotFoundError
from alphaloom.data.storage.relational import DuckDBRelationalStore, ModelStage
from alphaloom.registry import (
    Approver,
    DataFingerprint,
    Lineage,
    ModelRegistry,
    PromotionEvidence,
    Stage,
)

ADMIN = Approver("alice", "admin")
TRADER = Approver("bob", "trader")


def _evidence(
    returns: dict[str, np.ndarray], challenger: str, champion: str | None = None
) -> PromotionEvidence:
    return PromotionEvidence(
        challenger_returns=returns[challenger],
        champion_returns=None if champion is None else returns[champion],
        source=f"SPY 2010-2021, {challenger} vs {champion}",
    )


def test_lineage_metrics_and_parents_round_trip(registry: ModelRegistry, register_rule, spy_bars) -> None:
    trend = register_rule(
        "trend", {"rule": "trend", "window": 200}, metrics={"sharpe_annual": 0.8, "ic": np.nan}
    )
    assert (trend.version, trend.stage, trend.kind) == (1, Stage.CANDIDATE, "baseline")
    assert "candidate" in trend.aliases
    ens = register_rule(
        "ensemble", {"rule": "vote", "members": ["trend/1"]}, parents=[trend.ref], kind="ensemble"
    )

    shown = registry.show("trend", 1)
    train = spy_bars[spy_bars["ts"] < pd.Timestamp("2010-01-01", tz="UTC")]
    assert shown.lineage.data == DataFingerprint.from_bars(train)
    assert shown.lineage.data.symbols == ("SPY",)
    assert shown.lineage.data.n_rows == len(train)
    assert shown.lineage.training_config == {"rule": "trend", "window": 200}
    assert shown.lineage.to_dict() == trend.lineage.to_dict()
    assert shown.lineage.code_version.startswith("0.1.0")
    assert shown.metrics["sharpe_annual"] == 0.8
    assert np.isnan(shown.metrics["ic"])
    assert shown.tags["strategy"] == "trend"
    assert registry.show("ensemble", ens.version).lineage.parents == ("trend/1",)
    # The artefact itself comes back byte for byte.
    path = registry.artefact_path("trend", 1)
    assert (path / "rule.json").read_text() == '{"rule": "trend", "window": 200}'


def test_fingerprint_changes_with_one_price(spy_bars) -> None:
    a = DataFingerprint.from_bars(spy_bars)
    changed = spy_bars.copy()
    changed.loc[100, "close"] += 0.01
    assert DataFingerprint.from_bars(changed).sha256 != a.sha256
    assert DataFingerprint.from_bars(spy_bars.sample(frac=1.0, random_state=0)).sha256 == a.sha256


def test_bad_registrations_are_refused_with_a_hint(registry: ModelRegistry, register_rule, tmp_path) -> None:
    with pytest.raises(DataNotFoundError, match="no model 'nope'"):
        register_rule("child", {"rule": "x"}, parents=["nope/1"])
    lineage = registry.list() or None
    assert lineage is None  # nothing was registered by the failed call
    first = register_rule("trend", {"rule": "trend"})
    with pytest.raises(ConfigError, match="Did you mean 'rl_agent'"):
        registry.register("rl_agnt", "x", tmp_path, first.lineage)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        registry.register("baseline", "x", tmp_path / "missing", first.lineage)
    with pytest.raises(DataFormatError, match="name/version"):
        Lineage(first.lineage.data, "abc", {}, parents=["trend"])
    with pytest.raises(DataNotFoundError):
        registry.show("trend", 7)


def test_refuses_a_tracking_server(tmp_path) -> None:
    with (
        DuckDBRelationalStore(":memory:") as audit,
        pytest.raises(ConfigError, match="never to a tracking server"),
    ):
        ModelRegistry(tmp_path, audit, tracking_uri="http://mlflow.example.com")


def test_stages_move_through_aliases(registry: ModelRegistry, register_rule, strategy_returns) -> None:
    register_rule("spy", {"rule": "trend", "window": 200})
    register_rule("spy", {"rule": "buy_and_hold"})
    assert registry.promote("spy", 1, TRADER).accepted
    assert registry.challenger("spy").version == 1
    result = registry.promote("spy", 1, ADMIN, evidence=_evidence(strategy_returns, "trend_200"))
    assert result.accepted
    assert result.model.stage == Stage.CHAMPION
    assert "champion" in result.model.aliases
    assert registry.challenger("spy") is None
    assert registry.promote("spy", 2, TRADER).accepted
    assert [v.version for v in registry.list("spy", stage="challenger")] == [2]
    with pytest.raises(ConfigError, match="only a candidate"):
        registry.promote("spy", 1, ADMIN)
    with pytest.raises(ConfigError, match="is the champion"):
        registry.archive("spy", 1, ADMIN)
    with pytest.raises(ConfigError, match="Did you mean 'champion'"):
        registry.list("spy", stage="champoin")


def test_rollback_restores_the_previous_champion(
    registry: ModelRegistry, register_rule, strategy_returns
) -> None:
    register_rule("spy", {"rule": "trend", "window": 200})
    register_rule("spy", {"rule": "buy_and_hold"})
    for version, name in ((1, "trend_200"), (2, "buy_and_hold")):
        registry.promote("spy", version, TRADER)
        champion = "trend_200" if version == 2 else None
        assert registry.promote(
            "spy", version, ADMIN, evidence=_evidence(strategy_returns, name, champion)
        ).accepted
    assert registry.champion("spy").version == 2
    assert registry.show("spy", 1).stage == Stage.ARCHIVED
    assert registry.champion_history("spy") == [1, 2]

    with pytest.raises(ConfigError, match="rollback needs one of admin"):
        registry.rollback("spy", TRADER)
    restored = registry.rollback("spy", ADMIN, reason="live drawdown beyond the backtest's")
    assert restored.version == 1
    assert restored.stage == Stage.CHAMPION
    assert registry.champion("spy").version == 1
    assert registry.show("spy", 2).stage == Stage.ARCHIVED
    assert registry.champion_history("spy") == [1]
    with pytest.raises(ConfigError, match="no earlier champion"):
        registry.rollback("spy", ADMIN)


def test_every_transition_is_audited_and_the_chain_verifies(
    registry: ModelRegistry, register_rule, strategy_returns
) -> None:
    register_rule("spy", {"rule": "trend", "window": 200})
    register_rule("spy", {"rule": "buy_and_hold"})
    registry.promote("spy", 1, TRADER)
    registry.promote("spy", 1, ADMIN, evidence=_evidence(strategy_returns, "trend_200"))
    registry.promote("spy", 2, TRADER)
    registry.promote(
        "spy", 2, TRADER, evidence=_evidence(strategy_returns, "buy_and_hold", "trend_200")
    )  # refused
    registry.promote("spy", 2, ADMIN, evidence=_evidence(strategy_returns, "buy_and_hold", "trend_200"))
    registry.rollback("spy", ADMIN, reason="test")
    register_rule("spy", {"rule": "reversal", "days": 5})
    registry.archive("spy", 3, TRADER, reason="superseded")

    audit = registry.audit
    actions = [r.action for r in audit.audit_log()]
    assert actions == [
        "model.registered",
        "model.registered",
        "model.promoted",
        "model.promoted",
        "model.promoted",
        "model.promotion_rejected",
        "model.promoted",
        "model.rolled_back",
        "model.registered",
        "model.archived",
    ]
    assert audit.verify_audit_chain() == []
    rejected = audit.audit_log(action="model.promotion_rejected")[0]
    assert rejected.actor == "user:bob"
    assert rejected.payload["decision"]["accepted"] is False
    assert "sharpe_difference_annual" in rejected.payload["decision"]["statistics"]
    promoted = audit.audit_log(action="model.promoted")[-1].payload
    assert (promoted["model"], promoted["previous_champion"]) == ("spy/2", "spy/1")
    # The relational store mirrors each version's stage in its own vocabulary.
    stages = {v.version: v.stage for v in audit.get_model_versions("spy")}
    assert stages == {"1": ModelStage.PRODUCTION, "2": ModelStage.ARCHIVED, "3": ModelStage.ARCHIVED}
