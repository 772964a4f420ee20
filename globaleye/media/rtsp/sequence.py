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

AAC frames (at Scale 1 only: no time-stretched audio) are due and stamped by their own PTS
on the same timeline, on the audio clock.

The simulated camera's playback of one file (``sim.rtsp.players.RecordingPlayer``) is this
player with one segment and a Range end; the proxy's ``/cloud/`` sessions are it with many.
Where the packets go and how they are numbered is the caller's (:class:`RtpOut`;
:class:`RtpTracks` numbers them for a plain packet sink).
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
    """Where a player's media go, numbered per track (RTP sequence, timestamp, SSRC, reports)."""

    def blocked(self) -> bool:
        """The viewer's socket is full: pictures are dropped until it drains (then an IDR)."""

    def next_timestamp(self, track: int, now: float) -> int:
        """Where the track's RTP clock stands now (it runs on in wall-clock time while paused)."""

    def next_sequence(self, track: int) -> int: ...

    def anchor(self, track: int, timestamp: int, wallclock: float) -> None:
        """RTP time *timestamp* of *track* is media time at *wallclock* (POSIX): what its SRs say."""

    def send(self, track: int, payload: bytes, marker: bool, timestamp: int, now: float) -> None:
        """One RTP packet (and an RTCP SR first when one is due)."""

    def bye(self, track: int, reason: str) -> None:
        """RTCP BYE (RFC 3550 §6.6, after a last SR): the track sends nothing more."""


class PacketSink(Protocol):
    def send_rtp(self, track: int, data: bytes) -> None: ...

    def send_rtcp(self, track: int, data: bytes) -> None: ...

    def blocked(self) -> bool: ...


@attrs.define
class RtpCounters:
    """One track's RTP numbering, kept across PLAYs, PAUSEs and seeks (RFC 3550)."""

    payload_type: int = rtp.PT_H264
    clock_rate: int = rtp.H264_CLOCK
    ssrc: int = attrs.Factory(lambda: secrets.randbits(32))
    seq: int = attrs.Factory(lambda: secrets.randbits(15))
    timestamp: int = attrs.Factory(lambda: secrets.randbits(31))
    last_sent_at: float | None = None
    packets: int = 0
    octets: int = 0
    last_report: float | None = None
    #: (RTP timestamp, POSIX time) of the media timeline: SRs are computed from it, not from the
    #: moment of sending, so a held timeline (a slow read) does not look like a jump to a player
    #: that syncs its tracks by SR (RFC 3550 §6.4.1).
    reference: tuple[int, float] | None = None

    def next_timestamp(self, now: float) -> int:
        if self.last_sent_at is None:
            return self.timestamp
        return (self.timestamp + int(max(0.0, now - self.last_sent_at) * self.clock_rate)) & 0xFFFFFFFF


