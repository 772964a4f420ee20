"""Several live cameras in one HTTP answer: the grid's multiplexed stream (issue 11).

A browser opens at most six HTTP/1.1 connections to one origin (:mod:`globaleye.web.live`
measured it: the 7th and 8th ``live.mp4`` of a page got nothing, and the page's API calls waited
behind them), so a 9-camera grid cannot be nine ``live.mp4`` answers.  It is one:
``GET /api/v1/live/mux.bin?s=<devId>:<channel>:<main|sub>&s=...`` (at most :data:`MAX_STREAMS`)
carries the fragments of every requested camera stream in frames (``docs/protocol.md``)::

    index  u8   the position of the stream among the request's ``s`` parameters, from 0
    kind   u8   0 init, 1 fragment, 2 error
    length u32  big-endian, the payload's size
    payload     init: u8 n, the RFC 6381 codec (n ASCII bytes), the MP4 initialization segment
                fragment: one fMP4 fragment (moof + mdat), one picture
                error: an RFC 9457 problem (JSON); that stream is over, the others go on

Each camera is still one viewer of its stream's shared :class:`~globaleye.web.live.FragmentFeed`
(one muxer per camera stream for every browser, as for ``live.mp4``), so the fan-out, the GOP
cache and the §15 path selection are the same.  Access is checked per camera through the
application layer: a camera the account may not see gets the same error frame as one that does
not exist (404).  The answer is ``200`` at once (the error frames carry what goes wrong per
stream); what is wrong with the request as a whole (no ``s``, more than nine, a malformed one)
is a ``400`` problem before it.

Flow control is the single socket's: when it is full every stream skips to its next IDR, and a
socket that stays full for the proxy's ``stall_timeout`` is dropped, the rules of
:class:`~globaleye.web.live.BrowserViewer` (whose fragment logic each stream reuses).
"""

from __future__ import annotations

import json
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.internet import defer, interfaces
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from globaleye.proxy.platform import Target
from globaleye.proxy.server import VIEWER_SNDBUF
from globaleye.web.auth import log_refusal
from globaleye.web.live import (
    PROBLEM_TYPE,
    STREAM_TYPES,
    BrowserViewer,
    FragmentFeed,
    LiveUnavailable,
    LiveVideo,
    StallingProducer,
)

log = Logger()

#: At most this many camera streams in one answer (a 3x3 grid).
MAX_STREAMS = 9
CONTENT_TYPE = b"application/vnd.globaleye.live-mux"
KIND_INIT, KIND_FRAGMENT, KIND_ERROR = 0, 1, 2
HEADER = struct.Struct(">BBI")
SPEC = re.compile(r"^([0-9]{11}):([0-9]{1,3}):(main|sub)$")
STREAM_NAMES = {"main": 1, "sub": 2}
#: The one answer for a camera that does not exist and one the account may not watch.
NO_SUCH_CAMERA = LiveUnavailable(404, "No such camera", "no camera with this DevID and channel in your list")


@attrs.frozen
class StreamSpec:
    dev_id: str
    channel: int
    stream: int  # §8.9 StreamType: 1 main, 2 sub


class BadMuxRequest(ValueError):
    """The request as a whole is wrong (answered 400 before any frame)."""


def parse_specs(values: list[str]) -> list[StreamSpec]:
    """The ``s`` parameters, in order; BadMuxRequest for none, more than nine or a malformed one."""
    if not values:
        raise BadMuxRequest("name at least one stream: s=<devId>:<channel>:<main|sub>")
    if len(values) > MAX_STREAMS:
        raise BadMuxRequest(f"at most {MAX_STREAMS} streams in one request, not {len(values)}")
    specs = []
    for value in values:
        match = SPEC.match(value)
        if match is None:
            raise BadMuxRequest(f"{value!r} is not <devId>:<channel>:<main|sub>")
        specs.append(StreamSpec(match[1], int(match[2]), STREAM_NAMES[match[3]]))
    assert all(spec.stream in STREAM_TYPES for spec in specs)
    return specs


def frame(index: int, kind: int, payload: bytes) -> bytes:
    return HEADER.pack(index, kind, len(payload)) + payload


