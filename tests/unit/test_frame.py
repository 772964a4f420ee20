"""The §7.4 frame codec: layout, incremental decoding, digest failures, resynchronisation."""

from __future__ import annotations

import hashlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from globaleye.device.protocol.frame import (
    MAX_SEQ,
    BadDigest,
    Frame,
    FrameDecoder,
    FrameError,
    Skipped,
    encode_frame,
    next_seq,
)

LOGIN = b'<?xml version="1.0" encoding="UTF-8"?><LOGIN_REQ><DevID>81100000001</DevID></LOGIN_REQ>'


def frames_only(events: list[object]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


class LayoutTests(SynchronousTestCase):
    def test_layout(self) -> None:
        """HEAD, CMD, SEQ and LEN in network order, Remark 0, MD5 over header+data."""
        raw = encode_frame(Frame(cmd=0x31, seq=0x0102, data=LOGIN))
        header = b"\xfa\xf5\x31\x01\x02\x00" + struct.pack("!H", len(LOGIN))
        self.assertEqual(raw[:8], header)
        self.assertEqual(raw[8:-16], LOGIN)
        self.assertEqual(raw[-16:], hashlib.md5(header + LOGIN).digest())

    def test_empty_data(self) -> None:
        raw = encode_frame(Frame(cmd=0x33, seq=0))
        self.assertEqual(len(raw), 24)
        self.assertEqual(frames_only(FrameDecoder().feed(raw)), [Frame(cmd=0x33, seq=0)])

    def test_too_long(self) -> None:
        self.assertRaises(FrameError, encode_frame, Frame(cmd=0x31, seq=0, data=b"x" * 65536))

    def test_largest(self) -> None:
        frame = Frame(cmd=0x72, seq=7, data=b"y" * 65535)
        self.assertEqual(frames_only(FrameDecoder().feed(encode_frame(frame))), [frame])

    def test_seq_wraps(self) -> None:
        """§7.4.4: the counter goes to 65535 and starts again at 0."""
        self.assertEqual(next_seq(0), 1)
        self.assertEqual(next_seq(MAX_SEQ), 0)

    def test_field_ranges(self) -> None:
        self.assertRaises(ValueError, Frame, cmd=256, seq=0)
        self.assertRaises(ValueError, Frame, cmd=1, seq=65536)


class DecoderTests(SynchronousTestCase):
    def test_split_byte_by_byte(self) -> None:
        frame = Frame(cmd=0x31, seq=9, data=LOGIN)
        decoder = FrameDecoder()
        out: list[object] = []
        for byte in encode_frame(frame):
            out += decoder.feed(bytes([byte]))
        self.assertEqual(out, [frame])
        self.assertEqual(decoder.buffered, 0)

    def test_several_in_one_read(self) -> None:
        frames = [Frame(cmd=0x33, seq=i, data=b"<a>%d</a>" % i) for i in range(5)]
        self.assertEqual(FrameDecoder().feed(b"".join(map(encode_frame, frames))), frames)

    def test_bad_digest_dropped_and_counted(self) -> None:
        good = Frame(cmd=0x33, seq=2, data=b"<x/>")
        bad = bytearray(encode_frame(Frame(cmd=0x33, seq=1, data=b"<y/>")))
        bad[-1] ^= 0xFF
        decoder = FrameDecoder()
        events = decoder.feed(bytes(bad) + encode_frame(good))
        self.assertEqual(events, [BadDigest(0x33, 1, 4), good])
        self.assertEqual(decoder.bad_digests, 1)
        self.assertEqual(decoder.frames, 1)

    def test_garbage_skipped(self) -> None:
        good = Frame(cmd=0x34, seq=3, data=b"<z/>")
        decoder = FrameDecoder()
        events = decoder.feed(b"hello\xfa" + encode_frame(good))
        self.assertEqual(events, [Skipped(6), good])
        self.assertEqual(decoder.skipped_bytes, 6)

    def test_trailing_half_head_kept(self) -> None:
        decoder = FrameDecoder()
        raw = encode_frame(Frame(cmd=0x33, seq=1))
        self.assertEqual(decoder.feed(b"junk" + raw[:1]), [Skipped(4)])
        self.assertEqual(frames_only(decoder.feed(raw[1:])), [Frame(cmd=0x33, seq=1)])

    def test_unsynchronisable_stream(self) -> None:
        decoder = FrameDecoder(max_garbage=1000)
        self.assertRaises(FrameError, decoder.feed, b"\x00" * 2000)

    def test_too_many_bad_digests(self) -> None:
        bad = bytearray(encode_frame(Frame(cmd=0x33, seq=1)))
        bad[10] ^= 1
        decoder = FrameDecoder(max_bad_digests=3)
        decoder.feed(bytes(bad) * 3)
        self.assertRaises(FrameError, decoder.feed, bytes(bad))

    def test_good_frame_resets_bad_run(self) -> None:
        bad = bytearray(encode_frame(Frame(cmd=0x33, seq=1)))
        bad[10] ^= 1
        good = encode_frame(Frame(cmd=0x33, seq=2))
        decoder = FrameDecoder(max_bad_digests=2)
        for _ in range(5):
            decoder.feed(bytes(bad) * 2 + good)
        self.assertEqual(decoder.frames, 5)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, MAX_SEQ), st.binary(max_size=300)),
                    max_size=8),
           st.lists(st.integers(1, 64), min_size=1, max_size=40))
    def test_any_split(self, specs: list[tuple[int, int, bytes]], cuts: list[int]) -> None:
        """Whatever the reads look like, the same frames come out in order."""
        frames = [Frame(cmd=c, seq=s, data=d) for c, s, d in specs]
        stream = b"".join(map(encode_frame, frames))
        decoder = FrameDecoder()
        out: list[object] = []
        position, index = 0, 0
        while position < len(stream):
            size = cuts[index % len(cuts)]
            out += decoder.feed(stream[position : position + size])
            position += size
            index += 1
        self.assertEqual(out, frames)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2000))
    def test_fuzz(self, data: bytes) -> None:
        """Arbitrary bytes yield events or FrameError, never anything else, and never a false frame."""
        decoder = FrameDecoder(max_garbage=500)
        try:
            events = decoder.feed(data)
        except FrameError:
            return
        for event in events:
            self.assertIsInstance(event, (Frame, BadDigest, Skipped))
            if isinstance(event, Frame):
                self.assertIn(encode_frame(event), data)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(min_size=1, max_size=200), st.integers(0, 10_000))
    def test_mutation(self, noise: bytes, where: int) -> None:
        """A frame corrupted anywhere is never delivered with wrong contents."""
        frame = Frame(cmd=0x31, seq=5, data=LOGIN)
        raw = bytearray(encode_frame(frame))
        position = where % len(raw)
        raw[position : position + len(noise)] = noise
        decoder = FrameDecoder()
        try:
            events = decoder.feed(bytes(raw) + encode_frame(frame))
        except FrameError:
            return
        for event in events:
            if isinstance(event, Frame):
                self.assertEqual(event, frame)
