"""``alphaloom tune`` and the ``--ray`` options: a study resumes across invocations, best parameters are
printed, Ray runs log to the data directory, and bad options are one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ALPHALOOM_DATA_DIR"}
    env["COLUMNS"] = "220"
    return subprocess.run(
        [sys.executable, "-m", "alphaloom.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def test_help_lists_tune_and_the_ray_options() -> None:
    assert "tune" in run_cli("--help").stdout
    for command in (("tune", "cnn-lstm"), ("tune", "agent")):
        proc = run_cli(*command, "--help")
        assert proc.returncode == 0
        for option in ("--trials", "--storage", "--study", "--ray", "--ray-address", "--workers"):
            assert option in proc.stdout, (command, option)
    for command in ("forecasters", "agents"):
        proc = run_cli("evaluate", command, "--help")
        for option in ("--ray", "--ray-address", "--workers"):
            assert option in proc.stdout, (command, option)


def test_a_study_resumes_across_invocations_and_prints_the_best_params(tmp_path: Path) -> None:
    args = ("tune", "cnn-lstm", "--quick", "--trials", "2", "--study", "cli", "--data-dir", str(tmp_path))
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "2 new" in first.stdout
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    summary = next(line for line in second.stdout.splitlines() if line.startswith("study 'cli'"))
    states = summary.split(": ", 1)[1].split(";")[0].split(", ")  # e.g. "3 complete, 1 pruned"
    assert sum(int(state.split()[0]) for state in states) == 4
    assert "best trial" in second.stdout
    assert "learning_rate" in second.stdout
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["tune_cli"]["storage"] == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"
    assert set(manifest["tune_cli"]["best_params"]) >= {"learning_rate", "window"}


def test_evaluate_forecasters_with_ray_runs_and_logs_to_the_data_dir(tmp_path: Path) -> None:
    proc = run_cli(
        "evaluate", "forecasters", "--quick", "--dataset", "stocks", "--ray", "--workers", "2",
        "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "cnn_lstm" in proc.stdout
    assert "buy_and_hold" in proc.stdout
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["evaluate_forecasters"]["executor"]["backend"] == "ray"
    assert manifest["evaluate_forecasters"]["executor"]["workers"] == 2
    assert any(p.name.startswith("session_") for p in (tmp_path / "ray").iterdir())


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    data_dir = ("--data-dir", str(tmp_path))
    assert "Did you mean 'ppo'" in one_line_error(run_cli("tune", "agent", "ppp", *data_dir))
    line = one_line_error(run_cli("evaluate", "forecasters", "--quick", "--workers", "2", *data_dir))
    assert "--workers 2 needs --ray" in line
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"127.0.0.1:{port}"
    line = one_line_error(
        run_cli("tune", "cnn-lstm", "--quick", "--trials", "1", "--ray-address", address, *data_dir)
    )
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in line
    line = one_line_error(run_cli("tune", "cnn-lstm", "--quick", "--trials", "0", *data_dir))
    assert "--trials" in line
