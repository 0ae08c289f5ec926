"""Forecast scores against scikit-learn and scipy (test-only dependencies) to 1e-12, and their edge cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from alphaloom.core.exceptions import DataFormatError
from alphaloom.models.evaluation import (
    ForecastScores,
    accuracy,
    balanced_accuracy,
    classification_table,
    forecast_scores,
    information_coefficient,
    log_loss,
    log_loss_per_sample,
    matthews_corrcoef,
    rank_information_coefficient,
    score_forecast_frame,
)

TOL = 1e-12


def _sample(seed: int, n: int = 500, *, skew: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p_true = [0.6, 0.3, 0.1] if skew else [1 / 3, 1 / 3, 1 / 3]
    y_true = rng.choice(3, size=n, p=p_true)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y_true] * rng.uniform(0, 1, size=(n, 1))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, proba.argmax(axis=1), proba


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("skew", [False, True])
def test_class_scores_match_sklearn(seed: int, skew: bool) -> None:
    y_true, y_pred, proba = _sample(seed, skew=skew)
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(
        skm.balanced_accuracy_score(y_true, y_pred), abs=TOL
    )
    assert matthews_corrcoef(y_true, y_pred) == pytest.approx(skm.matthews_corrcoef(y_true, y_pred), abs=TOL)
    assert log_loss(y_true, proba) == pytest.approx(skm.log_loss(y_true, proba, labels=[0, 1, 2]), abs=TOL)


def test_balanced_accuracy_averages_only_classes_present_in_the_truth() -> None:
    y_true = np.array([0, 0, 0, 2, 2])
    y_pred = np.array([0, 1, 0, 2, 1])  # predicts a class that never occurs
    # scikit-learn warns about the absent class; ours documents it.
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected = skm.balanced_accuracy_score(y_true, y_pred)
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(expected, abs=TOL)
    assert balanced_accuracy(y_true, y_pred) == pytest.approx((2 / 3 + 1 / 2) / 2, abs=TOL)


def test_mcc_is_zero_when_one_side_is_a_single_class_like_sklearn() -> None:
    y_true = np.array([0, 1, 2, 1, 0])
    constant = np.ones(5, dtype=int)
    assert matthews_corrcoef(y_true, constant) == 0.0 == skm.matthews_corrcoef(y_true, constant)
    assert matthews_corrcoef(y_true, y_true) == pytest.approx(1.0, abs=TOL)


def test_log_loss_per_sample_and_clipping() -> None:
    y_true, _, proba = _sample(4, n=50)
    per = log_loss_per_sample(y_true, proba)
    assert per.shape == (50,)
    np.testing.assert_allclose(per, -np.log(proba[np.arange(50), y_true]), rtol=0, atol=TOL)
    certain_miss = np.array([[1.0, 0.0, 0.0]])
    assert log_loss([2], certain_miss) == pytest.approx(-math.log(1e-15), rel=TOL)
    assert log_loss([0, 1], [[1 / 3] * 3, [1 / 3] * 3]) == pytest.approx(math.log(3), rel=TOL)


@pytest.mark.parametrize("seed", [0, 7])
def test_ic_and_rank_ic_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    realised = rng.standard_t(4, size=400) * 0.01
    pred = 0.2 * realised + rng.normal(size=400) * 0.01
    assert information_coefficient(pred, realised) == pytest.approx(
        stats.pearsonr(pred, realised).statistic, abs=TOL
    )
    assert rank_information_coefficient(pred, realised) == pytest.approx(
        stats.spearmanr(pred, realised).statistic, abs=TOL
    )
    # Ties share the mean rank, as in scipy.
    pred_tied, real_tied = np.round(pred, 2), np.round(realised, 2)
    assert rank_information_coefficient(pred_tied, real_tied) == pytest.approx(
        stats.spearmanr(pred_tied, real_tied).statistic, abs=TOL
    )


def test_correlations_follow_the_nan_policy() -> None:
    assert math.isnan(information_coefficient([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # constant
    assert math.isnan(rank_information_coefficient([1.0], [2.0]))  # too short
    assert math.isnan(information_coefficient([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))  # NaN not skipped
    assert math.isnan(rank_information_coefficient([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
    assert math.isnan(accuracy([], []))
    assert math.isnan(balanced_accuracy([], []))
    assert math.isnan(matthews_corrcoef([], []))
    assert math.isnan(log_loss([], np.empty((0, 3))))


def test_classification_table_matches_sklearn() -> None:
    y_true, y_pred, _ = _sample(3, skew=True)
    table = classification_table(y_true, y_pred)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=[0, 1, 2])
    assert list(table.index) == ["down", "flat", "up"]
    np.testing.assert_allclose(table["precision"], precision, rtol=0, atol=TOL)
    np.testing.assert_allclose(table["recall"], recall, rtol=0, atol=TOL)
    np.testing.assert_allclose(table["f1"], f1, rtol=0, atol=TOL)
    np.testing.assert_array_equal(table["support"], support)


def test_forecast_scores_and_the_frame_helper_agree() -> None:
    y_true, _, proba = _sample(5, n=300)
    rng = np.random.default_rng(5)
    realised = np.where(y_true == 0, -0.02, np.where(y_true == 2, 0.02, 0.0)) + rng.normal(size=300) * 1e-3
    realised[y_true == 1] = rng.uniform(-0.004, 0.004, size=int(np.sum(y_true == 1)))
    pred = realised + rng.normal(size=300) * 0.01
    scores = forecast_scores(y_true, proba, pred, realised)
    assert isinstance(scores, ForecastScores)
    assert scores.n == 300
    assert scores.accuracy == pytest.approx(skm.accuracy_score(y_true, proba.argmax(axis=1)), abs=TOL)
    frame = pd.DataFrame(proba, columns=["p_down", "p_flat", "p_up"]).assign(
        pred_return=pred, realised=realised
    )
    frame.loc[0, "realised"] = np.nan  # dropped, not scored
    from_frame = score_forecast_frame(frame, flat_threshold=0.005)
    expected = forecast_scores(y_true[1:], proba[1:], pred[1:], realised[1:])
    assert from_frame == expected


def test_bad_inputs_raise_teaching_errors() -> None:
    with pytest.raises(DataFormatError, match="class labels 0"):
        accuracy([0, 3], [0, 1])
    with pytest.raises(DataFormatError, match="shape"):
        accuracy([0, 1], [0])
    with pytest.raises(DataFormatError, match="summing to 1"):
        log_loss([0], [[0.5, 0.5, 0.5]])
    with pytest.raises(DataFormatError, match=r"shape \(n, 3\)"):
        log_loss([0], [[0.5, 0.5]])
    with pytest.raises(DataFormatError, match="pred_return"):
        score_forecast_frame(pd.DataFrame({"p_down": [1.0]}), flat_threshold=0.0)
