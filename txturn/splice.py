"""The RFC 6062 data path: a client data connection joined to a peer connection.

``Pipe`` joins the two once ConnectionBind succeeded (early peer bytes first,
backpressure both ways, half-close passed on, the bandwidth bucket); when both
sockets are plain kernel TCP sockets ``SplicePump`` takes over and moves the bytes
with ``os.splice`` (kernel to kernel) through a pipe pair.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING, Any, cast

import attrs
from twisted.internet import interfaces, tcp
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from txturn.allocation import PeerConnection, TurnServer
    from txturn.transports import PeerProtocol, TurnStreamProtocol

log = Logger(namespace="txturn.turnserver")

# --------------------------------------------------------------------------- the RFC 6062 data path


@implementer(interfaces.IPushProducer)
class _Gate:
    """Pauses a transport while *any* reason to pause holds.

    Several parties want to pause a peer/client transport: the other side's
    write buffer (backpressure), the bandwidth bucket, the early buffer.  Each
    one resuming must not undo the others' pauses."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.reasons: set[str] = set()

    def pause(self, reason: str) -> None:
        if not self.reasons:
            self.transport.pauseProducing()
        self.reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.reasons:
            self.reasons.discard(reason)
            if not self.reasons:
                self.transport.resumeProducing()

    # IPushProducer, as seen by the consumer we are registered with:
    def pauseProducing(self) -> None:  # noqa: N802
        self.pause("backpressure")

    def resumeProducing(self) -> None:  # noqa: N802
        self.resume("backpressure")

    def stopProducing(self) -> None:  # noqa: N802
        """The consumer went away; Pipe.lost handles the close."""


class _ReasonPauser:
    def __init__(self, targets: list[Any], reason: str) -> None:
        self.targets = targets
        self.reason = reason

    def pauseProducing(self) -> None:  # noqa: N802
        for t in self.targets:
            t.pause(self.reason)

    def resumeProducing(self) -> None:  # noqa: N802
        for t in self.targets:
            t.resume(self.reason)


