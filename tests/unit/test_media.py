"""RTP, RFC 6184 packetization, G.711 and the pre-encoded loops (decoded by PyAV/FFmpeg)."""

from __future__ import annotations

import os
import random
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.media import rtp
from globaleye.media.names import RecordingName
from globaleye.sim.media.source import (
    LoopParams,
    MediaLibrary,
    default_library,
    write_recording,
)

try:
    import av
except ImportError:  # pragma: no cover
    av = None


def nal(ntype: int, size: int, nri: int = 3, seed: int = 0) -> bytes:
    body = random.Random(seed).randbytes(size - 1)
    return bytes([(nri << 5) | ntype]) + body


class RtpHeaderTests(TestCase):
    def test_round_trip(self) -> None:
        packet = rtp.RtpPacket(96, 65535, 0xFFFFFFFF, 0x12345678, True, b"payload")
        data = rtp.build_rtp(packet)
        self.assertEqual(len(data), 12 + 7)
        self.assertEqual(data[0], 0x80)
        self.assertEqual(data[1], 0x80 | 96)
        self.assertEqual(rtp.parse_rtp(data), packet)

    def test_csrc_extension_padding(self) -> None:
        header = bytes([0x80 | 0x20 | 0x10 | 0x01, 8]) + (1).to_bytes(2, "big") + bytes(8)
        data = header + bytes(4) + b"\xbe\xde\x00\x01" + bytes(4) + b"AB" + b"\x00\x03"
        # One CSRC, a one-word extension, then "A" and 3 bytes of padding ("B", 0, 3).
        self.assertEqual(rtp.parse_rtp(data).payload, b"A")

    def test_garbage(self) -> None:
        for data in (b"", b"\x00" * 12, b"\x80" * 5):
            with self.assertRaises(rtp.RtpError):
                rtp.parse_rtp(data)
        self.assertFalse(rtp.looks_like_rtp(b"\x00" * 12))
        self.assertTrue(rtp.looks_like_rtp(rtp.rtp_header(96, 0, 0, 0, False)))


class RtcpTests(TestCase):
    def test_sender_report(self) -> None:
        data = rtp.rtcp_sender_report(0xDEADBEEF, 1_700_000_000.5, 123456, 10, 9000, "81100000001@globaleye")
        self.assertTrue(rtp.looks_like_rtcp(data))
        self.assertEqual(len(data) % 4, 0)
        self.assertEqual((data[0], data[1], int.from_bytes(data[2:4], "big")), (0x80, 200, 6))
        self.assertEqual(int.from_bytes(data[4:8], "big"), 0xDEADBEEF)
        self.assertEqual(int.from_bytes(data[8:12], "big"), 1_700_000_000 + rtp.NTP_EPOCH_OFFSET)
        self.assertEqual(int.from_bytes(data[12:16], "big"), 1 << 31)  # .5 s
        self.assertEqual(int.from_bytes(data[16:20], "big"), 123456)
        sdes = data[28:]
        self.assertEqual(sdes[1], 202)
        self.assertEqual((int.from_bytes(sdes[2:4], "big") + 1) * 4, len(sdes))
        self.assertIn(b"81100000001@globaleye", sdes)
        self.assertFalse(rtp.looks_like_rtcp(rtp.rtp_header(96, 0, 0, 0, True)))


class H264PacketizationTests(TestCase):
    def depacketize(self, payloads: list[tuple[bytes, bool]]) -> list[bytes]:
        d = rtp.H264Depacketizer()
        return [n for p, _ in payloads for n in d.feed(p)]

    def test_single_nal_units(self) -> None:
        nals = [nal(7, 20), nal(8, 4), nal(5, 1400)]
        payloads = rtp.packetize_h264(nals, mtu=1400)
        self.assertEqual([p for p, _ in payloads], nals)
        self.assertEqual([m for _, m in payloads], [False, False, True])

    def test_fu_a(self) -> None:
        big = nal(5, 5000, nri=3, seed=1)
        payloads = rtp.packetize_h264([big], mtu=1400)
        self.assertEqual(len(payloads), 4)  # 4999 bytes of body in 1398-byte pieces
        for i, (p, marker) in enumerate(payloads):
            self.assertLessEqual(len(p), 1400)
            self.assertEqual(p[0], (3 << 5) | 28)  # FU indicator: NRI kept, type 28
            self.assertEqual(p[1] & 0x1F, 5)  # FU header: original type
            self.assertEqual(bool(p[1] & 0x80), i == 0)  # S
            self.assertEqual(bool(p[1] & 0x40), i == len(payloads) - 1)  # E
            self.assertEqual(marker, i == len(payloads) - 1)  # marker: last of the AU
        self.assertEqual(self.depacketize(payloads), [big])

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.tuples(st.integers(1, 23), st.integers(1, 6000)), min_size=1, max_size=6),
           st.integers(100, 1500))
    def test_round_trip_property(self, spec: list[tuple[int, int]], mtu: int) -> None:
        nals = [nal(t, n, seed=i) for i, (t, n) in enumerate(spec)]
        payloads = rtp.packetize_h264(nals, mtu)
        self.assertTrue(all(len(p) <= mtu for p, _ in payloads))
        self.assertEqual([m for _, m in payloads].count(True), 1)
        self.assertTrue(payloads[-1][1])
        self.assertEqual(self.depacketize(payloads), nals)

    def test_lost_fu_start_drops_nal(self) -> None:
        payloads = rtp.packetize_h264([nal(5, 3000), nal(1, 10)], mtu=1000)
        self.assertEqual(self.depacketize(payloads[1:]), [payloads[-1][0]])

    def test_stap_a(self) -> None:
        a, b = nal(7, 10), nal(8, 4)
        stap = bytes([24]) + len(a).to_bytes(2, "big") + a + len(b).to_bytes(2, "big") + b
        self.assertEqual(rtp.H264Depacketizer().feed(stap), [a, b])
        with self.assertRaises(rtp.RtpError):
            rtp.H264Depacketizer().feed(stap[:-1])

    def test_annexb_split(self) -> None:
        a, b, c = nal(7, 10), nal(8, 4), nal(5, 50)
        stream = b"\x00\x00\x00\x01" + a + b"\x00\x00\x01" + b + b"\x00\x00\x00\x01" + c
        self.assertEqual(rtp.split_annexb(stream), [a, b, c])


