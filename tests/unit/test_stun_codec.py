"""Tests for the pure STUN codec ``txturn.stun``.

The RFC 5769 vectors are typed in from the RFC (Appendix A's byte arrays agree with
section 2; the section 2.4 hex dump has a typo for U+30DE, 0x9a instead of 0x9e, and
the appendix and the HMAC use 0x9e, so that is what is here).
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from txturn import stun
from txturn.framing import MAX_FRAME, StreamFramer
from txturn.stun import Attr, Class, Message, Method, StunDecodeError


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


SHORT_TERM_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"

RFC5769_REQUEST = _hex(
    """
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf
    """
)

RFC5769_RESPONSE_V4 = _hex(
    """
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96
    """
)

RFC5769_RESPONSE_V6 = _hex(
    """
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c
    """
)

RFC5769_LONG_TERM = _hex(
    """
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46
    53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
    """
)

MATRIX_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
MATRIX_PASSWORD = "The\u00adM\u00aatr\u2168"


def _without(msg: Message, *types: int) -> Message:
    return Message(
        msg.method,
        msg.msg_class,
        msg.transaction_id,
        {k: v for k, v in msg.attributes.items() if k not in types},
    )


class RFC5769Tests(SynchronousTestCase):
    """The four messages of RFC 5769 §2."""

    def test_sample_request(self) -> None:
        """§2.1: decode, verify integrity and fingerprint, re-encode byte-exactly."""
        msg = stun.decode(RFC5769_REQUEST)
        self.assertEqual((msg.method, msg.msg_class), (Method.BINDING, Class.REQUEST))
        self.assertTrue(msg.cookie)
        self.assertEqual(msg.transaction_id, _hex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"))
        self.assertEqual(msg.attributes[Attr.SOFTWARE], "STUN test client")
        self.assertEqual(msg.attributes[Attr.PRIORITY], 0x6E0001FF)
        self.assertEqual(msg.attributes[Attr.ICE_CONTROLLED], 0x932FF9B151263B36)
        self.assertEqual(msg.attributes[Attr.USERNAME], "evtj:h6vY")
        self.assertTrue(stun.check_integrity(RFC5769_REQUEST, SHORT_TERM_PASSWORD))
        self.assertFalse(stun.check_integrity(RFC5769_REQUEST, b"wrong"))
        self.assertTrue(stun.check_fingerprint(RFC5769_REQUEST))
        # RFC 5389 allows any padding; the vector pads USERNAME with 0x20.
        again = stun.encode(
            _without(msg, Attr.MESSAGE_INTEGRITY, Attr.FINGERPRINT),
            integrity_key=SHORT_TERM_PASSWORD,
            fingerprint=True,
            pad_byte=0x20,
        )
        self.assertEqual(again, RFC5769_REQUEST)

    def _check_response(self, data: bytes, address: tuple[str, int]) -> None:
        msg = stun.decode(data)
        self.assertEqual((msg.method, msg.msg_class), (Method.BINDING, Class.SUCCESS))
        self.assertEqual(msg.attributes[Attr.SOFTWARE], "test vector")
        self.assertEqual(msg.attributes[Attr.XOR_MAPPED_ADDRESS], address)
        self.assertTrue(stun.check_integrity(data, SHORT_TERM_PASSWORD))
        self.assertTrue(stun.check_fingerprint(data))
        again = stun.encode(
            _without(msg, Attr.MESSAGE_INTEGRITY, Attr.FINGERPRINT),
            integrity_key=SHORT_TERM_PASSWORD,
            fingerprint=True,
            pad_byte=0x20,
        )
        self.assertEqual(again, data)

    def test_ipv4_response(self) -> None:
        """§2.2: XOR-MAPPED-ADDRESS 192.0.2.1:32853."""
        self._check_response(RFC5769_RESPONSE_V4, ("192.0.2.1", 32853))

    def test_ipv6_response(self) -> None:
        """§2.3: XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853."""
        self._check_response(RFC5769_RESPONSE_V6, ("2001:db8:1234:5678:11:2233:4455:6677", 32853))

    def test_long_term_request(self) -> None:
        """§2.4: long-term key with SASLprep of the password; no FINGERPRINT."""
        msg = stun.decode(RFC5769_LONG_TERM)
        self.assertEqual(msg.attributes[Attr.USERNAME], MATRIX_USERNAME)
        self.assertEqual(msg.attributes[Attr.NONCE], "f//499k954d6OL34oL9FSTvy64sA")
        self.assertEqual(msg.attributes[Attr.REALM], "example.org")
        self.assertEqual(stun.saslprep(MATRIX_PASSWORD), "TheMatrIX")
        key = stun.long_term_key(MATRIX_USERNAME, "example.org", MATRIX_PASSWORD)
        self.assertEqual(key, stun.long_term_key(MATRIX_USERNAME, "example.org", "TheMatrIX"))
        self.assertTrue(stun.check_integrity(RFC5769_LONG_TERM, key))
        self.assertFalse(stun.check_fingerprint(RFC5769_LONG_TERM))
        again = stun.encode(_without(msg, Attr.MESSAGE_INTEGRITY), integrity_key=key)
        self.assertEqual(again, RFC5769_LONG_TERM)

    def test_integrity_ignores_later_fingerprint_and_detects_tampering(self) -> None:
        """A changed byte before MESSAGE-INTEGRITY breaks both checks."""
        tampered = bytearray(RFC5769_REQUEST)
        tampered[30] ^= 1
        self.assertFalse(stun.check_integrity(bytes(tampered), SHORT_TERM_PASSWORD))
        self.assertFalse(stun.check_fingerprint(bytes(tampered)))


TID = bytes(range(1, 13))

ROUND_TRIP_VALUES: dict[int, list[object]] = {
    Attr.MAPPED_ADDRESS: [("192.0.2.1", 32853), ("2001:db8::1", 1)],
    Attr.RESPONSE_ADDRESS: [("10.0.0.1", 3478)],
    Attr.CHANGE_REQUEST: [0, 2, 4, 6],
    Attr.SOURCE_ADDRESS: [("127.0.0.1", 3478)],
    Attr.CHANGED_ADDRESS: [("127.0.0.2", 3479)],
    Attr.USERNAME: ["dev-001", MATRIX_USERNAME, ""],
    Attr.PASSWORD: [b"devkey12"],
    Attr.MESSAGE_INTEGRITY: [bytes(range(20))],
    Attr.ERROR_CODE: [(420, "Unknown Attribute"), (300, ""), (699, "x")],
    Attr.UNKNOWN_ATTRIBUTES: [(0x0033,), (0x0033, 0x0034, 0x7FFF)],
    Attr.REFLECTED_FROM: [("198.51.100.7", 9)],
    Attr.CHANNEL_NUMBER: [0x4000, 0x7FFF],
    Attr.LIFETIME: [600, 0, 0xFFFFFFFF],
    Attr.XOR_PEER_ADDRESS: [("0.0.0.0", 0), ("203.0.113.5", 554), ("::1", 65535)],
    Attr.DATA: [b"", b"x", b"rtsp" * 100],
    Attr.REALM: ["globaleye"],
    Attr.NONCE: ["abcdef0123"],
    Attr.XOR_RELAYED_ADDRESS: [("192.0.2.15", 50000), ("2001:db8::15", 50001)],
    Attr.REQUESTED_ADDRESS_FAMILY: [1, 2],
    Attr.EVEN_PORT: [True, False],
    Attr.REQUESTED_TRANSPORT: [6, 17],
    Attr.DONT_FRAGMENT: [None],
    Attr.MESSAGE_INTEGRITY_SHA256: [bytes(32), bytes(16)],
    Attr.PASSWORD_ALGORITHM: [(2, b""), (1, b"abc")],
    Attr.USERHASH: [bytes(range(32))],
    Attr.XOR_MAPPED_ADDRESS: [("192.0.2.1", 32853), ("2001:db8::2", 4)],
    Attr.RESERVATION_TOKEN: [b"12345678"],
    Attr.PRIORITY: [0x6E0001FF],
    Attr.USE_CANDIDATE: [None],
    Attr.PADDING: [b"\x00" * 7],
    Attr.RESPONSE_PORT: [40000],
    Attr.CONNECTION_ID: [0xDEADBEEF],
    Attr.ADDITIONAL_ADDRESS_FAMILY: [2],
    Attr.ADDRESS_ERROR_CODE: [(2, 440, "Address Family not Supported")],
    Attr.PASSWORD_ALGORITHMS: [((1, b""), (2, b"")), ((2, b"xyz"),)],
    Attr.ALTERNATE_DOMAIN: ["turn.example.org"],
    Attr.ICMP: [(3, 1, 0x01020304)],
    Attr.SOFTWARE: ["txturn"],
    Attr.ALTERNATE_SERVER: [("192.0.2.99", 3478)],
    Attr.CACHE_TIMEOUT: [60],
    Attr.ICE_CONTROLLED: [0x932FF9B151263B36],
    Attr.ICE_CONTROLLING: [1],
    Attr.RESPONSE_ORIGIN: [("127.0.0.1", 3478)],
    Attr.OTHER_ADDRESS: [("127.0.0.2", 3479)],
    0x0033: [b"opaque"],
    0xC001: [b"\x01\x02\x03"],
}


class RoundTripTests(SynchronousTestCase):
    """encode -> decode is the identity for every attribute type."""

    def test_every_attribute_in_the_enum_has_a_row(self) -> None:
        """No Attr member is missing from the table or from this test."""
        for attr in Attr:
            self.assertIn(attr, stun.ATTRIBUTES)
            if attr is not Attr.FINGERPRINT:
                self.assertIn(attr, ROUND_TRIP_VALUES)

    def test_round_trips(self) -> None:
        """Both with the magic cookie and as a classic 16-byte-id message."""
        for tid in (TID, bytes(range(16))):
            for attr_type, values in ROUND_TRIP_VALUES.items():
                for value in values:
                    msg = Message(Method.ALLOCATE, Class.REQUEST, tid, {attr_type: value})
                    data = stun.encode(msg)
                    self.assertEqual(len(data) % 4, 0)
                    self.assertEqual(stun.decode(data), msg, (hex(attr_type), value))

    def test_classic_message(self) -> None:
        """A message without cookie keeps its 16-byte transaction id."""
        tid = b"\x00" * 4 + bytes(range(12))
        msg = stun.decode(stun.encode(Message(Method.BINDING, Class.REQUEST, tid)))
        self.assertFalse(msg.cookie)
        self.assertEqual(msg.transaction_id, tid)

    def test_repeated_attributes(self) -> None:
        """Several XOR-PEER-ADDRESS (CreatePermission) survive."""
        msg = Message(Method.CREATE_PERMISSION, Class.REQUEST, TID)
        msg.add(Attr.XOR_PEER_ADDRESS, ("192.0.2.1", 0))
        msg.add(Attr.XOR_PEER_ADDRESS, ("192.0.2.2", 0))
        msg.add(Attr.LIFETIME, 5)
        back = stun.decode(stun.encode(msg))
        self.assertEqual(back.attributes[Attr.XOR_PEER_ADDRESS], ("192.0.2.1", 0))
        self.assertEqual(back.values(Attr.XOR_PEER_ADDRESS), [("192.0.2.1", 0), ("192.0.2.2", 0)])
        self.assertEqual(back.values(Attr.USERNAME), [])

    def test_method_class_bits(self) -> None:
        """The interleaved method/class bits, checked against known type words."""
        known = {
            (Method.BINDING, Class.REQUEST): 0x0001,
            (Method.BINDING, Class.SUCCESS): 0x0101,
            (Method.BINDING, Class.ERROR): 0x0111,
            (Method.SEND, Class.INDICATION): 0x0016,
            (Method.DATA, Class.INDICATION): 0x0017,
            (Method.CONNECTION_ATTEMPT, Class.INDICATION): 0x001C,
            (Method.CONNECTION_BIND, Class.ERROR): 0x011B,
        }
        for (method, klass), word in known.items():
            data = stun.encode(Message(method, klass, TID))
            self.assertEqual(struct.unpack("!H", data[:2])[0], word)
            back = stun.decode(data)
            self.assertEqual((back.method, back.msg_class), (method, klass))
        for method in range(0x1000):
            back = stun.decode(stun.encode(Message(method, Class.ERROR, TID)))
            self.assertEqual(back.method, method)

    def test_comprehension_required_unknown(self) -> None:
        """Only unknown types below 0x8000 are reported."""
        msg = Message(Method.BINDING, Class.REQUEST, TID, {0x0033: b"", 0xC001: b"", 6: "u"})
        self.assertEqual(stun.comprehension_required_unknown(msg), (0x0033,))

    def test_fingerprint_in_dict_is_recomputed(self) -> None:
        """A stale FINGERPRINT value is never written as is."""
        msg = Message(Method.BINDING, Class.REQUEST, TID, {Attr.FINGERPRINT: 1})
        self.assertTrue(stun.check_fingerprint(stun.encode(msg)))


def _header(word: int, length: int, tid: bytes = TID) -> bytes:
    return struct.pack("!HHI", word, length, stun.MAGIC_COOKIE) + tid


class StrictnessTests(SynchronousTestCase):
    """Malformed input raises StunDecodeError with a reason."""

    def assertRejected(self, data: bytes, fragment: str) -> None:
        exc = self.assertRaises(StunDecodeError, stun.decode, data)
        self.assertIn(fragment, str(exc))

    def test_short(self) -> None:
        self.assertRejected(b"\x00\x01\x00", "shorter")

    def test_top_bits(self) -> None:
        self.assertRejected(_header(0x8001, 0), "top bits")

    def test_length_not_multiple_of_four(self) -> None:
        self.assertRejected(_header(1, 2) + b"\0\0", "multiple of 4")

    def test_length_mismatch(self) -> None:
        self.assertRejected(_header(1, 4), "length field")

    def test_attribute_overrun(self) -> None:
        self.assertRejected(_header(1, 8) + struct.pack("!HH", 0x8022, 8) + b"abcd", "overruns")

    def test_unknown_family(self) -> None:
        body = struct.pack("!HHBBH", 1, 8, 0, 3, 80) + b"\1\2\3\4"
        self.assertRejected(_header(0x0101, 12) + body, "family")

    def test_address_length(self) -> None:
        body = struct.pack("!HHBBH", 1, 12, 0, 1, 80) + bytes(8)
        self.assertRejected(_header(0x0101, 16) + body, "length")

    def test_error_class(self) -> None:
        for klass in (0, 1, 2, 7):
            body = struct.pack("!HHHBB", 9, 4, 0, klass, 0)
            self.assertRejected(_header(0x0111, 8) + body, "class")
        body = struct.pack("!HHHBB", 9, 4, 0, 4, 100)
        self.assertRejected(_header(0x0111, 8) + body, "number")

    def test_attribute_after_fingerprint(self) -> None:
        data = stun.encode(Message(1, 0, TID), fingerprint=True)
        data = data[:2] + struct.pack("!H", 12) + data[4:] + struct.pack("!HH", 0x8022, 0)
        self.assertRejected(data, "after FINGERPRINT")

    def test_attribute_after_integrity_ignored(self) -> None:
        """RFC 5389 §15.4: attributes after MESSAGE-INTEGRITY (but FINGERPRINT) ignored."""
        data = stun.encode(Message(1, 0, TID), integrity_key=b"k")
        data = data[:2] + struct.pack("!H", 28) + data[4:] + struct.pack("!HH", 0x8022, 0)
        self.assertNotIn(Attr.SOFTWARE, stun.decode(data).attributes)

    def test_bad_utf8(self) -> None:
        self.assertRejected(_header(1, 8) + struct.pack("!HH", 6, 2) + b"\xff\xfe\0\0", "UTF-8")


class ChannelDataTests(SynchronousTestCase):
    """ChannelData and TCP stream framing."""

    def test_round_trip(self) -> None:
        for pad in (True, False):
            data = stun.encode_channel_data(0x4001, b"hello", pad=pad)
            self.assertEqual(len(data), 12 if pad else 9)
            self.assertEqual(stun.decode_channel_data(data), (0x4001, b"hello"))
            self.assertTrue(stun.is_channel_data(data[0]))
        self.assertFalse(stun.is_channel_data(0x00))
        self.assertFalse(stun.is_channel_data(0x80))

    def test_bad_channel_data(self) -> None:
        self.assertRaises(StunDecodeError, stun.decode_channel_data, b"\x40\x00\x00")
        self.assertRaises(StunDecodeError, stun.decode_channel_data, b"\x40\x00\x00\x05ab")
        self.assertRaises(StunDecodeError, stun.decode_channel_data, b"\x80\x00\x00\x00")
        self.assertRaises(StunDecodeError, stun.decode_channel_data, b"\x40\x00\x00\x00" + bytes(4))
        self.assertRaises(ValueError, stun.encode_channel_data, 0x3FFF, b"", pad=True)

    def test_message_length(self) -> None:
        self.assertIsNone(stun.message_length(b""))
        self.assertIsNone(stun.message_length(b"\x00\x01\x00"))
        self.assertEqual(stun.message_length(RFC5769_REQUEST), len(RFC5769_REQUEST))
        self.assertEqual(stun.message_length(RFC5769_REQUEST[:4]), len(RFC5769_REQUEST))
        self.assertEqual(stun.message_length(b"\x40\x00\x00\x05"), 12)
        self.assertEqual(stun.message_length(b"\x40\x00\x00\x04"), 8)
        # "GET" starts with 0x47, a ChannelData channel; bytes >= 0x80 are neither.
        self.assertRaises(StunDecodeError, stun.message_length, b"\xff\xff\x00\x00")
        # A TLS ClientHello record header (16 03 01 02 00) fails the STUN length check.
        self.assertRaises(StunDecodeError, stun.message_length, b"\x16\x03\x01\x02\x00")
        self.assertRaises(StunDecodeError, stun.message_length, b"\x00\x01\x00\x03")


VALID_MESSAGES = [
    RFC5769_REQUEST,
    RFC5769_RESPONSE_V4,
    RFC5769_RESPONSE_V6,
    RFC5769_LONG_TERM,
    *(
        stun.encode(Message(Method.ALLOCATE, Class.SUCCESS, TID, {t: v[0]}), fingerprint=True)
        for t, v in ROUND_TRIP_VALUES.items()
    ),
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_MESSAGES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "extend", "length"]))
        if kind == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "extend":
            data += draw(st.binary(max_size=12))
        elif kind == "length" and len(data) >= 4:
            data[2:4] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
    return bytes(data)


class StreamFramerTests(SynchronousTestCase):
    """txturn.framing: STUN and padded ChannelData cut from a stream (RFC 5389 §7.2.2, RFC 5766 §11.5)."""

    def test_frames_across_reads(self) -> None:
        request = stun.encode(Message(Method.BINDING, Class.REQUEST, b"\x01" * 12, {Attr.SOFTWARE: "x"}))
        channel = stun.encode_channel_data(0x4000, b"abcde", pad=True)  # 12 bytes on a stream
        stream = request + channel + channel[:3]
        framer = StreamFramer()
        frames = []
        for index in range(len(stream)):  # one byte per read
            framer.feed(stream[index:index + 1])
            while (frame := framer.next_frame()) is not None:
                frames.append(frame)
        self.assertEqual(frames[0], request)
        self.assertEqual(frames[1][:9], channel[:9])
        self.assertEqual(len(frames[1]), 12)
        self.assertEqual(len(frames), 2)
        self.assertEqual(framer.pending, 3)
        self.assertEqual(framer.take_rest(), channel[:3])
        self.assertEqual(framer.pending, 0)

    def test_garbage_raises(self) -> None:
        for garbage in (b"\x16\x03\x01\x02\x00", b"\xff\xff\xff\xff"):  # a TLS record; neither
            framer = StreamFramer()
            framer.feed(garbage)
            self.assertRaises(StunDecodeError, framer.next_frame)

    def test_largest_frame(self) -> None:
        framer = StreamFramer()
        framer.feed(bytes([0x40, 0x01, 0xFF, 0xFF]) + bytes(0xFFFF + 1))
        frame = framer.next_frame()
        assert frame is not None
        self.assertLessEqual(len(frame), MAX_FRAME)
        self.assertEqual(framer.pending, 0)


class FuzzTests(SynchronousTestCase):
    """Whatever the bytes, only StunDecodeError escapes."""

    def _decode(self, data: bytes) -> None:
        try:
            msg = stun.decode(data)
        except StunDecodeError:
            return
        stun.encode(msg)  # anything decoded can be re-encoded
        stun.comprehension_required_unknown(msg)

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=200))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        self._decode(data)
        stun.check_fingerprint(data)
        stun.check_integrity(data, b"key")

    @settings(max_examples=500, deadline=None)
    @given(st.binary(min_size=20, max_size=120).map(lambda b: b"\x00\x01" + b[2:]))
    def test_arbitrary_stun_looking_bytes(self, data: bytes) -> None:
        self._decode(data)

    @settings(max_examples=1500, deadline=None)
    @given(_mutated())
    def test_mutated_valid_messages(self, data: bytes) -> None:
        self._decode(data)
        stun.check_fingerprint(data)
        stun.check_integrity(data, SHORT_TERM_PASSWORD)

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=40))
    def test_message_length(self, data: bytes) -> None:
        try:
            result = stun.message_length(data)
        except StunDecodeError:
            return
        if result is not None:
            self.assertGreaterEqual(result, 4)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=40))
    def test_channel_data(self, data: bytes) -> None:
        try:
            stun.decode_channel_data(data)
        except StunDecodeError:
            pass
