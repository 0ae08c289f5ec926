"""A rotated venue credential is used at the connector's next request, with no restart.

The venue (a local server speaking its protocol) switches to a new key and refuses the old one; the operator
rotates the keystore entry (from another process with ``alphaloom secrets rotate``, or in process); the
running connector's next request succeeds with the new credential.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from tests.data.connectors.servers import LocalServer
from tests.data.connectors.servers.oanda_server import OandaVenue, OandaVenueConfig
from tests.data.connectors.servers.robinhood_server import RobinhoodVenue, RobinhoodVenueConfig

from alphaloom.core.exceptions import AuthenticationError
from alphaloom.data.connectors.coinbase import CoinbaseConfig, CoinbaseConnector
from alphaloom.data.connectors.oanda import OANDAConfig, OANDAConnector
from alphaloom.data.connectors.robinhood import RobinhoodConfig, RobinhoodConnector
from alphaloom.security import (
    EncryptedKeystore,
    KeystoreConfig,
    KeystoreSecretProvider,
    PassphraseKeySource,
    rotate_credential,
)

PASSPHRASE = "rotation test passphrase"
FAST = KeystoreConfig(argon2_memory_kib=19_456, argon2_iterations=2, argon2_lanes=1, scrypt_log2_n=14)
ACCOUNT = "101-004-7777777-001"


def keystore(tmp_path: Path, **values: str) -> EncryptedKeystore:
    store = EncryptedKeystore.create(tmp_path / "secrets.keystore", PassphraseKeySource(PASSPHRASE), FAST)
    for name, value in values.items():
        store.set(name, value)
    return store


def provider(store: EncryptedKeystore, prefix: str) -> KeystoreSecretProvider:
    # A separate handle, as the trading process has its own.
    return KeystoreSecretProvider(
        EncryptedKeystore(store.path, PassphraseKeySource(PASSPHRASE)), prefix=prefix
    )


def test_oanda_uses_a_token_rotated_by_the_cli_in_another_process(tmp_path: Path) -> None:
    old, new = "tok-" + secrets.token_hex(16), "tok-" + secrets.token_hex(16)
    store = keystore(tmp_path, **{"oanda.token": old, "oanda.account": ACCOUNT})
    venue = OandaVenue(OandaVenueConfig(token=old, account_id=ACCOUNT))
    server = LocalServer(venue.app).start()
    value_file = tmp_path / "new-token.txt"
    value_file.write_text(new + "\n")
    value_file.chmod(0o600)
    cli: list[subprocess.CompletedProcess[str]] = []

    async def main() -> None:
        cfg = OANDAConfig(base_url=server.url, stream_url=server.url, timeout_s=2.0, rate_limit_per_s=None)
        async with OANDAConnector(cfg, secrets=provider(store, "oanda.")) as oanda:
            await oanda.get_account()
            assert venue.last_request_headers["Authorization"] == f"Bearer {old}"
            venue.config.token = new  # the venue issued a new token and revoked the old one
            with pytest.raises(AuthenticationError):
                await oanda.get_account()
            cli.append(
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "alphaloom.cli.main",
                        "secrets",
                        "rotate",
                        "oanda.token",
                        "--value-file",
                        str(value_file),
                        "--keystore",
                        str(store.path),
                    ],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "ALPHALOOM_KEYSTORE_PASSPHRASE": PASSPHRASE},
                    timeout=300,
                    check=False,
                )
            )
            account = await oanda.get_account()  # the same connector: no restart
            assert venue.last_request_headers["Authorization"] == f"Bearer {new}"
            assert account.account_id == ACCOUNT

    try:
        asyncio.run(main())
    finally:
        server.stop()
    (proc,) = cli
    assert proc.returncode == 0, proc.stderr
    assert "rotated to version 2" in proc.stdout
    assert new not in proc.stdout + proc.stderr
    assert old not in proc.stdout + proc.stderr


def test_robinhood_signs_with_a_rotated_key_pair_at_the_next_request(tmp_path: Path) -> None:
    def pair() -> tuple[str, Ed25519PrivateKey]:
        return "rh-api-" + secrets.token_hex(6), Ed25519PrivateKey.generate()

    (old_key, old_private), (new_key, new_private) = pair(), pair()
    seed = {
        k: base64.b64encode(p.private_bytes_raw()).decode()
        for k, p in ((old_key, old_private), (new_key, new_private))
    }
    store = keystore(tmp_path, **{"robinhood.api_key": old_key, "robinhood.private_key": seed[old_key]})
    venue = RobinhoodVenue(
        RobinhoodVenueConfig(api_key=old_key, public_key=old_private.public_key().public_bytes_raw())
    )
    server = LocalServer(venue.app).start()

    async def main() -> Any:
        cfg = RobinhoodConfig(base_url=server.url, rate_limit_per_s=None, timeout_s=2.0)
        async with RobinhoodConnector(cfg, secrets=provider(store, "robinhood.")) as rh:
            await rh.get_account()
            # The venue replaces the key pair; the operator rotates both entries.
            new_public = new_private.public_key().public_bytes_raw()
            venue.config.api_key, venue.config.public_key = new_key, new_public
            venue._public = Ed25519PublicKey.from_public_bytes(new_public)
            rotate_credential(store, "robinhood.private_key", seed[new_key])
            rotate_credential(store, "robinhood.api_key", new_key)
            return await rh.get_account()

    try:
        account = asyncio.run(main())
    finally:
        server.stop()
    assert account.account_id == venue.account_number


def test_ccxt_exchange_gets_rotated_keys_without_being_rebuilt(tmp_path: Path) -> None:
    store = keystore(
        tmp_path, **{"coinbase.api_key": "key-old-4f2a9c", "coinbase.api_secret": "secret-old-77d1"}
    )

    async def main() -> None:
        connector = CoinbaseConnector(CoinbaseConfig(), secrets=provider(store, "coinbase."))
        exchange = connector.exchange()
        assert (exchange.apiKey, exchange.secret) == ("key-old-4f2a9c", "secret-old-77d1")
        rotate_credential(store, "coinbase.api_key", "key-new-9b8c7d")
        rotate_credential(store, "coinbase.api_secret", "secret-new-55aa")
        again = connector.exchange()
        assert again is exchange  # same client, markets kept
        assert (again.apiKey, again.secret) == ("key-new-9b8c7d", "secret-new-55aa")
        assert "secret-new-55aa" not in connector._redact("echo secret-new-55aa")
        await connector.aclose()

    asyncio.run(main())


def test_cli_connectors_read_the_keystore_first_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alphaloom.jobs.venues import make_connector

    path = tmp_path / "keys.alks"
    store = EncryptedKeystore.create(path, PassphraseKeySource(PASSPHRASE), FAST)
    store.set("oanda.token", "token-from-the-keystore")
    monkeypatch.setenv("ALPHALOOM_KEYSTORE", str(path))
    monkeypatch.setenv("ALPHALOOM_KEYSTORE_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("ALPHALOOM_OANDA_ACCOUNT_ID", ACCOUNT)
    connector = make_connector("oanda", ["EURUSD"])
    assert connector.secrets.get("token").reveal() == "token-from-the-keystore"
    assert connector.secrets.get("account_id").reveal() == ACCOUNT  # not in the keystore: the environment
    store.set("oanda.token", "rotated-token")
    assert connector.secrets.get("token").reveal() == "rotated-token"  # no restart
