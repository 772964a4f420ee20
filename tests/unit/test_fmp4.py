"""The fragmented-MP4 writer (globaleye.media.fmp4), read back by a small box reader."""

from __future__ import annotations

import struct

from twisted.trial.unittest import TestCase

from globaleye.media import fmp4, rtp
from tests.util import PPS, SPS, boxes, tree


class InitSegmentTests(TestCase):
    def test_structure(self) -> None:
        init = fmp4.init_segment(SPS, PPS)
        t = tree(init)
        self.assertEqual([k for k, _p, _b in boxes(init)], [b"ftyp", b"moov"])
        self.assertEqual(t["ftyp"][:4], b"iso5")
        self.assertIn(b"iso6", t["ftyp"])
        for path in ("moov/mvhd", "moov/trak/tkhd", "moov/trak/mdia/mdhd", "moov/trak/mdia/hdlr",
                     "moov/trak/mdia/minf/vmhd", "moov/trak/mdia/minf/dinf/dref",
                     "moov/trak/mdia/minf/stbl/stsd", "moov/trak/mdia/minf/stbl/stts",
                     "moov/trak/mdia/minf/stbl/stsc", "moov/trak/mdia/minf/stbl/stsz",
                     "moov/trak/mdia/minf/stbl/stco", "moov/mvex/trex"):
            self.assertIn(path, t)
        self.assertEqual(t["moov/trak/mdia/hdlr"][8:12], b"vide")
        self.assertEqual(struct.unpack_from("!I", t["moov/trak/mdia/mdhd"], 12)[0], 90000)
        tkhd = t["moov/trak/tkhd"]
        self.assertEqual(struct.unpack_from("!I", tkhd, 12)[0], 1)  # track_ID
        self.assertEqual(struct.unpack_from("!II", tkhd, len(tkhd) - 8), (320 << 16, 240 << 16))
        self.assertEqual(struct.unpack_from("!I", t["moov/mvex/trex"], 4)[0], 1)
        self.assertEqual(struct.unpack_from("!II", t["moov/trak/mdia/minf/stbl/stsz"], 4), (0, 0))

    def test_avc1_and_avcc(self) -> None:
        stsd = tree(fmp4.init_segment(SPS, PPS))["moov/trak/mdia/minf/stbl/stsd"]
        self.assertEqual(struct.unpack_from("!I", stsd, 4)[0], 1)
        [(kind, _p, avc1)] = boxes(stsd, 8)
        self.assertEqual(kind, b"avc1")
        self.assertEqual(struct.unpack_from("!HH", avc1, 24), (320, 240))
        [(kind, _p, avcc)] = boxes(avc1, 78)
        self.assertEqual(kind, b"avcC")
        self.assertEqual(avcc[:6], bytes([1, 0x42, 0xC0, 0x0D, 0xFF, 0xE1]))
        n = struct.unpack_from("!H", avcc, 6)[0]
        self.assertEqual(avcc[8:8 + n], SPS)
        self.assertEqual(avcc[8 + n], 1)
        m = struct.unpack_from("!H", avcc, 9 + n)[0]
        self.assertEqual(avcc[11 + n:11 + n + m], PPS)
        self.assertEqual(len(avcc), 11 + n + m)

    def test_codec_string(self) -> None:
        self.assertEqual(fmp4.codec_string(SPS), "avc1.42C00D")
        with self.assertRaises(fmp4.Fmp4Error):
            fmp4.codec_string(PPS)

    def test_size_from_sps_or_given(self) -> None:
        given = tree(fmp4.init_segment(SPS, PPS, 640, 480))["moov/trak/tkhd"]
        self.assertEqual(struct.unpack_from("!II", given, len(given) - 8), (640 << 16, 480 << 16))

    def test_needs_parameter_sets(self) -> None:
        with self.assertRaises(fmp4.Fmp4Error):
            fmp4.init_segment(SPS, b"")


