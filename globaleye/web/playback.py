"""A recording on the camera, played in the browser: fragmented MP4 over HTTP (issue 11, §2 item 1, §4).

``GET …/recordings/{fileName}/play.mp4?start=<s>&speed=<x>`` opens one playback session with
the camera for that one request, through the RTSP proxy's own §15 path machinery
(:meth:`RtspProxyFactory.connect <globaleye.proxy.server.RtspProxyFactory.connect>`: the
same URLs, tokens and path order as an RTSP player's playback through the proxy), asking in
its PLAY for ``Range: npt=<start>-`` and ``Scale: <speed>`` (§7.5.23, §10.1 PLAY 4).  Playback
is not shared: two browsers watching one file from two places are two sessions, as on the RTSP
side.  The H.264 is passed through untouched, one MP4 fragment per picture, with the
fragment machinery of live view (:mod:`globaleye.web.live`: the answer's headers, the
initialization segments, the channel timeout).

**Time.**  The fragments carry the *file's* time: the camera answers where it really starts
(``Range``: the IDR at or before the asked point) and at what speed (``Scale``), and stamps its
RTP at wall-clock speed (RFC 2326 §12.34: at Scale 2 the stamps advance half as fast as the
file), so a picture's decode time is ``npt_start + (rtp − rtptime) × scale`` with ``rtptime``
from the answer's RTP-Info.  The browser's ``currentTime`` is then the position in the file,
a seek bar needs no arithmetic, and the player plays at ``playbackRate = scale``.  A camera that
ignores Scale (answers none, or 1) sends at 1×: the answer says so (``X-Scale``) and the
player can still slow down with ``playbackRate`` (the data come faster than they are shown;
the browser buffers them), but not speed up beyond what arrives.

The answer is ``200 video/mp4`` with ``X-Codec``, ``X-Start`` (the file time of the first
picture), ``X-Scale`` and, when the camera's SDP says it (``a=range``), ``X-Duration``.
Everything that can fail before the first picture (access: 404 like a camera that does not
exist; camera offline: 503; no path: 502; a recording the camera does not have: 404) is a
problem answer.  At the end of the file (the camera's RTCP BYE, or it closing the session) the
last picture goes out and the answer ends cleanly.  The browser leaving (or the answer ending)
tears the camera's session down (TEARDOWN).

**Memory.**  A picture is written the moment the next one tells its duration, so the server
holds at most one picture and one being assembled.  When the browser's socket is full,
Twisted pauses this producer and the camera's RTSP connection is paused in turn (TCP paths:
the camera's own send buffer fills and it waits or drops, as for any slow RTSP player); on
the TURN-UDP path, where there is nothing to pause, pictures are skipped to the next IDR as
in live view.  A browser that reads nothing for ``stall_timeout`` seconds is dropped.

``download.mp4`` is the same stream from the start at the fastest speed the camera gives
(Scale 4), with ``Content-Disposition: attachment``: a fragmented MP4 that every player and
ffprobe reads, with the recording's duration in its ``mvex/mehd`` when the camera's SDP told
it.  There is no faster way to the bytes: §7.5.23 RTSP playback is the camera's only way out
for a recording.

Not yet: the recording's audio (AAC in the simulator's files; a second fragment track).
"""

from __future__ import annotations

import collections
import math
import socket
import struct
from typing import Any

from twisted.internet import defer, interfaces
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from globaleye.app.media import FILE_NAME
from globaleye.media import fmp4, rtp
from globaleye.media.h264au import Picture, PictureAssembler
from globaleye.media.rtsp.message import RtspCodecError, parse_npt_range
from globaleye.media.rtsp.paths import NoPath, summarize
from globaleye.media.rtsp.sdp import recording_duration
from globaleye.media.rtsp.serving import Refusal
from globaleye.media.rtsp.upstream import UpstreamSession
from globaleye.proxy.fanout import GOP_CACHE_BYTES
from globaleye.proxy.platform import Target
from globaleye.proxy.server import VIEWER_SNDBUF, RtspProxyFactory
from globaleye.web.live import (
    DEFAULT_DURATION,
    InitSegments,
    LiveUnavailable,
    StallingProducer,
    _peer,
    _signed32,
    restore_timeout,
    start_answer,
    suspend_timeout,
    write_problem,
)

log = Logger()

