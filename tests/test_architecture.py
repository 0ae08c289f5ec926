"""The layering of docs/ARCHITECTURE.md, checked on the source: imports point down, torch stays put."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "alphaloom"

# package -> packages of ours it may import at module level or inside functions
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "data": {"core"},
    "features": {"core"},
    "risk": {"core"},
    "portfolio": {"core", "risk"},
    "backtest": {"core", "risk", "data"},
    "models": {"core", "features"},
    "rl": {"core", "features", "models", "backtest", "risk"},
    "execution": {"core", "data", "risk", "portfolio", "backtest"},
    "registry": {"core", "risk", "data"},
    "monitoring": {"core", "risk"},
    "distributed": {"core"},
    "security": {"core"},
    "jobs": {
        "core",
        "data",
        "features",
        "risk",
        "portfolio",
        "backtest",
        "models",
        "rl",
        "execution",
        "registry",
        "monitoring",
        "distributed",
        "security",
    },
    "service": {
        "core",
        "data",
        "features",
        "risk",
        "portfolio",
        "backtest",
        "models",
        "rl",
        "execution",
        "registry",
        "monitoring",
        "distributed",
        "security",
        "jobs",
    },
    "cli": {"core", "jobs", "service"},
}


def _our_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "alphaloom" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package: str) -> None:
    for path in sorted((SRC / package).rglob("*.py")):
        bad = _our_imports(path) - ALLOWED[package] - {package}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}; see docs/ARCHITECTURE.md"


def test_every_package_is_in_the_layer_table() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


def test_torch_is_not_imported_outside_models_and_rl() -> None:
    code = (
        "import sys\n"
        "import alphaloom.core, alphaloom.data, alphaloom.features, alphaloom.risk, alphaloom.backtest\n"
        "import alphaloom.jobs.stages, alphaloom.jobs.demo, alphaloom.cli.main\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'stable_baselines3' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
