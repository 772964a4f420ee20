"""The pure RTSP codec: messages, interleaved frames, split-safety, bounds, header values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from globaleye.media.rtsp.message import (
    Headers,
    InterleavedFrame,
    RtspCodecError,
    RtspParser,
    RtspRequest,
    RtspResponse,
    TransportSpec,
    encode_interleaved,
    format_npt,
    parse_npt_range,
    parse_transport,
)

URL = "rtsp://10.0.0.5:554/realplay?devid=81100000001&channelno=0&streamtype=1&hashtoken=abc"

# §15's own SETUP, as printed (with "Cseq" and an upper-case UNICAST).
SPEC_SETUP = (
    f"SETUP {URL} RTSP/1.0\r\n"
    "User-Agent: LibVLC/1.1.11 (LIVE555 Streaming Media v2011.05.25)\r\n"
    "Cseq: 3\r\n"
    "Transport: RTP/AVP;UNICAST;destination=114.23.72.118;client_port=16264-16265;mode=play\r\n\r\n"
).encode()


def feed_all(parser: RtspParser, data: bytes, step: int) -> list:
    events = []
    for i in range(0, len(data), step):
        events += parser.feed(data[i:i + step])
    return events


class MessageTests(TestCase):
    def test_request_round_trip(self) -> None:
        req = RtspRequest("DESCRIBE", URL, Headers([("CSeq", "2"), ("Accept", "application/sdp")]))
        [parsed] = RtspParser().feed(req.encode())
        self.assertIsInstance(parsed, RtspRequest)
        self.assertEqual(parsed.method, "DESCRIBE")
        self.assertEqual(parsed.uri, URL)
        self.assertEqual(parsed.cseq, "2")
        self.assertEqual(parsed.headers.get("accept"), "application/sdp")

    def test_response_with_body(self) -> None:
        body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
        resp = RtspResponse(200, "OK", Headers([("CSeq", "2"), ("Content-Type", "application/sdp")]), body)
        data = resp.encode()
        self.assertIn(f"Content-Length: {len(body)}".encode(), data)
        [parsed] = RtspParser().feed(data)
        self.assertEqual((parsed.code, parsed.reason, parsed.body), (200, "OK", body))

    def test_default_reason(self) -> None:
        self.assertTrue(RtspResponse(453).encode().startswith(b"RTSP/1.0 453 Not Enough Bandwidth\r\n"))

    def test_spec_example_parses(self) -> None:
        [req] = RtspParser().feed(SPEC_SETUP)
        self.assertEqual(req.cseq, "3")  # "Cseq": header names are case-insensitive
        [spec] = parse_transport(req.headers.get("Transport"))
        self.assertEqual(spec.profile, "RTP/AVP")
        self.assertFalse(spec.tcp)
        self.assertEqual(spec.client_port, (16264, 16265))
        self.assertEqual(spec.destination, "114.23.72.118")

    def test_split_anywhere_with_interleaved(self) -> None:
        """Every split point gives the same events (frames between and after messages)."""
        rtp = bytes(range(256)) * 3
        stream = (RtspRequest("OPTIONS", URL, Headers([("CSeq", "1")])).encode()
                  + encode_interleaved(1, b"\x80\xc9" + b"\x00" * 6)
                  + RtspResponse(200, headers=Headers([("CSeq", "1")]), body=b"xyz").encode()
                  + encode_interleaved(0, rtp)
                  + b"\r\n"  # keep-alive CRLF between messages
                  + SPEC_SETUP)
        expected = RtspParser().feed(stream)
        self.assertEqual([type(e).__name__ for e in expected],
                         ["RtspRequest", "InterleavedFrame", "RtspResponse", "InterleavedFrame", "RtspRequest"])
        self.assertEqual(expected[3], InterleavedFrame(0, rtp))
        for step in (1, 2, 3, 7, 64, 1000):
            got = feed_all(RtspParser(), stream, step)
            self.assertEqual(len(got), len(expected))
            for a, b in zip(got, expected, strict=True):
                self.assertEqual(type(a), type(b))
                if isinstance(a, InterleavedFrame):
                    self.assertEqual(a, b)
                else:
                    self.assertEqual((a.headers, a.body), (b.headers, b.body))

    def test_bare_lf(self) -> None:
        [req] = RtspParser().feed(b"OPTIONS * RTSP/1.0\nCSeq: 9\n\n")
        self.assertEqual((req.method, req.uri, req.cseq), ("OPTIONS", "*", "9"))

    def test_header_block_bounded(self) -> None:
        parser = RtspParser(max_header=1024)
        parser.feed(b"OPTIONS * RTSP/1.0\r\n")
        with self.assertRaises(RtspCodecError):
            parser.feed(b"X-Junk: " + b"a" * 2000)
        with self.assertRaises(RtspCodecError):  # a failed parser stays failed
            parser.feed(b"\r\n\r\n")

    def test_body_bounded(self) -> None:
        with self.assertRaises(RtspCodecError):
            RtspParser(max_body=100).feed(b"ANNOUNCE * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 101\r\n\r\n")

    def test_bad_input(self) -> None:
        for data in (b"GET / HTTP/1.1\r\n\r\n", b"RTSP/1.0 2000 OK\r\n\r\n",
                     b"OPTIONS * RTSP/1.0\r\nno colon here\r\n\r\n",
                     b"OPTIONS * RTSP/1.0\r\nContent-Length: -1\r\n\r\n", b"\xff\xfe * RTSP/1.0\r\n\r\n"):
            with self.assertRaises(RtspCodecError, msg=data):
                RtspParser().feed(data)

    def test_encoder_refuses_injection(self) -> None:
        with self.assertRaises(RtspCodecError):
            RtspRequest("OPTIONS", "*", Headers([("CSeq", "1\r\nX: y")])).encode()
        with self.assertRaises(RtspCodecError):
            encode_interleaved(0, b"x" * 65536)


class HeaderValueTests(TestCase):
    def test_transport_tcp(self) -> None:
        [spec] = parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1")
        self.assertTrue(spec.tcp)
        self.assertEqual(spec.interleaved, (0, 1))
        self.assertEqual(TransportSpec("RTP/AVP/TCP", interleaved=(2, 3), ssrc=0xAB).encode(),
                         "RTP/AVP/TCP;unicast;interleaved=2-3;ssrc=000000AB")

    def test_transport_alternatives(self) -> None:
        specs = parse_transport("RTP/SAVP;unicast,RTP/AVP/UDP;unicast;client_port=5000-5001")
        self.assertEqual([s.profile for s in specs], ["RTP/SAVP", "RTP/AVP"])
        with self.assertRaises(RtspCodecError):
            parse_transport("RTP/AVP;client_port=99999-100000")

    def test_npt(self) -> None:
        self.assertEqual(parse_npt_range("npt=10-"), (10.0, None))
        self.assertEqual(parse_npt_range("npt=62.5-120"), (62.5, 120.0))
        self.assertEqual(parse_npt_range("npt=now-"), (None, None))
        self.assertEqual(parse_npt_range("npt=0:01:30.5-"), (90.5, None))
        self.assertEqual(parse_npt_range("npt=-20"), (None, 20.0))
        for bad in ("smpte=0:10:00-", "clock=19961108T143720.25Z-", "npt=abc-", "npt=5"):
            with self.assertRaises(RtspCodecError, msg=bad):
                parse_npt_range(bad)
        self.assertEqual(format_npt(62.0, 300.0), "npt=62.000-300.000")
        self.assertEqual(format_npt(0, None), "npt=0.000-")


class FuzzTests(TestCase):
    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.binary(max_size=300), max_size=8))
    def test_random_bytes_only_codec_errors(self, chunks: list[bytes]) -> None:
        parser = RtspParser(max_header=512, max_body=1024)
        try:
            for chunk in chunks:
                for event in parser.feed(chunk):
                    self.assertLessEqual(len(getattr(event, "body", b"")), 1024)
        except RtspCodecError:
            pass
        self.assertLessEqual(parser.buffered, 512 + 4 + 1024 + 300)

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from([SPEC_SETUP, RtspResponse(200, body=b"abc").encode(),
                            encode_interleaved(0, b"\x80" * 40)]),
           st.integers(0, 200), st.binary(min_size=1, max_size=4))
    def test_mutated_messages_only_codec_errors(self, base: bytes, pos: int, junk: bytes) -> None:
        data = base[:pos] + junk + base[pos + len(junk):]
        try:
            RtspParser(max_header=512, max_body=1024).feed(data)
        except RtspCodecError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=200))
    def test_header_values_only_codec_errors(self, text: str) -> None:
        for parse in (parse_transport, parse_npt_range):
            try:
                parse(text)
            except RtspCodecError:
                pass
