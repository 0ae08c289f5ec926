"""What ``alphaloom serve`` does: run uvicorn on :func:`~alphaloom.service.create_app`, manage API keys."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from alphaloom.core.config import load_config
from alphaloom.jobs.workspace import Workspace
from alphaloom.service.app import create_app, keys_path
from alphaloom.service.auth import ApiKeyInfo, KeyStore
from alphaloom.service.settings import ServiceSettings

__all__ = ["create_key", "keys_table", "revoke_key", "run_server", "settings_for"]


def settings_for(
    *, data_dir: Path | None, host: str, port: int, trade_paper: bool, config_file: Path | None = None
) -> ServiceSettings:
    """The settings from ``config_file``'s ``[service]`` table, with the command-line options on top."""
    base = load_config(ServiceSettings, config_file, "service") if config_file else ServiceSettings()
    ws = Workspace.resolve(data_dir or base.data_dir)
    return base.replace(data_dir=ws.root, host=host, port=port, trade_paper=trade_paper)


def run_server(
    *, data_dir: Path | None, host: str, port: int, trade_paper: bool, config_file: Path | None = None
) -> None:
    """Serve until interrupted (HTTPS when the settings name a certificate and key)."""
    import uvicorn

    settings = settings_for(
        data_dir=data_dir, host=host, port=port, trade_paper=trade_paper, config_file=config_file
    )
    app = create_app(settings)
    ssl = {}
    if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
        ssl = {"ssl_certfile": str(settings.ssl_certfile), "ssl_keyfile": str(settings.ssl_keyfile)}
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our JSON logging (create_app configured it)
        access_log=False,  # the request middleware writes the access log
        server_header=False,
        **ssl,
    )


def create_key(ws: Workspace, name: str, role: str) -> tuple[str, ApiKeyInfo]:
    ws.ensure()
    return KeyStore(keys_path(ws)).create(name, role)


def revoke_key(ws: Workspace, name_or_id: str) -> ApiKeyInfo:
    return KeyStore(keys_path(ws)).revoke(name_or_id)


def keys_table(ws: Workspace) -> Table:
    table = Table(title=f"API keys in {keys_path(ws)}")
    for col in ("name", "role", "id", "created", "revoked"):
        table.add_column(col)
    for k in KeyStore(keys_path(ws)).list():
        table.add_row(
            k.name,
            k.role.value,
            k.key_id,
            k.created_at.isoformat(timespec="seconds"),
            "" if k.revoked_at is None else k.revoked_at.isoformat(timespec="seconds"),
        )
    return table
