"""The CNN+LSTM network: multi-scale convolutions, self-attention over time, a bidirectional LSTM.

Data flow for an input of shape ``(batch, window, n_features)``::

    parallel Conv1d branches, one per kernel size, each 'same' length -> concatenated -> BatchNorm -> GELU
      -> residual conv blocks (two convs + BatchNorm, 1x1 projection skip; the first may stride time by 2)
      -> + learned position embedding -> multi-head self-attention over time (residual + LayerNorm)
      -> bidirectional LSTM layers with variational dropout between them and a residual skip around every
         layer after the first
      -> attention pooling over time (learned query), concatenated with the final hidden states
      -> embedding (Linear -> LayerNorm -> tanh)
      -> heads: 3-class logits (down, flat, up) and the standardised forward log return
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.models.cnn_lstm.config import CNNLSTMConfig

__all__ = ["CNNLSTM", "N_CLASSES", "CNNLSTMOutput"]

#: Classes of the classification head, in logit order: down, flat, up.
N_CLASSES = 3


class CNNLSTMOutput(NamedTuple):
    """What :meth:`CNNLSTM.forward` returns.

    Attributes
    ----------
    logits
        ``(batch, 3)`` unnormalised class scores for down, flat, up.
    regression
        ``(batch,)`` forward log return in standardised units (the forecaster's ``ret_scale_``).
    embedding
        ``(batch, embedding_dim)`` penultimate representation, each value in ``(-1, 1)``.
    """

    logits: Tensor
    regression: Tensor
    embedding: Tensor


class SameConv1d(nn.Module):
    """Conv1d whose output length equals its input length, for odd *and* even kernels.

    The ``kernel_size - 1`` padding bars are split with the extra one on the right (``padding='same'`` in
    torch warns and copies for even kernels). Input and output are ``(batch, channels, length)``. With
    ``stride`` s the output keeps positions ``0, s, 2s, ...``: length ``ceil(length / s)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, bias: bool = True
    ) -> None:
        super().__init__()
        left, right = (kernel_size - 1) // 2, kernel_size // 2
        symmetric = left == right
        self.pad = nn.Identity() if symmetric else nn.ConstantPad1d((left, right), 0.0)
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=left if symmetric else 0,
            bias=bias,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pad(x))


class _ResidualConvBlock(nn.Module):
    # Two convolutions with BatchNorm plus a 1x1 projection skip (ResNet). With stride s > 1 the block
    # downsamples time as ResNet does, but aligned to the end of the window: zeros are prepended until the
    # newest bar is a sample point (positions t, t - s, t - 2s, ...) of both paths, and no bar is dropped.
    # No dropout inside: BatchNorm regularises the convolutions, and CPU dropout masks cost ~25% of the block.
    def __init__(self, channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.body = nn.Sequential(
            SameConv1d(channels, channels, kernel_size, stride=stride, bias=False),
            nn.BatchNorm1d(channels),
            nn.GELU(),
            SameConv1d(channels, channels, kernel_size, bias=False),
            nn.BatchNorm1d(channels),
        )
        self.skip = nn.Conv1d(channels, channels, kernel_size=1, stride=stride)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = F.pad(x, (-(x.shape[-1] - 1) % self.stride, 0))
        return self.act(self.body(x) + self.skip(x))


class _TemporalSelfAttention(nn.Module):
    # Multi-head self-attention over the time axis of (batch, window, width) tokens, with a residual and a
    # LayerNorm. scaled_dot_product_attention runs a fused kernel, about twice as fast on CPU as
    # nn.MultiheadAttention at these sizes.
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: Tensor) -> Tensor:
        batch, steps, width = tokens.shape
        qkv = self.qkv(tokens).view(batch, steps, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, steps, head_dim)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, steps, width)
        return self.norm(tokens + self.out(attended))


class _BiLSTMStack(nn.Module):
    # Bidirectional LSTM layers with variational ("locked") dropout between them: one mask per sequence,
    # shared by all time steps (Gal & Ghahramani, 2016). It regularises recurrent stacks better than a fresh
    # mask per step, and draws `steps` times fewer random numbers, which are slow to draw on CPU.
    # Every layer after the first adds its (undropped) input to its output, as in GNMT: both are 2 * hidden
    # wide, and the skip keeps deeper stacks as easy to train as a single layer.
    def __init__(self, width: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.LSTM(width if i == 0 else 2 * hidden, hidden, bidirectional=True, batch_first=True)
            for i in range(layers)
        )
        self.dropout = dropout

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h_n = x.new_empty(0)
        for i, layer in enumerate(self.layers):
            skip = x
            if i and self.training and self.dropout > 0:
                keep = 1.0 - self.dropout
                x = x * x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(keep).div_(keep)
            x, (h_n, _) = layer(x)
            if i:
                x = x + skip
        return x, torch.cat([h_n[0], h_n[1]], dim=1)


