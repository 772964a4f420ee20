"""The camera's G.711 as AAC in the browser's fMP4 (globaleye.media.aacenc, fmp4's mp4a track,
globaleye.web.live.FeedAudio), on a task.Clock with the fake hub of tests/unit/test_web_live.py.

The boxes are read back with tests/unit/test_fmp4.py's reader; ffmpeg decodes the real thing in
tests/interop/test_web_live_audio.py.
"""

from __future__ import annotations

import importlib.util
import math
import struct

from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from globaleye.media import aacenc, fmp4, rtp
from tests.unit.test_web_live import FakeFactory, LiveTests
from tests.util import PPS, SPS, boxes, trafs, tree

ASC_8K_MONO = bytes([0x15, 0x88])  # AAC-LC (2), 8000 Hz (index 11), mono
#: The live view's AAC: the camera's 8 kHz encoded at 16 kHz (globaleye.web.live.AUDIO_UPSAMPLE).
AAC_RATE = 16000


class TwoTrackTests(TestCase):
    def test_init_segment_with_mp4a(self) -> None:
        init = fmp4.init_segment_for([fmp4.video_track(SPS, PPS), fmp4.audio_track(ASC_8K_MONO, 8000)])
        moov = tree(init)
        [(_k, _p, moov_body)] = [b for b in boxes(init) if b[0] == b"moov"]
        traks = [body for kind, _p, body in boxes(moov_body) if kind == b"trak"]
        self.assertEqual(len(traks), 2)
        audio = tree(traks[1])
        self.assertEqual(audio["mdia/hdlr"][8:12], b"soun")
        self.assertIn("mdia/minf/smhd", audio)
        self.assertEqual(struct.unpack_from("!I", audio["mdia/mdhd"], 12)[0], 8000, "timescale: the sample rate")
        self.assertEqual(struct.unpack_from("!I", audio["tkhd"], 12)[0], 2, "track 2")
        stsd = audio["mdia/minf/stbl/stsd"]
        entries = boxes(stsd, 8)
        self.assertEqual([k for k, _p, _b in entries], [b"mp4a"])
        mp4a = entries[0][2]
        channels, bits, _pre, _res, rate = struct.unpack_from("!HHHHI", mp4a, 16)
        self.assertEqual((channels, bits, rate >> 16), (1, 16, 8000))
        [(kind, _p, esds)] = boxes(mp4a, 28)
        self.assertEqual(kind, b"esds")
        es = esds[4:]
        self.assertEqual(es[0], 0x03)  # ES_Descriptor
        self.assertEqual(es[1], len(es) - 2)
        decoder_config = es[5:]
        self.assertEqual(decoder_config[0], 0x04)
        self.assertEqual(decoder_config[2:4], bytes([0x40, 0x15]), "MPEG-4 audio, an audio stream")
        specific = decoder_config[15:]
        self.assertEqual(specific[:2 + len(ASC_8K_MONO)], bytes([0x05, 2]) + ASC_8K_MONO)
        self.assertEqual(specific[-3:], bytes([0x06, 1, 2]), "SLConfigDescriptor, predefined 2")
        trex = [body for kind, _p, body in boxes(moov["moov/mvex"]) if kind == b"trex"]
        self.assertEqual([struct.unpack_from("!I", b, 4)[0] for b in trex], [1, 2])

    def test_fragment_with_both_tracks(self) -> None:
        video = fmp4.avc_sample([bytes([0x65]) + b"v" * 300], 3600)
        frames = [b"A" * 50, b"B" * 70]
        seg = fmp4.fragment(3, [fmp4.Run(1, 90000, [video]), fmp4.Run(2, 8192, [fmp4.aac_sample(f) for f in frames])])
        runs = trafs(seg)
        self.assertEqual(runs[1], (90000, [(3600, len(video.data))], video.data))
        self.assertEqual(runs[2], (8192, [(1024, 50), (1024, 70)], b"A" * 50 + b"B" * 70))
        self.assertEqual([k for k, _p, _b in boxes(seg)], [b"moof", b"mdat"])

    def test_audio_specific_config(self) -> None:
        self.assertEqual(aacenc.audio_specific_config(8000), ASC_8K_MONO)
        with self.assertRaises(fmp4.Fmp4Error):
            fmp4.mp4a_entry(b"", 8000)


def _needs_av() -> None:
    if aacenc.available() is not None:
        raise SkipTest(f"the [web] extra: {aacenc.available()}")


class TimelineTests(TestCase):
    def setUp(self) -> None:
        _needs_av()

    def test_encoder_config_and_gap_filling(self) -> None:
        timeline = aacenc.AudioTimeline.standalone(aacenc.AudioSpec("PCMA"))
        self.assertEqual(timeline.config[:2], ASC_8K_MONO)
        timeline.place(1000, 0.0, "test")
        packets = timeline.write(1000, b"\xd5" * 160)  # A-law silence, 20 ms
        packets += timeline.write(1000 + 800, b"\xd5" * 160)  # 80 ms later: 60 ms of hole
        self.assertEqual(timeline.taken, 960)
        self.assertEqual(timeline.silence, 640)
        packets += timeline.fill(8000)
        self.assertEqual(timeline.written, 8000 - 8000 % 1024)
        self.assertEqual(timeline.write(1000, b"\xd5" * 160), [], "a late packet for a filled stretch is dropped")
        pts = [p.pts for p in packets]
        self.assertEqual(pts, list(range(pts[0], pts[0] + 1024 * len(pts), 1024)), "contiguous frames")


