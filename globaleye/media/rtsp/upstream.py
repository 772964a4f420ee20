"""An RTSP client session to a camera: DESCRIBE, SETUP (TCP interleaved or UDP), PLAY.

Used by the proxy (one per fanned-out stream, or per playback viewer) and by the
``globaleye-client`` library.  Media arrive as raw RTP/RTCP bytes through
``on_rtp(track, data)`` / ``on_rtcp(track, data)``; nothing here decodes them.

UDP follows §15 step 3: the local RTP/RTCP ports learn their NAT mapping from the
platform's STUN server, SETUP names that mapping (``destination=``, ``client_port=``),
and empty RTP packets (and empty RTCP receiver reports) are sent to the camera's
``source:server_port`` -- its STUN-mapped address when it is behind a NAT -- so our
NAT opens towards it and, if our NAT rewrote our port, the camera redirects media to
where the punch came from.  Punching starts with each SETUP answer (before PLAY, so
the first IDR after PLAY finds both NATs open) and stops at the first media packet;
the caller gives up after ``udp_timeout`` (§15 step 4: 5 s) without media.
Empty-payload RTP packets (the camera's own NAT-opening packet) are not media.

Media over UDP are taken only from the camera's side: a datagram whose source address is
neither the URL's host nor the ``source`` of the SETUP answer (the camera's STUN-mapped or
relayed address) is dropped and counted.  The port is not checked, since a NAT may rewrite it
(that is why we punch), but the address is: the proxy's media ports are on a public address,
and without the check anyone who learnt a port could inject pictures into every viewer's
stream (found by the network-namespace browser tests, issue 11).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from globaleye.media import rtp
from globaleye.media.rtsp.message import (
    Headers,
    InterleavedFrame,
    RtspCodecError,
    RtspParser,
    RtspRequest,
    RtspResponse,
    parse_transport,
    redact,
)
from globaleye.media.rtsp.sdp import SdpError, SessionDescription, parse_sdp, resolve_control
from txturn import stun

USER_AGENT = "GlobalEye-Proxy/1.0"
REQUEST_TIMEOUT = 10.0
PUNCH_INTERVAL = 0.5
STUN_TIMEOUT = 1.0

log = Logger()


class PathFailed(Exception):
    """This way to the camera did not work; the message says why (logged and shown)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status  # the camera's RTSP status, when it answered


class RtspClientProtocol(Protocol):
    """Requests matched to responses by CSeq; interleaved frames handed on as they come."""

    transport: Any  # Twisted's ITransport | None is too narrow for TCP/UDP specifics

    def __init__(self) -> None:
        self.parser = RtspParser(max_body=256 * 1024)
        self.cseq = 0
        self.pending: dict[str, defer.Deferred[RtspResponse]] = {}
        self.on_frame: Callable[[int, bytes], None] = lambda channel, data: None
        self.on_lost: Callable[[str], None] = lambda reason: None
        self.connected_ = False
        self.closed = False

    def connectionMade(self) -> None:  # noqa: N802
        self.connected_ = True

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        try:
            events = self.parser.feed(data)
        except RtspCodecError as e:
            log.warn("upstream RTSP: unparsable input from the camera ({e}); closing", e=e)
            self.transport.loseConnection()
            return
        for event in events:
            if isinstance(event, InterleavedFrame):
                self.on_frame(event.channel, event.data)
            elif isinstance(event, RtspResponse):
                d = self.pending.pop(event.cseq or "", None)
                if d is not None:
                    d.callback(event)
            # Requests from a server (ANNOUNCE, GET_PARAMETER) are not used by cameras here.

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.closed = True
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(PathFailed("the camera closed the RTSP connection"))
        self.on_lost(str(reason.value) if reason is not None else "closed")

    def request(self, method: str, uri: str, headers: list[tuple[str, str]] | None = None,
                timeout: float = REQUEST_TIMEOUT, clock: Any = None) -> defer.Deferred[RtspResponse]:
        if self.closed:
            return defer.fail(PathFailed("RTSP connection already closed"))
        self.cseq += 1
        h = Headers([("CSeq", str(self.cseq)), ("User-Agent", USER_AGENT), *(headers or [])])
        d: defer.Deferred[RtspResponse] = defer.Deferred()
        self.pending[str(self.cseq)] = d
        self.transport.write(RtspRequest(method, uri, h).encode())
        if clock is not None:
            d.addTimeout(timeout, clock, onTimeoutCancel=lambda *_: PathFailed(f"{method}: no answer in {timeout:g} s"))
        return d

    def send_frame(self, channel: int, data: bytes) -> None:
        if not self.closed:
            self.transport.write(b"$" + bytes([channel]) + len(data).to_bytes(2, "big") + data)


