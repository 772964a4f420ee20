"""Issue 9 items 3, 8, 9 and issue 14 item 4: connection limits, HTTP body and time limits, TURN
TCP/TLS deadlines.  Real loopback sockets where the finding is about the network, task.Clock where
time matters."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from globaleye.guard.netlimits import ConnectionLimits, LimitSettings, address_group
from globaleye.platform.config import parse_config
from globaleye.platform.tap import PlatformService
from globaleye.store.sqlite import SQLiteStore
from globaleye.testing import platform_config
from tests.util import http_client, until


def net_config(roles: str, limits: str = "", turn_extra: str = "", gateway_extra: str = "") -> str:
    """Every listening role on loopback with the [limits] under test; TURN with one user."""
    return platform_config(roles, public_host=None, enrollment_mode=None, cms_password=None, turn_peers=None,
                           http={"port": 0, "max_body": 65536}, gateway="port = 0\n" + gateway_extra,
                           stun={"port": 0},
                           turn="\n".join(["port = 0", "relay_ports = 51000-51499", "allow_peers = 127.0.0.0/8",
                                           "users = alice:secret", turn_extra]),
                           limits=limits)


class Probe(Protocol):
    """A raw client: records what arrives and when the server closes."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[bytes] = Deferred()
        self.is_closed = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.is_closed = True
        self.closed.callback(self.data)


async def probe(port: int, source: str = "127.0.0.1") -> Probe:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5, bindAddress=(source, 0))
    return await connectProtocol(endpoint, Probe())


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class PlatformCase(TestCase):
    def setUp(self) -> None:
        self.probes: list[Probe] = []

    def start(self, limits: str, roles: str = "gateway, http, group", turn_extra: str = "") -> PlatformService:
        config = parse_config(net_config(roles, limits, turn_extra))
        platform = PlatformService(config, SQLiteStore(":memory:"), reactor)
        platform.startService()
        self.addCleanup(self._stop, platform)
        return platform

    async def _stop(self, platform: PlatformService) -> None:
        for p in self.probes:
            if not p.is_closed and p.transport is not None:
                p.transport.abortConnection()
        for p in self.probes:
            await p.closed
        await platform.stopService()

    async def probe(self, port: int, source: str = "127.0.0.1") -> Probe:
        p = await probe(port, source)
        self.probes.append(p)
        return p

    async def assert_refused(self, port: int, source: str = "127.0.0.1") -> None:
        p = await self.probe(port, source)
        await until(lambda: p.is_closed, timeout=3)
        self.assertEqual(p.data, b"")

    async def assert_kept(self, p: Probe) -> None:
        await sleep(0.3)
        self.assertFalse(p.is_closed)


