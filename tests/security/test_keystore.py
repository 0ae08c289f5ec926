"""EncryptedKeystore: round trips, wrong passphrase, tampering, rotation under readers, retired keys, file
permissions, concurrent writers and the SecretProvider view."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, StorageError
from alphaloom.core.secrets import Secret, SecretProvider
from alphaloom.security import (
    EncryptedKeystore,
    KeyringKeySource,
    KeystoreConfig,
    KeystoreSecretProvider,
    PassphraseKeySource,
    argon2_available,
)
from alphaloom.security.keystore import _seal

PASSPHRASE = "correct horse battery staple"
# The lowest cost the config accepts, so tests derive keys quickly; the defaults are tested once.
FAST = KeystoreConfig(argon2_memory_kib=19_456, argon2_iterations=2, argon2_lanes=1, scrypt_log2_n=14)


def new_store(tmp_path: Path, config: KeystoreConfig = FAST) -> EncryptedKeystore:
    return EncryptedKeystore.create(tmp_path / "secrets.keystore", PassphraseKeySource(PASSPHRASE), config)


def reopen(store: EncryptedKeystore, passphrase: str = PASSPHRASE) -> EncryptedKeystore:
    return EncryptedKeystore(store.path, PassphraseKeySource(passphrase))


def raw_doc(store: EncryptedKeystore) -> dict[str, Any]:
    return json.loads(store.path.read_text())


def test_round_trip_versions_and_metadata(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    assert store.set("oanda.token", "tok-3f9a8b7c6d5e4f") == 1
    assert store.set("coinbase.api_secret", "c0inbase/s3cret+value==") == 1
    assert store.set("oanda.token", "tok-rotated-000111") == 2
    other = reopen(store)
    value = other.get("oanda.token")
    assert isinstance(value, Secret)
    assert value.reveal() == "tok-rotated-000111"
    assert other.get("coinbase.api_secret").reveal() == "c0inbase/s3cret+value=="
    assert other.names() == ["coinbase.api_secret", "oanda.token"]
    info = {e.name: e for e in other.entries()}
    assert info["oanda.token"].version == 2
    assert info["oanda.token"].key_id == "k1"
    assert info["oanda.token"].updated_at >= info["oanda.token"].created_at
    assert "oanda.token" in other
    other.delete("coinbase.api_secret")
    assert store.names() == ["oanda.token"]  # the first handle sees the other's write


def test_no_plain_value_is_written_to_disk(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    value = "plain-value-that-must-not-appear-9f8e"
    store.set("venue.api_key", value)
    raw = store.path.read_bytes()
    assert value.encode() not in raw
    assert base64.b64encode(value.encode()) not in raw
    assert PASSPHRASE.encode() not in raw


@pytest.mark.parametrize(
    "config",
    [
        KeystoreConfig(kdf="scrypt", scrypt_log2_n=14, cipher="chacha20-poly1305"),
        KeystoreConfig(kdf="scrypt", scrypt_log2_n=14, cipher="aes-256-gcm"),
        pytest.param(
            KeystoreConfig(kdf="argon2id", argon2_memory_kib=19_456, argon2_iterations=2, argon2_lanes=1),
            marks=pytest.mark.skipif(not argon2_available(), reason="this cryptography build lacks Argon2id"),
        ),
    ],
    ids=["scrypt-chacha20", "scrypt-aesgcm", "argon2id-aesgcm"],
)
def test_every_kdf_and_cipher_round_trips(tmp_path: Path, config: KeystoreConfig) -> None:
    store = new_store(tmp_path, config)
    store.set("x.secret", "vAlue-ünïcode-✓")
    doc = raw_doc(store)
    assert doc["cipher"] == config.cipher
    assert doc["master"]["kdf"]["name"] == config.kdf
    assert reopen(store).get("x.secret").reveal() == "vAlue-ünïcode-✓"


def test_default_settings_use_a_strong_kdf(tmp_path: Path) -> None:
    store = new_store(tmp_path, KeystoreConfig())
    kdf = raw_doc(store)["master"]["kdf"]
    if kdf["name"] == "argon2id":
        assert kdf["memory_kib"] >= 65_536
        assert kdf["iterations"] >= 3
    else:
        assert kdf["log2_n"] >= 15
    assert len(base64.b64decode(kdf["salt"])) == 16


def test_wrong_passphrase_is_refused_clearly(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.set("a.b", "value-123456")
    with pytest.raises(ConfigError, match="wrong passphrase") as info:
        reopen(store, "not the passphrase")
    assert "value-123456" not in str(info.value)


def test_short_passphrase_and_bad_names_and_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 8 characters"):
        PassphraseKeySource("short")
    store = new_store(tmp_path)
    for bad in ("", "1abc", "has space", "x" * 200, "semi;colon"):
        with pytest.raises(ConfigError, match="keystore names"):
            store.set(bad, "value-123456")
    with pytest.raises(ConfigError, match="non-empty string"):
        store.set("ok.name", "")
    store.set("oanda.token", "value-123456")
    with pytest.raises(ConfigError, match=r"no secret 'oanda\.tokn'.*Did you mean 'oanda\.token'"):
        store.get("oanda.tokn")
    with pytest.raises(ConfigError, match="no secret"):
        store.delete("nothing.here")


def test_create_never_overwrites_and_open_needs_a_file(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        EncryptedKeystore.create(store.path, PassphraseKeySource(PASSPHRASE), FAST)
    with pytest.raises(DataNotFoundError, match="secrets init"):
        EncryptedKeystore(tmp_path / "missing.keystore", PassphraseKeySource(PASSPHRASE))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "notes.txt").chmod(0o600)
    with pytest.raises(StorageError, match="not a keystore"):
        EncryptedKeystore(tmp_path / "notes.txt", PassphraseKeySource(PASSPHRASE))


def test_file_is_private_and_loose_permissions_are_refused(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.set("a.b", "value-123456")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.with_name(store.path.name + ".lock").stat().st_mode) == 0o600
    store.path.chmod(0o644)
    with pytest.raises(StorageError, match="chmod 600"):
        reopen(store)
    store.path.chmod(0o600)
    assert reopen(store).get("a.b").reveal() == "value-123456"


def _flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["entries"]["venue.token"].__setitem__(
            "ciphertext", _flip(d["entries"]["venue.token"]["ciphertext"])
        ),
        lambda d: d["entries"]["venue.token"].__setitem__("version", 7),
        lambda d: d["entries"].pop("venue.other"),
        lambda d: d["keys"]["k1"].__setitem__("wrapped", _flip(d["keys"]["k1"]["wrapped"])),
        lambda d: d.__setitem__("generation", d["generation"] - 1),
    ],
    ids=["ciphertext", "version", "deleted-entry", "key-table", "rollback-counter"],
)
def test_any_modification_fails_authentication(tmp_path: Path, tamper: Any) -> None:
    store = new_store(tmp_path)
    store.set("venue.token", "tok-tamper-123456")
    store.set("venue.other", "tok-other-123456")
    doc = raw_doc(store)
    tamper(doc)
    store.path.write_text(json.dumps(doc))
    with pytest.raises(StorageError, match="failed authentication"):
        reopen(store)


def test_ciphertext_moved_to_another_entry_fails_even_with_a_valid_file_mac(tmp_path: Path) -> None:
    # The strongest attacker short of the passphrase: the file MAC recomputed with the real key, yet the
    # per-entry AEAD binds each ciphertext to its name.
    store = new_store(tmp_path)
    store.set("venue.token", "tok-aaaa-123456")
    store.set("venue.other", "tok-bbbb-123456")
    doc = raw_doc(store)
    doc["entries"]["venue.token"], doc["entries"]["venue.other"] = (
        doc["entries"]["venue.other"],
        doc["entries"]["venue.token"],
    )
    _, mac_key = store._master_keys(doc)
    store.path.write_bytes(_seal(doc, mac_key))
    with pytest.raises(StorageError, match=r"'venue\.token' failed authentication"):
        reopen(store).get("venue.token")


def test_rotation_while_a_reader_keeps_reading(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    values = {f"venue{i}.api_key": f"key-{i:02d}-" + os.urandom(8).hex() for i in range(20)}
    for name, value in values.items():
        store.set(name, value)
    reader = reopen(store)  # another handle, as another process would have
    stop = threading.Event()
    failures: list[BaseException] = []
    reads = [0]

    def read_forever() -> None:
        while not stop.is_set():
            for name, value in values.items():
                try:
                    assert reader.get(name).reveal() == value
                except BaseException as exc:  # recorded, the test fails below
                    failures.append(exc)
                    return
                reads[0] += 1

    thread = threading.Thread(target=read_forever)
    thread.start()
    while reads[0] == 0 and not failures:  # the reader is running before the rotation starts
        time.sleep(0.001)
    try:
        reports = [store.rotate_key(), store.rotate_key()]
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert reads[0] > 0
    assert [r.reencrypted for r in reports] == [20, 20]
    assert reports[1].retired_key_ids == ("k2",)
    assert store.key_status() == {"k1": "retired", "k2": "retired", "k3": "active"}
    assert {e.key_id for e in store.entries()} == {"k3"}
    assert all(reader.get(n).reveal() == v for n, v in values.items())


def test_retired_key_is_destroyed_and_refused(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.set("venue.token", "tok-old-key-123456")
    old_entry = raw_doc(store)["entries"]["venue.token"]
    store.rotate_key()
    doc = raw_doc(store)
    assert "wrapped" not in doc["keys"]["k1"]
    assert doc["keys"]["k1"]["status"] == "retired"
    # Put the ciphertext made under k1 back (with a valid file MAC): the retired key is refused.
    doc["entries"]["venue.token"] = old_entry
    _, mac_key = store._master_keys(doc)
    store.path.write_bytes(_seal(doc, mac_key))
    with pytest.raises(StorageError, match=r"retired .* refused"):
        reopen(store).get("venue.token")


def test_an_interrupted_rotation_keeps_every_entry_readable_and_finishes_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store(tmp_path)
    values = {f"v{i}.key": f"value-{i}-abcdef" for i in range(6)}
    for name, value in values.items():
        store.set(name, value)
    original = EncryptedKeystore._encrypt
    calls = [0]

    def crash_after_three(self: EncryptedKeystore, *args: Any) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] > 3:
            raise KeyboardInterrupt("simulated crash")
        return original(self, *args)

    monkeypatch.setattr(EncryptedKeystore, "_encrypt", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        store.rotate_key()
    monkeypatch.setattr(EncryptedKeystore, "_encrypt", original)
    mid = reopen(store)
    assert mid.key_status() == {"k1": "retiring", "k2": "active"}
    assert sorted({e.key_id for e in mid.entries()}) == ["k1", "k2"]
    assert all(mid.get(n).reveal() == v for n, v in values.items())
    report = mid.rotate_key()
    assert report.retired_key_ids == ("k1", "k2")
    assert mid.key_status() == {"k1": "retired", "k2": "retired", "k3": "active"}
    assert all(reopen(store).get(n).reveal() == v for n, v in values.items())


def test_change_passphrase_rewraps_keys(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.set("a.b", "value-pass-123456")
    before = raw_doc(store)["entries"]["a.b"]["ciphertext"]
    store.change_passphrase(PassphraseKeySource("a new and longer passphrase"), FAST)
    assert raw_doc(store)["entries"]["a.b"]["ciphertext"] == before  # entries untouched
    with pytest.raises(ConfigError, match="wrong passphrase"):
        reopen(store)
    assert reopen(store, "a new and longer passphrase").get("a.b").reveal() == "value-pass-123456"


def test_writers_in_two_processes_lose_nothing(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    script = (
        "import sys\n"
        "from alphaloom.security import EncryptedKeystore, PassphraseKeySource\n"
        "ks = EncryptedKeystore(sys.argv[1], PassphraseKeySource(sys.argv[2]))\n"
        "for i in range(15):\n"
        "    ks.set(f'{sys.argv[3]}.k{i}', f'value-{sys.argv[3]}-{i}-xyz')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(store.path), PASSPHRASE, who])
        for who in ("alpha", "beta")
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    names = store.names()
    assert len(names) == 30
    assert store.get("beta.k14").reveal() == "value-beta-14-xyz"


def test_provider_view_with_prefix(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.set("oanda.token", "tok-provider-123456")
    provider = KeystoreSecretProvider(store, prefix="oanda.")
    assert isinstance(provider, SecretProvider)
    assert provider.get("token").reveal() == "tok-provider-123456"
    with pytest.raises(ConfigError, match=r"secrets set oanda\.account"):
        provider.get("account")
    with pytest.raises(ConfigError, match="prefix"):
        KeystoreSecretProvider(store, prefix="bad prefix")
    assert "tok-provider" not in repr(provider)


def test_keyring_source_explains_when_no_keyring_is_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)  # as on a machine without the package
    with pytest.raises(ConfigError, match="passphrase"):
        KeyringKeySource()


def test_config_floors_refuse_weak_settings() -> None:
    with pytest.raises(ConfigError, match="argon2_memory_kib"):
        KeystoreConfig.from_dict({"argon2_memory_kib": 1024})
    with pytest.raises(ConfigError, match="scrypt_log2_n"):
        KeystoreConfig.from_dict({"scrypt_log2_n": 10})
    with pytest.raises(ConfigError, match="cipher"):
        KeystoreConfig.from_dict({"cipher": "aes-128-cbc"})
