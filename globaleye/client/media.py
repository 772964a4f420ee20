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
import struct
from typing import Any

import attrs
import numpy as np
from twisted.logger import Logger

from globaleye.media import h264rtp, rtp
from globaleye.media.h264au import Picture

START = b"\x00\x00\x00\x01"
NTP_FRACTION = float(1 << 32)
#: A gap in the sound up to this long (lost packets, an outage the pictures share) is
#: filled with silence.  A longer jump is no gap but nonsense (a new random timestamp
#: base): the sound then simply continues, and sender reports cannot move it that far.
MAX_GAP = 10.0
#: Sender reports that disagree with the running placement by more than this (drift, a
#: camera restart) place the sound afresh.  One video frame at 25 fps: nobody notices less.
RESYNC = 0.040
#: Without sender reports (RTCP lost over UDP, a camera that sends none), audio waits this
#: long for them before it is placed by arrival time instead.
SR_WAIT = 1.0
AAC_BIT_RATE = 24000  # plenty for 8 kHz mono speech and shop noise

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


def sender_report(data: bytes) -> tuple[float, int] | None:
    """(NTP wall clock in seconds, RTP timestamp) of the SR in a compound RTCP packet, else None."""
    pos = 0
    while pos + 8 <= len(data):
        if data[pos] >> 6 != 2:
            return None
        length = (struct.unpack_from("!H", data, pos + 2)[0] + 1) * 4
        if data[pos + 1] == 200 and length >= 28 and pos + 20 <= len(data):
            seconds, fraction, timestamp = struct.unpack_from("!III", data, pos + 8)
            return seconds + fraction / NTP_FRACTION, timestamp
        pos += length
    return None