class ConnectionLimitTests(PlatformCase):
    async def test_i9_03_per_address_cap(self) -> None:
        """20 connections from 127.0.0.1 to the gateway, TURN-TCP and STUN-TCP are held, the 21st of each
        is closed at once without a byte; 127.0.0.2 still gets in, and the other roles still
        answer 127.0.0.1."""
        platform = self.start("per_address = 20", roles="gateway, http, group, stun, turn")
        assert platform.turn is not None and platform.stun is not None and platform.stun.tcp_address
        ports = {"gateway": platform.port_of("gateway"), "turn-tcp": platform.turn.addresses["tcp"][1],
                 "stun-tcp": platform.stun.tcp_address[1]}
        for _ in range(20):
            for port in ports.values():
                await self.probe(port)
        await until(lambda: all(platform.limits.roles[role].open == 20 for role in ports))
        for port in ports.values():
            await self.assert_refused(port)
        other = await self.probe(ports["gateway"], "127.0.0.2")
        await self.assert_kept(other)
        self.assertTrue(all(not p.is_closed for p in self.probes[:60]))
        self.assertEqual(platform.limits.refused["gateway"], 1)
        # Another role from the flooding address: answered.
        response = await http_client().get(f"http://127.0.0.1:{platform.port_of('http')}/soap/mcu?wsdl")
        self.assertEqual(response.code, 200)
        await response.content()

    async def test_i9_03_per_address_cap_ipv6(self) -> None:
        """On ::1 too: the per-address cap counts an IPv6 /64 as one address."""
        config = parse_config(net_config("gateway", "per_address = 3", gateway_extra="interface = ::1"))
        platform = PlatformService(config, SQLiteStore(":memory:"), reactor)
        platform.startService()
        self.addCleanup(self._stop, platform)
        port = platform.port_of("gateway")

        async def probe6() -> Probe:
            p = await connectProtocol(TCP6ClientEndpoint(reactor, "::1", port, timeout=5), Probe())
            self.probes.append(p)
            return p

        held = [await probe6() for _ in range(3)]
        await until(lambda: platform.limits.roles["gateway"].open == 3)
        extra = await probe6()
        await until(lambda: extra.is_closed, timeout=3)
        self.assertFalse(any(p.is_closed for p in held))
        self.assertEqual(address_group("::1"), "::/64")

    async def test_i9_03_role_share_leaves_room_for_other_roles(self) -> None:
        """A flood of the gateway from many addresses fills the gateway's share of the total and
        no more: the HTTP role still answers."""
        platform = self.start("per_address = 0\ntotal = 24\nrole_share = 0.5")
        gateway = platform.port_of("gateway")
        for n in range(12):
            await self.probe(gateway, f"127.0.0.{n + 2}")
        await until(lambda: platform.limits.roles["gateway"].open == 12)
        await self.assert_refused(gateway, "127.0.0.30")
        response = await http_client().get(f"http://127.0.0.1:{platform.port_of('http')}/soap/mcu?wsdl")
        self.assertEqual(response.code, 200)
        await response.content()

    def test_i9_03_prelogin_deadline_shrinks_under_pressure(self) -> None:
        """Past `pressure` of the budget, connections not logged in are closed after a deadline that
        falls from the role's own (30 s) to min_deadline; logged-in ones stay.  IPv6 counts per /64."""
        clock = Clock()
        limits = ConnectionLimits(clock, LimitSettings(per_address=0, total=10, role_share=1.0, pressure=0.5,
                                                       min_deadline=2.0))

        class Session(Protocol):
            state = "new"

        factory = limits.wrap("gateway", Factory.forProtocol(Session), deadline=30.0,
                              established=lambda p: p.state == "online")

        def connect(n: int) -> tuple[Any, StringTransport]:
            proto = factory.buildProtocol(IPv4Address("TCP", f"127.0.0.{n}", 40000))
            transport = StringTransport()
            proto.makeConnection(transport)
            return proto, transport

        early = [connect(n) for n in range(1, 5)]  # 4 of 10: no pressure yet
        early[0][0].inner.state = "online"
        self.assertIsNone(limits.deadline("gateway"))
        clock.advance(5)
        self.assertFalse(any(t.disconnecting for _, t in early))
        _, sixth = connect(5)  # 5 of 10: pressure starts, deadline still 30 s
        self.assertEqual(limits.deadline("gateway"), 30.0)
        for n in range(6, 10):
            connect(n)
        self.assertAlmostEqual(limits.deadline("gateway") or 0, 6.0)  # 9 of 10
        _, last = connect(10)  # full: 2 s, and the oldest pending ones older than that go now
        self.assertEqual(limits.deadline("gateway"), 2.0)
        self.assertFalse(early[0][1].disconnecting)  # logged in
        self.assertTrue(all(t.disconnecting for _, t in early[1:]))
        self.assertFalse(last.disconnecting)
        clock.advance(2.1)
        self.assertTrue(last.disconnecting)
        # The one that arrived at 30 s deadline goes at 30 s.
        self.assertFalse(sixth.disconnecting)
        clock.advance(28)
        self.assertTrue(sixth.disconnecting)
        limits.stop()
        # Per address: an IPv6 /64 is one address; IPv4-mapped IPv6 is its IPv4.
        self.assertEqual(address_group("2001:db8:1:2::5"), address_group("2001:db8:1:2:ffff::9"))
        self.assertNotEqual(address_group("2001:db8:1:2::5"), address_group("2001:db8:1:3::5"))
        self.assertEqual(address_group("::ffff:192.0.2.7"), "192.0.2.7")


