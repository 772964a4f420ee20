"""A TURN client for devices that *receive* TCP connections through a relay
(RFC 6062 passive side), as GlobalEye cameras do (spec §14).

The camera connects to the TURN server over TCP, allocates a TCP relay with its
DevID/DevKey, installs a permission (by default the §14 wildcard 0.0.0.0:0),
and keeps the allocation alive.  Each ConnectionAttempt makes it open a data
connection to the server, send ConnectionBind, and from then on the connection
belongs to a protocol built by the user's factory (the camera's RTSP server):
bytes reach it untouched, including any that arrived in the same segment as the
ConnectionBind success response.

If the control connection is lost, the client reallocates with exponential
backoff -- also after ``switch_server`` to a backup server -- and tells its
listeners about the new relayed address.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, cast

import attrs
from twisted.internet import defer, error, interfaces, protocol
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txturn import stun
from txturn.framing import StreamFramer

M = stun.Method
C = stun.Class
A = stun.Attr

log = Logger(namespace="txturn.turnclient")

Address = tuple[str, int]
WILDCARD_PEER: Address = ("0.0.0.0", 0)


class TurnError(Exception):
    """A TURN request failed with an error response (or not at all)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


@attrs.define
class _Auth:
    """Long-term credential state shared by the control and data connections."""

    username: str
    password: str
    realm: str | None = None
    nonce: str | None = None

    @property
    def key(self) -> bytes | None:
        if self.realm is None:
            return None
        return stun.long_term_key(self.username, self.realm, self.password)


class _StunStream(protocol.Protocol):
    """Framing + request/response matching over a TCP connection to the server."""

    def __init__(self, reactor: Any, auth: _Auth, timeout: float = 10.0) -> None:
        self.reactor = reactor
        self.auth = auth
        self.timeout = timeout
        self.framer = StreamFramer()
        self.pending: dict[bytes, tuple[Deferred[stun.Message], Any]] = {}
        self.lost: Deferred[None] = Deferred()
        self.connected_ = False

    def connectionMade(self) -> None:  # noqa: N802
        self.connected_ = True

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.framer.feed(data)
        while True:
            try:
                frame = self.framer.next_frame()
            except stun.StunDecodeError as e:
                log.warn("garbage from TURN server: {e}", e=e)
                assert self.transport is not None
                self.transport.loseConnection()
                return
            if frame is None:
                return
            if stun.is_channel_data(frame[0]):
                continue
            try:
                msg = stun.decode(frame)
            except stun.StunDecodeError as e:
                log.warn("undecodable message from TURN server: {e}", e=e)
                continue
            if self.handle_message(msg, frame) == "stop":
                return

    def handle_message(self, msg: stun.Message, raw: bytes) -> str | None:
        if msg.msg_class in (C.SUCCESS, C.ERROR):
            entry = self.pending.pop(msg.transaction_id, None)
            if entry is not None:
                d, timer = entry
                if timer.active():
                    timer.cancel()
                d.callback(msg)
        elif msg.msg_class == C.INDICATION:
            self.indication(msg)
        return None

    def indication(self, msg: stun.Message) -> None:
        """Subclasses handle ConnectionAttempt."""

    def _send(self, method: int, attributes: dict[int, Any]) -> Deferred[stun.Message]:
        tid = stun.new_transaction_id()
        attrs_ = dict(attributes)
        key = None
        if self.auth.realm is not None and self.auth.nonce is not None:
            attrs_[A.USERNAME] = self.auth.username
            attrs_[A.REALM] = self.auth.realm
            attrs_[A.NONCE] = self.auth.nonce
            key = self.auth.key
        raw = stun.encode(stun.Message(method, C.REQUEST, tid, attrs_), integrity_key=key)
        d: Deferred[stun.Message] = Deferred()
        timer = self.reactor.callLater(self.timeout, self._timed_out, tid)
        self.pending[tid] = (d, timer)
        assert self.transport is not None  # requests are only sent once connected
        self.transport.write(raw)
        return d

    def _timed_out(self, tid: bytes) -> None:
        entry = self.pending.pop(tid, None)
        if entry is not None:
            entry[0].errback(TurnError(408, "request timed out"))

    async def request(self, method: int, attributes: dict[int, Any]) -> stun.Message:
        """Send a request, answering 401 (learn realm/nonce) and 438 (new nonce)
        challenges by retrying, a bounded number of times."""
        for _attempt in range(4):
            resp = await self._send(method, attributes)
            if resp.msg_class == C.SUCCESS:
                return resp
            code, reason = resp.attributes.get(A.ERROR_CODE, (0, "no ERROR-CODE"))
            realm = resp.attributes.get(A.REALM)
            nonce = resp.attributes.get(A.NONCE)
            if code == 438 and nonce:
                self.auth.nonce = nonce
                if realm:
                    self.auth.realm = realm
                continue
            if code == 401 and realm and nonce and _attempt == 0:
                self.auth.realm, self.auth.nonce = realm, nonce
                continue
            if code == 401 and realm and nonce and (self.auth.realm != realm):
                self.auth.realm, self.auth.nonce = realm, nonce
                continue
            raise TurnError(code, reason)
        raise TurnError(0, "too many authentication retries")

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.connected_ = False
        for d, timer in self.pending.values():
            if timer.active():
                timer.cancel()
            d.errback(TurnError(0, f"connection lost: {reason.getErrorMessage()}"))
        self.pending.clear()
        if not self.lost.called:
            self.lost.callback(None)