def _signed32(delta: int) -> int:
    """The shortest way from one 32-bit RTP timestamp to another (RFC 3550 wrap-around)."""
    return ((delta + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


class StreamClock:
    """The sender reports of a session's tracks: where an RTP timestamp sits in wall-clock time.

    The camera stamps every SR of every track with the same wall clock, so two tracks'
    timestamps become comparable: that is all lip sync needs.  Only the latest SR of each
    track is kept (a camera restart or a new SSRC brings a new one).
    """

    def __init__(self) -> None:
        self.reports: dict[int, tuple[float, int, int]] = {}  # track -> (NTP seconds, RTP timestamp, clock rate)

    def report(self, track: int, clock_rate: int, data: bytes) -> bool:
        sr = sender_report(data)
        if sr is None or clock_rate <= 0:
            return False
        self.reports[track] = (sr[0], sr[1], clock_rate)
        return True

    def wallclock(self, track: int, timestamp: int) -> float | None:
        report = self.reports.get(track)
        if report is None:
            return None
        ntp, reference, rate = report
        return ntp + _signed32(timestamp - reference) / rate


@attrs.frozen
class AudioSpec:
    """The camera's audio track as the SDP announces it; only G.711 is transcoded."""

    encoding: str  # "PCMA" or "PCMU"
    clock_rate: int = rtp.PCMA_CLOCK
    channels: int = 1

    @property
    def supported(self) -> bool:
        return self.encoding.upper() in ("PCMA", "PCMU") and self.clock_rate > 0 and self.channels == 1


def _ulaw_decode_sample(u: int) -> int:
    u = ~u & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return -magnitude if u & 0x80 else magnitude


_G711 = {
    "PCMA": np.array(rtp.alaw_decode(bytes(range(256))), dtype=np.float32) / 32768.0,
    "PCMU": np.array([_ulaw_decode_sample(u) for u in range(256)], dtype=np.float32) / 32768.0,
}


def g711_decode(payload: bytes, encoding: str) -> np.ndarray:
    """G.711 A-law or µ-law bytes → float samples in [-1, 1) (a 256-entry table lookup)."""
    return _G711[encoding.upper()][np.frombuffer(payload, dtype=np.uint8)]


class AudioTrack:
    """G.711 RTP payloads → AAC packets on the video's timeline.

    Positions are counted in samples from the first video picture (sample 0 is that
    picture's instant).  The first packet is placed with the sender reports of both
    tracks; from then on the RTP timestamps keep the samples contiguous, gaps (lost
    packets, a late start) are filled with silence and overlaps are cut, so the
    encoder sees one continuous signal.  Each new pair of sender reports is checked
    against that running placement, and a disagreement beyond ``RESYNC`` (drift, a
    camera restart) places the audio afresh.  Sound from before the first picture is
    dropped, as is sound after the last one when the file is closed.
    """

    def __init__(self, container: Any, spec: AudioSpec, label: str = "") -> None:
        import av

        self.av = av
        self.spec = spec
        self.label = label
        self.rate = spec.clock_rate
        self.stream = container.add_stream("aac", rate=self.rate)
        self.stream.layout = "mono"
        self.stream.codec_context.bit_rate = AAC_BIT_RATE
        # Samples count in 1/rate; the muxer may change the *stream's* time base when it writes
        # the header (MPEG-TS: 1/90000), so frames are stamped with this one, never the stream's.
        self.time_base = fractions.Fraction(1, self.rate)
        self.stream.codec_context.time_base = self.time_base
        self.frame_size = 1024  # AAC-LC; the encoder's own value once it is open
        self.written = 0  # next sample position to hand the encoder
        self.pending: list[np.ndarray] = []
        self.pending_samples = 0
        self.anchor: tuple[int, int] | None = None  # (RTP timestamp, sample position)
        self.last_timestamp: int | None = None
        self.samples = 0  # samples of sound (not silence) taken
        self.silence = 0  # samples of silence inserted
        self.resyncs = 0
        self.placed_by = ""  # "sender reports" or "arrival time"

    def position(self, timestamp: int) -> int:
        assert self.anchor is not None
        ts0, pos0 = self.anchor
        return pos0 + _signed32(timestamp - ts0)

    def place(self, timestamp: int, seconds: float, how: str) -> None:
        """Tie *timestamp* to *seconds* after the first picture."""
        new = round(seconds * self.rate)
        if self.anchor is not None:
            moved = new - self.position(timestamp)
            if abs(moved) <= RESYNC * self.rate or abs(moved) > MAX_GAP * self.rate:
                return
            self.resyncs += 1
            log.info("{label}: audio re-placed by {ms:+.0f} ms ({how})", label=self.label,
                     ms=1000 * moved / self.rate, how=how)
        self.anchor = (timestamp, new)
        self.last_timestamp = timestamp
        self.placed_by = how

    def write(self, timestamp: int, payload: bytes) -> list[Any]:
        """One RTP packet's payload (already placed); returns the AAC packets now ready."""
        if self.anchor is None or not payload:
            return []
        start = self.position(timestamp)
        self.last_timestamp = timestamp
        samples = g711_decode(payload, self.spec.encoding)
        taken = self.written + self.pending_samples  # the next sample position to fill
        end = start + len(samples)
        if end <= taken:
            return []  # late, repeated, or before the first picture: that stretch is done
        if start < taken:
            samples = samples[taken - start:]
            start = taken
        gap = start - taken
        if gap > MAX_GAP * self.rate:
            # A jump the sender reports did not explain: keep the signal continuous.
            log.info("{label}: audio jumps {s:.1f} s ahead; continuing without a gap", label=self.label,
                     s=gap / self.rate)
            self.anchor = (timestamp, taken)
            gap = 0
        if gap:
            self._take(np.zeros(gap, dtype=np.float32))
            self.silence += gap
        self._take(samples)
        self.samples += len(samples)
        return self._encode(final=False)

    def _take(self, samples: np.ndarray) -> None:
        self.pending.append(samples)
        self.pending_samples += len(samples)

    def _encode(self, final: bool, end: int | None = None) -> list[Any]:
        if not self.pending_samples:
            return self._flush() if final else []
        data = np.concatenate(self.pending)
        if end is not None:
            data = data[:max(0, end - self.written)]
        count = len(data) if final else len(data) - len(data) % self.frame_size
        packets: list[Any] = []
        for offset in range(0, count, self.frame_size):
            chunk = data[offset:offset + self.frame_size]
            frame = self.av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self.written
            frame.time_base = self.time_base
            self.written += len(chunk)
            packets += self.stream.encode(frame)
            self.frame_size = self.stream.codec_context.frame_size or self.frame_size
        rest = data[count:]
        self.pending = [rest] if len(rest) else []
        self.pending_samples = len(rest)
        return packets + (self._flush() if final else [])

    def _flush(self) -> list[Any]:
        return list(self.stream.encode(None)) if self.stream.codec_context.is_open else []

    def close(self, end: int) -> list[Any]:
        """The last packets, with the sound cut at sample *end* (where the video ends)."""
        return self._encode(final=True, end=end)

    @property
    def seconds(self) -> float:
        return self.written / self.rate if self.rate else 0.0


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
        self.first: int | None = None
        self.first_arrival: float | None = None
        self.last = -1
        self.frames = 0
        self.bytes = 0
        self.waiting: list[tuple[int, bytes, float]] = []  # audio before it could be placed

    def write(self, picture: Picture, arrival: float | None = None) -> None:
        if self.first is None:
            self.first = picture.timestamp
            self.first_arrival = arrival
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
        if self.audio is None or self.first is None:
            return  # no AAC track, or before the first picture: nothing to line it up with
        try:
            _pt, _seq, timestamp, _marker, offset = h264rtp.rtp_fields(data)
        except rtp.RtpError:
            return
        payload = data[offset:]
        if data[0] & 0x20 and payload:  # RTP padding (RFC 3550 §5.1)
            payload = payload[:max(0, len(payload) - payload[-1])]
        audio = self.audio
        if audio.anchor is None:
            self.waiting.append((timestamp, payload, arrival))
            if not self._place(timestamp):
                if arrival - self.waiting[0][2] < SR_WAIT:
                    return
                # No sender reports in time: the first waiting packet arrived when it was due.
                ts0, _, arrived = self.waiting[0]
                first = self.first_arrival if self.first_arrival is not None else arrived
                audio.place(ts0, arrived - first, "arrival time")
                log.info("{label}: no RTCP sender reports after {s:g} s; audio placed by arrival time",
                         label=self.label, s=SR_WAIT)
            waiting, self.waiting = self.waiting, []
            for ts, p, _ in waiting:
                self._mux(audio.write(ts, p))
            return
        self._mux(audio.write(timestamp, payload))

    def sender_report(self, track: int, clock_rate: int, data: bytes) -> None:
        """An RTCP packet of either track: a new SR pair may move the audio (drift, restart)."""
        if not self.clock.report(track, clock_rate, data) or self.audio is None:
            return
        if self.audio.anchor is not None and self.audio.last_timestamp is not None:
            self._place(self.audio.last_timestamp)

    def _place(self, timestamp: int) -> bool:
        assert self.audio is not None and self.first is not None
        audio_at = self.clock.wallclock(self.audio_track, timestamp)
        video_at = self.clock.wallclock(self.video_track, self.first)
        if audio_at is None or video_at is None:
            return False
        self.audio.place(timestamp, audio_at - video_at, "sender reports")
        return True

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