class CNNLSTM(nn.Module):
    """Multi-scale CNN, self-attention over time and a bidirectional LSTM, with class and return heads.

    Parameters
    ----------
    config
        Architecture settings (``window``, ``kernel_sizes``, ``conv_channels``, ``conv_blocks``,
        ``block_stride``, ``attention_heads``, ``lstm_hidden``, ``lstm_layers``, ``dropout``,
        ``embedding_dim``).
    n_features
        Number of input features per bar.

    Notes
    -----
    Input is ``(batch, window, n_features)``, time ascending, the last step being the bar the forecast is made
    at. Convolutions pad with zeros inside the window, so a window that ends at ``t`` only ever sees bars up
    to ``t``. BatchNorm uses batch statistics in training mode only; call ``eval()`` for inference, where each
    window's output is independent of the rest of the batch.
    """

    def __init__(self, config: CNNLSTMConfig, n_features: int) -> None:
        super().__init__()
        if n_features < 1:
            raise ConfigError(f"n_features must be >= 1, got {n_features}")
        self.config = config
        self.n_features = n_features
        width = config.conv_width
        hidden = config.lstm_hidden

        self.branches = nn.ModuleList(
            SameConv1d(n_features, config.conv_channels, k, bias=False) for k in config.kernel_sizes
        )
        # BatchNorm and GELU act per channel, so one of each over the concatenation equals one per branch,
        # at a fraction of the cost.
        self.branch_norm = nn.BatchNorm1d(width)
        self.branch_act = nn.GELU()
        self.blocks = nn.Sequential(
            *(
                _ResidualConvBlock(width, min(3, config.window), stride=config.block_stride if i == 0 else 1)
                for i in range(config.conv_blocks)
            )
        )
        self.position = nn.Parameter(torch.randn(1, config.sequence_length, width) * 0.02)
        self.attention = _TemporalSelfAttention(width, config.attention_heads)
        self.lstm = _BiLSTMStack(width, hidden, config.lstm_layers, config.dropout)
        self.pool_query = nn.Parameter(torch.zeros(2 * hidden))
        self.embedding = nn.Sequential(
            nn.Linear(4 * hidden, config.embedding_dim), nn.LayerNorm(config.embedding_dim), nn.Tanh()
        )
        self.head_dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.embedding_dim, N_CLASSES)
        self.regressor = nn.Linear(config.embedding_dim, 1)

    def forward(self, x: Tensor) -> CNNLSTMOutput:
        """Score a batch of windows.

        Parameters
        ----------
        x
            ``(batch, window, n_features)`` standardised features, time ascending.

        Returns
        -------
        CNNLSTMOutput
            ``logits (batch, 3)``, ``regression (batch,)``, ``embedding (batch, embedding_dim)``.
        """
        if x.dim() != 3 or x.shape[1] != self.config.window or x.shape[2] != self.n_features:
            raise DataFormatError(
                f"expected input of shape (batch, window={self.config.window}, "
                f"n_features={self.n_features}), got {tuple(x.shape)}"
            )
        h = x.transpose(1, 2).contiguous()  # (batch, n_features, window): Conv1d wants channels first
        h = torch.cat([branch(h) for branch in self.branches], dim=1)
        h = self.blocks(self.branch_act(self.branch_norm(h)))  # (batch, width, sequence_length)

        tokens = h.transpose(1, 2).contiguous() + self.position  # (batch, sequence_length, width)
        tokens = self.attention(tokens)

        # seq: (batch, steps, 2 * hidden); final: the forward state at t and the backward state after reading
        # the whole sequence (each direction's last step), kept next to the pooled summary as a skip.
        seq, final = self.lstm(tokens)
        weights = torch.softmax(seq @ self.pool_query / math.sqrt(seq.shape[-1]), dim=1)  # (batch, steps)
        pooled = torch.einsum("bt,bth->bh", weights, seq)
        embedding = self.embedding(torch.cat([pooled, final], dim=1))

        z = self.head_dropout(embedding)
        return CNNLSTMOutput(self.classifier(z), self.regressor(z).squeeze(-1), embedding)
