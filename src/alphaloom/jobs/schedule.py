"""Scheduled batch jobs: nightly ingestion, feature refresh, retraining on a rolling window, bias checks.

A schedule is a TOML (or YAML) file of cron entries (``examples/schedule.toml``)::

    timezone = "UTC"

    [[jobs]]
    name = "nightly-ingest"
    cron = "15 1 * * *"          # minute hour day-of-month month day-of-week (croniter syntax)
    action = "ingest"
    [jobs.options]
    samples = ["us_equities_daily", "fx_daily", "crypto_daily"]

Actions (:data:`ACTIONS`) and their ``[jobs.options]`` (unknown keys are refused):

``ingest``
    :class:`IngestOptions`: shipped sample sets, or a venue's last ``lookback_days`` of history, into the
    store (an upsert, so re-running is harmless), then the validator.
``features``
    :class:`FeaturesOptions`: recompute the feature table of the workspace's symbols.
``retrain``
    :class:`RetrainOptions`: train the forecaster and the agents on the last ``window_bars`` bars of each
    symbol, *in a staging workspace* (``<data dir>/schedule/staging``), evaluate them there (out-of-sample
    backtest and bias report), register them in the main registry as candidates and take each through the
    promotion gate to **challenger at most**. The scheduler never promotes to champion, and the main
    workspace's models, forecasts and backtest (what ``alphaloom trade`` runs) are never touched: a new model
    goes live only when a person promotes it (``alphaloom models promote``).
``bias``
    :class:`BiasOptions`: the bias report of every model the workspace holds predictions of.

Every run is appended to ``<data dir>/schedule/runs.jsonl`` (run id, job, action, the cron time it served,
start, end, outcome, error, details). A failed run logs at ERROR and adds an alert (kind
``scheduled_job_failed``) through :class:`alphaloom.monitoring.AlertLog` to ``<data dir>/schedule/
alerts.jsonl``; a failure inside ``retrain`` happens before anything is registered, so the registry and
its champion are as they were.

Which jobs are due: a job is due when its most recent cron time at or before now is later than the start
of its last logged run (so a machine that was off catches up once, and a failed run is retried at the next
cron time, not in a loop). :meth:`Scheduler.run_once` (``alphaloom schedule run --once``) runs the due jobs
and returns; :meth:`Scheduler.run_forever` sleeps until the next cron time, again and again. One scheduler
runs per data directory at a time (a lock file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import Field, field_validator, model_validator
from rich.table import Table

from alphaloom.core.config import ComponentConfig, read_config_file
from alphaloom.core.exceptions import ConfigError, StorageError, did_you_mean
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.workspace import Workspace
from alphaloom.monitoring import Alert, AlertLog
from alphaloom.registry import BiasConfig, PromotionGateConfig

__all__ = [
    "ACTIONS",
    "BiasOptions",
    "FeaturesOptions",
    "IngestOptions",
    "JobSpec",
    "RetrainOptions",
    "RunLog",
    "RunRecord",
    "ScheduleConfig",
    "Scheduler",
    "jobs_table",
    "load_schedule",
    "runs_table",
]

log = logging.getLogger("alphaloom.schedule")

#: Alert kind of a failed scheduled run.
ALERT_KIND = "scheduled_job_failed"


# --------------------------------------------------------------------------------------------- config
class IngestOptions(ComponentConfig):
    """Options of an ``ingest`` job.

    Attributes
    ----------
    samples
        Shipped sample sets to (re-)load; with neither ``samples`` nor ``venue``, all of them.
    venue, symbols, lookback_days, timeframe
        Fetch the last ``lookback_days`` of ``symbols`` from a venue (``paper``, ``oanda``, ``coinbase``,
        ``ccxt``, ``robinhood``; credentials from the environment as for ``alphaloom data ingest``).
    run_validation
        Run the validator over every stored symbol afterwards (quarantines what fails).
    """

    samples: tuple[str, ...] = ()
    venue: str | None = None
    symbols: tuple[str, ...] = ()
    lookback_days: int = Field(default=5, ge=1, le=3650)
    timeframe: str = "1d"
    run_validation: bool = True


def _run_keys(run: dict[str, Any]) -> dict[str, Any]:
    unknown = [k for k in run if k not in RunConfig.model_fields]
    if unknown:
        hints = "".join(did_you_mean(str(k), RunConfig.model_fields) for k in unknown)
        raise ValueError(
            f"unknown run setting(s) {unknown}.{hints} Settings: {', '.join(RunConfig.model_fields)}"
        )
    return run


class FeaturesOptions(ComponentConfig):
    """Options of a ``features`` job: ``run`` overrides the workspace's saved run settings
    (:class:`~alphaloom.jobs.config.RunConfig` keys, e.g. ``symbols``)."""

    run: dict[str, Any] = Field(default_factory=dict)

    @field_validator("run")
    @classmethod
    def _known_run_keys(cls, run: dict[str, Any]) -> dict[str, Any]:
        return _run_keys(run)


class RetrainOptions(ComponentConfig):
    """Options of a ``retrain`` job.

    Attributes
    ----------
    window_bars
        The rolling window: the last ``window_bars`` bars of each symbol (None: all stored bars).
    run
        Overrides of the workspace's run settings for the retrain (``cnn_epochs``, ``rl_budget``, ...).
    gate
        The promotion gate the new models must pass to become challengers (candidates otherwise).
    approver, approver_role
        Who the gate sees; the role must be one of ``gate.challenger_roles`` and is never enough to crown a
        champion (the scheduler only asks for challenger).
    bias
        Settings of the bias reports stored with the new versions.
    """

    window_bars: int | None = Field(default=None, ge=300)
    run: dict[str, Any] = Field(default_factory=dict)
    gate: PromotionGateConfig = PromotionGateConfig()
    approver: str = "scheduler"
    approver_role: Literal["trader", "admin"] = "trader"
    bias: BiasConfig = BiasConfig()

    @field_validator("run")
    @classmethod
    def _known_run_keys(cls, run: dict[str, Any]) -> dict[str, Any]:
        return _run_keys(run)


class BiasOptions(ComponentConfig):
    """Options of a ``bias`` job: the report settings."""

    config: BiasConfig = BiasConfig()


_OPTIONS: Mapping[str, type[ComponentConfig]] = {
    "ingest": IngestOptions,
    "features": FeaturesOptions,
    "retrain": RetrainOptions,
    "bias": BiasOptions,
}
#: The actions a job can run.
ACTIONS: tuple[str, ...] = tuple(_OPTIONS)


class JobSpec(ComponentConfig):
    """One scheduled job: a name, a cron expression, an action and its options."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    cron: str
    action: str
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(cron):
            raise ValueError(
                f"{cron!r} is not a cron expression; use five fields 'minute hour day month weekday', e.g. "
                "'15 1 * * *' (01:15 every day) or '0 3 * * 6' (03:00 on Saturdays)"
            )
        return cron

    @model_validator(mode="after")
    def _known_action(self) -> JobSpec:
        if self.action not in _OPTIONS:
            raise ValueError(
                f"unknown action {self.action!r} in job {self.name!r}.{did_you_mean(self.action, ACTIONS)} "
                f"Actions: {', '.join(ACTIONS)}"
            )
        self.parsed_options()
        return self

    def parsed_options(self) -> Any:
        """The options validated as the action's options class."""
        return _OPTIONS[self.action].from_dict(dict(self.options), source=f"job {self.name!r} [options]")


