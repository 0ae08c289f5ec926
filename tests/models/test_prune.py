"""Pruning the CNN+LSTM: the sparsity asked for is reached, pruned models predict through the same
interface, structured pruning shrinks the layers without changing what a removed-channel-free network
computes, and fine-tuning recovers loss on a small fit to real SPY bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alphaloom.core.exceptions import ConfigError, NotFittedError
from alphaloom.data.sample import load_sample
from alphaloom.models import CNNLSTMConfig, CNNLSTMForecaster
from alphaloom.models.cnn_lstm.export import Predictor, export_torchscript
from alphaloom.models.cnn_lstm.prune import (
    fine_tune,
    objective,
    parameter_count,
    prunable_weights,
    prune_channels,
    prune_magnitude,
    sparsity,
)


@pytest.fixture(scope="module")
def spy_frames() -> dict[str, pd.DataFrame]:
    """Five trailing features of the real SPY closes (returns over 1, 5 and 20 bars, 20-bar volatility,
    log volume change), 1993-2004 for fitting and 2005-2006 held out."""
    bars = load_sample("us_equities_daily")
    spy = bars[bars["symbol"] == "SPY"].set_index("ts").sort_index()
    logc = np.log(spy["close"])
    frame = pd.DataFrame(
        {
            "r1": logc.diff(),
            "r5": logc.diff(5),
            "r20": logc.diff(20),
            "vol20": logc.diff().rolling(20).std(),
            "dvol": np.log(spy["volume"]).diff(),
            "close": spy["close"],
        }
    )
    return {"fit": frame.loc[:"2004-12-31"], "holdout": frame.loc["2005-01-01":"2006-12-31"]}


@pytest.fixture(scope="module")
def spy_model(spy_frames) -> CNNLSTMForecaster:
    config = CNNLSTMConfig.quick(
        window=12, kernel_sizes=(3, 5), epochs=3, batch_size=128, seed=5, device="cpu", val_fraction=0.1
    )
    return CNNLSTMForecaster(config).fit({"SPY": spy_frames["fit"]})


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("amount", [0.5, 0.8])
def test_magnitude_pruning_reaches_the_sparsity_and_keeps_the_interface(
    fitted: CNNLSTMForecaster, toy_frames, amount: float, scope: str
) -> None:
    pruned = prune_magnitude(fitted, amount, scope=scope)
    assert sparsity(pruned) == pytest.approx(amount, abs=0.002)
    assert sparsity(fitted) == 0.0  # the original is untouched
    if scope == "layer":
        for module, name in prunable_weights(pruned):
            w = getattr(module, name)
            assert float((w == 0).float().mean()) == pytest.approx(amount, abs=1.0 / w.numel() + 1e-9)
    heads = pruned.network_.classifier.weight
    assert bool((heads != 0).all())  # the output heads are never pruned
    frame = toy_frames["TOY0"]
    before, after = fitted.predict(frame), pruned.predict(frame)
    assert list(after.columns) == list(before.columns)
    assert after.index.equals(before.index)
    np.testing.assert_allclose(after[["p_down", "p_flat", "p_up"]].sum(axis=1), 1.0, atol=1e-9)
    assert not np.allclose(after["p_up"], before["p_up"])
    windows = np.stack([frame[fitted.feature_names_].to_numpy()[i - 11 : i + 1] for i in range(20, 30)])
    assert Predictor(pruned).predict_windows(windows).probabilities.shape == (10, 3)


def test_structured_pruning_shrinks_the_layers(fitted: CNNLSTMForecaster, toy_frames) -> None:
    pruned = prune_channels(fitted, 0.5)
    net, orig = pruned.network_, fitted.network_
    assert parameter_count(pruned) < parameter_count(fitted)
    assert [b.conv.out_channels for b in net.branches] == [4, 4, 4]
    assert net.branch_norm.num_features == 12
    block = net.blocks[0]
    assert block.body[0].conv.in_channels == 12
    assert block.body[0].conv.out_channels == 12  # inner channels: 24 -> 12
    assert block.body[3].conv.out_channels == orig.blocks[0].body[3].conv.out_channels  # output width kept
    assert block.skip.in_channels == 12
    frame = toy_frames["TOY1"]
    out = pruned.predict(frame)
    assert out.shape == fitted.predict(frame).shape
    assert parameter_count(fitted) == sum(p.numel() for p in orig.parameters())  # original intact


def test_structured_pruning_of_dead_channels_changes_nothing(fitted: CNNLSTMForecaster, toy_frames) -> None:
    """Channels whose BatchNorm scale and shift are zero output GELU(0) = 0 and feed nothing downstream:
    removing exactly them must leave every forecast as it was."""
    import copy

    model = copy.copy(fitted)
    model.network_ = copy.deepcopy(fitted.network_)
    net = model.network_
    with torch.no_grad():
        for bn in (net.branch_norm, *(b.body[1] for b in net.blocks)):
            dead = torch.arange(1, bn.num_features, 2)  # every other channel
            bn.weight[dead] = 0.0
            bn.bias[dead] = 0.0
    pruned = prune_channels(model, 0.5)
    frame = toy_frames["TOY0"]
    pd.testing.assert_frame_equal(pruned.predict(frame), model.predict(frame), rtol=1e-5, atol=1e-6)
    assert parameter_count(pruned) < parameter_count(model)
    assert pruned.network_.branch_norm.num_features == net.branch_norm.num_features // 2


def test_nothing_removed_is_the_same_network(fitted: CNNLSTMForecaster, toy_frames) -> None:
    frame = toy_frames["TOY1"]
    pd.testing.assert_frame_equal(prune_channels(fitted, 0.0).predict(frame), fitted.predict(frame))
    pd.testing.assert_frame_equal(prune_magnitude(fitted, 0.0).predict(frame), fitted.predict(frame))


def test_fine_tuning_recovers_loss_and_keeps_the_zeros(spy_model: CNNLSTMForecaster, spy_frames) -> None:
    fit = {"SPY": spy_frames["fit"]}
    dense = objective(spy_model, fit)
    pruned = prune_magnitude(spy_model, 0.8)
    damaged = objective(pruned, fit)
    assert damaged > dense  # pruning 80% of the weights costs loss
    tuned, history = fine_tune(pruned, fit, epochs=2, learning_rate=1e-3)
    assert history.loss_before == pytest.approx(damaged, rel=1e-5)
    assert history.epoch_losses[-1] < damaged
    assert objective(tuned, fit) == pytest.approx(history.epoch_losses[-1], rel=1e-5)
    assert sparsity(tuned) == pytest.approx(sparsity(pruned))  # pruned weights stayed at zero
    assert objective(pruned, fit) == pytest.approx(damaged)  # fine_tune returned a copy
    holdout = tuned.evaluate({"SPY": spy_frames["holdout"]})
    assert holdout["n"] > 400
    assert np.isfinite(holdout["log_loss"])

    channels = prune_channels(spy_model, 0.5)
    tuned_channels, h = fine_tune(channels, fit, epochs=2, learning_rate=1e-3)
    assert h.epoch_losses[-1] < h.loss_before
    assert parameter_count(tuned_channels) == parameter_count(channels)


def test_a_structurally_pruned_model_serves_from_an_export(
    fitted: CNNLSTMForecaster, toy_frames, tmp_path
) -> None:
    pruned = prune_channels(fitted, 0.25)
    path = export_torchscript(pruned, tmp_path / "pruned.pt")
    frame = toy_frames["TOY0"]
    served = Predictor.load(path).predict(frame)
    direct = pruned.predict(frame)
    np.testing.assert_allclose(served["p_up"], direct["p_up"], atol=1e-5)


def test_bad_requests_are_refused(fitted: CNNLSTMForecaster, small_config: CNNLSTMConfig) -> None:
    with pytest.raises(ConfigError, match="in \\[0, 1\\)"):
        prune_magnitude(fitted, 1.0)
    with pytest.raises(ConfigError, match="scope"):
        prune_magnitude(fitted, 0.5, scope="row")  # type: ignore[arg-type]
    with pytest.raises(NotFittedError):
        prune_channels(CNNLSTMForecaster(small_config), 0.5)
    from alphaloom.models import CNNLSTM

    flat = CNNLSTM(small_config.replace(conv_blocks=0), 5)
    with pytest.raises(ConfigError, match="conv_blocks"):
        prune_channels(flat, 0.5)
    with pytest.raises(ConfigError, match="epochs"):
        fine_tune(fitted, {}, epochs=0)
