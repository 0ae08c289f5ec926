"""Local venue servers for connector tests: each speaks one vendor's documented protocol on 127.0.0.1.

Every server is an ``aiohttp`` application run by :class:`LocalServer` on its own event loop in a background
thread, so tests (sync or async, any event loop) talk to it over real HTTP, and no test reaches the internet.
Fault injection (:mod:`.faults`) plugs into any of them as a middleware.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

from aiohttp import web

__all__ = ["LocalServer"]

T = TypeVar("T")


class LocalServer:
    """Run an aiohttp application on ``127.0.0.1`` (a free port) in a background thread.

    Parameters
    ----------
    app
        The application to serve.

    Examples
    --------
    >>> with LocalServer(app) as server:  # doctest: +SKIP
    ...     httpx.get(server.url + "/v3/accounts")
    """

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start serving; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run, name="local-venue-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError("local server did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"local server failed to start: {self._error!r}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._teardown())
        loop.close()

    async def _setup(self) -> None:
        # shutdown_timeout short: streaming handlers are cancelled promptly at teardown.
        self._runner = web.AppRunner(self.app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]

    async def _teardown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop (to change its state safely) and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(timeout)

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
