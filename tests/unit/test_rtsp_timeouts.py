"""Idle and slow clients cannot hold RTSP connections or sessions for ever (task.Clock, StringTransport).

The proxy's real :class:`~globaleye.proxy.server.RtspProxyProtocol` on a fake
transport: a silent connection without sessions, a request that never completes
(slowloris), and RFC 2326 session timeouts for viewers that show no sign of life,
while a viewer that keeps its session alive, or a TCP viewer being played to, stays.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from globaleye.media.rtsp.serving import IDLE_TIMEOUT, REQUEST_TIMEOUT
from globaleye.proxy.auth import AccountAuthenticator
from globaleye.proxy.platform import Target
from globaleye.proxy.server import SESSION_TIMEOUT, ProxySession, RtspProxyFactory, _ViewerUdp

DEV = "81300000031"
OPTIONS = b"OPTIONS rtsp://127.0.0.1/live/81300000031/0/1 RTSP/1.0\r\nCSeq: 1\r\n\r\n"


class FakePort:
    def __init__(self) -> None:
        self.listening = True

    def stopListening(self) -> None:  # noqa: N802
        self.listening = False

    def write(self, data: bytes, addr: Any) -> None:
        pass


class TimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = RtspProxyFactory(None, AccountAuthenticator(None, ("none",), "GlobalEye"),  # type: ignore[arg-type]
                                        self.clock)

    def connect(self) -> tuple[Any, StringTransport]:
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8554))
        protocol.makeConnection(transport)
        self.addCleanup(lambda: protocol.connectionLost(None) if not transport.disconnecting else None)
        return protocol, transport

    def close_when_lost(self, protocol: Any, transport: StringTransport) -> None:
        """StringTransport only records loseConnection; deliver connectionLost as a reactor would."""
        if transport.disconnecting and not getattr(protocol, "_lost", False):
            protocol._lost = True
            protocol.connectionLost(None)

    def session(self, protocol: Any, udp: bool) -> ProxySession:
        session = ProxySession("s1", protocol, Target("live", DEV, 0, 1), "anonymous",
                               f"rtsp://127.0.0.1:8554/live/{DEV}/0/1")
        if udp:
            session.udp[0] = (FakePort(), FakePort(), ("127.0.0.1", 5000), ("127.0.0.1", 5001))
        else:
            session.interleaved[0] = (0, 1)
        session.state = "playing"
        protocol.sessions[session.id] = session
        self.factory.sessions[session.id] = session
        return session

    def test_silent_connection_without_session_is_closed(self) -> None:
        protocol, transport = self.connect()
        self.clock.pump([1.0] * int(IDLE_TIMEOUT - 2))
        self.assertFalse(transport.disconnecting)
        self.clock.pump([1.0] * 10)
        self.assertTrue(transport.disconnecting)
        self.close_when_lost(protocol, transport)
        self.assertEqual(self.clock.getDelayedCalls(), [], "no timer left behind")

    def test_requests_keep_a_connection(self) -> None:
        protocol, transport = self.connect()
        for _ in range(5):
            self.clock.pump([1.0] * 40)
            protocol.dataReceived(OPTIONS)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value().count(b"RTSP/1.0 200"), 5)

    def test_slowloris_request_is_cut(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(OPTIONS[:20])
        for i in range(20, 40):  # a byte a second: data keeps coming, the request never ends
            self.clock.advance(1.0)
            protocol.dataReceived(OPTIONS[i:i + 1])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.refusals[408], 1)
        self.assertNotIn(b"200", transport.value())

    def test_slow_but_whole_request_is_served(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(OPTIONS[:30])
        self.clock.advance(REQUEST_TIMEOUT - 2)
        protocol.dataReceived(OPTIONS[30:])
        self.clock.pump([1.0] * 30)
        self.assertFalse(transport.disconnecting)
        self.assertIn(b"RTSP/1.0 200", transport.value())

    def test_steady_interleaved_frames_are_not_a_slow_request(self) -> None:
        protocol, transport = self.connect()
        self.session(protocol, udp=False)
        frame = b"$\x01\x00\x08" + b"\x80\xc9\x00\x01abcd"  # an RTCP RR on channel 1
        protocol.dataReceived(frame[:6])
        for _ in range(60):  # every second the rest of one frame and the start of the next
            self.clock.advance(1.0)
            protocol.dataReceived(frame[6:] + frame[:6])
        self.assertFalse(transport.disconnecting)

    def test_udp_viewer_without_sign_of_life_times_out(self) -> None:
        protocol, transport = self.connect()
        session = self.session(protocol, udp=True)
        ports = session.udp[0][:2]
        self.clock.pump([1.0] * (SESSION_TIMEOUT + 10))
        self.assertNotIn("s1", protocol.sessions)
        self.assertNotIn("s1", self.factory.sessions)
        self.assertFalse(any(p.listening for p in ports), "its UDP ports are closed")
        self.assertEqual(self.factory.session_timeouts, 1)
        self.assertTrue(transport.disconnecting, "silent all along and now without sessions: closed too")

    def test_udp_viewer_sending_receiver_reports_stays(self) -> None:
        protocol, transport = self.connect()
        session = self.session(protocol, udp=True)
        rtcp = _ViewerUdp(session)
        for _ in range(10):
            self.clock.pump([1.0] * 20)
            rtcp.datagramReceived(b"\x80\xc9\x00\x01abcd", ("127.0.0.1", 5001))
        self.assertIn("s1", protocol.sessions)

    def test_keepalive_requests_keep_a_session(self) -> None:
        protocol, transport = self.connect()
        self.session(protocol, udp=True)
        for cseq in range(2, 10):
            self.clock.pump([1.0] * 30)
            protocol.dataReceived(f"GET_PARAMETER rtsp://127.0.0.1/live/{DEV}/0/1 RTSP/1.0\r\nCSeq: {cseq}\r\n"
                                  "Session: s1\r\n\r\n".encode())
        self.assertIn("s1", protocol.sessions)
        self.assertFalse(transport.disconnecting)

    def test_tcp_viewer_being_played_to_needs_no_keepalive(self) -> None:
        protocol, transport = self.connect()
        self.session(protocol, udp=False)
        self.clock.pump([1.0] * 300)
        self.assertIn("s1", protocol.sessions)
        self.assertFalse(transport.disconnecting)

    def test_paused_tcp_viewer_times_out(self) -> None:
        protocol, transport = self.connect()
        session = self.session(protocol, udp=False)
        session.state = "paused"
        self.clock.pump([1.0] * (SESSION_TIMEOUT + 10))
        self.assertNotIn("s1", protocol.sessions)


class CameraTimeoutTests(SynchronousTestCase):
    """The simulated camera's RTSP server shares the rules (RtspServerConnection)."""

    def test_silent_and_slow_connections_to_the_camera_are_closed(self) -> None:
        from globaleye.sim.rtsp.server import RtspCameraFactory
        clock = Clock()
        factory = RtspCameraFactory({}, reactor=clock)
        silent, slow = factory.buildProtocol(None), factory.buildProtocol(None)
        silent_transport, slow_transport = StringTransport(), StringTransport()
        silent.makeConnection(silent_transport)
        slow.makeConnection(slow_transport)
        slow.dataReceived(OPTIONS[:10])
        clock.pump([1.0] * 15)
        self.assertTrue(slow_transport.disconnecting)
        self.assertFalse(silent_transport.disconnecting)
        clock.pump([1.0] * int(IDLE_TIMEOUT))
        self.assertTrue(silent_transport.disconnecting)
        for protocol in (silent, slow):
            protocol.connectionLost(None)
        self.assertEqual(factory.connections, 0)
        self.assertEqual(clock.getDelayedCalls(), [])


