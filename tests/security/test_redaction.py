"""The redaction filter: a battery of credential shapes, hypothesis-generated secrets embedded in text, and
ordinary log lines that must pass through unchanged."""

from __future__ import annotations

import base64
import io
import logging
import random
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError
from alphaloom.core.secrets import Secret
from alphaloom.security import (
    RedactionFilter,
    looks_random,
    redact,
    redaction,
    register_secret,
    setup_logging,
)
from alphaloom.security.redaction import register_secrets_from_environ


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no known secrets (values registered elsewhere would mask test text)."""
    monkeypatch.setattr(redaction, "_REGISTRY", redaction._Registry())


BATTERY = [
    ("Authorization: Bearer ya29.A0ARrdaM-k9Lq2", "ya29.A0ARrdaM-k9Lq2"),
    ("headers={'Authorization': 'Bearer abc.def.ghi123'}", "abc.def.ghi123"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("Proxy-Authorization: Token 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
    ("GET /v3/accounts?api_key=AbCdEf123456&x=1", "AbCdEf123456"),
    ("login failed for password=hunter2hunter2", "hunter2hunter2"),
    ('{"api_secret": "s3cr3t-value-xyz", "symbol": "BTCUSD"}', "s3cr3t-value-xyz"),
    ("ALPHALOOM_OANDA_TOKEN=tok_live_7f6e5d4c", "tok_live_7f6e5d4c"),
    ("client_secret: zz-top-99-secret", "zz-top-99-secret"),
    ("X-Vault-Token: hvs.CAESIJlU8Xf3k", "hvs.CAESIJlU8Xf3k"),
    ("connecting to postgresql://trader:pa55w0rd!@db.internal:5432/prod", "pa55w0rd!"),
    ("redis://:r3d1s-pass@cache:6379/0", "r3d1s-pass"),
    ("aws key AKIAIOSFODNN7EXAMPLE in config", "AKIAIOSFODNN7EXAMPLE"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("vault said hvs.CAESIBx7Qk3mQ9rT2vW8yZ1aB4cD6eF", "hvs.CAESIBx7Qk3mQ9rT2vW8yZ1aB4cD6eF"),
    ("token ghp_1234567890abcdefghijABCDEFGHIJ123456 leaked", "ghp_1234567890abcdefghijABCDEFGHIJ123456"),
    ("slack xoxb-123456789012-abcdefABCDEF", "xoxb-123456789012-abcdefABCDEF"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("stripe sk_live_51HqLyjWDarjtT1zdp7dc", "sk_live_51HqLyjWDarjtT1zdp7dc"),
    ("random blob Q2x8ZmRkN3ZfT0pxLWdHe3R9 in text", "Q2x8ZmRkN3ZfT0pxLWdHe3R9"),
    (
        "key:\n-----BEGIN PRIVATE KEY-----\n"
        "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\nend",
        "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF",
    ),
    (
        "truncated -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oOWxb",
        "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oOWxb",
    ),
]

ORDINARY = [
    "ingest done in 3.2s: 3578 bars for SPY, EURUSD, BTCUSD",
    "wrote /work/main/.alphaloom/reports/report.html",
    "2024-03-06T12:00:30+00:00 bar close 1.0876 volume 1234.5",
    "config hash 3f9c2a1b7d6e5f40 sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "client order id 123e4567-e89b-12d3-a456-426614174000 accepted",
    "SingleAssetTradingEnv reward_scaling 0.01 episode 64",
    "audit chain verified: 120 records, head " + "0" * 64,
    "secret 'api_key' is missing: environment variable ALPHALOOM_OANDA_API_KEY is not set.",
    "PPO trained 4096 steps in 12.5s (fps 327)",
]


@pytest.mark.parametrize(("text", "secret"), BATTERY, ids=[t[:24] for t, _ in BATTERY])
def test_battery_of_credential_shapes_is_masked(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert "***" in out


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_log_lines_pass_unchanged(text: str) -> None:
    assert redact(text) == text


def test_registered_and_secret_wrapped_values_are_masked_anywhere() -> None:
    register_secret("plainpw-42")  # short, no pattern would catch it
    assert redact("the value plainpw-42 appeared") == "the value *** appeared"
    Secret("wrapped-value-77")  # every Secret a provider hands out is learnt
    assert "wrapped-value-77" not in redact("echo wrapped-value-77")
    assert redact("URL-encoded wrapped-value-77 ok") == "URL-encoded *** ok"
    register_secret("p@ss/word#1")
    assert "p%40ss%2Fword%231" not in redact("sent p%40ss%2Fword%231 in a query")


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    assert redact("abc abc") == "abc abc"


def _logger_to(stream: io.StringIO, flt: RedactionFilter) -> logging.Logger:
    logger = logging.getLogger(f"test.redaction.{id(stream)}")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.addFilter(flt)
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    return logger


def test_filter_masks_arguments_exceptions_and_stacks() -> None:
    secret = "Zx9-" + "q7W2e8R4t6Y1u3I5"
    stream = io.StringIO()
    logger = _logger_to(stream, RedactionFilter(extra=[secret]))
    logger.debug("sending %s with %r", secret, {"k": secret})
    try:
        raise ValueError(f"venue said: bad key {secret}")
    except ValueError:
        logger.exception("request failed")
    logger.warning("where", stack_info=True, extra={"x": 1})
    text = stream.getvalue()
    assert secret not in text
    assert "request failed" in text
    assert "ValueError: venue said: bad key ***" in text


def test_a_failing_record_is_withheld_not_passed_through() -> None:
    class Exploding:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    stream = io.StringIO()
    logger = _logger_to(stream, RedactionFilter())
    logger.info("value %s", Exploding())
    assert "withheld" in stream.getvalue()


# ---------------------------------------------------------------------- hypothesis

_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=60
)
_SECRET = st.text(
    alphabet=string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_{|}~", min_size=6, max_size=48
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_TEXT, secret=_SECRET, after=_TEXT)
def test_any_registered_secret_embedded_in_any_text_is_masked(before: str, secret: str, after: str) -> None:
    register_secret(secret)
    assert secret not in redact(before + secret + after)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**64), n_bytes=st.integers(24, 48), before=_TEXT, after=_TEXT)
def test_any_generated_api_token_is_masked_without_registration(
    seed: int, n_bytes: int, before: str, after: str
) -> None:
    token = base64.urlsafe_b64encode(random.Random(seed).randbytes(n_bytes)).decode().rstrip("=")
    text = f"{before} {token} {after}"
    assert token not in redact(text)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(
        [
            "api_key",
            "apiKey",
            "API-KEY",
            "token",
            "access_token",
            "password",
            "passphrase",
            "client_secret",
            "private_key",
            "ALPHALOOM_COINBASE_API_SECRET",
            "x-api-key",
            "secret",
        ]
    ),
    sep=st.sampled_from(["=", ": ", '": "', "='", " = "]),
    value=st.text(alphabet=string.ascii_letters + string.digits + "-_./+!@#$%^*", min_size=1, max_size=40),
    before=_TEXT,
)
def test_any_credential_pair_is_masked(key: str, sep: str, value: str, before: str) -> None:
    text = f"{before} {key}{sep}{value}"
    assert redact(text).endswith(f"{key}{sep}***")


@settings(max_examples=200, deadline=None)
@given(text=_TEXT)
def test_redaction_is_idempotent_and_never_raises(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


def test_looks_random_tells_tokens_from_words_and_digests() -> None:
    assert looks_random("Q2x8ZmRkN3ZfT0pxLWdHe3R9")
    assert not looks_random("SingleAssetTradingEnvironment")
    assert not looks_random("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    assert not looks_random("short1A")


# ---------------------------------------------------------------------- setup_logging


def test_setup_logging_installs_redacting_handlers_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPHALOOM_TESTVENUE_API_SECRET", "env-secret-value-314159")
    log_file = tmp_path / "run.log"
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        setup_logging("DEBUG", log_file, stream=stream)
        setup_logging("DEBUG", log_file, stream=stream)  # a second call replaces, not duplicates
        logging.getLogger("alphaloom.test").debug("loaded env-secret-value-314159 from the environment")
        assert sum(getattr(h, "_alphaloom_redacting", False) for h in root.handlers) == 2
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_alphaloom_redacting", False)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    for text in (stream.getvalue(), log_file.read_text()):
        assert "loaded *** from the environment" in text
        assert "env-secret-value-314159" not in text
        assert text.count("loaded") == 1


def test_setup_logging_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="log level"):
        setup_logging("LOUD")
    with pytest.raises(ConfigError, match="cannot open log file"):
        setup_logging("INFO", tmp_path / "missing-dir" / "x.log")


def test_environment_scan_counts_credential_names_only() -> None:
    env = {
        "ALPHALOOM_OANDA_TOKEN": "tok-123456789",
        "HOME": "/root/home-dir",
        "VAULT_SECRET_ID": "sid-987654321",
    }
    assert register_secrets_from_environ(env) == 2
    assert redact("HOME is /root/home-dir") == "HOME is /root/home-dir"
    assert redact("value sid-987654321") == "value ***"


def test_wrapping_a_secret_again_keeps_its_value() -> None:
    # str(secret) is the mask, so Secret(secret) used to hold "***" instead of the credential.
    inner = Secret("inner-value-123456")
    assert Secret(inner).reveal() == "inner-value-123456"
