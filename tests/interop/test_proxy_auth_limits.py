"""Guessing limits at the RTSP proxy: the account lockout shared with SOAP logins, and the per-address limit.

Unit tests drive the real :class:`~globaleye.proxy.server.RtspProxyProtocol` over a
``StringTransport`` with the real :class:`~globaleye.users.accounts.AccountService` on a real SQLite
store; every limit's time is a ``task.Clock`` (argon2 runs inline, the store's thread is real,
so the tests spin the real reactor only to wait for the store).  A camera that is "offline"
makes an authenticated DESCRIBE end in 503, so the answer tells apart: 401 (not
authenticated), 403 (this address is refused) and 503 (authenticated).

The end-to-end tests run ffprobe against the platform's proxy role on loopback (the harness of
tests/interop/test_proxy.py) with a wrong password until the account locks.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock, deferLater
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from globaleye.guard.keyguard import KeyGuard, KeyGuardSettings
from globaleye.media.rtsp.message import RtspResponse
from globaleye.platform.config import parse_config
from globaleye.proxy import auth
from globaleye.proxy.auth import AccountAuthenticator, source_address
from globaleye.proxy.server import RtspProxyFactory
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import (
    AccountService,
    AccountSettings,
    RateLimiter,
    RecordingSmsSender,
)
from tests.util import (
    HASHER,
    RTSP_REALM,
    VIEWER_MOBILE,
    VIEWER_PASSWORD,
    VIEWER_URI,
    OfflineCameras,
    Viewer,
    digest,
    inline,
)

REALM, MOBILE, PASSWORD, URI = RTSP_REALM, VIEWER_MOBILE, VIEWER_PASSWORD, VIEWER_URI
OTHER = "13300000002"
SOAP_PEER = "198.51.100.9:4000"
SLOWDOWN_AFTER, LOCKOUT_AFTER, LOCKOUT = 3, 5, 100.0


@implementer(ILogObserver)
class LogLines:
    """Every log event, formatted."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.lines.append(formatEvent(event))


def nonce_of(response: RtspResponse) -> str:
    challenge = response.headers.get("WWW-Authenticate") or ""
    m = re.search(r'nonce="([^"]+)"', challenge)
    assert m is not None, challenge
    return m.group(1)


