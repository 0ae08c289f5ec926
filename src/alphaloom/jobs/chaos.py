"""``alphaloom chaos``: break things during a paper-trading run and prove nothing was lost or duplicated.

The suite runs ``alphaloom trade --paper`` on the shipped real data twice: once undisturbed, and once while
a seeded schedule of faults hits it:

- the paper venue fails a share of its calls (errors, timeouts, order replies lost after the order reached
  the book), which the connector retries with backoff (:class:`~alphaloom.data.connectors.paper.FaultPlan`);
- the trading process is killed with SIGKILL several times and restarted;
- its private PostgreSQL (orders, fills and audit log, through the journaled store) is stopped and started
  again, as a crash (``pg_ctl -m immediate``);
- a private Redis carrying the run's bars on a Redis Streams bus (a ``data stream`` producer and a bus
  consumer process) is killed with SIGKILL and restarted on its append-only file, and the consumer is killed
  too.

At the end it compares the disturbed run with the undisturbed one: the same fills, positions, cash and audit
trail content, every client order id sent to the venue once, every bar decided on and every bar delivered
through the bus, and an audit chain that verifies. :func:`chaos` returns the counts; the CLI prints them and
exits non-zero on any mismatch.

The private servers (:class:`PrivatePostgres`, :class:`PrivateRedis`) live in temporary directories on spare
ports, so the shared servers of a machine are never touched; the tests use them too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field
from rich.table import Table

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import BusError, ConfigError, StorageError
from alphaloom.jobs.progress import NullProgress, StageProgress

__all__ = [
    "BUSINESS_ACTIONS",
    "BusSink",
    "ChaosCheck",
    "ChaosConfig",
    "ChaosReport",
    "PrivatePostgres",
    "PrivateRedis",
    "audit_content",
    "chaos",
    "chaos_table",
    "consume",
    "free_port",
    "main",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _postgres_bindir() -> Path:
    env = os.environ.get("ALPHALOOM_PG_BINDIR")
    candidates = [Path(env)] if env else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise ConfigError(
        "the chaos suite and the reliability tests start a private PostgreSQL and need its server binaries "
        "(initdb, pg_ctl); install them (Debian: apt-get install postgresql) or point ALPHALOOM_PG_BINDIR "
        "at their directory."
    )


class PrivatePostgres:
    """A throw-away PostgreSQL server in a temporary directory, on a spare port.

    ``initdb`` runs once; :meth:`start` and :meth:`stop` may then be called any number of times (a stop in
    ``immediate`` mode is a crash: the server recovers from its write-ahead log on the next start). As root,
    the server runs as the ``postgres`` user (``ALPHALOOM_PG_USER`` to change), since PostgreSQL refuses to
    run as root.

    Parameters
    ----------
    port
        The port (a free one when ``None``).
    fsync
        Keep PostgreSQL's fsync (off by default: the tests crash the server, not the machine, and a crash
        of the server loses nothing it acknowledged either way).
    """

    def __init__(self, port: int | None = None, *, fsync: bool = False) -> None:
        self.bindir = _postgres_bindir()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="alphaloom-pg-"))
        self.data = self.root / "data"
        self._fsync = fsync
        self._user: str | None = None
        self.starts = 0
        if os.geteuid() == 0:
            self._user = os.environ.get("ALPHALOOM_PG_USER", "postgres")
            try:
                shutil.chown(self.root, user=self._user)
            except (LookupError, OSError) as exc:
                shutil.rmtree(self.root, ignore_errors=True)
                raise ConfigError(
                    f"PostgreSQL refuses to run as root and the user {self._user!r} cannot own {self.root} "
                    f"({exc}); set ALPHALOOM_PG_USER to an existing unprivileged user."
                ) from exc
        try:
            self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def dsn(self) -> str:
        """A libpq URL of the server's ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return _listening(self.port)

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            raise StorageError(
                f"{tool} failed for the private PostgreSQL in {self.root} (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}"
            )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        fsync = "on" if self._fsync else "off"
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync={fsync}"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self.starts += 1

    def stop(self, *, mode: str = "immediate") -> None:
        """Stop the server: ``immediate`` (a crash), ``fast`` (roll back and shut down) or ``smart``."""
        if mode not in ("immediate", "fast", "smart"):
            raise ConfigError(f"mode must be 'immediate', 'fast' or 'smart', got {mode!r}.")
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, *, down_s: float = 0.0) -> None:
        """Crash the server, keep it down ``down_s`` seconds, and start it again."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def log(self) -> str:
        """The server's log (for failure messages)."""
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Stop the server if it runs and delete its directory."""
        if self.data.exists() and (self.data / "postmaster.pid").exists():
            with contextlib.suppress(StorageError, subprocess.TimeoutExpired):
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrivateRedis:
    """A throw-away ``redis-server`` in a temporary directory, on a spare port, persisting to an AOF.

    The append-only file is written with ``appendfsync always``: every acknowledged write survives a SIGKILL
    of the server, so :meth:`kill` followed by :meth:`start` behaves like a crashed production server
    restarting on its data.
    """

    def __init__(self, port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ConfigError(
                "the chaos suite and the reliability tests start a private Redis and need redis-server on "
                "PATH (Debian: apt-get install redis-server)."
            )
        self.exe = exe
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="alphaloom-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout_s: float = 20.0) -> None:
        """Start the server on its directory (loading the AOF) and wait until it answers."""
        if self.running:
            return
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - handed to the child process
        try:
            self._proc = subprocess.Popen(
                [
                    self.exe,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.root),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                    "--protected-mode",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StorageError(f"the private redis-server exited at start: {self.log()[-800:]}")
            if self._ping():
                self.starts += 1
                return
            time.sleep(0.02)
        raise StorageError(f"the private redis-server on port {self.port} did not answer in {timeout_s} s.")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final save)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=30)
        self._proc = None

    def restart(self, *, down_s: float = 0.0) -> None:
        """Kill the server, keep it down ``down_s`` seconds, and start it again on its data."""
        self.kill()
        time.sleep(down_s)
        self.start()

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Kill the server and delete its directory."""
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- the suite


