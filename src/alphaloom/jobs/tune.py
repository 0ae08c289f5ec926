"""Hyperparameter search with Optuna for the CNN+LSTM and the RL agents, serially or on Ray.

``alphaloom tune cnn-lstm`` and ``alphaloom tune agent`` run Optuna studies kept in a SQL storage
(``sqlite:///<data dir>/optuna.db`` by default, any SQLAlchemy URL with ``--storage``), so running the
same ``--study`` again adds trials to it instead of starting over.

Objectives
----------
- **CNN+LSTM** (minimise): log loss of the class probabilities on the test window of one purged
  walk-forward fold (fold 0 of two by default, so the last window stays unseen by the search), every model
  trained on that fold's training rows with the fold's flat threshold, exactly as
  ``alphaloom evaluate forecasters`` trains it. After every epoch the trial reports its validation loss
  (the forecaster's own early-stopping loss on the last ``val_fraction`` of its training windows) and a
  :class:`~optuna.pruners.MedianPruner` stops trials whose loss is worse than the median of earlier trials
  at the same epoch. The search space leaves the loss's weights (``class_weight``, ``regression_weight``)
  fixed so those reports compare on one scale.
- **Agent** (maximise): annualised Sharpe ratio of the deterministic policy on a forward validation tail of
  the agent segment (the last ``rl_validation_fraction`` of it, after an embargo; as ``alphaloom train rl
  --seeds`` chooses seeds). Training runs in ``n_reports`` chunks; after each the validation Sharpe is
  reported and the pruner may stop the trial.

Distribution
------------
With an executor of more than one worker (``--ray``, ``--ray-address``, ``--workers``) the trials are
split into one batch per worker; each batch is a Ray task that opens the same study from the storage and
runs its trials, so workers see each other's results through the storage (Optuna's own parallel scheme). A
cluster needs a storage every node reaches (PostgreSQL: ``postgresql+psycopg://user@host/db``); a SQLite
file is local to one machine. A serial study with a seed is reproducible; parallel trials depend on which
finished first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field, model_validator
from rich.table import Table

from alphaloom.backtest.walkforward import WalkForwardConfig
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, EmptyRangeError, StorageError, TrainingError, did_you_mean
from alphaloom.distributed import Executor, ExecutorConfig, SerialExecutor
from alphaloom.distributed import open_executor as _open_executor
from alphaloom.features.pipeline import FeatureConfig
from alphaloom.jobs import evaluate
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.workspace import Workspace
from alphaloom.models.cnn_lstm.config import CNNLSTMConfig

__all__ = [
    "AGENT_SEARCH_NAMES",
    "AgentSearchSpace",
    "AgentTuneConfig",
    "CNNSearchSpace",
    "CNNTuneConfig",
    "TuneResult",
    "default_storage",
    "load_tune_config",
    "open_executor",
    "tune_agent",
    "tune_cnn_lstm",
    "tune_table",
]

AGENT_SEARCH_NAMES = ("ppo", "sac", "td3", "rainbow")
_SQLITE_TIMEOUT_S = 60


# ------------------------------------------------------------------------------------------- settings
class CNNSearchSpace(ComponentConfig):
    """What Optuna varies in the CNN+LSTM: ``(low, high)`` ranges (log-uniform for rates) and choices."""

    learning_rate: tuple[float, float] = (3e-4, 1e-2)
    weight_decay: tuple[float, float] = (1e-6, 1e-3)
    dropout: tuple[float, float] = (0.0, 0.4)
    window: tuple[int, ...] = (16, 32, 64)
    conv_channels: tuple[int, ...] = (8, 16, 32)
    lstm_hidden: tuple[int, ...] = (16, 32, 64)

    @model_validator(mode="after")
    def _ranges(self) -> CNNSearchSpace:
        for name in ("learning_rate", "weight_decay", "dropout"):
            low, high = getattr(self, name)
            if not low <= high or (name != "dropout" and low <= 0):
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        for name in ("window", "conv_channels", "lstm_hidden"):
            if not getattr(self, name):
                raise ValueError(f"{name} needs at least one choice")
        return self


class CNNTuneConfig(ComponentConfig):
    """Settings of :func:`tune_cnn_lstm`.

    Parameters
    ----------
    dataset
        Shipped data set (``stocks``, ``forex``, ``crypto`` or a sample set name); ``None`` reads the
        workspace store.
    symbols, max_symbols, max_bars_per_symbol
        Which bars to use (as ``alphaloom evaluate forecasters``).
    walk_forward, fold
        The folds of the merged calendar and which fold validates (``0``: the first; later windows stay
        unseen by the search).
    horizon
        Label horizon in bars.
    base
        The CNN+LSTM settings the search starts from; the searched keys replace these.
    search
        The search space.
    seed
        Seed of every model and of the sampler (a serial study with a seed is reproducible).
    pruner_startup_trials, pruner_warmup_epochs
        The median pruner prunes nothing until this many trials have finished, nor before this epoch.
    features
        The feature pipeline.
    """

    dataset: str | None = "stocks"
    symbols: tuple[str, ...] | None = None
    max_symbols: int | None = Field(default=3, ge=1)
    max_bars_per_symbol: int | None = Field(default=2000, ge=100)
    walk_forward: WalkForwardConfig = WalkForwardConfig(
        n_folds=2, min_train_size=750, label_horizon=1, embargo=5
    )
    fold: int = Field(default=0, ge=0)
    horizon: int = Field(default=1, ge=1)
    base: CNNLSTMConfig = CNNLSTMConfig()
    search: CNNSearchSpace = CNNSearchSpace()
    seed: int = Field(default=0, ge=0)
    pruner_startup_trials: int = Field(default=3, ge=0)
    pruner_warmup_epochs: int = Field(default=1, ge=0)
    features: FeatureConfig = FeatureConfig()

    @model_validator(mode="after")
    def _consistent(self) -> CNNTuneConfig:
        if self.fold >= self.walk_forward.n_folds:
            raise ValueError(f"fold {self.fold} does not exist; walk_forward has {self.walk_forward.n_folds}")
        if self.walk_forward.label_horizon < self.horizon:
            raise ValueError(
                f"walk_forward.label_horizon ({self.walk_forward.label_horizon}) must be >= horizon "
                f"({self.horizon})"
            )
        return self

    @classmethod
    def quick(cls, **changes: Any) -> CNNTuneConfig:
        """Seconds per trial: 2 symbols, 700 bars, a tiny CNN for 2 epochs, small search space."""
        preset: dict[str, Any] = {
            "max_symbols": 2,
            "max_bars_per_symbol": 700,
            "walk_forward": WalkForwardConfig(n_folds=2, min_train_size=300, label_horizon=1, embargo=5),
            "base": CNNLSTMConfig.quick(epochs=2, batch_size=64),
            "search": CNNSearchSpace(window=(8, 16), conv_channels=(4, 8), lstm_hidden=(8, 16)),
            "pruner_startup_trials": 2,
        }
        return cls.from_dict({**preset, **changes}, source="CNNTuneConfig.quick")


class AgentSearchSpace(ComponentConfig):
    """What Optuna varies in an agent. Every agent: ``learning_rate`` (log-uniform), ``gamma`` and the
    hidden ``width`` of its two layers; PPO also ``ent_coef`` and ``clip_range``; SAC, TD3 and Rainbow
    also ``batch_size``."""

    learning_rate: tuple[float, float] = (1e-4, 3e-3)
    gamma: tuple[float, float] = (0.9, 0.995)
    width: tuple[int, ...] = (32, 64, 128)
    ent_coef: tuple[float, float] = (0.0, 0.02)
    clip_range: tuple[float, float] = (0.1, 0.3)
    batch_size: tuple[int, ...] = (32, 64, 128)

    @model_validator(mode="after")
    def _ranges(self) -> AgentSearchSpace:
        for name in ("learning_rate", "gamma", "ent_coef", "clip_range"):
            low, high = getattr(self, name)
            if not low <= high or (name == "learning_rate" and low <= 0):
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(low, high)}")
        return self


class AgentTuneConfig(ComponentConfig):
    """Settings of :func:`tune_agent`.

    Parameters
    ----------
    agent
        ``ppo``, ``sac``, ``td3`` or ``rainbow``.
    timesteps
        Training steps per trial.
    n_reports
        Validation checks during a trial (training runs in this many chunks); the pruner acts on them.
    max_symbols
        Use only the first this many of the run's symbols.
    search
        The search space.
    seed
        Seed of the agent, the environment and the sampler.
    pruner_startup_trials, pruner_warmup_reports
        The median pruner prunes nothing until this many trials have finished, nor before this report.
    """

    agent: Literal["ppo", "sac", "td3", "rainbow"] = "ppo"
    timesteps: int = Field(default=20_000, ge=1)
    n_reports: int = Field(default=4, ge=1, le=100)
    max_symbols: int | None = Field(default=None, ge=1)
    search: AgentSearchSpace = AgentSearchSpace()
    seed: int = Field(default=0, ge=0)
    pruner_startup_trials: int = Field(default=3, ge=0)
    pruner_warmup_reports: int = Field(default=1, ge=0)

    @classmethod
    def quick(cls, **changes: Any) -> AgentTuneConfig:
        """Tiny budgets: 512 steps per trial, 2 reports, one symbol."""
        preset = {"timesteps": 512, "n_reports": 2, "max_symbols": 1, "pruner_startup_trials": 2}
        return cls.from_dict({**preset, **changes}, source="AgentTuneConfig.quick")


@dataclass(frozen=True, eq=False)
class TuneResult:
    """What a study holds after :func:`tune_cnn_lstm` or :func:`tune_agent`.

    Attributes
    ----------
    study, storage
        Study name and storage URL (password hidden).
    direction
        ``"minimize"`` (CNN+LSTM log loss) or ``"maximize"`` (agent Sharpe).
    n_new
        Trials this call ran.
    counts
        Trials in the study by state (``COMPLETE``, ``PRUNED``, ``FAIL``, ...), this call's and earlier.
    best_value, best_params, best_trial
        The best finished trial of the whole study (NaN, ``{}``, -1 when none finished).
    trials
        One row per trial: ``number``, ``state``, ``value``, the parameters, ``seconds``.
    executor
        Where the trials ran.
    seconds
        Wall time of this call.
    """

    study: str
    storage: str
    direction: str
    n_new: int
    counts: dict[str, int]
    best_value: float
    best_params: dict[str, Any]
    best_trial: int
    trials: pd.DataFrame = field(repr=False)
    executor: dict[str, Any]
    seconds: float

    def info(self) -> dict[str, Any]:
        """The manifest entry: everything but the trials table."""
        return {
            "study": self.study,
            "storage": self.storage,
            "direction": self.direction,
            "n_new": self.n_new,
            "counts": self.counts,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "best_trial": self.best_trial,
            "executor": self.executor,
            "seconds": round(self.seconds, 2),
        }


# ------------------------------------------------------------------------------------------- executor
@contextmanager
def open_executor(
    ws: Workspace | None = None,
    *,
    ray: bool = False,
    address: str | None = None,
    workers: int | None = None,
) -> Iterator[Executor]:
    """The executor the CLI's ``--ray``, ``--ray-address`` and ``--workers`` ask for; serial by default.

    A local Ray gets ``workers`` CPUs (all cores by default) and logs under ``<data dir>/ray``;
    ``address`` joins an existing cluster instead. Leaving the context shuts a local Ray down.

    Raises
    ------
    ConfigError
        If ``workers`` is given without Ray, or the cluster at ``address`` cannot be reached.
    """
    if not ray and address is None:
        if workers not in (None, 1):
            raise ConfigError(
                f"--workers {workers} needs --ray (a local Ray) or --ray-address (a cluster); without them "
                "work runs serially in this process."
            )
        executor: Executor = SerialExecutor()
    else:
        log_dir = str(ws.ensure().root / "ray") if ws is not None and address is None else None
        config = ExecutorConfig(backend="ray", address=address, workers=workers, log_dir=log_dir)
        executor = _open_executor(config)
    with executor:
        yield executor


# -------------------------------------------------------------------------------------------- storage
def default_storage(ws: Workspace) -> str:
    """``sqlite:///<data dir>/optuna.db``."""
    return f"sqlite:///{ws.ensure().root / 'optuna.db'}"


