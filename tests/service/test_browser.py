"""The dashboard in a real browser: headless Debian chromium driven by Playwright against the real service.

One demo workspace (``RunConfig.quick()``) is built per module and served by ``create_app`` under uvicorn on a
free loopback port, with the paper-trading session replaying stored bars. Each test signs in through the login
form with an API key made by the service's own :class:`~alphaloom.service.auth.KeyStore`, works a page the way
a person would (by role and label), and checks what it shows against the API's own answer. A full-page
screenshot of every page is written to ``test-artifacts/screenshots/`` and recorded as a test property.

Chromium comes from Debian (``make browser`` installs it; ``make test`` and ``.ci/run`` call that first); no
browser is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.demo import run_demo
from alphaloom.jobs.workspace import Workspace
from alphaloom.service.app import create_app, keys_path
from alphaloom.service.auth import KeyStore
from alphaloom.service.settings import ServiceSettings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = Path(os.environ.get("ALPHALOOM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous waits for a shared 2-core machine; a wait that runs out fails the test with what was missing.
WAIT_MS = 60_000
BACKTEST_WAIT_MS = 300_000


# ---------------------------------------------------------------- the service


class _LiveServer:
    """uvicorn serving ``app`` on an already-bound loopback socket, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> _LiveServer:
        self._thread.start()
        started = threading.Event()

        def _watch() -> None:
            while self._thread.is_alive() and not self._server.started:
                started.wait(0.05)
            started.set()

        threading.Thread(target=_watch, daemon=True).start()
        started.wait(120)
        if not self._server.started:
            raise RuntimeError(
                f"the service did not start on {self.url} (thread alive: {self._thread.is_alive()})"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.resolve(tmp_path_factory.mktemp("dashboard"))
    run_demo(ws, RunConfig.quick(seed=5))
    return ws


@pytest.fixture(scope="module")
def admin_key(workspace: Workspace) -> str:
    key, info = KeyStore(keys_path(workspace)).create("dashboard-admin", "admin")
    assert info.role == "admin"
    return key


@pytest.fixture(scope="module")
def server(workspace: Workspace, admin_key: str) -> Iterator[_LiveServer]:
    settings = ServiceSettings(data_dir=workspace.root, replay_interval_s=0.25, log_json=False)
    with _LiveServer(create_app(settings)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: _LiveServer, admin_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": admin_key}, timeout=60) as c:
        yield c


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        found = shutil.which("chromium")
        raise RuntimeError(
            f"the browser tests need Debian's chromium at {CHROMIUM} (found on PATH: {found}); "
            "run `make browser` (apt-get install chromium) or set ALPHALOOM_CHROMIUM to its path."
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, server: _LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"the dashboard raised JavaScript errors: {errors}"


def sign_in(page: Page, key: str) -> None:
    page.goto("/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Pages")).to_be_visible()


def go(page: Page, route: str) -> None:
    page.goto(f"/#/{route}")
    expect(page.locator("#view")).to_have_attribute("data-page", route)
    expect(page.locator("#view")).to_have_attribute("aria-busy", "false")


def shot(page: Page, name: str, record_property: Any, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artefact, after checking the page shows no unrendered values."""
    text = page.locator("body").inner_text()
    bad = [line for line in text.splitlines() if line.strip() in ("null", "undefined", "[object Object]")]
    assert not bad, f"the {name} page shows raw JavaScript values: {bad}"
    assert not re.search(r"\bNaN\b", text), f"the {name} page shows NaN"
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 5_000, f"screenshot {path} is suspiciously small"
    record_property(f"screenshot_{name}", str(path))
    print(f"screenshot: {path}")
    return path


def wait_api(client: httpx.Client, path: str, ok: Any, what: str, tries: int = 240) -> Any:
    """GET ``path`` until ``ok(body)``; the paper session fills the books while it replays bars."""
    body = None
    for _ in range(tries):
        resp = client.get(path)
        resp.raise_for_status()
        body = resp.json()
        if ok(body):
            return body
        threading.Event().wait(0.25)
    raise AssertionError(f"{what}: GET {path} never satisfied the check; last answer {body!r}")


def traded_symbol(client: httpx.Client) -> str:
    """A symbol the paper session trades (it has a last price, so the risk manager can check an order)."""
    signals = wait_api(client, "/api/v1/signals", lambda b: len(b) > 0, "signals")
    return sorted(s["symbol"] for s in signals)[0]


# ---------------------------------------------------------------- tests


def test_login_refuses_a_bad_key_and_keeps_only_the_token(
    page: Page, admin_key: str, record_property
) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill("alk_000000000000_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_contain_text("refused")
    expect(page.get_by_role("navigation", name="Pages")).to_be_hidden()
    shot(page, "login", record_property)

    sign_in(page, admin_key)
    expect(page.locator("#whoami")).to_have_text("dashboard-admin (admin)")
    stored = page.evaluate("() => JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage})")
    assert admin_key not in stored, "the API key must never be stored by the browser"
    kept = json.loads(page.evaluate("() => sessionStorage.getItem('alphaloom.token')"))
    assert set(kept) == {"token", "expires_at", "role"}
    assert kept["token"].startswith("alt.")
    assert kept["role"] == "admin"

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_overview_draws_the_equity_curve(
    page: Page, client: httpx.Client, admin_key: str, record_property
) -> None:
    pf = wait_api(client, "/api/v1/portfolio", lambda b: len(b["equity"]) >= 5, "equity curve")
    sign_in(page, admin_key)
    go(page, "overview")
    chart = page.locator("#equity-chart")
    expect(chart.locator("canvas")).to_be_visible()
    points = int(chart.get_attribute("data-points") or 0)
    assert points >= len(pf["equity"]), (points, len(pf["equity"]))
    # The canvas really has a line on it: count the non-blank pixels.
    inked = chart.locator("canvas").evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""
    )
    assert inked > 500, f"the equity canvas is blank ({inked} inked pixels)"
    cards = page.get_by_role("group", name="Portfolio summary")
    for label in ("Total value", "Cash", "PnL", "Gross exposure", "Net exposure", "Risk state"):
        expect(cards).to_contain_text(label)
    expect(page.locator("[data-field=risk_state] .badge")).to_have_text(pf["risk_state"].upper())
    shot(page, "overview", record_property)


def test_signals_lists_each_symbol_with_confidence_and_votes(
    page: Page, client: httpx.Client, admin_key: str, record_property
) -> None:
    signals = wait_api(client, "/api/v1/signals", lambda b: len(b) > 0, "signals")
    sign_in(page, admin_key)
    go(page, "signals")
    table = page.get_by_role("table", name="Latest signals")
    rows = table.locator("tbody tr[data-symbol]")
    expect(rows).to_have_count(len(signals))
    for sig in signals:
        row = table.locator(f'tr[data-symbol="{sig["symbol"]}"]')
        expect(row).to_contain_text(sig["action"])
        meter = row.get_by_role("meter")
        assert abs(float(meter.get_attribute("aria-valuenow")) - sig["confidence"]) < 1e-3
        if sig.get("votes"):
            row.get_by_text(f"{len(sig['votes'])} votes").click()
            for vote in sig["votes"]:
                expect(row.locator(".votes")).to_contain_text(vote["agent"])
    shot(page, "signals", record_property)


def test_positions_and_orders_update_live_after_an_api_order(
    page: Page, client: httpx.Client, admin_key: str, record_property
) -> None:
    symbol = traded_symbol(client)
    sign_in(page, admin_key)
    go(page, "positions")
    expect(page.locator("#live-status")).to_contain_text("Live")
    page.evaluate("() => { window.__sameDocument = true; }")

    resp = client.post(
        "/api/v1/orders", json={"symbol": symbol, "side": "buy", "quantity": 1, "order_type": "market"}
    )
    assert resp.status_code == 201, resp.text
    order = resp.json()
    row = page.locator(f'#orders-table tr[data-order-id="{order["client_order_id"]}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text(symbol)
    expect(page.locator("#live-status")).to_have_attribute("data-updates", re.compile(r"^[1-9][0-9]*$"))
    positions = client.get("/api/v1/positions").json()
    held = {p["symbol"] for p in positions}
    expect(page.locator("#positions-table tbody tr[data-symbol]")).to_have_count(len(held))
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded instead of updating live"
    shot(page, "positions", record_property)


def test_backtest_runs_and_shows_its_report(
    page: Page, client: httpx.Client, admin_key: str, record_property
) -> None:
    sign_in(page, admin_key)
    go(page, "backtests")
    page.get_by_role("button", name="Run backtest").click()
    status = page.locator("#backtest-status")
    expect(status).to_have_attribute("data-status", "done", timeout=BACKTEST_WAIT_MS)
    frame = page.locator("#backtest-report")
    expect(frame).to_be_visible()
    report = page.frame_locator("#backtest-report")
    expect(report.locator("body")).not_to_be_empty()
    expect(report.locator(".plotly-graph-div").first).to_be_visible(timeout=WAIT_MS)
    job = client.get(f"/api/v1/backtests/{frame.get_attribute('data-job-id')}").json()
    assert job["status"] == "done"
    expect(page.locator("#backtest-stats tbody tr")).to_have_count(len(job["stats"]))
    expect(page.locator(f'#backtest-jobs tr[data-job-id="{job["id"]}"][data-status=done]')).to_be_visible()
    shot(page, "backtests", record_property)
    frame.scroll_into_view_if_needed()
    shot(page, "backtests-report", record_property, full_page=False)


def test_models_page_shows_the_registry(
    page: Page, client: httpx.Client, admin_key: str, record_property
) -> None:
    models = client.get("/api/v1/models").json()
    sign_in(page, admin_key)
    go(page, "models")
    rows = page.locator("#models-table tbody tr[data-model]")
    expect(rows).to_have_count(len(models))
    if models:
        name = models[0]["name"]
        page.get_by_role("button", name=name, exact=True).first.click()
        expect(page.get_by_role("heading", name=f"Versions of {name}")).to_be_visible()
    expect(page.get_by_role("heading", name="A/B test")).to_be_visible()
    shot(page, "models", record_property)


def test_kill_switch_halts_trading_and_refuses_new_risk(
    page: Page, client: httpx.Client, admin_key: str, record_property
) -> None:
    sign_in(page, admin_key)
    go(page, "risk")
    expect(page.locator("#risk-state")).to_have_attribute("data-state", "normal")
    shot(page, "risk", record_property)

    page.get_by_role("button", name="Kill switch").click()
    dialog = page.get_by_role("dialog", name="Halt trading?")
    expect(dialog).to_be_visible()
    # Cancelling leaves trading on.
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert client.get("/api/v1/risk").json()["state"] == "normal"

    page.get_by_role("button", name="Kill switch").click()
    dialog.get_by_label("Reason").fill("browser test: halt everything")
    shot(page, "risk-kill-dialog", record_property)
    dialog.get_by_role("button", name="Halt trading").click()
    expect(page.locator("#risk-state")).to_have_attribute("data-state", "halted")
    expect(page.locator("#risk-badge")).to_have_text("HALTED")
    expect(page.locator("#halt-reasons")).to_contain_text("browser test: halt everything")
    risk = client.get("/api/v1/risk").json()
    assert risk["state"] == "halted"
    page.get_by_role("button", name="Verify audit log").click()
    expect(page.locator("#audit-result")).to_contain_text("Audit chain intact")
    shot(page, "risk-halted", record_property)

    # A risk-increasing order from the order ticket is refused while halted.
    positions = {p["symbol"]: p["quantity"] for p in client.get("/api/v1/positions").json()}
    symbol = traded_symbol(client)
    side = "sell" if positions.get(symbol, 0.0) < 0 else "buy"
    go(page, "positions")
    page.get_by_label("Symbol").fill(symbol)
    page.get_by_label("Side").select_option(side)
    page.get_by_label("Quantity").fill("1")
    page.get_by_role("button", name="Submit order").click()
    refusal = page.locator(".result [role=alert]")
    expect(refusal).to_contain_text("Order refused")
    rejected = client.get("/api/v1/orders", params={"status": "rejected"}).json()
    assert any(o["symbol"] == symbol and o["side"] == side for o in rejected), rejected
    expect(page.locator("#orders-table tr[data-status=rejected]")).to_have_count(len(rejected))
    shot(page, "positions-refused", record_property)

    # Resuming (confirmed, with a reason) lifts the halt.
    go(page, "risk")
    page.get_by_role("button", name="Resume trading").click()
    resume = page.get_by_role("dialog", name="Resume trading?")
    resume.get_by_label("Reason").fill("browser test: all clear")
    resume.get_by_role("button", name="Resume").click()
    expect(page.locator("#risk-state")).to_have_attribute("data-state", "normal")
    assert client.get("/api/v1/risk").json()["state"] == "normal"
