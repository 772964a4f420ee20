"""A recording file (MPEG-TS, §7.1) indexed once and read one GOP at a time as RTP payloads.

Blocking file reads, no Twisted (callers run them in worker threads), neither PyAV nor
numpy: the simulated camera plays its recordings back with it (:mod:`globaleye.sim`).

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
import os
import threading
from array import array
from collections import OrderedDict
from pathlib import Path

import attrs

from globaleye.media import h264, mpegts, rtp

#: The frame rate assumed for a file whose pictures do not tell it (a single picture).
DEFAULT_FPS = 25
#: Read GOPs kept for all sessions together (≈ 15 KB each for the generated files).
GOP_CACHE = 64
#: A GOP larger than this is refused rather than read into memory (a broken or foreign file).
MAX_GOP_BYTES = 32 << 20


class RecordingError(ValueError):
    """A file that cannot be played back (not TS, no H.264, an index that does not match)."""


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
