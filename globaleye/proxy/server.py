"""The proxy's RTSP server: what ordinary players (ffmpeg, VLC, GStreamer) talk to.

URLs::

    rtsp://proxy:8554/live/<DevID>/<channel>/<stream>          stream: 1|main, 2|sub
    rtsp://proxy:8554/playback/<DevID>/<channel>/<file name>   a §7.1 recording name
    rtsp://proxy:8554/cloud/<DevID>/<channel>/<YYYYMMDDHHMMSS>[?end=YYYYMMDDHHMMSS]
                                                               cloud recordings from that time
                                                               (:mod:`globaleye.proxy.cloud`)

Every request but OPTIONS needs the viewer's platform account (Digest by default,
:mod:`globaleye.proxy.auth`); the account must own or share the camera, otherwise
404 (a stranger does not learn which DevIDs exist).  Live streams are fanned out
(:class:`~globaleye.proxy.fanout.LiveHub`); playback has one upstream per viewer
and passes PAUSE, Range and Scale through.  Media go to viewers interleaved over
the RTSP connection or over UDP, from the same producer/consumer scheme as the
camera: a TCP viewer whose socket is full is paused by Twisted and skips to the
next IDR; one stalled for ``stall_timeout`` seconds is dropped.
"""

from __future__ import annotations

import collections
import re
import secrets
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet import interfaces
from twisted.internet.protocol import DatagramProtocol, ServerFactory
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from globaleye.media.names import RecordingName
from globaleye.media.rtsp.message import (
    InterleavedFrame,
    RtspCodecError,
    RtspRequest,
    TransportSpec,
    encode_interleaved,
    parse_transport,
)
from globaleye.media.rtsp.paths import NoPath, PathSettings, connect_camera, summarize
from globaleye.media.rtsp.sdp import SessionDescription, recording_duration, rewrite_sdp
from globaleye.media.rtsp.sequence import (
    Position,
    RtpCounters,
    RtpTracks,
    SequencePlayer,
    parse_scale,
)
from globaleye.media.rtsp.serving import IDLE_TIMEOUT, PUBLIC, Refusal, RtspServerConnection
from globaleye.media.rtsp.upstream import PathFailed, UpstreamSession
from globaleye.proxy.auth import (
    AccountAuthenticator,
    DigestContext,
    parse_authorization,
    uri_matches,
)
from globaleye.proxy.cloud import (
    MAX_SPAN,
    TIME_FORMAT,
    CloudPlayback,
    Programme,
    parse_time,
    programme_sdp,
    recording_tracks,
)
from globaleye.proxy.directwrite import DirectWriter, UdpSender
from globaleye.proxy.fanout import LiveHub, PictureTracker, ViewerStream
from globaleye.proxy.platform import PlatformDirectory, Target, Unavailable
from globaleye.util.peerkey import source_address
from txturn.logsummary import LogSummary

SERVER = "GlobalEye-Proxy/1.0"
SESSION_TIMEOUT = 60
VIEWER_SNDBUF = 128 * 1024
STREAMS = {"1": 1, "main": 1, "2": 2, "sub": 2}
_TRACK = re.compile(r"/trackID=(\d+)/?$", re.IGNORECASE)

log = Logger()


def parse_proxy_url(uri: str) -> tuple[Target, int | None, str]:
    """(target, track index or None, aggregate base URL) of a proxy URL; 404 when it is not one."""
    base = uri.split("?", 1)[0]
    track: int | None = None
    m = _TRACK.search(base)
    if m is not None:
        track = int(m.group(1))
        base = base[:m.start()]
    base = base.rstrip("/")
    path = urlsplit(base).path if "://" in base else base
    parts = [unquote(p) for p in path.split("/") if p]
    if len(parts) == 4 and parts[0] == "live" and parts[1].isdigit() and parts[2].isdigit() \
            and parts[3].lower() in STREAMS:
        return Target("live", parts[1], int(parts[2]), STREAMS[parts[3].lower()]), track, base
    if len(parts) == 4 and parts[0] == "playback" and parts[1].isdigit() and parts[2].isdigit():
        name = RecordingName.parse(parts[3])
        if name is None or name.dev_id != parts[1] or name.channel_no != int(parts[2]):
            raise Refusal(404, f"{parts[3]!r} is not a §7.1 recording name of {parts[1]}/{parts[2]}")
        return Target("playback", parts[1], int(parts[2]), 0, parts[3]), track, base
    if len(parts) == 4 and parts[0] == "cloud" and parts[1].isalnum() and parts[2].isdigit():
        return _cloud_target(parts, uri, track, base)
    raise Refusal(404, "not /live/<DevID>/<channel>/<stream>, /playback/<DevID>/<channel>/<file> or "
                       "/cloud/<DevID>/<channel>/<start>")


