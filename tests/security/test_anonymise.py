"""Keyed pseudonymisation: stable per key, different across keys and namespaces, not recomputable without
the key, and a frame helper that names bad rows."""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.core.secrets import Secret
from alphaloom.data.sample import load_sample
from alphaloom.security import Pseudonymiser

KEY = "k-" + "7" * 40


def test_stable_for_a_key_and_different_across_keys_and_namespaces() -> None:
    p, q = Pseudonymiser(KEY), Pseudonymiser(Secret("another-key-" + "x" * 30))
    acct = "101-004-1234567-001"
    assert p.pseudonymise(acct, namespace="acct") == Pseudonymiser(KEY).pseudonymise(acct, namespace="acct")
    assert p.pseudonymise(acct, namespace="acct") != q.pseudonymise(acct, namespace="acct")
    assert p.pseudonymise(acct, namespace="acct") != p.pseudonymise(acct, namespace="user")
    assert p.pseudonymise(acct, namespace="acct").startswith("acct_")
    assert len(p.pseudonymise(acct, namespace="acct")) == len("acct_") + 32
    assert p.pseudonymise(42) == p.pseudonymise("42") == p.pseudonymise(np.int64(42))


def test_not_recomputable_without_the_key() -> None:
    p = Pseudonymiser(secrets.token_bytes(32))
    ids = [f"user-{i:05d}" for i in range(500)]
    pseudonyms = set(p.pseudonymise_many(ids, namespace="user"))
    # An attacker with the full list of candidate ids but not the key: a plain hash, or the HMAC under any
    # other key, matches none of them.
    plain = {f"user_{hashlib.sha256(i.encode()).hexdigest()[:32]}" for i in ids}
    guessed = set(Pseudonymiser(secrets.token_bytes(32)).pseudonymise_many(ids, namespace="user"))
    assert not pseudonyms & plain
    assert not pseudonyms & guessed


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.text(min_size=1, max_size=30).filter(str.strip), min_size=2, max_size=40, unique=True))
def test_distinct_ids_get_distinct_stable_pseudonyms(ids: list[str]) -> None:
    p = Pseudonymiser(KEY)
    first = p.pseudonymise_many(ids, namespace="acct")
    assert len(set(first)) == len(ids)
    assert first == [p.pseudonymise(i, namespace="acct") for i in ids]


def test_frame_helper_on_real_bars_with_account_columns() -> None:
    bars = load_sample("fx_daily").head(200).reset_index(drop=True)
    rng = np.random.default_rng(3)
    bars["account_id"] = rng.choice(
        ["101-004-1111111-001", "101-004-2222222-001", "101-004-3333333-001"], 200
    )
    bars["user_id"] = rng.integers(1000, 1010, 200)
    out = Pseudonymiser(KEY).transform_frame(bars, {"account_id": "acct", "user_id": "user"})
    pd.testing.assert_frame_equal(
        out.drop(columns=["account_id", "user_id"]), bars.drop(columns=["account_id", "user_id"])
    )
    assert out["account_id"].nunique() == bars["account_id"].nunique()
    assert out["account_id"].str.startswith("acct_").all()
    assert not out["account_id"].isin(bars["account_id"]).any()
    # The mapping is one to one, so per-account features survive.
    pairs = set(zip(bars["account_id"], out["account_id"], strict=True))
    assert len(pairs) == bars["account_id"].nunique()
    assert bars["account_id"].iloc[0] in set(bars["account_id"])  # the input is not modified


def test_bad_input_is_explained() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Pseudonymiser("short")
    p = Pseudonymiser(KEY)
    with pytest.raises(ConfigError, match="namespace"):
        p.pseudonymise("x", namespace="Bad Space")
    with pytest.raises(DataFormatError, match="empty"):
        p.pseudonymise("  ")
    with pytest.raises(DataFormatError, match="boolean"):
        p.pseudonymise(True)
    frame = pd.DataFrame({"account_id": ["a1", None, "a3"]})
    with pytest.raises(DataFormatError, match=r"column 'account_id', row 1"):
        p.transform_frame(frame, {"account_id": "acct"})
    with pytest.raises(DataFormatError, match="not in the frame"):
        p.transform_frame(frame, {"user_id": "user"})
    assert "7777" not in repr(p)
