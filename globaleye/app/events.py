"""Live device events for open pages: alarms (34H, §7.5.4) and online/offline changes.

Two parts, as :class:`~globaleye.app.ports.StreamBoard` is split from the media service so that the
composition root can build them in any order:

* :class:`EventBoard` is the port the device gateway reports through.  It is created first by the
  composition root (:mod:`globaleye.platform.tap`) and handed to the gateway, which calls
  :meth:`EventBoard.alarm` and :meth:`EventBoard.presence` (the gateway imports nothing of
  ``app/``: it sees only a :class:`~globaleye.device.gateway.service.ReportSink`).  It is
  synchronous and cheap: it never waits, never touches the store.
* :class:`EventService` is the application service over it: ``subscribe(account)`` gives a
  :class:`Subscription` that receives only the events of the cameras the account may see *now*
  (own or shared, :meth:`CameraAccess.binding` with ``own=False``, asked again for every event, so a
  revoked share or a removed camera stops the flow at the next event).

Memory is bounded everywhere, because a camera can report faster than a phone on a slow link
reads: the events not yet checked are at most ``pending_max`` (oldest dropped, counted), and each
subscription keeps at most ``queue_size`` (oldest dropped, counted in :attr:`Subscription.dropped`,
which the reader may show).  Events are checked one at a time, in the order they were reported.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from globaleye.app.access import CameraAccess

#: Events kept per subscription (beyond: the oldest are dropped and counted).
QUEUE_SIZE = 256
#: Events reported but not yet checked against the subscribers' access (beyond: oldest dropped).
PENDING_MAX = 1000


@attrs.frozen
class DeviceEvent:
    """One thing that happened to a camera: ``kind`` ``alarm`` (a 34H exception report: ``channel``,
    ``alarm_type`` the §7.5.4 ExceptionType, ``text`` its ExceptionDesc), ``device`` (``online``
    changed) or ``picture`` (an FTP picture of §7.5.24 arrived: ``channel``, ``text`` its name;
    :mod:`globaleye.app.delivery`).  ``time`` is the platform's clock when it was received (seconds since the epoch)."""

    kind: str
    dev_id: str
    time: float
    channel: int = 0
    alarm_type: int = 0
    text: str = ""
    online: bool = False


class EventBoard:
    """The gateway's side: where device reports are published (see the module docstring)."""

    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def attach(self, listener: Any) -> None:
        """*listener*: a callable taking one :class:`DeviceEvent` (must not raise, must not block)."""
        self.listeners.append(listener)

    def publish(self, event: DeviceEvent) -> None:
        for listener in self.listeners:
            listener(event)

    # The ReportSink the gateway calls ------------------------------------------------------------

    def alarm(self, dev_id: str, channel: int, alarm_type: int, text: str, when: float) -> None:
        self.publish(DeviceEvent("alarm", dev_id, when, channel=channel, alarm_type=alarm_type, text=text))

    def presence(self, dev_id: str, online: bool, when: float) -> None:
        self.publish(DeviceEvent("device", dev_id, when, online=online))


class Subscription:
    """One reader's events, in order, at most ``size`` kept (oldest dropped and counted)."""

    def __init__(self, service: EventService, account: str, size: int) -> None:
        self.service = service
        self.account = account
        self.queue: deque[DeviceEvent] = deque()
        self.size = size
        #: Events dropped because this reader fell behind.
        self.dropped = 0
        #: Events handed to the reader.
        self.delivered = 0
        self.closed = False
        self._waiter: Deferred[DeviceEvent | None] | None = None

    def offer(self, event: DeviceEvent) -> None:
        if self.closed:
            return
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            self.delivered += 1
            waiter.callback(event)
            return
        if len(self.queue) >= self.size:
            self.queue.popleft()
            self.dropped += 1
            self.service.counters["dropped"] += 1
        self.queue.append(event)

    def poll(self) -> DeviceEvent | None:
        """The next queued event, or None when none is (never waits)."""
        if not self.queue:
            return None
        self.delivered += 1
        return self.queue.popleft()

    def get(self) -> Deferred[DeviceEvent | None]:
        """The next event (now if one is queued); None once the subscription is closed."""
        if self._waiter is not None:
            raise RuntimeError("one reader at a time")
        if self.queue:
            self.delivered += 1
            return succeed(self.queue.popleft())
        if self.closed:
            return succeed(None)
        waiter: Deferred[DeviceEvent | None] = Deferred(lambda d: setattr(self, "_waiter", None))
        self._waiter = waiter
        return waiter

    def close(self) -> None:
        """Stop receiving; a waiting :meth:`get` gets None.  Closing twice is harmless."""
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        self.service._forget(self)
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.callback(None)


class EventService:
    """Subscriptions to the events of the cameras an account may see (see the module docstring)."""

    log = Logger()

    def __init__(self, access: CameraAccess, board: EventBoard, queue_size: int = QUEUE_SIZE,
                 pending_max: int = PENDING_MAX) -> None:
        self.access = access
        self.queue_size = queue_size
        self.pending: deque[DeviceEvent] = deque()
        self.pending_max = pending_max
        self.subscriptions: dict[str, list[Subscription]] = {}
        self.counters = {"published": 0, "offered": 0, "dropped": 0, "pending_dropped": 0}
        self._draining = False
        board.attach(self.receive)

    def subscribe(self, account: str) -> Subscription:
        subscription = Subscription(self, account, self.queue_size)
        self.subscriptions.setdefault(account, []).append(subscription)
        return subscription

    def count(self, account: str) -> int:
        """The account's open subscriptions."""
        return len(self.subscriptions.get(account, ()))

    def _forget(self, subscription: Subscription) -> None:
        subscriptions = self.subscriptions.get(subscription.account, [])
        if subscription in subscriptions:
            subscriptions.remove(subscription)
        if not subscriptions:
            self.subscriptions.pop(subscription.account, None)

    def receive(self, event: DeviceEvent) -> None:
        """The board's listener: queue *event* and check it (never waits, never raises)."""
        self.counters["published"] += 1
        if not self.subscriptions:
            return  # nobody is listening: nothing to check
        if len(self.pending) >= self.pending_max:
            self.pending.popleft()
            self.counters["pending_dropped"] += 1
        self.pending.append(event)
        if not self._draining:
            self._draining = True
            Deferred.fromCoroutine(self._drain()).addErrback(
                lambda f: self.log.failure("events: checking an event failed", f))

    async def _drain(self) -> None:
        try:
            while self.pending:
                event = self.pending.popleft()
                for account in list(self.subscriptions):
                    if await self.access.binding(account, event.dev_id, own=False) is None:
                        continue
                    for subscription in list(self.subscriptions.get(account, ())):
                        subscription.offer(event)
                        self.counters["offered"] += 1
        finally:
            self._draining = False
