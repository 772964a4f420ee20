"""The camera's RTSP server (§10, §15): live view and playback of a simulated IPC.

URLs are those of §7.5.5 and §7.5.23::

    rtsp://ip:port/realplay?devid=…&channelno=…&streamtype=1|2&hashtoken=…
    rtsp://ip:port/realplay?devid=…&channelno=…&filename=DevID_Ch_YYYYMMDDHHMMSS.ts&hashtoken=…

One listening port can serve one camera or many (the simulator's ten thousand cameras
can share a port and be told apart by ``devid``, or each have their own); a
:class:`RtspCamera` is one device's RTSP state: which channels exist, which streams
are open, how many sessions it allows, and the pluggable HashToken verifier (the
lead wires it to the camera session's 35H/74H request).

Order of checks, so a single-use HashToken is not burnt on a request that would fail
anyway: URL → 404 (unknown DevID, channel, stream type or recording), stream closed
→ 403, session limit → 453, and only then the token → 401.  A token verified on a
connection (or bound to a session) is not re-sent to the platform for the later
requests of the same play-out (SETUP, PLAY carry the same URL and token), since the
platform invalidates it on first use.

Live media are pre-encoded loops (:mod:`globaleye.sim.media.source`), one per encoding the
camera's ``live_encoding`` asks for (the simulator: its 60H settings); a loop not made yet is
encoded in a worker thread while DESCRIBE waits, and a session keeps the loop its SDP
announced until it ends (a 60H change reaches the next session).  Playback reads the
recording's real MPEG-TS file (:mod:`globaleye.sim.media.recording`: indexed once, read one
GOP ahead in a worker thread).  Both are paced by the reactor clock (``callLater`` at
frame times, never blocking).  Over TCP the protocol is the transport's streaming
producer: when the socket buffer fills, Twisted pauses us and frames are dropped until
the next IDR after it resumes, so a slow reader costs at most one buffer plus one frame
of memory.
"""

from __future__ import annotations

import bisect
import collections
import ipaddress
import math
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

import attrs
from twisted.internet import interfaces
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from globaleye.media import rtp
from globaleye.media.mpegts import TS_CLOCK
from globaleye.rtsp.message import (
    InterleavedFrame,
    RtspCodecError,
    RtspRequest,
    RtspResponse,
    TransportSpec,
    encode_interleaved,
    format_npt,
    parse_npt_range,
    parse_transport,
)
from globaleye.rtsp.serving import IDLE_TIMEOUT, RtspServerConnection, redact
from globaleye.sim.media.recording import Gop, Picture, Recording, RecordingIndex
from globaleye.sim.media.source import (
    MAIN_PARAMS,
    RECORDING_SECONDS,
    SUB_PARAMS,
    AudioLoop,
    LoopParams,
    MediaLibrary,
    RecordingName,
    VideoLoop,
    default_library,
)
from globaleye.sim.stun import BindingTransactions
from globaleye.urls import is_ipv6, sdp_address

Kind = Literal["live", "playback"]
#: ``async def verify(kind, dev_id, channel_no, stream_type_or_filename, token) -> bool``.
#: Raising means "could not ask" (platform unreachable): answered 503, not 401.
Verifier = Callable[[Kind, str, int, "int | str", str], Awaitable[bool]]

SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # §10.1 PLAY 4)
SESSION_TIMEOUT = 60.0
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
VIDEO_TRACK, AUDIO_TRACK = 0, 1
STREAM_MAIN, STREAM_SUB = 1, 2
AUDIO_PACKET_SAMPLES = 160  # 20 ms of G.711 per RTP packet (RFC 3551 default ptime)
#: If the reactor falls this many frames behind (a stall), skip ahead instead of bursting.
MAX_LATE_FRAMES = 10
#: Live DESCRIBE answers a connection remembers for its SETUP (a client may describe several streams).
MAX_DESCRIBED = 8
RTCP_INTERVAL = 5.0  # RFC 3550 §6.2 minimum
#: §15 step 3: how long SETUP may wait for the STUN mapping of its media ports.
STUN_TIMEOUT = 1.5
#: §15 step 3: the IP TTL of the packets that open the camera's own NAT towards the client.
#: Enough to cross the camera's NAT (the shop router is hop 1), too little to reach the
#: client's NAT: a packet that arrives there before the client has punched is at best
#: dropped and at worst (a Linux router that accepts it on INPUT) recorded as a flow,
#: after which that NAT must give the client's punch another port, which our NAT,
#: open to the first port only, then drops.  So the opener must die on the way.
NAT_OPEN_TTL = 2
#: Addresses behind a NAT (RFC 1918, RFC 6598 carrier-grade NAT).  An address outside
#: them (or loopback) is treated as reachable as it is.
NAT_RANGES = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                     "100.64.0.0/10"))

log = Logger()


class RtspRefusal(Exception):
    """A request answered with an error status; the reason goes to the log, not the peer."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------------- verifiers


class OneTimeTokens:
    """An in-memory HashToken verifier with the platform's rules: single use, 60 s life.

    For tests and for running a simulated camera without a platform.  ``issue`` hands
    out a token bound to one (kind, DevID, channel, stream type or file name).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = 60.0) -> None:
        self.clock = clock
        self.ttl = ttl
        self._tokens: dict[str, tuple[tuple[str, str, int, str], float]] = {}
        self.checked: list[tuple[str, bool]] = []

    def issue(self, kind: Kind, dev_id: str, channel_no: int, target: int | str) -> str:
        token = secrets.token_hex(16)
        self._tokens[token] = ((kind, dev_id, channel_no, str(target)), self.clock() + self.ttl)
        return token

    async def __call__(self, kind: Kind, dev_id: str, channel_no: int, target: int | str,
                       token: str) -> bool:
        entry = self._tokens.pop(token, None)  # single use: gone whatever the outcome
        ok = (entry is not None and entry[0] == (kind, dev_id, channel_no, str(target))
              and self.clock() <= entry[1])
        self.checked.append((token, ok))
        return ok


def platform_verifier(session: Callable[[], Any], timeout: float = 10.0) -> Verifier:
    """The real verifier: ask the platform over the camera's §7.3 session (35H / 74H).

    *session* returns the camera's current :class:`~globaleye.messaging.MessageProtocol`
    (``lambda: simulated_camera.session``) or None when offline; offline, a timeout or a
    lost session raise, which the server answers 503 (the token was not judged, so 401
    would be a lie).  Result 0 is valid (§7.5.5, §7.5.23), anything else 401.
    """
    from globaleye.protocol import messages as m

    async def verify(kind: Kind, dev_id: str, channel_no: int, target: int | str, token: str) -> bool:
        current = session()
        if current is None:
            raise ConnectionError("no session with the platform")
        request: m.Message
        if kind == "live":
            request = m.TokenVerifyRequest(dev_id=dev_id, channel_no=channel_no, stream_type=int(target),
                                           hash_token=token)
        else:
            request = m.PlaybackVerifyRequest(dev_id=dev_id, channel_no=channel_no, file_name=str(target),
                                              hash_token=token)
        response = await current.request(request, timeout)
        return int(response.result) == 0

    return verify


