"""Fuzzing the config loader (hypothesis): random bytes, random TOML and YAML documents, hostile YAML.

``read_config_file`` and ``load_config``/``ComponentConfig.from_dict`` must answer every input with a dict or
config, or with one of our errors (an ``AlphaloomError`` with a message), never another exception or a crash.
The target config is the real run configuration (``RunConfig``, with nested component tables), plus keys
near its field names so the "did you mean" path is exercised. Run with ``--hypothesis-show-statistics`` for
the number of examples; ``ALPHALOOM_FUZZ_EXAMPLES`` sets it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphaloom.core.config import ComponentConfig, load_config, read_config_file
from alphaloom.core.exceptions import AlphaloomError, ConfigError
from alphaloom.jobs.config import RunConfig

FUZZ = settings(
    max_examples=int(os.environ.get("ALPHALOOM_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SUFFIXES = (".toml", ".yaml", ".yml")
FIELDS = sorted(RunConfig.model_fields)


def outcome(text: bytes, suffix: str, section: str | None = None) -> object:
    """Load ``text`` as a config file; the result, or ``None`` for one of our errors with a message."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"run{suffix}"
        path.write_bytes(text)
        try:
            data = read_config_file(path)
            assert isinstance(data, dict)
            return load_config(RunConfig, path, section=section)
        except AlphaloomError as exc:
            message = str(exc)
    assert message.strip(), "an error without a message"
    return None


_KEY = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from([f[:-1] for f in FIELDS] + ["symbls", "sed"]),
    st.text(max_size=12),
)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["SPY", "EURUSD", "2020-01-01", "meta", "thompson", "1e400", "-1", "0"]),
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEY, inner, max_size=4)),
    max_leaves=12,
)
_DOC = st.dictionaries(_KEY, _VALUE, max_size=6)


def _toml_value(value: Any) -> str | None:
    if value is None:
        return None  # TOML has no null: the key is left out
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        items = [v for v in map(_toml_value, value) if v is not None]
        return "[" + ", ".join(items) + "]"
    pairs = [(k, _toml_value(v)) for k, v in value.items()]
    return "{" + ", ".join(f"{json.dumps(k)} = {v}" for k, v in pairs if v is not None) + "}"


def to_toml(doc: dict[str, Any]) -> str:
    lines = []
    for key, value in doc.items():
        text = _toml_value(value)
        if text is not None:
            lines.append(f"{json.dumps(key)} = {text}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_give_a_config_or_our_error(data: bytes, suffix: str) -> None:
    outcome(data, suffix)


@FUZZ
@given(doc=_DOC, fmt=st.sampled_from(["toml", "yaml"]), section=st.sampled_from([None, "run", "seed"]))
def test_random_documents_give_a_config_or_our_error(
    doc: dict[str, Any], fmt: str, section: str | None
) -> None:
    if fmt == "toml":
        text, suffix = to_toml(doc), ".toml"
    else:
        text, suffix = yaml.safe_dump(doc, allow_unicode=True), ".yaml"
    result = outcome(text.encode("utf-8", errors="surrogatepass"), suffix, section)
    if result is not None:
        assert isinstance(result, RunConfig)


@FUZZ
@given(
    base=st.fixed_dictionaries({}, optional={f: _VALUE for f in FIELDS}),
    mutate=st.sampled_from(["as is", "bad symbols", "bad nested", "unknown nested"]),
)
def test_near_valid_run_configs_load_or_explain(base: dict[str, Any], mutate: str) -> None:
    doc = dict(base)
    if mutate == "bad symbols":
        doc["symbols"] = [1, None, {"x": 1}]
    elif mutate == "bad nested":
        doc["rl_budget"] = {"ppo": "lots"}
    elif mutate == "unknown nested":
        doc["split"] = {"embargoo": 3}
    result = outcome(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", errors="surrogatepass"), ".yaml")
    if result is not None:
        assert isinstance(result, RunConfig)
        assert result == RunConfig.from_dict(result.model_dump())


HOSTILE_YAML = [
    b"1: 2\n",
    b"null: x\n",
    b"? [a, b]\n: c\n",
    b"seed: !!python/object/apply:os.system ['true']\n",
    b"a: &a [*a]\n",
    b"x: &x {y: *x}\nseed: 3\n",
    b"- just\n- a list\n",
    b"'just a string'\n",
    b"seed: !!binary aGVsbG8=\n",
    b"start: 2020-01-01\n",
    b"seed: 0x10\n",
    b"symbols: {SPY: 1}\n",
    b"\xff\xfe\x00s\x00e\x00e\x00d\x00",
    b"seed: 1\n" * 3,
    b"a: " + b"[" * 200 + b"]" * 200 + b"\n",
    b"l: &l [a]\nm: &m [*l, *l, *l, *l]\nn: [*m, *m, *m, *m]\n",
    b"%YAML 1.1\n---\nseed: 1\n...\n---\nseed: 2\n",
]
HOSTILE_TOML = [
    b"seed = 1\nseed = 2\n",
    b'"" = 1\n',
    b"[split]\nembargoo = 1\n",
    b"a = " + b"[" * 200 + b"]" * 200 + b"\n",
    b"start = 2020-01-01\n",
    b"seed = 1979-05-27T07:32:00Z\n",
    b"seed = nan\n",
    b"seed = 99999999999999999999999999\n",
    b"\x00",
    b"[[seed]]\n",
    b"risk = {}\n",
]


@pytest.mark.parametrize("text", HOSTILE_YAML)
def test_hostile_yaml_gives_our_error_or_a_config(text: bytes) -> None:
    outcome(text, ".yaml")


@pytest.mark.parametrize("text", HOSTILE_TOML)
def test_hostile_toml_gives_our_error_or_a_config(text: bytes) -> None:
    outcome(text, ".toml")


def test_non_text_keys_and_undecodable_files_are_explained(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_bytes(b"1: 2\nseed: 3\n")
    with pytest.raises(ConfigError, match="setting names must be text, got 1"):
        load_config(RunConfig, path)
    path.write_bytes(b"symbls: [SPY]\n")
    with pytest.raises(ConfigError, match="Did you mean 'symbols'"):
        load_config(RunConfig, path)
    with pytest.raises(ConfigError, match="setting names must be text"):
        RunConfig.from_dict({None: 1})  # type: ignore[dict-item]
    path.write_bytes(b"seed: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_config_file(path)
    with pytest.raises(ConfigError, match="expected a table"):
        RunConfig.from_dict(["seed", 1])  # type: ignore[arg-type]
    assert issubclass(RunConfig, ComponentConfig)
