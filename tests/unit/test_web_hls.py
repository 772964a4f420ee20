"""HLS from the live feed (globaleye.web.hls): the playlist's syntax (RFC 8216) and the segments cut
at IDRs, on a task.Clock with the fake hub of tests/unit/test_web_live.py."""

from __future__ import annotations

import re

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from globaleye.media import fmp4
from globaleye.proxy.platform import Target
from globaleye.web import hls
from globaleye.web.hls import LiveHls, Segment, render_playlist, video_decode_time
from tests.unit.test_web_live import DEV, PPS_B, SPS_B, LiveTests

QUERY = "stream=main"


def parse_playlist(text: str) -> dict[str, object]:
    """A strict reader of a live media playlist: every line known, every tag well formed."""
    lines = text.split("\n")
    assert lines[0] == "#EXTM3U" and lines[-1] == "", lines
    tags: dict[str, str] = {}
    segments: list[dict[str, object]] = []
    pending: dict[str, object] = {}
    for line in lines[1:-1]:
        if line.startswith("#EXTINF:"):
            m = re.fullmatch(r"#EXTINF:([0-9]+\.[0-9]{3}),", line)
            assert m, line
            pending["duration"] = float(m.group(1))
        elif line == "#EXT-X-DISCONTINUITY":
            pending["discontinuity"] = True
        elif line.startswith("#EXT-X-MAP:"):
            m = re.fullmatch(r'#EXT-X-MAP:URI="(init\.mp4\?stream=main&v=[0-9]+)"', line)
            assert m, line
            pending["map"] = m.group(1)
        elif line.startswith("#"):
            m = re.fullmatch(r"#(EXT-X-[A-Z-]+)(?::(.*))?", line)
            assert m, line
            assert m.group(1) not in tags, f"{m.group(1)} twice"
            tags[m.group(1)] = m.group(2) or ""
        else:
            assert re.fullmatch(r"segment\.m4s\?stream=main&n=[0-9]+", line), line
            assert "duration" in pending, "a URI without EXTINF"
            segments.append({**pending, "uri": line})
            pending = {}
    assert not pending
    return {"tags": tags, "segments": segments}


class PlaylistTests(SynchronousTestCase):
    def test_syntax(self) -> None:
        segments = [Segment(7, 1.2, b"x", 0, False, 0), Segment(8, 2.0, b"x", 0, False, 0),
                    Segment(9, 0.96, b"x", 1, True, 1)]
        text = render_playlist(segments, 2, QUERY)
        parsed = parse_playlist(text)
        self.assertEqual(parsed["tags"], {"EXT-X-VERSION": "7", "EXT-X-TARGETDURATION": "2",
                                          "EXT-X-MEDIA-SEQUENCE": "7", "EXT-X-DISCONTINUITY-SEQUENCE": "0",
                                          "EXT-X-INDEPENDENT-SEGMENTS": ""})
        listed = parsed["segments"]
        assert isinstance(listed, list)
        self.assertEqual([s["uri"] for s in listed], [f"segment.m4s?{QUERY}&n={n}" for n in (7, 8, 9)])
        self.assertEqual([s.get("map") for s in listed], [f"init.mp4?{QUERY}&v=0", None, f"init.mp4?{QUERY}&v=1"])
        self.assertEqual([s.get("discontinuity", False) for s in listed], [False, False, True])
        self.assertNotIn("#EXT-X-ENDLIST", text, "live")
        with self.assertRaises(ValueError):
            render_playlist([], 1, QUERY)

    def test_decode_time_of_a_fragment(self) -> None:
        video = fmp4.avc_sample([bytes([0x65, 1, 2])], 3600)
        seg = fmp4.fragment(1, [fmp4.Run(2, 5, [fmp4.aac_sample(b"a")]), fmp4.Run(1, 123456, [video])])
        self.assertEqual(video_decode_time(seg), 123456, "track 1's, wherever its traf is")