def _storage(url: str) -> Any:
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several worker processes write to one file: wait for the lock instead of failing at once.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": _SQLITE_TIMEOUT_S}}
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except Exception as exc:  # SQLAlchemy and driver errors vary by backend
        raise StorageError(
            f"cannot open the Optuna storage {_hide_password(url)}: {type(exc).__name__}: {exc}. Pass a "
            "SQLAlchemy URL such as sqlite:////abs/path/optuna.db or postgresql+psycopg://user@host/db."
        ) from exc


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def _check_trials(trials: int) -> None:
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"--trials must be a positive number of new trials, got {trials!r}.")


def _check_storage(url: str, executor: Executor) -> None:
    address = executor.info().get("address")
    if address is not None and url.startswith("sqlite"):
        raise ConfigError(
            f"trials on the Ray cluster at {address} cannot share the SQLite file {url} (it is local to this "
            "machine); pass --storage with a database every node reaches, e.g. "
            "postgresql+psycopg://user@dbhost/optuna."
        )


# ------------------------------------------------------------------------------------------ the loop
class _Batch(NamedTuple):
    study: str
    storage: str
    n_trials: int
    sampler_seed: int


def _pruner(startup: int, warmup: int) -> Any:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


def _run_batch(batch: _Batch, payload: _Payload, callbacks: Sequence[Callable[..., None]] = ()) -> int:
    # One worker's share of the trials: open the study from the storage and run them.
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=batch.study,
        storage=_storage(batch.storage),
        sampler=optuna.samplers.TPESampler(seed=batch.sampler_seed),
        pruner=_pruner(*payload.pruner),
    )
    study.optimize(
        lambda trial: payload.objective(trial, payload.data),
        n_trials=batch.n_trials,
        catch=(TrainingError,),  # a diverging trial is recorded as FAIL; the study goes on
        callbacks=list(callbacks),
    )
    return batch.n_trials


