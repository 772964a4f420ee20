"""The device list's pictures (issue 11, §2 item 1 "device list with online state and a recent
picture"), a mixin of :class:`~globaleye.web.api.WebApi`.

``GET /api/v1/devices/{devId}/channels/{channel}/snapshot.jpg?stream=sub``: the camera stream's
latest IDR decoded to JPEG by :mod:`globaleye.web.snapshot`.  Checked like the ``live`` route:
the session, then the application layer's access check (another account's camera is the same
404 as one that does not exist), then whether the camera is online (503).
"""

from __future__ import annotations

import math
from typing import Any

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from globaleye.app.errors import NoSuchDevice
from globaleye.proxy.platform import Target
from globaleye.users.accounts import LoginSession
from globaleye.web.auth import peer_of
from globaleye.web.problem import Problem, bad_request
from globaleye.web.routes import STREAMS

log = Logger(namespace="globaleye.web")


class SnapshotApi:
    """Handler of the ``# --- snapshot ---`` route; needs WebApi's ``services`` and ``live_video``."""

    services: Any
    live_video: Any

    def _snapshots(self) -> Any:
        snapshots = getattr(self, "_live_snapshots", None)
        if snapshots is None or snapshots.live is not self.live_video:
            from globaleye.web.snapshot import Snapshots

            snapshots = self._live_snapshots = Snapshots(self.live_video)
        return snapshots

    async def snapshot(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                       channel: int) -> bytes:
        """The picture (JPEG), at most a minute old; ``stream`` defaults to sub (smaller)."""
        from globaleye.web import snapshot
        from globaleye.web.live import LiveUnavailable

        values = (request.args or {}).get(b"stream")
        stream = STREAMS.get(values[0].decode("utf-8", "replace") if values else "sub")
        if stream is None:
            raise bad_request("stream must be main or sub")
        if not await self.services.devices.may_watch(session.account, devId, channel):
            raise NoSuchDevice(f"{devId} channel {channel} is not {session.account}'s to watch")
        if self.live_video is None:
            raise Problem(503, "live-unavailable", "Live video unavailable",
                          "pictures come from the live stream, which needs the rtsp role in this process")
        missing = snapshot.available()
        if missing is not None:
            log.info("web {peer}: snapshot of {dev_id} refused: {why}", peer=peer_of(request), dev_id=devId,
                     why=missing)
            raise Problem(501, "snapshot-unavailable", "Pictures unavailable",
                          f"this platform cannot decode pictures: {missing}")
        snapshots = self._snapshots()
        try:
            picture = await snapshots.get(session.account, Target("live", devId, channel, stream))
        except LiveUnavailable as e:
            log.info("web {peer}: snapshot of {dev_id}/{channel} stream {stream} for {account} refused: {why}",
                     peer=peer_of(request), dev_id=devId, channel=channel, stream=stream,
                     account=session.account, why=e.detail)
            raise Problem(e.status, "live-unavailable", e.title, e.detail) from None
        age = snapshots.reactor.seconds() - picture.taken
        request.setHeader(b"content-type", b"image/jpeg")
        request.setHeader(b"cache-control", f"private, max-age={max(0, math.floor(snapshots.ttl - age))}".encode())
        request.setHeader(b"x-content-type-options", b"nosniff")
        return picture.jpeg