def _cloud_target(parts: list[str], uri: str, track: int | None, base: str) -> tuple[Target, int | None, str]:
    """``/cloud/<DevID>/<ch>/<start>`` with ``?end=``, or its canonical ``<start>-<end>`` form.

    The canonical form is the aggregate URL the SDP's controls are built on, so the track
    URLs (``.../trackID=0``, without a query) still name the same programme.
    """
    start_text, _, end_text = parts[3].partition("-")
    if not end_text and track is None and "?" in uri:
        end_text = (parse_qs(uri.split("?", 1)[1]).get("end") or [""])[0]
    start = parse_time(start_text)
    end = parse_time(end_text) if end_text else (start + MAX_SPAN if start is not None else None)
    if start is None or end is None or not start < end <= start + MAX_SPAN:
        raise Refusal(404, f"bad cloud time range {parts[3]!r} (YYYYMMDDHHMMSS, end after start, "
                           f"at most {MAX_SPAN})")
    span = f"{start:{TIME_FORMAT}}-{end:{TIME_FORMAT}}"
    base = base[:base.rstrip("/").rfind("/")] + "/" + span
    return Target("cloud", parts[1], int(parts[2]), 0, span), track, base


class _ViewerUdp(DatagramProtocol):
    """A viewer's server-side UDP port; RTCP receiver reports count as signs of life."""

    transport: Any  # Twisted's ITransport | None is too narrow for TCP/UDP specifics

    def __init__(self, session: ProxySession) -> None:
        self.session = session

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        self.session.touch()


class ProxySession:
    """One viewer session: its tracks' transports and what feeds them (hub or own upstream)."""

    def __init__(self, sid: str, owner: RtspProxyProtocol, target: Target, account: str, base: str) -> None:
        self.id = sid
        self.owner = owner
        self.target = target
        self.account = account
        self.base = base
        self.state = "ready"
        self.interleaved: dict[int, tuple[int, int]] = {}
        self.udp: dict[int, tuple[Any, ...]] = {}  # track -> (RTP port, RTCP port, RTP dest, RTCP dest)
        self.viewer: ViewerStream | None = None
        self.hub: LiveHub | None = None
        self.upstream: UpstreamSession | None = None
        self.description: SessionDescription | None = None
        #: Playback: the path attempts of this session's own upstream, and the viewer it feeds
        #: (empty while paused, so packets in flight after PAUSE are not sent).
        self.attempts: list[Any] = []
        self.playback_viewers: list[ViewerStream] = []
        #: Cloud (``/cloud/``): the programme, its player while playing, where PLAY resumes, RTP numbering.
        self.programme: Programme | None = None
        self.player: SequencePlayer | None = None
        self.resume: Position | None = None
        self.counters: dict[int, RtpCounters] = {}
        self.last_seen = owner.factory.reactor.seconds()

    # -- the Sink of this session's ViewerStream

    def blocked(self) -> bool:
        return bool(self.interleaved) and self.owner.paused

    def send_rtp(self, track: int, data: bytes) -> None:
        self._send(track, data, 0)

    def send_rtcp(self, track: int, data: bytes) -> None:
        self._send(track, data, 1)

    def _send(self, track: int, data: bytes, odd: int) -> None:
        channels = self.interleaved.get(track)
        if channels is not None:
            if self.owner.transport is not None and not self.owner.closed:
                self.owner.transport.write(encode_interleaved(channels[odd], data))
            return
        udp = self.udp.get(track)
        if udp is not None:
            try:
                udp[odd].write(data, udp[2 + odd])
            except OSError:
                pass

    def upstream_lost(self, reason: str) -> None:
        log.info("RTSP proxy {peer}: session {sid} ({what}) ends: {reason}", peer=self.owner.peer, sid=self.id,
                 what=self.target.label, reason=reason)
        self.owner.drop(f"upstream ended: {reason}")

    def touch(self) -> None:
        self.last_seen = self.owner.factory.reactor.seconds()

    def set_up(self) -> set[int]:
        """The tracks SETUP gave a transport."""
        return set(self.interleaved) | set(self.udp)

    def destroy(self) -> None:
        if self.player is not None:
            self.player.stop()
            self.player = None
        if self.programme is not None:
            self.programme.close()
            self.programme = None
        if self.hub is not None and self.viewer is not None:
            self.hub.remove(self.viewer)
        self.hub = None
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        for rtp_port, rtcp_port, _a, _b in self.udp.values():
            rtp_port.stopListening()
            rtcp_port.stopListening()
        self.udp.clear()
        self.owner.factory.sessions.pop(self.id, None)

    def status(self) -> dict[str, Any]:
        return {"session": self.id, "account": self.account, "peer": self.owner.peer, "stream": self.target.label,
                "kind": self.target.kind, "state": self.state,
                "transport": "tcp" if self.interleaved else "udp" if self.udp else None,
                "path": (self.hub.upstream.path if self.hub is not None and self.hub.upstream is not None
                         else self.upstream.path if self.upstream is not None else None),
                **(self.viewer.stats() if self.viewer is not None else {})}


