"""One upstream, many viewers: the live hub and each viewer's view of the stream.

Producer/consumer with nothing queued in between: the hub pushes each packet to
every viewer as it arrives, and a viewer whose sink cannot take more (a TCP viewer
whose socket buffer is full: Twisted paused it) drops pictures instead, and
rejoins at the next IDR once it drains.  So a slow viewer costs one socket buffer
plus at most one picture, never stalls the others, and the hub holds no backlog.

Each viewer has its own SSRC, sequence numbers and timestamp base per track: it
starts at an IDR (SPS and PPS are put in front when the camera's IDR comes without
them), and the pictures it skipped leave no holes in its sequence numbers, so a
player sees one continuous stream rather than loss.

First picture fast (the GOP cache, as MediaMTX and go2rtc do): the hub keeps the
packets of the current GOP -- from the last key picture (SPS/PPS/IDR) on, audio
included, at most ``GOP_CACHE_BYTES`` -- and replays them to a new viewer as soon as
it is added (after its PLAY answer), so it starts on that IDR at once instead of
waiting up to a GOP for the next one.  The upstream's first IDR, which arrives while
the path is still being tested and before any viewer exists, is kept the same way.
The cache is dropped at the next key picture, and given up (until the next one) if
a GOP outgrows the bound.
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from globaleye.media import rtp
from globaleye.proxy import h264
from globaleye.proxy.paths import Attempt, NoPath
from globaleye.proxy.sdp import SessionDescription
from globaleye.proxy.upstream import UpstreamSession

log = Logger()

#: The most a hub keeps of the current GOP for new viewers (about 16 s of a 1 Mbit/s stream).
GOP_CACHE_BYTES = 2 * 1024 * 1024


_U32 = struct.Struct("!I")
#: "$", channel, length, then the RTP header's first two bytes, sequence number, timestamp, SSRC.
_INTERLEAVED_RTP = struct.Struct("!BBHBBHII")


class Sink(Protocol):
    def blocked(self) -> bool: ...

    def send_rtp(self, track: int, data: bytes) -> None: ...

    def send_rtcp(self, track: int, data: bytes) -> None: ...

    def upstream_lost(self, reason: str) -> None: ...


class ViewerStream:
    """What one viewer receives of a stream (live hub or its own playback upstream)."""

    def __init__(self, sink: Sink, description: SessionDescription, label: str = "") -> None:
        self.sink = sink
        self.label = label
        self.video_track = description.track("video")
        self.video_pt = description.media[self.video_track].payload_type if self.video_track is not None else None
        self.params = description.media[self.video_track].sprop_parameter_sets if self.video_track is not None else []
        n = len(description.media)
        self.seq = [secrets.randbelow(0x10000) for _ in range(n)]
        self.first_seq = list(self.seq)
        self.ssrc = [secrets.randbits(32) for _ in range(n)]
        self.ts_offset = [secrets.randbits(32) for _ in range(n)]
        self.tracks: set[int] = set(range(n))  # the tracks this viewer SET UP
        self.waiting = True  # for an IDR
        self.started = False
        self.in_picture = False
        self.frames_sent = 0
        self.frames_dropped = 0
        self.packets_sent = 0
        self.started_at = time.monotonic()
        self.first_frame_after: float | None = None
        self.replaying = False
        #: TCP fast path, set by the server: the interleaved RTP channel of each track and the
        #: transport's write.  Then one struct.pack makes the viewer's header and the "$"
        #: framing together and the packet goes straight to the transport (see _out).
        self.channels: dict[int, int] = {}
        self.write: Callable[[bytes], None] | None = None

    def _blocked(self) -> bool:
        # A GOP replay goes out whole: it is bounded (GOP_CACHE_BYTES), and cutting it at the
        # transport's 64 KiB mark would leave the viewer frozen on its IDR until the next one.
        return not self.replaying and self.sink.blocked()

    def replay(self, packets: tuple[tuple[int, bytes, int, int, bool], ...]) -> None:
        """The hub's cached GOP, before any live packet (see the module docstring)."""
        self.replaying = True
        try:
            for track, data, ts, offset, start in packets:
                self.rtp(track, data, ts, offset, start)
        finally:
            self.replaying = False

    def _out(self, track: int, data: bytes) -> None:
        seq = self.seq[track]
        self.seq[track] = (seq + 1) & 0xFFFF
        self.packets_sent += 1
        channel = self.channels.get(track)
        if channel is not None and self.write is not None and len(data) <= 0xFFFF:
            # The per-packet, per-viewer cost of a fan-out (docs/performance.md): h264.rewrite_rtp
            # and rtsp.message.encode_interleaved in one pack and one write.
            ts = (_U32.unpack_from(data, 4)[0] + self.ts_offset[track]) & 0xFFFFFFFF
            self.write(_INTERLEAVED_RTP.pack(0x24, channel, len(data), data[0], data[1], seq, ts, self.ssrc[track])
                       + data[12:])
            return
        self.sink.send_rtp(track, h264.rewrite_rtp(data, seq, self.ts_offset[track], self.ssrc[track]))

    def rtp(self, track: int, data: bytes, timestamp: int, payload_offset: int, picture_start: bool) -> None:
        if track not in self.tracks:
            return
        if track != self.video_track:
            if self.started and not self.waiting and not self._blocked():
                self._out(track, data)
            return
        if picture_start:
            self.in_picture = False
            if self._blocked():
                self.waiting = True
                self.frames_dropped += 1
                return
            payload = data[payload_offset:]
            if self.waiting:
                if not h264.is_key_start(payload):
                    if self.started:
                        self.frames_dropped += 1
                    return
                self.waiting = False
                if h264.first_nal_type(payload) == rtp.NAL_IDR and self.params and self.video_pt is not None:
                    for nal in self.params:  # the camera's IDR came bare: SPS/PPS from the SDP first
                        self.sink.send_rtp(track, h264.single_nal_packet(
                            nal, self.video_pt, self.seq[track], (timestamp + self.ts_offset[track]) & 0xFFFFFFFF,
                            self.ssrc[track]))
                        self.seq[track] = (self.seq[track] + 1) & 0xFFFF
                if not self.started:
                    self.started = True
                    self.first_frame_after = time.monotonic() - self.started_at
            self.in_picture = True
            self.frames_sent += 1
        if self.in_picture:
            self._out(track, data)

    def rtcp(self, track: int, data: bytes) -> None:
        if track in self.tracks and self.started and not self.sink.blocked():
            report = h264.rewrite_rtcp(data, self.ts_offset[track], self.ssrc[track])
            if report is not None:
                self.sink.send_rtcp(track, report)

    def stats(self) -> dict[str, Any]:
        return {"frames_sent": self.frames_sent, "frames_dropped": self.frames_dropped,
                "packets_sent": self.packets_sent, "waiting_for_idr": self.waiting,
                "first_frame_ms": None if self.first_frame_after is None else round(self.first_frame_after * 1000)}