class ScheduleConfig(ComponentConfig):
    """A schedule: the time zone its cron expressions are read in, and the jobs (run in file order when
    several are due together)."""

    timezone: str = "UTC"
    jobs: tuple[JobSpec, ...]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r}; use an IANA name such as 'UTC'") from exc
        return zone

    @model_validator(mode="after")
    def _unique_names(self) -> ScheduleConfig:
        if not self.jobs:
            raise ValueError("a schedule needs at least one [[jobs]] entry")
        names = [j.name for j in self.jobs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"job names must be unique; repeated: {repeated}")
        return self

    def job(self, name: str) -> JobSpec:
        for job in self.jobs:
            if job.name == name:
                return job
        names = [j.name for j in self.jobs]
        raise ConfigError(
            f"no job {name!r} in the schedule.{did_you_mean(name, names)} Jobs: {', '.join(names)}."
        )


def load_schedule(path: str | Path) -> ScheduleConfig:
    """Read a schedule file (TOML or YAML); every job's options are validated."""
    data = read_config_file(path)
    jobs = data.get("jobs")
    if isinstance(jobs, list):  # nested tables get ComponentConfig's readable errors one by one
        data = {
            **data,
            "jobs": [JobSpec.from_dict(j, source=f"{path} [[jobs]] #{i + 1}") for i, j in enumerate(jobs)],
        }
    return ScheduleConfig.from_dict(data, source=str(path))


