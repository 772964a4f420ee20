"""Regression tests of the hardening findings on SMS limits, the CRM, the SMGP link and log volume.

Named after the findings of issue 9 (i9_NN) and issue 14 (i14_NN).
"""

from __future__ import annotations

from typing import Any

from argon2 import PasswordHasher
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from globaleye.accounts import AccountService, AccountSettings, RecordingSmsSender
from globaleye.peerkey import source_address
from globaleye.store.sqlite import SQLiteStore


def inline(function: Any, *args: Any) -> Deferred[Any]:
    return succeed(function(*args))


class SmsLimitTests(TestCase):
    def accounts(self, **settings: Any) -> tuple[AccountService, RecordingSmsSender, Clock]:
        clock = Clock()
        clock.advance(1_700_000_000)
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        sms = RecordingSmsSender()
        service = AccountService(store, clock, AccountSettings(**settings), sms_sender=sms,
                                 hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
                                 run_in_thread=inline)
        return service, sms, clock

    async def test_i9_10_sms_interval_outlives_a_burnt_code(self) -> None:
        """Burning a code with wrong entries does not reset the number's interval or caps."""
        accounts, sms, clock = self.accounts(sms_interval=60, sms_code_attempts=5, sms_peer_limit=1000,
                                             sms_number_hourly=5, sms_number_daily=10)
        mobile = "13300000001"
        sent = 0
        for i in range(10):  # the attack: ask, burn the code with 5 wrong entries, ask again
            if await accounts.request_sms_code(mobile, 0, f"192.0.2.{i + 1}:5000") == 0:
                sent += 1
            for _ in range(5):
                self.assertEqual(await accounts.register(mobile, "secret1", "000000", "192.0.2.1:1"), 2)
            clock.advance(0.05)
        self.assertEqual(sent, 1, "one code per sms_interval, however the previous code ended")
        self.assertEqual(len(sms.sent), 1)
        # After the interval, one more; the hourly cap then holds even with the interval waited out.
        for _ in range(10):
            clock.advance(61)
            if await accounts.request_sms_code(mobile, 0, "192.0.2.50:5000") == 0:
                sent += 1
        self.assertEqual(sent, 5, "sms_number_hourly")
        for _ in range(30):
            clock.advance(600)
            if await accounts.request_sms_code(mobile, 0, "192.0.2.50:5000") == 0:
                sent += 1
        self.assertEqual(sent, 10, "sms_number_daily")
        clock.advance(86400)
        self.assertEqual(await accounts.request_sms_code(mobile, 0, "192.0.2.50:5000"), 0)

    async def test_i14_07_sms_peer_limit_by_ipv6_64(self) -> None:
        """8 addresses of one /64 share sms_peer_limit; another /64 and IPv4-mapped IPv4 count apart."""
        accounts, sms, clock = self.accounts(sms_peer_limit=3)
        given = [await accounts.request_sms_code(f"1330000001{i}", 0, f"2001:db8:1:2::{i + 1}:40000")
                 for i in range(8)]
        self.assertEqual(given, [0, 0, 0, 2, 2, 2, 2, 2])
        self.assertEqual(await accounts.request_sms_code("13300000020", 0, "2001:db8:1:3::1:40000"), 0)
        for i in range(3):
            self.assertEqual(await accounts.request_sms_code(f"1330000003{i}", 0, f"::ffff:192.0.2.7:{i + 1}"), 0)
        self.assertEqual(await accounts.request_sms_code("13300000040", 0, "192.0.2.7:9"), 2,
                         "IPv4-mapped IPv6 counts as the IPv4 address")
        self.assertEqual(source_address("[2001:db8:1:2:3:4:5:6]:5000"), "2001:db8:1:2::/64")
        self.assertEqual(source_address("2001:db8:1:2:3:4:5:6:5000"), "2001:db8:1:2::/64")
        self.assertEqual(source_address("::ffff:192.0.2.1:5000"), "192.0.2.1")
        self.assertEqual(source_address("192.0.2.1:5000"), "192.0.2.1")
