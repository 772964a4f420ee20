"""A Twisted protocol that exchanges §7.5 messages in §7.4 frames, either side.

Both ends of the device session are built on :class:`MessageProtocol`: the
gateway's per-device session and the simulator's camera.  It owns what the two
share and what is easy to get subtly wrong twice: the frame decoder, the per-sender
SEQ counter (§7.4.4: 0..65535 then 0), matching a response to its request by SEQ
*and* command (never to the wrong request, even after a wrap), timeouts from the
reactor clock, failing every outstanding request when the connection drops, and
logging each refusal with the peer and reason.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from globaleye.device.protocol import messages
from globaleye.device.protocol.frame import (
    BadDigest,
    Frame,
    FrameDecoder,
    FrameError,
    Skipped,
    encode_frame,
    next_seq,
)


class CommandError(Exception):
    """A request to the other side did not get its answer."""


class CommandTimeout(CommandError):
    pass


class SessionLost(CommandError):
    """The connection closed while the request was outstanding."""


class MalformedResponse(CommandError):
    pass


@attrs.define
class _Pending:
    response_type: type[messages.Message]
    deferred: Deferred[Any]
    timer: IDelayedCall | None


@attrs.define
class SessionStats:
    frames_in: int = 0
    frames_out: int = 0
    bad_digests: int = 0
    skipped_bytes: int = 0
    malformed: int = 0
    unmatched: int = 0


class MessageProtocol(Protocol):
    """Frames and messages in, requests and responses out; subclasses handle requests."""

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.decoder = FrameDecoder()
        self.stats = SessionStats()
        self._seq = -1
        self._pending: dict[int, _Pending] = {}
        self.connected = False

    # Identification for logs -----------------------------------------------------------

    @property
    def peer(self) -> str:
        if self.transport is None:
            return "?"
        address = self.transport.getPeer()
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        return f"{host}:{port}" if host is not None else str(address)

    def describe(self) -> str:
        """Who this session is, for log lines; subclasses add the DevID."""
        return self.peer

    # Twisted protocol -------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True

    def dataReceived(self, data: bytes) -> None:
        try:
            events = self.decoder.feed(data)
        except FrameError as e:
            self.refuse(f"stream cannot be resynchronised: {e}", close=True)
            return
        for event in events:
            if not self.connected:
                return
            if isinstance(event, Frame):
                self.stats.frames_in += 1
                self._frame_received(event)
            elif isinstance(event, BadDigest):
                self.stats.bad_digests += 1
                self.log.warn("{who}: dropped frame cmd={cmd:#04x} seq={seq} with a bad MD5 digest",
                              who=self.describe(), cmd=event.cmd, seq=event.seq)
            elif isinstance(event, Skipped):
                self.stats.skipped_bytes += event.count
                self.log.warn("{who}: skipped {count} bytes of garbage between frames",
                              who=self.describe(), count=event.count)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        pending, self._pending = self._pending, {}
        for seq, entry in pending.items():
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
            entry.deferred.errback(SessionLost(
                f"{self.describe()}: connection closed before the answer to seq {seq} "
                f"({entry.response_type.ROOT}) arrived"))

    # Sending --------------------------------------------------------------------------

    def send(self, message: messages.Message, seq: int) -> None:
        assert message.CMD is not None, f"{type(message).__name__} is not a framed message"
        if self.transport is None or not self.connected:
            return
        self.stats.frames_out += 1
        self.transport.write(encode_frame(Frame(cmd=message.CMD, seq=seq, data=message.to_xml())))

    def respond(self, request: Frame, message: messages.Message) -> None:
        """§7.4.4: a response carries its request's SEQ."""
        self.send(message, request.seq)

    def allocate_seq(self) -> int:
        """The next SEQ of our own counter, skipping any still waiting for an answer."""
        for _ in range(0x10000):
            self._seq = next_seq(self._seq)
            if self._seq not in self._pending:
                return self._seq
        raise CommandError("all 65536 sequence numbers are waiting for answers")

    def request(self, message: messages.Message, timeout: float) -> Deferred[Any]:
        """Send *message*; the Deferred fires with the matching response message."""
        if not self.connected:
            return _failed(SessionLost(f"{self.describe()}: not connected"))
        seq = self.allocate_seq()
        deferred: Deferred[Any] = Deferred()
        timer = self.clock.callLater(timeout, self._timed_out, seq, timeout)
        self._pending[seq] = _Pending(messages.response_type(type(message)), deferred, timer)
        self.send(message, seq)
        return deferred

    def _timed_out(self, seq: int, timeout: float) -> None:
        entry = self._pending.pop(seq, None)
        if entry is not None:
            entry.deferred.errback(CommandTimeout(
                f"{self.describe()}: no {entry.response_type.ROOT} for seq {seq} within {timeout:g} s"))

    # Receiving -------------------------------------------------------------------------

    def _frame_received(self, frame: Frame) -> None:
        try:
            message = messages.parse(frame.data)
        except messages.MessageError as e:
            self.stats.malformed += 1
            entry = self._pending.get(frame.seq)
            if entry is not None and entry.response_type.CMD == frame.cmd:
                # It claims to answer our request; it cannot, so that request fails now.
                self._settle(frame.seq).errback(MalformedResponse(f"{self.describe()}: malformed answer: {e}"))
            self.refuse(f"malformed message in frame cmd={frame.cmd:#04x} seq={frame.seq}: {e}")
            return
        if message.CMD != frame.cmd:
            self.stats.malformed += 1
            self.refuse(f"frame cmd={frame.cmd:#04x} carries <{message.ROOT}> of command {message.CMD:#04x}")
            return
        if message.IS_RESPONSE:
            self._response_received(frame, message)
        else:
            self.request_received(frame, message)

    def _response_received(self, frame: Frame, message: messages.Message) -> None:
        entry = self._pending.get(frame.seq)
        if entry is None or not isinstance(message, entry.response_type):
            self.stats.unmatched += 1
            self.refuse(f"<{message.ROOT}> seq={frame.seq} answers no outstanding request")
            return
        self._settle(frame.seq).callback(message)

    def _settle(self, seq: int) -> Deferred[Any]:
        entry = self._pending.pop(seq)
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        return entry.deferred

    def request_received(self, frame: Frame, message: messages.Message) -> None:
        """Handle a request from the other side; subclasses override."""
        self.refuse(f"unexpected <{message.ROOT}>")

    def refuse(self, reason: str, close: bool = False) -> None:
        """Log a refusal with the peer and reason; optionally drop the connection."""
        self.log.warn("{who}: refused: {reason}", who=self.describe(), reason=reason)
        if close and self.transport is not None:
            self.connected = False
            self.transport.loseConnection()

    @property
    def outstanding(self) -> int:
        return len(self._pending)


def _failed(error: Exception) -> Deferred[Any]:
    deferred: Deferred[Any] = Deferred()
    deferred.errback(error)
    return deferred
