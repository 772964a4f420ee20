"""A Twisted STUN server: RFC 5389 Binding over UDP and TCP, classic RFC 3489, RFC 5780.

Layout, and why:

* :func:`handle_binding` is pure (Message in, Message out) so the TURN server can answer
  Binding requests on its own ports with exactly the same behaviour.
* :class:`StunServer` holds the (up to) four UDP sockets of RFC 3489 §9.3 / RFC 5780 --
  primary address A1 and alternate address A2, each with ports P1 and P2 -- and decides
  from which socket a response leaves (CHANGE-REQUEST) and to where (RESPONSE-ADDRESS,
  RESPONSE-PORT).  :meth:`StunServer.respond` is pure too, so the routing is unit-tested
  without sockets.
* :func:`stun_service` wraps it all in a ``MultiService`` that binds the sockets on start,
  picks free ports for port 0, and logs what it bound.

Policy decisions (see docs/txturn-stun.md):

* RESPONSE-ADDRESS is an amplification / reflection vector (RFC 3489 §9.2, §12.1): by
  default it is ignored and the answer goes to the source; ``response_address`` can be
  set to ``"same-host"`` (only a different port on the source's own IP) or ``"any"``.
* Without an alternate interface, a CHANGE-REQUEST asking for a change is answered with
  420 (Unknown Attribute) listing CHANGE-REQUEST, as RFC 5780 §7.2 requires; classic
  requests without change flags are still answered (MAPPED-ADDRESS is what a camera
  needs for port binding, spec §14), just without CHANGED-ADDRESS.
* Classic (RFC 3489) responses carry no SOFTWARE and no XOR attributes, and error
  reasons are space-padded to a multiple of 4: RFC 3489 parsers (Vovida, pystun3) do not
  skip padding and reject unknown attributes below 0x8000.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any, Literal, cast

import attrs
from twisted.application.service import MultiService
from twisted.internet import protocol
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
)
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from txturn import stun
from txturn.framing import StreamFramer
from txturn.logsummary import LogSummary
from txturn.stun import Attr, Class, Message, Method, StunDecodeError

__all__ = [
    "CHANGE_IP",
    "CHANGE_PORT",
    "StunServer",
    "StunServerConfig",
    "StunService",
    "StunTCPFactory",
    "StunTCPProtocol",
    "StunUDPProtocol",
    "error_response",
    "handle_binding",
    "stun_service",
]

#: Twisted's default datagram read size for listenUDP (passed explicitly).
UDP_MAX_PACKET = 8192


def _inet(address: IAddress) -> Address:
    """(host, port) of a bound/peer address: our sockets are all IPv4 or IPv6."""
    ip = cast("IPv4Address | IPv6Address", address)
    return (ip.host, ip.port)


log = Logger(namespace="txturn.stun")
#: Seconds over which repeated refusals of one peer are summarised in one line.
SUMMARY_INTERVAL = 60.0

CHANGE_IP = 0x4
CHANGE_PORT = 0x2

Address = tuple[str, int]
#: (address index, port index): (0, 0) is A1:P1, (1, 1) is A2:P2.
Slot = tuple[int, int]
PRIMARY: Slot = (0, 0)

ResponseAddressPolicy = Literal["ignore", "same-host", "any"]


def _validate_host(_instance: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        ipaddress.ip_address(value)


@attrs.frozen
class StunServerConfig:
    """Where and how the STUN server listens.

    ``port`` 0 picks a free port (the same number on A1 and A2, as RFC 3489 wants).
    ``alternate_port`` None means ``port + 1`` for a fixed port, a free port otherwise;
    it is only used when ``alternate_interface`` is set.
    """

    interface: str = attrs.field(default="127.0.0.1", validator=_validate_host)
    port: int = 3478
    alternate_interface: str | None = attrs.field(default=None, validator=_validate_host)
    alternate_port: int | None = None
    software: str = "txturn"
    tcp: bool = True
    tcp_idle_timeout: float = 60.0
    response_address: ResponseAddressPolicy = attrs.field(
        default="ignore", validator=attrs.validators.in_(("ignore", "same-host", "any"))
    )

    def __attrs_post_init__(self) -> None:
        if self.alternate_interface is not None:
            a1 = ipaddress.ip_address(self.interface)
            a2 = ipaddress.ip_address(self.alternate_interface)
            if a1.version != a2.version:
                raise ValueError("interface and alternate_interface must be the same family")
            if a1 == a2:
                raise ValueError("alternate_interface must differ from interface")


# --------------------------------------------------------------------------- pure logic


def error_response(
    request: Message, code: int, reason: str, *, software: str | None = None
) -> Message:
    """An error response to ``request``; classic reasons are padded for RFC 3489 parsers."""
    if not request.cookie:
        reason += " " * (-len(reason.encode()) % 4)
    response = Message(request.method, Class.ERROR, request.transaction_id)
    response.attributes[Attr.ERROR_CODE] = (code, reason)
    if software and request.cookie:
        response.attributes[Attr.SOFTWARE] = software
    return response


def handle_binding(
    request: Message,
    source: Address,
    *,
    software: str | None = None,
    response_origin: Address | None = None,
    other_address: Address | None = None,
    can_change: bool = False,
) -> Message:
    """Answer a Binding request received from ``source``.

    ``response_origin`` is the address the answer will leave from (RESPONSE-ORIGIN, or
    SOURCE-ADDRESS for a classic client); ``other_address`` the alternate address
    (OTHER-ADDRESS / CHANGED-ADDRESS), if the server has one.  A CHANGE-REQUEST that
    asks for a change is refused with 420 unless ``can_change`` (the caller then sends
    from the other socket).  If the request had FINGERPRINT, the response gets one too
    (a FINGERPRINT key in ``attributes`` is recomputed by :func:`stun.encode`).
    The TURN server calls this with just ``request``, ``source`` and ``software``.
    """
    if request.method != Method.BINDING or request.msg_class != Class.REQUEST:
        raise ValueError("handle_binding() takes Binding requests only")
    unknown = stun.comprehension_required_unknown(request)
    flags = request.attributes.get(Attr.CHANGE_REQUEST, 0) & (CHANGE_IP | CHANGE_PORT)
    if not unknown and flags and not can_change:
        unknown = (Attr.CHANGE_REQUEST,)
    if unknown:
        response = error_response(request, 420, "Unknown Attribute", software=software)
        if not request.cookie and len(unknown) % 2:
            # RFC 3489 §11.2.10: repeat one so the list is a multiple of 4 bytes; the
            # Vovida client rejects the attribute otherwise.
            unknown = (*unknown, unknown[-1])
        response.attributes[Attr.UNKNOWN_ATTRIBUTES] = tuple(unknown)
    elif request.cookie:
        response = Message(Method.BINDING, Class.SUCCESS, request.transaction_id)
        response.attributes[Attr.XOR_MAPPED_ADDRESS] = source
        if response_origin is not None:
            response.attributes[Attr.RESPONSE_ORIGIN] = response_origin
        if other_address is not None:
            response.attributes[Attr.OTHER_ADDRESS] = other_address
        if software:
            response.attributes[Attr.SOFTWARE] = software
    else:
        # RFC 3489 §11.2: MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS; nothing a
        # classic parser would choke on (no XOR-*, no unpadded SOFTWARE).
        response = Message(Method.BINDING, Class.SUCCESS, request.transaction_id)
        response.attributes[Attr.MAPPED_ADDRESS] = source
        if response_origin is not None:
            response.attributes[Attr.SOURCE_ADDRESS] = response_origin
        if other_address is not None:
            response.attributes[Attr.CHANGED_ADDRESS] = other_address
    if Attr.FINGERPRINT in request.attributes:
        response.attributes[Attr.FINGERPRINT] = 0
    return response


@attrs.define
class Reply:
    """One datagram to send: from which of the server's sockets, to where, what."""

    slot: Slot
    destination: Address
    data: bytes


