"""An encrypted local keystore: secrets in one file, authenticated encryption, key rotation without downtime.

Layout (envelope encryption)::

    passphrase --Argon2id or scrypt (per-store salt)--> master key --HKDF--> wrap key, MAC key
    OS keyring (optional) --------------------------------^
    wrap key --AES-256-GCM--> data keys k1, k2, ... (the "key table", one active)
    data key kN --AES-256-GCM or ChaCha20-Poly1305--> each entry (bound to store id, name, key id, version)
    MAC key --HMAC-SHA256--> the whole file (a changed, added, removed or swapped byte is detected)

Every entry records the id of the data key that encrypted it. :meth:`EncryptedKeystore.rotate_key` adds a new
data key, makes it active, re-encrypts the entries one by one (each step an atomic file replacement), then
retires the old key: its wrapped material is deleted from the file and any ciphertext that still names it is
refused. At every instant the file on disk is complete and consistent, so a reader (another thread or
process) never fails while a rotation runs: it sees each entry under the old or the new key, and holds both.
:meth:`EncryptedKeystore.change_passphrase` re-wraps the data keys under a new master key in one write.

Writes are atomic (a temporary file in the same directory, ``fsync``, ``os.replace``), serialised between
processes by an advisory lock on ``<path>.lock``, and the file is created with mode 0600; a keystore readable
by other users is refused. A wrong passphrase and a tampered file are told apart and each gives a clear error.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets as _random
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import Field, field_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataNotFoundError, StorageError, did_you_mean
from alphaloom.core.secrets import Secret

__all__ = [
    "EncryptedKeystore",
    "EntryInfo",
    "KeySource",
    "KeyringKeySource",
    "KeystoreConfig",
    "KeystoreSecretProvider",
    "PassphraseKeySource",
    "RotationReport",
    "argon2_available",
]

_FORMAT = "alphaloom-keystore"
_VERSION = 1
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,127}$")
_KEY_ID = re.compile(r"^k[1-9][0-9]{0,8}$")
_MASTER_LEN = 32
_DATA_KEY_LEN = 32
_NONCE_LEN = 12
_CIPHERS = {"aes-256-gcm": AESGCM, "chacha20-poly1305": ChaCha20Poly1305}


def argon2_available() -> bool:
    """Whether this ``cryptography`` build offers Argon2id (OpenSSL 3.2 or newer)."""
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        Argon2id(salt=b"\0" * 16, length=32, iterations=1, lanes=1, memory_cost=8)
    except (ImportError, UnsupportedAlgorithm):
        return False
    return True


class KeystoreConfig(ComponentConfig):
    """Settings of a new keystore (an existing file keeps the KDF and cipher it was created with).

    Parameters
    ----------
    kdf
        ``"argon2id"``, ``"scrypt"`` or ``"auto"`` (Argon2id when this ``cryptography`` build has it, else
        scrypt). Turns a passphrase into the master key.
    argon2_memory_kib, argon2_iterations, argon2_lanes
        Argon2id cost: memory in KiB (at least 19 MiB, OWASP's floor), passes, parallel lanes.
    scrypt_log2_n
        scrypt cost ``N = 2**scrypt_log2_n`` (14 to 22) with ``r = 8``, ``p = 1``.
    cipher
        Entry encryption: ``"aes-256-gcm"`` or ``"chacha20-poly1305"`` (both authenticated).
    """

    kdf: Literal["auto", "argon2id", "scrypt"] = "auto"
    argon2_memory_kib: int = Field(65_536, ge=19_456, le=4_194_304)
    argon2_iterations: int = Field(3, ge=2, le=64)
    argon2_lanes: int = Field(4, ge=1, le=64)
    scrypt_log2_n: int = Field(15, ge=14, le=22)
    cipher: Literal["aes-256-gcm", "chacha20-poly1305"] = "aes-256-gcm"

    @field_validator("kdf")
    @classmethod
    def _kdf_available(cls, value: str) -> str:
        if value == "argon2id" and not argon2_available():
            raise ValueError(
                "this cryptography build has no Argon2id (it needs OpenSSL 3.2+); use kdf='scrypt' or 'auto'"
            )
        return value

    def kdf_params(self) -> dict[str, Any]:
        """The KDF block written into a new store's header (a fresh random salt included)."""
        salt = _b64(os.urandom(16))
        if self.kdf == "argon2id" or (self.kdf == "auto" and argon2_available()):
            return {
                "name": "argon2id",
                "salt": salt,
                "memory_kib": self.argon2_memory_kib,
                "iterations": self.argon2_iterations,
                "lanes": self.argon2_lanes,
            }
        return {"name": "scrypt", "salt": salt, "log2_n": self.scrypt_log2_n, "r": 8, "p": 1}


@runtime_checkable
class KeySource(Protocol):
    """Where the master key comes from: a passphrase (through a KDF) or the OS keyring.

    ``kind`` is recorded in the store's header; ``new_params`` returns what a new store (or a passphrase
    change) writes there; ``master_key`` returns the 32-byte master key for a header's parameters.
    """

    kind: str

    def new_params(self, config: KeystoreConfig, store_id: str) -> dict[str, Any]: ...

    def master_key(self, params: Mapping[str, Any], store_id: str) -> bytes: ...


class PassphraseKeySource:
    """A master key derived from a passphrase with Argon2id or scrypt and the store's salt.

    Parameters
    ----------
    passphrase
        At least 8 characters; a :class:`~alphaloom.core.secrets.Secret` or a plain string. Works headless
        (no keyring or desktop session needed).
    """

    kind = "passphrase"

    def __init__(self, passphrase: str | Secret) -> None:
        plain = passphrase.reveal() if isinstance(passphrase, Secret) else passphrase
        if not isinstance(plain, str) or len(plain) < 8:
            raise ConfigError(
                "a keystore passphrase must be a string of at least 8 characters"
                + (
                    f", got one of {len(plain)}"
                    if isinstance(plain, str)
                    else f", got {type(plain).__name__}"
                )
                + "; choose a longer one (a random phrase of several words is best)."
            )
        self._passphrase = Secret(plain)
        self._cache: dict[str, bytes] = {}  # KDF block (JSON) -> master key; derivation is slow on purpose
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "PassphraseKeySource(passphrase='***')"

    def new_params(self, config: KeystoreConfig, store_id: str) -> dict[str, Any]:
        return {"kdf": config.kdf_params()}

    def master_key(self, params: Mapping[str, Any], store_id: str) -> bytes:
        kdf = params.get("kdf")
        if not isinstance(kdf, Mapping):
            raise StorageError("the keystore header has no KDF parameters; the file is damaged.")
        cache_key = json.dumps(kdf, sort_keys=True)
        with self._lock:
            if cache_key not in self._cache:
                self._cache[cache_key] = _derive(self._passphrase.reveal().encode("utf-8"), kdf)
            return self._cache[cache_key]


def _derive(secret: bytes, kdf: Mapping[str, Any]) -> bytes:
    try:
        salt = _unb64(kdf["salt"], "kdf salt")
        if kdf["name"] == "argon2id":
            from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

            return Argon2id(
                salt=salt,
                length=_MASTER_LEN,
                iterations=int(kdf["iterations"]),
                lanes=int(kdf["lanes"]),
                memory_cost=int(kdf["memory_kib"]),
            ).derive(secret)
        if kdf["name"] == "scrypt":
            return Scrypt(
                salt=salt, length=_MASTER_LEN, n=2 ** int(kdf["log2_n"]), r=int(kdf["r"]), p=int(kdf["p"])
            ).derive(secret)
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(
            f"the keystore's KDF parameters are damaged ({exc}); restore it from a backup."
        ) from exc
    except (ImportError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"this keystore was created with {kdf['name']}, which this cryptography build cannot compute; "
            "upgrade the cryptography package (Argon2id needs OpenSSL 3.2+)."
        ) from exc
    raise StorageError(f"the keystore names an unknown KDF {kdf.get('name')!r}; expected argon2id or scrypt.")


class KeyringKeySource:
    """A random master key kept in the OS keyring (macOS Keychain, Windows Credential Locker, Secret Service).

    Needs the optional ``keyring`` package and a working backend; headless servers usually have none, so use
    :class:`PassphraseKeySource` there.

    Parameters
    ----------
    service
        The keyring service name; the entry's user name is the store's id.
    """

    kind = "keyring"

    def __init__(self, service: str = "alphaloom-keystore") -> None:
        try:
            import keyring
            import keyring.errors
        except ImportError as exc:
            raise ConfigError(
                "KeyringKeySource needs the 'keyring' package (pip install keyring) and an OS keyring; "
                "on a headless machine use a passphrase (PassphraseKeySource) instead."
            ) from exc
        backend = keyring.get_keyring()
        if "fail" in type(backend).__module__ or getattr(backend, "priority", 1) <= 0:
            raise ConfigError(
                f"no usable OS keyring backend (found {type(backend).__name__}); use a passphrase "
                "(PassphraseKeySource) on this machine."
            )
        self._keyring = keyring
        self.service = service

    def __repr__(self) -> str:
        return f"KeyringKeySource(service={self.service!r})"

    def new_params(self, config: KeystoreConfig, store_id: str) -> dict[str, Any]:
        key_name = f"{store_id}-{uuid.uuid4().hex[:8]}"
        self._set(key_name, _b64(os.urandom(_MASTER_LEN)))
        return {"service": self.service, "key_name": key_name}

    def master_key(self, params: Mapping[str, Any], store_id: str) -> bytes:
        key_name = str(params.get("key_name", ""))
        try:
            stored = self._keyring.get_password(str(params.get("service", self.service)), key_name)
        except self._keyring.errors.KeyringError as exc:
            raise ConfigError(f"the OS keyring could not be read ({exc}); unlock it and retry.") from exc
        if not stored:
            raise ConfigError(
                f"the OS keyring holds no master key {key_name!r} for this keystore (service "
                f"{params.get('service', self.service)!r}); it was created on another machine or user "
                "account."
            )
        return _unb64(stored, "keyring master key")

    def _set(self, key_name: str, value: str) -> None:
        try:
            self._keyring.set_password(self.service, key_name, value)
        except self._keyring.errors.KeyringError as exc:
            raise ConfigError(f"the OS keyring refused to store the master key ({exc}).") from exc


@dataclass(frozen=True)
class EntryInfo:
    """What :meth:`EncryptedKeystore.entries` tells about an entry (never its value).

    ``version`` counts the values ever set (1 for a new entry); ``key_id`` is the data key encrypting it.
    """

    name: str
    version: int
    key_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RotationReport:
    """The outcome of :meth:`EncryptedKeystore.rotate_key`: keys retired, new key, entries re-encrypted."""

    retired_key_ids: tuple[str, ...]
    active_key_id: str
    reencrypted: int


@dataclass(frozen=True)
class _Loaded:
    signature: tuple[int, int, int]
    doc: dict[str, Any]


class EncryptedKeystore:
    """Secrets in one encrypted file; see the module docstring for the design.

    Parameters
    ----------
    path
        The keystore file. :meth:`create` makes a new one; the constructor opens an existing one.
    key_source
        A :class:`PassphraseKeySource` or :class:`KeyringKeySource` (the kind the store was created with).

    Raises
    ------
    DataNotFoundError
        The file does not exist (create it with :meth:`EncryptedKeystore.create`).
    ConfigError
        Wrong passphrase, or a key source of another kind than the store's.
    StorageError
        The file is not a keystore, was modified (authentication failed) or is readable by other users.

    Examples
    --------
    >>> ks = EncryptedKeystore.create("secrets.keystore", PassphraseKeySource("correct horse battery"))
    ... # doctest: +SKIP
    >>> ks.set("oanda.token", "abc123")  # doctest: +SKIP
    >>> ks.get("oanda.token").reveal()  # doctest: +SKIP
    'abc123'
    """

    def __init__(self, path: str | Path, key_source: KeySource) -> None:
        self.path = Path(path)
        if not isinstance(key_source, KeySource):
            raise ConfigError(
                "key_source must be a PassphraseKeySource or KeyringKeySource, got "
                f"{type(key_source).__name__}."
            )
        self._source = key_source
        self._lock = threading.RLock()
        self._loaded: _Loaded | None = None
        self._data_keys: dict[tuple[str, str], bytes] = {}  # (key id, wrapped b64) -> data key
        self._master: tuple[str, bytes, bytes] | None = None  # (params JSON, wrap key, MAC key)
        if not self.path.is_file():
            raise DataNotFoundError(
                f"keystore {self.path} does not exist; create it with `alphaloom secrets init` or "
                "EncryptedKeystore.create(path, key_source)."
            )
        self._read()

    def __repr__(self) -> str:
        return f"EncryptedKeystore(path={str(self.path)!r})"

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls, path: str | Path, key_source: KeySource, config: KeystoreConfig | None = None
    ) -> EncryptedKeystore:
        """Create an empty keystore at ``path`` (mode 0600) and open it.

        Raises
        ------
        ConfigError
            ``path`` already exists (a keystore is never overwritten) or its directory does not.
        """
        path = Path(path)
        config = config or KeystoreConfig()
        if path.exists():
            raise ConfigError(f"{path} already exists; open it with EncryptedKeystore(path, ...) instead.")
        if not path.parent.is_dir():
            raise ConfigError(f"the directory {path.parent} does not exist; create it first.")
        store_id = uuid.uuid4().hex
        master = {"source": key_source.kind, **key_source.new_params(config, store_id)}
        wrap_key, mac_key = _split_master(key_source.master_key(master, store_id))
        now = _now()
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "version": _VERSION,
            "store_id": store_id,
            "cipher": config.cipher,
            "master": master,
            "verifier": _verifier(mac_key, store_id),
            "active_key": "k1",
            "keys": {"k1": _new_key_record(wrap_key, store_id, "k1", now)},
            "entries": {},
            "generation": 0,
        }
        with _writer_lock(path):
            if path.exists():
                raise ConfigError(
                    f"{path} already exists; open it with EncryptedKeystore(path, ...) instead."
                )
            _atomic_write(path, _seal(doc, mac_key))
        return cls(path, key_source)

    # ------------------------------------------------------------------ reading

    def get(self, name: str) -> Secret:
        """The value of entry ``name``, decrypted.

        Raises
        ------
        ConfigError
            No such entry (the message lists the names held, never a value).
        StorageError
            The entry fails authentication (the file was modified) or is under a retired key.
        """
        _check_name(name)
        with self._lock:
            doc = self._read()
            entry = doc["entries"].get(name)
            if entry is None:
                names = sorted(doc["entries"])
                raise ConfigError(
                    f"keystore {self.path} has no secret {name!r}.{did_you_mean(name, names)} Names held: "
                    f"{', '.join(names) or 'none'}. Add it with `alphaloom secrets set {name}`."
                )
            return Secret(self._decrypt(doc, name, entry))

    def names(self) -> list[str]:
        """The entry names, sorted."""
        with self._lock:
            return sorted(self._read()["entries"])

    def entries(self) -> list[EntryInfo]:
        """Every entry's name, version, data key and times; never a value."""
        with self._lock:
            doc = self._read()
        return [
            EntryInfo(
                name=name,
                version=int(e["version"]),
                key_id=str(e["key_id"]),
                created_at=datetime.fromisoformat(e["created_at"]),
                updated_at=datetime.fromisoformat(e["updated_at"]),
            )
            for name, e in sorted(doc["entries"].items())
        ]

    def key_status(self) -> dict[str, str]:
        """Data key id -> ``"active"``, ``"retiring"`` (a rotation in progress) or ``"retired"``."""
        with self._lock:
            return {k: str(v["status"]) for k, v in self._read()["keys"].items()}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._read()["entries"]

    # ------------------------------------------------------------------ writing

    def set(self, name: str, value: str | Secret) -> int:
        """Store ``value`` under ``name`` (encrypted with the active data key); returns the entry's version.

        Raises
        ------
        ConfigError
            A bad name, or an empty or non-string value.
        """
        _check_name(name)
        plain = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(plain, str) or not plain:
            raise ConfigError(
                f"the value of secret {name!r} must be a non-empty string, got "
                f"{'an empty string' if plain == '' else type(plain).__name__}."
            )
        with self._transaction() as doc:
            now = _now()
            old = doc["entries"].get(name)
            version = int(old["version"]) + 1 if old else 1
            created = old["created_at"] if old else now
            doc["entries"][name] = self._encrypt(doc, name, plain, doc["active_key"], version, created, now)
            return version

    def delete(self, name: str) -> None:
        """Remove entry ``name``.

        Raises
        ------
        ConfigError
            No such entry.
        """
        _check_name(name)
        with self._transaction() as doc:
            if name not in doc["entries"]:
                raise ConfigError(f"keystore {self.path} has no secret {name!r} to delete.")
            del doc["entries"][name]

    def rotate_key(self) -> RotationReport:
        """Re-encrypt every entry under a new data key, then retire the old key(s).

        Readers keep working throughout: each step replaces the file atomically and the file always holds
        every data key its entries need. A rotation interrupted by a crash is finished by the next call.
        """
        with self._transaction() as doc:
            old = [k for k, v in doc["keys"].items() if v["status"] in ("active", "retiring")]
            new_id = f"k{max(int(k[1:]) for k in doc['keys']) + 1}"
            wrap_key, _ = self._master_keys(doc)
            for key_id in old:
                doc["keys"][key_id]["status"] = "retiring"
            doc["keys"][new_id] = _new_key_record(wrap_key, doc["store_id"], new_id, _now())
            doc["active_key"] = new_id
        reencrypted = 0
        for name in self.names():
            with self._transaction() as doc:
                entry = doc["entries"].get(name)
                if entry is None or entry["key_id"] == new_id:
                    continue  # deleted or re-set meanwhile: nothing to do
                plain = self._decrypt(doc, name, entry)
                doc["entries"][name] = self._encrypt(
                    doc, name, plain, new_id, int(entry["version"]), entry["created_at"], entry["updated_at"]
                )
                reencrypted += 1
        with self._transaction() as doc:
            left = sorted({e["key_id"] for e in doc["entries"].values()} & set(old))
            if left:  # cannot happen with the lock held by every writer; refuse rather than lose data
                raise StorageError(f"rotation left entries under {left}; run rotate_key() again.")
            now = _now()
            for key_id in old:
                record = doc["keys"][key_id]
                doc["keys"][key_id] = {
                    "status": "retired",
                    "created_at": record["created_at"],
                    "retired_at": now,
                }
        return RotationReport(retired_key_ids=tuple(old), active_key_id=new_id, reencrypted=reencrypted)

    def change_passphrase(self, new_source: KeySource, config: KeystoreConfig | None = None) -> None:
        """Re-wrap the data keys under a master key from ``new_source`` (a new salt too) in one write.

        Entries are not re-encrypted (their data keys do not change); processes holding the old passphrase
        can no longer open the store.
        """
        config = config or KeystoreConfig()
        with self._transaction(reseal=False) as doc:
            old_wrap, _ = self._master_keys(doc)
            master = {"source": new_source.kind, **new_source.new_params(config, doc["store_id"])}
            wrap_key, mac_key = _split_master(new_source.master_key(master, doc["store_id"]))
            for key_id, record in doc["keys"].items():
                if record["status"] != "retired":
                    data_key = _unwrap(old_wrap, doc["store_id"], key_id, record, self.path)
                    record.update(_wrap(wrap_key, doc["store_id"], key_id, data_key))
            doc["master"] = master
            doc["verifier"] = _verifier(mac_key, doc["store_id"])
            doc["generation"] = int(doc["generation"]) + 1
            _atomic_write(self.path, _seal(doc, mac_key))
            self._source, self._master, self._loaded = new_source, None, None

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _transaction(self, *, reseal: bool = True) -> Iterator[dict[str, Any]]:
        with self._lock, _writer_lock(self.path):
            self._loaded = None  # re-read under the lock: another process may have written
            doc = json.loads(json.dumps(self._read()))  # a private copy to modify
            yield doc
            if reseal:
                doc["generation"] = int(doc["generation"]) + 1
                _, mac_key = self._master_keys(doc)
                _atomic_write(self.path, _seal(doc, mac_key))
                self._loaded = None

    def _read(self) -> dict[str, Any]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError as exc:
                raise DataNotFoundError(f"keystore {self.path} has disappeared.") from exc
            signature = (st.st_ino, st.st_mtime_ns, st.st_size)
            if self._loaded is not None and self._loaded.signature == signature:
                return self._loaded.doc
            if stat.S_IMODE(st.st_mode) & 0o077:
                raise StorageError(
                    f"keystore {self.path} is accessible to other users (mode "
                    f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {self.path}`."
                )
            try:
                raw = self.path.read_bytes()
            except OSError as exc:
                raise StorageError(f"keystore {self.path} could not be read: {exc.strerror}.") from exc
            doc = _parse(raw, self.path)
            if doc["master"].get("source") != self._source.kind:
                raise ConfigError(
                    f"keystore {self.path} is keyed by a {doc['master'].get('source')} but a "
                    f"{self._source.kind} was given; open it with the matching key source."
                )
            wrap_key, mac_key = self._master_keys(doc)
            if not hmac.compare_digest(_verifier(mac_key, doc["store_id"]), str(doc.get("verifier", ""))):
                raise ConfigError(
                    f"wrong passphrase (or master key) for keystore {self.path}: it does not match the one "
                    "the store was created with. Check ALPHALOOM_KEYSTORE_PASSPHRASE or the keyring entry."
                )
            expected = _mac(mac_key, doc)
            if not hmac.compare_digest(expected, str(doc.get("mac", ""))):
                raise StorageError(
                    f"keystore {self.path} failed authentication: its content was modified outside alphaloom "
                    "(tampering or corruption). Restore it from a backup; do not trust its entries."
                )
            active = doc["keys"].get(doc["active_key"])
            if active is None or active["status"] != "active":
                raise StorageError(f"keystore {self.path} has no usable active key; the file is damaged.")
            _unwrap(wrap_key, doc["store_id"], doc["active_key"], active, self.path)
            self._loaded = _Loaded(signature, doc)
            return doc

    def _master_keys(self, doc: Mapping[str, Any]) -> tuple[bytes, bytes]:
        params = json.dumps(doc["master"], sort_keys=True)
        if self._master is None or self._master[0] != params:
            wrap_key, mac_key = _split_master(self._source.master_key(doc["master"], doc["store_id"]))
            self._master = (params, wrap_key, mac_key)
        return self._master[1], self._master[2]

    def _data_key(self, doc: Mapping[str, Any], key_id: str, name: str) -> bytes:
        record = doc["keys"].get(key_id)
        if record is None:
            raise StorageError(f"keystore {self.path}: secret {name!r} names an unknown key {key_id!r}.")
        if record["status"] == "retired":
            raise StorageError(
                f"keystore {self.path}: secret {name!r} is encrypted under key {key_id!r}, which was retired "
                f"on {record.get('retired_at', '?')} and is refused. Set the secret again "
                f"(`alphaloom secrets set {name}`)."
            )
        cache_key = (key_id, str(record["wrapped"]))
        if cache_key not in self._data_keys:
            wrap_key, _ = self._master_keys(doc)
            self._data_keys[cache_key] = _unwrap(wrap_key, doc["store_id"], key_id, record, self.path)
        return self._data_keys[cache_key]

    def _aead(self, doc: Mapping[str, Any], key: bytes) -> AESGCM | ChaCha20Poly1305:
        return _CIPHERS[doc["cipher"]](key)

    def _encrypt(
        self, doc: Mapping[str, Any], name: str, plain: str, key_id: str, version: int, created: str, now: str
    ) -> dict[str, Any]:
        nonce = os.urandom(_NONCE_LEN)
        aad = _entry_aad(doc["store_id"], name, key_id, version)
        ciphertext = self._aead(doc, self._data_key(doc, key_id, name)).encrypt(nonce, plain.encode(), aad)
        return {
            "key_id": key_id,
            "version": version,
            "nonce": _b64(nonce),
            "ciphertext": _b64(ciphertext),
            "created_at": created,
            "updated_at": now,
        }

    def _decrypt(self, doc: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> str:
        key = self._data_key(doc, str(entry["key_id"]), name)
        aad = _entry_aad(doc["store_id"], name, str(entry["key_id"]), int(entry["version"]))
        try:
            plain = self._aead(doc, key).decrypt(
                _unb64(entry["nonce"], "nonce"), _unb64(entry["ciphertext"], "ciphertext"), aad
            )
            return plain.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError, ValueError) as exc:
            raise StorageError(
                f"keystore {self.path}: secret {name!r} failed authentication (its ciphertext or metadata "
                "was modified). Restore the file from a backup or set the secret again."
            ) from exc


class KeystoreSecretProvider:
    """A :class:`~alphaloom.core.secrets.SecretProvider` over an :class:`EncryptedKeystore`.

    Each :meth:`get` reads the keystore as it is now (the file is re-read only when it changed), so a
    credential rotated by ``alphaloom secrets rotate`` in another process is used at the next request.

    Parameters
    ----------
    keystore
        The open keystore.
    prefix
        Prepended to the names asked for: with ``prefix="oanda."`` a connector's ``get("token")`` reads the
        entry ``oanda.token``.
    """

    def __init__(self, keystore: EncryptedKeystore, prefix: str = "") -> None:
        if prefix and not re.match(r"^[A-Za-z][A-Za-z0-9_.\-]*$", prefix):
            raise ConfigError(f"a keystore prefix is letters, digits, '_', '.' and '-', got {prefix!r}.")
        self.keystore = keystore
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"KeystoreSecretProvider(path={str(self.keystore.path)!r}, prefix={self.prefix!r})"

    def get(self, name: str) -> Secret:
        """The secret ``prefix + name``.

        Raises
        ------
        ConfigError
            The keystore has no such entry (the message says how to add it).
        """
        return self.keystore.get(self.prefix + name)


# ---------------------------------------------------------------------- helpers


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            "keystore names are 1-128 letters, digits, '_', '.' and '-' starting with a letter "
            f"(e.g. 'oanda.token'), got {name!r}."
        )
    return name


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not text")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _split_master(master: bytes) -> tuple[bytes, bytes]:
    if len(master) != _MASTER_LEN:
        raise StorageError(f"the master key must be {_MASTER_LEN} bytes, got {len(master)}.")
    out = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"alphaloom-keystore/v1").derive(master)
    return out[:32], out[32:]


def _verifier(mac_key: bytes, store_id: str) -> str:
    return hmac.new(mac_key, b"verifier:" + store_id.encode(), hashlib.sha256).hexdigest()


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {k: v for k, v in doc.items() if k != "mac"}, sort_keys=True, separators=(",", ":")
    ).encode()


def _mac(mac_key: bytes, doc: Mapping[str, Any]) -> str:
    return hmac.new(mac_key, _canonical(doc), hashlib.sha256).hexdigest()


def _seal(doc: dict[str, Any], mac_key: bytes) -> bytes:
    doc["mac"] = _mac(mac_key, doc)
    return json.dumps(doc, sort_keys=True, indent=1).encode()


def _key_aad(store_id: str, key_id: str) -> bytes:
    return f"{_FORMAT}/v{_VERSION}/data-key/{store_id}/{key_id}".encode()


def _entry_aad(store_id: str, name: str, key_id: str, version: int) -> bytes:
    return json.dumps([_FORMAT, _VERSION, store_id, name, key_id, version]).encode()


def _wrap(wrap_key: bytes, store_id: str, key_id: str, data_key: bytes) -> dict[str, str]:
    nonce = os.urandom(_NONCE_LEN)
    wrapped = AESGCM(wrap_key).encrypt(nonce, data_key, _key_aad(store_id, key_id))
    return {"nonce": _b64(nonce), "wrapped": _b64(wrapped)}


def _unwrap(wrap_key: bytes, store_id: str, key_id: str, record: Mapping[str, Any], path: Path) -> bytes:
    try:
        return AESGCM(wrap_key).decrypt(
            _unb64(record["nonce"], "nonce"),
            _unb64(record["wrapped"], "wrapped key"),
            _key_aad(store_id, key_id),
        )
    except (InvalidTag, KeyError, ValueError) as exc:
        raise StorageError(
            f"keystore {path}: data key {key_id!r} failed authentication; the key table was modified. "
            "Restore the file from a backup."
        ) from exc


def _new_key_record(wrap_key: bytes, store_id: str, key_id: str, now: str) -> dict[str, Any]:
    return {
        "status": "active",
        "created_at": now,
        **_wrap(wrap_key, store_id, key_id, _random.token_bytes(32)),
    }


def _parse(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError(
            f"{path} is not a keystore (not JSON: {exc}); it is damaged or another kind of file."
        ) from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise StorageError(f"{path} is not an alphaloom keystore (no '{_FORMAT}' format marker).")
    if doc.get("version") != _VERSION:
        raise StorageError(
            f"keystore {path} has format version {doc.get('version')!r}; this alphaloom reads version "
            f"{_VERSION}. Upgrade alphaloom."
        )
    shape = {
        "store_id": str,
        "cipher": str,
        "master": dict,
        "keys": dict,
        "entries": dict,
        "active_key": str,
        "generation": int,
    }
    for key, kind in shape.items():
        if not isinstance(doc.get(key), kind):
            raise StorageError(
                f"keystore {path} is damaged: field {key!r} is missing or not a {kind.__name__}."
            )
    if doc["cipher"] not in _CIPHERS:
        raise StorageError(f"keystore {path} names an unknown cipher {doc['cipher']!r}.")
    for key_id, record in doc["keys"].items():
        if not _KEY_ID.match(key_id) or not isinstance(record, dict) or "status" not in record:
            raise StorageError(f"keystore {path} is damaged: bad key record {key_id!r}.")
    for name, entry in doc["entries"].items():
        fields = ("key_id", "version", "nonce", "ciphertext", "created_at", "updated_at")
        if not isinstance(entry, dict) or any(f not in entry for f in fields):
            raise StorageError(f"keystore {path} is damaged: entry {name!r} lacks fields.")
    return doc


@contextlib.contextmanager
def _writer_lock(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