def state_recordings(state: Any) -> Callable[[int, str], float | None]:
    """``recording_duration`` from a simulated camera's 72H listing (CameraState.recordings).

    A file deleted by 73H, or never listed, is 404; a listed file lasts from its
    StartTime to its EndTime (§7.5.22, minutes).
    """
    import datetime

    def duration(channel_no: int, file_name: str) -> float | None:
        for f in state.recordings(channel_no):
            if f.file_name == file_name:
                try:
                    start = datetime.datetime.strptime(f.start_time, "%Y%m%d%H%M")
                    end = datetime.datetime.strptime(f.end_time, "%Y%m%d%H%M")
                except ValueError:
                    return float(RECORDING_SECONDS)
                return max(1.0, (end - start).total_seconds())
        return None

    return duration


# ---------------------------------------------------------------------- URL


@attrs.frozen
class Target:
    """What a request URL asks for (§7.5.5 / §7.5.23)."""

    kind: Kind
    dev_id: str
    channel_no: int
    stream_type: int = 0  # live only
    file_name: str = ""  # playback only
    token: str = ""

    @property
    def resource(self) -> tuple[str, str, int, int, str]:
        return (self.kind, self.dev_id, self.channel_no, self.stream_type, self.file_name)

    @property
    def verify_arg(self) -> int | str:
        return self.stream_type if self.kind == "live" else self.file_name


_TRACK = re.compile(r"[/&?;]trackID=(\d+)", re.IGNORECASE)


def parse_url(uri: str) -> tuple[Target, int | None]:
    """The target and the track (None = aggregate) of a request URI; RtspRefusal(404).

    The track may be written ``&trackID=n`` (our SDP's absolute control URLs) or
    ``/trackID=n`` appended anywhere (clients that resolve a relative control against
    a URL with a query string end up with ``…&hashtoken=x/trackID=0``).
    """
    track = None
    m = _TRACK.search(uri)
    if m is not None:
        track = int(m.group(1))
        uri = uri[:m.start()] + uri[m.end():]
    try:
        parts = urlsplit(uri.rstrip("/"))
    except ValueError:
        raise RtspRefusal(400, "malformed URL") from None
    if parts.scheme.lower() not in ("rtsp", "rtspu") or parts.path.rstrip("/").lower() != "/realplay":
        raise RtspRefusal(404, f"not a realplay URL: {parts.path!r}")
    query = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    dev_id = query.get("devid", "")
    try:
        channel_no = int(query.get("channelno", ""))
    except ValueError:
        raise RtspRefusal(404, "missing or bad channelno") from None
    token = query.get("hashtoken", "")
    if not dev_id:
        raise RtspRefusal(404, "missing devid")
    if "filename" in query:
        return Target("playback", dev_id, channel_no, file_name=query["filename"], token=token), track
    try:
        stream_type = int(query.get("streamtype", ""))
    except ValueError:
        raise RtspRefusal(404, "missing or bad streamtype") from None
    return Target("live", dev_id, channel_no, stream_type=stream_type, token=token), track


# ---------------------------------------------------------------------- the camera


def _always_open(channel_no: int, stream_type: int) -> bool:
    return True


@attrs.frozen
class LiveEncoding:
    """How a live stream is encoded right now: the loop's parameters and whether it has sound.

    The simulator derives it from the stream's 60H settings (FrameSize, FrameRate,
    BitRate, AudioInput); a camera without that hook streams the library's defaults.
    """

    video: LoopParams
    audio: bool = True


@attrs.frozen
class LiveStream:
    """A live play-out's media, fixed when its SDP is given (DESCRIBE) or its session made.

    Why fixed: the SDP told the player the picture size, frame rate and tracks, and many
    players keep them for the whole session; so a 60H change reaches the next session,
    not a running one (docs/protocol.md, the XML messages' decisions).
    """

    video: VideoLoop
    audio: bool


