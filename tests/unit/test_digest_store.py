"""RTSP Digest secrets kept by the accounts service, in-process HashTokens, and store migration 4.

Account rules on a task.Clock with argon2 run inline (as in test_soap_accounts); the
migration tests build real SQLite files at an older schema version and open them with
:class:`SQLiteStore`, which upgrades them in place.
"""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

from argon2 import PasswordHasher
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from globaleye.proxy import auth
from globaleye.store import Account, Binding, Device, DigestSecret
from globaleye.store.migrations import MIGRATIONS, SCHEMA_VERSION, MigrationError, connect, migrate
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import AccountService, AccountSettings, RecordingSmsSender

PEER = "192.0.2.1:5000"
MOBILE, PASSWORD, NEW_PASSWORD = "13300000001", "secret1", "secret2"
REALM = "GlobalEye"
HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def inline(function: Any, *args: Any) -> Deferred[Any]:
    return succeed(function(*args))


def accounts_on(store: SQLiteStore, clock: Clock, digest_realm: str = REALM) -> AccountService:
    return AccountService(store, clock, AccountSettings(digest_realm=digest_realm, hashtoken_lifetime=60),
                          sms_sender=RecordingSmsSender(), hasher=HASHER, run_in_thread=inline)


class DigestSecretTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = SQLiteStore(":memory:")
        self.addCleanup(self.store.close)
        self.accounts = accounts_on(self.store, self.clock)

    async def register(self, accounts: AccountService, mobile: str = MOBILE, password: str = PASSWORD) -> None:
        self.assertEqual(await accounts.request_sms_code(mobile, 0, PEER), 0)
        sms = accounts.sms_sender
        assert isinstance(sms, RecordingSmsSender)
        self.assertEqual(await accounts.register(mobile, password, sms.last_code(mobile), PEER), 0)

    async def login(self, password: str = PASSWORD) -> Any:
        outcome = await self.accounts.login(MOBILE, password, "1.0", PEER)
        self.assertEqual(outcome.result, 0)
        return outcome.session

    async def test_sign_up_change_close(self) -> None:
        """HA1 at sign-up, replaced with the argon2 hash at password change, gone at closure."""
        await self.register(self.accounts)
        self.assertEqual(await self.accounts.digest_ha1(MOBILE, REALM), auth.ha1(MOBILE, REALM, PASSWORD))
        self.assertIsNone(await self.accounts.digest_ha1(MOBILE, "Other"), "only the configured realm")
        self.assertIsNone(await self.accounts.digest_ha1("13300000002", REALM), "no such account")
        session = await self.login()
        self.assertEqual(await self.accounts.change_password(session, PASSWORD, NEW_PASSWORD, PEER), 0)
        self.assertEqual(await self.accounts.digest_ha1(MOBILE, REALM), auth.ha1(MOBILE, REALM, NEW_PASSWORD))
        session = await self.login(NEW_PASSWORD)
        self.assertEqual(await self.accounts.close_account(session, PEER), 0)
        self.assertIsNone(await self.accounts.digest_ha1(MOBILE, REALM))
        self.assertIsNone(await self.store.get_digest(MOBILE))

    async def test_backfill_at_login(self) -> None:
        """An account from before migration 4 (no HA1) gets one at its first successful login only."""
        now = self.clock.seconds()
        await self.store.create_account(Account(MOBILE, HASHER.hash(PASSWORD), now, now))
        self.assertIsNone(await self.accounts.digest_ha1(MOBILE, REALM))
        self.assertEqual((await self.accounts.login(MOBILE, "wrong-pw", "1.0", PEER)).result, 2)
        self.assertIsNone(await self.accounts.digest_ha1(MOBILE, REALM), "a wrong password stores nothing")
        await self.login()
        self.assertEqual(await self.accounts.digest_ha1(MOBILE, REALM), auth.ha1(MOBILE, REALM, PASSWORD))

    async def test_realm_change_is_backfilled(self) -> None:
        await self.register(self.accounts)
        renamed = accounts_on(self.store, self.clock, digest_realm="Shop")
        self.assertIsNone(await renamed.digest_ha1(MOBILE, "Shop"), "an HA1 of the old realm is useless")
        self.assertEqual(await renamed.forget_digests(), 1)
        self.assertIsNone(await self.store.get_digest(MOBILE))
        self.assertEqual((await renamed.login(MOBILE, PASSWORD, "1.0", PEER)).result, 0)
        self.assertEqual(await renamed.digest_ha1(MOBILE, "Shop"), auth.ha1(MOBILE, "Shop", PASSWORD))

    async def test_basic_only_keeps_no_ha1(self) -> None:
        """With [rtsp] auth = basic (no digest_realm) nothing is stored, and an old HA1 is cleared."""
        basic = accounts_on(self.store, self.clock, digest_realm="")
        await self.register(basic, "13300000002")
        self.assertIsNone(await self.store.get_digest("13300000002"))
        self.assertIsNone(await basic.digest_ha1("13300000002", ""))
        await self.register(self.accounts)  # stored by a digest configuration
        self.assertIsNotNone(await self.store.get_digest(MOBILE))
        self.assertEqual((await basic.login(MOBILE, PASSWORD, "1.0", PEER)).result, 0)
        self.assertIsNone(await self.store.get_digest(MOBILE), "a login under basic clears it")
        await self.login()
        self.assertIsNotNone(await self.store.get_digest(MOBILE))
        self.assertEqual(await basic.forget_digests(), 1, "at start under basic: every HA1 goes")
        self.assertIsNone(await self.store.get_digest(MOBILE))

    async def test_set_digest_only_for_the_checked_password(self) -> None:
        """The backfill cannot write an HA1 of a password that was changed meanwhile."""
        await self.register(self.accounts)
        record = await self.store.get_account(MOBILE)
        assert record is not None
        stale = DigestSecret(REALM, auth.ha1(MOBILE, REALM, "older-pw"))
        self.assertFalse(await self.store.set_digest(MOBILE, "not-the-hash", stale))
        self.assertTrue(await self.store.set_digest(MOBILE, record.password_hash, stale))
        self.assertEqual(await self.store.get_digest(MOBILE), stale)
        self.assertNotIn(stale.ha1, repr(stale), "the secret stays out of logs")

    async def test_authenticator_digest_and_basic(self) -> None:
        """The proxy's authenticator: Digest from digest_ha1 (no login observed), Basic from argon2."""
        await self.register(self.accounts)
        nonces = auth.Nonces(b"k" * 32)
        authenticator = auth.AccountAuthenticator(self.accounts, ("digest", "basic"), REALM, nonces)
        nonce, uri = nonces.issue(), "rtsp://p/live/81100000001/0/1"

        def digest(password: str, user: str = MOBILE) -> str:
            response = auth.md5_hex(f"{auth.ha1(user, REALM, password)}:{nonce}:{auth.md5_hex(f'DESCRIBE:{uri}')}")
            return (f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
                    f'response="{response}"')

        self.assertEqual((await authenticator.check("DESCRIBE", digest(PASSWORD))).account, MOBILE)
        self.assertIsNone((await authenticator.check("DESCRIBE", digest("wrong-pw"))).account)
        self.assertIsNone((await authenticator.check("DESCRIBE", digest(PASSWORD, "13300000002"))).account)
        basic = "Basic " + base64.b64encode(f"{MOBILE}:{PASSWORD}".encode()).decode()
        self.assertEqual((await authenticator.check("DESCRIBE", basic)).account, MOBILE)
        self.assertFalse(hasattr(auth, "HA1Cache"), "the login-wrapping workaround is gone")

    async def test_issue_token_for(self) -> None:
        """In-process tokens: random, stored with the account, hashtoken_lifetime, single use."""
        live = await self.accounts.issue_token_for(MOBILE, "81100000001", 0, 1)
        again = await self.accounts.issue_token_for(MOBILE, "81100000001", 0, 1)
        playback = await self.accounts.issue_token_for(MOBILE, "81100000001", 0, file_name="a_0_1.ts")
        self.assertRegex(live, "^[0-9a-f]{32}$")
        self.assertNotEqual(live, again)
        taken = await self.store.consume_token(live, self.clock.seconds() + 59)
        assert taken is not None
        self.assertEqual((taken.dev_id, taken.channel_no, taken.stream_type, taken.file_name, taken.account,
                          taken.expires_at), ("81100000001", 0, 1, "", MOBILE, self.clock.seconds() + 60))
        self.assertIsNone(await self.store.consume_token(live, self.clock.seconds()), "single use")
        taken = await self.store.consume_token(playback, self.clock.seconds())
        assert taken is not None
        self.assertEqual((taken.stream_type, taken.file_name), (0, "a_0_1.ts"))
        self.assertIsNone(await self.store.consume_token(again, self.clock.seconds() + 61), "expired")


