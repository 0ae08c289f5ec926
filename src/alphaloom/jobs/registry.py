"""The workspace's model registry: register what the stages train; list, show, promote and roll back.

The registry lives in the workspace (``mlruns.db`` and ``mlartifacts/``, see
:class:`~alphaloom.registry.ModelRegistry`); its audit trail goes to the workspace's relational store (the
DuckDB file ``alphaloom.duckdb``), next to the trading engine's. Promotion evidence comes from the stored
out-of-sample backtest: the challenger's strategy and the champion's, on the same bars of every symbol.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataNotFoundError, did_you_mean
from alphaloom.data.storage.relational import DuckDBRelationalStore
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace
from alphaloom.registry import (
    Approver,
    DataFingerprint,
    Lineage,
    ModelRegistry,
    ModelVersionInfo,
    PromotionEvidence,
    PromotionGate,
    PromotionGateConfig,
    PromotionResult,
    load_bias_report,
)
from alphaloom.risk import measures

__all__ = [
    "Approver",
    "PromotionGateConfig",
    "backtest_evidence",
    "list_table",
    "open_registry",
    "promote",
    "register_agents",
    "register_forecaster",
    "rollback",
    "show_table",
]

FORECASTER_NAME = "cnn_lstm"
ENSEMBLE_NAME = "ensemble"


@contextmanager
def open_registry(ws: Workspace) -> Iterator[ModelRegistry]:
    """The workspace's registry, its audit store open for the duration of the ``with`` block."""
    ws.ensure()
    audit = DuckDBRelationalStore(ws.store_path)
    try:
        yield ModelRegistry(ws.root, audit)
    finally:
        audit.close()


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in row.items()
        if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
    }


def register_forecaster(
    ws: Workspace,
    config: RunConfig,
    info: dict[str, Any],
    bars: pd.DataFrame,
    model_config: ComponentConfig,
    *,
    into: Workspace | None = None,
) -> ModelVersionInfo:
    """Register the CNN+LSTM just saved to ``models/cnn_lstm``, with the bars of its training segments.

    Its metrics are the mean out-of-sample forecast metrics of the agent and test segments (per segment).
    ``into`` is the workspace whose registry receives it (default ``ws``; the scheduler trains in a staging
    workspace and registers in the main one).
    """
    metrics: dict[str, float] = {
        "fit_seconds": float(info["fit_seconds"]),
        "epochs_run": float(info["epochs_run"]),
    }
    frame = pd.DataFrame(info["metrics"])
    for seg, g in frame.groupby("segment"):
        for col in ("accuracy", "balanced_accuracy", "log_loss", "ic", "rank_ic"):
            if col in g:
                metrics[f"{seg}_{col}"] = float(g[col].astype(float).mean())
    lineage = Lineage(DataFingerprint.from_bars(bars), config.features.config_hash(), model_config)
    with open_registry(into or ws) as registry:
        return registry.register("cnn_lstm", FORECASTER_NAME, ws.models_dir / "cnn_lstm", lineage, metrics)


