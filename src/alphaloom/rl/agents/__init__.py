"""RL agents behind one interface: PPO, SAC and TD3 (stable-baselines3) and Rainbow DQN (ours, in torch)."""

from alphaloom.rl.agents.base import Agent, AgentConfig, ProgressFn
from alphaloom.rl.agents.rainbow import RainbowConfig, RainbowDQNAgent
from alphaloom.rl.agents.sb3 import PPOAgent, PPOConfig, SACAgent, SACConfig, TD3Agent, TD3Config

__all__ = [
    "Agent",
    "AgentConfig",
    "PPOAgent",
    "PPOConfig",
    "ProgressFn",
    "RainbowConfig",
    "RainbowDQNAgent",
    "SACAgent",
    "SACConfig",
    "TD3Agent",
    "TD3Config",
]