class RtpTracks:
    """:class:`RtpOut` over a plain packet sink: the numbering and reports of each track."""

    def __init__(self, sink: PacketSink, tracks: dict[int, RtpCounters], cname: str) -> None:
        self.sink = sink
        self.tracks = tracks
        self.cname = cname

    def blocked(self) -> bool:
        return self.sink.blocked()

    def next_timestamp(self, track: int, now: float) -> int:
        return self.tracks[track].next_timestamp(now)

    def next_sequence(self, track: int) -> int:
        return self.tracks[track].seq

    def anchor(self, track: int, timestamp: int, wallclock: float) -> None:
        c = self.tracks[track]
        if c.reference is None:  # the first PLAY's; later ones continue the same timeline
            c.reference = (timestamp, wallclock)

    def _wallclock(self, c: RtpCounters, timestamp: int) -> float:
        if c.reference is None:
            return time.time()
        ticks = (timestamp - c.reference[0]) & 0xFFFFFFFF
        if ticks >= 1 << 31:
            ticks -= 1 << 32
        return c.reference[1] + ticks / c.clock_rate

    def send(self, track: int, payload: bytes, marker: bool, timestamp: int, now: float) -> None:
        c = self.tracks[track]
        if c.last_report is None or now - c.last_report >= RTCP_INTERVAL:
            c.last_report = now
            self.sink.send_rtcp(track, rtp.rtcp_sender_report(c.ssrc, self._wallclock(c, timestamp), timestamp,
                                                              c.packets, c.octets, self.cname))
        self.sink.send_rtp(track, rtp.rtp_header(c.payload_type, c.seq, timestamp, c.ssrc, marker) + payload)
        c.seq = (c.seq + 1) & 0xFFFF
        c.packets += 1
        c.octets += len(payload)
        c.timestamp, c.last_sent_at = timestamp, now

    def bye(self, track: int, reason: str) -> None:
        c = self.tracks[track]
        self.sink.send_rtcp(track, rtp.rtcp_bye(c.ssrc, self._wallclock(c, c.timestamp), c.timestamp, c.packets,
                                                c.octets, self.cname, reason))


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
    """Plays segments ``start.segment ..`` of a programme from ``start``; see the module doc.

    ``end_frame`` (default: all) is where the last segment stops (a Range end).  ``on_end``
    gets where it stopped and why: ``"end"`` (the last file's end: every track said BYE),
    ``"range"`` (the Range end) or ``"error"`` (a file or GOP could not be read).
    """

    def __init__(self, clock: IReactorTime, out: RtpOut, *, video: int | None, audio: int | None,
                 segments: int, first: Recording, start: Position, scale: float,
                 open_segment: Callable[[int], Deferred[Recording]],
                 read_gop: Callable[[Recording, int], Deferred[Gop]],
                 on_end: Callable[[Position, str], None], end_frame: int | None = None, label: str = "") -> None:
        self.clock = clock
        self.out = out
        self.video = video
        self.audio_track = audio  # says BYE at the end even when not sent to (Scale other than 1)
        self.audio = audio if scale == 1.0 else None  # no time-stretched audio
        self.segments = segments
        self.scale = scale
        self.open_segment = open_segment
        self.read_gop = read_gop
        self.on_end = on_end
        self.end_frame = end_frame
        self.label = label
        self.segment = start.segment
        self.recording = first
        self.start_frame = start.frame
        self.pos = start.frame
        self.offset = 0  # programme ticks of this segment's first picture
        ix = first.index
        self.start_tick = ix.v_dts[start.frame] - ix.v_dts[0]
        self.start_pts = ix.v_pts[start.frame] - ix.v_dts[0]
        self.frame_time = ix.frame_ticks / TS_CLOCK / scale
        now = clock.seconds()
        self.t0 = now
        self.video_ts0 = out.next_timestamp(video, now) if video is not None else 0
        self.audio_ts0 = out.next_timestamp(audio, now) if audio is not None else 0
        wallclock = time.time()  # only for what the SRs say (the timeline is the reactor's)
        for track, ts in ((video, self.video_ts0), (audio, self.audio_ts0)):
            if track is not None:
                out.anchor(track, ts, wallclock)
        self.need_idr = False
        self.stopped = False
        self.sent = 0
        self.dropped = 0
        self._call: IDelayedCall | None = None
        self._window = self._open_window(first)
        self._waiting: float | None = None  # the due time held up by a read or the next file
        self._next: Deferred[Recording] | None = None
        self._next_recording: Recording | None = None
        self._enter(first, ix.v_pts[start.frame])

    def _enter(self, recording: Recording, from_pts: int) -> None:
        """Set up this segment's limits: its last picture and its AAC frames from *from_pts*."""
        ix = recording.index
        last = self.segment + 1 >= self.segments
        self.v_end = min(self.end_frame, ix.frames) if last and self.end_frame is not None else ix.frames
        self.with_audio = self.audio is not None and ix.has_audio
        self.apos = bisect.bisect_left(ix.a_pts, from_pts) if self.with_audio else 0
        if not self.with_audio:
            self.a_stop = 0
        elif self.v_end < ix.frames:
            self.a_stop = bisect.bisect_left(ix.a_pts, ix.v_pts[self.v_end])
        else:
            self.a_stop = len(ix.a_pts)

    def rtp_info(self, url_of: Callable[[int], str]) -> str:
        """PLAY's RTP-Info: where each track's numbering starts."""
        parts = []
        for track, ts in ((self.video, self.video_ts0), (self.audio_track, self.audio_ts0)):
            if track is not None:
                parts.append(f"url={url_of(track)};seq={self.out.next_sequence(track)};rtptime={ts}")
        return ",".join(parts)

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

    def _video_due(self, frame: int) -> float:
        ix = self.recording.index
        return self.t0 + (self.offset + ix.v_dts[frame] - ix.v_dts[0] - self.start_tick) / TS_CLOCK / self.scale

    def _audio_due(self, j: int) -> float:
        ix = self.recording.index
        return self.t0 + (self.offset + ix.a_pts[j] - ix.v_dts[0] - self.start_pts) / TS_CLOCK

    def _tick(self) -> None:
        self._call = None
        if self.stopped:
            return
        now = self.clock.seconds()
        self._catch_up(now)
        inf = float("inf")
        while True:
            ix = self.recording.index
            v_due = self._video_due(self.pos) if self.pos < self.v_end else inf
            a_due = self._audio_due(self.apos) if self.apos < self.a_stop else inf
            due = min(v_due, a_due)
            if due == inf:
                if not self._advance():
                    return  # finished, or waiting for the next file
                continue
            if due > now:
                break
            if v_due <= a_due:
                gop = self._window.get(ix.gop_of(self.pos))
                if gop is None:
                    self._waiting = due
                    return  # the read's arrival resumes
                self._send_picture(gop.picture(self.pos), now)
                self.pos += 1
            else:
                gop = self._window.get(ix.gop_of_audio(self.apos))
                if gop is None:
                    self._waiting = due
                    return
                self._send_audio(gop, self.apos, now)
                self.apos += 1
        self._read_ahead()
        self._call = self.clock.callLater(max(0.0, due - now), self._tick)

    def _catch_up(self, now: float) -> None:
        """After a reactor stall, drop what fell due meanwhile (within this file) and resume at an IDR."""
        ix = self.recording.index
        if self.pos >= self.v_end or now - self._video_due(self.pos) <= MAX_LATE_FRAMES * self.frame_time:
            return
        target = ix.v_dts[0] + self.start_tick - self.offset + round((now - self.t0) * self.scale * TS_CLOCK)
        frame = min(self.v_end, max(self.pos, bisect.bisect_right(ix.v_dts, target) - 1))
        self.count_dropped(frame - self.pos)
        self.pos = frame
        self.need_idr = True
        if self.with_audio:
            late = ix.v_dts[0] + self.start_pts - self.offset + round((now - self.t0) * TS_CLOCK)
            self.apos = max(self.apos, min(self.a_stop, bisect.bisect_left(ix.a_pts, late)))

    def _advance(self) -> bool:
        """This file is done: go on with the next one, if there is one and it is open."""
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
        self._enter(self.recording, -(1 << 62))
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
        self._end("error")

    def _resume(self) -> None:
        """A read or the next file arrived: go on, holding the timeline for the time it took."""
        if self._waiting is not None and self._call is None and not self.stopped:
            lag = self.clock.seconds() - self._waiting
            self._waiting = None
            if lag > 0:
                self.t0 += lag  # no burst, no skip
            self._tick()

    # -- reading GOPs of the current file

    def _open_window(self, recording: Recording) -> GopWindow:
        return GopWindow(recording, self.read_gop, self._resume, self._failed_read)

    def _read_ahead(self) -> None:
        ix = self.recording.index
        current = ix.gop_of(min(self.pos, self.v_end - 1))
        if self.apos < self.a_stop:
            current = min(current, ix.gop_of_audio(self.apos))
        self._window.advance(current, self.v_end)

    def _failed_read(self, failure: Failure, gop: int) -> None:
        if self.stopped:
            return
        log.failure("{label}: reading GOP {gop} of {path} failed; playback stops", failure, label=self.label,
                    gop=gop, path=self.recording.index.path)
        self._end("error")

    # -- sending

    def count_sent(self) -> None:
        self.sent += 1

    def count_dropped(self, pictures: int) -> None:
        self.dropped += pictures

    def _send_picture(self, picture: Picture, now: float) -> None:
        if self.out.blocked() or (self.need_idr and not picture.keyframe):
            self.count_dropped(1)
            self.need_idr = True
            return
        self.need_idr = False
        if self.video is not None:
            ix = self.recording.index
            ts = (self.video_ts0 + round((self.offset + picture.pts - ix.v_dts[0] - self.start_pts) / self.scale)) \
                & 0xFFFFFFFF
            for payload, marker in picture.payloads:
                self.out.send(self.video, payload, marker, ts, now)
        self.count_sent()

    def _send_audio(self, gop: Gop, j: int, now: float) -> None:
        if self.audio is None or self.out.blocked():
            return
        ix = self.recording.index
        unit = gop.audio_unit(j)
        ts = (self.audio_ts0 + round((self.offset + unit.pts - ix.v_dts[0] - self.start_pts) * ix.sample_rate
                                     / TS_CLOCK)) & 0xFFFFFFFF
        self.out.send(self.audio, unit.payload, True, ts, now)  # RFC 3640: marker = complete access unit(s)

    def _finish(self) -> None:
        at_end = self.v_end >= self.recording.index.frames
        log.info("{label}: reached {what} ({n} pictures sent, {d} dropped)", label=self.label,
                 what="the end" if at_end else "the end of its Range", n=self.sent, d=self.dropped)
        self._end("end" if at_end else "range")

    def _end(self, why: str) -> None:
        position = self.stop()
        if why == "end":  # players take BYE as the end of the stream
            for track in (self.video, self.audio_track):
                if track is not None:
                    self.out.bye(track, "end of recording")
        self.on_end(position, why)


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
