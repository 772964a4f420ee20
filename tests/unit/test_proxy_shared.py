"""A live hub's shared numbering and shared buffers (issue 13): fast tests on a task.Clock.

The hub and its upstream sessions are the real ones (the camera of
``tests/unit/test_proxy_recovery.py``); the viewers are real :class:`ViewerStream` objects
prepared as the RTSP proxy prepares them (``LiveHub.prepare`` before the PLAY answer, then
``add``), writing into byte strings instead of sockets.  What is checked is what a player
relies on: the first packet of each track is the one RTP-Info announced, sequence numbers
never have a hole, the SSRC never changes, timestamps never go back, whatever the viewer
joined, missed, paused or the camera did.  The end-to-end proofs with ffmpeg are in
``tests/interop/test_proxy_joins.py`` and ``tests/interop/test_proxy.py``.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from globaleye.media import rtp
from globaleye.proxy.fanout import LiveHub, ViewerStream
from tests.unit.test_proxy_recovery import Camera


class TcpSink:
    """One RTSP viewer over TCP interleaved (video on channel 0, audio on 2): the bytes it is sent."""

    def __init__(self) -> None:
        self.stream = bytearray()
        self.is_blocked = False
        self.lost: list[str] = []

    def blocked(self) -> bool:
        return self.is_blocked

    def write(self, data: bytes) -> None:
        self.stream += data

    def send_rtp(self, track: int, data: bytes) -> None:
        self.write(struct.pack("!BBH", 0x24, 2 * track, len(data)) + data)

    def send_rtcp(self, track: int, data: bytes) -> None:
        self.write(struct.pack("!BBH", 0x24, 2 * track + 1, len(data)) + data)

    def upstream_lost(self, reason: str) -> None:
        self.lost.append(reason)

    def frames(self) -> list[tuple[int, Any]]:
        """(channel, parsed RTP or raw RTCP) of everything sent, checking the framing on the way."""
        out, pos, data = [], 0, bytes(self.stream)
        while pos < len(data):
            assert data[pos] == 0x24, f"a frame starts with $ at {pos}"
            channel, length = data[pos + 1], struct.unpack_from("!H", data, pos + 2)[0]
            body = data[pos + 4:pos + 4 + length]
            assert len(body) == length, "a whole frame"
            out.append((channel, rtp.parse_rtp(body) if channel % 2 == 0 else body))
            pos += 4 + length
        return out

    def track(self, channel: int) -> list[Any]:
        return [p for c, p in self.frames() if c == channel]


class UdpSink(TcpSink):
    def __init__(self) -> None:
        super().__init__()
        self.datagrams: list[tuple[Any, bytes]] = []
        self.calls = 0

    def out(self, address: Any) -> Any:
        sink = self

        class Out:
            def send(self, packet: bytes) -> None:
                sink.calls += 1
                sink.datagrams.append((address, packet))

            def send_runs(self, runs: list[tuple[int, bytes, int]], packets: list[bytes]) -> None:
                sink.calls += len(runs)
                at = 0
                for size, data, count in runs:  # what the kernel does with UDP_SEGMENT
                    cut = [data] if not size else [data[i:i + size] for i in range(0, len(data), size)]
                    assert cut == packets[at:at + count], "a run is its packets, in order"
                    sink.datagrams.extend((address, d) for d in cut)
                    at += count
                assert at == len(packets)

        return Out()

    def track(self, channel: int) -> list[Any]:
        return [rtp.parse_rtp(d) for a, d in self.datagrams if a == ("127.0.0.1", 5000 + channel)]


class SharedNumberingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.camera = Camera(self.clock)
        self.hub = LiveHub(("81300000011", 0, 1), "81300000011/0/1", self.camera.connect, self.clock, 5.0,
                           None, recover_timeout=30.0, media_timeout=10.0)
        self.description = self.successResultOf(defer.Deferred.fromCoroutine(self.hub.ensure("13300000011")))

    def tcp_viewer(self, play: bool = True) -> tuple[TcpSink, ViewerStream]:
        """A viewer set up over TCP on channels 0 and 2, prepared (its PLAY answer) and added."""
        sink = TcpSink()
        viewer = ViewerStream(sink, self.description)
        viewer.channels = {0: 0, 1: 2}
        viewer.write = sink.write
        viewer.write_sequence = lambda parts: sink.write(b"".join(parts))
        viewer.can_share = True
        self.hub.prepare(viewer)
        sink.announced = (list(viewer.seq), dict(viewer.rtptime))  # type: ignore[attr-defined]
        if play:
            self.hub.add(viewer)
        return sink, viewer

    def udp_viewer(self) -> tuple[UdpSink, ViewerStream]:
        """A viewer set up over UDP (video to port 5000, audio to 5002), prepared and added."""
        sink = UdpSink()
        viewer = ViewerStream(sink, self.description)
        viewer.udp_out = {0: sink.out(("127.0.0.1", 5000)), 1: sink.out(("127.0.0.1", 5002))}
        viewer.can_share = True
        self.hub.prepare(viewer)
        sink.announced = (list(viewer.seq), dict(viewer.rtptime))  # type: ignore[attr-defined]
        self.hub.add(viewer)
        return sink, viewer

    def multi_packet_picture(self, parts: int = 3, key: bool = False) -> list[bytes]:
        """A picture cut in FU-A packets (the marker on the last), not yet sent."""
        nal = (b"\x65" if key else b"\x41") + bytes(range(256)) * 10
        packets = []
        for payload, marker in rtp.packetize_h264([nal], mtu=len(nal) // parts + 20):
            self.camera.seq += 1
            packets.append(rtp.rtp_header(96, self.camera.seq & 0xFFFF, self.camera.ts, 0xCAFE, marker) + payload)
        self.camera.ts += 3600
        return packets

    def assert_continuous(self, sink: TcpSink, channel: int = 0) -> list[Any]:
        packets = sink.track(channel)
        self.assertTrue(packets, "something was sent")
        seq0, rtptime = sink.announced  # type: ignore[attr-defined]
        track = channel // 2
        self.assertEqual(packets[0].sequence, seq0[track], "the first packet is the one RTP-Info announced")
        if track in rtptime:
            self.assertEqual(packets[0].timestamp, rtptime[track], "and so is its timestamp")
        self.assertEqual([p.sequence for p in packets],
                         [(seq0[track] + i) & 0xFFFF for i in range(len(packets))], "no sequence hole")
        self.assertEqual(len({p.ssrc for p in packets}), 1, "one SSRC")
        for a, b in itertools.pairwise(packets):
            self.assertLess((b.timestamp - a.timestamp) & 0xFFFFFFFF, 0x80000000, "timestamps never go back")
        return packets

    def test_viewers_joined_at_different_times_share_one_numbering(self) -> None:
        first, a = self.tcp_viewer()
        for _ in range(5):
            self.camera.picture()
        second, b = self.tcp_viewer()
        for _ in range(5):
            self.camera.picture()
        self.assertTrue(a.fast and b.fast, "both are served from the shared buffers")
        self.assertEqual(self.hub.status()["shared"]["tcp_viewers"], 2)
        for sink in (first, second):
            video = self.assert_continuous(sink, 0)
            self.assert_continuous(sink, 2)
            # The camera's IDR came bare: the hub put the SDP's SPS and PPS in front (RFC 6184).
            self.assertEqual([rtp.nal_type(p.payload) for p in video[:3]], [7, 8, 5])
        # The second joined on the cached GOP: it got the same packets, byte for byte, from the IDR on.
        self.assertEqual(second.track(0), first.track(0))
        self.assertEqual(second.track(2), first.track(2))
        self.assertEqual(len(first.track(0)), 2 + 1 + 10)

    def test_a_viewer_joining_mid_picture_gets_whole_pictures_only(self) -> None:
        first, _a = self.tcp_viewer()
        self.camera.picture()
        parts = self.multi_packet_picture(3)
        self.camera.session.rtp_in(0, parts[0])
        second, b = self.tcp_viewer()
        self.assertEqual(len(second.track(0)), 0, "nothing until the picture being received has ended")
        self.assertIn(b, self.hub.joining)
        for data in parts[1:]:
            self.camera.session.rtp_in(0, data)
        self.camera.picture()
        self.assertTrue(b.fast)
        self.assert_continuous(second)
        self.assertEqual(second.track(0), first.track(0), "the GOP, the cut picture once, the next one")
        self.assertEqual(len(first.track(0)), 2 + 1 + 1 + 3 + 1)

    def test_a_slow_viewer_skips_to_the_next_idr_without_a_hole_and_comes_back(self) -> None:
        fast, a = self.tcp_viewer()
        slow, b = self.tcp_viewer()
        self.camera.picture()
        slow.is_blocked = True
        self.camera.picture()
        self.camera.picture()
        self.assertFalse(b.fast)
        self.assertEqual(b.frames_dropped, 2)
        self.assertEqual(self.hub.demotions, 1)
        slow.is_blocked = False
        self.camera.picture()  # not a key picture: still skipped
        self.camera.picture(key=True)
        self.camera.picture()
        packets = self.assert_continuous(slow)
        self.assertEqual([rtp.nal_type(p.payload) for p in packets[-4:]], [7, 8, 5, 1],
                         "it resumes at the next IDR, with the parameter sets")
        self.assertTrue(b.fast, "back in the shared buffers at that IDR")
        self.assertEqual(self.hub.status()["shared"]["tcp_shifted"], 1, "its numbers shifted: no hole")
        self.assertNotEqual(packets[-1].sequence, fast.track(0)[-1].sequence)
        # Slow again, and back again: still one continuous stream, sound included.
        slow.is_blocked = True
        self.camera.picture()
        slow.is_blocked = False
        self.camera.picture(key=True)
        for _ in range(3):
            self.camera.picture()
        self.assertEqual((self.hub.demotions, self.hub.adoptions), (2, 2))
        packets = self.assert_continuous(slow)
        self.assertEqual([rtp.nal_type(p.payload) for p in packets[-6:]], [7, 8, 5, 1, 1, 1])
        self.assertEqual(len(fast.track(0)), 3 + 6 + 2 + 1 + 3 + 3, "the other viewer missed nothing")
        self.assert_continuous(fast)
        self.assert_continuous(slow, 2)
        self.assertEqual(len(slow.track(2)), len(fast.track(2)) - 4, "not the sound of the 4 skipped pictures")
        self.assertEqual(b.frames_sent, a.frames_sent - 4)
        self.assertEqual(b.frames_dropped, 4)

    def test_pause_then_play_goes_on_in_the_same_numbering(self) -> None:
        sink, viewer = self.tcp_viewer()
        self.camera.picture()
        self.hub.remove(viewer)  # PAUSE
        self.camera.picture()
        self.camera.picture(key=True)
        viewer.waiting = True  # PLAY again: the server's do_PLAY, without prepare
        self.hub.add(viewer)
        self.camera.picture()
        packets = self.assert_continuous(sink)
        self.assertEqual(len(packets), 3 + 1, "not the cached GOP again: its time would go back")
        self.camera.picture(key=True)
        self.camera.picture()
        self.assertTrue(viewer.fast, "back in the shared buffers at the next IDR")
        self.assertEqual(len(self.assert_continuous(sink)), 3 + 1 + 3 + 1)

    def test_fast_viewers_go_on_across_a_camera_outage(self) -> None:
        sink, viewer = self.tcp_viewer()
        for _ in range(4):
            self.camera.picture()
        before = len(sink.track(0))
        self.camera.drop()
        self.assertTrue(self.hub.running)
        self.clock.advance(2.0)
        for _ in range(3):
            self.camera.picture()
        self.assertEqual(sink.lost, [])
        packets = self.assert_continuous(sink)
        self.assertEqual([rtp.nal_type(p.payload) for p in packets[before:before + 3]], [7, 8, 5])
        step = (packets[before].timestamp - packets[before - 1].timestamp) & 0xFFFFFFFF
        self.assertTrue(0 < step < 90000 * 3, "the new session's RTP base is hidden: about the outage")
        self.assert_continuous(sink, 2)

    def test_a_picture_cut_by_an_outage_never_reaches_the_shared_viewers(self) -> None:
        tcp, _a = self.tcp_viewer()
        udp, _b = self.udp_viewer()
        self.camera.picture()
        parts = self.multi_packet_picture(4)
        for data in parts[:2]:
            self.camera.session.rtp_in(0, data)  # half a picture, then the camera is gone
        before = len(tcp.track(0))
        self.camera.drop()
        self.clock.advance(1.0)
        self.camera.picture()
        for sink in (tcp, udp):
            packets = self.assert_continuous(sink)
            self.assertEqual(len(packets), before + 3 + 1, "the cut picture's packets were not sent")
            self.assertEqual([rtp.nal_type(p.payload) for p in packets[before:before + 3]], [7, 8, 5])
            self.assertNotIn(b"\x41" + bytes(range(16)), b"".join(p.payload for p in packets))

    def test_after_an_outage_nothing_comes_before_the_new_sessions_first_key_picture(self) -> None:
        sink, _viewer = self.tcp_viewer()
        self.camera.picture()
        before = len(sink.track(0))
        camera = self.camera
        key_picture = camera.picture

        def no_key_first(key: bool = False) -> None:  # this time the camera starts on a P picture
            key_picture(False)

        camera.picture = no_key_first  # type: ignore[method-assign]
        camera.drop()
        camera.picture = key_picture  # type: ignore[method-assign]
        self.assertTrue(self.hub.running)
        camera.picture()
        camera.picture()
        self.assertEqual(len(sink.track(0)), before, "P pictures of the new session are not sent")
        self.assertEqual(len(sink.track(2)), 2, "nor its sound")
        camera.picture(key=True)
        camera.picture()
        packets = self.assert_continuous(sink)
        self.assertEqual([rtp.nal_type(p.payload) for p in packets[before:]], [7, 8, 5, 1])
        self.assert_continuous(sink, 2)

    def test_udp_viewers_get_the_hubs_packets_as_they_are(self) -> None:
        sink, viewer = self.udp_viewer()
        tcp, _b = self.tcp_viewer()
        for _ in range(3):
            self.camera.picture()
        calls = sink.calls
        for data in self.multi_packet_picture(5):
            self.camera.session.rtp_in(0, data)
        self.assertEqual(sink.calls - calls, 1, "a picture of five packets of one size (the last shorter): one call")
        self.camera.picture()
        self.assertEqual(self.hub.status()["shared"]["udp_viewers"], 1)
        self.assert_continuous(sink, 0)
        self.assert_continuous(sink, 2)
        self.assertEqual(sink.track(0), tcp.track(0))
        self.assertEqual(viewer.frames_sent, 1 + 3 + 1 + 1)

    def test_a_viewer_without_a_gop_to_start_on_starts_at_the_next_idr_from_what_was_announced(self) -> None:
        self.hub._drop_gop()  # as when a GOP outgrew GOP_CACHE_BYTES
        sink, viewer = self.tcp_viewer()
        self.assertEqual(sink.announced[1], {}, "no rtptime: the first packet is not known yet")  # type: ignore[attr-defined]
        self.camera.picture()
        self.assertFalse(viewer.fast)
        self.assertEqual(sink.track(0), [])
        self.camera.picture(key=True)
        self.camera.picture()
        self.assertTrue(viewer.fast, "in the shared buffers from that IDR on")
        packets = self.assert_continuous(sink)
        self.assertEqual([rtp.nal_type(p.payload) for p in packets[:3]], [7, 8, 5])

    def test_sender_reports_carry_the_hubs_numbering(self) -> None:
        sink, _viewer = self.tcp_viewer()
        self.camera.picture()
        ts = self.camera.ts
        report = rtp.rtcp_sender_report(0xCAFE, 1_700_000_000.0, ts, 10, 1000, "cam")
        self.camera.session.rtcp_in(0, report)
        self.camera.picture()
        [sr] = [p for c, p in sink.frames() if c == 1]
        video = sink.track(0)
        ssrc, sr_ts = struct.unpack_from("!I", sr, 4)[0], struct.unpack_from("!I", sr, 16)[0]
        self.assertEqual(ssrc, video[0].ssrc)
        self.assertEqual(sr_ts, video[-1].timestamp, "the report's RTP time is on the viewer's clock")


class RandomisedTests(SynchronousTestCase):
    """Many seeded random runs of joins, PAUSE/PLAY, slow readers, multi-packet pictures and
    camera outages: every viewer's stream stays one continuous stream (the RTP-Info start, no
    sequence hole, one SSRC, timestamps never back) and, after any gap in time, starts again at
    a key picture."""

    def test_random_histories(self) -> None:
        import random

        for seed in range(25):
            case = SharedNumberingTests("test_viewers_joined_at_different_times_share_one_numbering")
            case.setUp()
            rnd = random.Random(seed)
            viewers: list[tuple[TcpSink, ViewerStream]] = []
            playing: set[int] = set()
            for _step in range(150):
                event = rnd.random()
                if event < 0.08 and len(viewers) < 6:
                    viewers.append(case.tcp_viewer())
                    playing.add(len(viewers) - 1)
                elif event < 0.14 and viewers:
                    i = rnd.randrange(len(viewers))
                    sink, viewer = viewers[i]
                    if i in playing:
                        case.hub.remove(viewer)
                        playing.discard(i)
                    else:
                        viewer.waiting = True
                        case.hub.add(viewer)
                        playing.add(i)
                elif event < 0.24 and viewers:
                    sink = viewers[rnd.randrange(len(viewers))][0]
                    sink.is_blocked = not sink.is_blocked
                elif event < 0.27:
                    case.camera.drop()
                    case.clock.advance(rnd.choice((0.5, 1.0, 2.0)))
                elif event < 0.40:
                    parts = case.multi_packet_picture(rnd.randint(2, 5), key=rnd.random() < 0.2)
                    cut = rnd.random() < 0.1
                    for data in parts[:len(parts) // 2] if cut else parts:
                        case.camera.session.rtp_in(0, data)
                    if cut:
                        case.camera.drop()
                        case.clock.advance(1.0)
                else:
                    case.camera.picture(key=rnd.random() < 0.1)
            self.assertEqual([s.lost for s, _v in viewers], [[] for _ in viewers], f"seed {seed}")
            for n, (sink, _viewer) in enumerate(viewers):
                if not sink.track(0):
                    continue
                try:
                    video = case.assert_continuous(sink, 0)
                    if sink.track(2):
                        case.assert_continuous(sink, 2)
                except AssertionError as e:
                    raise AssertionError(f"seed {seed}, viewer {n}: {e}") from None
                for a, b in itertools.pairwise(video):
                    if (b.timestamp - a.timestamp) & 0xFFFFFFFF > 3600 and b.timestamp != a.timestamp:
                        self.assertIn(rtp.nal_type(b.payload), (7, 8, 5, 28),
                                      f"seed {seed}, viewer {n}: a gap is followed by a key picture")
            case.tearDown()
