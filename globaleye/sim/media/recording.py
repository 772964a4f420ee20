"""The recordings a simulated camera plays back: real MPEG-TS files, made once, indexed once, read by GOP.

**What the file holds.**  §7.1: "H.264 main stream" in TS, 5-minute files.  The
picture is not the live loop: it shows the position in the file as a large ``MM:SS``
over a pattern that moves every second, with a red "recording" dot, so a viewer (and
a test) can tell a recording from live and see where a seek landed.  Every second is
one GOP: an IDR encoded by x264, then ``fps - 1`` P pictures in which every
macroblock is skipped (:func:`globaleye.media.h264.skip_slice`), so the picture holds
still for the second.  That costs one intra encode per second instead of 25 full
encodes (a 720p file of 300 s takes a few seconds rather than minutes).  Audio, when
the recording has it, is the live tone encoded as **AAC-LC** (8 kHz mono, ADTS):
G.711 has no standard stream type in MPEG-TS (FFmpeg writes it as an opaque data
stream that ffprobe cannot play), AAC is what TS recorders carry and what every
player reads.  Playback sends it as RFC 3640 (mpeg4-generic) from the file.

**Shared by reference.**  A camera's 72H listing names up to 288 files a day per
channel, and a simulator runs thousands of cameras: all of their recordings of the
same length are *the same file*, written once into the media cache (write-then-rename)
by :meth:`globaleye.sim.media.source.MediaLibrary.recording` and indexed once.

**Why an index and positioned reads** (rather than a demuxer per session running in
a thread): the index (one pass over the file with :class:`~globaleye.media.mpegts.TsDemuxer`,
in a worker thread, a fraction of a second) keeps for every picture its PTS/DTS, its
byte span and whether it is an IDR, and for every AAC frame its PTS and PES, in
arrays of a few hundred kilobytes per file, shared by every session.  A session
then asks for one GOP at a time: :meth:`Recording.read_gop` is a single ``pread`` of
that GOP's bytes, demuxed and packetized into RTP payloads, run in a worker thread
(``deferToThread``) so neither disk latency nor the demux touch the reactor.  A
player holds the GOP it is sending and the next one, so memory per session is two
GOPs whatever the file's length.  A seek is a lookup in the index (the IDR at or
before the point), not a scan.  A small LRU of read GOPs, shared by all sessions,
serves viewers of the same file at the same point (they all share the one file)
without reading it again.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import os
import tempfile
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from globaleye.media import h264, mpegts, rtp
from globaleye.media.names import RECORDING_SECONDS
from globaleye.sim.media.pattern import (
    DEFAULT_FPS,
    MAIN_SIZE,
    diagonal_gradient,
    draw_digits,
    tone_samples,
)

#: Bump when the picture, the encoder settings or the file layout change (invalidates caches).
RECORDING_GENERATOR_VERSION = 1
AUDIO_SAMPLE_RATE = 8000
AUDIO_BIT_RATE = 24000
#: Read GOPs kept for all sessions together (≈ 15 KB each for the generated files).
GOP_CACHE = 64
#: A GOP larger than this is refused rather than read into memory (a broken or foreign file).
MAX_GOP_BYTES = 32 << 20


class RecordingError(ValueError):
    """A file that cannot be played back (not TS, no H.264, an index that does not match)."""


@attrs.frozen
class RecordingParams:
    """Everything that changes a generated recording file (and so its cache key)."""

    width: int = MAIN_SIZE[0]
    height: int = MAIN_SIZE[1]
    fps: int = DEFAULT_FPS
    seconds: int = RECORDING_SECONDS
    audio: bool = True

    def __attrs_post_init__(self) -> None:
        if self.width % 16 or self.height % 16:
            raise ValueError("width and height must be multiples of 16 (whole macroblocks)")
        if not 1 <= self.fps <= 60 or not 1 <= self.seconds <= 6 * 3600:
            raise ValueError("bad frame rate or length")

    def key(self) -> str:
        blob = json.dumps([RECORDING_GENERATOR_VERSION, attrs.asdict(self)], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    @property
    def file_name(self) -> str:
        return f"recording-{self.key()}.ts"


# ---------------------------------------------------------------------- generating the file


@functools.lru_cache(maxsize=4)
def _gradient_u8(width: int, height: int) -> np.ndarray:
    return diagonal_gradient(width, height).astype(np.uint8)


def render_recording_picture(width: int, height: int, second: int) -> np.ndarray:
    """The yuv420p picture (shape (h*3/2, w)) shown during second *second* of a recording."""
    shade = ((np.arange(256) + second * 16) % 160 + 40).astype(np.uint8)
    y_plane = shade[_gradient_u8(width, height)]  # a lookup: a tenth of the cost of int64 arithmetic
    box = max(8, height // 8)
    bx = (second * 7 * box) % max(1, width - box)
    by = (second * 3 * box) % max(1, height - box)
    y_plane[by:by + box, bx:bx + box] = 235
    digit_h = height // 4
    text = f"{second // 60 % 100:02d}:{second % 60:02d}"
    stroke = max(2, digit_h // 10)
    band_w = 4 * (digit_h // 2 + 2 * stroke) + 3 * stroke  # four digits and a colon (draw_digits' widths)
    x0, y0 = (width - band_w) // 2, (height - digit_h) // 2
    y_plane[y0 - 12:y0 + digit_h + 12, x0 - 12:x0 + band_w] = 16
    draw_digits(y_plane, text, x0, y0, digit_h)
    cw, ch = width // 2, height // 2
    u = np.full((ch, cw), 128, np.uint8)
    v = np.full((ch, cw), 128, np.uint8)
    r = max(4, height // 24)  # the red "recording" dot, top right (chroma coordinates)
    cy, cx = 2 * r, cw - 3 * r
    yy, xx = np.ogrid[-r:r, -r:r]
    disc = yy * yy + xx * xx <= r * r
    u[cy - r:cy + r, cx - r:cx + r][disc] = 90
    v[cy - r:cy + r, cx - r:cx + r][disc] = 240
    y_plane[2 * (cy - r):2 * (cy + r), 2 * (cx - r):2 * (cx + r)][disc.repeat(2, 0).repeat(2, 1)] = 81
    return np.concatenate([y_plane, u.reshape(ch // 2, width), v.reshape(ch // 2, width)], axis=0)


def _idr_encoder(params: RecordingParams) -> Any:
    """x264, every frame a forced IDR; keyint is the GOP so the SPS allows a reference frame."""
    import av

    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = params.width, params.height
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, params.fps)
    codec.framerate = Fraction(params.fps, 1)
    codec.options = {
        "preset": "ultrafast",
        "profile": "baseline",
        "crf": "26",
        "forced-idr": "1",
        "x264-params": (f"keyint={params.fps}:min-keyint={params.fps}:scenecut=0:bframes=0:rc-lookahead=0:"
                        "repeat-headers=1:annexb=1:aud=0:threads=1:sliced-threads=0"),
    }
    return codec


def _encode_idrs(params: RecordingParams) -> Iterator[list[bytes]]:
    """The NAL units (SPS, PPS, IDR; no SEI) of one IDR per second, second after second."""
    import av

    codec = _idr_encoder(params)
    for second in range(params.seconds):
        frame = av.VideoFrame.from_ndarray(render_recording_picture(params.width, params.height, second),
                                           format="yuv420p")
        frame.pts = second * params.fps
        frame.pict_type = av.video.frame.PictureType.I
        for packet in codec.encode(frame):
            yield [n for n in rtp.split_annexb(bytes(packet)) if rtp.nal_type(n) != rtp.NAL_SEI]
    for packet in codec.encode(None):
        yield [n for n in rtp.split_annexb(bytes(packet)) if rtp.nal_type(n) != rtp.NAL_SEI]


def write_generated_recording(params: RecordingParams, path: str | Path) -> Path:
    """Write the recording *params* describes to *path* (temporary name, then rename).

    Blocking (seconds of CPU for 5 minutes of 720p): call it from a worker thread.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ts.tmp")
    os.close(fd)
    fps = params.fps
    try:
        with av.open(tmp, "w", format="mpegts") as container:
            video = container.add_stream("h264", rate=fps)
            video.width, video.height = params.width, params.height
            audio = None
            if params.audio:
                audio = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE, layout="mono")
                audio.codec_context.bit_rate = AUDIO_BIT_RATE
            rate = Fraction(1, fps)
            sample = 0  # next audio sample to encode
            seconds = 0
            for second, nals in enumerate(_encode_idrs(params)):
                sps = h264.parse_sps(next(n for n in nals if rtp.nal_type(n) == rtp.NAL_SPS))
                pps = h264.parse_pps(next(n for n in nals if rtp.nal_type(n) == rtp.NAL_PPS))
                h264.check_skip_slices(sps, pps)
                units = [b"".join(b"\x00\x00\x00\x01" + n for n in nals)]
                units += [b"\x00\x00\x00\x01" + h264.skip_slice(sps, pps, k, 2 * k) for k in range(1, fps)]
                for k, data in enumerate(units):
                    packet = av.Packet(data)
                    packet.pts = packet.dts = second * fps + k
                    packet.time_base = rate
                    packet.is_keyframe = k == 0
                    packet.stream = video
                    container.mux(packet)
                seconds = second + 1
                if audio is not None:
                    sample = _mux_audio(container, audio, sample, seconds * AUDIO_SAMPLE_RATE)
            if seconds != params.seconds:
                raise RecordingError(f"the encoder gave {seconds} pictures for {params.seconds} seconds")
            if audio is not None:
                container.mux(audio.encode(None))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _mux_audio(container: Any, stream: Any, sample: int, until: int) -> int:
    """Encode the tone from *sample* up to *until* (whole AAC frames) and mux it."""
    import av

    step = mpegts.AAC_FRAME_SAMPLES
    while sample + step <= until:
        pcm = tone_samples(sample, step, AUDIO_SAMPLE_RATE).astype(np.float32) / 32768.0
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = sample
        frame.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
        container.mux(stream.encode(frame))
        sample += step
    return sample


