"""A recording in the browser (globaleye.web.playback) on a task.Clock, with a fake camera session.

What the Chromium tests (tests/interop/test_web_playback.py) cannot easily provoke: the file
time of pictures at Scale 2 (and a camera that ignores Scale), stale packets from before the
PLAY, no picture at all, a browser that stops reading, the camera's BYE and session loss, and
the small pure helpers.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from globaleye.media import fmp4, rtp
from globaleye.media.rtsp.message import Headers, RtspResponse
from globaleye.media.rtsp.paths import Attempt, NoPath
from globaleye.media.rtsp.sdp import parse_sdp
from globaleye.proxy.platform import Target
from globaleye.web.live import LiveUnavailable
from globaleye.web.playback import (
    FileTimeline,
    PlaybackVideo,
    parse_play_query,
    rtcp_has_bye,
    rtp_time_of,
)
from tests.unit.test_web_live import DEV, PPS_A, SDP, SPS_A, FakeDirectory, FakeRequest

PLAYBACK_SDP = SDP.replace(b"t=0 0\r\n", b"t=0 0\r\na=range:npt=0-120.000\r\n")
BYE = bytes([0x80, 200, 0, 6]) + b"\0" * 24 + bytes([0x81, 203, 0, 1]) + b"\0\0\xca\xfe"
SR_ONLY = bytes([0x80, 200, 0, 6]) + b"\0" * 24


class FakeTransport:
    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False


class FakeProtocol:
    def __init__(self) -> None:
        self.transport = FakeTransport()


class FakeUpstream:
    """What connect_camera hands over: a playing session with its PLAY answer."""

    def __init__(self, range_: str | None, scale: str | None, rtptime: int | None, udp: bool = False) -> None:
        self.description = parse_sdp(PLAYBACK_SDP)
        self.track_urls = ["rtsp://cam/realplay/trackID=0", "rtsp://cam/realplay/trackID=1"]
        headers = [("Session", "1")]
        if range_ is not None:
            headers.append(("Range", range_))
        if scale is not None:
            headers.append(("Scale", scale))
        if rtptime is not None:
            headers.append(("RTP-Info", f"url=rtsp://cam/realplay/trackID=0;seq=1;rtptime={rtptime},"
                                        f"url=rtsp://cam/realplay/trackID=1;seq=1;rtptime=5"))
        self.play_answer = RtspResponse(200, "OK", Headers(headers))
        self.path = "local"
        self.udp = udp
        self.closed = False
        self.teardowns = 0
        self.protocol = FakeProtocol()
        self.on_rtp: Any = None
        self.on_rtcp: Any = None
        self.on_lost: Any = None

    def close(self, send_teardown: bool = True) -> None:
        if not self.closed:
            self.closed = True
            self.teardowns += send_teardown


class FakeFactory:
    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.directory = FakeDirectory()
        self.stall_timeout = 2.0
        self.max_viewers = 10
        self.upstream: FakeUpstream | None = None
        self.asked: list[tuple[Target, list[tuple[str, str]]]] = []
        self.fail: Exception | None = None

    def viewer_count(self) -> int:
        return 0

    async def connect(self, target: Target, account: str, attach: Any, play_headers: Any) -> Any:
        self.asked.append((target, play_headers))
        if self.fail is not None:
            raise self.fail
        assert self.upstream is not None
        attach(self.upstream)
        return self.upstream, []


class PlaybackTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = FakeFactory(self.clock)
        self.playback = PlaybackVideo(self.factory, stall_timeout=5.0)  # type: ignore[arg-type]
        self.seq = 0

    def play(self, upstream: FakeUpstream, start: float = 60.0, speed: float = 2.0, download: bool = False,
             dev: str = DEV) -> FakeRequest:
        self.factory.upstream = upstream
        self.upstream = upstream
        request = FakeRequest()
        self.playback.render(request, "13300000011", dev, 0, f"{DEV}_0_20261101120000.ts", start, speed, download)
        return request

    def picture(self, ts: int, *nals: bytes) -> None:
        for payload, marker in rtp.packetize_h264(list(nals)):
            data = rtp.rtp_header(96, self.seq & 0xFFFF, ts & 0xFFFFFFFF, 0xCAFE, marker) + payload
            self.seq += 1
            self.upstream.on_rtp(0, data)

    def idr(self, ts: int) -> None:
        self.picture(ts, SPS_A, PPS_A, bytes([0x65]) + b"I" * 2000)

    def p(self, ts: int) -> None:
        self.picture(ts, bytes([0x41]) + b"P" * 300)

    def fragments(self, request: FakeRequest) -> list[tuple[int, int]]:
        """(base decode time, sample duration) of each moof written."""
        out = []
        for data in request.written:
            if data[4:8] != b"moof":
                continue
            tfdt = data.index(b"tfdt")
            version = data[tfdt + 4]
            decode = struct.unpack_from("!Q" if version else "!I", data, tfdt + 8)[0]
            trun = data.index(b"trun")
            flags = int.from_bytes(data[trun + 5:trun + 8], "big")
            pos = trun + 12 + (4 if flags & 1 else 0) + (4 if flags & 4 else 0)
            duration = struct.unpack_from("!I", data, pos)[0] if flags & 0x100 else -1
            out.append((decode, duration))
        return out

    def test_file_time_at_scale_two(self) -> None:
        """The camera answers npt=59 (its IDR) at Scale 2 and stamps at wall-clock speed: fragments in file time."""
        request = self.play(FakeUpstream("npt=59.000-120.000", "2", 1_000_000))
        self.assertEqual(self.factory.asked[0][1], [("Range", "npt=60.000-"), ("Scale", "2")])
        self.idr(1_000_000 - 1800)  # stamped before the PLAY's start: a stale packet, not sent
        self.idr(1_000_000)
        self.p(1_000_000 + 1800)  # 20 ms of wall time at Scale 2: 40 ms of file
        self.p(1_000_000 + 3600)
        self.assertEqual(request.code, 200)
        self.assertEqual(request.headers[b"x-start"], b"59.000")
        self.assertEqual(request.headers[b"x-scale"], b"2")
        self.assertEqual(request.headers[b"x-duration"], b"120.000")
        self.assertEqual(request.headers[b"content-type"], b"video/mp4")
        self.assertNotIn(b"content-disposition", request.headers)
        self.assertEqual(self.fragments(request), [(59 * 90000, 3600), (59 * 90000 + 3600, 3600)],
                         "each picture waits for the next, which tells its duration")
        self.assertEqual(request.kinds()[:2], [b"ftyp", b"moov"])
        self.assertNotIn(b"mehd", request.written[0], "the page has the length from X-Duration")

    def test_media_before_the_play_answer_wait_for_it(self) -> None:
        """UDP media may beat the relayed PLAY answer: the first IDR waits for it instead of being lost."""
        upstream = FakeUpstream("npt=30.000-", "1", 90000)
        answer, upstream.play_answer = upstream.play_answer, None
        request = self.play(upstream)
        self.idr(90000)
        self.p(93600)
        self.assertIsNone(request.code)
        upstream.play_answer = answer
        self.p(97200)
        self.p(100800)
        self.assertEqual([d for d, _ in self.fragments(request)], [30 * 90000 + i * 3600 for i in range(3)])
        self.assertEqual(request.kinds()[:3], [b"ftyp", b"moov", b"moof"])

    def test_camera_ignoring_scale_is_told(self) -> None:
        """No Scale in the answer: 1× (X-Scale 1), and the first picture's stamp when RTP-Info is missing."""
        request = self.play(FakeUpstream(None, None, None), start=10, speed=4)
        self.idr(500)
        self.p(500 + 3600)
        self.assertEqual(request.headers[b"x-scale"], b"1")
        self.assertEqual(request.headers[b"x-start"], b"10.000")
        self.assertEqual(self.fragments(request), [(10 * 90000, 3600)])

    def test_bye_ends_the_answer_with_the_last_picture(self) -> None:
        request = self.play(FakeUpstream("npt=0.000-", "1", 0))
        self.idr(0)
        self.p(3600)
        self.upstream.on_rtcp(0, SR_ONLY)
        self.assertFalse(request.finished)
        self.upstream.on_rtcp(1, BYE)  # the audio track's BYE: not the end of the video
        self.assertFalse(request.finished)
        self.upstream.on_rtcp(0, BYE)
        self.assertTrue(request.finished)
        self.assertEqual(self.fragments(request), [(0, 3600), (3600, 3600)])
        self.assertEqual(self.upstream.teardowns, 1, "TEARDOWN")
        self.assertEqual(self.playback.streams, set())

    def test_camera_session_lost_ends_the_answer(self) -> None:
        request = self.play(FakeUpstream("npt=0.000-", "1", 0))
        self.idr(0)
        self.p(3600)
        self.upstream.on_lost("connection lost")
        self.assertTrue(request.finished)
        self.assertEqual(len(self.fragments(request)), 2)

    def test_browser_leaving_tears_down(self) -> None:
        request = self.play(FakeUpstream("npt=0.000-", "1", 0))
        self.idr(0)
        request.disconnect()
        self.assertEqual(self.upstream.teardowns, 1)
        self.p(3600)  # nothing more is written
        self.assertEqual(self.playback.streams, set())

    def test_slow_browser_pauses_the_camera_then_is_dropped(self) -> None:
        request = self.play(FakeUpstream("npt=0.000-", "1", 0))
        self.idr(0)
        self.p(3600)
        producer = request.producer
        producer.pauseProducing()
        self.assertTrue(self.upstream.protocol.transport.paused, "the camera's connection waits (TCP)")
        producer.resumeProducing()
        self.assertFalse(self.upstream.protocol.transport.paused)
        producer.pauseProducing()
        self.clock.advance(5.1)
        self.assertTrue(request.finished)
        self.assertTrue(request.transport.aborted)
        self.assertEqual(self.playback.stalled_drops, 1)
        self.assertEqual(self.upstream.teardowns, 1)

    def test_slow_browser_on_udp_skips_to_the_next_idr(self) -> None:
        request = self.play(FakeUpstream("npt=0.000-", "1", 0, udp=True))
        self.idr(0)
        self.p(3600)
        request.producer.pauseProducing()
        self.p(7200)
        self.p(10800)
        request.producer.resumeProducing()
        self.p(14400)
        self.idr(18000)
        self.p(21600)
        self.assertEqual([d for d, _ in self.fragments(request)], [0, 18000])

    def test_download_is_an_attachment_at_the_fastest_speed(self) -> None:
        request = self.play(FakeUpstream("npt=0.000-", "4", 0), start=0, speed=1, download=True)
        self.assertEqual(self.factory.asked[0][1], [("Range", "npt=0.000-"), ("Scale", "4")])
        self.idr(0)
        self.p(900)
        self.assertEqual(request.headers[b"content-disposition"],
                         f'attachment; filename="{DEV}_0_20261101120000.mp4"'.encode())
        self.assertEqual(self.fragments(request), [(0, 3600)], "900 ticks at Scale 4: 40 ms of file")
        init = request.written[0]
        self.assertIn(b"mehd", init, "the file's duration in mvex/mehd")
        self.assertEqual(struct.unpack_from("!I", init, init.index(b"mehd") + 8)[0], 120_000)

    def test_no_picture_is_a_504(self) -> None:
        request = self.play(FakeUpstream("npt=0.000-", "1", 0))
        self.clock.advance(10.1)
        self.assertEqual(request.code, 504)
        self.assertEqual(request.problem()["status"], 504)
        self.assertEqual(self.upstream.teardowns, 1)

    def test_refusals(self) -> None:
        request = self.play(FakeUpstream("npt=0.000-", "1", 0), dev="81399999999")
        self.assertEqual((request.code, request.problem()["title"]), (404, "No such camera"))
        self.assertEqual(self.factory.asked, [], "no camera session for a camera not the account's")
        self.factory.directory.up = set()
        request = self.play(FakeUpstream("npt=0.000-", "1", 0))
        self.assertEqual(request.code, 503)
        self.factory.directory.up = {DEV}
        self.factory.fail = NoPath([Attempt("local", "", False, "404", 0.0)], status=404)
        request = self.play(FakeUpstream("npt=0.000-", "1", 0))
        self.assertEqual((request.code, request.problem()["title"]), (404, "No such recording"))
        self.factory.fail = NoPath([Attempt("local", "", False, "timed out", 0.0)])
        request = self.play(FakeUpstream("npt=0.000-", "1", 0))
        self.assertEqual(request.code, 502)
        for start, speed in ((-1.0, 1.0), (0.0, 8.0), (0.0, 0.1), (float("nan"), 1.0)):
            with self.assertRaises(LiveUnavailable) as caught:
                self.play(FakeUpstream("npt=0.000-", "1", 0), start=start, speed=speed)
            self.assertEqual(caught.exception.status, 400)


