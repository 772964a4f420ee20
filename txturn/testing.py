"""Test harnesses for txturn and for applications that embed it.

Three kinds, from fastest to most real:

* In memory, ``task.Clock`` time: :class:`Harness` drives a :class:`TurnServer`
  with :class:`FakeLink` clients and a :class:`FakeReactor` whose ``listenUDP`` /
  ``listenTCP`` return inspectable fake ports; a request is one call and one
  decoded answer (:meth:`Harness.request`, :meth:`Harness.allocate`).
* Real loopback sockets: :func:`start_server` runs ``turn_service`` on 127.0.0.1
  with port 0 and users ``cam1`` (wildcard, spec §14) and ``alice``;
  :class:`UdpStunClient` is a minimal STUN/TURN client over UDP (requests matched
  by transaction id, the long-term credential dance of RFC 5389 §10.2 when given
  a user); :func:`stun_request` sends one request from a socket of its own.
* Third-party peers (coturn, uclient) stay in the interop tests.

Nothing here imports ``globaleye``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock

from txturn import stun
from txturn.auth import StaticUsers, long_term_key
from txturn.service import TurnServerConfig, turn_service
from txturn.turnserver import FiveTuple, ServerSettings, TurnServer

if TYPE_CHECKING:
    from twisted.trial import unittest

M, C, A = stun.Method, stun.Class, stun.Attr
#: The realm and server address the in-memory harness uses.
REALM = "globaleye"
SERVER = ("127.0.0.1", 3478)
LOOPBACK = "127.0.0.1"

Address = tuple[str, int]


# --------------------------------------------------------------------------- fakes


class FakeDatagramTransport:
    def __init__(self, host: str, port: int) -> None:
        self.host = IPv4Address("UDP", host, port)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def getHost(self) -> IPv4Address:  # noqa: N802
        return self.host


@attrs.define(eq=False)
class FakeUdpPort:
    protocol: Any
    transport: FakeDatagramTransport
    stopped: bool = False

    def getHost(self) -> IPv4Address:  # noqa: N802
        return self.transport.host

    def stopListening(self) -> None:  # noqa: N802
        self.stopped = True


@attrs.define(eq=False)
class FakeTcpPort:
    factory: Any
    host: IPv4Address
    stopped: bool = False

    def getHost(self) -> IPv4Address:  # noqa: N802
        return self.host

    def stopListening(self) -> None:  # noqa: N802
        self.stopped = True


class FakeReactor(MemoryReactorClock):
    """MemoryReactorClock plus listenUDP/listenTCP returning inspectable ports."""

    def __init__(self) -> None:
        super().__init__()
        self.next_port = 50000
        self.udp_ports: list[FakeUdpPort] = []
        self.tcp_ports: list[FakeTcpPort] = []

    def _port(self, port: int) -> int:
        if port:
            return port
        self.next_port += 2
        return self.next_port

    def listenUDP(self, port: int, proto: Any, interface: str = "", maxPacketSize: int = 8192) -> FakeUdpPort:  # noqa: N802,N803
        t = FakeDatagramTransport(interface or "0.0.0.0", self._port(port))
        proto.makeConnection(t)
        p = FakeUdpPort(proto, t)
        self.udp_ports.append(p)
        return p

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> FakeTcpPort:  # noqa: N802
        p = FakeTcpPort(factory, IPv4Address("TCP", interface or "0.0.0.0", self._port(port)))
        self.tcp_ports.append(p)
        return p


@attrs.define(eq=False)
class FakeLink:
    """A client 5-tuple; collects what the server sends to it."""

    client_addr: tuple[str, int]
    stream: bool = False
    sent: list[bytes] = attrs.field(factory=list)
    closed: bool = False
    is_data_connection: bool = False

    @property
    def five_tuple(self) -> FiveTuple:
        return FiveTuple("tcp" if self.stream else "udp", self.client_addr, SERVER)

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


def run(coro: Any) -> Any:
    d = Deferred.fromCoroutine(coro)
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "coroutine did not finish synchronously"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


class Harness:
    """A :class:`TurnServer` on a :class:`FakeReactor` (``task.Clock`` time, fake relay
    ports), users ``alice``, ``bob`` and ``cam1`` (wildcard); *settings* are
    ``ServerSettings`` fields.  Requests are answered synchronously."""

    def __init__(self, testcase: unittest.TestCase, **settings: Any) -> None:
        self.reactor = FakeReactor()
        settings.setdefault("realm", REALM)
        settings.setdefault("allow_peers", ("127.0.0.0/8",))
        settings.setdefault("relay_ports", (0, 0))
        settings.setdefault("use_splice", False)
        self.lookup = StaticUsers(
            {"alice": "secret", "bob": "hunter2", "cam1": "devkey"}, wildcard_users={"cam1"}
        )
        self.server = TurnServer(self.lookup, ServerSettings(**settings), self.reactor)

    def request(
        self,
        link: FakeLink,
        method: int,
        attributes: dict[int, Any] | None = None,
        *,
        user: str = "alice",
        password: str | None = None,
        realm: str = REALM,
        auth: bool = True,
        tid: bytes | None = None,
        nonce: str | None = None,
    ) -> stun.Message:
        password = password if password is not None else dict(self.lookup.users)[user]
        attrs_: dict[int, Any] = dict(attributes or {})
        key = None
        if auth:
            attrs_[A.USERNAME] = user
            attrs_[A.REALM] = realm
            attrs_[A.NONCE] = nonce or self.server.nonces.issue()
            key = long_term_key(user, realm, password)
        msg = stun.Message(method, C.REQUEST, tid or stun.new_transaction_id(), attrs_)
        return self.send_raw(link, stun.encode(msg, integrity_key=key))

    def send_raw(self, link: FakeLink, raw: bytes) -> stun.Message:
        before = len(link.sent)
        run(self.server.handle_stun(raw, link))
        assert len(link.sent) == before + 1, f"expected one reply, got {link.sent[before:]}"
        return stun.decode(link.sent[-1])

    def allocate(self, link: FakeLink, transport: int = 17, **kw: Any) -> stun.Message:
        attributes = {A.REQUESTED_TRANSPORT: transport, **kw.pop("extra", {})}
        return self.request(link, M.ALLOCATE, attributes, **kw)


def code(msg: stun.Message) -> int:
    if msg.msg_class == C.SUCCESS:
        return 200
    return msg.attributes[A.ERROR_CODE][0]


def client(n: int = 1, stream: bool = False) -> FakeLink:
    return FakeLink(("127.0.0.1", 40000 + n), stream=stream)


# --------------------------------------------------------------------------- real loopback


async def start_server(testcase: unittest.TestCase, **overrides: Any) -> Any:
    """A started ``turn_service`` on 127.0.0.1 (port 0, relays on 127.0.0.1, peers in
    127.0.0.0/8), stopped at the test's cleanup.  Users ``cam1``/``devkey1`` (wildcard
    permission allowed) and ``alice``/``pw``; *overrides* are ``TurnServerConfig`` fields."""
    from twisted.internet import reactor

    config = TurnServerConfig(
        interface=LOOPBACK,
        port=0,
        realm=overrides.pop("realm", "globaleye"),
        relay_interface=LOOPBACK,
        relay_ports=overrides.pop("relay_ports", (0, 0)),
        allow_peers=("127.0.0.0/8",),
        **overrides,
    )
    users = {"cam1": "devkey1", "alice": "pw", **overrides.pop("users", {})}
    lookup = StaticUsers(users, wildcard_users={"cam1"})
    svc = turn_service(config, lookup=lookup, reactor=reactor)
    svc.startService()
    testcase.addCleanup(svc.stopService)
    return svc


class UdpStunClient(DatagramProtocol):
    """A minimal STUN/TURN client over UDP for tests.

    :meth:`send` writes a request and returns its transaction id; :meth:`answer`
    waits for the answer with that id (answers that arrive first are kept in
    ``answers``, their bytes in ``raw``).  :meth:`request` does both, and with a
    *user* the long-term credential dance (RFC 5389 §10.2): an unauthenticated first
    request for the 401's NONCE, then every request with USERNAME, REALM, NONCE and
    MESSAGE-INTEGRITY.  Listen it on a socket yourself (``reactor.listenUDP``).
    """

    def __init__(self, server: Address, user: str | None = None, password: str = "", realm: str = REALM,
                 *, timeout: float = 5.0, clock: Any = None) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.realm = realm
        self.timeout = timeout
        self.clock = clock
        self.nonce: str | None = None
        self.answers: dict[bytes, stun.Message] = {}
        self.raw: dict[bytes, bytes] = {}
        self._waiting: dict[bytes, Deferred[stun.Message]] = {}

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        msg = stun.decode(data)
        self.raw[msg.transaction_id] = data
        waiting = self._waiting.pop(msg.transaction_id, None)
        if waiting is not None:
            waiting.callback(msg)
        else:
            self.answers[msg.transaction_id] = msg

    def send(self, method: int, attributes: dict[int, Any] | None = None, *, key: bytes | None = None,
             fingerprint: bool = False, transaction_id: bytes | None = None) -> bytes:
        """Write one request to the server; its transaction id."""
        tid = transaction_id or stun.new_transaction_id()
        msg = stun.Message(method, C.REQUEST, tid, dict(attributes or {}))
        assert self.transport is not None
        self.transport.write(stun.encode(msg, integrity_key=key, fingerprint=fingerprint), self.server)
        return tid

    def answer(self, tid: bytes) -> Deferred[stun.Message]:
        """The answer to *tid*; fails with ``defer.TimeoutError`` after ``timeout`` seconds."""
        if tid in self.answers:
            return succeed(self.answers.pop(tid))
        d: Deferred[stun.Message] = Deferred()
        self._waiting[tid] = d
        clock = self.clock
        if clock is None:
            from twisted.internet import reactor as clock
        return d.addTimeout(self.timeout, clock)

    def key(self) -> bytes | None:
        """The long-term key of the configured user, or None without one."""
        return None if self.user is None else long_term_key(self.user, self.realm, self.password)

    async def request(self, method: int, attributes: dict[int, Any] | None = None) -> stun.Message:
        """Send and await one request; authenticated when the client has a user."""
        if self.user is None:
            return await self.answer(self.send(method, attributes))
        if self.nonce is None:
            challenge = await self.answer(self.send(method, attributes))
            self.nonce = challenge.attributes[A.NONCE]
        signed = dict(attributes or {})
        signed[A.USERNAME] = self.user
        signed[A.REALM] = self.realm
        signed[A.NONCE] = self.nonce
        return await self.answer(self.send(method, signed, key=self.key()))


async def stun_request(server: Address, method: int = M.BINDING, attributes: dict[int, Any] | None = None,
                       *, interface: str = LOOPBACK, timeout: float = 5.0, reactor: Any = None,
                       ) -> stun.Message:
    """One request from a UDP socket of its own on *interface*, and the decoded answer."""
    if reactor is None:
        from twisted.internet import reactor
    client = UdpStunClient(server, timeout=timeout, clock=reactor)
    listening = reactor.listenUDP(0, client, interface=interface)
    try:
        return await client.request(method, attributes)
    finally:
        await listening.stopListening()


# --------------------------------------------------------------------------- TLS


def self_signed(directory: str) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 (pyOpenSSL is a Twisted[tls] dependency)."""
    from OpenSSL import crypto

    os.makedirs(directory, exist_ok=True)
    key = crypto.PKey()
    key.generate_key(crypto.TYPE_RSA, 2048)
    cert = crypto.X509()
    cert.get_subject().CN = "127.0.0.1"
    cert.set_serial_number(1)
    cert.gmtime_adj_notBefore(-60)
    cert.gmtime_adj_notAfter(86400)
    cert.set_issuer(cert.get_subject())
    cert.set_pubkey(key)
    cert.sign(key, "sha256")
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(crypto.dump_certificate(crypto.FILETYPE_PEM, cert))
    with open(key_path, "wb") as f:
        f.write(crypto.dump_privatekey(crypto.FILETYPE_PEM, key))
    return cert_path, key_path
