"""Structural: the risk manager is the only road to a venue.

An AST scan of ``src/alphaloom`` checks that

- ``.place_order(`` is called only in ``risk/manager.py`` (``RiskManager.submit``), and ``place_order`` is
  defined only by the connector base class (and the manager's ``OrderVenue`` protocol), so no connector can
  override the method that verifies approvals;
- ``_submit_order`` (the venue hook behind ``place_order``) is called only by the connector base class;
- ``_issue_approval`` is referenced only where it is defined (``core/approval.py``) and in
  ``risk/manager.py``.

Text inside strings and docstrings does not count; ``getattr(x, "place_order")`` does.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import alphaloom

SRC = Path(alphaloom.__file__).resolve().parent
MANAGER = "risk/manager.py"
BASE = "data/connectors/base.py"
APPROVAL = "core/approval.py"


def _modules() -> Iterator[tuple[str, ast.Module]]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50, f"expected the whole package under {SRC}, found {len(files)} files"
    for path in files:
        yield (
            path.relative_to(SRC).as_posix(),
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path)),
        )


def _called_attribute(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _getattr_name(node: ast.Call) -> str | None:
    """``"name"`` for ``getattr(obj, "name", ...)``."""
    if isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2:
        arg = node.args[1]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def _scan() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"call": [], "define": [], "hook": [], "issue": []}
    for rel, tree in _modules():
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                name = _called_attribute(node)
                via_getattr = _getattr_name(node)
                if name == "place_order" or via_getattr == "place_order":
                    found["call"].append(where)
                if name == "_submit_order" or via_getattr == "_submit_order":
                    found["hook"].append(where)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "place_order":
                found["define"].append(where)
            if isinstance(node, ast.Name) and node.id == "_issue_approval":
                found["issue"].append(where)
            if isinstance(node, ast.Attribute) and node.attr == "_issue_approval":
                found["issue"].append(where)
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name == "_issue_approval":
                        found["issue"].append(where)
    return found


def _files(hits: list[str]) -> set[str]:
    return {h.rsplit(":", 1)[0] for h in hits}


def test_place_order_is_called_only_by_the_risk_manager() -> None:
    found = _scan()
    assert found["call"], "the scan found no call of place_order at all; is RiskManager.submit gone?"
    assert _files(found["call"]) == {MANAGER}, (
        f"place_order is called outside {MANAGER}: "
        f"{[h for h in found['call'] if not h.startswith(MANAGER)]}. Send orders through "
        "RiskManager.submit(order, connector)."
    )


def test_only_the_connector_base_defines_place_order() -> None:
    found = _scan()
    assert _files(found["define"]) == {BASE, MANAGER}, (
        f"place_order is defined in {sorted(_files(found['define']) - {BASE, MANAGER})}; a connector must "
        "not override it (the base verifies the risk approval there); fill the _submit_order hook instead."
    )


def test_the_venue_hook_is_called_only_by_the_connector_base() -> None:
    found = _scan()
    assert found["hook"], "the scan found no call of _submit_order; is ExchangeConnector.place_order gone?"
    assert _files(found["hook"]) == {BASE}, f"_submit_order is called outside {BASE}: {found['hook']}"


def test_approvals_are_issued_only_by_the_risk_manager() -> None:
    found = _scan()
    assert _files(found["issue"]) <= {MANAGER, APPROVAL}, (
        f"_issue_approval is used outside {MANAGER}: "
        f"{[h for h in found['issue'] if not h.startswith((MANAGER, APPROVAL))]}"
    )
    assert MANAGER in _files(found["issue"])


def test_the_scan_sees_a_call_it_must_refuse() -> None:
    # The detector itself: a call through an attribute, a bare name and getattr are all found.
    source = "async def f(c, o, a):\n    await c.place_order(o, a)\n    getattr(c, 'place_order')(o, a)\n"
    tree = ast.parse(source)
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and "place_order" in (_called_attribute(n), _getattr_name(n))
    ]
    assert len(calls) == 2
