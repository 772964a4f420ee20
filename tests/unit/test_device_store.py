"""The one-transaction device operations of the store: registration, login and redirect.

Each runs on a real SQLite file.  Atomicity is checked by making a later step of the
transaction fail (an exception inside it, as a crash would stop it there) and showing
that nothing of the earlier steps was kept.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from globaleye.store import (
    DEVICE_BAD_KEY,
    DEVICE_OK,
    DEVICE_TOO_SOON,
    DEVICE_UNKNOWN,
    Device,
    DeviceAddresses,
    GroupDevice,
    ProvinceReport,
)
from globaleye.store import sqlite as sqlite_store
from globaleye.store.sqlite import SQLiteStore

DEV, KEY = "81100000001", "key-1"
ADDRESSES = DeviceAddresses(public_ip="192.0.2.7", public_port=40000, local_ip="192.168.1.9", rtsp_local_port=554)


class Crash(Exception):
    pass


def crash(*args: Any) -> None:
    raise Crash("stopped inside the transaction")


class DeviceStoreTests(TestCase):
    def setUp(self) -> None:
        self.path = str(Path(tempfile.mkdtemp()) / "store.sqlite3")
        self.store = SQLiteStore(self.path)

    async def tearDown(self) -> None:  # type: ignore[override]
        await self.store.close()

    def candidate(self, key: str = KEY, when: float = 100.0) -> Device:
        return Device(dev_id=DEV, dev_key=key, manufacturer_no="811", model="IPC", source="open", created_at=when)

    # register_device -------------------------------------------------------------------

    async def test_register_enrols_and_records(self) -> None:
        outcome = await self.store.register_device(DEV, KEY, 100.0, 300.0, self.candidate())
        self.assertEqual((outcome.outcome, outcome.enrolled), (DEVICE_OK, True))
        device = await self.store.get_device(DEV)
        assert device is not None
        self.assertEqual((device.dev_key, device.source, device.registered_at), (KEY, "open", 100.0))

    async def test_register_unknown_without_candidate_writes_nothing(self) -> None:
        outcome = await self.store.register_device(DEV, KEY, 100.0, 300.0, None)
        self.assertEqual(outcome.outcome, DEVICE_UNKNOWN)
        self.assertIsNone(await self.store.get_device(DEV))

    async def test_register_key_pinned(self) -> None:
        await self.store.register_device(DEV, KEY, 100.0, 300.0, self.candidate())
        outcome = await self.store.register_device(DEV, "other", 500.0, 300.0, self.candidate("other", 500.0))
        self.assertEqual((outcome.outcome, outcome.enrolled), (DEVICE_BAD_KEY, False))
        device = await self.store.get_device(DEV)
        assert device is not None
        self.assertEqual((device.dev_key, device.registered_at), (KEY, 100.0))

    async def test_register_five_minute_rule(self) -> None:
        await self.store.register_device(DEV, KEY, 100.0, 300.0, self.candidate())
        outcome = await self.store.register_device(DEV, KEY, 399.0, 300.0, self.candidate())
        self.assertEqual(outcome.outcome, DEVICE_TOO_SOON)
        assert outcome.device is not None
        self.assertEqual(outcome.device.registered_at, 100.0)
        self.assertEqual((await self.store.register_device(DEV, KEY, 400.0, 300.0, None)).outcome, DEVICE_OK)
        device = await self.store.get_device(DEV)
        assert device is not None
        self.assertEqual(device.registered_at, 400.0)

    async def test_register_imported_device(self) -> None:
        await self.store.import_devices([Device(dev_id=DEV, dev_key=KEY)])
        outcome = await self.store.register_device(DEV, KEY, 100.0, 300.0, None)
        self.assertEqual((outcome.outcome, outcome.enrolled), (DEVICE_OK, False))

    async def test_register_crash_leaves_no_half_registration(self) -> None:
        """A failure after the enrollment INSERT, before the registration record: neither is kept."""
        original = sqlite_store._mark_registered
        sqlite_store._mark_registered = crash  # type: ignore[assignment]
        try:
            with self.assertRaises(Crash):
                await self.store.register_device(DEV, KEY, 100.0, 300.0, self.candidate())
        finally:
            sqlite_store._mark_registered = original
        self.assertIsNone(await self.store.get_device(DEV))
        # The connection is usable afterwards (the transaction was rolled back, not left open).
        self.assertEqual((await self.store.register_device(DEV, KEY, 100.0, 300.0, self.candidate())).outcome,
                         DEVICE_OK)

    async def test_register_visible_to_another_connection(self) -> None:
        """What the operator CLI sees: the committed row, read through its own connection."""
        await self.store.register_device(DEV, KEY, 100.0, 300.0, self.candidate())
        other = SQLiteStore(self.path)
        try:
            device = await other.get_device(DEV)
            assert device is not None
            self.assertEqual(device.registered_at, 100.0)
        finally:
            await other.close()

    # login_device ----------------------------------------------------------------------

    async def test_login(self) -> None:
        await self.store.import_devices([Device(dev_id=DEV, dev_key=KEY)])
        self.assertEqual(await self.store.login_device(DEV, KEY, 200.0, "V1.2", ADDRESSES), DEVICE_OK)
        device = await self.store.get_device(DEV)
        assert device is not None
        self.assertEqual((device.login_at, device.dev_ver), (200.0, "V1.2"))
        self.assertEqual(await self.store.get_addresses(DEV), ADDRESSES)

    async def test_login_refusals_write_nothing(self) -> None:
        self.assertEqual(await self.store.login_device(DEV, KEY, 200.0, "V1.2", ADDRESSES), DEVICE_UNKNOWN)
        await self.store.import_devices([Device(dev_id=DEV, dev_key=KEY)])
        self.assertEqual(await self.store.login_device(DEV, "wrong", 200.0, "V1.2", ADDRESSES), DEVICE_BAD_KEY)
        device = await self.store.get_device(DEV)
        assert device is not None
        self.assertIsNone(device.login_at)
        self.assertIsNone(await self.store.get_addresses(DEV))

    async def test_login_crash_leaves_no_half_login(self) -> None:
        """A failure after the login_at UPDATE, before the addresses: the login is not recorded."""
        await self.store.import_devices([Device(dev_id=DEV, dev_key=KEY)])
        self.patch(sqlite_store, "_upsert_addresses", crash)
        with self.assertRaises(Crash):
            await self.store.login_device(DEV, KEY, 200.0, "V1.2", ADDRESSES)
        device = await self.store.get_device(DEV)
        assert device is not None
        self.assertEqual((device.login_at, device.dev_ver), (None, ""))

    # redirect_device -------------------------------------------------------------------

    def seen(self, key: str = KEY, when: float = 10.0) -> GroupDevice:
        return GroupDevice(dev_id=DEV, dev_key=key, manufacturer_no="811", model="IPC", first_seen=when,
                           last_seen=when)

    async def test_redirect_notes_and_pins(self) -> None:
        known, url = await self.store.redirect_device(DEV, self.seen())
        self.assertIsNone(url)
        assert known is not None
        self.assertEqual((known.dev_key, known.first_seen), (KEY, 10.0))
        known, _ = await self.store.redirect_device(DEV, self.seen("forged", 20.0))
        assert known is not None
        self.assertEqual((known.dev_key, known.first_seen, known.last_seen), (KEY, 10.0, 20.0))

    async def test_redirect_without_key_notes_nothing(self) -> None:
        self.assertEqual(await self.store.redirect_device(DEV, None), (None, None))
        self.assertIsNone(await self.store.get_group_device(DEV))

    async def test_redirect_urls(self) -> None:
        await self.store.assign_province("81100000002", "http://198.51.100.1/register", 0)
        self.assertEqual((await self.store.redirect_device("81100000002", None))[1], "http://198.51.100.1/register")
        # A claimed device follows its province's latest DevUrl; without a report, the claim's URL.
        await self.store.claim_province(DEV, "3100-01", "http://198.51.100.2/register", 0)
        self.assertEqual((await self.store.redirect_device(DEV, None))[1], "http://198.51.100.2/register")
        await self.store.save_province_report(ProvinceReport("3100-01", dev_url="http://198.51.100.3/register"))
        self.assertEqual((await self.store.redirect_device(DEV, None))[1], "http://198.51.100.3/register")

    async def test_redirect_crash_notes_nothing(self) -> None:
        class Failing:
            """A connection whose third statement (the province lookup, after the note) fails."""

            def __init__(self, connection: Any) -> None:
                self.connection = connection
                self.statements = 0

            def execute(self, sql: str, *args: Any) -> Any:
                if not sql.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
                    self.statements += 1
                    if self.statements == 3:
                        raise Crash("stopped inside the transaction")
                return self.connection.execute(sql, *args)

        original = self.store._pool.runWithConnection

        def run(function: Any, *args: Any) -> Any:
            return original(lambda c, *a: function(Failing(c), *a), *args)

        self.patch(self.store._pool, "runWithConnection", run)
        with self.assertRaises(Crash):
            await self.store.redirect_device(DEV, self.seen())
        self.patch(self.store._pool, "runWithConnection", original)
        self.assertIsNone(await self.store.get_group_device(DEV))
