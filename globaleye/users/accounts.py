"""Client accounts (§8.1–§8.4, §8.8): SMS codes, passwords, LoginSessions, HashTokens, audit.

An account is an 11-digit mobile number.  The rules here are security rules, so
each one says why:

* Passwords are hashed with argon2id (argon2-cffi) in a worker thread: a hash costs
  tens of milliseconds of CPU on purpose, which would stall every camera session
  if it ran on the reactor thread.
* A login for an unknown number still verifies a dummy hash, so the answer time
  does not tell registered numbers from others (§8.3's Result 1 tells anyway,
  but only to someone who also sends a well-formed login, and it is rate-limited
  by the lockout of that number once registered).
* Wrong passwords in a row first slow every further attempt on that account down
  (exponentially, before the password is even checked) and then lock it: a locked
  account answers Result 2 whatever the password.  Every password check of an
  account, SOAP login or RTSP proxy (:mod:`globaleye.proxy.auth`), goes through
  :meth:`AccountService.check_password`, so a guess counts the same wherever it is
  made, and the checks of one account run one at a time: parallel guesses cannot
  all pass the gate before the first wrong one is counted.
* LoginSession tokens come from :func:`secrets.token_urlsafe` (256 bits), live in
  memory, expire after ``session_idle_timeout`` seconds unused (reactor clock),
  and all of an account's sessions end at password change and account closure.
* SMS codes: 6 digits, one live code per number, ``sms_code_lifetime`` seconds,
  ``sms_code_attempts`` wrong entries, at most one per ``sms_interval``,
  ``sms_number_hourly`` per hour and ``sms_number_daily`` per day per number (limits of
  the number that outlive its code: voiding a code does not reset them), and
  ``sms_peer_limit`` per hour per source address (IPv6 by its /64, :mod:`globaleye.util.peerkey`).  A code is sent whether the
  number is registered or not, and registration checks the code *before* saying
  "already registered", so only the phone's owner learns that.
* HashTokens (§7.5.5): MD5 over account, a secret derived from the password hash
  (none for the in-process :meth:`AccountService.issue_token_for`), DevID, channel,
  stream, time and 128 random bits; stored for ``hashtoken_lifetime`` (60 s),
  consumed once by the gateway (35H).  :meth:`AccountService._issue` is the one
  place that makes them.
* RTSP Digest (RFC 2617) cannot be verified from argon2, so with a ``digest_realm``
  (``[rtsp] realm`` when ``[rtsp] auth`` includes digest) the account also keeps
  HA1 = MD5(account:realm:password) and its SHA-256 twin (RFC 7616): written at
  sign-up and password change (in the
  same write as the argon2 hash), backfilled at a successful login, gone with the
  account.  Without a ``digest_realm`` none is written, and a login clears an old
  one.  The trade-off is in docs/protocol.md (Client API, item 18).
"""

from __future__ import annotations

import collections
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet import threads
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from globaleye.guard.keyguard import KeyGuard, source_of
from globaleye.store import Account, AuditRecord, DigestSecret, HashToken, Store
from globaleye.users.sms.client import LogSender
from globaleye.util import peerkey

MOBILE = re.compile(r"^1[0-9]{10}$")
PASSWORD_MIN, PASSWORD_MAX = 6, 32
MAX_SESSIONS_PER_ACCOUNT = 16
MAX_SLOWDOWN = 30.0

# Result codes shared by §8.1–§8.8.
OK = 0
NO_ACCOUNT = 1
WRONG_PASSWORD = EXPIRED = SMS_FAILED = WRONG_CODE = 2
OLD_VERSION = CANNOT_SUBSCRIBE = 3
ALREADY_REGISTERED = 1


class SmsSender(Protocol):
    """Delivers a text to a mobile number; raises when it could not."""

    async def send(self, mobile: str, text: str) -> None: ...


class OpenCheck(Protocol):
    """May this number open the service (§2 item 7, CRM)?  ``globaleye.users.crm`` provides these."""

    async def may_open(self, mobile: str) -> bool: ...


