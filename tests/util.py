"""Helpers shared by the Trial tests that run on the real reactor."""

from __future__ import annotations

from collections.abc import Callable

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool


async def until(condition: Callable[[], object], timeout: float = 10.0, step: float = 0.01) -> None:
    """Spin the real reactor (store threads, sockets) until *condition* holds, or fail."""
    waited = 0.0
    while not condition():
        if waited > timeout:
            raise AssertionError(f"condition not reached within {timeout:g} s")
        await deferLater(reactor, step, lambda: None)
        waited += step


def http_client() -> HTTPClient:
    """A treq client without persistent connections, so no test leaves a socket open."""
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
