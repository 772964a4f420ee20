"""The TURN allocation state machine (RFC 5766/8656, RFC 6062 control side).

``TurnServer`` holds all state -- allocations keyed by 5-tuple, permissions and
channel bindings with their lifetimes, RFC 6062 connections keyed by
CONNECTION-ID, the per-user and per-class quotas, the long-term credential check
(opaque 401s, the :class:`~txturn.auth.AuthGuard` hook) -- and answers requests.
It talks to clients through small "link" objects (``send``, ``close``,
``five_tuple``, ``stream``) so the same code serves UDP, TCP and TLS; the Twisted
protocols that own the sockets are in :mod:`txturn.transports`, the RFC 6062 data
path (``Pipe``/``SplicePump``) in :mod:`txturn.splice`.

All time comes from the reactor (``IReactorTime``) so tests drive lifetimes,
nonces, permissions and channels with ``task.Clock``.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import secrets
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel

from txturn import stun
from txturn.auth import AuthGuard, Credential, CredentialLookup, NonceIssuer
from txturn.logsummary import LogSummary
from txturn.policy import NoPortAvailable, PeerFilter, PortAllocator, Quotas, Throttle
from txturn.splice import Pipe

if TYPE_CHECKING:
    from txturn.transports import PeerProtocol, TurnStreamProtocol

M = stun.Method
C = stun.Class
A = stun.Attr

log = Logger(namespace="txturn.turnserver")

Address = tuple[str, int]

#: 0.0.0.0:0 in CreatePermission: spec §14's "any peer" wildcard.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})

TRANSPORT_UDP = 17
TRANSPORT_TCP = 6


@attrs.define
class ServerSettings:
    """Runtime knobs of ``TurnServer`` (``service.TurnServerConfig`` maps onto these)."""

    realm: str = "txturn"
    software: str | None = "txturn"
    relay_interface: str = "127.0.0.1"
    external_ip: str | None = None
    relay_ports: tuple[int, int] = (49152, 65535)
    allow_peers: tuple[str, ...] = ()
    deny_peers: tuple[str, ...] = ()
    user_quota: int | None = None
    total_quota: int | None = None
    #: Allocations in all per user class (``Credential.quota_class``), inside total_quota.
    class_quotas: Mapping[str, int] = attrs.field(factory=dict)
    max_bps: int | None = None
    default_lifetime: int = 600
    max_lifetime: int = 3600
    permission_lifetime: int = 300
    channel_lifetime: int = 600
    nonce_lifetime: int = 600
    #: RFC 6062 §5.3: a pending connection not bound within 30 s is closed.
    connection_bind_timeout: float = 30.0
    connect_timeout: float = 30.0
    reservation_lifetime: float = 30.0
    #: Peer bytes buffered before ConnectionBind; above this we stop reading the peer.
    early_buffer_limit: int = 256 * 1024
    use_splice: bool = True


@attrs.frozen
class FiveTuple:
    proto: str
    client: Address
    server: Address


def _host_port(addr: Any) -> Address:
    return (addr.host, addr.port)


def _family(host: str) -> int:
    """REQUESTED-ADDRESS-FAMILY code: 1 for IPv4, 2 for IPv6."""
    return 2 if ":" in host else 1


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


# --------------------------------------------------------------------------- state


@attrs.define(eq=False)
class ChannelBinding:
    number: int
    peer: Address
    expires: float


@attrs.define(eq=False)
class Allocation:
    """One relayed transport address and everything hanging off it."""

    five_tuple: FiveTuple
    link: Any
    username: str
    realm: str
    credential: Credential
    transaction_id: bytes
    transport: int
    relay_address: Address  # advertised (external_ip applied)
    relay_bound: Address  # what the socket is really bound to
    relay_port: Any  # IListeningPort
    created: float
    expires: float
    success_response: bytes = b""
    permissions: dict[str, float] = attrs.field(factory=dict)
    wildcard_until: float = 0.0
    channels: dict[int, ChannelBinding] = attrs.field(factory=dict)
    peer_channels: dict[Address, int] = attrs.field(factory=dict)
    connections: dict[int, PeerConnection] = attrs.field(factory=dict)
    connecting: set[Address] = attrs.field(factory=set)
    throttle: Throttle | None = None
    expiry_call: Any = None
    bytes_to_peer: int = 0
    bytes_from_peer: int = 0
    deleted: bool = False
    extra_ports: list[Any] = attrs.field(factory=list)

    @property
    def key(self) -> bytes:
        return self.credential.key

    def permitted(self, host: str, now: float) -> bool:
        if self.wildcard_until > now:
            return True
        return self.permissions.get(_canonical(host), 0.0) > now

    def channel_for_peer(self, peer: Address, now: float) -> int | None:
        number = self.peer_channels.get(peer)
        if number is None:
            return None
        binding = self.channels.get(number)
        return number if binding is not None and binding.expires > now else None


def _canonical(host: str) -> str:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


@attrs.define(eq=False)
class PeerConnection:
    """An RFC 6062 peer data connection, pending until ConnectionBind pairs it."""

    connection_id: int
    allocation: Allocation
    peer: Address
    proto: PeerProtocol
    early: bytearray = attrs.field(factory=bytearray)
    peer_eof: bool = False
    timer: Any = None
    pipe: Pipe | None = None
    closed: bool = False


@attrs.define(eq=False)
class _Ctx:
    """One authenticated request being answered."""

    msg: stun.Message
    link: Any
    username: str
    credential: Credential
    fingerprint: bool
    after: Callable[[], None] | None = None


class _Refusal(Exception):
    def __init__(self, code: int, reason: str, peer: Address | None = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.peer = peer


# --------------------------------------------------------------------------- server


class TurnServer:
    """The TURN state machine.  Protocols feed it messages; it answers through links.

    It opens relay sockets with the classes below, which :class:`txturn.turnserver.TurnServer`
    fills in from :mod:`txturn.transports`: the state machine imports no transport.
    """

    #: ``(server) -> DatagramProtocol`` of a UDP relay port.
    udp_relay_protocol: Any = None
    #: ``(server) -> ServerFactory`` of an RFC 6062 TCP relay port.
    tcp_relay_factory: Any = None
    #: ``(server, allocation) -> ClientFactory`` of an RFC 6062 Connect to a peer.
    connect_factory: Any = None

    def __init__(
        self,
        lookup: CredentialLookup,
        settings: ServerSettings | None = None,
        reactor: Any = None,
        guard: AuthGuard | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.settings = settings or ServerSettings()
        self.lookup = lookup
        #: Throttles credential checks (None: unthrottled); see :class:`txturn.auth.AuthGuard`.
        self.guard = guard
        if self.udp_relay_protocol is None:
            raise TypeError("txturn.allocation.TurnServer has no relay sockets: use txturn.turnserver.TurnServer")
        s = self.settings
        self.nonces = NonceIssuer(clock=reactor, lifetime=s.nonce_lifetime)
        self.peer_filter = PeerFilter.from_cidrs(s.allow_peers, s.deny_peers)
        self.quotas = Quotas(s.user_quota, s.total_quota, dict(s.class_quotas))
        self.ports = PortAllocator(*s.relay_ports)
        self.allocations: dict[FiveTuple, Allocation] = {}
        self.connections: dict[int, PeerConnection] = {}
        self.reservations: dict[bytes, tuple[Any, Any]] = {}
        self.splice_enabled = s.use_splice and hasattr(os, "splice")
        self.pipes: set[Pipe] = set()
        #: How many bound connections moved to the os.splice path (for tests/ops).
        self.stats_spliced = 0

    # ------------------------------------------------------------- plumbing

    def now(self) -> float:
        return self.reactor.seconds()

    def _response(
        self,
        req: stun.Message,
        attributes: dict[int, Any],
        *,
        key: bytes | None = None,
        fingerprint: bool = False,
        msg_class: int = C.SUCCESS,
    ) -> bytes:
        attrs_ = dict(attributes)
        if self.settings.software:
            attrs_[A.SOFTWARE] = self.settings.software
        msg = stun.Message(req.method, msg_class, req.transaction_id, attrs_)
        return stun.encode(msg, integrity_key=key, fingerprint=fingerprint)

    def _error(
        self,
        req: stun.Message,
        link: Any,
        code: int,
        reason: str,
        *,
        key: bytes | None = None,
        fingerprint: bool = False,
        extra: dict[int, Any] | None = None,
        peer: Address | None = None,
        username: str | None = None,
        detail: str | None = None,
    ) -> bytes:
        """An error answer; *detail* (logged, never sent) says more than the *reason* the client sees."""
        if code not in (401, 438) or username is not None:
            # Once per client address and code a minute in full, then counted (a client repeating a
            # refused request, or guessing passwords, must not write a line per request).
            client_host = link.client_addr[0]
            self.refusals_log.event(
                (client_host, code),
                f"TURN refused {code} to {client_host}",
                "refused {method} from {client} user={user!r} peer={peer}: {code} {reason}",
                method=_method_name(req.method),
                client=link.five_tuple,
                user=username,
                peer=peer,
                code=code,
                reason=detail or reason,
            )
        attributes: dict[int, Any] = {A.ERROR_CODE: (code, reason)}
        attributes.update(extra or {})
        return self._response(req, attributes, key=key, fingerprint=fingerprint, msg_class=C.ERROR)

    def _challenge(self) -> dict[int, Any]:
        return {A.REALM: self.settings.realm, A.NONCE: self.nonces.issue()}

    # ------------------------------------------------------------- entry points

    @functools.cached_property
    def malformed(self) -> LogSummary:
        """Undecodable packets are logged once per client address and minute, then counted."""
        return LogSummary(log, self.reactor, interval=60.0, level=LogLevel.debug, name="TURN malformed packets")

    @functools.cached_property
    def refusals_log(self) -> LogSummary:
        """Refused requests are logged once per client address and error code a minute, then counted."""
        return LogSummary(log, self.reactor, interval=60.0, level=LogLevel.info, name="TURN refusals")

    def _malformed(self, client: Any, address: Address, what: str, error: Exception) -> None:
        self.malformed.event((address[0], what), f"{what} from {address[0]}", "{what} from {client}: {e}", what=what,
                             client=client, e=error)

    async def handle_stun(self, raw: bytes, link: Any) -> None:
        """Process one whole STUN message from ``link``."""
        try:
            msg = stun.decode(raw)
        except stun.StunDecodeError as e:
            self._malformed(link.five_tuple, link.client_addr, "undecodable STUN", e)
            return
        if msg.msg_class == C.REQUEST:
            if msg.method == M.BINDING:
                link.send(self._binding(msg, link))
                return
            if not msg.cookie:
                return  # RFC 3489 clients only ever get Binding answers
            ctx_box: list[_Ctx] = []
            reply = await self._request(msg, raw, link, ctx_box)
            if reply is not None:
                link.send(reply)
            if ctx_box and ctx_box[0].after is not None:
                ctx_box[0].after()
        elif msg.msg_class == C.INDICATION and msg.method == M.SEND:
            self._send_indication(msg, link)

    def _binding(self, msg: stun.Message, link: Any) -> bytes:
        """Every TURN port answers STUN Binding (RFC 5389 and classic RFC 3489)."""
        return self._binding_response(msg, link.client_addr, link.five_tuple.server)

    def _binding_response(self, msg: stun.Message, client: Address, server: Address) -> bytes:
        attributes: dict[int, Any] = {}
        if msg.cookie:
            attributes[A.XOR_MAPPED_ADDRESS] = client
        else:
            attributes[A.MAPPED_ADDRESS] = client
            attributes[A.SOURCE_ADDRESS] = server
        return self._response(msg, attributes, fingerprint=A.FINGERPRINT in msg.attributes)

    def binding_reply(self, raw: bytes, client: Address, server: Address) -> bytes | None:
        """Fast path for a datagram whose type word is Binding request (0x0001):
        the same answer ``handle_stun`` gives, computed synchronously -- no link
        object, coroutine or Deferred per request.  None if it does not decode."""
        try:
            msg = stun.decode(raw)
        except stun.StunDecodeError as e:
            self._malformed(client, client, "undecodable STUN", e)
            return None
        if msg.msg_class != C.REQUEST or msg.method != M.BINDING:  # pragma: no cover
            return None
        return self._binding_response(msg, client, server)

    def handle_channel_data(self, frame: bytes, link: Any) -> None:
        """ChannelData from the client: forward to the bound peer, else drop."""
        if len(frame) < 4:
            return
        number, length = struct.unpack("!HH", frame[:4])
        data = frame[4 : 4 + length]
        if len(data) != length:
            return
        alloc = self.allocations.get(link.five_tuple)
        if alloc is None or alloc.transport != TRANSPORT_UDP:
            return
        now = self.now()
        binding = alloc.channels.get(number)
        if binding is None or binding.expires <= now:
            return
        self._relay_to_peer(alloc, binding.peer, data)

    # ------------------------------------------------------------- auth

    async def _authenticate(
        self, msg: stun.Message, raw: bytes, link: Any
    ) -> tuple[str, Credential] | bytes:
        """RFC 5389 §10.2.2, with one liberty: a nonce we cannot verify (e.g.
        issued before a restart) is answered 438 rather than 401, because 438
        makes every client retry with the fresh nonce while a second 401 makes
        many give up."""
        if A.MESSAGE_INTEGRITY not in msg.attributes:
            return self._error(msg, link, 401, "Unauthorized", extra=self._challenge())
        username = msg.attributes.get(A.USERNAME)
        realm = msg.attributes.get(A.REALM)
        nonce = msg.attributes.get(A.NONCE)
        if username is None or realm is None or nonce is None:
            return self._error(msg, link, 400, "Bad Request: USERNAME, REALM and NONCE required")
        if self.nonces.check(nonce) != "ok":
            return self._error(msg, link, 438, "Stale Nonce", extra=self._challenge())
        if realm != self.settings.realm:
            return self._unauthorized(msg, link, username, "wrong realm")
        # One opaque 401 for an unknown user, a bad MESSAGE-INTEGRITY and a throttled check alike,
        # so that neither the answer nor its reason tells which usernames exist or confirms a key.
        ticket = None
        if self.guard is not None:
            ticket = await self.guard.admit(username, link.client_addr)
            if ticket is None:  # the guard logs its refusals, summarised: no line per request here
                return self._error(msg, link, 401, "Unauthorized", extra=self._challenge())
        try:
            cred = await self.lookup.lookup(username, realm)
            if cred is None:
                if ticket is not None:
                    ticket.failed()
                return self._unauthorized(msg, link, username, "unknown user")
            if not stun.check_integrity(raw, cred.key):
                if ticket is not None:
                    ticket.failed()
                return self._unauthorized(msg, link, username, "bad MESSAGE-INTEGRITY")
            if ticket is not None:
                ticket.succeeded()
        finally:
            if ticket is not None:
                ticket.done()
        return username, cred

    def _unauthorized(self, msg: stun.Message, link: Any, username: str, detail: str) -> bytes:
        return self._error(
            msg, link, 401, "Unauthorized", extra=self._challenge(), username=username, detail=detail
        )

    async def _request(
        self, msg: stun.Message, raw: bytes, link: Any, ctx_box: list[_Ctx]
    ) -> bytes | None:
        fp = A.FINGERPRINT in msg.attributes
        auth = await self._authenticate(msg, raw, link)
        if isinstance(auth, bytes):
            return auth
        username, cred = auth
        ctx = _Ctx(msg, link, username, cred, fp)
        ctx_box.append(ctx)
        key = cred.key
        unknown = stun.comprehension_required_unknown(msg)
        if unknown:
            return self._error(
                msg,
                link,
                420,
                "Unknown Attribute",
                key=key,
                fingerprint=fp,
                extra={A.UNKNOWN_ATTRIBUTES: unknown},
                username=username,
            )
        handler = self._handlers.get(msg.method)
        if handler is None:
            return self._error(
                msg,
                link,
                400,
                "Bad Request: unsupported method",
                key=key,
                fingerprint=fp,
                username=username,
            )
        alloc = self.allocations.get(link.five_tuple)
        if alloc is not None and alloc.username != username:
            return self._error(
                msg, link, 441, "Wrong Credentials", key=key, fingerprint=fp, username=username
            )
        try:
            result = handler(self, ctx)
            if isinstance(result, Deferred) or hasattr(result, "__await__"):
                result = await result
            return result
        except _Refusal as r:
            return self._error(
                msg, link, r.code, r.reason, key=key, fingerprint=fp, peer=r.peer, username=username
            )

    def _ok(self, ctx: _Ctx, attributes: dict[int, Any]) -> bytes:
        return self._response(
            ctx.msg, attributes, key=ctx.credential.key, fingerprint=ctx.fingerprint
        )

    # ------------------------------------------------------------- Allocate

    def _lifetime(self, requested: int | None) -> int:
        s = self.settings
        if requested is None:
            return s.default_lifetime
        return max(s.default_lifetime, min(requested, s.max_lifetime))

    def _allocate(self, ctx: _Ctx) -> bytes:
        msg, link = ctx.msg, ctx.link
        existing = self.allocations.get(link.five_tuple)
        if existing is not None:
            if existing.transaction_id == msg.transaction_id:
                return existing.success_response  # a retransmission (RFC 8656 §7.2)
            raise _Refusal(437, "Allocation Mismatch")
        if getattr(link, "is_data_connection", False):
            raise _Refusal(400, "Bad Request: this is an RFC 6062 data connection")
        transport = msg.attributes.get(A.REQUESTED_TRANSPORT)
        if transport is None:
            raise _Refusal(400, "Bad Request: REQUESTED-TRANSPORT missing")
        if transport not in (TRANSPORT_UDP, TRANSPORT_TCP):
            raise _Refusal(442, "Unsupported Transport Protocol")
        even = msg.attributes.get(A.EVEN_PORT)
        token = msg.attributes.get(A.RESERVATION_TOKEN)
        if transport == TRANSPORT_TCP:
            if not link.stream:
                raise _Refusal(400, "Bad Request: TCP relays need a TCP/TLS control connection")
            if A.DONT_FRAGMENT in msg.attributes or even is not None or token is not None:
                raise _Refusal(400, "Bad Request: attribute not allowed with a TCP relay")
        if even is not None and token is not None:
            raise _Refusal(400, "Bad Request: EVEN-PORT with RESERVATION-TOKEN")
        relay_host = self.settings.relay_interface
        family = msg.attributes.get(A.REQUESTED_ADDRESS_FAMILY)
        if family is not None and family != _family(relay_host):
            raise _Refusal(440, "Address Family not Supported")
        refusal = self.quotas.refusal(ctx.username, ctx.credential.quota, ctx.credential.quota_class)
        if refusal is not None:
            raise _Refusal(*refusal)
        lifetime = self._lifetime(msg.attributes.get(A.LIFETIME))
        new_token: bytes | None = None
        extra_ports: list[Any] = []
        try:
            if token is not None:
                reserved = self.reservations.pop(token, None)
                if reserved is None:
                    raise _Refusal(508, "Insufficient Capacity: unknown RESERVATION-TOKEN")
                port_obj, timer = reserved
                if timer.active():
                    timer.cancel()
            elif transport == TRANSPORT_UDP:
                if even:
                    _, (port_obj, spare) = self.ports.acquire(
                        lambda p: self._bind_udp_pair(relay_host, p), even=True
                    )
                    new_token = secrets.token_bytes(8)
                    timer = self.reactor.callLater(
                        self.settings.reservation_lifetime, self._expire_reservation, new_token
                    )
                    self.reservations[new_token] = (spare, timer)
                else:
                    _, port_obj = self.ports.acquire(
                        lambda p: self.reactor.listenUDP(
                            p, self.udp_relay_protocol(self), interface=relay_host
                        ),
                        even=even is not None,
                    )
            else:
                _, port_obj = self.ports.acquire(
                    lambda p: self.reactor.listenTCP(
                        p, self.tcp_relay_factory(self), backlog=128, interface=relay_host
                    )
                )
        except NoPortAvailable as e:
            raise _Refusal(508, f"Insufficient Capacity: {e}") from None
        bound = _host_port(port_obj.getHost())
        advertised_host = self.settings.external_ip or (
            link.five_tuple.server[0] if _unspecified(bound[0]) else bound[0]
        )
        now = self.now()
        alloc = Allocation(
            five_tuple=link.five_tuple,
            link=link,
            username=ctx.username,
            realm=self.settings.realm,
            credential=ctx.credential,
            transaction_id=msg.transaction_id,
            transport=transport,
            relay_address=(advertised_host, bound[1]),
            relay_bound=bound,
            relay_port=port_obj,
            created=now,
            expires=now + lifetime,
            extra_ports=extra_ports,
        )
        if self.settings.max_bps:
            alloc.throttle = Throttle(float(self.settings.max_bps), self.reactor)
        _attach(port_obj, alloc)
        self.allocations[link.five_tuple] = alloc
        self.quotas.acquire(ctx.username, ctx.credential.quota_class)
        alloc.expiry_call = self.reactor.callLater(lifetime, self._delete, alloc, "expired")
        attributes: dict[int, Any] = {
            A.XOR_RELAYED_ADDRESS: alloc.relay_address,
            A.LIFETIME: lifetime,
            A.XOR_MAPPED_ADDRESS: link.client_addr,
        }
        if new_token is not None:
            attributes[A.RESERVATION_TOKEN] = new_token
        alloc.success_response = self._ok(ctx, attributes)
        log.info(
            "allocation start user={user!r} client={client} relay={relay} transport={t} lifetime={lt}",
            user=ctx.username,
            client=link.five_tuple,
            relay=alloc.relay_address,
            t="tcp" if transport == TRANSPORT_TCP else "udp",
            lt=lifetime,
        )
        return alloc.success_response

    def _bind_udp_pair(self, host: str, port: int) -> tuple[Any, Any]:
        """EVEN-PORT with the R bit: bind ``port`` and hold ``port + 1`` for the
        RTCP allocation that will present the RESERVATION-TOKEN."""
        if port == 0:
            raise OSError("EVEN-PORT needs a relay port range")
        first = self.reactor.listenUDP(port, self.udp_relay_protocol(self), interface=host)
        try:
            second = self.reactor.listenUDP(port + 1, self.udp_relay_protocol(self), interface=host)
        except Exception:
            first.stopListening()
            raise
        return first, second

    def _expire_reservation(self, token: bytes) -> None:
        reserved = self.reservations.pop(token, None)
        if reserved is not None:
            reserved[0].stopListening()

    # ------------------------------------------------------------- Refresh

    def _refresh(self, ctx: _Ctx) -> bytes:
        alloc = self._allocation(ctx)
        family = ctx.msg.attributes.get(A.REQUESTED_ADDRESS_FAMILY)
        if family is not None and family != _family(alloc.relay_bound[0]):
            raise _Refusal(443, "Peer Address Family Mismatch")
        requested = ctx.msg.attributes.get(A.LIFETIME)
        if requested == 0:
            response = self._ok(ctx, {A.LIFETIME: 0})
            self._delete(alloc, "refreshed with lifetime 0")
            return response
        lifetime = self._lifetime(requested)
        alloc.expires = self.now() + lifetime
        if alloc.expiry_call is not None and alloc.expiry_call.active():
            alloc.expiry_call.reset(lifetime)
        return self._ok(ctx, {A.LIFETIME: lifetime})

    def _allocation(self, ctx: _Ctx) -> Allocation:
        alloc = self.allocations.get(ctx.link.five_tuple)
        if alloc is None:
            raise _Refusal(437, "Allocation Mismatch")
        return alloc

    # ------------------------------------------------------------- permissions

    def _check_peer(self, alloc: Allocation, peer: Address) -> None:
        if _family(peer[0]) != _family(alloc.relay_bound[0]):
            raise _Refusal(443, "Peer Address Family Mismatch", peer)
        why = self.peer_filter.check(peer[0])
        if why is not None:
            raise _Refusal(403, f"Forbidden: {why}", peer)

    def _create_permission(self, ctx: _Ctx) -> bytes:
        alloc = self._allocation(ctx)
        peers = ctx.msg.values(A.XOR_PEER_ADDRESS)
        if not peers:
            raise _Refusal(400, "Bad Request: XOR-PEER-ADDRESS missing")
        wildcard = False
        hosts: list[str] = []
        for peer in peers:
            if peer[0] in WILDCARD_HOSTS:
                if not ctx.credential.wildcard_permission:
                    raise _Refusal(
                        403, "Forbidden: wildcard permission not granted to this user", peer
                    )
                wildcard = True
                continue
            self._check_peer(alloc, peer)
            hosts.append(_canonical(peer[0]))
        until = self.now() + self.settings.permission_lifetime
        for host in hosts:
            alloc.permissions[host] = until
        if wildcard:
            if alloc.wildcard_until <= self.now():
                log.info(
                    "wildcard permission for {user!r} relay={relay}",
                    user=alloc.username,
                    relay=alloc.relay_address,
                )
            alloc.wildcard_until = until
        return self._ok(ctx, {})

    def _channel_bind(self, ctx: _Ctx) -> bytes:
        alloc = self._allocation(ctx)
        if alloc.transport != TRANSPORT_UDP:
            raise _Refusal(400, "Bad Request: ChannelBind on a TCP allocation")
        number = ctx.msg.attributes.get(A.CHANNEL_NUMBER)
        peer = ctx.msg.attributes.get(A.XOR_PEER_ADDRESS)
        if number is None or peer is None:
            raise _Refusal(400, "Bad Request: CHANNEL-NUMBER and XOR-PEER-ADDRESS required")
        if not 0x4000 <= number <= 0x7FFF:
            raise _Refusal(400, f"Bad Request: channel number {number:#x} out of range")
        self._check_peer(alloc, peer)
        now = self.now()
        peer = (_canonical(peer[0]), peer[1])
        # RFC 8656 §12: a number/peer pairing lingers 5 minutes after expiry.
        linger = self.settings.permission_lifetime
        current = alloc.channels.get(number)
        if current is not None and current.peer != peer and current.expires + linger > now:
            raise _Refusal(400, "Bad Request: channel bound to another peer", peer)
        other = alloc.peer_channels.get(peer)
        if other is not None and other != number:
            other_binding = alloc.channels.get(other)
            if other_binding is not None and other_binding.expires + linger > now:
                raise _Refusal(400, "Bad Request: peer bound to another channel", peer)
        if current is not None and current.peer != peer:
            alloc.peer_channels.pop(current.peer, None)
        if other is not None and other != number:
            alloc.channels.pop(other, None)
        alloc.channels[number] = ChannelBinding(number, peer, now + self.settings.channel_lifetime)
        alloc.peer_channels[peer] = number
        alloc.permissions[peer[0]] = max(
            alloc.permissions.get(peer[0], 0.0), now + self.settings.permission_lifetime
        )
        return self._ok(ctx, {})

    # ------------------------------------------------------------- UDP relay data

    def _send_indication(self, msg: stun.Message, link: Any) -> None:
        alloc = self.allocations.get(link.five_tuple)
        if alloc is None or alloc.transport != TRANSPORT_UDP:
            return
        peer = msg.attributes.get(A.XOR_PEER_ADDRESS)
        data = msg.attributes.get(A.DATA)
        if peer is None or data is None:
            return
        self._relay_to_peer(alloc, (_canonical(peer[0]), peer[1]), data)

    def _relay_to_peer(self, alloc: Allocation, peer: Address, data: bytes) -> None:
        if not alloc.permitted(peer[0], self.now()) or not self.peer_filter.allowed(peer[0]):
            return
        if alloc.throttle is not None:
            if alloc.throttle.exhausted:
                return
            alloc.throttle.consume(len(data))
        transport = alloc.relay_port.protocol.transport
        try:
            transport.write(data, peer)
        except OSError as e:
            log.debug("relay send to {peer} failed: {e}", peer=peer, e=e)
            return
        alloc.bytes_to_peer += len(data)

    def relay_datagram(self, alloc: Allocation, data: bytes, peer: Address) -> None:
        """A datagram arrived on a UDP relay from ``peer``."""
        peer = (_canonical(peer[0]), peer[1])
        now = self.now()
        if alloc.deleted or not alloc.permitted(peer[0], now):
            return
        if not self.peer_filter.allowed(peer[0]):
            return
        if alloc.throttle is not None:
            if alloc.throttle.exhausted:
                return
            alloc.throttle.consume(len(data))
        alloc.bytes_from_peer += len(data)
        number = alloc.channel_for_peer(peer, now)
        if number is not None:
            alloc.link.send(stun.encode_channel_data(number, data, pad=alloc.link.stream))
            return
        ind = stun.Message(
            M.DATA,
            C.INDICATION,
            stun.new_transaction_id(),
            {A.XOR_PEER_ADDRESS: peer, A.DATA: data},
        )
        alloc.link.send(stun.encode(ind))

    # ------------------------------------------------------------- RFC 6062

    def _new_connection_id(self) -> int:
        while True:
            cid = secrets.randbits(32)
            if cid and cid not in self.connections:
                return cid

    def _register_connection(
        self, alloc: Allocation, peer: Address, proto: PeerProtocol
    ) -> PeerConnection:
        conn = PeerConnection(self._new_connection_id(), alloc, peer, proto)
        proto.conn = conn
        self.connections[conn.connection_id] = conn
        alloc.connections[conn.connection_id] = conn
        conn.timer = self.reactor.callLater(
            self.settings.connection_bind_timeout, self._bind_timeout, conn
        )
        return conn

    def peer_connected(self, alloc: Allocation, proto: PeerProtocol) -> None:
        """A peer connected to a TCP relay: announce it with ConnectionAttempt."""
        assert proto.transport is not None
        peer = _host_port(proto.transport.getPeer())
        peer = (_canonical(peer[0]), peer[1])
        why = None
        if alloc.deleted:
            why = "allocation deleted"
        elif not alloc.permitted(peer[0], self.now()):
            why = "no permission for peer"
        else:
            why = self.peer_filter.check(peer[0])
        if why is not None:
            log.info(
                "refused peer connection {peer} to relay {relay} of {user!r}: {why}",
                peer=peer,
                relay=alloc.relay_address,
                user=alloc.username,
                why=why,
            )
            proto.transport.loseConnection()
            return
        conn = self._register_connection(alloc, peer, proto)
        ind = stun.Message(
            M.CONNECTION_ATTEMPT,
            C.INDICATION,
            stun.new_transaction_id(),
            {A.CONNECTION_ID: conn.connection_id, A.XOR_PEER_ADDRESS: peer},
        )
        alloc.link.send(stun.encode(ind))

    def _bind_timeout(self, conn: PeerConnection) -> None:
        conn.timer = None
        if conn.pipe is None and not conn.closed:
            log.info(
                "connection {cid} from {peer} not bound within {t}s; closing",
                cid=conn.connection_id,
                peer=conn.peer,
                t=self.settings.connection_bind_timeout,
            )
            self._close_connection(conn)

    def _close_connection(self, conn: PeerConnection) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.timer is not None and conn.timer.active():
            conn.timer.cancel()
        conn.timer = None
        self.connections.pop(conn.connection_id, None)
        conn.allocation.connections.pop(conn.connection_id, None)
        if conn.pipe is not None:
            conn.pipe.close()
        elif conn.proto.transport is not None:
            conn.proto.transport.loseConnection()

    def peer_lost(self, conn: PeerConnection) -> None:
        """A pending peer connection went away before ConnectionBind."""
        self._close_connection(conn)

    async def _connect(self, ctx: _Ctx) -> bytes:
        alloc = self._allocation(ctx)
        if alloc.transport != TRANSPORT_TCP:
            raise _Refusal(400, "Bad Request: Connect on a UDP allocation")
        peer = ctx.msg.attributes.get(A.XOR_PEER_ADDRESS)
        if peer is None:
            raise _Refusal(400, "Bad Request: XOR-PEER-ADDRESS missing")
        peer = (_canonical(peer[0]), peer[1])
        self._check_peer(alloc, peer)
        if peer in alloc.connecting or any(c.peer == peer for c in alloc.connections.values()):
            raise _Refusal(446, "Connection Already Exists", peer)
        alloc.connecting.add(peer)
        factory = self.connect_factory(self, alloc)
        try:
            self.reactor.connectTCP(
                peer[0],
                peer[1],
                factory,
                timeout=self.settings.connect_timeout,
                bindAddress=(alloc.relay_bound[0], 0),
            )
            try:
                proto = await factory.deferred
            except Exception as e:
                raise _Refusal(447, f"Connection Timeout or Failure: {e}", peer) from None
        finally:
            alloc.connecting.discard(peer)
        if alloc.deleted:
            assert proto.transport is not None
            proto.transport.loseConnection()
            raise _Refusal(437, "Allocation Mismatch: deleted while connecting", peer)
        conn = self._register_connection(alloc, peer, proto)
        alloc.permissions[peer[0]] = max(
            alloc.permissions.get(peer[0], 0.0), self.now() + self.settings.permission_lifetime
        )
        return self._ok(ctx, {A.CONNECTION_ID: conn.connection_id})

    def _connection_bind(self, ctx: _Ctx) -> bytes:
        link = ctx.link
        if not link.stream:
            raise _Refusal(400, "Bad Request: ConnectionBind over UDP")
        if link.five_tuple in self.allocations or getattr(link, "is_data_connection", False):
            raise _Refusal(400, "Bad Request: ConnectionBind on a control connection")
        cid = ctx.msg.attributes.get(A.CONNECTION_ID)
        conn = self.connections.get(cid) if cid is not None else None
        if conn is None or conn.pipe is not None or conn.closed:
            raise _Refusal(400, "Bad Request: unknown or already bound CONNECTION-ID")
        if conn.allocation.username != ctx.username:
            raise _Refusal(441, "Wrong Credentials: not the allocation's user")
        link.is_data_connection = True
        ctx.after = lambda: self._bind(conn, link)
        return self._ok(ctx, {})

    def _bind(self, conn: PeerConnection, client: TurnStreamProtocol) -> None:
        """Pair the client data connection with the peer connection (after the
        success response went out): from now on bytes flow untouched."""
        if conn.closed or client.transport is None or client.disconnected:
            self._close_connection(conn)
            if client.transport is not None:
                client.transport.loseConnection()
            return
        if conn.timer is not None and conn.timer.active():
            conn.timer.cancel()
        conn.timer = None
        leftover = client.enter_pipe_mode()
        pipe = Pipe(self, conn, conn.proto, client)
        conn.pipe = pipe
        self.pipes.add(pipe)
        pipe.start(bytes(conn.early), leftover, conn.peer_eof)
        conn.early = bytearray()

    def pipe_closed(self, pipe: Pipe) -> None:
        self.pipes.discard(pipe)
        conn = pipe.conn
        conn.allocation.bytes_to_peer += pipe.bytes_to_peer
        conn.allocation.bytes_from_peer += pipe.bytes_from_peer
        if not conn.closed:
            conn.closed = True
            self.connections.pop(conn.connection_id, None)
            conn.allocation.connections.pop(conn.connection_id, None)

    # ------------------------------------------------------------- deletion

    def control_lost(self, link: Any) -> None:
        """A TCP/TLS control connection closed: its allocation goes with it."""
        alloc = self.allocations.get(link.five_tuple)
        if alloc is not None and alloc.link is link:
            self._delete(alloc, "control connection closed")

    def _delete(self, alloc: Allocation, reason: str) -> None:
        if alloc.deleted:
            return
        alloc.deleted = True
        if self.allocations.get(alloc.five_tuple) is alloc:
            del self.allocations[alloc.five_tuple]
        self.quotas.release(alloc.username, alloc.credential.quota_class)
        if alloc.expiry_call is not None and alloc.expiry_call.active():
            alloc.expiry_call.cancel()
        for conn in list(alloc.connections.values()):
            self._close_connection(conn)
        if alloc.throttle is not None:
            alloc.throttle.stop()
        for port in (alloc.relay_port, *alloc.extra_ports):
            # The number is kept by the allocation: at shutdown the listening port may
            # already be closed, and a closed port no longer knows its address.
            try:
                number = port.getHost().port
            except AttributeError:  # closed: tcp.Port forgets its socket, not its number
                number = getattr(port, "port", None)
            if number is not None:
                self.ports.release(number)
            port.stopListening()
        log.info(
            "allocation end user={user!r} client={client} relay={relay} reason={reason} "
            "duration={duration:.1f}s bytes_to_peer={out} bytes_from_peer={inn}",
            user=alloc.username,
            client=alloc.five_tuple,
            relay=alloc.relay_address,
            reason=reason,
            duration=self.now() - alloc.created,
            out=alloc.bytes_to_peer,
            inn=alloc.bytes_from_peer,
        )
        if alloc.link.stream and reason != "control connection closed":
            # RFC 6062 §5: a TCP allocation and its control connection live and die together.
            if alloc.transport == TRANSPORT_TCP and reason == "expired":
                alloc.link.close()

    def stop(self) -> None:
        """Delete everything (service shutdown); write the counts of summarised log lines."""
        for summary in ("malformed", "refusals_log"):
            if summary in self.__dict__:  # only those a packet has created
                self.__dict__[summary].flush()
        for alloc in list(self.allocations.values()):
            self._delete(alloc, "server stopping")
        for port, timer in list(self.reservations.values()):
            if timer.active():
                timer.cancel()
            port.stopListening()
        self.reservations.clear()
        for conn in list(self.connections.values()):
            self._close_connection(conn)

    _handlers: dict[int, Callable[..., Any]] = {
        M.ALLOCATE: _allocate,
        M.REFRESH: _refresh,
        M.CREATE_PERMISSION: _create_permission,
        M.CHANNEL_BIND: _channel_bind,
        M.CONNECT: _connect,
        M.CONNECTION_BIND: _connection_bind,
    }


def _method_name(method: int) -> str:
    try:
        return M(method).name
    except ValueError:
        return f"0x{method:03x}"


def _attach(port_obj: Any, alloc: Allocation) -> None:
    proto = getattr(port_obj, "protocol", None)
    if proto is not None and hasattr(proto, "allocation"):
        proto.allocation = alloc
    factory = getattr(port_obj, "factory", None)
    if factory is not None and hasattr(factory, "allocation"):
        factory.allocation = alloc
