"""Private PostgreSQL and Redis servers for the reliability tests (temporary directories, spare ports).

The shared servers of the machine are never stopped; these tests stop, crash and restart their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alphaloom.jobs.chaos import PrivatePostgres, PrivateRedis


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A running private PostgreSQL, deleted after the test."""
    with PrivatePostgres() as pg:
        pg.start()
        yield pg


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A running private Redis with an append-only file, deleted after the test."""
    with PrivateRedis() as server:
        server.start()
        yield server