@implementer(interfaces.IPushProducer)
class RtspProxyProtocol(RtspServerConnection):
    log_name = "RTSP proxy"
    server_name = SERVER
    allow_with_501 = True
    idle_timeout = IDLE_TIMEOUT

    def __init__(self, factory: RtspProxyFactory) -> None:
        super().__init__()
        self.factory = factory
        self.sessions: dict[str, ProxySession] = {}
        self.account: str | None = None
        self._auth_cache: tuple[str, str] | None = None  # (Authorization value, account)
        #: The nonces this connection was given (valid on it only) and the nonce counts it used.
        self.digest = DigestContext()
        #: Playback upstreams opened by DESCRIBE, waiting for SETUP (by aggregate URL), and since when.
        self.pending: dict[str, tuple[UpstreamSession, list[Any], PictureTracker]] = {}
        self.pending_since: dict[str, float] = {}
        #: Cloud programmes opened by DESCRIBE, waiting for SETUP (by aggregate URL).
        self.cloud_pending: dict[str, Programme] = {}
        self._stall: Any = None

    # -- connection and flow control

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self.transport.registerProducer(self, True)
        self.factory.connections.add(self)
        # A fixed send buffer instead of the kernel's autotuned one (up to megabytes): a
        # viewer that stops reading is noticed within a second of video, not half a minute,
        # and costs a bounded amount of kernel memory.
        try:
            self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SNDBUF)
        except (AttributeError, OSError):
            pass

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        super().connectionLost(reason)
        self.factory.connections.discard(self)
        for session in list(self.sessions.values()):
            session.destroy()
        self.sessions.clear()
        for upstream, _a, _t in self.pending.values():
            upstream.close()
        self.pending.clear()
        self.pending_since.clear()
        for programme in self.cloud_pending.values():
            programme.close()
        self.cloud_pending.clear()
        self.queue.clear()
        if self._stall is not None and self._stall.active():
            self._stall.cancel()

    def pauseProducing(self) -> None:  # noqa: N802
        """The viewer's socket is full: its pictures are skipped until it drains (and an IDR)."""
        self.paused = True
        if self._stall is None and self.factory.stall_timeout > 0:
            self._stall = self.factory.reactor.callLater(self.factory.stall_timeout, self._stalled)

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None

    def stopProducing(self) -> None:  # noqa: N802
        self.paused = True

    def _stalled(self) -> None:
        self._stall = None
        log.warn("RTSP proxy {peer}: viewer read nothing for {s:g} s; dropped", peer=self.peer,
                 s=self.factory.stall_timeout)
        self.factory.stalled_drops += 1
        self.drop("too slow")

    def drop(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            for session in self.sessions.values():
                if session.viewer is not None:
                    if isinstance(session.viewer.write, DirectWriter):
                        session.viewer.write.close()  # the hub's shared buffers hold its offer
                    session.viewer.write = None  # no more media into a connection being closed
                    session.viewer.write_sequence = None
            self.transport.abortConnection() if self.paused else self.transport.loseConnection()

    # -- input

    def interleaved(self, frame: InterleavedFrame) -> None:
        for session in self.sessions.values():
            session.touch()

    def has_sessions(self) -> bool:
        return bool(self.sessions or self.pending)

    def check_sessions(self, now: float) -> None:
        """RFC 2326 §12.37: a session without a request or RTCP for SESSION_TIMEOUT seconds is over.

        A TCP viewer being played to is exempt: it proves itself by reading (a full send
        buffer drops it after ``stall_timeout``), and simple players send nothing else.  A
        UDP viewer proves itself by its receiver reports or keep-alives, as RFC 2326 asks;
        without them, media would go on to a player that is gone.  A playback upstream
        opened by DESCRIBE and never SET UP holds one of the camera's few sessions, so it
        gets the same time.
        """
        for session in list(self.sessions.values()):
            if session.state == "playing" and session.interleaved:
                continue
            if now - session.last_seen > SESSION_TIMEOUT:
                log.info("RTSP proxy {peer}: session {sid} ({what}, {state}) timed out: no request or RTCP for "
                         "{s} s", peer=self.peer, sid=session.id, what=session.target.label, state=session.state,
                         s=SESSION_TIMEOUT)
                self.factory.session_timeouts += 1
                session.destroy()
                self.sessions.pop(session.id, None)
        for base, since in list(self.pending_since.items()):
            if now - since > SESSION_TIMEOUT and base in self.pending:
                log.info("RTSP proxy {peer}: playback upstream of {base} DESCRIBEd but not SET UP for {s} s; "
                         "closed", peer=self.peer, base=base, s=SESSION_TIMEOUT)
                self.pending.pop(base)[0].close()
                del self.pending_since[base]

    async def handle(self, request: RtspRequest) -> None:
        for session in self.sessions.values():  # any request on the connection keeps its sessions
            session.touch()
        await super().handle(request)

    def refused(self, request: RtspRequest, refusal: Refusal) -> None:
        source = source_address(self.peer)
        self.factory.refusal_log.event((source, refusal.code), f"RTSP proxy refusals {refusal.code} to {source}",
                                       "RTSP proxy {peer}: refused {method} {uri} for {account}: {code} {reason}",
                                       peer=self.peer, method=request.method, uri=request.uri,
                                       account=self.account or "-", code=refusal.code, reason=refusal.reason)
        self.factory.refusals[refusal.code] += 1

    def malformed(self, request: RtspRequest, error: RtspCodecError) -> None:
        self.factory.refusals[400] += 1
        source = source_address(self.peer)
        self.factory.refusal_log.event((source, 400), f"RTSP proxy refusals 400 to {source}",
                                       "RTSP proxy {peer}: refused {method}: 400 {e}", peer=self.peer,
                                       method=request.method, e=error)

    # -- authentication and authorisation

    async def _authenticate(self, request: RtspRequest) -> str:
        """The viewer's account, or a :class:`Refusal`.

        401 with a fresh challenge for no, wrong or stale credentials and for a locked account
        (the same answer, so a guesser learns nothing from it; the log says which).  403, and the
        connection closed right after the answer, when this peer's address has used up its
        failed authentications: it gets nothing more checked on this connection.  The guessing
        limits themselves are the authenticator's (:mod:`globaleye.proxy.auth`); a connection
        does not re-check an ``Authorization`` value that already succeeded on it (its nonce was
        issued to this connection: no other can present it), except for its ``uri``, which must
        name this request's URI (400 otherwise, RFC 7616 §3.4.6), and a qop=auth nonce count,
        which must grow.
        """
        auth = self.factory.auth
        if not auth.required:
            return "anonymous"
        header = request.headers.get("Authorization")
        if (header is not None and self._auth_cache is not None and self._auth_cache[0] == header
                and _digest_uri_of(header, request.uri) and "qop=" not in header.lower()):
            return self._auth_cache[1]
        result = await auth.check(request.method, header, self.peer, uri=request.uri, context=self.digest)
        if result.account is None:
            if result.counted:  # not a Digest client's first request, nor a stale nonce
                self.factory.auth_failures += 1
            if result.blocked:
                self.factory.reactor.callLater(0, self.drop, "too many failed authentications")
                raise Refusal(403, f"authentication: {result.reason}")
            if result.bad_request:
                raise Refusal(400, f"authentication: {result.reason}")
            raise Refusal(401, f"authentication: {result.reason}",
                          [("WWW-Authenticate", c) for c in auth.challenge(stale=result.stale, context=self.digest)])
        if self.account is not None and self.account != result.account:
            raise Refusal(403, "another account on an authenticated connection")
        if self.account is None:
            log.info("RTSP proxy {peer}: account {account} authenticated ({how})", peer=self.peer,
                     account=result.account, how=result.reason)
        self.account = result.account
        self._auth_cache = (header or "", result.account)
        return result.account

    async def _authorize(self, request: RtspRequest) -> tuple[Target, int | None, str, str]:
        target, track, base = parse_proxy_url(request.uri)
        account = await self._authenticate(request)
        if target.kind == "cloud":  # the cloud index decides who sees what; the camera may be offline
            return target, track, base, account
        if self.factory.auth.required and not await self.factory.directory.may_watch(account, target):
            raise Refusal(404, f"{target.dev_id}/{target.channel_no} is not a camera of account {account}")
        if not self.factory.directory.online(target.dev_id):
            raise Refusal(503, f"camera {target.dev_id} is offline")
        return target, track, base, account

    def _session(self, request: RtspRequest, required: bool = True) -> ProxySession | None:
        session = self.lookup_session(request, self.sessions.get, required)
        if session is not None:
            session.touch()
        return session

    # -- methods

    async def do_OPTIONS(self, request: RtspRequest) -> None:  # noqa: N802
        self.reply(request, 200, [("Public", PUBLIC)])

    async def do_GET_PARAMETER(self, request: RtspRequest) -> None:  # noqa: N802
        """Keep-alive; with a body naming ``path`` or ``status``, which path feeds this session and why."""
        session = self._session(request, required=False)
        headers = [("Session", session.id)] if session is not None else []
        asked = request.body.decode("utf-8", "replace").lower()
        if session is None or not asked.strip():
            self.reply(request, 200, headers)
            return
        attempts = session.hub.attempts if session.hub is not None else session.attempts
        path = session.status()["path"]
        lines = [f"path: {path}", "attempts: " + summarize(attempts)]
        if session.viewer is not None:
            lines += [f"{k}: {v}" for k, v in session.viewer.stats().items()]
        self.reply(request, 200, headers, ("\r\n".join(lines) + "\r\n").encode(), "text/parameters")

    do_SET_PARAMETER = do_GET_PARAMETER  # noqa: N815

    async def do_DESCRIBE(self, request: RtspRequest) -> None:  # noqa: N802
        target, _track, base, account = await self._authorize(request)
        if target.kind == "cloud":
            programme = await self._programme(target, base, account)
            first = await programme.open(0)
            sdp = programme_sdp(first, programme.total, base, self.transport.getHost().host,
                                f"GlobalEye cloud {target.label}")
            self.reply(request, 200, [("Content-Base", base + "/")], sdp, "application/sdp")
            return
        description = await self._description(target, base, account)
        urls = [f"{base}/trackID={i}" for i in range(len(description.media))]
        duration = recording_duration(description) if target.kind == "playback" else None
        host = self.transport.getHost().host
        sdp = rewrite_sdp(description, urls, host, f"GlobalEye {target.kind} {target.label}", duration)
        self.reply(request, 200, [("Content-Base", base + "/")], sdp, "application/sdp")

    async def _description(self, target: Target, base: str, account: str) -> SessionDescription:
        if target.kind == "live":
            hub = self.factory.hub(target)
            try:
                return await hub.ensure(account)
            except NoPath as e:
                raise _no_path(e) from None
        pending = self.pending.get(base)
        if pending is None:
            if len(self.pending) >= 4:
                raise Refusal(453, "too many playback upstreams on one connection")
            tracker = PictureTracker()
            viewers: list[ViewerStream] = []

            def attach(session: UpstreamSession) -> None:
                def rtp_in(track: int, data: bytes) -> None:
                    facts = tracker.feed(track, data)
                    if facts is not None and viewers:
                        viewers[0].rtp(track, data, *facts)

                def rtcp_in(track: int, data: bytes) -> None:
                    if viewers:
                        viewers[0].rtcp(track, data)

                session.on_rtp, session.on_rtcp = rtp_in, rtcp_in

            try:
                upstream, attempts = await self.factory.connect(target, account, attach)
            except NoPath as e:
                raise _no_path(e) from None
            try:
                await upstream.pause()  # the path test played from 0; the viewer's PLAY says where
            except PathFailed as e:
                upstream.close()
                raise Refusal(502, f"camera refused PAUSE: {e.reason}") from None
            upstream.on_lost = lambda reason: self.drop(f"playback upstream lost: {reason}")
            pending = (upstream, [viewers, attempts], tracker)
            self.pending[base] = pending
            self.pending_since[base] = self.factory.reactor.seconds()
        assert pending[0].description is not None
        return pending[0].description

    async def do_SETUP(self, request: RtspRequest) -> None:  # noqa: N802
        target, track, base, account = await self._authorize(request)
        session = self._session(request, required=False)
        if session is not None and session.base != base:
            raise Refusal(459, "SETUP of another stream into an existing session")
        if session is None and self.factory.viewer_count() >= self.factory.max_viewers:
            raise Refusal(453, f"{self.factory.max_viewers} viewers already (max_viewers)")
        tracks = 1
        description: SessionDescription | None = None
        if target.kind == "cloud":
            programme = session.programme if session is not None else await self._programme(target, base, account)
            assert programme is not None
            tracks = len(recording_tracks(await programme.open(0)))
        elif session is not None and session.description is not None:
            description = session.description
        else:
            description = await self._description(target, base, account)
        if description is not None:
            tracks = len(description.media)
        index = 0 if track is None else track
        if not 0 <= index < tracks:
            raise Refusal(404, f"no track {index}")
        header = request.headers.get("Transport") or ""
        specs = [s for s in parse_transport(header) if s.profile in ("RTP/AVP", "RTP/AVP/TCP") and s.unicast]
        if not specs:
            raise Refusal(461, f"no supported transport in {header[:80]!r}")
        spec = specs[0]
        if not spec.tcp and interfaces.ISSLTransport.providedBy(self.transport):
            # No SRTP here: RTP over UDP would send in the clear what the viewer asked to keep private.
            raise Refusal(461, "RTSPS carries media interleaved only (RTP/AVP/TCP)")
        if session is None:
            session = ProxySession(secrets.token_hex(8), self, target, account, base)
            session.description = description
            if target.kind == "cloud":
                session.programme = self.cloud_pending.pop(base)
            elif target.kind == "live":
                session.hub = self.factory.hub(target)
            else:
                upstream, extra, _tracker = self.pending.pop(base)
                self.pending_since.pop(base, None)
                session.upstream = upstream
                session.attempts = extra[1]
                session.playback_viewers = extra[0]
            self.sessions[session.id] = session
            self.factory.sessions[session.id] = session
            log.info("RTSP proxy {peer}: session {sid} for {account}: {what}", peer=self.peer, sid=session.id,
                     account=account, what=target.label)
        if spec.tcp:
            channels = spec.interleaved or (2 * index, 2 * index + 1)
            session.interleaved[index] = channels
            reply = TransportSpec("RTP/AVP/TCP", interleaved=channels)
        else:
            if spec.client_port is None:
                raise Refusal(461, "UDP transport without client_port")
            peer_host = self.transport.getPeer().host
            local = self.transport.getHost().host
            rtp_port = self.factory.reactor.listenUDP(0, _ViewerUdp(session), interface=local)
            rtcp_port = self.factory.reactor.listenUDP(0, _ViewerUdp(session), interface=local)
            session.udp[index] = (rtp_port, rtcp_port, (peer_host, spec.client_port[0]),
                                  (peer_host, spec.client_port[1]))
            reply = TransportSpec("RTP/AVP", client_port=spec.client_port, source=local,
                                  server_port=(rtp_port.getHost().port, rtcp_port.getHost().port))
        self.reply(request, 200, [("Session", f"{session.id};timeout={SESSION_TIMEOUT}"),
                                   ("Transport", reply.encode())])

    def _viewer(self, session: ProxySession) -> ViewerStream:
        if session.viewer is None:
            assert session.description is not None
            session.viewer = ViewerStream(session, session.description, session.target.label)
            viewer = session.viewer
            viewer.tracks = set(session.interleaved) | set(session.udp)
            if session.interleaved and not session.udp and self.transport is not None:
                viewer.channels = {track: rtp for track, (rtp, _rtcp) in session.interleaved.items()}
                viewer.write = DirectWriter(self.transport, self)
                viewer.write_sequence = self.transport.writeSequence
                viewer.can_share = True
            elif session.udp and not session.interleaved:
                viewer.udp_out = {track: UdpSender(port.socket, dest) for track, (port, _p, dest, _d)
                                  in session.udp.items() if getattr(port, "socket", None) is not None}
                viewer.can_share = len(viewer.udp_out) == len(session.udp)
        return session.viewer

    def _rtp_info(self, session: ProxySession, viewer: ViewerStream) -> str:
        return ",".join(f"url={session.base}/trackID={i};seq={viewer.seq[i]}"
                        + (f";rtptime={viewer.rtptime[i]}" if i in viewer.rtptime else "") for i in sorted(viewer.tracks))

    async def do_PLAY(self, request: RtspRequest) -> None:  # noqa: N802
        session = self._session(request)
        assert session is not None
        await self._authenticate(request)
        if not session.interleaved and not session.udp:
            raise Refusal(455, "PLAY before SETUP")
        if session.target.kind == "cloud":
            await self._play_cloud(request, session)
            return
        viewer = self._viewer(session)
        headers: list[tuple[str, str]] = [("Session", session.id)]
        if session.target.kind == "live":
            assert session.hub is not None
            if not (session.hub.running or session.hub.recovering):
                raise Refusal(503, "the camera stream ended")
            headers.append(("Range", "npt=0.000-"))
            if request.headers.get("Scale") is not None:
                headers.append(("Scale", "1"))
            if session.state == "ready":
                session.hub.prepare(viewer)  # the hub's numbering; a later PLAY goes on in it
            headers.append(("RTP-Info", self._rtp_info(session, viewer)))
            viewer.waiting = True
            self.reply(request, 200, headers)
            if session.state != "playing":
                session.hub.add(viewer)
                log.info("RTSP proxy {peer}: session {sid} plays live {what} via {path} ({n} viewers)",
                         peer=self.peer, sid=session.id, what=session.target.label,
                         path=session.hub.upstream.path if session.hub.upstream else "?",
                         n=len(session.hub.viewers))
            session.state = "playing"
            return
        upstream = session.upstream
        assert upstream is not None
        forward = [(k, v) for k, v in ((k, request.headers.get(k)) for k in ("Range", "Scale")) if v is not None]
        if session.state == "ready" and not any(k == "Range" for k, _ in forward):
            forward.append(("Range", "npt=0.000-"))  # the path test played a little: start from the start
        viewers = session.playback_viewers
        viewers[:] = []
        try:
            answer = await upstream.play(forward)
        except PathFailed as e:
            raise Refusal(e.status or 502, f"camera: {e.reason}") from None
        viewer.waiting = True
        viewers[:] = [viewer]
        headers += [(k, v) for k in ("Range", "Scale") if (v := answer.headers.get(k)) is not None]
        headers.append(("RTP-Info", self._rtp_info(session, viewer)))
        self.reply(request, 200, headers)
        session.state = "playing"
        log.info("RTSP proxy {peer}: session {sid} plays {what} via {path} ({range})", peer=self.peer,
                 sid=session.id, what=session.target.label, path=upstream.path,
                 range=answer.headers.get("Range") or "-")

    async def do_PAUSE(self, request: RtspRequest) -> None:  # noqa: N802
        session = self._session(request)
        assert session is not None
        await self._authenticate(request)
        if session.state == "ready":
            raise Refusal(455, "PAUSE before PLAY")
        headers: list[tuple[str, str]] = [("Session", session.id)]
        if session.target.kind == "cloud":
            if session.player is not None:
                session.resume = session.player.stop()
                session.player = None
            if session.resume is not None and session.programme is not None:
                recording = await session.programme.open(session.resume.segment)
                npt = session.programme.npt(session.resume, recording)
                headers.append(("Range", f"npt={npt:.3f}-{session.programme.total:.3f}"))
        elif session.target.kind == "live":
            if session.hub is not None and session.viewer is not None:
                session.hub.remove(session.viewer)
        else:
            assert session.upstream is not None
            session.playback_viewers[:] = []
            try:
                answer = await session.upstream.pause()
            except PathFailed as e:
                raise Refusal(e.status or 502, f"camera: {e.reason}") from None
            if answer.headers.get("Range"):
                headers.append(("Range", answer.headers.get("Range") or ""))
        session.state = "paused"
        self.reply(request, 200, headers)

    # -- cloud recordings

    async def _programme(self, target: Target, base: str, account: str) -> Programme:
        """The files ``base`` names, for ``account`` (404 alike for not-theirs, unknown and empty)."""
        programme = self.cloud_pending.get(base)
        if programme is not None:
            return programme
        playback = self.factory.cloud
        if playback is None:
            raise Refusal(404, "no cloud store on this proxy")
        if len(self.cloud_pending) >= 4:
            raise Refusal(453, "too many cloud programmes DESCRIBEd on one connection")
        start_text, _, end_text = target.file_name.partition("-")
        start, end = parse_time(start_text), parse_time(end_text)
        assert start is not None and end is not None
        files = await playback.files.cloud_files(account, target.dev_id, target.channel_no, start, end)
        if not files:
            log.info("RTSP proxy {peer}: cloud {what} for {account}: {why}", peer=self.peer, what=target.label,
                     account=account, why="no such camera for this account" if files is None else "no recordings")
            raise Refusal(404, f"no cloud recordings of {target.label} for account {account}")
        programme = Programme(playback, files, start, f"RTSP proxy cloud {target.label}", end)
        try:
            await programme.open(0)
        except Exception as e:
            programme.close()
            log.failure("RTSP proxy {peer}: cloud {what}: the first file cannot be opened", peer=self.peer,
                        what=target.label)
            raise Refusal(500, f"cloud file unreadable: {e}") from None
        existing = self.cloud_pending.get(base)  # another request of this connection got there first
        if existing is not None:
            programme.close()
            return existing
        self.cloud_pending[base] = programme
        return programme

    async def _play_cloud(self, request: RtspRequest, session: ProxySession) -> None:
        """PLAY of a cloud programme: Range seeks (the IDR at or before it), Scale is a §10.1 speed."""
        programme = session.programme
        assert programme is not None
        scale_header = request.headers.get("Scale")
        scale = 1.0 if scale_header is None else parse_scale(scale_header)
        if scale is None:
            raise Refusal(456, f"Scale {(scale_header or '')[:20]!r}: only the forward speeds of §10.1")
        range_header = request.headers.get("Range")
        npt: float | None = None
        if range_header is not None:
            m = re.match(r"\s*npt\s*=\s*(now|[0-9.]+)?\s*-", range_header)
            if m is None:
                raise Refusal(457, f"bad Range {range_header[:40]!r} (npt=<seconds>- only)")
            if m.group(1) not in (None, "now"):
                try:
                    npt = float(m.group(1))
                except ValueError:
                    raise Refusal(457, f"bad Range {range_header[:40]!r}") from None
        if npt is not None and npt >= programme.total:
            raise Refusal(457, f"Range {npt:.3f} is past the end ({programme.total:.3f} s)")
        if session.player is not None:
            session.resume = session.player.stop()
            session.player = None
        if npt is None and session.resume is not None:
            position = session.resume
            recording = await programme.open(position.segment)
        else:
            position, recording = await programme.locate(npt or 0.0)
        if session.programme is not programme or session.id not in self.sessions:
            return  # torn down while the file was opened
        start = programme.npt(position, recording)

        def ended(where: Position, why: str) -> None:
            if session.player is player:
                session.player = None
                session.resume = where
                session.state = "paused"
            if why == "range":  # the asked end time: the end of this programme
                for track in out.tracks:
                    out.bye(track, "end of the asked time")
            elif why == "error":  # a file that cannot be read: the viewer would wait for ever
                self.drop("cloud recording unreadable")

        first = await programme.open(0)
        end_frame = await programme.end_frame()
        if session.programme is not programme or session.id not in self.sessions:
            return
        if not session.counters:  # RTP numbering for the session's life (RFC 3550), by the first file's tracks
            for index, (payload_type, clock_rate) in enumerate(recording_tracks(first)):
                session.counters[index] = RtpCounters(payload_type, clock_rate)
        out = RtpTracks(session, {i: c for i, c in session.counters.items() if i in session.set_up()},
                        f"{session.target.dev_id}@globaleye")
        player = SequencePlayer(self.factory.reactor, out, video=0 if 0 in out.tracks else None,
                                audio=1 if 1 in out.tracks else None, segments=len(programme.files),
                                first=recording, start=position, scale=scale, open_segment=programme.open,
                                read_gop=programme.playback.read_gop, on_end=ended, end_frame=end_frame,
                                label=f"RTSP proxy session {session.id} cloud {session.target.label}")
        session.player = player
        headers = [("Session", session.id), ("Range", f"npt={start:.3f}-{programme.total:.3f}"),
                   ("Scale", f"{scale:g}"), ("RTP-Info", player.rtp_info(lambda t: f"{session.base}/trackID={t}"))]
        self.reply(request, 200, headers)
        session.state = "playing"
        log.info("RTSP proxy {peer}: session {sid} plays cloud {what} from {npt:.3f} s (file {f}) at scale {scale:g}",
                 peer=self.peer, sid=session.id, what=session.target.label, npt=start,
                 f=programme.files[position.segment].key, scale=scale)
        player.start()

    async def do_TEARDOWN(self, request: RtspRequest) -> None:  # noqa: N802
        session = self._session(request)
        assert session is not None
        session.destroy()
        self.sessions.pop(session.id, None)
        log.info("RTSP proxy {peer}: session {sid} torn down", peer=self.peer, sid=session.id)
        self.reply(request, 200)


def _digest_uri_of(header: str, request_uri: str) -> bool:
    """Whether *header* (Basic, or Digest with a ``uri``) may stand for a request of *request_uri*."""
    credentials = parse_authorization(header)
    if credentials is None or credentials.scheme != "digest":
        return credentials is not None
    return uri_matches(credentials.params["uri"], request_uri)


def _no_path(e: NoPath) -> Refusal:
    """The camera could not be reached (502) or refused us: its own answer, when meaningful."""
    if e.status in (403, 404, 453):
        return Refusal(e.status, f"camera answered {e.status}: {e}")
    return Refusal(502, f"no way to the camera: {e}")


def _stream_facts(status: dict[str, Any]) -> dict[str, Any]:
    """A live hub's status as a GetStreamStatus Stream."""
    _dev, channel, stream = status["key"]
    return {"Kind": "live", "ChannelNo": channel, "StreamType": stream, "State": status["state"],
            "Path": status["path"] or "", "Attempts": status["attempts_summary"], "Viewers": len(status["viewers"]),
            "Recoveries": status["recoveries"], "LastStopReason": status["last_stop_reason"]}


class RtspProxyFactory(ServerFactory):
    protocol = RtspProxyProtocol  # type: ignore[assignment]

    def __init__(self, directory: PlatformDirectory, auth: AccountAuthenticator, reactor: Any, *,
                 paths: PathSettings | None = None, linger: float = 5.0, max_viewers: int = 1000,
                 stall_timeout: float = 10.0, recover_timeout: float = 30.0, media_timeout: float = 10.0,
                 cloud: CloudPlayback | None = None) -> None:
        self.directory = directory
        #: ``/cloud/`` URLs: the platform's cloud index and the object store; None: those URLs are 404.
        self.cloud = cloud
        self.auth = auth
        self.reactor = reactor
        self.paths = paths or PathSettings()
        self.linger = linger
        self.max_viewers = max_viewers
        self.stall_timeout = stall_timeout
        self.recover_timeout = recover_timeout
        self.media_timeout = media_timeout
        self.hubs: dict[tuple[str, int, int], LiveHub] = {}
        self.sessions: dict[str, ProxySession] = {}
        self.connections: set[RtspProxyProtocol] = set()
        self.refusals: collections.Counter[int] = collections.Counter()
        #: Refusal lines: the first per source address and status a minute in full, the rest counted.
        self.refusal_log = LogSummary(log, reactor, level=LogLevel.warn, name="RTSP proxy refusals")
        self.auth_failures = 0
        self.stalled_drops = 0
        self.session_timeouts = 0
        self.upstream_starts = 0
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)

    def buildProtocol(self, addr: Any) -> RtspProxyProtocol:  # noqa: N802
        return RtspProxyProtocol(self)

    def viewer_count(self) -> int:
        return len(self.sessions)

    async def connect(self, target: Target, account: str, attach: Callable[[UpstreamSession], None],
                      play_headers: list[tuple[str, str]] | None = None) -> tuple[UpstreamSession, list[Any]]:
        async def fresh(path: str) -> Any:
            try:
                return await self.directory.urls(account, target, path)
            except Unavailable as e:
                raise PathFailed(e.reason) from None

        self.upstream_starts += 1
        return await connect_camera(self.reactor, fresh, self.paths, on_session=attach, play_headers=play_headers,
                                    label=f"{target.kind} {target.label}")

    def hub(self, target: Target) -> LiveHub:
        hub = self.hubs.get(target.key)
        if hub is None:
            async def connect(account: str, attach: Callable[[UpstreamSession], None]) -> Any:
                return await self.connect(target, account, attach)

            hub = LiveHub(target.key, target.label, connect, self.reactor, self.linger, self._hub_idle,
                          recover_timeout=self.recover_timeout, media_timeout=self.media_timeout)
            self.hubs[target.key] = hub
        return hub

    def _hub_idle(self, hub: LiveHub) -> None:
        """Forget idle hubs, so memory follows what is watched, not what was ever watched."""
        if not hub.viewers and not hub.running and hub.starting is None:
            self.reactor.callLater(0, self._forget, hub)

    def _forget(self, hub: LiveHub) -> None:
        if not hub.viewers and not hub.running and hub.starting is None and self.hubs.get(hub.key) is hub:
            self.recent.append(hub.status())
            del self.hubs[hub.key]

    def device_streams(self, dev_id: str) -> list[dict[str, Any]]:
        """The client API's GetStreamStatus: this device's streams now, then its last stopped ones."""
        streams: list[dict[str, Any]] = []
        for hub in self.hubs.values():
            if hub.key[0] == dev_id:
                streams.append(_stream_facts(hub.status()))
        for session in self.sessions.values():
            target = session.target
            if target.kind == "playback" and target.dev_id == dev_id:
                streams.append({"Kind": "playback", "ChannelNo": target.channel_no, "FileName": target.file_name,
                                "State": session.state, "Path": session.upstream.path if session.upstream else "",
                                "Attempts": summarize(session.attempts), "Viewers": 1, "Recoveries": 0,
                                "LastStopReason": ""})
        live = {tuple(hub.key) for hub in self.hubs.values()}
        for status in reversed(self.recent):  # newest first; one per stream
            key = tuple(status["key"])
            if key[0] == dev_id and key not in live:
                live.add(key)
                streams.append(_stream_facts(status))
        return streams

    def stop(self) -> None:
        for connection in list(self.connections):
            connection.drop("proxy stopping")
        for hub in list(self.hubs.values()):
            hub.stop("proxy stopping")

    def status(self) -> dict[str, Any]:
        return {
            "live": [hub.status() for hub in self.hubs.values()],
            "sessions": [s.status() for s in self.sessions.values()],
            "recent": list(self.recent),
            "viewers": self.viewer_count(), "max_viewers": self.max_viewers,
            "upstream_starts": self.upstream_starts, "auth_failures": self.auth_failures,
            "stalled_drops": self.stalled_drops, "session_timeouts": self.session_timeouts, "refusals": dict(self.refusals),
        }
