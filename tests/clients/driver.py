"""One scenario, two clients: the sync and the async client driven by the same code."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from rapport_client import AsyncRapport, Rapport

T = TypeVar("T")
Flavour = Literal["sync", "async"]
FLAVOURS: tuple[Flavour, ...] = ("sync", "async")


class Driver:
    """Every method of the client it wraps (Rapport, RapportAdmin or their async twins),
    awaited: a sync client's methods are called directly (the server runs in another
    thread), an async client's are awaited."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call

    async def collect(self, name: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Everything an iterating method (listings, chat streams) yields, as a list."""
        result = getattr(self.client, name)(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        if hasattr(result, "__aiter__"):
            return [item async for item in result]
        return list(result)


def drive(
    flavour: Flavour,
    base_url: str,
    api_key: str,
    scenario: Callable[[Driver], Awaitable[T]],
    **options: Any,
) -> T:
    """Run ``scenario`` with a fresh client of this flavour (closed afterwards)."""

    async def main() -> T:
        if flavour == "sync":
            with Rapport(base_url, api_key, **options) as client:
                return await scenario(Driver(client))
        async with AsyncRapport(base_url, api_key, **options) as client:
            return await scenario(Driver(client))

    return asyncio.run(main())