class _Payload(NamedTuple):
    objective: Callable[[Any, Any], float]
    data: Any
    pruner: tuple[int, int]


def _run_study(
    ws: Workspace,
    *,
    study_name: str,
    storage: str | None,
    direction: Literal["minimize", "maximize"],
    trials: int,
    payload: _Payload,
    seed: int,
    executor: Executor | None,
    progress: StageProgress,
    label: str,
) -> TuneResult:
    import optuna

    _check_trials(trials)
    if not study_name or not study_name.replace("-", "_").replace(".", "_").isidentifier():
        raise ConfigError(f"study names are letters, digits, '-', '_' and '.', got {study_name!r}.")
    t0 = time.perf_counter()
    executor = executor or SerialExecutor()
    url = storage or default_storage(ws)
    _check_storage(url, executor)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=_storage(url), study_name=study_name, direction=direction, load_if_exists=True
        )
    except ValueError as exc:  # an existing study with another direction
        raise ConfigError(
            f"study {study_name!r} in {_hide_password(url)} cannot be resumed as a {direction} study: {exc}. "
            "Pick another --study name."
        ) from exc
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {study_name!r} in {_hide_password(url)} was created to {study.direction.name.lower()}, "
            f"not to {direction} (another kind of tuning?); pick another --study name."
        )
    before = len(study.trials)
    n_batches = min(executor.n_workers, trials)
    sizes = [trials // n_batches + (1 if i < trials % n_batches else 0) for i in range(n_batches)]
    # A resumed study gets fresh sampler seeds, so its random start-up trials do not repeat earlier ones.
    batches = [_Batch(study_name, url, n, seed + before + 100_003 * i) for i, n in enumerate(sizes) if n > 0]
    task = progress.task(label, total=trials)
    if executor.backend == "serial":
        for batch in batches:
            _run_batch(batch, payload, callbacks=[lambda s, t: task.advance()])
    else:
        task.update(0, note=f"{len(batches)} batches on {executor.backend} ({executor.n_workers} workers)")
        executor.map(_run_batch, batches, shared=payload, on_result=lambda i, n: task.advance(n))
    return _result(study_name, url, direction, trials, executor, time.perf_counter() - t0)


def _result(
    study_name: str, url: str, direction: str, n_new: int, executor: Executor, seconds: float
) -> TuneResult:
    import optuna

    study = optuna.load_study(study_name=study_name, storage=_storage(url))
    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        seconds_t = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else math.nan
        )
        # A pruned trial's value is its last intermediate report, another scale than the objective's.
        value = t.value if t.value is not None and t.state.name == "COMPLETE" else math.nan
        rows.append(
            {"number": t.number, "state": t.state.name, "value": value, **t.params, "seconds": seconds_t}
        )
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    return TuneResult(
        study=study_name,
        storage=_hide_password(url),
        direction=direction,
        n_new=n_new,
        counts=counts,
        best_value=float(best.value) if best is not None and best.value is not None else math.nan,
        best_params=dict(best.params) if best is not None else {},
        best_trial=best.number if best is not None else -1,
        trials=pd.DataFrame(rows),
        executor=executor.info(),
        seconds=seconds,
    )


