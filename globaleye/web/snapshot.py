"""A recent picture of each camera for the device list (§2 item 1, §4; issue 11).

The spec has no command by which the platform asks a camera for a picture: pictures reach the
platform only when the camera uploads them (FTP or the cloud, the cloud storage issue).  So, as
go2rtc's and Frigate's snapshot endpoints do, the picture is decoded from the camera's live
stream: the latest IDR of the camera stream (with its SPS/PPS), one H.264 picture decoded and
encoded as JPEG.

The IDR comes from the RTSP proxy's :class:`~globaleye.proxy.fanout.LiveHub` of that camera
stream, the same one upstream the browsers' live view and the RTSP viewers share (§15 path
selection on the first viewer): the snapshot joins the hub as one more viewer for the moment it
takes the IDR.  A hub already running hands its cached GOP at once (the IDR is its first
picture); an idle one is started, and the first IDR is waited for (at most
:data:`FIRST_PICTURE_TIMEOUT`, then 504).  The snapshot leaves at once and the hub lingers out
as usual, so opening the live view just after the device list finds the upstream still up.

Decoding is CPU work (a few ms for the sub stream, tens for 1080p) and PyAV releases the GIL
inside FFmpeg, so it runs in the reactor's thread pool (``deferToThread``), never on the
reactor, and at most :data:`MAX_DECODES` at a time.  Each (DevID, channel, stream) picture is
kept :data:`CACHE_SECONDS` (the page refreshes its thumbnails as often; at most
:data:`CACHE_ENTRIES` pictures, least recently used first out), and the requests for a camera
that arrive while its picture is being made share that one grab and decode.

PyAV is the ``[web]`` extra (as for the live view's sound, :mod:`globaleye.media.aacenc`),
imported lazily: without it the platform runs and this answers 501.
"""

from __future__ import annotations

import importlib.util
import time
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from globaleye.media import rtp
from globaleye.media.h264au import Picture, PictureAssembler
from globaleye.proxy.fanout import LiveHub, ViewerStream
from globaleye.proxy.platform import Target
from globaleye.web.live import STREAM_TYPES, LiveUnavailable, running_hub

log = Logger()

#: How long a camera stream's picture is kept (and what the page's refresh and the answer's
#: ``Cache-Control: max-age`` say).
CACHE_SECONDS = 60.0
#: At most this many pictures are kept (about 30 KB each for a sub stream).
CACHE_ENTRIES = 256
#: At most this many decodes at a time (the machine's cores are the live view's too).
MAX_DECODES = 2
#: How long the first IDR may take once the upstream runs (a camera's GOP is 1–4 s).
FIRST_PICTURE_TIMEOUT = 8.0
#: JPEG quality as FFmpeg's qscale (2 best .. 31 worst): 5 is visually clean at a third of q=2's size.
JPEG_QSCALE = 5
#: FFmpeg's FF_QP2LAMBDA: global_quality is a qscale in lambda units.
_QP2LAMBDA = 118


def available() -> str | None:
    """None when PyAV can be imported, else why not (for the 501's detail and a log line)."""
    try:
        found = importlib.util.find_spec("av") is not None
    except (ImportError, ValueError):  # ValueError: blocked (sys.modules["av"] is None)
        found = False
    return None if found else "PyAV is not installed (pip install '.[web]')"


@attrs.frozen
class Snapshot:
    """One camera stream's picture: the JPEG, its size, and when it was taken (reactor seconds)."""

    jpeg: bytes
    width: int
    height: int
    taken: float


