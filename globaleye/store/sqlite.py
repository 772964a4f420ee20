"""The embedded SQLite store: one connection on one worker thread.

SQLite serialises writers anyway, so one connection in a one-thread
:class:`~twisted.enterprise.adbapi.ConnectionPool` gives the same throughput as
many without ``database is locked`` retries, and keeps the reactor thread free.
WAL mode lets the operator CLI read (and import) while the platform runs.
"""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.enterprise import adbapi

from globaleye.store import (
    BIND_ALREADY_MINE,
    BIND_LIMIT,
    BIND_NO_ACCOUNT,
    BIND_OK,
    BIND_TAKEN,
    DEVICE_BAD_KEY,
    DEVICE_OK,
    DEVICE_TOO_SOON,
    DEVICE_UNKNOWN,
    MAX_OBJECT_SECONDS,
    OPEN_OK,
    OPEN_OTHER_PROVINCE,
    SHARE_NO_ACCOUNT,
    SHARE_NOT_OWNER,
    SHARE_OK,
    SHARE_SELF,
    Account,
    AuditRecord,
    Binding,
    CloudCredential,
    CloudObject,
    CloudPage,
    Device,
    DeviceAbility,
    DeviceAddresses,
    DigestSecret,
    ExceptionRecord,
    GroupDevice,
    HashToken,
    OutboxItem,
    PictureRecord,
    ProvinceReport,
    RegistrationOutcome,
    Subscriber,
)
from globaleye.store.migrations import configure, connect, migrate

_DEVICE_COLUMNS = "dev_id, dev_key, manufacturer_no, model, dev_type, source, created_at, registered_at, login_at, dev_ver"
_GROUP_DEVICE_COLUMNS = "dev_id, dev_key, manufacturer_no, model, dev_type, source, first_seen, last_seen"
_CLOUD_COLUMNS = "dev_id, channel_no, kind, start, duration, size, bucket, key, etag, stored_at, source"
_CREDENTIAL_COLUMNS = "access_key, dev_id, secret, created_at, revoked_at"
_ADDRESS_COLUMNS = (
    "public_ip, public_port, upnp_ip, rtsp_upnp_port, local_ip, rtsp_local_port, "
    "turn_relay_ip, rtsp_turn_relay_port, net_type"
)


