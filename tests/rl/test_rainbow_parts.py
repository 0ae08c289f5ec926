"""Rainbow DQN components, one test each: sum tree, replay, C51 projection, noisy layers, n-step, double-Q."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alphaloom.rl.agents._rainbow_core import (
    NoisyLinear,
    NStepAccumulator,
    PrioritizedReplayBuffer,
    RainbowNetwork,
    SumTree,
    double_q_target,
    n_step_return,
    project_distribution,
)


# ------------------------------------------------------------------------------------------ sum tree
def test_sum_tree_samples_in_proportion_to_priority() -> None:
    tree = SumTree(6)  # 8 leaves, two of them unused
    priorities = np.array([1.0, 2.0, 0.0, 4.0, 3.0, 10.0])
    tree.update(np.arange(6), priorities)
    assert tree.total == pytest.approx(20.0)
    rng = np.random.default_rng(0)
    draws = np.concatenate([tree.sample(64, rng) for _ in range(3000)])
    freq = np.bincount(draws, minlength=8) / draws.size
    assert freq[2] == 0.0
    assert freq[6] == 0.0
    assert freq[7] == 0.0
    # 192,000 draws: the standard error of each share is below 0.001.
    np.testing.assert_allclose(freq[:6], priorities / priorities.sum(), atol=0.005)


def test_sum_tree_update_with_repeated_indices_keeps_sums_consistent() -> None:
    tree = SumTree(1000)
    rng = np.random.default_rng(1)
    tree.update(np.arange(1000), rng.uniform(0.0, 1.0, 1000))
    for _ in range(20):
        idx = rng.integers(0, 1000, 64)  # repeats included
        tree.update(idx, rng.uniform(0.0, 5.0, 64))
    leaves = tree.priorities(np.arange(1000))
    assert tree.total == pytest.approx(leaves.sum(), rel=1e-12)
    for node in (2, 3, 17, 511):
        lo, hi = node, node
        while lo < tree.n_leaves:
            lo, hi = 2 * lo, 2 * hi + 1
        assert tree.nodes[node] == pytest.approx(tree.nodes[lo : hi + 1].sum(), rel=1e-12)


def test_sum_tree_find_boundaries() -> None:
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.0, 1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(
        tree.find(np.array([0.0, 0.999, 1.0, 1.999, 2.0, 3.999])), [0, 0, 1, 1, 3, 3]
    )


# ------------------------------------------------------------------------------------------ replay buffer
def test_prioritized_replay_weights_and_priorities() -> None:
    buf = PrioritizedReplayBuffer(8, 2, alpha=1.0, rng=np.random.default_rng(0))
    n = 5
    buf.add(np.zeros((n, 2)), np.arange(n), np.arange(n, dtype=float), np.ones((n, 2)), np.full(n, 0.9))
    assert len(buf) == 5
    np.testing.assert_allclose(buf.tree.priorities(np.arange(5)), 1.0)  # new transitions at max priority
    buf.update_priorities(np.array([0, 1]), np.array([9.0, 0.0]))
    assert buf.max_priority == pytest.approx(9.0 + buf.eps)
    sample = buf.sample(256, beta=1.0)
    share0 = np.mean(sample.index == 0)
    assert share0 == pytest.approx(9.0 / 12.0, abs=0.05)
    assert sample.weights.max() == pytest.approx(1.0)
    # beta = 1: weights are exactly inverse to the sampling probability.
    w = sample.weights[sample.index == 0][0]
    w2 = sample.weights[sample.index == 2][0]
    assert w / w2 == pytest.approx(1.0 / 9.0, rel=1e-3)
    # The ring wraps: 5 more transitions overwrite the oldest two.
    buf.add(np.zeros((5, 2)), np.arange(5) + 10, np.zeros(5), np.ones((5, 2)), np.zeros(5))
    assert len(buf) == 8
    assert sorted(buf.actions.tolist()) == [2, 3, 4, 10, 11, 12, 13, 14]


# ------------------------------------------------------------------------------------------ C51 projection
def test_projection_matches_hand_computed_case() -> None:
    support = torch.tensor([-1.0, 0.0, 1.0])
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3], [0.2, 0.5, 0.3]])
    returns = torch.tensor([0.5, 0.3, 5.0])
    discounts = torch.tensor([0.5, 0.0, 0.9])
    out = project_distribution(probs, returns, discounts, support)
    # Row 0: atoms land on 0.0, 0.5, 1.0 -> 0.2 to atom 1; 0.5 split evenly between atoms 1 and 2; 0.3 to 2.
    # Row 1 (terminal): everything lands on 0.3 -> 0.7 to atom 1, 0.3 to atom 2.
    # Row 2: everything beyond v_max is clipped to atom 2.
    expected = torch.tensor([[0.0, 0.45, 0.55], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_projection_preserves_probability_mass() -> None:
    gen = torch.Generator().manual_seed(0)
    support = torch.linspace(-10.0, 10.0, 51)
    probs = torch.softmax(torch.randn(256, 51, generator=gen), dim=-1)
    returns = torch.randn(256, generator=gen) * 8.0
    discounts = torch.rand(256, generator=gen)
    out = project_distribution(probs, returns, discounts, support)
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(dim=-1), torch.ones(256), rtol=0, atol=1e-5)
    # The mean is preserved wherever nothing was clipped.
    tz = returns[:, None] + discounts[:, None] * support
    inside = ((tz >= -10.0) & (tz <= 10.0)).all(dim=1)
    torch.testing.assert_close(
        (out[inside] * support).sum(-1), (probs[inside] * tz[inside]).sum(-1), rtol=0, atol=1e-4
    )


# ------------------------------------------------------------------------------------------ noisy layer
def test_noisy_layer_changes_with_noise_and_is_deterministic_in_eval() -> None:
    gen = torch.Generator().manual_seed(0)
    layer = NoisyLinear(5, 3, sigma0=0.5, generator=gen)
    x = torch.randn(4, 5, generator=gen)
    layer.train()
    a = layer(x)
    assert torch.equal(a, layer(x))  # the same noise until it is reset
    layer.reset_noise(gen)
    b = layer(x)
    assert not torch.allclose(a, b)
    layer.eval()
    c = layer(x)
    layer.reset_noise(gen)
    torch.testing.assert_close(layer(x), c, rtol=0, atol=0)
    torch.testing.assert_close(c, F.linear(x, layer.weight_mu, layer.bias_mu))


def test_noisy_layer_noise_is_factorised() -> None:
    layer = NoisyLinear(6, 4, generator=torch.Generator().manual_seed(3))
    assert torch.linalg.matrix_rank(layer.weight_eps) == 1
    torch.testing.assert_close(
        layer.weight_eps[:, 0] / layer.weight_eps[0, 0], layer.bias_eps / layer.bias_eps[0]
    )


def test_network_outputs_distributions() -> None:
    net = RainbowNetwork(7, 15, 51, (32, 32), generator=torch.Generator().manual_seed(0))
    log_probs = net(torch.randn(9, 7))
    assert log_probs.shape == (9, 15, 51)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(9, 15))
    torch.testing.assert_close(net.probs(torch.zeros(2, 7)), net(torch.zeros(2, 7)).exp())


# ------------------------------------------------------------------------------------------ n-step returns
def test_n_step_return() -> None:
    assert n_step_return([1.0, 2.0, 3.0], 0.9) == pytest.approx(1.0 + 0.9 * 2.0 + 0.81 * 3.0)
    assert n_step_return([], 0.9) == 0.0


def test_n_step_accumulator_emits_and_flushes() -> None:
    acc = NStepAccumulator(3, 0.5)
    o = [np.full(2, i, dtype=np.float32) for i in range(8)]
    assert acc.push(o[0], 0, 1.0, o[1], terminated=False, done=False) == []
    assert acc.push(o[1], 1, 2.0, o[2], terminated=False, done=False) == []
    (t,) = acc.push(o[2], 2, 4.0, o[3], terminated=False, done=False)
    assert t.action == 0
    assert t.ret == pytest.approx(1.0 + 0.5 * 2.0 + 0.25 * 4.0)
    assert np.array_equal(t.next_obs, o[3])
    assert t.discount == pytest.approx(0.125)
    # Termination flushes the queue without bootstrapping.
    out = acc.push(o[3], 3, 8.0, o[4], terminated=True, done=True)
    assert [x.action for x in out] == [1, 2, 3]
    assert [x.ret for x in out] == pytest.approx([2.0 + 0.5 * 4.0 + 0.25 * 8.0, 4.0 + 0.5 * 8.0, 8.0])
    assert all(x.discount == 0.0 for x in out)
    assert len(acc) == 0
    # Truncation flushes with bootstrapping from the last observation, discounted by the rewards taken.
    acc.push(o[5], 5, 1.0, o[6], terminated=False, done=False)
    out = acc.push(o[6], 6, 1.0, o[7], terminated=False, done=True)
    assert [x.discount for x in out] == pytest.approx([0.25, 0.5])
    assert all(np.array_equal(x.next_obs, o[7]) for x in out)


# ------------------------------------------------------------------------------------------ double-Q
def test_double_q_uses_the_online_argmax() -> None:
    support = torch.tensor([0.0, 1.0])
    # Online network: action 1 is best (expected 0.9 vs 0.1). Target network: action 0 is best.
    online = torch.tensor([[[0.9, 0.1], [0.1, 0.9]]])
    target = torch.tensor([[[0.0, 1.0], [0.7, 0.3]]])
    dist, action = double_q_target(online, target, support)
    assert action.tolist() == [1]
    torch.testing.assert_close(dist, torch.tensor([[0.7, 0.3]]))
