"""HLS for the browsers without Media Source Extensions (issue 11): older iPhone Safari.

Safari before ManagedMediaSource (iOS 17.1) plays live video only as HLS.  HLS with fMP4
segments (RFC 8216 §3.3, CMAF) takes the very bytes the MSE player gets: the camera stream's
:class:`~globaleye.web.live.FragmentFeed` (one per camera stream, already a viewer of the RTSP
proxy's hub) has one more viewer here, :class:`HlsStream`, which strings its fragments into
segments.  No second packager, no transcoding, nothing per browser: every HLS client of a
camera stream reads the same segments from memory.

* Segments start at an IDR (each is independently decodable, ``EXT-X-INDEPENDENT-SEGMENTS``)
  and last at least ``MIN_SEGMENT`` seconds: one GOP, or several short ones.
* The playlist (:func:`render_playlist`) is a live one: version 7, ``EXT-X-MAP`` to the
  initialization segment, a sliding window of the last ``WINDOW`` segments, ``EXT-X-TARGETDURATION``
  the longest segment rounded up (never lowered), ``EXT-X-DISCONTINUITY`` and a new map when the
  camera's SPS changes or an outage cut a segment short.
* The memory is bounded: ``WINDOW`` segments, and a segment that grows past
  ``MAX_SEGMENT_BYTES`` without an IDR is dropped (the next starts at the next IDR).
* HLS clients poll, so "someone watches" is a lease: every request of a stream's playlist,
  init or segment renews it, and ``IDLE`` seconds after the last one the stream leaves its feed
  (and the hub lingers out as for any viewer).  A camera that is lost ends it at once; its
  segments go with it.

Access is checked on every request by the web face (:mod:`globaleye.web.api_hls`), the same
404 for another account's camera as for one that does not exist.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from globaleye.media import rtp
from globaleye.proxy.fanout import GOP_CACHE_BYTES
from globaleye.proxy.platform import Target
from globaleye.web.live import FragmentFeed, LiveUnavailable, LiveVideo

log = Logger()

#: A segment is cut at the first IDR after this many seconds (a GOP at least).
MIN_SEGMENT = 1.0
#: Segments listed in the live playlist (RFC 8216 §6.2.2: at least three target durations).
WINDOW = 6
#: Without a request for this long the stream leaves its feed (at least 3 target durations).
IDLE = 15.0
#: The first playlist is answered once this many segments are whole: a live playlist of one
#: segment makes players start at its very end and stall (Chromium's native HLS gives up; RFC
#: 8216 §6.3.3: a client starts at least three target durations from the end).
START_SEGMENTS = 3
#: How long the first playlist request waits for them.
FIRST_SEGMENT_TIMEOUT = 10.0
#: A segment without an IDR beyond this is dropped (twice the hub's GOP bound).
MAX_SEGMENT_BYTES = 2 * GOP_CACHE_BYTES


@attrs.frozen
class Segment:
    """One media segment: whole fragments from an IDR, *duration* in seconds."""

    number: int
    duration: float
    data: bytes
    init_version: int
    discontinuity: bool = False
    #: How many discontinuities came before it, its own included (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_sequence: int = 0


def render_playlist(segments: list[Segment], target_duration: int, query: str) -> str:
    """The live media playlist (RFC 8216 §4) of *segments* (the window, oldest first).

    URIs are relative to the playlist's own (``.../channels/0/live.m3u8``), *query* the
    ``stream=...`` they carry on.
    """
    if not segments:
        raise ValueError("a live playlist lists at least one segment")
    first = segments[0]
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{target_duration}",
             f"#EXT-X-MEDIA-SEQUENCE:{first.number}",
             f"#EXT-X-DISCONTINUITY-SEQUENCE:{first.discontinuity_sequence}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    version = None
    for segment in segments:
        if segment.discontinuity and version is not None:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.init_version != version:
            version = segment.init_version
            lines.append(f'#EXT-X-MAP:URI="init.mp4?{query}&v={version}"')
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(f"segment.m4s?{query}&n={segment.number}")
    return "\n".join(lines) + "\n"


def video_decode_time(fragment: bytes) -> int | None:
    """The ``tfdt`` of track 1 (the video) in a ``moof`` + ``mdat``; None if there is none."""
    size, kind = struct.unpack_from("!I4s", fragment, 0)
    if kind != b"moof":
        return None
    pos = 8
    while pos + 8 <= size:
        box_size, box_kind = struct.unpack_from("!I4s", fragment, pos)
        if box_kind == b"traf":
            inner, track, decode_time = pos + 8, None, None
            while inner + 8 <= pos + box_size:
                child_size, child_kind = struct.unpack_from("!I4s", fragment, inner)
                if child_kind == b"tfhd":
                    track = struct.unpack_from("!I", fragment, inner + 12)[0]
                elif child_kind == b"tfdt":
                    version = fragment[inner + 8]
                    decode_time = struct.unpack_from("!Q" if version else "!I", fragment, inner + 12)[0]
                inner += max(child_size, 8)
            if track == 1:
                return decode_time
        pos += max(box_size, 8)
    return None


class HlsStream:
    """One camera stream's segments: a viewer of its feed that cuts the fragments at IDRs."""

    def __init__(self, hls: LiveHls, feed: FragmentFeed, key: tuple[str, int, int]) -> None:
        self.hls = hls
        self.feed = feed
        self.key = key
        self.reactor = hls.reactor
        self.closed = False
        self.inits: dict[int, bytes] = {}
        self.init: bytes | None = None
        self.init_version = -1
        self.segments: deque[Segment] = deque(maxlen=WINDOW)
        self.next_number = 0
        self.target_duration = 1
        # The segment being built: its fragments, its first decode time, the last two.
        self.parts: list[bytes] = []
        self.parts_bytes = 0
        self.start: int | None = None
        self.last: int | None = None
        self.frame = 3600
        self.parts_version = 0
        #: The next segment follows a discontinuity; how many there were so far.
        self.discontinuity = False
        self.discontinuities = 0
        self.waiters: list[defer.Deferred[None]] = []
        self.requests = 0
        self._idle = self.reactor.callLater(IDLE, self._expired)

    # -- a viewer of the feed (what FragmentFeed and LiveVideo call)

    def replay(self, init: bytes, gop: tuple[bytes, ...]) -> None:
        for i, data in enumerate(gop):
            self.fragment(init, data, i == 0, False)

    def fragment(self, init: bytes, data: bytes, sync: bool, new_init: bool) -> None:
        if self.closed:
            return
        t = video_decode_time(data)
        if t is None:
            return
        if init is not self.init:  # the first, or the camera's new SPS/PPS: a new EXT-X-MAP
            self._cut(t, discontinuity=self.init is not None)
            self.init = init
            self.init_version += 1
            self.inits[self.init_version] = init
            for version in [v for v in self.inits if v < self.init_version - WINDOW]:
                del self.inits[version]
        elif sync and self.start is not None and t - self.start >= MIN_SEGMENT * rtp.H264_CLOCK:
            self._cut(t)
        elif self.last is not None and not 0 < t - self.last <= rtp.H264_CLOCK:
            # A step in the timeline (an outage the hub recovered from): the segment ends at its
            # last picture, the next starts at an IDR after a discontinuity.
            self._cut(self.last + self.frame, discontinuity=True)
        if self.start is None:
            if not sync:
                return
            self.start, self.parts_version = t, self.init_version
        elif self.last is not None:
            self.frame = t - self.last
        self.last = t
        self.parts.append(data)
        self.parts_bytes += len(data)
        if self.parts_bytes > MAX_SEGMENT_BYTES:
            log.info("web hls {what}: no IDR within {n} bytes; segment dropped", what=self.feed.target.label,
                     n=MAX_SEGMENT_BYTES)
            self._reset(discontinuity=True)

    def close(self, reason: str, problem: LiveUnavailable | None = None) -> None:
        """The camera stream is gone (or nobody asked for a while): leave the feed, drop the segments."""
        if self.closed:
            return
        self.closed = True
        if self._idle.active():
            self._idle.cancel()
        self.feed.leave(self)  # type: ignore[arg-type]  # a viewer of the feed like a BrowserViewer
        if self.hls.streams.get(self.key) is self:
            del self.hls.streams[self.key]
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            d.callback(None)
        log.info("web hls {what}: stopped ({reason}; {n} segments, {k} requests)", what=self.feed.target.label,
                 reason=reason, n=self.next_number, k=self.requests)

    # -- segments

    def _cut(self, end: int, discontinuity: bool = False) -> None:
        """The segment being built is whole at decode time *end*: into the window."""
        if self.parts and self.start is not None and end > self.start:
            duration = (end - self.start) / rtp.H264_CLOCK
            self.segments.append(Segment(self.next_number, duration, b"".join(self.parts), self.parts_version,
                                         self.discontinuity, self.discontinuities))
            self.next_number += 1
            self.target_duration = max(self.target_duration, math.ceil(duration - 0.001))
            self.discontinuity = False
            waiters, self.waiters = self.waiters, []
            for d in waiters:
                d.callback(None)
        self._reset(discontinuity)

    def _reset(self, discontinuity: bool) -> None:
        self.parts, self.parts_bytes, self.start, self.last = [], 0, None, None
        if discontinuity and self.segments and not self.discontinuity:
            self.discontinuity = True
            self.discontinuities += 1

    # -- requests

    def touch(self) -> None:
        self.requests += 1
        if self._idle.active():
            self._idle.reset(IDLE)

    def _expired(self) -> None:
        self.close(f"no request for {IDLE:g} s")

    async def first_segments(self, timeout: float, count: int = START_SEGMENTS) -> bool:
        """Whether *count* segments are (or become, within *timeout*) whole."""
        deadline = self.reactor.seconds() + timeout
        while len(self.segments) < count and not self.closed:
            left = deadline - self.reactor.seconds()
            if left <= 0:
                return False
            d: defer.Deferred[None] = defer.Deferred()
            self.waiters.append(d)
            d.addTimeout(left, self.reactor)
            try:
                await d
            except defer.TimeoutError:
                return False
        return len(self.segments) >= count

    def playlist(self, query: str) -> str:
        return render_playlist(list(self.segments), self.target_duration, query)

    def segment(self, number: int) -> Segment | None:
        for segment in self.segments:
            if segment.number == number:
                return segment
        return None


