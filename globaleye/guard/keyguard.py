"""One throttle for every check of a secret: DevKeys (gateway login, /register, TURN) and passwords.

The aim: guessing a key or a password is infeasible, yet a stranger who knows a DevID or an
account number can never lock the rightful camera or owner out.  Each check of *identity*
(``dev:<DevID>``, ``acct:<mobile>``) made from *source* (the peer's IPv4 address, or its IPv6
/64: one subscriber's block) goes through :meth:`KeyGuard.attempt`, which decides before the
secret is looked at, and is told the outcome afterwards.  Three records count failures, each
with an exponential backoff (after ``free`` failures, a further check waits 1, 2, 4 … seconds,
at most a cap, after the latest failure) and each forgotten ``forget`` seconds after its last
failure:

* the **pair** (identity, source): a source that keeps failing for one identity is slowed
  down, wherever else it is trusted (the gateway adds §7.3.3's ``login_retry`` hold here: the
  address that failed waits, never the device everywhere);
* the **source**: its failures for all identities and all kinds of key together, so one
  address cannot spray guesses over many DevIDs or accounts;
* the **identity**: failures from sources it does not trust, so guesses spread over many
  addresses still meet a limit.

One address adds at most ``pair_free`` failures per identity to its source's and to the
identity's counts; beyond that only its pair backs off.  So one address can neither run up a
camera's or an owner's backoff alone, nor can a camera that keeps failing with an old key run
up the count of the NAT it shares with others.

A source from which the identity succeeded within ``trust_ttl`` seconds (a camera's last good
address, the owner's usual network) is *trusted* for it: only the pair record applies to it,
so others' failures -- on the identity or from its NAT -- do not refuse it.  The price, stated
in docs/security.md ("Device keys and account passwords"): an owner coming from a new address while strangers hammer the
account from many addresses waits at most the identity cap between attempts.

Checks of one identity run one at a time (a gate per identity, kept only while in use): the
decision is taken after the previous check's answer is counted, so a burst of parallel
guesses is judged one by one.  A check in flight also counts toward its source's budget
(checks beyond it wait for one in flight to end), so parallel guesses over many identities
cannot all pass before the first failure is counted.
A refused caller learns nothing about the key: the refusal is decided before it is looked at.
Memory is bounded (``max_entries`` records; the quietest are forgotten first).  Time comes
from the injected reactor clock.
"""

from __future__ import annotations

import collections

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from globaleye.util.peerkey import source_address
from txturn.logsummary import LogSummary

#: The source a peer is counted under: its IPv4 address or IPv6 /64 (the platform's one helper).
source_of = source_address


@attrs.frozen
class KeyGuardSettings:
    #: Failures of one source (all identities) before its backoff starts, and the backoff's cap.
    source_free: int = 10
    source_max: float = 3600.0
    #: Failures of one identity from sources it does not trust before its backoff starts; cap.
    identity_free: int = 20
    identity_max: float = 60.0
    #: Failures of one source for one identity before their backoff starts (cap: identity_max).
    pair_free: int = 3
    #: First backoff step, doubled at each further failure.
    base: float = 1.0
    #: Seconds a source stays trusted for an identity after it succeeded.
    trust_ttl: float = 7 * 86400.0
    #: A record's failures are forgotten this long after its last failure.
    forget: float = 86400.0
    #: Records (pairs, sources, identities, trusted pairs) kept at most.
    max_entries: int = 100_000


@attrs.define
class _Record:
    failures: int = 0
    #: No check may start before this time (reactor clock).
    until: float = 0.0
    #: The latest failure (or start of a check in flight).
    last: float = 0.0
    inflight: int = 0


@attrs.define(eq=False)
class _Gate:
    """One identity's turn: held by the check in progress, with the checks waiting for it."""

    held: bool = False
    waiters: collections.deque[Deferred[None]] = attrs.field(factory=collections.deque)
    draining: bool = False


