"""``alphaloom secrets``: the keystore and Vault from the command line, and the process's logging setup.

Where things come from:

- the keystore file: ``--keystore``, else ``$ALPHALOOM_KEYSTORE``, else ``<data dir>/secrets.keystore``;
- its passphrase: ``$ALPHALOOM_KEYSTORE_PASSPHRASE``, else ``--passphrase-file``, else a hidden prompt;
- Vault: ``--vault-config FILE`` (a TOML/YAML :class:`~alphaloom.security.vault.VaultConfig`), login from
  ``VAULT_TOKEN`` or ``VAULT_ROLE_ID``/``VAULT_SECRET_ID``.

Secret values are never taken from the command line (shell history, ``ps``): they come from a file, standard
input or a hidden prompt, and are printed only with ``--reveal``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from alphaloom.core.config import read_config_file
from alphaloom.core.exceptions import ConfigError, DataNotFoundError
from alphaloom.core.secrets import EnvSecretProvider, Secret, SecretProvider
from alphaloom.security import (
    ChainSecretProvider,
    CredentialRotation,
    EncryptedKeystore,
    EntryInfo,
    KeystoreConfig,
    KeystoreSecretProvider,
    PassphraseKeySource,
    RotationReport,
    VaultConfig,
    VaultSecretProvider,
    WritableSecretStore,
    redact,
    rotate_credential,
    setup_logging,
)

__all__ = [
    "KEYSTORE_ENV",
    "PASSPHRASE_ENV",
    "SecretsLocation",
    "configure_logging",
    "init_keystore",
    "list_entries",
    "open_store",
    "read_secret_value",
    "redact",
    "rotate",
    "rotate_key",
    "venue_secret_provider",
]

KEYSTORE_ENV = "ALPHALOOM_KEYSTORE"
PASSPHRASE_ENV = "ALPHALOOM_KEYSTORE_PASSPHRASE"
KEYSTORE_FILE = "secrets.keystore"


def configure_logging(level: str = "WARNING", log_file: Path | None = None) -> None:
    """The CLI's logging: redacting handlers on the root logger (:func:`alphaloom.security.setup_logging`)."""
    setup_logging(level, log_file)


