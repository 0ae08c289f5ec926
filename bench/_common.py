"""Shared output for the benchmarks: a readable table, and with ``--json`` one JSON object on the last line.

The JSON shape is ``{"figures": {"<subject>/<measure>": {"value": number, "unit": "..."}}}`` where subject is
``alphaloom`` or the peer measured in the same run, so results compare across commits and machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    return parser.parse_args()


def best_of(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time in seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Figures:
    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, str, float, str, str]] = []

    def add(self, subject: str, measure: str, value: float, unit: str, note: str = "") -> None:
        self.rows.append((subject, measure, float(value), unit, note))

    def emit(self, as_json: bool) -> None:
        table = Table(title=self.title)
        for col in ("subject", "measure", "value", "unit", "note"):
            table.add_column(col, justify="right" if col == "value" else "left")
        for subject, measure, value, unit, note in self.rows:
            table.add_row(subject, measure, f"{value:,.4g}", unit, note)
        Console().print(table)
        if as_json:
            figures = {f"{s}/{m}": {"value": v, "unit": u} for s, m, v, u, _ in self.rows}
            print(json.dumps({"figures": figures}))