def decode_jpeg(annexb: bytes, qscale: int = JPEG_QSCALE) -> tuple[bytes, int, int]:
    """One H.264 access unit (Annex B, an IDR with its SPS/PPS) → (JPEG, width, height).

    Pure CPU, no Twisted: it runs in a worker thread.  ValueError when nothing decodes.
    """
    import av  # the [web] extra, imported here so the platform runs without it

    decoder = av.CodecContext.create("h264", "r")
    try:
        frames = list(decoder.decode(av.Packet(annexb))) + list(decoder.decode(None))
    except av.FFmpegError as e:
        raise ValueError(f"the picture does not decode: {e}") from None
    if not frames:
        raise ValueError("the picture does not decode: no frame")
    frame = frames[0]
    try:
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height = frame.width, frame.height
        encoder.pix_fmt = "yuvj420p"  # full-range 4:2:0, what every JPEG decoder takes
        encoder.time_base = Fraction(1, 25)
        encoder.flags |= av.codec.context.Flags.qscale
        encoder.global_quality = qscale * _QP2LAMBDA
        packets = list(encoder.encode(frame.reformat(format="yuvj420p"))) + list(encoder.encode(None))
    except av.FFmpegError as e:
        raise ValueError(f"the picture does not encode as JPEG: {e}") from None
    jpeg = b"".join(bytes(p) for p in packets)
    if not jpeg:
        raise ValueError("the picture does not encode as JPEG: no output")
    return jpeg, frame.width, frame.height


class _IdrGrabber:
    """The snapshot's moment as a viewer of the hub: the first whole IDR picture, then it leaves.

    The :class:`ViewerStream` starts the viewer at an IDR and puts the SDP's SPS/PPS in front of
    an IDR that came bare; the hub's cached GOP, replayed when it joins, gives that IDR at once.
    """

    def __init__(self, hub: LiveHub, description: Any, label: str) -> None:
        self.hub = hub
        self.stream = ViewerStream(self, description, f"snapshot {label}")
        self.video_track = self.stream.video_track
        self.stream.tracks = {self.video_track} if self.video_track is not None else set()
        self.params = list(self.stream.params)
        self.assembler = PictureAssembler(list(self.params))
        self.done: defer.Deferred[Picture] = defer.Deferred()

    def start(self) -> defer.Deferred[Picture]:
        self.hub.add(self.stream)
        return self.done

    def leave(self) -> None:
        self.hub.remove(self.stream)

    # -- Sink

    def blocked(self) -> bool:
        return False

    def send_rtp(self, track: int, data: bytes) -> None:
        if track != self.video_track or self.done.called:
            return
        for picture in self.assembler.feed(data):
            if picture.keyframe and not self.done.called:
                self.done.callback(self._with_parameter_sets(picture))

    def send_rtcp(self, track: int, data: bytes) -> None:
        pass

    def upstream_lost(self, reason: str) -> None:
        if not self.done.called:
            self.done.errback(LiveUnavailable(502, "Camera stream lost", reason))

    def _with_parameter_sets(self, picture: Picture) -> Picture:
        types = {rtp.nal_type(n) for n in picture.nals}
        if rtp.NAL_SPS in types and rtp.NAL_PPS in types:
            return picture
        return Picture(picture.timestamp, tuple(self.params) + picture.nals)


