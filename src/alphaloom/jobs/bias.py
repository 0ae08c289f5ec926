"""``alphaloom models bias``: the bias and fairness report of a registered model, from the workspace.

A model is judged on what the workspace stores for it, out of sample:

* the CNN+LSTM forecaster (kind ``cnn_lstm``): its stored forecasts on every symbol's agent and test
  segments (bars it never trained on) against the realised forward log return over its horizon, the flat
  class as its own ``flat_threshold_``;
* an agent, the ensemble, or any model with a ``strategy`` tag: that strategy's per-bar returns in the stored
  backtest (each symbol's untouched test segment).

The workspace holds the forecasts and backtest of the models its last training registered (the manifest's
``registered`` references), so a model version is judged only when those are its own; another version is
refused with the reason. Slices are labelled on the store's whole bar history (trailing windows only, see
:func:`alphaloom.registry.slice_labels`). The report is stored with the version in the registry
(``alphaloom/bias.json``, ``bias.*`` metrics and tags, audited), its headline in the store's
``bias_summary`` table (shown in the main report) and the page written to ``reports/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, did_you_mean
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.registry import open_registry
from alphaloom.jobs.workspace import Workspace
from alphaloom.registry import (
    BiasConfig,
    BiasReport,
    ModelVersionInfo,
    forecast_bias,
    returns_bias,
    slice_labels,
    store_bias_report,
    write_bias_html,
)

__all__ = ["BiasConfig", "BiasResult", "bias_all", "bias_tables", "model_bias", "stored_models"]

SUMMARY_TABLE = "bias_summary"


@dataclass(frozen=True)
class BiasResult:
    """One model's report, the registered version it is stored with, and the HTML page written."""

    model: ModelVersionInfo
    report: BiasReport
    path: Path


def stored_models(ws: Workspace) -> dict[str, str]:
    """``{model name: "name/version"}`` of the models whose forecasts or backtest the workspace holds (the
    ones its last ``train cnn-lstm`` and ``train rl`` registered)."""
    manifest = ws.manifest()
    refs: dict[str, str] = {}
    forecaster = manifest.get("train_cnn_lstm", {}).get("registered")
    if forecaster:
        refs[forecaster.split("/")[0]] = forecaster
    for ref in manifest.get("train_rl", {}).get("registered", []) or []:
        refs[ref.split("/")[0]] = ref
    return refs


def _resolve(registry, ws: Workspace, name: str, version: int | None) -> ModelVersionInfo:
    refs = stored_models(ws)
    if version is None:
        if name in refs:
            version = int(refs[name].split("/")[1])
        else:
            versions = registry.list(name)
            if not versions:
                known = sorted({v.name for v in registry.list()})
                raise DataNotFoundError(
                    f"no model {name!r} in the registry of {registry.root}.{did_you_mean(name, known)} "
                    f"Registered: {', '.join(known) or 'none'}."
                )
            version = versions[-1].version
    info = registry.show(name, version)
    if name in refs and refs[name] != info.ref:
        raise DataNotFoundError(
            f"the forecasts and backtest in {ws.root} are those of {refs[name]}, not {info.ref}; a bias "
            f"report needs the version's own out-of-sample predictions. Run `alphaloom models bias {name}` "
            "for the stored one, or retrain and backtest to judge a new version."
        )
    return info


def _asset_classes(ws: Workspace) -> dict[str, str]:
    with ws.require_store() as store:
        return {s: str(i.asset_class.value) for s, i in store.instruments().items()}


def _labels(ws: Workspace, symbols: Sequence[str], config: BiasConfig) -> pd.DataFrame:
    with ws.require_store() as store:
        bars = store.read_bars(list(symbols))
    return slice_labels(bars, config, _asset_classes(ws))


