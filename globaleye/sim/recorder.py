"""The simulated camera's recorder: its live stream cut into §7.1.1's MPEG-TS files.

§7.1.1: the camera "按照 PS 或 TS 的格式进行封装 H.264 的主码流", "以 5 分钟录像为基准",
each file named ``DevID_ChannelNo_YYYYMMDDHHMMSS.ts``.  What is recorded is exactly
what the camera serves live over RTSP: the live loop of the stream's current encoding
(:mod:`globaleye.sim.media.source`), frame ``int(t * fps)`` of the loop at reactor time
``t``, the same bytes, nothing encoded.  Files are cut on the device clock at multiples
of the period (10:00:00, 10:05:00, ... for 5 minutes), which are whole seconds, and the
live loop has an IDR (with SPS/PPS in front) every second, so every file starts with an
IDR and plays alone.  One :class:`~globaleye.sim.media.tsmux.TsMuxer` per channel writes
all its files, and the timestamps count from the recorder's start, so consecutive files
concatenate into one gapless stream.

Why a file is written only once its period is over: the frames of ``[start, end)`` are
known from the clock alone, so the recorder holds no per-frame timer (ten thousand
cameras at 25 fps would be 250,000 timer calls a second) and no buffer; at the cut the
whole file is muxed and written in a worker thread (a 5-minute 1 Mbit/s file is 38 MB:
never on the reactor thread), write-then-rename, so nobody sees half a file.

Compromises (docs/simulator.md): video only (the live G.711 has no standard TS stream
type; the 72H playback files carry AAC, these carry none); a 60H change of encoding
takes effect from the next file; recording that becomes wanted mid-period starts at
the next cut.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from globaleye.media.names import RecordingName
from globaleye.sim.media.source import LoopParams, MediaLibrary, VideoLoop
from globaleye.sim.media.tsmux import PCR_LEAD, TS_CLOCK, TsMuxer
from globaleye.util.clock import BEIJING

log = Logger()

#: Runs a blocking function somewhere else (a worker thread) and gives a Deferred of its result.
Runner = Callable[..., Deferred[Any]]


def thread_runner(reactor: Any, pool: Any = None) -> Runner:
    """Blocking work in *pool* (default: the reactor's), or in place on a reactor without
    threads (``task.Clock`` in unit tests)."""
    from twisted.internet.threads import deferToThreadPool

    if pool is None:
        get = getattr(reactor, "getThreadPool", None)
        if get is None:
            return lambda f, *a, **kw: maybeDeferred(f, *a, **kw)
        pool = get()
    return lambda f, *a, **kw: deferToThreadPool(reactor, pool, f, *a, **kw)


def device_time(seconds: float) -> datetime.datetime:
    """Reactor seconds as the device's clock shows them: naive Beijing time (§7.1 names)."""
    return datetime.datetime.fromtimestamp(seconds, BEIJING).replace(tzinfo=None)


@attrs.frozen
class RecordedFile:
    """One finished file, waiting in the camera's local storage for its upload."""

    dev_id: str
    channel_no: int
    name: str
    path: Path
    start: float  # reactor seconds of its first picture
    seconds: float
    frames: int
    size: int


def write_segment(muxer: TsMuxer, loop: VideoLoop, first: int, end: int, epoch: int, path: Path) -> tuple[int, int]:
    """Mux loop frames ``[first, end)`` (stream frame numbers: ``int(t * fps)``) into *path*.

    Timestamps are 90 kHz ticks since *epoch* (reactor seconds, whole), so files of one
    muxer follow each other without a gap.  The file starts at the first IDR at or after
    *first*.  Written to ``<path>.part`` and renamed.  Blocking: run it in a worker thread.
    Returns (pictures, bytes).
    """
    frames = loop.frames
    fps = loop.fps
    n = first
    while n < end and not frames[n % len(frames)].keyframe:
        n += 1
    tmp = path.with_name(path.name + ".part")
    written = 0
    try:
        with open(tmp, "wb") as f:
            for k in range(n, end):
                unit = frames[k % len(frames)]
                f.write(muxer.access_unit(unit.nals, PCR_LEAD + k * TS_CLOCK // fps - epoch * TS_CLOCK,
                                          unit.keyframe))
                written += 1
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return written, path.stat().st_size


@attrs.define
class _Open:
    """The file being recorded: where it starts and the loop it records."""

    start: int
    loop: Deferred[VideoLoop]
    params: LoopParams


class ChannelRecorder:
    """Cuts one channel's live stream into files every *period* seconds of the device clock.

    ``wanted()`` is asked at each cut: the stream to record next (its loop's
    parameters), or None to record nothing for the next period.  Each finished file
    goes to ``on_file``.  Writes are serialised (one muxer per channel) and run through
    ``run`` (a worker thread).
    """

    def __init__(self, clock: IReactorTime, media: MediaLibrary, dev_id: str, channel_no: int, *,
                 period: int, spool: Path, wanted: Callable[[], LoopParams | None],
                 on_file: Callable[[RecordedFile], None], run: Runner, reactor: Any = None) -> None:
        if int(period) != period or period < 1:
            raise ValueError(f"the recording period must be a whole number of seconds, not {period!r}")
        self.clock = clock
        self.reactor = reactor if reactor is not None else clock
        self.media = media
        self.dev_id = dev_id
        self.channel_no = channel_no
        self.period = int(period)
        self.spool = spool
        self.wanted = wanted
        self.on_file = on_file
        self.run = run
        self.muxer = TsMuxer()
        self.epoch: int | None = None
        self.files = 0
        self.failures = 0
        self._open: _Open | None = None
        self._next = 0
        self._call: IDelayedCall | None = None
        self._writes = DeferredLock()
        self._pending: set[Deferred[None]] = set()

    @property
    def recording(self) -> bool:
        return self._open is not None

    def start(self) -> None:
        if self._call is None:
            self._schedule()

    def stop(self) -> Deferred[None]:
        """Stop cutting; the file being recorded is dropped, files being written are finished."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._open = None
        from twisted.internet.defer import gatherResults

        return gatherResults(list(self._pending)).addCallback(lambda _: None)

    def _schedule(self) -> None:
        now = self.clock.seconds()
        self._next = (math.floor(now / self.period) + 1) * self.period
        self._call = self.clock.callLater(self._next - now, self._cut)

    def _cut(self) -> None:
        boundary = self._next
        if self._open is not None:
            self._close(self._open, boundary)
            self._open = None
        try:
            params = self.wanted()
        except Exception:
            log.failure("camera {dev}: cannot tell whether channel {ch} records", dev=self.dev_id, ch=self.channel_no)
            params = None
        if params is not None:
            if self.epoch is None:
                self.epoch = boundary
            self._open = _Open(boundary, self.media.video_async(params, self.reactor), params)
        self._schedule()

    def _close(self, segment: _Open, end: int) -> None:
        name = str(RecordingName(self.dev_id, self.channel_no, device_time(segment.start)))
        path = self.spool / name
        epoch = self.epoch if self.epoch is not None else segment.start

        async def write() -> None:
            loop = await segment.loop
            fps = loop.fps
            frames, size = await self._writes.run(self.run, write_segment, self.muxer, loop, segment.start * fps,
                                                  end * fps, epoch, path)
            if frames == 0:
                return
            self.files += 1
            self.on_file(RecordedFile(self.dev_id, self.channel_no, name, path, float(segment.start),
                                      frames / fps, frames, size))

        d = Deferred.fromCoroutine(write())
        self._pending.add(d)

        def done(result: Any) -> None:
            self._pending.discard(d)
            if isinstance(result, Failure):
                self.failures += 1
                log.failure("camera {dev}: could not write {name}", result, dev=self.dev_id, name=name)

        d.addBoth(done)