class UpstreamMediaSourceTests(SynchronousTestCase):
    """UDP media are taken only from the camera's addresses (the URL's host, SETUP's source=)."""

    def test_media_from_a_stranger_are_dropped(self) -> None:
        from globaleye.media.rtsp.upstream import UpstreamSession, _UdpMedia

        session = UpstreamSession(Clock(), "rtsp://198.51.100.7:554/live", "turn-udp", udp=True)
        session._allow_media_from("203.0.113.9")  # what a SETUP answer's source= adds
        got: list[bytes] = []
        session.on_rtp = lambda track, data: got.append(data)
        media = _UdpMedia(session, 0, False)
        packet = b"\x80\x60\x00\x01" + b"\x00" * 8 + b"picture"
        media.datagramReceived(packet, ("192.0.2.66", 40000))  # a stranger who learnt the port
        media.datagramReceived(packet, ("::ffff:192.0.2.66", 40000))
        self.assertEqual(got, [])
        self.assertEqual(session.foreign_packets, 2)
        media.datagramReceived(packet, ("198.51.100.7", 6970))  # the URL's host, any port (NATs rewrite it)
        media.datagramReceived(packet, ("::ffff:203.0.113.9", 1234))  # the announced source
        self.assertEqual(len(got), 2)

    def test_a_host_name_cannot_be_checked(self) -> None:
        from globaleye.media.rtsp.upstream import UpstreamSession, _UdpMedia

        session = UpstreamSession(Clock(), "rtsp://camera.example:554/live", "local", udp=True)
        got: list[bytes] = []
        session.on_rtp = lambda track, data: got.append(data)
        _UdpMedia(session, 0, False).datagramReceived(b"\x80\x60" + b"\x00" * 10 + b"x", ("192.0.2.66", 1))
        self.assertEqual(len(got), 1)
