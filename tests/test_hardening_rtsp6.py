"""Regression tests for the hardening findings of helper rtsp6: RTSP Digest replay
and URI binding (issue 9 item 11), the operator-only ``/status/streams``
(issue 9 item 12), IPv6 ``public_host`` URLs (issue 14 item 6) and IPv4 embedded
in IPv6 peers of the TURN policy (issue 14 item 8)."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from globaleye.config import parse_config
from globaleye.store.sqlite import SQLiteStore
from globaleye.tap import PlatformService
from tests.util import http_client
from txturn import stun
from txturn.auth import StaticUsers, long_term_key
from txturn.policy import PeerFilter, embedded_ipv4
from txturn.service import TurnServerConfig, turn_service
from txturn.stun import Attr as A
from txturn.stun import Class as C
from txturn.stun import Method as M


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_V6 = has_ipv6_loopback()


# --------------------------------------------------------------------------- issue 14 item 8


class _UdpStunClient(protocol.DatagramProtocol):
    """A minimal TURN client over UDP: one request at a time, long-term auth."""

    def __init__(self, server: tuple[str, int], user: str, password: str, realm: str) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.realm = realm
        self.nonce: str | None = None
        self.pending: dict[bytes, Deferred[stun.Message]] = {}

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        msg = stun.decode(data)
        d = self.pending.pop(msg.transaction_id, None)
        if d is not None:
            d.callback(msg)

    def _send(self, method: int, attributes: dict[int, Any], key: bytes | None) -> Deferred[stun.Message]:
        msg = stun.Message(method, C.REQUEST, stun.new_transaction_id(), attributes)
        d: Deferred[stun.Message] = Deferred()
        self.pending[msg.transaction_id] = d
        assert self.transport is not None
        self.transport.write(stun.encode(msg, integrity_key=key), self.server)
        return d.addTimeout(5, reactor)

    async def request(self, method: int, attributes: dict[int, Any]) -> stun.Message:
        if self.nonce is None:
            challenge = await self._send(method, dict(attributes), None)
            self.nonce = challenge.attributes[A.NONCE]
        attrs_ = dict(attributes)
        attrs_[A.USERNAME] = self.user
        attrs_[A.REALM] = self.realm
        attrs_[A.NONCE] = self.nonce
        return await self._send(method, attrs_, long_term_key(self.user, self.realm, self.password))


def _code(msg: stun.Message) -> int:
    if msg.msg_class == C.SUCCESS:
        return 200
    return int(msg.attributes[A.ERROR_CODE][0])


class TurnPeerPolicyTests(unittest.TestCase):
    timeout = 30

    def test_i14_08_policy_table(self) -> None:
        """Unit table: every IPv6 form of a denied IPv4 address is denied, the
        same forms of a public address are not."""
        f = PeerFilter.from_cidrs()
        denied = [
            "::127.0.0.1",  # IPv4-compatible
            "::ffff:127.0.0.1",  # IPv4-mapped
            "::ffff:10.1.2.3",
            "64:ff9b::7f00:1",  # NAT64 well-known prefix
            "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
            "64:ff9b:1::c0a8:101",  # NAT64 local-use prefix, 192.168.1.1
            "2002:7f00:1::1",  # 6to4 of 127.0.0.1
            "2002:a9fe:101::1",  # 6to4 of 169.254.1.1
            "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (inverted)
            "2001:0:a00:1:8000:63bf:3fff:fdd2",  # Teredo, server 10.0.0.1
            "::1",
            "::",
            "fe80::1",
        ]
        for host in denied:
            self.assertIsNotNone(f.check(host), host)
        allowed = [
            "198.51.100.1",
            "::198.51.100.1",
            "64:ff9b::c633:6401",
            "2002:c633:6401::1",
            "2001:0:c633:6401:8000:63bf:3fff:fdd2",
            "2001:db8::1",
        ]
        for host in allowed:
            self.assertIsNone(f.check(host), host)
        self.assertEqual(embedded_ipv4(_ip("2002:7f00:1::1")), (_ip("127.0.0.1"),))
        # An operator allow of the IPv4 range also allows its embedded forms;
        # an explicit deny of it denies them.
        self.assertIsNone(PeerFilter.from_cidrs(allow=["127.0.0.0/8"]).check("64:ff9b::7f00:1"))
        self.assertIsNotNone(
            PeerFilter.from_cidrs(allow=["64:ff9b::/96"], deny=["127.0.0.1/32"]).check("64:ff9b::7f00:1")
        )

    async def _real_allocation(self) -> None:
        config = TurnServerConfig(
            interface="::1", port=0, realm="globaleye", relay_interface="::1", relay_ports=(0, 0),
        )
        svc = turn_service(config, lookup=StaticUsers({"alice": "pw"}), reactor=reactor)
        svc.startService()
        self.addCleanup(svc.stopService)
        client = _UdpStunClient(svc.addresses["udp"][:2], "alice", "pw", "globaleye")
        port = reactor.listenUDP(0, client, interface="::1")
        self.addCleanup(port.stopListening)
        resp = await client.request(M.ALLOCATE, {A.REQUESTED_TRANSPORT: 17})
        self.assertEqual(_code(resp), 200)
        for peer in ["::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "64:ff9b:1::a00:1",
                     "2001:0:4136:e378:8000:63bf:80ff:fffe"]:
            resp = await client.request(M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: (peer, 9)})
            self.assertEqual(_code(resp), 403, peer)
        resp = await client.request(M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("2002:c633:6401::1", 9)})
        self.assertEqual(_code(resp), 200)

    def test_i14_08_turn_ipv6_forms_of_ipv4_loopback_refused(self) -> Deferred[None]:
        """A real UDP allocation on ::1: CreatePermission to the IPv6 forms of
        127.0.0.1 / 10.0.0.1 answers 403."""
        if not HAS_V6:
            raise unittest.SkipTest("no ::1 on this machine")
        return Deferred.fromCoroutine(self._real_allocation())


def _ip(text: str) -> Any:
    import ipaddress

    return ipaddress.ip_address(text)


# --------------------------------------------------------------------------- issue 9 item 12

STATUS_CONFIG = """
[globaleye]
roles = gateway, http, rtsp
public_host = {public}
[database]
url = sqlite:///:memory:
[http]
interface = {interface}
port = 0
[gateway]
interface = {interface}
port = 0
[rtsp]
interface = {interface}
port = 0
"""
TOKEN = "s3cret-operator-token-0123"


async def start_platform(test: unittest.TestCase, extra: str = "", public: str = "127.0.0.1",
                         interface: str = "127.0.0.1") -> PlatformService:
    config = parse_config(STATUS_CONFIG.format(public=public, interface=interface) + extra)
    platform = PlatformService(config, SQLiteStore(":memory:"), reactor)
    platform.startService()
    test.addCleanup(platform.stopService)
    return platform


class OperatorStatusTests(unittest.TestCase):
    timeout = 30

    async def _status(self) -> None:
        import base64

        # Shipped default: no token, no page.
        platform = await start_platform(self)
        url = f"http://127.0.0.1:{platform.port_of('http')}/status/streams"
        self.assertEqual((await http_client().get(url)).code, 404)
        # With a token: only for requests that present it.
        platform = await start_platform(self, f"[ops]\ntoken = {TOKEN}\n")
        url = f"http://127.0.0.1:{platform.port_of('http')}/status/streams"
        response = await http_client().get(url)
        self.assertEqual(response.code, 401)
        self.assertIn(b"Bearer", b" ".join(response.headers.getRawHeaders(b"www-authenticate", [])))
        body = await response.content()
        self.assertNotIn(b"upstream_starts", body)
        for wrong in (f"Bearer {TOKEN}x", "Bearer ", f"Bearer {TOKEN[:-1]}",
                      "Basic " + base64.b64encode(b"ops:nope").decode(), "Digest x"):
            response = await http_client().get(url, headers={"Authorization": wrong})
            self.assertEqual(response.code, 401, wrong)
            await response.content()
        response = await http_client().get(f"http://127.0.0.1:{platform.port_of('http')}/status",
                                           headers={"Authorization": f"Bearer {TOKEN}x"})
        self.assertEqual(response.code, 401)
        await response.content()
        for right in (f"Bearer {TOKEN}", "Basic " + base64.b64encode(f"operator:{TOKEN}".encode()).decode()):
            response = await http_client().get(url, headers={"Authorization": right})
            self.assertEqual(response.code, 200, right)
            self.assertIn("upstream_starts", await response.json())

    def test_i9_12_status_streams_operator_only(self) -> Deferred[None]:
        """/status/streams is not on the public site by default, and with [ops] token only for the operator."""
        return Deferred.fromCoroutine(self._status())

    def test_i9_12_short_token_refused(self) -> None:
        from globaleye.config import ConfigError

        self.assertRaises(ConfigError, parse_config, "[ops]\ntoken = short\n")