def _forecast_report(ws: Workspace, info: ModelVersionInfo, config: BiasConfig) -> BiasReport:
    from alphaloom.jobs import stages
    from alphaloom.models import CNNLSTMForecaster
    from alphaloom.models.cnn_lstm.dataset import forward_log_return

    run = ws.load_config()
    segments = ws.manifest().get("train_cnn_lstm", {}).get("segments")
    if run is None or not segments:
        raise DataNotFoundError(
            f"no trained forecaster in {ws.root}; run `alphaloom train cnn-lstm --data-dir {ws.root}` first."
        )
    model = CNNLSTMForecaster.load(ws.models_dir / "cnn_lstm", device="cpu")
    symbols = [s for s in run.symbols if s in segments]
    bars = stages.load_symbol_bars(ws, run.replace(symbols=tuple(symbols)))
    with ws.require_store() as store:
        forecasts = store.read_frame(stages.FORECASTS_TABLE, symbols)
    parts = []
    for sym in symbols:
        b = bars[bars["symbol"] == sym]
        realised = pd.Series(
            forward_log_return(b["close"].to_numpy(dtype=np.float64), model.config.horizon),
            index=pd.DatetimeIndex(b["ts"]),
        )
        start = pd.Timestamp(segments[sym]["agent"][0])
        f = forecasts[(forecasts["symbol"] == sym) & (forecasts["ts"] >= start)]
        parts.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "ts": f["ts"].to_numpy(),
                    "p_down": f["p_down"].to_numpy(),
                    "p_flat": f["p_flat"].to_numpy(),
                    "p_up": f["p_up"].to_numpy(),
                    "pred_return": f["pred_return"].to_numpy(),
                    "realised": realised.reindex(pd.DatetimeIndex(f["ts"])).to_numpy(),
                }
            )
        )
    predictions = pd.concat(parts, ignore_index=True)
    return forecast_bias(
        predictions,
        _labels(ws, symbols, config),
        flat_threshold=float(model.flat_threshold_),
        config=config,
        model=info.ref,
    )


def _returns_report(ws: Workspace, info: ModelVersionInfo, config: BiasConfig) -> BiasReport:
    from alphaloom.jobs.stages import load_results

    strategy = info.tags.get("strategy")
    if strategy is None:
        raise ConfigError(
            f"{info.ref} ({info.kind}) has no strategy tag, so nothing in the backtest trades it; register "
            "it with tags={'strategy': NAME} (the agents and the ensemble have one)."
        )
    results = [r for r in load_results(ws) if r.name == strategy]
    if not results:
        names = sorted({r.name for r in load_results(ws)})
        raise DataNotFoundError(
            f"no strategy {strategy!r} (the strategy of {info.ref}) in the stored backtest of {ws.root}."
            f"{did_you_mean(strategy, names)} Stored: {', '.join(names)}. Run `alphaloom backtest`."
        )
    frame = pd.concat(
        [
            pd.DataFrame({"symbol": r.symbol, "ts": r.ts, "return": np.asarray(r.returns, dtype=np.float64)})
            for r in results
        ],
        ignore_index=True,
    )
    ppy: Mapping[str, float] = {r.symbol: float(r.periods_per_year) for r in results}
    return returns_bias(
        frame,
        _labels(ws, sorted(ppy), config),
        periods_per_year=ppy,
        config=config,
        model=info.ref,
    )


def _summary_row(result: BiasResult) -> dict[str, object]:
    report = result.report
    worst = report.worst_slices()
    hit = worst.get("hit_rate", ("", math.nan))
    sharpe = worst.get("sharpe", ("", math.nan))
    return {
        "model": result.model.ref,
        "kind": report.kind,
        "n_bars": report.n_bars,
        "worst_hit_rate": hit[1],
        "worst_hit_rate_slice": hit[0],
        "worst_sharpe": sharpe[1],
        "worst_sharpe_slice": sharpe[0],
        "slices_too_small": int((report.slices["status"] == "too small").sum()),
        "significant_disparities": report.tags()["bias.disparities"],
    }


def _save_summary(ws: Workspace, results: Sequence[BiasResult]) -> None:
    rows = pd.DataFrame([_summary_row(r) for r in results])
    with ws.open_store() as store:
        if store.has_frame(SUMMARY_TABLE):
            old = store.read_frame(SUMMARY_TABLE)
            names = {r.model.name for r in results}
            old = old[~old["model"].str.split("/").str[0].isin(names)]
            rows = pd.concat([old, rows], ignore_index=True) if len(old) else rows
        store.write_frame(SUMMARY_TABLE, rows.sort_values("model").reset_index(drop=True))


