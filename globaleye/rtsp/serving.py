"""What every RTSP server connection of GlobalEye shares: the camera's and the proxy's.

Both read requests (and interleaved frames) with the same incremental parser, answer
unparsable input with 400 and close, bound the number of pipelined requests, handle
requests strictly one at a time in arrival order (a PLAY must not overtake its
SETUP, even when SETUP waits for the platform), turn a crashed handler into 500, and
stamp every response with CSeq, Server and Date.  Subclasses implement
:meth:`RtspServerConnection.handle` and, if they care, :meth:`interleaved`.
"""

from __future__ import annotations

import collections
import re
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from globaleye.rtsp.message import (
    REASONS,
    Headers,
    InterleavedFrame,
    RtspCodecError,
    RtspParser,
    RtspRequest,
    RtspResponse,
)

#: Requests a client may pipeline before it is taken for a flood and disconnected.
MAX_QUEUED_REQUESTS = 8

log = Logger()


def redact(uri: str) -> str:
    """Logs must not carry usable tokens (they are bearer credentials for a minute)."""
    return re.sub(r"(hashtoken=)([^&/]{0,4})[^&/]*", r"\1\2…", uri, flags=re.IGNORECASE)


class RtspServerConnection(Protocol):
    transport: Any  # Twisted's ITransport | None is too narrow for TCP specifics
    #: Names this server in log lines and in the Server header.
    log_name = "RTSP"
    server_name = "GlobalEye"
    factory: Any  # has a ``refusals`` Counter

    def __init__(self) -> None:
        self.parser = RtspParser()
        self.queue: collections.deque[RtspRequest] = collections.deque()
        self.busy = False
        self.closed = False
        self.paused = False
        self.peer = "?"

    def connectionMade(self) -> None:  # noqa: N802
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"

    def drop(self, reason: str) -> None:
        """Close the connection; subclasses release what they hold first."""
        if not self.closed:
            self.closed = True
            self.transport.loseConnection()

    # -- input

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.closed:
            return
        try:
            events = self.parser.feed(data)
        except RtspCodecError as e:
            log.warn("{name} {peer}: refused: unparsable input ({e}); closing", name=self.log_name,
                     peer=self.peer, e=e)
            self.factory.refusals[400] += 1
            self.transport.write(RtspResponse(400, headers=Headers([("CSeq", "0")])).encode())
            self.drop("unparsable")
            return
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

    async def handle(self, request: RtspRequest) -> Any:
        raise NotImplementedError

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