class ChaosConfig(ComponentConfig):
    """Settings of one chaos run (``alphaloom chaos``).

    Parameters
    ----------
    symbols, samples
        What is traded, and the shipped sample sets its real bars come from.
    bars, end
        The paper run trades the last ``bars`` bar times before ``end``.
    seed
        Seeds the schedule (when each kill and restart happens) and the venue's fault dice.
    trader_kills, db_restarts, redis_restarts, consumer_kills
        How many times the trading process is SIGKILLed and restarted, PostgreSQL crashed
        (``pg_ctl -m immediate``) and started again, Redis SIGKILLed and restarted on its append-only file,
        and the bus consumer SIGKILLed and restarted.
    fail_share, timeout_share, lost_reply_share
        The paper venue's injected faults (see :class:`~alphaloom.data.connectors.paper.FaultPlan`).
    max_faults_in_a_row
        At most this many venue calls in a row fail: below the connector's five attempts and its breaker's
        threshold, so every fault is transient and the run must match the undisturbed one exactly. (Faults
        that outlast the retries change what is traded, by design: the order is settled as lost and
        re-decided at the next bar.)
    bars_per_s
        Pace of the disturbed run (the undisturbed one runs flat out); slow enough for the kills to land.
    db_down_s, redis_down_s
        How long each outage lasts.
    time_limit_s
        The whole suite fails past this wall-clock time.
    """

    symbols: tuple[str, ...] = ("SPY", "QQQ", "BTCUSD")
    samples: tuple[str, ...] = ("us_equities_daily", "crypto_daily")
    bars: int = Field(300, ge=30)
    end: str = "2020-01-01"
    seed: int = 7
    trader_kills: int = Field(5, ge=0, le=50)
    db_restarts: int = Field(3, ge=0, le=50)
    redis_restarts: int = Field(2, ge=0, le=50)
    consumer_kills: int = Field(2, ge=0, le=50)
    fail_share: float = Field(0.1, ge=0.0, le=0.3)
    timeout_share: float = Field(0.03, ge=0.0, le=0.3)
    lost_reply_share: float = Field(0.1, ge=0.0, le=0.5)
    max_faults_in_a_row: int = Field(2, ge=1, le=4)
    bars_per_s: float = Field(12.0, gt=0.0)
    db_down_s: float = Field(2.0, ge=0.0, le=120.0)
    redis_down_s: float = Field(1.0, ge=0.0, le=120.0)
    time_limit_s: float = Field(900.0, gt=0.0)

    @classmethod
    def quick(cls, seed: int = 7) -> ChaosConfig:
        """The short form CI runs (about a minute)."""
        return cls(
            bars=120,
            seed=seed,
            trader_kills=2,
            db_restarts=1,
            redis_restarts=1,
            consumer_kills=1,
            bars_per_s=15.0,
            db_down_s=1.5,
            redis_down_s=0.5,
            time_limit_s=240.0,
        )


class ChaosCheck(NamedTuple):
    """One comparison of the disturbed run with the undisturbed one."""

    name: str
    ok: bool
    detail: str


@dataclass
class ChaosReport:
    """What :func:`chaos` did and found.

    Attributes
    ----------
    counts
        Faults injected, kills and restarts, orders, fills, duplicates and losses (see the CLI's table).
    checks
        Every comparison, passed or not.
    events
        The schedule as it happened (``"step 37: SIGKILL trader"``).
    work_dir
        The workspaces, databases' logs and process logs (kept when a check failed).
    seconds
        Wall-clock time of the whole suite.
    """

    counts: dict[str, int | str] = field(default_factory=dict)
    checks: list[ChaosCheck] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    work_dir: Path = Path()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[ChaosCheck]:
        return [c for c in self.checks if not c.ok]


