"""Live video for the browser: the camera's H.264 untouched, as fragmented MP4 over HTTP (issue 11).

A browser cannot play RTSP, but every current one plays fragmented MP4 through Media Source
Extensions (``static/js/player.js``).  So the browsers of a camera stream are one more viewer
of the RTSP proxy's :class:`~globaleye.proxy.fanout.LiveHub` for it: the same one upstream
per (DevID, channel, stream) as the RTSP viewers, the same §15 path selection, the same GOP
cache (the first picture comes at once) and the same recovery when the camera drops (the hub
rebases timestamps, the browser sees one continuous stream).  Nothing is transcoded: the RTP
packets the hub fans out are reassembled into pictures (:mod:`globaleye.media.h264au`) and
each picture becomes one MP4 fragment (:mod:`globaleye.media.fmp4`) the moment it is whole,
so the browser's latency is the camera's plus the network's.  That is done once per camera
stream (:class:`FragmentFeed`, the hub's viewer) and every browser (:class:`BrowserViewer`)
is handed the same bytes.

The answer is ``200 video/mp4``, chunked, with the codec in ``X-Codec`` (RFC 6381, for
``MediaSource.addSourceBuffer``): an initialization segment, then one fragment per picture,
starting at an IDR; a new initialization segment when the camera's SPS/PPS change (MSE takes
one mid-stream).  The headers are written at the first picture, so everything that can go
wrong before it (no access, camera offline, no path to the camera, no picture) is still an
``application/problem+json`` answer with the right status.

Flow control is Twisted's producer/consumer, as for the RTSP viewers: each browser is its
request's push producer; when its socket is full Twisted pauses it and it skips fragments
until it drains and an IDR comes; one paused for the proxy's ``stall_timeout`` is dropped.
So a slow browser costs one socket buffer and at most one fragment, never stalls the others,
and nothing queues without bound (the feed keeps one GOP, at most ``GOP_CACHE_BYTES``).

Sound: the camera's G.711 is transcoded once per camera stream (in the feed, never per browser)
into AAC-LC (:class:`FeedAudio`, :mod:`globaleye.media.aacenc`), a second track of the same
fragments (``X-Codec: avc1.xxxxxx,mp4a.40.2``), placed on the video's timeline by the RTCP sender
reports.  It needs PyAV and numpy (the ``[web]`` extra); without them the live view is video
only, said once at start.  MSE plays only what both tracks have buffered, so the sound's
encoder delay (about two AAC frames, encoded at 16 kHz: 0.13 s) is added to the browser's latency.

Browsers without Media Source Extensions (iPhone Safari before ManagedMediaSource) get HLS
from the same feed: :mod:`globaleye.web.hls` is one more viewer of it, cutting the fragments
into segments at IDRs.

Not yet: more than a few cameras on one page: one answer per camera is one HTTP/1.1
connection, and a browser opens at most six to one origin (Chromium 156 measured: the 7th and
8th streams of a page got nothing, and the page's API calls would wait behind them), so a
9-camera grid needs HTTP/2 or one multiplexed WebSocket.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, interfaces
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from globaleye.media import aacenc, fmp4, h264rtp, rtp
from globaleye.media.h264au import Picture, PictureAssembler
from globaleye.media.rtsp.paths import NoPath, summarize
from globaleye.media.rtsp.sdp import SessionDescription
from globaleye.media.rtsp.serving import Refusal
from globaleye.proxy.fanout import GOP_CACHE_BYTES, LiveHub, ViewerStream
from globaleye.proxy.platform import Target
from globaleye.proxy.server import VIEWER_SNDBUF, RtspProxyFactory

log = Logger()

#: Main and sub stream (§8.9 StreamType).
STREAM_TYPES = (1, 2)
#: How long the first picture may take once the upstream runs (the GOP cache usually gives it at once).
FIRST_PICTURE_TIMEOUT = 10.0
#: The duration given to a picture until the next one tells the real one (25 fps).
DEFAULT_DURATION = rtp.H264_CLOCK // 25
#: The sound may trail the pictures by this much before silence fills the hole: MSE plays
#: only what both tracks have buffered, so a camera whose sound stops must not stop the video.
MAX_AUDIO_LAG = 0.3
#: The sound is encoded at twice the camera's 8 kHz: a 16 kHz AAC frame is 64 ms, not 128, and
#: MSE plays only what both tracks have buffered, so the encoder's frame of delay (and the wait
#: for a whole frame) count in the browser's latency (docs/performance.md); 16 kHz mono AAC
#: costs about as little to encode.
AUDIO_UPSAMPLE = 2
#: The static payload types of G.711 (RFC 3551), for an SDP without an rtpmap line.
G711_PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA"}
PROBLEM_TYPE = "/api/v1/problems/live-unavailable"


class LiveUnavailable(Exception):
    """The stream cannot be watched; raised, or answered as a problem, before any video is written."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail


