"""globaleye.media.tsremux: consecutive TS recordings → one fragmented MP4 timeline, without sockets.

The TS files are the simulator's own muxer's (globaleye.sim.media.tsmux) around a real SPS/PPS and
stand-in slices; the MP4 is read back box by box (moof/tfdt/trun) to check where each picture lands.
"""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from globaleye.media.tsremux import CLOCK, TsRemuxer
from tests.util import PPS, SPS

FPS = 10
STEP = CLOCK // FPS


def recording(seconds: int, first_dts: int = 900_000) -> bytes:
    """*seconds* of 10 fps with an IDR every second, its DTS starting at *first_dts* (a camera's own clock)."""
    from globaleye.sim.media.tsmux import TsMuxer

    mux = TsMuxer()
    out = [mux.tables()]
    for i in range(seconds * FPS):
        key = i % FPS == 0
        nals = [SPS, PPS, b"\x65\x88" + bytes(40)] if key else [b"\x41\x9a" + bytes(20)]
        out.append(mux.access_unit(nals, first_dts + i * STEP, key))
    return b"".join(out)


def boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    out, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack_from("!I4s", data, at)
        out.append((kind, data[at + 8:at + size]))
        at += size
    return out


def timeline(mp4: bytes) -> list[tuple[int, int, bool]]:
    """(decode time, duration, sync) of every sample, from each moof's tfdt and trun."""
    samples = []
    for kind, body in boxes(mp4):
        if kind != b"moof":
            continue
        traf = dict(boxes(body))[b"traf"]
        parts = dict(boxes(traf))
        base = struct.unpack_from("!Q", parts[b"tfdt"], 4)[0] if parts[b"tfdt"][0] == 1 else \
            struct.unpack_from("!I", parts[b"tfdt"], 4)[0]
        trun = parts[b"trun"]
        flags = int.from_bytes(trun[1:4], "big")
        count = struct.unpack_from("!I", trun, 4)[0]
        at = 8 + (4 if flags & 1 else 0) + (4 if flags & 4 else 0)
        for _ in range(count):
            duration = size = sflags = 0
            if flags & 0x100:
                duration = struct.unpack_from("!I", trun, at)[0]
                at += 4
            if flags & 0x200:
                size = struct.unpack_from("!I", trun, at)[0]
                at += 4
            if flags & 0x400:
                sflags = struct.unpack_from("!I", trun, at)[0]
                at += 4
            if flags & 0x800:
                at += 4
            del size
            samples.append((base, duration, not sflags & 0x00010000))
            base += duration
    return samples


def remux(remuxer: TsRemuxer, files: list[tuple[float, bytes]], piece: int = 188 * 7) -> bytes:
    out = b""
    for start, data in files:
        out += remuxer.begin_file(round(start * CLOCK))
        for at in range(0, len(data), piece):
            out += remuxer.feed(data[at:at + piece], at)
    return out + remuxer.finish()


class TsRemuxTests(SynchronousTestCase):
    def test_consecutive_files_join_without_hole(self) -> None:
        """Names that drift a second from where the last file ended (a camera's clock and cut; the names
        have second resolution): each file continues the previous one exactly, whatever its own DTS;
        every picture once, evenly spaced, an IDR every second."""
        remuxer = TsRemuxer(duration=6.0)
        mp4 = remux(remuxer, [(0.0, recording(2)), (3.0, recording(2, first_dts=5_000_000)),
                              (3.5, recording(2, first_dts=123))])
        self.assertEqual(boxes(mp4)[0][0], b"ftyp")
        self.assertEqual(remuxer.codec, "avc1.42C00D")
        samples = timeline(mp4)
        self.assertEqual(len(samples), 3 * 2 * FPS)
        self.assertEqual([s[0] for s in samples], [i * STEP for i in range(60)])
        self.assertEqual({s[1] for s in samples}, {STEP})
        self.assertEqual([i for i, s in enumerate(samples) if s[2]], list(range(0, 60, FPS)))
        self.assertIn(b"mehd", mp4[:2000])

    def test_a_real_gap_stays_a_gap(self) -> None:
        """The camera was off 10 s: the third file's pictures are at its own time (positions stay true)."""
        samples = timeline(remux(TsRemuxer(), [(0.0, recording(2)), (12.0, recording(2))]))
        self.assertEqual(samples[FPS * 2][0], 12 * CLOCK)
        self.assertEqual(samples[FPS * 2 - 1], (2 * CLOCK - STEP, STEP, False))

    def test_seek_starts_at_the_next_idr_and_end_stops(self) -> None:
        remuxer = TsRemuxer(start=round(2.5 * CLOCK), end=5 * CLOCK)
        samples = timeline(remux(remuxer, [(0.0, recording(2)), (2.0, recording(2)), (4.0, recording(2))]))
        self.assertEqual(remuxer.first_time, 3 * CLOCK)
        self.assertEqual(samples[0][0], 3 * CLOCK)
        self.assertTrue(samples[0][2])
        self.assertEqual(samples[-1][0], 5 * CLOCK - STEP)
        self.assertTrue(remuxer.done)

    def test_a_file_starting_before_the_origin(self) -> None:
        """A recording that began before the range's start: its pictures before 0 are not given out."""
        samples = timeline(remux(TsRemuxer(), [(-1.0, recording(2))]))
        self.assertEqual(samples[0][0], 0)
        self.assertEqual(len(samples), FPS)

    def test_no_picture_no_output(self) -> None:
        remuxer = TsRemuxer()
        self.assertEqual(remux(remuxer, [(0.0, b"\x47" + bytes(187))]), b"")
        self.assertIsNone(remuxer.codec)
