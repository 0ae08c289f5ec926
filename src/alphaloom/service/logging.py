"""Structured JSON logs with a request id, and the middleware that times and logs each request.

Every line is one JSON object (``ts``, ``level``, ``logger``, ``message``, ``request_id`` and any ``extra``
fields). Lines pass :class:`alphaloom.security.redaction.RedactionFilter` first, so a credential that
reaches a message (a key pasted into a URL, an ``Authorization`` header) is masked before it is written.
The middleware never logs headers or bodies, only method, route, status, duration and the caller's name.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "RequestContextMiddleware",
    "configure_logging",
    "request_id",
]

REQUEST_ID_HEADER = "X-Request-ID"
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("alphaloom_request_id", default="")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
logger = logging.getLogger("alphaloom.service.access")


def request_id() -> str:
    """The id of the request being handled ('' outside a request)."""
    return _request_id.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or _request_id.get()
        if rid:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
        if record.exc_text or record.exc_info:
            out["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(out, default=str)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get()
        return True


def configure_logging(*, json_lines: bool = True, level: int = logging.INFO) -> logging.Handler:
    """Send ``alphaloom`` and ``uvicorn`` logs to stderr as JSON lines (or text), redacted.

    Returns the handler installed (installing again replaces it, so calling twice does not double lines).
    """
    try:
        from alphaloom.security.redaction import RedactionFilter

        redaction: logging.Filter | None = RedactionFilter()
    except ImportError:  # the security package is optional in stripped-down installs
        redaction = None
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("alphaloom-service")
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    handler.addFilter(_RequestIdFilter())
    if redaction is not None:
        handler.addFilter(redaction)
    for name in ("alphaloom", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        for old in [h for h in log.handlers if h.get_name() == "alphaloom-service"]:
            log.removeHandler(old)
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # our access log replaces it
    return handler


class RequestContextMiddleware:
    """Gives each HTTP request an id (the client's ``X-Request-ID`` if sane, else a new one), returns it
    in the response header, records latency in the metrics and writes one access log line.

    Pure ASGI (not ``BaseHTTPMiddleware``) so it adds microseconds, not a task per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = (
            given if given and len(given) <= 64 and given.replace("-", "").isalnum() else secrets.token_hex(8)
        )
        token = _request_id.set(rid)
        start = time.perf_counter()
        status_code = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            if scope["type"] == "http":
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                services = getattr(scope.get("app").state, "services", None) if scope.get("app") else None
                if services is not None:
                    services.metrics.request_latency.labels(
                        scope["method"], template, str(status_code)
                    ).observe(elapsed)
                    if status_code == 429:
                        principal = getattr(scope.get("state", {}).get("principal"), "role", None)
                        services.metrics.rate_limited.labels(str(principal or "unknown")).inc()
                principal = scope.get("state", {}).get("principal")
                if services is None or services.access_log:
                    logger.info(
                        "%s %s %s %.1fms",
                        scope["method"],
                        template,
                        status_code,
                        elapsed * 1000,
                        extra={
                            "method": scope["method"],
                            "route": template,
                            "status": status_code,
                            "duration_ms": round(elapsed * 1000, 3),
                            "caller": getattr(principal, "name", None),
                        },
                    )
            _request_id.reset(token)
