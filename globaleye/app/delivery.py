"""FTP pictures delivered to the camera's owner (issue 12; §4 items 9–11, §7.5.24–§7.5.27).

§7.5.24's picture policies with StoreType 0 have the camera take a snapshot at a time of day and push
it to the FTP server it was given in REGISTER_RES (§7.2), then tell the platform with 36H (§7.5.27):
those are the pictures "pushed to the owner on a schedule".  The platform's side of that push is here:

* :class:`FtpDeliveryEvents` is the FTP role's :class:`~globaleye.s3.backend.StorageEvents`: it admits
  and indexes through :class:`~globaleye.app.cloud.CloudService` (the index entry's source is
  ``ftp``) and then hands the stored picture to :class:`PictureDelivery`;
* :class:`PictureDelivery` tells the owner: a ``picture`` event on the event board (the portal's open
  pages of every account that may see the camera get it at once, through
  :class:`~globaleye.app.events.EventService`'s access check), and an SMS to the owner's mobile (the
  account IS the mobile number, §8.2) through the platform's SMS sender, at most ``sms_per_day`` per
  owner and Beijing day (a misbehaving camera, or a policy every minute, must not make the platform
  spam a phone: the rest are counted and logged once a day, the portal still shows every picture);
* :class:`DeliveredPictures` is the portal's read side: the camera's stored pictures newest first,
  paged; the 36H notices whose file never arrived, as missing (they never send an SMS: nothing came);
  one picture's bytes, bounded, for the web API to serve on its own origin.

The SMS link (docs/security.md, "Pictures delivered by SMS"): by default the portal's picture page,
which needs the owner's login — a link that works without login is a bearer capability, and an SMS is
read on lock screens, forwarded and kept in phone backups.  ``link = presigned`` gives instead a
presigned URL of the object, valid ``link_lifetime`` seconds, for operators who accept that.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from globaleye.app.cloud import CloudService
from globaleye.app.errors import NotFound, check
from globaleye.app.events import DeviceEvent
from globaleye.media.names import PictureName
from globaleye.s3.backend import PICTURE_BUCKET, NoSuchBucket, NoSuchKey, ObjectInfo, Principal
from globaleye.store import CLOUD_PICTURE, SOURCE_FTP, CloudObject
from globaleye.users.accounts import MOBILE, LoginSession
from globaleye.util.clock import BEIJING, protocol_time

#: Pictures per page at most.
MAX_PAGE_SIZE = 100
#: The largest picture the web API serves (an FTP picture is at most ``[ftp] max_picture_size``).
MAX_PICTURE_BYTES = 8 << 20
#: 36H notices looked at for missing files.
NOTICES = 100
#: Owners whose daily SMS count is kept (beyond: the oldest day's entries go first).
MAX_OWNERS = 100_000
#: Pictures dated this far after the platform's clock are still listed (a camera's clock runs ahead).
FUTURE_SLACK = 2 * 86400.0
LINK_PORTAL, LINK_PRESIGNED = "portal", "presigned"


class SmsSender(Protocol):
    """:class:`globaleye.users.sms.client.Sender`."""

    async def send(self, mobile: str, text: str) -> None: ...


class Board(Protocol):
    """:class:`globaleye.app.events.EventBoard`."""

    def publish(self, event: DeviceEvent) -> None: ...


@attrs.frozen
class DeliverySettings:
    """``[cloud] picture_sms_per_day``, ``picture_link``, ``picture_link_lifetime``."""

    #: SMS per owner and Beijing day at most (0: no SMS at all).
    sms_per_day: int = 3
    #: ``portal`` (the portal's picture page, login needed) or ``presigned`` (the object, no login).
    link: str = LINK_PORTAL
    #: Seconds a presigned link lives (``link = presigned`` only).
    link_lifetime: float = 86400.0


@attrs.frozen
class DeliveredPicture:
    """One stored picture as the portal lists it."""

    name: str
    channel_no: int
    shot_time: str  # YYYYMMDDHHMMSS, Beijing (the name's)
    size: int
    source: str  # ftp (a §7.5.24 FTP picture), s3 (uploaded to the cloud), scan (found by reconciliation)
    stored_at: float
    noticed: bool  # a 36H named it


@attrs.frozen
class MissingPicture:
    """A 36H notice whose file never arrived (§7.5.27: the camera said it uploaded it)."""

    name: str
    channel_no: int
    shot_time: str
    received_at: float


@attrs.frozen
class DeliveredPage:
    total: int
    page_no: int
    page_size: int
    pictures: tuple[DeliveredPicture, ...]
    missing: tuple[MissingPicture, ...]


class PictureDelivery:
    """Tells the owner of a camera that an FTP picture arrived (see the module docstring)."""

    log = Logger()

    def __init__(self, cloud: CloudService, board: Board, sms: SmsSender, clock: Any,
                 settings: DeliverySettings, portal_url: Callable[[], str] = lambda: "") -> None:
        """*portal_url*: the portal's base URL for the SMS's link, asked at each SMS (the composition root
        knows it once the web role listens); empty: no link, the text alone."""
        if settings.link not in (LINK_PORTAL, LINK_PRESIGNED):
            raise ValueError(f"picture_link must be {LINK_PORTAL} or {LINK_PRESIGNED}, not {settings.link!r}")
        self.cloud = cloud
        self.board = board
        self.sms = sms
        self.clock = clock
        self.settings = settings
        self.portal_url = portal_url
        #: owner -> (Beijing day, SMS sent that day, pictures not told by SMS that day)
        self._days: dict[str, tuple[str, int, int]] = {}
        #: SMS under way (a test waits for them; the FTP upload does not).
        self.sending: set[Deferred[None]] = set()
        self.counters = {"pictures": 0, "events": 0, "sms": 0, "sms_limited": 0, "sms_failed": 0,
                         "no_owner": 0}

    async def delivered(self, principal: Principal, info: ObjectInfo) -> None:
        """*info* (bucket GlobalEyePicture) was stored by the FTP role for *principal*'s camera."""
        name = PictureName.parse(info.key)
        if name is None or name.dev_id != principal.dev_id:
            self.log.info("pictures: {key} of {dev_id} is not a §7.1.1 picture name of the camera; not delivered",
                          key=info.key, dev_id=principal.dev_id)
            return
        now = self.clock.seconds()
        self.counters["pictures"] += 1
        self.board.publish(DeviceEvent("picture", name.dev_id, now, channel=name.channel_no, text=info.key))
        self.counters["events"] += 1
        if self.settings.sms_per_day <= 0:
            return
        owner = await self.cloud.store.device_owner(name.dev_id)
        if owner is None or not MOBILE.match(owner):
            self.counters["no_owner"] += 1
            return
        if not self._allow(owner, now):
            return
        d = Deferred.fromCoroutine(self._send(owner, name, info))
        self.sending.add(d)
        d.addBoth(lambda _: self.sending.discard(d))

    def _allow(self, owner: str, now: float) -> bool:
        """One more SMS for *owner* today (Beijing), within ``sms_per_day``?  Counts either way."""
        day = datetime.datetime.fromtimestamp(now, BEIJING).strftime("%Y%m%d")
        seen, sent, held = self._days.get(owner, (day, 0, 0))
        if seen != day:
            sent, held = 0, 0
        if sent >= self.settings.sms_per_day:
            if held == 0:
                self.log.info("pictures: {owner} had {sent} picture SMS today ({day}); the rest of the day's "
                              "pictures are in the portal only", owner=owner, sent=sent, day=day)
            self._days[owner] = (day, sent, held + 1)
            self.counters["sms_limited"] += 1
            return False
        if len(self._days) >= MAX_OWNERS and owner not in self._days:
            self._days = {k: v for k, v in self._days.items() if v[0] == day}  # yesterday's counts go
        self._days[owner] = (day, sent + 1, held)
        return True

    async def _send(self, owner: str, name: PictureName, info: ObjectInfo) -> None:
        text = f"GlobalEye: new picture from camera {name.dev_id} channel {name.channel_no} " \
               f"({name.start:%Y-%m-%d %H:%M})"
        link = self.link(name.dev_id, info.key)
        if link:
            text += f": {link}"
        try:
            await self.sms.send(owner, text)
        except Exception as e:
            self.counters["sms_failed"] += 1
            day, sent, held = self._days.get(owner, ("", 1, 0))
            self._days[owner] = (day, max(0, sent - 1), held)  # nothing reached the phone: not spent
            self.log.warn("pictures: SMS to {owner} for {key} not sent: {error}", owner=owner, key=info.key,
                          error=e)
            return
        self.counters["sms"] += 1
        self.log.info("pictures: SMS to {owner} for {key}", owner=owner, key=info.key)

    def link(self, dev_id: str, key: str) -> str:
        """The SMS's link: the portal's picture page (login needed), or a presigned GET."""
        if self.settings.link == LINK_PRESIGNED and self.cloud.presigner is not None:
            return self.cloud.presigner.presign_get(PICTURE_BUCKET, key, self.settings.link_lifetime, key)
        base = self.portal_url()
        if not base:
            return ""
        return f"{base.rstrip('/')}/#/devices/{dev_id}/pictures/{key}"


