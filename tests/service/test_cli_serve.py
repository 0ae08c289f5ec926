"""``alphaloom demo`` ends by saying how to open the dashboard, and those commands work as printed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alphaloom.cli.main import app
from alphaloom.jobs.demo import DemoResult
from alphaloom.jobs.workspace import Workspace
from alphaloom.service import KeyStore, keys_path
from alphaloom.service.cli import dashboard_hint, settings_for


def _plain(text: str) -> str:
    return re.sub(r"\[/?[a-z ]+\]", "", text)


def test_dashboard_hint_commands_create_a_working_key_and_serve_the_workspace(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "my results")  # a space: the printed paths must be quoted
    hint = _plain(dashboard_hint(ws))
    commands = [ln.split(". ", 1)[1] for ln in hint.splitlines() if re.match(r"\s+[12]\. alphaloom", ln)]
    create, serve = (shlex.split(c) for c in commands)
    assert create[:3] == ["alphaloom", "serve", "keys"]
    assert create[create.index("--data-dir") + 1] == str(ws.root)
    assert serve[serve.index("--data-dir") + 1] == str(ws.root)
    assert "http://127.0.0.1:8000/" in hint

    result = CliRunner().invoke(app, create[1:], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    principal = KeyStore(keys_path(ws)).verify(key)
    assert principal is not None
    assert (principal.name, principal.role.value) == ("dashboard", "admin")
    # the serve command's options resolve to this workspace on the printed URL
    settings = settings_for(
        data_dir=Path(serve[serve.index("--data-dir") + 1]), host="127.0.0.1", port=8000, trade_paper=True
    )
    assert settings.data_dir == ws.root


def test_demo_command_ends_with_the_dashboard_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    import alphaloom.jobs.demo as demo

    def fake_run_demo(ws, config, progress=None) -> DemoResult:
        return DemoResult(
            summary=pd.DataFrame(),
            report_path=ws.reports_dir / "report.html",
            wall_s=0.0,
            stage_s={},
            validation_issues=0,
            quarantined=0,
        )

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    monkeypatch.setattr(demo, "print_summary", lambda result, console=None: None)
    result = CliRunner().invoke(app, ["demo", "--quick", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    tail = result.output.strip().splitlines()[-5:]
    assert tail[0] == "Open the dashboard on these results:"
    assert f"alphaloom serve --data-dir {tmp_path}" in "\n".join(tail)
    assert tail[-1].strip() == "3. open http://127.0.0.1:8000/ and sign in with the key"


def test_serve_help_lists_tls_and_data_dir_options() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--data-dir", "--tls-cert", "--tls-key", "--config", "--no-trade-paper"):
        assert option in result.output


def test_config_file_values_hold_unless_an_option_is_given(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "service.toml"
    cfg.write_text('[service]\nhost = "0.0.0.0"\nport = 9100\ntrade_paper = false\nreplay_interval_s = 0.5\n')
    monkeypatch.delenv("ALPHALOOM_DATA_DIR", raising=False)
    s = settings_for(data_dir=tmp_path / "ws", config_file=cfg)
    assert (s.host, s.port, s.trade_paper, s.replay_interval_s) == ("0.0.0.0", 9100, False, 0.5)
    s = settings_for(data_dir=tmp_path / "ws", config_file=cfg, host="127.0.0.1", port=0, trade_paper=True)
    assert (s.host, s.port, s.trade_paper, s.replay_interval_s) == ("127.0.0.1", 0, True, 0.5)
    s = settings_for(data_dir=tmp_path / "ws")  # no file: the defaults
    assert (s.host, s.port, s.trade_paper) == ("127.0.0.1", 8000, True)


def test_serve_command_passes_only_the_options_given(tmp_path: Path, monkeypatch) -> None:
    import alphaloom.service.cli as service_cli

    seen: list[dict] = []
    monkeypatch.setattr(service_cli, "run_server", lambda **kw: seen.append(kw))
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path), "--no-trade-paper"])
    assert result.exit_code == 0, result.output
    assert (seen[0]["host"], seen[0]["port"], seen[0]["trade_paper"]) == (None, None, False)
