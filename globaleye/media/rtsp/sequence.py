"""Recordings played one after another as ONE RTP stream, paced by the reactor clock.

What the RTSP proxy's ``/cloud/...`` URLs play (§7.1.2 "回放", §10.1 PLAY 4: Range and
Scale): a camera's 5-minute TS files, consecutive in time, that a viewer sees as a single
programme.  A player (ffmpeg, VLC) knows nothing of files: at a file boundary the RTP
sequence number goes on by one and the RTP timestamp by one picture, so the boundary is
invisible (no gap, no jump, no new SSRC); only the end of the last file says RTCP BYE.

The files are read as the simulated camera reads its one file
(:mod:`globaleye.media.tsfile`: indexed once, one positioned read per GOP in a worker
thread; :class:`GopWindow`, shared by both players: the GOP being sent and the next one
held per viewer), so neither disk
latency nor the demux touch the reactor.  The next file is opened (fetched and indexed
by the caller's ``open_segment``) as soon as the current one starts, so it is normally
ready long before the boundary; if it is late, the timeline holds (nothing skipped, no
burst), as it does for a late GOP.

Time: picture *f* of segment *s* sits at ``offset[s] + dts[f] - dts[0]`` on the
programme's 90 kHz timeline, where ``offset[s+1] = offset[s] + duration[s]`` (the last
picture's DTS plus one picture); it is due at ``t0 + (tick - start) / 90000 / scale``
and stamped ``ts0 + (pts-tick - start) / scale`` — RTP time runs at wall-clock speed, so
a player shows 2x motion without knowing about Scale, as the camera's own playback does.

Video only: a recording's AAC is not sent (a Scale other than 1 has none anyway).

Shared with the simulated camera's single-file ``RecordingPlayer``
(:mod:`globaleye.sim.rtsp.players`, which adds AAC and a Range end): :class:`GopWindow`
and the §10.1 speeds (:func:`nearest_scale`).  The sender of the packets is the caller's
(:class:`RtpOut`).
"""

from __future__ import annotations

import bisect
import math
import secrets
import time
from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from globaleye.media import rtp
from globaleye.media.mpegts import TS_CLOCK
from globaleye.media.tsfile import Gop, Picture, Recording

log = Logger()

#: If the reactor falls this many pictures behind (a stall), skip ahead to an IDR instead of bursting.
MAX_LATE_FRAMES = 10
RTCP_INTERVAL = 5.0  # RFC 3550 §6.2 minimum
#: §10.1 PLAY 4): the speeds of playback.
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


class RtpOut(Protocol):
    """Where the packets go: the viewer's connection (interleaved) or its UDP ports."""

    def send_rtp(self, track: int, data: bytes) -> None: ...

    def send_rtcp(self, track: int, data: bytes) -> None: ...

    def blocked(self) -> bool:
        """The viewer's socket is full: pictures are dropped until it drains (then an IDR)."""


@attrs.define
class RtpCounters:
    """One track's RTP numbering, kept by the session across PLAYs, PAUSEs and seeks (RFC 3550)."""

    payload_type: int = rtp.PT_H264
    clock_rate: int = rtp.H264_CLOCK
    ssrc: int = attrs.Factory(lambda: secrets.randbits(32))
    seq: int = attrs.Factory(lambda: secrets.randbits(15))
    timestamp: int = attrs.Factory(lambda: secrets.randbits(31))
    last_sent_at: float | None = None
    packets: int = 0
    octets: int = 0
    last_report: float | None = None

    def next_timestamp(self, now: float) -> int:
        """Where the RTP clock stands now: it runs on in wall-clock time while paused."""
        if self.last_sent_at is None:
            return self.timestamp
        return (self.timestamp + int(max(0.0, now - self.last_sent_at) * self.clock_rate)) & 0xFFFFFFFF


@attrs.frozen
class Position:
    """A picture of the programme: segment number and picture (file order) within it."""

    segment: int
    frame: int


