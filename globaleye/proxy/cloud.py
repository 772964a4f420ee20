"""Cloud recordings (§7.1.2) through the RTSP proxy: ``rtsp://proxy/cloud/<DevID>/<ChannelNo>/<start>``.

The camera's 5-minute TS files in the cloud store (§7.1.1, bucket ``GlobalEyeRecord``)
are played to an ordinary player as one programme: npt 0 is the asked start time,
``Range: npt=x-`` seeks across files, ``Scale`` gives the §10.1 speeds, a file boundary
is invisible (:mod:`globaleye.media.rtsp.sequence`).

What the proxy needs from the platform is declared here, small, as Protocols (each face
declares the interface it needs): :class:`CloudFiles` answers which files of a camera a
given account may play between two times — it decides access too (an account that
neither owns nor is shared the camera gets ``None``, exactly as for a camera that does
not exist, and the proxy answers both 404).  The application's cloud index
(``globaleye.app.cloud``) is the implementation in the platform; tests use a fake.

Reading: objects come through :class:`~globaleye.s3.backend.ObjectBackend` into a bounded
local cache (:class:`ObjectCache`, whole files named by bucket, key and ETag, so an
overwritten object is fetched again), in pieces, written by a worker thread; then
indexed in a worker thread (:class:`~globaleye.media.tsfile.Recording`).  A backend that
keeps objects as files may offer ``local_path(bucket, key) -> str | None`` (plain or
``async``; an optional method, looked up with ``getattr``, not part of the Protocol): the
file is then read where it is, with no copy.  An evicted cache file that a viewer still
plays stays readable (its descriptor is open; POSIX unlink semantics).
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from globaleye.media import rtp
from globaleye.media.rtsp.sdp import audio_lines, h264_lines, sdp_body, session_lines
from globaleye.media.rtsp.sequence import Position
from globaleye.media.tsfile import Gop, Recording, index_recording
from globaleye.s3.backend import ObjectBackend, StorageError
from globaleye.util.clock import parse_protocol_time, protocol_time

log = Logger()

#: The longest programme one URL may name (the default end is the start plus this).
MAX_SPAN = datetime.timedelta(hours=24)
#: Bytes read from the backend per request while filling the cache.
READ_PIECE = 4 << 20
#: The largest object the cache takes (a 5-minute main-stream file is ~10-100 MB).
MAX_OBJECT = 1 << 30
TIME_FORMAT = "%Y%m%d%H%M%S"


@attrs.frozen
class CloudFile:
    """One stored recording: where it is and what time it covers (device/Beijing time, §7.1 names)."""

    bucket: str
    key: str
    start: datetime.datetime
    duration: float  # seconds


class CloudFiles(Protocol):
    """The one question the proxy asks the platform's cloud index."""

    async def cloud_files(self, account: str, dev_id: str, channel_no: int, start: datetime.datetime,
                          end: datetime.datetime) -> Sequence[CloudFile] | None:
        """The recordings of ``dev_id``/``channel_no`` that overlap ``[start, end)``, oldest first;
        None when ``account`` may not see that camera (or it does not exist: the same answer)."""


class Recordings(Protocol):
    """What :class:`IndexedFiles` asks the application layer (``globaleye.app.cloud.CloudService``)."""

    async def recordings(self, account: str, dev_id: str, channel_no: int, start: float,
                         end: float) -> Sequence[Any] | None: ...


@attrs.frozen
class IndexedFiles:
    """:class:`CloudFiles` over the platform's cloud index: device (Beijing) times of the URL to the
    index's POSIX seconds and back; access decided by the application layer."""

    cloud: Recordings

    async def cloud_files(self, account: str, dev_id: str, channel_no: int, start: datetime.datetime,
                          end: datetime.datetime) -> Sequence[CloudFile] | None:
        begin = parse_protocol_time(f"{start:{TIME_FORMAT}}")
        finish = parse_protocol_time(f"{end:{TIME_FORMAT}}")
        found = await self.cloud.recordings(account, dev_id, channel_no, begin, finish)
        if found is None:
            return None
        files = []
        for obj in found:
            when = parse_time(protocol_time(obj.start))
            if when is not None:
                files.append(CloudFile(obj.bucket, obj.key, when, float(obj.duration)))
        return sorted(files, key=lambda f: f.start)


def parse_time(text: str) -> datetime.datetime | None:
    if len(text) != 14 or not text.isdigit():
        return None
    try:
        return datetime.datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        return None


