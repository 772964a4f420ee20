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

The upstream comes back by itself (as go2rtc's producers and MediaMTX's sources do): when
the camera drops it (a reboot, a Wi-Fi blip, a new NAT mapping) or it goes silent for
``media_timeout`` seconds, a hub that has viewers keeps them connected and runs the §15 path
selection again, with backoff, for up to ``recover_timeout`` seconds.  The viewers then go
on in the same RTSP session: their sequence numbers continue, each track's timestamps
continue from where they stopped plus the time the outage took (the new camera session has
new RTP bases), and they start again at the new session's first IDR.  Only if the camera
stays away, or comes back with a different stream (other tracks or payload types, which the
viewers' SDP cannot describe), are the viewers disconnected.
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger

from globaleye.media import h264rtp, rtp
from globaleye.media.rtsp.paths import Attempt, NoPath, summarize
from globaleye.media.rtsp.sdp import SessionDescription
from globaleye.media.rtsp.upstream import UpstreamSession

log = Logger()

#: The most a hub keeps of the current GOP for new viewers (about 16 s of a 1 Mbit/s stream).
GOP_CACHE_BYTES = 2 * 1024 * 1024

#: Waits between recovery attempts: the first try is at once, then these, the last repeated.
RECOVER_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)


_U32 = struct.Struct("!I")
#: "$", channel, length, then the RTP header's first two bytes, sequence number, timestamp, SSRC.
_INTERLEAVED_RTP = struct.Struct("!BBHBBHII")
#: Packets of one picture written together at most (a picture without a marker is flushed anyway).
MAX_BATCH = 64
#: The last packet fanned out and its payload (see ViewerStream._out).
_body_of: tuple[bytes, bytes] = (b"", b"")


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
        #: After an upstream recovery (``rebase``): each track's clock rate, and for the tracks
        #: whose timestamp offset is recomputed at their next packet, the timestamp to go on from.
        self.rates = [m.clock_rate or 90000 for m in description.media]
        self.rebase_from: dict[int, int] = {}
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
        #: Whether the camera's RTCP BYE reaches this viewer (playback: yes; live: see LiveHub.add).
        self.forward_bye = True
        #: Whether a live hub hands this viewer its last sender reports when it joins (LiveHub.reports).
        self.replay_reports = False
        #: TCP fast path, set by the server: the interleaved RTP channel of each track and the
        #: transport's write.  Then one struct.pack makes the viewer's header and the "$"
        #: framing together and the packet goes straight to the transport (see _out).
        self.channels: dict[int, int] = {}
        self.write: Callable[[bytes], None] | None = None
        #: The same transport's writeSequence: a video picture's packets go out in one call at its
        #: last packet (the marker), not one Twisted write per packet (docs/performance.md).
        self.write_sequence: Callable[[list[bytes]], None] | None = None
        self._batch: list[bytes] = []

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

    def rebase(self, gap: float, description: SessionDescription, last_in: dict[int, int]) -> None:
        """A new upstream replaces a lost one: go on in the same session, from its next IDR.

        The new camera session has new RTP timestamp bases, so each track's offset is
        recomputed at its first packet: the viewer's clock goes on from the last timestamp
        the old upstream gave (*last_in*, the camera's, as this viewer saw it) plus *gap*
        seconds (the outage), and never runs backwards.  Sequence numbers and SSRCs simply
        continue.  Until every track is rebased, ``rtp`` is this instance's ``_rtp_rebasing``,
        so the per-packet path of every other viewer, and of this one afterwards, pays nothing.
        """
        self.rebase_from = {t: (last_in[t] + self.ts_offset[t] + max(1, round(max(gap, 0.0) * self.rates[t])))
                            & 0xFFFFFFFF for t in self.tracks if t in last_in}
        self.waiting = True
        self.in_picture = False
        if self.video_track is not None:
            self.params = description.media[self.video_track].sprop_parameter_sets
        if self.rebase_from:
            self.rtp = self._rtp_rebasing  # type: ignore[method-assign]

    def _rtp_rebasing(self, track: int, data: bytes, timestamp: int, payload_offset: int,
                      picture_start: bool) -> None:
        start = self.rebase_from.pop(track, None)
        if start is not None:
            self.ts_offset[track] = (start - timestamp) & 0xFFFFFFFF
            if not self.rebase_from:
                del self.rtp  # back to the class's method
        ViewerStream.rtp(self, track, data, timestamp, payload_offset, picture_start)

    def _out(self, track: int, data: bytes) -> None:
        seq = self.seq[track]
        self.seq[track] = (seq + 1) & 0xFFFF
        self.packets_sent += 1
        channel = self.channels.get(track)
        if channel is not None and self.write is not None and len(data) <= 0xFFFF:
            # The per-packet, per-viewer cost of a fan-out (docs/performance.md): h264rtp.rewrite_rtp
            # and rtsp.message.encode_interleaved in one pack, and one write per picture.
            ts = (_U32.unpack_from(data, 4)[0] + self.ts_offset[track]) & 0xFFFFFFFF
            header = _INTERLEAVED_RTP.pack(0x24, channel, len(data), data[0], data[1], seq, ts, self.ssrc[track])
            if track != self.video_track or self.write_sequence is None:
                self.write(header + data[12:])
                return
            # Every viewer sends the same payload after its own header: one slice per packet for
            # all of them (the hub hands each viewer the same object), not a copy per viewer.
            global _body_of
            if _body_of[0] is not data:
                _body_of = (data, data[12:])
            batch = self._batch
            batch.append(header)
            batch.append(_body_of[1])
            if data[1] & 0x80 or len(batch) >= 2 * MAX_BATCH:  # the picture's last packet
                self.write_sequence(batch)
                batch.clear()
            return
        self.sink.send_rtp(track, h264rtp.rewrite_rtp(data, seq, self.ts_offset[track], self.ssrc[track]))

    def _flush(self) -> None:
        if self.write_sequence is not None:
            self.write_sequence(self._batch)
        self._batch.clear()

    def rtp(self, track: int, data: bytes, timestamp: int, payload_offset: int, picture_start: bool) -> None:
        if track not in self.tracks:
            return
        if track != self.video_track:
            if self.started and not self.waiting and not self._blocked():
                self._out(track, data)
            return
        if picture_start:
            if self._batch:  # a picture whose last packet had no marker: out before the next one
                self._flush()
            self.in_picture = False
            if self._blocked():
                self.waiting = True
                self.frames_dropped += 1
                return
            payload = data[payload_offset:]
            if self.waiting:
                if not h264rtp.is_key_start(payload):
                    if self.started:
                        self.frames_dropped += 1
                    return
                self.waiting = False
                if h264rtp.first_nal_type(payload) == rtp.NAL_IDR and self.params and self.video_pt is not None:
                    for nal in self.params:  # the camera's IDR came bare: SPS/PPS from the SDP first
                        self.sink.send_rtp(track, h264rtp.single_nal_packet(
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
        if track in self.tracks and self.started and track not in self.rebase_from and not self.sink.blocked():
            report = h264rtp.rewrite_rtcp(data, self.ts_offset[track], self.ssrc[track], self.forward_bye)
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
            _pt, _seq, ts, marker, offset = h264rtp.rtp_fields(data)
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
    reload) finds it still running.  If the camera goes away while viewers watch,
    the hub gets it back for them (``recover_timeout``, see the module docstring);
    without viewers, or when that fails, the hub is idle again and the next viewer
    starts a new path selection.
    """

    def __init__(self, key: tuple[str, int, int], label: str, connect: Connector, reactor: Any,
                 linger: float, on_idle: Callable[[LiveHub], None] | None = None, *,
                 recover_timeout: float = 30.0, media_timeout: float = 10.0) -> None:
        self.key = key
        self.label = label
        self.connect = connect
        self.reactor = reactor
        self.linger = linger
        self.on_idle = on_idle
        self.recover_timeout = recover_timeout
        self.media_timeout = media_timeout
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
        #: The last RTCP sender report of each track, replayed to a viewer that joins and asks for
        #: them (``ViewerStream.replay_reports``): without it a viewer that lines up audio and
        #: video (the web feed's AAC) waits for the camera's next one (every 5 s, RFC 3550 §6.2).
        #: RTSP players are not given them: ffmpeg keeps the first SR's NTP mapping, which a
        #: recovered upstream's reports contradict (tests/interop/test_proxy.py's outage test).
        self.reports: dict[int, bytes] = {}
        #: Callers of ``ensure`` waiting for a start (or a whole recovery) in progress; None: none.
        self.starting: list[defer.Deferred[SessionDescription]] | None = None
        #: The account whose HashTokens the upstream uses, for a recovery's new tokens.
        self.account: str | None = None
        self.recovering = False
        self.recoveries = 0
        self.last_recovery: dict[str, Any] | None = None
        self.starts = 0
        self.stops = 0
        self.started_at: float | None = None
        self.last_stop_reason = ""
        self._linger_call: Any = None
        self._watch_call: Any = None
        self._watched_packets = -1
        self._generation = 0  # bumped by stop(): a recovery in flight for an older one gives up
        self._backoff: defer.Deferred[None] | None = None

    @property
    def running(self) -> bool:
        return self.upstream is not None and not self.upstream.closed

    @property
    def state(self) -> str:
        if self.running:
            return "running"
        return "recovering" if self.recovering else "starting" if self.starting is not None else "stopped"

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
            description = await self._start(account)
        except BaseException as e:
            self._settle(e)
            raise
        self._settle(description)
        self._schedule_linger()
        return description

    def _settle(self, result: SessionDescription | BaseException) -> None:
        waiting, self.starting = self.starting or [], None
        for w in waiting:
            if isinstance(result, BaseException):
                w.errback(result)
            else:
                w.callback(result)

    async def _start(self, account: str) -> SessionDescription:
        """One §15 path selection; the hub runs on the session it gives."""
        try:
            session, attempts = await self.connect(account, self._attach)
        except NoPath as e:
            self.attempts = e.attempts
            raise
        self.attempts = attempts
        assert session.description is not None
        self.upstream = session
        self.description = session.description
        self.account = account
        self.starts += 1
        self.started_at = time.time()
        self._watch()
        return session.description

    def _attach(self, session: UpstreamSession) -> None:
        self.tracker = PictureTracker()
        self.video_track = session.description.track("video") if session.description is not None else None
        self._drop_gop()
        self.reports = {}
        session.on_rtp = self._rtp
        session.on_rtcp = self._rtcp

        def lost(reason: str) -> None:
            # A path attempt that dies before it is chosen is the path selection's business.
            if session is self.upstream:
                self._lost(reason)

        session.on_lost = lost

    def _rtp(self, track: int, data: bytes) -> None:
        facts = self.tracker.feed(track, data)
        if facts is None:
            return
        ts, offset, start = facts
        if track == self.video_track and start and h264rtp.is_key_start(data[offset:]):
            self.gop, self.gop_bytes = [], 0  # a new GOP: the previous one is no longer needed
        if self.gop is not None:
            self.gop_bytes += len(data)
            if self.gop_bytes > GOP_CACHE_BYTES:
                log.info("live {label}: GOP larger than {n} bytes; not cached until the next IDR",
                         label=self.label, n=GOP_CACHE_BYTES)
                self._drop_gop()
            else:
                self.gop.append((track, data, ts, offset, start))
        if self.recovering:
            return  # a path being tried: the viewers get its GOP when it is chosen (and rebased)
        for viewer in tuple(self.viewers):
            viewer.rtp(track, data, ts, offset, start)

    def _drop_gop(self) -> None:
        self.gop, self.gop_bytes = None, 0

    def _rtcp(self, track: int, data: bytes) -> None:
        if len(data) >= 28 and data[1] == 200:  # an SR first in the compound packet (RFC 3550 §6.1)
            self.reports[track] = data
        for viewer in tuple(self.viewers):
            viewer.rtcp(track, data)

    # -- losing the upstream, and getting it back

    def _watch(self) -> None:
        """A camera that keeps the RTSP connection but sends nothing counts as lost too."""
        self._unwatch()
        if self.media_timeout > 0:
            self._watched_packets = -1
            self._watch_call = self.reactor.callLater(self.media_timeout, self._check_media)

    def _unwatch(self) -> None:
        if self._watch_call is not None and self._watch_call.active():
            self._watch_call.cancel()
        self._watch_call = None

    def _check_media(self) -> None:
        self._watch_call = None
        upstream = self.upstream
        if upstream is None or upstream.closed:
            return
        if upstream.packets == self._watched_packets:
            upstream.close()
            self._lost(f"no media for {self.media_timeout:g} s")
            return
        self._watched_packets = upstream.packets
        self._watch_call = self.reactor.callLater(self.media_timeout, self._check_media)

    def _lost(self, reason: str) -> None:
        path = self.upstream.path if self.upstream is not None else "?"
        self.last_stop_reason = f"upstream lost: {reason}"
        self.upstream = None
        self.stops += 1
        self._unwatch()
        self._drop_gop()
        if self.viewers and self.recover_timeout > 0 and self.account is not None and self.starting is None:
            log.warn("live {label}: upstream on path {path} lost ({reason}); getting it back for {n} viewers "
                     "(up to {t:g} s)", label=self.label, path=path, reason=reason, n=len(self.viewers),
                     t=self.recover_timeout)
            self.starting = []
            defer.Deferred.fromCoroutine(self._recover(self.account, reason))
            return
        log.warn("live {label}: upstream on path {path} lost ({reason}); {n} viewers disconnected",
                 label=self.label, path=path, reason=reason, n=len(self.viewers))
        self._disconnect(reason)

    async def _recover(self, account: str, reason: str) -> None:
        """§15 again until the camera is back, ``recover_timeout`` passes, or no viewer is left."""
        generation = self._generation
        before = self.description  # what the viewers' SDP says
        old_tracker = self.tracker  # the lost upstream's last timestamps (_attach makes a new one)
        self.recovering = True
        lost_at = self.reactor.seconds()
        deadline = lost_at + self.recover_timeout
        tries = 0
        why = reason
        description: SessionDescription | None = None
        try:
            while self.viewers and generation == self._generation:
                tries += 1
                try:
                    description = await self._start(account)
                except NoPath as e:
                    why = str(e)
                    log.info("live {label}: recovery attempt {k} failed: {why}", label=self.label, k=tries, why=why)
                else:
                    break
                remaining = deadline - self.reactor.seconds()
                if remaining <= 0:
                    break
                wait = min(RECOVER_BACKOFF[min(tries, len(RECOVER_BACKOFF)) - 1], remaining)
                self._backoff = deferLater(self.reactor, wait, lambda: None)
                try:
                    await self._backoff
                except defer.CancelledError:
                    break
                finally:
                    self._backoff = None
        except Exception as e:  # a bug, not a camera: log it whole and let the viewers go
            log.failure("live {label}: recovery failed", label=self.label)
            why, description = f"recovery failed: {e}", None
        finally:
            self.recovering = False
        gap = self.reactor.seconds() - lost_at
        last_in = dict(old_tracker.last_ts)
        if description is not None and generation != self._generation:
            self.stop("stopped while recovering")  # the new upstream came back after stop(): close it
            return
        if description is not None and not self.viewers:
            log.info("live {label}: upstream back on path {path} after {s:.1f} s, but no viewer is left",
                     label=self.label, path=self.upstream.path if self.upstream else "?", s=gap)
            self._settle(description)
            self._schedule_linger()
            return
        if description is not None and before is not None and not same_streams(before, description):
            self.last_recovery = {"ok": False, "tries": tries, "seconds": round(gap, 3),
                                  "reason": "the camera came back with other streams (tracks or payload types)"}
            self._settle(NoPath(self.attempts))
            self.stop(self.last_recovery["reason"])
            return
        if description is None:
            self.last_recovery = {"ok": False, "tries": tries, "seconds": round(gap, 3), "reason": why}
            self._settle(NoPath(self.attempts))
            if generation == self._generation:
                log.warn("live {label}: upstream not back after {s:.1f} s and {k} tries ({why}); "
                         "{n} viewers disconnected", label=self.label, s=gap, k=tries, why=why, n=len(self.viewers))
                self._disconnect(f"camera stream lost ({reason}) and not back: {why}")
            else:
                self._idle()
            return
        self.recoveries += 1
        self.last_recovery = {"ok": True, "tries": tries, "seconds": round(gap, 3), "reason": reason,
                              "path": self.upstream.path if self.upstream else None}
        log.info("live {label}: upstream back on path {path} after {s:.2f} s ({k} tries); {n} viewers go on",
                 label=self.label, path=self.upstream.path if self.upstream else "?", s=gap, k=tries,
                 n=len(self.viewers))
        for viewer in tuple(self.viewers):
            viewer.rebase(gap, description, last_in)
            if self.gop:
                viewer.replay(tuple(self.gop))
        self._settle(description)

    def _disconnect(self, reason: str) -> None:
        self._drop_gop()
        for viewer in tuple(self.viewers):
            viewer.sink.upstream_lost(reason)
        self.viewers.clear()
        self._idle()

    # -- viewers

    def add(self, viewer: ViewerStream) -> None:
        """A viewer that has been answered PLAY: it gets the cached GOP now, then the live packets."""
        viewer.forward_bye = False  # the viewer outlives the camera session (recovery)
        self.viewers.add(viewer)
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        self._linger_call = None
        if self.gop:
            self.gop_replays += 1
            viewer.replay(tuple(self.gop))
        if viewer.replay_reports:
            for track, report in tuple(self.reports.items()):
                viewer.rtcp(track, report)

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
        self._generation += 1
        if self._backoff is not None:
            self._backoff.cancel()
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        self._linger_call = None
        self._unwatch()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            log.info("live {label}: upstream on path {path} stopped: {reason}", label=self.label,
                     path=upstream.path, reason=reason)
            self.stops += 1
            self.last_stop_reason = reason
            upstream.close()
        self._disconnect(reason)

    def _idle(self) -> None:
        if self.on_idle is not None:
            self.on_idle(self)

    def status(self) -> dict[str, Any]:
        upstream = self.upstream
        return {
            "stream": self.label, "kind": "live", "key": list(self.key), "state": self.state,
            "running": self.running, "recovering": self.recovering,
            "path": upstream.path if upstream is not None else None,
            "upstream_packets": upstream.packets if upstream is not None else 0,
            "upstream_bytes": upstream.bytes if upstream is not None else 0,
            "viewers": [v.stats() for v in self.viewers], "starts": self.starts, "stops": self.stops,
            "recoveries": self.recoveries, "last_recovery": self.last_recovery,
            "gop_cache": {"packets": len(self.gop or ()), "bytes": self.gop_bytes, "replays": self.gop_replays},
            "last_stop_reason": self.last_stop_reason,
            "attempts": [a.as_dict() for a in self.attempts], "attempts_summary": summarize(self.attempts),
        }


def same_streams(old: SessionDescription, new: SessionDescription) -> bool:
    """Whether viewers set up from *old*'s SDP can be fed *new*'s packets unchanged."""
    return [(m.kind, m.payload_type, m.encoding.upper(), m.clock_rate) for m in old.media] == \
        [(m.kind, m.payload_type, m.encoding.upper(), m.clock_rate) for m in new.media]
