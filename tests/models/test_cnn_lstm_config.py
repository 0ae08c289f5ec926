"""CNNLSTMConfig: defaults, validation with teaching errors, hashing."""

from __future__ import annotations

import pytest

from alphaloom.core import ConfigError
from alphaloom.models import CNNLSTMConfig


def test_defaults_match_the_documented_design() -> None:
    cfg = CNNLSTMConfig()
    assert cfg.window == 32
    assert cfg.kernel_sizes == (3, 5, 7, 11)
    assert cfg.conv_width == 64
    assert (cfg.lstm_hidden, cfg.lstm_layers, cfg.attention_heads) == (32, 2, 4)
    assert cfg.flat_threshold == 0.0
    assert cfg.num_threads == 1


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"window": 1}, "window"),
        ({"kernel_sizes": ()}, "at least one kernel"),
        ({"kernel_sizes": (3, 0)}, "kernel_sizes"),
        ({"window": 8, "kernel_sizes": (3, 11)}, "exceed window=8"),
        ({"attention_heads": 3}, "must divide"),
        ({"dropout": 1.0}, "dropout"),
        ({"val_fraction": 0.9}, "val_fraction"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"batch_size": 1}, "batch_size"),
        ({"device": "gpu"}, "device"),
        ({"flat_threshold": -0.1}, "flat_threshold"),
    ],
)
def test_invalid_values_are_refused_with_the_field_named(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CNNLSTMConfig.from_dict(changes)


def test_unknown_key_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'lstm_hidden'"):
        CNNLSTMConfig.from_dict({"lstm_hiden": 8})


def test_frozen_and_hash_follows_content() -> None:
    cfg = CNNLSTMConfig()
    with pytest.raises(ValueError, match="frozen"):
        cfg.window = 8  # type: ignore[misc]
    assert cfg.config_hash() == CNNLSTMConfig().config_hash()
    assert cfg.config_hash() != cfg.replace(seed=1).config_hash()
    assert CNNLSTMConfig.from_dict(cfg.model_dump(mode="json")) == cfg


def test_block_stride_sets_the_sequence_the_lstm_sees() -> None:
    assert CNNLSTMConfig().sequence_length == 17  # bars t, t-2, ..., t-30 plus one padded step
    assert CNNLSTMConfig(block_stride=1).sequence_length == 32
    assert CNNLSTMConfig(conv_blocks=0).sequence_length == 32  # no block, no stride


def test_quick_preset_is_small_and_overridable() -> None:
    quick = CNNLSTMConfig.quick(epochs=1)
    assert quick.epochs == 1
    assert quick.window < CNNLSTMConfig().window
    with pytest.raises(ConfigError, match=r"CNNLSTMConfig\.quick"):
        CNNLSTMConfig.quick(window=2)  # kernel 5 no longer fits