#: §10.1 PLAY 4: the speeds a camera plays back at (the page offers these).
MIN_SPEED, MAX_SPEED = 0.25, 4.0
#: A download runs at the fastest of them.
DOWNLOAD_SPEED = MAX_SPEED
FIRST_PICTURE_TIMEOUT = 10.0
#: A browser that reads nothing this long is gone.  Longer than live's: nothing is skipped here, and a
#: page that plays slower than the camera sends (a camera ignoring Scale 0.25) waits to read while
#: it has 25 s or more ahead (player.js), up to 20 s of wall time at 0.25×.
STALL_TIMEOUT = 60.0
RTCP_BYE = 203


def parse_play_query(start: str, speed: str) -> tuple[float, float]:
    """``start`` (seconds into the file, default 0) and ``speed`` (0.25-4, default 1); ValueError."""
    begin = float(start) if start else 0.0
    scale = float(speed) if speed else 1.0
    if not math.isfinite(begin) or begin < 0:
        raise ValueError("start is a number of seconds from 0")
    if not math.isfinite(scale) or not MIN_SPEED <= scale <= MAX_SPEED:
        raise ValueError(f"speed is from {MIN_SPEED:g} to {MAX_SPEED:g}")
    return begin, scale


def rtcp_has_bye(data: bytes) -> bool:
    """Whether a compound RTCP packet holds a BYE (RFC 3550 §6.6): the sender's stream ended."""
    offset = 0
    while offset + 4 <= len(data):
        if data[offset + 1] == RTCP_BYE:
            return True
        offset += (struct.unpack_from("!H", data, offset + 2)[0] + 1) * 4
    return False


def rtp_time_of(rtp_info: str, track_url: str, index: int) -> int | None:
    """The ``rtptime`` of one track in an RTP-Info header (RFC 2326 §12.33), or None."""
    for entry in rtp_info.split(","):
        fields = dict(part.strip().split("=", 1) for part in entry.split(";") if "=" in part)
        url = fields.get("url", "")
        if url and (url == track_url or url.endswith(track_url.rsplit("/", 1)[-1]) or url.endswith(f"trackID={index}")):
            try:
                return int(fields["rtptime"]) & 0xFFFFFFFF
            except (KeyError, ValueError):
                return None
    return None


class FileTimeline:
    """RTP timestamps of a playback → decode times in the file's own time (90 kHz).

    ``npt_start`` is the camera's answered Range start, ``scale`` its answered Scale and
    ``rtptime`` the RTP-Info stamp of that point (None: the first picture's).  Pure.
    """

    def __init__(self, npt_start: float, scale: float, rtptime: int | None) -> None:
        self.base = round(npt_start * rtp.H264_CLOCK)
        self.scale = scale
        self.rtptime = rtptime

    def decode_time(self, timestamp: int) -> int | None:
        """The picture's file time, or None for one stamped before the start (a stale packet)."""
        if self.rtptime is None:
            self.rtptime = timestamp
        delta = _signed32(timestamp - self.rtptime)
        if delta < 0:
            return None
        return self.base + round(delta * self.scale)


