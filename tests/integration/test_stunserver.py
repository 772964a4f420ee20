"""Unit tests for ``txturn.stunserver``: fake transports and a fake clock, plus the
service binding real loopback sockets (127.0.0.1 and 127.0.0.2 only)."""

from __future__ import annotations

import socket
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txturn import stun
from txturn.stun import Attr, Class, Message, Method
from txturn.stunserver import (
    CHANGE_IP,
    CHANGE_PORT,
    StunServer,
    StunServerConfig,
    StunTCPProtocol,
    StunUDPProtocol,
    handle_binding,
    stun_service,
)
from txturn.testing import UdpStunClient

CLIENT = ("192.0.2.7", 40000)
ADDRESSES = {
    (0, 0): ("127.0.0.1", 3478),
    (0, 1): ("127.0.0.1", 3479),
    (1, 0): ("127.0.0.2", 3478),
    (1, 1): ("127.0.0.2", 3479),
}
CLASSIC_TID = b"\x01\x02\x03\x04" + bytes(range(12))


def _request(*, cookie: bool = True, **attributes: Any) -> Message:
    msg = Message(
        Method.BINDING, Class.REQUEST, stun.new_transaction_id() if cookie else CLASSIC_TID
    )
    for name, value in attributes.items():
        msg.attributes[Attr[name]] = value
    return msg


class HandleBindingTests(SynchronousTestCase):
    """The pure Binding logic the TURN server reuses."""

    def test_rfc5389(self) -> None:
        """XOR-MAPPED-ADDRESS and SOFTWARE; no MAPPED-ADDRESS for a modern client."""
        request = _request()
        response = handle_binding(request, CLIENT, software="txturn")
        self.assertEqual(response.msg_class, Class.SUCCESS)
        self.assertEqual(response.transaction_id, request.transaction_id)
        self.assertEqual(response.attributes[Attr.XOR_MAPPED_ADDRESS], CLIENT)
        self.assertEqual(response.attributes[Attr.SOFTWARE], "txturn")
        self.assertNotIn(Attr.MAPPED_ADDRESS, response.attributes)
        self.assertFalse(stun.check_fingerprint(stun.encode(response)))

    def test_fingerprint_echoed(self) -> None:
        """A request with FINGERPRINT gets one back."""
        request = stun.decode(stun.encode(_request(), fingerprint=True))
        data = stun.encode(handle_binding(request, CLIENT))
        self.assertTrue(stun.check_fingerprint(data))

    def test_rfc5780_attributes(self) -> None:
        """RESPONSE-ORIGIN and OTHER-ADDRESS when the server knows them."""
        response = handle_binding(
            _request(), CLIENT, response_origin=ADDRESSES[0, 0], other_address=ADDRESSES[1, 1]
        )
        self.assertEqual(response.attributes[Attr.RESPONSE_ORIGIN], ADDRESSES[0, 0])
        self.assertEqual(response.attributes[Attr.OTHER_ADDRESS], ADDRESSES[1, 1])

    def test_classic(self) -> None:
        """RFC 3489: MAPPED/SOURCE/CHANGED-ADDRESS, nothing an old parser rejects."""
        response = handle_binding(
            _request(cookie=False),
            CLIENT,
            software="txturn",
            response_origin=ADDRESSES[0, 0],
            other_address=ADDRESSES[1, 1],
        )
        self.assertEqual(
            list(response.attributes),
            [Attr.MAPPED_ADDRESS, Attr.SOURCE_ADDRESS, Attr.CHANGED_ADDRESS],
        )
        self.assertEqual(response.attributes[Attr.MAPPED_ADDRESS], CLIENT)
        data = stun.encode(response)
        self.assertEqual(data[4:20], CLASSIC_TID)

    def test_unknown_comprehension_required(self) -> None:
        """420 with UNKNOWN-ATTRIBUTES; optional unknowns are ignored."""
        request = _request()
        request.attributes[0x0033] = b"x"
        request.attributes[0xC0DE] = b"y"
        response = handle_binding(request, CLIENT, software="txturn")
        self.assertEqual(response.msg_class, Class.ERROR)
        self.assertEqual(response.attributes[Attr.ERROR_CODE][0], 420)
        self.assertEqual(response.attributes[Attr.UNKNOWN_ATTRIBUTES], (0x0033,))

    def test_classic_unknown_list_padded(self) -> None:
        """RFC 3489 §11.2.10: an odd list repeats an entry; the reason is padded."""
        request = _request(cookie=False)
        request.attributes[0x0033] = b"x"
        response = handle_binding(request, CLIENT)
        self.assertEqual(response.attributes[Attr.UNKNOWN_ATTRIBUTES], (0x0033, 0x0033))
        self.assertEqual(len(response.attributes[Attr.ERROR_CODE][1]) % 4, 0)
        self.assertNotIn(Attr.SOFTWARE, response.attributes)

    def test_change_request_refused_unless_possible(self) -> None:
        """RFC 5780 §7.2: 420 when the server cannot change address; flags 0 is fine."""
        response = handle_binding(_request(CHANGE_REQUEST=CHANGE_IP), CLIENT)
        self.assertEqual(response.attributes[Attr.UNKNOWN_ATTRIBUTES], (Attr.CHANGE_REQUEST,))
        response = handle_binding(_request(CHANGE_REQUEST=0), CLIENT)
        self.assertEqual(response.msg_class, Class.SUCCESS)
        response = handle_binding(_request(CHANGE_REQUEST=CHANGE_IP), CLIENT, can_change=True)
        self.assertEqual(response.msg_class, Class.SUCCESS)

    def test_only_binding_requests(self) -> None:
        msg = Message(Method.ALLOCATE, Class.REQUEST, stun.new_transaction_id())
        self.assertRaises(ValueError, handle_binding, msg, CLIENT)