class G711Tests(TestCase):
    def test_reference_values(self) -> None:
        # ITU-T G.711 A-law: silence codes as 0xD5 (positive) / 0x55 (negative).
        self.assertEqual(rtp.alaw_encode([0, -1, 32767, -32768]), bytes([0xD5, 0x55, 0xAA, 0x2A]))

    def test_round_trip_error_bounded(self) -> None:
        samples = list(range(-32768, 32768, 97))
        decoded = rtp.alaw_decode(rtp.alaw_encode(samples))
        for s, d in zip(samples, decoded, strict=True):
            self.assertLessEqual(abs(s - d), max(16, abs(s) // 16), (s, d))

    def test_tone_is_8khz(self) -> None:
        lib = MediaLibrary()
        self.assertEqual(len(lib.audio(4).pcma), 4 * 8000)


class LoopTests(TestCase):
    """The real loops, decoded by FFmpeg's H.264 decoder (through PyAV)."""

    def setUp(self) -> None:
        if av is None:
            raise SkipTest("PyAV (pip install av) is not installed")

    def decode(self, loop, repeats: int = 2) -> list:
        codec = av.CodecContext.create("h264", "r")
        frames = []
        for i in range(len(loop.frames) * repeats):
            frames += codec.decode(av.Packet(loop.annexb(i)))
        frames += codec.decode(None)
        return frames

    def test_main_and_sub_loop(self) -> None:
        lib = default_library()
        for loop, size in ((lib.main(), (1280, 720)), (lib.sub(), (352, 288))):
            self.assertEqual((loop.width, loop.height), size)
            self.assertEqual(loop.fps, 25)
            self.assertTrue(loop.profile_level_id.startswith("42"))  # baseline
            self.assertEqual(loop.sprop_parameter_sets.count(","), 1)
            keys = [i for i, f in enumerate(loop.frames) if f.keyframe]
            self.assertEqual(keys, list(range(0, len(loop.frames), loop.params.gop)))
            for f in loop.frames:  # SPS/PPS precede every IDR, nowhere else
                types = [rtp.nal_type(n) for n in f.nals]
                self.assertEqual(types[:2] == [7, 8], f.keyframe)
                self.assertEqual(f.payloads[-1][1], True)
            # Played twice back to back: a decoder sees one seamless stream.
            frames = self.decode(loop)
            self.assertEqual(len(frames), 2 * len(loop.frames))
            self.assertEqual({(f.width, f.height) for f in frames}, {size})

    def test_disk_cache(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            params = LoopParams(160, 120, fps=10, seconds=2, gop=10)
            first = MediaLibrary(d)
            loop = first.video(params)
            self.assertEqual(first.encodes, 1)
            again = MediaLibrary(d)
            self.assertEqual(again.video(params), loop)
            self.assertEqual(again.encodes, 0)
            self.assertIs(again.video(params), again.video(params))

    def test_recording_is_mpeg_ts(self) -> None:
        name = RecordingName.parse("81100000001_0_20261101120500.ts")
        self.assertIsNotNone(name)
        self.assertEqual(str(name), "81100000001_0_20261101120500.ts")
        self.assertIsNone(RecordingName.parse("81100000001_0_20261301120500.ts"))
        self.assertIsNone(RecordingName.parse("../etc/passwd"))
        loop = default_library().sub()
        with tempfile.TemporaryDirectory() as d:
            path = write_recording(loop, os.path.join(d, str(name)), seconds=10)
            with av.open(str(path)) as container:
                self.assertEqual(container.format.name, "mpegts")
                stream = container.streams.video[0]
                self.assertEqual(stream.codec_context.name, "h264")
                count = sum(1 for _ in container.decode(stream))
                self.assertEqual(count, 250)
                self.assertAlmostEqual(container.duration / 1e6, 10.0, delta=0.1)