class PlaybackVideo:
    """Recordings for the browser, over the RTSP proxy's path machinery: ``PlaybackVideo(proxy_factory)``."""

    def __init__(self, factory: RtspProxyFactory, reactor: Any = None, *,
                 first_picture_timeout: float = FIRST_PICTURE_TIMEOUT, stall_timeout: float = STALL_TIMEOUT) -> None:
        self.factory = factory
        self.reactor = reactor if reactor is not None else factory.reactor
        self.first_picture_timeout = first_picture_timeout
        self.stall_timeout = stall_timeout
        self.streams: set[PlaybackStream] = set()
        self.answer_problem = write_problem
        self.started = 0
        self.stalled_drops = 0
        #: The last streams that ended (their status), newest last.
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)

    def render(self, request: Any, account: str, dev_id: str, channel: int, file_name: str,
               start: float = 0.0, speed: float = 1.0, download: bool = False) -> int:
        """Start playing *file_name* to *request*; NOT_DONE_YET (LiveUnavailable for what is wrong at once)."""
        peer = _peer(request)
        what = f"{dev_id}/{channel} {file_name}"
        if channel < 0 or not FILE_NAME.match(file_name):
            self._refused(peer, account, what, "bad channel or file name")
            raise LiveUnavailable(400, "Invalid request", "FileName is 1-128 of A-Z a-z 0-9 _ . -")
        if not (math.isfinite(start) and start >= 0 and MIN_SPEED <= speed <= MAX_SPEED):
            self._refused(peer, account, what, "bad start or speed")
            raise LiveUnavailable(400, "Invalid request", f"start >= 0, speed {MIN_SPEED:g}-{MAX_SPEED:g}")
        if len(self.streams) + self.factory.viewer_count() >= self.factory.max_viewers:
            self._refused(peer, account, what, "viewer limit reached")
            raise LiveUnavailable(503, "Too many viewers", "the platform serves its maximum number of viewers")
        target = Target("playback", dev_id, channel, 0, file_name)
        stream = PlaybackStream(self, request, target, account, peer, start, speed, download)
        d = defer.Deferred.fromCoroutine(self._open(stream))
        d.addErrback(self._failed, stream)
        return NOT_DONE_YET

    def _refused(self, peer: str, account: str, what: str, reason: str) -> None:
        log.info("web playback {peer}: {account} refused {what}: {reason}", peer=peer, account=account, what=what,
                 reason=reason)

    async def _open(self, stream: PlaybackStream) -> None:
        try:
            await self.open(stream)
        except LiveUnavailable as e:
            self._refused(stream.peer, stream.account, stream.target.label, e.detail)
            stream.close(e.detail, e)

    async def open(self, stream: PlaybackStream) -> None:
        """Access, then the camera's playback session on the first §15 path that delivers media."""
        target, account = stream.target, stream.account
        directory = self.factory.directory
        if not await directory.may_watch(account, target):
            raise LiveUnavailable(404, "No such camera", "no camera with this DevID and channel in your list")
        if not directory.online(target.dev_id):
            raise LiveUnavailable(503, "Camera offline", f"camera {target.dev_id} is offline")
        if stream.closed:
            return
        self.streams.add(stream)
        self.started += 1
        stream.begin()
        headers = [("Range", f"npt={stream.start:.3f}-"), ("Scale", f"{stream.speed:g}")]
        try:
            upstream, attempts = await self.factory.connect(target, account, stream.attach, headers)
        except NoPath as e:
            summary = summarize(e.attempts) or str(e)
            if e.status == 404:
                raise LiveUnavailable(404, "No such recording", f"the camera has no {target.file_name}") from None
            if e.status in (403, 453):
                raise LiveUnavailable(502, "The camera refused", f"camera answered {e.status}: {summary}") from None
            raise LiveUnavailable(502, "No path to the camera", summary) from None
        except Refusal as e:
            raise LiveUnavailable(e.code, "Camera unavailable", e.reason) from None
        stream.connected(upstream, summarize(attempts))

    def _failed(self, failure: Failure, stream: PlaybackStream) -> None:
        log.failure("web playback {peer}: failed", failure, peer=stream.peer)
        stream.close("internal error", LiveUnavailable(500, "Internal error", "the playback failed"))

    def status(self) -> dict[str, Any]:
        return {"streams": [s.status() for s in self.streams], "started": self.started,
                "stalled_drops": self.stalled_drops, "recent": list(self.recent)}