class SQLiteStore:
    """:class:`globaleye.store.Store` on SQLite."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Open once synchronously so that a bad path or a corrupt file is a clear
            # start-up error, and so that the schema is current before anyone is served.
            connection = connect(path)
            try:
                migrate(connection)
            finally:
                connection.close()
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            path,
            check_same_thread=False,
            isolation_level=None,
            cp_min=1,
            cp_max=1,
            cp_openfun=self._open,
            cp_reconnect=True,
        )

    def _open(self, connection: sqlite3.Connection) -> None:
        configure(connection)
        if self.path == ":memory:":
            migrate(connection)

    async def _run(self, function: Any, *args: Any) -> Any:
        return await self._pool.runWithConnection(function, *args)

    async def close(self) -> None:
        self._pool.close()

    # Devices -----------------------------------------------------------------------

    async def get_device(self, dev_id: str) -> Device | None:
        def query(c: sqlite3.Connection) -> Device | None:
            row = c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE dev_id = ?", (dev_id,)).fetchone()
            return Device(*row) if row else None

        return await self._run(query)

    async def list_devices(self) -> list[Device]:
        def query(c: sqlite3.Connection) -> list[Device]:
            return [Device(*row) for row in c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY dev_id")]

        return await self._run(query)

    async def import_devices(self, devices: Sequence[Device]) -> int:
        def write(c: sqlite3.Connection) -> int:
            with _transaction(c):
                for d in devices:
                    c.execute(
                        "INSERT INTO devices (dev_id, dev_key, manufacturer_no, model, dev_type, source, created_at) "
                        "VALUES (?, ?, ?, ?, ?, 'import', ?) ON CONFLICT(dev_id) DO UPDATE SET "
                        "dev_key = excluded.dev_key, manufacturer_no = excluded.manufacturer_no, "
                        "model = excluded.model, dev_type = excluded.dev_type, source = 'import'",
                        (d.dev_id, d.dev_key, d.manufacturer_no, d.model, d.dev_type, d.created_at),
                    )
            return len(devices)

        return await self._run(write)

    async def enroll_device(self, device: Device) -> bool:
        return await self._run(_insert_device, device)

    async def delete_device(self, dev_id: str) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM devices WHERE dev_id = ?", (dev_id,)).rowcount == 1

        return await self._run(write)

    async def record_registration(self, dev_id: str, when: float) -> None:
        await self._run(_execute, "UPDATE devices SET registered_at = ? WHERE dev_id = ?", (when, dev_id))

    async def register_device(self, dev_id: str, dev_key: str, when: float, interval: float,
                              candidate: Device | None = None,
                              waive: Callable[[Device], bool] | None = None) -> RegistrationOutcome:
        def write(c: sqlite3.Connection) -> RegistrationOutcome:
            # One IMMEDIATE transaction: two registrations of one new camera at once cannot both
            # enrol it, nor both pass the interval check.
            with _transaction(c):
                row = c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE dev_id = ?", (dev_id,)).fetchone()
                enrolled = False
                if row is not None:
                    device = Device(*row)
                elif candidate is not None:
                    _insert_device(c, candidate)
                    device, enrolled = candidate, True
                else:
                    return RegistrationOutcome(DEVICE_UNKNOWN)
                if not hmac.compare_digest(device.dev_key.encode(), dev_key.encode()):
                    return RegistrationOutcome(DEVICE_BAD_KEY, device)
                if device.registered_at is not None and 0 <= when - device.registered_at < interval \
                        and not (waive is not None and waive(device)):
                    return RegistrationOutcome(DEVICE_TOO_SOON, device)
                _mark_registered(c, dev_id, when)
            return RegistrationOutcome(DEVICE_OK, device, enrolled)

        return await self._run(write)

    async def record_login(self, dev_id: str, when: float, dev_ver: str, addresses: DeviceAddresses) -> None:
        def write(c: sqlite3.Connection) -> None:
            with _transaction(c):
                c.execute("UPDATE devices SET login_at = ?, dev_ver = ? WHERE dev_id = ?", (when, dev_ver, dev_id))
                _upsert_addresses(c, dev_id, addresses)

        await self._run(write)

    async def login_device(self, dev_id: str, dev_key: str, when: float, dev_ver: str,
                           addresses: DeviceAddresses) -> str:
        def write(c: sqlite3.Connection) -> str:
            with _transaction(c):
                row = c.execute("SELECT dev_key FROM devices WHERE dev_id = ?", (dev_id,)).fetchone()
                if row is None:
                    return DEVICE_UNKNOWN
                if not hmac.compare_digest(str(row[0]).encode(), dev_key.encode()):
                    return DEVICE_BAD_KEY
                c.execute("UPDATE devices SET login_at = ?, dev_ver = ? WHERE dev_id = ?", (when, dev_ver, dev_id))
                _upsert_addresses(c, dev_id, addresses)
            return DEVICE_OK

        return await self._run(write)

    async def update_addresses(self, dev_id: str, addresses: DeviceAddresses) -> None:
        await self._run(_upsert_addresses, dev_id, addresses)

    async def get_addresses(self, dev_id: str) -> DeviceAddresses | None:
        def query(c: sqlite3.Connection) -> DeviceAddresses | None:
            row = c.execute(f"SELECT {_ADDRESS_COLUMNS} FROM device_addresses WHERE dev_id = ?", (dev_id,)).fetchone()
            return DeviceAddresses(*row) if row else None

        return await self._run(query)

    async def record_ability(self, dev_id: str, ability: DeviceAbility) -> None:
        await self._run(
            _execute,
            "INSERT INTO device_abilities (dev_id, channel_num, ptz_flag, estore_flag, local_store_flag, xml) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(dev_id) DO UPDATE SET channel_num = excluded.channel_num, "
            "ptz_flag = excluded.ptz_flag, estore_flag = excluded.estore_flag, "
            "local_store_flag = excluded.local_store_flag, xml = excluded.xml",
            (dev_id, ability.channel_num, ability.ptz_flag, ability.estore_flag, ability.local_store_flag,
             ability.xml),
        )

    async def get_ability(self, dev_id: str) -> DeviceAbility | None:
        def query(c: sqlite3.Connection) -> DeviceAbility | None:
            row = c.execute(
                "SELECT channel_num, ptz_flag, estore_flag, local_store_flag, xml FROM device_abilities "
                "WHERE dev_id = ?", (dev_id,)).fetchone()
            if row is None:
                return None
            return DeviceAbility(channel_num=row[0], ptz_flag=row[1], estore_flag=row[2], local_store_flag=row[3],
                                 xml=bytes(row[4]))

        return await self._run(query)

    # Reports -----------------------------------------------------------------------

    async def add_exception(self, record: ExceptionRecord) -> int:
        return await self._run(
            _insert,
            "INSERT INTO device_exceptions (dev_id, channel_no, exception_type, description, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (record.dev_id, record.channel_no, record.exception_type, record.description, record.received_at),
        )

    async def list_exceptions(self, dev_id: str, limit: int = 100) -> list[ExceptionRecord]:
        def query(c: sqlite3.Connection) -> list[ExceptionRecord]:
            rows = c.execute(
                "SELECT dev_id, channel_no, exception_type, description, received_at, id FROM device_exceptions "
                "WHERE dev_id = ? ORDER BY id DESC LIMIT ?", (dev_id, limit))
            return [ExceptionRecord(*row) for row in rows]

        return await self._run(query)

    async def add_picture(self, record: PictureRecord) -> int:
        return await self._run(
            _insert,
            "INSERT INTO device_pictures (dev_id, channel_no, file_name, shot_time, received_at) VALUES (?, ?, ?, ?, ?)",
            (record.dev_id, record.channel_no, record.file_name, record.shot_time, record.received_at),
        )

    async def list_pictures(self, dev_id: str, limit: int = 100) -> list[PictureRecord]:
        def query(c: sqlite3.Connection) -> list[PictureRecord]:
            rows = c.execute(
                "SELECT dev_id, channel_no, file_name, shot_time, received_at, id FROM device_pictures "
                "WHERE dev_id = ? ORDER BY id DESC LIMIT ?", (dev_id, limit))
            return [PictureRecord(*row) for row in rows]

        return await self._run(query)

    # Tokens ------------------------------------------------------------------------

    async def add_token(self, token: HashToken) -> None:
        await self._run(
            _execute,
            "INSERT INTO hash_tokens (token, dev_id, channel_no, stream_type, file_name, account, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (token.token, token.dev_id, token.channel_no, token.stream_type, token.file_name, token.account,
             token.expires_at),
        )

    async def consume_token(self, token: str, now: float) -> HashToken | None:
        def take(c: sqlite3.Connection) -> HashToken | None:
            with _transaction(c):
                # Expired tokens are swept on the way: they can never be used again.
                c.execute("DELETE FROM hash_tokens WHERE expires_at < ?", (now,))
                row = c.execute(
                    "DELETE FROM hash_tokens WHERE token = ? RETURNING token, dev_id, channel_no, expires_at, "
                    "stream_type, file_name, account", (token,)).fetchone()
            return HashToken(*row) if row else None

        return await self._run(take)

    # Group platform ------------------------------------------------------------------

    async def get_province_url(self, dev_id: str) -> str | None:
        def query(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT province_url FROM province_assignments WHERE dev_id = ?", (dev_id,)).fetchone()
            return row[0] if row else None

        return await self._run(query)

    async def assign_province(self, dev_id: str, province_url: str, when: float) -> None:
        await self._run(
            _execute,
            "INSERT INTO province_assignments (dev_id, province_url, assigned_at) VALUES (?, ?, ?) "
            "ON CONFLICT(dev_id) DO UPDATE SET province_url = excluded.province_url, assigned_at = excluded.assigned_at",
            (dev_id, province_url, when),
        )

    # Client accounts (§8) --------------------------------------------------------------

    async def create_account(self, account: Account, digest: DigestSecret | None = None) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            cursor = c.execute(
                "INSERT INTO accounts (account, password_hash, created_at, password_changed_at, digest_realm, "
                "digest_ha1, digest_ha1_sha256) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(account) DO NOTHING",
                (account.account, account.password_hash, account.created_at, account.password_changed_at,
                 *_digest_columns(digest)))
            return cursor.rowcount == 1

        return await self._run(write)

    async def get_account(self, account: str) -> Account | None:
        def query(c: sqlite3.Connection) -> Account | None:
            row = c.execute("SELECT account, password_hash, created_at, password_changed_at, dev_num FROM accounts "
                            "WHERE account = ?", (account,)).fetchone()
            return Account(*row) if row else None

        return await self._run(query)

    async def set_password(self, account: str, password_hash: str, when: float,
                           digest: DigestSecret | None = None) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            return c.execute("UPDATE accounts SET password_hash = ?, password_changed_at = ?, digest_realm = ?, "
                             "digest_ha1 = ?, digest_ha1_sha256 = ? WHERE account = ?",
                             (password_hash, when, *_digest_columns(digest), account)).rowcount == 1

        return await self._run(write)

    async def get_digest(self, account: str) -> DigestSecret | None:
        def query(c: sqlite3.Connection) -> DigestSecret | None:
            row = c.execute("SELECT digest_realm, digest_ha1, digest_ha1_sha256 FROM accounts WHERE account = ?",
                            (account,)).fetchone()
            if row is None or row[0] is None or row[1] is None:
                return None
            return DigestSecret(str(row[0]), str(row[1]), None if row[2] is None else str(row[2]))

        return await self._run(query)

    async def set_digest(self, account: str, password_hash: str, digest: DigestSecret | None) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            return c.execute("UPDATE accounts SET digest_realm = ?, digest_ha1 = ?, digest_ha1_sha256 = ? "
                             "WHERE account = ? AND password_hash = ?", (*_digest_columns(digest), account, password_hash)).rowcount == 1

        return await self._run(write)

    async def forget_digests(self, keep_realm: str = "") -> int:
        def write(c: sqlite3.Connection) -> int:
            return c.execute("UPDATE accounts SET digest_realm = NULL, digest_ha1 = NULL, digest_ha1_sha256 = NULL "
                             "WHERE digest_ha1 IS NOT NULL "
                             "AND (? = '' OR digest_realm IS NOT ?)", (keep_realm, keep_realm)).rowcount

        return await self._run(write)

    async def delete_account(self, account: str) -> list[str]:
        def write(c: sqlite3.Connection) -> list[str]:
            with _transaction(c):
                released = [row[0] for row in c.execute(
                    "SELECT dev_id FROM device_bindings WHERE account = ? ORDER BY dev_id", (account,))]
                # Shares of the devices this account owned end with it: a later owner must not
                # inherit the old owner's guests.
                c.execute("DELETE FROM device_bindings WHERE share_flag = 1 AND dev_id IN (SELECT dev_id FROM "
                          "device_bindings WHERE account = ? AND share_flag = 0)", (account,))
                c.execute("DELETE FROM device_bindings WHERE account = ?", (account,))
                c.execute("DELETE FROM accounts WHERE account = ?", (account,))
            return released

        return await self._run(write)

    async def bind_device(self, binding: Binding, limit: int) -> str:
        def write(c: sqlite3.Connection) -> str:
            # One IMMEDIATE transaction: the count, the owner check and the insert see the same
            # database, so two concurrent AddDevice calls cannot both pass the limit.
            with _transaction(c):
                if c.execute("SELECT 1 FROM accounts WHERE account = ?", (binding.account,)).fetchone() is None:
                    return BIND_NO_ACCOUNT
                owner = c.execute("SELECT account FROM device_bindings WHERE dev_id = ? AND share_flag = 0",
                                  (binding.dev_id,)).fetchone()
                if owner is not None:
                    return BIND_ALREADY_MINE if owner[0] == binding.account else BIND_TAKEN
                if binding.share_flag == 0:
                    (owned,) = c.execute("SELECT COUNT(*) FROM device_bindings WHERE account = ? AND share_flag = 0",
                                         (binding.account,)).fetchone()
                    if owned >= limit:
                        return BIND_LIMIT
                c.execute("INSERT INTO device_bindings (account, dev_id, share_flag, name, bound_at) "
                          "VALUES (?, ?, ?, ?, ?) ON CONFLICT(account, dev_id) DO UPDATE SET "
                          "share_flag = excluded.share_flag, name = excluded.name, bound_at = excluded.bound_at",
                          (binding.account, binding.dev_id, binding.share_flag, binding.name, binding.bound_at))
            return BIND_OK

        return await self._run(write)

    async def unbind_device(self, account: str, dev_id: str) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            with _transaction(c):
                removed = c.execute("DELETE FROM device_bindings WHERE account = ? AND dev_id = ? AND share_flag = 0",
                                    (account, dev_id)).rowcount == 1
                if removed:  # the owner's guests go with the owner (a next owner starts afresh)
                    c.execute("DELETE FROM device_bindings WHERE dev_id = ? AND share_flag = 1", (dev_id,))
            return removed

        return await self._run(write)

    async def list_bindings(self, account: str) -> list[Binding]:
        def query(c: sqlite3.Connection) -> list[Binding]:
            return [Binding(*row) for row in c.execute(
                "SELECT account, dev_id, share_flag, name, bound_at FROM device_bindings WHERE account = ? "
                "ORDER BY share_flag, dev_id", (account,))]

        return await self._run(query)

    async def get_binding(self, account: str, dev_id: str) -> Binding | None:
        def query(c: sqlite3.Connection) -> Binding | None:
            row = c.execute("SELECT account, dev_id, share_flag, name, bound_at FROM device_bindings "
                            "WHERE account = ? AND dev_id = ?", (account, dev_id)).fetchone()
            return Binding(*row) if row else None

        return await self._run(query)

    async def share_device(self, owner: str, dev_id: str, guest: str, when: float) -> str:
        def write(c: sqlite3.Connection) -> str:
            with _transaction(c):
                row = c.execute("SELECT name FROM device_bindings WHERE account = ? AND dev_id = ? AND share_flag = 0",
                                (owner, dev_id)).fetchone()
                if row is None:
                    return SHARE_NOT_OWNER
                if guest == owner:
                    return SHARE_SELF
                if c.execute("SELECT 1 FROM accounts WHERE account = ?", (guest,)).fetchone() is None:
                    return SHARE_NO_ACCOUNT
                c.execute("INSERT INTO device_bindings (account, dev_id, share_flag, name, bound_at) "
                          "VALUES (?, ?, 1, ?, ?) ON CONFLICT(account, dev_id) DO NOTHING",
                          (guest, dev_id, row[0], when))
            return SHARE_OK

        return await self._run(write)

    async def unshare_device(self, dev_id: str, guest: str | None = None) -> int:
        def write(c: sqlite3.Connection) -> int:
            if guest is None:
                return c.execute("DELETE FROM device_bindings WHERE dev_id = ? AND share_flag = 1", (dev_id,)).rowcount
            return c.execute("DELETE FROM device_bindings WHERE dev_id = ? AND account = ? AND share_flag = 1",
                             (dev_id, guest)).rowcount

        return await self._run(write)

    async def list_shares(self, dev_id: str) -> list[Binding]:
        def query(c: sqlite3.Connection) -> list[Binding]:
            return [Binding(*row) for row in c.execute(
                "SELECT account, dev_id, share_flag, name, bound_at FROM device_bindings WHERE dev_id = ? "
                "AND share_flag = 1 ORDER BY account", (dev_id,))]

        return await self._run(query)

    async def set_dev_num(self, account: str, dev_num: int | None) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            return c.execute("UPDATE accounts SET dev_num = ? WHERE account = ?", (dev_num, account)).rowcount == 1

        return await self._run(write)

    async def list_account_numbers(self) -> list[tuple[str, int | None]]:
        def query(c: sqlite3.Connection) -> list[tuple[str, int | None]]:
            return [(row[0], row[1]) for row in c.execute("SELECT account, dev_num FROM accounts ORDER BY account")]

        return await self._run(query)

    # Group platform (§5, §6) -------------------------------------------------------------

    async def claim_province(self, dev_id: str, province: str, province_url: str, when: float) -> str:
        def write(c: sqlite3.Connection) -> str:
            with _transaction(c):
                row = c.execute("SELECT province FROM province_assignments WHERE dev_id = ?", (dev_id,)).fetchone()
                if row is not None and row[0] != province:
                    return str(row[0])
                c.execute("INSERT INTO province_assignments (dev_id, province_url, assigned_at, province) "
                          "VALUES (?, ?, ?, ?) ON CONFLICT(dev_id) DO UPDATE SET province_url = excluded.province_url",
                          (dev_id, province_url, when, province))
            return province

        return await self._run(write)

    async def get_province_of(self, dev_id: str) -> str | None:
        def query(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT province FROM province_assignments WHERE dev_id = ?", (dev_id,)).fetchone()
            return str(row[0]) if row else None

        return await self._run(query)

    async def get_group_device(self, dev_id: str) -> GroupDevice | None:
        def query(c: sqlite3.Connection) -> GroupDevice | None:
            row = c.execute(f"SELECT {_GROUP_DEVICE_COLUMNS} FROM group_devices WHERE dev_id = ?", (dev_id,)).fetchone()
            return GroupDevice(*row) if row else None

        return await self._run(query)

    async def note_group_device(self, device: GroupDevice) -> GroupDevice:
        def write(c: sqlite3.Connection) -> GroupDevice:
            with _transaction(c):
                c.execute(f"INSERT INTO group_devices ({_GROUP_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                          "ON CONFLICT(dev_id) DO UPDATE SET last_seen = excluded.last_seen",
                          attrs.astuple(device))
                row = c.execute(f"SELECT {_GROUP_DEVICE_COLUMNS} FROM group_devices WHERE dev_id = ?",
                                (device.dev_id,)).fetchone()
            return GroupDevice(*row)

        return await self._run(write)

    async def redirect_device(self, dev_id: str, seen: GroupDevice | None) -> tuple[GroupDevice | None, str | None]:
        def write(c: sqlite3.Connection) -> tuple[GroupDevice | None, str | None]:
            with _transaction(c):
                if seen is not None:
                    c.execute(f"INSERT INTO group_devices ({_GROUP_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                              "ON CONFLICT(dev_id) DO UPDATE SET last_seen = excluded.last_seen",
                              attrs.astuple(seen))
                row = c.execute(f"SELECT {_GROUP_DEVICE_COLUMNS} FROM group_devices WHERE dev_id = ?",
                                (dev_id,)).fetchone()
                # The claiming province's latest DevUrl wins over the URL stored with the claim, so a
                # province that moves its registration URL takes its cameras along.
                assignment = c.execute(
                    "SELECT a.province_url, p.dev_url FROM province_assignments AS a LEFT JOIN group_provinces AS p "
                    "ON a.province != '' AND p.province = a.province WHERE a.dev_id = ?", (dev_id,)).fetchone()
            url = (assignment[1] or assignment[0]) if assignment is not None else None
            return (GroupDevice(*row) if row else None), url

        return await self._run(write)

    async def import_group_devices(self, devices: Sequence[GroupDevice]) -> int:
        def write(c: sqlite3.Connection) -> int:
            with _transaction(c):
                for d in devices:
                    c.execute(f"INSERT INTO group_devices ({_GROUP_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'import', ?, ?) "
                              "ON CONFLICT(dev_id) DO UPDATE SET dev_key = excluded.dev_key, "
                              "manufacturer_no = excluded.manufacturer_no, model = excluded.model, "
                              "dev_type = excluded.dev_type, source = 'import'",
                              (d.dev_id, d.dev_key, d.manufacturer_no, d.model, d.dev_type, d.first_seen, d.last_seen))
            return len(devices)

        return await self._run(write)

    async def save_province_report(self, report: ProvinceReport) -> None:
        await self._run(
            _execute,
            "INSERT INTO group_provinces (province, cms_ver, mcu_url, dev_url, peer, reported_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(province) DO UPDATE SET cms_ver = excluded.cms_ver, mcu_url = excluded.mcu_url, "
            "dev_url = excluded.dev_url, peer = excluded.peer, reported_at = excluded.reported_at",
            attrs.astuple(report))

    async def get_province_report(self, province: str) -> ProvinceReport | None:
        def query(c: sqlite3.Connection) -> ProvinceReport | None:
            row = c.execute("SELECT province, cms_ver, mcu_url, dev_url, peer, reported_at FROM group_provinces "
                            "WHERE province = ?", (province,)).fetchone()
            return ProvinceReport(*row) if row else None

        return await self._run(query)

    async def open_subscriber(self, subscriber: Subscriber) -> str:
        def write(c: sqlite3.Connection) -> str:
            with _transaction(c):
                row = c.execute("SELECT province FROM group_subscribers WHERE mobile = ?",
                                (subscriber.mobile,)).fetchone()
                if row is not None and row[0] != subscriber.province:
                    return OPEN_OTHER_PROVINCE
                c.execute("INSERT INTO group_subscribers (mobile, province, ipcam_num, opened_at, changed_at) "
                          "VALUES (?, ?, ?, ?, ?) ON CONFLICT(mobile) DO UPDATE SET ipcam_num = excluded.ipcam_num, "
                          "changed_at = excluded.changed_at", attrs.astuple(subscriber))
            return OPEN_OK

        return await self._run(write)

    async def change_subscriber(self, mobile: str, province: str, ipcam_num: int, when: float) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            return c.execute("UPDATE group_subscribers SET ipcam_num = ?, changed_at = ? WHERE mobile = ? "
                             "AND province = ?", (ipcam_num, when, mobile, province)).rowcount == 1

        return await self._run(write)

    async def cancel_subscriber(self, mobile: str, province: str) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM group_subscribers WHERE mobile = ? AND province = ?",
                             (mobile, province)).rowcount == 1

        return await self._run(write)

    async def get_subscriber(self, mobile: str) -> Subscriber | None:
        def query(c: sqlite3.Connection) -> Subscriber | None:
            row = c.execute("SELECT mobile, province, ipcam_num, opened_at, changed_at FROM group_subscribers "
                            "WHERE mobile = ?", (mobile,)).fetchone()
            return Subscriber(*row) if row else None

        return await self._run(query)

    # Province's outbox of §6 notices -------------------------------------------------------

    async def add_outbox(self, item: OutboxItem) -> int:
        return await self._run(
            _insert, "INSERT INTO group_outbox (operation, payload, created_at, attempts, next_at) VALUES (?, ?, ?, ?, ?)",
            (item.operation, item.payload, item.created_at, item.attempts, item.next_at))

    async def due_outbox(self, now: float, limit: int = 100) -> list[OutboxItem]:
        def query(c: sqlite3.Connection) -> list[OutboxItem]:
            return [OutboxItem(*row) for row in c.execute(
                "SELECT operation, payload, created_at, attempts, next_at, id FROM group_outbox WHERE next_at <= ? "
                "ORDER BY id LIMIT ?", (now, limit))]

        return await self._run(query)

    async def delete_outbox(self, item_id: int) -> None:
        await self._run(_execute, "DELETE FROM group_outbox WHERE id = ?", (item_id,))

    async def retry_outbox(self, item_id: int, attempts: int, next_at: float) -> None:
        await self._run(_execute, "UPDATE group_outbox SET attempts = ?, next_at = ? WHERE id = ?",
                        (attempts, next_at, item_id))

    async def add_audit(self, record: AuditRecord) -> int:
        return await self._run(
            _insert,
            "INSERT INTO audit_log (at, account, peer, action, result, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (record.at, record.account, record.peer, record.action, record.result, record.detail),
        )

    async def list_audit(self, account: str, limit: int = 100) -> list[AuditRecord]:
        def query(c: sqlite3.Connection) -> list[AuditRecord]:
            rows = c.execute("SELECT at, account, peer, action, result, detail, id FROM audit_log "
                             "WHERE account = ? ORDER BY id DESC LIMIT ?", (account, limit))
            return [AuditRecord(*row) for row in rows]

        return await self._run(query)

    async def list_audit_accounts(self, action: str, since: float) -> list[str]:
        def query(c: sqlite3.Connection) -> list[str]:
            return [row[0] for row in c.execute("SELECT DISTINCT account FROM audit_log WHERE action = ? AND "
                                                "result = 0 AND at >= ? ORDER BY account", (action, since))]

        return await self._run(query)

    async def purge(self, kind: str, before: float, limit: int) -> int:
        table, column = _RETENTION_TABLES[kind]

        def delete(c: sqlite3.Connection) -> int:
            # Rows go in in time order, so the oldest are the lowest ids: read the first *limit* by rowid
            # (no index on the time needed, never a scan of the whole table) and delete the leading run
            # that is older than *before*.
            rows = c.execute(f"SELECT id, {column} FROM {table} ORDER BY id LIMIT ?", (limit,)).fetchall()
            old = 0
            while old < len(rows) and rows[old][1] < before:
                old += 1
            if not old:
                return 0
            return c.execute(f"DELETE FROM {table} WHERE id <= ?", (rows[old - 1][0],)).rowcount

        return await self._run(delete)

    # Cloud storage (§7.1, issue 12) ---------------------------------------------------------

    async def put_cloud_object(self, obj: CloudObject) -> CloudObject | None:
        duration = min(max(0.0, obj.duration), MAX_OBJECT_SECONDS)

        def write(c: sqlite3.Connection) -> CloudObject | None:
            with _transaction(c):
                row = c.execute(f"SELECT {_CLOUD_COLUMNS} FROM cloud_objects WHERE bucket = ? AND key = ?",
                                (obj.bucket, obj.key)).fetchone()
                old = CloudObject(*row) if row else None
                if old is not None:
                    _move_usage(c, old.dev_id, -old.size, -1)
                c.execute(
                    "INSERT INTO cloud_objects (dev_id, channel_no, kind, start, duration, size, bucket, key, etag, "
                    "stored_at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(bucket, key) DO UPDATE "
                    "SET dev_id = excluded.dev_id, channel_no = excluded.channel_no, kind = excluded.kind, "
                    "start = excluded.start, duration = excluded.duration, size = excluded.size, "
                    "etag = excluded.etag, stored_at = excluded.stored_at, source = excluded.source",
                    (obj.dev_id, obj.channel_no, obj.kind, obj.start, duration, obj.size, obj.bucket, obj.key,
                     obj.etag, obj.stored_at, obj.source))
                _move_usage(c, obj.dev_id, obj.size, 1)
            return old

        return await self._run(write)

    async def get_cloud_object(self, bucket: str, key: str) -> CloudObject | None:
        def query(c: sqlite3.Connection) -> CloudObject | None:
            row = c.execute(f"SELECT {_CLOUD_COLUMNS} FROM cloud_objects WHERE bucket = ? AND key = ?",
                            (bucket, key)).fetchone()
            return CloudObject(*row) if row else None

        return await self._run(query)

    async def delete_cloud_object(self, bucket: str, key: str) -> CloudObject | None:
        def write(c: sqlite3.Connection) -> CloudObject | None:
            with _transaction(c):
                row = c.execute(f"DELETE FROM cloud_objects WHERE bucket = ? AND key = ? RETURNING {_CLOUD_COLUMNS}",
                                (bucket, key)).fetchone()
                if row is None:
                    return None
                old = CloudObject(*row)
                _move_usage(c, old.dev_id, -old.size, -1)
            return old

        return await self._run(write)

    async def search_cloud_objects(self, dev_id: str, channel_no: int, kind: str, start: float, end: float,
                                   offset: int = 0, limit: int = 100) -> CloudPage:
        # "start > begin - MAX_OBJECT_SECONDS" bounds the index range: no entry lasts longer (clamped when
        # indexed), so an entry that starts earlier cannot reach into the range.
        where = ("dev_id = ? AND channel_no = ? AND kind = ? AND start < ? AND start > ? "
                 "AND (start + duration > ? OR start >= ?)")
        parameters = (dev_id, channel_no, kind, end, start - MAX_OBJECT_SECONDS, start, start)

        def query(c: sqlite3.Connection) -> CloudPage:
            (total,) = c.execute(f"SELECT COUNT(*) FROM cloud_objects WHERE {where}", parameters).fetchone()
            rows = c.execute(f"SELECT {_CLOUD_COLUMNS} FROM cloud_objects WHERE {where} ORDER BY start, bucket, key "
                             "LIMIT ? OFFSET ?", (*parameters, limit, offset)).fetchall()
            return CloudPage(int(total), tuple(CloudObject(*row) for row in rows))

        return await self._run(query)

    async def cloud_usage(self, dev_id: str) -> tuple[int, int]:
        def query(c: sqlite3.Connection) -> tuple[int, int]:
            row = c.execute("SELECT bytes, objects FROM cloud_usage WHERE dev_id = ?", (dev_id,)).fetchone()
            return (int(row[0]), int(row[1])) if row else (0, 0)

        return await self._run(query)

    async def account_cloud_usage(self, account: str) -> int:
        def query(c: sqlite3.Connection) -> int:
            (total,) = c.execute(
                "SELECT COALESCE(SUM(u.bytes), 0) FROM device_bindings AS b JOIN cloud_usage AS u ON u.dev_id = b.dev_id "
                "WHERE b.account = ? AND b.share_flag = 0", (account,)).fetchone()
            return int(total)

        return await self._run(query)

    async def oldest_cloud_objects(self, dev_id: str, limit: int) -> list[CloudObject]:
        def query(c: sqlite3.Connection) -> list[CloudObject]:
            return [CloudObject(*row) for row in c.execute(
                f"SELECT {_CLOUD_COLUMNS} FROM cloud_objects WHERE dev_id = ? ORDER BY start, key LIMIT ?",
                (dev_id, limit))]

        return await self._run(query)

    async def expired_cloud_objects(self, now: float, default_days: float, limit: int) -> list[CloudObject]:
        def query(c: sqlite3.Connection) -> list[CloudObject]:
            found: list[CloudObject] = []
            # Accounts with their own retention: their devices' entries, one account at a time.
            for account, days in c.execute("SELECT account, cloud_retention_days FROM accounts "
                                           "WHERE cloud_retention_days > 0").fetchall():
                if len(found) >= limit:
                    break
                found += [CloudObject(*row) for row in c.execute(
                    f"SELECT {_CLOUD_COLUMNS} FROM cloud_objects WHERE dev_id IN (SELECT dev_id FROM "
                    "device_bindings WHERE account = ? AND share_flag = 0) AND stored_at < ? ORDER BY stored_at "
                    "LIMIT ?", (account, now - days * 86400.0, limit - len(found)))]
            # Everyone else (and devices nobody owns): the default, along the stored_at index.
            if default_days > 0 and len(found) < limit:
                found += [CloudObject(*row) for row in c.execute(
                    f"SELECT {_CLOUD_COLUMNS} FROM cloud_objects AS o WHERE stored_at < ? AND NOT EXISTS ("
                    "SELECT 1 FROM device_bindings AS b JOIN accounts AS a ON a.account = b.account "
                    "WHERE b.dev_id = o.dev_id AND b.share_flag = 0 AND a.cloud_retention_days IS NOT NULL) "
                    "ORDER BY stored_at LIMIT ?", (now - default_days * 86400.0, limit - len(found)))]
            return found

        return await self._run(query)

    async def cloud_objects_after(self, bucket: str, start_after: str, limit: int) -> list[CloudObject]:
        def query(c: sqlite3.Connection) -> list[CloudObject]:
            return [CloudObject(*row) for row in c.execute(
                f"SELECT {_CLOUD_COLUMNS} FROM cloud_objects WHERE bucket = ? AND key > ? ORDER BY key LIMIT ?",
                (bucket, start_after, limit))]

        return await self._run(query)

    async def device_owner(self, dev_id: str) -> str | None:
        def query(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT account FROM device_bindings WHERE dev_id = ? AND share_flag = 0",
                            (dev_id,)).fetchone()
            return str(row[0]) if row else None

        return await self._run(query)

    async def set_cloud_retention(self, account: str, days: float | None) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            return c.execute("UPDATE accounts SET cloud_retention_days = ? WHERE account = ?",
                             (days, account)).rowcount == 1

        return await self._run(write)

    async def get_cloud_retention(self, account: str) -> float | None:
        def read(c: sqlite3.Connection) -> float | None:
            row = c.execute("SELECT cloud_retention_days FROM accounts WHERE account = ?", (account,)).fetchone()
            return float(row[0]) if row and row[0] is not None else None

        return await self._run(read)

    async def add_cloud_credential(self, credential: CloudCredential) -> None:
        await self._run(_execute, f"INSERT INTO cloud_credentials ({_CREDENTIAL_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                        (credential.access_key, credential.dev_id, credential.secret, credential.created_at,
                         credential.revoked_at))

    async def get_cloud_credential(self, access_key: str) -> CloudCredential | None:
        def query(c: sqlite3.Connection) -> CloudCredential | None:
            row = c.execute(f"SELECT {_CREDENTIAL_COLUMNS} FROM cloud_credentials WHERE access_key = ?",
                            (access_key,)).fetchone()
            return CloudCredential(*row) if row else None

        return await self._run(query)

    async def device_cloud_credential(self, dev_id: str) -> CloudCredential | None:
        def query(c: sqlite3.Connection) -> CloudCredential | None:
            row = c.execute(f"SELECT {_CREDENTIAL_COLUMNS} FROM cloud_credentials WHERE dev_id = ? AND "
                            "revoked_at IS NULL ORDER BY created_at DESC, rowid DESC LIMIT 1", (dev_id,)).fetchone()
            return CloudCredential(*row) if row else None

        return await self._run(query)

    async def revoke_cloud_credentials(self, dev_id: str, when: float, keep: str = "") -> int:
        def write(c: sqlite3.Connection) -> int:
            return c.execute("UPDATE cloud_credentials SET revoked_at = ? WHERE dev_id = ? AND revoked_at IS NULL "
                             "AND access_key != ?", (when, dev_id, keep)).rowcount

        return await self._run(write)


def _move_usage(c: sqlite3.Connection, dev_id: str, size: int, count: int) -> None:
    c.execute("INSERT INTO cloud_usage (dev_id, bytes, objects) VALUES (?, ?, ?) ON CONFLICT(dev_id) DO UPDATE SET "
              "bytes = bytes + excluded.bytes, objects = objects + excluded.objects", (dev_id, size, count))


_RETENTION_TABLES = {"exceptions": ("device_exceptions", "received_at"),
                     "pictures": ("device_pictures", "received_at"), "audit": ("audit_log", "at")}


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error: nothing half-written."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")


def _digest_columns(digest: DigestSecret | None) -> tuple[str | None, str | None, str | None]:
    return (digest.realm, digest.ha1, digest.ha1_sha256) if digest is not None else (None, None, None)


def _insert_device(c: sqlite3.Connection, device: Device) -> bool:
    cursor = c.execute(
        "INSERT INTO devices (dev_id, dev_key, manufacturer_no, model, dev_type, source, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(dev_id) DO NOTHING",
        (device.dev_id, device.dev_key, device.manufacturer_no, device.model, device.dev_type,
         device.source, device.created_at),
    )
    return cursor.rowcount == 1


def _mark_registered(c: sqlite3.Connection, dev_id: str, when: float) -> None:
    c.execute("UPDATE devices SET registered_at = ? WHERE dev_id = ?", (when, dev_id))


def _execute(c: sqlite3.Connection, sql: str, parameters: tuple[Any, ...]) -> None:
    c.execute(sql, parameters)


def _insert(c: sqlite3.Connection, sql: str, parameters: tuple[Any, ...]) -> int:
    return int(c.execute(sql, parameters).lastrowid or 0)


def _upsert_addresses(c: sqlite3.Connection, dev_id: str, a: DeviceAddresses) -> None:
    c.execute(
        f"INSERT INTO device_addresses (dev_id, {_ADDRESS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(dev_id) DO UPDATE SET public_ip = excluded.public_ip, public_port = excluded.public_port, "
        "upnp_ip = excluded.upnp_ip, rtsp_upnp_port = excluded.rtsp_upnp_port, local_ip = excluded.local_ip, "
        "rtsp_local_port = excluded.rtsp_local_port, turn_relay_ip = excluded.turn_relay_ip, "
        "rtsp_turn_relay_port = excluded.rtsp_turn_relay_port, net_type = excluded.net_type",
        (dev_id, a.public_ip, a.public_port, a.upnp_ip, a.rtsp_upnp_port, a.local_ip, a.rtsp_local_port,
         a.turn_relay_ip, a.rtsp_turn_relay_port, a.net_type),
    )
