"""The scheduler: cron entries parsed and validated, due jobs by catch-up rule, the loop on an injected
clock, failures logged, alerted and recorded, one scheduler per data directory; ingest and feature refresh
on the shipped real bars."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alphaloom.core.exceptions import ConfigError
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.schedule import (
    ACTIONS,
    JobSpec,
    RetrainOptions,
    RunLog,
    ScheduleConfig,
    Scheduler,
    jobs_table,
    load_schedule,
    runs_table,
)
from alphaloom.jobs.workspace import Workspace

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "schedule.toml"


class FakeClock:
    """A clock that only moves when slept on (or when told to)."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def _schedule(*jobs: dict) -> ScheduleConfig:
    return ScheduleConfig.from_dict({"jobs": list(jobs)})


def _recorder(calls: list[str]):
    def action(ws, options, ctx):
        calls.append(ctx.job)
        return {"at": ctx.now.isoformat()}

    return action


# -------------------------------------------------------------------------------------------- config
def test_the_example_schedule_loads_with_every_action() -> None:
    config = load_schedule(EXAMPLE)
    assert [j.action for j in config.jobs] == ["ingest", "features", "retrain", "bias"]
    assert set(ACTIONS) == {j.action for j in config.jobs}
    retrain = config.job("weekly-retrain").parsed_options()
    assert isinstance(retrain, RetrainOptions)
    assert retrain.window_bars == 900
    assert retrain.gate.min_deflated_sharpe == 0.5
    assert retrain.approver_role == "trader"


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"name": "a", "cron": "61 1 * * *", "action": "ingest"}, "not a cron expression"),
        ({"name": "a", "cron": "0 1 * * *", "action": "retrian"}, "Did you mean 'retrain'"),
        ({"name": "a", "cron": "0 1 * * *", "action": "ingest", "options": {"sample": []}}, "mean 'samples'"),
        ({"name": "a", "cron": "0 1 * * *", "action": "retrain", "options": {"run": {"cnn_epoch": 1}}},
         "cnn_epochs"),
        ({"name": "a b", "cron": "0 1 * * *", "action": "ingest"}, "name"),
    ],
)  # fmt: skip
def test_bad_jobs_are_refused_with_a_reason(job: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        JobSpec.from_dict(job)


def test_bad_schedules_are_refused(tmp_path: Path) -> None:
    job = {"name": "a", "cron": "0 1 * * *", "action": "ingest"}
    with pytest.raises(ConfigError, match="unique"):
        _schedule(job, job)
    with pytest.raises(ConfigError, match="time zone"):
        ScheduleConfig.from_dict({"timezone": "Mars/Olympus", "jobs": [job]})
    bad = tmp_path / "s.toml"
    bad.write_text(
        '[[jobs]]\nname = "x"\ncron = "0 1 * * *"\naction = "ingest"\n[jobs.options]\nlookback = 3\n'
    )
    with pytest.raises(ConfigError, match=r"s.toml \[\[jobs\]\] #1.*lookback_days"):
        load_schedule(bad)
    with pytest.raises(ConfigError, match="no job 'nighty'"):
        load_schedule(EXAMPLE).job("nighty")


# ------------------------------------------------------------------------------------------------ due
def test_due_jobs_follow_the_catch_up_rule(tmp_path: Path) -> None:
    calls: list[str] = []
    clock = FakeClock(datetime(2026, 3, 2, 0, 30, tzinfo=UTC))  # a Monday
    config = _schedule(
        {"name": "nightly", "cron": "0 1 * * *", "action": "ingest"},
        {"name": "weekly", "cron": "0 3 * * 6", "action": "features"},
        {"name": "off", "cron": "* * * * *", "action": "bias", "enabled": False},
    )
    actions = dict.fromkeys(ACTIONS, _recorder(calls))
    s = Scheduler(Workspace.resolve(tmp_path), config, clock=clock, sleep=clock.sleep, actions=actions)
    # never run: both are due once (catch-up), the disabled one never
    assert [(j.name, f.isoformat()) for j, f in s.due()] == [
        ("nightly", "2026-03-01T01:00:00+00:00"),
        ("weekly", "2026-02-28T03:00:00+00:00"),
    ]
    records = s.run_once()
    assert calls == ["nightly", "weekly"]
    assert [r.scheduled_for for r in records] == ["2026-03-01T01:00:00+00:00", "2026-02-28T03:00:00+00:00"]
    assert s.due() == []  # nothing new until the next cron time
    assert s.run_once() == []
    clock.now = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # exactly the nightly time
    assert [j.name for j, _ in s.due()] == ["nightly"]
    clock.now = datetime(
        2026, 3, 9, 12, 0, tzinfo=UTC
    )  # a week later, the machine was off: one catch-up each
    assert [(j.name, f.day) for j, f in s.due()] == [("nightly", 9), ("weekly", 7)]
    forced = s.run_once("weekly")  # --job: run now, due or not
    assert forced[0].scheduled_for is None
    assert calls[-1] == "weekly"


def test_the_loop_sleeps_until_each_cron_time(tmp_path: Path) -> None:
    calls: list[str] = []
    clock = FakeClock(datetime(2026, 3, 2, 0, 59, 30, tzinfo=UTC))
    config = _schedule({"name": "hourly", "cron": "0 * * * *", "action": "ingest"})
    s = Scheduler(
        Workspace.resolve(tmp_path),
        config,
        clock=clock,
        sleep=clock.sleep,
        actions={"ingest": _recorder(calls)},
    )
    s.run_job(config.jobs[0], datetime(2026, 3, 2, 0, 0, tzinfo=UTC))  # the 00:00 run is done
    runs = s.run_forever(max_cycles=3)
    assert [r.scheduled_for for r in runs] == [
        "2026-03-02T01:00:00+00:00",
        "2026-03-02T02:00:00+00:00",
        "2026-03-02T03:00:00+00:00",
    ]
    assert max(clock.slept) <= 60.0  # naps of at most a minute
    assert clock.now == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


# -------------------------------------------------------------------------------------------- failure
def test_a_failed_run_is_logged_alerted_and_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(ws, options, ctx):
        raise OSError("disk full")

    calls: list[str] = []
    config = _schedule(
        {"name": "nightly", "cron": "0 1 * * *", "action": "ingest"},
        {"name": "features", "cron": "0 2 * * *", "action": "features"},
    )
    ws = Workspace.resolve(tmp_path)
    s = Scheduler(ws, config, actions={"ingest": broken, "features": _recorder(calls)})
    with caplog.at_level(logging.ERROR):
        records = s.run_once()
    assert [r.outcome for r in records] == ["failed", "succeeded"]  # one failure does not stop the others
    assert calls == ["features"]
    assert records[0].error == "OSError: disk full"
    assert any(r.levelno == logging.ERROR and "nightly failed" in r.getMessage() for r in caplog.records)
    logged = RunLog(ws.root / "schedule" / "runs.jsonl").records()
    assert [(r.job, r.outcome) for r in logged] == [("nightly", "failed"), ("features", "succeeded")]
    alerts = [json.loads(line) for line in (ws.root / "schedule" / "alerts.jsonl").read_text().splitlines()]
    assert len(alerts) == 1
    assert alerts[0]["kind"] == "scheduled_job_failed"
    assert alerts[0]["severity"] == "alert"
    assert alerts[0]["subject"] == "nightly"
    assert "disk full" in alerts[0]["message"]
    assert s.alerts.recent(kind="scheduled_job_failed")[0].subject == "nightly"
    assert s.due() == []  # a failed run waits for the next cron time instead of retrying in a loop
    assert "failed" in _render(runs_table(records))
    assert "nightly" in _render(jobs_table(s))


def test_one_scheduler_per_data_directory(tmp_path: Path) -> None:
    config = _schedule({"name": "n", "cron": "0 1 * * *", "action": "ingest"})
    first = Scheduler(Workspace.resolve(tmp_path), config, actions={"ingest": _recorder([])})
    second = Scheduler(Workspace.resolve(tmp_path), config, actions={"ingest": _recorder([])})
    with first._lock(), pytest.raises(ConfigError, match="another scheduler"):
        second.run_once()
    assert len(second.run_once()) == 1  # free again once the first let go


def test_a_corrupt_log_line_is_skipped(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "runs.jsonl")
    log.path.write_text('{"not": "a record"}\nnot json\n')
    assert log.records() == []


# ------------------------------------------------------------------------------------- real actions
def test_ingest_and_feature_refresh_on_the_shipped_bars(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path)
    ws.save_config(RunConfig(symbols=("SPY",)))
    config = _schedule(
        {"name": "ingest", "cron": "15 1 * * *", "action": "ingest",
         "options": {"samples": ["us_equities_daily"]}},
        {"name": "features", "cron": "45 1 * * *", "action": "features"},
    )  # fmt: skip
    first = Scheduler(ws, config).run_once()
    assert [r.outcome for r in first] == ["succeeded", "succeeded"], [r.error for r in first]
    assert first[0].details["inserted"] > 5000
    assert first[1].details["symbols"] == ["SPY"]
    assert first[1].details["n_features"] > 10
    again = Scheduler(ws, config).run_once("ingest")  # an upsert: nothing new the second time
    assert again[0].details["inserted"] == 0
    assert again[0].details["updated"] == 0


def _render(table) -> str:
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(table)
    return console.export_text()
