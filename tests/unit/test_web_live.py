"""The browser's live view (globaleye.web.live) on a task.Clock, with a fake hub and request.

What the Chromium and HTTP-client tests (tests/interop/test_web_live.py) cannot easily provoke:
a camera that changes its SPS mid-stream, a browser that pauses in the middle of a GOP, no
picture at all, and each refusal's problem.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from globaleye.media import fmp4, rtp
from globaleye.media.rtsp.paths import Attempt, NoPath
from globaleye.media.rtsp.sdp import parse_sdp
from globaleye.proxy.fanout import PictureTracker
from globaleye.proxy.platform import Target
from globaleye.web.live import LiveUnavailable, LiveVideo

SPS_A = bytes.fromhex("6742c00dd90141fb011000000300100000030320f142a480")  # 320x240
PPS_A = bytes.fromhex("68cb83cb20")
SPS_B = bytes.fromhex("6742001e95a8280f69b808080810")  # 640x480
PPS_B = bytes.fromhex("68ce3c80")
SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
       b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       b"a=fmtp:96 packetization-mode=1;sprop-parameter-sets=" + base64.b64encode(SPS_A) + b","
       + base64.b64encode(PPS_A) + b"\r\na=control:trackID=0\r\n"
       b"m=audio 0 RTP/AVP 8\r\na=control:trackID=1\r\n")
DEV = "81300000011"


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted = True


class FakeRequest:
    def __init__(self) -> None:
        self.code: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.written: list[bytes] = []
        self.finished = False
        self._disconnected = False
        self.startedWriting = False
        self.producer: Any = None
        self.transport = FakeTransport()
        self._finish: list[defer.Deferred[None]] = []

    def getClientAddress(self) -> Any:  # noqa: N802
        class A:
            host, port = "127.0.0.1", 40000
        return A()

    def setResponseCode(self, code: int) -> None:  # noqa: N802
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:  # noqa: N802
        self.headers[name.lower()] = value

    def write(self, data: bytes) -> None:
        assert not self.finished
        self.startedWriting = True
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True
        for d in self._finish:
            d.callback(None)

    def notifyFinish(self) -> defer.Deferred[None]:  # noqa: N802
        d: defer.Deferred[None] = defer.Deferred()
        self._finish.append(d)
        return d

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None

    def disconnect(self) -> None:
        self._disconnected = True
        for d in self._finish:
            d.errback(ConnectionError("gone"))

    def kinds(self) -> list[bytes]:
        """The top-level box types written (each write is whole boxes)."""
        out = []
        for data in self.written:
            pos = 0
            while pos < len(data):
                size, kind = struct.unpack_from("!I4s", data, pos)
                out.append(kind)
                pos += size
        return out

    def problem(self) -> dict[str, Any]:
        assert self.headers[b"content-type"] == b"application/problem+json"
        return json.loads(b"".join(self.written))


class FakeHub:
    def __init__(self, key: tuple[str, int, int]) -> None:
        self.key = key
        self.viewers: set[Any] = set()
        self.upstream = None
        self.running = True
        self.recovering = False
        self.description = parse_sdp(SDP)
        self.fail: Exception | None = None

    async def ensure(self, account: str) -> Any:
        if self.fail is not None:
            raise self.fail
        return self.description

    def add(self, stream: Any) -> None:
        self.viewers.add(stream)

    def remove(self, stream: Any) -> None:
        self.viewers.discard(stream)


class FakeDirectory:
    def __init__(self) -> None:
        self.allowed = {DEV}
        self.up = {DEV}

    async def may_watch(self, account: str, target: Target) -> bool:
        return target.dev_id in self.allowed

    def online(self, dev_id: str) -> bool:
        return dev_id in self.up


class FakeFactory:
    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.directory = FakeDirectory()
        self.hubs: dict[tuple[str, int, int], FakeHub] = {}
        self.stall_timeout = 2.0
        self.max_viewers = 10

    def viewer_count(self) -> int:
        return 0

    def hub(self, target: Target) -> FakeHub:
        return self.hubs.setdefault(target.key, FakeHub(target.key))


class LiveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = FakeFactory(self.clock)
        self.live = LiveVideo(self.factory, audio=False)  # type: ignore[arg-type]  # the proxy's reactor; sound: AudioTests
        self.seq = 0
        self.ts = 1000
        self.tracker = PictureTracker()

    def watch(self, dev: str = DEV, stream: int = 1) -> FakeRequest:
        request = FakeRequest()
        self.live.render(request, "13300000011", dev, 0, stream)
        return request

    def hub(self) -> FakeHub:
        return self.factory.hubs[(DEV, 0, 1)]

    def picture(self, *nals: bytes) -> None:
        """One picture from the camera, through the hub's viewers (the feed's ViewerStream)."""
        for payload, marker in rtp.packetize_h264(list(nals)):
            data = rtp.rtp_header(96, self.seq & 0xFFFF, self.ts, 0xCAFE, marker) + payload
            self.seq += 1
            facts = self.tracker.feed(0, data)
            assert facts is not None
            for viewer in tuple(self.hub().viewers):
                viewer.rtp(0, data, *facts)
        self.ts += 3600

    def idr(self, sps: bytes = SPS_A, pps: bytes = PPS_A, bare: bool = False) -> None:
        body = bytes([0x65]) + b"I" * 3000
        if bare:
            self.picture(body)
        else:
            self.picture(sps, pps, body)

    def p(self) -> None:
        self.picture(bytes([0x41]) + b"P" * 500)

    def test_init_then_one_fragment_per_picture(self) -> None:
        request = self.watch()
        self.assertEqual(request.code, None, "nothing written before the first picture")
        self.idr()
        self.p()
        self.p()
        self.assertEqual(request.code, 200)
        self.assertEqual(request.headers[b"content-type"], b"video/mp4")
        self.assertEqual(request.headers[b"x-codec"], b"avc1.42C00D")
        self.assertEqual(request.kinds(), [b"ftyp", b"moov"] + [b"moof", b"mdat"] * 3)

    def test_bare_idr_gets_the_sdp_parameter_sets(self) -> None:
        request = self.watch()
        self.idr(bare=True)
        self.assertEqual(request.headers[b"x-codec"], b"avc1.42C00D")
        self.assertEqual(request.kinds(), [b"ftyp", b"moov", b"moof", b"mdat"])

    def test_new_sps_new_init_segment(self) -> None:
        request = self.watch()
        self.idr()
        self.p()
        self.idr()  # the same parameter sets: no new init
        self.idr(SPS_B, PPS_B)  # 640x480 after a 60H setting
        self.p()
        kinds = request.kinds()
        self.assertEqual(kinds.count(b"moov"), 2)
        self.assertEqual(kinds[-6:], [b"ftyp", b"moov", b"moof", b"mdat", b"moof", b"mdat"])
        self.assertIn(fmp4.avcc_record(SPS_B, PPS_B), request.written[-3])

    def test_paused_browser_skips_to_the_next_idr_then_is_dropped(self) -> None:
        request = self.watch()
        self.idr()
        [viewer] = self.live.viewers
        viewer.pauseProducing()
        self.p()
        viewer.resumeProducing()
        self.p()  # drained, but mid-GOP: still skipped
        self.assertEqual(viewer.skipped, 2)
        self.idr()
        self.p()
        self.assertEqual(viewer.fragments, 3)
        viewer.pauseProducing()
        self.clock.advance(1.9)
        self.assertFalse(viewer.closed)
        self.clock.advance(0.2)
        self.assertTrue(viewer.closed)
        self.assertTrue(request.transport.aborted)
        self.assertEqual(self.live.stalled_drops, 1)
        self.assertEqual(self.hub().viewers, set(), "the feed left the hub with its last browser")
        self.assertEqual(self.live.feeds, {})

    def test_late_joiner_starts_on_the_cached_gop(self) -> None:
        first = self.watch()
        self.idr()
        self.p()
        self.p()
        second = self.watch()
        self.assertEqual(second.kinds(), [b"ftyp", b"moov"] + [b"moof", b"mdat"] * 3)
        self.assertEqual(second.written[1:], first.written[1:], "the same fragment bytes for both")
        self.assertEqual(len(self.hub().viewers), 1, "one feed for both browsers")
        self.p()
        self.assertEqual(second.written[-1], first.written[-1], "and the next live picture")

    def test_picture_cut_by_an_outage_is_not_sent(self) -> None:
        """The upstream drops mid-picture; the hub resumes the feed on the new one: the cut
        picture never reaches the browser, the new IDR does, later on the same timeline.

        (The hub's numbering carries the timestamps on across the outage, tests/unit/
        test_proxy_recovery.py; here the packets come straight in, so the feed sees the new
        session's timestamps two seconds and more on.)"""
        request = self.watch()
        self.idr()
        self.p()
        # A picture of two slices: the first whole, the second cut after its first FU-A packet.
        slices = [bytes([0x41]) + b"C" * 500, bytes([0x41]) + b"D" * 5000]
        for payload, marker in rtp.packetize_h264(slices)[:2]:
            data = rtp.rtp_header(96, self.seq & 0xFFFF, self.ts, 0xCAFE, marker) + payload
            self.seq += 1
            facts = self.tracker.feed(0, data)
            assert facts is not None
            for viewer in tuple(self.hub().viewers):
                viewer.rtp(0, data, *facts)
        [stream] = self.hub().viewers
        stream.resync(self.hub().description)
        self.ts += 90000 * 2 + 12345  # the new camera session's own timestamps
        self.seq += 100
        self.tracker = PictureTracker()
        self.idr()
        self.p()
        fragments = [w for w in request.written if w[4:8] == b"moof"]
        self.assertEqual(len(fragments), 4, "IDR, P, then the new IDR and P: not the cut picture")
        self.assertNotIn(b"CCCC", b"".join(request.written))
        [feed] = self.live.feeds.values()
        self.assertGreater(feed.decode_time, 2 * 90000, "the outage is a step forward in time")

    def test_no_picture_is_a_504(self) -> None:
        request = self.watch()
        self.clock.advance(10.5)
        self.assertEqual(request.code, 504)
        self.assertEqual(request.problem()["title"], "No picture")
        self.assertTrue(request.finished)
        self.assertEqual(self.hub().viewers, set())

    def test_upstream_lost(self) -> None:
        before = self.watch()
        [feed] = self.live.feeds.values()
        feed.upstream_lost("camera gone")
        self.assertEqual(before.code, 502)
        self.assertEqual(before.problem()["title"], "Camera stream lost")
        after = self.watch()
        self.idr()
        [feed] = self.live.feeds.values()
        feed.upstream_lost("camera gone")
        self.assertEqual(after.code, 200)
        self.assertTrue(after.finished, "a started stream simply ends")
        self.assertEqual(self.live.viewers, set())

    def test_browser_leaves(self) -> None:
        request = self.watch()
        self.idr()
        request.disconnect()
        self.assertEqual(self.live.viewers, set())
        self.assertEqual(self.hub().viewers, set())
        self.p()  # nothing more is written
        self.assertEqual(len(request.written), 2)

    def test_refusals(self) -> None:
        with self.assertRaises(LiveUnavailable) as e:
            self.watch(stream=3)
        self.assertEqual(e.exception.status, 400)
        stranger = self.watch("81300000099")
        self.assertEqual((stranger.code, stranger.problem()["title"]), (404, "No such camera"))
        self.factory.directory.allowed.add("81300000012")
        offline = self.watch("81300000012")
        self.assertEqual((offline.code, offline.problem()["title"]), (503, "Camera offline"))
        self.assertNotIn(("81300000012", 0, 1), self.factory.hubs, "no upstream for an offline camera")
        self.factory.hub(Target("live", DEV, 0, 1)).fail = NoPath(
            [Attempt("local", "rtsp://x", False, "connection refused", 3.0),
             Attempt("turn-udp", "rtsp://y", False, "no relay", 5.0)])
        nopath = self.watch()
        self.assertEqual(nopath.code, 502)
        problem = nopath.problem()
        self.assertEqual(problem["title"], "No path to the camera")
        self.assertIn("local", problem["detail"])
        self.assertIn("turn-udp", problem["detail"])