class PictureTracker:
    """Which packets open a picture: the one after a marker, or a new timestamp (RFC 6184 §5.1)."""

    def __init__(self) -> None:
        self.after_marker: dict[int, bool] = {}
        self.last_ts: dict[int, int] = {}

    def feed(self, track: int, data: bytes) -> tuple[int, int, bool] | None:
        try:
            _pt, _seq, ts, marker, offset = h264.rtp_fields(data)
        except rtp.RtpError:
            return None
        start = self.after_marker.get(track, True) or self.last_ts.get(track) != ts
        self.after_marker[track] = marker
        self.last_ts[track] = ts
        return ts, offset, start


Connector = Callable[[str, Callable[[UpstreamSession], None]], Awaitable[tuple[UpstreamSession, list[Attempt]]]]


class LiveHub:
    """Every viewer of one camera stream, sharing one upstream.

    Starts the upstream for the first viewer (``ensure``), stops it ``linger``
    seconds after the last one leaves, so a player that reconnects (or a page
    reload) finds it still running.  If the camera goes away, every viewer is told
    and the hub is idle again: the next viewer starts a new path selection.
    """

    def __init__(self, key: tuple[str, int, int], label: str, connect: Connector, reactor: Any,
                 linger: float, on_idle: Callable[[LiveHub], None] | None = None) -> None:
        self.key = key
        self.label = label
        self.connect = connect
        self.reactor = reactor
        self.linger = linger
        self.on_idle = on_idle
        self.viewers: set[ViewerStream] = set()
        self.upstream: UpstreamSession | None = None
        self.description: SessionDescription | None = None
        self.attempts: list[Attempt] = []
        self.tracker = PictureTracker()
        self.video_track: int | None = None
        #: The current GOP's packets (track, data, timestamp, payload offset, picture start); None: none.
        self.gop: list[tuple[int, bytes, int, int, bool]] | None = None
        self.gop_bytes = 0
        self.gop_replays = 0
        self.starting: list[defer.Deferred[SessionDescription]] | None = None
        self.starts = 0
        self.stops = 0
        self.started_at: float | None = None
        self.last_stop_reason = ""
        self._linger_call: Any = None

    @property
    def running(self) -> bool:
        return self.upstream is not None and not self.upstream.closed

    async def ensure(self, account: str) -> SessionDescription:
        """The upstream's SDP, starting the upstream if needed (one start for concurrent callers)."""
        if self.running and self.description is not None:
            self._schedule_linger()
            return self.description
        if self.starting is not None:
            d: defer.Deferred[SessionDescription] = defer.Deferred()
            self.starting.append(d)
            return await d
        self.starting = []
        try:
            session, attempts = await self.connect(account, self._attach)
        except NoPath as e:
            self.attempts = e.attempts
            waiting, self.starting = self.starting, None
            for w in waiting:
                w.errback(e)
            raise
        except BaseException as e:
            waiting, self.starting = self.starting, None
            for w in waiting:
                w.errback(e)
            raise
        self.attempts = attempts
        self.upstream = session
        assert session.description is not None
        self.description = session.description
        self.starts += 1
        self.started_at = time.time()
        waiting, self.starting = self.starting, None
        for w in waiting:
            w.callback(session.description)
        self._schedule_linger()
        return session.description

    def _attach(self, session: UpstreamSession) -> None:
        self.tracker = PictureTracker()
        self.video_track = session.description.track("video") if session.description is not None else None
        self._drop_gop()
        session.on_rtp = self._rtp
        session.on_rtcp = self._rtcp
        session.on_lost = self._lost

    def _rtp(self, track: int, data: bytes) -> None:
        facts = self.tracker.feed(track, data)
        if facts is None:
            return
        ts, offset, start = facts
        if track == self.video_track and start and h264.is_key_start(data[offset:]):
            self.gop, self.gop_bytes = [], 0  # a new GOP: the previous one is no longer needed
        if self.gop is not None:
            self.gop_bytes += len(data)
            if self.gop_bytes > GOP_CACHE_BYTES:
                log.info("live {label}: GOP larger than {n} bytes; not cached until the next IDR",
                         label=self.label, n=GOP_CACHE_BYTES)
                self._drop_gop()
            else:
                self.gop.append((track, data, ts, offset, start))
        for viewer in tuple(self.viewers):
            viewer.rtp(track, data, ts, offset, start)

    def _drop_gop(self) -> None:
        self.gop, self.gop_bytes = None, 0

    def _rtcp(self, track: int, data: bytes) -> None:
        for viewer in tuple(self.viewers):
            viewer.rtcp(track, data)

    def _lost(self, reason: str) -> None:
        log.warn("live {label}: upstream on path {path} lost ({reason}); {n} viewers disconnected",
                 label=self.label, path=self.upstream.path if self.upstream else "?", reason=reason,
                 n=len(self.viewers))
        self.last_stop_reason = f"upstream lost: {reason}"
        self.upstream = None
        self.stops += 1
        self._drop_gop()
        for viewer in tuple(self.viewers):
            viewer.sink.upstream_lost(reason)
        self.viewers.clear()
        self._idle()

    def add(self, viewer: ViewerStream) -> None:
        """A viewer that has been answered PLAY: it gets the cached GOP now, then the live packets."""
        self.viewers.add(viewer)
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        self._linger_call = None
        if self.gop:
            self.gop_replays += 1
            viewer.replay(tuple(self.gop))

    def remove(self, viewer: ViewerStream) -> None:
        self.viewers.discard(viewer)
        self._schedule_linger()

    def _schedule_linger(self) -> None:
        if self.viewers or not self.running:
            return
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.reset(self.linger)
            return
        self._linger_call = self.reactor.callLater(self.linger, self._linger_over)

    def _linger_over(self) -> None:
        self._linger_call = None
        if not self.viewers and self.running:
            self.stop(f"no viewer for {self.linger:g} s")

    def stop(self, reason: str) -> None:
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        self._linger_call = None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            log.info("live {label}: upstream on path {path} stopped: {reason}", label=self.label,
                     path=upstream.path, reason=reason)
            self.stops += 1
            self.last_stop_reason = reason
            upstream.close()
        self._drop_gop()
        for viewer in tuple(self.viewers):
            viewer.sink.upstream_lost(reason)
        self.viewers.clear()
        self._idle()

    def _idle(self) -> None:
        if self.on_idle is not None:
            self.on_idle(self)

    def status(self) -> dict[str, Any]:
        upstream = self.upstream
        return {
            "stream": self.label, "kind": "live", "running": self.running,
            "path": upstream.path if upstream is not None else None,
            "upstream_packets": upstream.packets if upstream is not None else 0,
            "upstream_bytes": upstream.bytes if upstream is not None else 0,
            "viewers": [v.stats() for v in self.viewers], "starts": self.starts, "stops": self.stops,
            "gop_cache": {"packets": len(self.gop or ()), "bytes": self.gop_bytes, "replays": self.gop_replays},
            "last_stop_reason": self.last_stop_reason,
            "attempts": [a.as_dict() for a in self.attempts],
        }