class FourSocketTests(SynchronousTestCase):
    """Routing across the four sockets of RFC 3489 §9.3 with fake transports."""

    def _server(self, alternate: bool = True, **config: Any) -> StunServer:
        cfg = StunServerConfig(alternate_interface="127.0.0.2" if alternate else None, **config)
        server = StunServer(cfg)
        self.transports: dict[tuple[int, int], FakeDatagramTransport] = {}
        for slot, address in ADDRESSES.items():
            if not alternate and slot != (0, 0):
                continue
            proto = StunUDPProtocol(server, slot)
            transport = FakeDatagramTransport()
            proto.makeConnection(transport)
            server.add_socket(slot, proto, address)
            self.transports[slot] = transport
        return server

    def _send(
        self, server: StunServer, request: Message | bytes, slot: tuple[int, int] = (0, 0)
    ) -> tuple[tuple[int, int], Message, Any] | None:
        data = request if isinstance(request, bytes) else stun.encode(request)
        server.sockets[slot].datagramReceived(data, CLIENT)
        written = [(s, t.written) for s, t in self.transports.items() if t.written]
        if not written:
            return None
        self.assertEqual(len(written), 1)
        out_slot, packets = written[0]
        self.assertEqual(len(packets), 1)
        packet, destination = packets.pop()
        return out_slot, stun.decode(packet), destination

    def test_change_request_routing(self) -> None:
        """Each flag combination leaves from the right socket; classic attributes say so."""
        server = self._server()
        expected = {
            0: (0, 0),
            CHANGE_PORT: (0, 1),
            CHANGE_IP: (1, 0),
            CHANGE_IP | CHANGE_PORT: (1, 1),
        }
        for flags, slot in expected.items():
            result = self._send(server, _request(cookie=False, CHANGE_REQUEST=flags))
            assert result is not None
            out_slot, response, destination = result
            self.assertEqual(out_slot, slot)
            self.assertEqual(destination, CLIENT)
            self.assertEqual(response.attributes[Attr.MAPPED_ADDRESS], CLIENT)
            self.assertEqual(response.attributes[Attr.SOURCE_ADDRESS], ADDRESSES[slot])
            self.assertEqual(response.attributes[Attr.CHANGED_ADDRESS], ADDRESSES[1, 1])

    def test_changed_address_relative_to_receiving_socket(self) -> None:
        """A request to A2:P2 names A1:P1 as the other address."""
        server = self._server()
        result = self._send(server, _request(), slot=(1, 1))
        assert result is not None
        _slot, response, _dest = result
        self.assertEqual(response.attributes[Attr.OTHER_ADDRESS], ADDRESSES[0, 0])
        self.assertEqual(response.attributes[Attr.RESPONSE_ORIGIN], ADDRESSES[1, 1])

    def test_rfc5780_change_request(self) -> None:
        """A modern request with CHANGE-REQUEST gets OTHER-ADDRESS and RESPONSE-ORIGIN."""
        server = self._server()
        result = self._send(server, _request(CHANGE_REQUEST=CHANGE_IP | CHANGE_PORT))
        assert result is not None
        out_slot, response, _dest = result
        self.assertEqual(out_slot, (1, 1))
        self.assertEqual(response.attributes[Attr.XOR_MAPPED_ADDRESS], CLIENT)
        self.assertEqual(response.attributes[Attr.OTHER_ADDRESS], ADDRESSES[1, 1])
        self.assertEqual(response.attributes[Attr.RESPONSE_ORIGIN], ADDRESSES[1, 1])

    def test_no_alternate(self) -> None:
        """RFC 5389 change -> 420; classic change -> dropped; classic plain -> answered."""
        server = self._server(alternate=False)
        result = self._send(server, _request(CHANGE_REQUEST=CHANGE_PORT))
        assert result is not None
        self.assertEqual(result[1].attributes[Attr.ERROR_CODE][0], 420)
        with capturedLogs() as events:
            self.assertIsNone(self._send(server, _request(cookie=False, CHANGE_REQUEST=6)))
        self.assertIn("no alternate", events[0]["log_format"])
        result = self._send(server, _request(cookie=False, CHANGE_REQUEST=0))
        assert result is not None
        self.assertEqual(result[1].attributes[Attr.MAPPED_ADDRESS], CLIENT)
        self.assertNotIn(Attr.CHANGED_ADDRESS, result[1].attributes)
        result = self._send(server, _request())
        assert result is not None
        self.assertNotIn(Attr.OTHER_ADDRESS, result[1].attributes)

    def test_malformed_dropped_and_logged(self) -> None:
        server = self._server()
        with capturedLogs() as events:
            self.assertIsNone(self._send(server, b"\x00\x01\x00\x04" + bytes(16)))
        self.assertEqual(events[0]["peer"], CLIENT)
        self.assertIn("length", str(events[0]["reason"]))

    def test_unknown_attribute_420(self) -> None:
        server = self._server()
        request = _request()
        request.attributes[0x0042] = b"?"
        with capturedLogs() as events:
            result = self._send(server, request)
        assert result is not None
        self.assertEqual(result[1].attributes[Attr.UNKNOWN_ATTRIBUTES], (0x0042,))
        self.assertEqual(events[0]["peer"], CLIENT)

    def test_other_methods_and_classes(self) -> None:
        """Non-Binding requests get 400; indications and responses are ignored."""
        server = self._server()
        allocate = Message(Method.ALLOCATE, Class.REQUEST, stun.new_transaction_id())
        result = self._send(server, allocate)
        assert result is not None
        self.assertEqual(result[1].attributes[Attr.ERROR_CODE][0], 400)
        indication = Message(Method.BINDING, Class.INDICATION, stun.new_transaction_id())
        self.assertIsNone(self._send(server, indication))
        self.assertIsNone(self._send(server, handle_binding(_request(), CLIENT)))

    def test_response_address_ignored_by_default(self) -> None:
        """RFC 3489 §9.2's RESPONSE-ADDRESS is an amplification vector: off by default."""
        server = self._server()
        with capturedLogs() as events:
            result = self._send(
                server, _request(cookie=False, RESPONSE_ADDRESS=("198.51.100.1", 9))
            )
        assert result is not None
        self.assertEqual(result[2], CLIENT)
        self.assertNotIn(Attr.REFLECTED_FROM, result[1].attributes)
        self.assertIn("RESPONSE-ADDRESS", events[0]["log_format"])

    def test_response_address_same_host(self) -> None:
        server = self._server(response_address="same-host")
        other_host = _request(cookie=False, RESPONSE_ADDRESS=("198.51.100.1", 9))
        assert (result := self._send(server, other_host)) is not None
        self.assertEqual(result[2], CLIENT)
        same_host = _request(cookie=False, RESPONSE_ADDRESS=(CLIENT[0], 9))
        assert (result := self._send(server, same_host)) is not None
        self.assertEqual(result[2], (CLIENT[0], 9))
        self.assertEqual(result[1].attributes[Attr.REFLECTED_FROM], CLIENT)

    def test_response_address_any(self) -> None:
        server = self._server(response_address="any")
        request = _request(cookie=False, RESPONSE_ADDRESS=("198.51.100.1", 9))
        assert (result := self._send(server, request)) is not None
        self.assertEqual(result[2], ("198.51.100.1", 9))

    def test_response_port(self) -> None:
        """RFC 5780 RESPONSE-PORT: same host, other port (turnutils_stunclient uses it)."""
        server = self._server()
        assert (result := self._send(server, _request(RESPONSE_PORT=40001))) is not None
        self.assertEqual(result[2], (CLIENT[0], 40001))


