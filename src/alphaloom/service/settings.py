"""The service's settings: one frozen :class:`ServiceSettings`, from code, a TOML/YAML file or the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError

__all__ = ["ServiceSettings"]


class ServiceSettings(ComponentConfig):
    """How ``alphaloom serve`` runs.

    Parameters
    ----------
    data_dir
        The workspace (store, models, reports); ``$ALPHALOOM_DATA_DIR`` or ``./.alphaloom`` when ``None``.
    host, port
        Where uvicorn listens (port 0: a free port the system picks).
    cors_origins
        Origins allowed to call the API from a browser; empty (the default) closes CORS: no
        ``Access-Control-Allow-Origin`` header is ever sent.
    viewer_rate_per_s, trader_rate_per_s, admin_rate_per_s
        Sustained requests per second allowed per API key, by the key's role.
    rate_burst_s
        Burst allowance, in seconds of the sustained rate (a key may send ``rate * rate_burst_s`` requests
        back to back after an idle spell).
    token_ttl_s
        Lifetime of the tokens ``POST /api/v1/auth/token`` issues, in seconds.
    redis_url
        Redis for the prediction cache (``None``: the in-process cache only).
    ssl_certfile, ssl_keyfile
        Serve HTTPS with this certificate and key (both or neither).
    trade_paper
        Run a paper-trading session (risk manager, paper exchange replaying the stored bars, trading engine)
        inside the service, so orders, positions, fills and the kill switch are live.
    replay_interval_s
        Wall-clock seconds between two replayed bars of the paper session.
    replay_bars
        Bar times the paper session replays (the run's ``[trade] bars`` when ``None``).
    batching
        Micro-batch concurrent prediction requests into one forward pass.
    batch_max_size, batch_max_wait_ms
        A batch runs when it holds this many requests or its first request waited this long.
    cache_size, cache_ttl_s
        In-process prediction cache entries, and seconds a cached prediction lives (also in Redis).
    backend
        Inference backend of the CNN+LSTM predictor (``eager`` or ``torchscript``).
    log_json
        Structured JSON log lines on stderr (plain text when ``False``).
    """

    data_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    cors_origins: tuple[str, ...] = ()
    viewer_rate_per_s: float = Field(default=50.0, gt=0)
    trader_rate_per_s: float = Field(default=100.0, gt=0)
    admin_rate_per_s: float = Field(default=200.0, gt=0)
    rate_burst_s: float = Field(default=2.0, gt=0)
    token_ttl_s: int = Field(default=900, ge=10, le=86_400)
    redis_url: str | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    trade_paper: bool = True
    replay_interval_s: float = Field(default=1.0, ge=0)
    replay_bars: int | None = Field(default=None, ge=1)
    batching: bool = True
    batch_max_size: int = Field(default=64, ge=1, le=4096)
    batch_max_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    cache_size: int = Field(default=4096, ge=0)
    cache_ttl_s: float = Field(default=300.0, gt=0)
    backend: Literal["eager", "torchscript"] = "eager"
    log_json: bool = True

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for origin in v:
            if origin == "*":
                raise ValueError(
                    "'*' would open the API to every web page; list the dashboard's origins instead, "
                    "e.g. https://trading.example.com"
                )
            if not origin.startswith(("http://", "https://")):
                raise ValueError(f"an origin is scheme://host[:port], got {origin!r}")
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> ServiceSettings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError(
                "TLS needs both ssl_certfile and ssl_keyfile (got only one); pass both, or neither for HTTP."
            )
        return self

    def rate_per_s(self, role: str) -> float:
        """The sustained request rate allowed to a key of ``role``."""
        return {
            "viewer": self.viewer_rate_per_s,
            "trader": self.trader_rate_per_s,
            "admin": self.admin_rate_per_s,
        }[role]
