"""FTP pictures delivered to the owner (:mod:`globaleye.app.delivery`): the rules, on a driven clock.

No sockets: the real SQLite store in memory (:class:`~globaleye.testing.InlineStore`),
:class:`~globaleye.s3.memory.MemoryBackend`, the real event board and event service, and an SMS sender
that records what it was given.  Each test stores pictures the way the FTP role does (admit, the
backend, ``stored`` on :class:`~globaleye.app.delivery.FtpDeliveryEvents`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from globaleye.app.access import CameraAccess
from globaleye.app.cloud import CloudService, CloudSettings
from globaleye.app.delivery import (
    LINK_PRESIGNED,
    DeliveredPictures,
    DeliverySettings,
    FtpDeliveryEvents,
    PictureDelivery,
)
from globaleye.app.errors import NoSuchDevice, NotFound
from globaleye.app.events import EventBoard, EventService
from globaleye.s3.backend import PICTURE_BUCKET, Principal
from globaleye.s3.memory import MemoryBackend
from globaleye.store import SOURCE_FTP, Account, Binding, Device, DeviceAbility, PictureRecord
from globaleye.testing import InlineStore
from globaleye.users.accounts import LoginSession
from globaleye.util.clock import parse_protocol_time

DEV, OTHER_DEV = "81100000001", "81100000002"
OWNER, GUEST, STRANGER = "13900000001", "13900000002", "13900000003"
NOW = parse_protocol_time("20261202090000")
JPEG = b"\xff\xd8\xff\xe0" + b"j" * 200 + b"\xff\xd9"


def session(account: str) -> LoginSession:
    return LoginSession("t", account, "192.0.2.1:1", NOW, NOW, b"s")


class Gateway:
    def is_online(self, dev_id: str) -> bool:
        return False

    async def command(self, dev_id: str, request: Any, timeout: float | None = None) -> Any:
        raise AssertionError("not asked")


class RecordingSender:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = fail

    async def send(self, mobile: str, text: str) -> None:
        if self.fail:
            raise ConnectionError("SMS gateway down")
        self.sent.append((mobile, text))


class Presigner:
    def presign_get(self, bucket: str, key: str, expires: float, filename: str) -> str:
        return f"http://127.0.0.1:9/{bucket}/{key}?expires={expires:g}"


class DeliveryTests(TestCase):
    def setUp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.async_setup())

    async def async_setup(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = InlineStore()
        self.backend = MemoryBackend(self.clock.seconds)
        await self.backend.create_bucket(PICTURE_BUCKET)
        access = CameraAccess(self.store, Gateway())  # type: ignore[arg-type]
        self.cloud = CloudService(self.store, self.backend, self.clock, CloudSettings(), access, None, Presigner())
        self.board = EventBoard()
        self.events = EventService(access, self.board)
        self.sms = RecordingSender()
        self.make()
        await self.store.import_devices([Device(DEV, "k"), Device(OTHER_DEV, "k")])
        await self.store.record_ability(DEV, DeviceAbility(channel_num=2, estore_flag=1))
        for account in (OWNER, GUEST, STRANGER):
            await self.store.create_account(Account(account, "h"))
        await self.store.bind_device(Binding(OWNER, DEV), 10)
        await self.store.share_device(OWNER, DEV, GUEST, NOW)
        await self.store.bind_device(Binding(STRANGER, OTHER_DEV), 10)
        self.camera = Principal("AK", "secret", DEV)
        self.pictures = DeliveredPictures(self.cloud)

    def make(self, **values: Any) -> None:
        portal = values.pop("portal_url", "https://portal.example/")
        self.delivery = PictureDelivery(self.cloud, self.board, self.sms, self.clock, DeliverySettings(**values),
                                        lambda: portal)
        self.ftp = FtpDeliveryEvents(self.cloud, self.delivery)

    async def upload(self, stamp: str, channel: int = 0, principal: Principal | None = None,
                     data: bytes = JPEG) -> str:
        who = principal or self.camera
        name = f"{who.dev_id}_{channel}_{stamp}.JPG"
        self.assertIsNone(await self.ftp.admit(who, PICTURE_BUCKET, name, len(data)))
        info = await self.backend.put_bytes(PICTURE_BUCKET, name, data)
        await self.ftp.stored(who, info)
        return name

    async def test_picture_event_and_sms_with_portal_link(self) -> None:
        owner, guest, stranger = (self.events.subscribe(a) for a in (OWNER, GUEST, STRANGER))
        name = await self.upload("20261202090000")
        self.assertEqual(self.sms.sent, [(OWNER, "GlobalEye: new picture from camera 81100000001 channel 0 "
                                                 "(2026-12-02 09:00): https://portal.example/#/devices/81100000001"
                                                 "/pictures/81100000001_0_20261202090000.JPG")])
        entry = await self.store.get_cloud_object(PICTURE_BUCKET, name)
        assert entry is not None
        self.assertEqual(entry.source, SOURCE_FTP)
        # The owner's and the guest's open pages hear of it; another account's do not.
        for sub in (owner, guest):
            event = sub.poll()
            assert event is not None
            self.assertEqual((event.kind, event.dev_id, event.channel, event.text), ("picture", DEV, 0, name))
        self.assertIsNone(stranger.poll())
        # The guest gets no SMS (the owner's phone only); no link when no portal is known.
        self.make(portal_url="")
        await self.upload("20261202090100")
        self.assertEqual(self.sms.sent[-1], (OWNER, "GlobalEye: new picture from camera 81100000001 channel 0 "
                                                    "(2026-12-02 09:01)"))

    async def test_sms_limit_per_owner_and_day(self) -> None:
        self.make(sms_per_day=2)
        for minute in range(10):
            await self.upload(f"2026120209{minute:02d}00")
        self.assertEqual(len(self.sms.sent), 2)
        self.assertEqual(self.delivery.counters["sms_limited"], 8)
        self.assertEqual(self.delivery.counters["events"], 10)  # the portal still hears of every one
        page = await self.pictures.page(session(OWNER), DEV, 0, 1, 100)
        self.assertEqual(page.total, 10)
        # The next Beijing day (16:00 UTC is midnight in Beijing): two again.
        self.clock.advance(15 * 3600)
        for minute in range(3):
            await self.upload(f"2026120301{minute:02d}00")
        self.assertEqual(len(self.sms.sent), 4)

    async def test_failed_sms_not_counted(self) -> None:
        self.make(sms_per_day=1)
        self.delivery.sms = RecordingSender(fail=True)
        await self.upload("20261202090000")
        self.assertEqual(self.delivery.counters["sms_failed"], 1)
        self.delivery.sms = self.sms
        await self.upload("20261202090100")
        self.assertEqual(len(self.sms.sent), 1)

    async def test_no_sms_when_off_or_no_owner(self) -> None:
        self.make(sms_per_day=0)
        await self.upload("20261202090000")
        self.assertEqual(self.sms.sent, [])
        self.make()
        await self.upload("20261202090000", principal=Principal("AK2", "s", OTHER_DEV))  # owned by STRANGER
        self.assertEqual([mobile for mobile, _ in self.sms.sent], [STRANGER])
        await self.store.unbind_device(STRANGER, OTHER_DEV)
        await self.upload("20261202090100", principal=Principal("AK2", "s", OTHER_DEV))
        self.assertEqual(len(self.sms.sent), 1)
        self.assertEqual(self.delivery.counters["no_owner"], 1)

    async def test_presigned_link(self) -> None:
        self.make(link=LINK_PRESIGNED, link_lifetime=3600)
        name = await self.upload("20261202090000")
        self.assertTrue(self.sms.sent[0][1].endswith(f": http://127.0.0.1:9/{PICTURE_BUCKET}/{name}?expires=3600"))
        self.assertRaises(ValueError, self.make, link="public")

    async def test_cloud_uploads_are_not_pushed(self) -> None:
        """A picture uploaded to the cloud (StoreType 1) is listed but sends nothing: only FTP is pushed."""
        name = f"{DEV}_0_20261202090000.jpg"
        info = await self.backend.put_bytes(PICTURE_BUCKET, name, JPEG)
        await self.cloud.stored(self.camera, info)
        self.assertEqual(self.sms.sent, [])
        page = await self.pictures.page(session(OWNER), DEV, 0)
        self.assertEqual([(p.name, p.source) for p in page.pictures], [(name, "s3")])

    async def test_list_newest_first_paged_and_missing(self) -> None:
        names = [await self.upload(f"20261202{hour:02d}0000") for hour in range(1, 6)]
        await self.upload("20261202020000", channel=1)
        for name in names[:2]:
            await self.store.add_picture(PictureRecord(DEV, 0, name, name.split("_")[2][:14], NOW))
        # A 36H for a file that never arrived: listed as missing, and no SMS for it.
        sent = len(self.sms.sent)
        await self.store.add_picture(PictureRecord(DEV, 0, f"{DEV}_0_20261202070000.JPG", "20261202070000", NOW))
        self.assertEqual(len(self.sms.sent), sent)
        first = await self.pictures.page(session(OWNER), DEV, 0, 1, 2)
        self.assertEqual(first.total, 5)
        self.assertEqual([p.name for p in first.pictures], [names[4], names[3]])
        self.assertEqual([m.name for m in first.missing], [f"{DEV}_0_20261202070000.JPG"])
        second = await self.pictures.page(session(GUEST), DEV, 0, 2, 2)
        self.assertEqual([p.name for p in second.pictures], [names[2], names[1]])
        self.assertEqual([p.noticed for p in second.pictures], [False, True])
        self.assertEqual(second.missing, ())
        third = await self.pictures.page(session(OWNER), DEV, 0, 3, 2)
        self.assertEqual([p.name for p in third.pictures], [names[0]])
        self.assertEqual((await self.pictures.page(session(OWNER), DEV, 0, 4, 2)).pictures, ())
        self.assertEqual(len((await self.pictures.page(session(OWNER), DEV, 1)).pictures), 1)
        with self.assertRaises(NoSuchDevice):
            await self.pictures.page(session(STRANGER), DEV, 0)

    async def test_picture_bytes(self) -> None:
        name = await self.upload("20261202090000")
        self.assertEqual(await self.pictures.picture(session(GUEST), DEV, name), JPEG)
        with self.assertRaises(NoSuchDevice):
            await self.pictures.picture(session(STRANGER), DEV, name)
        for wrong in (f"{OTHER_DEV}_0_20261202090000.JPG", "../x.JPG", f"{DEV}_0_20261202090001.JPG"):
            with self.assertRaises(NotFound):
                await self.pictures.picture(session(OWNER), DEV, wrong)
        not_jpeg = await self.upload("20261202090100", data=b"<html>")
        with self.assertRaises(NotFound):
            await self.pictures.picture(session(OWNER), DEV, not_jpeg)
        await self.backend.delete(PICTURE_BUCKET, name)
        with self.assertRaises(NotFound):
            await self.pictures.picture(session(OWNER), DEV, name)