class TCPTests(SynchronousTestCase):
    """STUN over TCP with a StringTransport and a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        server = StunServer(StunServerConfig())
        self.proto = StunTCPProtocol(server, 30.0, self.clock)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def _responses(self) -> list[Message]:
        data = self.transport.value()
        self.transport.clear()
        out = []
        while data:
            size = stun.message_length(data)
            assert size is not None
            out.append(stun.decode(data[:size]))
            data = data[size:]
        return out

    def test_framing(self) -> None:
        """Byte-by-byte and two-in-one deliveries both work."""
        first, second = _request(), _request()
        data = stun.encode(first, fingerprint=True)
        for i in range(len(data)):
            self.proto.dataReceived(data[i : i + 1])
        (response,) = self._responses()
        self.assertEqual(response.transaction_id, first.transaction_id)
        self.assertEqual(response.attributes[Attr.XOR_MAPPED_ADDRESS], ("192.168.1.1", 54321))
        self.assertEqual(response.attributes[Attr.RESPONSE_ORIGIN], ("10.0.0.1", 12345))
        self.assertIn(Attr.FINGERPRINT, response.attributes)
        self.proto.dataReceived(stun.encode(first) + stun.encode(second))
        self.assertEqual(
            [r.transaction_id for r in self._responses()],
            [first.transaction_id, second.transaction_id],
        )
        self.assertFalse(self.transport.disconnecting)

    def test_change_request_over_tcp(self) -> None:
        self.proto.dataReceived(stun.encode(_request(CHANGE_REQUEST=CHANGE_IP)))
        (response,) = self._responses()
        self.assertEqual(response.attributes[Attr.ERROR_CODE][0], 420)

    def test_garbage_closes(self) -> None:
        with capturedLogs() as events:
            self.proto.dataReceived(b"\xff\xff\xff\xff")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(events[0]["peer"], ("192.168.1.1", 54321))

    def test_malformed_stun_closes(self) -> None:
        bad = bytearray(stun.encode(_request(SOFTWARE="abcd")))
        bad[22:24] = b"\x00\x40"  # attribute length beyond the message
        self.proto.dataReceived(bytes(bad))
        self.assertTrue(self.transport.disconnecting)

    def test_channel_data_closes(self) -> None:
        self.proto.dataReceived(stun.encode_channel_data(0x4000, b"abc", pad=True))
        self.assertTrue(self.transport.disconnecting)

    def test_idle_timeout(self) -> None:
        """The reactor's clock closes idle connections; traffic resets the timer."""
        self.clock.advance(20)
        self.proto.dataReceived(stun.encode(_request()))
        self.clock.advance(20)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(11)
        self.assertTrue(self.transport.disconnecting)


