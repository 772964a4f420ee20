"""§15 path fallback through the proxy: local refused, no UPnP, TURN relay (UDP, then TCP)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SkipTest, TestCase

from globaleye.media.rtsp.upstream import UpstreamSession
from tests.util import FFMPEG, FFPROBE, ProxyHarness, closed_port, probe, streams_of
from tests.util import PROXY_DEV as DEV


class ProxyTurnFallbackTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None or FFMPEG is None:
            raise SkipTest("ffprobe/ffmpeg not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self, udp_timeout=1.0)
        # The camera reports a local address nothing listens on, and no UPnP mapping (0.0.0.0).
        await self.h.start({DEV: {"rtsp_local_port": closed_port(), "upnp_ip": "0.0.0.0"}})
        await self.h.relay_ready()

    def attempts(self) -> list[Any]:
        return self.h.factory.hubs[(DEV, 0, 1)].attempts

    async def test_turn_udp(self) -> None:
        """Local refused, UPnP absent: RTP over UDP through the relay's signalling, STUN-punched."""
        result = await probe(self.h.url())
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(streams_of(result)["video"]["width"], 1280)
        attempts = self.attempts()
        self.assertEqual([(a.path, a.ok) for a in attempts],
                         [("local", False), ("upnp", False), ("turn-udp", True)], attempts)
        self.assertIn("refused", attempts[0].reason.lower())
        self.assertIn("no such address", attempts[1].reason)
        status = self.h.factory.status()
        self.assertEqual(status["recent"][-1]["path"] if not status["live"] else status["live"][0]["path"],
                         "turn-udp")

    async def test_turn_tcp_when_udp_gets_nothing(self) -> None:
        """Inbound UDP dropped (a firewall): after udp_timeout, everything interleaved via the relay."""
        original = UpstreamSession.rtp_in

        def firewall(session: UpstreamSession, track: int, data: bytes) -> None:
            if not session.udp:
                original(session, track, data)

        self.patch(UpstreamSession, "rtp_in", firewall)
        assert FFMPEG is not None
        from tests.util import run
        result = await run(FFMPEG, ["-v", "error", "-rtsp_transport", "tcp", "-i", self.h.url(),
                                    "-frames:v", "10", "-f", "null", "-"], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        attempts = self.attempts()
        self.assertEqual([(a.path, a.ok) for a in attempts],
                         [("local", False), ("upnp", False), ("turn-udp", False), ("turn-tcp", True)])
        self.assertIn("no media within 1 s", attempts[2].reason)