@dataclass(frozen=True)
class SecretsLocation:
    """Which backend the ``secrets`` commands use: a keystore file or a Vault secret."""

    backend: str
    keystore: Path | None = None
    vault_config: Path | None = None

    @classmethod
    def resolve(
        cls,
        *,
        backend: str = "keystore",
        keystore: Path | None = None,
        data_dir: Path | None = None,
        vault_config: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> SecretsLocation:
        environ = os.environ if environ is None else environ
        if backend == "vault":
            if vault_config is None:
                raise ConfigError(
                    "--backend vault needs --vault-config FILE: a TOML/YAML file with url, mount, path and "
                    "auth (see docs/SECURITY.md)."
                )
            return cls("vault", vault_config=vault_config)
        if backend != "keystore":
            raise ConfigError(f"--backend must be 'keystore' or 'vault', got {backend!r}.")
        if keystore is None:
            if environ.get(KEYSTORE_ENV):
                keystore = Path(environ[KEYSTORE_ENV])
            else:
                from alphaloom.jobs.workspace import Workspace

                keystore = Workspace.resolve(data_dir).root / KEYSTORE_FILE
        return cls("keystore", keystore=Path(keystore).expanduser())


def _passphrase(
    passphrase_file: Path | None, prompt: Callable[[str], str] | None, environ: Mapping[str, str]
) -> Secret:
    if environ.get(PASSPHRASE_ENV):
        return Secret(environ[PASSPHRASE_ENV])
    if passphrase_file is not None:
        return Secret(_read_value_file(passphrase_file, "passphrase file"))
    if prompt is None:
        raise ConfigError(
            f"the keystore needs its passphrase: set {PASSPHRASE_ENV} or pass --passphrase-file FILE."
        )
    return Secret(prompt("keystore passphrase"))


def init_keystore(
    location: SecretsLocation,
    *,
    passphrase_file: Path | None = None,
    prompt: Callable[[str], str] | None = None,
    config: KeystoreConfig | None = None,
    environ: Mapping[str, str] | None = None,
) -> EncryptedKeystore:
    """Create an empty keystore (mode 0600) at the resolved location; its directory is created if needed."""
    environ = os.environ if environ is None else environ
    if location.keystore is None:
        raise ConfigError("`secrets init` creates a keystore; Vault secrets are created in Vault.")
    location.keystore.parent.mkdir(parents=True, exist_ok=True)
    source = PassphraseKeySource(_passphrase(passphrase_file, prompt, environ))
    return EncryptedKeystore.create(location.keystore, source, config)


def open_store(
    location: SecretsLocation,
    *,
    passphrase_file: Path | None = None,
    prompt: Callable[[str], str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> EncryptedKeystore | VaultSecretProvider:
    """The keystore or the Vault provider the ``secrets`` commands work on."""
    environ = os.environ if environ is None else environ
    if location.backend == "vault":
        assert location.vault_config is not None
        cfg = VaultConfig.from_dict(
            read_config_file(location.vault_config), source=str(location.vault_config)
        )
        return VaultSecretProvider(
            cfg.replace(cache_ttl_s=0.0), credentials=EnvSecretProvider("VAULT_", environ=environ)
        )
    assert location.keystore is not None
    if not location.keystore.is_file():
        raise DataNotFoundError(
            f"no keystore at {location.keystore}; create one with `alphaloom secrets init` (or point "
            f"{KEYSTORE_ENV} / --keystore at yours)."
        )
    return EncryptedKeystore(
        location.keystore, PassphraseKeySource(_passphrase(passphrase_file, prompt, environ))
    )


def list_entries(store: EncryptedKeystore | VaultSecretProvider) -> list[EntryInfo] | list[tuple[str, int]]:
    """Keystore: every entry's metadata. Vault: (key, version) of the latest version. Never values."""
    if isinstance(store, EncryptedKeystore):
        return store.entries()
    secret = store.read()
    return [(name, secret.version) for name in sorted(secret.data)]


def rotate_key(store: EncryptedKeystore | VaultSecretProvider) -> RotationReport:
    """Re-encrypt the keystore under a new data key and retire the old one (keystore only)."""
    if not isinstance(store, EncryptedKeystore):
        raise ConfigError(
            "rotate-key re-encrypts a local keystore; Vault's encryption keys are rotated in Vault "
            "(`vault operator rotate`)."
        )
    return store.rotate_key()


def rotate(store: WritableSecretStore, name: str, value: str | Secret) -> CredentialRotation:
    """Write a new value for credential ``name``; running connectors use it at their next request."""
    return rotate_credential(store, name, value)


def read_secret_value(
    value_file: Path | None,
    *,
    stdin_text: Callable[[], str] | None,
    prompt: Callable[[str], str] | None,
    name: str,
) -> Secret:
    """A secret value from ``--value-file``, else piped standard input, else a hidden prompt."""
    if value_file is not None:
        return Secret(_read_value_file(value_file, "value file"))
    if stdin_text is not None:
        text = stdin_text().strip("\r\n")
        if not text:
            raise ConfigError(
                f"standard input held no value for {name!r}; pipe the value in or use --value-file."
            )
        return Secret(text)
    if prompt is None:
        raise ConfigError(f"no value for {name!r}: pass --value-file FILE or pipe it on standard input.")
    return Secret(prompt(f"value of {name}"))


def _read_value_file(path: Path, what: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"{what} {path} does not exist; check the path.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} could not be read as UTF-8 text ({exc}).") from exc
    value = text.strip("\r\n")
    if not value:
        raise ConfigError(f"{what} {path} is empty.")
    return value


def venue_secret_provider(venue: str, *, environ: Mapping[str, str] | None = None) -> SecretProvider:
    """The credentials of ``venue`` for a long-running process: the keystore first, then the environment.

    With ``$ALPHALOOM_KEYSTORE`` and ``$ALPHALOOM_KEYSTORE_PASSPHRASE`` set, entries ``<venue>.<name>``
    (``oanda.token``) come from the keystore, read at each use, so ``alphaloom secrets rotate oanda.token`` in
    another shell takes effect at the connector's next request; anything missing there falls back to
    ``ALPHALOOM_<VENUE>_<NAME>``. Without a keystore it is the environment alone.
    """
    environ = os.environ if environ is None else environ
    env = EnvSecretProvider(f"ALPHALOOM_{venue.upper().replace('-', '_')}_", environ=environ)
    path = environ.get(KEYSTORE_ENV)
    if not path or not environ.get(PASSPHRASE_ENV):
        return env
    keystore = EncryptedKeystore(Path(path), PassphraseKeySource(Secret(environ[PASSPHRASE_ENV])))
    return ChainSecretProvider(KeystoreSecretProvider(keystore, prefix=f"{venue}."), env)
