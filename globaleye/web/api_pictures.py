"""Picture (snapshot) policies for ``/api/v1`` (issue 11, §4 "picture policies"; §7.5.24–§7.5.26, 75H–77H).

:class:`PicturesApi` is a mixin of :class:`globaleye.web.api.WebApi`: its methods answer the routes of
the ``# --- picture policies ---`` block of :data:`globaleye.web.routes.ROUTES`.  They map JSON to
:class:`globaleye.app.pictures.PictureService`, which holds the rules (422 ``rule-violation`` with the
rule in ``detail``); a cloud policy on a camera whose 32H report has no cloud storage is 422
``not-supported`` before the camera is asked.  Changes are owner-only like every setting (a shared
camera is 404 like another account's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.web.iweb import IRequest

from globaleye.app.abilities import abilities_of, storage_refusal
from globaleye.app.pictures import CLOUD, FTP, MAX_INTERVAL, MAX_PICTURE_POLICIES, PictureWindow
from globaleye.users.accounts import OK, LoginSession
from globaleye.web.auth import peer_of
from globaleye.web.problem import Problem, bad_request
from globaleye.web.reply import json_reply

if TYPE_CHECKING:
    from globaleye.app import ClientServices

#: 75H StoreType by name.
PICTURE_STORAGES = {"ftp": FTP, "cloud": CLOUD}
PICTURE_STORAGE_NAMES = {code: name for name, code in PICTURE_STORAGES.items()}




class PicturesApi:
    """The picture-policy routes of :class:`~globaleye.web.api.WebApi` (a mixin)."""

    services: ClientServices

    async def picture_policies(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                               channel: int) -> bytes:
        return await self._picturesjson_reply(request, session, devId, channel, 200)

    async def add_picture_policies(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                                   devId: str, channel: int) -> bytes:  # noqa: N803
        storage = body.get("storage", "cloud")
        if storage not in PICTURE_STORAGES:
            raise bad_request("storage must be ftp or cloud")
        items = body.get("policies")
        if not isinstance(items, list) or not items or len(items) > MAX_PICTURE_POLICIES:
            raise bad_request(f"policies must be a list of 1 to {MAX_PICTURE_POLICIES} policies")
        windows = []
        for item in items:
            if not isinstance(item, dict):
                raise bad_request("each policy must be an object")
            interval = item.get("interval")
            if interval is not None and (not isinstance(interval, int) or isinstance(interval, bool)):
                raise bad_request("interval must be an integer")
            start, end = item.get("start"), item.get("end")
            if not isinstance(start, str) or (end is not None and not isinstance(end, str)):
                raise bad_request("start (and end) must be HH:MM")
            windows.append(PictureWindow(start_time=start, end_time=end, interval=interval))
        store_type = PICTURE_STORAGES[storage]
        if store_type == CLOUD:
            abilities = await abilities_of(self.services.control.access, session.account, devId, channel)
            why = storage_refusal(abilities, CLOUD)
            if why:
                raise Problem(422, "not-supported", "The camera cannot do this", why)
        await self.services.pictures.add_policy(session, devId, channel, store_type, windows)
        await self.services.accounts.audit("web-add-picture-policies", session.account, peer_of(request), OK,
                                           f"DevID {devId} channel {channel}: {len(windows)} {storage}")
        return await self._picturesjson_reply(request, session, devId, channel, 201)

    async def delete_picture_policy(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                                    devId: str, channel: int) -> bytes:  # noqa: N803
        policy_id = body.get("id")
        if not isinstance(policy_id, int) or isinstance(policy_id, bool):
            raise bad_request("id must be an integer")
        await self.services.pictures.delete_policy(session, devId, channel, policy_id)
        await self.services.accounts.audit("web-delete-picture-policy", session.account, peer_of(request), OK,
                                           f"DevID {devId} channel {channel}: {policy_id}")
        return json_reply(request, 204)

    async def _picturesjson_reply(self, request: IRequest, session: LoginSession, dev_id: str, channel: int,
                              status: int) -> bytes:
        policies = await self.services.pictures.get_policies(session, dev_id, channel)
        return json_reply(request, status, {
            "maxPerStorage": MAX_PICTURE_POLICIES, "maxInterval": MAX_INTERVAL,
            "policies": [{"id": p.policy_id, "storage": PICTURE_STORAGE_NAMES.get(p.store_type, "ftp"),
                          "start": p.start_time, "end": p.end_time, "interval": p.interval} for p in policies]})


__all__ = ["PicturesApi"]
