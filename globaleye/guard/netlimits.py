"""Connection limits for every listening role: per source address, per role, in all.

One address held 19,990 idle connections to the gateway and, at the process's
descriptor limit, every role failed until the login timeout freed them.  A
:class:`ConnectionLimits` shared by all listeners of the process prevents that:

* **per address**: at most ``per_address`` connections from one source address
  (an IPv6 /64 counts as one address, IPv4-mapped IPv6 as its IPv4) to one role;
* **in all**: at most ``total`` connections to all roles together, derived from
  the descriptor limit minus a ``headroom`` kept for the database, log files,
  TURN relay sockets and connections the platform makes itself;
* **per role**: at most ``role_share`` of ``total`` to one role, so a flood of
  one role from many addresses still leaves room for the others;
* **pre-login deadlines shrink under pressure**: once a role (or the whole
  process) is past ``pressure`` of its budget, a connection that has not
  "established" itself (the gateway: logged in; RTSP: holds a session; HTTP: sent
  a whole request; TURN: has an allocation) within a deadline that falls
  linearly from the role's own timeout to ``min_deadline`` is closed.

A refused connection is closed at once (``buildProtocol`` returns None, the
listening port closes the socket before reading a byte).  Refusals are logged
once per role, address and reason at the first one and then as a count per
``log_interval``, never one line per connection.

The wrapper does not stand between the protocol and its transport: the inner
protocol gets the real transport (``os.splice`` of TURN data connections, TLS and
``IHalfCloseableProtocol`` work as before); only the transport's calls into the
protocol pass through :class:`_Tracked`.  Time comes from the injected reactor.
"""

from __future__ import annotations

import collections
import resource as rlimit
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from globaleye.util.peerkey import source_address
from txturn.logsummary import LogSummary

log = Logger(namespace="globaleye.guard.netlimits")

#: Distinct (role, address, reason) keys one summary interval keeps; beyond, refusals are counted together.
MAX_SUMMARY_KEYS = 1000


#: The unit a per-address limit counts: the IPv4 address, or the IPv6 /64 (the platform's one helper).
address_group = source_address


def descriptor_limit() -> int:
    """The process's soft RLIMIT_NOFILE (what ``tap.raise_file_limit`` lifted it to)."""
    soft, _hard = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)
    if soft == rlimit.RLIM_INFINITY:
        return 1 << 20
    return int(soft)


@attrs.frozen
class LimitSettings:
    #: Connections one address (IPv6: one /64) may hold to one role; 0: no limit.
    per_address: int = 256
    #: Connections to all roles together; 0: the descriptor limit minus ``headroom``.
    total: int = 0
    #: Descriptors kept free for everything that is not an accepted connection (with ``total = 0``).
    headroom: int = 256
    #: Fraction of ``total`` one role may use.
    role_share: float = 0.75
    #: Fraction of a budget (a role's share, or ``total``) above which pre-login deadlines shrink.
    pressure: float = 0.5
    #: The shortest pre-login deadline, reached when a budget is full.
    min_deadline: float = 2.0
    #: Seconds between two summary lines of refusals.
    log_interval: float = 60.0

    def resolved_total(self, limit: int | None = None) -> int:
        if self.total > 0:
            return self.total
        limit = descriptor_limit() if limit is None else limit
        return max(16, limit - self.headroom)


class SummaryLog(LogSummary):
    """Refusals through the platform's one summariser (:class:`txturn.logsummary.LogSummary`): the
    first of a (what, peer, reason) in an interval in full, the others counted in one line, so a
    flood costs one or two lines per peer and interval, never one per connection."""

    def __init__(self, reactor: Any, interval: float, logger: Logger | None = None) -> None:
        super().__init__(logger or log, reactor, interval=interval, max_keys=MAX_SUMMARY_KEYS,
                         level=LogLevel.warn, name="refused connections")

    def note(self, what: str, peer: str, reason: str) -> None:
        self.event((what, peer, reason), f"{what}: refused {peer} ({reason})",
                   "{what}: refusing {peer}: {reason} (repeats summarised every {interval:g} s)",
                   what=what, peer=peer, reason=reason, interval=self.interval)


@attrs.define(eq=False)
class _RoleState:
    name: str
    budget: int
    base_deadline: float | None
    established: Callable[[Any], bool] | None
    open: int = 0
    by_address: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: Connections not yet established, oldest first (value: when they were accepted).
    pending: collections.OrderedDict[_Tracked, float] = attrs.field(factory=collections.OrderedDict)


