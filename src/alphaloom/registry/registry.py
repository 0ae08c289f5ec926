"""The model registry: MLflow underneath, alphaloom's small interface on top, every transition audited.

MLflow's tracking store and model registry hold the versions (a SQLite file in the workspace by default,
PostgreSQL in production); their artefacts are copied under the workspace. alphaloom adds:

* **Lineage.** Each version carries a :class:`~alphaloom.registry.lineage.Lineage` (data fingerprint, feature
  config hash, training config, code version, parent models), stored as the run's ``alphaloom/lineage.json``
  with its hashes as version tags, and its metrics as the run's metrics.
* **Stages through aliases.** ``candidate -> challenger -> champion -> archived``. Each version has an
  ``alphaloom.stage`` tag; the aliases ``@champion`` and ``@challenger`` point to the current ones (MLflow
  aliases are unique per model) and ``@candidate`` to the newest candidate. The registered model keeps its
  champion history, so :meth:`ModelRegistry.rollback` can restore the one before.
* **A promotion gate and an approver** (:mod:`alphaloom.registry.gates`) for every move up.
* **An audit trail.** Every registration, promotion, rejected promotion, archive and rollback is appended to
  the relational store's hash-chained audit log (``model.*`` actions), and the version with its stage is
  mirrored into the store's ``model_versions`` table (challenger as ``staging``, champion as
  ``production``), so the store alone answers which model was live when.

MLflow never reaches the network: the tracking URI is always explicit (``sqlite:`` or ``postgresql:``; an
``http(s):`` tracking server is refused), telemetry is off, and artefacts stay on the local disk.

Registry layout (``root`` is usually the workspace)::

    <root>/mlruns.db        MLflow tracking + registry store (SQLite default)
    <root>/mlartifacts/     run artefacts: the model files, alphaloom/lineage.json
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    StorageError,
    did_you_mean,
)
from alphaloom.data.storage.relational import ModelStage, RelationalStore
from alphaloom.registry.gates import (
    ApproverLike,
    GateDecision,
    PromotionEvidence,
    PromotionGate,
    role_of,
)
from alphaloom.registry.lineage import Lineage

# Before mlflow is first imported (lazily, below): no telemetry, no progress bars, no network.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
for _logger in ("mlflow", "alembic"):
    logging.getLogger(_logger).setLevel(logging.WARNING)

__all__ = ["MODEL_KINDS", "ModelRegistry", "ModelVersionInfo", "PromotionResult", "Stage"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Stage(StrEnum):
    """The life of a model version: trained, evaluated beside the champion, trading, retired."""

    CANDIDATE = "candidate"
    CHALLENGER = "challenger"
    CHAMPION = "champion"
    ARCHIVED = "archived"


#: Kinds of models the registry holds.
MODEL_KINDS: tuple[str, ...] = ("cnn_lstm", "rl_agent", "ensemble", "baseline")

# The one way up from each stage.
_NEXT_STAGE = {Stage.CANDIDATE: Stage.CHALLENGER, Stage.CHALLENGER: Stage.CHAMPION}
# How the relational store's older vocabulary names our stages.
_RELATIONAL_STAGE = {
    Stage.CANDIDATE: ModelStage.CANDIDATE,
    Stage.CHALLENGER: ModelStage.STAGING,
    Stage.CHAMPION: ModelStage.PRODUCTION,
    Stage.ARCHIVED: ModelStage.ARCHIVED,
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_TAG = "alphaloom."
_LINEAGE_FILE = "alphaloom/lineage.json"
_ALLOWED_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", "mysql")


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version.

    Attributes
    ----------
    name, version
        The registered model and its version number (1, 2, ...).
    kind
        One of :data:`MODEL_KINDS`.
    stage
        Its :class:`Stage`.
    lineage
        What it came from.
    metrics
        Metrics logged at registration (units as their names say; NaN where undefined).
    artefact_uri
        Where its files are (a local ``file:`` URI).
    run_id
        The MLflow run that holds its artefacts and metrics.
    created_at
        Registration time, UTC.
    aliases
        MLflow aliases pointing at it (``champion``, ``challenger``, ``candidate``).
    tags
        Other ``alphaloom.*`` tags (e.g. ``strategy``: the backtest strategy it trades as), without prefix.
    """

    name: str
    version: int
    kind: str
    stage: Stage
    lineage: Lineage
    metrics: Mapping[str, float]
    artefact_uri: str
    run_id: str
    created_at: datetime
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``"name/version"``, the form used for parents and in the audit log."""
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class PromotionResult:
    """What :meth:`ModelRegistry.promote` did: the gate's decision and the version after it."""

    decision: GateDecision
    model: ModelVersionInfo
    previous_champion: ModelVersionInfo | None
    audit_id: int

    @property
    def accepted(self) -> bool:
        return self.decision.accepted