class Snapshots:
    """The recent picture of each camera stream, for the device list: ``Snapshots(live_video)``.

    *live* is the web face's :class:`~globaleye.web.live.LiveVideo` (its proxy factory has the
    hubs and the directory).  *decode* and *in_thread* are for tests (a decode without PyAV, a
    synchronous "thread"); the reactor's clock ages the pictures.
    """

    def __init__(self, live: Any, reactor: Any = None, *, ttl: float = CACHE_SECONDS,
                 max_entries: int = CACHE_ENTRIES, max_decodes: int = MAX_DECODES,
                 first_picture_timeout: float = FIRST_PICTURE_TIMEOUT,
                 decode: Callable[[bytes], tuple[bytes, int, int]] = decode_jpeg,
                 in_thread: Callable[..., defer.Deferred[Any]] = deferToThread) -> None:
        self.live = live
        self.factory = live.factory
        self.reactor = reactor if reactor is not None else live.reactor
        self.ttl = ttl
        self.max_entries = max_entries
        self.first_picture_timeout = first_picture_timeout
        self.decode = decode
        self.in_thread = in_thread
        self.decodes = defer.DeferredSemaphore(max_decodes)
        self.cache: OrderedDict[tuple[str, int, int], Snapshot] = OrderedDict()
        #: The grab and decode in progress per camera stream: its waiters.
        self.pending: dict[tuple[str, int, int], list[defer.Deferred[Snapshot]]] = {}
        #: Counters for the status page and the tests.
        self.decoded = 0
        self.hits = 0
        self.failures = 0

    async def get(self, account: str, target: Target) -> Snapshot:
        """The camera stream's picture (at most ``ttl`` old).  LiveUnavailable: 400 bad stream,
        404 not the account's (the same as a camera that does not exist), 503 offline, 502 no
        path, 504 no picture in time."""
        if target.stream_type not in STREAM_TYPES or target.channel_no < 0:
            raise LiveUnavailable(400, "Invalid request", "the stream is main (1) or sub (2)")
        directory = self.factory.directory
        if not await directory.may_watch(account, target):
            raise LiveUnavailable(404, "No such camera", "no camera with this DevID and channel in your list")
        if not directory.online(target.dev_id):
            raise LiveUnavailable(503, "Camera offline", f"camera {target.dev_id} is offline")
        key = (target.dev_id, target.channel_no, target.stream_type)
        cached = self.cache.get(key)
        if cached is not None and self.reactor.seconds() - cached.taken < self.ttl:
            self.cache.move_to_end(key)
            self.hits += 1
            return cached
        waiter: defer.Deferred[Snapshot] = defer.Deferred()
        waiters = self.pending.get(key)
        if waiters is not None:  # the picture is being made: wait for it
            waiters.append(waiter)
        else:  # the first request makes the picture; the others wait for it
            self.pending[key] = [waiter]
            defer.Deferred.fromCoroutine(self._make(account, target)).addBoth(self._settle, key)
        return await waiter

    def _settle(self, result: Snapshot | Failure, key: tuple[str, int, int]) -> None:
        """The grab and decode are their own task, not the first request's: a browser that
        leaves does not cancel the picture the others wait for."""
        if isinstance(result, Snapshot):
            self._keep(key, result)
        for waiter in self.pending.pop(key, ()):
            if not waiter.called:  # a waiter cancelled (its browser left) has had its answer
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

    def _keep(self, key: tuple[str, int, int], snapshot: Snapshot) -> None:
        self.cache[key] = snapshot
        self.cache.move_to_end(key)
        now = self.reactor.seconds()
        for old in [k for k, s in self.cache.items() if now - s.taken >= self.ttl]:
            del self.cache[old]
        while len(self.cache) > self.max_entries:
            self.cache.popitem(last=False)

    async def _make(self, account: str, target: Target) -> Snapshot:
        asked = self.reactor.seconds()
        picture = await self.idr(account, target)
        try:
            jpeg, width, height, cpu = await self.decodes.run(self.in_thread, self._decode, picture.annexb())
        except ValueError as e:
            self.failures += 1
            log.warn("web snapshot {what}: {why}", what=target.label, why=e)
            raise LiveUnavailable(502, "No picture", str(e)) from None
        self.decoded += 1
        taken = self.reactor.seconds()
        log.info("web snapshot {what}: {width}x{height} JPEG of {size} bytes, {after_ms} ms after the ask, "
                 "decode and encode {cpu_ms} ms CPU", what=target.label, width=width, height=height, size=len(jpeg),
                 after_ms=round((taken - asked) * 1000), cpu_ms=round(cpu * 1000, 1), snapshot_decoded=True)
        return Snapshot(jpeg, width, height, taken)

    def _decode(self, annexb: bytes) -> tuple[bytes, int, int, float]:
        """*decode* and the CPU time it took (its worker thread's, for the log and
        docs/performance.md; a measurement, not logic)."""
        started = time.thread_time()
        jpeg, width, height = self.decode(annexb)
        return jpeg, width, height, time.thread_time() - started

    async def idr(self, account: str, target: Target) -> Picture:
        """The camera stream's latest IDR (with SPS/PPS): from the hub's GOP cache when it runs,
        else after starting it (§15 path selection), at most ``first_picture_timeout`` after."""
        hub, description = await running_hub(self.factory, account, target)
        grabber = _IdrGrabber(hub, description, target.label)
        timer = self.reactor.callLater(self.first_picture_timeout, grabber.done.errback,
                                       LiveUnavailable(504, "No picture", "the camera sent no picture in time"))
        try:
            return await grabber.start()
        finally:
            if timer.active():
                timer.cancel()
            grabber.leave()  # the hub lingers out as usual

    def status(self) -> dict[str, Any]:
        return {"cached": len(self.cache), "pending": len(self.pending), "decoded": self.decoded,
                "hits": self.hits, "failures": self.failures}
