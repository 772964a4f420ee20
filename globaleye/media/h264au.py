"""RTP packets of an H.264 track → whole access units (pictures).  Pure.

RFC 6184 §5.1: the packets of one access unit share an RTP timestamp, and the marker bit
is set on its last packet.  So a picture is complete at its marker, or, when that packet
was lost, at the first packet with another timestamp.  The NAL units themselves come out
of :class:`globaleye.media.rtp.H264Depacketizer` (single NAL, STAP-A, FU-A).

Loss: a hole in the sequence numbers means a piece of some picture is gone, and every
picture after it until the next IDR refers to a damaged one.  A decoder fed those shows
smeared blocks for the rest of the GOP (or, in a browser's MSE, may stop), so the
assembler drops the damaged picture and everything up to the next IDR, the same rule the
proxy's fan-out applies to a viewer that falls behind.  The first picture given out is
always an IDR, with the SPS and PPS in front (from the stream, or from the SDP's
sprop-parameter-sets when the camera sends its IDRs bare).

Shared by the phone client (recording and snapshots, :mod:`globaleye.client`) and the
web face's live view (:mod:`globaleye.web.live`).
"""

from __future__ import annotations

import attrs

from globaleye.media import h264rtp, rtp


@attrs.frozen
class Picture:
    timestamp: int  # RTP, 90 kHz
    nals: tuple[bytes, ...]

    @property
    def keyframe(self) -> bool:
        return any(rtp.nal_type(n) == rtp.NAL_IDR for n in self.nals)

    def annexb(self) -> bytes:
        return b"".join(b"\x00\x00\x00\x01" + n for n in self.nals)


class PictureAssembler:
    """RTP packets of the video track → whole pictures (marker bit, or a new timestamp)."""

    def __init__(self, parameter_sets: list[bytes] | None = None) -> None:
        self.depacketizer = rtp.H264Depacketizer()
        self.nals: list[bytes] = []
        self.timestamp: int | None = None
        self.sps_pps = list(parameter_sets or [])
        self.started = False
        self.next_seq: int | None = None
        self.damaged = False  # the picture being assembled lost a packet
        self.losses = 0  # sequence holes seen
        self.dropped = 0  # pictures not given out because of a loss
        self.resyncing = False  # after a loss, until the next IDR

    def feed(self, data: bytes) -> list[Picture]:
        try:
            _pt, seq, ts, marker, offset = h264rtp.rtp_fields(data)
        except rtp.RtpError:
            return []
        out: list[Picture] = []
        if self.next_seq is not None and seq != self.next_seq:
            # The hole is in the picture in progress (its last packets, marker included) or in
            # the next one: either way that picture is damaged, and the rest of the GOP with it.
            self.losses += 1
            self.damaged = True
            self.depacketizer = rtp.H264Depacketizer()  # a fragment in progress has a hole
        if self.timestamp is not None and ts != self.timestamp and (self.nals or self.damaged):
            out += self._emit()
        self.next_seq = (seq + 1) & 0xFFFF
        self.timestamp = ts
        try:
            self.nals += self.depacketizer.feed(data[offset:])
        except rtp.RtpError:
            self.damaged = True
        if marker:
            out += self._emit()
        return out

    def _emit(self) -> list[Picture]:
        nals, self.nals = self.nals, []
        damaged, self.damaged = self.damaged, False
        assert self.timestamp is not None
        picture = Picture(self.timestamp, tuple(nals))
        types = {rtp.nal_type(n) for n in nals}
        if damaged:
            # This picture is incomplete, and the ones up to the next IDR refer to it.
            self.dropped += 1
            self.started = False
            self.resyncing = True
            return []
        if rtp.NAL_SPS in types:
            self.sps_pps = [n for n in nals if rtp.nal_type(n) in (rtp.NAL_SPS, rtp.NAL_PPS)]
        if not self.started:
            if not picture.keyframe:
                self.dropped += self.resyncing
                return []  # a decoder (or a file) must begin at an IDR
            self.started = True
            self.resyncing = False
            if rtp.NAL_SPS not in types and self.sps_pps:
                picture = Picture(picture.timestamp, (*self.sps_pps, *picture.nals))
        return [picture]
