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
recording's real MPEG-TS file (:mod:`globaleye.media.tsfile`: indexed once, read one
GOP ahead in a worker thread).  Both are paced by the reactor clock (``callLater`` at
frame times, never blocking).  Over TCP the protocol is the transport's streaming
producer: when the socket buffer fills, Twisted pauses us and frames are dropped until
the next IDR after it resumes, so a slow reader costs at most one buffer plus one frame
of memory.
"""

from __future__ import annotations

import collections
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import interfaces
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from globaleye.media import rtp
from globaleye.media.names import RECORDING_SECONDS, RecordingName
from globaleye.media.rtsp.message import (
    InterleavedFrame,
    RtspCodecError,
    RtspRequest,
    RtspResponse,
    TransportSpec,
    format_npt,
    parse_npt_range,
    parse_transport,
)
from globaleye.media.rtsp.sequence import nearest_scale
from globaleye.media.rtsp.serving import IDLE_TIMEOUT, PUBLIC, Refusal, RtspServerConnection
from globaleye.media.tsfile import Gop, Recording
from globaleye.sim.media.source import (
    MAIN_PARAMS,
    SUB_PARAMS,
    AudioLoop,
    LoopParams,
    MediaLibrary,
    VideoLoop,
    default_library,
)
from globaleye.sim.rtsp.nat import _UdpPort, behind_nat, map_ports
from globaleye.sim.rtsp.players import SESSION_TIMEOUT, Player, RecordingPlayer, RtspSession, Track
from globaleye.sim.rtsp.sdp import (
    PCMA_AUDIO,
    AudioFormat,
    VideoFormat,
    build_sdp,
    recording_audio_format,
)
from globaleye.sim.rtsp.urls import (
    AUDIO_TRACK,
    VIDEO_TRACK,
    Target,
    Verifier,
    base_url,
    parse_url,
)

STREAM_MAIN, STREAM_SUB = 1, 2
#: Live DESCRIBE answers a connection remembers for its SETUP (a client may describe several streams).
MAX_DESCRIBED = 8
log = Logger()


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
            raise Refusal(404, f"no channel {target.channel_no}")
        if target.kind == "live":
            if target.stream_type not in (STREAM_MAIN, STREAM_SUB):
                raise Refusal(404, f"no stream type {target.stream_type}")
            if not self.stream_open(target.channel_no, target.stream_type):
                raise Refusal(403, f"stream {target.channel_no}/{target.stream_type} is closed")
        else:
            name = RecordingName.parse(target.file_name)
            if name is None or name.dev_id != self.dev_id or name.channel_no != target.channel_no:
                raise Refusal(404, f"no recording {target.file_name!r}")
            if self.duration(target) is None:
                raise Refusal(404, f"no recording {target.file_name!r}")

    def check_capacity(self) -> None:
        if len(self.sessions) >= self.max_sessions:
            raise Refusal(453, f"{len(self.sessions)} sessions, the maximum is {self.max_sessions}")

    def _changed(self) -> None:
        if self.on_sessions_changed is not None:
            self.on_sessions_changed(len(self.sessions))


# ---------------------------------------------------------------------- the protocol


@implementer(interfaces.IPushProducer)
class RtspCameraProtocol(RtspServerConnection):
    """One RTSP connection to the camera (or to any camera the factory serves)."""

    server_name = "GlobalEye-SimCam/1.0"
    refused_note = " (a camera only plays)"
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

    def refused(self, request: RtspRequest, refusal: Refusal) -> None:
        super().refused(request, refusal)
        camera = self._camera_of(request)
        if camera is not None:
            camera.refusals[refusal.code] += 1

    def _camera_of(self, request: RtspRequest) -> RtspCamera | None:
        try:
            target, _ = parse_url(request.uri)
        except Refusal:
            return None
        return self.factory.cameras.get(target.dev_id)

    def _session_of(self, request: RtspRequest, required: bool = True) -> RtspSession | None:
        session = self.lookup_session(request, self.factory.find_session, required)
        if session is None:
            return None
        if session.owner is not self:
            # Sessions belong to the connection that created them (they end with it).
            raise Refusal(454, "session belongs to another connection")
        session.touch()
        return session

    async def _authorize(self, target: Target, new_session: bool) -> RtspCamera:
        """404 → 403 → 453 → 401, in that order (see the module docstring)."""
        camera = self.factory.cameras.get(target.dev_id)
        if camera is None:
            raise Refusal(404, f"no device {target.dev_id!r} here")
        camera.check(target)
        if new_session:
            camera.check_capacity()
        key = (target.resource, target.token)
        if key in self.verified:
            return camera
        if not target.token:
            raise Refusal(401, "no hashtoken")
        try:
            ok = await camera.verifier(target.kind, target.dev_id, target.channel_no,
                                       target.verify_arg, target.token)
        except Exception as e:
            raise Refusal(503, f"token verification unavailable: {e}") from None
        if not ok:
            raise Refusal(401, "hashtoken rejected by the platform")
        self.verified.add(key)
        if self.closed:
            raise Refusal(500, "connection closed during verification")
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
            raise Refusal(406, f"cannot answer Accept: {accept[:40]}")
        camera = await self._authorize(target, new_session=True)
        base = base_url(request.uri)
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
            raise Refusal(500, "connection closed while the media were prepared")
        sdp = build_sdp(target, video, audio, base, self.transport.getHost().host, duration)
        return self.reply(request, 200, [("Content-Base", base), ("Content-Type", "application/sdp")],
                           sdp)

    async def do_SETUP(self, request: RtspRequest) -> RtspResponse:  # noqa: N802
        target, track_index = parse_url(request.uri)
        session = self._session_of(request, required=False)
        if session is not None and session.target.resource != target.resource:
            raise Refusal(459, "SETUP of another resource into an existing session")
        camera = await self._authorize(target, new_session=session is None)
        recording = None
        live: LiveStream | None = None
        audio_format: AudioFormat | None
        if target.kind == "playback":
            recording = await camera.recording(target)
            audio_format = recording_audio_format(recording.index)
            if self.closed:
                raise Refusal(500, "connection closed while the recording was prepared")
        else:
            # A session plays what its DESCRIBE announced (or, without DESCRIBE, the
            # stream's encoding now) until it ends: see LiveStream.
            live = session.live if session is not None else self.described.get(target.resource)
            if live is None:
                live = await camera.live(target, self.factory.reactor)
                if self.closed:
                    raise Refusal(500, "connection closed while the live loop was prepared")
            audio_format = PCMA_AUDIO if live.audio else None
        if track_index is None:
            track_index = VIDEO_TRACK
        if track_index not in (VIDEO_TRACK, AUDIO_TRACK) or (track_index == AUDIO_TRACK and audio_format is None):
            raise Refusal(404, f"no track {track_index}")
        if session is not None and session.state == "playing":
            raise Refusal(455, "SETUP while playing")
        header = request.headers.get("Transport")
        if not header:
            raise Refusal(461, "no Transport header")
        specs = [s for s in parse_transport(header) if s.profile in ("RTP/AVP", "RTP/AVP/TCP") and s.unicast]
        if not specs:
            raise Refusal(461, f"no supported transport in {header[:80]!r}")
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
                raise Refusal(461, "UDP transport without client_port")
            peer_host = self.transport.getPeer().host
            dest = spec.destination or peer_host
            track.rtp_dest = (dest, spec.client_port[0])
            track.rtcp_dest = (dest, spec.client_port[1])
            track.trusted_hosts = frozenset({dest, peer_host})
            try:
                track.rtp_port, track.rtcp_port = self.factory.udp_pair(track, local)
            except Exception as e:
                raise Refusal(453, f"no UDP ports: {e}") from None
            source, server_port = local, (track.rtp_port.getHost().port, track.rtcp_port.getHost().port)
            stun_server = camera.stun_server() if camera.stun_server is not None else None
            media_host = track.rtp_port.getHost().host
            if media_host in ("0.0.0.0", "::"):
                media_host = local
            if stun_server is not None and behind_nat(media_host, dest, peer_host):
                mapped = await map_ports(self.factory.reactor, track, stun_server)
                if self.closed or track.rtp_port is None:
                    raise Refusal(500, "connection closed during the STUN query")
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
            raise Refusal(459, "PLAY of another resource")
        if target.token and target.token != session.target.token:
            await self._authorize(target, new_session=False)
        if not session.tracks:
            raise Refusal(455, "PLAY before SETUP")
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
                    raise Refusal(454, "the session ended while the live loop was prepared")
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
                raise Refusal(454, "the session ended while the recording was prepared")
            session.recording = recording
            index = recording.index
            duration = index.duration
            scale = session.scale if scale_header is None else _parse_scale(scale_header)
            playing = session.state == "playing" and isinstance(session.player, RecordingPlayer)
            if range_header is not None:
                try:
                    begin, stop = parse_npt_range(range_header)
                except RtspCodecError as e:
                    raise Refusal(457, str(e)) from None
                if begin is None:  # npt=-20: from where we are
                    begin = index.npt(session.player.pos if isinstance(session.player, RecordingPlayer)
                                      else session.resume_frame)
                if begin >= duration or (stop is not None and stop <= begin):
                    raise Refusal(457, f"Range {range_header!r} outside 0-{duration:.3f}")
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
                    raise Refusal(457, "playback is at its end")
            headers.append(("Range", format_npt(index.npt(start), index.npt(end))))
            headers.append(("Scale", _fmt_scale(scale)))
            session.scale = scale
            player = RecordingPlayer(session, recording, start, end, scale, self.factory.read_gop)
        headers.append(("RTP-Info", player.rtp_info(base_url(request.uri))))
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
            raise Refusal(455, "PAUSE before PLAY")
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


def _parse_scale(value: str) -> float:
    try:
        wanted = float(value.strip())
    except ValueError:
        raise Refusal(456, f"bad Scale {value[:20]!r}") from None
    scale = nearest_scale(wanted)  # §10.1 PLAY 4), shared with the proxy's cloud playback
    if scale is None:
        raise Refusal(456, f"Scale {value[:20]!r}: reverse play is not supported")
    return scale


def _fmt_scale(scale: float) -> str:
    return f"{scale:g}"


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