def register_agents(
    ws: Workspace,
    config: RunConfig,
    info: dict[str, Any],
    bars: pd.DataFrame,
    agents: Sequence[Any],
    *,
    into: Workspace | None = None,
) -> list[ModelVersionInfo]:
    """Register each trained agent (parent: the registered forecaster whose forecasts it observes) and the
    ensemble of them (parents: the agents), in the registry of ``into`` (default ``ws``)."""
    forecaster = ws.manifest().get("train_cnn_lstm", {}).get("registered")
    parents = (forecaster,) if forecaster else ()
    fingerprint = DataFingerprint.from_bars(bars)
    feature_hash = config.features.config_hash()
    rows = {row["agent"]: row for row in info["agents"]}
    out = []
    with open_registry(into or ws) as registry:
        for agent in agents:
            training = {
                "agent": agent.config.model_dump(mode="json"),
                "agent_class": type(agent.config).__name__,
                "timesteps": getattr(config.rl_budget, agent.name),
                "seeds": info["seeds"],
                "costs": config.costs.model_dump(mode="json"),
                "observation_columns": info["observation_columns"],
            }
            lineage = Lineage(fingerprint, feature_hash, training, parents=parents)
            out.append(
                registry.register(
                    "rl_agent",
                    agent.name,
                    ws.models_dir / "rl" / agent.name,
                    lineage,
                    _numbers(rows.get(agent.name, {})),
                    tags={"strategy": agent.name},
                )
            )
        ensemble_dir = ws.models_dir / "ensemble"
        ensemble_dir.mkdir(parents=True, exist_ok=True)
        members = [m.ref for m in out]
        ensemble_config = {
            "method": config.ensemble_method,
            "window": config.ensemble_window,
            "confidence_threshold": config.ensemble_confidence,
            "seed": config.seed,
            "members": members,
        }
        (ensemble_dir / "ensemble.json").write_text(json.dumps(ensemble_config, indent=2, sort_keys=True))
        lineage = Lineage(fingerprint, feature_hash, ensemble_config, parents=members)
        out.append(
            registry.register(
                "ensemble",
                ENSEMBLE_NAME,
                ensemble_dir,
                lineage,
                {},
                tags={"strategy": f"ensemble_{config.ensemble_method}"},
            )
        )
    return out


# ------------------------------------------------------------------------------------------- evidence
def _strategy_returns(ws: Workspace) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    from alphaloom.jobs.stages import load_results

    by_strategy: dict[str, dict[str, np.ndarray]] = {}
    ppy: dict[str, float] = {}
    for r in load_results(ws):
        by_strategy.setdefault(r.name, {})[r.symbol] = np.asarray(r.returns, dtype=np.float64)
        ppy[r.symbol] = float(r.periods_per_year)
    return by_strategy, ppy


def backtest_evidence(ws: Workspace, challenger: str, champion: str | None) -> PromotionEvidence:
    """Promotion evidence from the stored out-of-sample backtest.

    The challenger's (and champion's) per-bar returns on each symbol's test segment, stacked symbol by symbol
    in the same order, so every pair is the same symbol on the same bar. Every strategy in the backtest
    counts as a trial for the deflated Sharpe ratio (the agents, the ensemble and buy-and-hold were all
    candidates). ``periods_per_year`` is the median over the symbols.
    """
    returns, ppy = _strategy_returns(ws)
    for name in (challenger, champion):
        if name is not None and name not in returns:
            raise DataNotFoundError(
                f"no strategy {name!r} in the stored backtest of {ws.root}.{did_you_mean(name, returns)} "
                f"Stored: {', '.join(sorted(returns))}. Run `alphaloom backtest` after training it."
            )
    symbols = sorted(returns[challenger])
    if champion is not None:
        missing = sorted(set(symbols) ^ set(returns[champion]))
        if missing:
            raise DataNotFoundError(
                f"{challenger} and {champion} were not backtested on the same symbols (differ on {missing}); "
                "re-run `alphaloom backtest` so both cover the same bars."
            )
    stack = {
        name: np.concatenate([returns[name][s] for s in symbols])
        for name in returns
        if set(returns[name]) >= set(symbols)
    }
    trials = np.column_stack(list(stack.values()))
    deflated = measures.deflated_sharpe_ratio_from_trials(trials, chosen=list(stack).index(challenger))
    variance = deflated.sharpe_variance if math.isfinite(deflated.sharpe_variance) else 0.0
    n_trials = deflated.n_trials if variance > 0 else 1
    return PromotionEvidence(
        challenger_returns=stack[challenger],
        champion_returns=None if champion is None else stack[champion],
        periods_per_year=float(np.median([ppy[s] for s in symbols])),
        n_trials=n_trials,
        trials_sharpe_variance=variance if n_trials > 1 else 0.0,
        source=(
            f"stored backtest, test segments of {', '.join(symbols)}; {challenger} vs {champion or 'none'}"
        ),
    )


