"""From RTP to pictures and files with PyAV: access units, decoding, JPEG, MPEG-TS/MP4.

No re-encoding for recordings (§3.6): the camera's H.264 access units are muxed as
they are, with 90 kHz timestamps from RTP.  A snapshot (§3.5) decodes the first
picture a decoder can show (the stream is joined at an IDR) and encodes it as JPEG
with FFmpeg's MJPEG encoder, so no image library is needed.
"""

from __future__ import annotations

import fractions
from typing import Any

import attrs

from globaleye.media import rtp
from globaleye.proxy import h264

START = b"\x00\x00\x00\x01"


@attrs.frozen
class Picture:
    timestamp: int  # RTP, 90 kHz
    nals: tuple[bytes, ...]

    @property
    def keyframe(self) -> bool:
        return any(rtp.nal_type(n) == rtp.NAL_IDR for n in self.nals)

    def annexb(self) -> bytes:
        return b"".join(START + n for n in self.nals)


class PictureAssembler:
    """RTP packets of the video track → whole pictures (marker bit, or a new timestamp)."""

    def __init__(self, parameter_sets: list[bytes] | None = None) -> None:
        self.depacketizer = rtp.H264Depacketizer()
        self.nals: list[bytes] = []
        self.timestamp: int | None = None
        self.sps_pps = list(parameter_sets or [])
        self.started = False

    def feed(self, data: bytes) -> list[Picture]:
        try:
            _pt, _seq, ts, marker, offset = h264.rtp_fields(data)
            nals = self.depacketizer.feed(data[offset:])
        except rtp.RtpError:
            return []
        out: list[Picture] = []
        if self.timestamp is not None and ts != self.timestamp and self.nals:
            out += self._emit()
        self.timestamp = ts
        self.nals += nals
        if marker:
            out += self._emit()
        return out

    def _emit(self) -> list[Picture]:
        nals, self.nals = self.nals, []
        assert self.timestamp is not None
        picture = Picture(self.timestamp, tuple(nals))
        types = {rtp.nal_type(n) for n in nals}
        if rtp.NAL_SPS in types:
            self.sps_pps = [n for n in nals if rtp.nal_type(n) in (rtp.NAL_SPS, rtp.NAL_PPS)]
        if not self.started:
            if not picture.keyframe:
                return []  # a decoder (or a file) must begin at an IDR
            self.started = True
            if rtp.NAL_SPS not in types and self.sps_pps:
                picture = Picture(picture.timestamp, (*self.sps_pps, *picture.nals))
        return [picture]


class Decoder:
    def __init__(self) -> None:
        import av

        self.av = av
        self.context = av.CodecContext.create("h264", "r")

    def decode(self, picture: Picture) -> list[Any]:
        return list(self.context.decode(self.av.Packet(picture.annexb())))


def jpeg(frame: Any, quality: int = 3) -> bytes:
    """One decoded frame as a baseline JPEG (MJPEG encoder, full-range YUV 4:2:0)."""
    import av

    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 25)
    encoder.options = {"qmin": str(quality), "qmax": str(quality)}
    packets = list(encoder.encode(frame.reformat(format="yuvj420p")))
    packets += list(encoder.encode(None))
    return b"".join(bytes(p) for p in packets)


class Recorder:
    """Pictures into an MPEG-TS (``.ts``) or MP4 (``.mp4``) file, as sent by the camera."""

    def __init__(self, path: str, width: int, height: int, parameter_sets: list[bytes], fps: float = 25.0) -> None:
        import av

        self.av = av
        fmt = "mp4" if path.lower().endswith((".mp4", ".m4v", ".mov")) else "mpegts"
        self.container = av.open(path, "w", format=fmt)
        self.stream = self.container.add_stream("h264", rate=round(fps) or 25)
        self.stream.width, self.stream.height = width, height
        self.stream.time_base = fractions.Fraction(1, 90000)
        self.stream.codec_context.extradata = b"".join(START + n for n in parameter_sets)
        self.first: int | None = None
        self.last = -1
        self.frames = 0
        self.bytes = 0

    def write(self, picture: Picture) -> None:
        if self.first is None:
            self.first = picture.timestamp
        pts = (picture.timestamp - self.first) & 0xFFFFFFFF
        if pts <= self.last:  # never go backwards (a camera restart, a wrap): keep the file valid
            pts = self.last + 1
        self.last = pts
        data = picture.annexb()
        packet = self.av.Packet(data)
        packet.stream = self.stream
        packet.pts = packet.dts = pts
        packet.time_base = fractions.Fraction(1, 90000)
        packet.is_keyframe = picture.keyframe
        self.container.mux(packet)
        self.frames += 1
        self.bytes += len(data)

    @property
    def seconds(self) -> float:
        return max(0, self.last) / 90000

    def close(self) -> None:
        self.container.close()
