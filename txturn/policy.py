"""Operator policy for the TURN server: which peers may be relayed to, how many
allocations a user (and the whole server) may hold, how fast an allocation may
push bytes, and which ports relays may bind.

These are kept apart from the protocol state machine so an operator can reason
about (and test) the safety rules without reading TURN code.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol, TypeVar

import attrs

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Peers a public relay must never reach unless the operator allows them
#: explicitly: otherwise any TURN user could use the relay to probe or attack the
#: operator's own internal network (the classic TURN SSRF).  Same spirit as
#: coturn's ``no-loopback-peers`` / ``denied-peer-ip`` defaults.
DEFAULT_DENIED: tuple[str, ...] = (
    "0.0.0.0/8",  # "this network", includes the unspecified address
    "10.0.0.0/8",  # RFC 1918
    "100.64.0.0/10",  # RFC 6598 carrier-grade NAT
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local
    "172.16.0.0/12",  # RFC 1918
    "192.0.0.0/24",  # IETF protocol assignments
    "192.168.0.0/16",  # RFC 1918
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, includes broadcast
    "::/128",  # unspecified
    "::1/128",  # loopback
    "fc00::/7",  # ULA
    "fe80::/10",  # link-local
    "ff00::/8",  # multicast
)


def _networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits (RFC 6052
#: NAT64 well-known prefix and RFC 8215 local-use prefix).
_NAT64_PREFIXES: tuple[ipaddress.IPv6Network, ...] = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _normalise(host: str) -> IPAddr:
    """Parse ``host``; IPv4-mapped IPv6 addresses are judged as the IPv4 address
    they carry, so ``::ffff:127.0.0.1`` cannot sneak past a 127/8 deny rule."""
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def embedded_ipv4(addr: IPAddr) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address stands for on some path: IPv4-mapped
    (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``, deprecated but still
    routed by some stacks), NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``), 6to4
    (``2002::/16``) and Teredo (``2001::/32``: the server and the client's
    inverted address).  A relay towards any of them reaches that IPv4 host
    through a translator, so the peer policy judges each of them as well."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return ()
    found: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    elif addr in _IPV4_COMPATIBLE and int(addr) > 1:  # :: and ::1 are IPv6's own
        found.append(low32)
    if any(addr in net for net in _NAT64_PREFIXES):
        found.append(low32)
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    return tuple(found)


def _contains(nets: tuple[IPNetwork, ...], addr: IPAddr) -> IPNetwork | None:
    for net in nets:
        if addr.version == net.version and addr in net:
            return net
    return None


@attrs.define(frozen=True)
class PeerFilter:
    """Decides whether a peer address may be relayed to / accepted from.

    Order: an explicit ``deny`` always wins; then an explicit ``allow`` overrides
    the built-in default deny list; anything else is allowed.
    """

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()
    default_deny: tuple[IPNetwork, ...] = attrs.field(factory=lambda: _networks(DEFAULT_DENIED))

    @classmethod
    def from_cidrs(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> PeerFilter:
        return cls(allow=_networks(allow), deny=_networks(deny))

    def check(self, host: str) -> str | None:
        """Return ``None`` if ``host`` may be relayed, else a human reason.

        The address and every IPv4 address embedded in it (:func:`embedded_ipv4`)
        must pass: ``::127.0.0.1``, ``64:ff9b::7f00:1`` or ``2002:7f00:1::1``
        are refused like ``127.0.0.1`` unless the IPv4 address is allowed."""
        try:
            addr = _normalise(host)
        except ValueError:
            return f"not an IP address: {host!r}"
        for candidate in (addr, *embedded_ipv4(addr)):
            why = self._check_one(candidate)
            if why is not None:
                if candidate is not addr:
                    return f"{addr} embeds {why}"
                return why
        return None

    def _check_one(self, addr: IPAddr) -> str | None:
        net = _contains(self.deny, addr)
        if net is not None:
            return f"{addr} is in denied range {net}"
        if _contains(self.allow, addr) is not None:
            return None
        net = _contains(self.default_deny, addr)
        if net is not None:
            return f"{addr} is in default-denied range {net} (add it to allow_peers to relay there)"
        return None

    def allowed(self, host: str) -> bool:
        return self.check(host) is None


@attrs.define
class Quotas:
    """Allocation counters.  ``None`` means unlimited.

    The per-user limit answers 486 (the user's fault, RFC 8656 §7.2); the total
    limit answers 508 (the server's capacity).  ``class_quotas`` caps the
    allocations of each named user class (508 too: that class's pool is full),
    counted inside the total, so what a class cannot take stays for the others.
    """

    user_quota: int | None = None
    total_quota: int | None = None
    class_quotas: Mapping[str, int] = attrs.field(factory=dict)
    per_user: dict[str, int] = attrs.field(factory=dict)
    per_class: dict[str, int] = attrs.field(factory=dict)
    total: int = 0

    def refusal(self, username: str, quota: int | None = None, quota_class: str = "") -> tuple[int, str] | None:
        """Why *username* (with its own *quota*, if any, and *quota_class*) may not allocate now."""
        limit = quota if quota is not None else self.user_quota
        if limit is not None and self.per_user.get(username, 0) >= limit:
            return 486, "Allocation Quota Reached"
        pool = self.class_quotas.get(quota_class) if quota_class else None
        if pool is not None and self.per_class.get(quota_class, 0) >= pool:
            return 508, "Insufficient Capacity"
        if self.total_quota is not None and self.total >= self.total_quota:
            return 508, "Insufficient Capacity"
        return None

    def acquire(self, username: str, quota_class: str = "") -> None:
        self.per_user[username] = self.per_user.get(username, 0) + 1
        if quota_class:
            self.per_class[quota_class] = self.per_class.get(quota_class, 0) + 1
        self.total += 1

    def release(self, username: str, quota_class: str = "") -> None:
        left = self.per_user.get(username, 0) - 1
        if left > 0:
            self.per_user[username] = left
        else:
            self.per_user.pop(username, None)
        if quota_class:
            remaining = self.per_class.get(quota_class, 0) - 1
            if remaining > 0:
                self.per_class[quota_class] = remaining
            else:
                self.per_class.pop(quota_class, None)
        self.total = max(0, self.total - 1)


class _Clock(Protocol):
    def seconds(self) -> float: ...

    def callLater(self, delay: float, f: Callable[..., object], *a: object) -> object: ...  # noqa: N802


class Pausable(Protocol):
    def pauseProducing(self) -> None: ...  # noqa: N802

    def resumeProducing(self) -> None: ...  # noqa: N802


@attrs.define(eq=False)
class Throttle:
    """A token bucket (``rate`` bytes/s, ``burst`` bytes) driven by the reactor clock.

    Bytes already read are always forwarded (``consume`` may take the bucket into
    debt); what the bucket controls is whether producers keep reading.  When in
    debt every registered producer is paused and a timer resumes them once the
    debt is repaid -- the reactor is never blocked and nothing is dropped on
    stream relays.  Datagram relays ask ``exhausted`` and drop instead, because a
    UDP socket shared by many clients cannot be paused for one.
    """

    rate: float
    clock: _Clock
    burst: float = 0.0
    tokens: float = attrs.field(default=0.0)
    stamp: float = attrs.field(default=0.0)
    producers: list[Pausable] = attrs.field(factory=list)
    paused: bool = False
    _timer: object = None

    def __attrs_post_init__(self) -> None:
        if self.burst <= 0:
            self.burst = max(self.rate, 1500.0)
        self.tokens = self.burst
        self.stamp = self.clock.seconds()

    def _refill(self) -> None:
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    @property
    def exhausted(self) -> bool:
        self._refill()
        return self.tokens <= 0

    def register(self, producer: Pausable) -> None:
        self.producers.append(producer)
        if self.paused:
            producer.pauseProducing()

    def unregister(self, producer: Pausable) -> None:
        if producer in self.producers:
            self.producers.remove(producer)

    def consume(self, n: int) -> None:
        self._refill()
        self.tokens -= n
        if self.tokens < 0 and not self.paused:
            self.paused = True
            for p in list(self.producers):
                p.pauseProducing()
            self._timer = self.clock.callLater(-self.tokens / self.rate, self._wake)

    def _wake(self) -> None:
        self._timer = None
        self._refill()
        if self.tokens < 0:
            self._timer = self.clock.callLater(-self.tokens / self.rate, self._wake)
            return
        self.paused = False
        for p in list(self.producers):
            p.resumeProducing()

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and getattr(timer, "active", lambda: False)():
            timer.cancel()  # type: ignore[attr-defined]
        self.producers.clear()


def parse_port_range(spec: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``"49152-65535"`` or ``(49152, 65535)`` -> ``(49152, 65535)``; ``"0"`` means
    "any free port chosen by the kernel" and is returned as ``(0, 0)``."""
    if isinstance(spec, str):
        if "-" in spec:
            lo_s, hi_s = spec.split("-", 1)
            lo, hi = int(lo_s), int(hi_s)
        else:
            lo = hi = int(spec)
    else:
        lo, hi = int(spec[0]), int(spec[1])
    if not (0 <= lo <= hi <= 65535):
        raise ValueError(f"bad relay port range {spec!r}")
    return lo, hi


class NoPortAvailable(Exception):
    """Every candidate relay port was taken (answered with 508)."""


T = TypeVar("T")


@attrs.define
class PortAllocator:
    """Hands out relay ports from a range by trying to bind random candidates.

    Binding is the only reliable test of "free" (other processes share the
    range), so the caller supplies ``bind(port)`` which raises ``OSError`` (or
    twisted's CannotListenError) on failure.  Random order makes relay ports
    unpredictable to off-path attackers (RFC 8656 §7.2 recommends it).
    """

    low: int
    high: int
    attempts: int = 64
    in_use: set[int] = attrs.field(factory=set)
    rng: random.Random = attrs.field(factory=random.SystemRandom)

    def _candidates(self, even: bool) -> Iterator[int]:
        """From a random starting point, walk the range (wrapping) so that a
        nearly full range is still searched completely, up to ``attempts`` binds."""
        if self.low == 0:
            yield 0
            return
        span = self.high - self.low + 1
        start = self.rng.randrange(span)
        tried = 0
        for i in range(span):
            port = self.low + (start + i) % span
            if (even and port % 2) or port in self.in_use:
                continue
            yield port
            tried += 1
            if tried >= self.attempts:
                return

    def acquire(self, bind: Callable[[int], T], *, even: bool = False) -> tuple[int, T]:
        last: Exception | None = None
        for port in self._candidates(even):
            try:
                result = bind(port)
            except Exception as e:  # CannotListenError, OSError
                last = e
                continue
            if port:
                self.in_use.add(port)
            return port, result
        raise NoPortAvailable(f"no free relay port in {self.low}-{self.high}: {last}")

    def release(self, port: int) -> None:
        self.in_use.discard(port)
