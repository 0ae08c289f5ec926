"""Secrets: providers, clear errors, and values that never reach a repr, a log line or an error message."""

from __future__ import annotations

import logging
import pickle

import pytest

from alphaloom.core.exceptions import ConfigError
from alphaloom.core.secrets import EnvSecretProvider, Secret, SecretProvider, StaticSecretProvider

VALUE = "sk-live-9f8e7d6c5b4a"


def test_secret_text_forms_are_masked() -> None:
    s = Secret(VALUE)
    # Every way code formats values, on purpose including the old ones.
    forms = (str(s), repr(s), f"{s}", f"{s!s}", f"{s!r}", "%s" % s, "{}".format(s), f"{s:>10}", str([s]))  # noqa: UP031, UP032
    for text in forms:
        assert VALUE not in text
        assert "***" in text
    assert s.reveal() == VALUE


def test_secret_is_still_a_usable_string() -> None:
    s = Secret(VALUE)
    assert isinstance(s, str)
    assert s == VALUE
    assert len(s) == len(VALUE)
    assert s.encode() == VALUE.encode()
    assert hash(s) == hash(VALUE)
    restored = pickle.loads(pickle.dumps(s))
    assert isinstance(restored, Secret)
    assert restored.reveal() == VALUE


def test_secret_never_appears_in_logs_or_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    s = StaticSecretProvider(api_key=VALUE).get("api_key")
    with caplog.at_level(logging.INFO):
        logging.getLogger("alphaloom.test").info("connecting with key %s (%r)", s, s)
    assert VALUE not in caplog.text
    err = ValueError(f"request failed with key={s}")
    assert VALUE not in str(err)
    assert VALUE not in repr(err)


def test_env_provider_reads_prefixed_upper_case_variables() -> None:
    provider = EnvSecretProvider("ALPHALOOM_OANDA_", environ={"ALPHALOOM_OANDA_API_KEY": f"  {VALUE}\n"})
    key = provider.get("api_key")
    assert isinstance(key, Secret)
    assert key.reveal() == VALUE
    assert provider.var_name("account_id") == "ALPHALOOM_OANDA_ACCOUNT_ID"
    assert isinstance(provider, SecretProvider)
    assert VALUE not in repr(provider)


def test_env_provider_default_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHALOOM_TOKEN", VALUE)
    assert EnvSecretProvider().get("token").reveal() == VALUE


@pytest.mark.parametrize(("environ", "state"), [({}, "is not set"), ({"X_API_KEY": "  "}, "is empty")])
def test_missing_env_secret_names_the_variable_to_set(environ: dict[str, str], state: str) -> None:
    with pytest.raises(ConfigError) as info:
        EnvSecretProvider("X_", environ=environ).get("api_key")
    message = str(info.value)
    assert "X_API_KEY" in message
    assert state in message
    assert "export X_API_KEY=" in message


def test_errors_name_the_secret_but_never_a_value() -> None:
    provider = StaticSecretProvider({"api_key": VALUE, "api_secret": "s3cr3t-value"})
    with pytest.raises(ConfigError) as info:
        provider.get("api_kee")
    message = str(info.value)
    assert "Did you mean 'api_key'" in message
    assert VALUE not in message
    assert "s3cr3t-value" not in message
    assert VALUE not in repr(provider)


def test_bad_names_and_prefixes_are_refused() -> None:
    with pytest.raises(ConfigError, match="secret names"):
        EnvSecretProvider().get("api-key")
    with pytest.raises(ConfigError, match="prefix"):
        EnvSecretProvider("BAD PREFIX")
    with pytest.raises(ConfigError, match="secret names"):
        StaticSecretProvider({"1st": "x"})
