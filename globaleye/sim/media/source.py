"""Pre-encoded media for simulated cameras: H.264 loops, a G.711 tone, and the library of both and of recordings.

Why a loop: ten thousand simulated cameras cannot each run an encoder.  One loop per
encoding (size, frame rate, bit rate: a stream's 60H settings) is encoded once per process (or read from a disk cache, keyed by every
parameter that changes the bitstream), packetized once into RTP payloads, and every
session then only writes its own 12-byte RTP headers.

Why looping is trivial: the loop is a whole number of GOPs, every GOP starts with an
IDR carrying SPS/PPS, and there are no B-frames (baseline profile), so frame_num and
POC restart at the loop's first frame; a decoder sees an ordinary stream with one IDR
per GOP, and the only thing that keeps growing is the RTP timestamp and sequence number.

The picture is a scrolling colour pattern, a bouncing box and a running timecode
(seconds.frame of the loop, drawn as seven-segment digits with numpy, no fonts), so a
viewer sees motion and can tell frames apart.  A real wall-clock cannot be in
pre-encoded pixels; that is a documented compromise (docs/rtsp-camera.md).
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from globaleye.media import rtp
from globaleye.media.names import RECORDING_SECONDS
from globaleye.media.tsfile import Recording, RecordingError, index_recording
from globaleye.sim.media.pattern import (
    DEFAULT_FPS,
    DEFAULT_LOOP_SECONDS,
    MAIN_SIZE,
    SUB_SIZE,
    diagonal_gradient,
    draw_digits,
    tone_pcma,
)
from globaleye.sim.media.recording import RecordingParams, write_generated_recording

#: Bump when the generated picture or encoder settings change, to invalidate disk caches.
GENERATOR_VERSION = 1

#: Loops kept in memory besides the pinned ones (the defaults and what ``prepare`` made):
#: 60H lets every camera pick its own encoding, and an encoded 720p loop is a few MB.
MAX_LOOPS = 16



@attrs.frozen
class LoopParams:
    """Everything that changes the encoded bitstream (and so the cache key)."""

    width: int
    height: int
    fps: int = DEFAULT_FPS
    seconds: int = DEFAULT_LOOP_SECONDS
    gop: int = DEFAULT_FPS
    bit_rate: int = 0  # 0: chosen from the resolution
    profile: str = "baseline"

    def __attrs_post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or self.width < 16 or self.height < 16:
            raise ValueError("width and height must be even and at least 16")
        if not 1 <= self.fps <= 60 or self.seconds < 1:
            raise ValueError("bad frame rate or loop length")
        if (self.fps * self.seconds) % self.gop:
            raise ValueError("the loop must be a whole number of GOPs")

    @property
    def frames(self) -> int:
        return self.fps * self.seconds

    @property
    def effective_bit_rate(self) -> int:
        if self.bit_rate:
            return self.bit_rate
        return 1_000_000 if self.width * self.height > 400 * 300 else 256_000

    def key(self) -> str:
        blob = json.dumps([GENERATOR_VERSION, attrs.asdict(self)], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    @classmethod
    def live(cls, width: int, height: int, fps: int, bit_rate: int) -> LoopParams:
        """A live stream's loop: one IDR a second (GOP = fps), the default length in whole GOPs.

        Why GOP = fps: a viewer joins live at the IDR at or before "now", and a player
        that lost packets recovers at the next one, so an IDR a second whatever the
        frame rate is what keeps both under a second.  The loop is
        ``DEFAULT_LOOP_SECONDS`` long, which is a whole number of such GOPs.
        """
        return cls(width, height, fps=fps, seconds=DEFAULT_LOOP_SECONDS, gop=fps, bit_rate=bit_rate)


@attrs.frozen
class AccessUnit:
    """One picture: its NAL units (SPS and PPS first on an IDR) and its RTP payloads."""

    nals: tuple[bytes, ...]
    keyframe: bool
    payloads: tuple[tuple[bytes, bool], ...]

    @property
    def size(self) -> int:
        return sum(len(n) for n in self.nals)


@attrs.frozen
class VideoLoop(rtp.ParameterSets):
    params: LoopParams
    sps: bytes
    pps: bytes
    frames: tuple[AccessUnit, ...]

    @property
    def width(self) -> int:
        return self.params.width

    @property
    def height(self) -> int:
        return self.params.height

    @property
    def fps(self) -> int:
        return self.params.fps

    @property
    def ticks_per_frame(self) -> int:
        return rtp.H264_CLOCK // self.params.fps

    def annexb(self, index: int) -> bytes:
        return b"".join(b"\x00\x00\x00\x01" + n for n in self.frames[index % len(self.frames)].nals)


@attrs.frozen
class AudioLoop:
    """G.711 A-law samples covering exactly the video loop (so both wrap together)."""

    pcma: bytes
    sample_rate: int = rtp.PCMA_CLOCK


def render_frame(params: LoopParams, index: int) -> np.ndarray:
    """One yuv420p picture (shape (h*3/2, w)) of the test pattern at frame *index*."""
    w, h, fps = params.width, params.height, params.fps
    phase = index / params.frames
    y_plane = ((diagonal_gradient(w, h) + index * 4 * w // 320) % 200 + 16).astype(np.uint8)
    # A bouncing box: obvious motion even on a small phone screen.
    box = max(8, h // 6)
    bx = int((w - box) * (0.5 - 0.5 * math.cos(2 * math.pi * phase)))
    by = int((h - box) * 0.5 * (1 + 0.6 * math.sin(4 * math.pi * phase)))
    y_plane[by:by + box, bx:bx + box] = 235
    # Timecode: SS.FF within the loop, on a dark band.
    digit_h = max(16, h // 8)
    band_y = max(4, h // 20)
    y_plane[band_y - 4:band_y + digit_h + 4, 8:8 + digit_h * 4] = 16
    draw_digits(y_plane, f"{index // fps:02d}.{index % fps:02d}", 12, band_y, digit_h)
    cw, ch = w // 2, h // 2
    u = np.broadcast_to((128 + 60 * np.sin(2 * math.pi * (np.arange(cw) / cw + phase))).astype(np.uint8),
                        (ch, cw))
    v = np.broadcast_to((128 + 60 * np.cos(2 * math.pi * (np.arange(ch) / ch + phase))).astype(np.uint8)
                        [:, None], (ch, cw))
    return np.concatenate([y_plane, u.reshape(ch // 2, w), v.reshape(ch // 2, w)], axis=0)


def encode_loop(params: LoopParams, mtu: int = rtp.DEFAULT_MTU) -> VideoLoop:
    """Encode the loop with PyAV's libx264 (baseline, no B-frames, fixed GOP, no scenecut)."""
    import av  # heavy import; only needed on a cache miss

    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = params.width, params.height
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, params.fps)
    codec.framerate = Fraction(params.fps, 1)
    codec.bit_rate = params.effective_bit_rate
    codec.options = {
        "preset": "veryfast",
        "profile": params.profile,
        "x264-params": (f"keyint={params.gop}:min-keyint={params.gop}:scenecut=0:bframes=0:"
                        "repeat-headers=1:annexb=1:aud=0:threads=1:sliced-threads=0"),
    }
    stream: list[tuple[bytes, bool]] = []
    for i in range(params.frames):
        frame = av.VideoFrame.from_ndarray(render_frame(params, i), format="yuv420p")
        frame.pts = i
        stream.extend((bytes(p), bool(p.is_keyframe)) for p in codec.encode(frame))
    stream.extend((bytes(p), bool(p.is_keyframe)) for p in codec.encode(None))
    return _assemble(params, [(rtp.split_annexb(data), key) for data, key in stream], mtu)


