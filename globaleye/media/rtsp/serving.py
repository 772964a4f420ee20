"""What every RTSP server connection of GlobalEye shares: the camera's and the proxy's.

Both read requests (and interleaved frames) with the same incremental parser, answer
unparsable input with 400 and close, bound the number of pipelined requests, handle
requests strictly one at a time in arrival order (a PLAY must not overtake its
SETUP, even when SETUP waits for the platform), turn a crashed handler into 500, and
stamp every response with CSeq, Server and Date.

They answer requests the same way: a refusal is one exception type, :class:`Refusal`
(status, reason for the log, extra headers for the answer), raised from anywhere in a
handler; :meth:`RtspServerConnection.handle` checks the version (505) and the CSeq (400),
dispatches ``do_<METHOD>`` (405 with ``Allow`` for the methods of ``refused_methods``, 501
for the others), and turns a :class:`Refusal` or a malformed header into its answer, after
:meth:`~RtspServerConnection.refused` has logged and counted it (each server its own way).
:meth:`~RtspServerConnection.lookup_session` reads the ``Session`` header (454 when it names
no session the server knows).  Subclasses write ``do_<METHOD>`` handlers and, if they care,
:meth:`interleaved`.

They also share what keeps idle and slow clients from holding connections for ever
(a connection costs a file descriptor and, on the proxy, a place among ``max_viewers``):
a request must arrive whole within ``request_timeout`` seconds of its first byte
(slowloris), and a connection that holds no session and has sent nothing for
``idle_timeout`` seconds is closed.  A connection with sessions is left to the sessions'
own liveness rules (RTSP session timeouts, a stalled viewer's send buffer).  Time is the
reactor's (``factory.reactor``), so tests drive it with ``task.Clock``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from globaleye.media.rtsp.message import (
    REASONS,
    Headers,
    InterleavedFrame,
    RtspCodecError,
    RtspParser,
    RtspRequest,
    RtspResponse,
    redact,
)

#: Requests a client may pipeline before it is taken for a flood and disconnected.
MAX_QUEUED_REQUESTS = 8
#: Seconds a request may take from its first byte to its last.
REQUEST_TIMEOUT = 10.0
#: Seconds a connection without sessions may stay silent (RFC 2326's session timeout).
IDLE_TIMEOUT = 60.0
#: The methods both servers offer (RFC 2326 §10).
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"

log = Logger()

S = TypeVar("S")


class Refusal(Exception):
    """A request answered with an error status.

    *reason* goes to the log, not to the peer (it may name accounts, tokens, addresses);
    *headers* are added to the answer (``Allow`` of a 405, a 401's ``WWW-Authenticate``).
    """

    def __init__(self, code: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.headers = headers or []


class RtspServerConnection(Protocol):
    transport: Any  # Twisted's ITransport | None is too narrow for TCP specifics
    #: Names this server in log lines and in the Server header.
    log_name = "RTSP"
    server_name = "GlobalEye"
    factory: Any  # has a ``refusals`` Counter and a ``reactor``
    #: Subclasses opt in with IDLE_TIMEOUT (and call this class's connectionLost); 0 turns the
    #: idle and slow-request checks off (see the module docstring).
    idle_timeout = 0.0
    request_timeout = REQUEST_TIMEOUT

    def __init__(self) -> None:
        self.parser = RtspParser()
        self.queue: collections.deque[RtspRequest] = collections.deque()
        self.busy = False
        self.closed = False
        self.paused = False
        self.peer = "?"
        self._last_input = 0.0
        self._partial_since: float | None = None
        self._watch: Any = None

    def connectionMade(self) -> None:  # noqa: N802
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        if self.idle_timeout > 0:
            clock = self.factory.reactor
            self._last_input = clock.seconds()
            self._watch = clock.callLater(min(self.idle_timeout, self.request_timeout) / 2, self._check_idle)

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.closed = True
        if self._watch is not None and self._watch.active():
            self._watch.cancel()
        self._watch = None

    def has_sessions(self) -> bool:
        """Whether the client holds a session here (then the idle rule does not apply)."""
        return bool(getattr(self, "sessions", None))

    def check_sessions(self, now: float) -> None:
        """Ends this connection's sessions that have shown no sign of life (subclasses)."""

    def _check_idle(self) -> None:
        self._watch = None
        if self.closed:
            return
        clock = self.factory.reactor
        now = clock.seconds()
        if self._partial_since is not None and now - self._partial_since > self.request_timeout:
            log.warn("{name} {peer}: request incomplete after {s:g} s ({n} bytes); closing", name=self.log_name,
                     peer=self.peer, s=self.request_timeout, n=self.parser.buffered)
            self.factory.refusals[408] += 1
            self.drop("request timeout")
            return
        self.check_sessions(now)
        if self.closed:
            return
        if not self.busy and not self.queue and not self.has_sessions() \
                and now - self._last_input > self.idle_timeout:
            log.info("{name} {peer}: no request for {s:g} s and no session; closing", name=self.log_name,
                     peer=self.peer, s=self.idle_timeout)
            self.drop("idle")
            return
        self._watch = clock.callLater(min(self.idle_timeout, self.request_timeout) / 2, self._check_idle)

    def drop(self, reason: str) -> None:
        """Close the connection; subclasses release what they hold first."""
        if not self.closed:
            self.closed = True
            self.transport.loseConnection()

    # -- input

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.closed:
            return
        if self._watch is not None:
            self._last_input = now = self.factory.reactor.seconds()
        try:
            events = self.parser.feed(data)
        except RtspCodecError as e:
            log.warn("{name} {peer}: refused: unparsable input ({e}); closing", name=self.log_name,
                     peer=self.peer, e=e)
            self.factory.refusals[400] += 1
            self.transport.write(RtspResponse(400, headers=Headers([("CSeq", "0")])).encode())
            self.drop("unparsable")
            return
        if self._watch is not None:
            # The time the message still incomplete in the parser began arriving (about).
            if not self.parser.buffered:
                self._partial_since = None
            elif events or self._partial_since is None:
                self._partial_since = now
        for event in events:
            if isinstance(event, InterleavedFrame):
                self.interleaved(event)
            elif isinstance(event, RtspRequest):
                if len(self.queue) >= MAX_QUEUED_REQUESTS:
                    log.warn("{name} {peer}: refused: more than {n} pipelined requests; closing",
                             name=self.log_name, peer=self.peer, n=MAX_QUEUED_REQUESTS)
                    self.drop("pipelining")
                    return
                self.queue.append(event)
            # Responses: a server sends no requests, so any response is stray; ignored.
        self._pump()

    def interleaved(self, frame: InterleavedFrame) -> None:
        """A binary frame from the client (RTCP receiver reports over TCP)."""

    # -- requests

    #: The methods offered (``Public`` of OPTIONS, ``Allow`` of a 405).
    public = PUBLIC
    #: Methods of RFC 2326 this server knows and will not do: 405 with ``Allow`` (RFC 2326
    #: §10.1 lists no handler here for them); any other method without a handler is 501.
    refused_methods = frozenset({"ANNOUNCE", "RECORD", "REDIRECT"})
    #: Added to the logged reason of a 405.
    refused_note = ""
    #: Whether a 501 carries ``Allow`` too (the proxy's does, the camera's does not).
    allow_with_501 = False

    async def handle(self, request: RtspRequest) -> Any:
        """The answer to one request: its ``do_<METHOD>``'s, or a refusal's."""
        try:
            return await self.dispatch(request)
        except Refusal as refusal:
            self.refused(request, refusal)
            return self.reply(request, refusal.code, refusal.headers)
        except RtspCodecError as e:
            self.malformed(request, e)
            return self.reply(request, 400)

    async def dispatch(self, request: RtspRequest) -> Any:
        """505 for another RTSP version, 400 without CSeq, 405/501 for methods without a handler."""
        if request.version != "RTSP/1.0":
            raise Refusal(505, f"version {request.version}")
        if request.cseq is None:
            raise Refusal(400, "no CSeq")
        method = request.method.upper()
        handler = getattr(self, "do_" + method, None)
        if method in self.refused_methods:
            raise Refusal(405, f"method {request.method}{self.refused_note}", [("Allow", self.public)])
        if handler is None:
            raise Refusal(501, f"method {request.method}", [("Allow", self.public)] if self.allow_with_501 else [])
        return await handler(request)

    def refused(self, request: RtspRequest, refusal: Refusal) -> None:
        """Log and count a refusal (before its answer is sent)."""
        log.warn("{name} {peer}: refused {method} {uri}: {code} {reason}", name=self.log_name, peer=self.peer,
                 method=request.method, uri=redact(request.uri), code=refusal.code, reason=refusal.reason)
        self.factory.refusals[refusal.code] += 1

    def malformed(self, request: RtspRequest, error: RtspCodecError) -> None:
        """Log and count a request with a malformed header (answered 400)."""
        log.warn("{name} {peer}: refused {method}: 400 {e}", name=self.log_name, peer=self.peer,
                 method=request.method, e=error)
        self.factory.refusals[400] += 1

    def lookup_session(self, request: RtspRequest, find: Callable[[str], S | None], required: bool = True) -> S | None:
        """The session a request's ``Session`` header names (its id, up to ``;``), found with *find*.

        None when the request names none and need not; 454 when it must and does not, or when
        *find* knows no such session (RFC 2326 §11.3.6).
        """
        header = request.headers.get("Session")
        if header is None:
            if required:
                raise Refusal(454, "no Session header")
            return None
        session = find(header.split(";")[0].strip())
        if session is None:
            raise Refusal(454, f"unknown session {header[:40]!r}")
        return session

    def _pump(self) -> None:
        if self.busy or not self.queue or self.closed:
            return
        request = self.queue.popleft()
        self.busy = True
        d = Deferred.fromCoroutine(self.handle(request))
        d.addErrback(self._crashed, request)
        d.addBoth(self._done)

    def _crashed(self, failure: Failure, request: RtspRequest) -> RtspResponse:
        log.failure("{name} {peer}: {method} {uri} crashed", failure, name=self.log_name, peer=self.peer,
                    method=request.method, uri=redact(request.uri))
        return self.reply(request, 500)

    def _done(self, _result: object) -> None:
        self.busy = False
        self._pump()

    # -- output

    def reply(self, request: RtspRequest, code: int, headers: list[tuple[str, str]] | None = None,
              body: bytes = b"", content_type: str = "") -> RtspResponse:
        h = Headers([("CSeq", request.cseq or "0"), ("Server", self.server_name),
                     ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))])
        for k, v in headers or []:
            h.add(k, v)
        if body and content_type:
            h.add("Content-Type", content_type)
        response = RtspResponse(code, REASONS.get(code, ""), h, body)
        if not self.closed and self.transport is not None:
            self.transport.write(response.encode())
        return response