class StunServer:
    """The STUN logic shared by all sockets of one server.

    Sockets register with :meth:`add_socket`; :meth:`respond` turns a received datagram
    into at most one :class:`Reply`.
    """

    def __init__(self, config: StunServerConfig, clock: IReactorTime | None = None) -> None:
        self.config = config
        self.addresses: dict[Slot, Address] = {}
        self.sockets: dict[Slot, StunUDPProtocol] = {}
        #: Refusals and drops are logged once per peer and kind per minute, then counted:
        #: a flood of bad packets must not become a flood of log lines.
        self.refusals = LogSummary(log, clock, interval=SUMMARY_INTERVAL, name="STUN refusals")

    def refused(self, source: Address, what: str, format: str, /, **fields: Any) -> None:  # noqa: A002
        """Log a refusal or drop of *source*'s packet, summarised per peer and kind."""
        self.refusals.event((source[0], what), f"{what} from {source[0]}", format, **fields)

    def add_socket(self, slot: Slot, proto: StunUDPProtocol, address: Address) -> None:
        """Register the UDP protocol listening on ``address`` as ``slot``."""
        self.sockets[slot] = proto
        self.addresses[slot] = address

    @property
    def has_alternate(self) -> bool:
        """True when all four RFC 3489 sockets exist."""
        return all(slot in self.addresses for slot in ((0, 0), (0, 1), (1, 0), (1, 1)))

    def respond(self, slot: Slot, data: bytes, source: Address) -> Reply | None:
        """Decide the answer to ``data`` received on ``slot`` from ``source``."""
        try:
            request = stun.decode(data)
        except StunDecodeError as exc:
            self.refused(source, "STUN dropped malformed datagram",
                         "STUN dropped datagram from {peer}: {reason}", peer=source, reason=exc)
            return None
        if request.msg_class != Class.REQUEST:
            log.debug(
                "STUN ignored non-request {method:#x}/{cls} from {peer}",
                method=request.method,
                cls=request.msg_class,
                peer=source,
            )
            return None
        if request.method != Method.BINDING:
            self.refused(
                source,
                "STUN refused unsupported method",
                "STUN refused {peer}: unsupported method {method:#x}",
                peer=source,
                method=request.method,
            )
            return Reply(
                slot,
                source,
                self._encode(
                    error_response(request, 400, "Bad Request", software=self.config.software)
                ),
            )
        flags = request.attributes.get(Attr.CHANGE_REQUEST, 0) & (CHANGE_IP | CHANGE_PORT)
        alternate = self.has_alternate
        if flags and not alternate and not request.cookie:
            # RFC 3489 has no error for "cannot change"; 420 would be a lie (a classic
            # server knows CHANGE-REQUEST) and pystun3 retransmits in a hot loop on any
            # error response.  Silence is what a single-address server gives.
            self.refused(
                source,
                "STUN dropped classic CHANGE-REQUEST",
                "STUN dropped classic CHANGE-REQUEST {flags:#x} from {peer}: "
                "no alternate address configured",
                flags=flags,
                peer=source,
            )
            return None
        out_slot = slot
        if alternate:
            out_slot = (slot[0] ^ bool(flags & CHANGE_IP), slot[1] ^ bool(flags & CHANGE_PORT))
        other = self.addresses[(slot[0] ^ 1, slot[1] ^ 1)] if alternate else None
        response = handle_binding(
            request,
            source,
            software=self.config.software,
            response_origin=self.addresses.get(out_slot),
            other_address=other,
            can_change=alternate,
        )
        if response.msg_class == Class.ERROR:
            self.refused(
                source,
                "STUN refused request",
                "STUN refused {peer}: {error} (unknown attributes {unknown})",
                peer=source,
                error=response.attributes[Attr.ERROR_CODE],
                unknown=[
                    stun.attribute_name(t) for t in response.attributes[Attr.UNKNOWN_ATTRIBUTES]
                ],
            )
            return Reply(slot, self._destination(request, source), self._encode(response))
        destination = self._destination(request, source)
        if destination != source and not request.cookie:
            # RFC 3489 §11.2.11: tell the target who asked for the reflection.
            response.attributes[Attr.REFLECTED_FROM] = source
        return Reply(out_slot, destination, self._encode(response))

    def _destination(self, request: Message, source: Address) -> Address:
        """Where the answer goes: the source, unless policy allows RESPONSE-ADDRESS/-PORT."""
        wanted = request.attributes.get(Attr.RESPONSE_ADDRESS)
        if wanted is None and Attr.RESPONSE_PORT in request.attributes:
            # RFC 5780 §7.5: same host, other port -- no third party can be targeted.
            return source[0], request.attributes[Attr.RESPONSE_PORT]
        if wanted is None:
            return source
        policy = self.config.response_address
        allowed = policy == "any" or (
            policy == "same-host"
            and ipaddress.ip_address(wanted[0]) == ipaddress.ip_address(source[0])
        )
        if not allowed:
            self.refused(
                source,
                "STUN ignored RESPONSE-ADDRESS",
                "STUN ignored RESPONSE-ADDRESS {wanted} from {peer} (policy {policy}); "
                "answering the source",
                wanted=wanted,
                peer=source,
                policy=policy,
            )
            return source
        return wanted

    def _encode(self, response: Message) -> bytes:
        return stun.encode(response)

    def send(self, reply: Reply) -> None:
        """Send ``reply`` from its socket (the receiving one if that slot is missing)."""
        proto = self.sockets.get(reply.slot)
        if proto is None or proto.transport is None:
            log.warn("STUN has no socket {slot} to answer from", slot=reply.slot)
            return
        try:
            proto.transport.write(reply.data, reply.destination)
        except OSError as exc:
            self.refused(reply.destination, "STUN could not answer",
                         "STUN could not answer {peer}: {error}", peer=reply.destination, error=exc)


