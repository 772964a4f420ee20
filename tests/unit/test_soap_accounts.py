"""Account rules on a task.Clock: SMS codes, lockout, session idle expiry, HashTokens."""

from __future__ import annotations

from typing import Any

from argon2 import PasswordHasher
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from globaleye.guard.keyguard import KeyGuard, KeyGuardSettings
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import (
    AccountService,
    AccountSettings,
    RateLimiter,
    RecordingSmsSender,
    parse_version,
)

PEER = "192.0.2.1:5000"


def inline(function: Any, *args: Any) -> Deferred[Any]:
    """Run 'in a thread' synchronously: keeps the Clock in charge of every wait."""
    return succeed(function(*args))


class Refusing:
    async def may_open(self, mobile: str) -> bool:
        return mobile != "13300000666"


class AccountRuleTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = SQLiteStore(":memory:")
        self.addCleanup(self.store.close)
        self.sms = RecordingSmsSender()
        self.accounts = AccountService(
            self.store, self.clock, AccountSettings(session_idle_timeout=60, sms_interval=30, sms_peer_limit=3,
                                                    sms_code_attempts=2, login_slowdown_after=2,
                                                    login_lockout_after=4, login_lockout=100,
                                                    hashtoken_lifetime=60),
            sms_sender=self.sms, hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
            run_in_thread=inline, crm=Refusing(),
            # These rules lock an account from one address (PEER); by default one source adds at most
            # [keyguard] pair_free failures to an account's count (tests/integration/test_hardening_keys.py).
            guard=KeyGuard(self.clock, KeyGuardSettings(pair_free=100)))

    async def registered(self, mobile: str = "13300000001", password: str = "secret1") -> None:
        self.assertEqual(await self.accounts.request_sms_code(mobile, 0, PEER), 0)
        self.assertEqual(await self.accounts.register(mobile, password, self.sms.last_code(mobile), PEER), 0)

    async def test_sms_code_rules(self) -> None:
        self.assertEqual(await self.accounts.request_sms_code("13300000001", 0, PEER), 0)
        self.assertEqual(await self.accounts.request_sms_code("13300000001", 0, PEER), 2, "too soon")
        self.assertEqual(await self.accounts.request_sms_code("13300000002", 1, PEER), 2, "Type must be 0")
        self.assertEqual(await self.accounts.request_sms_code("2330000000", 0, PEER), 2, "not a mobile")
        code = self.sms.last_code("13300000001")
        # Two wrong entries void the code, even the right one afterwards fails.
        self.assertEqual(await self.accounts.register("13300000001", "secret1", "999999x", PEER), 2)
        self.assertEqual(await self.accounts.register("13300000001", "secret1", "999999y", PEER), 2)
        self.assertEqual(await self.accounts.register("13300000001", "secret1", code, PEER), 2)
        # Expiry.
        self.clock.advance(31)
        self.assertEqual(await self.accounts.request_sms_code("13300000001", 0, PEER), 0)
        code = self.sms.last_code("13300000001")
        self.clock.advance(301)
        self.assertEqual(await self.accounts.register("13300000001", "secret1", code, PEER), 2)
        # Per source address: 3 an hour (the fourth code asked from the same host is refused).
        self.assertEqual(await self.accounts.request_sms_code("13300000004", 0, "192.0.2.1:7000"), 0)
        self.assertEqual(await self.accounts.request_sms_code("13300000003", 0, "192.0.2.1:6000"), 2)
        self.assertEqual(await self.accounts.request_sms_code("13300000003", 0, "192.0.2.9:6000"), 0)

    async def test_registration_rules(self) -> None:
        await self.accounts.request_sms_code("13300000666", 0, PEER)
        self.assertEqual(await self.accounts.register("13300000666", "secret1", self.sms.last_code("13300000666"),
                                                      PEER), 3, "the CRM refuses")
        self.clock.advance(31)
        await self.accounts.request_sms_code("13300000001", 0, "192.0.2.2:1")
        self.assertEqual(await self.accounts.register("13300000001", "short", self.sms.last_code("13300000001"),
                                                      PEER), 3)
        self.clock.advance(31)
        await self.registered()
        account = await self.store.get_account("13300000001")
        assert account is not None
        self.assertTrue(account.password_hash.startswith("$argon2id$"))
        self.assertNotIn("secret1", account.password_hash)

    async def test_lockout(self) -> None:
        await self.registered()
        for _ in range(2):
            self.assertEqual((await self.accounts.login("13300000001", "bad", "1.0", PEER)).result, 2)
        # From now on every attempt waits first: 1 s, then 2 s.
        attempt = Deferred.fromCoroutine(self.accounts.login("13300000001", "bad", "1.0", PEER))
        self.assertNoResult(attempt)
        self.clock.advance(1)
        self.assertEqual((await attempt).result, 2)
        attempt = Deferred.fromCoroutine(self.accounts.login("13300000001", "bad", "1.0", PEER))
        self.clock.advance(1)
        self.assertNoResult(attempt)
        self.clock.advance(1)
        self.assertEqual((await attempt).result, 2)
        # Locked: even the right password is refused, until the lock ends.
        self.assertEqual((await self.accounts.login("13300000001", "secret1", "1.0", PEER)).result, 2)
        self.clock.advance(101)
        outcome = await self.accounts.login("13300000001", "secret1", "1.0", PEER)
        self.assertEqual(outcome.result, 0)
        audit = [(r.action, r.result, r.peer) for r in await self.store.list_audit("13300000001")]
        self.assertIn(("login", 2, PEER), audit)

    async def test_sessions(self) -> None:
        await self.registered()
        self.assertEqual((await self.accounts.login("13300000001", "secret1", "0.9", PEER)).result, 3)
        self.assertEqual((await self.accounts.login("13300000001", "secret1", "x", PEER)).result, 3)
        self.assertEqual((await self.accounts.login("13300000009", "secret1", "1.0", PEER)).result, 1)
        session = (await self.accounts.login("13300000001", "secret1", "1.0", PEER)).session
        assert session is not None
        self.assertIsNone(self.accounts.authenticate("13300000002", session.token))
        self.clock.advance(59)
        self.assertIs(self.accounts.authenticate("13300000001", session.token), session)
        self.clock.advance(59)
        self.assertIs(self.accounts.authenticate("13300000001", session.token), session, "use restarts idle time")
        self.clock.advance(61)
        self.assertIsNone(self.accounts.authenticate("13300000001", session.token))
        self.assertEqual(self.accounts.sessions, {})

    async def test_hash_tokens(self) -> None:
        await self.registered()
        session = (await self.accounts.login("13300000001", "secret1", "1.0", PEER)).session
        assert session is not None
        first = await self.accounts.issue_token(session, "81100000001", 0, 1)
        second = await self.accounts.issue_token(session, "81100000001", 0, 1)
        self.assertRegex(first, "^[0-9a-f]{32}$")
        self.assertNotEqual(first, second)
        taken = await self.store.consume_token(first, self.clock.seconds() + 59)
        assert taken is not None
        self.assertEqual((taken.dev_id, taken.channel_no, taken.stream_type, taken.account),
                         ("81100000001", 0, 1, "13300000001"))
        self.assertIsNone(await self.store.consume_token(first, self.clock.seconds()), "single use")
        self.assertIsNone(await self.store.consume_token(second, self.clock.seconds() + 61), "expired")

    def test_rate_limiter_and_versions(self) -> None:
        limiter = RateLimiter(self.clock, 2, 10)
        self.assertEqual([limiter.allow("a") for _ in range(3)], [True, True, False])
        self.clock.advance(10)
        self.assertTrue(limiter.allow("a"))
        self.assertEqual(parse_version("1.10"), (1, 10))
        self.assertGreater(parse_version("1.10"), parse_version("1.9"))
        self.assertIsNone(parse_version("1.x"))
