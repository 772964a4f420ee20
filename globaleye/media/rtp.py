"""RTP (RFC 3550), H.264 payload format (RFC 6184, §10.3 of the spec), AAC (RFC 3640), G.711 A-law.

Pure functions and small classes, no I/O: the camera's RTSP server and tests use them,
and so can the RTSP proxy of a later task.

The packetizer works on *payloads* (what follows the 12-byte RTP header) so a
pre-encoded loop can be packetized once and then sent by any number of sessions,
each writing only its own header (sequence number, timestamp, SSRC).  §10.3 requires
"Single NAL Unit Packet or FU-A"; we send exactly those two (RFC 6184
packetization-mode=1 without STAP-A, so receivers that implement only the two the
spec names can play us).  The depacketizer also accepts STAP-A, since it may be fed
by other devices (the proxy).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Iterator

import attrs

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")
#: A payload size that keeps IP+UDP+RTP under a 1500-byte Ethernet MTU with room for
#: tunnels (PPPoE, VPN, TURN's 36 bytes of ChannelData/Send framing).
DEFAULT_MTU = 1400

H264_CLOCK = 90000
PCMA_CLOCK = 8000
PT_PCMA = 8  # RFC 3551 static payload type
PT_H264 = 96  # dynamic; announced in the SDP
PT_AAC = 97  # dynamic: recordings' AAC (RFC 3640 mpeg4-generic)

NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_STAP_A = 24
NAL_FU_A = 28


class RtpError(ValueError):
    """A packet that is not RTP, or an H.264 payload that breaks RFC 6184."""


@attrs.frozen
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes


def rtp_header(payload_type: int, sequence: int, timestamp: int, ssrc: int, marker: bool) -> bytes:
    """The fixed 12-byte header (no CSRC, no extension, no padding)."""
    return RTP_HEADER.pack(RTP_VERSION << 6, (0x80 if marker else 0) | (payload_type & 0x7F),
                           sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)


def build_rtp(packet: RtpPacket) -> bytes:
    return rtp_header(packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc,
                      packet.marker) + packet.payload


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet, honouring CSRCs, the extension and padding (RFC 3550 §5.1)."""
    if len(data) < RTP_HEADER.size:
        raise RtpError(f"RTP packet too short ({len(data)} bytes)")
    b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}")
    offset = RTP_HEADER.size + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < offset + 4:
            raise RtpError("truncated RTP header extension")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if b0 & 0x20:
        if end <= offset:
            raise RtpError("padding flag on an empty packet")
        end -= data[-1]
    if end < offset:
        raise RtpError("RTP header longer than the packet")
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, bool(b1 & 0x80), bytes(data[offset:end]))


def looks_like_rtp(data: bytes) -> bool:
    """Cheap test for §15's punch packets (an RTP header, possibly with no payload)."""
    return len(data) >= RTP_HEADER.size and data[0] >> 6 == RTP_VERSION