def _address(host: str) -> str | None:
    """*host* as a canonical IP address (IPv4-mapped IPv6 as IPv4), or None if it is not one."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class _UdpMedia(DatagramProtocol):
    """One local UDP port of an upstream track (RTP or RTCP); also does its STUN binding."""

    transport: Any  # Twisted's ITransport | None is too narrow for TCP/UDP specifics

    def __init__(self, session: UpstreamSession, track: int, rtcp: bool) -> None:
        self.session = session
        self.track = track
        self.rtcp = rtcp
        self.stun_waiting: dict[bytes, defer.Deferred[tuple[str, int]]] = {}

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        if data and data[0] < 2 and len(data) >= 20:  # STUN (RFC 5389 §6: first two bits 0)
            try:
                message = stun.decode(data)
            except stun.StunDecodeError:
                return
            d = self.stun_waiting.pop(message.transaction_id, None)
            if d is not None:
                mapped = message.attributes.get(stun.Attr.XOR_MAPPED_ADDRESS) or \
                    message.attributes.get(stun.Attr.MAPPED_ADDRESS)
                if mapped:
                    d.callback(tuple(mapped))
            return
        if not self.session.from_camera(addr):
            return
        if self.rtcp:
            self.session.rtcp_in(self.track, data)
        elif len(data) > 12:  # a bare 12-byte header is a punch / NAT opener (§15), not media
            self.session.rtp_in(self.track, data)

    async def mapped_address(self, server: tuple[str, int], clock: Any) -> tuple[str, int] | None:
        """The NAT mapping of this port, as the STUN server sees it (RFC 3489/5389 Binding)."""
        for _attempt in range(2):
            tid = stun.new_transaction_id()
            d: defer.Deferred[tuple[str, int]] = defer.Deferred()
            self.stun_waiting[tid] = d
            message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, tid, {})
            try:
                self.transport.write(stun.encode(message), server)
            except (OSError, error.MessageLengthError):
                return None
            d.addTimeout(STUN_TIMEOUT, clock)
            try:
                return await d
            except defer.TimeoutError:
                self.stun_waiting.pop(tid, None)
        return None


class UpstreamSession:
    """One RTSP session with a camera, on one path; media go to the callbacks."""

    def __init__(self, reactor: Any, url: str, path: str, *, udp: bool = False,
                 stun_server: tuple[str, int] | None = None, connect_timeout: float = 3.0) -> None:
        self.reactor = reactor
        self.url = url
        self.path = path
        self.udp = udp
        self.stun_server = stun_server
        self.connect_timeout = connect_timeout
        self.protocol: RtspClientProtocol | None = None
        self.session_id: str | None = None
        self.description: SessionDescription | None = None
        self.track_urls: list[str] = []
        self.on_rtp: Callable[[int, bytes], None] = lambda track, data: None
        self.on_rtcp: Callable[[int, bytes], None] = lambda track, data: None
        self.on_lost: Callable[[str], None] = lambda reason: None
        self.first_media: defer.Deferred[float] = defer.Deferred()
        self.started_at = 0.0
        self.packets = 0
        self.bytes = 0
        self.closed = False
        self.udp_ports: list[Any] = []
        self._punch: dict[int, tuple[str, int]] = {}
        self._punch_rtcp: dict[int, tuple[str, int]] = {}
        self._punch_timer: Any = None
        self._keepalive: Any = None
        self.timeout = 60
        self._rtp_protos: dict[int, _UdpMedia] = {}
        self._rtcp_protos: dict[int, _UdpMedia] = {}
        #: The addresses UDP media may come from (the URL's host, each SETUP's source=);
        #: None until known: a host name rather than an address cannot be checked.
        self.media_hosts: set[str] | None = None
        #: Datagrams dropped because they came from elsewhere.
        self.foreign_packets = 0
        self._allow_media_from(urlsplit(url).hostname or "")

    # -- media in

    def from_camera(self, addr: Any) -> bool:
        """Whether a datagram from *addr* may be the camera's media (see the module docstring)."""
        host = addr[0] if isinstance(addr, tuple) else ""
        if self.media_hosts is None or _address(host) in self.media_hosts:
            return True
        self.foreign_packets += 1
        if self.foreign_packets == 1 or self.foreign_packets % 1000 == 0:
            log.warn("{url}: {n} UDP datagram(s) from {host}, not the camera's address; dropped",
                     url=redact(self.url), n=self.foreign_packets, host=host)
        return False

    def _allow_media_from(self, host: str) -> None:
        address = _address(host)
        if address is None:
            return
        if self.media_hosts is None:
            self.media_hosts = set()
        self.media_hosts.add(address)

    def rtp_in(self, track: int, data: bytes) -> None:
        if self.closed:
            return
        self.packets += 1
        self.bytes += len(data)
        if not self.first_media.called:
            self.first_media.callback(time.monotonic() - self.started_at)
            self._stop_punching()
        self.on_rtp(track, data)

    def rtcp_in(self, track: int, data: bytes) -> None:
        if not self.closed:
            self.on_rtcp(track, data)

    def _frame(self, channel: int, data: bytes) -> None:
        track, is_rtcp = divmod(channel, 2)
        if is_rtcp:
            self.rtcp_in(track, data)
        else:
            self.rtp_in(track, data)

    # -- signalling

    async def connect(self) -> None:
        parts = urlsplit(self.url)
        host, port = parts.hostname or "", parts.port or 554
        if not host or host == "0.0.0.0" or not port:
            raise PathFailed("no address")
        endpoint = TCP4ClientEndpoint(self.reactor, host, port, timeout=self.connect_timeout)
        try:
            self.protocol = await connectProtocol(endpoint, RtspClientProtocol())
        except error.TimeoutError:
            raise PathFailed(f"TCP connect to {host}:{port} timed out after {self.connect_timeout:g} s") from None
        except error.ConnectError as e:
            raise PathFailed(f"TCP connect to {host}:{port} failed: {e.__class__.__name__}") from None
        self.protocol.on_frame = self._frame
        self.protocol.on_lost = self._lost

    def _lost(self, reason: str) -> None:
        if not self.closed:
            self.close(send_teardown=False)
            self.on_lost(reason)

    async def _ask(self, method: str, uri: str, headers: list[tuple[str, str]] | None = None) -> RtspResponse:
        assert self.protocol is not None
        h = list(headers or [])
        if self.session_id is not None:
            h.append(("Session", self.session_id))
        response = await self.protocol.request(method, uri, h, clock=self.reactor)
        if response.code != 200:
            raise PathFailed(f"{method} answered {response.code} {response.reason}".strip(), response.code)
        return response

    async def describe(self) -> SessionDescription:
        response = await self._ask("DESCRIBE", self.url, [("Accept", "application/sdp")])
        try:
            self.description = parse_sdp(response.body)
        except SdpError as e:
            raise PathFailed(f"DESCRIBE: {e}") from None
        base = response.headers.get("Content-Base") or response.headers.get("Content-Location") or self.url
        self.track_urls = [resolve_control(section.control, base) for section in self.description.media]
        return self.description

    async def setup(self, tracks: list[int] | None = None) -> None:
        assert self.description is not None
        for index in tracks if tracks is not None else range(len(self.description.media)):
            section = self.description.media[index]
            if section.kind not in ("video", "audio"):
                continue
            if self.udp:
                transport = await self._udp_transport(index)
            else:
                transport = f"RTP/AVP/TCP;unicast;interleaved={2 * index}-{2 * index + 1}"
            response = await self._ask("SETUP", self.track_urls[index], [("Transport", transport)])
            session = response.headers.get("Session")
            if session and self.session_id is None:
                sid, _, params = session.partition(";")
                self.session_id = sid.strip()
                m = re.search(r"timeout\s*=\s*(\d+)", params)
                if m:
                    self.timeout = max(5, int(m.group(1)))
            if self.udp:
                specs = parse_transport(response.headers.get("Transport") or "")
                if not specs or specs[0].server_port is None:
                    raise PathFailed("SETUP: the camera gave no server_port for RTP over UDP")
                source = specs[0].source or urlsplit(self.url).hostname or ""
                self._allow_media_from(urlsplit(self.url).hostname or "")
                self._allow_media_from(source)
                self._punch[index] = (source, specs[0].server_port[0])
                self._punch_rtcp[index] = (source, specs[0].server_port[1])
        if self.session_id is None:
            raise PathFailed("SETUP: no Session")
        if self.udp and self._punch_timer is None:
            self._punch_now()  # open our NAT now: media start right after PLAY

    async def _udp_transport(self, index: int) -> str:
        rtp_proto, rtcp_proto = _UdpMedia(self, index, False), _UdpMedia(self, index, True)
        interface = self.protocol.transport.getHost().host if self.protocol is not None else "0.0.0.0"
        rtp_port = self.reactor.listenUDP(0, rtp_proto, interface=interface)
        self.udp_ports.append(rtp_port)
        rtcp_port = self.reactor.listenUDP(0, rtcp_proto, interface=interface)
        self.udp_ports.append(rtcp_port)
        host, port_a, port_b = interface, rtp_port.getHost().port, rtcp_port.getHost().port
        if self.stun_server is not None:
            mapped, mapped_rtcp = await defer.gatherResults([
                defer.Deferred.fromCoroutine(rtp_proto.mapped_address(self.stun_server, self.reactor)),
                defer.Deferred.fromCoroutine(rtcp_proto.mapped_address(self.stun_server, self.reactor))])
            if mapped is not None:
                host, port_a = mapped
                port_b = mapped_rtcp[1] if mapped_rtcp is not None else port_a + 1
            else:
                log.info("upstream {url}: no STUN answer from {server}; offering the local address",
                         url=redact(self.url), server=self.stun_server)
        self._rtp_protos[index] = rtp_proto
        self._rtcp_protos[index] = rtcp_proto
        return f"RTP/AVP;unicast;destination={host};client_port={port_a}-{port_b};mode=play"

    async def play(self, headers: list[tuple[str, str]] | None = None) -> RtspResponse:
        self.started_at = time.monotonic()
        response = await self._ask("PLAY", _aggregate(self.url), headers)
        if self.udp and self._punch_timer is None:
            self._punch_now()
        if self._keepalive is None:
            self._keepalive = self.reactor.callLater(self.timeout / 2, self._keep_alive)
        return response

    async def pause(self) -> RtspResponse:
        return await self._ask("PAUSE", _aggregate(self.url))

    def _punch_now(self) -> None:
        """§15: empty RTP packets (and empty RTCP RRs) to the camera's media ports, until media flow."""
        self._punch_timer = None
        if self.closed or self.first_media.called:
            return
        for protos, targets in ((self._rtp_protos, self._punch), (self._rtcp_protos, self._punch_rtcp)):
            for index, address in targets.items():
                proto = protos.get(index)
                if proto is None or proto.transport is None:
                    continue
                if proto.rtcp:
                    packet = bytes([0x80, 201, 0, 1]) + secrets.token_bytes(4)  # RR without report blocks
                else:
                    packet = rtp.rtp_header(96 if index == 0 else 8, secrets.randbelow(65536), 0, 0, False)
                try:
                    proto.transport.write(packet, address)
                except OSError:
                    pass
        self._punch_timer = self.reactor.callLater(PUNCH_INTERVAL, self._punch_now)

    def _stop_punching(self) -> None:
        if self._punch_timer is not None and self._punch_timer.active():
            self._punch_timer.cancel()
        self._punch_timer = None

    def _keep_alive(self) -> None:
        """GET_PARAMETER every timeout/2: the camera ends silent UDP sessions (RFC 2326 §12.37)."""
        self._keepalive = None
        if self.closed or self.protocol is None:
            return
        d = self.protocol.request("GET_PARAMETER", _aggregate(self.url),
                                  [("Session", self.session_id or "")], clock=self.reactor)
        d.addErrback(lambda _f: None)
        self._keepalive = self.reactor.callLater(self.timeout / 2, self._keep_alive)

    async def wait_media(self, timeout: float) -> float:
        """Seconds from PLAY to the first RTP packet; PathFailed after *timeout*."""
        if self.first_media.called:
            return await _copy(self.first_media)
        d = _copy(self.first_media)
        d.addTimeout(timeout, self.reactor)
        try:
            return await d
        except defer.TimeoutError:
            raise PathFailed(f"no media within {timeout:g} s after PLAY") from None

    def close(self, send_teardown: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop_punching()
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None
        for port in self.udp_ports:
            port.stopListening()
        self.udp_ports = []
        if self.protocol is not None and not self.protocol.closed:
            if send_teardown and self.session_id is not None:
                d = self.protocol.request("TEARDOWN", _aggregate(self.url), [("Session", self.session_id)])
                d.addErrback(lambda _f: None)
            self.protocol.transport.loseConnection()
        if not self.first_media.called:
            self.first_media.addErrback(lambda _f: None)
            self.first_media.errback(PathFailed("closed before media"))


def _aggregate(url: str) -> str:
    return url


def _copy(d: defer.Deferred[Any]) -> defer.Deferred[Any]:
    out: defer.Deferred[Any] = defer.Deferred()

    def done(result: Any) -> Any:
        if not out.called:
            if isinstance(result, Failure):
                out.errback(result)
            else:
                out.callback(result)
        return result

    d.addBoth(done)
    return out