# --------------------------------------------------------------------------------------------- CNN
class _CNNData(NamedTuple):
    fold: Any  # evaluate._Fold
    symbols: dict[str, Any]  # evaluate._Symbol
    features: list[str]
    config: CNNTuneConfig


def _suggest_cnn(trial: Any, space: CNNSearchSpace) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *space.weight_decay, log=True),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "window": trial.suggest_categorical("window", list(space.window)),
        "conv_channels": trial.suggest_categorical("conv_channels", list(space.conv_channels)),
        "lstm_hidden": trial.suggest_categorical("lstm_hidden", list(space.lstm_hidden)),
    }


def _cnn_objective(trial: Any, data: _CNNData) -> float:
    import optuna

    from alphaloom.models import CNNLSTMForecaster
    from alphaloom.models.evaluation import log_loss_per_sample

    cfg, fold = data.config, data.fold
    params = _suggest_cnn(trial, cfg.search)
    try:
        model_cfg = cfg.base.replace(
            **params, horizon=cfg.horizon, flat_threshold=fold.context.flat_threshold, seed=cfg.seed
        )
    except ConfigError as exc:  # e.g. attention heads that do not divide the channels
        raise optuna.TrialPruned(f"invalid combination: {exc}") from exc

    def on_epoch(epoch: int, n_epochs: int, metrics: dict[str, float]) -> None:
        loss = metrics.get("val_loss", math.nan)
        if math.isfinite(loss):
            trial.report(loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation loss {loss:.4f} at epoch {epoch} is above the median")

    model = CNNLSTMForecaster(model_cfg).fit(fold.train, feature_columns=data.features, progress=on_epoch)
    pred = evaluate._predict_fold(model, "cnn_lstm", fold, data.symbols)
    scored = np.isfinite(pred).all(axis=1)
    if not scored.any():
        raise TrainingError("the tuned CNN+LSTM produced no forecast on the validation window.")
    labels = fold.index["label"].to_numpy()[scored]
    loss = float(np.mean(log_loss_per_sample(labels, pred[scored, :3])))
    trial.set_user_attr("n_scored", int(scored.sum()))
    trial.set_user_attr("best_epoch", int(model.history_.best_epoch))
    return loss


def _cnn_data(ws: Workspace, config: CNNTuneConfig) -> _CNNData:
    from alphaloom.models.cnn_lstm.dataset import forward_log_return

    evaluation = evaluate.EvaluationConfig(
        horizon=config.horizon,
        walk_forward=config.walk_forward,
        models=("cnn_lstm",),
        symbols=config.symbols,
        max_symbols=config.max_symbols,
        max_bars_per_symbol=config.max_bars_per_symbol,
        features=config.features,
        cnn=config.base,
    )
    market = evaluate._load_market(ws, evaluation, config.dataset, None)
    frames = evaluate.build_frames(market.bars, config.features)
    features = evaluate._check_frames(frames, None)
    calendar = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames.values()))), name="ts")
    symbols = {
        name: evaluate._Symbol(
            name,
            frame,
            calendar.get_indexer(frame.index),
            forward_log_return(frame["close"].to_numpy(dtype=np.float64), config.horizon),
        )
        for name, frame in frames.items()
    }
    folds = evaluate._build_folds(
        list(symbols.values()), calendar, config.walk_forward, features, config.horizon
    )
    return _CNNData(folds[config.fold], symbols, features, config)