@attrs.define(eq=False)
class RtspCamera:
    """One device's RTSP side: its channels, limits, verifier, media and live sessions.

    ``stream_open(channel, stream_type)`` False gives 403 (§10.2 7: the stream is
    switched off).  ``recording_duration(channel, file_name)`` gives the length in
    seconds of a recording the device has, or None (404); by default every well-formed
    §7.1 name of this device and channel is a 5-minute file.  ``live_encoding(channel,
    stream_type)`` says how a live stream is encoded now (the simulator: its 60H
    settings); by default main is :data:`MAIN_PARAMS` and sub :data:`SUB_PARAMS`.
    ``audio`` False means the device has no microphone at all: no live stream has sound,
    whatever ``live_encoding`` says.
    """

    dev_id: str
    verifier: Verifier
    channel_num: int = 1
    max_sessions: int = 4
    media: MediaLibrary = attrs.Factory(default_library)
    stream_open: Callable[[int, int], bool] = _always_open
    recording_duration: Callable[[int, str], float | None] | None = None
    on_sessions_changed: Callable[[int], None] | None = None
    audio: bool = True
    #: Whether a channel's recordings have audio (6AH AudioInput); None: as ``audio``.
    recording_audio: Callable[[int], bool] | None = None
    #: How a live stream (channel, stream type) is encoded now (60H); None: the defaults.
    live_encoding: Callable[[int, int], LiveEncoding] | None = None
    #: §15 step 3: the STUN server the device learns its media ports' NAT mapping from
    #: (the simulator: the TURN server of REGISTER_RES, which answers Binding); None: no STUN.
    stun_server: Callable[[], tuple[str, int] | None] | None = None
    sessions: dict[str, RtspSession] = attrs.Factory(dict)
    refusals: collections.Counter[int] = attrs.Factory(collections.Counter)
    plays: int = 0

    def encoding(self, channel_no: int, stream_type: int) -> LiveEncoding:
        """How live stream (channel, stream type) is encoded now (cheap: no encode)."""
        if self.live_encoding is not None:
            wanted = self.live_encoding(channel_no, stream_type)
            return wanted if self.audio or not wanted.audio else attrs.evolve(wanted, audio=False)
        return LiveEncoding(SUB_PARAMS if stream_type == STREAM_SUB else MAIN_PARAMS, self.audio)

    def live(self, target: Target, reactor: Any = None) -> Deferred[LiveStream]:
        """The media a new live play-out of *target* gets: the stream's current encoding.

        The loop comes from the shared library; one not made yet is encoded in a worker
        thread of *reactor* (seconds for 720p), so this never blocks the reactor, and
        DESCRIBEs that arrive meanwhile share that one encode.
        """
        wanted = self.encoding(target.channel_no, target.stream_type)
        d: Deferred[VideoLoop] = self.media.video_async(wanted.video, reactor)
        return d.addCallback(lambda loop: LiveStream(loop, wanted.audio))

    def prepare_live(self, channel_no: int, stream_type: int, reactor: Any = None) -> Deferred[None]:
        """Make a stream's current loop now (a worker thread), so the next viewer need not wait.

        The simulator calls it when 60H changes a stream, as a real camera restarts its
        encoder then; a failure is logged, since nobody waits on it.
        """
        wanted = self.encoding(channel_no, stream_type)
        d: Deferred[Any] = self.media.video_async(wanted.video, reactor)

        def failed(failure: Failure) -> None:
            log.failure("camera {dev}: could not prepare the loop of stream {ch}/{st}", failure,
                        dev=self.dev_id, ch=channel_no, st=stream_type)

        return d.addCallbacks(lambda _: None, failed)

    def audio_loop(self, video: VideoLoop) -> AudioLoop:
        """The live tone, as long as the loop, so both wrap together."""
        return self.media.audio(video.params.seconds)

    def recording(self, target: Target) -> Deferred[Recording]:
        """The file a playback target plays: the shared recording of the listed length.

        Every recording of a camera (and of every camera) with the same length and
        audio setting is the same file (:meth:`MediaLibrary.recording`); it is made
        and indexed in a worker thread if it is not ready yet, so this never blocks.
        """
        listed = self.duration(target) or float(RECORDING_SECONDS)
        audio = self.recording_audio(target.channel_no) if self.recording_audio is not None else self.audio
        result: Deferred[Recording] = self.media.recording_async(max(1, round(listed)), audio)
        return result

    def duration(self, target: Target) -> float | None:
        if target.kind == "live":
            return None
        if self.recording_duration is not None:
            return self.recording_duration(target.channel_no, target.file_name)
        return float(RECORDING_SECONDS)

    def check(self, target: Target) -> None:
        """404 / 403 for a target of this camera (the DevID was matched by the caller)."""
        if not 0 <= target.channel_no < self.channel_num:
            raise RtspRefusal(404, f"no channel {target.channel_no}")
        if target.kind == "live":
            if target.stream_type not in (STREAM_MAIN, STREAM_SUB):
                raise RtspRefusal(404, f"no stream type {target.stream_type}")
            if not self.stream_open(target.channel_no, target.stream_type):
                raise RtspRefusal(403, f"stream {target.channel_no}/{target.stream_type} is closed")
        else:
            name = RecordingName.parse(target.file_name)
            if name is None or name.dev_id != self.dev_id or name.channel_no != target.channel_no:
                raise RtspRefusal(404, f"no recording {target.file_name!r}")
            if self.duration(target) is None:
                raise RtspRefusal(404, f"no recording {target.file_name!r}")

    def check_capacity(self) -> None:
        if len(self.sessions) >= self.max_sessions:
            raise RtspRefusal(453, f"{len(self.sessions)} sessions, the maximum is {self.max_sessions}")

    def _changed(self) -> None:
        if self.on_sessions_changed is not None:
            self.on_sessions_changed(len(self.sessions))


# ---------------------------------------------------------------------- sessions and tracks


class _UdpPort(DatagramProtocol):
    """One server-side UDP port of a track (RTP or RTCP).

    §15 step 3: the client sends empty RTP packets ("punch") to our server_port; if one
    arrives from another port than the SETUP declared (a NAT rewrote it), media goes
    there instead.  Only packets from the client's address are believed, so a third
    party cannot steer a stream.
    """

    noisy = False  # one port pair per UDP track: no start/stop lines in the log

    def __init__(self, track: Track, rtcp: bool, reactor: Any = None) -> None:
        self.track = track
        self.rtcp = rtcp
        self.stun = BindingTransactions(reactor) if reactor is not None else None

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        if self.stun is not None and self.stun.received(data):
            return  # the answer to our own Binding request (§15 step 3), not the client's
        track = self.track
        track.session.touch()
        if self.rtcp:
            if not (rtp.looks_like_rtcp(data) or rtp.looks_like_rtp(data)):  # an RR punch is 8 bytes
                return
        elif not rtp.looks_like_rtp(data) or rtp.looks_like_rtcp(data):
            return
        host, port = addr[0], addr[1]
        if host not in track.trusted_hosts:
            log.warn("RTSP session {sid}: ignored punch from {addr}: not the client's address",
                     sid=track.session.id, addr=f"{host}:{port}")
            return
        current = track.rtcp_dest if self.rtcp else track.rtp_dest
        if current != (host, port):
            log.info("RTSP session {sid}: {what} redirected from {old} to {new} (punch, §15)",
                     sid=track.session.id, what="RTCP" if self.rtcp else "RTP",
                     old=current, new=f"{host}:{port}")
            if self.rtcp:
                track.rtcp_dest = (host, port)
            else:
                track.rtp_dest = (host, port)


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