class ConnectionLimits:
    """The shared counters; :meth:`wrap` gives each listener its limited factory."""

    def __init__(self, reactor: Any, settings: LimitSettings | None = None, fd_limit: int | None = None) -> None:
        self.reactor = reactor
        self.settings = settings or LimitSettings()
        self.total = self.settings.resolved_total(fd_limit)
        self.open = 0
        self.roles: dict[str, _RoleState] = {}
        #: Connections refused (or dropped under load) per role.
        self.refused: collections.Counter[str] = collections.Counter()
        self.summary = SummaryLog(reactor, self.settings.log_interval)

    def wrap(self, role: str, factory: Any, *, deadline: float | None = None,
             established: Callable[[Any], bool] | None = None) -> LimitedFactory:
        """A factory for *role* that admits connections within the limits.

        *deadline* is the role's own pre-login timeout (the starting point of the shrinking
        deadline) and *established(protocol)* tells whether a connection has got past it; the
        protocol given is the innermost one (below TLS).  Without them the role only has caps.
        """
        budget = max(1, int(self.total * self.settings.role_share))
        self.roles[role] = _RoleState(role, budget, deadline, established)
        return LimitedFactory(self, role, factory)

    # -- accounting

    def pressure(self, role: str) -> float:
        state = self.roles[role]
        return max(state.open / state.budget, self.open / self.total)

    def deadline(self, role: str) -> float | None:
        """The pre-login deadline for *role* now, or None while there is no pressure."""
        state = self.roles[role]
        if state.base_deadline is None or state.established is None:
            return None
        start = self.settings.pressure
        p = self.pressure(role)
        if p < start:
            return None
        fraction = min(1.0, (p - start) / (1.0 - start)) if start < 1.0 else 1.0
        return max(self.settings.min_deadline, state.base_deadline * (1.0 - fraction))

    def _admit(self, role: str, group: str) -> str | None:
        state = self.roles[role]
        s = self.settings
        if s.per_address and state.by_address[group] >= s.per_address:
            return f"{s.per_address} connections from this address"
        if self.open >= self.total:
            return f"{self.total} connections in all"
        if state.open >= state.budget:
            return f"{state.budget} connections to {role}"
        return None

    def _opened(self, tracked: _Tracked) -> None:
        state = self.roles[tracked.role]
        self.open += 1
        state.open += 1
        state.by_address[tracked.group] += 1
        if state.established is None or state.base_deadline is None:
            return
        # Every connection is pending until established, so that connections accepted before the
        # pressure rose are held to the shrunk deadline too (by the sweep below, oldest first).
        now = self.reactor.seconds()
        deadline = self.deadline(tracked.role)
        if deadline is not None:
            self._sweep(state, now, deadline)
        state.pending[tracked] = now
        if deadline is not None:
            tracked.timer = self.reactor.callLater(deadline, self._expire, tracked)

    def _closed(self, tracked: _Tracked) -> None:
        state = self.roles[tracked.role]
        self.open -= 1
        state.open -= 1
        state.by_address[tracked.group] -= 1
        if state.by_address[tracked.group] <= 0:
            del state.by_address[tracked.group]
        state.pending.pop(tracked, None)
        if tracked.timer is not None and tracked.timer.active():
            tracked.timer.cancel()
        tracked.timer = None

    def _is_established(self, state: _RoleState, tracked: _Tracked) -> bool:
        assert state.established is not None
        try:
            return bool(state.established(tracked.innermost()))
        except Exception:
            log.failure("checking whether a {role} connection is established", role=state.name)
            return True

    def _sweep(self, state: _RoleState, now: float, deadline: float) -> None:
        """Under pressure: close the oldest pending connections that are past today's deadline."""
        while state.pending:
            tracked, since = next(iter(state.pending.items()))
            if self._is_established(state, tracked):
                del state.pending[tracked]
                continue
            if now - since < deadline:
                return
            del state.pending[tracked]
            self._drop(tracked, now - since)

    def _expire(self, tracked: _Tracked) -> None:
        tracked.timer = None
        state = self.roles[tracked.role]
        since = state.pending.pop(tracked, None)
        if since is None or tracked.closed or self._is_established(state, tracked):
            return
        self._drop(tracked, self.reactor.seconds() - since)

    def _drop(self, tracked: _Tracked, age: float) -> None:
        self._refusal(tracked.role, tracked.group, "not logged in in time under load")
        tracked.abort()

    # -- logging

    def _refusal(self, role: str, group: str, reason: str) -> None:
        self.refused[role] += 1
        self.summary.note(role, group, reason)

    def stop(self) -> None:
        self.summary.flush()


class LimitedFactory(Factory):
    """Wraps a listener's factory; refused connections get no protocol (closed at once)."""

    noisy = False

    def __init__(self, limits: ConnectionLimits, role: str, wrapped: Any) -> None:
        self.limits = limits
        self.role = role
        self.wrapped = wrapped

    def doStart(self) -> None:  # noqa: N802
        self.wrapped.doStart()

    def doStop(self) -> None:  # noqa: N802
        self.wrapped.doStop()

    def buildProtocol(self, addr: Any) -> Protocol | None:  # noqa: N802
        group = address_group(str(getattr(addr, "host", addr)))
        reason = self.limits._admit(self.role, group)
        if reason is not None:
            self.limits._refusal(self.role, group, reason)
            return None
        inner = self.wrapped.buildProtocol(addr)
        if inner is None:
            return None
        return _Tracked(self.limits, self.role, group, inner)  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


@implementer(IProtocol)
class _Tracked:
    """Counts one connection; forwards the transport's calls to the protocol it wraps."""

    def __init__(self, limits: ConnectionLimits, role: str, group: str, inner: Any) -> None:
        self.limits = limits
        self.role = role
        self.group = group
        self.inner = inner
        self.transport: Any = None
        self.timer: Any = None
        self.closed = False
        self.counted = False
        directlyProvides(self, providedBy(inner))  # IHalfCloseableProtocol, IHandshakeListener, ...

    def innermost(self) -> Any:
        p = self.inner
        while getattr(p, "wrappedProtocol", None) is not None:
            p = p.wrappedProtocol
        return p

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abortConnection()

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport
        self.counted = True
        self.limits._opened(self)
        self.inner.makeConnection(transport)

    def connectionMade(self) -> None:  # noqa: N802
        """The inner protocol's own makeConnection calls its connectionMade."""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        if not self.closed:
            self.closed = True
            if self.counted:
                self.limits._closed(self)
        self.inner.connectionLost(reason)

    def readConnectionLost(self) -> None:  # noqa: N802
        self.inner.readConnectionLost()

    def writeConnectionLost(self) -> None:  # noqa: N802
        self.inner.writeConnectionLost()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
