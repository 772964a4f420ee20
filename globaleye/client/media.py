"""From RTP to pictures and files with PyAV: access units, decoding, JPEG, MPEG-TS/MP4.

Recordings (§3.6) keep the camera's H.264 as it is: its access units are muxed
unchanged, with 90 kHz timestamps from RTP.  The camera's G.711 is another matter:
neither MPEG-TS nor MP4 carries G.711 in a way players accept, so the sound is
transcoded to AAC (8 kHz mono costs next to nothing to encode) and placed on the
video's timeline with the RTCP sender reports of both tracks (RFC 3550 §6.4.1), the
same mapping a player uses for lip sync.  A snapshot (§3.5) decodes the first
picture a decoder can show (the stream is joined at an IDR) and encodes it as JPEG
with FFmpeg's MJPEG encoder, so no image library is needed.
"""

from __future__ import annotations

import fractions
from typing import Any

from twisted.logger import Logger

from globaleye.media.aacenc import (  # noqa: F401 -- the client's names for the shared core
    AAC_BIT_RATE,
    MAX_GAP,
    RESYNC,
    SR_WAIT,
    AudioSpec,
    AudioTimeline,
    LipSync,
    StreamClock,
    g711_decode,
    sender_report,
)
from globaleye.media.h264au import Picture

START = b"\x00\x00\x00\x01"

log = Logger()


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


class AudioTrack(AudioTimeline):
    """The camera's G.711 as an AAC stream of a muxer (:class:`globaleye.media.aacenc.AudioTimeline`)."""

    def __init__(self, container: Any, spec: AudioSpec, label: str = "") -> None:
        self.stream = container.add_stream("aac", rate=spec.clock_rate)
        self.stream.layout = "mono"
        self.stream.codec_context.bit_rate = AAC_BIT_RATE
        self.stream.codec_context.time_base = fractions.Fraction(1, spec.clock_rate)
        super().__init__(self.stream.encode, self.stream.codec_context, spec, label)


class Recorder:
    """Pictures (and the camera's sound, as AAC) into an MPEG-TS (``.ts``) or MP4 (``.mp4``) file.

    The video is muxed as the camera sent it.  With an ``audio`` spec the file gets an
    AAC track too (see :class:`AudioTrack`); *clock* holds the session's sender reports,
    which place the sound on the video's timeline.  Without them (RTCP lost, a camera
    that sends none) the sound waits ``SR_WAIT`` seconds and is then placed by arrival
    time, which is off by the network's jitter but never by more.
    """

    def __init__(self, path: str, width: int, height: int, parameter_sets: list[bytes], fps: float = 25.0,
                 audio: AudioSpec | None = None, clock: StreamClock | None = None,
                 tracks: tuple[int, int] = (0, 1), label: str = "") -> None:
        import av

        self.av = av
        self.path = path
        fmt = "mp4" if path.lower().endswith((".mp4", ".m4v", ".mov")) else "mpegts"
        self.container = av.open(path, "w", format=fmt)
        self.stream = self.container.add_stream("h264", rate=round(fps) or 25)
        self.stream.width, self.stream.height = width, height
        self.stream.time_base = fractions.Fraction(1, 90000)
        self.stream.codec_context.extradata = b"".join(START + n for n in parameter_sets)
        self.fps = fps or 25.0
        self.clock = clock or StreamClock()
        self.video_track, self.audio_track = tracks
        self.label = label or path
        self.audio = AudioTrack(self.container, audio, self.label) if audio is not None and audio.supported else None
        self.sync = (LipSync(self.audio, self.clock, self.video_track, self.audio_track, self.label)
                     if self.audio is not None else None)
        self.first: int | None = None
        self.last = -1
        self.frames = 0
        self.bytes = 0

    def write(self, picture: Picture, arrival: float | None = None) -> None:
        if self.first is None:
            self.first = picture.timestamp
            if self.sync is not None:
                self.sync.picture(picture.timestamp, arrival)
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

    def write_audio(self, data: bytes, arrival: float) -> None:
        """One RTP packet of the audio track, *arrival* on the same clock as :meth:`write`'s."""
        if self.sync is not None:
            self._mux(self.sync.packet(data, arrival))

    def sender_report(self, track: int, clock_rate: int, data: bytes) -> None:
        """An RTCP packet of either track: a new SR pair may move the audio (drift, restart)."""
        if self.sync is not None:
            self._mux(self.sync.report(track, clock_rate, data))
        else:
            self.clock.report(track, clock_rate, data)

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            self.container.mux(packet)

    @property
    def seconds(self) -> float:
        return max(0, self.last) / 90000

    @property
    def audio_seconds(self) -> float:
        return self.audio.seconds if self.audio is not None else 0.0

    def close(self) -> None:
        try:
            if self.audio is not None:
                # The sound ends with the last picture's display time, like the video.
                end = round((max(0, self.last) / 90000 + 1 / self.fps) * self.audio.rate)
                self._mux(self.audio.close(end))
        finally:
            self.container.close()
