"""The platform's HTTP site: twisted.web with limits applied while a request arrives.

Twisted's own ``Site`` reads a whole request body (into a temporary file beyond
100 kB) before any resource can look at its size, and its idle timeout restarts
with every byte, so a client adding a header line every few seconds keeps a
connection for ever.  :class:`LimitedSite` closes both holes:

* a ``Content-Length`` above ``max_body`` is answered ``413`` as soon as the
  headers are in, and the connection closed without reading the body; a chunked
  body is cut off with ``413`` the moment it passes ``max_body``; bodies are kept
  in memory (they are at most ``max_body``), never spooled to disk;
* the request line and headers must arrive within ``header_timeout`` seconds of
  the request's first byte (of the connection, for the first request), the body
  within ``body_timeout`` seconds of the end of the headers; otherwise ``408``
  and the connection is closed;
* a keep-alive connection may stay idle ``idle_timeout`` seconds between requests.

Time comes from the site's reactor (``Site.reactor``, a Clock in tests).  Refusals
are logged through a :class:`~globaleye.guard.netlimits.SummaryLog`: once per peer and
reason, then as counts.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import IResource

from globaleye.guard.netlimits import SummaryLog, address_group
from globaleye.util.deadline import PhaseDeadline

log = Logger(namespace="globaleye.guard.httpsite")

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
IDLE_TIMEOUT = 60.0
#: After a refusal: seconds, and bytes, of the client's input read and dropped before the connection is cut.
LINGER = 2.0
LINGER_BYTES = 1 << 20

_REASONS = {408: b"Request Timeout", 413: b"Content Too Large"}


class LimitedRequest(server.Request):
    """Keeps the body in memory and stops it at the channel's ``max_body``."""

    channel: LimitedChannel

    def gotLength(self, length: int | None) -> None:  # noqa: N802
        # The channel refused any Content-Length above max_body already: memory is enough.
        self.content = io.BytesIO()
        self._body_size = 0

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        if self.channel.refused:
            return
        self._body_size += len(data)
        if self._body_size > self.channel.max_body:
            self.channel.refuse(413, f"body larger than {self.channel.max_body} bytes")
            return
        super().handleContentChunk(data)


class LimitedChannel(PhaseDeadline, http.HTTPChannel):
    """An HTTP/1.1 channel with header and body deadlines and a body size limit."""

    max_body = 65536
    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT
    summary: SummaryLog | None = None

    transport: Any

    def __init__(self) -> None:
        super().__init__()
        self.refused = False
        #: Requests whose headers arrived whole (the connection limits' "established").
        self.requests_seen = 0
        self._deadline: Any = None
        self._phase = ""
        self._peer = "?"
        self._linger: Any = None
        self._dropped = 0

    # -- deadlines

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        peer = self.transport.getPeer()
        self._peer = address_group(str(getattr(peer, "host", peer)))
        self._arm(self.header_timeout, "headers")

    def _expired(self) -> None:
        self._deadline = None
        seconds = self.header_timeout if self._phase == "headers" else self.body_timeout
        self.refuse(408, f"request {self._phase} not complete within {seconds:g} s")

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.refused:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES and self._linger is not None:
                self._linger.cancel()
                self._abort()
            return
        if self._deadline is None and not self._handlingRequest and data:
            self._arm(self.header_timeout, "headers")  # the first byte of the next request
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if not self.refused:
            super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self.refused:
            super().rawDataReceived(data)

    def allHeadersReceived(self) -> None:  # noqa: N802
        self._disarm()
        if self.length is not None and self.length > self.max_body:
            self.refuse(413, f"Content-Length {self.length} larger than {self.max_body} bytes")
            return
        self.requests_seen += 1
        super().allHeadersReceived()
        if self.length != 0:
            self._arm(self.body_timeout, "body")

    def allContentReceived(self) -> None:  # noqa: N802
        if self.refused:
            return
        self._disarm()
        super().allContentReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._disarm()
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        super().connectionLost(reason)

    # -- refusing

    def refuse(self, code: int, reason: str) -> None:
        """Answer *code* at once and close, reading nothing more of this connection."""
        if self.refused:
            return
        self.refused = True
        self._disarm()
        if self.summary is not None:
            self.summary.note("http", self._peer, f"{code}: {reason}")
        body = (reason + "\n").encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (code, _REASONS.get(code, b"Refused"), len(body), body))
        if ITCPTransport.providedBy(self.transport) and not ISSLTransport.providedBy(self.transport):
            # Lingering close (as nginx): send FIN after the answer but go on reading (and dropping)
            # for a moment, so a client still sending its body gets the answer rather than a reset.
            self.transport.loseWriteConnection()
            self._linger = self.callLater(LINGER, self._abort)
        else:
            self.transport.loseConnection()
            self._linger = self.callLater(self.abortTimeout or LINGER, self._abort)

    def _abort(self) -> None:
        self._linger = None
        self.transport.abortConnection()


class LimitedSite(server.Site):
    """``server.Site`` building :class:`LimitedChannel` with :class:`LimitedRequest`."""

    protocol = LimitedChannel  # type: ignore[assignment]
    requestFactory = LimitedRequest

    def __init__(self, resource: IResource, reactor: Any = None, *, max_body: int = 65536,
                 header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, log_interval: float = 60.0) -> None:
        # Form bodies are not parsed into request.args: no resource here reads them.
        super().__init__(resource, timeout=idle_timeout, reactor=reactor, parsePOSTFormSubmission=False)
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.summary = SummaryLog(self.reactor, log_interval, log)

    def stopFactory(self) -> None:  # noqa: N802
        super().stopFactory()
        self.summary.flush()

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        channel = super().buildProtocol(addr)
        channel.max_body = self.max_body
        channel.header_timeout = self.header_timeout
        channel.body_timeout = self.body_timeout
        channel.summary = self.summary
        return channel


def established(channel: Any) -> bool:
    """For the connection limits: a connection that sent at least one whole request head."""
    return bool(getattr(channel, "requests_seen", 0))