def basic(password: str = PASSWORD, user: str = MOBILE) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class ProxyAuthLimitTests(TestCase):
    """The proxy's authentication against real accounts, with every limit on a task.Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = SQLiteStore(":memory:")
        self.addCleanup(self.store.close)
        self.accounts = AccountService(
            self.store, self.clock,
            AccountSettings(login_slowdown_after=SLOWDOWN_AFTER, login_lockout_after=LOCKOUT_AFTER,
                            login_lockout=LOCKOUT, digest_realm=REALM, sms_peer_limit=100),
            sms_sender=RecordingSmsSender(), hasher=HASHER, run_in_thread=inline,
            # These tests lock the account from one address; by default one source adds at most
            # [keyguard] pair_free failures to an account's count (tests/integration/test_hardening_keys.py).
            guard=KeyGuard(self.clock, KeyGuardSettings(pair_free=100)))
        self.proxy()
        observer = LogLines()
        self.events = observer.lines
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        globalLogPublisher.addObserver(observer)

    def proxy(self, schemes: tuple[str, ...] = ("digest",), peer_limit: int = 20, peer_window: float = 300.0,
              max_peers: int = 10_000) -> None:
        self.auth = AccountAuthenticator(self.accounts, schemes, REALM, clock=self.clock, peer_limit=peer_limit,
                                         peer_window=peer_window, max_peers=max_peers)
        self.factory = RtspProxyFactory(OfflineCameras(), self.auth, self.clock)  # type: ignore[arg-type]

    async def register(self, mobile: str = MOBILE, password: str = PASSWORD) -> None:
        sms = self.accounts.sms_sender
        assert isinstance(sms, RecordingSmsSender)
        self.assertEqual(await self.accounts.request_sms_code(mobile, 0, SOAP_PEER), 0)
        self.assertEqual(await self.accounts.register(mobile, password, sms.last_code(mobile), SOAP_PEER), 0)

    async def nonce(self, viewer: Viewer) -> str:
        """A Digest player's first request: no credentials, 401 with the challenge."""
        response = await viewer.ask()
        self.assertEqual(response.code, 401)
        return nonce_of(response)

    async def wrong_digests(self, viewer: Viewer, n: int, user: str = MOBILE) -> None:
        nonce = await self.nonce(viewer)
        for _ in range(n):
            self.assertEqual((await viewer.ask(digest(nonce, "wrong-pw", user))).code, 401)

    def failures(self, account: str = MOBILE) -> int:
        entry = self.accounts._failures.get(account)
        return entry.count if entry is not None else 0

    async def audit(self, action: str = "rtsp-auth") -> list[tuple[int, str]]:
        """*action*'s audit records of MOBILE, oldest first."""
        return [(r.result, r.detail) for r in reversed(await self.store.list_audit(MOBILE)) if r.action == action]

    # -- what does not count

    async def test_first_request_without_credentials_does_not_count(self) -> None:
        """Every Digest player's first request has no Authorization: 401 and a challenge, never a failure,
        however often (more often than the per-address limit here)."""
        await self.register()
        self.proxy(peer_limit=3)
        viewer = Viewer(self.factory, "192.0.2.10")
        for _ in range(10):
            response = await viewer.ask()
            self.assertEqual(response.code, 401)
            self.assertIn("Digest", response.headers.get("WWW-Authenticate") or "")
        self.assertFalse(viewer.closed)
        self.assertEqual((self.failures(), len(self.auth.peers or ()), self.factory.auth_failures), (0, 0, 0))
        self.assertEqual(await self.audit(), [])
        self.assertEqual((await viewer.ask(digest(nonce_of(response)))).code, 503, "authenticated")

    async def test_stale_nonce_neither_counts_nor_clears(self) -> None:
        """The right password over a stale nonce: 401 stale=true, not a failure, and no proof either (it may
        be a replay), so it does not clear the count.  A wrong one over a stale nonce is a failure."""
        await self.register()
        viewer = Viewer(self.factory, "192.0.2.11")
        old = await self.nonce(viewer)
        self.assertEqual((await viewer.ask(digest(old, "wrong-pw"))).code, 401)
        self.assertEqual(self.failures(), 1)
        self.clock.advance(auth.NONCE_LIFETIME + 1)
        for _ in range(LOCKOUT_AFTER + 2):
            response = await viewer.ask(digest(old))
            self.assertEqual(response.code, 401)
            self.assertIn('stale="true"', response.headers.get("WWW-Authenticate") or "")
        self.assertEqual(self.failures(), 1, "stale: not counted, not cleared")
        self.assertEqual(self.factory.auth_failures, 1)
        self.assertEqual((await viewer.ask(digest(old, "wrong-pw"))).code, 401)
        self.assertEqual(self.failures(), 2, "a wrong password is a failure whatever the nonce's age")
        fresh = nonce_of(response)
        self.assertEqual((await viewer.ask(digest(fresh))).code, 503)
        self.assertEqual(self.failures(), 0)

    # -- the account lock, shared with SOAP

    async def test_wrong_digests_lock_the_account_for_soap_too(self) -> None:
        """LOCKOUT_AFTER wrong Digest responses at the proxy: the account is locked at the proxy (401 for the
        right password, logged as locked with the time left) and at SOAP login (Result 2)."""
        await self.register()
        self.accounts.settings = AccountSettings(login_slowdown_after=LOCKOUT_AFTER, login_lockout_after=LOCKOUT_AFTER,
                                                 login_lockout=LOCKOUT, digest_realm=REALM)  # no slow-down here
        viewer = Viewer(self.factory, "192.0.2.12")
        await self.wrong_digests(viewer, LOCKOUT_AFTER)
        self.assertEqual(self.failures(), LOCKOUT_AFTER)
        self.assertEqual(self.accounts.locked_for(MOBILE), LOCKOUT)
        self.clock.advance(10)
        nonce = await self.nonce(viewer)
        response = await viewer.ask(digest(nonce))
        self.assertEqual(response.code, 401, "the right password, but locked")
        self.assertIn("Digest", response.headers.get("WWW-Authenticate") or "")
        # Audited with the peer and the reason (the proxy's own refusal lines are summarised per source).
        self.assertTrue([e for e in self.events if "rtsp-auth" in e and "192.0.2.12" in e and "locked for 90 s more"
                         in e], self.events)
        outcome = await self.accounts.login(MOBILE, PASSWORD, "1.0", SOAP_PEER)
        self.assertEqual(outcome.result, 2, "SOAP login refused: the same lock")
        self.assertFalse(viewer.closed, "a lock answers 401; the connection stays")
        audit = await self.audit()
        self.assertEqual(audit[:LOCKOUT_AFTER],
                         [(2, f"wrong Digest response ({n} in a row)" + (f", locked for {LOCKOUT:g} s"
                                                                       if n == LOCKOUT_AFTER else ""))
                          for n in range(1, LOCKOUT_AFTER + 1)])
        self.assertEqual(audit[LOCKOUT_AFTER:], [(2, "locked for 90 s more")])
        self.assertIn((2, "locked for 90 s more"), await self.audit("login"))

    async def test_soap_failures_lock_the_proxy(self) -> None:
        """The reverse: wrong SOAP logins lock the account for RTSP players too, until the lock ends."""
        await self.register()
        self.accounts.settings = AccountSettings(login_slowdown_after=LOCKOUT_AFTER, login_lockout_after=LOCKOUT_AFTER,
                                                 login_lockout=LOCKOUT, digest_realm=REALM)
        for _ in range(LOCKOUT_AFTER):
            self.assertEqual((await self.accounts.login(MOBILE, "wrong-pw", "1.0", SOAP_PEER)).result, 2)
        viewer = Viewer(self.factory, "192.0.2.13")
        nonce = await self.nonce(viewer)
        self.assertEqual((await viewer.ask(digest(nonce))).code, 401)
        self.assertEqual(await self.audit(), [(2, f"locked for {LOCKOUT:.0f} s more")])
        # The lock runs out on the reactor clock; then the right password works and the count is gone.
        self.clock.advance(LOCKOUT + 1)
        nonce = await self.nonce(viewer)
        self.assertEqual((await viewer.ask(digest(nonce))).code, 503)
        self.assertEqual(self.failures(), 0)
        self.assertNotIn(MOBILE, self.accounts._failures)

    async def test_lock_expires_with_the_clock(self) -> None:
        await self.register()
        self.accounts.settings = AccountSettings(login_slowdown_after=LOCKOUT_AFTER, login_lockout_after=LOCKOUT_AFTER,
                                                 login_lockout=LOCKOUT, digest_realm=REALM)
        viewer = Viewer(self.factory, "192.0.2.14")
        await self.wrong_digests(viewer, LOCKOUT_AFTER)
        self.clock.advance(LOCKOUT - 1)
        nonce = await self.nonce(viewer)
        self.assertEqual((await viewer.ask(digest(nonce))).code, 401, "one second left")
        self.clock.advance(1)
        self.assertEqual((await viewer.ask(digest(nonce))).code, 503, "the lock is over")
        self.assertEqual(self.failures(), 0)
        # A fresh start: the count begins at zero again (as for a SOAP login after a lock).
        await self.wrong_digests(viewer, LOCKOUT_AFTER - 1)
        self.assertEqual(self.accounts.locked_for(MOBILE), 0)

    async def test_right_password_clears_the_count(self) -> None:
        """Fewer than LOCKOUT_AFTER failures, then the right password (at the proxy or at SOAP login): the count
        is cleared, so as many failures again do not lock."""
        await self.register()
        self.accounts.settings = AccountSettings(login_slowdown_after=LOCKOUT_AFTER, login_lockout_after=LOCKOUT_AFTER,
                                                 login_lockout=LOCKOUT, digest_realm=REALM)
        viewer = Viewer(self.factory, "192.0.2.15")
        await self.wrong_digests(viewer, LOCKOUT_AFTER - 1)
        self.assertEqual(self.failures(), LOCKOUT_AFTER - 1)
        nonce = await self.nonce(viewer)
        self.assertEqual((await viewer.ask(digest(nonce))).code, 503)
        self.assertEqual(self.failures(), 0)
        await self.wrong_digests(Viewer(self.factory, "192.0.2.15", 40001), LOCKOUT_AFTER - 1)
        outcome = await self.accounts.login(MOBILE, PASSWORD, "1.0", SOAP_PEER)
        self.assertEqual(outcome.result, 0, "not locked: proxy failures below the limit")
        self.assertEqual(self.failures(), 0, "a SOAP login clears proxy failures")
        await self.wrong_digests(Viewer(self.factory, "192.0.2.15", 40002), LOCKOUT_AFTER - 1)
        self.assertEqual(self.accounts.locked_for(MOBILE), 0)

    async def test_slowdown_applies_at_the_proxy(self) -> None:
        """After login_slowdown_after failures (SOAP's or the proxy's), a proxy check first waits 1, 2 … s on
        the reactor clock, before anything is checked, without blocking other accounts."""
        await self.register()
        await self.register(OTHER)
        for _ in range(SLOWDOWN_AFTER):
            self.assertEqual((await self.accounts.login(MOBILE, "wrong-pw", "1.0", SOAP_PEER)).result, 2)
        viewer = Viewer(self.factory, "192.0.2.16")
        nonce = await self.nonce(viewer)
        viewer.send(digest(nonce, "wrong-pw"))
        other = Viewer(self.factory, "192.0.2.17")
        other_nonce = await self.nonce(other)
        self.assertEqual((await other.ask(digest(other_nonce, user=OTHER))).code, 503, "another account: no wait")
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(viewer.transport.value(), b"", "waiting on the clock")
        self.clock.advance(1)
        self.assertEqual((await viewer.answer()).code, 401)
        self.assertEqual(self.failures(), SLOWDOWN_AFTER + 1)
        viewer.send(digest(nonce))
        self.clock.advance(1)
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(viewer.transport.value(), b"", "2 s now")
        self.clock.advance(1)
        self.assertEqual((await viewer.answer()).code, 503)
        self.assertEqual(self.failures(), 0)

    async def test_parallel_guesses_cannot_overtake_the_lock(self) -> None:
        """Many guesses at once: checks of one account run one at a time, so exactly LOCKOUT_AFTER are checked
        and counted and the rest meet the lock."""
        await self.register()
        self.accounts.settings = AccountSettings(login_slowdown_after=100, login_lockout_after=LOCKOUT_AFTER,
                                                 login_lockout=LOCKOUT, digest_realm=REALM)
        nonce = self.auth.nonces.issue()
        results = await gatherResults([
            Deferred.fromCoroutine(self.auth.check("DESCRIBE", digest(nonce, f"guess-{i}"), f"192.0.2.18:{i}"))
            for i in range(LOCKOUT_AFTER + 6)])
        self.assertEqual(sum(1 for r in results if r.counted and not r.locked), LOCKOUT_AFTER - 1)
        self.assertEqual(sum(1 for r in results if r.locked), 7, "the last counted failure locks, 6 meet the lock")
        self.assertEqual(self.failures(), LOCKOUT_AFTER)
        self.assertEqual(self.accounts._checking, {}, "no lock left behind")

    async def test_basic_counts_too(self) -> None:
        """Basic: a wrong password counts for the account, an unknown user only for the address."""
        await self.register()
        self.proxy(schemes=("basic",), peer_limit=3)
        viewer = Viewer(self.factory, "192.0.2.19")
        self.assertEqual((await viewer.ask(basic("wrong-pw"))).code, 401)
        self.assertEqual(self.failures(), 1)
        self.assertEqual((await viewer.ask(basic(PASSWORD, "13399999999"))).code, 401)
        self.assertEqual(self.accounts._failures.keys(), {MOBILE})
        self.assertEqual((await viewer.ask(basic())).code, 503)
        self.assertEqual(self.failures(), 0)
        self.assertEqual((await viewer.ask(basic("wrong-again"))).code, 401)
        self.assertEqual((await viewer.ask(basic())).code, 503, "this connection already proved this header")
        self.assertEqual((await Viewer(self.factory, "192.0.2.19", 40001).ask(basic())).code, 403,
                         "the address's third failure used it up")

    # -- the per-address limit

    async def test_peer_limit_refuses_a_sprayer_not_others(self) -> None:
        """One address guessing over many user names: after peer_limit failures in the window every request of
        it that needs authentication gets 403 and its connection is closed; other addresses are unaffected;
        no state is kept per guessed name; the window slides on the reactor clock."""
        await self.register()
        self.proxy(peer_limit=5, peer_window=60)
        sprayer = Viewer(self.factory, "192.0.2.20")
        nonce = await self.nonce(sprayer)
        for i in range(5):
            self.assertEqual((await sprayer.ask(digest(nonce, user=f"1339000000{i}"))).code, 401)
            self.clock.advance(1)
        response = await sprayer.ask(digest(nonce))  # even the right credentials of a real account
        self.assertEqual(response.code, 403)
        self.assertIsNone(response.headers.get("WWW-Authenticate"))
        self.assertFalse(sprayer.closed)
        self.clock.advance(0)
        self.assertTrue(sprayer.closed, "closed right after the answer")
        again = Viewer(self.factory, "192.0.2.20", 40001)
        self.assertEqual((await again.ask()).code, 403, "a new connection, even without credentials")
        self.assertTrue([e for e in self.events if "192.0.2.20 reached 5 failed authentications" in e], self.events)
        # Another address: unaffected, for the same account.
        other = Viewer(self.factory, "192.0.2.21")
        self.assertEqual((await other.ask(digest(await self.nonce(other)))).code, 503)
        # Nothing kept per guessed name, nothing counted for the real account.
        self.assertEqual(self.accounts._failures, {})
        self.assertEqual(self.accounts._checking, {})
        self.assertEqual(self.factory.auth_failures, 5)
        # The window slides: 60 s after the first failure it leaves the window, and one place is free.
        self.clock.advance(54)
        self.assertEqual((await Viewer(self.factory, "192.0.2.20", 40004).ask()).code, 403, "1 s to go")
        self.clock.advance(1)
        self.assertEqual((await Viewer(self.factory, "192.0.2.20", 40002).ask()).code, 401)
        late = Viewer(self.factory, "192.0.2.20", 40003)
        self.assertEqual((await late.ask(digest(await self.nonce(late)))).code, 503)

    async def test_ipv6_counts_per_64(self) -> None:
        self.assertEqual(source_address("2001:db8:1:2:3:4:5:6:5000"), "2001:db8:1:2::/64")
        self.assertEqual(source_address("::ffff:192.0.2.1:5000"), "192.0.2.1")
        self.assertEqual(source_address("192.0.2.1:5000"), "192.0.2.1")
        self.proxy(peer_limit=2)
        for i in range(2):
            viewer = Viewer(self.factory, f"2001:db8:1:2::{i + 1}")
            self.assertEqual((await viewer.ask(digest(await self.nonce(viewer), user="13390000000"))).code, 401)
        self.assertEqual((await Viewer(self.factory, "2001:db8:1:2::99").ask()).code, 403)
        self.assertEqual((await Viewer(self.factory, "2001:db8:1:3::1").ask()).code, 401, "another /64")

    async def test_parallel_guesses_cannot_overtake_the_peer_limit(self) -> None:
        self.proxy(peer_limit=4)
        nonce = self.auth.nonces.issue()
        results = await gatherResults([
            Deferred.fromCoroutine(self.auth.check("DESCRIBE", digest(nonce, user=f"133900000{i:02d}"),
                                                   f"192.0.2.22:{i}"))
            for i in range(12)])
        self.assertEqual(sum(1 for r in results if r.counted), 4)
        self.assertEqual(sum(1 for r in results if r.blocked), 8)

    async def test_memory_stays_bounded(self) -> None:
        """A spray of user names from many addresses keeps no state per name, and at most about max_peers
        addresses; the per-account state holds existing accounts only."""
        await self.register()
        self.proxy(peer_limit=3, max_peers=100)
        assert self.auth.peers is not None
        nonce = self.auth.nonces.issue()
        for i in range(1000):
            peer = f"10.{i // 250}.{i % 250}.1:{1000 + i}"
            result = await self.auth.check("DESCRIBE", digest(nonce, "wrong-pw", f"1{i:010d}"), peer)
            self.assertTrue(result.counted)
            self.assertLessEqual(len(self.auth.peers), 100)
        self.assertEqual(self.accounts._failures, {})
        self.assertEqual(self.accounts._checking, {})
        # The RateLimiter on its own: a flood of fresh keys keeps at most max_keys of them.
        limiter = RateLimiter(self.clock, 2, 60, max_keys=1000)
        for i in range(20_000):
            limiter.allow(f"k{i}")
            self.clock.advance(0.001)
        self.assertLessEqual(len(limiter), 1000)
        self.assertFalse(limiter.allow("k19999") and limiter.allow("k19999"), "recent keys are kept")

    def test_rate_limiter_retry_after_and_undo(self) -> None:
        limiter = RateLimiter(self.clock, 2, 60)
        first = limiter.reserve("a")
        self.clock.advance(10)
        second = limiter.reserve("a")
        assert first is not None and second is not None
        self.assertIsNone(limiter.reserve("a"))
        self.assertEqual(limiter.retry_after("a"), 50)
        limiter.undo("a", second)
        self.assertEqual(limiter.retry_after("a"), 0)
        self.assertEqual(limiter.retry_after("never-seen"), 0)
        self.assertEqual(len(limiter), 1, "retry_after keeps no state")