def tune_cnn_lstm(
    ws: Workspace,
    config: CNNTuneConfig,
    *,
    trials: int,
    study: str = "cnn_lstm",
    storage: str | None = None,
    executor: Executor | None = None,
    progress: StageProgress | None = None,
) -> TuneResult:
    """Run ``trials`` more trials of the CNN+LSTM study; see the module docstring.

    Parameters
    ----------
    ws
        Workspace: the default storage lives here and the result is recorded in its manifest as
        ``tune_<study>``.
    config
        Data, fold, base model, search space, seed and pruner.
    trials
        New trials to run (added to those already in the study).
    study
        Study name; the same name resumes the study.
    storage
        SQLAlchemy URL; ``sqlite:///<data dir>/optuna.db`` by default.
    executor
        Where the trials run; serial by default.
    progress
        Progress display, one step per trial.

    Returns
    -------
    TuneResult
        The study's trials and its best parameters (lowest validation log loss).
    """
    _check_trials(trials)
    progress = progress or NullProgress()
    data = _cnn_data(ws, config)
    if not data.fold.train:
        raise EmptyRangeError("the tuning fold has no training rows; use more bars or fewer folds.")
    payload = _Payload(_cnn_objective, data, (config.pruner_startup_trials, config.pruner_warmup_epochs))
    result = _run_study(
        ws,
        study_name=study,
        storage=storage,
        direction="minimize",
        trials=trials,
        payload=payload,
        seed=config.seed,
        executor=executor,
        progress=progress,
        label=f"tune cnn-lstm ({study})",
    )
    ws.record(f"tune_{study}", {"kind": "cnn_lstm", "config_hash": config.config_hash(), **result.info()})
    return result


