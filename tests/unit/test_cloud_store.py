"""The cloud storage index and credentials of the SQLite store (issue 12, §7.1.2).

On a real SQLite file: overwrite of one key moves the usage by the difference, a time-range search
includes the files that cross its edges (and only those), paging, eviction order, retention per
account, credentials and their revocation, and that "one camera's day" is answered from the index.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import attrs
from twisted.trial.unittest import TestCase

from globaleye.store import (
    CLOUD_PICTURE,
    CLOUD_RECORD,
    MAX_OBJECT_SECONDS,
    Account,
    Binding,
    CloudCredential,
    CloudObject,
    Device,
)
from globaleye.store.sqlite import SQLiteStore

DEV, OTHER = "81100000001", "81100000002"
T0 = 1_700_000_000.0


def record(dev: str, start: float, size: int = 100, channel: int = 0, duration: float = 300.0,
           stored_at: float = T0, key: str = "") -> CloudObject:
    return CloudObject(dev, channel, CLOUD_RECORD, start, duration, size, "GlobalEyeRecord",
                       key or f"{dev}_{channel}_{int(start)}.ts", "etag", stored_at)


class CloudStoreTests(TestCase):
    def setUp(self) -> None:
        self.path = str(Path(tempfile.mkdtemp()) / "store.sqlite3")
        self.store = SQLiteStore(self.path)

    async def tearDown(self) -> None:  # type: ignore[override]
        await self.store.close()

    async def test_overwrite_moves_usage_by_the_difference(self) -> None:
        self.assertIsNone(await self.store.put_cloud_object(record(DEV, T0, size=100)))
        await self.store.put_cloud_object(record(DEV, T0 + 300, size=50))
        self.assertEqual(await self.store.cloud_usage(DEV), (150, 2))
        old = await self.store.put_cloud_object(record(DEV, T0, size=30))
        assert old is not None
        self.assertEqual(old.size, 100)
        self.assertEqual(await self.store.cloud_usage(DEV), (80, 2))
        removed = await self.store.delete_cloud_object("GlobalEyeRecord", record(DEV, T0).key)
        assert removed is not None
        self.assertEqual(removed.size, 30)
        self.assertIsNone(await self.store.delete_cloud_object("GlobalEyeRecord", record(DEV, T0).key))
        self.assertEqual(await self.store.cloud_usage(DEV), (50, 1))
        self.assertEqual(await self.store.cloud_usage(OTHER), (0, 0))

    async def test_search_includes_files_crossing_the_edges(self) -> None:
        for i in range(12):  # 10:00 .. 11:00, 5 minutes each
            await self.store.put_cloud_object(record(DEV, T0 + 300 * i))
        await self.store.put_cloud_object(record(DEV, T0 + 600, channel=1))
        await self.store.put_cloud_object(record(OTHER, T0 + 600))
        # 10:07 .. 10:12 touches the files of 10:05 and 10:10, not 10:00 (ends 10:05) nor 10:15.
        page = await self.store.search_cloud_objects(DEV, 0, CLOUD_RECORD, T0 + 420, T0 + 720)
        self.assertEqual([o.start for o in page.objects], [T0 + 300, T0 + 600])
        self.assertEqual(page.total, 2)
        # A range ending exactly where a file starts does not include it; one starting where a file ends neither.
        page = await self.store.search_cloud_objects(DEV, 0, CLOUD_RECORD, T0 + 300, T0 + 600)
        self.assertEqual([o.start for o in page.objects], [T0 + 300])
        # Paging: total stays, pages follow each other in time order.
        first = await self.store.search_cloud_objects(DEV, 0, CLOUD_RECORD, T0, T0 + 3600, 0, 5)
        second = await self.store.search_cloud_objects(DEV, 0, CLOUD_RECORD, T0, T0 + 3600, 10, 5)
        self.assertEqual((first.total, len(first.objects), len(second.objects)), (12, 5, 2))
        self.assertEqual(second.objects[-1].start, T0 + 3300)
        # Pictures (duration 0) at the range's start are in, at its end out.
        picture = CloudObject(DEV, 0, CLOUD_PICTURE, T0, 0, 10, "GlobalEyePicture", f"{DEV}_0_a.jpg")
        await self.store.put_cloud_object(picture)
        await self.store.put_cloud_object(attrs.evolve(picture, start=T0 + 60, key=f"{DEV}_0_b.jpg"))
        page = await self.store.search_cloud_objects(DEV, 0, CLOUD_PICTURE, T0, T0 + 60)
        self.assertEqual([o.key for o in page.objects], [f"{DEV}_0_a.jpg"])

    async def test_durations_are_clamped_so_the_search_bound_holds(self) -> None:
        await self.store.put_cloud_object(record(DEV, T0, duration=10 * MAX_OBJECT_SECONDS))
        stored = await self.store.get_cloud_object("GlobalEyeRecord", record(DEV, T0).key)
        assert stored is not None
        self.assertEqual(stored.duration, MAX_OBJECT_SECONDS)
        page = await self.store.search_cloud_objects(DEV, 0, CLOUD_RECORD, T0 + MAX_OBJECT_SECONDS - 1,
                                                     T0 + MAX_OBJECT_SECONDS + 10)
        self.assertEqual(page.total, 1)

    async def test_one_cameras_day_is_one_range_of_the_clustered_key(self) -> None:
        connection = sqlite3.connect(self.path)
        plan = " ".join(str(row[-1]) for row in connection.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM cloud_objects WHERE dev_id = ? AND channel_no = ? AND kind = ? AND "
            "start < ? AND start > ? AND (start + duration > ? OR start >= ?) ORDER BY start, bucket, key",
            (DEV, 0, CLOUD_RECORD, 1.0, 0.0, 0.0, 0.0)))
        connection.close()
        self.assertIn("PRIMARY KEY (dev_id=? AND channel_no=? AND kind=? AND start>? AND start<?)", plan)
        self.assertNotIn("TEMP B-TREE", plan, "no sort: the key's order is the answer's")

    async def test_oldest_first_and_account_usage(self) -> None:
        await self.store.import_devices([Device(DEV, "k"), Device(OTHER, "k")])
        await self.store.create_account(Account("13900000001", "h"))
        await self.store.create_account(Account("13900000002", "h"))
        await self.store.bind_device(Binding("13900000001", DEV), 10)
        await self.store.share_device("13900000001", DEV, "13900000002", T0)
        await self.store.bind_device(Binding("13900000002", OTHER), 10)
        await self.store.put_cloud_object(record(DEV, T0 + 600, size=7))
        await self.store.put_cloud_object(record(DEV, T0, size=5, channel=1))
        await self.store.put_cloud_object(record(OTHER, T0 - 600, size=11))
        self.assertEqual([o.start for o in await self.store.oldest_cloud_objects(DEV, 10)], [T0, T0 + 600])
        self.assertEqual(await self.store.account_cloud_usage("13900000001"), 12)
        self.assertEqual(await self.store.account_cloud_usage("13900000002"), 11, "a shared device is not counted")

    async def test_retention_per_account_and_default(self) -> None:
        await self.store.import_devices([Device(DEV, "k"), Device(OTHER, "k")])
        await self.store.create_account(Account("13900000001", "h"))
        await self.store.bind_device(Binding("13900000001", DEV), 10)
        day = 86400.0
        await self.store.put_cloud_object(record(DEV, T0, stored_at=T0))
        await self.store.put_cloud_object(record(DEV, T0 + 300, stored_at=T0 + 5 * day))
        await self.store.put_cloud_object(record(OTHER, T0, stored_at=T0))
        now = T0 + 10 * day
        expired = await self.store.expired_cloud_objects(now, 7, 100)
        self.assertEqual({(o.dev_id, o.start) for o in expired}, {(DEV, T0), (OTHER, T0)})
        self.assertTrue(await self.store.set_cloud_retention("13900000001", 3))
        expired = await self.store.expired_cloud_objects(now, 7, 100)
        self.assertEqual({(o.dev_id, o.start) for o in expired}, {(DEV, T0), (DEV, T0 + 300), (OTHER, T0)})
        self.assertEqual(len(await self.store.expired_cloud_objects(now, 7, 2)), 2, "bounded batches")
        await self.store.set_cloud_retention("13900000001", 0)  # the account keeps its files for ever
        expired = await self.store.expired_cloud_objects(now, 7, 100)
        self.assertEqual({o.dev_id for o in expired}, {OTHER})
        self.assertEqual(await self.store.expired_cloud_objects(now, 0, 100), [])

    async def test_listing_in_key_order(self) -> None:
        for i in (3, 1, 2):
            await self.store.put_cloud_object(record(DEV, T0 + i, key=f"{DEV}_0_{i}.ts"))
        first = await self.store.cloud_objects_after("GlobalEyeRecord", "", 2)
        self.assertEqual([o.key for o in first], [f"{DEV}_0_1.ts", f"{DEV}_0_2.ts"])
        rest = await self.store.cloud_objects_after("GlobalEyeRecord", first[-1].key, 2)
        self.assertEqual([o.key for o in rest], [f"{DEV}_0_3.ts"])
        self.assertEqual(await self.store.cloud_objects_after("GlobalEyePicture", "", 2), [])

    async def test_credentials_and_revocation(self) -> None:
        await self.store.add_cloud_credential(CloudCredential("AK1", DEV, "s1", T0))
        await self.store.add_cloud_credential(CloudCredential("AK2", DEV, "s2", T0 + 1))
        newest = await self.store.device_cloud_credential(DEV)
        assert newest is not None
        self.assertEqual(newest.access_key, "AK2")
        self.assertEqual(await self.store.revoke_cloud_credentials(DEV, T0 + 2, keep="AK2"), 1)
        old = await self.store.get_cloud_credential("AK1")
        assert old is not None
        self.assertEqual(old.revoked_at, T0 + 2)
        self.assertEqual(await self.store.revoke_cloud_credentials(DEV, T0 + 3), 1)
        self.assertIsNone(await self.store.device_cloud_credential(DEV))
        self.assertIsNone(await self.store.get_cloud_credential("nope"))