def promote(
    ws: Workspace,
    name: str,
    version: int,
    approver: Approver,
    *,
    strategy: str | None = None,
    gate_config: PromotionGateConfig | None = None,
    note: str = "",
) -> PromotionResult:
    """Promote ``name/version`` one stage; a move to champion is judged on the stored backtest.

    ``strategy`` is the backtest strategy the model trades as (by default its ``strategy`` tag); the current
    champion's strategy is its own tag. With a slice floor in ``gate_config``, the worst slices come from the
    bias report stored with the version (``alphaloom models bias``); without one the floor fails.
    """
    gate = PromotionGate(gate_config)
    with open_registry(ws) as registry:
        info = registry.show(name, version)
        evidence = None
        if info.stage.value == "challenger":
            chosen = strategy or info.tags.get("strategy")
            if chosen is None:
                raise ConfigError(
                    f"{info.ref} has no strategy tag; pass --strategy with the backtest strategy that trades "
                    "it (e.g. ensemble_meta for the CNN+LSTM, whose forecasts the ensemble uses)."
                )
            champion = registry.champion(name)
            champion_strategy = None if champion is None else champion.tags.get("strategy", chosen)
            if champion_strategy == chosen:
                champion_strategy = None  # the same strategy's stored returns cannot tell two versions apart
            evidence = backtest_evidence(ws, chosen, champion_strategy)
            if gate.config.min_slice_hit_rate is not None or gate.config.min_slice_sharpe is not None:
                report = load_bias_report(registry, name, version)  # the floors judge its stored report
                worst = report.worst_slices() if report is not None else None
                evidence = dataclasses.replace(evidence, worst_slices=worst)
        return registry.promote(name, version, approver, evidence=evidence, gate=gate, note=note)


def rollback(ws: Workspace, name: str, approver: Approver, *, reason: str = "") -> ModelVersionInfo:
    """Restore ``name``'s previous champion."""
    with open_registry(ws) as registry:
        return registry.rollback(name, approver, reason=reason)


# ------------------------------------------------------------------------------------------- tables
def list_table(ws: Workspace, name: str | None = None, stage: str | None = None) -> Table:
    """Registered versions: name, version, kind, stage, aliases, data and config hashes, parents, created."""
    with open_registry(ws) as registry:
        versions = registry.list(name, stage=stage)
    table = Table(title=f"Registered models in {ws.root}" + (f" ({len(versions)})" if versions else ": none"))
    for col in ("model", "version", "kind", "stage", "aliases", "data", "config", "parents", "created (UTC)"):
        table.add_column(col, justify="right" if col == "version" else "left")
    for v in versions:
        table.add_row(
            v.name,
            str(v.version),
            v.kind,
            v.stage.value,
            ", ".join(v.aliases) or "-",
            v.lineage.data.sha256[:12],
            v.lineage.training_config_hash,
            ", ".join(v.lineage.parents) or "-",
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def show_table(ws: Workspace, name: str, version: int) -> Table:
    """One version's lineage, metrics and stage."""
    with open_registry(ws) as registry:
        v = registry.show(name, version)
    lin = v.lineage
    table = Table(title=f"{v.ref} ({v.kind}, {v.stage.value})", show_header=False)
    table.add_column("field")
    table.add_column("value")
    rows = [
        ("aliases", ", ".join(v.aliases) or "-"),
        ("created (UTC)", v.created_at.isoformat()),
        ("data symbols", ", ".join(lin.data.symbols)),
        (
            "data range",
            f"{lin.data.start.isoformat()} .. {lin.data.end.isoformat()} ({lin.data.n_rows} bars)",
        ),
        ("data sha256", lin.data.sha256),
        ("feature config hash", lin.feature_config_hash),
        ("training config hash", lin.training_config_hash),
        ("code version", lin.code_version),
        ("parents", ", ".join(lin.parents) or "-"),
        ("artefacts", v.artefact_uri),
        ("mlflow run", v.run_id),
        *((f"tag {k}", val) for k, val in sorted(v.tags.items())),
        *((f"metric {k}", f"{val:.6g}") for k, val in sorted(v.metrics.items())),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table
