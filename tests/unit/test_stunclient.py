"""Unit and loopback tests of ``txturn.stunclient``, the retransmitting STUN Binding client.

The camera's use of it (an answer told from media on a media socket, spec §15 step 3) is
also pinned down in ``tests/unit/test_udp_path_and_gop.py`` (``BindingTransactionsTests``).
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from txturn import stun
from txturn.stunclient import BindingTransactions, is_stun, mapped_address
from txturn.stunserver import StunServerConfig, stun_service


class _Transport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


class BindingTransactionsTests(TestCase):
    def test_retransmitted_until_answered(self) -> None:
        """A classic request every *interval*; an RFC 5389 XOR-MAPPED-ADDRESS answer ends it
        and cancels every timer."""
        clock = task.Clock()
        transactions = BindingTransactions(clock)
        transport = _Transport()
        d = defer.Deferred.fromCoroutine(transactions.query(transport, ("192.0.2.1", 3478), timeout=2.0,
                                                            interval=0.5))
        clock.advance(0)
        clock.advance(0.5)
        clock.advance(0.5)
        self.assertEqual(len(transport.sent), 3)
        self.assertEqual({data for data, _ in transport.sent}, {transport.sent[0][0]}, "the same transaction")
        request = stun.decode(transport.sent[0][0])
        self.assertFalse(request.cookie)
        rtp = struct.pack("!BBHII", 0x80, 96, 1, 2, 3) + b"x" * 20
        self.assertFalse(is_stun(rtp))
        self.assertFalse(transactions.received(rtp))
        answer = stun.encode(stun.Message(stun.Method.BINDING, stun.Class.SUCCESS, request.transaction_id,
                                          {stun.Attr.XOR_MAPPED_ADDRESS: ("203.0.113.9", 5000)}))
        self.assertTrue(transactions.received(answer))
        self.assertEqual(self.successResultOf(d), ("203.0.113.9", 5000))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_undecodable_stun_is_swallowed(self) -> None:
        self.assertTrue(BindingTransactions(task.Clock()).received(b"\x01\x01" + b"\xff" * 30))

    def test_answer_is_matched_and_media_left_alone(self) -> None:
        clock = task.Clock()
        transactions = BindingTransactions(clock)
        transport = _Transport()
        d = defer.Deferred.fromCoroutine(transactions.query(transport, ("198.51.100.10", 3478), timeout=1.5,
                                                            interval=0.25))
        clock.advance(0)
        self.assertEqual(len(transport.sent), 1)
        request = stun.decode(transport.sent[0][0])
        self.assertFalse(request.cookie, "a classic RFC 3489 request (the camera generation's STUN)")
        clock.advance(0.25)
        self.assertEqual(len(transport.sent), 2, "retransmitted")
        media = struct.pack("!BBHII", 0x80, 96, 1, 2, 3) + b"x" * 20
        self.assertFalse(is_stun(media))
        self.assertFalse(transactions.received(media))
        stranger = stun.encode(stun.Message(stun.Method.BINDING, stun.Class.SUCCESS, b"\x01" * 16,
                                            {stun.Attr.MAPPED_ADDRESS: ("192.0.2.1", 1)}))
        self.assertTrue(transactions.received(stranger), "STUN, but not ours: swallowed, not media")
        self.assertFalse(d.called)
        answer = stun.encode(stun.Message(stun.Method.BINDING, stun.Class.SUCCESS, request.transaction_id,
                                          {stun.Attr.MAPPED_ADDRESS: ("203.0.113.2", 40000)}))
        self.assertTrue(transactions.received(answer))
        self.assertEqual(self.successResultOf(d), ("203.0.113.2", 40000))
        clock.advance(5)
        self.assertEqual(len(transport.sent), 2, "no retransmission after the answer")

    def test_timeout_gives_none(self) -> None:
        clock = task.Clock()
        d = defer.Deferred.fromCoroutine(BindingTransactions(clock).query(_Transport(), ("198.51.100.10", 3478),
                                                                          timeout=1.0, interval=0.5))
        clock.advance(1.0)
        self.assertIsNone(self.successResultOf(d))


class MappedAddressTests(TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def test_against_txturn_stun_server(self) -> Any:
        """A probe from its own socket on real loopback: the server sees 127.0.0.1."""
        svc = stun_service(StunServerConfig(port=0))
        svc.startService()
        self.addCleanup(svc.stopService)
        assert svc.primary_address is not None
        mapped = yield defer.Deferred.fromCoroutine(
            mapped_address(reactor, svc.primary_address, interface="127.0.0.1", timeout=3.0, interval=0.5))
        assert mapped is not None
        self.assertEqual(mapped[0], "127.0.0.1")
        self.assertGreater(mapped[1], 0)

    @defer.inlineCallbacks
    def test_silence_gives_none(self) -> Any:
        clock = task.Clock()
        listened: list[Any] = []

        class Port:
            def write(self, data: bytes, addr: Any) -> None:
                listened.append(data)

            def stopListening(self) -> defer.Deferred[None]:  # noqa: N802
                return defer.succeed(None)

        class Reactor:
            def listenUDP(self, port: int, proto: Any, interface: str = "") -> Port:  # noqa: N802
                return Port()

            def callLater(self, *args: Any) -> Any:  # noqa: N802
                return clock.callLater(*args)

        d = defer.Deferred.fromCoroutine(mapped_address(Reactor(), ("192.0.2.1", 3478), timeout=1.0, interval=0.5))
        clock.advance(0)
        clock.advance(0.5)
        clock.advance(0.5)
        result = yield d
        self.assertIsNone(result)
        self.assertEqual(len(listened), 2)
        self.assertEqual(clock.getDelayedCalls(), [])