@attrs.define(eq=False)
class Attempt:
    """One admitted or refused check; tell it the outcome with exactly one of succeeded/failed/done."""

    guard: KeyGuard
    identity: str
    source: str
    #: Seconds until a check could be admitted (0: this one is admitted) and why.
    wait: float = 0.0
    reason: str = ""
    trusted: bool = False
    _gate: _Gate | None = None
    _open: bool = True
    #: Counted in flight for its source (an admitted check of an identity that does not trust it).
    _inflight: bool = False

    @property
    def refused(self) -> bool:
        return self.wait > 0

    def succeeded(self) -> None:
        """The secret was right: the pair's and the identity's failures are forgotten, the source
        becomes trusted for the identity (the source's own failures stay: an attacker's success
        with its own key must not buy it new guesses on others')."""
        if self._open and not self.refused:  # counted before the lock passes to the next check
            self.guard._succeeded(self.identity, self.source)
        self._finish()

    def failed(self, hold: float = 0.0) -> None:
        """The secret was wrong (or the identity unknown): counted for the pair (at least *hold*
        seconds before the next check of this pair), the source, and -- unless the source is
        trusted -- the identity."""
        if self._open and not self.refused:  # counted before the lock passes to the next check
            self.guard._failed(self.identity, self.source, self.trusted, hold)
        self._finish()

    def done(self) -> None:
        """The check proved nothing either way (e.g. the store failed): nothing counted."""
        self._finish()

    def _finish(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._gate is not None:
            self.guard._release(self.identity, self._gate)
        if self._inflight:
            record = self.guard._records.get(("s", self.source))
            if record is not None and record.inflight > 0:
                record.inflight -= 1
            self.guard._wake(self.source)


class KeyGuard:
    """The shared throttle; one per process, used by every key and password check."""

    log = Logger()

    def __init__(self, clock: IReactorTime, settings: KeyGuardSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings or KeyGuardSettings()
        self._records: dict[tuple[str, ...], _Record] = {}
        #: (identity, source) -> time of the latest success.
        self._trusted: dict[tuple[str, str], float] = {}
        self._gates: dict[str, _Gate] = {}
        #: Checks waiting for a place in their source's budget (see _has_room), per source.
        self._queued: dict[str, _Gate] = {}
        # Refusals: the first per source and minute in full, the rest counted (txturn.logsummary).
        self.refusals = LogSummary(self.log, clock, interval=60.0, max_keys=1000, level=LogLevel.warn,
                                   name="key check refusals")
        self.counters = {"admitted": 0, "refused": 0, "failed": 0, "succeeded": 0}

    # The API --------------------------------------------------------------------------------

    async def attempt(self, identity: str, peer: str) -> Attempt:
        """Wait for *identity*'s earlier checks, then admit or refuse this one.

        An admitted attempt holds *identity*'s lock until it is told the outcome; the caller must
        call one of ``succeeded()``, ``failed()`` or ``done()`` (use try/finally with ``done()``:
        after an outcome it is a no-op).  A refused one holds nothing."""
        source = source_of(peer)
        gate = self._gates.get(identity)
        if gate is None:
            gate = self._gates[identity] = _Gate()
        if gate.held:
            turn: Deferred[None] = Deferred()
            gate.waiters.append(turn)
            await turn  # _release hands the gate over (held stays True)
        else:
            gate.held = True
        while True:
            wait, reason, trusted = self.refusal(identity, source)
            if wait > 0:
                self._release(identity, gate)
                self.counters["refused"] += 1
                self._note_refusal(source, identity, reason)
                return Attempt(self, identity, source, wait, reason, trusted, None, False)
            if trusted or self._has_room(source):
                break
            # The source's checks in flight would use up its budget if they failed: wait for one to end.
            queue = self._queued.get(source)
            if queue is None:
                queue = self._queued[source] = _Gate()
            turn = Deferred()
            queue.waiters.append(turn)
            await turn
        self.counters["admitted"] += 1
        if trusted:
            return Attempt(self, identity, source, 0.0, "", True, gate)
        self._record(("s", source)).inflight += 1
        return Attempt(self, identity, source, 0.0, "", False, gate, True, True)

    def _has_room(self, source: str) -> bool:
        """May one more check of *source* run now?  Checks in flight count as failures, so parallel
        guesses over many identities cannot all start before the first failure is counted; a source
        at its budget gets one check at a time (a source with no failures: source_free at once)."""
        record = self._records.get(("s", source))
        if record is None or record.inflight == 0:
            return True
        return record.failures + record.inflight < self.settings.source_free

    def _wake(self, source: str) -> None:
        """Let waiting checks of *source* re-try while it has room (a loop, not a chain)."""
        queue = self._queued.get(source)
        if queue is None or queue.draining:
            return
        queue.draining = True
        try:
            while queue.waiters and self._has_room(source):
                queue.waiters.popleft().callback(None)
        finally:
            queue.draining = False
        if not queue.waiters and self._queued.get(source) is queue:
            del self._queued[source]

    def refusal(self, identity: str, source: str) -> tuple[float, str, bool]:
        """(seconds to wait, why, trusted) for a check of *identity* from *source* now; counts nothing."""
        now = self.clock.seconds()
        trusted = self.is_trusted(identity, source, now)
        pair = self._records.get(("p", identity, source))
        if pair is not None and (wait := pair.until - now) > 0:
            return wait, f"{pair.failures} failed checks of {identity} from {source}", trusted
        if trusted:
            return 0.0, "", True
        src = self._records.get(("s", source))
        if src is not None and (wait := src.until - now) > 0:
            return wait, f"{src.failures} failed key checks from {source}", False
        ident = self._records.get(("i", identity))
        if ident is not None and (wait := ident.until - now) > 0:
            return wait, f"{ident.failures} failed checks of {identity} from addresses it does not know", False
        return 0.0, "", False

    def is_trusted(self, identity: str, source: str, now: float | None = None) -> bool:
        at = self._trusted.get((identity, source))
        if at is None:
            return False
        if (self.clock.seconds() if now is None else now) - at < self.settings.trust_ttl:
            return True
        del self._trusted[(identity, source)]
        return False

    def failures(self, kind: str, *key: str) -> int:
        """Failures counted for ``("p", identity, source)``, ``("s", source)`` or ``("i", identity)``."""
        record = self._records.get((kind, *key))
        return record.failures if record is not None else 0

    def __len__(self) -> int:
        return len(self._records) + len(self._trusted)

    # Bookkeeping ------------------------------------------------------------------------------

    def _backoff(self, failures: int, free: int, cap: float) -> float:
        if failures < free:
            return 0.0
        return min(cap, self.settings.base * 2.0 ** min(failures - free, 40))

    def _record(self, key: tuple[str, ...]) -> _Record:
        record = self._records.get(key)
        now = self.clock.seconds()
        if record is not None and record.inflight == 0 and record.until <= now \
                and now - record.last >= self.settings.forget:
            record = None  # quiet long enough: forgotten
        if record is None:
            record = self._records[key] = _Record(last=now)
            if len(self._records) > self.settings.max_entries:
                self._bound(now)
        return record

    def _count(self, key: tuple[str, ...], free: int, cap: float, hold: float = 0.0) -> _Record:
        now = self.clock.seconds()
        record = self._record(key)
        record.failures += 1
        record.last = now
        record.until = max(record.until, now + max(hold, self._backoff(record.failures, free, cap)))
        return record

    def _failed(self, identity: str, source: str, trusted: bool, hold: float) -> None:
        s = self.settings
        self.counters["failed"] += 1
        pair = self._count(("p", identity, source), s.pair_free, s.identity_max, hold)
        if pair.failures <= s.pair_free:
            # One address's share: beyond pair_free its failures on this identity only slow the pair
            # down, so a single address can neither run up its identity's backoff (a weapon against the
            # owner) nor its own source count by retrying one identity (a NAT with a broken camera).
            self._count(("s", source), s.source_free, s.source_max)
            if not trusted:
                self._count(("i", identity), s.identity_free, s.identity_max)

    def _succeeded(self, identity: str, source: str) -> None:
        self.counters["succeeded"] += 1
        self._records.pop(("p", identity, source), None)
        self._records.pop(("i", identity), None)
        self._trusted.pop((identity, source), None)  # re-inserted last: the newest survive _bound
        self._trusted[(identity, source)] = self.clock.seconds()
        if len(self._trusted) > self.settings.max_entries:
            self._bound(self.clock.seconds())

    def _release(self, identity: str, gate: _Gate) -> None:
        """Hand *identity*'s gate to the next waiting check.  A loop, not a chain: a waiter that is
        refused at once releases inside ``callback`` and the loop wakes the next, so 1,000 waiting
        checks do not nest 1,000 deep."""
        gate.held = False
        if gate.draining:
            return
        gate.draining = True
        try:
            while not gate.held and gate.waiters:
                turn = gate.waiters.popleft()
                gate.held = True
                turn.callback(None)
        finally:
            gate.draining = False
        if not gate.held and not gate.waiters and self._gates.get(identity) is gate:
            del self._gates[identity]

    def _bound(self, now: float) -> None:
        s = self.settings
        self._records = {k: r for k, r in self._records.items()
                         if r.inflight or r.until > now or now - r.last < s.forget}
        if len(self._records) > s.max_entries * 3 // 4:
            newest = sorted(self._records.items(), key=lambda item: (item[1].inflight > 0, item[1].last),
                            reverse=True)
            self._records = dict(newest[:max(1, s.max_entries // 2)])
        self._trusted = {k: at for k, at in self._trusted.items() if now - at < s.trust_ttl}
        if len(self._trusted) > s.max_entries * 3 // 4:
            self._trusted = dict(list(self._trusted.items())[-max(1, s.max_entries // 2):])

    def _note_refusal(self, source: str, identity: str, reason: str) -> None:
        self.refusals.event(source, f"key checks from {source} refused",
                            "key check of {identity} from {source} refused: {reason}", identity=identity,
                            source=source, reason=reason)