# ------------------------------------------------------------------------------------------- agents
class _AgentData(NamedTuple):
    fit: tuple[Any, ...]
    val: tuple[Any, ...]
    periods_per_year: list[float]
    run: Any  # RunConfig
    config: AgentTuneConfig


def _suggest_agent(trial: Any, name: str, space: AgentSearchSpace) -> dict[str, Any]:
    width = trial.suggest_categorical("width", list(space.width))
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "gamma": trial.suggest_float("gamma", *space.gamma),
        "net_arch": (width, width),
    }
    if name == "ppo":
        params["ent_coef"] = trial.suggest_float("ent_coef", *space.ent_coef)
        params["clip_range"] = trial.suggest_float("clip_range", *space.clip_range)
    else:
        params["batch_size"] = trial.suggest_categorical("batch_size", list(space.batch_size))
    return params


def _agent_objective(trial: Any, data: _AgentData) -> float:
    import optuna

    from alphaloom.jobs import stages
    from alphaloom.rl import make_vec_env

    cfg, run = data.config, data.run
    template = stages.make_agent(cfg.agent, cfg.seed)
    params = _suggest_agent(trial, cfg.agent, cfg.search)
    agent = type(template)(template.config.replace(**params))
    episode_len = min(run.rl_episode_len, min(len(s[0]) for s in data.fit) - 1)
    vec = make_vec_env(
        [s[0] for s in data.fit],
        [s[1] for s in data.fit],
        [s[2] for s in data.fit],
        stages.env_config(run, episode_len=episode_len),
        seed=cfg.seed,
    )
    chunks = [
        cfg.timesteps // cfg.n_reports + (1 if i < cfg.timesteps % cfg.n_reports else 0)
        for i in range(cfg.n_reports)
    ]
    sharpe = math.nan
    try:
        done = 0
        for step, n in enumerate(c for c in chunks if c > 0):
            agent.train(vec, n)
            done += n
            sharpe = stages._validation_sharpe(agent, data.val, data.periods_per_year, run)
            trial.report(sharpe, step)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"validation Sharpe {sharpe:.3f} after {done} steps is below the median"
                )
    finally:
        vec.close()
    return sharpe