def _sr(ssrc: int, ntp: float, ts: int) -> bytes:
    return rtp.rtcp_sender_report(ssrc, ntp, ts, 1, 1, "cam")


class FeedAudioTests(LiveTests):
    """The feed with sound (the video-only behaviour is LiveTests')."""

    def setUp(self) -> None:
        _needs_av()
        super().setUp()
        from globaleye.web.live import LiveVideo

        self.factory = FakeFactory(self.clock)
        self.live = LiveVideo(self.factory, audio=True)  # type: ignore[arg-type]
        self.aseq = 0
        self.ats = 50000  # the audio track's own timestamp base

    def audio(self, ms: int = 20) -> None:
        """One 20 ms PCMA packet with a 1 kHz tone."""
        n = 8 * ms
        tone = rtp.alaw_encode([int(8000 * math.sin(2 * math.pi * 1000 * (self.ats + i) / 8000)) for i in range(n)])
        data = rtp.rtp_header(8, self.aseq & 0xFFFF, self.ats, 0xA0D1, False) + tone
        self.aseq += 1
        self.ats += n
        for viewer in tuple(self.hub().viewers):
            viewer.rtp(1, data, self.ats - n, 12, True)

    def reports(self, video_ts: int, audio_ts: int, ntp: float = 3_900_000_000.0) -> None:
        for viewer in tuple(self.hub().viewers):
            viewer.rtcp(0, _sr(0xCAFE, ntp, video_ts))
            viewer.rtcp(1, _sr(0xA0D1, ntp, audio_ts))

    def fragments(self, request: object) -> list[dict[int, tuple[int, list[tuple[int, int]], bytes]]]:
        return [trafs(w) for w in request.written if w[4:8] == b"moof"]  # type: ignore[attr-defined]

    def test_sound_in_the_fragments_placed_by_sender_reports(self) -> None:
        request = self.watch()
        self.idr()  # video ts 1000: decode time 0
        # Both clocks at the same instant: the audio's 50000 is the picture at ts 1000 + 0.25 s.
        self.reports(1000 + 22500, 50000)
        for _i in range(100):  # 4 s of 25 fps video, 20 ms audio packets
            self.clock.advance(0.04)
            self.audio()
            self.audio()
            self.p()
        self.assertEqual(request.headers[b"x-codec"], b"avc1.42C00D,mp4a.40.2")
        audio = [f[2] for f in self.fragments(request) if 2 in f]
        self.assertGreater(len(audio), 40)
        self.assertEqual({d for _b, entries, _data in audio for d, _s in entries}, {1024})
        position = audio[0][0]
        for base, entries, _data in audio:
            self.assertEqual(base, position, "no hole, no overlap")
            position += sum(d for d, _s in entries)
        video_end = 100 * 3600 / 90000
        self.assertLess(abs(position / AAC_RATE - video_end), 0.3,
                        f"the sound keeps up with the pictures: {position / AAC_RATE}")
        [feed] = self.live.feeds.values()
        assert feed.audio is not None
        self.assertEqual(feed.audio.timeline.placed_by, "sender reports")
        assert feed.audio.timeline.anchor is not None
        self.assertEqual(feed.audio.timeline.anchor[1], 2000, "0.25 s after the first picture")
        self.assertEqual(feed.audio.timeline.silence, 2000, "the quarter second before the sound: silence")

    def test_no_sound_from_the_camera_is_silence(self) -> None:
        request = self.watch()
        self.idr()
        for _ in range(100):
            self.clock.advance(0.04)
            self.p()
        audio = [f[2] for f in self.fragments(request) if 2 in f]
        self.assertTrue(audio, "silence keeps MSE's audio track from holding the video back")
        end = audio[-1][0] + sum(d for d, _s in audio[-1][1])
        self.assertGreater(end / AAC_RATE, 4.0 - 0.3 - 0.2,
                           "silence up to 0.3 s behind the pictures, less the encoder's frames")

    def test_late_joiner_and_video_only_fallback(self) -> None:
        first = self.watch()
        self.idr()
        self.reports(1000, 50000)
        self.audio()
        self.p()
        second = self.watch()
        self.assertEqual(second.headers[b"x-codec"], b"avc1.42C00D,mp4a.40.2")
        self.assertEqual(second.written[1:], first.written[1:])

    # The video-only tests of LiveTests run again here with sound on: the codec string differs.
    def test_init_then_one_fragment_per_picture(self) -> None:
        request = self.watch()
        self.idr()
        self.p()
        self.assertEqual(request.headers[b"x-codec"], b"avc1.42C00D,mp4a.40.2")
        self.assertEqual(request.kinds(), [b"ftyp", b"moov"] + [b"moof", b"mdat"] * 2)

    def test_bare_idr_gets_the_sdp_parameter_sets(self) -> None:
        request = self.watch()
        self.idr(bare=True)
        self.assertEqual(request.headers[b"x-codec"], b"avc1.42C00D,mp4a.40.2")


class WithoutAvTests(SynchronousTestCase):
    def test_video_only_when_pyav_is_missing(self) -> None:
        from globaleye.web import live as live_module

        real = importlib.util.find_spec
        self.patch(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a))
        from twisted.logger import capturedLogs

        with capturedLogs() as events:
            video = live_module.LiveVideo(FakeFactory(None))  # type: ignore[arg-type]
        self.assertFalse(video.audio, "no PyAV: video only")
        said = [e for e in events if "pip install '.[web]'" in e.get("log_format", "")]
        self.assertEqual(len(said), 1, "said once, at start, with the way out")
        self.assertEqual(said[0]["why"], "av not installed")
