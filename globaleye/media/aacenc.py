"""The camera's G.711 sound as AAC-LC, on the video's timeline (needs PyAV and numpy).

Two consumers transcode the camera's audio: the phone client's recordings
(:mod:`globaleye.client.media`, MPEG-TS and MP4 carry no G.711 players accept) and the
browser's live view (:mod:`globaleye.web.live`, Media Source Extensions play AAC in MP4 in
every browser, ``mp4a.40.2``, and G.711 in none).  Both need the same core, kept here once:

* G.711 A-law or µ-law (RFC 3551, PCMA/PCMU, 8 kHz) to PCM: a 256-entry table lookup;
* a continuous timeline (:class:`AudioTimeline`): sample positions counted from the first
  video picture, gaps (lost packets, a late start) filled with silence and overlaps cut, so
  the encoder, and a player after it, see one signal without holes (MSE stalls on a hole);
* 1024-sample framing and AAC-LC encoding (libavcodec's ``aac``) at the camera's rate or a
  multiple of it (8 or 16 kHz mono: well under 1 % of a core, docs/performance.md); the AudioSpecificConfig
  (14496-3 §1.6.2.1) the encoder reports, for an MP4 ``esds`` or an SDP;
* lip sync (:class:`LipSync`): the first packet is placed with the RTCP sender reports of
  both tracks (RFC 3550 §6.4.1, the mapping a player uses), or by arrival time when none
  come within ``SR_WAIT``; later reports that disagree by more than ``RESYNC`` re-place it.

PyAV and numpy are imported inside the classes, never at module level, so importing this
module costs nothing on a platform host without them (``pip install .``: no PyAV, see
tests/integration/test_platform_without_media.py); the callers ask :func:`available` first.
This is no pure codec (it runs an encoder), so it is outside the pure-codecs contract.
"""

from __future__ import annotations

import fractions
import importlib.util
import struct
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger

from globaleye.media import h264rtp, rtp

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
#: AAC-LC's frame: 1024 samples (the encoder's own value once it is open).
AAC_FRAME = 1024
#: RFC 6381 codec string of AAC-LC (object type 0x40, audio object type 2).
AAC_LC_CODEC = "mp4a.40.2"

log = Logger()


def available() -> str | None:
    """None when PyAV and numpy can be imported, else why not (for a log line)."""
    missing = [m for m in ("av", "numpy") if not _importable(m)]
    return f"{' and '.join(missing)} not installed" if missing else None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: blocked (sys.modules[name] is None)
        return False


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


_G711: dict[str, Any] = {}


def g711_decode(payload: bytes, encoding: str) -> Any:
    """G.711 A-law or µ-law bytes → float32 samples in [-1, 1) (a 256-entry table lookup)."""
    import numpy as np

    if not _G711:
        _G711["PCMA"] = np.array(rtp.alaw_decode(bytes(range(256))), dtype=np.float32) / 32768.0
        _G711["PCMU"] = np.array([_ulaw_decode_sample(u) for u in range(256)], dtype=np.float32) / 32768.0
    return _G711[encoding.upper()][np.frombuffer(payload, dtype=np.uint8)]


def aac_encoder(rate: int, bit_rate: int = AAC_BIT_RATE) -> Any:
    """A standalone, opened AAC-LC encoder (``av.CodecContext``), mono at *rate*.

    Opened at once so its ``extradata`` (the AudioSpecificConfig) is known before the first
    packet: an MP4 initialization segment needs it up front.
    """
    import av

    context = av.CodecContext.create("aac", "w")
    context.sample_rate = rate
    context.layout = "mono"
    context.format = "fltp"
    context.bit_rate = bit_rate
    context.time_base = fractions.Fraction(1, rate)
    context.open()
    return context


def audio_specific_config(rate: int) -> bytes:
    """The 2-byte AudioSpecificConfig of AAC-LC mono at *rate* (14496-3 §1.6.2.1), what
    libavcodec's encoder reports as its extradata; for callers without an encoder yet."""
    index = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350).index(rate)
    return struct.pack("!H", (2 << 11) | (index << 7) | (1 << 3))


