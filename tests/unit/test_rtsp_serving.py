"""The server connection base both RTSP servers share (globaleye/media/rtsp/serving.py), in memory.

One method dispatch and one refusal type answer for the simulated camera
(:class:`~globaleye.sim.rtsp.server.RtspCameraProtocol`) and the proxy
(:class:`~globaleye.proxy.server.RtspProxyProtocol`), each with its own exact answers:
505 for another version, 400 without CSeq, 405 with ``Allow`` for ANNOUNCE, RECORD and
REDIRECT, 501 for an unknown method (with ``Allow`` on the proxy only), 454 for a
missing or unknown ``Session``; every refusal counted by status.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from globaleye.media.rtsp.message import RtspParser, RtspResponse
from globaleye.media.rtsp.serving import PUBLIC
from globaleye.proxy.auth import AccountAuthenticator
from globaleye.proxy.server import RtspProxyFactory
from globaleye.sim.rtsp.server import RtspCameraFactory

DEV = "81300000031"
PROXY_URL = f"rtsp://127.0.0.1:8554/live/{DEV}/0/1"
CAMERA_URL = f"rtsp://127.0.0.1:554/realplay?devid={DEV}&channelno=0&streamtype=1&hashtoken=x"


class DispatchMixin:
    url = ""
    allow_with_501 = False

    def factory(self, clock: Clock) -> Any:
        raise NotImplementedError

    def ask(self, request: bytes) -> tuple[RtspResponse, Any]:
        factory = self.factory(Clock())
        protocol = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8554))
        protocol.makeConnection(transport)
        protocol.dataReceived(request)
        events = RtspParser().feed(transport.value())
        protocol.connectionLost(None)
        assert len(events) == 1 and isinstance(events[0], RtspResponse), events
        return events[0], factory

    def request(self, method: str, headers: str = "CSeq: 3\r\n", version: str = "RTSP/1.0") -> bytes:
        return f"{method} {self.url} {version}\r\n{headers}\r\n".encode()

    def test_method_refused_405_with_allow(self) -> None:
        for method in ("ANNOUNCE", "RECORD", "REDIRECT"):
            response, factory = self.ask(self.request(method))
            self.assertEqual((response.code, response.headers.get("Allow"), response.headers.get("CSeq")),
                             (405, PUBLIC, "3"))
            self.assertEqual(factory.refusals[405], 1)

    def test_unknown_method_501(self) -> None:
        response, factory = self.ask(self.request("FROBNICATE"))
        self.assertEqual(response.code, 501)
        self.assertEqual(response.headers.get("Allow"), PUBLIC if self.allow_with_501 else None)
        self.assertEqual(factory.refusals[501], 1)

    def test_other_version_505(self) -> None:
        response, _ = self.ask(self.request("OPTIONS", version="RTSP/2.0"))
        self.assertEqual(response.code, 505)

    def test_no_cseq_400(self) -> None:
        response, factory = self.ask(self.request("OPTIONS", headers=""))
        self.assertEqual((response.code, response.headers.get("CSeq")), (400, "0"))
        self.assertEqual(factory.refusals[400], 1)

    def test_options_public(self) -> None:
        response, _ = self.ask(self.request("OPTIONS"))
        self.assertEqual((response.code, response.headers.get("Public")), (200, PUBLIC))

    def test_session_missing_or_unknown_454(self) -> None:
        response, _ = self.ask(self.request("TEARDOWN"))
        self.assertEqual(response.code, 454)
        response, factory = self.ask(self.request("GET_PARAMETER", headers="CSeq: 3\r\nSession: 0123abcd;timeout=60\r\n"))
        self.assertEqual(response.code, 454)
        self.assertEqual(factory.refusals[454], 1)


class CameraDispatchTests(DispatchMixin, SynchronousTestCase):
    url = CAMERA_URL

    def factory(self, clock: Clock) -> Any:
        return RtspCameraFactory(None, clock)


class ProxyDispatchTests(DispatchMixin, SynchronousTestCase):
    url = PROXY_URL
    allow_with_501 = True

    def factory(self, clock: Clock) -> Any:
        return RtspProxyFactory(None, AccountAuthenticator(None, ("none",), "GlobalEye"), clock)  # type: ignore[arg-type]
