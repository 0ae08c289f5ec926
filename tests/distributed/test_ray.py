"""A two-worker local Ray gives exactly the serial results, on real sample data and small budgets.

One local Ray (2 CPUs, 200 MiB object store) serves the whole module. The equalities are exact: every task
is seeded and single-threaded, so where it runs cannot change a number; only wall-time columns differ.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.walkforward import (
    MomentumModel,
    SequentialRunner,
    WalkForwardConfig,
    run_walk_forward,
)
from alphaloom.core.exceptions import EmptyRangeError
from alphaloom.data.sample import load_sample
from alphaloom.distributed import Executor, ExecutorConfig, SerialExecutor, open_executor
from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.evaluate import EvaluationConfig, build_frames, default_models, evaluate_forecasters
from alphaloom.jobs.evaluate_agents import AgentEvaluationConfig, evaluate_agents
from alphaloom.jobs.workspace import Workspace


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspace") / "ray"


@pytest.fixture(scope="module")
def ray_executor(log_dir: Path):
    with open_executor(ExecutorConfig(backend="ray", workers=2, log_dir=str(log_dir))) as ex:
        yield ex


def slow_first(task: int) -> int:
    import time

    time.sleep(0.5 if task == 0 else 0.0)  # the first task finishes last
    return task * 10


def row_sums(task: int, shared: np.ndarray) -> float:
    return float(shared[task].sum())


def raise_empty(task: int) -> int:
    if task == 1:
        raise EmptyRangeError("fold 1 has no training rows")
    return task


def worker_threads(task: int) -> tuple[str | None, int]:
    import torch

    return os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()


def test_results_come_back_in_task_order_whatever_finishes_first(ray_executor: Executor) -> None:
    finished: list[int] = []
    out = ray_executor.map(slow_first, [0, 1, 2, 3], on_result=lambda i, r: finished.append(i))
    assert out == [0, 10, 20, 30]
    assert sorted(finished) == [0, 1, 2, 3]
    assert ray_executor.n_workers == 2


def test_shared_input_goes_through_the_object_store_and_matches_serial(ray_executor: Executor) -> None:
    bars = load_sample("us_equities_daily")
    matrix = bars.pivot(index="ts", columns="symbol", values="close").dropna().to_numpy()
    tasks = list(range(0, len(matrix), 97))
    assert ray_executor.map(row_sums, tasks, shared=matrix) == SerialExecutor().map(
        row_sums, tasks, shared=matrix
    )


def test_a_task_error_is_raised_as_the_same_alphaloom_error(ray_executor: Executor) -> None:
    with pytest.raises(EmptyRangeError, match="fold 1 has no training rows"):
        ray_executor.map(raise_empty, [0, 1, 2])


def test_workers_run_one_thread_and_log_to_the_workspace(ray_executor: Executor, log_dir: Path) -> None:
    for omp, torch_threads in ray_executor.map(worker_threads, [0, 1]):
        assert omp == "1"
        assert torch_threads == 1
    assert any(p.name.startswith("session_") for p in log_dir.iterdir())


def test_walk_forward_folds_on_ray_equal_the_sequential_runner(ray_executor: Executor) -> None:
    bars = load_sample("us_equities_daily")
    spy = bars[bars["symbol"] == "SPY"].tail(1200).reset_index(drop=True)
    config = WalkForwardConfig(n_folds=4, min_train_size=300, label_horizon=1, embargo=5, seed=3)
    serial = run_walk_forward(MomentumModel, spy, config, runner=SequentialRunner())
    on_ray = run_walk_forward(MomentumModel, spy, config, runner=ray_executor)
    pd.testing.assert_series_equal(serial.targets, on_ray.targets, check_exact=True)
    np.testing.assert_array_equal(serial.returns, on_ray.returns)
    assert [f.seed for f in serial.folds] == [f.seed for f in on_ray.folds]


def test_evaluate_forecasters_on_two_ray_workers_equals_the_serial_run(ray_executor: Executor) -> None:
    config = EvaluationConfig.quick(seeds=(0, 1))
    bars = load_sample("us_equities_daily")
    bars = bars[bars["symbol"].isin(["SPY", "AAPL"])].groupby("symbol").tail(700).reset_index(drop=True)
    frames = build_frames(bars)
    kwargs = {
        "walk_forward": config.walk_forward,
        "costs": CostModel(),
        "seeds": config.seeds,
        "reference": "cnn_lstm",
    }
    serial = evaluate_forecasters(frames, default_models(config), **kwargs)
    on_ray = evaluate_forecasters(frames, default_models(config), executor=ray_executor, **kwargs)
    pd.testing.assert_frame_equal(serial.table.drop(columns="fit_s"), on_ray.table.drop(columns="fit_s"))
    pd.testing.assert_frame_equal(serial.folds.drop(columns="fit_s"), on_ray.folds.drop(columns="fit_s"))
    pd.testing.assert_frame_equal(serial.predictions, on_ray.predictions, check_exact=True)
    assert set(serial.predictions["seed"]) == {0, 1}
    assert np.isfinite(serial.table.loc[serial.table["model"] == "cnn_lstm", "log_loss"]).all()


def test_evaluate_agents_on_two_ray_workers_equals_the_serial_run(
    ray_executor: Executor, tmp_path: Path
) -> None:
    ws = Workspace.resolve(tmp_path)
    run = RunConfig.quick()
    stages.ingest(ws)
    stages.compute_features(ws, run)
    stages.train_forecaster(ws, run)
    config = AgentEvaluationConfig.quick()  # 1 fold x 2 seeds: one (fold, seed) run per worker
    serial = evaluate_agents(ws, config)
    on_ray = evaluate_agents(ws, config, executor=ray_executor)
    pd.testing.assert_frame_equal(serial.runs, on_ray.runs, check_exact=True)
    pd.testing.assert_frame_equal(serial.table, on_ray.table, check_exact=True)
    assert set(on_ray.runs["seed"]) == {0, 1}
    assert ws.manifest()["evaluate_agents"]["executor"]["backend"] == "ray"


def test_tuning_trials_run_as_ray_tasks_into_one_study(ray_executor: Executor, tmp_path: Path) -> None:
    import optuna

    from alphaloom.jobs.tune import CNNSearchSpace, CNNTuneConfig, default_storage, tune_cnn_lstm

    ws = Workspace.resolve(tmp_path)
    config = CNNTuneConfig.quick(
        search=CNNSearchSpace(window=(16,), conv_channels=(8,), lstm_hidden=(16,)), pruner_startup_trials=4
    )
    result = tune_cnn_lstm(ws, config, trials=2, study="on_ray", executor=ray_executor)
    assert result.counts == {"COMPLETE": 2}
    assert result.executor["backend"] == "ray"
    study = optuna.load_study(study_name="on_ray", storage=default_storage(ws))
    assert len(study.trials) == 2
    assert len({t.params["learning_rate"] for t in study.trials}) == 2  # two workers, two samples
    assert ws.manifest()["tune_on_ray"]["best_params"] == study.best_params
