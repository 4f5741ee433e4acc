"""An ASGI app that builds the real one on its first request.

Why: Airflow imports every plugin in every process, task runners included, and the plugin must
hand over its FastAPI app at import time. Deferring the build keeps FastAPI, Jinja and the
review code out of those processes; only the API server, which serves requests, pays for them.
"""

from __future__ import annotations

import threading
from typing import Any, Awaitable, Callable

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class LazyApp:
    def __init__(self, factory: Callable[[], Any], name: str = "app") -> None:
        self._factory = factory
        self._app: Any = None
        self._lock = threading.Lock()
        self.name = name

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyApp({self.name})"
