"""TLS settings for PostgreSQL and Redis: validated when built, passed through to the drivers.

The local PostgreSQL and Redis run without TLS, so: ``sslmode=disable``/``prefer`` connect (and the stores
work), ``require`` is refused by the server's lack of TLS (proof the setting reached libpq), and Redis with
``ssl=True`` builds TLS connections with our CA and client files (and cannot talk to the plain server).
"""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pandas as pd
import pytest
import redis
import redis.asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alphaloom.core.config import load_config
from alphaloom.core.exceptions import CacheUnavailableError, ConfigError, StorageError
from alphaloom.data.bus.redis_streams import RedisStreamsBus
from alphaloom.data.sample import load_sample
from alphaloom.data.storage.postgres_store import PostgresBarStore, PostgresTLS, connect_postgres
from alphaloom.data.storage.redis_cache import RedisCache, RedisTLS
from alphaloom.data.storage.relational import PostgresRelationalStore

DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA and a client certificate and key, as PEM files (key mode 0600)."""
    root = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alphaloom test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = {"ca": root / "ca.pem", "cert": root / "client.pem", "key": root / "client.key"}
    paths["ca"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths["key"].chmod(0o600)
    return paths


# ---------------------------------------------------------------------- PostgreSQL


def _option(con: object, keyword: str) -> str:
    options = {o.keyword.decode(): (o.val or b"").decode() for o in con.pgconn.info}  # type: ignore[attr-defined]
    return options[keyword]


@pytest.mark.parametrize("mode", ["disable", "prefer"])
def test_postgres_connects_with_disable_and_prefer_and_passes_the_mode(mode: str) -> None:
    con = connect_postgres(DSN, PostgresTLS(sslmode=mode))
    try:
        assert _option(con, "sslmode") == mode
        assert con.pgconn.ssl_in_use is False  # the local server has no TLS
        assert con.execute("SELECT 1").fetchone() == (1,)
    finally:
        con.close()


def test_postgres_require_reaches_libpq_and_is_refused_by_a_plain_server() -> None:
    with pytest.raises(StorageError, match="SSL"):
        connect_postgres(DSN, PostgresTLS(sslmode="require"))


def test_tls_settings_override_the_dsn() -> None:
    con = connect_postgres(DSN + "?sslmode=require", PostgresTLS(sslmode="disable"))
    try:
        assert _option(con, "sslmode") == "disable"
    finally:
        con.close()


def test_verifying_modes_pass_the_ca_and_client_files(pki: dict[str, Path]) -> None:
    tls = PostgresTLS(sslmode="verify-full", sslrootcert=pki["ca"], sslcert=pki["cert"], sslkey=pki["key"])
    assert tls.conninfo() == {
        "sslmode": "verify-full",
        "sslrootcert": str(pki["ca"]),
        "sslcert": str(pki["cert"]),
        "sslkey": str(pki["key"]),
    }
    with pytest.raises(StorageError, match="SSL"):
        connect_postgres(DSN, tls)


def test_postgres_stores_accept_tls_settings() -> None:
    schema = "tls_" + secrets.token_hex(4)
    bars = load_sample("fx_daily").head(50)
    tls = PostgresTLS(sslmode="prefer")
    with PostgresBarStore(DSN, schema=schema, tls=tls) as store:
        assert store.write_bars(bars).inserted == 50
    relational = PostgresRelationalStore(DSN, schema=schema, tls=tls)
    relational.close()
    con = connect_postgres(DSN)
    try:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        con.close()
    assert isinstance(bars, pd.DataFrame)


def test_bad_postgres_tls_settings_are_explained(pki: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sslrootcert /no/such/ca\.pem is not a file"):
        PostgresTLS(sslmode="verify-full", sslrootcert="/no/such/ca.pem")
    with pytest.raises(ConfigError, match="needs sslrootcert"):
        PostgresTLS(sslmode="verify-ca")
    with pytest.raises(ConfigError, match="go together"):
        PostgresTLS(sslmode="require", sslcert=pki["cert"])
    with pytest.raises(ConfigError, match="sslmode"):
        PostgresTLS(sslmode="verify")
    loose = tmp_path / "loose.key"
    loose.write_bytes(pki["key"].read_bytes())
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        PostgresTLS(sslmode="require", sslcert=pki["cert"], sslkey=loose)
    with pytest.raises(ConfigError, match="tls must be a PostgresTLS"):
        connect_postgres(DSN, {"sslmode": "disable"})  # type: ignore[arg-type]


def test_postgres_tls_from_a_config_file(tmp_path: Path, pki: dict[str, Path]) -> None:
    path = tmp_path / "storage.toml"
    path.write_text(f'[postgres_tls]\nsslmode = "verify-full"\nsslrootcert = "{pki["ca"]}"\n')
    tls = load_config(PostgresTLS, path, section="postgres_tls")
    assert tls.sslrootcert == pki["ca"]
    path.write_text('[postgres_tls]\nsslmode = "verify-full"\nsslrootcert = "/missing/ca.pem"\n')
    with pytest.raises(ConfigError, match=r"/missing/ca\.pem"):
        load_config(PostgresTLS, path, section="postgres_tls")


# ---------------------------------------------------------------------- Redis


def test_redis_without_tls_works_with_explicit_settings() -> None:
    cache = RedisCache(prefix="tls-" + secrets.token_hex(4), tls=RedisTLS(ssl=False))
    try:
        assert cache.ping() >= 0
    finally:
        cache.close()


def test_redis_tls_builds_tls_connections_with_our_files(pki: dict[str, Path]) -> None:
    tls = RedisTLS(ssl=True, ssl_ca_certs=pki["ca"], ssl_certfile=pki["cert"], ssl_keyfile=pki["key"])
    cache = RedisCache("redis://127.0.0.1:6379/0", tls=tls, timeout_s=0.3)
    pool = cache._client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == str(pki["ca"])
    assert pool.connection_kwargs["ssl_certfile"] == str(pki["cert"])
    assert pool.connection_kwargs["ssl_keyfile"] == str(pki["key"])
    assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
    with pytest.raises(CacheUnavailableError):  # the local Redis speaks plain TCP
        cache.ping()
    cache.close()
    bus = RedisStreamsBus("redis://127.0.0.1:6379/0", tls=tls)
    bus_pool = bus._client.connection_pool
    assert bus_pool.connection_class is redis.asyncio.SSLConnection
    assert bus_pool.connection_kwargs["ssl_ca_certs"] == str(pki["ca"])


def test_bad_redis_tls_settings_are_explained(pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="ssl is false"):
        RedisTLS(ssl_ca_certs=pki["ca"])
    with pytest.raises(ConfigError, match=r"ssl_ca_certs /nope\.pem is not a file"):
        RedisTLS(ssl=True, ssl_ca_certs="/nope.pem")
    with pytest.raises(ConfigError, match="go together"):
        RedisTLS(ssl=True, ssl_certfile=pki["cert"])
    with pytest.raises(ConfigError, match="ssl_check_hostname"):
        RedisTLS(ssl=True, ssl_cert_reqs="none")
    with pytest.raises(ConfigError, match="rediss"):
        RedisTLS(ssl=False).apply("rediss://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="unix"):
        RedisTLS(ssl=True).apply("unix:///tmp/redis.sock")
    with pytest.raises(ConfigError, match="tls must be a RedisTLS"):
        RedisCache(tls={"ssl": True})  # type: ignore[arg-type]
    assert RedisTLS(ssl=True).apply("redis://h:1/0")[0] == "rediss://h:1/0"