def _alternate_loopback_usable() -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("127.0.0.2", 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class ServiceTests(TestCase):
    """The service binds real loopback sockets, picks free ports, exposes them."""

    def test_primary_only(self) -> None:
        svc = stun_service(StunServerConfig(port=0))
        with capturedLogs() as events:
            svc.startService()
        self.addCleanup(svc.stopService)
        assert svc.primary_address is not None
        host, port = svc.primary_address
        self.assertEqual(host, "127.0.0.1")
        self.assertNotEqual(port, 0)
        self.assertEqual(svc.tcp_address, ("127.0.0.1", port))
        self.assertEqual(list(svc.udp_addresses), [(0, 0)])
        self.assertIsNone(svc.alternate_address)
        self.assertTrue(any("STUN listening" in e.get("log_format", "") for e in events))

    def test_four_sockets(self) -> None:
        if not _alternate_loopback_usable():
            raise self.skipTest("127.0.0.2 cannot be bound on this host")
        svc = stun_service(StunServerConfig(port=0, alternate_interface="127.0.0.2"))
        svc.startService()
        self.addCleanup(svc.stopService)
        addresses = svc.udp_addresses
        self.assertEqual(set(addresses), {(0, 0), (0, 1), (1, 0), (1, 1)})
        p1, p2 = addresses[0, 0][1], addresses[0, 1][1]
        self.assertNotEqual(p1, p2)
        self.assertEqual(addresses[1, 0], ("127.0.0.2", p1))
        self.assertEqual(addresses[1, 1], ("127.0.0.2", p2))
        self.assertEqual(svc.alternate_address, ("127.0.0.2", p2))

    def test_config_validation(self) -> None:
        self.assertRaises(ValueError, StunServerConfig, alternate_interface="::1")
        self.assertRaises(ValueError, StunServerConfig, alternate_interface="127.0.0.1")
        self.assertRaises(ValueError, StunServerConfig, interface="not-an-ip")
        self.assertRaises(ValueError, StunServerConfig, response_address="yes")

    @defer.inlineCallbacks
    def test_udp_round_trip(self) -> Any:
        """A real datagram through the real reactor, over IPv4 loopback."""
        svc = stun_service(StunServerConfig(port=0))
        svc.startService()
        self.addCleanup(svc.stopService)
        assert svc.primary_address is not None
        client = UdpStunClient(svc.primary_address)
        port = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        request = _request()
        response = yield client.answer(client.send(request.method, request.attributes, fingerprint=True,
                                                   transaction_id=request.transaction_id))
        data = client.raw[request.transaction_id]
        self.assertEqual(response.transaction_id, request.transaction_id)
        self.assertEqual(
            response.attributes[Attr.XOR_MAPPED_ADDRESS], ("127.0.0.1", port.getHost().port)
        )
        self.assertTrue(stun.check_fingerprint(data))


class IPv6ServiceTests(TestCase):
    """The same server on ::1 (IPv6 XOR-MAPPED-ADDRESS over a real socket)."""

    @defer.inlineCallbacks
    def test_ipv6_round_trip(self) -> Any:
        if not socket.has_ipv6:
            raise self.skipTest("no IPv6")
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            raise self.skipTest("::1 cannot be bound here") from None
        svc = stun_service(StunServerConfig(interface="::1", port=0))
        svc.startService()
        self.addCleanup(svc.stopService)
        assert svc.primary_address is not None
        client = UdpStunClient(svc.primary_address)
        port = reactor.listenUDP(0, client, interface="::1")
        self.addCleanup(port.stopListening)
        response = yield defer.Deferred.fromCoroutine(client.request(Method.BINDING))
        self.assertEqual(response.attributes[Attr.XOR_MAPPED_ADDRESS], ("::1", port.getHost().port))


class RobustnessTests(SynchronousTestCase):
    """Whatever arrives, the server neither raises nor answers garbage."""

    @settings(max_examples=400, deadline=None)
    @given(
        st.sampled_from(
            [
                stun.encode(_request(CHANGE_REQUEST=6, RESPONSE_PORT=9), fingerprint=True),
                stun.encode(_request(cookie=False, CHANGE_REQUEST=2)),
                stun.encode(_request(RESPONSE_ADDRESS=("127.0.0.9", 1))),
            ]
        ),
        st.lists(st.tuples(st.integers(0, 59), st.integers(0, 255)), max_size=4),
        st.booleans(),
    )
    def test_mutated_requests(
        self, data: bytes, edits: list[tuple[int, int]], alternate: bool
    ) -> None:
        raw = bytearray(data)
        for index, value in edits:
            if index < len(raw):
                raw[index] = value
        server = StunServer(
            StunServerConfig(alternate_interface="127.0.0.2" if alternate else None)
        )
        for slot, address in ADDRESSES.items():
            if alternate or slot == (0, 0):
                server.addresses[slot] = address
        with capturedLogs():
            reply = server.respond((0, 0), bytes(raw), CLIENT)
        if reply is not None:
            answer = stun.decode(reply.data)
            self.assertIn(answer.msg_class, (Class.SUCCESS, Class.ERROR))
            self.assertIn(reply.slot, server.addresses)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=120), st.integers(1, 16))
    def test_tcp_stream(self, data: bytes, chunk: int) -> None:
        proto = StunTCPProtocol(StunServer(StunServerConfig()), 30.0, Clock())
        transport = StringTransport()
        proto.makeConnection(transport)
        with capturedLogs():
            for i in range(0, len(data), chunk):
                proto.dataReceived(data[i : i + chunk])
        proto.connectionLost(None)
