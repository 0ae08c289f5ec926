"""``evaluate_agents`` in quick mode: every strategy in the table, finite numbers, the table stored."""

from __future__ import annotations

import numpy as np
import pytest

from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.evaluate_agents import (
    AGENT_COMPARISON_TABLE,
    AgentEvaluation,
    AgentEvaluationConfig,
    agent_comparison_table,
    evaluate_agents,
)
from alphaloom.jobs.workspace import Workspace

STRATEGIES = (
    "buy_and_hold",
    "cnn_lstm_rule",
    *stages.AGENT_NAMES,
    "ensemble_performance",
    "ensemble_thompson",
    "ensemble_meta",
)


def prepare_quick_workspace(ws: Workspace) -> RunConfig:
    """Ingest the shipped samples and run features and the CNN+LSTM in quick mode."""
    config = RunConfig.quick()
    stages.ingest(ws)
    stages.compute_features(ws, config)
    stages.train_forecaster(ws, config)
    return config


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, AgentEvaluation]:
    ws = Workspace.resolve(tmp_path_factory.mktemp("agents"))
    prepare_quick_workspace(ws)
    return ws, evaluate_agents(ws, AgentEvaluationConfig.quick())


def test_table_has_every_strategy_with_mean_and_spread(evaluated) -> None:
    _, result = evaluated
    assert list(result.table["strategy"]) == list(STRATEGIES)
    for metric in ("sharpe", "sortino", "max_drawdown", "turnover", "time_in_market"):
        assert np.isfinite(result.table[f"{metric}_mean"]).all(), metric
        assert (result.table[f"{metric}_std"] >= 0).all(), metric
    assert (result.table["n_runs"] == 2).all()  # 1 fold x 2 seeds x 1 symbol
    assert result.table["max_drawdown_mean"].between(0.0, 1.0).all()


def test_rules_do_not_depend_on_the_seed_and_buy_and_hold_is_flagged(evaluated) -> None:
    _, result = evaluated
    rows = result.table.set_index("strategy")
    assert rows.loc["buy_and_hold", "sharpe_std"] == pytest.approx(0.0, abs=1e-12)
    assert rows.loc["cnn_lstm_rule", "sharpe_std"] == pytest.approx(0.0, abs=1e-12)
    assert "buy_and_hold" in rows.loc["buy_and_hold", "flags"]
    assert rows.loc["buy_and_hold", "time_in_market_mean"] > 0.9


def test_runs_are_out_of_sample_and_the_table_is_stored(evaluated) -> None:
    ws, result = evaluated
    assert set(result.runs["fold"]) == {0}
    assert set(result.runs["seed"]) == {0, 1}
    with ws.open_store() as store:
        stored = store.read_frame(AGENT_COMPARISON_TABLE)
    assert list(stored["strategy"]) == list(STRATEGIES)
    assert "evaluate_agents" in ws.manifest()
    assert agent_comparison_table(result.table).row_count == len(STRATEGIES)


def test_train_rl_with_several_seeds_keeps_the_best_on_forward_validation(evaluated) -> None:
    from alphaloom.jobs.config import RLBudget
    from alphaloom.rl.agents import Agent

    ws, _ = evaluated
    config = RunConfig.quick().replace(rl_seeds=3, rl_budget=RLBudget(ppo=128, sac=128, td3=128, rainbow=128))
    info = stages.train_agents(ws, config)
    assert info["seeds"] == [config.seed, config.seed + 1, config.seed + 2]
    for row in info["agents"]:
        by_seed = row["val_sharpe_by_seed"]
        assert len(by_seed) == 3
        assert np.isfinite(by_seed).all()
        assert row["val_sharpe_best"] == max(by_seed)
        assert row["seed"] == config.seed + by_seed.index(max(by_seed))
        assert row["val_sharpe_mean"] == pytest.approx(np.mean(by_seed), abs=1e-3)
        assert row["val_sharpe_std"] == pytest.approx(np.std(by_seed, ddof=1), abs=1e-3)
        saved = Agent.load(ws.models_dir / "rl" / row["agent"])
        assert saved.config.seed == row["seed"]
    assert ws.manifest()["train_rl"]["seeds"] == info["seeds"]


def test_train_rl_refuses_a_validation_tail_too_short_to_choose_seeds(evaluated) -> None:
    from alphaloom.core.exceptions import EmptyRangeError

    ws, _ = evaluated
    config = RunConfig.quick().replace(rl_seeds=2, rl_validation_fraction=0.06)
    with pytest.raises(EmptyRangeError, match="rl_seeds = 1"):
        stages.train_agents(ws, config)