class HlsFeedTests(LiveTests):
    """The segments of a feed: a camera at 25 fps with an IDR every second (the fakes' pictures)."""

    def setUp(self) -> None:
        super().setUp()
        self.hls = LiveHls(self.live)
        self.target = Target("live", DEV, 0, 1)

    def open(self) -> defer.Deferred[hls.HlsStream]:
        return defer.ensureDeferred(self.hls.open("13300000011", self.target))

    def gop(self, pictures: int = 25, sps: bytes | None = None, pps: bytes | None = None) -> None:
        if sps is not None and pps is not None:
            self.idr(sps, pps)
        else:
            self.idr()
        for _ in range(pictures - 1):
            self.p()

    def test_segments_at_idrs_and_the_window(self) -> None:
        opened = self.open()
        for _ in range(3):
            self.gop()
            self.assertNoResult(opened)  # waits for three whole segments (the third ends at the 4th IDR)
        self.gop()
        stream = self.successResultOf(opened)
        self.assertEqual([s.number for s in stream.segments], [0, 1, 2])
        self.assertAlmostEqual(stream.segments[0].duration, 1.0)
        for _ in range(6):
            self.gop()
        self.assertEqual([s.number for s in stream.segments], list(range(3, 9)), "a window of six")
        parsed = parse_playlist(stream.playlist(QUERY))
        self.assertEqual(parsed["tags"]["EXT-X-MEDIA-SEQUENCE"], "3")  # type: ignore[index]
        self.assertEqual(parsed["tags"]["EXT-X-TARGETDURATION"], "1")  # type: ignore[index]
        segment = stream.segment(5)
        assert segment is not None
        self.assertEqual(segment.data[4:8], b"moof")
        self.assertEqual(segment.data.count(b"moof"), 25, "one fragment per picture, from an IDR")
        self.assertEqual(video_decode_time(segment.data), 5 * 90000)
        self.assertIsNone(stream.segment(2), "left the window")

    def test_short_gops_make_one_segment_new_sps_a_new_map(self) -> None:
        opened = self.open()
        for _ in range(6):
            self.gop(10)  # 0.4 s GOPs: a segment is three of them (1.2 s)
        self.gop(10, SPS_B, PPS_B)  # a 60H setting: 640x480
        self.gop(25, SPS_B, PPS_B)
        self.gop(25, SPS_B, PPS_B)
        stream = self.successResultOf(opened)
        parsed = parse_playlist(stream.playlist(QUERY))
        listed = parsed["segments"]
        assert isinstance(listed, list)
        # 1.2 s, 1.2 s (cut by the new SPS), then 0.4 + 1.0 s on the new one.
        self.assertEqual([s["duration"] for s in listed], [1.2, 1.2, 1.4])
        self.assertEqual([s.get("map") for s in listed],
                         [f"init.mp4?{QUERY}&v=0", None, f"init.mp4?{QUERY}&v=1"])
        self.assertEqual([s.get("discontinuity", False) for s in listed], [False, False, True])
        self.assertEqual(parsed["tags"]["EXT-X-TARGETDURATION"], "2")  # type: ignore[index]
        self.assertIn(fmp4.avcc_record(SPS_B, PPS_B), stream.inits[1])

    def test_idle_stream_leaves_the_feed(self) -> None:
        opened = self.open()
        for _ in range(4):
            self.gop()
        stream = self.successResultOf(opened)
        self.assertEqual(len(self.hub().viewers), 1)
        self.clock.advance(hls.IDLE - 1)
        self.assertIs(self.hls.watching(self.target), stream)  # a segment request renews the lease
        self.clock.advance(hls.IDLE - 1)
        self.assertFalse(stream.closed)
        self.clock.advance(2)
        self.assertTrue(stream.closed)
        self.assertIsNone(self.hls.watching(self.target))
        self.assertEqual(self.hub().viewers, set(), "the feed left the hub")

    def test_not_mine_is_404_and_no_picture_504(self) -> None:
        from globaleye.web.live import LiveUnavailable

        other = defer.ensureDeferred(self.hls.open("13300000011", Target("live", "81300000099", 0, 1)))
        self.assertEqual(self.failureResultOf(other, LiveUnavailable).value.status, 404)
        opened = self.open()
        self.clock.advance(hls.FIRST_SEGMENT_TIMEOUT + 1)
        self.assertEqual(self.failureResultOf(opened, LiveUnavailable).value.status, 504)

    def test_segments_go_with_the_camera_stream(self) -> None:
        opened = self.open()
        for _ in range(4):
            self.gop()
        stream = self.successResultOf(opened)
        [feed] = self.live.feeds.values()
        feed.upstream_lost("camera gone")
        self.assertTrue(stream.closed)
        self.assertIsNone(self.hls.watching(self.target), "its segments are gone")
        self.assertEqual(self.hls.streams, {})
