"""The forecaster comparison harness on a small real panel: one row per model, identical folds for every
model, no test row ever seen at fit (a spy model checks each fit), stored tables and a report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.walkforward import WalkForwardConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError, ModelError
from alphaloom.data.sample import load_sample
from alphaloom.jobs import evaluate
from alphaloom.jobs.evaluate import (
    EvaluationConfig,
    FoldContext,
    build_frames,
    default_models,
    evaluate_forecasters,
)
from alphaloom.jobs.workspace import Workspace
from alphaloom.models import PersistenceConfig, PersistenceForecaster

WF = WalkForwardConfig(n_folds=3, min_train_size=250, label_horizon=1, embargo=5)
SCORES = ["accuracy", "balanced_accuracy", "mcc", "log_loss", "ic", "rank_ic", "ls_sharpe"]


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """SPY and AAPL, last 700 daily bars each; AAPL starts 20 bars later so the symbols differ."""
    bars = load_sample("us_equities_daily")
    bars = bars[bars["symbol"].isin(["SPY", "AAPL"])].groupby("symbol").tail(700)
    bars = bars[~((bars["symbol"] == "AAPL") & (bars["ts"] < bars["ts"].min() + pd.Timedelta(days=28)))]
    return build_frames(bars.reset_index(drop=True))


class Spy:
    """Persistence inside, recording every fit; asserts that no training row reaches the test window."""

    fits: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, tag: str, context: FoldContext) -> None:
        self.tag, self.context = tag, context

    def fit(
        self,
        frames: Mapping[str, pd.DataFrame],
        *,
        feature_columns: Sequence[str] | None = None,
        progress: Any = None,
    ) -> Spy:
        for name, frame in frames.items():
            # Labels are built inside a segment, so its last close is the latest price any label uses.
            assert frame.index.max() < self.context.test_start, (self.tag, name)
            assert np.all(np.diff(frame.index.asi8) > 0)
        Spy.fits.append(
            {
                "tag": self.tag,
                "fold": self.context.fold,
                "seed": self.context.seed,
                "threshold": self.context.flat_threshold,
                "rows": {name: tuple(frame.index) for name, frame in frames.items()},
                "features": tuple(feature_columns or ()),
            }
        )
        config = PersistenceConfig(horizon=self.context.horizon, flat_threshold=self.context.flat_threshold)
        self.inner_ = PersistenceForecaster(config).fit(frames, feature_columns=feature_columns)
        return self

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.inner_.predict(frame)


@pytest.fixture(scope="module")
def result(frames: dict[str, pd.DataFrame]) -> evaluate.ComparisonResult:
    Spy.fits.clear()
    config = EvaluationConfig(
        logistic=EvaluationConfig().logistic, lightgbm=EvaluationConfig.quick().lightgbm, walk_forward=WF
    )
    models = {
        "spy_a": partial(Spy, "a"),
        **{k: v for k, v in default_models(config).items() if k in ("logistic", "lightgbm")},
        "spy_b": partial(Spy, "b"),
    }
    return evaluate_forecasters(
        frames,
        models,
        walk_forward=WF,
        costs=CostModel(commission_bps=1.0, slippage_bps=2.0),
        seeds=(0, 1),
        reference="logistic",
    )


def test_one_row_per_model_with_finite_scores(result: evaluate.ComparisonResult) -> None:
    table = result.table
    assert list(table["model"]) == ["logistic", "spy_a", "lightgbm", "spy_b", "buy_and_hold"]
    models = table[table["model"] != "buy_and_hold"]
    assert np.isfinite(models[SCORES].to_numpy()).all()
    assert (models["n"] == models["n"].iloc[0]).all()
    assert models["n"].iloc[0] > 500
    assert models["log_loss"].min() > 0
    assert models["accuracy"].between(0, 1).all()
    ref = table.iloc[0]
    assert all(math.isnan(ref[c]) for c in ("dm_logloss", "p_logloss", "dm_sqerr", "p_sqerr"))
    others = table.iloc[1:4]
    assert np.isfinite(others[["dm_logloss", "p_logloss", "dm_sqerr", "p_sqerr"]].to_numpy()).all()
    assert math.isfinite(table.iloc[-1]["ls_sharpe"])
    # The two spies are the same model: same scores, and a DM test between them would be undefined.
    spies = table.set_index("model").loc[["spy_a", "spy_b"], SCORES]
    np.testing.assert_array_equal(spies.iloc[0].to_numpy(), spies.iloc[1].to_numpy())


def test_every_model_gets_identical_folds_and_no_fit_sees_a_test_row(
    result: evaluate.ComparisonResult, frames: dict[str, pd.DataFrame]
) -> None:
    fits = pd.DataFrame(Spy.fits)
    assert len(fits) == 2 * 3 * 2  # two spies, three folds, two seeds
    for (_fold, _seed), group in fits.groupby(["fold", "seed"]):
        a, b = group[group["tag"] == "a"].iloc[0], group[group["tag"] == "b"].iloc[0]
        assert a["rows"] == b["rows"]
        assert a["threshold"] == b["threshold"]
        assert a["features"] == b["features"]
    assert "open" not in fits["features"].iloc[0]
    assert "close" not in fits["features"].iloc[0]
    splits = result.splits
    assert list(splits["fold"]) == [0, 1, 2]
    calendar = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames.values()))))
    for fold in splits.itertuples():
        rows = fits[(fits["fold"] == fold.fold)].iloc[0]["rows"]
        trained = pd.DatetimeIndex(sorted(set().union(*rows.values())))
        start = calendar.get_loc(fold.test_start)
        assert trained.max() < calendar[start - WF.label_horizon]  # purged
        assert fold.scored_rows > 0
        assert fold.flat_threshold > 0
    # Embargo: in fold 2 the 5 bars after fold 0's test window are never trained on.
    fold0_end = calendar.get_loc(splits["test_end"].iloc[0])
    embargoed = calendar[fold0_end + 1 : fold0_end + 1 + WF.embargo]
    rows = fits[fits["fold"] == 2].iloc[0]["rows"]
    assert not set(embargoed) & set().union(*rows.values())
    assert any("/" in name for name in rows)  # the embargo split a symbol into segments


def test_all_models_are_scored_on_the_same_out_of_sample_rows(result: evaluate.ComparisonResult) -> None:
    pred = result.predictions
    keys = {
        name: set(zip(g["symbol"], g["ts"], g["fold"], strict=True))
        for name, g in pred[pred["seed"] == 0].groupby("model")
    }
    assert len({frozenset(k) for k in keys.values()}) == 1
    for fold in result.splits.itertuples():
        rows = pred[pred["fold"] == fold.fold]
        assert rows["ts"].min() >= fold.test_start
        assert rows["ts"].max() <= fold.test_end
    assert np.isfinite(pred[["p_down", "p_flat", "p_up", "pred_return", "realised"]].to_numpy()).all()
    folds = result.folds
    assert len(folds) == 4 * 3 * 2
    assert np.isfinite(folds[["accuracy", "log_loss"]].to_numpy()).all()
    assert set(result.backtests) == {"logistic", "spy_a", "lightgbm", "spy_b", "buy_and_hold"}


def test_bad_setups_raise_teaching_errors(frames: dict[str, pd.DataFrame]) -> None:
    models = {"persistence": default_models()["persistence"]}
    kwargs: dict[str, Any] = {"walk_forward": WF, "costs": CostModel()}
    with pytest.raises(ConfigError, match="reference model 'cnn_lstm'"):
        evaluate_forecasters(frames, models, **kwargs)
    with pytest.raises(DataFormatError, match="'open'"):
        evaluate_forecasters({"SPY": frames["SPY"].drop(columns="open")}, models, reference=None, **kwargs)
    with pytest.raises(ConfigError, match="label_horizon"):
        evaluate_forecasters(frames, models, reference=None, horizon=3, **kwargs)

    class NoFrame(Spy):
        def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({"p_up": [1.0]})

    with pytest.raises(ModelError, match="pred_return"):
        evaluate_forecasters(frames, {"x": partial(NoFrame, "x")}, reference=None, **kwargs)
    with pytest.raises(ConfigError, match=r"Did you mean .lightgbm.\?"):
        EvaluationConfig.from_dict({"models": ("cnn_lstm", "lightgbn")})
    with pytest.raises(ConfigError, match="label_horizon"):
        EvaluationConfig.from_dict({"horizon": 2})


def test_quick_run_stores_the_table_and_writes_a_report(tmp_path) -> None:
    ws = Workspace.resolve(tmp_path)
    run = evaluate.run_evaluation(ws, EvaluationConfig.quick(), dataset="stocks")
    assert list(run.table["model"]) == [*evaluate.MODEL_NAMES, "buy_and_hold"]
    assert np.isfinite(run.table.iloc[:4][SCORES].to_numpy()).all()
    stored = evaluate.stored_comparison(ws)
    assert stored is not None
    assert list(stored["model"]) == list(run.table["model"])
    assert run.report_path.is_file()
    assert "cnn_lstm" in run.report_path.read_text(encoding="utf-8")
    assert run.costs == CostModel.for_asset_class("equity")
    assert run.periods_per_year == 252
    assert "evaluate_forecasters" in ws.manifest()
    # The main report shows the stored comparison next to the backtest.
    from alphaloom.backtest import buy_and_hold
    from alphaloom.jobs import stages

    bars = load_sample("us_equities_daily").query("symbol == 'SPY'").tail(50)
    stages._store_results(ws, [buy_and_hold(bars, CostModel())])
    html = stages.build_report(ws).read_text(encoding="utf-8")
    assert "Forecasters compared on purged walk-forward folds" in html


def test_config_file_tables_merge_onto_the_preset(tmp_path) -> None:
    path = tmp_path / "evaluate.toml"
    path.write_text('seeds = [0, 1]\nmodels = ["logistic", "persistence"]\n[walk_forward]\nn_folds = 3\n')
    config = evaluate.load_evaluation_config(config_file=path, folds=4)
    assert config.seeds == (0, 1)
    assert config.models == ("logistic", "persistence")
    assert config.walk_forward.n_folds == 4  # the option wins over the file
    assert config.walk_forward.embargo == EvaluationConfig().walk_forward.embargo  # kept from the preset
    quick = evaluate.load_evaluation_config(config_file=path, quick=True, seeds=3)
    assert quick.seeds == (0, 1, 2)
    assert quick.max_symbols == 2
    path.write_text("[walk_forward]\nn_fold = 3\n")
    with pytest.raises(ConfigError, match="n_folds"):
        evaluate.load_evaluation_config(config_file=path)


def test_the_same_inputs_give_the_same_table(frames: dict[str, pd.DataFrame]) -> None:
    config = EvaluationConfig(models=("logistic", "persistence"), walk_forward=WF)
    kwargs: dict[str, Any] = {"walk_forward": WF, "costs": CostModel(), "reference": "logistic"}
    a = evaluate_forecasters(frames, default_models(config), **kwargs).table.drop(columns="fit_s")
    b = evaluate_forecasters(frames, default_models(config), **kwargs).table.drop(columns="fit_s")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
