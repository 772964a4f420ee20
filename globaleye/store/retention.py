"""Retention: what devices and users make the platform store does not stay for ever.

Exception reports and picture notices (a device can send many) and the client API's
audit log are deleted when older than ``[retention]`` allows, by a purge that runs
at start-up and then every ``interval`` seconds on the reactor's clock.  Each purge
deletes in batches of ``batch`` rows, one store call each, in the store's worker
thread: the store's other work is served between two batches.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from globaleye.store import RETENTION_KINDS, Store

DAY = 86400.0


@attrs.frozen
class RetentionSettings:
    """Days each kind is kept (0: for ever), seconds between purges, rows per store call."""

    days: dict[str, float] = attrs.field(factory=lambda: {"exceptions": 30.0, "pictures": 30.0, "audit": 180.0})
    interval: float = 3600.0
    batch: int = 1000


class Retention(service.Service):
    log = Logger()

    def __init__(self, store: Store, clock: Any, settings: RetentionSettings) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self._loop: LoopingCall | None = None
        self._running: Deferred[None] | None = None
        self._stopping = False
        self.deleted = dict.fromkeys(RETENTION_KINDS, 0)

    def startService(self) -> None:
        super().startService()
        if not any(self.settings.days.get(kind, 0) > 0 for kind in RETENTION_KINDS):
            return
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.settings.interval, now=True).addErrback(
            lambda failure: self.log.failure("retention purge loop stopped", failure))

    def stopService(self) -> Any:
        super().stopService()
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return self._running  # a batch under way finishes before the store closes

    def _tick(self) -> Deferred[None] | None:
        if self._running is not None:  # the last purge is still going (a huge backlog): skip this turn
            return None
        self._running = Deferred.fromCoroutine(self._purge_quietly())

        def done(result: Any) -> None:
            self._running = None

        self._running.addBoth(done)
        return None

    async def _purge_quietly(self) -> None:
        await self.purge()

    async def purge(self) -> dict[str, int]:
        """One purge of every kind with a retention; returns the rows deleted per kind."""
        now = self.clock.seconds()
        deleted: dict[str, int] = {}
        for kind in RETENTION_KINDS:
            days = self.settings.days.get(kind, 0)
            if days <= 0:
                continue
            before = now - days * DAY
            total = 0
            try:
                while not self._stopping:
                    count = await self.store.purge(kind, before, self.settings.batch)
                    total += count
                    if count < self.settings.batch:
                        break
            except Exception:
                if self._stopping:  # the platform is closing the store under the last batch
                    break
                self.log.failure("retention: purging {kind} older than {days:g} days failed", kind=kind, days=days)
            deleted[kind] = total
            self.deleted[kind] += total
            if total:
                self.log.info("retention: deleted {count} {kind} rows older than {days:g} days", count=total,
                              kind=kind, days=days)
        return deleted
