"""The proxy's pure parts: Digest/Basic, nonces, SDP rewriting, RTP/RTCP rewriting, IDR detection."""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from globaleye.media import h264rtp as h264
from globaleye.media import rtp
from globaleye.media.rtsp.sdp import parse_sdp, resolve_control, rewrite_sdp
from globaleye.media.rtsp.serving import Refusal
from globaleye.proxy import auth
from globaleye.proxy.fanout import PictureTracker, ViewerStream
from globaleye.proxy.server import parse_proxy_url

SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=range:npt=0-300.000\r\n"
       b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       b"a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0IAHpWoKA9puAgICBA=,aM48gA==\r\n"
       b"a=framerate:25\r\na=control:rtsp://10.0.0.5/realplay?devid=1&trackID=0\r\n"
       b"m=audio 0 RTP/AVP 8\r\na=control:trackID=1\r\n")


class DigestTests(SynchronousTestCase):
    def test_rfc2617_example(self) -> None:
        """RFC 2617 §3.5's worked example (with qop=auth) verifies; a changed uri does not."""
        header = ('Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                  'uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", '
                  'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
        credentials = auth.parse_authorization(header)
        assert credentials is not None
        secret = auth.ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
        self.assertTrue(auth.digest_ok(credentials, "GET", secret))
        self.assertFalse(auth.digest_ok(credentials, "POST", secret))

    def test_basic_and_junk(self) -> None:
        value = "Basic " + base64.b64encode(b"13300000001:pa:ss").decode()
        self.assertEqual(auth.parse_authorization(value), auth.Credentials("basic", "13300000001", "pa:ss"))
        for junk in ("Basic !!!", "Digest username=x", "Bearer abc", ""):
            self.assertIsNone(auth.parse_authorization(junk))

    def test_nonces(self) -> None:
        now = [1000.0]
        nonces = auth.Nonces(b"k" * 32, clock=lambda: now[0], lifetime=10)
        nonce = nonces.issue()
        self.assertEqual(nonces.check(nonce), "ok")
        mac_end = len(nonce) - auth.Nonces.MAC  # the time's MAC, then the MAC binding it to a connection
        flip = "0" if nonce[mac_end - 1] != "0" else "1"
        self.assertEqual(nonces.check(nonce[:mac_end - 1] + flip + nonce[mac_end:]), "bad")
        self.assertEqual(nonces.check(nonce, "another connection"), "foreign")
        self.assertEqual(nonces.check(nonces.issue("conn"), "conn"), "ok")
        now[0] += 11
        self.assertEqual(nonces.check(nonce), "stale")


class SdpTests(SynchronousTestCase):
    def test_parse_and_rewrite(self) -> None:
        d = parse_sdp(SDP)
        self.assertEqual([m.kind for m in d.media], ["video", "audio"])
        self.assertEqual((d.media[0].encoding, d.media[0].clock_rate, d.media[0].framerate), ("H264", 90000, 25.0))
        self.assertEqual(d.media[1].encoding, "PCMA")
        self.assertEqual([rtp.nal_type(n) for n in d.media[0].sprop_parameter_sets], [7, 8])
        self.assertEqual(resolve_control(d.media[1].control, "rtsp://c/realplay?devid=1"),
                         "rtsp://c/realplay?devid=1&trackID=1")
        out = rewrite_sdp(d, ["rtsp://p/live/1/0/1/trackID=0", "rtsp://p/live/1/0/1/trackID=1"], "127.0.0.1", "n",
                          300.0).decode()
        self.assertNotIn("10.0.0.5", out, "the camera's private address is not shown")
        self.assertIn("a=control:rtsp://p/live/1/0/1/trackID=1", out)
        self.assertIn("a=range:npt=0-300.000", out)


class UrlTests(SynchronousTestCase):
    def test_urls(self) -> None:
        target, track, base = parse_proxy_url("rtsp://h:8554/live/81100000001/0/sub/trackID=1")
        self.assertEqual((target.kind, target.dev_id, target.stream_type, track, base),
                         ("live", "81100000001", 2, 1, "rtsp://h:8554/live/81100000001/0/sub"))
        target, track, _ = parse_proxy_url("rtsp://h/playback/81100000001/0/81100000001_0_20240101120000.ts/")
        self.assertEqual((target.kind, target.file_name, track), ("playback", "81100000001_0_20240101120000.ts", None))
        for bad in ("rtsp://h/live/81100000001/0/3", "rtsp://h/other", "rtsp://h/playback/81100000001/0/x.ts"):
            self.assertRaises(Refusal, parse_proxy_url, bad)


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.full = False

    def blocked(self) -> bool:
        return self.full

    def send_rtp(self, track: int, data: bytes) -> None:
        self.sent.append(data)

    def send_rtcp(self, track: int, data: bytes) -> None:
        pass

    def upstream_lost(self, reason: str) -> None:
        pass


def packet(seq: int, ts: int, payload: bytes, marker: bool = True) -> bytes:
    return rtp.rtp_header(96, seq, ts, 1234, marker) + payload


class ViewerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sink = FakeSink()
        self.viewer = ViewerStream(self.sink, parse_sdp(SDP))
        self.viewer.tracks = {0}
        self.tracker = PictureTracker()

    def feed(self, data: bytes) -> None:
        facts = self.tracker.feed(0, data)
        assert facts is not None
        self.viewer.rtp(0, data, *facts)

    def test_starts_at_idr_with_parameter_sets_and_continuous_sequence(self) -> None:
        self.feed(packet(10, 0, b"\x41p-frame"))
        self.assertEqual(self.sink.sent, [], "no P-frame before the first IDR")
        self.feed(packet(11, 3600, b"\x65idr"))
        types = [rtp.nal_type(rtp.parse_rtp(p).payload) for p in self.sink.sent]
        self.assertEqual(types, [7, 8, 5], "SPS and PPS from the SDP before a bare IDR")
        self.feed(packet(12, 7200, b"\x41p"))
        seqs = [rtp.parse_rtp(p).sequence for p in self.sink.sent]
        self.assertEqual(seqs, [(seqs[0] + i) & 0xFFFF for i in range(4)])
        self.assertEqual(len({rtp.parse_rtp(p).ssrc for p in self.sink.sent}), 1)
        self.assertNotEqual(rtp.parse_rtp(self.sink.sent[0]).ssrc, 1234)

    def test_blocked_viewer_skips_to_next_idr(self) -> None:
        self.feed(packet(1, 0, b"\x65idr"))
        self.sink.full = True
        self.feed(packet(2, 3600, b"\x41p"))
        self.sink.full = False
        self.feed(packet(3, 7200, b"\x41p"))
        self.feed(packet(4, 10800, b"\x67sps", marker=False))
        self.feed(packet(5, 10800, b"\x65idr"))
        types = [rtp.nal_type(rtp.parse_rtp(p).payload) for p in self.sink.sent]
        self.assertEqual(types, [7, 8, 5, 7, 5])
        self.assertEqual(self.viewer.frames_dropped, 2)

    def test_key_start_detection(self) -> None:
        self.assertTrue(h264.is_key_start(bytes([0x7C, 0x85]) + b"x"))  # FU-A start of an IDR
        self.assertFalse(h264.is_key_start(bytes([0x7C, 0x05]) + b"x"))  # FU-A continuation
        self.assertTrue(h264.is_key_start(bytes([0x78, 0, 2, 0x67, 0])))  # STAP-A with SPS first
        self.assertFalse(h264.is_key_start(b"\x41"))
        sr = rtp.rtcp_sender_report(1234, 1.0, 1000, 1, 1, "c")
        out = h264.rewrite_rtcp(sr, 5, 99)
        assert out is not None
        self.assertEqual(int.from_bytes(out[4:8], "big"), 99)
        self.assertEqual(int.from_bytes(out[16:20], "big"), 1005)


class RtcpByeTests(SynchronousTestCase):
    def test_bye_gets_the_viewers_ssrc_or_is_cut_for_live(self) -> None:
        compound = rtp.rtcp_bye(1234, 1.0, 1000, 1, 1, "c", "end of recording")
        out = h264.rewrite_rtcp(compound, 5, 99)
        assert out is not None
        self.assertEqual(len(out), len(compound))
        self.assertNotIn((1234).to_bytes(4, "big"), out, "no camera SSRC left, BYE included")
        live = h264.rewrite_rtcp(compound, 5, 99, bye=False)
        assert live is not None
        self.assertLess(len(live), len(compound))
        pos, types = 0, []
        while pos < len(live):
            types.append(live[pos + 1])
            pos += (int.from_bytes(live[pos + 2:pos + 4], "big") + 1) * 4
        self.assertEqual(pos, len(live))
        self.assertNotIn(203, types)
        self.assertEqual(types[0], 200)


class BatchedWriteTests(SynchronousTestCase):
    """A TCP viewer gets each picture in one writeSequence call, in order, whatever the markers say."""

    def setUp(self) -> None:
        self.calls: list[tuple[str, list[bytes]]] = []
        self.viewer = ViewerStream(FakeSink(), parse_sdp(SDP))
        self.viewer.channels = {0: 0, 1: 2}
        self.viewer.write = lambda data: self.calls.append(("write", [data]))
        self.viewer.write_sequence = lambda packets: self.calls.append(("sequence", list(packets)))
        self.tracker = PictureTracker()

    def feed(self, track: int, data: bytes) -> None:
        facts = self.tracker.feed(track, data)
        assert facts is not None
        self.viewer.rtp(track, data, *facts)

    def test_one_call_per_picture_in_order(self) -> None:
        self.feed(0, rtp.rtp_header(96, 1, 0, 1, False) + b"\x65a")
        self.feed(0, rtp.rtp_header(96, 2, 0, 1, False) + b"\x65b")
        self.assertEqual(self.calls, [], "nothing before the picture's last packet")
        self.feed(0, rtp.rtp_header(96, 3, 0, 1, True) + b"\x65c")
        self.feed(1, rtp.rtp_header(8, 1, 0, 2, True) + b"\xd5" * 8)
        # A picture whose last packet lost its marker goes out when the next one starts.
        self.feed(0, rtp.rtp_header(96, 4, 3600, 1, False) + b"\x41d")
        self.feed(0, rtp.rtp_header(96, 5, 7200, 1, True) + b"\x41e")
        # writeSequence gets each packet as the viewer's header then the payload all viewers share.
        kinds = [(kind, len(packets)) for kind, packets in self.calls]
        self.assertEqual(kinds, [("sequence", 6), ("write", 1), ("sequence", 2), ("sequence", 2)])
        frames = [b"".join(packets[i:i + 2]) for kind, packets in self.calls if kind == "sequence"
                  for i in range(0, len(packets), 2)]
        seqs = [int.from_bytes(p[6:8], "big") for p in frames]
        self.assertEqual(seqs, [(seqs[0] + i) & 0xFFFF for i in range(5)])
        self.assertEqual([p[-1:] for p in frames], [b"a", b"b", b"c", b"d", b"e"])
        self.assertTrue(all(p[0] == 0x24 and int.from_bytes(p[2:4], "big") == len(p) - 4 for p in frames))

    def test_viewers_share_the_payload(self) -> None:
        other_calls: list[list[bytes]] = []
        other = ViewerStream(FakeSink(), parse_sdp(SDP))
        other.channels = {0: 0}
        other.write = lambda data: None
        other.write_sequence = lambda packets: other_calls.append(list(packets))
        data = rtp.rtp_header(96, 1, 0, 1, True) + b"\x65" + b"x" * 1300
        facts = self.tracker.feed(0, data)
        assert facts is not None
        for viewer in (self.viewer, other):
            viewer.rtp(0, data, *facts)
        mine, theirs = self.calls[-1][1], other_calls[-1]
        self.assertIs(mine[1], theirs[1], "one payload object for both viewers")
        self.assertNotEqual(mine[0], theirs[0], "each its own header (SSRC, sequence, timestamp)")