def _agent_data(ws: Workspace, config: AgentTuneConfig) -> _AgentData:
    from alphaloom.jobs import stages
    from alphaloom.jobs.config import RunConfig

    run = ws.load_config() or RunConfig()
    if config.max_symbols is not None:
        run = run.replace(symbols=run.symbols[: config.max_symbols])
    observations = stages.load_observations(ws, run)
    pairs = [stages._forward_split(o.segment("agent"), o, run) for o in observations]
    ppy = stages._periods_per_year(ws, [o.data.symbol for o in observations])
    return _AgentData(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), ppy, run, config)


def tune_agent(
    ws: Workspace,
    config: AgentTuneConfig,
    *,
    trials: int,
    study: str | None = None,
    storage: str | None = None,
    executor: Executor | None = None,
    progress: StageProgress | None = None,
) -> TuneResult:
    """Run ``trials`` more trials of an agent's study; see the module docstring.

    Needs ``alphaloom features`` and ``alphaloom train cnn-lstm`` in the workspace (the agents observe the
    stored forecasts). The study is ``agent_<name>`` by default and the result is recorded in the manifest
    as ``tune_<study>``.

    Returns
    -------
    TuneResult
        The study's trials and its best parameters (highest validation Sharpe).
    """
    if config.agent not in AGENT_SEARCH_NAMES:  # pragma: no cover - the config's Literal guards this
        raise ConfigError(f"unknown agent {config.agent!r}.{did_you_mean(config.agent, AGENT_SEARCH_NAMES)}")
    _check_trials(trials)
    progress = progress or NullProgress()
    study = study or f"agent_{config.agent}"
    data = _agent_data(ws, config)
    payload = _Payload(_agent_objective, data, (config.pruner_startup_trials, config.pruner_warmup_reports))
    result = _run_study(
        ws,
        study_name=study,
        storage=storage,
        direction="maximize",
        trials=trials,
        payload=payload,
        seed=config.seed,
        executor=executor,
        progress=progress,
        label=f"tune {config.agent} ({study})",
    )
    ws.record(
        f"tune_{study}",
        {"kind": f"agent_{config.agent}", "config_hash": config.config_hash(), **result.info()},
    )
    return result


# ----------------------------------------------------------------------------------------- display
def tune_table(result: TuneResult, *, last: int = 20) -> Table:
    """The study's last ``last`` trials as a rich table, best trial marked with ``*``."""
    goal = "lowest" if result.direction == "minimize" else "highest"
    out = Table(title=f"Study {result.study!r}: {sum(result.counts.values())} trials ({goal} value is best)")
    frame = result.trials.tail(last)
    for col in frame.columns:
        out.add_column(str(col), justify="left" if col == "state" else "right")
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row, strict=True):
            if col == "number":
                cells.append(f"{value}*" if value == result.best_trial else str(value))
            elif isinstance(value, float | np.floating):
                cells.append("-" if not math.isfinite(value) else f"{value:.4g}")
            else:
                cells.append(str(value))
        out.add_row(*cells)
    return out


def load_tune_config(kind: str, *, quick: bool, config_file: Path | None, **changes: Any) -> ComponentConfig:
    """The CNN or agent tuning settings: preset (quick or default), a TOML/YAML file on top, then
    ``changes`` (``None`` values ignored)."""
    from alphaloom.core.config import read_config_file

    cls = CNNTuneConfig if kind == "cnn_lstm" else AgentTuneConfig
    config = cls.quick() if quick else cls()
    if config_file is not None:
        merged = evaluate._merge(config.model_dump(), read_config_file(config_file))
        config = cls.from_dict(merged, source=str(config_file))
    updates = {k: v for k, v in changes.items() if v is not None}
    return config.replace(**updates) if updates else config