def write_problem(request: Any, problem: LiveUnavailable) -> None:
    """An RFC 9457 answer with the fields of the API's own problems (``globaleye.web.problem``)."""
    request.setResponseCode(problem.status)
    request.setHeader(b"content-type", b"application/problem+json")
    request.setHeader(b"cache-control", b"no-store")
    request.write(json.dumps({"type": PROBLEM_TYPE, "title": problem.title, "status": problem.status,
                              "detail": problem.detail}, ensure_ascii=False).encode())
    request.finish()


def _peer(request: Any) -> str:
    address = request.getClientAddress()
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


def _signed32(delta: int) -> int:
    return ((delta + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def start_answer(request: Any, codec: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """The ``200 video/mp4`` headers of a fragment stream (live and playback), codec in ``X-Codec``."""
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"video/mp4")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"x-codec", codec.encode())
    for name, value in headers:
        request.setHeader(name, value)


def suspend_timeout(request: Any) -> Any:
    """The HTTP channel's idle timeout counts only what the browser sends: a stream that only
    receives would be cut after it, so it is off while the stream runs (stalls are ours).
    Returns what :func:`restore_timeout` puts back."""
    channel = getattr(request, "channel", None)
    if channel is None or not hasattr(channel, "setTimeout"):
        return None
    previous = getattr(channel, "timeOut", None)
    channel.setTimeout(None)
    return previous


def restore_timeout(request: Any, previous: Any) -> None:
    channel = getattr(request, "channel", None)
    if channel is not None and previous is not None and hasattr(channel, "setTimeout"):
        channel.setTimeout(previous)


class InitSegments:
    """The initialization segment of a picture stream: a new one when an IDR brings new SPS/PPS."""

    def __init__(self, audio: FeedAudio | None = None) -> None:
        #: The stream's sound, whose AAC track joins every initialization segment (None: video only).
        self.audio = audio
        self.params: tuple[bytes, bytes] | None = None
        self.init: bytes | None = None
        self.codec = ""

    def update(self, picture: Picture) -> bool:
        """Whether *picture* brought a new initialization segment (Fmp4Error/ValueError: unusable)."""
        if not picture.keyframe:
            return False
        sps = next((n for n in picture.nals if rtp.nal_type(n) == rtp.NAL_SPS), None)
        pps = next((n for n in picture.nals if rtp.nal_type(n) == rtp.NAL_PPS), None)
        if sps is None or pps is None or (sps, pps) == self.params:
            return False
        tracks = [fmp4.video_track(sps, pps)]
        codec = fmp4.codec_string(sps)
        if self.audio is not None:
            tracks.append(self.audio.mp4_track())
            codec += "," + aacenc.AAC_LC_CODEC
        self.init, self.codec = fmp4.init_segment_for(tracks), codec
        self.params = (sps, pps)
        return True


async def running_hub(factory: RtspProxyFactory, account: str, target: Target) -> tuple[LiveHub, SessionDescription]:
    """The proxy's hub of *target*, started for *account* (§15 path selection) and with video; what
    goes wrong as :class:`LiveUnavailable` (502 no path or refused, 503 ended).  The live view's and
    the snapshots' way in."""
    hub = factory.hub(target)
    try:
        description = await hub.ensure(account)
    except NoPath as e:
        summary = summarize(e.attempts) or str(e)
        if e.status in (403, 404, 453):
            raise LiveUnavailable(502, "The camera refused", f"camera answered {e.status}: {summary}") from None
        raise LiveUnavailable(502, "No path to the camera", summary) from None
    except Refusal as e:
        raise LiveUnavailable(e.code, "Camera unavailable", e.reason) from None
    if not (hub.running or hub.recovering):
        raise LiveUnavailable(503, "Camera stream ended", "the camera stream ended")
    if description.track("video") is None:
        raise LiveUnavailable(502, "No video", "the camera's stream has no video track")
    return hub, description


class LiveVideo:
    """The browser's live view, built on the RTSP proxy's hubs: ``LiveVideo(proxy_factory)``.

    The reactor is the proxy's (``factory.reactor``) unless another is given.
    """

    def __init__(self, factory: RtspProxyFactory, reactor: Any = None, *,
                 first_picture_timeout: float = FIRST_PICTURE_TIMEOUT, audio: bool | None = None) -> None:
        self.factory = factory
        #: Whether the camera's G.711 is transcoded to AAC for the browsers (None: if PyAV and
        #: numpy are installed, the ``[web]`` extra; the platform runs without them, video only).
        if audio is None:
            missing = aacenc.available()
            if missing is not None:
                log.warn("web live: video only, no sound ({why}): pip install '.[web]' for audio", why=missing)
            audio = missing is None
        self.audio = audio
        self.reactor = reactor if reactor is not None else factory.reactor
        self.first_picture_timeout = first_picture_timeout
        self.viewers: set[BrowserViewer] = set()
        #: The shared fMP4 of each camera stream with browser viewers, by hub key.
        self.feeds: dict[tuple[str, int, int], FragmentFeed] = {}
        #: How an unavailable stream is answered once render() has returned (the web face may
        #: put its own problem writer here).
        self.answer_problem: Callable[[Any, LiveUnavailable], None] = write_problem
        self.started = 0
        self.stalled_drops = 0

    def render(self, request: Any, account: str, dev_id: str, channel: int, stream: int) -> int:
        """Start streaming to *request*; NOT_DONE_YET.

        LiveUnavailable is raised for what is known at once (a bad stream number, the viewer
        cap).  The rest is asynchronous and answered here through ``answer_problem``: access
        first (404, the same for a camera that does not exist and one that is not the
        account's), then whether the camera is online (503), then the path to it (502).
        """
        peer = _peer(request)
        if stream not in STREAM_TYPES or channel < 0:
            self._refused(peer, account, dev_id, channel, stream, "bad channel or stream")
            raise LiveUnavailable(400, "Invalid request", "the stream is main (1) or sub (2)")
        if len(self.viewers) + self.factory.viewer_count() >= self.factory.max_viewers:
            self._refused(peer, account, dev_id, channel, stream, "viewer limit reached")
            raise LiveUnavailable(503, "Too many viewers", "the platform serves its maximum number of viewers")
        d = defer.Deferred.fromCoroutine(self._open(request, peer, account, Target("live", dev_id, channel, stream)))
        d.addErrback(self._failed, request, peer)
        return NOT_DONE_YET

    def _refused(self, peer: str, account: str, dev_id: str, channel: int, stream: int, reason: str) -> None:
        log.info("web live {peer}: {account} refused {dev_id}/{channel} stream {stream}: {reason}",
                 peer=peer, account=account, dev_id=dev_id, channel=channel, stream=stream, reason=reason)

    async def _open(self, request: Any, peer: str, account: str, target: Target) -> None:
        gone: list[str] = []
        request.notifyFinish().addBoth(lambda _: gone.append("browser left"))
        try:
            viewer = await self.open(request, peer, account, target, gone)
        except LiveUnavailable as e:
            self._refused(peer, account, target.dev_id, target.channel_no, target.stream_type, e.detail)
            if not gone:
                self.answer_problem(request, e)
            return
        if viewer is None:
            log.info("web live {peer}: {account} left {what} before its first picture", peer=peer,
                     account=account, what=target.label)

    async def open(self, request: Any, peer: str, account: str, target: Target,
                   gone: list[str]) -> BrowserViewer | None:
        """Access, the hub's upstream (§15), then a viewer on it; None if the browser left meanwhile."""
        feed = await self.feed_for(account, target)
        if gone:
            return None
        viewer = BrowserViewer(self, request, feed, account, peer)
        self.viewers.add(viewer)
        self.started += 1
        viewer.start()
        return viewer

    async def feed_for(self, account: str, target: Target) -> FragmentFeed:
        """The camera stream's shared feed, its upstream running (§15 path selection on the first
        viewer): access first (404, the same for a camera that does not exist and one that is not
        the account's), then online (503), then the path (502).  Also the HLS face's way in
        (:mod:`globaleye.web.hls`)."""
        directory = self.factory.directory
        if not await directory.may_watch(account, target):
            raise LiveUnavailable(404, "No such camera", "no camera with this DevID and channel in your list")
        if not directory.online(target.dev_id):
            raise LiveUnavailable(503, "Camera offline", f"camera {target.dev_id} is offline")
        hub, description = await running_hub(self.factory, account, target)
        feed = self.feeds.get(hub.key)
        if feed is None or feed.closed or feed.hub is not hub:
            feed = self.feeds[hub.key] = FragmentFeed(self, hub, description, target)
        return feed

    def _failed(self, failure: Failure, request: Any, peer: str) -> None:
        log.failure("web live {peer}: failed", failure, peer=peer)
        try:
            if not request.startedWriting:
                write_problem(request, LiveUnavailable(500, "Internal error", "the live stream failed"))
            elif not request.finished:
                request.finish()
        except Exception:
            pass

    def status(self) -> dict[str, Any]:
        return {"viewers": [v.status() for v in self.viewers], "started": self.started,
                "feeds": [{"stream": f.target.label, "codec": f.codec, "fragments": f.fragments, "browsers": len(f.viewers),
                           "gop_fragments": len(f.gop or ())} for f in self.feeds.values()],
                "stalled_drops": self.stalled_drops}


class FragmentFeed:
    """One camera stream as fMP4, made once and shared by all its browser viewers.

    The feed is one :class:`ViewerStream` of the hub (so it gets the hub's IDR start, SPS/PPS
    in front of bare IDRs, and timestamps rebased across a recovery), whose sink reassembles
    pictures and writes each as a fragment once; each browser is then handed the same bytes.
    So a browser viewer costs one transport write per picture, not a depacketizer and a muxer
    of its own.  The fragments since the last IDR are kept (at most ``GOP_CACHE_BYTES``) so a
    browser that joins later starts at once, on that IDR.  The decode times are the feed's:
    a late joiner's first fragment is not at 0, and the player starts at what is buffered.
    """

    def __init__(self, live: LiveVideo, hub: LiveHub, description: SessionDescription, target: Target) -> None:
        self.live = live
        self.hub = hub
        self.target = target
        self.stream = _FeedStream(self, description, f"web {target.label}")
        self.video_track = self.stream.video_track
        assert self.video_track is not None
        self.audio = FeedAudio.for_stream(description, target.label, live.reactor) if live.audio else None
        self.stream.tracks = {self.video_track} | ({self.audio.track} if self.audio is not None else set())
        self.assembler = PictureAssembler(list(self.stream.params))
        self.viewers: set[BrowserViewer] = set()
        self.closed = False
        self.inits = InitSegments(self.audio)
        self.init: bytes | None = None
        self.codec = ""
        self.sequence = 0
        self.last_ts: int | None = None
        self.decode_time = 0
        self.duration = DEFAULT_DURATION
        #: The fragments of the current GOP, from its IDR on; None: none (or more than the bound).
        self.gop: list[bytes] | None = None
        self.gop_bytes = 0
        self.fragments = 0

    # -- viewers

    def join(self, viewer: BrowserViewer) -> None:
        first = not self.viewers
        self.viewers.add(viewer)
        if first:
            self.hub.add(self.stream)  # the hub's cached GOP comes now, through send_rtp
        elif self.init is not None and self.gop:
            viewer.replay(self.init, tuple(self.gop))

    def leave(self, viewer: BrowserViewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers and not self.closed:
            self.close()

    def close(self) -> None:
        self.closed = True
        self.hub.remove(self.stream)
        if self.live.feeds.get(self.hub.key) is self:
            del self.live.feeds[self.hub.key]

    # -- the Sink of the feed's ViewerStream

    def blocked(self) -> bool:
        return False  # each browser skips on its own (BrowserViewer.fragment)

    def send_rtp(self, track: int, data: bytes) -> None:
        if self.closed:
            return
        if track == self.video_track:
            for picture in self.assembler.feed(data):
                self._picture(picture)
        elif self.audio is not None and track == self.audio.track:
            self.audio.packet(data)

    def send_rtcp(self, track: int, data: bytes) -> None:
        # The fragments carry their own timing; the sender reports only place the sound.
        if self.audio is not None and not self.closed:
            self.audio.report(track, data)

    def restart(self, description: SessionDescription) -> None:
        """A new upstream after a recovery: a picture cut off by the outage is not one to send
        (the viewer numbering has no hole to show it), so the assembler starts afresh."""
        track = description.track("video")
        if self.audio is not None:
            self.audio.sync.clock.reports.clear()  # the old camera session's clock mapping
        self.assembler = PictureAssembler(list(description.media[track].sprop_parameter_sets)
                                          if track is not None else [])

    def upstream_lost(self, reason: str) -> None:
        self.close()
        for viewer in tuple(self.viewers):
            viewer.close(f"upstream ended: {reason}", LiveUnavailable(502, "Camera stream lost", reason))
        self.viewers.clear()

    # -- pictures to fragments

    def _picture(self, picture: Picture) -> None:
        try:
            new_init = self.inits.update(picture)
        except (fmp4.Fmp4Error, ValueError) as e:
            log.warn("web live {what}: parameter sets not usable ({e})", what=self.target.label, e=e)
            return
        self.init, self.codec = self.inits.init, self.inits.codec
        if self.init is None:
            return  # no parameter sets yet: nothing a browser could decode
        if self.last_ts is not None:
            delta = _signed32(picture.timestamp - self.last_ts)
            if delta <= 0 or delta > 10 * rtp.H264_CLOCK:
                delta = self.duration  # a clock jump: keep the timeline moving
            self.decode_time += delta
            if delta < 2 * rtp.H264_CLOCK:
                self.duration = delta  # the best guess of this picture's duration: the last interval
        self.last_ts = picture.timestamp
        try:
            sample = fmp4.avc_sample(picture.nals, self.duration)
        except fmp4.Fmp4Error:
            return
        runs = [fmp4.Run(1, self.decode_time, [sample])]
        if self.audio is not None:
            audio = self.audio.run(picture.timestamp, self.decode_time)
            if audio is not None:
                runs.append(audio)
        self.sequence += 1
        data = fmp4.fragment(self.sequence, runs)
        self.fragments += 1
        if sample.sync:
            self.gop, self.gop_bytes = [], 0
        if self.gop is not None:
            self.gop_bytes += len(data)
            if self.gop_bytes > GOP_CACHE_BYTES:
                self.gop, self.gop_bytes = None, 0
            else:
                self.gop.append(data)
        for viewer in tuple(self.viewers):
            viewer.fragment(self.init, data, sample.sync, new_init)


class FeedAudio:
    """The camera's G.711 as AAC-LC for one feed: transcoded once per camera stream, however
    many browsers watch (:mod:`globaleye.media.aacenc`, PyAV's libavcodec ``aac``).

    Its samples ride in the video's fragments, in a ``traf`` of their own (track 2, on the
    AAC sample rate's timescale, ``AUDIO_UPSAMPLE`` times the camera's), so one SourceBuffer
    takes both tracks.  Position 0 of the sound
    is the feed's first picture, decode time 0 of the video; the sender reports of both
    tracks (rewritten by the hub's ViewerStream onto the timestamps the feed sees, and the
    hub's last ones replayed to a new viewer) place it, or its arrival after ``SR_WAIT``.
    Holes are silence, and sound that trails the pictures by more than ``MAX_AUDIO_LAG``
    is caught up with silence too: MSE plays only what both tracks have buffered.
    """

    def __init__(self, track: int, video_track: int, spec: aacenc.AudioSpec, label: str, reactor: Any) -> None:
        self.track = track
        self.video_track = video_track
        self.rate = spec.clock_rate
        self.reactor = reactor
        self.timeline = aacenc.AudioTimeline.standalone(spec, f"web {label}", AUDIO_UPSAMPLE)
        self.sync = aacenc.LipSync(self.timeline, aacenc.StreamClock(), video_track, track, f"web {label}")
        self.label = label
        #: AAC frames ready for the next fragment: (sample position, bytes, duration).
        self.ready: list[tuple[int, bytes, int]] = []
        self.first_at: float | None = None
        self.frames = 0

    @classmethod
    def for_stream(cls, description: SessionDescription, label: str, reactor: Any) -> FeedAudio | None:
        track, video_track = description.track("audio"), description.track("video")
        if track is None or video_track is None:
            return None
        media = description.media[track]
        encoding = (media.encoding or G711_PAYLOAD_TYPES.get(media.payload_type or -1, "")).upper()
        spec = aacenc.AudioSpec(encoding, media.clock_rate or rtp.PCMA_CLOCK)
        if not spec.supported:
            log.info("web live {what}: audio {enc} is not G.711; video only", what=label, enc=encoding or "?")
            return None
        try:
            return cls(track, video_track, spec, label, reactor)
        except Exception as e:  # an FFmpeg without the aac encoder: video only, said once per stream
            log.warn("web live {what}: no AAC encoder ({e}); video only", what=label, e=e)
            return None

    def mp4_track(self) -> fmp4.Track:
        return fmp4.audio_track(self.timeline.config, self.timeline.encoder_rate, track_id=2,
                                bit_rate=aacenc.AAC_BIT_RATE)

    def packet(self, data: bytes) -> None:
        self._take(self.sync.packet(data, self.reactor.seconds()))

    def report(self, track: int, data: bytes) -> None:
        rate = rtp.H264_CLOCK if track == self.video_track else self.rate
        self._take(self.sync.report(track, rate, data))

    def run(self, timestamp: int, decode_time: int) -> fmp4.Run | None:
        """A picture at *timestamp* (video decode time *decode_time*): the sound ready by now."""
        now = self.reactor.seconds()
        if self.first_at is None:  # the feed's first picture: position 0
            self.sync.picture(timestamp, now)
            self.first_at = now
        timeline = self.timeline
        due = decode_time * self.rate // rtp.H264_CLOCK - round(MAX_AUDIO_LAG * self.rate)
        if due > timeline.taken and (timeline.anchor is not None or (
                not self.sync.waiting and now - self.first_at > aacenc.SR_WAIT)):
            self._take(timeline.fill(due))
        if not self.ready:
            return None
        ready, self.ready = self.ready, []
        samples = [fmp4.aac_sample(data, duration) for _, data, duration in ready]
        return fmp4.Run(2, ready[0][0], samples)

    def _take(self, packets: list[Any]) -> None:
        for packet in packets:
            data = bytes(packet)
            # The encoder's priming frame sits before position 0; an MP4 decode time cannot.
            if packet.pts is None or packet.pts < 0 or not data:
                continue
            if self.ready and packet.pts != self.ready[-1][0] + self.ready[-1][2]:
                continue  # never a hole or an overlap inside one run
            self.ready.append((packet.pts, data, packet.duration or aacenc.AAC_FRAME))
            self.frames += 1


class _FeedStream(ViewerStream):
    """The feed's view of the hub, told when the hub resumes it on a recovered upstream."""

    def __init__(self, feed: FragmentFeed, description: SessionDescription, label: str) -> None:
        super().__init__(feed, description, label)
        self.feed = feed
        self.replay_reports = True  # the hub's last sender reports place the sound at once

    def resync(self, description: SessionDescription) -> None:
        self.feed.restart(description)
        super().resync(description)

    def rtcp(self, track: int, data: bytes) -> None:
        """Sender reports from the start, not only once pictures flow: the hub's last ones come
        when the feed joins, often before its first IDR, and they are what places the sound
        (the camera's next ones are 5 s away, RFC 3550 §6.2)."""
        if track in self.tracks:
            report = h264rtp.rewrite_rtcp(data, self.ts_offset[track], self.ssrc[track], False)
            if report is not None:
                self.sink.send_rtcp(track, report)


class StallingProducer:
    """A browser's answer as the push producer of its socket (shared by :class:`BrowserViewer` and
    :class:`globaleye.web.mux.MuxAnswer`): while the socket is full it is paused, and pictures are
    skipped until it drains and an IDR comes; one paused for the proxy's ``stall_timeout`` is
    dropped, so a browser that reads nothing holds one socket buffer, never memory or the others.

    The subclass has ``reactor``, ``request``, ``peer``, ``closed``, ``close(reason)``, and ``live``
    unless it says its own stall timeout and drop counter (as the playback stream does).
    """

    #: The log lines' prefix ("web live", "web mux").
    log_label = "web live"
    live: LiveVideo
    reactor: Any
    request: Any
    peer: str
    closed: bool
    paused: bool = False
    _stall: Any = None

    def close(self, reason: str) -> None:
        raise NotImplementedError

    def _paused_changed(self, paused: bool) -> None:
        """Hook: *paused* is the socket's new state (the mux tells each of its streams)."""

    def _stall_timeout(self) -> float:
        return float(self.live.factory.stall_timeout)

    def _count_stalled_drop(self) -> None:
        self.live.stalled_drops += 1

    def pauseProducing(self) -> None:  # noqa: N802
        """The browser's socket is full: pictures are skipped until it drains (and an IDR)."""
        self.paused = True
        self._paused_changed(True)
        stall = self._stall_timeout()
        if self._stall is None and stall > 0 and not self.closed:
            self._stall = self.reactor.callLater(stall, self._stalled)

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self._paused_changed(False)
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None

    def stopProducing(self) -> None:  # noqa: N802
        self.close("browser disconnected")

    def _stalled(self) -> None:
        self._stall = None
        if self.closed:
            return
        self._count_stalled_drop()
        log.warn("{label} {peer}: browser read nothing for {s:g} s; dropped", label=self.log_label, peer=self.peer,
                 s=self._stall_timeout())
        transport = getattr(self.request, "transport", None)
        self.close("too slow")
        if transport is not None:
            transport.abortConnection()


@implementer(interfaces.IPushProducer)
class BrowserViewer(StallingProducer):
    """One browser's answer: the feed's fragments, skipped to the next IDR while its socket is full."""

    def __init__(self, live: LiveVideo, request: Any, feed: FragmentFeed, account: str, peer: str) -> None:
        self.live = live
        self.request = request
        self.feed = feed
        self.target = feed.target
        self.account = account
        self.peer = peer
        self.reactor = live.reactor
        self.paused = False
        self.closed = False
        self.waiting = True  # for a sync fragment (and, before it, the init segment)
        self.init_sent: bytes | None = None
        self.headers_sent = False
        self.fragments = 0
        self.skipped = 0
        self.bytes = 0
        self.started_at = self.reactor.seconds()
        self.first_picture_after: float | None = None
        self._stall: Any = None
        self._first: Any = None
        self._channel_timeout: Any = None

    # -- life

    def start(self) -> None:
        # The RTSP viewers' fixed send buffer, for the same reason: a browser that stops reading
        # is noticed within about a second of video and costs bounded kernel memory.
        try:
            self.request.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SNDBUF)
        except (AttributeError, OSError):
            pass
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addBoth(lambda _: self.close("browser disconnected"))
        self._first = self.reactor.callLater(self.live.first_picture_timeout, self._no_picture)
        hub = self.feed.hub
        log.info("web live {peer}: {account} watches {what} via {path} ({n} browsers, {m} viewers of the stream)",
                 peer=self.peer, account=self.account, what=self.target.label,
                 path=hub.upstream.path if hub.upstream is not None else "?", n=len(self.feed.viewers) + 1,
                 m=len(hub.viewers) + (0 if self.feed.viewers else 1))
        self.feed.join(self)  # the cached GOP comes now, so the first picture usually too

    def _no_picture(self) -> None:
        self._first = None
        if not self.closed and not self.headers_sent:
            self.close(f"no picture within {self.live.first_picture_timeout:g} s",
                       LiveUnavailable(504, "No picture", "the camera sent no picture in time"))

    def close(self, reason: str, problem: LiveUnavailable | None = None) -> None:
        """Leave the feed and end the answer (once); *problem* if nothing was written yet."""
        if self.closed:
            return
        self.closed = True
        self.live.viewers.discard(self)
        self.feed.leave(self)
        for call in (self._stall, self._first):
            if call is not None and call.active():
                call.cancel()
        self._stall = self._first = None
        request = self.request
        if not request.finished and not getattr(request, "_disconnected", False):
            try:
                request.unregisterProducer()
            except Exception:
                pass
            if not self.headers_sent:
                self.live.answer_problem(request, problem or LiveUnavailable(502, "Camera stream lost", reason))
            else:
                self._restore_timeout()
                request.finish()
        log.info("web live {peer}: {account} stopped watching {what}: {reason} ({n} pictures, {skipped} skipped, "
                 "{kb} KiB, first picture after {first})", peer=self.peer, account=self.account,
                 what=self.target.label, reason=reason, n=self.fragments, skipped=self.skipped,
                 kb=self.bytes // 1024,
                 first="-" if self.first_picture_after is None else f"{self.first_picture_after * 1000:.0f} ms")

    # -- fragments

    def replay(self, init: bytes, gop: tuple[bytes, ...]) -> None:
        """A late joiner: the feed's current GOP at once, whole (it is bounded)."""
        for i, data in enumerate(gop):
            self._send(init, data, i == 0)

    def fragment(self, init: bytes, data: bytes, sync: bool, new_init: bool) -> None:
        if self.closed:
            return
        # The hub's cached GOP (a first viewer, a recovery) goes out whole: it is bounded, and cut
        # at the socket's mark it would leave the browser on its IDR until the next one.
        if (self.paused and not self.feed.stream.replaying) or (self.waiting and not sync):
            self.waiting = True
            if self.headers_sent:
                self.skipped += 1
            return
        self._send(init, data, sync)

    def _send(self, init: bytes, data: bytes, sync: bool) -> None:
        if self.waiting and not sync:
            return
        self.waiting = False
        if not self.headers_sent:
            start_answer(self.request, self.feed.codec)
            self.headers_sent = True
            self._channel_timeout = suspend_timeout(self.request)
            self.first_picture_after = self.reactor.seconds() - self.started_at
        if init is not self.init_sent:
            self.init_sent = init  # a new SPS/PPS: MSE takes a new initialization segment mid-stream
            self._write(init)
        self._write(data)
        self.fragments += 1

    def _write(self, data: bytes) -> None:
        self.bytes += len(data)
        self.request.write(data)

    def _restore_timeout(self) -> None:
        restore_timeout(self.request, self._channel_timeout)

    def status(self) -> dict[str, Any]:
        return {"peer": self.peer, "account": self.account, "stream": self.target.label, "codec": self.feed.codec,
                "fragments": self.fragments, "skipped": self.skipped, "bytes": self.bytes, "paused": self.paused,
                "waiting_for_idr": self.waiting,
                "first_picture_ms": None if self.first_picture_after is None
                else round(self.first_picture_after * 1000)}