def database_at(path: str, version: int) -> None:
    """A database file as software of schema *version* left it."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for index, script in enumerate(MIGRATIONS[:version]):
            connection.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {index + 1};\nCOMMIT;")
    finally:
        connection.close()


class MigrationTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)

    async def test_v3_database_upgrades_in_place(self) -> None:
        """A v3 file with an account, a device and a binding: v4 after opening, nothing lost, HA1 on login."""
        self.assertGreaterEqual(SCHEMA_VERSION, 5)
        path = self.mktemp()
        database_at(path, 3)
        connection = sqlite3.connect(path, isolation_level=None)
        password_hash = HASHER.hash(PASSWORD)
        connection.execute("INSERT INTO accounts (account, password_hash, created_at, password_changed_at, dev_num) "
                           "VALUES (?, ?, 1.0, 2.0, 7)", (MOBILE, password_hash))
        connection.execute("INSERT INTO devices (dev_id, dev_key, created_at) VALUES ('81100000001', 'k', 1.0)")
        connection.execute("INSERT INTO device_bindings (account, dev_id, bound_at) "
                           "VALUES (?, '81100000001', 3.0)", (MOBILE,))
        connection.close()

        store = SQLiteStore(path)
        self.addCleanup(store.close)
        check = connect(path)
        self.addCleanup(check.close)
        self.assertEqual(check.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        columns = [row[1] for row in check.execute("PRAGMA table_info(accounts)")]
        self.assertLessEqual({"digest_realm", "digest_ha1", "digest_ha1_sha256"}, set(columns))
        self.assertEqual(await store.get_account(MOBILE), Account(MOBILE, password_hash, 1.0, 2.0, 7))
        self.assertEqual(await store.list_bindings(MOBILE), [Binding(MOBILE, "81100000001", 0, "", 3.0)])
        self.assertEqual(await store.get_device("81100000001"), Device("81100000001", "k", created_at=1.0))
        self.assertIsNone(await store.get_digest(MOBILE), "no HA1 can be derived from argon2")

        accounts = accounts_on(store, self.clock)
        self.assertIsNone(await accounts.digest_ha1(MOBILE, REALM))
        self.assertEqual((await accounts.login(MOBILE, PASSWORD, "1.0", PEER)).result, 0)
        self.assertEqual(await accounts.digest_ha1(MOBILE, REALM), auth.ha1(MOBILE, REALM, PASSWORD))

    def test_every_older_version_upgrades(self) -> None:
        for version in range(SCHEMA_VERSION):
            path = self.mktemp()
            database_at(path, version)
            connection = connect(path)
            try:
                self.assertEqual(migrate(connection), (version, SCHEMA_VERSION))
                self.assertEqual(migrate(connection), (SCHEMA_VERSION, SCHEMA_VERSION), "idempotent")
                connection.execute("INSERT INTO accounts (account, password_hash, created_at, password_changed_at, "
                                   "digest_realm, digest_ha1) VALUES ('13300000001', 'h', 0, 0, 'R', 'x')")
            finally:
                connection.close()

    def test_newer_database_refused(self) -> None:
        path = self.mktemp()
        database_at(path, SCHEMA_VERSION)
        connection = connect(path)
        try:
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
            self.assertRaises(MigrationError, migrate, connection)
        finally:
            connection.close()