#: Audit actions whose content must match between the runs. The others (start-up, reconciliation, order
#: state transitions, degradations, unconfirmed orders) describe the disturbance itself and are counted.
BUSINESS_ACTIONS = (
    "execution.signal",
    "execution.order",
    "execution.fill",
    "execution.sizing_skip",
    "risk.decision",
    "risk.exit",
)
# Fields that name a particular attempt rather than what happened: random decision ids, audit ids, client
# order ids (a lost order is re-decided under the next id) and how a fill was learnt.
_VOLATILE = {
    "run_id",
    "decision_id",
    "client_order_id",
    "signal_audit_id",
    "replaces_client_order_id",
    "fill_id",
    "order_digest",
    "recovered_by",
}


def _business(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {k: _business(v) for k, v in payload.items() if k not in _VOLATILE}
    if isinstance(payload, list):
        return [_business(v) for v in payload]
    return payload


def audit_content(records: Sequence[Any]) -> dict[str, set[str]]:
    """The business content of an audit log: per action in :data:`BUSINESS_ACTIONS`, the set of payloads
    without their attempt-specific fields (a re-decided bar after a restart audits the same content again)."""
    out: dict[str, set[str]] = {a: set() for a in BUSINESS_ACTIONS}
    for rec in records:
        if rec.action in out:
            out[rec.action].add(json.dumps(_business(rec.payload), sort_keys=True))
    return out


class _Proc:
    """A supervised child process with its log file."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.cmd, self.log, self.env = name, cmd, log, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.unexpected = 0
        self._killed = False
        self.born_at_step = 0

    def start(self, step: int = 0) -> None:
        with open(self.log, "ab") as fh:
            fh.write(f"\n=== start {self.starts + 1}: {' '.join(self.cmd)}\n".encode())
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env)
        self.starts += 1
        self._killed = False
        self.born_at_step = step

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            self.kills += 1
            self._killed = True

    def exited(self) -> int | None:
        """The exit code of a process that ended by itself (``None`` while running or when we killed it)."""
        if self.proc is None or self.proc.poll() is None or self._killed:
            return None
        return self.proc.returncode

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ALPHALOOM_DATA_DIR"}
    env["COLUMNS"] = "200"
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "alphaloom.cli.main", *args]


def _paper_journal(ws: Path) -> Path | None:
    run_file = ws / "trade" / "paper_run.json"
    try:
        run = json.loads(run_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return ws / "trade" / f"paper-{run['run_id']}.sqlite"


def _venue_entries(path: Path | None) -> list[tuple[str, dict[str, Any]]]:
    if path is None or not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT kind, payload FROM journal ORDER BY seq").fetchall()
    finally:
        con.close()
    return [(str(k), json.loads(p)) for k, p in rows]


def _steps(ws: Path) -> int:
    path = _paper_journal(ws)
    if path is None or not path.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT count(*) FROM journal WHERE kind = 'step'").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def _create_databases(dsn: str, names: Sequence[str]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        for name in names:
            con.execute(f'CREATE DATABASE "{name}"')


def _trade_config(cfg: ChaosConfig, dsn: str, *, speed: float, faults: dict[str, Any] | None) -> dict:
    trade: dict[str, Any] = {"bars": cfg.bars, "speed": speed, "records_dsn": dsn, "records_retry_s": 0.5}
    if faults is not None:
        trade["paper_faults"] = faults
    return {"symbols": list(cfg.symbols), "end": cfg.end, "trade": trade}


def _write_config(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=True))
    return path


def _schedule(cfg: ChaosConfig) -> list[tuple[int, str]]:
    import random

    rng = random.Random(cfg.seed)
    lo, hi = max(3, int(cfg.bars * 0.08)), int(cfg.bars * 0.85)
    events = [(rng.randint(lo, hi), "kill_trader") for _ in range(cfg.trader_kills)]
    events += [(rng.randint(lo, hi), "crash_db") for _ in range(cfg.db_restarts)]
    events += [(rng.randint(lo, hi), "crash_redis") for _ in range(cfg.redis_restarts)]
    events += [(rng.randint(lo, hi), "kill_consumer") for _ in range(cfg.consumer_kills)]
    return sorted(events)


def chaos(
    config: ChaosConfig | None = None,
    *,
    work_dir: Path | None = None,
    progress: StageProgress | None = None,
) -> ChaosReport:
    """Run the chaos suite (see the module docstring) and compare the disturbed run with an undisturbed one.

    Parameters
    ----------
    config
        The settings (:class:`ChaosConfig` defaults when ``None``).
    work_dir
        Where the workspaces and logs go (a new temporary directory when ``None``; it must not exist or be
        empty).
    progress
        Progress display.

    Returns
    -------
    ChaosReport
        Counts, checks and events; ``report.ok`` is False on any mismatch.
    """
    from alphaloom.data.sample import load_sample
    from alphaloom.jobs import stages
    from alphaloom.jobs.workspace import Workspace

    cfg = config if config is not None else ChaosConfig()
    progress = progress or NullProgress()
    t0 = time.monotonic()
    if work_dir is None:
        work = Path(tempfile.mkdtemp(prefix="alphaloom-chaos-"))
    else:
        work = Path(work_dir).expanduser().resolve()
        if work.exists() and any(work.iterdir()):
            raise ConfigError(f"the chaos work directory {work} is not empty; pass a new or empty directory.")
        work.mkdir(parents=True, exist_ok=True)
    report = ChaosReport(work_dir=work)
    sample = load_sample(list(cfg.samples))
    missing = sorted(set(cfg.symbols) - set(sample["symbol"]))
    if missing:
        raise ConfigError(
            f"the sample sets {', '.join(cfg.samples)} have no {', '.join(missing)}; choose symbols from "
            f"{', '.join(sorted(sample['symbol'].unique()))}."
        )

    progress.log(f"chaos: workspaces and logs in {work}")
    base = work / "base"
    stages.ingest(Workspace(base), samples=list(cfg.samples), progress=progress)
    calm_ws, chaos_ws, stream_ws = work / "calm", work / "chaos", work / "stream"
    shutil.copytree(base, calm_ws)
    shutil.copytree(base, chaos_ws)
    stream_ws.mkdir()
    env = _env()
    logs = work / "logs"
    logs.mkdir()

    with PrivatePostgres() as pg, PrivateRedis() as redis:
        pg.start()
        redis.start()
        _create_databases(pg.dsn, ["calm", "chaos"])
        base_dsn = pg.dsn.rsplit("/", 1)[0]
        calm_dsn, chaos_dsn = f"{base_dsn}/calm", f"{base_dsn}/chaos"

        # 1. The undisturbed run.
        calm_cfg = _write_config(work / "calm.yaml", _trade_config(cfg, calm_dsn, speed=0.0, faults=None))
        task = progress.task("chaos: undisturbed run", total=None)
        calm = subprocess.run(
            _cli("trade", "--paper", "--config", str(calm_cfg), "--data-dir", str(calm_ws)),
            env=env,
            capture_output=True,
            text=True,
            timeout=max(60.0, cfg.time_limit_s / 2),
        )
        (logs / "calm.log").write_text(calm.stdout + calm.stderr)
        task.update(1, total=1)
        if calm.returncode != 0:
            raise StorageError(f"the undisturbed run failed (exit {calm.returncode}): {calm.stderr[-2000:]}")
        run = json.loads((calm_ws / "trade" / "paper_run.json").read_text())

        # 2. The disturbed run, its bus producer and consumer, and the schedule of faults.
        fault_log = work / "faults.log"
        sink = work / "bus_sink.sqlite"
        trader = _Proc("trader", [], logs / "trader.log", env)
        producer = _Proc(
            "producer",
            _cli(
                "data", "stream", "--venue", "paper", "--symbols", ",".join(cfg.symbols),
                "--speed", str(cfg.bars_per_s * 86_400 * 1.2), "--start", run["start"], "--end", cfg.end,
                "--bus", "redis", "--redis-url", redis.url, "--data-dir", str(stream_ws),
            ),
            logs / "producer.log",
            env,
        )  # fmt: skip
        consumer = _Proc(
            "consumer",
            [
                sys.executable, "-m", "alphaloom.jobs.chaos", "consume", "--redis-url", redis.url,
                "--prefix", f"alphaloom:{stream_ws.name}:", "--group", "chaos", "--consumer", "consumer-1",
                "--sink", str(sink), "--claim-idle-ms", "500",
            ],
            logs / "consumer.log",
            env,
        )  # fmt: skip

        def start_trader(step: int) -> None:
            faults = {
                "fail_share": cfg.fail_share,
                "timeout_share": cfg.timeout_share,
                "hang_s": 0.05,
                "lost_reply_share": cfg.lost_reply_share,
                "max_in_a_row": cfg.max_faults_in_a_row,
                "seed": cfg.seed * 1000 + trader.starts,  # new dice for every process
                "log": str(fault_log),
            }
            path = _write_config(
                work / f"chaos-{trader.starts + 1}.yaml",
                _trade_config(cfg, chaos_dsn, speed=cfg.bars_per_s * 86_400, faults=faults),
            )
            trader.cmd = _cli("trade", "--paper", "--config", str(path), "--data-dir", str(chaos_ws))
            trader.start(step)

        schedule = _schedule(cfg)
        task = progress.task("chaos: disturbed run", total=cfg.bars)
        consumer.start()
        producer.start()
        start_trader(0)
        db_up_at: float | None = None
        redis_up_at: float | None = None
        step = 0
        deadline = t0 + cfg.time_limit_s
        try:
            while True:
                now = time.monotonic()
                if now > deadline:
                    raise StorageError(
                        f"the chaos suite passed its time limit of {cfg.time_limit_s:g} s at step {step}; "
                        f"see the logs in {logs}."
                    )
                seen = _steps(chaos_ws)
                if seen > step:
                    task.advance(seen - step)
                    step = seen
                if db_up_at is not None and now >= db_up_at:
                    pg.start()
                    db_up_at = None
                    report.events.append(f"step {step}: PostgreSQL back")
                if redis_up_at is not None and now >= redis_up_at:
                    redis.start()
                    redis_up_at = None
                    report.events.append(f"step {step}: Redis back")
                # Due events, once the trading process made progress since it (re)started: a fault while
                # it is still starting tells less, and a kill there could repeat for ever.
                while schedule and schedule[0][0] <= step and trader.alive and step > trader.born_at_step:
                    _, what = schedule.pop(0)
                    if what == "kill_trader":
                        trader.kill()
                    elif what == "crash_db" and db_up_at is None:
                        pg.stop()
                        db_up_at = time.monotonic() + cfg.db_down_s
                    elif what == "crash_redis" and redis_up_at is None:
                        redis.kill()
                        redis_up_at = time.monotonic() + cfg.redis_down_s
                    elif what == "kill_consumer":
                        consumer.kill()
                    else:
                        continue  # an outage of that server is already on
                    report.events.append(f"step {step}: {what.replace('_', ' ')}")
                    progress.log(f"chaos: step {step}: {what.replace('_', ' ')}")
                # Restarts: the killed ones at once, the ones that died by themselves too (counted).
                if not trader.alive:
                    code = trader.exited()
                    if code == 0 and _finished(chaos_ws):
                        break
                    if code is not None:
                        trader.unexpected += 1
                        report.events.append(f"step {step}: trader exited by itself with {code}")
                        if trader.unexpected > 5:
                            raise StorageError(f"the trading process keeps failing: {trader.tail()}")
                    start_trader(step)
                if not consumer.alive:
                    if consumer.exited() is not None:
                        consumer.unexpected += 1
                    consumer.start(step)
                if not producer.alive and producer.exited() != 0 and redis_up_at is None:
                    producer.unexpected += 1  # its publish failed while Redis was down: restart it
                    producer.start(step)
                time.sleep(0.05)
            task.update(cfg.bars, total=cfg.bars)

            # 3. Bring everything back and let the bus drain.
            if db_up_at is not None:
                pg.start()
                report.events.append("end: PostgreSQL back")
            if redis_up_at is not None:
                redis.start()
                report.events.append("end: Redis back")
            expected_bus = _expected_bus_ids(sample, cfg, run["start"])
            drain_deadline = time.monotonic() + 120
            while time.monotonic() < min(drain_deadline, deadline):
                if not producer.alive and producer.exited() not in (None, 0):
                    producer.unexpected += 1
                    producer.start(step)
                if not consumer.alive:
                    consumer.start(step)
                if not producer.alive and producer.exited() == 0 and _sink_count(sink) >= len(expected_bus):
                    break
                time.sleep(0.1)
        finally:
            for proc in (trader, producer, consumer):
                proc.stop()

        # 4. A journal left behind (the last process ended while PostgreSQL was down) is replayed now,
        #    as the next trading process would.
        _compare(report, cfg, calm_ws, chaos_ws, calm_dsn, chaos_dsn, sink, expected_bus)
        faults = _fault_counts(fault_log)
        report.counts = {
            **{
                "venue faults injected": sum(faults.values()),
                **{f"  {kind}": n for kind, n in sorted(faults.items())},
                "trader SIGKILLs / restarts": trader.kills,
                "trader exits by itself": trader.unexpected,
                "PostgreSQL crashes / restarts": pg.starts - 1,
                "Redis SIGKILLs / restarts": redis.starts - 1,
                "consumer SIGKILLs": consumer.kills,
                "producer restarts": producer.starts - 1,
            },
            **report.counts,
        }
        report.checks.append(
            ChaosCheck(
                "no process died by itself",
                trader.unexpected == 0,
                f"trader {trader.unexpected}, consumer {consumer.unexpected}; the producer's "
                f"{producer.unexpected} exit(s) while Redis was down are expected",
            )
        )
    report.seconds = time.monotonic() - t0
    if report.ok and work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return report


def chaos_table(report: ChaosReport) -> Table:
    """The counts and checks of a chaos run as a rich table."""
    verdict = "[green]passed[/]" if report.ok else "[red]FAILED[/]"
    table = Table(title=f"Chaos suite {verdict} in {report.seconds:.0f} s")
    table.add_column("what")
    table.add_column("count / result", justify="right")
    for key, value in report.counts.items():
        table.add_row(key, str(value))
    table.add_section()
    for c in report.checks:
        table.add_row(
            f"{'[green]ok[/]' if c.ok else '[red]MISMATCH[/]'} {c.name}",
            c.detail if not c.ok else "",
            end_section=False,
        )
    return table


def _finished(ws: Path) -> bool:
    try:
        return bool(json.loads((ws / "manifest.json").read_text())["trade"]["finished"])
    except (OSError, KeyError, json.JSONDecodeError):
        return False


def _sink_count(sink: Path) -> int:
    if not sink.exists():
        return 0
    try:
        store = BusSink(sink)
    except sqlite3.Error:
        return 0
    try:
        return store.count()
    finally:
        store.close()


def _expected_bus_ids(sample: Any, cfg: ChaosConfig, start: str) -> set[str]:
    import pandas as pd

    lo, hi = pd.Timestamp(start), pd.Timestamp(cfg.end, tz="UTC")
    rows = sample[sample["symbol"].isin(cfg.symbols) & (sample["ts"] >= lo) & (sample["ts"] < hi)]
    return {
        f"{s}|1d|{t.to_pydatetime().isoformat()}" for s, t in zip(rows["symbol"], rows["ts"], strict=True)
    }


def _fault_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            kind = line.split(" ", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _compare(
    report: ChaosReport,
    cfg: ChaosConfig,
    calm_ws: Path,
    chaos_ws: Path,
    calm_dsn: str,
    chaos_dsn: str,
    sink: Path,
    expected_bus: set[str],
) -> None:
    from alphaloom.data.storage.journal import JournaledRelationalStore
    from alphaloom.data.storage.relational import PostgresRelationalStore

    check = report.checks.append
    calm_sum = json.loads((calm_ws / "manifest.json").read_text())["trade"]
    chaos_sum = json.loads((chaos_ws / "manifest.json").read_text())["trade"]
    check(
        ChaosCheck(
            "both runs finished, same run",
            bool(
                calm_sum["finished"] and chaos_sum["finished"] and calm_sum["run_id"] == chaos_sum["run_id"]
            ),
            f"run {chaos_sum['run_id']}",
        )
    )
    same_book = (
        chaos_sum["positions"] == calm_sum["positions"]
        and abs((chaos_sum["cash"] or 0.0) - (calm_sum["cash"] or 0.0)) <= 0.01
    )
    check(
        ChaosCheck(
            "same positions and cash",
            same_book,
            f"{chaos_sum['positions']} cash {chaos_sum['cash']} vs "
            f"{calm_sum['positions']} cash {calm_sum['cash']}",
        )
    )

    with PostgresRelationalStore(calm_dsn, migrate=False) as calm_db:
        calm_fills, calm_audit = calm_db.fills(), calm_db.audit_log()
        calm_problems = calm_db.verify_audit_chain()
    journal = chaos_ws / "trade" / "records.journal"
    with JournaledRelationalStore(lambda: PostgresRelationalStore(chaos_dsn), journal) as chaos_db:
        chaos_db.replay()
        health = chaos_db.health()
        orders, fills, audit = chaos_db.orders(), chaos_db.fills(), chaos_db.audit_log()
        problems = chaos_db.verify_audit_chain()

    # Fills: the same trades, each recorded once.
    def fill_key(f: Any) -> tuple[Any, ...]:
        return (f.symbol, f.side.value, f.quantity, round(f.price, 9), f.fee and round(f.fee, 9), f.ts)

    fill_diff = Counter(map(fill_key, fills))
    fill_diff.subtract(Counter(map(fill_key, calm_fills)))
    dup_fill_ids = len(fills) - len({f.fill_id for f in fills})
    check(
        ChaosCheck(
            "same fills",
            not any(fill_diff.values()) and dup_fill_ids == 0,
            f"{len(fills)} vs {len(calm_fills)}; {sum(abs(v) for v in fill_diff.values())} differ, "
            f"{dup_fill_ids} duplicate fill id(s)",
        )
    )

    # Orders at the venue: every client order id once, and the same orders as the undisturbed run.
    chaos_venue = [p["order"] for k, p in _venue_entries(_paper_journal(chaos_ws)) if k == "submit"]
    calm_venue = [p["order"] for k, p in _venue_entries(_paper_journal(calm_ws)) if k == "submit"]
    dup_cids = len(chaos_venue) - len({o["client_order_id"] for o in chaos_venue})

    def order_key(o: dict[str, Any]) -> tuple[Any, ...]:
        return (o["symbol"], o["side"], o["quantity"], o["order_type"], o["ts"])

    order_diff = Counter(map(order_key, chaos_venue))
    order_diff.subtract(Counter(map(order_key, calm_venue)))
    extra_orders = sum(v for v in order_diff.values() if v > 0)
    missing_orders = -sum(v for v in order_diff.values() if v < 0)
    check(
        ChaosCheck(
            "no duplicate orders",
            dup_cids == 0 and extra_orders == 0,
            f"{dup_cids} client id(s) sent twice, {extra_orders} order(s) the undisturbed run did not send",
        )
    )
    lost = {o.client_order_id for o in orders if o.message.startswith("lost")}
    at_venue = {o["client_order_id"] for o in chaos_venue}
    never_sent = {o.client_order_id for o in orders} - lost - at_venue
    check(
        ChaosCheck(
            "no lost orders",
            missing_orders == 0 and not never_sent,
            f"{missing_orders} order(s) of the undisturbed run missing at the venue, {len(never_sent)} "
            f"recorded order(s) neither sent nor settled as lost ({len(lost)} settled as lost, re-decided)",
        )
    )

    # Bars: every bar decided on, every bar delivered through the bus.
    def bar_keys(records: Sequence[Any]) -> set[tuple[str, str]]:
        return {(r.payload["symbol"], r.payload["bar_ts"]) for r in records if r.action == "execution.signal"}

    lost_bars = bar_keys(calm_audit) - bar_keys(audit)
    check(
        ChaosCheck(
            "no lost bars (trading)",
            not lost_bars and chaos_sum["bars_processed"] == calm_sum["bars_processed"],
            f"{chaos_sum['bars_processed']} vs {calm_sum['bars_processed']} bars processed; "
            f"{len(lost_bars)} (symbol, bar) never decided",
        )
    )
    bus = BusSink(sink) if sink.exists() else None
    try:
        got = bus.event_ids() if bus is not None else set()
        redelivered = bus.redeliveries() if bus is not None else 0
        after_ack = bus.redelivered_after_ack() if bus is not None else 0
    finally:
        if bus is not None:
            bus.close()
    bus_lost = expected_bus - got
    check(
        ChaosCheck(
            "no lost bars (bus)",
            not bus_lost and not (got - expected_bus) and after_ack == 0,
            f"{len(got)} of {len(expected_bus)} bars delivered; {redelivered} redelivery(ies) of "
            f"unacknowledged messages, {after_ack} after an acknowledgement",
        )
    )

    # The audit trail: same business content, an intact chain, nothing left in the journal.
    content, calm_content = audit_content(audit), audit_content(calm_audit)
    differing = {
        a: len(content[a] ^ calm_content[a]) for a in BUSINESS_ACTIONS if content[a] != calm_content[a]
    }
    check(
        ChaosCheck(
            "same audit trail content",
            not differing,
            ", ".join(f"{a}: {n} differ" for a, n in differing.items())
            or f"{sum(map(len, content.values()))} business records match",
        )
    )
    check(
        ChaosCheck(
            "audit chains verify",
            not problems and not calm_problems,
            "; ".join(str(p) for p in (problems + calm_problems)[:3])
            or f"{len(audit)} + {len(calm_audit)} records",
        )
    )
    check(
        ChaosCheck(
            "journal replayed in full",
            health.pending == 0 and health.rejected == 0,
            f"{health.journaled_total} write(s) journaled while PostgreSQL was down, {health.replayed_total} "
            f"replayed, {health.pending} pending, {health.rejected} refused",
        )
    )
    restart_actions = Counter(r.action for r in audit if r.action not in BUSINESS_ACTIONS)
    report.counts.update(
        {
            "writes journaled (PostgreSQL down)": health.journaled_total,
            "writes replayed": health.replayed_total,
            "orders at the venue (undisturbed / disturbed)": f"{len(calm_venue)} / {len(chaos_venue)}",
            "fills": len(fills),
            "duplicate orders": dup_cids + extra_orders,
            "duplicate fills": dup_fill_ids,
            "lost orders": missing_orders + len(never_sent),
            "lost bars (trading / bus)": f"{len(lost_bars)} / {len(bus_lost)}",
            "bus redeliveries": redelivered,
            "audit records (undisturbed / disturbed)": f"{len(calm_audit)} / {len(audit)}",
            "restarts audited (execution.start)": restart_actions.get("execution.start", 0),
        }
    )


# ---------------------------------------------------------------------------------------------- bus consumer


class BusSink:
    """Where the chaos suite's bus consumer puts what it receives: a SQLite file.

    ``events`` holds each event once (keyed on its ``id``, as a consumer de-duplicating an at-least-once bus
    must); ``deliveries`` logs every delivery with the message id and its delivery count, so a test can tell
    a redelivery of an unacknowledged message from a message delivered again after its acknowledgement.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")  # survives a killed process
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS events "
            "(id TEXT PRIMARY KEY, msg_id TEXT NOT NULL, event TEXT NOT NULL)"
        )
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS deliveries (seq INTEGER PRIMARY KEY, msg_id TEXT NOT NULL, "
            "event_id TEXT NOT NULL, deliveries INTEGER NOT NULL, at TEXT NOT NULL, acked INTEGER NOT NULL)"
        )

    def store(self, msg_id: str, event: dict[str, Any], deliveries: int) -> int:
        """Record a delivery (and the event, once); returns the delivery's row for :meth:`acked`."""
        event_id = str(event.get("id") or msg_id)
        with self._con:
            cur = self._con.execute(
                "INSERT INTO deliveries (msg_id, event_id, deliveries, at, acked) VALUES (?, ?, ?, ?, 0)",
                (msg_id, event_id, deliveries, datetime.now(UTC).isoformat()),
            )
            self._con.execute(
                "INSERT OR IGNORE INTO events (id, msg_id, event) VALUES (?, ?, ?)",
                (event_id, msg_id, json.dumps(event, sort_keys=True)),
            )
        return int(cur.lastrowid or 0)

    def acked(self, delivery: int) -> None:
        """Note that the delivery's acknowledgement reached Redis."""
        with self._con:
            self._con.execute("UPDATE deliveries SET acked = 1 WHERE seq = ?", (delivery,))

    def redelivered_after_ack(self) -> int:
        """Deliveries of a message whose earlier delivery had been acknowledged (must be 0)."""
        row = self._con.execute(
            "SELECT count(*) FROM deliveries AS d WHERE EXISTS (SELECT 1 FROM deliveries AS e "
            "WHERE e.msg_id = d.msg_id AND e.seq < d.seq AND e.acked = 1)"
        ).fetchone()
        return int(row[0])

    def event_ids(self) -> set[str]:
        return {str(r[0]) for r in self._con.execute("SELECT id FROM events")}

    def count(self) -> int:
        return int(self._con.execute("SELECT count(*) FROM events").fetchone()[0])

    def redeliveries(self) -> int:
        """Deliveries beyond the first of each message."""
        row = self._con.execute("SELECT count(*) - count(DISTINCT msg_id) FROM deliveries").fetchone()
        return int(row[0])

    def close(self) -> None:
        self._con.close()


