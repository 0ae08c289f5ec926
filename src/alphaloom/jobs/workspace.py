"""Where the main job keeps its store, models, reports and run settings.

The data directory comes from ``--data-dir``, else ``$ALPHALOOM_DATA_DIR``, else ``./.alphaloom``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, StorageError
from alphaloom.jobs.config import RunConfig

__all__ = ["DATA_DIR_ENV", "Workspace"]

DATA_DIR_ENV = "ALPHALOOM_DATA_DIR"
_DEFAULT_DIR = ".alphaloom"


@dataclass(frozen=True)
class Workspace:
    """Paths of one data directory. Nothing is created until :meth:`ensure` is called."""

    root: Path

    @classmethod
    def resolve(cls, data_dir: str | Path | None = None) -> Workspace:
        chosen = data_dir or os.environ.get(DATA_DIR_ENV) or _DEFAULT_DIR
        return cls(Path(chosen).expanduser().resolve())

    @property
    def store_path(self) -> Path:
        return self.root / "alphaloom.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def config_path(self) -> Path:
        return self.root / "run_config.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def ensure(self) -> Workspace:
        try:
            for d in (self.root, self.models_dir, self.reports_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the data directory {self.root}: {exc.strerror}.") from exc
        return self

    def open_store(self):  # -> DuckDBBarStore; imported lazily to keep `--help` fast
        from alphaloom.data.storage import DuckDBBarStore

        self.ensure()
        return DuckDBBarStore(self.store_path)

    def require_store(self):
        if not self.store_path.exists():
            raise DataNotFoundError(
                f"no store at {self.store_path}; run `alphaloom data ingest --data-dir {self.root}` first."
            )
        return self.open_store()

    def save_config(self, config: RunConfig) -> None:
        self.ensure()
        self.config_path.write_text(json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True))

    def load_config(self) -> RunConfig | None:
        if not self.config_path.exists():
            return None
        try:
            data = json.loads(self.config_path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{self.config_path} is not valid JSON ({exc}); delete it to start from the defaults."
            ) from exc
        return RunConfig.from_dict(data, source=str(self.config_path))

    def record(self, stage: str, info: dict[str, Any]) -> None:
        """Add what a stage did (figures, paths, wall time) to the manifest."""
        self.ensure()
        manifest = self.manifest()
        manifest[stage] = info
        self.manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {}
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError:
            return {}
