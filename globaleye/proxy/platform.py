"""The platform side of the proxy: who may see which camera, and the §8.9 URLs.

In process, through the same application services as the client API
(:class:`~globaleye.app.devices.DeviceService` for who may watch,
:class:`~globaleye.app.media.MediaService` for the URLs, the gateway's
:meth:`is_online`), so the proxy needs no LoginSession and no SOAP round trip.  Each URL
set carries one fresh HashToken per attempt, made by the accounts service like the
client API's own (:meth:`~globaleye.users.accounts.AccountService.issue_token_for`: single
use, ``hashtoken_lifetime``), bound to the viewer's account so the audit trail says who
watched.
"""

from __future__ import annotations

import attrs

from globaleye.app.devices import DeviceService
from globaleye.app.errors import DeviceOffline
from globaleye.app.media import MediaService, Watch
from globaleye.app.ports import DeviceGateway
from globaleye.media.rtsp.paths import LOCAL, UPNP, PlayUrls
from globaleye.media.rtsp.serving import Refusal


@attrs.frozen
class Target:
    kind: str  # "live" or "playback"
    dev_id: str
    channel_no: int
    stream_type: int = 1  # live
    file_name: str = ""  # playback

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.dev_id, self.channel_no, self.stream_type)

    @property
    def label(self) -> str:
        what = f"stream {self.stream_type}" if self.kind == "live" else self.file_name
        return f"{self.dev_id}/{self.channel_no} {what}"


class Unavailable(Refusal):
    """The camera cannot be watched now; ``code`` is the RTSP answer."""


class PlatformDirectory:
    def __init__(self, devices: DeviceService, media: MediaService, gateway: DeviceGateway) -> None:
        self.devices = devices
        self.media = media
        self.gateway = gateway

    async def may_watch(self, account: str, target: Target) -> bool:
        """Own or shared binding (§8.5 ShareFlag 0 or 1), and a channel the camera has."""
        return await self.devices.may_watch(account, target.dev_id, target.channel_no)

    def online(self, dev_id: str) -> bool:
        return self.gateway.is_online(dev_id)

    async def urls(self, account: str, target: Target, path: str) -> PlayUrls:
        """The URLs of §8.9 (one fresh token, for the address *path* uses; the others empty)."""
        watch = Watch(target.dev_id, target.channel_no, target.stream_type,
                      None if target.kind == "live" else target.file_name)
        try:
            return await self.media.viewer_urls(account, watch, {LOCAL: "local", UPNP: "upnp"}.get(path, "turn"))
        except DeviceOffline:
            raise Unavailable(503, f"camera {target.dev_id} is offline") from None