class MediaSegmentTests(TestCase):
    def samples(self) -> list[fmp4.Sample]:
        idr = bytes([0x65]) + bytes(range(200))
        p1, p2 = bytes([0x41, 1, 2, 3]), bytes([0x41]) + b"x" * 1000
        return [fmp4.avc_sample([SPS, PPS, idr], 3600), fmp4.avc_sample([bytes([9, 0xF0]), p1], 3600),
                fmp4.avc_sample([p2], 3000)]

    def test_sample_from_nals(self) -> None:
        s = self.samples()
        self.assertTrue(s[0].sync)
        self.assertFalse(s[1].sync)
        self.assertEqual(s[0].data, struct.pack("!I", 201) + bytes([0x65]) + bytes(range(200)),
                         "SPS and PPS are in the avcC, not the sample")
        self.assertEqual(s[1].data, struct.pack("!I", 4) + bytes([0x41, 1, 2, 3]), "no AUD")
        with self.assertRaises(fmp4.Fmp4Error):
            fmp4.avc_sample([SPS, PPS], 3600)

    def test_structure_and_offsets(self) -> None:
        samples = self.samples()
        seg = fmp4.media_segment(7, 123456789012, samples)
        top = boxes(seg)
        self.assertEqual([k for k, _p, _b in top], [b"moof", b"mdat"])
        t = tree(seg)
        self.assertEqual(struct.unpack_from("!I", t["moof/mfhd"], 4)[0], 7)
        tfhd = t["moof/traf/tfhd"]
        self.assertEqual(struct.unpack_from("!II", tfhd), (0x020000, 1))  # default-base-is-moof, track 1
        tfdt = t["moof/traf/tfdt"]
        self.assertEqual(tfdt[0], 1)
        self.assertEqual(struct.unpack_from("!Q", tfdt, 4)[0], 123456789012)
        trun = t["moof/traf/trun"]
        flags = struct.unpack_from("!I", trun)[0] & 0xFFFFFF
        self.assertEqual(flags, 0x000701)
        count, offset = struct.unpack_from("!Ii", trun, 4)
        self.assertEqual(count, 3)
        entries = [struct.unpack_from("!III", trun, 12 + 12 * i) for i in range(count)]
        self.assertEqual(entries, [(s.duration, len(s.data), fmp4.SYNC_FLAGS if s.sync else fmp4.NON_SYNC_FLAGS)
                                   for s in samples])
        self.assertEqual(len(trun), 12 + 12 * count)
        mdat_pos = top[1][1]
        self.assertEqual(offset, mdat_pos + 8, "data offset from the moof's first byte to the mdat's payload")
        self.assertEqual(seg[offset:], b"".join(s.data for s in samples))

    def test_composition_offsets(self) -> None:
        samples = [fmp4.Sample(b"\0\0\0\1\x65", 3600, True, 7200), fmp4.Sample(b"\0\0\0\1\x41", 3600, False, -3600)]
        trun = tree(fmp4.media_segment(1, 0, samples))["moof/traf/trun"]
        self.assertEqual(trun[0], 1)
        self.assertEqual(struct.unpack_from("!I", trun)[0] & 0xFFFFFF, 0x000F01)
        self.assertEqual(struct.unpack_from("!IIIi", trun, 12 + 16), (3600, 5, fmp4.NON_SYNC_FLAGS, -3600))

    def test_two_tracks(self) -> None:
        """The shape audio will take: two trafs, one mdat, each run's offset pointing at its data."""
        video = fmp4.video_track(SPS, PPS)
        audio = fmp4.Track(2, b"soun", 8000, fmp4.box(b"mp4a", bytes(28)))
        init = fmp4.init_segment_for([video, audio])
        self.assertEqual(len([k for k, _p, _b in boxes(tree(init)["moov"]) if k == b"trak"]), 2)
        v = [fmp4.Sample(b"V" * 10, 3600, True)]
        a = [fmp4.Sample(b"A" * 5, 160, True), fmp4.Sample(b"a" * 6, 160, True)]
        seg = fmp4.fragment(3, [fmp4.Run(1, 0, v), fmp4.Run(2, 80, a)])
        moof = boxes(seg)[0][2]
        trafs = [body for kind, _p, body in boxes(moof) if kind == b"traf"]
        offsets = [struct.unpack_from("!i", dict((k, b) for k, _p, b in boxes(traf))[b"trun"], 8)[0]
                   for traf in trafs]
        self.assertEqual(seg[offsets[0]:offsets[0] + 10], b"V" * 10)
        self.assertEqual(seg[offsets[1]:offsets[1] + 11], b"A" * 5 + b"a" * 6)

    def test_refuses_empty(self) -> None:
        with self.assertRaises(fmp4.Fmp4Error):
            fmp4.media_segment(1, 0, [])


def _packets(pictures: list[list[bytes]], ts_step: int = 3600) -> list[bytes]:
    out = []
    seq = 100
    for i, nals in enumerate(pictures):
        for payload, marker in rtp.packetize_h264(nals, mtu=100):
            out.append(rtp.rtp_header(96, seq, 1000 + i * ts_step, 1, marker) + payload)
            seq += 1
    return out


class PictureAssemblerTests(TestCase):
    """RTP → access units (globaleye.media.h264au), with the loss rule: drop until the next IDR."""

    def setUp(self) -> None:
        from globaleye.media.h264au import PictureAssembler

        self.idr = bytes([0x65]) + bytes(range(250))
        self.p = [bytes([0x41, i]) + b"p" * 150 for i in range(4)]
        self.assembler = PictureAssembler([SPS, PPS])

    def feed(self, packets: list[bytes]) -> list[tuple[int, tuple[int, ...]]]:
        return [(p.timestamp, tuple(n[0] & 0x1F for n in p.nals)) for d in packets for p in self.assembler.feed(d)]

    def test_marker_ends_picture_and_sps_pps_put_in_front(self) -> None:
        got = self.feed(_packets([[self.idr], [self.p[0]], [self.p[1]]]))
        self.assertEqual(got, [(1000, (7, 8, 5)), (4600, (1,)), (8200, (1,))])

    def test_starts_at_idr(self) -> None:
        got = self.feed(_packets([[self.p[0]], [self.idr], [self.p[1]]]))
        self.assertEqual([t for t, _ in got], [4600, 8200])

    def test_lost_marker_new_timestamp_ends_picture(self) -> None:
        packets = _packets([[self.idr], [self.p[0]]])
        last_of_first = next(i for i, d in enumerate(packets) if d[1] & 0x80)
        packets[last_of_first] = packets[last_of_first][:1] + bytes([packets[last_of_first][1] & 0x7F]) + \
            packets[last_of_first][2:]
        got = self.feed(packets)
        self.assertEqual([t for t, _ in got], [1000, 4600])

    def test_loss_drops_until_next_idr(self) -> None:
        packets = _packets([[self.idr], [self.p[0]], [self.p[1]], [self.idr], [self.p[2]]])
        del packets[4]  # the last packet of the second picture (the IDR is 3 FU-A packets at mtu 100, p0 2)
        got = self.feed(packets)
        self.assertEqual([t for t, _ in got], [1000, 1000 + 3 * 3600, 1000 + 4 * 3600])
        self.assertEqual(self.assembler.losses, 1)
        self.assertGreaterEqual(self.assembler.dropped, 2)
