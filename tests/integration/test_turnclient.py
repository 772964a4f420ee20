"""The camera path end to end on loopback: our TURN client allocates an RFC 6062
TCP relay with the spec §14 wildcard permission on our server, and plain TCP
"phones" talk through the relayed address to an echo protocol on the camera."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from twisted.internet import defer, interfaces, protocol, reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest
from zope.interface import implementer

from txturn.testing import LOOPBACK, start_server
from txturn.turnclient import TurnClient


@implementer(interfaces.IHalfCloseableProtocol)
class Echo(protocol.Protocol):
    """The "camera" application: echoes, and half-closes after the phone did."""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.transport.write(data)

    def readConnectionLost(self) -> None:  # noqa: N802
        self.transport.loseWriteConnection()

    def writeConnectionLost(self) -> None:  # noqa: N802
        self.transport.loseConnection()


class EchoFactory(protocol.Factory):
    protocol = Echo

    def __init__(self) -> None:
        self.peers: list[Any] = []

    def buildProtocol(self, addr: Any) -> protocol.Protocol:  # noqa: N802
        self.peers.append(addr)
        return super().buildProtocol(addr)


@implementer(interfaces.IHalfCloseableProtocol)
class Phone(protocol.Protocol):
    """Sends a payload, half-closes, and collects everything until EOF."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.received = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(self.payload)
        self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data

    def readConnectionLost(self) -> None:  # noqa: N802
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:  # noqa: N802
        pass

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        if not self.done.called:
            self.done.callback(bytes(self.received))


class _PhoneFactory(protocol.ClientFactory):
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.proto: Phone | None = None
        self.failed: Deferred[bytes] = Deferred()

    def buildProtocol(self, addr: Any) -> Phone:  # noqa: N802
        self.proto = Phone(self.payload)
        self.proto.done.chainDeferred(self.failed)
        return self.proto

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:  # noqa: N802
        self.failed.errback(reason)


def phone_call(relay: tuple[str, int], payload: bytes) -> Deferred[bytes]:
    f = _PhoneFactory(payload)
    reactor.connectTCP(relay[0], relay[1], f, timeout=10)
    return f.failed


class CameraRelayTests(unittest.TestCase):
    timeout = 60

    async def _camera(self, use_splice: bool) -> tuple[Any, TurnClient, EchoFactory]:
        svc = await start_server(self, use_splice=use_splice)
        echo = EchoFactory()
        client = TurnClient(svc.addresses["tcp"], "cam1", "devkey1", echo, reactor=reactor)
        self.addCleanup(client.stop)
        await client.start().addTimeout(10, reactor)
        return svc, client, echo

    async def _many(self, use_splice: bool, count: int = 100, size: int = 200_000) -> None:
        svc, client, echo = await self._camera(use_splice)
        relay = client.relayed_address
        assert relay is not None
        payloads = [os.urandom(size + i) for i in range(count)]
        results = await defer.gatherResults(
            [phone_call(relay, p) for p in payloads], consumeErrors=True
        ).addTimeout(45, reactor)
        for sent, got in zip(payloads, results, strict=True):
            self.assertEqual(len(got), len(sent))
            self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(sent).digest())
        self.assertEqual(len(echo.peers), count)
        # Phones are seen by the camera with their real (loopback) address.
        self.assertTrue(all(p.host == LOOPBACK for p in echo.peers))
        server = svc.server
        if use_splice and server.splice_enabled:
            self.assertGreater(self.spliced_count(server), 0)

    def spliced_count(self, server: Any) -> int:
        return server.stats_spliced

    def test_hundred_connections_plain(self) -> Deferred[None]:
        """100 simultaneous phones, each 200 kB each way, through the Python path."""
        return Deferred.fromCoroutine(self._many(use_splice=False))

    def test_hundred_connections_splice(self) -> Deferred[None]:
        """The same with the os.splice data path."""
        return Deferred.fromCoroutine(self._many(use_splice=True))

    async def _reallocate(self) -> None:
        svc, client, echo = await self._camera(True)
        first = client.relayed_address
        changed: list[Any] = []
        client.on_relayed.append(changed.append)
        svc2 = await start_server(self)
        new = await client.switch_server(*svc2.addresses["tcp"]).addTimeout(15, reactor)
        self.assertNotEqual(new, first)
        self.assertEqual(client.relayed_address, new)
        got = await phone_call(new, b"hello through the backup").addTimeout(10, reactor)
        self.assertEqual(got, b"hello through the backup")
        self.assertIn(new, changed)
        # The old allocation died with its control connection.
        self.assertEqual(len(svc.server.allocations), 0)

    def test_switch_server(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._reallocate())

    async def _control_loss(self) -> None:
        svc, client, echo = await self._camera(True)
        first = client.relayed_address
        alloc = next(iter(svc.server.allocations.values()))
        alloc.link.transport.abortConnection()
        while client.relayed_address in (None, first):
            d: Deferred[None] = Deferred()
            reactor.callLater(0.05, d.callback, None)
            await d
        got = await phone_call(client.relayed_address, b"again").addTimeout(10, reactor)
        self.assertEqual(got, b"again")

    def test_reallocates_after_control_loss(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._control_loss())