class HelperTests(SynchronousTestCase):
    def test_parse_play_query(self) -> None:
        self.assertEqual(parse_play_query("", ""), (0.0, 1.0))
        self.assertEqual(parse_play_query("60.5", "0.25"), (60.5, 0.25))
        for start, speed in (("-1", "1"), ("x", "1"), ("0", "5"), ("0", "inf"), ("nan", "1")):
            with self.assertRaises(ValueError):
                parse_play_query(start, speed)

    def test_rtcp_bye(self) -> None:
        self.assertTrue(rtcp_has_bye(BYE))
        self.assertFalse(rtcp_has_bye(SR_ONLY))
        self.assertFalse(rtcp_has_bye(b""))

    def test_rtp_time_of(self) -> None:
        info = "url=rtsp://c/x/trackID=0;seq=5;rtptime=4294967295,url=rtsp://c/x/trackID=1;seq=1;rtptime=7"
        self.assertEqual(rtp_time_of(info, "rtsp://c/x/trackID=0", 0), 0xFFFFFFFF)
        self.assertEqual(rtp_time_of(info, "rtsp://other/trackID=1", 1), 7)
        self.assertIsNone(rtp_time_of("url=rtsp://c/x/trackID=0;seq=5", "rtsp://c/x/trackID=0", 0))

    def test_timeline_wraps(self) -> None:
        line = FileTimeline(1.0, 0.5, 0xFFFFFF00)
        self.assertEqual(line.decode_time(0xFFFFFF00), 90000)
        self.assertEqual(line.decode_time(0x100), 90000 + 0x100)  # across the 32-bit wrap, at half speed
        self.assertIsNone(line.decode_time(0xFFFFFE00))

    def test_with_duration(self) -> None:
        init = fmp4.init_segment(SPS_A, PPS_A)
        longer = fmp4.with_duration(init, 2.5)
        self.assertEqual(len(longer), len(init) + 16)
        pos, kinds = 0, []
        while pos < len(longer):
            size, kind = struct.unpack_from("!I4s", longer, pos)
            kinds.append(kind)
            pos += size
        self.assertEqual(pos, len(longer), "the boxes' sizes add up")
        self.assertEqual(kinds, [b"ftyp", b"moov"])
        self.assertEqual(fmp4.with_duration(init, 0), init)
