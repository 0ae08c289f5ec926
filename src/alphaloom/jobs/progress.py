"""Progress display for long stages (rich), with a silent variant for library use and tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["NullProgress", "RichProgress", "StageProgress", "TaskHandle"]


class TaskHandle(Protocol):
    def advance(self, n: float = 1.0) -> None: ...
    def update(self, completed: float, total: float | None = None, note: str = "") -> None: ...


class StageProgress(Protocol):
    def task(self, description: str, total: float | None) -> TaskHandle: ...
    def log(self, message: str) -> None: ...


class _NullTask:
    def advance(self, n: float = 1.0) -> None:
        pass

    def update(self, completed: float, total: float | None = None, note: str = "") -> None:
        pass


class NullProgress:
    """Reports nothing."""

    def task(self, description: str, total: float | None) -> TaskHandle:
        return _NullTask()

    def log(self, message: str) -> None:
        pass


class _RichTask:
    def __init__(self, progress: Progress, task_id: int, description: str) -> None:
        self._p, self._id, self._desc = progress, task_id, description

    def advance(self, n: float = 1.0) -> None:
        self._p.advance(self._id, n)

    def update(self, completed: float, total: float | None = None, note: str = "") -> None:
        desc = f"{self._desc} [dim]{note}[/]" if note else self._desc
        kwargs = {"total": total} if total is not None else {}
        self._p.update(self._id, completed=completed, description=desc, **kwargs)


class RichProgress:
    """One rich progress display; each stage adds a bar."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )

    @contextmanager
    def running(self) -> Iterator[RichProgress]:
        """Show the bars while the block runs; on an error they are cleared so the error stands alone."""
        with self._progress:
            try:
                yield self
            except BaseException:
                self._progress.live.transient = True
                raise

    def task(self, description: str, total: float | None) -> TaskHandle:
        return _RichTask(self._progress, self._progress.add_task(description, total=total), description)

    def log(self, message: str) -> None:
        self._progress.console.log(message)
