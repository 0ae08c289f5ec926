"""Compress the CNN+LSTM beyond int8: magnitude pruning, structured channel pruning, and fine-tuning.

Two kinds of pruning, each returning a pruned copy (the model passed in is not changed):

* :func:`prune_magnitude`: unstructured L1 pruning (``torch.nn.utils.prune``) of every convolution, linear
  and LSTM weight matrix but the two output heads: the ``amount`` share of the weights with the smallest
  magnitude, in each layer (default) or ranked across all layers together (``scope="global"``), is set to
  zero. The tensors keep their shapes, so dense kernels run exactly as fast as before; the gain is in
  compressed storage, and speed only with sparse kernels this CPU build does not use.
* :func:`prune_channels`: structured pruning that removes convolution channels and shrinks the layers, so
  inference does less work. Two kinds of channel go: the output channels of the parallel input branches
  (with their BatchNorm entries and the matching input channels of the first residual block's two
  readers, its first convolution and its 1x1 skip), and the inner channels of each residual block (the first
  convolution's outputs, its BatchNorm, the second convolution's inputs). A block's output width is unchanged,
  so attention and the LSTM see the same shapes. Channels are ranked by the magnitude of their BatchNorm
  scale ``|gamma|`` (network slimming, Liu et al., 2017): BatchNorm rescales each channel, so the scale, not
  the filter's norm, says how much the channel contributes. The attention and the LSTM, most of the model's
  FLOPs at the default size, are left alone, which bounds the speed-up (see ``bench/pruning.py``).

:func:`fine_tune` then retrains the pruned network for a few epochs on training frames, with the fitted
scaler, flat threshold, class weights and temperature of the original model; weights that were pruned to
zero are held at zero by masks while it trains (``torch.nn.utils.prune.custom_from_mask``), then the masks are
removed. :func:`objective` is the loss it minimises, for before/after comparisons.

A structurally pruned forecaster predicts through the same :meth:`CNNLSTMForecaster.predict` and
:class:`~alphaloom.models.cnn_lstm.export.Predictor` interface, and exports to TorchScript or ONNX; its
layer shapes differ from its config's, so :meth:`CNNLSTMForecaster.save` / ``load`` cannot round-trip it:
serve it from an export.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune

from alphaloom.core.exceptions import ConfigError, EmptyRangeError, NotFittedError, TrainingError
from alphaloom.models.cnn_lstm.dataset import (
    as_frames,
    class_labels,
    forward_log_return,
    frame_arrays,
    gather_windows,
    window_end_mask,
)
from alphaloom.models.cnn_lstm.forecaster import CNNLSTMForecaster, ProgressCallback, _torch_session
from alphaloom.models.cnn_lstm.network import CNNLSTM, _ResidualConvBlock

__all__ = [
    "FineTuneHistory",
    "fine_tune",
    "objective",
    "parameter_count",
    "prunable_weights",
    "prune_channels",
    "prune_magnitude",
    "sparsity",
]

Model = CNNLSTMForecaster | CNNLSTM
_HEADS = ("classifier", "regressor")


class FineTuneHistory(NamedTuple):
    """What :func:`fine_tune` did: the objective on the fine-tuning windows before, then after each epoch."""

    loss_before: float
    epoch_losses: tuple[float, ...]
    seconds: float


def _network(model: Model) -> CNNLSTM:
    if isinstance(model, CNNLSTMForecaster):
        if not hasattr(model, "network_"):
            raise NotFittedError("this CNNLSTMForecaster is not fitted; fit or load it before pruning.")
        return model.network_
    if isinstance(model, CNNLSTM):
        return model
    raise ConfigError(f"expected a fitted CNNLSTMForecaster or a CNNLSTM, got {type(model).__name__}.")


def _with_network(model: Model, network: CNNLSTM) -> Model:
    if isinstance(model, CNNLSTM):
        return network
    out = copy.copy(model)  # shares the fitted scaler and threshold arrays (never mutated), not the network
    out.network_ = network
    return out


def _check_amount(amount: float) -> float:
    if not (isinstance(amount, int | float) and 0.0 <= amount < 1.0 and math.isfinite(amount)):
        raise ConfigError(f"amount is the share of weights or channels to remove, in [0, 1); got {amount!r}.")
    return float(amount)


def prunable_weights(model: Model) -> list[tuple[nn.Module, str]]:
    """``(module, parameter name)`` of every weight :func:`prune_magnitude` may zero: convolution, linear and
    LSTM weight matrices, the two output heads excepted (they are small, and the forecasts pass through
    them)."""
    network = _network(model)
    out = []
    for path, module in network.named_modules():
        if path.split(".")[0] in _HEADS:
            continue
        if isinstance(module, nn.Conv1d | nn.Linear):
            out.append((module, "weight"))
        elif isinstance(module, nn.LSTM):
            out += [(module, name) for name in module._flat_weights_names if name.startswith("weight_")]
    return out


def sparsity(model: Model) -> float:
    """Share of exact zeros among the :func:`prunable_weights`."""
    weights = [getattr(m, n).detach() for m, n in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    return float(sum(int((w == 0).sum()) for w in weights) / total)


def parameter_count(model: Model) -> int:
    """Number of parameters of the network (pruned-to-zero weights still count)."""
    return sum(p.numel() for p in _network(model).parameters())


def prune_magnitude(model: Model, amount: float, *, scope: Literal["layer", "global"] = "layer") -> Model:
    """A copy with the ``amount`` share of the :func:`prunable_weights` of smallest magnitude set to zero
    (L1 unstructured pruning); the masks are made permanent.

    Parameters
    ----------
    model
        A fitted forecaster or a network.
    amount
        Share of the weights to zero, in ``[0, 1)``.
    scope
        ``"layer"``: the ``amount`` share of each weight matrix (``torch.nn.utils.prune.l1_unstructured``
        layer by layer). ``"global"``: the ``amount`` share of all of them ranked together
        (``global_unstructured``). Weight scales differ between layers (fan-in initialisation, BatchNorm
        after the convolutions), so global ranking empties whole layers at high sparsity: at 80% on the
        test network it zeroed both residual convolutions and the embedding layer, and the forecasts became
        constant. Layer scope keeps every layer alive and is the default.
    """
    amount = _check_amount(amount)
    if scope not in ("layer", "global"):
        raise ConfigError(f"scope must be 'layer' or 'global', got {scope!r}.")
    network = copy.deepcopy(_network(model)).cpu().eval()
    params = prunable_weights(network)
    if scope == "global":
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=amount)
    else:
        for module, name in params:
            torch_prune.l1_unstructured(module, name, amount=amount)
    for module, name in params:
        torch_prune.remove(module, name)
    return _with_network(model, network)


# ---------------------------------------------------------------------------------------- structured
def _keep(scores: Tensor, fraction_removed: float) -> Tensor:
    n = scores.numel()
    keep = max(1, round(n * (1.0 - fraction_removed)))
    return torch.sort(torch.topk(scores, keep).indices).values


def _conv_subset(
    conv: nn.Conv1d, *, out_idx: Tensor | None = None, in_idx: Tensor | None = None
) -> nn.Conv1d:
    weight = conv.weight.detach()
    bias = None if conv.bias is None else conv.bias.detach()
    if out_idx is not None:
        weight = weight[out_idx]
        bias = None if bias is None else bias[out_idx]
    if in_idx is not None:
        weight = weight[:, in_idx]
    new = nn.Conv1d(
        weight.shape[1],
        weight.shape[0],
        conv.kernel_size[0],
        stride=conv.stride[0],
        padding=conv.padding[0],
        bias=bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _bn_subset(bn: nn.BatchNorm1d, idx: Tensor) -> nn.BatchNorm1d:
    new = nn.BatchNorm1d(len(idx), eps=bn.eps, momentum=bn.momentum)
    with torch.no_grad():
        new.weight.copy_(bn.weight.detach()[idx])
        new.bias.copy_(bn.bias.detach()[idx])
        new.running_mean.copy_(bn.running_mean[idx])
        new.running_var.copy_(bn.running_var[idx])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def prune_channels(model: Model, amount: float) -> Model:
    """A copy with the ``amount`` share of the input branches' channels and of each residual block's inner
    channels removed (the layers shrink; see the module docstring).

    Raises
    ------
    ConfigError
        If the network has no residual block (``conv_blocks == 0``): its branch channels then feed the
        attention directly and cannot be removed without changing its width.
    """
    amount = _check_amount(amount)
    network = copy.deepcopy(_network(model)).cpu().eval()
    if not len(network.blocks):
        raise ConfigError(
            "structured pruning needs at least one residual conv block (conv_blocks >= 1); use "
            "prune_magnitude for this network."
        )
    bn = network.branch_norm
    kept, offset = [], 0
    for branch in network.branches:
        width = branch.conv.out_channels
        idx = _keep(bn.weight.detach()[offset : offset + width].abs(), amount)
        branch.conv = _conv_subset(branch.conv, out_idx=idx)
        kept.append(idx + offset)
        offset += width
    branch_idx = torch.cat(kept)
    network.branch_norm = _bn_subset(bn, branch_idx)
    first: _ResidualConvBlock = network.blocks[0]
    first.body[0].conv = _conv_subset(first.body[0].conv, in_idx=branch_idx)
    first.skip = _conv_subset(first.skip, in_idx=branch_idx)
    for block in network.blocks:
        inner = _keep(block.body[1].weight.detach().abs(), amount)
        block.body[0].conv = _conv_subset(block.body[0].conv, out_idx=inner)
        block.body[1] = _bn_subset(block.body[1], inner)
        block.body[3].conv = _conv_subset(block.body[3].conv, in_idx=inner)
    return _with_network(model, network.eval())


# ---------------------------------------------------------------------------------------- fine-tuning
class _Windows(NamedTuple):
    values: Tensor
    ends: Tensor
    labels: Tensor
    targets: Tensor


def _windows(model: CNNLSTMForecaster, frames: Mapping[str, pd.DataFrame] | pd.DataFrame) -> _Windows:
    # Labelled windows of ``frames`` with the fitted model's scaler, flat threshold and return scale, so
    # the fine-tuned network keeps the meaning of its inputs and outputs (a refit would re-estimate them).
    cfg = model.config
    blocks, ends, labels, targets = [], [], [], []
    offset = 0
    for name, frame in as_frames(frames, name="frames").items():
        _, values, close = frame_arrays(
            frame, model.feature_names_, need_close=True, name=f"frames[{name!r}]"
        )
        assert close is not None
        realised = forward_log_return(close, cfg.horizon)
        ok = np.flatnonzero(window_end_mask(values, cfg.window) & np.isfinite(realised))
        standardised = ((values - model.scaler_mean_) / model.scaler_std_).astype(np.float32)
        blocks.append(np.nan_to_num(standardised))  # rows no kept window reads may hold NaN
        ends.append(ok + offset)
        labels.append(class_labels(realised[ok], model.flat_threshold_))
        targets.append((realised[ok] / model.ret_scale_).astype(np.float32))
        offset += len(values)
    all_ends = np.concatenate(ends)
    if len(all_ends) == 0:
        raise EmptyRangeError(
            f"no labelled window in the frames: each needs {cfg.window} finite feature rows and a close "
            f"{cfg.horizon} bar(s) later."
        )
    return _Windows(
        torch.from_numpy(np.concatenate(blocks)),
        torch.from_numpy(all_ends),
        torch.from_numpy(np.concatenate(labels)),
        torch.from_numpy(np.concatenate(targets)),
    )


def _loss(model: CNNLSTMForecaster, network: CNNLSTM, data: _Windows, idx: Tensor) -> Tensor:
    logits, regression, _ = network(gather_windows(data.values, data.ends[idx], model.config.window))
    weight = torch.as_tensor(model.class_weight_, dtype=torch.float32)
    ce = F.cross_entropy(logits, data.labels[idx], weight=weight)
    return ce + model.config.regression_weight * F.huber_loss(regression, data.targets[idx], delta=1.0)


def _mean_loss(model: CNNLSTMForecaster, network: CNNLSTM, data: _Windows) -> float:
    network.eval()
    total, n = 0.0, len(data.ends)
    with torch.no_grad():
        for start in range(0, n, 2048):
            idx = torch.arange(start, min(start + 2048, n))
            total += float(_loss(model, network, data, idx)) * len(idx)
    return total / n


def objective(model: CNNLSTMForecaster, frames: Mapping[str, pd.DataFrame] | pd.DataFrame) -> float:
    """The loss :func:`fine_tune` minimises, on every labelled window of ``frames``: the class-weighted
    cross-entropy of the logits plus ``regression_weight`` times the Huber loss of the standardised return
    (the forecaster's validation loss; the temperature is not applied)."""
    if not isinstance(model, CNNLSTMForecaster):
        raise ConfigError(f"objective needs a fitted CNNLSTMForecaster, got {type(model).__name__}.")
    network = _network(model)
    data = _windows(model, frames)
    with _torch_session(model.config, torch.device("cpu"), train=False):
        return _mean_loss(model, network, data)


def fine_tune(
    model: CNNLSTMForecaster,
    frames: Mapping[str, pd.DataFrame] | pd.DataFrame,
    *,
    epochs: int = 2,
    learning_rate: float = 3e-4,
    progress: ProgressCallback | None = None,
) -> tuple[CNNLSTMForecaster, FineTuneHistory]:
    """Retrain a (pruned) forecaster's network on ``frames`` for a few epochs; return a copy and its history.

    Parameters
    ----------
    model
        A fitted forecaster, typically from :func:`prune_magnitude` or :func:`prune_channels`.
    frames
        Training frames as for :meth:`CNNLSTMForecaster.fit` (features and ``close``), the model's own
        training segment: fine-tuning on later data would leak it into the evaluation.
    epochs, learning_rate
        AdamW epochs (batch ``config.batch_size``, shuffled with ``config.seed``) and a constant rate, low
        so the surviving weights adapt without forgetting; gradients are clipped at ``config.grad_clip``.
    progress
        ``progress(epoch, epochs, {"loss": ...})`` after each epoch.

    Returns
    -------
    (CNNLSTMForecaster, FineTuneHistory)
        The fine-tuned copy (same scaler, threshold, class weights, temperature; exact zeros of the input
        network stay zero) and the objective before and after each epoch.
    """
    if not isinstance(model, CNNLSTMForecaster):
        raise ConfigError(f"fine_tune needs a fitted CNNLSTMForecaster, got {type(model).__name__}.")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}.")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ConfigError(f"learning_rate must be > 0, got {learning_rate!r}.")
    cfg = model.config
    started = time.perf_counter()
    network = copy.deepcopy(_network(model)).cpu()
    data = _windows(model, frames)
    n = len(data.ends)
    batch = min(cfg.batch_size, n)
    masked = []
    for module, name in prunable_weights(network):
        weight = getattr(module, name).detach()
        if bool((weight == 0).any()):  # pruned weights: keep them at zero while training
            torch_prune.custom_from_mask(module, name, mask=(weight != 0).to(weight.dtype))
            masked.append((module, name))
    losses = []
    with _torch_session(cfg, torch.device("cpu")):
        before = _mean_loss(model, network, data)
        optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        for epoch in range(1, epochs + 1):
            network.train()
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - batch + 1, batch):
                loss = _loss(model, network, data, order[start : start + batch])
                if not torch.isfinite(loss):
                    raise TrainingError(f"non-finite fine-tuning loss at epoch {epoch}; lower learning_rate.")
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip)
                optimiser.step()
            losses.append(_mean_loss(model, network, data))
            if progress is not None:
                progress(epoch, epochs, {"loss": losses[-1]})
    for module, name in masked:
        torch_prune.remove(module, name)
    tuned = _with_network(model, network.eval())
    return tuned, FineTuneHistory(before, tuple(losses), time.perf_counter() - started)
