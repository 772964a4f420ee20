"""The web API's playback routes (issue 11): a recording on the camera as fMP4, to watch or download.

A mixin of :class:`globaleye.web.api.WebApi`: the access check is the application layer's
(:meth:`DeviceService.may_watch <globaleye.app.devices.DeviceService.may_watch>`, as for live
view), so another account's camera is 404 exactly like one that does not exist, and it comes
before anything about the request itself is judged; the stream is
:class:`globaleye.web.playback.PlaybackVideo`, over the RTSP proxy of this process.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import resource
from twisted.web.iweb import IRequest

from globaleye.app.errors import NoSuchDevice
from globaleye.users.accounts import LoginSession
from globaleye.web.problem import Problem, bad_request

log = Logger(namespace="globaleye.web")


class PlaybackApi:
    """``…/recordings/{fileName}/play.mp4`` and ``download.mp4``."""

    services: Any
    live_video: Any
    _playback_video: Any = None

    def _playback(self) -> Any:
        """The playback streams, made on first use over the live view's RTSP proxy (None: no rtsp role)."""
        if self._playback_video is None and self.live_video is not None:
            from globaleye.web.playback import PlaybackVideo

            self._playback_video = PlaybackVideo(self.live_video.factory)
        return self._playback_video

    async def _recording(self, request: IRequest, session: LoginSession, dev_id: str, channel: int,
                         file_name: str, download: bool) -> resource.Resource:
        if not await self.services.devices.may_watch(session.account, dev_id, channel):
            raise NoSuchDevice(f"{dev_id} channel {channel} is not {session.account}'s to watch")
        from globaleye.web.playback import parse_play_query

        def query(name: str) -> str:
            values = (request.args or {}).get(name.encode())
            return values[0].decode("utf-8", "replace") if values else ""

        try:
            start, speed = (0.0, 1.0) if download else parse_play_query(query("start"), query("speed"))
        except ValueError as e:
            raise bad_request(str(e)) from None
        playback = self._playback()
        if playback is None:
            raise Problem(503, "live-unavailable", "Playback unavailable", "playback needs the rtsp role in this process")
        return PlaybackResource(playback, session.account, dev_id, channel, file_name, start, speed, download)

    async def play_recording(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                             channel: int, fileName: str) -> resource.Resource:  # noqa: N803
        """A recording from ``start`` at ``speed``: fragmented MP4 in the file's own time."""
        return await self._recording(request, session, devId, channel, fileName, False)

    async def download_recording(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                                 channel: int, fileName: str) -> resource.Resource:  # noqa: N803
        """The whole recording as an MP4 attachment."""
        return await self._recording(request, session, devId, channel, fileName, True)


class PlaybackResource(resource.Resource):
    """Renders :meth:`PlaybackVideo.render`; its LiveUnavailable, raised before anything is written, is a problem."""

    isLeaf = True

    def __init__(self, playback: Any, account: str, dev_id: str, channel: int, file_name: str, start: float,
                 speed: float, download: bool) -> None:
        super().__init__()
        self.playback, self.account, self.dev_id, self.channel = playback, account, dev_id, channel
        self.file_name, self.start, self.speed, self.download = file_name, start, speed, download

    def render_GET(self, request: IRequest) -> Any:  # noqa: N802
        from globaleye.web.live import LiveUnavailable

        try:
            return self.playback.render(request, self.account, self.dev_id, self.channel, self.file_name,
                                        self.start, self.speed, self.download)
        except LiveUnavailable as e:
            log.info("web: playback {dev_id}/{channel} {name} for {account} unavailable: {detail}", dev_id=self.dev_id,
                     channel=self.channel, name=self.file_name, account=self.account, detail=e.detail)
            return Problem(e.status, "playback-unavailable", e.title, e.detail).write(request)