class LiveHls:
    """The HLS face of the live view: one :class:`HlsStream` per camera stream being watched."""

    def __init__(self, live: LiveVideo) -> None:
        self.live = live
        self.reactor = live.reactor
        self.streams: dict[tuple[str, int, int], HlsStream] = {}

    async def open(self, account: str, target: Target) -> HlsStream:
        """The stream's segments, started (access, online, path: LiveUnavailable) if need be,
        once its first ``START_SEGMENTS`` are whole."""
        stream = self.streams.get(target.key)
        if stream is None or stream.closed:
            feed = await self.live.feed_for(account, target)
            stream = self.streams.get(target.key)  # another request may have started it meanwhile
            if stream is None or stream.closed:
                stream = self.streams[target.key] = HlsStream(self, feed, target.key)
                log.info("web hls {what}: {account} starts the HLS segments", what=target.label, account=account)
                feed.join(stream)  # type: ignore[arg-type]
        stream.touch()
        if not await stream.first_segments(FIRST_SEGMENT_TIMEOUT):
            if stream.closed:
                raise LiveUnavailable(502, "Camera stream lost", "the camera stream ended")
            raise LiveUnavailable(504, "No picture", "the camera sent no picture in time")
        return stream

    def watching(self, target: Target) -> HlsStream | None:
        """The stream's segments if someone watches it now (a request renews the lease)."""
        stream = self.streams.get(target.key)
        if stream is None or stream.closed:
            return None
        stream.touch()
        return stream

    def status(self) -> dict[str, Any]:
        return {"streams": [{"stream": s.feed.target.label, "segments": len(s.segments), "next": s.next_number,
                             "target_duration": s.target_duration, "requests": s.requests}
                            for s in self.streams.values()]}