def _check_name(name: object, what: str = "model name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{what} must be 1-100 letters, digits, '_', '.' or '-' starting with a letter or digit, got "
            f"{name!r}."
        )
    return name


def _check_version(version: object) -> int:
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"a model version is a positive integer (1, 2, ...), got {version!r}.")
    return version


def _clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z0-9_.\-/ ]{1,250}$", key):
            raise DataFormatError(
                f"metric name {key!r} is not a valid name (letters, digits, _ . - / space)."
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DataFormatError(f"metric {key!r} must be a number, got {value!r}.")
        out[key] = float(value)
    return out


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


class ModelRegistry:
    """Register, list, promote and roll back models; MLflow stores, the relational store audits.

    Parameters
    ----------
    root
        Directory of the default SQLite store and of the artefacts (the workspace).
    audit
        The relational store whose audit log and ``model_versions`` table record every transition.
    tracking_uri
        MLflow tracking and registry URI; by default ``sqlite:///<root>/mlruns.db``. A PostgreSQL URI
        (``postgresql://user@host/db``) serves production; HTTP tracking servers are refused so nothing
        leaves for the network unseen.
    experiment
        MLflow experiment that holds the registration runs.
    """

    def __init__(
        self,
        root: str | Path,
        audit: RelationalStore,
        *,
        tracking_uri: str | None = None,
        experiment: str = "alphaloom",
    ) -> None:
        if not isinstance(audit, RelationalStore):
            raise ConfigError(
                f"audit must be a RelationalStore (e.g. DuckDBRelationalStore(path)), got "
                f"{type(audit).__name__}; every registry transition is audited."
            )
        self.root = Path(root).expanduser().resolve()
        self.audit = audit
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "mlartifacts").mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the registry directory {self.root}: {exc.strerror}.") from exc
        self.tracking_uri = tracking_uri or f"sqlite:///{self.root / 'mlruns.db'}"
        scheme = self.tracking_uri.split(":", 1)[0].lower()
        if scheme not in _ALLOWED_SCHEMES:
            raise ConfigError(
                f"tracking_uri {self.tracking_uri!r} uses {scheme!r}; the registry talks only to a database "
                f"({', '.join(_ALLOWED_SCHEMES)}), never to a tracking server over the network. Use "
                f"sqlite:///path/mlruns.db or postgresql://user@host/db."
            )
        self._experiment_name = _check_name(experiment, "experiment name")
        self._client_: Any = None
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"ModelRegistry(tracking_uri={self.tracking_uri!r})"

    # ------------------------------------------------------------------ MLflow plumbing
    @property
    def _client(self) -> Any:
        if self._client_ is None:
            from mlflow.tracking import MlflowClient

            self._client_ = self._call(
                "opening the MLflow store",
                lambda: MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri),
            )
        return self._client_

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        from mlflow.exceptions import MlflowException

        try:
            return fn()
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise DataNotFoundError(
                    f"{action}: not in the registry at {self.tracking_uri} ({exc.message})."
                ) from exc
            raise StorageError(
                f"{action} failed on the MLflow store {self.tracking_uri}: {exc.message}"
            ) from exc
        except OSError as exc:
            raise StorageError(f"{action} failed on the MLflow store {self.tracking_uri}: {exc}") from exc

    def _experiment(self) -> str:
        if self._experiment_id is None:
            client = self._client
            found = self._call(
                "reading the experiment", lambda: client.get_experiment_by_name(self._experiment_name)
            )
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                location = (self.root / "mlartifacts").as_uri()
                self._experiment_id = self._call(
                    "creating the experiment",
                    lambda: client.create_experiment(self._experiment_name, artifact_location=location),
                )
        return self._experiment_id

    def _model_exists(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise StorageError(
                f"reading model {name!r} failed on {self.tracking_uri}: {exc.message}"
            ) from exc
        return True

    # ------------------------------------------------------------------ register
    def register(
        self,
        kind: str,
        name: str,
        artefact_dir: str | Path,
        lineage: Lineage,
        metrics: Mapping[str, float] | None = None,
        parents: Sequence[str] = (),
        *,
        tags: Mapping[str, str] | None = None,
        actor: str = "job:train",
    ) -> ModelVersionInfo:
        """Register a trained model as a new ``candidate`` version.

        Parameters
        ----------
        kind
            One of :data:`MODEL_KINDS`.
        name
            The registered model (``"cnn_lstm"``, ``"ppo"``, ``"ensemble"``); created on first use.
        artefact_dir
            Directory (or single file) the model was saved to; copied into the registry's artefacts.
        lineage
            Where it came from.
        metrics
            Numbers to log with it (NaN allowed; units in the names).
        parents
            Extra parent references ``"name/version"``, added to ``lineage.parents``. Every parent must be
            registered.
        tags
            Extra string tags (stored as ``alphaloom.<key>``), e.g. ``{"strategy": "ppo"}``.
        actor
            Who registers, for the audit log.

        Returns
        -------
        ModelVersionInfo
            The new version, stage ``candidate``, aliased ``@candidate``.
        """
        if kind not in MODEL_KINDS:
            raise ConfigError(
                f"unknown model kind {kind!r}.{did_you_mean(str(kind), MODEL_KINDS)} "
                f"Kinds: {', '.join(MODEL_KINDS)}."
            )
        name = _check_name(name)
        if not isinstance(lineage, Lineage):
            raise DataFormatError(f"lineage must be a Lineage, got {type(lineage).__name__}.")
        source = Path(artefact_dir).expanduser()
        if not source.exists():
            raise DataNotFoundError(
                f"artefact_dir {source} does not exist; save the model there before registering it."
            )
        clean = _clean_metrics(metrics)
        all_parents = tuple(dict.fromkeys([*lineage.parents, *parents]))
        if all_parents != lineage.parents:
            lineage = Lineage(
                lineage.data,
                lineage.feature_config_hash,
                lineage.training_config,
                lineage.code_version,
                all_parents,
            )
        for ref in all_parents:
            parent_name, parent_version = ref.split("/")
            self.show(parent_name, int(parent_version))  # raises DataNotFoundError for an unknown parent
        extra = {f"{_TAG}{k}": str(v) for k, v in (tags or {}).items()}
        client = self._client
        experiment_id = self._experiment()
        version_tags = {
            f"{_TAG}stage": Stage.CANDIDATE.value,
            f"{_TAG}kind": kind,
            f"{_TAG}data_sha256": lineage.data.sha256,
            f"{_TAG}feature_config_hash": lineage.feature_config_hash,
            f"{_TAG}training_config_hash": lineage.training_config_hash,
            f"{_TAG}code_version": lineage.code_version,
            f"{_TAG}parents": ",".join(lineage.parents),
            **extra,
        }

        def write() -> Any:
            from mlflow.entities import Metric, Param

            run = client.create_run(experiment_id, tags={**version_tags, "mlflow.runName": f"{name}-{kind}"})
            run_id = run.info.run_id
            now_ms = int(datetime.now(UTC).timestamp() * 1000)
            metric_list = [Metric(k, v, now_ms, 0) for k, v in clean.items()]
            params = [Param(k, v) for k, v in _flatten(lineage.training_config).items()]
            for i in range(0, max(len(metric_list), len(params)), 100):
                client.log_batch(run_id, metrics=metric_list[i : i + 100], params=params[i : i + 100])
            client.log_text(run_id, json.dumps(lineage.to_dict(), indent=2, sort_keys=True), _LINEAGE_FILE)
            if source.is_dir():
                client.log_artifacts(run_id, str(source), "model")
            else:
                client.log_artifact(run_id, str(source), "model")
            client.set_terminated(run_id)
            if not self._model_exists(name):
                client.create_registered_model(
                    name, tags={f"{_TAG}kind": kind, f"{_TAG}champion_history": "[]"}
                )
            mv = client.create_model_version(
                name, source=f"{run.info.artifact_uri}/model", run_id=run_id, tags=version_tags
            )
            client.set_registered_model_alias(name, Stage.CANDIDATE.value, mv.version)
            return mv

        mv = self._call(f"registering {name}", write)
        info = self.show(name, int(mv.version))
        self._audit(
            actor,
            "model.registered",
            {
                "model": info.ref,
                "kind": kind,
                "stage": info.stage.value,
                "lineage": {k: v for k, v in lineage.to_dict().items() if k != "training_config"},
                "metrics": {k: _json_number(v) for k, v in clean.items()},
            },
        )
        self._mirror(info)
        return info

    # ------------------------------------------------------------------ read
    def show(self, name: str, version: int | str) -> ModelVersionInfo:
        """One version with its lineage, metrics and stage.

        Raises
        ------
        DataNotFoundError
            The model or version is not registered.
        """
        name, version = _check_name(name), _check_version(version)
        client = self._client
        if not self._model_exists(name):
            known = [m.name for m in self._call("listing models", lambda: client.search_registered_models())]
            raise DataNotFoundError(
                f"no model {name!r} in the registry at {self.tracking_uri}.{did_you_mean(name, known)} "
                f"Registered: {', '.join(sorted(known)) or 'none'}."
            )
        mv = self._call(f"reading {name}/{version}", lambda: client.get_model_version(name, str(version)))
        aliases = self._aliases(name)
        return self._info(mv, aliases)

    def list(self, name: str | None = None, *, stage: Stage | str | None = None) -> list[ModelVersionInfo]:
        """Registered versions (of ``name``, in ``stage``), sorted by name and version."""
        wanted = None if stage is None else _stage(stage)
        client = self._client
        if name is not None:
            _check_name(name)
            if not self._model_exists(name):
                return []
        flt = f"name='{name}'" if name is not None else ""
        versions = self._call("listing model versions", lambda: client.search_model_versions(flt))
        alias_cache: dict[str, dict[int, list[str]]] = {}
        out = []
        for mv in versions:
            if mv.name not in alias_cache:
                alias_cache[mv.name] = self._aliases(mv.name)
            info = self._info(mv, alias_cache[mv.name])
            if wanted is None or info.stage == wanted:
                out.append(info)
        return sorted(out, key=lambda i: (i.name, i.version))

    def champion(self, name: str) -> ModelVersionInfo | None:
        """The current champion of ``name``, or None."""
        return self._by_alias(name, Stage.CHAMPION)

    def challenger(self, name: str) -> ModelVersionInfo | None:
        """The current challenger of ``name``, or None."""
        return self._by_alias(name, Stage.CHALLENGER)

    def champion_history(self, name: str) -> list[int]:
        """Versions that were champion, oldest first, the current one last (rolled-back ones removed)."""
        model = self._call(f"reading {name}", lambda: self._client.get_registered_model(_check_name(name)))
        return [int(v) for v in json.loads(model.tags.get(f"{_TAG}champion_history", "[]"))]

    def artefact_path(self, name: str, version: int | str, dst: str | Path | None = None) -> Path:
        """A local copy of the version's model files (in ``dst``, or a new temporary directory)."""
        info = self.show(name, version)
        target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix=f"{name}-{info.version}-"))
        target.mkdir(parents=True, exist_ok=True)
        path = self._call(
            f"downloading {info.ref}",
            lambda: self._client.download_artifacts(info.run_id, "model", str(target)),
        )
        return Path(path)

    def attach_text(
        self,
        name: str,
        version: int | str,
        path: str,
        text: str,
        *,
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        actor: str = "job:report",
        action: str = "model.report_attached",
    ) -> ModelVersionInfo:
        """Store a report with a registered version: ``text`` as the artefact ``path`` of its run (replacing
        one of the same path), ``metrics`` as run metrics, ``tags`` as ``alphaloom.<key>`` version tags; the
        attachment is audited as ``action``. The stage and the model files are not touched."""
        info = self.show(name, version)
        if not isinstance(path, str) or not re.match(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$", path):
            raise ConfigError(
                f"artefact path must be a relative path like 'alphaloom/bias.json', got {path!r}."
            )
        if path == _LINEAGE_FILE or path.split("/")[0] == "model":
            raise ConfigError(f"{path!r} is reserved for the model files and lineage; pick another path.")
        clean = _clean_metrics(metrics)
        client = self._client

        def write() -> None:
            from mlflow.entities import Metric

            client.log_text(info.run_id, text, path)
            now_ms = int(datetime.now(UTC).timestamp() * 1000)
            batch = [Metric(k, v, now_ms, 0) for k, v in clean.items()]
            for i in range(0, len(batch), 100):
                client.log_batch(info.run_id, metrics=batch[i : i + 100])
            for key, value in (tags or {}).items():
                client.set_model_version_tag(info.name, str(info.version), f"{_TAG}{key}", str(value))

        self._call(f"attaching {path} to {info.ref}", write)
        self._audit(
            actor,
            action,
            {
                "model": info.ref,
                "artefact": path,
                "tags": dict(tags or {}),
                "metrics": {k: _json_number(v) for k, v in clean.items()},
            },
        )
        return self.show(info.name, info.version)

    def read_text(self, name: str, version: int | str, path: str) -> str | None:
        """A text artefact stored with :meth:`attach_text`, or None when the version has none at ``path``."""
        info = self.show(name, version)
        client = self._client
        listed = self._call(
            f"listing the artefacts of {info.ref}",
            lambda: client.list_artifacts(info.run_id, path.rsplit("/", 1)[0] if "/" in path else None),
        )
        if path not in {f.path for f in listed}:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = self._call(
                f"reading {path} of {info.ref}", lambda: client.download_artifacts(info.run_id, path, tmp)
            )
            return Path(local).read_text(encoding="utf-8")

    def _by_alias(self, name: str, stage: Stage) -> ModelVersionInfo | None:
        name = _check_name(name)
        if not self._model_exists(name):
            return None
        version = self._aliases_by_name(name).get(stage.value)
        return None if version is None else self.show(name, version)

    def _aliases_by_name(self, name: str) -> dict[str, int]:
        model = self._call(f"reading {name}", lambda: self._client.get_registered_model(name))
        return {alias: int(v) for alias, v in (model.aliases or {}).items()}

    def _aliases(self, name: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for alias, version in self._aliases_by_name(name).items():
            out.setdefault(version, []).append(alias)
        return out

    def _info(self, mv: Any, aliases: Mapping[int, Sequence[str]]) -> ModelVersionInfo:
        client = self._client
        run = self._call(f"reading the run of {mv.name}/{mv.version}", lambda: client.get_run(mv.run_id))
        with tempfile.TemporaryDirectory() as tmp:
            path = self._call(
                f"reading the lineage of {mv.name}/{mv.version}",
                lambda: client.download_artifacts(mv.run_id, _LINEAGE_FILE, tmp),
            )
            lineage = Lineage.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        tags = dict(mv.tags or {})
        known = {
            "stage",
            "kind",
            "data_sha256",
            "feature_config_hash",
            "training_config_hash",
            "code_version",
            "parents",
        }
        extra = {
            k[len(_TAG) :]: v for k, v in tags.items() if k.startswith(_TAG) and k[len(_TAG) :] not in known
        }
        return ModelVersionInfo(
            name=mv.name,
            version=int(mv.version),
            kind=tags.get(f"{_TAG}kind", "unknown"),
            stage=Stage(tags.get(f"{_TAG}stage", Stage.CANDIDATE.value)),
            lineage=lineage,
            metrics=dict(run.data.metrics),
            artefact_uri=str(mv.source),
            run_id=str(mv.run_id),
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000.0, tz=UTC),
            aliases=tuple(sorted(aliases.get(int(mv.version), ()))),
            tags=extra,
        )

    # ------------------------------------------------------------------ transitions
    def promote(
        self,
        name: str,
        version: int | str,
        approver: ApproverLike,
        *,
        evidence: PromotionEvidence | None = None,
        gate: PromotionGate | None = None,
        note: str = "",
    ) -> PromotionResult:
        """Move a version one stage up (candidate to challenger, challenger to champion) if the gate agrees.

        The gate (:class:`~alphaloom.registry.gates.PromotionGate`, default settings unless given) checks the
        approver's role and the evidence. If it accepts, the version moves up; a new champion sends the old
        one to ``archived`` and is appended to the champion history. Either way the decision, with every
        statistic, is appended to the audit log (``model.promoted`` or ``model.promotion_rejected``). A
        rejection changes nothing else and is returned, not raised.

        Raises
        ------
        ConfigError
            The version is ``champion`` or ``archived`` (nothing above it), or the approver has no known role.
        DataNotFoundError
            The version is not registered.
        """
        info = self.show(name, version)
        target = _NEXT_STAGE.get(info.stage)
        if target is None:
            raise ConfigError(
                f"{info.ref} is {info.stage.value}; only a candidate (to challenger) or a challenger (to "
                f"champion) can be promoted. To restore an earlier champion use rollback."
            )
        gate = gate or PromotionGate()
        decision = gate.evaluate(target.value, approver, evidence)
        actor = f"user:{approver.name}"
        payload: dict[str, Any] = {
            "model": info.ref,
            "from_stage": info.stage.value,
            "to_stage": target.value,
            "gate": gate.config.model_dump(mode="json"),
            "gate_config_hash": gate.config.config_hash(),
            "decision": decision.to_dict(),
            "note": note,
        }
        if not decision.accepted:
            record = self._audit(actor, "model.promotion_rejected", payload)
            log.info(
                "promotion of %s to %s rejected: %s", info.ref, target.value, "; ".join(decision.reasons)
            )
            return PromotionResult(decision, info, None, record)
        previous = self.champion(info.name) if target == Stage.CHAMPION else None
        if target == Stage.CHAMPION:
            if previous is not None and previous.version != info.version:
                self._set_stage(previous, Stage.ARCHIVED)
            history = [v for v in self.champion_history(info.name) if v != info.version] + [info.version]
            self._set_history(info.name, history)
            payload["previous_champion"] = previous.ref if previous is not None else None
        else:
            old = self.challenger(info.name)
            if old is not None and old.version != info.version:
                self._set_stage(old, Stage.CANDIDATE)
                payload["displaced_challenger"] = old.ref
        updated = self._set_stage(info, target)
        record = self._audit(actor, "model.promoted", payload)
        return PromotionResult(decision, updated, previous, record)

    def archive(
        self, name: str, version: int | str, approver: ApproverLike, *, reason: str = ""
    ) -> ModelVersionInfo:
        """Retire a version (any stage but champion; replace or roll back a champion instead)."""
        info = self.show(name, version)
        role = role_of(approver)
        if role not in ("trader", "admin"):
            self._audit(
                f"user:{approver.name}",
                "model.archive_rejected",
                {"model": info.ref, "role": role, "reason": "archiving needs a trader or admin"},
            )
            raise ConfigError(f"{approver.name} ({role}) may not archive models; a trader or admin must.")
        if info.stage == Stage.CHAMPION:
            raise ConfigError(
                f"{info.ref} is the champion; promote a challenger or roll back instead of archiving it, so "
                "a champion is always in place."
            )
        updated = self._set_stage(info, Stage.ARCHIVED)
        self._audit(
            f"user:{approver.name}",
            "model.archived",
            {"model": info.ref, "from_stage": info.stage.value, "to_stage": "archived", "reason": reason},
        )
        return updated

    def rollback(
        self, name: str, approver: ApproverLike, *, reason: str = "", gate: PromotionGate | None = None
    ) -> ModelVersionInfo:
        """Restore the previous champion: the current one is archived, the one before it is champion again.

        Needs an approver with one of the gate's ``champion_roles``; no evidence (rollback is the way back
        from a bad promotion, and the previous champion already passed the gate).

        Raises
        ------
        ConfigError
            The approver may not roll back, or there is no earlier champion to restore.
        """
        name = _check_name(name)
        gate = gate or PromotionGate()
        role = role_of(approver)
        actor = f"user:{approver.name}"
        if role not in gate.config.champion_roles:
            self._audit(actor, "model.rollback_rejected", {"model": name, "role": role, "reason": reason})
            raise ConfigError(
                f"{approver.name} has role {role!r}; a rollback needs one of "
                f"{', '.join(gate.config.champion_roles)}."
            )
        history = self.champion_history(name)
        current = self.champion(name)
        if current is None or len(history) < 2:
            raise ConfigError(
                f"{name} has {'no champion' if current is None else 'only one champion so far'} "
                f"(history {history}); there is no earlier champion to roll back to."
            )
        restored = self.show(name, history[-2])
        self._set_stage(current, Stage.ARCHIVED)
        restored = self._set_stage(restored, Stage.CHAMPION)
        self._set_history(name, history[:-1])
        self._audit(
            actor,
            "model.rolled_back",
            {
                "model": name,
                "from_version": current.version,
                "to_version": restored.version,
                "archived": current.ref,
                "restored": restored.ref,
                "reason": reason,
            },
        )
        return restored

    def _set_stage(self, info: ModelVersionInfo, stage: Stage) -> ModelVersionInfo:
        client = self._client
        name, version = info.name, str(info.version)

        def write() -> None:
            client.set_model_version_tag(name, version, f"{_TAG}stage", stage.value)
            aliases = self._aliases_by_name(name)
            for alias in (Stage.CHAMPION.value, Stage.CHALLENGER.value, Stage.CANDIDATE.value):
                if aliases.get(alias) == info.version and alias != stage.value:
                    client.delete_registered_model_alias(name, alias)
            if stage in (Stage.CHAMPION, Stage.CHALLENGER, Stage.CANDIDATE):
                client.set_registered_model_alias(name, stage.value, version)

        self._call(f"moving {info.ref} to {stage.value}", write)
        updated = self.show(name, info.version)
        self._mirror(updated)
        return updated

    def _set_history(self, name: str, history: Sequence[int]) -> None:
        self._call(
            f"recording the champion history of {name}",
            lambda: self._client.set_registered_model_tag(
                name, f"{_TAG}champion_history", json.dumps(list(history))
            ),
        )

    # ------------------------------------------------------------------ audit
    def _audit(self, actor: str, action: str, payload: Mapping[str, Any]) -> int:
        record = self.audit.append_audit(actor, action, _jsonable(payload))
        return record.id

    def _mirror(self, info: ModelVersionInfo) -> None:
        self.audit.record_model_version(
            info.name,
            str(info.version),
            dict(info.lineage.training_config),
            metrics={k: _json_number(v) for k, v in info.metrics.items()},
            stage=_RELATIONAL_STAGE[info.stage],
            created_at=info.created_at,
        )


def _stage(value: Stage | str) -> Stage:
    try:
        return Stage(value)
    except ValueError:
        names = [s.value for s in Stage]
        raise ConfigError(
            f"unknown stage {value!r}.{did_you_mean(str(value), names)} Stages: {', '.join(names)}."
        ) from None


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in config.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= _flatten(value, f"{full}.")
        else:
            out[full[:250]] = json.dumps(value, default=str)[:500]
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else (str(value) if math.isinf(value) else value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    return value