async def consume(
    redis_url: str,
    *,
    prefix: str,
    topic: str,
    group: str,
    consumer: str,
    sink: str | Path,
    claim_idle_ms: int = 500,
    reconnect_s: float = 120.0,
    max_events: int | None = None,
) -> int:
    """Consume ``topic`` in ``group`` into a :class:`BusSink`, acknowledging each message once it is stored.

    Store first, acknowledge second: a consumer killed in between gets the message again (the sink keeps it
    once), and one killed before storing loses nothing. A Redis restart is ridden through
    (``reconnect_s``); an acknowledgement that fails because Redis went away is left to redelivery.

    Returns
    -------
    int
        Messages handled (when ``max_events`` distinct events are stored, or the subscription fails).
    """
    from alphaloom.data.bus import BusConfig, RedisStreamsBus

    config = BusConfig(claim_idle_ms=claim_idle_ms, block_ms=200, batch_size=20)
    store = BusSink(sink)
    handled = 0
    bus = RedisStreamsBus(redis_url, prefix=prefix, config=config)
    try:
        async for msg in bus.subscribe(topic, group, consumer, reconnect_s=reconnect_s):
            delivery = store.store(msg.id, msg.event, msg.deliveries)
            handled += 1
            try:
                if await bus.ack(msg):
                    store.acked(delivery)
            except BusError:
                pass  # Redis went away: the message stays pending and comes again; the sink keeps it once
            if max_events is not None and store.count() >= max_events:
                break
    finally:
        store.close()
        with contextlib.suppress(BusError):
            await bus.aclose()
    return handled


def main(argv: Sequence[str] | None = None) -> int:
    """Worker processes of the chaos suite (``python -m alphaloom.jobs.chaos consume ...``)."""
    parser = argparse.ArgumentParser(prog="python -m alphaloom.jobs.chaos")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("consume", help="consume a Redis Streams topic into a SQLite sink")
    c.add_argument("--redis-url", required=True)
    c.add_argument("--prefix", required=True)
    c.add_argument("--topic", default="bars")
    c.add_argument("--group", default="chaos")
    c.add_argument("--consumer", default="consumer-1")
    c.add_argument("--sink", required=True, type=Path)
    c.add_argument("--claim-idle-ms", type=int, default=500)
    c.add_argument("--max-events", type=int, default=None)
    args = parser.parse_args(argv)
    asyncio.run(
        consume(
            args.redis_url,
            prefix=args.prefix,
            topic=args.topic,
            group=args.group,
            consumer=args.consumer,
            sink=args.sink,
            claim_idle_ms=args.claim_idle_ms,
            max_events=args.max_events,
        )
    )
    return 0


if __name__ == "__main__":  # pragma: no cover - a worker process
    sys.exit(main())
