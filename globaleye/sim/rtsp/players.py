"""A simulated camera's RTSP sessions, their tracks, and the two players (live loop, recording).

Both players are paced by the reactor clock (``callLater`` at frame times, never
blocking).  Live media are pre-encoded loops (:mod:`globaleye.sim.media.source`);
playback reads the recording's real MPEG-TS file (:mod:`globaleye.media.tsfile`:
indexed once, read one GOP ahead in a worker thread) with the player the RTSP proxy's
cloud playback uses too (:mod:`globaleye.media.rtsp.sequence`, one segment here).
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from globaleye.media import rtp
from globaleye.media.rtsp.message import encode_interleaved
from globaleye.media.rtsp.sequence import Position, SequencePlayer
from globaleye.media.tsfile import Gop, Recording
from globaleye.sim.media.source import AudioLoop, VideoLoop
from globaleye.sim.rtsp.nat import NAT_OPEN_TTL
from globaleye.sim.rtsp.urls import AUDIO_TRACK, VIDEO_TRACK, Target, track_url

if TYPE_CHECKING:
    from globaleye.sim.rtsp.server import LiveStream, RtspCamera, RtspCameraProtocol

SESSION_TIMEOUT = 60.0
AUDIO_PACKET_SAMPLES = 160  # 20 ms of G.711 per RTP packet (RFC 3551 default ptime)
#: If the reactor falls this many frames behind (a stall), skip ahead instead of bursting.
MAX_LATE_FRAMES = 10
RTCP_INTERVAL = 5.0  # RFC 3550 §6.2 minimum

log = Logger()


# ---------------------------------------------------------------------- sessions and tracks


@attrs.define(eq=False)
class Track:
    """One media stream of a session: how its RTP leaves and its RTP counters."""

    session: RtspSession
    index: int
    payload_type: int
    clock_rate: int
    ssrc: int = attrs.Factory(lambda: secrets.randbits(32))
    seq: int = attrs.Factory(lambda: secrets.randbits(15))
    timestamp: int = attrs.Factory(lambda: secrets.randbits(31))
    last_sent_at: float | None = None
    interleaved: tuple[int, int] | None = None
    rtp_dest: tuple[str, int] | None = None
    rtcp_dest: tuple[str, int] | None = None
    trusted_hosts: frozenset[str] = frozenset()
    rtp_port: Any = None
    rtcp_port: Any = None
    packets: int = 0
    octets: int = 0
    last_report: float | None = None

    def next_timestamp(self, now: float) -> int:
        """Where the RTP clock stands now: continuous across PAUSE, seeks and scale changes."""
        if self.last_sent_at is None:
            return self.timestamp
        return (self.timestamp + int(max(0.0, now - self.last_sent_at) * self.clock_rate)) & 0xFFFFFFFF

    def send(self, payload: bytes, marker: bool, timestamp: int) -> None:
        packet = rtp.rtp_header(self.payload_type, self.seq, timestamp, self.ssrc, marker) + payload
        self.seq = (self.seq + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        self._out(packet, rtcp=False)

    def report(self, now: float, timestamp: int) -> None:
        """An RTCP SR every RTCP_INTERVAL seconds (first one with the first media)."""
        if self.last_report is not None and now - self.last_report < RTCP_INTERVAL:
            return
        self.last_report = now
        cname = f"{self.session.camera.dev_id}@globaleye"
        self._out(rtp.rtcp_sender_report(self.ssrc, time.time(), timestamp, self.packets, self.octets,
                                         cname), rtcp=True)

    def bye(self, reason: str) -> None:
        """RTCP BYE (after a last SR): this source sends nothing more (the end of a recording)."""
        cname = f"{self.session.camera.dev_id}@globaleye"
        self._out(rtp.rtcp_bye(self.ssrc, time.time(), self.timestamp, self.packets, self.octets, cname,
                               reason), rtcp=True)

    def _out(self, packet: bytes, rtcp: bool) -> None:
        if self.interleaved is not None:
            owner = self.session.owner
            if owner is not None and owner.transport is not None:
                owner.transport.write(encode_interleaved(self.interleaved[1 if rtcp else 0], packet))
        elif rtcp:
            if self.rtcp_port is not None and self.rtcp_dest is not None:
                self.rtcp_port.write(packet, self.rtcp_dest)
        elif self.rtp_port is not None and self.rtp_dest is not None:
            self.rtp_port.write(packet, self.rtp_dest)

    def open_nat(self) -> None:
        """§15 step 3: one packet from each media port to the client's, so our NAT lets its punch in.

        An empty RTP packet (an old sequence number, so no player counts it as loss or
        media) and an empty RTCP receiver report, with an IP TTL of ``NAT_OPEN_TTL``:
        they open our NAT but die before the client's.  Sent at SETUP, before the
        client can punch (it needs this SETUP's answer first): the client's punch then
        arrives through a NAT that has already seen us send to its address and port.
        """
        for port, dest, packet in (
                (self.rtp_port, self.rtp_dest,
                 rtp.rtp_header(self.payload_type, (self.seq - 1) & 0xFFFF, self.timestamp, self.ssrc, False)),
                (self.rtcp_port, self.rtcp_dest, bytes([0x80, 201, 0, 1]) + self.ssrc.to_bytes(4, "big"))):
            if port is None or dest is None:
                continue
            sock = getattr(port, "socket", None)
            try:
                old_ttl = sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) if sock is not None else None
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, NAT_OPEN_TTL)
                try:
                    port.write(packet, dest)
                finally:
                    if sock is not None and old_ttl is not None:
                        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, old_ttl)
            except OSError as e:
                log.info("RTSP session {sid}: NAT-opening packet to {dest} failed: {e}",
                         sid=self.session.id, dest=dest, e=e)

    def close(self) -> None:
        for port in (self.rtp_port, self.rtcp_port):
            if port is not None:
                port.stopListening()
        self.rtp_port = self.rtcp_port = None


@attrs.define(eq=False)
class RtspSession:
    id: str
    camera: RtspCamera
    target: Target
    owner: RtspCameraProtocol | None
    clock: IReactorTime
    tracks: dict[int, Track] = attrs.Factory(dict)
    state: Literal["ready", "playing", "paused"] = "ready"
    player: Player | RecordingPlayer | None = None
    #: Live: the loop and audio this session plays, fixed at its SETUP (:class:`LiveStream`).
    live: LiveStream | None = None
    #: Playback: the file being played (known from SETUP on).
    recording: Recording | None = None
    #: Playback: the picture (file order) the next PLAY without Range resumes at.
    resume_frame: int = 0
    scale: float = 1.0
    timer: IDelayedCall | None = None
    frames_sent: int = 0
    frames_dropped: int = 0

    @property
    def tcp(self) -> bool:
        return any(t.interleaved is not None for t in self.tracks.values())

    def touch(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.reset(SESSION_TIMEOUT)

    def arm_timeout(self) -> None:
        if self.timer is None:
            self.timer = self.clock.callLater(SESSION_TIMEOUT, self._expired)

    def _expired(self) -> None:
        self.timer = None
        log.info("RTSP session {sid} of {dev}: no activity for {t:g} s, closed", sid=self.id,
                 dev=self.camera.dev_id, t=SESSION_TIMEOUT)
        self.destroy()
        if self.owner is not None and self.owner.transport is not None:
            self.owner.transport.loseConnection()

    def stop_player(self) -> None:
        if self.player is not None:
            self.resume_frame = self.player.stop()
            self.player = None

    def destroy(self) -> None:
        self.stop_player()
        for track in self.tracks.values():
            track.close()
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.camera.sessions.pop(self.id, None) is not None:
            self.camera._changed()
        if self.owner is not None:
            self.owner.sessions.discard(self.id)
            self.owner.factory.sessions.pop(self.id, None)
        self.owner = None


def rtp_info(session: RtspSession, base_url: str, video_ts0: int, audio_ts0: int) -> str:
    """PLAY's RTP-Info: where each set-up track's numbering starts (both players' answer)."""
    parts = []
    for index, ts in ((VIDEO_TRACK, video_ts0), (AUDIO_TRACK, audio_ts0)):
        track = session.tracks.get(index)
        if track is not None:
            parts.append(f"url={track_url(base_url, index)};seq={track.seq};rtptime={ts}")
    return ",".join(parts)


class Player:
    """Sends a live session's frames at their times; the reactor clock paces, nothing blocks.

    ``frame`` counts media frames from the epoch, so every viewer of a camera sees the
    same picture; the loop frame is ``frame % len(loop)``.  Frame *n* after start is
    due at ``t0 + n / fps``.  (Playback is :class:`RecordingPlayer`.)
    """

    def __init__(self, session: RtspSession, video: VideoLoop, audio: AudioLoop | None,
                 start_frame: int, scale: float = 1.0) -> None:
        self.session = session
        self.clock = session.clock
        self.video = video
        self.audio = audio if scale == 1.0 else None  # no time-stretched audio: video only
        self.start_frame = start_frame
        self.scale = scale
        self.interval = 1.0 / (video.fps * scale)
        self.sent = 0  # frames since start (sent or dropped)
        #: Audio samples since start that are sent (or skipped), a multiple of the packet size.
        self.audio_pos = 0
        #: The start's place in the tone, so every viewer hears the same beep with the same picture.
        self.audio_start = (start_frame % len(video.frames)) * rtp.PCMA_CLOCK // video.fps
        self.need_idr = False
        self._call: IDelayedCall | None = None
        now = self.clock.seconds()
        self.t0 = now
        vt, at = session.tracks.get(VIDEO_TRACK), session.tracks.get(AUDIO_TRACK)
        self.video_ts0 = vt.next_timestamp(now) if vt else 0
        self.audio_ts0 = at.next_timestamp(now) if at else 0
        if at is None:
            self.audio = None

    def rtp_info(self, base_url: str) -> str:
        return rtp_info(self.session, base_url, self.video_ts0, self.audio_ts0)

    def start(self) -> None:
        self._tick()

    def stop(self) -> int:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return self.start_frame + self.sent

    def _tick(self) -> None:
        self._call = None
        session = self.session
        now = self.clock.seconds()
        due = int((now - self.t0) / self.interval) + 1  # frames that should be out by now
        if due - self.sent > MAX_LATE_FRAMES:
            # The reactor stalled: skip, and resume cleanly at an IDR.
            skipped = due - 1 - self.sent
            session.frames_dropped += skipped
            self.sent += skipped
            self.need_idr = True
        while self.sent < due:
            frame = self.start_frame + self.sent
            self._send(frame)
            self.sent += 1
        self._call = self.clock.callLater(max(0.0, self.t0 + self.sent * self.interval - now), self._tick)

    def _send(self, frame: int) -> None:
        session = self.session
        unit = self.video.frames[frame % len(self.video.frames)]
        owner = session.owner
        congested = session.tcp and (owner is None or owner.paused)
        if congested or (self.need_idr and not unit.keyframe):
            session.frames_dropped += 1
            self.need_idr = True
            return
        self.need_idr = False
        n = self.sent
        now = self.clock.seconds()
        video = session.tracks.get(VIDEO_TRACK)
        if video is not None:
            ts = (self.video_ts0 + round(n * rtp.H264_CLOCK / (self.video.fps * self.scale))) & 0xFFFFFFFF
            video.report(now, ts)
            for payload, marker in unit.payloads:
                video.send(payload, marker, ts)
            video.timestamp, video.last_sent_at = ts, now
        audio = session.tracks.get(AUDIO_TRACK)
        if audio is not None and self.audio is not None:
            self._send_audio(audio, n, now)
        session.frames_sent += 1

    def _send_audio(self, audio: Track, n: int, now: float) -> None:
        """The 20 ms packets of tone that fall within picture *n*'s time (since the start).

        Packets are cut by time, not per picture: at 25 fps a picture is exactly two
        packets, but at 15 fps it is 533⅓ samples, so a picture carries two or three
        packets and the tone stays continuous at any 60H frame rate.  The packets of
        pictures that were dropped (congestion, a stall) are skipped, not sent late.
        """
        assert self.audio is not None
        fps = self.video.fps
        begin = n * rtp.PCMA_CLOCK // fps // AUDIO_PACKET_SAMPLES * AUDIO_PACKET_SAMPLES
        end = (n + 1) * rtp.PCMA_CLOCK // fps
        self.audio_pos = max(self.audio_pos, begin)
        pcma = self.audio.pcma
        first = True
        while self.audio_pos + AUDIO_PACKET_SAMPLES <= end:
            start = (self.audio_start + self.audio_pos) % len(pcma)
            chunk = pcma[start:start + AUDIO_PACKET_SAMPLES]
            if len(chunk) < AUDIO_PACKET_SAMPLES:
                chunk += pcma[:AUDIO_PACKET_SAMPLES - len(chunk)]
            ts = (self.audio_ts0 + self.audio_pos) & 0xFFFFFFFF
            if first:
                audio.report(now, ts)
                first = False
            audio.send(chunk, False, ts)
            audio.timestamp, audio.last_sent_at = ts, now
            self.audio_pos += AUDIO_PACKET_SAMPLES


class _SessionOut:
    """A session's tracks as the shared player's :class:`~globaleye.media.rtsp.sequence.RtpOut`."""

    def __init__(self, session: RtspSession) -> None:
        self.session = session

    def blocked(self) -> bool:
        owner = self.session.owner
        return self.session.tcp and (owner is None or owner.paused)

    def next_timestamp(self, track: int, now: float) -> int:
        return self.session.tracks[track].next_timestamp(now)

    def next_sequence(self, track: int) -> int:
        return self.session.tracks[track].seq

    def anchor(self, track: int, timestamp: int, wallclock: float) -> None:
        pass  # a camera's SRs say when they were sent (Track.report)

    def send(self, track: int, payload: bytes, marker: bool, timestamp: int, now: float) -> None:
        t = self.session.tracks[track]
        t.report(now, timestamp)
        t.send(payload, marker, timestamp)
        t.timestamp, t.last_sent_at = timestamp, now

    def bye(self, track: int, reason: str) -> None:
        self.session.tracks[track].bye(reason)


class _CountingPlayer(SequencePlayer):
    """The shared player, counting into the session's statistics."""

    def __init__(self, session: RtspSession, *args: Any, **kwargs: Any) -> None:
        self.session = session
        super().__init__(*args, **kwargs)

    def count_sent(self) -> None:
        super().count_sent()
        self.session.frames_sent += 1

    def count_dropped(self, pictures: int) -> None:
        super().count_dropped(pictures)
        self.session.frames_dropped += pictures


class RecordingPlayer:
    """Plays a session's recording from its file: the shared player of
    :mod:`globaleye.media.rtsp.sequence` with one segment and the Range's end.

    Picture *f* (file order) is due at ``t0 + (dts[f] - dts[start]) / 90000 / scale``
    and stamped ``ts0 + (pts[f] - pts[start]) / scale``: RTP time runs at wall-clock
    speed, so any player shows 2× as fast motion without knowing about Scale.  AAC
    frames (Scale 1 only) are due and stamped by their own PTS, on the audio clock.
    The file is read one GOP ahead in a worker thread (``read_gop``, the factory's); a
    late read holds the timeline; a reactor stall drops what fell due and resumes at the
    next IDR, as live does.  At the end of the file every track says RTCP BYE, which
    players take as the end of the stream.
    """

    def __init__(self, session: RtspSession, recording: Recording, start_frame: int, end_frame: int,
                 scale: float, read_gop: Callable[[Recording, int], Deferred[Gop]]) -> None:
        self.session = session
        self.recording = recording
        self.start_frame = start_frame
        self.player = _CountingPlayer(
            session, session.clock, _SessionOut(session),
            video=VIDEO_TRACK if VIDEO_TRACK in session.tracks else None,
            audio=AUDIO_TRACK if AUDIO_TRACK in session.tracks else None,
            segments=1, first=recording, start=Position(0, start_frame), scale=scale,
            open_segment=_one_file, read_gop=read_gop, on_end=self._ended, end_frame=end_frame,
            label=f"RTSP session {session.id}: playback of {session.target.file_name}")

    @property
    def pos(self) -> int:
        """The next picture to send (or drop)."""
        return self.player.pos

    def rtp_info(self, base_url: str) -> str:
        return self.player.rtp_info(lambda track: track_url(base_url, track))

    def start(self) -> None:
        self.player.start()

    def stop(self) -> int:
        """Stop sending; the picture a PLAY without Range resumes at."""
        return self.player.stop().frame

    def _ended(self, position: Position, why: str) -> None:
        session = self.session
        if session.player is self:
            session.player = None
            session.state = "paused"
            session.resume_frame = position.frame


def _one_file(segment: int) -> Deferred[Recording]:
    raise AssertionError("a camera's playback is one file")
