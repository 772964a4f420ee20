"""Versioned schema of the SQLite store.

Each entry of :data:`MIGRATIONS` moves the schema one version up and is applied in
one transaction together with ``PRAGMA user_version``, so a crash leaves the
database at an old version or the new one, never in between.  Migrations run at
start-up, before the reactor serves anyone, which is why they may be synchronous.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: devices, their addresses and abilities, exceptions, pictures, tokens, province assignment.
    """
    CREATE TABLE devices (
        dev_id TEXT PRIMARY KEY,
        dev_key TEXT NOT NULL,
        manufacturer_no TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        dev_type INTEGER NOT NULL DEFAULT 1,
        source TEXT NOT NULL DEFAULT 'import',
        created_at REAL NOT NULL,
        registered_at REAL,
        login_at REAL,
        dev_ver TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE device_addresses (
        dev_id TEXT PRIMARY KEY REFERENCES devices(dev_id) ON DELETE CASCADE,
        public_ip TEXT NOT NULL DEFAULT '',
        public_port INTEGER NOT NULL DEFAULT 0,
        upnp_ip TEXT NOT NULL DEFAULT '',
        rtsp_upnp_port INTEGER NOT NULL DEFAULT 0,
        local_ip TEXT NOT NULL DEFAULT '',
        rtsp_local_port INTEGER NOT NULL DEFAULT 0,
        turn_relay_ip TEXT NOT NULL DEFAULT '',
        rtsp_turn_relay_port INTEGER NOT NULL DEFAULT 0,
        net_type INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE device_abilities (
        dev_id TEXT PRIMARY KEY REFERENCES devices(dev_id) ON DELETE CASCADE,
        channel_num INTEGER NOT NULL DEFAULT 0,
        ptz_flag INTEGER NOT NULL DEFAULT 0,
        estore_flag INTEGER NOT NULL DEFAULT 0,
        local_store_flag INTEGER NOT NULL DEFAULT 0,
        xml BLOB NOT NULL DEFAULT x''
    );
    CREATE TABLE device_exceptions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dev_id TEXT NOT NULL,
        channel_no INTEGER NOT NULL,
        exception_type INTEGER NOT NULL,
        description TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX device_exceptions_dev ON device_exceptions(dev_id, received_at);
    CREATE TABLE device_pictures (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dev_id TEXT NOT NULL,
        channel_no INTEGER NOT NULL,
        file_name TEXT NOT NULL,
        shot_time TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX device_pictures_dev ON device_pictures(dev_id, received_at);
    CREATE TABLE hash_tokens (
        token TEXT PRIMARY KEY,
        dev_id TEXT NOT NULL,
        channel_no INTEGER NOT NULL,
        stream_type INTEGER NOT NULL DEFAULT 0,
        file_name TEXT NOT NULL DEFAULT '',
        account TEXT NOT NULL DEFAULT '',
        expires_at REAL NOT NULL
    );
    CREATE INDEX hash_tokens_expiry ON hash_tokens(expires_at);
    CREATE TABLE province_assignments (
        dev_id TEXT PRIMARY KEY,
        province_url TEXT NOT NULL,
        assigned_at REAL NOT NULL
    );
    """,
    # 2: client accounts (§8.2), device bindings (§8.6/§8.7, ShareFlag), the audit log of the client API.
    # Login sessions, SMS codes and failed-login counters live in memory (see docs/protocol.md).
    """
    CREATE TABLE accounts (
        account TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        password_changed_at REAL NOT NULL
    );
    CREATE TABLE device_bindings (
        account TEXT NOT NULL REFERENCES accounts(account) ON DELETE CASCADE,
        dev_id TEXT NOT NULL REFERENCES devices(dev_id) ON DELETE CASCADE,
        share_flag INTEGER NOT NULL DEFAULT 0,
        name TEXT NOT NULL DEFAULT '',
        bound_at REAL NOT NULL,
        PRIMARY KEY (account, dev_id)
    );
    CREATE UNIQUE INDEX device_bindings_owner ON device_bindings(dev_id) WHERE share_flag = 0;
    CREATE INDEX device_bindings_dev ON device_bindings(dev_id);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        account TEXT NOT NULL DEFAULT '',
        peer TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL,
        result INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_log_account ON audit_log(account, at);
    """,
    # 3: the group platform's side of §5/§6 (devices seen by /redirect, province address reports,
    # subscribers, which province claimed a device), the province's outbox of §6 notices to the
    # group, and a per-account DevNum (§6.2/§6.3 IpcamNum; NULL: [soap] max_devices_per_account).
    """
    CREATE TABLE group_devices (
        dev_id TEXT PRIMARY KEY,
        dev_key TEXT NOT NULL,
        manufacturer_no TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        dev_type INTEGER NOT NULL DEFAULT 1,
        source TEXT NOT NULL DEFAULT 'redirect',
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE TABLE group_provinces (
        province TEXT PRIMARY KEY,
        cms_ver TEXT NOT NULL DEFAULT '',
        mcu_url TEXT NOT NULL DEFAULT '',
        dev_url TEXT NOT NULL DEFAULT '',
        peer TEXT NOT NULL DEFAULT '',
        reported_at REAL NOT NULL
    );
    CREATE TABLE group_subscribers (
        mobile TEXT PRIMARY KEY,
        province TEXT NOT NULL,
        ipcam_num INTEGER NOT NULL,
        opened_at REAL NOT NULL,
        changed_at REAL NOT NULL
    );
    ALTER TABLE province_assignments ADD COLUMN province TEXT NOT NULL DEFAULT '';
    CREATE TABLE group_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        operation TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL
    );
    ALTER TABLE accounts ADD COLUMN dev_num INTEGER;
    """,
    # 4: the RTSP Digest secret of an account (HA1 = MD5(account:realm:password) and its realm), next
    # to the argon2 hash; NULL until the account signs up, changes its password or logs in with this
    # software, and always NULL with [rtsp] auth = basic or none (docs/protocol.md, Client API item 18).
    """
    ALTER TABLE accounts ADD COLUMN digest_realm TEXT;
    ALTER TABLE accounts ADD COLUMN digest_ha1 TEXT;
    """,
    # 5: the SHA-256 RTSP Digest secret (RFC 7616: SHA-256(account:realm:password)) beside the MD5 one;
    # NULL until the account signs up, changes its password or logs in with this software.
    """
    ALTER TABLE accounts ADD COLUMN digest_ha1_sha256 TEXT;
    """,
    # 6: cloud storage (§7.1, issue 12): the index of stored objects (one row per bucket/key; ``start`` is
    # POSIX seconds of the Beijing device time in the object's name), each device's bytes and objects kept
    # beside it in the same transactions (quotas read one row, never a SUM over millions), the devices'
    # own S3 credentials, and an account's own retention in days (NULL: [cloud] retention_days).
    # The index is clustered by (device, channel, kind, start) (WITHOUT ROWID): "one camera's day" is one
    # contiguous range of pages, read in a few disk reads even when nothing is cached (bench/cloud_index.py);
    # cloud_objects_key is the S3 name (an overwrite replaces its row), cloud_objects_oldest the loop
    # overwrite (a device's earliest files, §7.1.1), cloud_objects_stored the retention purge (by the
    # platform's clock, not the camera's).
    """
    CREATE TABLE cloud_objects (
        dev_id TEXT NOT NULL,
        channel_no INTEGER NOT NULL,
        kind TEXT NOT NULL,
        start REAL NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        duration REAL NOT NULL DEFAULT 0,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL DEFAULT '',
        stored_at REAL NOT NULL,
        source TEXT NOT NULL DEFAULT 's3',
        PRIMARY KEY (dev_id, channel_no, kind, start, bucket, key)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX cloud_objects_key ON cloud_objects(bucket, key);
    CREATE INDEX cloud_objects_oldest ON cloud_objects(dev_id, start);
    CREATE INDEX cloud_objects_stored ON cloud_objects(stored_at);
    CREATE TABLE cloud_usage (
        dev_id TEXT PRIMARY KEY,
        bytes INTEGER NOT NULL DEFAULT 0,
        objects INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE cloud_credentials (
        access_key TEXT PRIMARY KEY,
        dev_id TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX cloud_credentials_dev ON cloud_credentials(dev_id, created_at);
    ALTER TABLE accounts ADD COLUMN cloud_retention_days REAL;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class MigrationError(Exception):
    pass


def connect(path: str) -> sqlite3.Connection:
    """Open *path* the way every connection of the store does (WAL, foreign keys)."""
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    configure(connection)
    return connection


def configure(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=5000")
    # Durability is WAL + synchronous=NORMAL: a committed transaction survives a crash of the
    # process; a power cut may lose the last few, never half of one.  The page cache (default
    # 2 MiB) holds the hot device rows of about 100,000 cameras at 32 MiB; reads of pages not in
    # it go through a 256 MiB memory map instead of read() system calls.
    connection.execute("PRAGMA cache_size=-32768")
    connection.execute("PRAGMA mmap_size=268435456")
    connection.execute("PRAGMA temp_store=MEMORY")


def migrate(connection: sqlite3.Connection) -> tuple[int, int]:
    """Bring the schema up to date; returns (version before, version after)."""
    (before,) = connection.execute("PRAGMA user_version").fetchone()
    if before > SCHEMA_VERSION:
        raise MigrationError(f"database schema version {before} is newer than this software ({SCHEMA_VERSION})")
    for version in range(before, SCHEMA_VERSION):
        script = MIGRATIONS[version]
        # executescript commits first; wrap the script so it is all-or-nothing.
        connection.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version + 1};\nCOMMIT;")
    return before, SCHEMA_VERSION