# ---------------------------------------------------------------------- the index


@attrs.frozen(eq=False)
class RecordingIndex(rtp.ParameterSets):
    """Where every picture and AAC frame of one TS file is; built once, shared by all sessions.

    Times are 90 kHz ticks, unwrapped.  Pictures are in file (decode) order; ``dts``
    paces them and positions them in the file (npt 0 is the first picture's DTS),
    ``pts`` stamps them.  ``keys`` are the indices of the IDR pictures (GOP starts).
    """

    path: str
    size: int
    video_pid: int
    sps: bytes
    pps: bytes
    width: int
    height: int
    frame_ticks: int  # the usual distance between two pictures
    v_start: array[int]
    v_end: array[int]
    v_pts: array[int]
    v_dts: array[int]
    keys: array[int]
    k_dts: array[int]  # the DTS of each GOP's IDR
    audio_pid: int = 0
    audio_config: bytes = b""  # AudioSpecificConfig
    sample_rate: int = 0
    channels: int = 0
    a_pts: array[int] = attrs.Factory(lambda: array("q"))
    a_pes: array[int] = attrs.Factory(lambda: array("q"))  # the PES (index into p_*) of each frame
    a_slot: array[int] = attrs.Factory(lambda: array("q"))  # its position in that PES
    p_start: array[int] = attrs.Factory(lambda: array("q"))
    p_end: array[int] = attrs.Factory(lambda: array("q"))

    @property
    def frames(self) -> int:
        return len(self.v_dts)

    @property
    def fps(self) -> float:
        return mpegts.TS_CLOCK / self.frame_ticks

    @property
    def duration(self) -> float:
        """Seconds from the first picture to the end of the last one (what ``a=range`` says)."""
        return (self.v_dts[-1] - self.v_dts[0] + self.frame_ticks) / mpegts.TS_CLOCK

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_pid) and len(self.a_pts) > 0

    @property
    def gops(self) -> int:
        return len(self.keys)

    def npt(self, frame: int) -> float:
        """The position (seconds) of picture *frame*; the duration at or past the end."""
        if frame >= self.frames:
            return self.duration
        return (self.v_dts[frame] - self.v_dts[0]) / mpegts.TS_CLOCK

    def frame_at(self, seconds: float) -> int:
        """The first picture at or after *seconds* (``frames`` past the end)."""
        return bisect.bisect_left(self.v_dts, self.v_dts[0] + round(seconds * mpegts.TS_CLOCK))

    def seek(self, seconds: float) -> int:
        """The IDR at or before *seconds*: where a decoder can start to show that point."""
        frame = bisect.bisect_right(self.v_dts, self.v_dts[0] + round(seconds * mpegts.TS_CLOCK)) - 1
        return self.keys[max(0, self.gop_of(max(0, frame)))]

    def gop_of(self, frame: int) -> int:
        return bisect.bisect_right(self.keys, frame) - 1

    def gop_of_audio(self, frame: int) -> int:
        """The GOP an AAC frame is read with: the one whose time span holds its PTS."""
        return max(0, bisect.bisect_right(self.k_dts, self.a_pts[frame]) - 1)

    def gop_frames(self, gop: int) -> tuple[int, int]:
        """[first, end) picture indices of GOP *gop*."""
        end = self.keys[gop + 1] if gop + 1 < len(self.keys) else self.frames
        return self.keys[gop], end

    def gop_audio(self, gop: int) -> tuple[int, int]:
        """[first, end) AAC frames whose PTS falls within GOP *gop* (the first and last GOP open-ended)."""
        if not self.has_audio:
            return 0, 0
        first, end = self.gop_frames(gop)
        lo = 0 if gop == 0 else bisect.bisect_left(self.a_pts, self.v_dts[first])
        hi = len(self.a_pts) if end >= self.frames else bisect.bisect_left(self.a_pts, self.v_dts[end])
        return lo, hi