@implementer(interfaces.IPushProducer)
class PlaybackStream(StallingProducer):
    """One browser request: its own camera session, its pictures as fragments in file time."""

    log_label = "web playback"

    def __init__(self, playback: PlaybackVideo, request: Any, target: Target, account: str, peer: str,
                 start: float, speed: float, download: bool) -> None:
        self.playback = playback
        self.request = request
        self.target = target
        self.account = account
        self.peer = peer
        self.start = start
        self.speed = DOWNLOAD_SPEED if download else speed
        self.download = download
        self.reactor = playback.reactor
        self.upstream: UpstreamSession | None = None  # the session media come from (the path being tried, then the one)
        self.path = ""
        self.video_track: int | None = None
        self.assembler = PictureAssembler()
        self.timeline: FileTimeline | None = None
        self.inits = InitSegments()
        self.init_sent: bytes | None = None
        self.held: tuple[Picture, int] | None = None  # the last picture, until the next tells its duration
        self.early: list[Picture] = []  # pictures that came before the PLAY answer
        self.early_bytes = 0
        self.duration = DEFAULT_DURATION
        self.file_duration: float | None = None
        self.scale = self.speed
        self.sequence = 0
        self.headers_sent = False
        self.closed = False
        self.paused = False
        #: For an IDR: the first fragment, and after pictures were skipped (UDP path, full socket, or
        #: pictures that came before the PLAY answer said where they belong).
        self.waiting = True
        self.fragments = 0
        self.skipped = 0
        self.bytes = 0
        self.started_at = self.reactor.seconds()
        self.first_picture_after: float | None = None
        self._channel_timeout: Any = None
        self._first: Any = None
        self._stall: Any = None
        request.notifyFinish().addBoth(lambda _: self.close("browser disconnected"))

    # -- life

    def begin(self) -> None:
        self._first = self.reactor.callLater(self.playback.first_picture_timeout, self._no_picture)

    def attach(self, session: UpstreamSession) -> None:
        """connect_camera's hook before each path's PLAY: media of that session come here."""
        if self.upstream is not None and self.upstream is not session:
            self.upstream.on_rtp = self.upstream.on_rtcp = lambda track, data: None
        self.upstream = session
        self.assembler = PictureAssembler()
        self.timeline = None
        self.held = None
        self.early, self.early_bytes = [], 0
        self.waiting = True
        description = session.description
        self.video_track = description.track("video") if description is not None else None
        if self.video_track is not None and description is not None:
            self.assembler = PictureAssembler(list(description.media[self.video_track].sprop_parameter_sets))
            self.file_duration = recording_duration(description)
        session.on_rtp = lambda track, data: self._rtp(session, track, data)
        session.on_rtcp = lambda track, data: self._rtcp(session, track, data)

    def connected(self, upstream: UpstreamSession, attempts: str) -> None:
        if self.closed:
            upstream.close()  # TEARDOWN: the browser left while the path was found
            return
        self.upstream, self.path = upstream, upstream.path
        upstream.on_lost = lambda reason: self.end(f"camera session ended: {reason}")
        if self.video_track is None:
            self.close("no video track", LiveUnavailable(502, "No video", "the recording has no video track"))
            return
        log.info("web playback {peer}: {account} plays {what} from {start:g} s at {speed:g}x via {path} ({attempts})",
                 peer=self.peer, account=self.account, what=self.target.label, start=self.start, speed=self.scale,
                 path=upstream.path, attempts=attempts)

    def _no_picture(self) -> None:
        self._first = None
        if not self.closed and not self.headers_sent:
            self.close(f"no picture within {self.playback.first_picture_timeout:g} s",
                       LiveUnavailable(504, "No picture", "the camera sent no picture in time"))

    def end(self, reason: str) -> None:
        """The recording ended (BYE) or the camera's session did: the last picture, then a clean end."""
        if self.closed:
            return
        if self.held is not None:
            self._write_held(self.duration)
        self.close(reason, LiveUnavailable(502, "Camera stream lost", reason))

    def close(self, reason: str, problem: LiveUnavailable | None = None) -> None:
        """Tear the camera's session down and end the answer (once); *problem* if nothing was written."""
        if self.closed:
            return
        self.closed = True
        self.playback.streams.discard(self)
        self.playback.recent.append({**self.status(), "reason": reason})
        for call in (self._first, self._stall):
            if call is not None and call.active():
                call.cancel()
        self._first = self._stall = None
        if self.upstream is not None:
            self.upstream.close()  # TEARDOWN (if the session is still up)
        request = self.request
        if not request.finished and not getattr(request, "_disconnected", False):
            try:
                request.unregisterProducer()
            except Exception:
                pass
            if not self.headers_sent:
                self.playback.answer_problem(request, problem or LiveUnavailable(502, "Camera stream lost", reason))
            else:
                restore_timeout(request, self._channel_timeout)
                request.finish()
        log.info("web playback {peer}: {account} stopped {what}: {reason} ({n} pictures, {skipped} skipped, {kb} KiB, "
                 "first picture after {first})", peer=self.peer, account=self.account, what=self.target.label,
                 reason=reason, n=self.fragments, skipped=self.skipped, kb=self.bytes // 1024,
                 first="-" if self.first_picture_after is None else f"{self.first_picture_after * 1000:.0f} ms")

    # -- media in

    def _rtp(self, session: UpstreamSession, track: int, data: bytes) -> None:
        if self.closed or session is not self.upstream or track != self.video_track:
            return
        for picture in self.assembler.feed(data):
            self._picture(session, picture)

    def _rtcp(self, session: UpstreamSession, track: int, data: bytes) -> None:
        if not self.closed and session is self.upstream and track == self.video_track and rtcp_has_bye(data):
            self.end("end of the recording")

    def _picture(self, session: UpstreamSession, picture: Picture) -> None:
        if self.timeline is None:
            answer = session.play_answer
            if answer is None:
                # Media before the PLAY answer (UDP beats the relayed RTSP): where they belong is not
                # known yet, so they wait for it (at most a GOP's worth; beyond that, dropped).
                size = sum(len(n) for n in picture.nals)
                if self.early_bytes + size <= GOP_CACHE_BYTES:
                    self.early.append(picture)
                    self.early_bytes += size
                return
            self.timeline = self._timeline(session, answer.headers)
            early, self.early, self.early_bytes = self.early, [], 0
            for waited in early:
                self._place(waited)
        self._place(picture)

    def _place(self, picture: Picture) -> None:
        assert self.timeline is not None
        decode_time = self.timeline.decode_time(picture.timestamp)
        if decode_time is None:
            return
        if self.held is not None:
            delta = decode_time - self.held[1]
            if 0 < delta < 10 * rtp.H264_CLOCK:
                self.duration = delta
            self._write_held(self.duration)
        self.held = (picture, decode_time)

    def _timeline(self, session: UpstreamSession, headers: Any) -> FileTimeline:
        begin = self.start
        try:
            answered, _ = parse_npt_range(headers.get("Range") or "")
            if answered is not None:
                begin = answered
        except RtspCodecError:
            pass
        try:
            self.scale = float(headers.get("Scale") or "1")
        except ValueError:
            self.scale = 1.0
        if not self.scale > 0:
            self.scale = 1.0
        self.start = begin
        assert self.video_track is not None
        url = session.track_urls[self.video_track] if self.video_track < len(session.track_urls) else ""
        return FileTimeline(begin, self.scale, rtp_time_of(headers.get("RTP-Info") or "", url, self.video_track))

    # -- fragments out

    def _write_held(self, duration: int) -> None:
        assert self.held is not None
        picture, decode_time = self.held
        self.held = None
        try:
            new_init = self.inits.update(picture)
        except (fmp4.Fmp4Error, ValueError) as e:
            log.warn("web playback {what}: parameter sets not usable ({e})", what=self.target.label, e=e)
            return
        if self.inits.init is None:
            return
        try:
            sample = fmp4.avc_sample(picture.nals, duration)
        except fmp4.Fmp4Error:
            return
        if self.waiting and not sample.sync:
            self.skipped += self.headers_sent
            return
        if self.paused and self.upstream is not None and self.upstream.udp:
            self.waiting = True  # nothing to pause on UDP: skip to the next IDR
            self.skipped += 1
            return
        self.waiting = False
        if not self.headers_sent:
            self._headers()
        self.sequence += 1
        if new_init or self.init_sent is not self.inits.init:
            self.init_sent = self.inits.init
            # A download's file says its length (mehd); a stream into MSE leaves that to the page (X-Duration).
            self._write(fmp4.with_duration(self.inits.init, self.file_duration)
                        if self.download and self.file_duration is not None else self.inits.init)
        self._write(fmp4.media_segment(self.sequence, decode_time, [sample]))
        self.fragments += 1

    def _headers(self) -> None:
        request = self.request
        extra = [(b"x-start", f"{self.start:.3f}".encode()), (b"x-scale", f"{self.scale:g}".encode())]
        if self.file_duration is not None:
            extra.append((b"x-duration", f"{self.file_duration:.3f}".encode()))
        if self.download:
            name = self.target.file_name.rsplit(".", 1)[0] + ".mp4"
            extra.append((b"content-disposition", f'attachment; filename="{name}"'.encode()))
        start_answer(request, self.inits.codec, tuple(extra))
        self.headers_sent = True
        self._channel_timeout = suspend_timeout(request)
        self.first_picture_after = self.reactor.seconds() - self.started_at
        try:
            request.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SNDBUF)
        except (AttributeError, OSError):
            pass
        request.registerProducer(self, True)

    def _write(self, data: bytes) -> None:
        self.bytes += len(data)
        self.request.write(data)

    # -- IPushProducer (StallingProducer): the browser's socket

    def _paused_changed(self, paused: bool) -> None:
        """The browser's socket is full (or drained): the camera's connection waits too (TCP paths)."""
        self._upstream_reading(not paused)

    def _stall_timeout(self) -> float:
        return self.playback.stall_timeout

    def _count_stalled_drop(self) -> None:
        self.playback.stalled_drops += 1

    def _upstream_reading(self, on: bool) -> None:
        upstream = self.upstream
        if upstream is None or upstream.udp or upstream.protocol is None or upstream.closed:
            return
        transport = upstream.protocol.transport
        try:
            if on:
                transport.resumeProducing()
            else:
                transport.pauseProducing()
        except Exception:
            pass

    def status(self) -> dict[str, Any]:
        return {"peer": self.peer, "account": self.account, "recording": self.target.label, "path": self.path,
                "start": self.start, "scale": self.scale, "download": self.download, "fragments": self.fragments,
                "skipped": self.skipped, "bytes": self.bytes, "paused": self.paused}
