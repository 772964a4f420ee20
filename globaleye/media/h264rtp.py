"""What a fan-out needs to know about an RTP packet without decoding it.  Pure.

A late joiner must start at an IDR, with SPS and PPS before it (RFC 6184 §8.4: a
decoder that joins mid-stream cannot decode anything else).  So for each packet
that opens an access unit the hub asks: does this access unit begin a picture a
decoder can start from?  That is the case when its first NAL is an SPS, a PPS or
an IDR slice, whether sent as a single NAL, inside a STAP-A or as the first FU-A
fragment.

This works on RTP packets and the first bytes of their H.264 payload (RFC 6184), for the
proxy's fan-out and the client's recorder; the bitstream syntax inside the NAL units
(SPS/PPS parsing, skip slices) is :mod:`globaleye.media.h264`.  The two share nothing
but the NAL type numbers of :mod:`globaleye.media.rtp`.
"""

from __future__ import annotations

import struct

from globaleye.media import rtp

START_TYPES = frozenset({rtp.NAL_SPS, rtp.NAL_PPS, rtp.NAL_IDR})


def first_nal_type(payload: bytes) -> int | None:
    """The type of the first NAL an H.264 RTP payload carries (None: not a NAL start)."""
    if not payload:
        return None
    ntype = payload[0] & 0x1F
    if 1 <= ntype <= 23:
        return ntype
    if ntype == rtp.NAL_STAP_A and len(payload) >= 4:
        return payload[3] & 0x1F
    if ntype == rtp.NAL_FU_A and len(payload) >= 2:
        return payload[1] & 0x1F if payload[1] & 0x80 else None
    return None


def is_key_start(payload: bytes) -> bool:
    """Does an access unit whose first packet carries *payload* let a decoder start here?"""
    return first_nal_type(payload) in START_TYPES


def rtp_fields(data: bytes) -> tuple[int, int, int, bool, int]:
    """(payload type, sequence, timestamp, marker, payload offset) of a raw RTP packet.

    The offset honours CSRCs and the header extension; raises RtpError on junk.
    """
    if len(data) < 12 or data[0] >> 6 != 2:
        raise rtp.RtpError("not RTP")
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if len(data) < offset + 4:
            raise rtp.RtpError("truncated RTP extension")
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    if offset > len(data):
        raise rtp.RtpError("RTP header longer than the packet")
    seq, ts = struct.unpack_from("!HI", data, 2)
    return data[1] & 0x7F, seq, ts, bool(data[1] & 0x80), offset


def rewrite_rtp(data: bytes, sequence: int, timestamp_offset: int, ssrc: int) -> bytes:
    """The same packet with a viewer's own sequence number, timestamp base and SSRC."""
    ts = (struct.unpack_from("!I", data, 4)[0] + timestamp_offset) & 0xFFFFFFFF
    return data[:2] + struct.pack("!HII", sequence & 0xFFFF, ts, ssrc & 0xFFFFFFFF) + data[12:]


def rewrite_rtcp(data: bytes, timestamp_offset: int, ssrc: int, bye: bool = True) -> bytes | None:
    """A camera's compound SR (+SDES, +BYE) for one viewer: its SSRC and timestamp base.

    Players use the SR to line audio up with video (RFC 3550 §6.4.1).  Anything that is
    not a sender report is not forwarded (receiver reports are about the camera's own
    session, not the viewer's).  A BYE (the end of a recording) is passed with the viewer's
    SSRC, or, with *bye* False, cut off: a live hub's viewers outlive the camera's session
    (the hub gets a new one when the camera drops), so the camera's goodbye is not theirs.
    """
    if len(data) < 28 or data[0] >> 6 != 2 or data[1] != 200:
        return None
    out = bytearray(data)
    pos = 0
    while pos + 8 <= len(out):
        ptype = out[pos + 1]
        length = (struct.unpack_from("!H", out, pos + 2)[0] + 1) * 4
        if pos + length > len(out):
            return None
        if ptype == 200 and length >= 28:
            struct.pack_into("!I", out, pos + 4, ssrc & 0xFFFFFFFF)
            ts = (struct.unpack_from("!I", out, pos + 16)[0] + timestamp_offset) & 0xFFFFFFFF
            struct.pack_into("!I", out, pos + 16, ts)
        elif ptype == 202 and length >= 8 and out[pos] & 0x1F >= 1:
            struct.pack_into("!I", out, pos + 4, ssrc & 0xFFFFFFFF)
        elif ptype == 203:
            if not bye:
                return bytes(out[:pos])
            if length >= 8 and out[pos] & 0x1F >= 1:
                struct.pack_into("!I", out, pos + 4, ssrc & 0xFFFFFFFF)
        pos += length
    return bytes(out)


def single_nal_packet(nal: bytes, payload_type: int, sequence: int, timestamp: int, ssrc: int) -> bytes:
    """An SPS or PPS sent ahead of an IDR a late joiner starts with."""
    return rtp.rtp_header(payload_type, sequence, timestamp, ssrc, False) + nal