# --------------------------------------------------------------------------- protocols


class StunUDPProtocol(protocol.DatagramProtocol):
    """One of the server's UDP sockets."""

    noisy = False

    def __init__(self, server: StunServer, slot: Slot) -> None:
        self.server = server
        self.slot = slot

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        source = (addr[0], addr[1])
        reply = self.server.respond(self.slot, datagram, source)
        if reply is not None:
            self.server.send(reply)


class StunTCPProtocol(protocol.Protocol, TimeoutMixin):
    """STUN over TCP (RFC 5389 §7.2.2): framed by the length field; no CHANGE-REQUEST.

    ChannelData or garbage on the stream closes the connection: a STUN-only server has
    no channels, and a stream that lost its framing cannot be resynchronised.
    """

    def __init__(self, server: StunServer, idle_timeout: float, clock: IReactorTime) -> None:
        self.server = server
        self.framer = StreamFramer()
        self.idle_timeout = idle_timeout
        self.clock = clock

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:  # noqa: N802
        """TimeoutMixin's timer source: the reactor, or a Clock in tests."""
        return self.clock.callLater(period, func)

    def connectionMade(self) -> None:  # noqa: N802
        self.setTimeout(self.idle_timeout)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.setTimeout(None)

    def timeoutConnection(self) -> None:  # noqa: N802
        log.debug("STUN/TCP idle timeout for {peer}", peer=self._peer())
        assert self.transport is not None
        self.transport.loseConnection()

    def _peer(self) -> Address:
        assert self.transport is not None
        return _inet(self.transport.getPeer())

    def _refuse(self, reason: str) -> None:
        peer = self._peer()
        self.server.refused(peer, "STUN/TCP closed", "STUN/TCP closed {peer}: {reason}", peer=peer, reason=reason)
        self.framer.clear()
        assert self.transport is not None
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.resetTimeout()
        self.framer.feed(data)
        while self.framer.pending:
            try:
                frame = self.framer.next_frame()
            except StunDecodeError as exc:
                self._refuse(str(exc))
                return
            if frame is None:
                return
            if stun.is_channel_data(frame[0]):
                self._refuse("ChannelData on a STUN-only connection")
                return
            if not self._handle(frame):
                return

    def _handle(self, frame: bytes) -> bool:
        peer = self._peer()
        try:
            request = stun.decode(frame)
        except StunDecodeError as exc:
            self._refuse(f"malformed STUN: {exc}")
            return False
        if request.msg_class != Class.REQUEST:
            return True
        software = self.server.config.software
        if request.method != Method.BINDING:
            self.server.refused(peer, "STUN/TCP refused method", "STUN/TCP refused {peer}: method {m:#x}",
                                peer=peer, m=request.method)
            response = error_response(request, 400, "Bad Request", software=software)
        else:
            assert self.transport is not None
            response = handle_binding(
                request,
                peer,
                software=software,
                response_origin=_inet(self.transport.getHost()),
                can_change=False,
            )
            if response.msg_class == Class.ERROR:
                self.server.refused(
                    peer,
                    "STUN/TCP refused request",
                    "STUN/TCP refused {peer}: {error}",
                    peer=peer,
                    error=response.attributes[Attr.ERROR_CODE],
                )
        assert self.transport is not None
        self.transport.write(stun.encode(response))
        return True