class GopWindow:
    """The GOPs of one file a player holds: the one being sent and the next (read ahead).

    Shared by every recording player (the simulated camera's single file and the proxy's
    programmes): a GOP not held is read through ``read_gop`` (a worker thread), once;
    ``ready`` is called when a read arrives (the player resumes a timeline it held for
    it), ``failed`` when one fails.  After :meth:`close` late reads are ignored.
    """

    def __init__(self, recording: Recording, read_gop: Callable[[Recording, int], Deferred[Gop]],
                 ready: Callable[[], None], failed: Callable[[Failure, int], None]) -> None:
        self.recording = recording
        self.index = recording.index
        self.read_gop = read_gop
        self.ready = ready
        self.failed = failed
        self.closed = False
        self._held: dict[int, Gop] = {}
        self._loading: set[int] = set()

    def get(self, gop: int) -> Gop | None:
        """GOP *gop* if held or in the file's shared cache; else None, and it is being read."""
        found = self._held.get(gop)
        if found is None:
            found = self.recording.cached(gop)
            if found is None:
                self._load(gop)
                return self._held.get(gop)  # the read may have completed at once
            self._held[gop] = found
        return found

    def advance(self, current: int, end_frame: int) -> None:
        """Forget the GOPs before *current*; read the one after it if it starts before *end_frame*."""
        for old in [g for g in self._held if g < current]:
            del self._held[old]
        following = current + 1
        if following < self.index.gops and self.index.keys[following] < end_frame \
                and following not in self._held and self.recording.cached(following) is None:
            self._load(following)

    @property
    def held(self) -> int:
        """GOPs held now (at most two: the bound on a player's memory)."""
        return len(self._held)

    @property
    def reading(self) -> int:
        """Reads in flight."""
        return len(self._loading)

    def close(self) -> None:
        self.closed = True
        self._held.clear()

    def _load(self, gop: int) -> None:
        if gop in self._loading or self.closed:
            return
        self._loading.add(gop)
        self.read_gop(self.recording, gop).addCallbacks(self._loaded, self._failed, errbackArgs=(gop,))

    def _loaded(self, found: Gop) -> None:
        self._loading.discard(found.index)
        if not self.closed:
            self._held[found.index] = found
            self.ready()

    def _failed(self, failure: Failure, gop: int) -> None:
        self._loading.discard(gop)
        if not self.closed:
            self.failed(failure, gop)