def _assemble(params: LoopParams, units: list[tuple[list[bytes], bool]], mtu: int) -> VideoLoop:
    sps = pps = b""
    frames: list[AccessUnit] = []
    for nals, _key in units:
        for n in nals:
            if rtp.nal_type(n) == rtp.NAL_SPS:
                sps = n
            elif rtp.nal_type(n) == rtp.NAL_PPS:
                pps = n
        # SEI (x264's banner) and AUDs are dropped; SPS/PPS are put back in front of each IDR.
        body = [n for n in nals if rtp.nal_type(n) not in (rtp.NAL_SPS, rtp.NAL_PPS, rtp.NAL_SEI,
                                                            rtp.NAL_AUD)]
        idr = any(rtp.nal_type(n) == rtp.NAL_IDR for n in body)
        if idr:
            body = [sps, pps, *body]
        frames.append(AccessUnit(tuple(body), idr, tuple(rtp.packetize_h264(body, mtu))))
    if not sps or not pps or not frames or not frames[0].keyframe:
        raise ValueError("encoder output does not start with SPS/PPS/IDR")
    if len(frames) != params.frames:
        raise ValueError(f"encoder produced {len(frames)} frames, expected {params.frames}")
    return VideoLoop(params, sps, pps, tuple(frames))


#: The library's two default loops: what a camera without 60H settings streams.  Main is
#: 1024 kbit/s, BitRate code 8, which is also the simulated camera's default (§7.5.6).
MAIN_PARAMS = LoopParams(*MAIN_SIZE, bit_rate=1_024_000)
SUB_PARAMS = LoopParams(*SUB_SIZE)


