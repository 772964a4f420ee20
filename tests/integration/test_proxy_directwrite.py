"""The proxy's send paths on real loopback sockets.

DirectWriter (TCP): the bytes arrive whole and in order whichever way each write went (the
socket at once, or Twisted's buffer behind a slow reader), and Twisted's flow control, which
the slow-viewer rules rest on, still pauses the producer.  UdpSender: a picture's packets
arrive as one datagram each, in order, with or without UDP segmentation offload."""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet import defer, interfaces, protocol, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from globaleye.proxy.directwrite import DirectWriter, UdpSender, gso_runs


@implementer(interfaces.IPushProducer)
class Server(protocol.Protocol):
    transport: Any

    def __init__(self) -> None:
        self.pauses = 0
        self.paused = False

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.transport.registerProducer(self, True)
        self.writer = DirectWriter(self.transport, self)
        self.factory.connected.callback(self)

    def pauseProducing(self) -> None:  # noqa: N802
        self.pauses += 1
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False

    def stopProducing(self) -> None:  # noqa: N802
        pass


class Client(protocol.Protocol):
    transport: Any

    def __init__(self) -> None:
        self.received = bytearray()
        self.waiting: tuple[int, defer.Deferred[None]] | None = None

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data
        if self.waiting is not None and len(self.received) >= self.waiting[0]:
            d, self.waiting = self.waiting[1], None
            d.callback(None)

    def until(self, n: int) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        if len(self.received) >= n:
            d.callback(None)
        else:
            self.waiting = (n, d)
        return d.addTimeout(20, reactor)


class DirectWriterTests(TestCase):
    async def connect(self) -> tuple[Server, Client]:
        factory = protocol.Factory.forProtocol(Server)
        factory.connected = defer.Deferred()  # type: ignore[attr-defined]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        client = await protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", port.getHost().port)
        server = await factory.connected  # type: ignore[attr-defined]
        self.addCleanup(client.transport.loseConnection)
        self.addCleanup(server.transport.loseConnection)
        return server, client

    async def test_a_reader_keeping_up_gets_everything_straight_from_the_socket(self) -> None:
        server, client = await self.connect()
        chunks = [os.urandom(12_000) for _ in range(40)]
        for chunk in chunks:
            server.writer(chunk)
            await client.until(sum(map(len, chunks[:chunks.index(chunk) + 1])))
        self.assertEqual(bytes(client.received), b"".join(chunks))
        self.assertEqual(server.writer.direct_bytes, 40 * 12_000, "no write went through Twisted")
        self.assertEqual(server.writer.queued_bytes, 0)

    async def test_a_slow_reader_falls_back_to_twisted_in_order_and_pauses_the_producer(self) -> None:
        server, client = await self.connect()
        client.transport.pauseProducing()  # the viewer stops reading
        chunks = [os.urandom(20_000) for _ in range(60)]
        for chunk in chunks:
            server.writer(chunk)
        self.assertGreater(server.writer.direct_bytes, 0, "the kernel took the first ones")
        self.assertGreater(server.writer.queued_bytes, 0, "the rest waits in Twisted's buffer")
        self.assertEqual(server.writer.direct_bytes + server.writer.queued_bytes, 60 * 20_000)
        self.assertTrue(server.paused, "Twisted paused the producer: the hub skips this viewer's pictures")
        client.transport.resumeProducing()
        await client.until(60 * 20_000)
        self.assertEqual(bytes(client.received), b"".join(chunks), "every byte, in order")
        # Drained: the next write goes straight to the socket again.
        direct = server.writer.direct_bytes
        server.writer(b"x" * 1000)
        await client.until(60 * 20_000 + 1000)
        self.assertEqual(server.writer.direct_bytes, direct + 1000)

    async def test_a_write_after_twisted_buffered_goes_behind_it(self) -> None:
        server, client = await self.connect()
        server.transport.write(b"A" * 5000)  # e.g. an RTSP answer written the ordinary way
        server.writer(b"B" * 5000)
        await client.until(10_000)
        self.assertEqual(bytes(client.received), b"A" * 5000 + b"B" * 5000)
        self.assertEqual(server.writer.direct_bytes, 0, "Twisted held bytes: it went behind them")


class UdpSenderTests(SynchronousTestCase):
    """UdpSender on real loopback UDP sockets: the viewer receives one datagram per RTP packet,
    in order, whether a run went in one ``sendmsg`` with UDP_SEGMENT or one ``sendto`` each."""

    def sockets(self) -> tuple[socket.socket, socket.socket]:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 0))
        for s in (receiver, sender):
            self.addCleanup(s.close)
        return sender, receiver

    def picture(self) -> list[bytes]:
        """An SPS, a PPS, twelve FU-A fragments of 1,400 bytes and a shorter last one."""
        return [b"S" * 20, b"P" * 8] + [bytes([i]) * 1400 for i in range(12)] + [b"L" * 333]

    def test_runs(self) -> None:
        packets = self.picture()
        runs = gso_runs(packets)
        self.assertEqual([(size, count) for size, _data, count in runs], [(20, 2), (1400, 13)])
        self.assertEqual(b"".join(data for _s, data, _c in runs), b"".join(packets))
        self.assertEqual(gso_runs([b"x" * 10]), [(0, b"x" * 10, 1)])
        self.assertEqual([c for _s, _d, c in gso_runs([b"y" * 1000] * 150)], [64, 64, 22], "64 segments at most")
        self.assertEqual([c for _s, _d, c in gso_runs([b"z" * 1000, b"z" * 1200])], [1, 1], "a longer one starts a run")

    def test_a_picture_arrives_as_its_packets(self) -> None:
        for gso in (True, False):
            sender, receiver = self.sockets()
            out = UdpSender(sender, receiver.getsockname())
            out.gso = gso
            packets = self.picture()
            out.send_runs(gso_runs(packets), packets)
            out.send(b"audio")
            got = [receiver.recv(65536) for _ in range(len(packets) + 1)]
            self.assertEqual(got, packets + [b"audio"], f"gso={gso}")
            self.assertEqual(out.gso, gso, "the kernel here segments UDP")