class Pipe:
    """A bound RFC 6062 connection: client data connection <-> peer connection.

    Plain path: Twisted reads, we write to the other transport, with producer
    registration for backpressure and half-close propagated both ways.  When
    both sockets are plain kernel TCP sockets, ``SplicePump`` takes over and
    Python no longer touches the bytes.
    """

    def __init__(
        self,
        server: TurnServer,
        conn: PeerConnection,
        peer: PeerProtocol,
        client: TurnStreamProtocol,
    ) -> None:
        self.server = server
        self.conn = conn
        self.peer = peer
        self.client = client
        self.gates = {peer: _Gate(peer.transport), client: _Gate(client.transport)}
        self.eof: set[Any] = set()
        self.closed = False
        self.bytes_to_peer = 0
        self.bytes_from_peer = 0
        self.throttle = conn.allocation.throttle
        self.bandwidth = _ReasonPauser(list(self.gates.values()), "bandwidth")
        self.splice: SplicePump | None = None
        self.splice_tries = 0

    def other(self, end: Any) -> Any:
        return self.client if end is self.peer else self.peer

    def start(self, early: bytes, leftover: bytes, peer_eof: bool) -> None:
        peer, client = self.peer, self.client
        peer.pipe = self
        client.pipe = self
        _consumer(client.transport).registerProducer(self.gates[peer], True)
        _consumer(peer.transport).registerProducer(self.gates[client], True)
        if self.throttle is not None:
            self.throttle.register(self.bandwidth)
        if early:
            self.received(peer, early)
        if leftover:
            self.received(client, leftover)
        if peer.paused_early:
            peer.paused_early = False
            _producer(peer.transport).resumeProducing()
        if peer_eof:
            self.read_eof(peer)
        if self.server.splice_enabled and not self.eof:
            self._try_splice()

    def received(self, end: Any, data: bytes) -> None:
        if self.closed:
            return
        if end is self.peer:
            self.bytes_from_peer += len(data)
        else:
            self.bytes_to_peer += len(data)
        self.other(end).transport.write(data)
        if self.throttle is not None:
            self.throttle.consume(len(data))

    def read_eof(self, end: Any) -> None:
        if self.closed or end in self.eof:
            return
        self.eof.add(end)
        target = self.other(end).transport
        target.unregisterProducer()
        if len(self.eof) == 2:
            self.close()
            return
        if isinstance(target, tcp.Connection):
            target.loseWriteConnection()
        else:
            # TLS (or anything else) has no reliable half-close -- and a TLS
            # wrapper would forward loseWriteConnection to the raw TCP socket
            # under the session -- so a FIN from one side closes both.
            self.close()

    def lost(self, end: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.throttle is not None:
            self.throttle.unregister(self.bandwidth)
        if self.splice is not None:
            self.splice.detach()
        for end in (self.peer, self.client):
            t = end.transport
            if t is None:
                continue
            try:
                _consumer(t).unregisterProducer()
            except Exception:
                pass
            t.loseConnection()
        self.server.pipe_closed(self)

    # ------------------------------------------------------------- splice

    def _try_splice(self) -> None:
        """Hand both sockets to the kernel once Twisted's write buffers are
        empty (what is already buffered must go out first, in order).

        Under a steady load those buffers never empty by themselves, so both
        sockets stop being read first (a "splice" pause on each gate, which no
        other party's resume can undo); the buffers then drain into the kernel
        and the switch is made.  If they do not drain in time (a peer that
        stopped reading), reading resumes and the pipe stays on the Python path.
        """
        if self.closed or self.eof or self.splice is not None:
            for gate in self.gates.values():
                gate.resume("splice")
            return
        peer_t, client_t = self.peer.transport, self.client.transport
        if not (isinstance(peer_t, tcp.Connection) and isinstance(client_t, tcp.Connection)):
            return  # TLS or a test transport: stay on the Python path
        ends = (peer_t, client_t)
        for gate in self.gates.values():
            gate.pause("splice")
        if not all(_drained(t) for t in ends):
            self.splice_tries += 1
            if self.splice_tries < SPLICE_DRAIN_TRIES:
                self.server.reactor.callLater(0.005, self._try_splice)
            else:
                for gate in self.gates.values():
                    gate.resume("splice")
            return
        for t in ends:
            t.unregisterProducer()
        if self.throttle is not None:
            self.throttle.unregister(self.bandwidth)
        self.splice = SplicePump(self)
        self.splice.start()
        self.server.stats_spliced += 1


def _consumer(transport: object) -> interfaces.IConsumer:
    """A connected TCP/TLS transport (both provide IConsumer)."""
    assert transport is not None
    return cast(interfaces.IConsumer, transport)


def _producer(transport: object) -> interfaces.IPushProducer:
    """A connected TCP/TLS transport (both provide IPushProducer)."""
    assert transport is not None
    return cast(interfaces.IPushProducer, transport)


def _drained(transport: Any) -> bool:
    return (
        not transport.dataBuffer
        and not getattr(transport, "_tempDataBuffer", None)
        and not transport.disconnecting
    )


SPLICE_DRAIN_TRIES = 400  # x 5 ms: how long a pipe may wait for its buffers to drain
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
SPLICE_CHUNK = 1 << 16


@implementer(interfaces.IReadDescriptor, interfaces.IWriteDescriptor)
class _SpliceEnd:
    """One socket of a spliced pair, registered with the reactor in place of the
    Twisted transport that owns it (the transport keeps the socket object and
    closes it at the end)."""

    def __init__(self, pump: SplicePump, transport: Any) -> None:
        self.pump = pump
        self.transport = transport
        self.fd = transport.fileno()

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:  # noqa: N802
        return "SpliceEnd"

    def doRead(self) -> None:  # noqa: N802
        self.pump.readable(self)

    def doWrite(self) -> None:  # noqa: N802
        self.pump.writable(self)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.pump.fail(reason.getErrorMessage())

    def readConnectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.pump.readable(self)


@attrs.define(eq=False)
class _Flow:
    """One direction: bytes read from ``src`` go through a pipe into ``dst``."""

    src: _SpliceEnd
    dst: _SpliceEnd
    rfd: int
    wfd: int
    to_peer: bool
    pending: int = 0
    eof: bool = False
    shut: bool = False


class SplicePump:
    """Moves a bound RFC 6062 connection's bytes with ``os.splice`` (socket ->
    pipe -> socket), so payload never enters Python.  Backpressure: while the
    pipe holds bytes the destination would not take, the source is not read.
    EOF becomes shutdown(SHUT_WR) on the other socket (half-close), and when
    both directions are done the owning transports are closed normally."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.reactor = pipe.server.reactor
        self.peer = _SpliceEnd(self, pipe.peer.transport)
        self.client = _SpliceEnd(self, pipe.client.transport)
        self.flows: list[_Flow] = []
        self.paused = False
        self.done = False

    def start(self) -> None:
        for end in (self.pipe.peer.transport, self.pipe.client.transport):
            # Pipe._try_splice starts a pump only when both ends are tcp.Connection.
            t = cast(tcp.Connection, end)
            t.stopReading()
            t.stopWriting()
        for src, dst, to_peer in ((self.client, self.peer, True), (self.peer, self.client, False)):
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self.flows.append(_Flow(src, dst, r, w, to_peer))
        if self.pipe.throttle is not None:
            self.pipe.throttle.register(self)
        self._update()

    # Throttle producer interface
    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True
        self._update()

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        for flow in self.flows:
            self._move(flow)
        self._update()

    def readable(self, end: _SpliceEnd) -> None:
        for flow in self.flows:
            if flow.src is end:
                self._move(flow)
        self._update()

    def writable(self, end: _SpliceEnd) -> None:
        for flow in self.flows:
            if flow.dst is end:
                self._drain(flow)
                if not flow.pending:
                    self._move(flow)
        self._update()

    def _move(self, flow: _Flow) -> None:
        for _ in range(8):  # bounded, so one busy connection cannot starve others
            if self.done or self.paused or flow.eof or flow.pending:
                return
            try:
                n = os.splice(flow.src.fd, flow.wfd, SPLICE_CHUNK, flags=SPLICE_FLAGS)
            except BlockingIOError:
                return
            except OSError as e:
                self.fail(f"splice read: {e}")
                return
            if n == 0:
                flow.eof = True
                break
            flow.pending += n
            if flow.to_peer:
                self.pipe.bytes_to_peer += n
            else:
                self.pipe.bytes_from_peer += n
            self._drain(flow)
            if self.pipe.throttle is not None:
                self.pipe.throttle.consume(n)
        if flow.eof and not flow.pending:
            self._shut(flow)

    def _drain(self, flow: _Flow) -> None:
        while flow.pending and not self.done:
            try:
                m = os.splice(flow.rfd, flow.dst.fd, flow.pending, flags=SPLICE_FLAGS)
            except BlockingIOError:
                return
            except OSError as e:
                self.fail(f"splice write: {e}")
                return
            if m == 0:
                return
            flow.pending -= m
        if flow.eof and not flow.pending:
            self._shut(flow)

    def _shut(self, flow: _Flow) -> None:
        if flow.shut:
            return
        flow.shut = True
        try:
            flow.dst.transport.socket.shutdown(socket.SHUT_WR)
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                self.fail(f"shutdown: {e}")
                return
        if all(f.shut for f in self.flows):
            self.finish()

    def _update(self) -> None:
        if self.done:
            return
        for end in (self.peer, self.client):
            out = next(f for f in self.flows if f.src is end)
            inn = next(f for f in self.flows if f.dst is end)
            if not self.paused and not out.eof and not out.pending:
                self.reactor.addReader(end)
            else:
                self.reactor.removeReader(end)
            if inn.pending:
                self.reactor.addWriter(end)
            else:
                self.reactor.removeWriter(end)

    def detach(self) -> None:
        """Give the sockets back to their transports (which are about to close)."""
        if self.done:
            return
        self.done = True
        for end in (self.peer, self.client):
            self.reactor.removeReader(end)
            self.reactor.removeWriter(end)
        for flow in self.flows:
            for fd in (flow.rfd, flow.wfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self.pipe.throttle is not None:
            self.pipe.throttle.unregister(self)

    def finish(self) -> None:
        self.pipe.close()

    def fail(self, why: str) -> None:
        if self.done:
            return
        log.debug("splice pipe {cid} ends: {why}", cid=self.pipe.conn.connection_id, why=why)
        self.pipe.close()