def _save(loop: VideoLoop, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    key = loop.params.key()
    index = {"params": attrs.asdict(loop.params),
             "frames": [[int(f.keyframe), [len(n) for n in f.nals]] for f in loop.frames]}
    blob = b"".join(n for f in loop.frames for n in f.nals)
    # Write-then-rename so a concurrent reader never sees half a file.
    for suffix, data in ((".bin", blob), (".json", json.dumps(index).encode())):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=key, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, directory / (key + suffix))


def _load(params: LoopParams, directory: Path, mtu: int) -> VideoLoop | None:
    key = params.key()
    try:
        index = json.loads((directory / (key + ".json")).read_text())
        blob = (directory / (key + ".bin")).read_bytes()
        if index["params"] != attrs.asdict(params):
            return None
        units: list[tuple[list[bytes], bool]] = []
        pos = 0
        for keyframe, sizes in index["frames"]:
            nals = []
            for size in sizes:
                nals.append(blob[pos:pos + size])
                pos += size
            units.append((nals, bool(keyframe)))
        if pos != len(blob):
            return None
        return _assemble(params, units, mtu)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class MediaLibrary:
    """Per-process cache of loops and recordings: loops in memory always and on disk when a
    directory is given; recordings always on disk (in the directory, or else a private
    temporary one removed at exit), each indexed once and shared by every camera.

    Thread-safe so encodes can run in worker threads (:meth:`video_async`) without
    blocking the reactor; later callers get the same objects.  Loops are kept in an
    LRU of ``max_loops`` besides the pinned ones (the two defaults and whatever
    :meth:`prepare` made): each camera may ask 60H for its own encoding, so the set of
    encodings a fleet uses is small but not fixed.  An evicted loop stays alive for the
    sessions still playing it and is encoded (or read from the disk cache) again when
    asked for.
    """

    def __init__(self, cache_dir: str | Path | None = None, mtu: int = rtp.DEFAULT_MTU,
                 max_loops: int = MAX_LOOPS) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.mtu = mtu
        self.max_loops = max_loops
        #: Least recently used first; guarded by ``_lock``, which is never held during an encode.
        self._video: collections.OrderedDict[LoopParams, VideoLoop] = collections.OrderedDict()
        self._pinned: set[LoopParams] = {MAIN_PARAMS, SUB_PARAMS}
        #: One lock per loop being made, so an encode holds up only callers of the same loop.
        self._video_locks: dict[LoopParams, threading.Lock] = {}
        self._video_waiters: dict[LoopParams, list[Any]] = {}  # reactor thread only
        self._audio: dict[int, AudioLoop] = {}
        self._lock = threading.Lock()
        self.encodes = 0
        self.evictions = 0
        self._recordings: dict[tuple[int, bool], Recording] = {}
        #: One lock per recording, so making one (seconds) does not hold up the loops or other files.
        self._recording_locks: dict[tuple[int, bool], threading.Lock] = {}
        self._temp_dir: Path | None = None
        self._recording_waiters: dict[tuple[int, bool], list[Any]] = {}  # reactor thread only
        self.recordings_written = 0

    def video(self, params: LoopParams) -> VideoLoop:
        """The loop of *params*: from memory, else the disk cache, else encoded (seconds of CPU).

        Blocking on a miss: call it from a worker thread, or use :meth:`video_async`.
        Concurrent callers of the same params wait for the one encode.
        """
        return self._obtain(params)[0]

    def _obtain(self, params: LoopParams) -> tuple[VideoLoop, str]:
        """:meth:`video`, and how the loop was had: "memory", "disk" or "encoded"."""
        found = self.video_ready(params)
        if found is not None:
            return found, "memory"
        with self._lock:
            lock = self._video_locks.setdefault(params, threading.Lock())
        with lock:
            found = self.video_ready(params)
            if found is not None:
                return found, "memory"
            how = "disk"
            loop = _load(params, self.cache_dir, self.mtu) if self.cache_dir else None
            if loop is None:
                how = "encoded"
                loop = encode_loop(params, self.mtu)
                with self._lock:
                    self.encodes += 1
                if self.cache_dir is not None:
                    try:
                        _save(loop, self.cache_dir)
                    except OSError:
                        pass  # a read-only cache dir only costs the next process an encode
            with self._lock:
                self._video[params] = loop
                self._video.move_to_end(params)
                self._evict()
                self._video_locks.pop(params, None)
            return loop, how

    def _evict(self) -> None:
        """Drop least recently used unpinned loops beyond ``max_loops`` (``_lock`` held)."""
        unpinned = [p for p in self._video if p not in self._pinned]  # oldest first
        for params in unpinned[:max(0, len(unpinned) - self.max_loops)]:
            del self._video[params]
            self.evictions += 1

    def video_ready(self, params: LoopParams) -> VideoLoop | None:
        """The loop if it is in memory (never blocks on an encode: safe on the reactor thread)."""
        with self._lock:
            loop = self._video.get(params)
            if loop is not None:
                self._video.move_to_end(params)
            return loop

    def loops(self) -> list[LoopParams]:
        """The loops in memory, least recently used first (for tests and status)."""
        with self._lock:
            return list(self._video)

    def pin(self, params: LoopParams) -> None:
        """Never evict the loop of *params* (a fleet's default encodings)."""
        with self._lock:
            self._pinned.add(params)

    def video_async(self, params: LoopParams, reactor: Any = None) -> Any:
        """A Deferred firing with :meth:`video`; encoded in a worker thread when not in memory.

        Call it from the reactor thread.  Callers that ask while the loop is being
        encoded share that one encode (a burst of DESCRIBEs after a 60H must not park
        the thread pool on one lock, nor encode the same loop twice).  *reactor*: whose
        thread pool to use (default: the global reactor's); a reactor without threads
        (``task.Clock`` in tests) encodes in place.
        """
        from twisted.internet.defer import Deferred, maybeDeferred, succeed
        from twisted.internet.threads import deferToThreadPool
        from twisted.logger import Logger
        from twisted.python.failure import Failure

        ready = self.video_ready(params)
        if ready is not None:
            return succeed(ready)
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        pool = getattr(reactor, "getThreadPool", None)
        if pool is None:
            return maybeDeferred(self.video, params)
        waiting = self._video_waiters.get(params)
        if waiting is None:
            waiting = self._video_waiters[params] = []
            log = Logger()
            started = reactor.seconds()

            def done(result: Any) -> None:
                if isinstance(result, Failure):
                    log.failure("media: could not make the {w}x{h} {fps} fps loop", result, w=params.width,
                                h=params.height, fps=params.fps)
                else:
                    result, how = result
                    log.info("media: {how} the {w}x{h} {fps} fps {kbps} kbit/s loop in {s:.2f} s, in a worker "
                             "thread ({n} loops in memory, {e} evicted so far)", how=how, w=params.width,
                             h=params.height, fps=params.fps, kbps=params.effective_bit_rate // 1000,
                             s=reactor.seconds() - started, n=len(self._video), e=self.evictions)
                for d in self._video_waiters.pop(params, []):
                    if isinstance(result, Failure):
                        d.errback(result)
                    else:
                        d.callback(result)

            deferToThreadPool(reactor, pool(), self._obtain, params).addBoth(done)
        d: Deferred[VideoLoop] = Deferred()
        waiting.append(d)
        return d

    def audio(self, seconds: int) -> AudioLoop:
        with self._lock:
            loop = self._audio.get(seconds)
            if loop is None:
                loop = self._audio[seconds] = AudioLoop(tone_pcma(seconds))
            return loop

    # -- recordings (§7.1)

    def recording_dir(self) -> Path:
        """Where recording files live: the cache directory, or a temporary one of this process."""
        if self.cache_dir is not None:
            return self.cache_dir
        with self._lock:
            if self._temp_dir is None:
                self._temp_dir = Path(tempfile.mkdtemp(prefix="globaleye-recordings-"))
                atexit.register(shutil.rmtree, self._temp_dir, True)
            return self._temp_dir

    def recording(self, seconds: int = RECORDING_SECONDS, audio: bool = True) -> Recording:
        """The recording file of *seconds* (main stream, with or without AAC audio), ready to play.

        Blocking: the first call per process generates the file (seconds of CPU) unless
        the cache directory has it, then indexes it; call it from a worker thread or
        use :meth:`recording_async`.  Every camera's recordings of this length share
        the returned object (one file, one index, one descriptor).
        """
        key = (int(seconds), bool(audio))
        with self._lock:
            lock = self._recording_locks.setdefault(key, threading.Lock())
        with lock:
            found = self._recordings.get(key)
            if found is not None:
                return found
            params = RecordingParams(*MAIN_SIZE, seconds=key[0], audio=key[1])
            path = self.recording_dir() / params.file_name
            index = None
            if path.exists():
                try:
                    index = index_recording(path)
                except (OSError, RecordingError):
                    index = None
                if index is not None and (index.frames != params.seconds * params.fps
                                          or index.has_audio != params.audio):
                    index = None  # not the file this key promises: make it again
            if index is None:
                write_generated_recording(params, path)
                self.recordings_written += 1
                index = index_recording(path)
            recording = self._recordings[key] = Recording(index, self.mtu)
            return recording

    def recording_ready(self, seconds: int = RECORDING_SECONDS, audio: bool = True) -> Recording | None:
        """The recording if it has been made already (never blocks: safe on the reactor thread)."""
        return self._recordings.get((int(seconds), bool(audio)))

    def recording_async(self, seconds: int = RECORDING_SECONDS, audio: bool = True) -> Any:
        """A Deferred firing with :meth:`recording`; made in a worker thread when not ready yet.

        Call it from the reactor thread.  Callers that ask while the file is being made
        share the one worker thread doing it (a burst of DESCRIBEs must not park the
        whole thread pool on the recording's lock).
        """
        from twisted.internet.defer import Deferred, succeed
        from twisted.internet.threads import deferToThread
        from twisted.python.failure import Failure

        ready = self.recording_ready(seconds, audio)
        if ready is not None:
            return succeed(ready)
        key = (int(seconds), bool(audio))
        waiting = self._recording_waiters.get(key)
        if waiting is None:
            waiting = self._recording_waiters[key] = []

            def done(result: Any) -> None:
                for d in self._recording_waiters.pop(key, []):
                    if isinstance(result, Failure):
                        d.errback(result)
                    else:
                        d.callback(result)

            deferToThread(self.recording, *key).addBoth(done)
        d: Deferred[Recording] = Deferred()
        waiting.append(d)
        return d

    def prepare(self, recordings: bool = True, live: Iterable[LoopParams] | None = None) -> Any:
        """Encode (or load) the live loops, and the 5-minute recording, in a worker thread.

        A Deferred.  Call once at start-up so the first viewer does not wait the second
        or two an encode takes, and the first playback does not wait for its file.
        *live*: the loops cameras stream by default (default: :data:`MAIN_PARAMS` and
        :data:`SUB_PARAMS`); they are pinned, never evicted.
        """
        from twisted.internet.threads import deferToThread

        wanted = [MAIN_PARAMS, SUB_PARAMS] if live is None else list(live)
        for params in wanted:
            self.pin(params)

        def work() -> None:
            for params in wanted:
                self.video(params)
            if recordings:
                self.recording()

        return deferToThread(work)

    def main(self) -> VideoLoop:
        return self.video(MAIN_PARAMS)

    def sub(self) -> VideoLoop:
        return self.video(SUB_PARAMS)


