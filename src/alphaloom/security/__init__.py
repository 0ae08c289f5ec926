"""Security: secret backends (encrypted keystore, HashiCorp Vault), credential rotation, log redaction and
pseudonymisation of identifiers.

Every backend implements :class:`alphaloom.core.secrets.SecretProvider`, so connectors take any of them:

- :class:`EncryptedKeystore` / :class:`KeystoreSecretProvider`: a local file, AES-256-GCM (or
  ChaCha20-Poly1305) under data keys wrapped by a master key from a passphrase (Argon2id or scrypt) or the OS
  keyring; key rotation without downtime, old keys retired.
- :class:`VaultSecretProvider`: KV v2 through hvac with token or AppRole auth and token renewal.
- :class:`ChainSecretProvider`: several backends in order.

:func:`rotate_credential` replaces a venue credential so running connectors use it at the next request;
:class:`RedactionFilter` and :func:`setup_logging` keep credentials out of logs; :class:`Pseudonymiser` turns
account and user ids into keyed pseudonyms for training data. See ``docs/SECURITY.md``.
"""

from alphaloom.security.anonymise import Pseudonymiser
from alphaloom.security.keystore import (
    EncryptedKeystore,
    EntryInfo,
    KeyringKeySource,
    KeySource,
    KeystoreConfig,
    KeystoreSecretProvider,
    PassphraseKeySource,
    RotationReport,
    argon2_available,
)
from alphaloom.security.redaction import (
    RedactionFilter,
    looks_random,
    redact,
    register_secret,
    register_secrets_from_environ,
    setup_logging,
)
from alphaloom.security.rotation import (
    ChainSecretProvider,
    CredentialRotation,
    WritableSecretStore,
    rotate_credential,
)
from alphaloom.security.vault import VaultConfig, VaultSecret, VaultSecretProvider

__all__ = [
    "ChainSecretProvider",
    "CredentialRotation",
    "EncryptedKeystore",
    "EntryInfo",
    "KeySource",
    "KeyringKeySource",
    "KeystoreConfig",
    "KeystoreSecretProvider",
    "PassphraseKeySource",
    "Pseudonymiser",
    "RedactionFilter",
    "RotationReport",
    "VaultConfig",
    "VaultSecret",
    "VaultSecretProvider",
    "WritableSecretStore",
    "argon2_available",
    "looks_random",
    "redact",
    "register_secret",
    "register_secrets_from_environ",
    "rotate_credential",
    "setup_logging",
]
