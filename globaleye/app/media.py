"""Play and playback URLs (§8.9, §7.5.23) with their HashTokens, and stream status (§15).

The URLs are built by :func:`globaleye.util.urls.realplay_url` (the one builder, IPv6 literals
bracketed) from the addresses the live camera reported to the gateway.  One token per
URL: the client tries them in turn (§15) and a token is burnt by the first verification,
so a shared one would not survive a failed local attempt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from globaleye.app.access import CameraAccess
from globaleye.app.control import check_stream
from globaleye.app.errors import DeviceOffline, NoSuchDevice, NotFound, check
from globaleye.app.ports import DeviceGateway, StreamBoard
from globaleye.app.settings import ClientApiSettings
from globaleye.media.rtsp.paths import (
    PlayUrls,  # the §8.9 value, shared with the clients that use it
)
from globaleye.users.accounts import AccountService, LoginSession
from globaleye.util.urls import camera_endpoints, realplay_url

FILE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
#: The address a URL is built from, by its place in :class:`PlayUrls`, as :mod:`globaleye.util.urls` names it.
URL_FIELDS = {"local": "LocalPlayUrl", "upnp": "UpnpPlayUrl", "turn": "TurnPlayUrl"}


@attrs.frozen
class Watch:
    """What a viewer asks to see: a live stream (*stream_type*) or a recorded file (*file_name*)."""

    dev_id: str
    channel_no: int
    stream_type: int = 1
    file_name: str | None = None


def play_url(host: str, port: int, dev_id: str, channel_no: int, stream_type: int, token: str) -> str:
    """The §8.9/§7.5.5 URL: ``rtsp://ip:port/realplay?devid=…&channelno=…&streamtype=…&hashtoken=…``."""
    return realplay_url(host, port, dev_id, channel_no, token, stream_type=stream_type)


def playback_url(host: str, port: int, dev_id: str, channel_no: int, file_name: str, token: str) -> str:
    """The §7.5.23 URL: ``rtsp://ip:port/realplay?devid=…&channelno=…&filename=…&hashtoken=…``."""
    return realplay_url(host, port, dev_id, channel_no, token, file_name=file_name)


class MediaService:
    def __init__(self, access: CameraAccess, accounts: AccountService, gateway: DeviceGateway,
                 settings: ClientApiSettings, streams: StreamBoard) -> None:
        self.access = access
        self.accounts = accounts
        self.gateway = gateway
        self.settings = settings
        self.streams = streams

    async def play_urls(self, session: LoginSession, dev_id: str, channel_no: int, stream_type: int) -> PlayUrls:
        """§8.9: the live URLs; :class:`DeviceOffline` when the camera is (no URL could be played)."""
        check_stream(stream_type)
        await self.access.require(session.account, dev_id, channel_no, own=False)
        return await self._urls(session.account, session, Watch(dev_id, channel_no, stream_type), None)

    async def playback_urls(self, session: LoginSession, dev_id: str, channel_no: int, file_name: str) -> PlayUrls:
        """§7.5.23's URLs for one file; the camera checks the token with 74H (one token per URL, as §8.9)."""
        check(bool(FILE_NAME.match(file_name)), "FileName must be 1-128 of A-Z a-z 0-9 _ . -")
        await self.access.require(session.account, dev_id, channel_no, own=False, online=True)
        return await self._urls(session.account, session, Watch(dev_id, channel_no, 0, file_name), None)

    async def viewer_urls(self, account: str, watch: Watch, field: str) -> PlayUrls:
        """The URL an in-process viewer (the RTSP proxy) uses: only *field* (local, upnp or turn) filled.

        The caller has authenticated *account* and checked :meth:`DeviceService.may_watch`; the
        token is bound to *account* (the audit trail says who watched).
        """
        return await self._urls(account, None, watch, field)

    async def _urls(self, account: str, session: LoginSession | None, watch: Watch, only: str | None) -> PlayUrls:
        addresses = self.gateway.live_addresses(watch.dev_id)
        if addresses is None:
            raise DeviceOffline(f"camera {watch.dev_id} is offline")
        endpoints = camera_endpoints(addresses)
        urls = {"local": "", "upnp": "", "turn": ""}
        for place, field in URL_FIELDS.items():
            endpoint = endpoints[field]
            if endpoint is None or (only is not None and place != only):
                continue
            if watch.file_name is None:
                token = await self._token(account, session, watch.dev_id, watch.channel_no, watch.stream_type)
                urls[place] = play_url(*endpoint, watch.dev_id, watch.channel_no, watch.stream_type, token)
            else:
                token = await self._token(account, session, watch.dev_id, watch.channel_no, 0, watch.file_name)
                urls[place] = playback_url(*endpoint, watch.dev_id, watch.channel_no, watch.file_name, token)
        return PlayUrls(**urls, stun_host=self.settings.stun_host, stun_port=self.settings.stun_port)

    async def _token(self, account: str, session: LoginSession | None, dev_id: str, channel_no: int,
                     stream_type: int, file_name: str = "") -> str:
        if session is not None:
            return await self.accounts.issue_token(session, dev_id, channel_no, stream_type, file_name=file_name)
        return await self.accounts.issue_token_for(account, dev_id, channel_no, stream_type, file_name=file_name)

    async def stream_status(self, session: LoginSession, dev_id: str) -> list[Mapping[str, Any]]:
        """How the RTSP proxy reaches the device now (§15); :class:`NotFound` when no proxy runs here."""
        if await self.access.binding(session.account, dev_id, own=False) is None:
            raise NoSuchDevice(f"device {dev_id} is not usable by {session.account}")
        streams = self.streams.streams(dev_id)
        if streams is None:
            raise NotFound("this platform runs no RTSP proxy")
        return streams
