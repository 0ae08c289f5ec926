"""``alphaloom schedule list|run`` from the command line, on the shipped real bars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "schedule.toml"

SCHEDULE = """
timezone = "UTC"

[[jobs]]
name = "nightly-ingest"
cron = "15 1 * * *"
action = "ingest"
[jobs.options]
samples = ["us_equities_daily"]

[[jobs]]
name = "feature-refresh"
cron = "45 1 * * *"
action = "features"
[jobs.options.run]
symbols = ["SPY", "NOSUCH"]
"""


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "ALPHALOOM_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "alphaloom.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sched_cli")
    (root / "schedule.toml").write_text(SCHEDULE)
    return root


def test_list_shows_every_job_of_the_example(data_dir: Path) -> None:
    listed = cli("schedule", "list", "--config", str(EXAMPLE), data_dir=data_dir)
    assert listed.returncode == 0, listed.stderr
    for name in ("nightly-ingest", "feature-refresh", "weekly-retrain", "daily-bias"):
        assert name in listed.stdout
    assert "0 3 * * 6" in listed.stdout


def test_run_once_logs_each_run_and_fails_loudly(data_dir: Path) -> None:
    ran = cli("--log-level", "ERROR", "schedule", "run", "--once", data_dir=data_dir)
    assert ran.returncode == 1, ran.stdout + ran.stderr  # the feature refresh names an unknown symbol
    assert "succeeded" in ran.stdout
    assert "failed" in ran.stdout
    assert "NOSUCH" in ran.stderr  # logged at ERROR
    runs = [json.loads(line) for line in (data_dir / "schedule" / "runs.jsonl").read_text().splitlines()]
    assert [(r["job"], r["outcome"]) for r in runs] == [
        ("nightly-ingest", "succeeded"),
        ("feature-refresh", "failed"),
    ]
    assert runs[0]["details"]["inserted"] > 5000
    assert "NOSUCH" in runs[1]["error"]
    alerts = (data_dir / "schedule" / "alerts.jsonl").read_text().splitlines()
    assert json.loads(alerts[-1])["subject"] == "feature-refresh"

    again = cli("schedule", "run", "--once", data_dir=data_dir)
    assert again.returncode == 0
    assert "no job is due" in again.stdout
    listed = cli("schedule", "list", data_dir=data_dir)
    assert "failed" in listed.stdout


def test_a_missing_schedule_is_one_clear_line(tmp_path: Path) -> None:
    ran = cli("schedule", "run", "--once", data_dir=tmp_path)
    assert ran.returncode == 2
    assert "no schedule at" in ran.stderr
    assert "Traceback" not in ran.stderr
