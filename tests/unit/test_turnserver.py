"""Unit tests of the TURN state machine: fake transports, ``task.Clock`` time."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from txturn import stun
from txturn.auth import (
    ChainedLookup,
    Credential,
    NonceIssuer,
    RestApiSecret,
    StaticUsers,
    long_term_key,
    rest_api_password,
)
from txturn.policy import PeerFilter, PortAllocator, Throttle, parse_port_range
from txturn.testing import (
    REALM,
    SERVER,
    FakeLink,
    Harness,
    client,
    code,
    run,
)
from txturn.turnserver import TurnStreamProtocol

M, C, A = stun.Method, stun.Class, stun.Attr


# --------------------------------------------------------------------------- auth


class AuthTests(unittest.TestCase):
    def test_challenge_without_integrity(self) -> None:
        h = Harness(self)
        resp = h.allocate(client(), auth=False)
        self.assertEqual(code(resp), 401)
        self.assertEqual(resp.attributes[A.REALM], REALM)
        self.assertIn(A.NONCE, resp.attributes)
        self.assertNotIn(A.MESSAGE_INTEGRITY, resp.attributes)

    def test_wrong_password(self) -> None:
        h = Harness(self)
        self.assertEqual(code(h.allocate(client(), password="wrong")), 401)
        self.assertEqual(h.server.allocations, {})

    def test_wrong_realm(self) -> None:
        h = Harness(self)
        resp = h.allocate(client(), realm="other")
        self.assertEqual(code(resp), 401)
        self.assertEqual(resp.attributes[A.REALM], REALM)

    def test_unknown_user(self) -> None:
        h = Harness(self)
        self.assertEqual(code(h.allocate(client(), user="mallory", password="x")), 401)

    def test_missing_username_is_400(self) -> None:
        h = Harness(self)
        key = long_term_key("alice", REALM, "secret")
        msg = stun.Message(M.ALLOCATE, C.REQUEST, stun.new_transaction_id(),
                           {A.REQUESTED_TRANSPORT: 17, A.REALM: REALM,
                            A.NONCE: h.server.nonces.issue()})
        self.assertEqual(code(h.send_raw(client(), stun.encode(msg, integrity_key=key))), 400)

    def test_stale_nonce_438_then_retry(self) -> None:
        h = Harness(self)
        link = client()
        old = h.server.nonces.issue()
        h.reactor.advance(601)
        resp = h.allocate(link, nonce=old)
        self.assertEqual(code(resp), 438)
        self.assertEqual(code(h.allocate(link, nonce=resp.attributes[A.NONCE])), 200)

    def test_forged_nonce_438(self) -> None:
        h = Harness(self)
        self.assertEqual(code(h.allocate(client(), nonce="abc.def")), 438)

    def test_success_is_integrity_protected(self) -> None:
        h = Harness(self)
        link = client()
        resp = h.allocate(link)
        self.assertEqual(code(resp), 200)
        self.assertTrue(stun.check_integrity(link.sent[-1], long_term_key("alice", REALM, "secret")))

    def test_other_user_on_same_5tuple_441(self) -> None:
        h = Harness(self)
        link = client()
        h.allocate(link)
        self.assertEqual(code(h.request(link, M.REFRESH, {A.LIFETIME: 600}, user="bob")), 441)

    def test_unknown_comprehension_required_attribute_420(self) -> None:
        h = Harness(self)
        resp = h.allocate(client(), extra={0x7777: b"\x00\x00\x00\x00"})
        self.assertEqual(code(resp), 420)
        self.assertEqual(resp.attributes[A.UNKNOWN_ATTRIBUTES], (0x7777,))


class CredentialTests(unittest.TestCase):
    def test_rest_api_secret(self) -> None:
        clock = MemoryReactorClock()
        clock.advance(1000)
        lookup = RestApiSecret("s3cret", clock)
        user = "2000:cam42"
        password = base64.b64encode(hmac.new(b"s3cret", user.encode(), hashlib.sha1).digest()).decode()
        self.assertEqual(rest_api_password("s3cret", user), password)
        cred = run(lookup.lookup(user, REALM))
        self.assertEqual(cred, Credential(long_term_key(user, REALM, password)))
        clock.advance(1001)
        self.assertIsNone(run(lookup.lookup(user, REALM)))
        self.assertIsNone(run(lookup.lookup("notanumber:x", REALM)))

    def test_chained(self) -> None:
        chain = ChainedLookup.of(StaticUsers({"a": "1"}), StaticUsers({"b": "2"}, {"b"}))
        self.assertEqual(run(chain.lookup("b", "r")), Credential(long_term_key("b", "r", "2"), True))
        self.assertIsNone(run(chain.lookup("c", "r")))

    def test_nonce(self) -> None:
        clock = MemoryReactorClock()
        issuer = NonceIssuer(clock, lifetime=10)
        n = issuer.issue()
        self.assertEqual(issuer.check(n), "ok")
        self.assertEqual(issuer.check(n + "x"), "invalid")
        clock.advance(11)
        self.assertEqual(issuer.check(n), "stale")


# --------------------------------------------------------------------------- allocations


class AllocationTests(unittest.TestCase):
    def test_allocate_udp(self) -> None:
        h = Harness(self)
        link = client()
        resp = h.allocate(link)
        self.assertEqual(code(resp), 200)
        relay = resp.attributes[A.XOR_RELAYED_ADDRESS]
        self.assertEqual(relay[0], "127.0.0.1")
        self.assertEqual(resp.attributes[A.LIFETIME], 600)
        self.assertEqual(resp.attributes[A.XOR_MAPPED_ADDRESS], link.client_addr)

    def test_external_ip_advertised(self) -> None:
        h = Harness(self, external_ip="203.0.113.7")
        resp = h.allocate(client())
        self.assertEqual(resp.attributes[A.XOR_RELAYED_ADDRESS][0], "203.0.113.7")

    def test_mismatch_and_retransmission(self) -> None:
        h = Harness(self)
        link = client()
        tid = stun.new_transaction_id()
        first = h.allocate(link, tid=tid)
        again = h.allocate(link, tid=tid)
        self.assertEqual(first, again)
        self.assertEqual(code(h.allocate(link)), 437)

    def test_transport_checks(self) -> None:
        h = Harness(self)
        self.assertEqual(code(h.allocate(client(1), transport=99)), 442)
        self.assertEqual(code(h.request(client(2), M.ALLOCATE, {})), 400)
        # RFC 6062: a TCP relay needs a TCP/TLS control connection.
        self.assertEqual(code(h.allocate(client(3), transport=6)), 400)
        self.assertEqual(code(h.allocate(client(4, stream=True), transport=6)), 200)
        self.assertEqual(code(h.allocate(client(5), extra={A.REQUESTED_ADDRESS_FAMILY: 2})), 440)

    def test_lifetimes_and_expiry(self) -> None:
        h = Harness(self)
        link = client()
        self.assertEqual(h.allocate(link, extra={A.LIFETIME: 100000}).attributes[A.LIFETIME], 3600)
        self.assertEqual(h.request(link, M.REFRESH, {A.LIFETIME: 10}).attributes[A.LIFETIME], 600)
        port = h.reactor.udp_ports[-1]
        h.reactor.advance(599)
        self.assertIn(link.five_tuple, h.server.allocations)
        h.reactor.advance(2)
        self.assertNotIn(link.five_tuple, h.server.allocations)
        self.assertTrue(port.stopped)
        self.assertEqual(code(h.request(link, M.REFRESH, {A.LIFETIME: 600})), 437)

    def test_refresh_zero_deletes(self) -> None:
        h = Harness(self)
        link = client()
        h.allocate(link)
        resp = h.request(link, M.REFRESH, {A.LIFETIME: 0})
        self.assertEqual((code(resp), resp.attributes[A.LIFETIME]), (200, 0))
        self.assertEqual(h.server.allocations, {})
        self.assertEqual(h.server.quotas.total, 0)

    def test_storm_from_one_user(self) -> None:
        """A user hammering Allocate gets 486 after the quota; others are unaffected."""
        h = Harness(self, user_quota=3)
        codes = [code(h.allocate(client(i))) for i in range(50)]
        self.assertEqual(codes.count(200), 3)
        self.assertEqual(codes.count(486), 47)
        self.assertEqual(code(h.allocate(client(100), user="bob")), 200)
        # Freeing one lets alice allocate again.
        h.request(client(0), M.REFRESH, {A.LIFETIME: 0})
        self.assertEqual(code(h.allocate(client(200))), 200)

    def test_total_quota_508(self) -> None:
        h = Harness(self, total_quota=2)
        self.assertEqual(code(h.allocate(client(1))), 200)
        self.assertEqual(code(h.allocate(client(2), user="bob")), 200)
        self.assertEqual(code(h.allocate(client(3), user="cam1")), 508)

    def test_no_relay_port_508(self) -> None:
        h = Harness(self)

        def refuse(*a: Any, **k: Any) -> Any:
            raise OSError("in use")

        h.reactor.listenUDP = refuse  # type: ignore[method-assign]
        h.server.ports = PortAllocator(50000, 50010)
        self.assertEqual(code(h.allocate(client())), 508)
        self.assertEqual(h.server.quotas.total, 0)


# --------------------------------------------------------------------------- permissions, channels


def peer_send(h: Harness, link: FakeLink, peer: tuple[str, int], data: bytes) -> None:
    ind = stun.Message(M.SEND, C.INDICATION, stun.new_transaction_id(),
                       {A.XOR_PEER_ADDRESS: peer, A.DATA: data})
    run(h.server.handle_stun(stun.encode(ind), link))


class PermissionTests(unittest.TestCase):
    def test_send_needs_permission_and_it_expires(self) -> None:
        h = Harness(self)
        link = client()
        h.allocate(link)
        relay_t = h.reactor.udp_ports[-1].transport
        peer = ("127.0.0.5", 9000)
        peer_send(h, link, peer, b"early")
        self.assertEqual(relay_t.sent, [])
        self.assertEqual(code(h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: peer})), 200)
        peer_send(h, link, peer, b"hello")
        self.assertEqual(relay_t.sent, [(b"hello", peer)])
        # Incoming from the permitted IP (any port) becomes a Data indication.
        h.reactor.udp_ports[-1].protocol.datagramReceived(b"back", ("127.0.0.5", 9999))
        ind = stun.decode(link.sent[-1])
        self.assertEqual((ind.method, ind.msg_class), (M.DATA, C.INDICATION))
        self.assertEqual(ind.attributes[A.DATA], b"back")
        self.assertEqual(ind.attributes[A.XOR_PEER_ADDRESS], ("127.0.0.5", 9999))
        # Not from another IP.
        n = len(link.sent)
        h.reactor.udp_ports[-1].protocol.datagramReceived(b"x", ("127.0.0.6", 1))
        self.assertEqual(len(link.sent), n)
        h.reactor.advance(301)
        peer_send(h, link, peer, b"late")
        self.assertEqual(len(relay_t.sent), 1)

    def test_denied_peers_403(self) -> None:
        h = Harness(self, deny_peers=("127.0.0.66/32",))
        link = client()
        h.allocate(link)
        for peer in [("10.1.2.3", 1), ("192.168.1.1", 1), ("169.254.1.1", 1), ("224.0.0.1", 1),
                     ("100.64.0.1", 1), ("127.0.0.66", 1)]:
            resp = h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: peer})
            self.assertEqual(code(resp), 403, peer)
        # One bad peer in a request refuses the whole request.
        msg_ok = h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("198.51.100.1", 1)})
        self.assertEqual(code(msg_ok), 200)
        self.assertEqual(code(h.request(link, M.CREATE_PERMISSION, {})), 400)

    def test_wildcard_only_for_wildcard_credentials(self) -> None:
        h = Harness(self)
        alice, cam = client(1), client(2)
        h.allocate(alice)
        resp = h.request(alice, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("0.0.0.0", 0)})
        self.assertEqual(code(resp), 403)
        h.allocate(cam, user="cam1")
        resp = h.request(cam, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("0.0.0.0", 0)}, user="cam1")
        self.assertEqual(code(resp), 200)
        relay = h.reactor.udp_ports[-1]
        relay.protocol.datagramReceived(b"anyone", ("127.9.9.9", 1234))
        self.assertEqual(stun.decode(cam.sent[-1]).attributes[A.DATA], b"anyone")
        # The deny list still applies under the wildcard.
        n = len(cam.sent)
        relay.protocol.datagramReceived(b"lan", ("10.0.0.1", 1234))
        self.assertEqual(len(cam.sent), n)
        h.reactor.advance(301)
        relay.protocol.datagramReceived(b"late", ("127.9.9.9", 1234))
        self.assertEqual(len(cam.sent), n)

    def test_channels(self) -> None:
        h = Harness(self)
        link = client()
        h.allocate(link)
        relay = h.reactor.udp_ports[-1]
        peer, other = ("127.0.0.5", 9000), ("127.0.0.6", 9000)
        bind = lambda ch, p: code(  # noqa: E731
            h.request(link, M.CHANNEL_BIND, {A.CHANNEL_NUMBER: ch, A.XOR_PEER_ADDRESS: p})
        )
        self.assertEqual(bind(0x3FFF, peer), 400)
        self.assertEqual(bind(0x8000, peer), 400)
        self.assertEqual(bind(0x4000, ("10.0.0.1", 1)), 403)
        self.assertEqual(bind(0x4000, peer), 200)
        self.assertEqual(bind(0x4000, peer), 200)  # refresh
        self.assertEqual(bind(0x4000, other), 400)
        self.assertEqual(bind(0x4001, peer), 400)
        # ChannelData both ways (ChannelBind also installed the permission).
        h.server.handle_channel_data(stun.encode_channel_data(0x4000, b"abc", pad=False), link)
        self.assertEqual(relay.transport.sent, [(b"abc", peer)])
        relay.protocol.datagramReceived(b"xyz", peer)
        self.assertEqual(stun.decode_channel_data(link.sent[-1]), (0x4000, b"xyz"))
        # Unbound channel: dropped.
        h.server.handle_channel_data(stun.encode_channel_data(0x4002, b"no", pad=False), link)
        self.assertEqual(len(relay.transport.sent), 1)
        # After 10 minutes the binding is gone (permission refreshed meanwhile).
        h.reactor.advance(250)
        h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: peer})
        h.reactor.advance(250)
        h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: peer})
        h.request(link, M.REFRESH, {A.LIFETIME: 600})
        h.reactor.advance(101)
        relay.protocol.datagramReceived(b"after", peer)
        self.assertEqual(stun.decode(link.sent[-1]).method, M.DATA)
        # ...and the number stays reserved for that peer for 5 more minutes.
        self.assertEqual(bind(0x4000, other), 400)
        self.assertEqual(bind(0x4000, peer), 200)

    def test_channel_data_padded_over_tcp(self) -> None:
        h = Harness(self)
        link = client(stream=True)
        h.allocate(link)
        h.request(link, M.CHANNEL_BIND, {A.CHANNEL_NUMBER: 0x4000, A.XOR_PEER_ADDRESS: ("127.0.0.5", 1)})
        h.reactor.udp_ports[-1].protocol.datagramReceived(b"abcde", ("127.0.0.5", 1))
        self.assertEqual(link.sent[-1], b"\x40\x00\x00\x05abcde\x00\x00\x00")

    def test_bandwidth_cap_udp(self) -> None:
        h = Harness(self, max_bps=1000)
        link = client()
        h.allocate(link)
        peer = ("127.0.0.5", 9000)
        h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: peer})
        relay_t = h.reactor.udp_ports[-1].transport
        for _ in range(10):
            peer_send(h, link, peer, b"x" * 500)
        self.assertEqual(len(relay_t.sent), 3)  # the 1500-byte burst (3 x 500 bytes)
        h.reactor.advance(1.0)
        for _ in range(10):
            peer_send(h, link, peer, b"x" * 500)
        self.assertEqual(len(relay_t.sent), 5)  # one second refilled 1000 bytes


# --------------------------------------------------------------------------- RFC 6062


def stream_proto(h: Harness, port: int) -> tuple[TurnStreamProtocol, StringTransport]:
    p = TurnStreamProtocol(h.server, "tcp")
    t = StringTransport(hostAddress=IPv4Address("TCP", *SERVER),
                        peerAddress=IPv4Address("TCP", "127.0.0.1", port))
    p.makeConnection(t)
    return p, t


class Rfc6062Tests(unittest.TestCase):
    def _tcp_allocation(self, h: Harness, user: str = "cam1") -> tuple[FakeLink, Any]:
        link = client(1, stream=True)
        self.assertEqual(code(h.allocate(link, transport=6, user=user)), 200)
        return link, h.reactor.tcp_ports[-1]

    def _peer_connects(self, relay: Any, peer: tuple[str, int]) -> tuple[Any, StringTransport]:
        proto = relay.factory.buildProtocol(IPv4Address("TCP", *peer))
        t = StringTransport(peerAddress=IPv4Address("TCP", *peer))
        proto.makeConnection(t)
        return proto, t

    def _bind_request(self, h: Harness, cid: int, user: str = "cam1", auth: bool = True) -> bytes:
        attrs_: dict[int, Any] = {A.CONNECTION_ID: cid}
        key = None
        if auth:
            attrs_.update({A.USERNAME: user, A.REALM: REALM, A.NONCE: h.server.nonces.issue()})
            key = long_term_key(user, REALM, dict(h.lookup.users)[user])
        return stun.encode(stun.Message(M.CONNECTION_BIND, C.REQUEST, stun.new_transaction_id(),
                                        attrs_), integrity_key=key)

    def test_peer_without_permission_is_closed(self) -> None:
        h = Harness(self)
        link, relay = self._tcp_allocation(h)
        _, t = self._peer_connects(relay, ("127.0.0.7", 5555))
        self.assertTrue(t.disconnecting)
        self.assertEqual(len(link.sent), 1)  # only the Allocate response

    def test_connection_attempt_bind_and_raw_bytes(self) -> None:
        h = Harness(self)
        link, relay = self._tcp_allocation(h)
        resp = h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("0.0.0.0", 0)}, user="cam1")
        self.assertEqual(code(resp), 200)
        peer_proto, peer_t = self._peer_connects(relay, ("127.0.0.7", 5555))
        self.assertFalse(peer_t.disconnecting)
        attempt = stun.decode(link.sent[-1])
        self.assertEqual((attempt.method, attempt.msg_class), (M.CONNECTION_ATTEMPT, C.INDICATION))
        self.assertEqual(attempt.attributes[A.XOR_PEER_ADDRESS], ("127.0.0.7", 5555))
        cid = attempt.attributes[A.CONNECTION_ID]
        # The phone speaks first: buffered until the camera binds.
        peer_proto.dataReceived(b"OPTIONS rtsp://x RTSP/1.0\r\n\r\n")
        data_proto, data_t = stream_proto(h, 41000)
        # ConnectionBind and the camera's first bytes in one segment.
        data_proto.dataReceived(self._bind_request(h, cid) + b"RTSP/1.0 200 OK\r\n")
        out = data_t.value()
        resp_len = stun.message_length(out)
        self.assertEqual(code(stun.decode(out[:resp_len])), 200)
        self.assertEqual(out[resp_len:], b"OPTIONS rtsp://x RTSP/1.0\r\n\r\n")
        self.assertEqual(peer_t.value(), b"RTSP/1.0 200 OK\r\n")
        # Now a raw pipe, STUN-looking bytes included.
        data_t.clear()
        peer_t.clear()
        data_proto.dataReceived(b"\x00\x01\x00\x00 not stun")
        peer_proto.dataReceived(b"\x40\x00 nor channel data")
        self.assertEqual(peer_t.value(), b"\x00\x01\x00\x00 not stun")
        self.assertEqual(data_t.value(), b"\x40\x00 nor channel data")
        # The phone's FIN reaches the camera (StringTransport cannot half-close,
        # so the pipe closes it; real half-close is proven on loopback).
        peer_proto.readConnectionLost()
        self.assertTrue(data_t.disconnecting)
        # A second bind of the same id is refused.
        other, other_t = stream_proto(h, 41001)
        other.dataReceived(self._bind_request(h, cid))
        self.assertEqual(code(stun.decode(other_t.value())), 400)

    def test_unauthenticated_or_foreign_connection_bind(self) -> None:
        h = Harness(self)
        link, relay = self._tcp_allocation(h)
        h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("0.0.0.0", 0)}, user="cam1")
        _, peer_t = self._peer_connects(relay, ("127.0.0.7", 5555))
        cid = stun.decode(link.sent[-1]).attributes[A.CONNECTION_ID]
        p1, t1 = stream_proto(h, 41000)
        p1.dataReceived(self._bind_request(h, cid, auth=False))
        self.assertEqual(code(stun.decode(t1.value())), 401)
        p2, t2 = stream_proto(h, 41001)
        p2.dataReceived(self._bind_request(h, cid, user="alice"))
        self.assertEqual(code(stun.decode(t2.value())), 441)
        p3, t3 = stream_proto(h, 41002)
        p3.dataReceived(self._bind_request(h, cid ^ 1))
        self.assertEqual(code(stun.decode(t3.value())), 400)
        self.assertIsNone(p1.pipe or p2.pipe or p3.pipe)
        self.assertFalse(peer_t.disconnecting)

    def test_unbound_attempt_closed_after_30s(self) -> None:
        h = Harness(self)
        link, relay = self._tcp_allocation(h)
        h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("127.0.0.7", 0)}, user="cam1")
        _, peer_t = self._peer_connects(relay, ("127.0.0.7", 5555))
        cid = stun.decode(link.sent[-1]).attributes[A.CONNECTION_ID]
        h.reactor.advance(29)
        self.assertFalse(peer_t.disconnecting)
        h.reactor.advance(2)
        self.assertTrue(peer_t.disconnecting)
        self.assertNotIn(cid, h.server.connections)

    def test_early_buffer_is_bounded(self) -> None:
        h = Harness(self, early_buffer_limit=1000)
        link, relay = self._tcp_allocation(h)
        h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("0.0.0.0", 0)}, user="cam1")
        peer_proto, peer_t = self._peer_connects(relay, ("127.0.0.7", 5555))
        peer_proto.dataReceived(b"x" * 1500)
        self.assertEqual(peer_t.producerState, "paused")
        cid = stun.decode(link.sent[-1]).attributes[A.CONNECTION_ID]
        data_proto, data_t = stream_proto(h, 41000)
        data_proto.dataReceived(self._bind_request(h, cid))
        self.assertEqual(peer_t.producerState, "producing")
        self.assertTrue(data_t.value().endswith(b"x" * 1500))

    def test_allocation_for_non_wildcard_user(self) -> None:
        h = Harness(self)
        link, _ = self._tcp_allocation(h, user="alice")
        resp = h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("0.0.0.0", 0)})
        self.assertEqual(code(resp), 403)
        self.assertEqual(code(h.request(link, M.CHANNEL_BIND, {
            A.CHANNEL_NUMBER: 0x4000, A.XOR_PEER_ADDRESS: ("127.0.0.1", 1)})), 400)

    def test_control_loss_deletes_allocation_and_connections(self) -> None:
        h = Harness(self)
        ctl, ctl_t = stream_proto(h, 42000)
        key = long_term_key("cam1", REALM, "devkey")
        nonce = h.server.nonces.issue()
        common = {A.USERNAME: "cam1", A.REALM: REALM, A.NONCE: nonce}
        ctl.dataReceived(stun.encode(stun.Message(M.ALLOCATE, C.REQUEST, stun.new_transaction_id(),
                                                  {A.REQUESTED_TRANSPORT: 6, **common}), integrity_key=key))
        ctl.dataReceived(stun.encode(stun.Message(M.CREATE_PERMISSION, C.REQUEST, stun.new_transaction_id(),
                                                  {A.XOR_PEER_ADDRESS: ("0.0.0.0", 0), **common}),
                                     integrity_key=key))
        relay = h.reactor.tcp_ports[-1]
        _, peer_t = self._peer_connects(relay, ("127.0.0.7", 5555))
        self.assertEqual(len(h.server.connections), 1)
        ctl.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(h.server.allocations, {})
        self.assertEqual(h.server.connections, {})
        self.assertTrue(peer_t.disconnecting)
        self.assertTrue(relay.stopped)

    def test_bandwidth_cap_pauses_pipe(self) -> None:
        h = Harness(self, max_bps=10_000)
        link, relay = self._tcp_allocation(h)
        h.request(link, M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("0.0.0.0", 0)}, user="cam1")
        peer_proto, peer_t = self._peer_connects(relay, ("127.0.0.7", 5555))
        cid = stun.decode(link.sent[-1]).attributes[A.CONNECTION_ID]
        data_proto, data_t = stream_proto(h, 41000)
        data_proto.dataReceived(self._bind_request(h, cid))
        peer_proto.dataReceived(b"y" * 25_000)
        self.assertEqual(peer_t.producerState, "paused")
        self.assertEqual(data_t.producerState, "paused")
        h.reactor.advance(1.0)
        self.assertEqual(peer_t.producerState, "paused")
        h.reactor.advance(0.6)
        self.assertEqual(peer_t.producerState, "producing")
        # Nothing dropped on streams: after the ConnectionBind answer comes exactly the payload.
        # (Counting b"y" over the whole output was flaky: the answer's random bytes may hold one.)
        out = data_t.value()
        answer = stun.message_length(out)
        assert answer is not None
        self.assertEqual(out[answer:], b"y" * 25_000)


class BindingTests(unittest.TestCase):
    def test_binding_on_turn_port(self) -> None:
        h = Harness(self)
        link = client()
        msg = stun.Message(M.BINDING, C.REQUEST, stun.new_transaction_id(), {})
        resp = h.send_raw(link, stun.encode(msg))
        self.assertEqual(resp.attributes[A.XOR_MAPPED_ADDRESS], link.client_addr)


class PolicyTests(unittest.TestCase):
    def test_peer_filter(self) -> None:
        f = PeerFilter.from_cidrs(allow=["127.0.0.0/8"], deny=["127.0.0.2/32"])
        self.assertTrue(f.allowed("127.0.0.1"))
        self.assertFalse(f.allowed("127.0.0.2"))
        self.assertFalse(f.allowed("10.0.0.1"))
        self.assertFalse(f.allowed("::1"))
        self.assertFalse(f.allowed("::ffff:10.0.0.1"))
        self.assertFalse(f.allowed("fd00::1"))
        self.assertTrue(f.allowed("8.8.8.8"))
        self.assertTrue(f.allowed("2001:db8::1"))
        self.assertFalse(f.allowed("not-an-ip"))

    def test_port_range(self) -> None:
        self.assertEqual(parse_port_range("49152-65535"), (49152, 65535))
        self.assertEqual(parse_port_range((1, 2)), (1, 2))
        self.assertRaises(ValueError, parse_port_range, "9-1")
        alloc = PortAllocator(50000, 50003)
        taken = {50000, 50001, 50002}

        def bind(p: int) -> int:
            if p in taken:
                raise OSError("busy")
            return p

        self.assertEqual(alloc.acquire(bind), (50003, 50003))

    def test_throttle(self) -> None:
        clock = MemoryReactorClock()
        t = Throttle(100.0, clock, burst=100.0)
        events: list[str] = []

        class P:
            def pauseProducing(self) -> None:  # noqa: N802
                events.append("pause")

            def resumeProducing(self) -> None:  # noqa: N802
                events.append("resume")

        t.register(P())
        t.consume(150)
        self.assertEqual(events, ["pause"])
        clock.advance(0.4)
        self.assertEqual(events, ["pause"])
        clock.advance(0.2)
        self.assertEqual(events, ["pause", "resume"])
