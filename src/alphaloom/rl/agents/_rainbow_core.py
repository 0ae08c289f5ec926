"""The parts of Rainbow DQN, each small enough to test on its own.

Sum tree and prioritised replay (Schaul et al. 2016), n-step returns, noisy linear layers with factorised
Gaussian noise (Fortunato et al. 2018), the dueling distributional network (Wang et al. 2016; Bellemare et
al. 2017), the categorical (C51) projection and double-Q target selection (van Hasselt et al. 2016).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "NStepAccumulator",
    "NStepTransition",
    "NoisyLinear",
    "PrioritizedReplayBuffer",
    "RainbowNetwork",
    "ReplaySample",
    "SumTree",
    "double_q_target",
    "n_step_return",
    "project_distribution",
]


# ---------------------------------------------------------------------------------------------- replay
class SumTree:
    """A binary tree whose internal nodes hold the sum of their children's priorities.

    Leaves live at ``[n_leaves, 2 * n_leaves)`` of a flat array (the root is node 1), ``n_leaves`` being
    ``capacity`` rounded up to a power of two; unused leaves hold priority 0 and are never sampled. Updates
    and lookups are vectorised over a batch, one tree level at a time.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.n_leaves = 1 << (capacity - 1).bit_length()
        self.depth = self.n_leaves.bit_length() - 1
        self.nodes = np.zeros(2 * self.n_leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def priorities(self, index: np.ndarray) -> np.ndarray:
        return self.nodes[np.asarray(index) + self.n_leaves]

    def update(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Set leaves ``index`` (n,) to ``priority`` (n,), >= 0; a repeated index keeps its last value."""
        pos = np.asarray(index, dtype=np.int64) + self.n_leaves
        self.nodes[pos] = priority
        # A parent listed twice is recomputed twice from the same children, which is harmless.
        for _ in range(self.depth):
            pos >>= 1
            self.nodes[pos] = self.nodes[2 * pos] + self.nodes[2 * pos + 1]

    def find(self, value: np.ndarray) -> np.ndarray:
        """Leaf indices whose cumulative-priority interval contains each ``value`` in [0, total)."""
        v = np.array(value, dtype=np.float64)
        pos = np.ones(v.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * pos
            left_sum = self.nodes[left]
            # Go right only when the value passes the left subtree and the right one has mass: rounding can
            # otherwise walk into an empty subtree near the total.
            right = (v >= left_sum) & (self.nodes[left + 1] > 0.0)
            v = np.where(right, v - left_sum, v)
            pos = left + right
        return pos - self.n_leaves

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` leaf indices drawn with probability proportional to priority (one per stratum)."""
        total = self.total
        if not total > 0.0:
            raise ValueError("cannot sample from an empty sum tree")
        values = (np.arange(n) + rng.random(n)) * (total / n)
        return self.find(np.minimum(values, np.nextafter(total, 0.0)))


class ReplaySample(NamedTuple):
    """A prioritised batch: buffer ``index`` and importance ``weights`` (max 1) with the transitions."""

    index: np.ndarray
    weights: np.ndarray
    obs: np.ndarray
    actions: np.ndarray
    returns: np.ndarray
    next_obs: np.ndarray
    discounts: np.ndarray


class PrioritizedReplayBuffer:
    """A ring buffer of n-step transitions sampled in proportion to ``priority ** alpha``.

    New transitions get the largest priority seen so far, so each is replayed at least about once.
    Importance weights ``(N * P(i)) ** -beta`` are normalised by the batch maximum.
    """

    def __init__(
        self, capacity: int, obs_dim: int, *, alpha: float, rng: np.random.Generator, eps: float = 1e-6
    ) -> None:
        self.capacity = capacity
        self.alpha = alpha
        self.eps = eps
        self.rng = rng
        self.tree = SumTree(capacity)
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.returns = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)
        self.size = 0
        self._next = 0
        self.max_priority = 1.0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        returns: np.ndarray,
        next_obs: np.ndarray,
        discounts: np.ndarray,
    ) -> None:
        """Store n transitions; ``discounts`` holds ``gamma**m``, or 0 where the episode terminated."""
        n = len(actions)
        if n == 0:
            return
        idx = (self._next + np.arange(n)) % self.capacity
        self.obs[idx], self.next_obs[idx] = obs, next_obs
        self.actions[idx], self.returns[idx], self.discounts[idx] = actions, returns, discounts
        self.tree.update(idx, np.full(n, self.max_priority**self.alpha))
        self._next = int((self._next + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, beta: float) -> ReplaySample:
        idx = self.tree.sample(batch_size, self.rng)
        probs = self.tree.priorities(idx) / self.tree.total
        weights = (self.size * probs) ** (-beta)
        weights /= weights.max()
        return ReplaySample(
            idx,
            weights.astype(np.float32),
            self.obs[idx],
            self.actions[idx],
            self.returns[idx],
            self.next_obs[idx],
            self.discounts[idx],
        )

    def update_priorities(self, index: np.ndarray, errors: np.ndarray) -> None:
        """Set the priorities of ``index`` from their losses ``errors`` (>= 0)."""
        priority = np.abs(np.asarray(errors, dtype=np.float64)) + self.eps
        self.max_priority = max(self.max_priority, float(priority.max()))
        self.tree.update(index, priority**self.alpha)


# ---------------------------------------------------------------------------------------------- n-step
def n_step_return(rewards: Sequence[float] | np.ndarray, gamma: float) -> float:
    """``sum_i gamma**i * rewards[i]``: the discounted return of a reward sequence."""
    total = 0.0
    for r in reversed(list(rewards)):
        total = float(r) + gamma * total
    return total


class NStepTransition(NamedTuple):
    """``obs``, ``action``, discounted ``ret`` of up to n rewards, the ``next_obs`` to bootstrap from, and
    the bootstrap ``discount`` (``gamma**m`` after m rewards, or 0 when the episode terminated)."""

    obs: np.ndarray
    action: int
    ret: float
    next_obs: np.ndarray
    discount: float


class NStepAccumulator:
    """Turns one environment's 1-step transitions into n-step transitions.

    A transition leaves once n rewards follow it, or at the end of an episode, when the whole queue is
    flushed with shorter returns. A truncated episode still bootstraps from its last observation; a
    terminated one does not.
    """

    def __init__(self, n: int, gamma: float) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self.gamma = gamma
        self._queue: deque[tuple[np.ndarray, int, float]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def push(
        self,
        obs: np.ndarray,
        action: int,
        reward: float,
        next_obs: np.ndarray,
        *,
        terminated: bool,
        done: bool,
    ) -> list[NStepTransition]:
        """Add one step; returns the n-step transitions that are now complete."""
        self._queue.append((obs, action, reward))
        out: list[NStepTransition] = []
        if done:
            while self._queue:
                out.append(self._emit(next_obs, terminated))
                self._queue.popleft()
        elif len(self._queue) == self.n:
            out.append(self._emit(next_obs, False))
            self._queue.popleft()
        return out

    def _emit(self, next_obs: np.ndarray, terminated: bool) -> NStepTransition:
        obs, action, _ = self._queue[0]
        ret = n_step_return([r for _, _, r in self._queue], self.gamma)
        discount = 0.0 if terminated else self.gamma ** len(self._queue)
        return NStepTransition(obs, action, ret, next_obs, discount)


# ---------------------------------------------------------------------------------------------- network
def _scaled_noise(size: int, generator: torch.Generator | None) -> torch.Tensor:
    x = torch.randn(size, generator=generator)
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """A linear layer with learned factorised Gaussian noise on its weights and biases.

    In training mode the output uses ``mu + sigma * eps`` with the noise ``eps`` drawn by
    :meth:`reset_noise`; in evaluation mode (``.eval()``) only ``mu``, so it is deterministic.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        sigma0: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("weight_eps", torch.zeros(out_features, in_features))
        self.register_buffer("bias_eps", torch.zeros(out_features))
        bound = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.weight_mu.uniform_(-bound, bound, generator=generator)
            self.bias_mu.uniform_(-bound, bound, generator=generator)
            self.weight_sigma.fill_(sigma0 * bound)
            self.bias_sigma.fill_(sigma0 * bound)
        self.reset_noise(generator)

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        eps_in = _scaled_noise(self.in_features, generator)
        eps_out = _scaled_noise(self.out_features, generator)
        self.weight_eps.copy_(torch.outer(eps_out, eps_in))
        self.bias_eps.copy_(eps_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            weight = torch.addcmul(self.weight_mu, self.weight_sigma, self.weight_eps)
            bias = torch.addcmul(self.bias_mu, self.bias_sigma, self.bias_eps)
            return F.linear(x, weight, bias)
        return F.linear(x, self.weight_mu, self.bias_mu)


class RainbowNetwork(nn.Module):
    """A plain MLP trunk, then dueling value and advantage streams of noisy layers over ``n_atoms`` atoms.

    ``forward`` returns log-probabilities of shape (batch, n_actions, n_atoms).
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        n_atoms: int,
        hidden: Sequence[int] = (64, 64),
        sigma0: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_actions, self.n_atoms = n_actions, n_atoms
        layers: list[nn.Module] = []
        width = obs_dim
        for size in hidden[:-1]:
            linear = nn.Linear(width, size)
            with torch.no_grad():
                nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
                bound = 1.0 / math.sqrt(width)
                linear.bias.uniform_(-bound, bound, generator=generator)
            layers += [linear, nn.ReLU()]
            width = size
        self.trunk = nn.Sequential(*layers)
        head = hidden[-1]
        self.value = nn.Sequential(
            NoisyLinear(width, head, sigma0, generator),
            nn.ReLU(),
            NoisyLinear(head, n_atoms, sigma0, generator),
        )
        self.advantage = nn.Sequential(
            NoisyLinear(width, head, sigma0, generator),
            nn.ReLU(),
            NoisyLinear(head, n_actions * n_atoms, sigma0, generator),
        )
        self._noisy = [m for m in self.modules() if isinstance(m, NoisyLinear)]

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        for module in self._noisy:
            module.reset_noise(generator)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised atom logits, shape (batch, n_actions, n_atoms)."""
        h = self.trunk(x)
        value = self.value(h).view(-1, 1, self.n_atoms)
        adv = self.advantage(h).view(-1, self.n_actions, self.n_atoms)
        return value + (adv - adv.mean(dim=1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.logits(x), dim=-1)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Atom probabilities, shape (batch, n_actions, n_atoms)."""
        return F.softmax(self.logits(x), dim=-1)


# ---------------------------------------------------------------------------------------------- targets
def project_distribution(
    next_probs: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """Project the distribution of ``returns + discount * Z`` back onto ``support`` (C51).

    Parameters
    ----------
    next_probs
        Shape (B, K): probabilities of the bootstrap distribution ``Z`` on ``support``.
    returns, discounts
        Shape (B,): n-step returns and bootstrap discounts (0 at a terminal).
    support
        Shape (K,): evenly spaced atoms from v_min to v_max.

    Returns
    -------
    torch.Tensor
        Shape (B, K): each atom's mass split between its two nearest atoms (after clipping to the support)
        in proportion to closeness, so every row still sums to one.
    """
    n_atoms = support.shape[0]
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (n_atoms - 1)
    tz = (returns[:, None] + discounts[:, None] * support[None, :]).clamp(v_min, v_max)
    b = (tz - v_min) / delta
    lower = b.floor().long().clamp(0, n_atoms - 1)
    upper = b.ceil().long().clamp(0, n_atoms - 1)
    to_lower = next_probs * (upper.to(b.dtype) - b)
    to_upper = next_probs * (b - lower.to(b.dtype))
    # An atom landing exactly on the grid has lower == upper and both shares zero; give it the whole mass.
    to_lower = to_lower + next_probs * (lower == upper).to(b.dtype)
    out = torch.zeros_like(next_probs)
    out.scatter_add_(1, lower, to_lower)
    out.scatter_add_(1, upper, to_upper)
    return out


def double_q_target(
    online_next_probs: torch.Tensor, target_next_probs: torch.Tensor, support: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Double-Q: the *online* network picks the next action, the *target* network values it.

    Parameters
    ----------
    online_next_probs, target_next_probs
        Shape (B, A, K): each network's return distributions at the next observation.
    support
        Shape (K,).

    Returns
    -------
    tuple
        The target network's distribution at the online argmax, shape (B, K), and that argmax, shape (B,).
    """
    q_online = online_next_probs @ support
    best = q_online.argmax(dim=1)
    return target_next_probs[torch.arange(best.shape[0]), best], best
