"""CNNLSTM network: shapes for odd and even kernels, batch independence in eval mode, capacity to overfit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alphaloom.core import DataFormatError
from alphaloom.models import CNNLSTM, CNNLSTMConfig
from alphaloom.models.cnn_lstm.network import SameConv1d, _BiLSTMStack

torch.set_num_threads(1)


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 7, 8])
@pytest.mark.parametrize("length", [8, 9])
def test_same_conv_keeps_the_length_for_odd_and_even_kernels(kernel: int, length: int) -> None:
    conv = SameConv1d(3, 5, kernel)
    assert conv(torch.randn(2, 3, length)).shape == (2, 5, length)


def test_even_kernel_puts_the_extra_pad_bar_on_the_right() -> None:
    # With k=2, output[t] mixes x[t] and x[t+1] inside the window; the last position sees the last bar and one
    # zero pad, so nothing outside the window ever leaks in.
    conv = SameConv1d(1, 1, 2, bias=False)
    with torch.no_grad():
        conv.conv.weight.fill_(1.0)
    out = conv(torch.tensor([[[1.0, 2.0, 3.0]]]))
    torch.testing.assert_close(out, torch.tensor([[[3.0, 5.0, 3.0]]]))


@pytest.mark.parametrize(
    ("kernels", "window", "blocks", "layers"),
    [((3, 5, 7, 11), 16, 1, 2), ((2, 4, 6), 9, 2, 1), ((1,), 4, 0, 3), ((4, 3), 8, 1, 2)],
)
def test_output_shapes(kernels: tuple[int, ...], window: int, blocks: int, layers: int) -> None:
    cfg = CNNLSTMConfig(
        window=window,
        kernel_sizes=kernels,
        conv_channels=4,
        conv_blocks=blocks,
        attention_heads=2,
        lstm_hidden=6,
        lstm_layers=layers,
        embedding_dim=5,
    )
    net = CNNLSTM(cfg, n_features=7)
    out = net(torch.randn(3, window, 7))
    assert out.logits.shape == (3, 3)
    assert out.regression.shape == (3,)
    assert out.embedding.shape == (3, 5)
    assert torch.all(out.embedding.abs() < 1)
    logits, regression, embedding = out  # a NamedTuple unpacks like the documented 3-tuple
    assert logits is out.logits
    assert regression is out.regression
    assert embedding is out.embedding


def test_wrong_input_shape_is_refused() -> None:
    net = CNNLSTM(
        CNNLSTMConfig(window=8, kernel_sizes=(3,), conv_channels=4, attention_heads=2), n_features=3
    )
    with pytest.raises(DataFormatError, match=r"\(batch, window=8, n_features=3\)"):
        net(torch.randn(2, 3, 8))  # channels-first by mistake


def test_eval_outputs_do_not_depend_on_the_rest_of_the_batch() -> None:
    torch.manual_seed(0)
    net = CNNLSTM(CNNLSTMConfig(window=10, kernel_sizes=(2, 3), conv_channels=4, attention_heads=2), 4).eval()
    x = torch.randn(6, 10, 4)
    with torch.no_grad():
        full = net(x)
        alone = net(x[2:3])
    torch.testing.assert_close(full.logits[2:3], alone.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full.embedding[2:3], alone.embedding, rtol=1e-5, atol=1e-6)


def test_overfits_a_tiny_batch() -> None:
    torch.manual_seed(0)
    cfg = CNNLSTMConfig(
        window=8, kernel_sizes=(2, 3), conv_channels=8, attention_heads=2, lstm_hidden=16, dropout=0.0
    )
    net = CNNLSTM(cfg, n_features=4)
    x = torch.randn(24, 8, 4)
    y = torch.randint(0, 3, (24,))
    r = torch.randn(24)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        out = net(x)
        loss = F.cross_entropy(out.logits, y) + F.huber_loss(out.regression, r)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.05
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x).logits.argmax(dim=1), y)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("window", [8, 9])
def test_every_bar_of_the_window_reaches_the_output(stride: int, window: int) -> None:
    # The strided block pads at the old end instead of dropping bars, even with 1- and 2-bar kernels.
    torch.manual_seed(0)
    cfg = CNNLSTMConfig(
        window=window, kernel_sizes=(1, 2), conv_channels=4, attention_heads=2, block_stride=stride
    )
    net = CNNLSTM(cfg, n_features=3).eval()
    assert net.position.shape[1] == cfg.sequence_length == -(-(window - 1) // stride) + 1
    x = torch.randn(2, window, 3, requires_grad=True)
    out = net(x)
    (out.logits.sum() + out.regression.sum()).backward()
    assert x.grad is not None
    assert bool((x.grad.abs().sum(dim=(0, 2)) > 0).all())


def test_lstm_layers_after_the_first_have_a_residual_skip() -> None:
    # A layer with all-zero weights outputs h = sigmoid(0) * tanh(0) = 0, so with the skip the stack's output
    # is the first layer's output, unchanged.
    torch.manual_seed(0)
    stack = _BiLSTMStack(width=6, hidden=5, layers=2, dropout=0.3).eval()
    with torch.no_grad():
        for p in stack.layers[1].parameters():
            p.zero_()
    x = torch.randn(3, 7, 6)
    with torch.no_grad():
        out, final = stack(x)
        first, _ = stack.layers[0](x)
    torch.testing.assert_close(out, first, rtol=0, atol=0)
    assert final.shape == (3, 10)