def index_recording(path: str | Path, chunk: int = 1 << 20) -> RecordingIndex:
    """One pass over a TS file: every H.264 access unit and AAC frame, with their byte spans.

    Blocking (0.2–0.3 s for the 9 MB 5-minute file, so seconds per 100 MB): run it in a worker thread.
    """
    path = Path(path)
    demux = mpegts.TsDemuxer()
    chunk -= chunk % mpegts.PACKET_SIZE
    video_pid = audio_pid = 0
    sps = pps = b""
    v_start, v_end, v_pts, v_dts, keys = (array("q") for _ in range(5))
    a_pts, a_pes, a_slot, p_start, p_end = (array("q") for _ in range(5))
    config = b""
    rate = channels = 0
    last_v: int | None = None
    last_vp: int | None = None
    last_a: int | None = None

    def take(pes: mpegts.Pes) -> None:
        nonlocal video_pid, audio_pid, sps, pps, config, rate, channels, last_v, last_vp, last_a
        kind = demux.streams.get(pes.pid)
        if kind == mpegts.STREAM_TYPE_H264 and video_pid in (0, pes.pid):
            if pes.pts is None or pes.dts is None:
                raise RecordingError(f"H.264 PES without PTS at offset {pes.start}")
            video_pid = pes.pid
            nals = rtp.split_annexb(pes.data)
            types = {rtp.nal_type(n) for n in nals}
            if rtp.NAL_IDR in types:
                for n in nals:
                    if rtp.nal_type(n) == rtp.NAL_SPS and not sps:
                        sps = n
                    elif rtp.nal_type(n) == rtp.NAL_PPS and not pps:
                        pps = n
                keys.append(len(v_dts))
            elif not keys:
                return  # pictures before the first IDR cannot be shown: not part of the recording
            last_v = mpegts.unwrap(last_v, pes.dts)
            last_vp = mpegts.unwrap(last_vp, pes.pts)
            v_start.append(pes.start)
            v_end.append(pes.end)
            v_dts.append(last_v)
            v_pts.append(last_vp)
        elif kind == mpegts.STREAM_TYPE_AAC_ADTS and audio_pid in (0, pes.pid) and pes.pts is not None:
            audio_pid = pes.pid
            frames = list(mpegts.adts_frames(pes.data))
            if not frames:
                return
            if not config:
                config, rate, channels = frames[0].audio_specific_config, frames[0].sample_rate, frames[0].channels
            last_a = mpegts.unwrap(last_a, pes.pts)
            p_start.append(pes.start)
            p_end.append(pes.end)
            for slot in range(len(frames)):
                a_pts.append(last_a + slot * mpegts.AAC_FRAME_SAMPLES * mpegts.TS_CLOCK // rate)
                a_pes.append(len(p_start) - 1)
                a_slot.append(slot)

    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            offset = 0
            while data := f.read(chunk):
                for pes in demux.feed(data, offset):
                    take(pes)
                offset += len(data)
            for pes in demux.flush():
                take(pes)
    except (mpegts.TsError, h264.H264Error) as e:
        raise RecordingError(f"{path}: {e}") from None
    if not keys or not sps or not pps:
        raise RecordingError(f"{path}: no H.264 IDR with SPS and PPS")
    deltas = sorted(b - a for a, b in zip(v_dts, v_dts[1:], strict=False) if b > a)
    frame_ticks = deltas[len(deltas) // 2] if deltas else mpegts.TS_CLOCK // DEFAULT_FPS
    parsed = h264.parse_sps(sps)
    k_dts = array("q", (v_dts[k] for k in keys))
    return RecordingIndex(str(path), size, video_pid, sps, pps, parsed.width, parsed.height, frame_ticks,
                          v_start, v_end, v_pts, v_dts, keys, k_dts, audio_pid, config, rate, channels,
                          a_pts, a_pes, a_slot, p_start, p_end)


# ---------------------------------------------------------------------- reading GOPs


@attrs.frozen
class Picture:
    """One access unit ready to send: RTP payloads (RFC 6184), SPS/PPS in front of an IDR."""

    frame: int
    dts: int
    pts: int
    keyframe: bool
    payloads: tuple[tuple[bytes, bool], ...]


@attrs.frozen
class AudioUnit:
    """One AAC frame ready to send: its RFC 3640 payload."""

    frame: int
    pts: int
    payload: bytes


@attrs.frozen
class Gop:
    """What a player needs for one GOP: its pictures and the AAC frames of the same time."""

    index: int
    pictures: tuple[Picture, ...]
    audio: tuple[AudioUnit, ...]
    size: int  # bytes read from the file

    @property
    def first_frame(self) -> int:
        return self.pictures[0].frame

    def picture(self, frame: int) -> Picture:
        return self.pictures[frame - self.first_frame]

    def audio_unit(self, frame: int) -> AudioUnit:
        return self.audio[frame - self.audio[0].frame]


class Recording:
    """A recording file opened for playback: its index, one descriptor, a shared LRU of GOPs.

    :meth:`read_gop` blocks (a positioned read and a demux); it is thread-safe, so
    players call it through ``deferToThread``.  Nothing here touches the reactor.
    """

    def __init__(self, index: RecordingIndex, mtu: int = rtp.DEFAULT_MTU, cache: int = GOP_CACHE) -> None:
        self.index = index
        self.mtu = mtu
        self._fd = os.open(index.path, os.O_RDONLY)
        self._cache: OrderedDict[int, Gop] = OrderedDict()
        self._cache_size = cache
        self._lock = threading.Lock()
        self.reads = 0

    @classmethod
    def open(cls, path: str | Path, mtu: int = rtp.DEFAULT_MTU) -> Recording:
        return cls(index_recording(path), mtu)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def cached(self, gop: int) -> Gop | None:
        """The GOP if it is in the shared cache (no I/O: safe on the reactor thread)."""
        with self._lock:
            found = self._cache.get(gop)
            if found is not None:
                self._cache.move_to_end(gop)
            return found

    def read_gop(self, gop: int) -> Gop:
        found = self.cached(gop)
        if found is not None:
            return found
        result = self._read(gop)
        with self._lock:
            self._cache[gop] = result
            self._cache.move_to_end(gop)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def _read(self, gop: int) -> Gop:
        ix = self.index
        if not 0 <= gop < ix.gops:
            raise RecordingError(f"no GOP {gop} in {ix.path}")
        first, end = ix.gop_frames(gop)
        a_first, a_end = ix.gop_audio(gop)
        spans = [(ix.v_start[first], ix.v_end[end - 1])]
        if a_end > a_first:
            pes_first, pes_last = ix.a_pes[a_first], ix.a_pes[a_end - 1]
            spans.append((ix.p_start[pes_first], max(ix.p_end[p] for p in range(pes_first, pes_last + 1))))
        begin = min(s for s, _ in spans)
        stop = max(e for _, e in spans)
        if stop - begin > MAX_GOP_BYTES:
            raise RecordingError(f"GOP {gop} of {ix.path} spans {stop - begin} bytes")
        data = os.pread(self._fd, stop - begin, begin)
        self.reads += 1
        if len(data) != stop - begin:
            raise RecordingError(f"{ix.path} is shorter than its index")
        streams = {ix.video_pid: mpegts.STREAM_TYPE_H264}
        if ix.audio_pid:
            streams[ix.audio_pid] = mpegts.STREAM_TYPE_AAC_ADTS
        demux = mpegts.TsDemuxer(streams)
        try:
            found = {(p.pid, p.start): p for p in [*demux.feed(data, begin), *demux.flush(stop)]}
        except mpegts.TsError as e:
            raise RecordingError(f"{ix.path}: {e}") from None
        pictures = []
        for frame in range(first, end):
            pes = found.get((ix.video_pid, ix.v_start[frame]))
            if pes is None:
                raise RecordingError(f"{ix.path}: picture {frame} is not where the index says")
            pictures.append(self._picture(frame, pes.data))
        audio = []
        frames_of: dict[int, list[mpegts.AdtsFrame]] = {}
        for j in range(a_first, a_end):
            p = ix.a_pes[j]
            if p not in frames_of:
                pes = found.get((ix.audio_pid, ix.p_start[p]))
                if pes is None:
                    raise RecordingError(f"{ix.path}: audio PES {p} is not where the index says")
                frames_of[p] = list(mpegts.adts_frames(pes.data))
            audio.append(AudioUnit(j, ix.a_pts[j], rtp.aac_hbr_payload(frames_of[p][ix.a_slot[j]].raw)))
        return Gop(gop, tuple(pictures), tuple(audio), stop - begin)

    def _picture(self, frame: int, data: bytes) -> Picture:
        ix = self.index
        nals = [n for n in rtp.split_annexb(data)
                if rtp.nal_type(n) not in (rtp.NAL_AUD, rtp.NAL_SEI, 12)]  # 12: filler data
        types = [rtp.nal_type(n) for n in nals]
        key = rtp.NAL_IDR in types
        if key and rtp.NAL_SPS not in types:  # RFC 6184 §8.4: a joiner needs them with the IDR
            nals = [ix.sps, ix.pps, *nals]
        return Picture(frame, ix.v_dts[frame], ix.v_pts[frame], key, tuple(rtp.packetize_h264(nals, self.mtu)))