def looks_like_rtcp(data: bytes) -> bool:
    """RTCP (RFC 3550 §6; RFC 5761 §4): packet types 192-223 share RTP's second byte."""
    return len(data) >= 8 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def rtcp_sender_report(ssrc: int, wallclock: float, rtp_timestamp: int, packets: int, octets: int,
                       cname: str) -> bytes:
    """A compound RTCP packet: SR (no report blocks) + SDES CNAME (RFC 3550 §6.4.1, §6.5).

    The SR ties the stream's RTP clock to the wall clock, which is what lets a player
    line audio up with video (and VLC/live555 stop warning about unsynchronised streams).
    """
    ntp = wallclock + NTP_EPOCH_OFFSET
    seconds = int(ntp)
    fraction = int((ntp - seconds) * (1 << 32)) & 0xFFFFFFFF
    sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc & 0xFFFFFFFF, seconds & 0xFFFFFFFF, fraction,
                     rtp_timestamp & 0xFFFFFFFF, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    name = cname.encode()[:255]
    item = bytes([1, len(name)]) + name + b"\x00"  # CNAME, then the end-of-list null
    item += b"\x00" * (-(4 + len(item)) % 4)
    sdes = struct.pack("!BBHI", 0x81, 202, (4 + len(item)) // 4, ssrc & 0xFFFFFFFF) + item
    return sr + sdes


def rtcp_bye(ssrc: int, wallclock: float, rtp_timestamp: int, packets: int, octets: int, cname: str,
              reason: str = "") -> bytes:
    """SR + SDES + BYE (RFC 3550 §6.6): the source leaves, here because its recording ended.

    A compound packet must begin with a report, so the last SR goes first.  Players
    take the BYE as the end of the stream (FFmpeg returns end-of-file once every
    stream of the session has said BYE).
    """
    compound = rtcp_sender_report(ssrc, wallclock, rtp_timestamp, packets, octets, cname)
    text = reason.encode()[:255]
    body = struct.pack("!I", ssrc & 0xFFFFFFFF)
    if text:
        body += bytes([len(text)]) + text
        body += b"\x00" * (-len(body) % 4)
    return compound + struct.pack("!BBH", 0x81, 203, len(body) // 4) + body


# ---------------------------------------------------------------------- AAC (RFC 3640)


def aac_hbr_payload(access_unit: bytes) -> bytes:
    """One AAC access unit in RFC 3640 AAC-hbr mode (§3.3.6): AU-headers-length, one AU-header.

    The AU-header is 16 bits: a 13-bit size and a 3-bit index (0).  One AU per packet
    keeps a lost packet from taking several frames with it and needs no fragmentation
    (an AAC frame is at most 6144 bits per channel).
    """
    if len(access_unit) >= 1 << 13:
        raise RtpError("AAC access unit too large for AAC-hbr")
    return struct.pack("!HH", 16, len(access_unit) << 3) + access_unit


def parse_aac_hbr(payload: bytes) -> list[bytes]:
    """The access units of an AAC-hbr payload (any number of 16-bit AU-headers)."""
    if len(payload) < 2:
        raise RtpError("truncated AAC-hbr payload")
    (bits,) = struct.unpack_from("!H", payload)
    if bits % 16:
        raise RtpError("AU-headers of another size than 16 bits")
    count = bits // 16
    pos = 2 + 2 * count
    units = []
    for i in range(count):
        (header,) = struct.unpack_from("!H", payload, 2 + 2 * i)
        size = header >> 3
        if pos + size > len(payload):
            raise RtpError("AAC-hbr access unit past the end of the packet")
        units.append(bytes(payload[pos:pos + size]))
        pos += size
    return units


def aac_hbr_fmtp(config: bytes) -> str:
    """The SDP fmtp parameters of an AAC-hbr stream with this AudioSpecificConfig."""
    return ("streamtype=5;profile-level-id=15;mode=AAC-hbr;sizelength=13;indexlength=3;"
            f"indexdeltalength=3;config={config.hex()}")


# ---------------------------------------------------------------------- H.264 / Annex B


def split_annexb(stream: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (start codes 00 00 01 or 00 00 00 01)."""
    nals: list[bytes] = []
    i = stream.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        nxt = stream.find(b"\x00\x00\x01", start)
        end = len(stream) if nxt < 0 else nxt
        nal = stream[start:end]
        if nxt >= 0:
            nal = nal.rstrip(b"\x00") if nal.endswith(b"\x00") else nal  # trailing_zero / 4-byte code
        if nal:
            nals.append(bytes(nal))
        i = nxt
    return nals


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def packetize_h264(nals: Iterable[bytes], mtu: int = DEFAULT_MTU) -> list[tuple[bytes, bool]]:
    """RTP payloads for one access unit: (payload, marker) pairs, in sending order.

    A NAL that fits in *mtu* goes as a Single NAL Unit packet; a larger one is split
    into FU-A fragments (RFC 6184 §5.8) whose FU indicator keeps the NAL's NRI and
    whose header carries S on the first and E on the last fragment.  The marker bit is
    set on the very last packet of the access unit (RFC 6184 §5.1), which is what tells
    a receiver the picture is complete.
    """
    if mtu < 3:
        raise ValueError("MTU too small for FU-A")
    out: list[tuple[bytes, bool]] = []
    for nal in nals:
        if not nal:
            continue
        if len(nal) <= mtu:
            out.append((bytes(nal), False))
            continue
        header = nal[0]
        indicator = bytes([(header & 0xE0) | NAL_FU_A])
        ntype = header & 0x1F
        body = memoryview(nal)[1:]
        chunk = mtu - 2
        first = True
        while body:
            piece, body = body[:chunk], body[chunk:]
            fu_header = ntype | (0x80 if first else 0) | (0x40 if not body else 0)
            out.append((indicator + bytes([fu_header]) + bytes(piece), False))
            first = False
    if out:
        out[-1] = (out[-1][0], True)
    return out


@attrs.define
class H264Depacketizer:
    """Reassembles NAL units from RTP payloads (Single NAL, STAP-A, FU-A).

    Fragments lost in the middle of an FU-A discard that NAL (RFC 6184 §5.8: a
    receiver must not pass on a NAL with a hole); sequence gaps are the caller's to
    detect, we only see payloads.
    """

    _fragment: bytearray | None = None

    def feed(self, payload: bytes) -> list[bytes]:
        if not payload:
            raise RtpError("empty H.264 payload")
        ntype = payload[0] & 0x1F
        if 1 <= ntype <= 23:
            self._fragment = None
            return [bytes(payload)]
        if ntype == NAL_STAP_A:
            self._fragment = None
            nals: list[bytes] = []
            i = 1
            while i < len(payload):
                if i + 2 > len(payload):
                    raise RtpError("truncated STAP-A size")
                (size,) = struct.unpack_from("!H", payload, i)
                i += 2
                if size == 0 or i + size > len(payload):
                    raise RtpError("bad STAP-A NAL size")
                nals.append(bytes(payload[i:i + size]))
                i += size
            return nals
        if ntype == NAL_FU_A:
            if len(payload) < 2:
                raise RtpError("truncated FU-A")
            start, end = payload[1] & 0x80, payload[1] & 0x40
            if start and end:
                raise RtpError("FU-A with both S and E bits")
            if start:
                self._fragment = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
            elif self._fragment is None:
                return []  # the start was lost: drop the rest of this NAL
            self._fragment += payload[2:]
            if end:
                nal, self._fragment = bytes(self._fragment), None
                return [nal]
            return []
        raise RtpError(f"unsupported H.264 RTP payload type {ntype}")


def sps_profile_level_id(sps: bytes) -> str:
    """RFC 6184 profile-level-id: profile_idc, constraint flags and level_idc, in hex."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise RtpError("not an SPS")
    return sps[1:4].hex()


class ParameterSets:
    """The SDP's H.264 facts (RFC 6184 §8.1) for a class that holds a stream's SPS and PPS:
    the live loops and the recordings announce themselves the same way."""

    __slots__ = ()
    sps: bytes
    pps: bytes

    @property
    def profile_level_id(self) -> str:
        return sps_profile_level_id(self.sps)

    @property
    def sprop_parameter_sets(self) -> str:
        return ",".join(base64.b64encode(n).decode() for n in (self.sps, self.pps))


# ---------------------------------------------------------------------- G.711 A-law

_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _alaw_encode_sample(pcm: int) -> int:
    """ITU-T G.711 A-law of one 16-bit sample (the reference algorithm, on 13 bits)."""
    pcm >>= 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = 0
    while seg < 8 and pcm > _SEG_AEND[seg]:
        seg += 1
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1) & 0x0F if seg < 2 else (pcm >> seg) & 0x0F
    return aval ^ mask


def _alaw_decode_sample(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


_ALAW_ENC = bytes(_alaw_encode_sample(s) for s in range(-32768, 32768))
_ALAW_DEC = tuple(_alaw_decode_sample(a) for a in range(256))


def alaw_encode(samples: Iterable[int]) -> bytes:
    """Signed 16-bit samples to A-law bytes (a 64 KiB lookup table: fast in pure Python)."""
    table = _ALAW_ENC
    return bytes(table[max(-32768, min(32767, int(s))) + 32768] for s in samples)


def alaw_decode(data: bytes) -> list[int]:
    return [_ALAW_DEC[b] for b in data]


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]
