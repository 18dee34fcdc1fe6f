"""Counts and times every HTTP request into the service's metrics (``app.observability``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import Metrics


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics_of: Callable[[], Metrics]) -> None:
        self.app = app
        # Looked up per request: the metrics live with the services built at start-up.
        self.metrics_of = metrics_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            template = _route_template(scope)
            method = scope["method"]
            metrics = self.metrics_of()
            metrics.requests.labels(template, method, str(status)).inc()
            metrics.latency.labels(template, method).observe(time.perf_counter() - started)
            metrics.refresh()


def _route_template(scope: Scope) -> str:
    """The template of the route that took the request; "unmatched" when none did.

    FastAPI's routes leave themselves in the scope; Starlette's plain ones (/docs,
    /openapi.json) only their endpoint, which is looked up among the app's routes.
    """
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    endpoint = scope.get("endpoint")
    for candidate in getattr(scope.get("app"), "routes", ()):
        if endpoint is not None and getattr(candidate, "endpoint", None) is endpoint:
            return str(candidate.path)
    return "unmatched"