# ------------------------------------------------------------------------------------------------ log
@dataclass(frozen=True)
class RunRecord:
    """One run of a job, as logged.

    Attributes
    ----------
    run_id
        Unique id of the run.
    job, action
        The job's name and action.
    scheduled_for
        The cron time the run served (ISO UTC), or None for a run forced with ``--job``.
    started_at, ended_at
        ISO UTC.
    seconds
        Wall time.
    outcome
        ``succeeded`` or ``failed``.
    error
        ``"ExceptionType: message"`` of a failed run, else None.
    details
        What the action reports (rows ingested, models registered, gate decisions, ...).
    """

    run_id: str
    job: str
    action: str
    scheduled_for: str | None
    started_at: str
    ended_at: str
    seconds: float
    outcome: Literal["succeeded", "failed"]
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunLog:
    """The JSON-lines log of scheduled runs (one object per line, appended, never rewritten)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: RunRecord) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record.to_dict(), sort_keys=True, default=str) + "\n")
        except OSError as exc:
            raise StorageError(f"cannot append to the run log {self.path}: {exc.strerror}.") from exc

    def records(self, job: str | None = None) -> list[RunRecord]:
        """Logged runs, oldest first (of ``job``); a line that is not valid JSON is skipped with a warning."""
        if not self.path.exists():
            return []
        out = []
        for i, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = RunRecord(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as exc:
                log.warning("skipping line %d of %s: %s", i, self.path, exc)
                continue
            if job is None or record.job == job:
                out.append(record)
        return out

    def last(self, job: str) -> RunRecord | None:
        runs = self.records(job)
        return runs[-1] if runs else None


# --------------------------------------------------------------------------------------------- actions
ActionFn = Callable[[Workspace, Any, "RunContext"], dict[str, Any]]


@dataclass(frozen=True)
class RunContext:
    """What an action gets besides the workspace and its options."""

    run_id: str
    job: str
    now: datetime
    progress: StageProgress


def _run_config(ws: Workspace, overrides: Mapping[str, Any]) -> RunConfig:
    base = ws.load_config() or RunConfig()
    if not overrides:
        return base
    merged = _deep_merge(base.model_dump(mode="json"), overrides)
    return RunConfig.from_dict(merged, source="schedule [options.run]")


def _deep_merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _ingest(ws: Workspace, options: IngestOptions, ctx: RunContext) -> dict[str, Any]:
    from alphaloom.jobs import stages

    kwargs: dict[str, Any] = {
        "samples": list(options.samples) or None,  # None: every shipped set, unless a venue is named
        "timeframe": options.timeframe,
        "progress": ctx.progress,
    }
    if options.venue:
        kwargs |= {
            "venue": options.venue,
            "venue_symbols": list(options.symbols),
            "start": (ctx.now - timedelta(days=options.lookback_days)).isoformat(),
            "end": ctx.now.isoformat(),
        }
    rows = stages.ingest(ws, **kwargs)
    details: dict[str, Any] = {
        "sources": len(rows),
        "inserted": int(sum(r["inserted"] for r in rows)),
        "updated": int(sum(r["updated"] for r in rows)),
        "quarantined": int(sum(r["quarantined"] for r in rows)),
    }
    if options.run_validation:
        result = stages.validate(ws, _run_config(ws, {}), all_symbols=True)  # whatever the store holds
        details["validation_issues"] = len(result.issues)
    return details


def _features(ws: Workspace, options: FeaturesOptions, ctx: RunContext) -> dict[str, Any]:
    from alphaloom.jobs import stages

    info = stages.compute_features(ws, _run_config(ws, options.run), ctx.progress)
    return {"symbols": info["symbols"], "rows": info["rows"], "n_features": info["n_features"]}


def _bias(ws: Workspace, options: BiasOptions, ctx: RunContext) -> dict[str, Any]:
    from alphaloom.jobs.bias import bias_all

    results = bias_all(ws, options.config, progress=ctx.progress)
    return {"models": {r.model.ref: r.report.tags().get("bias.disparities", "none") for r in results}}


def _retrain(ws: Workspace, options: RetrainOptions, ctx: RunContext) -> dict[str, Any]:
    """Train, evaluate and register in a staging workspace; stage the new models as challengers at most."""
    from alphaloom.jobs import stages
    from alphaloom.jobs.bias import bias_all
    from alphaloom.jobs.registry import backtest_evidence, open_registry, register_agents, register_forecaster
    from alphaloom.registry import Approver, PromotionGate, Stage, load_bias_report

    config = _run_config(ws, options.run)
    if options.window_bars is not None:
        config = config.replace(max_bars_per_symbol=options.window_bars)
    if options.approver_role not in options.gate.challenger_roles:
        raise ConfigError(
            f"approver_role {options.approver_role!r} may not promote to challenger under this gate "
            f"(challenger_roles {list(options.gate.challenger_roles)})."
        )
    steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        steps[name] = round(time.perf_counter() - t0, 2)
        ctx.progress.log(f"{ctx.job}: {name} done in {steps[name]:.1f}s")

    staging = Workspace(ws.root / "schedule" / "staging")
    with step("copy window"):
        shutil.rmtree(staging.root, ignore_errors=True)
        bars = stages.load_symbol_bars(ws, config)  # quarantine excluded, the last window_bars per symbol
        with ws.require_store() as src:
            instruments = list(src.instruments().values())
        with staging.open_store() as dst:
            dst.write_instruments(instruments)
            dst.write_bars(bars, source=f"workspace window ({config.max_bars_per_symbol or 'all'} bars)")
        staging.save_config(config)
    with step("features"):
        stages.validate(staging, config)
        stages.compute_features(staging, config, ctx.progress)
    with step("train cnn-lstm"):
        forecaster_info = stages.train_forecaster(staging, config, ctx.progress, register=False)
    with step("train rl"):
        rl_info = stages.train_agents(staging, config, ctx.progress, register=False)
    with step("evaluate"):
        summary = stages.run_backtests(staging, config, ctx.progress)
    # Everything above ran in staging and registered nothing; a failure there leaves the registry as it was.
    with step("register"):
        data = stages.symbol_data(staging, config)
        fbars = pd.concat([d.bars.iloc[d.segments.forecaster] for d in data], ignore_index=True)
        forecaster = register_forecaster(
            staging, config, forecaster_info, fbars, stages._forecaster_config(config), into=ws
        )
        staging.record("train_cnn_lstm", {**forecaster_info, "registered": forecaster.ref})
        observations = stages.load_observations(staging, config)
        abars = pd.concat([o.data.bars.iloc[o.segment("agent")[3]] for o in observations])
        agents = register_agents(staging, config, rl_info, abars, stages.load_agents(staging), into=ws)
        staging.record("train_rl", {**rl_info, "registered": [m.ref for m in agents]})
    with step("bias"):
        bias = bias_all(staging, options.bias, registry_ws=ws)
    decisions = []
    gate = PromotionGate(options.gate)
    approver = Approver(options.approver, options.approver_role)
    floors = options.gate.min_slice_hit_rate is not None or options.gate.min_slice_sharpe is not None
    with step("gate"), open_registry(ws) as registry:
        for model in [forecaster, *agents]:
            strategy = model.tags.get("strategy") or f"ensemble_{config.ensemble_method}"
            evidence = backtest_evidence(staging, strategy, None)
            if floors:
                report = load_bias_report(registry, model.name, model.version)
                evidence = _with_worst(evidence, None if report is None else report.worst_slices())
            result = registry.promote(
                model.name,
                model.version,
                approver,
                evidence=evidence,
                gate=gate,
                note=f"scheduled retrain {ctx.run_id} ({ctx.job})",
            )
            if result.model.stage not in (Stage.CANDIDATE, Stage.CHALLENGER):  # never past the gate
                raise AssertionError(
                    f"{result.model.ref} reached {result.model.stage}; the scheduler stops at challenger"
                )
            decisions.append(
                {
                    "model": result.model.ref,
                    "strategy": strategy,
                    "stage": result.model.stage.value,
                    "accepted": result.accepted,
                    "reasons": list(result.decision.reasons),
                }
            )
    worst = {
        r.model.ref: {k: [lab, round(v, 4)] for k, (lab, v) in r.report.worst_slices().items()} for r in bias
    }
    return {
        "window_bars": config.max_bars_per_symbol,
        "symbols": list(config.symbols),
        "steps_s": steps,
        "registered": [forecaster.ref, *(m.ref for m in agents)],
        "decisions": decisions,
        "test_sharpe": {
            str(k): round(float(v), 3) for k, v in summary.groupby("strategy")["sharpe"].mean().items()
        },
        "bias_worst": worst,
    }


def _with_worst(evidence: Any, worst: Any) -> Any:
    return dataclasses.replace(evidence, worst_slices=worst)


_ACTIONS: dict[str, ActionFn] = {"ingest": _ingest, "features": _features, "retrain": _retrain, "bias": _bias}


# ------------------------------------------------------------------------------------------- scheduler
def _utc_iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds")


class Scheduler:
    """Runs a schedule's jobs on a workspace; see the module docstring.

    Parameters
    ----------
    ws
        The data directory.
    config
        The schedule.
    clock
        Returns the current time (timezone-aware); injectable for tests.
    sleep
        Sleeps a number of seconds; injectable for tests.
    progress
        Progress display for the long actions.
    actions
        Replacements for action functions, by action name (tests inject failures this way).
    """

    def __init__(
        self,
        ws: Workspace,
        config: ScheduleConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress: StageProgress | None = None,
        actions: Mapping[str, ActionFn] | None = None,
    ) -> None:
        if not isinstance(config, ScheduleConfig):
            raise ConfigError(f"Scheduler takes a ScheduleConfig, got {type(config).__name__}.")
        self.ws = ws
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sleep = sleep
        self.progress = progress or NullProgress()
        self.actions = {**_ACTIONS, **(actions or {})}
        self.runs = RunLog(ws.root / "schedule" / "runs.jsonl")
        self.alerts = AlertLog(path=ws.root / "schedule" / "alerts.jsonl")

    def now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ConfigError("the scheduler's clock must return timezone-aware times.")
        return now.astimezone(self.zone)

    def previous_fire(self, job: JobSpec, now: datetime | None = None) -> datetime:
        """The job's most recent cron time at or before ``now``."""
        from croniter import croniter

        now = now or self.now()
        return croniter(job.cron, now + timedelta(seconds=1)).get_prev(datetime)

    def next_fire(self, job: JobSpec, now: datetime | None = None) -> datetime:
        """The job's next cron time after ``now``."""
        from croniter import croniter

        return croniter(job.cron, now or self.now()).get_next(datetime)

    def due(self, now: datetime | None = None) -> list[tuple[JobSpec, datetime]]:
        """The enabled jobs due at ``now``, with the cron time each serves, in schedule order."""
        now = now or self.now()
        out = []
        for job in self.config.jobs:
            if not job.enabled:
                continue
            fire = self.previous_fire(job, now)
            last = self.runs.last(job.name)
            if last is None or datetime.fromisoformat(last.started_at) < fire:
                out.append((job, fire))
        return out

    def run_job(self, job: JobSpec, scheduled_for: datetime | None = None) -> RunRecord:
        """Run one job now; a failure is logged, alerted and returned as a ``failed`` record, not raised."""
        # digits, dashes and hex only, so the log redaction never mistakes a run id for a credential
        run_id = f"{self.now().astimezone(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        started = self.now()
        t0 = time.perf_counter()
        ctx = RunContext(run_id, job.name, started, self.progress)
        log.info("run %s: job %s (%s) started", run_id, job.name, job.action)
        details: dict[str, Any] = {}
        error = None
        try:
            details = self.actions[job.action](self.ws, job.parsed_options(), ctx) or {}
        except Exception as exc:  # any failure of a job is data: logged, alerted, recorded (Ctrl-C is not)
            error = f"{type(exc).__name__}: {exc}"
            log.error("run %s: job %s failed: %s\n%s", run_id, job.name, error, traceback.format_exc())
            self.alerts.add(
                Alert(
                    ts=self.now().astimezone(UTC),
                    kind=ALERT_KIND,
                    severity="alert",
                    subject=job.name,
                    message=f"scheduled {job.action} run {run_id} failed: {error}; the champion models are "
                    "unchanged",
                    value=1.0,
                    threshold=0.0,
                )
            )
        record = RunRecord(
            run_id=run_id,
            job=job.name,
            action=job.action,
            scheduled_for=None if scheduled_for is None else _utc_iso(scheduled_for),
            started_at=_utc_iso(started),
            ended_at=_utc_iso(self.now()),
            seconds=round(time.perf_counter() - t0, 2),
            outcome="failed" if error else "succeeded",
            error=error,
            details=details,
        )
        self.runs.append(record)
        if error is None:
            log.info("run %s: job %s succeeded in %.1fs", run_id, job.name, record.seconds)
        return record

    def run_once(self, only: str | None = None) -> list[RunRecord]:
        """Run the due jobs now (``only``: that job, due or not) and return their records."""
        with self._lock():
            if only is not None:
                return [self.run_job(self.config.job(only))]
            return [self.run_job(job, fire) for job, fire in self.due()]

    def run_forever(self, only: str | None = None, *, max_cycles: int | None = None) -> list[RunRecord]:
        """Sleep until the next cron time, run what is due, repeat (``max_cycles`` wakes, for tests)."""
        jobs = [self.config.job(only)] if only is not None else [j for j in self.config.jobs if j.enabled]
        if not jobs:
            raise ConfigError("no enabled job in the schedule.")
        done: list[RunRecord] = []
        cycles = 0
        with self._lock():
            while max_cycles is None or cycles < max_cycles:
                now = self.now()
                target = min(self.next_fire(j, now) for j in jobs)
                while (wait := (target - self.now()).total_seconds()) > 0:
                    self._sleep(min(wait, 60.0))  # short naps: a changed clock is noticed within a minute
                for job, fire in self.due():
                    if job in jobs:
                        done.append(self.run_job(job, fire))
                cycles += 1
        return done

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        import fcntl

        path = self.ws.root / "schedule" / "scheduler.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"another scheduler is running on {self.ws.root} (lock {path}); run one per data "
                    "directory."
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- tables
def jobs_table(scheduler: Scheduler) -> Table:
    """The schedule: each job's action, cron, next time, and its last run."""
    now = scheduler.now()
    due = {job.name for job, _ in scheduler.due(now)}
    table = Table(title=f"Schedule ({scheduler.config.timezone}), now {now:%Y-%m-%d %H:%M}")
    for col in ("job", "action", "cron", "enabled", "due now", "next run", "last run", "outcome", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for job in scheduler.config.jobs:
        last = scheduler.runs.last(job.name)
        table.add_row(
            job.name,
            job.action,
            job.cron,
            "yes" if job.enabled else "no",
            "yes" if job.name in due else "",
            f"{scheduler.next_fire(job, now):%Y-%m-%d %H:%M}",
            last.started_at if last else "-",
            last.outcome if last else "-",
            f"{last.seconds:.1f}" if last else "",
        )
    return table


def runs_table(records: list[RunRecord], title: str = "Scheduled runs") -> Table:
    """Runs with their outcome and the first line of their error or details."""
    table = Table(title=title)
    for col in ("run", "job", "action", "scheduled for", "started", "seconds", "outcome", "error / details"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for r in records:
        info = r.error or json.dumps(r.details, default=str)
        table.add_row(
            r.run_id,
            r.job,
            r.action,
            r.scheduled_for or "forced",
            r.started_at,
            f"{r.seconds:.1f}",
            r.outcome,
            info if len(info) <= 160 else info[:157] + "...",
            style="bold red" if r.outcome == "failed" else None,
        )
    return table