class HttpLimitTests(PlatformCase):
    async def test_i9_08_body_refused_before_reading(self) -> None:
        """Content-Length above max_body: 413 at once, on /register, /redirect, /soap/mcu and
        /soap/group, without sending the body; a chunked body is cut off at max_body."""
        platform = self.start("per_address = 0")
        port = platform.port_of("http")
        for path in (b"/register", b"/redirect", b"/soap/mcu", b"/soap/group"):
            p = await self.probe(port)
            p.transport.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                              b"Content-Length: 4294967296\r\n\r\n" % path + b"<" * 1000)
            await until(lambda p=p: p.is_closed, timeout=3)  # type: ignore[misc]
            self.assertTrue(p.data.startswith(b"HTTP/1.1 413 "), (path, p.data[:80]))
        # Chunked: 8 KiB chunks; the answer comes once max_body (64 KiB) is passed, not at the end.
        p = await self.probe(port)
        p.transport.write(b"POST /register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"2000\r\n" + b"x" * 0x2000 + b"\r\n"
        sent = 0
        while not p.data and sent < 200:
            p.transport.write(chunk)
            sent += 1
            await sleep(0.005)
        await until(lambda: p.is_closed, timeout=3)
        self.assertTrue(p.data.startswith(b"HTTP/1.1 413 "), p.data[:80])
        self.assertLess(sent, 20)

    async def test_i9_09_slowloris_deadlines(self) -> None:
        """A header line (or a body byte) every 0.2 s does not keep a connection: the request
        head must be in within http_header_timeout, the body within http_body_timeout (408)."""
        platform = self.start("per_address = 0\nhttp_header_timeout = 0.8\nhttp_body_timeout = 0.8\n"
                              "http_idle_timeout = 5")
        port = platform.port_of("http")
        heads = [await self.probe(port) for _ in range(5)]
        bodies = [await self.probe(port) for _ in range(5)]
        for p in heads:
            p.transport.write(b"GET /soap/mcu?wsdl HTTP/1.1\r\nHost: x\r\n")
        for p in bodies:
            p.transport.write(b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(15):  # 3 s of dripping
            await sleep(0.2)
            for p in heads:
                if not p.is_closed:
                    p.transport.write(b"X-Drip: 1\r\n")
            for p in bodies:
                if not p.is_closed:
                    p.transport.write(b"x")
            if all(p.is_closed for p in heads + bodies):
                break
        self.assertTrue(all(p.is_closed for p in heads + bodies))
        for p in heads + bodies:
            self.assertTrue(p.data.startswith(b"HTTP/1.1 408 "), p.data[:80])
        # A prompt request on a fresh connection is still served, and keep-alive works.
        response = await http_client().get(f"http://127.0.0.1:{port}/soap/mcu?wsdl")
        self.assertEqual(response.code, 200)
        await response.content()


class HttpClockTests(TestCase):
    def test_i9_09_deadlines_on_the_reactor_clock(self) -> None:
        """On a task.Clock: a header line every 3 s gets 408 at 10 s (http_header_timeout); a body
        byte every 3 s gets 408 30 s after the headers; a keep-alive connection is closed after
        60 s idle and not before."""
        from twisted.web.resource import Resource

        from globaleye.guard.httpsite import LimitedSite

        class Ok(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:  # noqa: N802
                return b"ok"

            render_POST = render_GET

        clock = Clock()
        site = LimitedSite(Ok(), clock, max_body=1000, header_timeout=10, body_timeout=30, idle_timeout=60)

        def connect() -> tuple[Any, StringTransport]:
            channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
            transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
            channel.makeConnection(transport)
            return channel, transport

        head, head_t = connect()
        head.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            clock.advance(3)
            head.dataReceived(b"X-Drip: 1\r\n")
        self.assertFalse(head_t.disconnecting)
        clock.advance(1.5)
        self.assertTrue(head_t.disconnecting)
        self.assertTrue(head_t.value().startswith(b"HTTP/1.1 408 "))

        body, body_t = connect()
        body.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        for _ in range(9):
            clock.advance(3)
            body.dataReceived(b"x")
        self.assertFalse(body_t.disconnecting)
        clock.advance(3.5)
        self.assertTrue(body_t.disconnecting)
        self.assertTrue(body_t.value().startswith(b"HTTP/1.1 408 "))

        idle, idle_t = connect()
        idle.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", idle_t.value())
        clock.advance(59)
        self.assertFalse(idle_t.disconnecting)
        clock.advance(2)
        self.assertTrue(idle_t.disconnecting)
        for channel, _transport in ((head, head_t), (body, body_t), (idle, idle_t)):
            channel.connectionLost(Failure(ConnectionDone()))
        site.stopFactory()
        clock.advance(100)
        self.assertEqual(clock.getDelayedCalls(), [])


class TurnDeadlineTests(PlatformCase):
    def test_i14_04_turn_stream_deadlines(self) -> None:
        """On the reactor clock: a silent TURN-TCP connection goes after the first-message
        deadline, one that only asks Binding requests after the auth deadline; one with an
        allocation stays."""
        from txturn import stun
        from txturn.auth import long_term_key
        from txturn.testing import REALM, SERVER, Harness
        from txturn.turnserver import TurnStreamFactory

        h = Harness(self)
        factory = TurnStreamFactory(h.server, "tcp", first_message_timeout=10, auth_timeout=30)

        def connect(port: int) -> tuple[Any, StringTransport]:
            proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
            t = StringTransport(hostAddress=IPv4Address("TCP", *SERVER),
                                peerAddress=IPv4Address("TCP", "127.0.0.1", port))
            proto.makeConnection(t)
            return proto, t

        silent = connect(41001)
        binder = connect(41002)
        allocated = connect(41003)
        binder[0].dataReceived(stun.encode(stun.Message(stun.Method.BINDING, stun.Class.REQUEST,
                                                        stun.new_transaction_id(), {})))
        attrs = {stun.Attr.REQUESTED_TRANSPORT: 17, stun.Attr.USERNAME: "alice", stun.Attr.REALM: REALM,
                 stun.Attr.NONCE: h.server.nonces.issue()}
        allocated[0].dataReceived(stun.encode(
            stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST, stun.new_transaction_id(), attrs),
            integrity_key=long_term_key("alice", REALM, "secret")))
        self.assertEqual(stun.decode(allocated[1].value()).msg_class, stun.Class.SUCCESS)
        h.reactor.advance(10.5)
        self.assertEqual([c[1].disconnecting for c in (silent, binder, allocated)], [True, False, False])
        h.reactor.advance(20)
        self.assertEqual([c[1].disconnecting for c in (silent, binder, allocated)], [True, True, False])
        self.assertEqual(factory.timed_out, 2)
        factory.stopFactory()
        h.server.stop()

    async def test_i14_04_turn_tls_stalled_handshakes_closed(self) -> None:
        """Real sockets: 30 stalled TLS handshakes (a ClientHello's first bytes, then silence) and
        30 silent TURN-TCP connections are all closed by the first-message deadline."""
        from txturn.testing import self_signed

        cert, key = self_signed(os.path.join(tempfile.mkdtemp(), "tls"))
        platform = self.start("per_address = 0\nturn_first_message_timeout = 0.5\nturn_auth_timeout = 1",
                              roles="gateway, http, group, turn",
                              turn_extra=f"tls_port = 0\ntls_cert = {cert}\ntls_key = {key}")
        assert platform.turn is not None
        tls, tcp = platform.turn.addresses["tls"][1], platform.turn.addresses["tcp"][1]
        stalled = [await self.probe(tls) for _ in range(30)]
        for p in stalled:
            p.transport.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's beginning
        silent = [await self.probe(tcp) for _ in range(30)]
        await until(lambda: platform.limits.roles["turn-tls"].open == 30 and platform.limits.roles["turn-tcp"].open == 30)
        await until(lambda: all(p.is_closed for p in stalled + silent), timeout=5)
        self.assertEqual(platform.limits.roles["turn-tls"].open + platform.limits.roles["turn-tcp"].open, 0)
