"""The HLS routes of the live view (issue 11), a mixin of :class:`globaleye.web.api.WebApi`.

``live.m3u8``, ``init.mp4`` and ``segment.m4s`` of a camera channel: the live playlist and the
segments :mod:`globaleye.web.hls` cuts from the same fMP4 feed the MSE player reads.  Each
request is checked like the ``live`` route: the session (the cookie: Safari's native player
sends it with every playlist and segment request of the page's origin), then the application
layer's access check, so another account's camera is the same 404 as one that does not exist.
The segment number is a query parameter (``segment.m4s?stream=main&n=12``), not a path
segment: the URIs stay relative to the playlist, and every route of the table keeps a path the
API's IDOR test can fill in.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from globaleye.app.errors import NoSuchDevice
from globaleye.proxy.platform import Target
from globaleye.users.accounts import LoginSession
from globaleye.web.problem import Problem, bad_request
from globaleye.web.routes import STREAMS

M3U8 = b"application/vnd.apple.mpegurl"


class HlsRoutes:
    """Handlers of the ``# --- hls ---`` routes; needs WebApi's ``services`` and ``live_video``."""

    services: Any
    live_video: Any

    async def _hls_target(self, request: IRequest, session: LoginSession, dev_id: str,
                          channel: int) -> tuple[Target, str]:
        name = _arg(request, "stream") or "main"
        stream = STREAMS.get(name)
        if stream is None:
            raise bad_request("stream must be main or sub")
        if not await self.services.devices.may_watch(session.account, dev_id, channel):
            raise NoSuchDevice(f"{dev_id} channel {channel} is not {session.account}'s to watch")
        if self.live_video is None:
            raise Problem(503, "live-unavailable", "Live video unavailable",
                          "live video needs the rtsp role in this process")
        return Target("live", dev_id, channel, stream), f"stream={name}"

    def _hls(self) -> Any:
        hls = getattr(self, "_live_hls", None)
        if hls is None or hls.live is not self.live_video:
            from globaleye.web.hls import LiveHls

            hls = self._live_hls = LiveHls(self.live_video)
        return hls

    async def live_hls(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                       channel: int) -> bytes:
        """The live playlist; the first request starts the segments (and waits for the first)."""
        from globaleye.web.live import LiveUnavailable

        target, query = await self._hls_target(request, session, devId, channel)
        try:
            stream = await self._hls().open(session.account, target)
        except LiveUnavailable as e:
            raise Problem(e.status, "live-unavailable", e.title, e.detail) from None
        request.setHeader(b"content-type", M3U8)
        return stream.playlist(query).encode()

    async def live_hls_init(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                            channel: int) -> bytes:
        target, _query = await self._hls_target(request, session, devId, channel)
        stream = self._watching(target)
        version = _arg(request, "v")
        init = stream.inits.get(int(version)) if version.isdigit() else stream.init
        if init is None:
            raise Problem(404, "no-segment", "No such segment", "that initialization segment is gone")
        request.setHeader(b"content-type", b"video/mp4")
        request.setHeader(b"cache-control", b"private, max-age=60")
        return bytes(init)

    async def live_hls_segment(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                               channel: int) -> bytes:
        target, _query = await self._hls_target(request, session, devId, channel)
        stream = self._watching(target)
        number = _arg(request, "n")
        segment = stream.segment(int(number)) if number.isdigit() else None
        if segment is None:
            raise Problem(404, "no-segment", "No such segment", "that segment is not (or no longer) in the window")
        request.setHeader(b"content-type", b"video/iso.segment")
        request.setHeader(b"cache-control", b"private, max-age=60")
        return segment.data

    def _watching(self, target: Target) -> Any:
        stream = self._hls().watching(target)
        if stream is None:
            raise Problem(404, "not-live", "Not being watched", "ask for the playlist (live.m3u8) first")
        return stream


def _arg(request: IRequest, name: str) -> str:
    values = (request.args or {}).get(name.encode())
    return values[0].decode("utf-8", "replace") if values else ""
