"""Unit tests for the pieces of §15 step 3 and of the first-picture work that need no namespaces.

The end-to-end proof is ``tests/interop/test_netns_video.py`` case (c) (``turn-udp`` through two
real NATs); these pin down the rules behind it: when the camera STUN-maps its media
ports (how a Binding answer is told from media: tests/unit/test_stunclient.py), and the proxy hub's
GOP cache (a new viewer starts on the cached IDR at once; the cache ends at the next
IDR and is bounded).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.trial.unittest import TestCase

from globaleye.media import rtp
from globaleye.media.rtsp.sdp import parse_sdp
from globaleye.proxy import fanout
from globaleye.proxy.fanout import LiveHub, ViewerStream
from globaleye.sim.rtsp.nat import behind_nat

SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=t\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
       b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n"
       b"m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=control:trackID=1\r\n")


class BehindNatTests(TestCase):
    def test_rules(self) -> None:
        # The netns case (c): camera on the shop LAN, client seen at the phone NAT's public address.
        self.assertTrue(behind_nat("192.168.10.20", "203.0.113.130", "203.0.113.130"))
        self.assertTrue(behind_nat("10.1.2.3", "198.51.100.7"))
        self.assertTrue(behind_nat("100.64.0.9", "8.8.8.8"))  # carrier-grade NAT (RFC 6598)
        # A client on the shop LAN, or on loopback, reaches the local ports as they are.
        self.assertFalse(behind_nat("192.168.10.20", "192.168.10.30"))
        self.assertFalse(behind_nat("127.0.0.1", "127.0.0.1"))
        self.assertFalse(behind_nat("192.168.10.20", "127.0.0.1"))
        # A camera on a public address has no NAT to map or open.
        self.assertFalse(behind_nat("203.0.113.2", "203.0.113.130"))
        self.assertFalse(behind_nat("not-an-ip", "203.0.113.130"))


class _Sink:
    def __init__(self) -> None:
        self.packets: list[tuple[int, bytes]] = []
        self.is_blocked = False

    def blocked(self) -> bool:
        return self.is_blocked

    def send_rtp(self, track: int, data: bytes) -> None:
        self.packets.append((track, data))

    def send_rtcp(self, track: int, data: bytes) -> None:
        pass

    def upstream_lost(self, reason: str) -> None:
        pass


class _Upstream:
    description = parse_sdp(SDP)


def _picture(nal_type: int, ts: int, size: int = 100) -> bytes:
    return rtp.rtp_header(96, ts & 0xFFFF, ts, 1, True) + bytes([0x60 | nal_type]) + b"\0" * size


class GopCacheTests(TestCase):
    def hub(self) -> LiveHub:
        async def connect(account: str, attach: Any) -> Any:
            raise AssertionError("not used")

        hub = LiveHub(("1", 0, 1), "test", connect, task.Clock(), linger=1.0)
        hub._attach(_Upstream())  # type: ignore[arg-type]
        return hub

    def viewer(self) -> tuple[ViewerStream, _Sink]:
        sink = _Sink()
        return ViewerStream(sink, _Upstream.description), sink

    def test_new_viewer_starts_on_cached_idr_at_once(self) -> None:
        hub = self.hub()
        hub._rtp(0, _picture(1, 10))  # a P picture before any IDR: not cached
        self.assertIsNone(hub.gop)
        hub._rtp(0, _picture(rtp.NAL_IDR, 20, 1000))
        hub._rtp(1, rtp.rtp_header(8, 1, 160, 2, False) + b"\xd5" * 160)
        hub._rtp(0, _picture(1, 30))
        self.assertEqual(len(hub.gop or []), 3)
        viewer, sink = self.viewer()
        hub.add(viewer)
        # At once, without any new packet from the camera: IDR, then audio, then the P picture.
        self.assertEqual([t for t, _ in sink.packets], [0, 1, 0])
        self.assertEqual(sink.packets[0][1][12] & 0x1F, rtp.NAL_IDR)
        self.assertTrue(viewer.started)
        self.assertIsNotNone(viewer.first_frame_after)
        hub._rtp(0, _picture(1, 40))
        self.assertEqual(len(sink.packets), 4, "then the live packets")
        self.assertEqual(hub.status()["gop_cache"]["replays"], 1)

    def test_next_idr_drops_the_old_gop(self) -> None:
        hub = self.hub()
        hub._rtp(0, _picture(rtp.NAL_IDR, 20))
        hub._rtp(0, _picture(1, 30))
        hub._rtp(0, _picture(rtp.NAL_IDR, 40))
        self.assertEqual(len(hub.gop or []), 1)

    def test_replay_is_not_cut_by_a_blocked_sink(self) -> None:
        hub = self.hub()
        hub._rtp(0, _picture(rtp.NAL_IDR, 20))
        hub._rtp(0, _picture(1, 30))
        viewer, sink = self.viewer()
        sink.is_blocked = True  # e.g. a TCP viewer whose buffer the replay itself filled
        hub.add(viewer)
        self.assertEqual(len(sink.packets), 2)
        hub._rtp(0, _picture(1, 40))
        self.assertEqual(len(sink.packets), 2, "live pictures still wait for a drained sink")

    def test_bounded(self) -> None:
        self.patch(fanout, "GOP_CACHE_BYTES", 500)
        hub = self.hub()
        hub._rtp(0, _picture(rtp.NAL_IDR, 20, 300))
        hub._rtp(0, _picture(1, 30, 300))
        self.assertIsNone(hub.gop, "given up when the GOP outgrows the bound")
        hub._rtp(0, _picture(1, 40, 10))
        self.assertIsNone(hub.gop, "not restarted before the next IDR")
        hub._rtp(0, _picture(rtp.NAL_IDR, 50, 10))
        self.assertEqual(len(hub.gop or []), 1)
        viewer, sink = self.viewer()
        hub.add(viewer)
        self.assertEqual(len(sink.packets), 1)

    def test_upstream_end_drops_the_cache(self) -> None:
        hub = self.hub()
        hub._rtp(0, _picture(rtp.NAL_IDR, 20))
        hub.stop("test")
        self.assertIsNone(hub.gop)
