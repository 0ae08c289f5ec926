"""HTTPS: ``alphaloom serve`` with a certificate and key serves TLS; bad files fail early and clearly.

The certificate is self-signed, made at test time with ``cryptography`` for ``127.0.0.1``; the server is
the uvicorn configuration ``alphaloom serve`` runs (:func:`alphaloom.service.cli.uvicorn_config`), on a
loopback port, with the paper session off (only the transport is under test).
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alphaloom.core.exceptions import ConfigError
from alphaloom.jobs.workspace import Workspace
from alphaloom.service.app import API_PREFIX
from alphaloom.service.cli import check_tls_files, settings_for, uvicorn_config

from .conftest import make_settings


def _self_signed(tmp: Path, name: str = "alphaloom-test") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _Server:
    def __init__(self, config) -> None:
        import uvicorn

        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        end = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the HTTPS server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_server(demo_ws: Workspace, tls_files) -> Iterator[str]:
    cert, key = tls_files
    settings = make_settings(demo_ws, trade_paper=False, port=0, ssl_certfile=cert, ssl_keyfile=key)
    with _Server(uvicorn_config(settings)) as live:
        (sock,) = live.server.servers[0].sockets
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_serves_https_with_the_configured_certificate(https_server: str, tls_files, keys) -> None:
    cert, _ = tls_files
    trusted = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=f"https://{https_server}", verify=trusted, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        me = c.get(f"{API_PREFIX}/me", headers={"X-API-Key": keys["viewer"]})
        assert me.json() == {"name": "test-viewer", "role": "viewer"}
        assert c.get("/").headers["content-type"].startswith("text/html")
    # the server's certificate is the configured one
    host, port = https_server.split(":")
    pem = ssl.get_server_certificate((host, int(port)))
    assert x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string() == "CN=alphaloom-test"


def test_refuses_plain_http_and_untrusted_clients(https_server: str) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{https_server}/healthz", timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{https_server}/healthz", timeout=10)  # system CAs do not know the test CA


def test_missing_unreadable_or_mismatched_files_are_clear_errors(
    demo_ws: Workspace, tls_files, tmp_path
) -> None:
    cert, key = tls_files
    with pytest.raises(ConfigError, match=r"cannot read the TLS certificate .*nope\.crt.*--tls-cert"):
        check_tls_files(make_settings(demo_ws, ssl_certfile=tmp_path / "nope.crt", ssl_keyfile=key))
    with pytest.raises(ConfigError, match="cannot read the TLS private key"):
        check_tls_files(make_settings(demo_ws, ssl_certfile=cert, ssl_keyfile=tmp_path))
    other_cert, _ = _self_signed(tmp_path, "other")
    with pytest.raises(ConfigError, match="do not load"):
        check_tls_files(make_settings(demo_ws, ssl_certfile=other_cert, ssl_keyfile=key))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match="do not load"):
        check_tls_files(make_settings(demo_ws, ssl_certfile=not_pem, ssl_keyfile=key))
    with pytest.raises(ConfigError, match="both ssl_certfile and ssl_keyfile"):
        settings_for(data_dir=demo_ws.root, host="127.0.0.1", port=8443, trade_paper=False, tls_cert=cert)
    assert check_tls_files(make_settings(demo_ws)) is None


def test_cli_options_and_config_file_set_the_certificate(demo_ws: Workspace, tls_files, tmp_path) -> None:
    cert, key = tls_files
    s = settings_for(
        data_dir=demo_ws.root, host="127.0.0.1", port=8443, trade_paper=False, tls_cert=cert, tls_key=key
    )
    assert (s.ssl_certfile, s.ssl_keyfile) == (cert, key)
    config = tmp_path / "service.toml"
    config.write_text(f'[service]\nssl_certfile = "{cert}"\nssl_keyfile = "{key}"\n')
    s = settings_for(
        data_dir=demo_ws.root, host="127.0.0.1", port=8443, trade_paper=False, config_file=config
    )
    assert (s.ssl_certfile, s.ssl_keyfile) == (cert, key)
    assert uvicorn_config(s, app=object()).ssl_certfile == str(cert)
