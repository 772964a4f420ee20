"""``GET /api/v1/events``: the account's live events as Server-Sent Events (alarms, online changes).

An open page learns of a camera's alarm (34H, §7.5.4) the moment the gateway stores it, without
polling: the application layer's :class:`~globaleye.app.events.EventService` gives a subscription
to the events of the cameras the account may see now (own or shared, asked again for each event),
and this route writes them as ``text/event-stream``::

    retry: 3000

    event: alarm
    data: {"devId": "81100000101", "channel": 0, "type": 6, "text": "disk error", "time": "20261202011500", ...}

    event: device
    data: {"devId": "81100000101", "online": false, "time": "20261202011502"}

    event: picture
    data: {"devId": "81100000101", "channel": 0, "name": "81100000101_0_20261202091500.JPG", "time": "..."}

    : keep-alive

Why SSE and not a WebSocket (docs/protocol.md, "The portal's event stream"): the flow is one way,
server to page; ``EventSource`` is in every target browser, reconnects by itself (the ``retry:``
hint), and is a plain GET under the same session cookie, CSP ``connect-src 'self'``, proxies and
HTTP/2 as the rest of the API, with no upgrade handshake and no second origin check to get right.

The stream lives as long as the session: every :data:`SESSION_CHECK` seconds (the reactor's clock)
it asks whether the session still lives, without restarting its idle time (an open page is not a
person using it), and ends with ``event: session`` when it was logged out, expired or ended by a
password change.  A comment every :data:`HEARTBEAT` seconds keeps proxies and NAT from closing a
quiet connection.  An account has at most :data:`MAX_STREAMS` open (429 beyond).  A reader slower
than the events: the stream stops pulling while the socket is full (a streaming producer), the
subscription keeps at most its bounded queue (oldest dropped, counted and sent as ``dropped``).

The request must accept ``text/event-stream`` (EventSource always sends it); anything else is 406,
so that a plain JSON client (or the API's own route-table test) is not left hanging on a stream.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.iweb import IRequest
from zope.interface import implementer

from globaleye.app import ClientServices
from globaleye.app.events import DeviceEvent, Subscription
from globaleye.users.accounts import LoginSession
from globaleye.util.clock import protocol_time
from globaleye.web.auth import Sessions, peer_of
from globaleye.web.problem import Problem

log = Logger(namespace="globaleye.web")

#: Open event streams per account (beyond: 429).  A person has a phone and a computer or two.
MAX_STREAMS = 8
#: Seconds between the checks that the session still lives.
SESSION_CHECK = 5.0
#: Seconds between keep-alive comments.
HEARTBEAT = 15.0
#: The reconnection delay the browser is told (milliseconds).
RETRY_MS = 3000


class EventsApi:
    """The mixin of :class:`~globaleye.web.api.WebApi` that answers ``GET /events``."""

    services: ClientServices
    sessions: Sessions

    async def events(self, request: IRequest, session: LoginSession, body: None) -> resource.Resource:
        accept = (request.getHeader(b"accept") or b"").lower()
        if b"text/event-stream" not in accept:
            raise Problem(406, "not-acceptable", "Event stream only",
                          "this route answers text/event-stream (use EventSource)")
        service = self.services.events
        if service.count(session.account) >= MAX_STREAMS:
            raise Problem(429, "too-many-streams", "Too many open pages",
                          f"at most {MAX_STREAMS} pages of one account receive live events; close one",
                          retry_after=HEARTBEAT)
        return EventStream(service.subscribe(session.account), self.services.accounts, session.token,
                           peer_of(request))


def frame(kind: str, data: dict[str, Any]) -> bytes:
    """One SSE message (the JSON is on one line: no newline in ``data``)."""
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def event_data(event: DeviceEvent, dropped: int) -> dict[str, Any]:
    if event.kind == "picture":  # an FTP picture arrived (globaleye/app/delivery.py); text is its name
        return {"devId": event.dev_id, "channel": event.channel, "name": event.text, "time": protocol_time(event.time)}
    if event.kind == "alarm":
        return {"devId": event.dev_id, "channel": event.channel, "type": event.alarm_type, "text": event.text,
                "time": protocol_time(event.time), "dropped": dropped}
    return {"devId": event.dev_id, "online": event.online, "time": protocol_time(event.time)}


def _cancelled(failure: Failure) -> None:
    failure.trap(CancelledError)  # the socket filled up, or the stream ended: nothing is lost


@implementer(IPushProducer)
class EventStream(resource.Resource):
    """One open stream: writes the subscription's events while the socket takes them."""

    isLeaf = True

    def __init__(self, subscription: Subscription, accounts: Any, token: str, peer: str) -> None:
        super().__init__()
        self.subscription = subscription
        self.accounts = accounts
        self.token = token
        self.peer = peer
        self.request: server.Request | None = None
        self.paused = False
        self.done = False
        self.waiting: Deferred[DeviceEvent | None] | None = None
        self.loops: list[LoopingCall] = []

    @property
    def account(self) -> str:
        return self.subscription.account

    def render_GET(self, request: server.Request) -> Any:  # noqa: N802
        self.request = request
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")  # a reverse proxy must not hold the events back
        request.registerProducer(self, True)
        request.write(f"retry: {RETRY_MS}\n: events of {self.account}\n\n".encode())
        clock = self.accounts.clock
        for seconds, call in ((HEARTBEAT, self._heartbeat), (SESSION_CHECK, self._check)):
            loop = LoopingCall(call)
            loop.clock = clock
            loop.start(seconds, now=False)
            self.loops.append(loop)
        request.notifyFinish().addBoth(self._finished)
        log.info("web: event stream opened for {account} from {peer} ({count} open)", account=self.account,
                 peer=self.peer, count=self.subscription.service.count(self.account))
        self._pump()
        return server.NOT_DONE_YET

    # Writing ----------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Write what is queued, then wait for the next event (not while the socket is full)."""
        while not self.paused and not self.done:
            event = self.subscription.poll()
            if event is None:
                break
            self._write(event)
        if self.paused or self.done or self.waiting is not None:
            return
        waiting = self.waiting = self.subscription.get()
        waiting.addCallbacks(self._arrived, _cancelled)

    def _arrived(self, event: DeviceEvent | None) -> None:
        self.waiting = None
        if event is None:
            self._end("the subscription was closed")
            return
        self._write(event)
        self._pump()

    def _write(self, event: DeviceEvent) -> None:
        assert self.request is not None
        self.request.write(frame(event.kind, event_data(event, self.subscription.dropped)))

    def _heartbeat(self) -> None:
        if not self.paused and self.request is not None and not self.done:
            self.request.write(b": keep-alive\n\n")

    def _check(self) -> None:
        if not self.accounts.is_live(self.account, self.token):
            if self.request is not None and not self.done:
                self.request.write(frame("session", {"state": "ended"}))
            self._end("the session ended")

    def _end(self, why: str) -> None:
        """End the stream from this side (the session ended)."""
        if self.done or self.request is None:
            return
        request = self.request
        log.info("web: event stream of {account} ({peer}) ended: {why}", account=self.account, peer=self.peer,
                 why=why)
        self._stop()
        request.unregisterProducer()
        request.finish()

    def _finished(self, result: Any) -> None:
        """The response is over: finished here, or the browser went away."""
        if not self.done:
            why = result.getErrorMessage() if isinstance(result, Failure) else "finished"
            log.info("web: event stream of {account} ({peer}) closed by the browser: {why}", account=self.account,
                     peer=self.peer, why=why)
        self._stop()

    def _stop(self) -> None:
        if self.done:
            return
        self.done = True
        for loop in self.loops:
            if loop.running:
                loop.stop()
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.cancel()
        self.subscription.close()
        if self.subscription.dropped:
            log.info("web: event stream of {account} ({peer}) dropped {n} events (a slow reader)",
                     account=self.account, peer=self.peer, n=self.subscription.dropped)

    # IPushProducer: the socket's back-pressure -------------------------------------------------

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.cancel()  # events wait in the subscription's bounded queue meanwhile

    def resumeProducing(self) -> None:  # noqa: N802
        if self.paused:
            self.paused = False
            self._pump()

    def stopProducing(self) -> None:  # noqa: N802
        self._stop()