def model_bias(
    ws: Workspace,
    name: str,
    version: int | None = None,
    *,
    config: BiasConfig | None = None,
    path: Path | None = None,
    registry_ws: Workspace | None = None,
    floors: Mapping[str, float] | None = None,
) -> BiasResult:
    """Compute, store and render the bias report of ``name`` (``version``: by default the one whose
    predictions ``ws`` holds).

    Parameters
    ----------
    ws
        The workspace whose forecasts or backtest are judged.
    name, version
        The registered model.
    config
        Slices, tests and their settings.
    path
        The HTML page [default: ``reports/bias_<name>.html``].
    registry_ws
        The workspace whose registry holds the model [default: ``ws``]; the scheduler judges a retrain made
        in a staging workspace and stores the report with the version it registered in the main one.
    floors
        Promotion floors to draw on the chart (``{"hit_rate": 0.5}``).
    """
    config = config or BiasConfig()
    with open_registry(registry_ws or ws) as registry:
        info = _resolve(registry, ws, name, version)
        report = (
            _forecast_report(ws, info, config)
            if info.kind == "cnn_lstm"
            else _returns_report(ws, info, config)
        )
        stored = store_bias_report(registry, info.name, info.version, report)
    out = write_bias_html(path or ws.reports_dir / f"bias_{info.name}.html", [report], floors=floors)
    result = BiasResult(stored, report, out)
    _save_summary(ws, [result])
    ws.record(f"bias_{info.name}", {"model": info.ref, "path": str(out), **report.summary()})
    return result


def bias_all(
    ws: Workspace,
    config: BiasConfig | None = None,
    *,
    progress: StageProgress | None = None,
    path: Path | None = None,
    registry_ws: Workspace | None = None,
) -> list[BiasResult]:
    """The bias report of every model whose predictions ``ws`` holds (the forecaster, each agent, the
    ensemble), each stored with its version, all on one page [default: ``reports/bias_report.html``]."""
    progress = progress or NullProgress()
    refs = stored_models(ws)
    if not refs:
        raise DataNotFoundError(
            f"no registered models with stored predictions in {ws.root}; run `alphaloom demo` or the "
            "train and backtest stages first."
        )
    task = progress.task("bias", total=len(refs))
    results = []
    for name, ref in refs.items():
        results.append(
            model_bias(
                ws,
                name,
                int(ref.split("/")[1]),
                config=config,
                path=ws.reports_dir / "bias" / f"{name}.html",
                registry_ws=registry_ws,
            )
        )
        task.advance()
    page = write_bias_html(path or ws.reports_dir / "bias_report.html", [r.report for r in results])
    ws.record("bias", {"models": [r.model.ref for r in results], "path": str(page)})
    return results


# ------------------------------------------------------------------------------------------- tables
def _fmt(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else f"{value:.3g}"
    return str(value)


def _rich(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(frame[col]) else "left")
    for row in frame.itertuples(index=False):
        style = None if getattr(row, "status", "ok") == "ok" else "dim"
        if getattr(row, "significant", False) is True:
            style = "bold red"
        table.add_row(*(_fmt(v) for v in row), style=style)
    return table


def bias_tables(result: BiasResult) -> list[Table]:
    """The slice table and the disparity tests, for the terminal."""
    r = result.report
    base = ["dimension", "slice", "n", "status"]
    if r.kind == "forecast":
        cols = [*base, "hit_rate", "accuracy", "mean_error", "error_sign", "direction_bias", "ece", "brier"]
    else:
        cols = [*base, "sharpe", "mean_return", "hit_rate", "exposure"]
    tests = r.tests[
        ["dimension", "metric", "test", "n_slices", "statistic", "p_value", "p_adjusted", "significant"]
    ]
    return [
        _rich(f"Bias by slice: {r.model} ({r.kind}, {r.n_bars} out-of-sample bars)", r.slices[cols]),
        _rich(f"Disparity between slices ({r.config.correction}-corrected, alpha {r.config.alpha})", tests),
    ]
