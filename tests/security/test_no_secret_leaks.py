"""No known fake secret appears in any output, log, manifest, store or report of a full run.

With fake credentials in the environment and in the encrypted keystore, and logging at DEBUG into a log file,
this runs the ``secrets`` commands (init, set, get, list, rotate, rotate-key, a failing get), a venue ingest
through the OANDA connector against a local v20 server (the token goes over HTTP in every request, with
httpx/httpcore logging at DEBUG) and a failing one with a revoked token, and ``alphaloom demo --quick``.
Then it scans every byte written: stdout and stderr of each command, the log file, every file in the data
directory (manifest, run config, DuckDB store, models, HTML report) and the keystore. A control proves the
scan finds a value where one is printed on purpose (``secrets get --reveal``).

(The API service does not exist yet; when it does, its run belongs here too.)
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.data.connectors.servers import LocalServer
from tests.data.connectors.servers.oanda_server import OandaVenue, OandaVenueConfig

pytestmark = pytest.mark.slow

PASSPHRASE = "leak-test passphrase " + secrets.token_hex(8)
ACCOUNT = "101-004-" + str(secrets.randbelow(10**7)).zfill(7) + "-001"


def _fake(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18)


ENV_SECRETS = {
    "ALPHALOOM_OANDA_TOKEN": _fake("oanda-"),
    "ALPHALOOM_OANDA_ACCOUNT": ACCOUNT,
    "ALPHALOOM_COINBASE_API_KEY": _fake("cb-key-"),
    "ALPHALOOM_COINBASE_API_SECRET": _fake("cb-secret-"),
    "ALPHALOOM_ROBINHOOD_PRIVATE_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    "VAULT_TOKEN": "hvs." + secrets.token_urlsafe(24),
    "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    "ALPHALOOM_KEYSTORE_PASSPHRASE": PASSPHRASE,
}
KEYSTORE_SECRETS = {
    "oanda.token": _fake("ks-oanda-"),
    "coinbase.api_secret": _fake("ks-coinbase-"),
    "robinhood.password": _fake("ks-rh-pw-"),
}
ROTATED = _fake("ks-oanda-rotated-")
ALL_SECRETS = [*ENV_SECRETS.values(), *KEYSTORE_SECRETS.values(), ROTATED]


@dataclass
class Run:
    root: Path
    outputs: dict[str, str] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)


def _cli(run: Run, label: str, args: list[str], env: dict[str, str], stdin: str | None = None) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "alphaloom.cli.main", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
        cwd=run.root,
    )
    run.outputs[label] = proc.stdout + proc.stderr
    run.codes[label] = proc.returncode


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("leaks")
    run = Run(root)
    data_dir, keystore = root / "data", root / "data" / "secrets.keystore"
    values_dir = root / "values"  # holds plain values on purpose; not scanned
    values_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHALOOM_", "VAULT_"))}
    env |= ENV_SECRETS | {
        "ALPHALOOM_LOG_LEVEL": "DEBUG",
        "ALPHALOOM_LOG_FILE": str(root / "alphaloom.log"),
        "ALPHALOOM_DATA_DIR": str(data_dir),
        "ALPHALOOM_KEYSTORE": str(keystore),
        "COLUMNS": "200",
    }
    data_dir.mkdir()
    _cli(run, "init", ["secrets", "init"], env)
    for name, value in KEYSTORE_SECRETS.items():
        _cli(run, f"set {name}", ["secrets", "set", name], env, stdin=value + "\n")
    (values_dir / "rotated").write_text(ROTATED)
    _cli(run, "get", ["secrets", "get", "oanda.token"], env)
    _cli(run, "list", ["secrets", "list"], env)
    _cli(
        run, "rotate", ["secrets", "rotate", "oanda.token", "--value-file", str(values_dir / "rotated")], env
    )
    _cli(run, "rotate-key", ["secrets", "rotate-key"], env)
    _cli(run, "get missing", ["secrets", "get", "oanda.tokn"], env)
    _cli(run, "reveal (control)", ["secrets", "get", "coinbase.api_secret", "--reveal"], env)

    # The keystore outranks the environment, so the venue expects the rotated keystore token.
    venue = OandaVenue(OandaVenueConfig(token=ROTATED, account_id=ACCOUNT))
    server = LocalServer(venue.app).start()
    try:
        config = values_dir / "oanda.toml"
        config.write_text(f'base_url = "{server.url}"\nstream_url = "{server.url}"\n')
        ingest = ["data", "ingest", "--venue", "oanda", "--venue-config", str(config), "--symbols", "EURUSD"]
        ingest += ["--timeframe", "1h", "--start", "2024-03-04", "--end", "2024-03-06"]
        ingest += ["--data-dir", str(root / "venue-data")]
        _cli(run, "ingest oanda", ingest, env)
        venue.config.token = "revoked-" + secrets.token_hex(8)  # the next run's token is refused
        _cli(run, "ingest oanda (refused)", ingest, env)
    finally:
        server.stop()
    _cli(run, "demo", ["demo", "--quick"], env)
    return run


def _found(data: bytes) -> list[str]:
    return [s for s in ALL_SECRETS if s.encode() in data]


def test_every_command_ran(full_run: Run) -> None:
    failing = {"get missing", "ingest oanda (refused)"}
    for label, code in full_run.codes.items():
        expected = 2 if label in failing else 0
        assert code == expected, f"{label}: exit {code}\n{full_run.outputs[label][-2000:]}"
    assert "oanda.token: ***" in full_run.outputs["get"]
    assert "rotated to version 2" in full_run.outputs["rotate"]
    assert (
        "refused" in full_run.outputs["ingest oanda (refused)"].lower()
        or "authori" in full_run.outputs["ingest oanda (refused)"].lower()
    )


def test_the_scan_finds_a_value_printed_on_purpose(full_run: Run) -> None:
    assert _found(full_run.outputs["reveal (control)"].encode()) == [KEYSTORE_SECRETS["coinbase.api_secret"]]


def test_no_secret_in_any_command_output(full_run: Run) -> None:
    leaks = {
        label: _found(text.encode())
        for label, text in full_run.outputs.items()
        if label != "reveal (control)"
    }
    assert {k: v for k, v in leaks.items() if v} == {}


def test_no_secret_in_the_log_file(full_run: Run) -> None:
    log = (full_run.root / "alphaloom.log").read_bytes()
    assert log, "DEBUG logging wrote nothing"
    assert _found(log) == []


def test_no_secret_in_any_file_of_the_data_directories(full_run: Run) -> None:
    files = [p for d in ("data", "venue-data") for p in (full_run.root / d).rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {
        "manifest.json",
        "run_config.json",
        "alphaloom.duckdb",
        "report.html",
        "secrets.keystore",
    } <= names
    leaks = {str(p.relative_to(full_run.root)): _found(p.read_bytes()) for p in files}
    assert {k: v for k, v in leaks.items() if v} == {}
