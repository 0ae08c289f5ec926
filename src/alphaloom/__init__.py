"""alphaloom: an AI trading platform from market data to orders."""

__version__ = "0.1.0"
