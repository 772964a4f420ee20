"""Pictures delivered to the owner for ``/api/v1`` (issue 12; §7.5.24 FTP pictures, 36H §7.5.27).

:class:`DeliveryApi` is a mixin of :class:`globaleye.web.api.WebApi` answering the routes of the
``# --- delivered pictures ---`` block of :data:`globaleye.web.routes.ROUTES`, over
:class:`globaleye.app.delivery.DeliveredPictures`:

* ``GET /devices/{devId}/channels/{channel}/delivered-pictures?page=&size=``: the channel's stored
  pictures, newest first, paged, each with the URL of its bytes; on page 1 the 36H notices whose file
  never arrived (``missing``);
* ``GET /devices/{devId}/delivered-pictures/{name}``: the picture's bytes, streamed from the store
  through this API (same origin: the portal's strict CSP needs no ``img-src`` for the store's origin,
  and no presigned URL ends up in the browser's history), bounded in size, ``image/jpeg``,
  ``Cache-Control: private``.

The owner and the camera's share guests see them (a share is for watching); another account's camera
is 404 no-such-device like one that does not exist, checked before whether storage runs here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from twisted.web.iweb import IRequest

from globaleye.app.delivery import MAX_PAGE_SIZE, DeliveredPictures
from globaleye.app.errors import NoSuchDevice
from globaleye.users.accounts import LoginSession
from globaleye.util.clock import protocol_time
from globaleye.web.problem import Problem, bad_request
from globaleye.web.reply import JSON

if TYPE_CHECKING:
    from globaleye.app import ClientServices

#: Seconds a browser may keep a picture (its name is its shot time; an overwrite is rare).
PICTURE_MAX_AGE = 300


def _int_arg(request: IRequest, name: str, default: int, low: int, high: int) -> int:
    values = (request.args or {}).get(name.encode())
    if not values:
        return default
    text = values[0].decode("utf-8", "replace")
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad_request(f"{name} is an integer from {low} to {high}")
    return int(text)


class DeliveryApi:
    """The delivered-pictures routes of :class:`~globaleye.web.api.WebApi` (a mixin)."""

    services: ClientServices

    async def _delivered(self, session: LoginSession, dev_id: str, channel: int | None) -> DeliveredPictures:
        """The read side, after the access check (a stranger's 404 comes before the 503)."""
        if channel is not None:
            allowed = await self.services.devices.may_watch(session.account, dev_id, channel)
        else:
            allowed = await self.services.devices.access.binding(session.account, dev_id, own=False) is not None
        if not allowed:
            raise NoSuchDevice(f"{dev_id} is not {session.account}'s to watch")
        if self.services.cloud is None:
            raise Problem(503, "storage-unavailable", "Picture storage unavailable",
                          "this platform stores no pictures (no storage or ftp role, no external store)")
        return DeliveredPictures(self.services.cloud)

    async def delivered_pictures(self, request: IRequest, session: LoginSession, body: None,
                                 devId: str, channel: int) -> bytes:  # noqa: N803
        page_no = _int_arg(request, "page", 1, 1, 100000)
        size = _int_arg(request, "size", 20, 1, MAX_PAGE_SIZE)
        reader = await self._delivered(session, devId, channel)
        page = await reader.page(session, devId, channel, page_no, size)
        base = f"/api/v1/devices/{devId}/delivered-pictures/"
        data: dict[str, Any] = {
            "total": page.total, "page": page.page_no, "size": page.page_size,
            "pictures": [{"name": p.name, "channel": p.channel_no, "time": p.shot_time, "size": p.size,
                          "source": p.source, "storedAt": protocol_time(p.stored_at), "noticed": p.noticed,
                          "url": base + quote(p.name)} for p in page.pictures],
            "missing": [{"name": m.name, "channel": m.channel_no, "time": m.shot_time,
                         "receivedAt": protocol_time(m.received_at)} for m in page.missing],
        }
        request.setHeader(b"content-type", JSON)
        return json.dumps(data, ensure_ascii=False).encode()

    async def delivered_picture(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                                name: str) -> bytes:
        reader = await self._delivered(session, devId, None)
        data = await reader.picture(session, devId, name)
        request.setHeader(b"content-type", b"image/jpeg")
        request.setHeader(b"cache-control", f"private, max-age={PICTURE_MAX_AGE}".encode())
        request.setHeader(b"x-content-type-options", b"nosniff")
        return data