@attrs.define
class RecordingSmsSender:
    """Keeps every message (tests, demos): ``sent[-1]`` is ``(mobile, text)``."""

    sent: list[tuple[str, str]] = attrs.Factory(list)

    async def send(self, mobile: str, text: str) -> None:
        self.sent.append((mobile, text))

    def last_code(self, mobile: str) -> str:
        for number, text in reversed(self.sent):
            if number == mobile:
                match = re.search(r"\b([0-9]{6})\b", text)
                if match:
                    return match.group(1)
        raise LookupError(f"no code sent to {mobile}")


@attrs.frozen
class AccountSettings:
    session_idle_timeout: float = 1800.0
    min_mcu_version: tuple[int, ...] = (1, 0)
    update_url: str = ""
    max_devices: int = 10
    sms_code_lifetime: float = 300.0
    sms_code_attempts: int = 5
    sms_interval: float = 60.0
    sms_peer_limit: int = 20
    #: Codes one number may be sent per hour and per day (limits of the number, not of any code).
    sms_number_hourly: int = 5
    sms_number_daily: int = 10
    login_slowdown_after: int = 3
    login_lockout_after: int = 10
    login_lockout: float = 900.0
    hashtoken_lifetime: float = 60.0
    #: The RTSP Digest realm whose HA1 accounts keep ("": keep none, e.g. ``[rtsp] auth = basic``).
    digest_realm: str = ""


@attrs.define
class LoginSession:
    token: str
    account: str
    peer: str
    created_at: float
    last_used: float
    token_secret: bytes = attrs.field(repr=False)


@attrs.define
class _SmsCode:
    code: str
    expires_at: float
    attempts_left: int
    sent_at: float


@attrs.define
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class Verdict(enum.Enum):
    """What one password check of an account found (:meth:`AccountService.check_password`)."""

    #: The password is the account's: its failures are cleared.
    RIGHT = "right"
    #: A wrong password for an existing account: counted toward slow-down and lockout.
    WRONG = "wrong"
    #: No such account (or nothing to check against): counted nowhere here, so that no state is
    #: kept per arbitrary name; the caller may count it per source address.
    NO_ACCOUNT = "no account"
    #: Proves nothing either way (a correct RTSP Digest response over a stale nonce, which may be a
    #: replay): neither counted nor clearing.
    NEUTRAL = "neutral"
    #: The account is locked; the password was not looked at.
    LOCKED = "locked"


@attrs.frozen
class PasswordCheck:
    """The outcome of :meth:`AccountService.check_password`, with what its audit record needs."""

    verdict: Verdict
    #: WRONG: wrong passwords in a row, this one included.
    failures: int = 0
    #: LOCKED: seconds the lock has left; WRONG: the lock this failure started (0: none).
    locked_for: float = 0.0
    #: WRONG: why it was not counted toward the account's lock (empty: it was).
    uncounted: str = ""

    def detail(self, what: str = "wrong password") -> str:
        """The audit detail of a WRONG check, e.g. ``wrong password (10 in a row), locked for 900 s``."""
        if self.uncounted:
            return f"{what} (not counted toward the account's lock: {self.uncounted})"
        text = f"{what} ({self.failures} in a row)"
        return text + (f", locked for {self.locked_for:g} s" if self.locked_for else "")


@attrs.frozen
class LoginOutcome:
    result: int
    session: LoginSession | None = None
    update_url: str = ""