class SequencePlayer:
    """Plays segments ``start.segment ..`` of a programme from ``start``; see the module doc."""

    def __init__(self, clock: IReactorTime, out: RtpOut, counters: RtpCounters, *, track: int,
                 segments: int, first: Recording, start: Position, scale: float,
                 open_segment: Callable[[int], Deferred[Recording]],
                 read_gop: Callable[[Recording, int], Deferred[Gop]], cname: str,
                 on_end: Callable[[Position, bool], None], label: str = "") -> None:
        self.clock = clock
        self.out = out
        self.counters = counters
        self.track = track
        self.segments = segments
        self.scale = scale
        self.open_segment = open_segment
        self.read_gop = read_gop
        self.cname = cname
        self.on_end = on_end
        self.label = label
        self.segment = start.segment
        self.recording = first
        self.pos = start.frame
        self.offset = 0  # programme ticks of this segment's first picture
        ix = first.index
        self.start_tick = ix.v_dts[start.frame] - ix.v_dts[0]
        self.start_pts = ix.v_pts[start.frame] - ix.v_dts[0]
        self.frame_time = ix.frame_ticks / TS_CLOCK / scale
        now = clock.seconds()
        self.t0 = now
        self.ts0 = counters.next_timestamp(now)
        self.seq0 = counters.seq
        self.need_idr = False
        self.stopped = False
        self.sent = 0
        self.dropped = 0
        self._call: IDelayedCall | None = None
        self._window = self._open_window(first)
        self._waiting: float | None = None  # the due time held up by a read or the next file
        self._next: Deferred[Recording] | None = None
        self._next_recording: Recording | None = None

    # -- control

    def start(self) -> None:
        self._prefetch()
        self._tick()

    def stop(self) -> Position:
        """Stop sending; where a PLAY without Range resumes."""
        self.stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._window.close()
        return Position(self.segment, self.pos)

    # -- timing

    def _tick_of(self, frame: int) -> int:
        ix = self.recording.index
        return self.offset + ix.v_dts[frame] - ix.v_dts[0]

    def _due(self, frame: int) -> float:
        return self.t0 + (self._tick_of(frame) - self.start_tick) / TS_CLOCK / self.scale

    def _tick(self) -> None:
        self._call = None
        if self.stopped:
            return
        now = self.clock.seconds()
        self._catch_up(now)
        while True:
            if self.pos >= self.recording.index.frames:
                if not self._advance():
                    return  # finished, or waiting for the next file
                continue
            due = self._due(self.pos)
            if due > now:
                break
            gop = self._window.get(self.recording.index.gop_of(self.pos))
            if gop is None:
                self._waiting = due
                return  # _loaded() resumes
            self._send(gop.picture(self.pos), now)
            self.pos += 1
        self._read_ahead()
        self._call = self.clock.callLater(max(0.0, due - now), self._tick)

    def _catch_up(self, now: float) -> None:
        """After a reactor stall, drop what fell due meanwhile (within this file) and resume at an IDR."""
        ix = self.recording.index
        if self.pos >= ix.frames or now - self._due(self.pos) <= MAX_LATE_FRAMES * self.frame_time:
            return
        target = self.start_tick - self.offset + ix.v_dts[0] + round((now - self.t0) * self.scale * TS_CLOCK)
        frame = min(ix.frames, max(self.pos, bisect.bisect_right(ix.v_dts, target) - 1))
        self.dropped += frame - self.pos
        self.pos = frame
        self.need_idr = True

    def _advance(self) -> bool:
        """The current file is done: go on with the next one, if there is one and it is open."""
        if self.segment + 1 >= self.segments:
            self._finish()
            return False
        if self._next_recording is None:
            if self._next is None:
                self._prefetch()
            self._waiting = self._due_end()
            return False
        ix = self.recording.index
        self.offset += ix.v_dts[-1] - ix.v_dts[0] + ix.frame_ticks
        self.segment += 1
        self.recording, self._next_recording, self._next = self._next_recording, None, None
        self.pos = 0
        self._window.close()
        self._window = self._open_window(self.recording)
        log.debug("{label}: on to segment {s}", label=self.label, s=self.segment)
        self._prefetch()
        return True

    def _due_end(self) -> float:
        ix = self.recording.index
        end = self.offset + ix.v_dts[-1] - ix.v_dts[0] + ix.frame_ticks
        return self.t0 + (end - self.start_tick) / TS_CLOCK / self.scale

    def _prefetch(self) -> None:
        following = self.segment + 1
        if following >= self.segments or self._next is not None:
            return
        d = self._next = self.open_segment(following)
        d.addCallbacks(self._opened, self._failed_open, callbackArgs=(d,), errbackArgs=(d,))

    def _opened(self, recording: Recording, d: Deferred[Recording]) -> None:
        if self.stopped or d is not self._next:
            return
        self._next_recording = recording
        self._resume()

    def _failed_open(self, failure: Failure, d: Deferred[Recording]) -> None:
        if self.stopped or d is not self._next:
            return
        log.failure("{label}: opening segment {s} failed; playback stops", failure, label=self.label,
                    s=self.segment + 1)
        self._end(bye=True)

    def _resume(self) -> None:
        """A read or the next file arrived: go on, holding the timeline for the time it took."""
        if self._waiting is not None and self._call is None:
            lag = self.clock.seconds() - self._waiting
            self._waiting = None
            if lag > 0:
                self.t0 += lag
            self._tick()

    # -- reading GOPs of the current file

    def _open_window(self, recording: Recording) -> GopWindow:
        return GopWindow(recording, self.read_gop, self._resume, self._failed_read)

    def _read_ahead(self) -> None:
        ix = self.recording.index
        self._window.advance(ix.gop_of(min(self.pos, ix.frames - 1)), ix.frames)

    def _failed_read(self, failure: Failure, gop: int) -> None:
        if self.stopped:
            return
        log.failure("{label}: reading GOP {gop} of segment {s} failed; playback stops", failure, label=self.label,
                    gop=gop, s=self.segment)
        self._end(bye=True)

    # -- sending

    def _send(self, picture: Picture, now: float) -> None:
        if self.out.blocked() or (self.need_idr and not picture.keyframe):
            self.dropped += 1
            self.need_idr = True
            return
        self.need_idr = False
        c = self.counters
        ix = self.recording.index
        ts = (self.ts0 + round((self.offset + picture.pts - ix.v_dts[0] - self.start_pts) / self.scale)) \
            & 0xFFFFFFFF
        if c.last_report is None or now - c.last_report >= RTCP_INTERVAL:
            c.last_report = now
            self.out.send_rtcp(self.track, rtp.rtcp_sender_report(c.ssrc, time.time(), ts, c.packets, c.octets,
                                                                  self.cname))
        for payload, marker in picture.payloads:
            self.out.send_rtp(self.track, rtp.rtp_header(c.payload_type, c.seq, ts, c.ssrc, marker) + payload)
            c.seq = (c.seq + 1) & 0xFFFF
            c.packets += 1
            c.octets += len(payload)
        c.timestamp, c.last_sent_at = ts, now
        self.sent += 1

    def _finish(self) -> None:
        log.info("{label}: the end of the programme ({n} pictures sent, {d} dropped)", label=self.label,
                 n=self.sent, d=self.dropped)
        self._end(bye=True)

    def _end(self, bye: bool) -> None:
        position = self.stop()
        if bye:  # RFC 3550 §6.6: this source sends nothing more; players take it as the end
            c = self.counters
            self.out.send_rtcp(self.track, rtp.rtcp_bye(c.ssrc, time.time(), c.timestamp, c.packets, c.octets,
                                                        self.cname, "end of recording"))
        self.on_end(position, bye)


def nearest_scale(wanted: float) -> float | None:
    """The §10.1 speed nearest *wanted* (RFC 2326 §12.34: the server picks one it supports and
    says so); None for reverse or no speed."""
    if not wanted > 0 or math.isinf(wanted):
        return None
    return min(SCALES, key=lambda s: abs(math.log(s / wanted)))


def parse_scale(value: str) -> float | None:
    """A PLAY's ``Scale`` as the nearest §10.1 speed; None if it is not a forward speed."""
    try:
        return nearest_scale(float(value.strip()))
    except ValueError:
        return None
