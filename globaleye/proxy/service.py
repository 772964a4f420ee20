"""The ``rtsp`` role: the proxy as a Twisted service, and its status page.

Built from the platform's own application services (accounts, devices, media) and the
gateway, so the proxy sees the same bindings, online cameras and addresses as the client
API; it attaches itself to the :class:`~globaleye.app.ports.StreamBoard` the media service
reads GetStreamStatus from.  ``cloud`` (:class:`~globaleye.proxy.cloud.CloudPlayback`: the
cloud index and an object cache over the object store) enables the ``/cloud/`` URLs.
``PlatformService`` listens on ``[rtsp] port`` with :attr:`factory` and mounts
:meth:`status_resource` at ``/status/streams`` on the HTTP site, behind the operator token
(``[ops] token``, :mod:`globaleye.guard.ops`), and not at all without one.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.application import service
from twisted.web import resource

from globaleye.app.devices import DeviceService
from globaleye.app.media import MediaService
from globaleye.app.ports import DeviceGateway, StreamBoard
from globaleye.media.rtsp.paths import PathSettings
from globaleye.proxy.auth import PEER_LIMIT, PEER_WINDOW, AccountAuthenticator
from globaleye.proxy.cloud import CloudPlayback
from globaleye.proxy.platform import PlatformDirectory
from globaleye.proxy.server import RtspProxyFactory
from globaleye.users.accounts import AccountService


@attrs.frozen
class RtspProxySettings:
    """The ``[rtsp]`` keys the proxy itself uses (the listeners' keys are the composition root's)."""

    #: How players log in: ("digest",), ("basic",), ("digest", "basic") or ("none",).
    auth: tuple[str, ...] = ("digest",)
    realm: str = "GlobalEye"
    #: Failed authentications one source address (IPv6 /64) may make per window (globaleye.proxy.auth).
    auth_peer_limit: int = PEER_LIMIT
    auth_peer_window: float = PEER_WINDOW
    linger: float = 5.0
    udp_timeout: float = 5.0
    connect_timeout: float = 3.0
    max_viewers: int = 1000
    stall_timeout: float = 10.0
    recover_timeout: float = 30.0
    media_timeout: float = 10.0


class RtspProxyService(service.Service):
    def __init__(self, accounts: AccountService, devices: DeviceService, media: MediaService,
                 gateway: DeviceGateway, reactor: Any, settings: RtspProxySettings | None = None, *,
                 streams: StreamBoard | None = None, cloud: CloudPlayback | None = None) -> None:
        s = self.settings = settings or RtspProxySettings()
        # Guessing limits: per account shared with SOAP logins, per address here (globaleye.proxy.auth).
        self.authenticator = AccountAuthenticator(accounts, s.auth, s.realm, clock=reactor,
                                                  peer_limit=s.auth_peer_limit, peer_window=s.auth_peer_window)
        self.factory = RtspProxyFactory(
            PlatformDirectory(devices, media, gateway), self.authenticator, reactor,
            paths=PathSettings(connect_timeout=s.connect_timeout, udp_timeout=s.udp_timeout,
                               media_timeout=max(s.udp_timeout, s.connect_timeout)),
            linger=s.linger, max_viewers=s.max_viewers, stall_timeout=s.stall_timeout,
            recover_timeout=s.recover_timeout, media_timeout=s.media_timeout, cloud=cloud)
        if streams is not None:
            streams.attach(self.factory)  # GetStreamStatus

    def stopService(self) -> Any:
        self.factory.stop()
        return super().stopService()

    def status_resource(self) -> resource.Resource:
        status = resource.Resource()
        status.putChild(b"streams", _StatusJson(self.factory))
        return status


class _StatusJson(resource.Resource):
    """``GET /status/streams``: hubs, their path and the attempts that chose it, sessions, counters.

    Shows account numbers and peers: mounted only behind :class:`globaleye.guard.ops.OperatorGuard`.
    """

    isLeaf = True

    def __init__(self, factory: RtspProxyFactory) -> None:
        super().__init__()
        self.factory = factory

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self.factory.status(), indent=1, default=str).encode()