_default: MediaLibrary | None = None


def default_library() -> MediaLibrary:
    """The process-wide library; caches on disk under $GLOBALEYE_MEDIA_CACHE if set."""
    global _default
    if _default is None:
        _default = MediaLibrary(os.environ.get("GLOBALEYE_MEDIA_CACHE") or None)
    return _default


def write_recording(loop: VideoLoop, path: str | Path, seconds: float = RECORDING_SECONDS) -> Path:
    """Mux *seconds* of the loop into a real MPEG-TS file (H.264 copied, nothing encoded).

    A quick TS file of the live picture, for tools and tests.  The recordings a camera
    plays back are made by :mod:`globaleye.sim.media.recording` (a picture that shows its
    position in the file, and AAC audio).  Written to a temporary name and renamed, so
    readers never see a partial file.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(round(seconds * loop.fps))
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ts.tmp")
    os.close(fd)
    try:
        with av.open(tmp, "w", format="mpegts") as container:
            stream = container.add_stream("h264", rate=loop.fps)
            stream.width, stream.height = loop.width, loop.height
            rate = Fraction(1, loop.fps)
            for i in range(frames):
                unit = loop.frames[i % len(loop.frames)]
                packet = av.Packet(loop.annexb(i))
                packet.pts = packet.dts = i
                packet.time_base = rate
                packet.is_keyframe = unit.keyframe
                packet.stream = stream
                container.mux(packet)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
