"""The small interfaces the application layer needs from the rest of the platform.

As mediamtx's servers declare what they need from their parents, the services here name
only the few methods they call: :class:`~globaleye.device.gateway.service.Gateway` satisfies
:class:`DeviceGateway` and the RTSP proxy's factory :class:`StreamStatusSource`, without
either being imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from globaleye.device.protocol import messages as m
from globaleye.store import DeviceAddresses


class DeviceGateway(Protocol):
    """The device gateway (§7) as the client API uses it."""

    def is_online(self, dev_id: str) -> bool: ...

    def live_addresses(self, dev_id: str) -> DeviceAddresses | None: ...

    def live_version(self, dev_id: str) -> str | None: ...

    async def command(self, dev_id: str, request: m.Message, timeout: float | None = None) -> Any: ...


class Presigner(Protocol):
    """Who signs a short-lived download URL of one stored object (the storage role's S3 endpoint or the
    external S3 service): users never get a camera's credentials (issue 12)."""

    def presign_get(self, bucket: str, key: str, expires: float, filename: str) -> str:
        """A GET URL of *bucket*/*key* valid *expires* seconds, answered as an attachment *filename*."""
        ...


class StreamStatusSource(Protocol):
    """Who relays a device's streams (the RTSP proxy): one mapping per stream, GetStreamStatus's fields."""

    def device_streams(self, dev_id: str) -> list[dict[str, Any]]: ...


class StreamBoard:
    """Where the stream status comes from, if anywhere.

    Created first by the composition root and given both to the media service (which reads
    it) and to the RTSP proxy (which attaches itself when it runs in this process), so that
    neither is built before the other and nothing is written into a service afterwards.
    """

    def __init__(self) -> None:
        self.source: StreamStatusSource | None = None

    def attach(self, source: StreamStatusSource) -> None:
        self.source = source

    def streams(self, dev_id: str) -> list[Mapping[str, Any]] | None:
        """The device's streams, or None when no proxy runs here."""
        return list(self.source.device_streams(dev_id)) if self.source is not None else None