# -- end to end: ffprobe against the platform's proxy role --------------------------------------------


class ProxyLockoutEndToEndTests(TestCase):
    """ffprobe against the platform's proxy on loopback.  Strangers' wrong passwords from other addresses lock
    the account for addresses it does not know (the right password from one is refused at SOAP login), but the
    owner's player, from the address the app logged in from, still plays; its own wrong passwords count for
    that address only (the proxy's per-address limit), never toward the account's lock."""

    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        from tests.util import FFPROBE, ProxyHarness, proxy_config
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self)
        text = proxy_config(rtsp_extra="auth_peer_limit = 4")
        self.h.config = parse_config(text + "[soap]\nlogin_slowdown_after = 3\nlogin_lockout_after = 3\n"
                                            "login_lockout = 600\n")
        await self.h.start()

    async def test_ffprobe_owner_plays_while_strangers_lock_the_account(self) -> None:
        from tests.util import PROXY_MOBILE as ACCOUNT
        from tests.util import PROXY_PASSWORD as RIGHT
        from tests.util import probe, streams_of
        accounts = self.h.platform.accounts
        # The owner's player mistypes, from the address the app logged in from (127.0.0.1): 401 each time,
        # counted for that address (the proxy's limit and the key guard's pair), not toward the account's lock.
        # (Twice: a third would start the pair's 1 s backoff, and the right password below would meet it.)
        for _ in range(2):
            result = await probe(self.h.url(password="wrong-password"))
            self.assertNotEqual(result.code, 0)
            self.assertIn("401", result.err)
        self.assertNotIn(ACCOUNT, accounts._failures)
        # Strangers, from three addresses, lock the account for addresses it does not know.
        for n in range(3):
            self.assertEqual((await accounts.login(ACCOUNT, f"guess-{n}", "1.0", f"203.0.113.{n + 1}:4000")).result, 2)
        self.assertGreater(accounts.locked_for(ACCOUNT), 590)
        self.assertEqual((await accounts.login(ACCOUNT, RIGHT, "1.0", "192.0.2.50:4000")).result, 2,
                         "the right password from an unknown address while locked")
        # The owner's player still plays.
        result = await probe(self.h.url(password=RIGHT))
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(streams_of(result)["video"]["codec_name"], "h264")
        audit = [(r.action, r.result, r.detail) for r in reversed(await self.h.platform.store.list_audit(ACCOUNT))
                 if r.action in ("rtsp-auth", "login") and r.result != 0]
        self.assertEqual([a for a in audit if a[0] == "rtsp-auth"],
                         [("rtsp-auth", 2, "wrong Digest response (not counted toward the account's lock: "
                                           "from an address the account trusts)")] * 2)
        self.assertEqual(audit[-1], ("login", 2, "locked for 600 s more"))
