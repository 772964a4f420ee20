"""A TURN server (RFC 5766/8656) with TCP relays (RFC 6062) for Twisted.

Why it exists: GlobalEye cameras sit behind NATs; each one allocates a *TCP*
relay here with its DevID/DevKey and installs the spec §14 wildcard permission
(XOR-PEER-ADDRESS 0.0.0.0:0 = "any peer").  Phone clients then open a plain TCP
connection to the relayed address and talk RTSP to the camera through an
RFC 6062 ConnectionAttempt/ConnectionBind pair.  coturn refuses that wildcard
(issue #352), which is why the platform carries its own server.

Structure:

* ``TurnServer`` holds all state (allocations keyed by 5-tuple, RFC 6062
  connections keyed by CONNECTION-ID) and answers requests; it talks to clients
  through small "link" objects so the same code serves UDP, TCP and TLS.
* ``TurnUdpProtocol`` / ``TurnStreamProtocol`` are the listening-side protocols.
* ``Pipe`` joins a client data connection and a peer connection once
  ConnectionBind succeeded; ``SplicePump`` then moves the bytes with
  ``os.splice`` (kernel to kernel) where possible.

All time comes from the reactor (``IReactorTime``) so tests drive lifetimes,
nonces, permissions and channels with ``task.Clock``.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import secrets
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any, cast

import attrs
from twisted.internet import interfaces, protocol, tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from txturn import stun
from txturn.auth import AuthGuard, Credential, CredentialLookup, NonceIssuer
from txturn.logsummary import LogSummary
from txturn.policy import NoPortAvailable, PeerFilter, PortAllocator, Quotas, Throttle

M = stun.Method
C = stun.Class
A = stun.Attr

log = Logger(namespace="txturn.turnserver")

Address = tuple[str, int]

#: 0.0.0.0:0 in CreatePermission: spec §14's "any peer" wildcard.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})

TRANSPORT_UDP = 17
TRANSPORT_TCP = 6

#: A raw ConnectionBind request type word; the stream protocol stops parsing after
#: one so the bytes behind it stay raw for the peer.
_CONNECTION_BIND_REQUEST = 0x000B


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


# --------------------------------------------------------------------------- links


@attrs.define(eq=False)
class UdpLink:
    """A client reached through the shared UDP listening socket."""

    proto: TurnUdpProtocol
    client_addr: Address
    five_tuple: FiveTuple
    stream: bool = False

    def send(self, data: bytes) -> None:
        if self.proto.transport is not None:
            self.proto.transport.write(data, self.client_addr)

    def close(self) -> None:
        """UDP has no connection to close."""


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
    """The TURN state machine.  Protocols feed it messages; it answers through links."""

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
                            p, UdpRelayProtocol(self), interface=relay_host
                        ),
                        even=even is not None,
                    )
            else:
                _, port_obj = self.ports.acquire(
                    lambda p: self.reactor.listenTCP(
                        p, TcpRelayFactory(self), backlog=128, interface=relay_host
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
        first = self.reactor.listenUDP(port, UdpRelayProtocol(self), interface=host)
        try:
            second = self.reactor.listenUDP(port + 1, UdpRelayProtocol(self), interface=host)
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
        factory = _ConnectFactory(self, alloc)
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


# --------------------------------------------------------------------------- relays


class UdpRelayProtocol(protocol.DatagramProtocol):
    """The relayed transport address of a UDP allocation."""

    noisy = False  # one allocation, one relay port: the allocation's own log lines say enough

    def __init__(self, server: TurnServer) -> None:
        self.server = server
        self.allocation: Allocation | None = None

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802
        if self.allocation is not None:
            self.server.relay_datagram(self.allocation, data, (addr[0], addr[1]))


class TcpRelayFactory(protocol.Factory):
    """The listening relayed transport address of a TCP allocation."""

    noisy = False

    def __init__(self, server: TurnServer) -> None:
        self.server = server
        self.allocation: Allocation | None = None

    def buildProtocol(self, addr: Any) -> PeerProtocol | None:  # noqa: N802
        if self.allocation is None or self.allocation.deleted:
            return None
        return PeerProtocol(self.server, self.allocation, accepted=True)


class _ConnectFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, server: TurnServer, alloc: Allocation) -> None:
        self.server = server
        self.allocation = alloc
        self.deferred: Deferred[PeerProtocol] = Deferred()

    def buildProtocol(self, addr: Any) -> PeerProtocol:  # noqa: N802
        return PeerProtocol(self.server, self.allocation, accepted=False, factory=self)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        if not self.deferred.called:
            self.deferred.errback(reason)


@implementer(interfaces.IHalfCloseableProtocol)
class PeerProtocol(protocol.Protocol):
    """The server's side of a TCP connection with a peer (RFC 6062)."""

    def __init__(
        self,
        server: TurnServer,
        allocation: Allocation,
        *,
        accepted: bool,
        factory: _ConnectFactory | None = None,
    ) -> None:
        self.server = server
        self.allocation = allocation
        self.accepted = accepted
        self.connect_factory = factory
        self.conn: PeerConnection | None = None
        self.pipe: Pipe | None = None
        self.paused_early = False

    def connectionMade(self) -> None:  # noqa: N802
        if self.accepted:
            self.server.peer_connected(self.allocation, self)
        elif self.connect_factory is not None and not self.connect_factory.deferred.called:
            self.connect_factory.deferred.callback(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.received(self, data)
            return
        conn = self.conn
        if conn is None:
            return
        conn.early += data
        if len(conn.early) > self.server.settings.early_buffer_limit and not self.paused_early:
            self.paused_early = True
            _producer(self.transport).pauseProducing()

    def readConnectionLost(self) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.read_eof(self)
        elif self.conn is not None:
            self.conn.peer_eof = True

    def writeConnectionLost(self) -> None:  # noqa: N802
        """Our half-close reached the peer; nothing to do."""

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.lost(self)
        elif self.conn is not None:
            self.server.peer_lost(self.conn)


# --------------------------------------------------------------------------- client-facing protocols


class TurnUdpProtocol(protocol.DatagramProtocol):
    """TURN over UDP: STUN messages and ChannelData share one socket."""

    def __init__(self, server: TurnServer) -> None:
        self.server = server
        self._local: Address | None = None

    def _local_address(self) -> Address:
        # The bound address never changes: ask the transport once, not per datagram.
        if self._local is None:
            assert self.transport is not None
            host = cast("IPv4Address | IPv6Address", self.transport.getHost())
            self._local = (host.host, host.port)
        return self._local

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802
        if not data:
            return
        client = (addr[0], addr[1])
        if data[0] == 0 and len(data) > 1 and data[1] == 1:  # Binding request
            reply = self.server.binding_reply(data, client, self._local_address())
            if reply is not None and self.transport is not None:
                self.transport.write(reply, client)
            return
        link = UdpLink(self, client, FiveTuple("udp", client, self._local_address()))
        if stun.is_channel_data(data[0]):
            self.server.handle_channel_data(data, link)
        elif data[0] < 0x40:
            Deferred.fromCoroutine(self.server.handle_stun(data, link)).addErrback(
                lambda f: log.failure("handling STUN from {client}", f, client=client)
            )


@implementer(interfaces.IHalfCloseableProtocol)
class TurnStreamProtocol(protocol.Protocol):
    """TURN over TCP or TLS: a control connection, or (after ConnectionBind) an
    RFC 6062 client data connection."""

    stream = True

    def __init__(self, server: TurnServer, proto_name: str) -> None:
        self.server = server
        self.proto_name = proto_name
        self.buffer = bytearray()
        self.busy = False
        self.pumping = False
        self.pipe: Pipe | None = None
        self.is_data_connection = False
        self.disconnected = False
        self.five_tuple: FiveTuple | None = None
        self.client_addr: Address = ("", 0)
        #: Seconds from connect to the first whole STUN message (TLS: the handshake included)
        #: and to an allocation (or ConnectionBind); the factory sets them.  0: no deadline.
        self.first_message_timeout = 0.0
        self.auth_timeout = 0.0
        self.got_message = False
        self._timers: list[Any] = []

    def connectionMade(self) -> None:  # noqa: N802
        assert self.transport is not None
        self.client_addr = _host_port(self.transport.getPeer())
        self.five_tuple = FiveTuple(
            self.proto_name, self.client_addr, _host_port(self.transport.getHost())
        )
        clock = self.server.reactor
        if self.first_message_timeout > 0:
            self._timers.append(clock.callLater(self.first_message_timeout, self._first_message_due))
        if self.auth_timeout > 0:
            self._timers.append(clock.callLater(self.auth_timeout, self._auth_due))

    @property
    def established(self) -> bool:
        """Holds an allocation, or became an RFC 6062 data connection."""
        if self.is_data_connection or self.pipe is not None:
            return True
        alloc = self.server.allocations.get(self.five_tuple) if self.five_tuple else None
        return alloc is not None and alloc.link is self

    def _first_message_due(self) -> None:
        if not self.got_message and not self.disconnected:
            self._time_out(f"no STUN message within {self.first_message_timeout:g} s"
                           + (" (TLS handshake included)" if self.proto_name == "tls" else ""))

    def _auth_due(self) -> None:
        if not self.established and not self.disconnected:
            self._time_out(f"no allocation within {self.auth_timeout:g} s")

    def _time_out(self, reason: str) -> None:
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        factory = getattr(self, "factory", None)
        if isinstance(factory, TurnStreamFactory):
            factory.note_timeout(self.client_addr[0], reason)
        assert self.transport is not None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:  # pragma: no cover - a test transport
            self.transport.loseConnection()

    def send(self, data: bytes) -> None:
        if not self.disconnected and self.pipe is None:
            assert self.transport is not None
            self.transport.write(data)

    def close(self) -> None:
        if not self.disconnected:
            assert self.transport is not None
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.received(self, data)
            return
        self.buffer += data
        self._pump()

    def _pump(self) -> None:
        if self.pumping:
            return
        self.pumping = True
        try:
            while not self.busy and self.pipe is None and not self.disconnected:
                try:
                    size = stun.message_length(self.buffer)
                except stun.StunDecodeError as e:
                    self.server._malformed(self.five_tuple, self.client_addr, "dropping stream with bad framing", e)
                    assert self.transport is not None
                    self.transport.loseConnection()
                    return
                if size is None or len(self.buffer) < size:
                    return
                frame = bytes(self.buffer[:size])
                del self.buffer[:size]
                self.got_message = True
                if stun.is_channel_data(frame[0]):
                    self.server.handle_channel_data(frame, self)
                    continue
                d = Deferred.fromCoroutine(self.server.handle_stun(frame, self))
                d.addErrback(lambda f: log.failure("handling STUN from {c}", f, c=self.five_tuple))
                if (frame[0] << 8 | frame[1]) == _CONNECTION_BIND_REQUEST and not d.called:
                    # Hold everything behind a ConnectionBind: if it succeeds those
                    # bytes are raw data for the peer, not STUN.
                    self.busy = True
                    d.addBoth(self._unbusy)
        finally:
            self.pumping = False

    def _unbusy(self, result: object) -> None:
        self.busy = False
        if self.pipe is None and self.buffer:
            self._pump()

    def enter_pipe_mode(self) -> bytes:
        leftover = bytes(self.buffer)
        self.buffer = bytearray()
        self.is_data_connection = True
        return leftover

    def readConnectionLost(self) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.read_eof(self)
        else:
            assert self.transport is not None
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:  # noqa: N802
        """Our half-close reached the client; nothing to do."""

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.disconnected = True
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        if self.pipe is not None:
            self.pipe.lost(self)
        else:
            self.server.control_lost(self)


class TurnStreamFactory(protocol.Factory):
    """TCP/TLS listeners: a connection must send a STUN message within
    ``first_message_timeout`` seconds (which bounds a stalled TLS handshake too)
    and hold an allocation within ``auth_timeout`` seconds, or it is closed.
    Closures are logged once per peer and then as a count per ``log_interval``."""

    noisy = False

    def __init__(
        self,
        server: TurnServer,
        proto_name: str = "tcp",
        first_message_timeout: float = 10.0,
        auth_timeout: float = 30.0,
        log_interval: float = 60.0,
    ) -> None:
        self.server = server
        self.proto_name = proto_name
        self.first_message_timeout = first_message_timeout
        self.auth_timeout = auth_timeout
        self.log_interval = log_interval
        #: Connections closed by the deadlines (for tests and operators).
        self.timed_out = 0
        self._summary: dict[tuple[str, str], int] = {}
        self._flush_call: Any = None

    def buildProtocol(self, addr: Any) -> TurnStreamProtocol:  # noqa: N802
        p = TurnStreamProtocol(self.server, self.proto_name)
        p.factory = self
        p.first_message_timeout = self.first_message_timeout
        p.auth_timeout = self.auth_timeout
        return p

    def note_timeout(self, peer: str, reason: str) -> None:
        self.timed_out += 1
        key = (peer, reason)
        if key in self._summary:
            self._summary[key] += 1
        elif len(self._summary) < 1000:
            log.info("TURN {proto} {peer}: {reason}; closing (repeats summarised every {s:g} s)",
                     proto=self.proto_name, peer=peer, reason=reason, s=self.log_interval)
            self._summary[key] = 0
        if self._flush_call is None:
            self._flush_call = self.server.reactor.callLater(self.log_interval, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        summary, self._summary = self._summary, {}
        for (peer, reason), count in summary.items():
            if count:
                log.info("TURN {proto} {peer}: {count} more connections closed in {s:g} s: {reason}",
                         proto=self.proto_name, peer=peer, count=count, s=self.log_interval, reason=reason)

    def stopFactory(self) -> None:  # noqa: N802
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None


# --------------------------------------------------------------------------- the RFC 6062 data path


@implementer(interfaces.IPushProducer)
class _Gate:
    """Pauses a transport while *any* reason to pause holds.

    Several parties want to pause a peer/client transport: the other side's
    write buffer (backpressure), the bandwidth bucket, the early buffer.  Each
    one resuming must not undo the others' pauses."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.reasons: set[str] = set()

    def pause(self, reason: str) -> None:
        if not self.reasons:
            self.transport.pauseProducing()
        self.reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.reasons:
            self.reasons.discard(reason)
            if not self.reasons:
                self.transport.resumeProducing()

    # IPushProducer, as seen by the consumer we are registered with:
    def pauseProducing(self) -> None:  # noqa: N802
        self.pause("backpressure")

    def resumeProducing(self) -> None:  # noqa: N802
        self.resume("backpressure")

    def stopProducing(self) -> None:  # noqa: N802
        """The consumer went away; Pipe.lost handles the close."""


class _ReasonPauser:
    def __init__(self, targets: list[Any], reason: str) -> None:
        self.targets = targets
        self.reason = reason

    def pauseProducing(self) -> None:  # noqa: N802
        for t in self.targets:
            t.pause(self.reason)

    def resumeProducing(self) -> None:  # noqa: N802
        for t in self.targets:
            t.resume(self.reason)


class Pipe:
    """A bound RFC 6062 connection: client data connection <-> peer connection.

    Plain path: Twisted reads, we write to the other transport, with producer
    registration for backpressure and half-close propagated both ways.  When
    both sockets are plain kernel TCP sockets, ``SplicePump`` takes over and
    Python no longer touches the bytes.
    """

    def __init__(
        self,
        server: TurnServer,
        conn: PeerConnection,
        peer: PeerProtocol,
        client: TurnStreamProtocol,
    ) -> None:
        self.server = server
        self.conn = conn
        self.peer = peer
        self.client = client
        self.gates = {peer: _Gate(peer.transport), client: _Gate(client.transport)}
        self.eof: set[Any] = set()
        self.closed = False
        self.bytes_to_peer = 0
        self.bytes_from_peer = 0
        self.throttle = conn.allocation.throttle
        self.bandwidth = _ReasonPauser(list(self.gates.values()), "bandwidth")
        self.splice: SplicePump | None = None
        self.splice_tries = 0

    def other(self, end: Any) -> Any:
        return self.client if end is self.peer else self.peer

    def start(self, early: bytes, leftover: bytes, peer_eof: bool) -> None:
        peer, client = self.peer, self.client
        peer.pipe = self
        client.pipe = self
        _consumer(client.transport).registerProducer(self.gates[peer], True)
        _consumer(peer.transport).registerProducer(self.gates[client], True)
        if self.throttle is not None:
            self.throttle.register(self.bandwidth)
        if early:
            self.received(peer, early)
        if leftover:
            self.received(client, leftover)
        if peer.paused_early:
            peer.paused_early = False
            _producer(peer.transport).resumeProducing()
        if peer_eof:
            self.read_eof(peer)
        if self.server.splice_enabled and not self.eof:
            self._try_splice()

    def received(self, end: Any, data: bytes) -> None:
        if self.closed:
            return
        if end is self.peer:
            self.bytes_from_peer += len(data)
        else:
            self.bytes_to_peer += len(data)
        self.other(end).transport.write(data)
        if self.throttle is not None:
            self.throttle.consume(len(data))

    def read_eof(self, end: Any) -> None:
        if self.closed or end in self.eof:
            return
        self.eof.add(end)
        target = self.other(end).transport
        target.unregisterProducer()
        if len(self.eof) == 2:
            self.close()
            return
        if isinstance(target, tcp.Connection):
            target.loseWriteConnection()
        else:
            # TLS (or anything else) has no reliable half-close -- and a TLS
            # wrapper would forward loseWriteConnection to the raw TCP socket
            # under the session -- so a FIN from one side closes both.
            self.close()

    def lost(self, end: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.throttle is not None:
            self.throttle.unregister(self.bandwidth)
        if self.splice is not None:
            self.splice.detach()
        for end in (self.peer, self.client):
            t = end.transport
            if t is None:
                continue
            try:
                _consumer(t).unregisterProducer()
            except Exception:
                pass
            t.loseConnection()
        self.server.pipe_closed(self)

    # ------------------------------------------------------------- splice

    def _try_splice(self) -> None:
        """Hand both sockets to the kernel once Twisted's write buffers are
        empty (what is already buffered must go out first, in order).

        Under a steady load those buffers never empty by themselves, so both
        sockets stop being read first (a "splice" pause on each gate, which no
        other party's resume can undo); the buffers then drain into the kernel
        and the switch is made.  If they do not drain in time (a peer that
        stopped reading), reading resumes and the pipe stays on the Python path.
        """
        if self.closed or self.eof or self.splice is not None:
            for gate in self.gates.values():
                gate.resume("splice")
            return
        peer_t, client_t = self.peer.transport, self.client.transport
        if not (isinstance(peer_t, tcp.Connection) and isinstance(client_t, tcp.Connection)):
            return  # TLS or a test transport: stay on the Python path
        ends = (peer_t, client_t)
        for gate in self.gates.values():
            gate.pause("splice")
        if not all(_drained(t) for t in ends):
            self.splice_tries += 1
            if self.splice_tries < SPLICE_DRAIN_TRIES:
                self.server.reactor.callLater(0.005, self._try_splice)
            else:
                for gate in self.gates.values():
                    gate.resume("splice")
            return
        for t in ends:
            t.unregisterProducer()
        if self.throttle is not None:
            self.throttle.unregister(self.bandwidth)
        self.splice = SplicePump(self)
        self.splice.start()
        self.server.stats_spliced += 1


def _consumer(transport: object) -> interfaces.IConsumer:
    """A connected TCP/TLS transport (both provide IConsumer)."""
    assert transport is not None
    return cast(interfaces.IConsumer, transport)


def _producer(transport: object) -> interfaces.IPushProducer:
    """A connected TCP/TLS transport (both provide IPushProducer)."""
    assert transport is not None
    return cast(interfaces.IPushProducer, transport)


def _drained(transport: Any) -> bool:
    return (
        not transport.dataBuffer
        and not getattr(transport, "_tempDataBuffer", None)
        and not transport.disconnecting
    )


SPLICE_DRAIN_TRIES = 400  # x 5 ms: how long a pipe may wait for its buffers to drain
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
SPLICE_CHUNK = 1 << 16


@implementer(interfaces.IReadDescriptor, interfaces.IWriteDescriptor)
class _SpliceEnd:
    """One socket of a spliced pair, registered with the reactor in place of the
    Twisted transport that owns it (the transport keeps the socket object and
    closes it at the end)."""

    def __init__(self, pump: SplicePump, transport: Any) -> None:
        self.pump = pump
        self.transport = transport
        self.fd = transport.fileno()

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:  # noqa: N802
        return "SpliceEnd"

    def doRead(self) -> None:  # noqa: N802
        self.pump.readable(self)

    def doWrite(self) -> None:  # noqa: N802
        self.pump.writable(self)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.pump.fail(reason.getErrorMessage())

    def readConnectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.pump.readable(self)


@attrs.define(eq=False)
class _Flow:
    """One direction: bytes read from ``src`` go through a pipe into ``dst``."""

    src: _SpliceEnd
    dst: _SpliceEnd
    rfd: int
    wfd: int
    to_peer: bool
    pending: int = 0
    eof: bool = False
    shut: bool = False


class SplicePump:
    """Moves a bound RFC 6062 connection's bytes with ``os.splice`` (socket ->
    pipe -> socket), so payload never enters Python.  Backpressure: while the
    pipe holds bytes the destination would not take, the source is not read.
    EOF becomes shutdown(SHUT_WR) on the other socket (half-close), and when
    both directions are done the owning transports are closed normally."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.reactor = pipe.server.reactor
        self.peer = _SpliceEnd(self, pipe.peer.transport)
        self.client = _SpliceEnd(self, pipe.client.transport)
        self.flows: list[_Flow] = []
        self.paused = False
        self.done = False

    def start(self) -> None:
        for end in (self.pipe.peer.transport, self.pipe.client.transport):
            # Pipe._try_splice starts a pump only when both ends are tcp.Connection.
            t = cast(tcp.Connection, end)
            t.stopReading()
            t.stopWriting()
        for src, dst, to_peer in ((self.client, self.peer, True), (self.peer, self.client, False)):
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self.flows.append(_Flow(src, dst, r, w, to_peer))
        if self.pipe.throttle is not None:
            self.pipe.throttle.register(self)
        self._update()

    # Throttle producer interface
    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True
        self._update()

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        for flow in self.flows:
            self._move(flow)
        self._update()

    def readable(self, end: _SpliceEnd) -> None:
        for flow in self.flows:
            if flow.src is end:
                self._move(flow)
        self._update()

    def writable(self, end: _SpliceEnd) -> None:
        for flow in self.flows:
            if flow.dst is end:
                self._drain(flow)
                if not flow.pending:
                    self._move(flow)
        self._update()

    def _move(self, flow: _Flow) -> None:
        for _ in range(8):  # bounded, so one busy connection cannot starve others
            if self.done or self.paused or flow.eof or flow.pending:
                return
            try:
                n = os.splice(flow.src.fd, flow.wfd, SPLICE_CHUNK, flags=SPLICE_FLAGS)
            except BlockingIOError:
                return
            except OSError as e:
                self.fail(f"splice read: {e}")
                return
            if n == 0:
                flow.eof = True
                break
            flow.pending += n
            if flow.to_peer:
                self.pipe.bytes_to_peer += n
            else:
                self.pipe.bytes_from_peer += n
            self._drain(flow)
            if self.pipe.throttle is not None:
                self.pipe.throttle.consume(n)
        if flow.eof and not flow.pending:
            self._shut(flow)

    def _drain(self, flow: _Flow) -> None:
        while flow.pending and not self.done:
            try:
                m = os.splice(flow.rfd, flow.dst.fd, flow.pending, flags=SPLICE_FLAGS)
            except BlockingIOError:
                return
            except OSError as e:
                self.fail(f"splice write: {e}")
                return
            if m == 0:
                return
            flow.pending -= m
        if flow.eof and not flow.pending:
            self._shut(flow)

    def _shut(self, flow: _Flow) -> None:
        if flow.shut:
            return
        flow.shut = True
        try:
            flow.dst.transport.socket.shutdown(socket.SHUT_WR)
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                self.fail(f"shutdown: {e}")
                return
        if all(f.shut for f in self.flows):
            self.finish()

    def _update(self) -> None:
        if self.done:
            return
        for end in (self.peer, self.client):
            out = next(f for f in self.flows if f.src is end)
            inn = next(f for f in self.flows if f.dst is end)
            if not self.paused and not out.eof and not out.pending:
                self.reactor.addReader(end)
            else:
                self.reactor.removeReader(end)
            if inn.pending:
                self.reactor.addWriter(end)
            else:
                self.reactor.removeWriter(end)

    def detach(self) -> None:
        """Give the sockets back to their transports (which are about to close)."""
        if self.done:
            return
        self.done = True
        for end in (self.peer, self.client):
            self.reactor.removeReader(end)
            self.reactor.removeWriter(end)
        for flow in self.flows:
            for fd in (flow.rfd, flow.wfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self.pipe.throttle is not None:
            self.pipe.throttle.unregister(self)

    def finish(self) -> None:
        self.pipe.close()

    def fail(self, why: str) -> None:
        if self.done:
            return
        log.debug("splice pipe {cid} ends: {why}", cid=self.pipe.conn.connection_id, why=why)
        self.pipe.close()
