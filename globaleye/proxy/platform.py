"""The platform side of the proxy: who may see which camera, and the §8.9 URLs.

In process, with the objects :class:`~globaleye.clientapi.McuApi` uses (store,
gateway, account settings), so the proxy needs no LoginSession and no SOAP round
trip.  Each URL set carries one fresh HashToken per attempt, made by the accounts
service like the client API's own (:meth:`~globaleye.accounts.AccountService.issue_token_for`:
single use, ``hashtoken_lifetime``), bound to the viewer's account so the audit trail
says who watched.
"""

from __future__ import annotations

from typing import Any

import attrs

from globaleye.accounts import AccountService
from globaleye.clientapi import play_url, playback_url
from globaleye.proxy.paths import LOCAL, UPNP, PlayUrls
from globaleye.urls import camera_endpoints


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


class Unavailable(Exception):
    """The camera cannot be watched now; ``status`` is the RTSP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PlatformDirectory:
    def __init__(self, mcu_api: Any) -> None:
        self.mcu_api = mcu_api
        self.store = mcu_api.store
        self.gateway = mcu_api.gateway
        self.accounts: AccountService = mcu_api.accounts

    async def may_watch(self, account: str, target: Target) -> bool:
        """Own or shared binding (§8.5 ShareFlag 0 or 1), and a channel the camera has."""
        binding = await self.store.get_binding(account, target.dev_id)
        if binding is None:
            return False
        ability = await self.store.get_ability(target.dev_id)
        channels = max(1, ability.channel_num) if ability is not None else 1
        return 0 <= target.channel_no < channels

    def online(self, dev_id: str) -> bool:
        return self.gateway.live.get(dev_id) is not None

    async def urls(self, account: str, target: Target, path: str) -> PlayUrls:
        """The URLs of §8.9 (one fresh token, for the address *path* uses; the others empty)."""
        live = self.gateway.live.get(target.dev_id)
        if live is None:
            raise Unavailable(503, f"camera {target.dev_id} is offline")
        field = {LOCAL: "LocalPlayUrl", UPNP: "UpnpPlayUrl"}.get(path, "TurnPlayUrl")
        endpoint = camera_endpoints(live.addresses)[field]  # the client API's URLs, built the same way
        settings = self.mcu_api.settings
        stun_host, stun_port = settings.stun_host, settings.stun_port
        if endpoint is None:
            return PlayUrls(stun_host=stun_host, stun_port=stun_port)
        token = await self._token(account, target)
        if target.kind == "live":
            url = play_url(*endpoint, target.dev_id, target.channel_no, target.stream_type, token)
        else:
            url = playback_url(*endpoint, target.dev_id, target.channel_no, target.file_name, token)
        values = {"local": "", "upnp": "", "turn": ""}
        values[{LOCAL: "local", UPNP: "upnp"}.get(path, "turn")] = url
        return PlayUrls(**values, stun_host=stun_host, stun_port=stun_port)

    async def _token(self, account: str, target: Target) -> str:
        if target.kind == "live":
            return await self.accounts.issue_token_for(account, target.dev_id, target.channel_no,
                                                       target.stream_type)
        return await self.accounts.issue_token_for(account, target.dev_id, target.channel_no, 0,
                                                   file_name=target.file_name)