class _ControlProtocol(_StunStream):
    def __init__(self, client: TurnClient, auth: _Auth) -> None:
        super().__init__(client.reactor, auth, client.request_timeout)
        self.client = client

    def indication(self, msg: stun.Message) -> None:
        if msg.method == M.CONNECTION_ATTEMPT:
            cid = msg.attributes.get(A.CONNECTION_ID)
            peer = msg.attributes.get(A.XOR_PEER_ADDRESS)
            if cid is not None and peer is not None:
                self.client._connection_attempt(self, cid, peer)


class _RelayedTransport:
    """The data connection's transport as the user's protocol sees it: the real
    TCP transport, except ``getPeer`` names the remote peer behind the relay."""

    def __init__(self, transport: Any, peer: Address) -> None:
        self._transport = transport
        self._peer = peer

    def getPeer(self) -> Any:  # noqa: N802
        host, port = self._peer
        return (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@implementer(interfaces.IHalfCloseableProtocol)
class _DataProtocol(_StunStream):
    """An RFC 6062 client data connection: ConnectionBind, then a raw pipe to
    the user's protocol."""

    def __init__(self, client: TurnClient, auth: _Auth, cid: int, peer: Address) -> None:
        super().__init__(client.reactor, auth, client.request_timeout)
        self.client = client
        self.cid = cid
        self.peer = peer
        self.inner: protocol.Protocol | None = None
        self.bound = False

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        Deferred.fromCoroutine(self._bind()).addErrback(self._bind_failed)

    async def _bind(self) -> None:
        await self.request(M.CONNECTION_BIND, {A.CONNECTION_ID: self.cid})

    def handle_message(self, msg: stun.Message, raw: bytes) -> str | None:
        if (
            msg.method == M.CONNECTION_BIND
            and msg.msg_class == C.SUCCESS
            and msg.transaction_id in self.pending
        ):
            # From here the stream is raw: hand it over *before* the rest of the
            # buffer is parsed, with whatever followed the response.
            super().handle_message(msg, raw)
            self._become_pipe()
            return "stop"
        return super().handle_message(msg, raw)

    def _become_pipe(self) -> None:
        self.bound = True
        leftover = self.framer.take_rest()
        inner = self.client.factory.buildProtocol(
            (IPv6Address if ":" in self.peer[0] else IPv4Address)("TCP", *self.peer)
        )
        assert self.transport is not None
        if inner is None:
            self.transport.loseConnection()
            return
        self.inner = inner
        # _RelayedTransport provides ITransport by delegation (see its docstring).
        inner.makeConnection(cast(interfaces.ITransport, _RelayedTransport(self.transport, self.peer)))
        if leftover:
            inner.dataReceived(leftover)

    def _bind_failed(self, f: Failure) -> None:
        log.warn("ConnectionBind {cid} failed: {e}", cid=self.cid, e=f.getErrorMessage())
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.inner is not None:
            self.inner.dataReceived(data)
        elif not self.bound:
            super().dataReceived(data)

    def readConnectionLost(self) -> None:  # noqa: N802
        inner = self.inner
        if inner is not None and interfaces.IHalfCloseableProtocol.providedBy(inner):
            inner.readConnectionLost()  # type: ignore[attr-defined]
        else:
            assert self.transport is not None
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:  # noqa: N802
        inner = self.inner
        if inner is not None and interfaces.IHalfCloseableProtocol.providedBy(inner):
            inner.writeConnectionLost()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        super().connectionLost(reason)
        if self.inner is not None:
            self.inner.connectionLost(reason)


class _OneShotFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, build: Callable[[], protocol.Protocol]) -> None:
        self.build = build
        self.deferred: Deferred[protocol.Protocol] = Deferred()

    def buildProtocol(self, addr: Any) -> protocol.Protocol:  # noqa: N802
        p = self.build()
        p.factory = self
        original = p.connectionMade

        def made() -> None:
            original()
            if not self.deferred.called:
                self.deferred.callback(p)

        p.connectionMade = made  # type: ignore[method-assign]
        return p

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        if not self.deferred.called:
            self.deferred.errback(reason)