class RecordingPlayer:
    """Plays a session's recording from its file; the reactor clock paces, nothing blocks.

    Picture *f* (file order) is due at ``t0 + (dts[f] - dts[start]) / 90000 / scale``
    and stamped ``ts0 + (pts[f] - pts[start]) / scale``: RTP time runs at wall-clock
    speed, so any player shows 2× as fast motion without knowing about Scale.  AAC
    frames (Scale 1 only) are due and stamped by their own PTS, on the audio clock.

    The file is read one GOP at a time through ``read_gop`` (the factory's: a worker
    thread, see :mod:`globaleye.sim.media.recording` for why), one GOP ahead of the one
    being sent, so a session holds at most two GOPs.  A read that is late holds the
    timeline (``t0`` moves by the wait; nothing is skipped or burst).  A reactor stall
    of more than ``MAX_LATE_FRAMES`` pictures drops what fell due meanwhile and
    resumes at the next IDR, as live does.  At the end of the file every track says
    RTCP BYE, which players take as the end of the stream.
    """

    def __init__(self, session: RtspSession, recording: Recording, start_frame: int, end_frame: int,
                 scale: float, read_gop: Callable[[Recording, int], Deferred[Gop]]) -> None:
        ix = recording.index
        self.session = session
        self.clock = session.clock
        self.recording = recording
        self.index = ix
        self.start_frame = start_frame
        self.end_frame = min(end_frame, ix.frames)
        self.scale = scale
        self.read_gop = read_gop
        self.pos = start_frame  # the next picture to send (or drop)
        self.base_dts = ix.v_dts[start_frame]
        self.base_pts = ix.v_pts[start_frame]
        self.frame_time = ix.frame_ticks / TS_CLOCK / scale
        self.need_idr = False
        self.stopped = False
        self._call: IDelayedCall | None = None
        self._gops: dict[int, Gop] = {}
        self._loading: set[int] = set()
        self._blocked: float | None = None  # the due time that waits for a read
        now = self.clock.seconds()
        self.t0 = now
        vt, at = session.tracks.get(VIDEO_TRACK), session.tracks.get(AUDIO_TRACK)
        self.video_ts0 = vt.next_timestamp(now) if vt else 0
        self.audio_ts0 = at.next_timestamp(now) if at else 0
        self.audio = at is not None and scale == 1.0 and ix.has_audio  # no time-stretched audio
        # AAC frames from the start picture's time to the end picture's.
        self.apos = bisect.bisect_left(ix.a_pts, self.base_pts) if self.audio else 0
        end_time = ix.v_pts[self.end_frame] if self.end_frame < ix.frames else None
        self.a_stop = (len(ix.a_pts) if end_time is None else bisect.bisect_left(ix.a_pts, end_time)) \
            if self.audio else 0

    def rtp_info(self, base_url: str) -> str:
        return rtp_info(self.session, base_url, self.video_ts0, self.audio_ts0)

    def start(self) -> None:
        self._tick()

    def stop(self) -> int:
        """Stop sending; the picture a PLAY without Range resumes at."""
        self.stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._gops.clear()
        return self.pos

    # -- timing

    def _video_due(self, frame: int) -> float:
        return self.t0 + (self.index.v_dts[frame] - self.base_dts) / TS_CLOCK / self.scale

    def _audio_due(self, j: int) -> float:
        return self.t0 + (self.index.a_pts[j] - self.base_pts) / TS_CLOCK

    def _tick(self) -> None:
        self._call = None
        if self.stopped:
            return
        now = self.clock.seconds()
        self._skip_stall(now)
        inf = float("inf")
        while True:
            v_due = self._video_due(self.pos) if self.pos < self.end_frame else inf
            a_due = self._audio_due(self.apos) if self.apos < self.a_stop else inf
            due = min(v_due, a_due)
            if due == inf:
                self._finish()
                return
            if due > now:
                break
            if v_due <= a_due:
                gop = self._gop(self.index.gop_of(self.pos))
                if gop is None:
                    self._blocked = due
                    return  # _loaded() resumes
                self._send_picture(gop.picture(self.pos), now)
                self.pos += 1
            else:
                gop = self._gop(self.index.gop_of_audio(self.apos))
                if gop is None:
                    self._blocked = due
                    return
                self._send_audio(gop, self.apos, now)
                self.apos += 1
        self._read_ahead()
        self._call = self.clock.callLater(max(0.0, due - now), self._tick)

    def _skip_stall(self, now: float) -> None:
        """The reactor stalled: drop the pictures that fell due meanwhile, resume at an IDR."""
        if self.pos >= self.end_frame or now - self._video_due(self.pos) <= MAX_LATE_FRAMES * self.frame_time:
            return
        target = self.base_dts + round((now - self.t0) * self.scale * TS_CLOCK)
        frame = min(self.end_frame, max(self.pos, bisect.bisect_right(self.index.v_dts, target) - 1))
        self.session.frames_dropped += frame - self.pos
        self.pos = frame
        self.need_idr = True
        if self.audio:
            late = self.base_pts + round((now - self.t0) * TS_CLOCK)
            self.apos = max(self.apos, min(self.a_stop, bisect.bisect_left(self.index.a_pts, late)))

    # -- the file

    def _gop(self, index: int) -> Gop | None:
        """A GOP to send from, if read; else start reading it (the timeline waits for it)."""
        gop = self._gops.get(index)
        if gop is None:
            gop = self.recording.cached(index)
            if gop is not None:
                self._gops[index] = gop
            else:
                self._load(index)
                gop = self._gops.get(index)  # the read may have completed at once
        return gop

    def _read_ahead(self) -> None:
        """Forget the GOPs behind us; read the one after the current one."""
        current = self.index.gop_of(min(self.pos, self.end_frame - 1))
        if self.audio and self.apos < self.a_stop:
            current = min(current, self.index.gop_of_audio(self.apos))
        for old in [g for g in self._gops if g < current]:
            del self._gops[old]
        following = current + 1
        if following < self.index.gops and self.index.keys[following] < self.end_frame:
            if following not in self._gops and self.recording.cached(following) is None:
                self._load(following)

    def _load(self, index: int) -> None:
        if index in self._loading:
            return
        self._loading.add(index)
        self.read_gop(self.recording, index).addCallbacks(self._loaded, self._failed,
                                                          errbackArgs=(index,))

    def _loaded(self, gop: Gop) -> None:
        self._loading.discard(gop.index)
        if self.stopped:
            return
        self._gops[gop.index] = gop
        if self._blocked is not None and self._call is None:
            lag = self.clock.seconds() - self._blocked
            self._blocked = None
            if lag > 0:
                self.t0 += lag  # hold the timeline for the read: no burst, no skip
            self._tick()

    def _failed(self, failure: Failure, index: int) -> None:
        self._loading.discard(index)
        if self.stopped:
            return
        log.failure("RTSP session {sid}: reading GOP {gop} of {path} failed; playback stops", failure,
                    sid=self.session.id, gop=index, path=self.index.path)
        self._end(bye=False)

    # -- sending

    def _congested(self) -> bool:
        owner = self.session.owner
        return self.session.tcp and (owner is None or owner.paused)

    def _send_picture(self, picture: Picture, now: float) -> None:
        session = self.session
        if self._congested() or (self.need_idr and not picture.keyframe):
            session.frames_dropped += 1
            self.need_idr = True
            return
        self.need_idr = False
        video = session.tracks.get(VIDEO_TRACK)
        if video is not None:
            ts = (self.video_ts0 + round((picture.pts - self.base_pts) / self.scale)) & 0xFFFFFFFF
            video.report(now, ts)
            for payload, marker in picture.payloads:
                video.send(payload, marker, ts)
            video.timestamp, video.last_sent_at = ts, now
        session.frames_sent += 1

    def _send_audio(self, gop: Gop, j: int, now: float) -> None:
        audio = self.session.tracks.get(AUDIO_TRACK)
        if audio is None or self._congested():
            return
        unit = gop.audio_unit(j)
        ts = (self.audio_ts0 + round((unit.pts - self.base_pts) * audio.clock_rate / TS_CLOCK)) & 0xFFFFFFFF
        audio.report(now, ts)
        audio.send(unit.payload, True, ts)  # RFC 3640: the marker says "complete access unit(s)"
        audio.timestamp, audio.last_sent_at = ts, now

    def _finish(self) -> None:
        at_end = self.end_frame >= self.index.frames
        log.info("RTSP session {sid}: playback of {name} reached {what} ({npt:.3f} s)", sid=self.session.id,
                 name=self.session.target.file_name, what="its end" if at_end else "the end of its Range",
                 npt=self.index.npt(self.end_frame))
        self._end(bye=at_end)

    def _end(self, bye: bool) -> None:
        session = self.session
        position = self.pos
        self.stop()
        if session.player is self:
            session.player = None
            session.state = "paused"
            session.resume_frame = position
        if bye:  # the file has no more: tell the player the stream is over (RFC 3550 §6.6)
            for track in session.tracks.values():
                track.bye("end of recording")