class AudioTimeline:
    """G.711 RTP payloads → AAC packets, at sample positions on the video's timeline.

    Positions are counted in samples from the first video picture (sample 0 is that
    picture's instant).  Once placed (:meth:`place`), the RTP timestamps keep the samples
    contiguous, gaps (lost packets, a late start) are filled with silence and overlaps are
    cut, so the encoder sees one continuous signal.  A placement that disagrees with the
    running one by more than ``RESYNC`` (drift, a camera restart) places it afresh.  Sound
    from before the first picture is dropped.

    *encode* is the encoder's ``encode`` (an ``av.CodecContext``'s, or a muxer stream's, whose
    packets the muxer then takes), *context* its codec context (frame size, open state).
    Each packet's ``pts`` is its first sample's position (minus the encoder's priming delay),
    in the encoder's samples: the camera's times *upsample* (an integer: 1, or 2 for 16 kHz
    AAC from 8 kHz G.711, whose 64 ms frames halve the delay the encoder adds, see
    :mod:`globaleye.web.live`; linear interpolation, which G.711's 4 kHz band survives).
    """

    def __init__(self, encode: Callable[[Any], list[Any]], context: Any, spec: AudioSpec, label: str = "",
                 upsample: int = 1) -> None:
        import av

        self.av = av
        self.encode_frame = encode
        self.context = context
        self.spec = spec
        self.label = label
        self.rate = spec.clock_rate
        self.upsample = upsample
        self.encoder_rate = self.rate * upsample
        # Samples count in 1/rate; a muxer may change its *stream's* time base when it writes
        # the header (MPEG-TS: 1/90000), so frames are stamped with this one, never the stream's.
        self.time_base = fractions.Fraction(1, self.encoder_rate)
        self.frame_size = (context.frame_size or AAC_FRAME) // upsample  # in the camera's samples
        self._previous = 0.0  # the last sample handed over: where the next chunk's interpolation starts
        self.written = 0  # next sample position to hand the encoder
        self.pending: list[Any] = []
        self.pending_samples = 0
        self.anchor: tuple[int, int] | None = None  # (RTP timestamp, sample position)
        self.last_timestamp: int | None = None
        self.samples = 0  # samples of sound (not silence) taken
        self.silence = 0  # samples of silence inserted
        self.resyncs = 0
        self.placed_by = ""  # "sender reports" or "arrival time"

    @classmethod
    def standalone(cls, spec: AudioSpec, label: str = "", upsample: int = 1) -> AudioTimeline:
        """With its own AAC encoder (no muxer): the packets' bytes are raw AAC frames."""
        context = aac_encoder(spec.clock_rate * upsample)
        return cls(context.encode, context, spec, label, upsample)

    @property
    def config(self) -> bytes:
        """The AudioSpecificConfig of the encoder."""
        extradata = getattr(self.context, "extradata", None)
        return bytes(extradata) if extradata else audio_specific_config(self.encoder_rate)

    @property
    def taken(self) -> int:
        """The next sample position to fill."""
        return self.written + self.pending_samples

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
        import numpy as np

        if self.anchor is None or not payload:
            return []
        start = self.position(timestamp)
        self.last_timestamp = timestamp
        samples = g711_decode(payload, self.spec.encoding)
        taken = self.taken
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

    def fill(self, until: int) -> list[Any]:
        """Silence up to sample position *until*: a camera whose sound stopped (or never came)
        must not leave a hole a player would wait at; sound arriving later for that stretch
        is dropped."""
        import numpy as np

        gap = until - self.taken
        if gap <= 0:
            return []
        self._take(np.zeros(gap, dtype=np.float32))
        self.silence += gap
        return self._encode(final=False)

    def _take(self, samples: Any) -> None:
        self.pending.append(samples)
        self.pending_samples += len(samples)

    def _encode(self, final: bool, end: int | None = None) -> list[Any]:
        import numpy as np

        if not self.pending_samples:
            return self._flush() if final else []
        data = np.concatenate(self.pending)
        if end is not None:
            data = data[:max(0, end - self.written)]
        count = len(data) if final else len(data) - len(data) % self.frame_size
        packets: list[Any] = []
        for offset in range(0, count, self.frame_size):
            chunk = data[offset:offset + self.frame_size]
            samples = self._upsampled(chunk) if self.upsample > 1 else chunk
            frame = self.av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate = self.encoder_rate
            frame.pts = self.written * self.upsample
            frame.time_base = self.time_base
            self.written += len(chunk)
            packets += self.encode_frame(frame)
            self.frame_size = (self.context.frame_size or self.frame_size * self.upsample) // self.upsample
        rest = data[count:]
        self.pending = [rest] if len(rest) else []
        self.pending_samples = len(rest)
        return packets + (self._flush() if final else [])

    def _upsampled(self, chunk: Any) -> Any:
        """*chunk* at ``upsample`` times its rate: straight lines between the samples, the first
        from the previous chunk's last sample (no seam); the output lags by less than one input sample."""
        import numpy as np

        if not len(chunk):
            return chunk
        points = np.concatenate((np.array([self._previous], dtype=np.float32), chunk))
        self._previous = float(chunk[-1])
        steps = np.arange(1, self.upsample + 1, dtype=np.float32) / self.upsample  # 1/k .. 1
        out = points[:-1, None] + (points[1:] - points[:-1])[:, None] * steps[None, :]
        return out.reshape(-1).astype(np.float32)

    def _flush(self) -> list[Any]:
        return list(self.encode_frame(None)) if self.context.is_open else []

    def close(self, end: int) -> list[Any]:
        """The last packets, with the sound cut at sample *end* (where the video ends)."""
        return self._encode(final=True, end=end)

    @property
    def seconds(self) -> float:
        return self.written / self.rate if self.rate else 0.0