class FtpDeliveryEvents:
    """The FTP role's :class:`~globaleye.s3.backend.StorageEvents`: the cloud service's, with the index
    entry's source ``ftp`` and the owner told (:class:`PictureDelivery`) once the picture is indexed."""

    log = Logger()

    def __init__(self, cloud: CloudService, delivery: PictureDelivery) -> None:
        self.cloud = cloud
        self.delivery = delivery

    async def admit(self, principal: Principal, bucket: str, key: str, size: int) -> str | None:
        return await self.cloud.admit(principal, bucket, key, size)

    async def stored(self, principal: Principal, info: ObjectInfo) -> None:
        await self.cloud.stored(principal, info, SOURCE_FTP)
        if info.bucket != PICTURE_BUCKET:
            return
        try:
            await self.delivery.delivered(principal, info)
        except Exception:
            self.log.failure("pictures: delivering {key} failed", key=info.key)

    async def deleted(self, principal: Principal, bucket: str, key: str) -> None:
        await self.cloud.deleted(principal, bucket, key)


class DeliveredPictures:
    """The portal's read side over the cloud index (owner or share guest, as cloud search)."""

    def __init__(self, cloud: CloudService) -> None:
        self.cloud = cloud

    async def page(self, session: LoginSession, dev_id: str, channel_no: int, page_no: int = 1,
                   page_size: int = 20) -> DeliveredPage:
        """The channel's stored pictures, newest first (by the shot time of the name); on page 1 also the
        36H notices (the latest :data:`NOTICES`) whose file never arrived."""
        check(page_no >= 1, "page counts from 1")
        check(1 <= page_size <= MAX_PAGE_SIZE, f"size is 1 to {MAX_PAGE_SIZE}")
        await self.cloud.access.require(session.account, dev_id, channel_no, own=False)
        store = self.cloud.store
        end = self.cloud.clock.seconds() + FUTURE_SLACK
        total = (await store.search_cloud_objects(dev_id, channel_no, CLOUD_PICTURE, 0.0, end, 0, 0)).total
        # Newest first over a store that pages oldest first: the same page counted from the end.
        stop = total - (page_no - 1) * page_size
        objects: list[CloudObject] = []
        if stop > 0:
            offset = max(0, stop - page_size)
            found = await store.search_cloud_objects(dev_id, channel_no, CLOUD_PICTURE, 0.0, end, offset,
                                                     stop - offset)
            objects = list(reversed(found.objects))
        notices = await store.list_pictures(dev_id, NOTICES)
        noticed = {n.file_name for n in notices}
        missing: list[MissingPicture] = []
        if page_no == 1:
            for n in notices:
                if n.channel_no != channel_no:
                    continue
                stored = (await store.get_cloud_object(PICTURE_BUCKET, n.file_name)
                          if n.file_name.startswith(dev_id + "_") else None)
                if stored is None:
                    missing.append(MissingPicture(n.file_name, n.channel_no, n.shot_time, n.received_at))
        pictures = tuple(DeliveredPicture(o.key, o.channel_no, protocol_time(o.start), o.size, o.source, o.stored_at,
                                          o.key in noticed) for o in objects)
        return DeliveredPage(total, page_no, page_size, pictures, tuple(missing))

    async def picture(self, session: LoginSession, dev_id: str, name: str) -> bytes:
        """One stored picture's bytes (JPEG, at most :data:`MAX_PICTURE_BYTES`); :class:`NotFound` for a
        name that is not one of the camera's stored pictures, or not a JPEG."""
        await self.cloud.access.require(session.account, dev_id, own=False)
        parsed = PictureName.parse(name)
        if parsed is None or parsed.dev_id != dev_id:
            raise NotFound(f"no picture {name} of {dev_id}")
        obj = await self.cloud.store.get_cloud_object(PICTURE_BUCKET, name)
        if obj is None or obj.dev_id != dev_id:
            raise NotFound(f"no picture {name} of {dev_id}")
        if obj.size > MAX_PICTURE_BYTES:
            raise NotFound(f"{name} is larger than a picture ({obj.size} bytes)")
        try:
            data = await self.cloud.backend.read(PICTURE_BUCKET, name, 0, MAX_PICTURE_BYTES)
        except (NoSuchKey, NoSuchBucket):
            raise NotFound(f"picture {name} of {dev_id} is no longer stored") from None
        if not data.startswith(b"\xff\xd8"):
            raise NotFound(f"{name} is not a JPEG")
        return data


def deliver_ftp(cloud: CloudService, board: Board, sms: SmsSender, clock: Any, settings: DeliverySettings,
                portal_url: Callable[[], str] = lambda: "") -> FtpDeliveryEvents:
    """The FTP role's storage events with delivery to the owners (the composition root's one call)."""
    return FtpDeliveryEvents(cloud, PictureDelivery(cloud, board, sms, clock, settings, portal_url))


__all__ = ["DeliveredPage", "DeliveredPicture", "DeliveredPictures", "DeliverySettings", "FtpDeliveryEvents",
           "MissingPicture", "PictureDelivery", "deliver_ftp"]