def track_url(base_url: str, index: int) -> str:
    """Absolute control URL of a track: §7.5.5's URL has a query, so relative ones break."""
    return f"{base_url}{'&' if '?' in base_url else '?'}trackID={index}"


# ---------------------------------------------------------------------- SDP


class VideoFormat(Protocol):
    """What the SDP says about a video track: a live loop and a recording's index both have it."""

    @property
    def profile_level_id(self) -> str: ...

    @property
    def sprop_parameter_sets(self) -> str: ...

    @property
    def fps(self) -> float: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


@attrs.frozen
class AudioFormat:
    """An audio track as the SDP announces it and as its Track stamps it."""

    payload_type: int
    rtpmap: str  # encoding/clock[/channels]
    clock_rate: int
    fmtp: str = ""
    ptime: int | None = None


#: Live audio: G.711 A-law, 20 ms packets.
PCMA_AUDIO = AudioFormat(rtp.PT_PCMA, f"PCMA/{rtp.PCMA_CLOCK}", rtp.PCMA_CLOCK,
                         ptime=AUDIO_PACKET_SAMPLES * 1000 // rtp.PCMA_CLOCK)


def recording_audio_format(index: RecordingIndex) -> AudioFormat | None:
    """A recording's audio as it is in the file, AAC, sent as RFC 3640 AAC-hbr; None without audio."""
    if not index.has_audio:
        return None
    return AudioFormat(rtp.PT_AAC, f"MPEG4-GENERIC/{index.sample_rate}/{index.channels}", index.sample_rate,
                       rtp.aac_hbr_fmtp(index.audio_config))


def build_sdp(target: Target, video: VideoFormat, audio: AudioFormat | None, base_url: str, host: str,
              duration: float | None) -> bytes:
    session_id = int(time.time())
    lines = [
        "v=0",
        f"o=- {session_id} 1 {sdp_address(host)}",
        f"s=GlobalEye {target.kind} {target.dev_id}/{target.channel_no}",
        "c=IN IP6 ::" if is_ipv6(host) else "c=IN IP4 0.0.0.0",
        "t=0 0",
        "a=control:*",
        "a=range:npt=0-" + ("" if duration is None else f"{duration:.3f}"),
        f"m=video 0 RTP/AVP {rtp.PT_H264}",
        f"a=rtpmap:{rtp.PT_H264} H264/{rtp.H264_CLOCK}",
        f"a=fmtp:{rtp.PT_H264} packetization-mode=1;profile-level-id={video.profile_level_id};"
        f"sprop-parameter-sets={video.sprop_parameter_sets}",
        f"a=framerate:{video.fps:g}",
        f"a=x-dimensions:{video.width},{video.height}",
        f"a=control:{track_url(base_url, VIDEO_TRACK)}",
    ]
    if audio is not None:
        lines += [f"m=audio 0 RTP/AVP {audio.payload_type}", f"a=rtpmap:{audio.payload_type} {audio.rtpmap}"]
        if audio.fmtp:
            lines.append(f"a=fmtp:{audio.payload_type} {audio.fmtp}")
        if audio.ptime:
            lines.append(f"a=ptime:{audio.ptime}")
        lines.append(f"a=control:{track_url(base_url, AUDIO_TRACK)}")
    return ("\r\n".join(lines) + "\r\n").encode()


# ---------------------------------------------------------------------- the protocol


@implementer(interfaces.IPushProducer)
class RtspCameraProtocol(RtspServerConnection):
    """One RTSP connection to the camera (or to any camera the factory serves)."""

    server_name = "GlobalEye-SimCam/1.0"
    #: A camera has few connections to give (§10.2 453 is about sessions, but each idle
    #: connection is a descriptor of a small device): the shared idle and slow-request rules.
    idle_timeout = IDLE_TIMEOUT

    def __init__(self, factory: RtspCameraFactory) -> None:
        super().__init__()
        self.factory = factory
        self.sessions: set[str] = set()
        #: (resource, token) pairs this connection has had verified by the platform.
        self.verified: set[tuple[tuple[str, str, int, int, str], str]] = set()
        #: Live media this connection's DESCRIBEs announced, by resource, so the session a
        #: later SETUP makes plays what the SDP said even if 60H changed the stream between.
        self.described: dict[tuple[str, str, int, int, str], LiveStream] = {}

    # -- connection and flow control

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self.transport.registerProducer(self, True)
        self.factory.connections += 1

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        super().connectionLost(reason)
        self.factory.connections -= 1
        # §10.1: the session ends with its RTSP connection (also for UDP, see the docs).
        for sid in list(self.sessions):
            session = self.factory.find_session(sid)
            if session is not None:
                session.destroy()
        self.sessions.clear()
        self.queue.clear()

    def pauseProducing(self) -> None:  # noqa: N802
        """The socket buffer is full: the players drop frames until resumed and an IDR."""
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False

    def stopProducing(self) -> None:  # noqa: N802
        self.paused = True

    # -- input

    def interleaved(self, frame: InterleavedFrame) -> None:
        # RTCP receiver reports over TCP: proof of life for the session.
        for sid in self.sessions:
            session = self.factory.find_session(sid)
            if session is not None:
                session.touch()

    def _write(self, response: RtspResponse) -> None:
        if self.transport is not None:
            self.transport.write(response.encode())

    # -- requests

    async def handle(self, request: RtspRequest) -> RtspResponse:
        try:
            if request.version != "RTSP/1.0":
                raise RtspRefusal(505, f"version {request.version}")
            if request.cseq is None:
                raise RtspRefusal(400, "no CSeq")
            handler = getattr(self, "do_" + request.method.upper(), None)
            if request.method.upper() in ("ANNOUNCE", "RECORD", "REDIRECT"):
                raise RtspRefusal(405, f"method {request.method} (a camera only plays)")
            if handler is None:
                raise RtspRefusal(501, f"method {request.method}")
            result: RtspResponse = await handler(request)
            return result
        except RtspRefusal as refusal:
            log.warn("RTSP {peer}: refused {method} {uri}: {code} {reason}", peer=self.peer,
                     method=request.method, uri=redact(request.uri), code=refusal.code,
                     reason=refusal.reason)
            camera = self._camera_of(request)
            if camera is not None:
                camera.refusals[refusal.code] += 1
            self.factory.refusals[refusal.code] += 1
            extra = [("Allow", PUBLIC)] if refusal.code == 405 else []
            return self.reply(request, refusal.code, extra)
        except RtspCodecError as e:
            log.warn("RTSP {peer}: refused {method}: 400 {e}", peer=self.peer, method=request.method, e=e)
            self.factory.refusals[400] += 1
            return self.reply(request, 400)

    def _camera_of(self, request: RtspRequest) -> RtspCamera | None:
        try:
            target, _ = parse_url(request.uri)
        except RtspRefusal:
            return None
        return self.factory.cameras.get(target.dev_id)

    def _session_of(self, request: RtspRequest, required: bool = True) -> RtspSession | None:
        header = request.headers.get("Session")
        if header is None:
            if required:
                raise RtspRefusal(454, "no Session header")
            return None
        session = self.factory.find_session(header.split(";")[0].strip())
        if session is None:
            raise RtspRefusal(454, f"unknown session {header[:40]!r}")
        if session.owner is not self:
            # Sessions belong to the connection that created them (they end with it).
            raise RtspRefusal(454, "session belongs to another connection")
        session.touch()
        return session

    async def _authorize(self, target: Target, new_session: bool) -> RtspCamera:
        """404 → 403 → 453 → 401, in that order (see the module docstring)."""
        camera = self.factory.cameras.get(target.dev_id)
        if camera is None:
            raise RtspRefusal(404, f"no device {target.dev_id!r} here")
        camera.check(target)
        if new_session:
            camera.check_capacity()
        key = (target.resource, target.token)
        if key in self.verified:
            return camera
        if not target.token:
            raise RtspRefusal(401, "no hashtoken")
        try:
            ok = await camera.verifier(target.kind, target.dev_id, target.channel_no,
                                       target.verify_arg, target.token)
        except Exception as e:
            raise RtspRefusal(503, f"token verification unavailable: {e}") from None
        if not ok:
            raise RtspRefusal(401, "hashtoken rejected by the platform")
        self.verified.add(key)
        if self.closed:
            raise RtspRefusal(500, "connection closed during verification")
        return camera

    async def do_OPTIONS(self, request: RtspRequest) -> RtspResponse:  # noqa: N802
        if request.headers.get("Session"):
            self._session_of(request, required=False)
        return self.reply(request, 200, [("Public", PUBLIC)])

    async def do_GET_PARAMETER(self, request: RtspRequest) -> RtspResponse:  # noqa: N802
        """Keep-alive (ffmpeg, VLC send it every timeout/2); we expose no parameters."""
        session = self._session_of(request, required=False)
        headers = [("Session", session.id)] if session else []
        return self.reply(request, 200, headers)

    do_SET_PARAMETER = do_GET_PARAMETER  # noqa: N815

    async def do_DESCRIBE(self, request: RtspRequest) -> RtspResponse:  # noqa: N802
        target, _ = parse_url(request.uri)
        accept = request.headers.get("Accept")
        if accept and "application/sdp" not in accept.lower() and "*/*" not in accept:
            raise RtspRefusal(406, f"cannot answer Accept: {accept[:40]}")
        camera = await self._authorize(target, new_session=True)
        base = _base_url(request.uri)
        video: VideoFormat
        if target.kind == "playback":  # what the file holds, and its real length
            index = (await camera.recording(target)).index
            video, audio, duration = index, recording_audio_format(index), index.duration
        else:  # the stream's current encoding; a new one is encoded off the reactor thread
            live = await camera.live(target, self.factory.reactor)
            self.described.pop(target.resource, None)
            self.described[target.resource] = live
            while len(self.described) > MAX_DESCRIBED:
                del self.described[next(iter(self.described))]
            video, audio, duration = live.video, PCMA_AUDIO if live.audio else None, None
        if self.closed:
            raise RtspRefusal(500, "connection closed while the media were prepared")
        sdp = build_sdp(target, video, audio, base, self.transport.getHost().host, duration)
        return self.reply(request, 200, [("Content-Base", base), ("Content-Type", "application/sdp")],
                           sdp)

    async def do_SETUP(self, request: RtspRequest) -> RtspResponse:  # noqa: N802
        target, track_index = parse_url(request.uri)
        session = self._session_of(request, required=False)
        if session is not None and session.target.resource != target.resource:
            raise RtspRefusal(459, "SETUP of another resource into an existing session")
        camera = await self._authorize(target, new_session=session is None)
        recording = None
        live: LiveStream | None = None
        audio_format: AudioFormat | None
        if target.kind == "playback":
            recording = await camera.recording(target)
            audio_format = recording_audio_format(recording.index)
            if self.closed:
                raise RtspRefusal(500, "connection closed while the recording was prepared")
        else:
            # A session plays what its DESCRIBE announced (or, without DESCRIBE, the
            # stream's encoding now) until it ends: see LiveStream.
            live = session.live if session is not None else self.described.get(target.resource)
            if live is None:
                live = await camera.live(target, self.factory.reactor)
                if self.closed:
                    raise RtspRefusal(500, "connection closed while the live loop was prepared")
            audio_format = PCMA_AUDIO if live.audio else None
        if track_index is None:
            track_index = VIDEO_TRACK
        if track_index not in (VIDEO_TRACK, AUDIO_TRACK) or (track_index == AUDIO_TRACK and audio_format is None):
            raise RtspRefusal(404, f"no track {track_index}")
        if session is not None and session.state == "playing":
            raise RtspRefusal(455, "SETUP while playing")
        header = request.headers.get("Transport")
        if not header:
            raise RtspRefusal(461, "no Transport header")
        specs = [s for s in parse_transport(header) if s.profile in ("RTP/AVP", "RTP/AVP/TCP") and s.unicast]
        if not specs:
            raise RtspRefusal(461, f"no supported transport in {header[:80]!r}")
        spec = specs[0]
        if session is None:
            camera.check_capacity()  # again: another connection may have won the race
            session = RtspSession(secrets.token_hex(8), camera, target, self, self.factory.clock)
            session.recording = recording
            session.live = live
            self.described.pop(target.resource, None)
            camera.sessions[session.id] = session
            self.factory.sessions[session.id] = session
            self.sessions.add(session.id)
            camera._changed()
        old = session.tracks.pop(track_index, None)
        if old is not None:
            old.close()
        if track_index == VIDEO_TRACK or audio_format is None:
            track = Track(session, track_index, rtp.PT_H264, rtp.H264_CLOCK)
        else:
            track = Track(session, track_index, audio_format.payload_type, audio_format.clock_rate)
        local = self.transport.getHost().host
        if spec.tcp:
            channels = spec.interleaved or (2 * track_index, 2 * track_index + 1)
            track.interleaved = channels
            reply = TransportSpec("RTP/AVP/TCP", interleaved=channels, ssrc=track.ssrc)
        else:
            if spec.client_port is None:
                raise RtspRefusal(461, "UDP transport without client_port")
            peer_host = self.transport.getPeer().host
            dest = spec.destination or peer_host
            track.rtp_dest = (dest, spec.client_port[0])
            track.rtcp_dest = (dest, spec.client_port[1])
            track.trusted_hosts = frozenset({dest, peer_host})
            try:
                track.rtp_port, track.rtcp_port = self.factory.udp_pair(track, local)
            except Exception as e:
                raise RtspRefusal(453, f"no UDP ports: {e}") from None
            source, server_port = local, (track.rtp_port.getHost().port, track.rtcp_port.getHost().port)
            stun_server = camera.stun_server() if camera.stun_server is not None else None
            media_host = track.rtp_port.getHost().host
            if media_host in ("0.0.0.0", "::"):
                media_host = local
            if stun_server is not None and behind_nat(media_host, dest, peer_host):
                mapped = await _map_ports(self.factory.reactor, track, stun_server)
                if self.closed or track.rtp_port is None:
                    raise RtspRefusal(500, "connection closed during the STUN query")
                if mapped is not None:
                    source, server_port = mapped
                    log.info("RTSP session {sid}: media ports {local} mapped to {ip}:{ports} (STUN {server}, "
                             "§15 step 3)", sid=session.id, local=f"{local}:{track.rtp_port.getHost().port}",
                             ip=source, ports=f"{server_port[0]}-{server_port[1]}", server=stun_server)
                    track.open_nat()
                else:
                    log.warn("RTSP session {sid}: no STUN answer from {server}; answering the local address",
                             sid=session.id, server=stun_server)
            reply = TransportSpec("RTP/AVP", destination=dest, source=source, client_port=spec.client_port,
                                  server_port=server_port, ssrc=track.ssrc)
            session.arm_timeout()
        session.tracks[track_index] = track
        return self.reply(request, 200, [("Session", f"{session.id};timeout={int(SESSION_TIMEOUT)}"),
                                          ("Transport", reply.encode())])

    async def do_PLAY(self, request: RtspRequest) -> RtspResponse:  # noqa: N802
        session = self._session_of(request)
        assert session is not None
        target, _ = parse_url(request.uri) if "realplay" in request.uri.lower() else (session.target, None)
        if target.resource != session.target.resource:
            raise RtspRefusal(459, "PLAY of another resource")
        if target.token and target.token != session.target.token:
            await self._authorize(target, new_session=False)
        if not session.tracks:
            raise RtspRefusal(455, "PLAY before SETUP")
        camera = session.camera
        range_header = request.headers.get("Range")
        scale_header = request.headers.get("Scale")
        headers: list[tuple[str, str]] = [("Session", session.id)]
        player: Player | RecordingPlayer
        if session.target.kind == "live":
            # Live: start at the IDR at or before "now" on the camera's timeline;
            # Range and Scale do not apply (answered npt=0- and Scale 1).
            live = session.live
            if live is None:  # SETUP binds it; a session from elsewhere gets the current encoding
                live = session.live = await camera.live(session.target, self.factory.reactor)
                if self.closed or session.owner is not self:
                    raise RtspRefusal(454, "the session ended while the live loop was prepared")
            video = live.video
            frame = int(self.factory.clock.seconds() * video.fps)
            headers.append(("Range", "npt=0.000-"))
            if scale_header is not None:
                headers.append(("Scale", "1"))
            session.stop_player()
            session.scale = 1.0
            player = Player(session, video, camera.audio_loop(video) if live.audio else None,
                            frame - frame % video.params.gop)
        else:
            recording = session.recording or await camera.recording(session.target)
            if self.closed or session.owner is not self:
                raise RtspRefusal(454, "the session ended while the recording was prepared")
            session.recording = recording
            index = recording.index
            duration = index.duration
            scale = session.scale if scale_header is None else _parse_scale(scale_header)
            playing = session.state == "playing" and isinstance(session.player, RecordingPlayer)
            if range_header is not None:
                try:
                    begin, stop = parse_npt_range(range_header)
                except RtspCodecError as e:
                    raise RtspRefusal(457, str(e)) from None
                if begin is None:  # npt=-20: from where we are
                    begin = index.npt(session.player.pos if isinstance(session.player, RecordingPlayer)
                                      else session.resume_frame)
                if begin >= duration or (stop is not None and stop <= begin):
                    raise RtspRefusal(457, f"Range {range_header!r} outside 0-{duration:.3f}")
                # Start on the IDR at or before the requested point: a decoder needs one.
                start = index.seek(begin)
                end = index.frames if stop is None else min(index.frames, index.frame_at(stop))
                session.stop_player()
            elif playing and scale == session.scale:
                assert isinstance(session.player, RecordingPlayer)
                return self.reply(request, 200, [*headers, ("Range", format_npt(
                    index.npt(session.player.start_frame), duration)), ("Scale", _fmt_scale(scale))])
            else:
                # Resume where PAUSE (or a PLAY at another speed) left off: the decoder
                # still has the pictures before it, so no IDR is needed.
                session.stop_player()
                start, end = session.resume_frame, index.frames
                if start >= index.frames:
                    raise RtspRefusal(457, "playback is at its end")
            headers.append(("Range", format_npt(index.npt(start), index.npt(end))))
            headers.append(("Scale", _fmt_scale(scale)))
            session.scale = scale
            player = RecordingPlayer(session, recording, start, end, scale, self.factory.read_gop)
        headers.append(("RTP-Info", player.rtp_info(_base_url(request.uri))))
        response = self.reply(request, 200, headers)
        session.player = player
        session.state = "playing"
        camera.plays += 1
        player.start()  # after the response is written: media follow the 200
        return response

    async def do_PAUSE(self, request: RtspRequest) -> RtspResponse:  # noqa: N802
        session = self._session_of(request)
        assert session is not None
        if session.state == "ready":
            raise RtspRefusal(455, "PAUSE before PLAY")
        session.stop_player()
        session.state = "paused"
        headers = [("Session", session.id)]
        if session.target.kind == "playback" and session.recording is not None:
            headers.append(("Range", format_npt(session.recording.index.npt(session.resume_frame), None)))
        return self.reply(request, 200, headers)

    async def do_TEARDOWN(self, request: RtspRequest) -> RtspResponse:  # noqa: N802
        session = self._session_of(request)
        assert session is not None
        session.destroy()
        response = self.reply(request, 200)
        if not self.sessions:
            # §10.1 TEARDOWN 4): the camera closes the RTSP socket.
            self.closed = True
            self.transport.loseConnection()
        return response


def behind_nat(local: str, *client_hosts: str) -> bool:
    """§15 step 3 applies: our media address is a NAT-private one and the client is outside our network.

    A client on loopback, or itself at a NAT-private address (the shop LAN), reaches
    our local ports as they are; a client at a public address (through the TURN relay,
    or UPnP's port forward) needs our NAT mapping, and our NAT opened towards it.
    """
    try:
        ours = ipaddress.ip_address(local)
    except ValueError:
        return False
    if not any(ours in net for net in NAT_RANGES):
        return False
    for host in client_hosts:
        try:
            theirs = ipaddress.ip_address(host)
        except ValueError:
            continue
        if theirs.is_loopback or any(theirs in net for net in NAT_RANGES):
            return False
    return True


async def _map_ports(reactor: Any, track: Track, server: tuple[str, int]) -> tuple[str, tuple[int, int]] | None:
    """The STUN mappings of a track's RTP and RTCP ports, asked from those very sockets, in parallel."""
    from twisted.internet.defer import gatherResults

    queries = []
    for port in (track.rtp_port, track.rtcp_port):
        stun = port.protocol.stun if port is not None else None
        if stun is None:
            return None
        queries.append(Deferred.fromCoroutine(stun.query(port, server, timeout=STUN_TIMEOUT)))
    rtp_mapped, rtcp_mapped = await gatherResults(queries)
    if rtp_mapped is None:
        return None
    rtcp_port = rtcp_mapped[1] if rtcp_mapped is not None and rtcp_mapped[0] == rtp_mapped[0] else rtp_mapped[1] + 1
    return rtp_mapped[0], (rtp_mapped[1], rtcp_port)


def _parse_scale(value: str) -> float:
    try:
        wanted = float(value.strip())
    except ValueError:
        raise RtspRefusal(456, f"bad Scale {value[:20]!r}") from None
    if not wanted > 0 or math.isinf(wanted):
        raise RtspRefusal(456, f"Scale {value[:20]!r}: reverse play is not supported")
    # RFC 2326 §12.34: the server may pick the nearest speed it supports and says so.
    return min(SCALES, key=lambda s: abs(math.log(s / wanted)))


def _fmt_scale(scale: float) -> str:
    return f"{scale:g}"


def _base_url(uri: str) -> str:
    """The request URL without a track suffix: the aggregate control URL."""
    m = _TRACK.search(uri)
    if m is not None:
        uri = uri[:m.start()] + uri[m.end():]
    return uri.rstrip("/")




class RtspCameraFactory(ServerFactory):
    """Listens for one camera or many; the URL's ``devid`` picks the camera.

    ``udp_interface`` is where UDP media ports are bound (default: the address the
    RTSP connection came in on).
    """

    protocol = RtspCameraProtocol  # type: ignore[assignment]

    def __init__(self, cameras: RtspCamera | Mapping[str, RtspCamera] | None = None,
                 reactor: Any = None, udp_interface: str | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.udp_interface = udp_interface
        if isinstance(cameras, RtspCamera):
            cameras = {cameras.dev_id: cameras}
        self.cameras: dict[str, RtspCamera] = dict(cameras or {})
        self.sessions: dict[str, RtspSession] = {}
        self.refusals: collections.Counter[int] = collections.Counter()
        self.connections = 0

    def add(self, camera: RtspCamera) -> None:
        self.cameras[camera.dev_id] = camera

    def remove(self, dev_id: str) -> None:
        camera = self.cameras.pop(dev_id, None)
        if camera is not None:
            for session in list(camera.sessions.values()):
                owner = session.owner
                session.destroy()
                if owner is not None and owner.transport is not None:
                    owner.transport.loseConnection()

    def buildProtocol(self, addr: Any) -> RtspCameraProtocol:  # noqa: N802
        return RtspCameraProtocol(self)

    def find_session(self, sid: str) -> RtspSession | None:
        return self.sessions.get(sid)

    def read_gop(self, recording: Recording, gop: int) -> Deferred[Gop]:
        """One GOP of a recording for a player: from the shared cache, else read in a worker thread.

        The read (a ``pread`` and a demux, about a millisecond for the generated files
        but unbounded on a slow disk) never runs on the reactor thread.  A reactor
        without threads (``task.Clock`` in tests) reads in place.
        """
        cached = recording.cached(gop)
        if cached is not None:
            return succeed(cached)
        pool = getattr(self.reactor, "getThreadPool", None)
        if pool is None:
            return maybeDeferred(recording.read_gop, gop)
        from twisted.internet.threads import deferToThreadPool

        result: Deferred[Gop] = deferToThreadPool(self.reactor, pool(), recording.read_gop, gop)
        return result

    def udp_pair(self, track: Track, local: str) -> tuple[Any, Any]:
        """Two UDP ports (RTP, RTCP) for one track, bound next to the RTSP address."""
        interface = self.udp_interface or local
        rtp_port = self.reactor.listenUDP(0, _UdpPort(track, False, self.reactor), interface=interface)
        try:
            rtcp_port = self.reactor.listenUDP(0, _UdpPort(track, True, self.reactor), interface=interface)
        except Exception:
            rtp_port.stopListening()
            raise
        return rtp_port, rtcp_port