class StunTCPFactory(protocol.ServerFactory):
    """Builds :class:`StunTCPProtocol` with the server and the clock."""

    noisy = False

    def __init__(self, server: StunServer, clock: IReactorTime) -> None:
        self.server = server
        self.clock = clock

    def buildProtocol(self, addr: Any) -> StunTCPProtocol:  # noqa: N802
        return StunTCPProtocol(self.server, self.server.config.tcp_idle_timeout, self.clock)


# --------------------------------------------------------------------------- service


class StunService(MultiService):
    """Binds the sockets on start; exposes what it bound.

    ``udp_addresses`` maps slot (address index, port index) to the bound address;
    ``primary_address`` is A1:P1, ``tcp_address`` the TCP listener (A1:P1), both None
    before start.
    """

    BIND_ATTEMPTS = 25

    def __init__(self, config: StunServerConfig, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.config = config
        self.reactor = reactor
        self.server = StunServer(config, clock=reactor)
        self.udp_ports: dict[Slot, IListeningPort] = {}
        self.tcp_port: IListeningPort | None = None

    @property
    def udp_addresses(self) -> dict[Slot, Address]:
        return dict(self.server.addresses)

    @property
    def primary_address(self) -> Address | None:
        return self.server.addresses.get(PRIMARY)

    @property
    def alternate_address(self) -> Address | None:
        """A2:P2, what CHANGED-ADDRESS / OTHER-ADDRESS says to a client of A1:P1."""
        return self.server.addresses.get((1, 1))

    @property
    def tcp_address(self) -> Address | None:
        if self.tcp_port is None:
            return None
        return _inet(self.tcp_port.getHost())

    def startService(self) -> None:  # noqa: N802
        self._bind()
        super().startService()
        cfg = self.config
        log.info(
            "STUN listening UDP {udp} TCP {tcp} (alternate: {alt}, RESPONSE-ADDRESS: {ra})",
            udp=[f"{h}:{p}" for h, p in self.server.addresses.values()],
            tcp=self.tcp_address,
            alt=cfg.alternate_interface or "none, RFC 5780 CHANGE-REQUEST answered 420",
            ra=cfg.response_address,
        )

    def stopService(self) -> Any:  # noqa: N802
        from twisted.internet.defer import DeferredList, maybeDeferred

        super().stopService()
        ports: list[IListeningPort] = list(self.udp_ports.values())
        if self.tcp_port is not None:
            ports.append(self.tcp_port)
        self.udp_ports = {}
        self.tcp_port = None
        self.server.refusals.flush()
        self.server.addresses.clear()
        self.server.sockets.clear()
        return DeferredList([maybeDeferred(p.stopListening) for p in ports])

    # -- binding

    def _listen_udp(self, slot: Slot, host: str, port: int) -> IListeningPort:
        proto = StunUDPProtocol(self.server, slot)
        udp: IReactorUDP = self.reactor
        listening = udp.listenUDP(port, proto, interface=host, maxPacketSize=UDP_MAX_PACKET)
        self.udp_ports[slot] = listening
        self.server.add_socket(slot, proto, _inet(listening.getHost()))
        return listening

    def _release(self, slots: Iterator[Slot] | list[Slot]) -> None:
        for slot in list(slots):
            port = self.udp_ports.pop(slot, None)
            self.server.addresses.pop(slot, None)
            self.server.sockets.pop(slot, None)
            if port is not None:
                port.stopListening()

    def _bind_pair(self, index: int, wanted: int, with_tcp: bool) -> None:
        """Bind port index ``index`` on A1 (and A2, and TCP on A1 if asked), same number."""
        cfg = self.config
        hosts = [cfg.interface] + ([cfg.alternate_interface] if cfg.alternate_interface else [])
        for _attempt in range(self.BIND_ATTEMPTS if wanted == 0 else 1):
            taken: list[Slot] = []
            try:
                first = self._listen_udp((0, index), hosts[0], wanted)
                taken.append((0, index))
                number = _inet(first.getHost())[1]
                for a_index, host in enumerate(hosts[1:], start=1):
                    self._listen_udp((a_index, index), host, number)
                    taken.append((a_index, index))
                if with_tcp:
                    tcp: IReactorTCP = self.reactor
                    self.tcp_port = tcp.listenTCP(
                        number, StunTCPFactory(self.server, self.reactor), interface=hosts[0]
                    )
                return
            except CannotListenError:
                self._release(taken)
                if wanted != 0:
                    raise
        raise CannotListenError(hosts[0], wanted, "no common free port found")

    def _bind(self) -> None:
        cfg = self.config
        self._bind_pair(0, cfg.port, cfg.tcp)
        if cfg.alternate_interface is None:
            return
        alt_port = cfg.alternate_port
        if alt_port is None:
            alt_port = cfg.port + 1 if cfg.port else 0
        try:
            self._bind_pair(1, alt_port, False)
        except CannotListenError:
            self._release(list(self.udp_ports))
            if self.tcp_port is not None:
                self.tcp_port.stopListening()
                self.tcp_port = None
            raise


def stun_service(config: StunServerConfig, reactor: Any = None) -> StunService:
    """A ``MultiService`` serving STUN per ``config``; bound addresses appear on start."""
    return StunService(config, reactor)