def init_payload(codec: str, init: bytes) -> bytes:
    raw = codec.encode("ascii")
    return bytes([len(raw)]) + raw + init


def problem_payload(problem: LiveUnavailable) -> bytes:
    """The same fields as ``live.mp4``'s problem answers (and nothing naming the camera)."""
    return json.dumps({"type": PROBLEM_TYPE, "title": problem.title, "status": problem.status,
                       "detail": problem.detail}, ensure_ascii=False).encode()


def parse_frames(data: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """Whole frames of *data* and the rest (for tests and tools; the browser's is static/js/mux.js)."""
    frames, at = [], 0
    while len(data) - at >= HEADER.size:
        index, kind, length = HEADER.unpack_from(data, at)
        if len(data) - at - HEADER.size < length:
            break
        frames.append((index, kind, data[at + HEADER.size:at + HEADER.size + length]))
        at += HEADER.size + length
    return frames, data[at:]


@implementer(interfaces.IPushProducer)
class MuxAnswer(StallingProducer):
    """One browser's multiplexed answer: a :class:`MuxStream` per requested camera stream."""

    log_label = "web mux"

    def __init__(self, live: LiveVideo, request: Any, account: str, peer: str, specs: list[StreamSpec],
                 may_watch: Callable[[str, str, int], Awaitable[bool]]) -> None:
        self.live = live
        self.request = request
        self.account = account
        self.peer = peer
        self.specs = specs
        self.may_watch = may_watch
        self.reactor = live.reactor
        self.streams: dict[int, MuxStream] = {}
        self.opening = len(specs)
        self.paused = False
        self.closed = False
        self.bytes = 0
        self._stall: Any = None
        self._channel_timeout: Any = None

    def start(self) -> int:
        request = self.request
        try:
            request.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SNDBUF)
        except (AttributeError, OSError):
            pass
        request.setResponseCode(200)
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.write(b"")  # the headers now: the page's fetch resolves, the frames follow
        channel = getattr(request, "channel", None)
        if channel is not None and hasattr(channel, "setTimeout"):
            # Only the browser's sending resets the idle timeout, and it sends nothing more.
            self._channel_timeout = getattr(channel, "timeOut", None)
            channel.setTimeout(None)
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(lambda _: self.close("browser disconnected"))
        log.info("web mux {peer}: {account} opens {n} streams: {what}", peer=self.peer, account=self.account,
                 n=len(self.specs), what=" ".join(f"{s.dev_id}/{s.channel}/{s.stream}" for s in self.specs))
        for index, spec in enumerate(self.specs):
            d = defer.Deferred.fromCoroutine(self._open(index, spec))
            d.addErrback(self._failed, index)
        return NOT_DONE_YET

    async def _open(self, index: int, spec: StreamSpec) -> None:
        target = Target("live", spec.dev_id, spec.channel, spec.stream)
        try:
            try:
                if len(self.live.viewers) + self.live.factory.viewer_count() >= self.live.factory.max_viewers:
                    raise LiveUnavailable(503, "Too many viewers", "the platform serves its maximum number of viewers")
                if not await self.may_watch(self.account, spec.dev_id, spec.channel):
                    raise NO_SUCH_CAMERA
                feed = await self.live.feed_for(self.account, target)
            except LiveUnavailable as e:
                self.refused(index, target, e)
                return
            if self.closed:
                return
            stream = MuxStream(self, index, feed)
            self.streams[index] = stream
            self.live.viewers.add(stream)
            self.live.started += 1
            stream.start()
        finally:
            self.opening -= 1
            self._maybe_done()

    def _failed(self, failure: Any, index: int) -> None:
        log.failure("web mux {peer}: stream {index} failed", failure, peer=self.peer, index=index)
        self.error(index, LiveUnavailable(500, "Internal error", "the live stream failed"))

    def refused(self, index: int, target: Target, problem: LiveUnavailable) -> None:
        log_refusal(self.request, "live stream", "web mux {peer}: {account} refused {what}: {status} {detail}",
                    peer=self.peer, account=self.account, what=target.label, status=problem.status,
                    detail=problem.detail)
        self.error(index, problem)

    def error(self, index: int, problem: LiveUnavailable) -> None:
        self.write(frame(index, KIND_ERROR, problem_payload(problem)))

    def write(self, data: bytes) -> None:
        if self.closed or self.request.finished or getattr(self.request, "_disconnected", False):
            return
        self.bytes += len(data)
        self.request.write(data)

    def stream_ended(self, stream: MuxStream) -> None:
        self.streams.pop(stream.index, None)
        self._maybe_done()

    def _maybe_done(self) -> None:
        """Every stream refused or ended: the answer ends (the page may ask again)."""
        if not self.closed and self.opening == 0 and not self.streams:
            self.close("no stream left")

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True  # first: the streams closed now write no error frames
        for stream in tuple(self.streams.values()):
            stream.close(reason)
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None
        request = self.request
        if not request.finished and not getattr(request, "_disconnected", False):
            try:
                request.unregisterProducer()
            except Exception:
                pass
            channel = getattr(request, "channel", None)
            if channel is not None and self._channel_timeout is not None and hasattr(channel, "setTimeout"):
                channel.setTimeout(self._channel_timeout)
            request.finish()
        log.info("web mux {peer}: {account} closed: {reason} ({kb} KiB)", peer=self.peer, account=self.account,
                 reason=reason, kb=self.bytes // 1024)

    # -- IPushProducer (StallingProducer): the one socket of every stream

    def _paused_changed(self, paused: bool) -> None:
        """The socket is full (or drained): every stream skips to its next IDR (or goes on)."""
        for stream in self.streams.values():
            stream.paused = paused


class MuxStream(BrowserViewer):
    """One camera stream of a :class:`MuxAnswer`: a viewer of its feed whose pictures go out as
    frames.  The skipping rules (wait for an IDR, skip while the socket is full, the hub's
    cached GOP whole) are :class:`BrowserViewer`'s; the socket, its flow control and its stall
    timer are the answer's."""

    def __init__(self, mux: MuxAnswer, index: int, feed: FragmentFeed) -> None:
        super().__init__(mux.live, mux.request, feed, mux.account, mux.peer)
        self.mux = mux
        self.index = index
        self.paused = mux.paused

    def start(self) -> None:
        self._first = self.reactor.callLater(self.live.first_picture_timeout, self._no_picture)
        hub = self.feed.hub
        log.info("web mux {peer}: {account} watches {what} as stream {index} via {path} ({n} browsers)",
                 peer=self.peer, account=self.account, what=self.target.label, index=self.index,
                 path=hub.upstream.path if hub.upstream is not None else "?", n=len(self.feed.viewers) + 1)
        self.feed.join(self)

    def close(self, reason: str, problem: LiveUnavailable | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        self.live.viewers.discard(self)
        self.feed.leave(self)
        for call in (self._stall, self._first):
            if call is not None and call.active():
                call.cancel()
        self._stall = self._first = None
        if not self.mux.closed:
            self.mux.error(self.index, problem or LiveUnavailable(502, "Camera stream lost", reason))
        log.info("web mux {peer}: {account} stopped watching {what}: {reason} ({n} pictures, {skipped} skipped, "
                 "{kb} KiB)", peer=self.peer, account=self.account, what=self.target.label, reason=reason,
                 n=self.fragments, skipped=self.skipped, kb=self.bytes // 1024)
        self.mux.stream_ended(self)

    def _send(self, init: bytes, data: bytes, sync: bool) -> None:
        if self.waiting and not sync:
            return
        self.waiting = False
        if not self.headers_sent:
            self.headers_sent = True
            self.first_picture_after = self.reactor.seconds() - self.started_at
        if init is not self.init_sent:
            self.init_sent = init
            self._frame(KIND_INIT, init_payload(self.feed.codec, init))
        self._frame(KIND_FRAGMENT, data)
        self.fragments += 1

    def _frame(self, kind: int, payload: bytes) -> None:
        self.bytes += len(payload)
        self.mux.write(frame(self.index, kind, payload))
