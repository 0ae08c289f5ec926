"""Optuna studies on real sample data: they resume from their SQLite storage, the median pruner stops a
bad trial, the best parameters reach the manifest, and bad setups raise errors that teach."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from alphaloom.core.exceptions import ConfigError, StorageError
from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.tune import (
    AgentTuneConfig,
    CNNSearchSpace,
    CNNTuneConfig,
    default_storage,
    open_executor,
    tune_agent,
    tune_cnn_lstm,
    tune_table,
)
from alphaloom.jobs.workspace import Workspace

SMALL = CNNSearchSpace(window=(16,), conv_channels=(8,), lstm_hidden=(16,))
GOOD = {"learning_rate": 3e-3, "weight_decay": 1e-4, "dropout": 0.1, "window": 16, "conv_channels": 8}


def test_a_study_resumes_from_its_sqlite_storage(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path)
    config = CNNTuneConfig.quick(search=SMALL, pruner_startup_trials=10)
    first = tune_cnn_lstm(ws, config, trials=2, study="resume")
    assert first.counts == {"COMPLETE": 2}
    assert (tmp_path / "optuna.db").is_file()
    again = tune_cnn_lstm(ws, config, trials=2, study="resume")
    assert again.n_new == 2
    assert again.counts == {"COMPLETE": 4}
    assert list(again.trials["number"]) == [0, 1, 2, 3]
    # The first two trials are the stored ones, untouched by the second run.
    assert again.trials["value"].iloc[:2].tolist() == first.trials["value"].tolist()
    study = optuna.load_study(study_name="resume", storage=default_storage(ws))
    assert len(study.trials) == 4
    # Log loss of three classes: finite, positive, and the best is the study's minimum.
    values = again.trials["value"]
    assert all(0.0 < v < 5.0 for v in values)
    assert again.best_value == pytest.approx(values.min())
    assert set(again.best_params) == {
        "learning_rate",
        "weight_decay",
        "dropout",
        "window",
        "conv_channels",
        "lstm_hidden",
    }
    entry = ws.manifest()["tune_resume"]
    assert entry["best_params"] == again.best_params
    assert entry["counts"] == {"COMPLETE": 4}
    assert tune_table(again).row_count == 4


def test_the_median_pruner_stops_a_trial_with_a_bad_learning_rate(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path)
    search = SMALL.replace(learning_rate=(1e-4, 1.0))
    config = CNNTuneConfig.quick(search=search, pruner_startup_trials=2, pruner_warmup_epochs=0)
    study = optuna.create_study(study_name="prune", storage=default_storage(ws), direction="minimize")
    study.enqueue_trial({**GOOD, "lstm_hidden": 16})
    study.enqueue_trial({**GOOD, "lstm_hidden": 16, "learning_rate": 5e-3})
    study.enqueue_trial({**GOOD, "lstm_hidden": 16, "learning_rate": 1.0})  # Adam steps of 1.0 per weight
    result = tune_cnn_lstm(ws, config, trials=3, study="prune")
    assert list(result.trials["state"]) == ["COMPLETE", "COMPLETE", "PRUNED"]
    trials = optuna.load_study(study_name="prune", storage=default_storage(ws)).trials
    bad = trials[2]
    assert list(bad.intermediate_values) == [1]  # stopped after its first epoch of two
    assert bad.intermediate_values[1] > max(t.intermediate_values[1] for t in trials[:2])
    assert math.isnan(result.trials["value"].iloc[2])
    assert result.best_trial in (0, 1)


def test_an_agent_study_maximises_validation_sharpe(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path)
    run = RunConfig.quick()
    stages.ingest(ws)
    stages.compute_features(ws, run)
    stages.train_forecaster(ws, run)
    ws.save_config(run)
    config = AgentTuneConfig.quick(agent="ppo", pruner_startup_trials=10)
    result = tune_agent(ws, config, trials=2)
    assert result.study == "agent_ppo"
    assert result.direction == "maximize"
    assert result.counts == {"COMPLETE": 2}
    assert all(math.isfinite(v) for v in result.trials["value"])
    assert result.best_value == pytest.approx(result.trials["value"].max())
    assert {"learning_rate", "gamma", "width", "ent_coef", "clip_range"} == set(result.best_params)
    assert ws.manifest()["tune_agent_ppo"]["best_params"] == result.best_params
    # A maximise study cannot be resumed by a minimising tuner.
    with pytest.raises(ConfigError, match="another --study name"):
        tune_cnn_lstm(ws, CNNTuneConfig.quick(search=SMALL), trials=1, study="agent_ppo")


def test_bad_setups_raise_errors_that_teach(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path)
    config = CNNTuneConfig.quick(search=SMALL)
    with pytest.raises(StorageError, match="SQLAlchemy URL"):
        tune_cnn_lstm(ws, config, trials=1, storage="nosuchdb://x")
    with pytest.raises(ConfigError, match="--trials"):
        tune_cnn_lstm(ws, config, trials=0)
    with pytest.raises(ConfigError, match="fold 2 does not exist"):
        CNNTuneConfig.quick(fold=2)
    with pytest.raises(ConfigError, match="--workers 2 needs --ray"), open_executor(ws, workers=2):
        pass
    with open_executor(ws) as executor:
        assert executor.backend == "serial"
