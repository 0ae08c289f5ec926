"""What ``alphaloom serve`` does: run uvicorn on :func:`~alphaloom.service.create_app`, manage API keys."""

from __future__ import annotations

import importlib.util
import shlex
import ssl
from pathlib import Path
from typing import Any

from rich.table import Table

from alphaloom.core.config import load_config
from alphaloom.core.exceptions import ConfigError
from alphaloom.jobs.workspace import Workspace
from alphaloom.service.app import create_app, keys_path
from alphaloom.service.auth import ApiKeyInfo, KeyStore
from alphaloom.service.settings import ServiceSettings

__all__ = [
    "check_tls_files",
    "create_key",
    "dashboard_hint",
    "keys_table",
    "revoke_key",
    "run_server",
    "settings_for",
    "uvicorn_config",
]


def settings_for(
    *,
    data_dir: Path | None,
    host: str | None = None,
    port: int | None = None,
    trade_paper: bool | None = None,
    config_file: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> ServiceSettings:
    """The settings from ``config_file``'s ``[service]`` table, with the command-line options on top.

    An option left ``None`` (not given on the command line) keeps the file's value, else the default.

    ``tls_cert`` and ``tls_key`` (``--tls-cert``/``--tls-key``, or ``$ALPHALOOM_TLS_CERT`` and
    ``$ALPHALOOM_TLS_KEY``) replace the file's ``ssl_certfile``/``ssl_keyfile`` when given.
    """
    base = load_config(ServiceSettings, config_file, "service") if config_file else ServiceSettings()
    ws = Workspace.resolve(data_dir or base.data_dir)
    changes: dict[str, Any] = {"data_dir": ws.root}
    given = {"host": host, "port": port, "trade_paper": trade_paper}
    changes.update({k: v for k, v in given.items() if v is not None})
    if tls_cert is not None or tls_key is not None:
        changes.update(ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    return base.replace(**changes)


def check_tls_files(settings: ServiceSettings) -> ssl.SSLContext | None:
    """Check the certificate and key load (a readable PEM pair that match); ``None`` when TLS is off.

    uvicorn would otherwise fail deep in its start-up with a bare ``FileNotFoundError`` or ``SSLError``.

    Raises
    ------
    ConfigError
        A file is missing or unreadable, is not PEM, or the key does not belong to the certificate.
    """
    cert, key = settings.ssl_certfile, settings.ssl_keyfile
    if cert is None or key is None:
        return None
    for what, path in (("certificate", cert), ("private key", key)):
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise ConfigError(
                f"cannot read the TLS {what} {path}: {exc.strerror or exc}. Pass a readable PEM file with "
                "--tls-cert/--tls-key (or ssl_certfile/ssl_keyfile in the [service] config)."
            ) from exc
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"the TLS certificate {cert} and key {key} do not load ({exc}); both must be PEM and the key "
            "must be the certificate's (unencrypted)."
        ) from exc
    return context


def uvicorn_config(settings: ServiceSettings, app: Any = None) -> Any:
    """The ``uvicorn.Config`` ``alphaloom serve`` runs: one process, uvloop and httptools, our JSON logs,
    HTTPS when the settings name a certificate and key (checked first by :func:`check_tls_files`)."""
    import uvicorn

    check_tls_files(settings)
    tls: dict[str, str] = {}
    if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
        tls = {"ssl_certfile": str(settings.ssl_certfile), "ssl_keyfile": str(settings.ssl_keyfile)}
    return uvicorn.Config(
        app if app is not None else create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        log_config=None,  # our JSON logging (create_app configured it)
        access_log=False,  # the request middleware writes the access log
        server_header=False,
        **tls,
    )


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_server(
    *,
    data_dir: Path | None,
    host: str | None = None,
    port: int | None = None,
    trade_paper: bool | None = None,
    config_file: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> None:
    """Serve until interrupted (HTTPS when the settings name a certificate and key)."""
    import uvicorn

    settings = settings_for(
        data_dir=data_dir,
        host=host,
        port=port,
        trade_paper=trade_paper,
        config_file=config_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    uvicorn.Server(uvicorn_config(settings)).run()


def dashboard_hint(ws: Workspace, *, host: str = "127.0.0.1", port: int = 8000) -> str:
    """How to open the dashboard on ``ws``: the commands to create a key and serve, and the URL (rich markup).

    ``alphaloom demo`` ends with it.
    """
    data_dir = shlex.quote(str(ws.root))
    return (
        "[bold]Open the dashboard on these results:[/]\n"
        f"  1. alphaloom serve keys create --name dashboard --role admin --data-dir {data_dir}\n"
        "     (prints an API key once; `alphaloom serve keys list` shows the keys you already have)\n"
        f"  2. alphaloom serve --data-dir {data_dir}\n"
        f"  3. open http://{host}:{port}/ and sign in with the key"
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