class ObjectCache:
    """Whole objects fetched into a directory, at most ``max_bytes`` of them (least recently used out)."""

    def __init__(self, backend: ObjectBackend, directory: str | Path, max_bytes: int = 2 << 30) -> None:
        self.backend = backend
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._files: OrderedDict[str, int] = OrderedDict()  # cache path -> size
        self._fetching: dict[str, _Once] = {}
        self.fetches = 0

    async def path(self, bucket: str, key: str) -> str:
        """A local file holding ``bucket/key`` (:class:`StorageError` if it cannot be had)."""
        local = getattr(self.backend, "local_path", None)
        if callable(local):
            found = local(bucket, key)
            if inspect.isawaitable(found):
                found = await found
            if found:
                return str(found)
        info = await self.backend.head(bucket, key)
        if info is None:
            raise StorageError(f"no object {bucket}/{key}")
        if info.size > MAX_OBJECT or info.size > self.max_bytes:
            raise StorageError(f"{bucket}/{key}: {info.size} bytes is more than the cache takes")
        name = hashlib.sha256(f"{bucket}\0{key}\0{info.etag}".encode()).hexdigest()[:32] + ".ts"
        path = str(self.directory / name)
        if path in self._files:
            self._files.move_to_end(path)
            return path
        pending = self._fetching.get(path)
        if pending is None:  # one fetch however many viewers ask at once
            pending = self._fetching[path] = _Once(self._fetch(bucket, key, info.size, path))
        try:
            return await pending.wait()
        finally:
            if pending.done:
                self._fetching.pop(path, None)

    async def _fetch(self, bucket: str, key: str, size: int, path: str) -> str:
        await deferToThread(self.directory.mkdir, parents=True, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.part"
        fd = await deferToThread(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            offset = 0
            while offset < size:
                piece = await self.backend.read(bucket, key, offset, min(READ_PIECE, size - offset))
                if not piece:
                    raise StorageError(f"{bucket}/{key} ended at {offset} of {size} bytes")
                await deferToThread(_write_all, fd, piece)
                offset += len(piece)
        except BaseException:
            await deferToThread(_close_unlink, fd, tmp)
            raise
        await deferToThread(_close_rename, fd, tmp, path)
        self.fetches += 1
        self._files[path] = size
        await self._evict()
        return path

    async def _evict(self) -> None:
        total = sum(self._files.values())
        while total > self.max_bytes and len(self._files) > 1:
            old, size = self._files.popitem(last=False)
            total -= size
            await deferToThread(_unlink, old)


class _Once:
    """A coroutine (or Deferred) run once whose result (or failure) any number of waiters get."""

    def __init__(self, work: Any) -> None:
        self.done = False
        self.result: Any = None
        self._waiters: list[Deferred[Any]] = []
        (work if isinstance(work, Deferred) else Deferred.fromCoroutine(work)).addBoth(self._finished)

    def _finished(self, result: Any) -> None:
        self.done, self.result = True, result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fire(waiter)

    def _fire(self, waiter: Deferred[Any]) -> None:
        if isinstance(self.result, Failure):
            waiter.errback(self.result)
        else:
            waiter.callback(self.result)

    def wait(self) -> Deferred[Any]:
        waiter: Deferred[Any] = Deferred()
        if self.done:
            self._fire(waiter)
        else:
            self._waiters.append(waiter)
        return waiter


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _close_unlink(fd: int, path: str) -> None:
    os.close(fd)
    _unlink(path)


def _close_rename(fd: int, tmp: str, path: str) -> None:
    os.close(fd)
    os.replace(tmp, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@attrs.define(eq=False)
class CloudPlayback:
    """What the proxy needs for ``/cloud/`` URLs: the platform's index and the object store.

    Open recordings are shared by every viewer of the same file (one index, one descriptor,
    one LRU of ``gop_cache`` read GOPs, so viewers at the same point read it once), counted,
    closed when the last viewer lets go.
    """

    files: CloudFiles
    cache: ObjectCache
    gop_cache: int = 16
    _open: dict[str, list[Any]] = attrs.field(factory=dict, init=False)  # path -> [_Once, users]
    indexed: int = attrs.field(default=0, init=False)

    def read_gop(self, recording: Recording, gop: int) -> Deferred[Gop]:
        return deferToThread(recording.read_gop, gop)

    async def acquire(self, bucket: str, key: str) -> Recording:
        """``bucket/key`` fetched and indexed (in worker threads); :meth:`release` it when done."""
        for attempt in (1, 2):
            path = await self.cache.path(bucket, key)
            entry = self._open.get(path)
            if entry is None:
                entry = self._open[path] = [_Once(deferToThread(self._index, path)), 0]
            entry[1] += 1
            try:
                recording: Recording = await entry[0].wait()
                return recording
            except FileNotFoundError:  # evicted between fetch and open by another viewer's fetch
                self._forget(path, entry)
                if attempt == 2:
                    raise
            except BaseException:
                self._forget(path, entry)
                raise
        raise AssertionError("unreachable")

    def _index(self, path: str) -> Recording:
        self.indexed += 1  # (a worker thread; read by tests only)
        return Recording(index_recording(path), cache=self.gop_cache)

    def _forget(self, path: str, entry: list[Any]) -> None:
        if self._open.get(path) is entry:
            del self._open[path]

    def release(self, recording: Recording) -> None:
        path = recording.index.path
        entry = self._open.get(path)
        if entry is None or not entry[0].done or entry[0].result is not recording:
            recording.close()  # not shared (any more)
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._open[path]
            recording.close()

    @property
    def open_files(self) -> int:
        return len(self._open)


class Programme:
    """The files one ``/cloud/`` URL names, opened as needed, on one npt timeline.

    npt 0 is the asked start (inside the first file when the first file began earlier);
    file *i* begins at ``offsets[i]`` on the files' own timeline (their durations end to end:
    a gap between two recordings is not played as a pause).  An asked end inside the last
    file cuts it there (``cut``: seconds into it).
    """

    def __init__(self, playback: CloudPlayback, files: Sequence[CloudFile], start: datetime.datetime,
                 label: str, end: datetime.datetime | None = None) -> None:
        self.playback = playback
        self.files = list(files)
        self.label = label
        self.offsets: list[float] = []
        at = 0.0
        for f in self.files:
            self.offsets.append(at)
            at += f.duration
        self.lead = max(0.0, min((start - self.files[0].start).total_seconds(), self.files[0].duration))
        last = self.files[-1]
        cut = (end - last.start).total_seconds() if end is not None else None
        self.cut = cut if cut is not None and 0 < cut < last.duration else None
        self.total = max(0.0, (at if self.cut is None else self.offsets[-1] + self.cut) - self.lead)
        self._open: dict[int, _Once] = {}
        self._recordings: list[Recording] = []
        self.closed = False

    def open(self, segment: int) -> Deferred[Recording]:
        """The recording of file *segment*, fetched and indexed once per programme."""
        once = self._open.get(segment)
        if once is None:
            once = self._open[segment] = _Once(self._opening(segment))
        return once.wait()

    async def _opening(self, segment: int) -> Recording:
        f = self.files[segment]
        began = time.monotonic()
        recording = await self.playback.acquire(f.bucket, f.key)
        if self.closed:
            self.playback.release(recording)
            raise StorageError("programme closed")
        self._recordings.append(recording)
        log.debug("{label}: file {key} indexed in {t:.3f} s", label=self.label, key=f.key,
                  t=time.monotonic() - began)
        return recording

    async def end_frame(self) -> int | None:
        """Where the last file stops: the first picture at or after the asked end (None: its own end)."""
        if self.cut is None:
            return None
        last = await self.open(len(self.files) - 1)
        return last.index.frame_at(self.cut)

    async def locate(self, npt: float) -> tuple[Position, Recording]:
        """The IDR at or before *npt* (seconds from the asked start), in the file that holds it."""
        at = min(max(0.0, npt), self.total) + self.lead
        segment = 0
        for i, offset in enumerate(self.offsets):
            if offset <= at:
                segment = i
        recording = await self.open(segment)
        within = min(at - self.offsets[segment], recording.index.duration)
        if within >= recording.index.duration and segment + 1 < len(self.files):
            segment += 1
            recording = await self.open(segment)
            within = 0.0
        return Position(segment, recording.index.seek(within)), recording

    def npt(self, position: Position, recording: Recording) -> float:
        return max(0.0, self.offsets[position.segment] + recording.index.npt(position.frame) - self.lead)

    def close(self) -> None:
        self.closed = True
        for recording in self._recordings:
            self.playback.release(recording)
        self._recordings.clear()


def recording_tracks(recording: Recording) -> list[tuple[int, int]]:
    """(payload type, clock rate) of each track a programme has, by its first file: H.264, then AAC."""
    ix = recording.index
    tracks = [(rtp.PT_H264, rtp.H264_CLOCK)]
    if ix.has_audio:
        tracks.append((rtp.PT_AAC, ix.sample_rate))
    return tracks


def programme_sdp(recording: Recording, total: float, base: str, host: str, name: str) -> bytes:
    """DESCRIBE's answer: H.264 (and the file's AAC as RFC 3640), the programme's length in ``a=range``."""
    ix = recording.index
    lines = [*session_lines(host, abs(hash(name)) % 10**10, name, total), *h264_lines(ix, f"{base}/trackID=0")]
    if ix.has_audio:
        lines += audio_lines(rtp.PT_AAC, f"MPEG4-GENERIC/{ix.sample_rate}/{ix.channels}", f"{base}/trackID=1",
                             rtp.aac_hbr_fmtp(ix.audio_config))
    return sdp_body(lines)
