"""The Twisted side of the TURN server: the sockets clients and peers reach.

* ``TurnUdpProtocol`` -- the UDP listener: STUN messages and ChannelData on one socket.
* ``TurnStreamProtocol`` / ``TurnStreamFactory`` -- TCP and TLS listeners: the
  stream framing (:class:`txturn.framing.StreamFramer`), the deadlines
  (``first_message_timeout``, ``auth_timeout``) and their summarised log lines;
  after a successful RFC 6062 ConnectionBind the connection becomes a data
  connection handed to :class:`txturn.splice.Pipe`.
* ``UdpRelayProtocol`` / ``TcpRelayFactory`` / ``PeerProtocol`` -- the relayed
  transport addresses of allocations and the connections with peers.

The state they feed is :class:`txturn.allocation.TurnServer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import attrs
from twisted.internet import interfaces, protocol
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txturn import stun
from txturn.allocation import Address, Allocation, FiveTuple, PeerConnection, TurnServer, _host_port
from txturn.framing import StreamFramer
from txturn.splice import _producer

if TYPE_CHECKING:
    from txturn.splice import Pipe

log = Logger(namespace="txturn.turnserver")

#: A raw ConnectionBind request type word; the stream protocol stops parsing after
#: one so the bytes behind it stay raw for the peer.
_CONNECTION_BIND_REQUEST = 0x000B


# --------------------------------------------------------------------------- links


@attrs.define(eq=False)
class UdpLink:
    """A client reached through the shared UDP listening socket."""

    proto: TurnUdpProtocol
    client_addr: Address
    five_tuple: FiveTuple
    stream: bool = False

    def send(self, data: bytes) -> None:
        if self.proto.transport is not None:
            self.proto.transport.write(data, self.client_addr)

    def close(self) -> None:
        """UDP has no connection to close."""


# --------------------------------------------------------------------------- relays


class UdpRelayProtocol(protocol.DatagramProtocol):
    """The relayed transport address of a UDP allocation."""

    noisy = False  # one allocation, one relay port: the allocation's own log lines say enough

    def __init__(self, server: TurnServer) -> None:
        self.server = server
        self.allocation: Allocation | None = None

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802
        if self.allocation is not None:
            self.server.relay_datagram(self.allocation, data, (addr[0], addr[1]))


class TcpRelayFactory(protocol.Factory):
    """The listening relayed transport address of a TCP allocation."""

    noisy = False

    def __init__(self, server: TurnServer) -> None:
        self.server = server
        self.allocation: Allocation | None = None

    def buildProtocol(self, addr: Any) -> PeerProtocol | None:  # noqa: N802
        if self.allocation is None or self.allocation.deleted:
            return None
        return PeerProtocol(self.server, self.allocation, accepted=True)


class _ConnectFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, server: TurnServer, alloc: Allocation) -> None:
        self.server = server
        self.allocation = alloc
        self.deferred: Deferred[PeerProtocol] = Deferred()

    def buildProtocol(self, addr: Any) -> PeerProtocol:  # noqa: N802
        return PeerProtocol(self.server, self.allocation, accepted=False, factory=self)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        if not self.deferred.called:
            self.deferred.errback(reason)


@implementer(interfaces.IHalfCloseableProtocol)
class PeerProtocol(protocol.Protocol):
    """The server's side of a TCP connection with a peer (RFC 6062)."""

    def __init__(
        self,
        server: TurnServer,
        allocation: Allocation,
        *,
        accepted: bool,
        factory: _ConnectFactory | None = None,
    ) -> None:
        self.server = server
        self.allocation = allocation
        self.accepted = accepted
        self.connect_factory = factory
        self.conn: PeerConnection | None = None
        self.pipe: Pipe | None = None
        self.paused_early = False

    def connectionMade(self) -> None:  # noqa: N802
        if self.accepted:
            self.server.peer_connected(self.allocation, self)
        elif self.connect_factory is not None and not self.connect_factory.deferred.called:
            self.connect_factory.deferred.callback(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.received(self, data)
            return
        conn = self.conn
        if conn is None:
            return
        conn.early += data
        if len(conn.early) > self.server.settings.early_buffer_limit and not self.paused_early:
            self.paused_early = True
            _producer(self.transport).pauseProducing()

    def readConnectionLost(self) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.read_eof(self)
        elif self.conn is not None:
            self.conn.peer_eof = True

    def writeConnectionLost(self) -> None:  # noqa: N802
        """Our half-close reached the peer; nothing to do."""

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.lost(self)
        elif self.conn is not None:
            self.server.peer_lost(self.conn)


# --------------------------------------------------------------------------- client-facing protocols


class TurnUdpProtocol(protocol.DatagramProtocol):
    """TURN over UDP: STUN messages and ChannelData share one socket."""

    def __init__(self, server: TurnServer) -> None:
        self.server = server
        self._local: Address | None = None

    def _local_address(self) -> Address:
        # The bound address never changes: ask the transport once, not per datagram.
        if self._local is None:
            assert self.transport is not None
            host = cast("IPv4Address | IPv6Address", self.transport.getHost())
            self._local = (host.host, host.port)
        return self._local

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802
        if not data:
            return
        client = (addr[0], addr[1])
        if data[0] == 0 and len(data) > 1 and data[1] == 1:  # Binding request
            reply = self.server.binding_reply(data, client, self._local_address())
            if reply is not None and self.transport is not None:
                self.transport.write(reply, client)
            return
        link = UdpLink(self, client, FiveTuple("udp", client, self._local_address()))
        if stun.is_channel_data(data[0]):
            self.server.handle_channel_data(data, link)
        elif data[0] < 0x40:
            Deferred.fromCoroutine(self.server.handle_stun(data, link)).addErrback(
                lambda f: log.failure("handling STUN from {client}", f, client=client)
            )


@implementer(interfaces.IHalfCloseableProtocol)
class TurnStreamProtocol(protocol.Protocol):
    """TURN over TCP or TLS: a control connection, or (after ConnectionBind) an
    RFC 6062 client data connection."""

    stream = True

    def __init__(self, server: TurnServer, proto_name: str) -> None:
        self.server = server
        self.proto_name = proto_name
        self.framer = StreamFramer()
        self.busy = False
        self.pumping = False
        self.pipe: Pipe | None = None
        self.is_data_connection = False
        self.disconnected = False
        self.five_tuple: FiveTuple | None = None
        self.client_addr: Address = ("", 0)
        #: Seconds from connect to the first whole STUN message (TLS: the handshake included)
        #: and to an allocation (or ConnectionBind); the factory sets them.  0: no deadline.
        self.first_message_timeout = 0.0
        self.auth_timeout = 0.0
        self.got_message = False
        self._timers: list[Any] = []

    def connectionMade(self) -> None:  # noqa: N802
        assert self.transport is not None
        self.client_addr = _host_port(self.transport.getPeer())
        self.five_tuple = FiveTuple(
            self.proto_name, self.client_addr, _host_port(self.transport.getHost())
        )
        clock = self.server.reactor
        if self.first_message_timeout > 0:
            self._timers.append(clock.callLater(self.first_message_timeout, self._first_message_due))
        if self.auth_timeout > 0:
            self._timers.append(clock.callLater(self.auth_timeout, self._auth_due))

    @property
    def established(self) -> bool:
        """Holds an allocation, or became an RFC 6062 data connection."""
        if self.is_data_connection or self.pipe is not None:
            return True
        alloc = self.server.allocations.get(self.five_tuple) if self.five_tuple else None
        return alloc is not None and alloc.link is self

    def _first_message_due(self) -> None:
        if not self.got_message and not self.disconnected:
            self._time_out(f"no STUN message within {self.first_message_timeout:g} s"
                           + (" (TLS handshake included)" if self.proto_name == "tls" else ""))

    def _auth_due(self) -> None:
        if not self.established and not self.disconnected:
            self._time_out(f"no allocation within {self.auth_timeout:g} s")

    def _time_out(self, reason: str) -> None:
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        factory = getattr(self, "factory", None)
        if isinstance(factory, TurnStreamFactory):
            factory.note_timeout(self.client_addr[0], reason)
        assert self.transport is not None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:  # pragma: no cover - a test transport
            self.transport.loseConnection()

    def send(self, data: bytes) -> None:
        if not self.disconnected and self.pipe is None:
            assert self.transport is not None
            self.transport.write(data)

    def close(self) -> None:
        if not self.disconnected:
            assert self.transport is not None
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.received(self, data)
            return
        self.framer.feed(data)
        self._pump()

    def _pump(self) -> None:
        if self.pumping:
            return
        self.pumping = True
        try:
            while not self.busy and self.pipe is None and not self.disconnected:
                try:
                    frame = self.framer.next_frame()
                except stun.StunDecodeError as e:
                    self.server._malformed(self.five_tuple, self.client_addr, "dropping stream with bad framing", e)
                    assert self.transport is not None
                    self.transport.loseConnection()
                    return
                if frame is None:
                    return
                self.got_message = True
                if stun.is_channel_data(frame[0]):
                    self.server.handle_channel_data(frame, self)
                    continue
                d = Deferred.fromCoroutine(self.server.handle_stun(frame, self))
                d.addErrback(lambda f: log.failure("handling STUN from {c}", f, c=self.five_tuple))
                if (frame[0] << 8 | frame[1]) == _CONNECTION_BIND_REQUEST and not d.called:
                    # Hold everything behind a ConnectionBind: if it succeeds those
                    # bytes are raw data for the peer, not STUN.
                    self.busy = True
                    d.addBoth(self._unbusy)
        finally:
            self.pumping = False

    def _unbusy(self, result: object) -> None:
        self.busy = False
        if self.pipe is None and self.framer.pending:
            self._pump()

    def enter_pipe_mode(self) -> bytes:
        leftover = self.framer.take_rest()
        self.is_data_connection = True
        return leftover

    def readConnectionLost(self) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.read_eof(self)
        else:
            assert self.transport is not None
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:  # noqa: N802
        """Our half-close reached the client; nothing to do."""

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.disconnected = True
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        if self.pipe is not None:
            self.pipe.lost(self)
        else:
            self.server.control_lost(self)


class TurnStreamFactory(protocol.Factory):
    """TCP/TLS listeners: a connection must send a STUN message within
    ``first_message_timeout`` seconds (which bounds a stalled TLS handshake too)
    and hold an allocation within ``auth_timeout`` seconds, or it is closed.
    Closures are logged once per peer and then as a count per ``log_interval``."""

    noisy = False

    def __init__(
        self,
        server: TurnServer,
        proto_name: str = "tcp",
        first_message_timeout: float = 10.0,
        auth_timeout: float = 30.0,
        log_interval: float = 60.0,
    ) -> None:
        self.server = server
        self.proto_name = proto_name
        self.first_message_timeout = first_message_timeout
        self.auth_timeout = auth_timeout
        self.log_interval = log_interval
        #: Connections closed by the deadlines (for tests and operators).
        self.timed_out = 0
        self._summary: dict[tuple[str, str], int] = {}
        self._flush_call: Any = None

    def buildProtocol(self, addr: Any) -> TurnStreamProtocol:  # noqa: N802
        p = TurnStreamProtocol(self.server, self.proto_name)
        p.factory = self
        p.first_message_timeout = self.first_message_timeout
        p.auth_timeout = self.auth_timeout
        return p

    def note_timeout(self, peer: str, reason: str) -> None:
        self.timed_out += 1
        key = (peer, reason)
        if key in self._summary:
            self._summary[key] += 1
        elif len(self._summary) < 1000:
            log.info("TURN {proto} {peer}: {reason}; closing (repeats summarised every {s:g} s)",
                     proto=self.proto_name, peer=peer, reason=reason, s=self.log_interval)
            self._summary[key] = 0
        if self._flush_call is None:
            self._flush_call = self.server.reactor.callLater(self.log_interval, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        summary, self._summary = self._summary, {}
        for (peer, reason), count in summary.items():
            if count:
                log.info("TURN {proto} {peer}: {count} more connections closed in {s:g} s: {reason}",
                         proto=self.proto_name, peer=peer, count=count, s=self.log_interval, reason=reason)

    def stopFactory(self) -> None:  # noqa: N802
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