class LipSync:
    """Places an :class:`AudioTimeline` on the video's timeline, packet by packet.

    The video's first picture (its RTP timestamp and arrival) is position 0.  Audio waits
    for the sender reports of both tracks (:class:`StreamClock`); without them within
    ``SR_WAIT`` seconds (RTCP lost over UDP, a camera that sends none) it is placed by
    arrival time, which is off by the network's jitter but never by more.  *arrival* times
    are any one clock's seconds (the reactor's, for the live view).
    """

    def __init__(self, audio: AudioTimeline, clock: StreamClock, video_track: int, audio_track: int,
                 label: str = "") -> None:
        self.audio = audio
        self.clock = clock
        self.video_track = video_track
        self.audio_track = audio_track
        self.label = label
        self.first: int | None = None  # the first picture's RTP timestamp
        self.first_arrival: float | None = None
        self.waiting: list[tuple[int, bytes, float]] = []  # audio before it could be placed

    def picture(self, timestamp: int, arrival: float | None) -> None:
        """A picture of the video: the first one is position 0."""
        if self.first is None:
            self.first = timestamp
            self.first_arrival = arrival

    def packet(self, data: bytes, arrival: float) -> list[Any]:
        """One RTP packet of the audio track; the AAC packets now ready."""
        if self.first is None:
            return []  # before the first picture: nothing to line it up with
        try:
            _pt, _seq, timestamp, _marker, offset = h264rtp.rtp_fields(data)
        except rtp.RtpError:
            return []
        payload = data[offset:]
        if data[0] & 0x20 and payload:  # RTP padding (RFC 3550 §5.1)
            payload = payload[:max(0, len(payload) - payload[-1])]
        audio = self.audio
        if audio.anchor is None:
            self.waiting.append((timestamp, payload, arrival))
            if not self._place(timestamp):
                if arrival - self.waiting[0][2] < SR_WAIT:
                    return []
                # No sender reports in time: the first waiting packet arrived when it was due.
                ts0, _, arrived = self.waiting[0]
                first = self.first_arrival if self.first_arrival is not None else arrived
                audio.place(ts0, arrived - first, "arrival time")
                log.info("{label}: no RTCP sender reports after {s:g} s; audio placed by arrival time",
                         label=self.label, s=SR_WAIT)
            return self._release()
        return audio.write(timestamp, payload)

    def report(self, track: int, clock_rate: int, data: bytes) -> list[Any]:
        """An RTCP packet of either track: the first pair places waiting audio, a new pair may
        move it (drift, a camera restart).  The AAC packets now ready."""
        if not self.clock.report(track, clock_rate, data) or self.first is None:
            return []
        audio = self.audio
        if audio.anchor is not None and audio.last_timestamp is not None:
            self._place(audio.last_timestamp)
            return []
        if self.waiting and self._place(self.waiting[0][0]):
            return self._release()
        return []

    def _release(self) -> list[Any]:
        waiting, self.waiting = self.waiting, []
        packets: list[Any] = []
        for ts, p, _ in waiting:
            packets += self.audio.write(ts, p)
        return packets

    def _place(self, timestamp: int) -> bool:
        assert self.first is not None
        audio_at = self.clock.wallclock(self.audio_track, timestamp)
        video_at = self.clock.wallclock(self.video_track, self.first)
        if audio_at is None or video_at is None:
            return False
        self.audio.place(timestamp, audio_at - video_at, "sender reports")
        return True