class RateLimiter:
    """At most *limit* events per *window* seconds per key (a sliding window, memory bounded).

    Memory: at most *limit* timestamps per key, and about *max_keys* keys: keys with nothing in
    the window are dropped first, and if more than three quarters of *max_keys* are still active,
    only the most recently active half is kept (a flood of new keys forgets the oldest ones,
    instead of growing without end).
    """

    def __init__(self, clock: IReactorTime, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.clock, self.limit, self.window, self.max_keys = clock, limit, window, max_keys
        self._events: dict[str, collections.deque[float]] = {}

    def allow(self, key: str) -> bool:
        return self.reserve(key) is not None

    def reserve(self, key: str) -> float | None:
        """Count one event now, and return its time (for :meth:`undo`); None when *key* is at its limit."""
        now = self.clock.seconds()
        events = self._events.setdefault(key, collections.deque())
        self._expire(events, now)
        if len(events) >= self.limit:
            return None
        events.append(now)
        if len(self._events) > self.max_keys:
            self._bound(now)
        return now

    def undo(self, key: str, at: float) -> None:
        """Take back the event counted at *at* (it turned out not to be one); gone already is fine."""
        events = self._events.get(key)
        if events is None:
            return
        try:
            events.remove(at)
        except ValueError:
            pass
        if not events:
            del self._events[key]

    def retry_after(self, key: str) -> float:
        """Seconds until *key* may have an event again (0: now); counts nothing, keeps no state."""
        events = self._events.get(key)
        if events is None:
            return 0.0
        now = self.clock.seconds()
        self._expire(events, now)
        if len(events) < self.limit:
            return 0.0
        # The oldest events must leave the window until one place is free.
        return max(0.0, events[len(events) - self.limit] + self.window - now)

    def __len__(self) -> int:
        """Keys tracked."""
        return len(self._events)

    def _expire(self, events: collections.deque[float], now: float) -> None:
        while events and events[0] <= now - self.window:
            events.popleft()

    def _bound(self, now: float) -> None:
        self._events = {k: v for k, v in self._events.items() if v and v[-1] > now - self.window}
        if len(self._events) > self.max_keys * 3 // 4:
            newest = sorted(self._events.items(), key=lambda item: item[1][-1], reverse=True)
            self._events = dict(newest[:max(1, self.max_keys // 2)])


def parse_version(text: str) -> tuple[int, ...] | None:
    parts = text.strip().split(".")
    if not text.strip() or not all(part.isdigit() and len(part) <= 6 for part in parts):
        return None
    return tuple(int(part) for part in parts)


RunInThread = Callable[..., "Deferred[Any]"]


class AccountService:
    """Accounts, sessions, SMS codes and HashTokens; every action audit-logged with account and peer."""

    log = Logger()

    def __init__(self, store: Store, clock: IReactorTime, settings: AccountSettings | None = None,
                 sms_sender: SmsSender | None = None, hasher: PasswordHasher | None = None,
                 run_in_thread: RunInThread = threads.deferToThread, crm: OpenCheck | None = None,
                 guard: KeyGuard | None = None) -> None:
        self.store = store
        #: The throttle of every key and password check (shared with the device roles by the platform).
        self.guard = guard if guard is not None else KeyGuard(clock)
        self.clock = clock
        self.settings = settings or AccountSettings()
        self.sms_sender: SmsSender = sms_sender or LogSender()
        self.hasher = hasher or PasswordHasher()
        self._in_thread = run_in_thread
        self.crm = crm
        self.sessions: dict[str, LoginSession] = {}
        self._by_account: dict[str, set[str]] = {}
        self._codes: dict[str, _SmsCode] = {}
        self._failures: dict[str, _Failures] = {}
        #: One lock per account whose password is being checked (gone when nobody waits for it).
        self._checking: dict[str, DeferredLock] = {}
        self._sms_peers = RateLimiter(clock, self.settings.sms_peer_limit, 3600.0)
        # Per-number limits kept apart from the codes: voiding a code (used, expired, out of
        # attempts) must not reset when the number may be sent the next one.
        self._sms_number_limits = (
            ("sms_interval", RateLimiter(clock, 1, self.settings.sms_interval)),
            ("sms_number_hourly", RateLimiter(clock, self.settings.sms_number_hourly, 3600.0)),
            ("sms_number_daily", RateLimiter(clock, self.settings.sms_number_daily, 86400.0)),
        )
        self._last_sweep = clock.seconds()
        self._dummy_hash: str | None = None

    # Audit ---------------------------------------------------------------------------------

    async def audit(self, action: str, account: str, peer: str, result: int, detail: str = "") -> None:
        """Log an action (twisted.logger) and keep it in the store's audit log."""
        self.log.info("audit: {action} account={account} peer={peer} result={result} {detail}",
                      action=action, account=account, peer=peer, result=result, detail=detail)
        try:
            await self.store.add_audit(AuditRecord(self.clock.seconds(), account, peer, action, result, detail))
        except Exception:
            self.log.failure("cannot write the audit record of {action} for {account}", action=action,
                             account=account)

    # Passwords -----------------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        return str(await self._in_thread(self.hasher.hash, password))

    async def verify_password(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return bool(self.hasher.verify(password_hash, password))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return bool(await self._in_thread(verify))

    @staticmethod
    def acceptable_password(password: str) -> bool:
        return PASSWORD_MIN <= len(password) <= PASSWORD_MAX and "\x00" not in password

    # §8.1 SMS verification code --------------------------------------------------------------

    async def request_sms_code(self, mobile: str, kind: int, peer: str) -> int:
        now = self.clock.seconds()
        host = peerkey.source_address(peer)  # IPv6 by its /64
        why = ""
        if not MOBILE.match(mobile):
            why = "not a mobile number"
        elif kind != 0:
            why = f"Type {kind} is not 0 (password)"
        else:
            for key, limiter in self._sms_number_limits:
                wait = limiter.retry_after(mobile)
                if wait > 0:
                    why = f"number at its limit ({key}), next code in {wait:.0f} s"
                    break
            else:
                if not self._sms_peers.allow(host):
                    why = f"source {host} asked for {self.settings.sms_peer_limit} codes this hour"
        if why:
            await self.audit("sms-code", mobile, peer, SMS_FAILED, why)
            return SMS_FAILED
        counted = [(limiter, limiter.reserve(mobile)) for _, limiter in self._sms_number_limits]
        code = f"{secrets.randbelow(10**6):06d}"
        self._codes[mobile] = _SmsCode(code, now + self.settings.sms_code_lifetime,
                                       self.settings.sms_code_attempts, now)
        minutes = max(1, round(self.settings.sms_code_lifetime / 60))
        try:
            await self.sms_sender.send(mobile, f"GlobalEye verification code {code}, valid {minutes} min.")
        except Exception as e:
            self._codes.pop(mobile, None)
            for limiter, at in counted:  # nothing reached the phone: the number's limits are not spent
                if at is not None:
                    limiter.undo(mobile, at)
            await self.audit("sms-code", mobile, peer, SMS_FAILED, f"sender failed: {e}")
            return SMS_FAILED
        self._sweep_codes(now)
        await self.audit("sms-code", mobile, peer, OK)
        return OK

    def _check_code(self, mobile: str, code: str) -> bool:
        """One attempt at *mobile*'s code; the code is void once used or out of attempts."""
        entry = self._codes.get(mobile)
        if entry is None:
            return False
        if self.clock.seconds() > entry.expires_at:
            del self._codes[mobile]
            return False
        if hmac.compare_digest(entry.code.encode(), code.strip().encode()):
            del self._codes[mobile]
            return True
        entry.attempts_left -= 1
        if entry.attempts_left <= 0:
            del self._codes[mobile]
        return False

    def _sweep_codes(self, now: float) -> None:
        if len(self._codes) > 10_000:
            self._codes = {k: v for k, v in self._codes.items() if v.expires_at >= now}

    # §8.2 registration ---------------------------------------------------------------------

    async def register(self, mobile: str, password: str, sms_key: str, peer: str) -> int:
        if not MOBILE.match(mobile):
            await self.audit("register", mobile, peer, CANNOT_SUBSCRIBE, "not a mobile number")
            return CANNOT_SUBSCRIBE
        if not self._check_code(mobile, sms_key):
            await self.audit("register", mobile, peer, WRONG_CODE, "wrong, used or expired SMS code")
            return WRONG_CODE
        if not self.acceptable_password(password):
            await self.audit("register", mobile, peer, CANNOT_SUBSCRIBE, "password not 6-32 characters")
            return CANNOT_SUBSCRIBE
        if self.crm is not None and not await self.crm.may_open(mobile):
            await self.audit("register", mobile, peer, CANNOT_SUBSCRIBE, "refused by the CRM")
            return CANNOT_SUBSCRIBE
        now = self.clock.seconds()
        created = await self.store.create_account(Account(mobile, await self.hash_password(password), now, now),
                                                  self._digest(mobile, password))
        result = OK if created else ALREADY_REGISTERED
        await self.audit("register", mobile, peer, result, "" if created else "already registered")
        return result

    # §8.3 login ---------------------------------------------------------------------------------

    async def login(self, account: str, password: str, version: str, peer: str) -> LoginOutcome:
        parsed = parse_version(version)
        if parsed is None or parsed < self.settings.min_mcu_version:
            await self.audit("login", account, peer, OLD_VERSION, f"MCU version {version!r}")
            return LoginOutcome(OLD_VERSION, update_url=self.settings.update_url)
        found: list[Account] = []

        async def verify() -> Verdict:
            verdict, record = await self.password_verdict(account, password)
            if record is not None:
                found.append(record)
            return verdict

        check = await self.check_password(account, verify, peer)
        if check.verdict is Verdict.LOCKED:
            await self.audit("login", account, peer, WRONG_PASSWORD, f"locked for {check.locked_for:.0f} s more")
            return LoginOutcome(WRONG_PASSWORD)
        if check.verdict is Verdict.NO_ACCOUNT or not found:
            await self.audit("login", account, peer, NO_ACCOUNT, "no such account")
            return LoginOutcome(NO_ACCOUNT)
        if check.verdict is not Verdict.RIGHT:
            await self.audit("login", account, peer, WRONG_PASSWORD, check.detail())
            return LoginOutcome(WRONG_PASSWORD)
        record = found[0]
        await self._backfill_digest(record, password)
        session = self._new_session(record, peer)
        await self.audit("login", account, peer, OK, f"MCU version {version}")
        return LoginOutcome(OK, session)

    # Wrong-password slow-down and lockout (SOAP login and the RTSP proxy) ----------------------

    def locked_for(self, account: str) -> float:
        """Seconds *account* stays locked (0: not locked).

        A lock that has run out is forgotten together with its count: the account starts again
        from zero wrong passwords (as a login always did).
        """
        failures = self._failures.get(account)
        if failures is None or not failures.locked_until:
            return 0.0
        remaining = failures.locked_until - self.clock.seconds()
        if remaining > 0:
            return remaining
        del self._failures[account]
        return 0.0

    async def check_password(self, account: str, verify: Callable[[], Awaitable[Verdict]],
                             peer: str = "") -> PasswordCheck:
        """The one gate of every password check of *account*: SOAP login and the RTSP proxy.

        With the *peer* (``host:port``) the check also goes through the key guard
        (:mod:`globaleye.guard.keyguard`), and the lock below is no weapon against the owner:

        * a source the account succeeded from within ``[keyguard] trust_ttl`` (the owner's usual
          networks) skips the slow-down, the lock and the queue of strangers' checks; its own wrong
          passwords count only for it (the guard's pair and source records);
        * one source adds at most ``[keyguard] pair_free`` wrong passwords to the account's count,
          so locking an account for new addresses takes several addresses (IPv4, or IPv6 /64s);
        * a source the guard refuses (its own failures, over every account and DevKey) is answered
          as locked, before the password is looked at.

        A locked account is refused without calling *verify*.  After ``login_slowdown_after``
        wrong passwords in a row the check first waits 1, 2, 4 … (at most ``MAX_SLOWDOWN``)
        seconds on the reactor clock, before *verify* runs, so giving up early does not shorten
        the wait.  Then *verify* decides (:class:`Verdict`): WRONG counts (``login_lockout_after``
        in a row lock the account for ``login_lockout`` seconds), RIGHT clears the count, the
        others change nothing.

        The checks of one account run one at a time (a lock per account, kept only while a check
        runs or waits): otherwise parallel guesses would all pass the lock and slow-down tests
        before the first of them is counted, and a burst could try far more than
        ``login_lockout_after`` passwords.
        """
        identity = f"acct:{account}"
        peer = "" if peer in ("-", "?") else peer
        if peer and self.guard.is_trusted(identity, source_of(peer)):
            outcome = await self._guarded(identity, peer, verify)
            if isinstance(outcome, float):
                return PasswordCheck(Verdict.LOCKED, locked_for=outcome)
            if outcome is Verdict.RIGHT and not self.locked_for(account):
                self._failures.pop(account, None)
            if outcome is Verdict.WRONG:
                entry = self._failures.get(account)
                return PasswordCheck(Verdict.WRONG, entry.count if entry is not None else 0,
                                     uncounted="from an address the account trusts")
            return PasswordCheck(outcome)
        if (remaining := self.locked_for(account)) > 0:  # no queueing behind other checks to learn this
            return PasswordCheck(Verdict.LOCKED, locked_for=remaining)
        lock = self._checking.get(account)
        if lock is None:
            lock = self._checking[account] = DeferredLock()
        await lock.acquire()
        try:
            if (remaining := self.locked_for(account)) > 0:  # locked by a check this one waited for
                return PasswordCheck(Verdict.LOCKED, locked_for=remaining)
            failures = self._failures.get(account)
            if failures is not None and failures.count >= self.settings.login_slowdown_after:
                # Slow down before checking anything, so giving up early does not shorten the wait.
                delay = min(MAX_SLOWDOWN, 2.0 ** (failures.count - self.settings.login_slowdown_after))
                await deferLater(self.clock, delay, lambda: None)
            if peer:
                guarded = await self._guarded(identity, peer, verify)
                if isinstance(guarded, float):
                    return PasswordCheck(Verdict.LOCKED, locked_for=guarded)
                verdict = guarded
                if verdict is Verdict.WRONG and \
                        self.guard.failures("p", identity, source_of(peer)) > self.guard.settings.pair_free:
                    # This source's share of the account's count is used up; the guard slows it down.
                    entry = self._failures.get(account)
                    return PasswordCheck(Verdict.WRONG, entry.count if entry is not None else 0,
                                         uncounted="this address's share of the count is used up")
            else:
                verdict = await verify()
            if verdict is Verdict.WRONG:
                entry = self._failures.setdefault(account, _Failures())
                entry.count += 1
                entry.last = self.clock.seconds()
                locked = 0.0
                if entry.count >= self.settings.login_lockout_after:
                    entry.locked_until = entry.last + self.settings.login_lockout
                    locked = self.settings.login_lockout
                return PasswordCheck(Verdict.WRONG, entry.count, locked)
            if verdict is Verdict.RIGHT:
                self._failures.pop(account, None)
            return PasswordCheck(verdict)
        finally:
            lock.release()  # hands the lock to the next waiter, if any
            if self._checking.get(account) is lock and not lock.locked:
                del self._checking[account]

    async def _guarded(self, identity: str, peer: str,
                       verify: Callable[[], Awaitable[Verdict]]) -> Verdict | float:
        """*verify* through the key guard: its verdict, or the seconds the guard refuses it for."""
        attempt = await self.guard.attempt(identity, peer)
        try:
            if attempt.refused:
                return max(attempt.wait, 1.0)
            verdict = await verify()
            if verdict in (Verdict.WRONG, Verdict.NO_ACCOUNT):
                attempt.failed()
            elif verdict is Verdict.RIGHT:
                attempt.succeeded()
            return verdict
        finally:
            attempt.done()

    async def password_verdict(self, account: str, password: str) -> tuple[Verdict, Account | None]:
        """Check *password* against *account*'s argon2 hash (in a worker thread): RIGHT or WRONG with the
        record, or NO_ACCOUNT after verifying a dummy hash, so the answer takes as long either way."""
        record = await self.store.get_account(account) if MOBILE.match(account) else None
        if record is None:
            await self.verify_password(await self._dummy(), password)  # same cost as a real check
            return Verdict.NO_ACCOUNT, None
        if await self.verify_password(record.password_hash, password):
            return Verdict.RIGHT, record
        return Verdict.WRONG, record

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash_password(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _new_session(self, record: Account, peer: str) -> LoginSession:
        now = self.clock.seconds()
        self.sweep_sessions()
        tokens = self._by_account.setdefault(record.account, set())
        if len(tokens) >= MAX_SESSIONS_PER_ACCOUNT:  # a client that never logs out must not grow memory
            oldest = min(tokens, key=lambda t: self.sessions[t].last_used)
            self._drop(oldest)
        secret = hashlib.sha256(b"globaleye hashtoken\x00" + record.password_hash.encode()).digest()
        session = LoginSession(secrets.token_urlsafe(32), record.account, peer, now, now, secret)
        self.sessions[session.token] = session
        self._by_account.setdefault(record.account, set()).add(session.token)
        return session

    # Sessions ---------------------------------------------------------------------------------

    def authenticate(self, account: str, token: str) -> LoginSession | None:
        """The live session *token* of *account*, its idle time restarted; None when there is none."""
        session = self.sessions.get(token)
        if session is None or not hmac.compare_digest(session.account.encode(), account.encode()):
            return None
        now = self.clock.seconds()
        if now - session.last_used > self.settings.session_idle_timeout:
            self._drop(token)
            return None
        session.last_used = now
        return session

    def is_live(self, account: str, token: str) -> bool:
        """Whether *token* is still a live session of *account*, without restarting its idle time (a
        long-lived stream asks this periodically; only what the person does keeps a session alive)."""
        session = self.sessions.get(token)
        return (session is not None and hmac.compare_digest(session.account.encode(), account.encode())
                and self.clock.seconds() - session.last_used <= self.settings.session_idle_timeout)

    def sweep_sessions(self) -> None:
        now = self.clock.seconds()
        if now - self._last_sweep < self.settings.session_idle_timeout:
            return
        self._last_sweep = now
        for token, session in list(self.sessions.items()):
            if now - session.last_used > self.settings.session_idle_timeout:
                self._drop(token)

    def _drop(self, token: str) -> None:
        session = self.sessions.pop(token, None)
        if session is not None:
            tokens = self._by_account.get(session.account)
            if tokens is not None:
                tokens.discard(token)
                if not tokens:
                    del self._by_account[session.account]

    def end_sessions(self, account: str) -> int:
        tokens = list(self._by_account.get(account, ()))
        for token in tokens:
            self._drop(token)
        return len(tokens)

    async def logout(self, account: str, token: str, peer: str) -> int:
        session = self.authenticate(account, token)
        if session is not None:
            self._drop(token)
        # Result 0 either way: the session is over, and a stranger learns nothing about the number.
        await self.audit("logout", account, peer, OK, "" if session is not None else "no live session")
        return OK

    # Password change and closure -----------------------------------------------------------------

    async def change_password(self, session: LoginSession, old: str, new: str, peer: str) -> int:
        record = await self.store.get_account(session.account)
        if record is None:
            return NO_ACCOUNT
        if not self.acceptable_password(new) or not await self._old_password_right(record, old, peer):
            await self.audit("change-password", session.account, peer, 3, "wrong old password or unfit new one")
            return 3
        await self.store.set_password(session.account, await self.hash_password(new), self.clock.seconds(),
                                      self._digest(session.account, new))
        ended = self.end_sessions(session.account)
        await self.audit("change-password", session.account, peer, OK, f"{ended} sessions ended")
        return OK

    async def _old_password_right(self, record: Account, old: str, peer: str) -> bool:
        """The old password's check through the key guard: a stolen session cannot guess it at speed."""
        attempt = await self.guard.attempt(f"acct:{record.account}", peer)
        try:
            if attempt.refused:
                return False
            right = await self.verify_password(record.password_hash, old)
            if right:
                attempt.succeeded()
            else:
                attempt.failed()
            return right
        finally:
            attempt.done()

    async def close_account(self, session: LoginSession, peer: str) -> int:
        released = await self.store.delete_account(session.account)
        ended = self.end_sessions(session.account)
        self._failures.pop(session.account, None)
        self._codes.pop(session.account, None)
        await self.audit("close-account", session.account, peer, OK,
                         f"devices released: {', '.join(released) or 'none'}; {ended} sessions ended")
        return OK

    # RTSP Digest secret (RFC 2617) -----------------------------------------------------------

    def _digest(self, account: str, password: str) -> DigestSecret | None:
        realm = self.settings.digest_realm
        if not realm:
            return None
        material = f"{account}:{realm}:{password}".encode()
        return DigestSecret(realm, hashlib.md5(material, usedforsecurity=False).hexdigest(),
                            hashlib.sha256(material).hexdigest())

    async def _backfill_digest(self, record: Account, password: str) -> None:
        """After a successful password check: keep the account's HA1 current (accounts from before
        migration 4, a changed realm), or clear it when no realm is configured."""
        wanted = self._digest(record.account, password)
        if await self.store.get_digest(record.account) != wanted:
            # Only while the password is still the one just checked (a concurrent change wins).
            await self.store.set_digest(record.account, record.password_hash, wanted)

    async def digest_ha1(self, account: str, realm: str, algorithm: str = "MD5") -> str | None:
        """HA1 = MD5(account:realm:password) of *account* for *realm* (SHA-256 of the same with
        *algorithm* ``SHA-256``, RFC 7616), or None.

        None when *realm* is not the configured ``digest_realm`` (or none is configured), the
        account does not exist, or it has not signed up, changed its password or logged in since
        HA1s are kept.
        """
        if not self.settings.digest_realm or realm != self.settings.digest_realm or not MOBILE.match(account):
            return None
        digest = await self.store.get_digest(account)
        if digest is None or digest.realm != realm:
            return None
        return digest.ha1_sha256 if algorithm == "SHA-256" else digest.ha1 if algorithm == "MD5" else None

    async def forget_digests(self) -> int:
        """Clear every stored HA1 not of the configured realm (all of them without one): run at start."""
        return await self.store.forget_digests(self.settings.digest_realm)

    # HashTokens (§7.5.5, §8.9) -------------------------------------------------------------------

    async def issue_token(self, session: LoginSession, dev_id: str, channel_no: int, stream_type: int,
                          file_name: str = "") -> str:
        """A live-view token (§7.5.5, 35H), or with *file_name* a playback token (§7.5.23, 74H, stream 0)."""
        return await self._issue(session.account, session.token_secret.hex(), dev_id, channel_no, stream_type,
                                 file_name)

    async def issue_token_for(self, account: str, dev_id: str, channel_no: int, stream_type: int = 0,
                              file_name: str = "") -> str:
        """A token like :meth:`issue_token`'s for an in-process user without a LoginSession (the RTSP proxy).

        The caller has authenticated *account* and checked that it may watch *dev_id* itself; the
        token is bound to *account* (for the audit trail) and otherwise follows the same rules.
        """
        return await self._issue(account, "", dev_id, channel_no, stream_type, file_name)

    async def _issue(self, account: str, secret: str, dev_id: str, channel_no: int, stream_type: int,
                     file_name: str) -> str:
        """The one place HashTokens are made: 128 random bits in, stored for ``hashtoken_lifetime``,
        single use (the store's ``consume_token``)."""
        now = self.clock.seconds()
        key = secrets.token_hex(16)
        material = "\x00".join((account, secret, dev_id, str(channel_no), str(stream_type), file_name, repr(now),
                                key))
        token = hashlib.md5(material.encode(), usedforsecurity=False).hexdigest()
        await self.store.add_token(HashToken(token=token, dev_id=dev_id, channel_no=channel_no,
                                             expires_at=now + self.settings.hashtoken_lifetime,
                                             stream_type=stream_type, file_name=file_name, account=account))
        return token
