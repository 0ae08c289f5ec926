"""VaultSecretProvider against a local server speaking Vault's KV v2 and auth HTTP API (through real hvac).

Covers token and AppRole auth, KV v2 reads of the latest and a given version, writes with check-and-set,
lease renewal before expiry (and a fresh AppRole login when the max TTL caps it), a revoked token, the read
cache, and translated errors that never show a token or a value.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from tests.security.vault_server import FakeClock, VaultServer

from alphaloom.core.exceptions import ConfigError, StorageError
from alphaloom.core.secrets import Secret, SecretProvider, StaticSecretProvider
from alphaloom.security import VaultConfig, VaultSecretProvider

PATH = "alphaloom/oanda"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def vault(clock: FakeClock) -> Iterator[VaultServer]:
    server = VaultServer(clock).start()
    yield server
    server.stop()


def config(vault: VaultServer, **changes: Any) -> VaultConfig:
    settings: dict[str, Any] = {"url": vault.url, "mount": "secret", "path": PATH, "cache_ttl_s": 0.0}
    settings.update(changes)
    return VaultConfig.from_dict(settings)


def token_provider(
    vault: VaultServer, clock: FakeClock, token: str | None = None, **changes: Any
) -> VaultSecretProvider:
    token = token or vault.issue_token()
    return VaultSecretProvider(
        config(vault, **changes), credentials=StaticSecretProvider(token=token), monotonic=clock
    )


def approle_provider(vault: VaultServer, clock: FakeClock, **role: float) -> VaultSecretProvider:
    role_id, secret_id = vault.add_role(**role)
    return VaultSecretProvider(
        config(vault, auth="approle"),
        credentials=StaticSecretProvider(role_id=role_id, secret_id=secret_id),
        monotonic=clock,
    )


def test_token_auth_reads_the_latest_version_and_a_given_one(vault: VaultServer, clock: FakeClock) -> None:
    first, second = "tok-" + secrets.token_hex(12), "tok-" + secrets.token_hex(12)
    vault.put(PATH, {"token": first, "account": "101-004-1234567-001"})
    vault.put(PATH, {"token": second, "account": "101-004-1234567-001"})
    provider = token_provider(vault, clock)
    assert isinstance(provider, SecretProvider)
    value = provider.get("token")
    assert isinstance(value, Secret)
    assert value.reveal() == second
    assert str(value) == "***"
    latest = provider.read()
    assert latest.version == 2
    assert latest.created_time is not None
    assert provider.get_version("token", 1).reveal() == first
    assert provider.read(version=1).version == 1
    assert vault.count("GET", "/v1/auth/token/lookup-self") == 1


def test_set_writes_a_new_version_keeping_the_other_keys(vault: VaultServer, clock: FakeClock) -> None:
    provider = token_provider(vault, clock)
    assert provider.set("token", "tok-one-111111") == 1  # cas=0: created
    assert provider.set("account", "101-004-0000001-001") == 2
    assert provider.set("token", "tok-two-222222") == 3
    stored = vault.kv[PATH][-1]["data"]
    assert stored == {"token": "tok-two-222222", "account": "101-004-0000001-001"}
    assert provider.get_version("token", 1).reveal() == "tok-one-111111"


def test_a_concurrent_write_is_not_lost(vault: VaultServer, clock: FakeClock) -> None:
    provider = token_provider(vault, clock)
    provider.set("token", "tok-initial-000")
    # Another writer adds a key between our read and our write: check-and-set refuses ours, we retry.
    vault.before_write = lambda path: vault.put(path, {**vault.kv[path][-1]["data"], "account": "acct-77777"})
    version = provider.set("token", "tok-rotated-111")
    assert vault.kv[PATH][-1]["data"] == {"token": "tok-rotated-111", "account": "acct-77777"}
    assert version == len(vault.kv[PATH]) == 3


def test_approle_login_and_reads(vault: VaultServer, clock: FakeClock) -> None:
    vault.put(PATH, {"token": "tok-approle-123456"})
    provider = approle_provider(vault, clock)
    assert provider.get("token").reveal() == "tok-approle-123456"
    assert provider.stats["logins"] == 1
    assert vault.count("POST", "/v1/auth/approle/login") == 1


def test_bad_approle_credentials_are_a_config_error_without_the_secret_id(vault: VaultServer) -> None:
    role_id, _ = vault.add_role()
    wrong = secrets.token_hex(16)
    with pytest.raises(ConfigError, match="AppRole login") as info:
        VaultSecretProvider(
            config(vault, auth="approle"), credentials=StaticSecretProvider(role_id=role_id, secret_id=wrong)
        )
    assert wrong not in str(info.value)
    assert "invalid role or secret ID" in str(info.value)


def test_missing_login_credentials_say_what_to_set(vault: VaultServer) -> None:
    with pytest.raises(ConfigError, match="role_id and secret_id"):
        VaultSecretProvider(config(vault, auth="approle"), credentials=StaticSecretProvider())
    with pytest.raises(ConfigError, match="VAULT_TOKEN"):
        VaultSecretProvider(config(vault), credentials=StaticSecretProvider(token="hvs.not-a-real-token-000"))


def test_token_is_renewed_before_it_expires(vault: VaultServer, clock: FakeClock) -> None:
    vault.put(PATH, {"token": "tok-renew-123456"})
    token = vault.issue_token(ttl=60, max_ttl=3600)
    provider = token_provider(vault, clock, token=token)
    clock.advance(30)  # half the lease: not yet (renewal at 2/3)
    provider.get("token")
    assert provider.stats["renewals"] == 0
    clock.advance(15)  # 45 s of 60: renewed before the read
    provider.get("token")
    assert provider.stats["renewals"] == 1
    assert vault.count("POST", "/v1/auth/token/renew-self") == 1
    clock.advance(50)  # 95 s after issue: the original lease is over, the renewed one is not
    assert provider.get("token").reveal() == "tok-renew-123456"
    # Without renewal the server refuses the token by now: the renewal really extended the lease.
    assert vault.tokens[token].expires > clock() - 50 + 60


def test_an_idle_provider_renews_from_its_background_thread(vault: VaultServer, clock: FakeClock) -> None:
    token = vault.issue_token(ttl=60, max_ttl=3600)
    provider = token_provider(vault, clock, token=token)
    clock.advance(50)
    assert provider.renew_if_due() is True
    assert provider.renew_if_due() is False  # a fresh lease is not due
    assert vault.tokens[token].expires == pytest.approx(clock() + 60)


def test_approle_logs_in_again_when_the_max_ttl_caps_renewal(vault: VaultServer, clock: FakeClock) -> None:
    vault.put(PATH, {"token": "tok-maxttl-123456"})
    provider = approle_provider(vault, clock, token_ttl=60, token_max_ttl=100)
    clock.advance(45)  # renewal grants only 55 s (max TTL 100): a capped lease, so log in afresh
    assert provider.get("token").reveal() == "tok-maxttl-123456"
    assert provider.stats["renewals"] == 1
    assert provider.stats["logins"] == 2
    clock.advance(80)  # past the first token's max TTL: the new token serves
    assert provider.get("token").reveal() == "tok-maxttl-123456"


def test_a_revoked_approle_token_leads_to_one_fresh_login(vault: VaultServer, clock: FakeClock) -> None:
    vault.put(PATH, {"token": "tok-revoked-123456"})
    provider = approle_provider(vault, clock)
    for token in vault.tokens.values():
        token.revoked = True
    assert provider.get("token").reveal() == "tok-revoked-123456"
    assert provider.stats["logins"] == 2


def test_an_expired_token_that_cannot_be_renewed_is_reported(vault: VaultServer, clock: FakeClock) -> None:
    vault.put(PATH, {"token": "tok-expired-123456"})
    token = vault.issue_token(ttl=60, renewable=False)
    provider = token_provider(vault, clock, token=token)
    clock.advance(61)
    with pytest.raises(ConfigError, match="expired") as info:
        provider.get("token")
    assert token not in str(info.value)


def test_a_rotated_value_is_used_after_the_cache_ttl(vault: VaultServer, clock: FakeClock) -> None:
    vault.put(PATH, {"token": "tok-before-123456"})
    provider = token_provider(vault, clock, cache_ttl_s=10.0)
    assert provider.get("token").reveal() == "tok-before-123456"
    vault.put(PATH, {"token": "tok-after-654321"})  # rotated by another process
    assert provider.get("token").reveal() == "tok-before-123456"  # cached
    clock.advance(10)
    assert provider.get("token").reveal() == "tok-after-654321"


def test_missing_secret_key_and_version_are_config_errors(vault: VaultServer, clock: FakeClock) -> None:
    provider = token_provider(vault, clock)
    with pytest.raises(ConfigError, match="has no secret secret/alphaloom/oanda"):
        provider.get("token")
    vault.put(PATH, {"token": "tok-value-123456", "account": "acct-123456"})
    with pytest.raises(ConfigError, match="Keys present: account, token") as info:
        provider.get("tokn")
    assert "Did you mean 'token'" in str(info.value)
    assert "tok-value-123456" not in str(info.value)
    with pytest.raises(ConfigError, match="version 5"):
        provider.read(version=5)
    with pytest.raises(ConfigError, match="integer from 1"):
        provider.read(version=0)
    vault.put(PATH, {"token": "tok-value-654321"})
    vault.delete_version(PATH, 2)
    with pytest.raises(ConfigError):
        provider.read(version=2)


def test_unreachable_vault_is_a_storage_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    cfg = VaultConfig.from_dict({"url": f"http://127.0.0.1:{port}", "path": PATH, "timeout_s": 2.0})
    with pytest.raises(StorageError, match="cannot reach Vault"):
        VaultSecretProvider(cfg, credentials=StaticSecretProvider(token="hvs.unreachable-token-000"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "vault.local:8200", "path": PATH}, "url"),
        ({"url": "http://127.0.0.1:8200", "path": "../etc"}, "path"),
        ({"url": "http://127.0.0.1:8200", "path": PATH, "auth": "ldap"}, "auth"),
        ({"url": "http://127.0.0.1:8200", "path": PATH, "ca_cert": "/no/such/ca.pem"}, "ca_cert"),
        ({"url": "http://127.0.0.1:8200", "path": PATH, "renew_fraction": 0.1}, "renew_fraction"),
        ({"url": "http://127.0.0.1:8200", "path": PATH, "tokn": "x"}, "unknown key"),
    ],
)
def test_bad_settings_are_explained(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VaultConfig.from_dict(settings)
