"""Frozen per-component configs, loaded from TOML or YAML.

Every component takes one config object as its single argument (``CNNLSTM(config)``). Configs are frozen
pydantic models that reject unknown keys with a "did you mean" hint, and :meth:`ComponentConfig.config_hash`
gives a stable hash of their content for caches and the model registry.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, did_you_mean

__all__ = ["ComponentConfig", "load_config", "read_config_file"]

C = TypeVar("C", bound="ComponentConfig")


class ComponentConfig(BaseModel):
    """Base of every component config: frozen, unknown keys rejected, content-hashable."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> Self:
        """Build from a plain mapping, turning validation errors into one readable :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table of settings, got {type(data).__name__}.")
        not_text = [k for k in data if not isinstance(k, str)]
        if not_text:
            raise ConfigError(
                f"{source}: setting names must be text, got {not_text[0]!r} ({type(not_text[0]).__name__}); "
                "in YAML quote such keys or fix the indentation. Valid keys: "
                f"{', '.join(sorted(cls.model_fields))}."
            )
        unknown = [k for k in data if k not in cls.model_fields]
        if unknown:
            hints = "".join(did_you_mean(k, cls.model_fields) for k in unknown)
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))} for {cls.__name__}.{hints} "
                f"Valid keys: {', '.join(sorted(cls.model_fields))}."
            )
        for key, value in data.items():
            # Nested component tables get the same "did you mean" treatment as the top level.
            sub = cls.model_fields[key].annotation
            if isinstance(value, dict) and isinstance(sub, type) and issubclass(sub, ComponentConfig):
                sub.from_dict(value, source=f"{source} [{key}]")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            msgs = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
            )
            raise ConfigError(f"{source}: invalid {cls.__name__}: {msgs}") from exc

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied."""
        return self.from_dict({**self.model_dump(), **changes}, source=f"{type(self).__name__}.replace")

    def config_hash(self) -> str:
        """A stable 16-hex-digit hash of the config's class and content."""
        payload = json.dumps(
            {"cls": type(self).__name__, "data": self.model_dump(mode="json")}, sort_keys=True, default=str
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"config file {path} does not exist; check the path.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8."
        ) from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}.") from exc
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml, got {path.suffix!r}.")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings at the top level.")
    not_text = [k for k in data if not isinstance(k, str)]
    if not_text:
        raise ConfigError(
            f"config file {path}: setting names must be text, got {not_text[0]!r} "
            f"({type(not_text[0]).__name__}); quote the key or fix the indentation."
        )
    return data


def load_config(cls: type[C], path: str | Path, section: str | None = None) -> C:
    """Load ``cls`` from a file, optionally from one ``[section]`` of it."""
    data = read_config_file(path)
    if section is not None:
        if section not in data:
            raise ConfigError(
                f"config file {path} has no [{section}] section.{did_you_mean(section, data)} "
                f"Sections present: {', '.join(sorted(data)) or 'none'}."
            )
        data = data[section]
    return cls.from_dict(data, source=f"{path}" + (f" [{section}]" if section else ""))