class TurnClient:
    """Keeps one TCP relay allocated on a TURN server and serves what arrives.

    ``factory`` builds the protocol for each relayed connection.
    ``relayed_address`` is the current relayed transport address (or None);
    ``allocated()`` returns a Deferred for it; ``on_relayed`` callbacks are
    called with each new address (e.g. to re-register it with the platform).
    """

    def __init__(
        self,
        server: Address,
        username: str,
        password: str,
        factory: protocol.Factory[protocol.Protocol],
        *,
        reactor: Any = None,
        peers: Iterable[Address] = (WILDCARD_PEER,),
        lifetime: int = 600,
        request_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        max_backoff: float = 30.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.server = server
        self.auth = _Auth(username, password)
        self.factory = factory
        self.peers = tuple(peers)
        self.lifetime = lifetime
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.relayed_address: Address | None = None
        self.mapped_address: Address | None = None
        self.on_relayed: list[Callable[[Address | None], None]] = []
        self._waiters: list[Deferred[Address]] = []
        self._control: _ControlProtocol | None = None
        self._running = False
        self._loop: Deferred[None] | None = None
        self._sleep: Any = None
        self._timers: list[Any] = []
        self.data_connections: set[_DataProtocol] = set()
        self.last_error: Exception | None = None

    # ------------------------------------------------------------- public API

    def start(self) -> Deferred[Address]:
        """Start keeping an allocation; fires with the first relayed address."""
        d = self.allocated()
        if not self._running:
            self._running = True
            self._loop = Deferred.fromCoroutine(self._run())
            self._loop.addErrback(lambda f: log.failure("TURN client loop died", f))
        return d

    def allocated(self) -> Deferred[Address]:
        if self.relayed_address is not None:
            return defer.succeed(self.relayed_address)
        d: Deferred[Address] = Deferred()
        self._waiters.append(d)
        return d

    def switch_server(self, host: str, port: int) -> Deferred[Address]:
        """Move to another (backup) server: drop the control connection (the old
        allocation dies with it) and allocate on the new one."""
        self.server = (host, port)
        self.auth.realm = self.auth.nonce = None
        d: Deferred[Address] = Deferred()
        self._waiters.append(d)
        if self._control is not None and self._control.transport is not None:
            self._control.transport.loseConnection()
        elif self._sleep is not None and self._sleep.active():
            self._sleep.reset(0)
        return d

    def stop(self) -> Deferred[None]:
        self._running = False
        for t in self._timers:
            if t.active():
                t.cancel()
        self._timers.clear()
        if self._sleep is not None and self._sleep.active():
            self._sleep.reset(0)
        control = self._control
        if control is not None and control.transport is not None:
            control.transport.loseConnection()
        return self._loop if self._loop is not None else defer.succeed(None)

    # ------------------------------------------------------------- the loop

    async def _run(self) -> None:
        backoff = 0.5
        while self._running:
            try:
                await self._session()
                backoff = 0.5
            except Exception as e:
                self.last_error = e
                log.warn("TURN session with {server} failed: {e}", server=self.server, e=e)
            self._set_relayed(None)
            if not self._running:
                break
            delay = backoff * (0.5 + random.random() / 2)
            backoff = min(backoff * 2, self.max_backoff)
            d: Deferred[None] = Deferred()
            self._sleep = self.reactor.callLater(delay, d.callback, None)
            await d
            self._sleep = None

    async def _connect(self, build: Callable[[], protocol.Protocol]) -> Any:
        factory = _OneShotFactory(build)
        host, port = self.server
        self.reactor.connectTCP(host, port, factory, timeout=self.connect_timeout)
        return await factory.deferred

    async def _session(self) -> None:
        control: _ControlProtocol = await self._connect(lambda: _ControlProtocol(self, self.auth))
        self._control = control
        try:
            resp = await control.request(
                M.ALLOCATE, {A.REQUESTED_TRANSPORT: 6, A.LIFETIME: self.lifetime}
            )
            relayed = resp.attributes[A.XOR_RELAYED_ADDRESS]
            self.mapped_address = resp.attributes.get(A.XOR_MAPPED_ADDRESS)
            lifetime = resp.attributes.get(A.LIFETIME, self.lifetime)
            await self._permit(control)
            self._schedule(control, lifetime)
            self._set_relayed((relayed[0], relayed[1]))
            log.info("TURN relay {relay} on {server}", relay=relayed, server=self.server)
            await control.lost
        finally:
            for t in self._timers:
                if t.active():
                    t.cancel()
            self._timers.clear()
            self._control = None
            if control.transport is not None and control.connected_:
                control.transport.loseConnection()

    async def _permit(self, control: _ControlProtocol) -> None:
        # One request per peer: simpler for servers, and a refusal names its peer.
        for peer in self.peers:
            await control.request(M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: peer})

    def _schedule(self, control: _ControlProtocol, lifetime: int) -> None:
        """Refresh the allocation well before expiry and permissions every 4
        minutes (they last 5); failures drop the control connection, which
        triggers reallocation."""
        refresh_in = max(1.0, min(lifetime - 60.0, lifetime * 0.8))

        def refresh() -> None:
            async def go() -> None:
                resp = await control.request(M.REFRESH, {A.LIFETIME: self.lifetime})
                new = resp.attributes.get(A.LIFETIME, self.lifetime)
                self._timers.append(
                    self.reactor.callLater(max(1.0, min(new - 60.0, new * 0.8)), refresh)
                )

            Deferred.fromCoroutine(go()).addErrback(self._refresh_failed, control)

        def permit() -> None:
            Deferred.fromCoroutine(self._permit(control)).addCallback(
                lambda _: self._timers.append(self.reactor.callLater(240.0, permit))
            ).addErrback(self._refresh_failed, control)

        self._timers.append(self.reactor.callLater(refresh_in, refresh))
        self._timers.append(self.reactor.callLater(240.0, permit))

    def _refresh_failed(self, f: Failure, control: _ControlProtocol) -> None:
        log.warn("TURN refresh failed: {e}; reallocating", e=f.getErrorMessage())
        if control.transport is not None:
            control.transport.loseConnection()

    def _set_relayed(self, address: Address | None) -> None:
        if address == self.relayed_address:
            return
        self.relayed_address = address
        if address is not None:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(address)
        for cb in list(self.on_relayed):
            try:
                cb(address)
            except Exception:
                log.failure("on_relayed callback")

    # ------------------------------------------------------------- RFC 6062

    def _connection_attempt(self, control: _ControlProtocol, cid: int, peer: Address) -> None:
        auth = self.auth

        async def go() -> None:
            data: _DataProtocol = await self._connect(lambda: _DataProtocol(self, auth, cid, peer))
            self.data_connections.add(data)
            data.lost.addBoth(lambda _: self.data_connections.discard(data))

        def failed(f: Failure) -> None:
            f.trap(Exception)
            if not f.check(error.ConnectError):
                log.failure("data connection for {cid}", f, cid=cid)
            else:
                log.warn("data connection for {cid} failed: {e}", cid=cid, e=f.getErrorMessage())

        Deferred.fromCoroutine(go()).addErrback(failed)
