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

from globaleye.platform.config import parse_config
from globaleye.platform.tap import PlatformService
from globaleye.store.sqlite import SQLiteStore
from tests.util import http_client
from txturn.auth import StaticUsers
from txturn.policy import PeerFilter, embedded_ipv4
from txturn.service import TurnServerConfig, turn_service
from txturn.stun import Attr as A
from txturn.stun import Method as M
from txturn.testing import UdpStunClient
from txturn.testing import code as _code


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_V6 = has_ipv6_loopback()


# --------------------------------------------------------------------------- issue 14 item 8


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
        client = UdpStunClient(svc.addresses["udp"][:2], "alice", "pw", "globaleye")
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
        from globaleye.platform.config import ConfigError

        self.assertRaises(ConfigError, parse_config, "[ops]\ntoken = short\n")


# --------------------------------------------------------------------------- issue 9 item 11

MOBILE, PASSWORD, REALM = "13300000001", "secret1", "GlobalEye"
CAMERA = "81100000001"


class RtspClient(protocol.Protocol):
    """One RTSP connection: a request at a time, responses parsed."""

    def __init__(self) -> None:
        from globaleye.media.rtsp.message import RtspParser

        self.parser = RtspParser()
        self.waiting: Deferred[Any] | None = None
        self.cseq = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for event in self.parser.feed(data):
            d, self.waiting = self.waiting, None
            if d is not None:
                d.callback(event)

    async def ask(self, method: str, uri: str, authorization: str | None = None) -> Any:
        from globaleye.media.rtsp.message import Headers, RtspRequest

        self.cseq += 1
        headers = Headers([("CSeq", str(self.cseq))])
        if authorization is not None:
            headers.add("Authorization", authorization)
        d: Deferred[Any] = Deferred()
        self.waiting = d
        assert self.transport is not None
        self.transport.write(RtspRequest(method, uri, headers).encode())
        return await d.addTimeout(10, reactor)


async def rtsp_connect(host: str, port: int, source: str | None = None) -> RtspClient:
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol

    bind = (source, 0) if source else None
    endpoint: Any = (TCP6ClientEndpoint(reactor, host, port, bindAddress=bind) if ":" in host
                     else TCP4ClientEndpoint(reactor, host, port, bindAddress=bind))
    client = RtspClient()
    await connectProtocol(endpoint, client)
    return client


def digest_header(nonce: str, uri: str, method: str = "DESCRIBE", algorithm: str = "MD5",
                  nc: int | None = None, password: str = PASSWORD) -> str:
    from globaleye.proxy.auth import ALGORITHMS, ha1

    h = ALGORITHMS[algorithm]
    secret = ha1(MOBILE, REALM, password, algorithm)
    ha2 = h(f"{method}:{uri}")
    extra = ""
    if nc is None:
        response = h(f"{secret}:{nonce}:{ha2}")
    else:
        count, cnonce = f"{nc:08x}", "0a4f113b"
        response = h(f"{secret}:{nonce}:{count}:{cnonce}:auth:{ha2}")
        extra = f', qop=auth, nc={count}, cnonce="{cnonce}"'
    return (f'Digest username="{MOBILE}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
            f'algorithm={algorithm}, response="{response}"{extra}')


def challenges_of(response: Any) -> list[tuple[str, str]]:
    """(algorithm, nonce) of each Digest challenge, in order."""
    import re

    out = []
    for value in response.headers.get_all("WWW-Authenticate"):
        if value.startswith("Digest"):
            algorithm = re.search(r'algorithm="?([A-Za-z0-9-]+)', value)
            nonce = re.search(r'nonce="([^"]+)"', value)
            assert nonce is not None, value
            out.append((algorithm.group(1) if algorithm else "MD5", nonce.group(1)))
    return out


class DigestReplayTests(unittest.TestCase):
    timeout = 60

    async def _digest(self) -> None:
        from globaleye.store import Account

        platform = await start_platform(self)
        accounts = platform.accounts
        now = reactor.seconds()
        await platform.store.create_account(Account(MOBILE, await accounts.hash_password(PASSWORD), now, now))
        outcome = await accounts.login(MOBILE, PASSWORD, "1.0", "127.0.0.1:1")  # keeps the HA1s
        assert outcome.session is not None
        port = platform.port_of("rtsp")
        uri1 = f"rtsp://127.0.0.1:{port}/live/{CAMERA}/0/1"
        uri2 = f"rtsp://127.0.0.1:{port}/live/{CAMERA}/0/2"
        playback = f"rtsp://127.0.0.1:{port}/playback/{CAMERA}/0/{CAMERA}_0_20240101000000.ts"
        # Authenticated = past the 401 (the camera is not the account's: 404).
        a = await rtsp_connect("127.0.0.1", port)
        self.addCleanup(a.transport.loseConnection)
        first = await a.ask("DESCRIBE", uri1)
        self.assertEqual(first.code, 401)
        offered = challenges_of(first)
        self.assertEqual([alg for alg, _ in offered], ["SHA-256", "MD5"], "SHA-256 first, MD5 last (RFC 7616)")
        nonce = offered[-1][1]
        captured = digest_header(nonce, uri1)
        self.assertEqual((await a.ask("DESCRIBE", uri1, captured)).code, 404, "authenticated")
        # The header's uri must name the request: not another stream, camera or a playback.
        for other in (uri2, playback):
            self.assertEqual((await a.ask("DESCRIBE", other, captured)).code, 400, other)
        self.assertEqual((await a.ask("DESCRIBE", uri1, captured)).code, 404, "still fine for its own URI")
        # Replayed from another address (and another connection): refused, a fresh challenge.
        b = await rtsp_connect("127.0.0.1", port, source="127.0.0.2")
        self.addCleanup(b.transport.loseConnection)
        replay = await b.ask("DESCRIBE", uri1, captured)
        self.assertEqual(replay.code, 401, "a captured Authorization does not work on another connection")
        self.assertIn('stale="true"', " ".join(replay.headers.get_all("WWW-Authenticate")))
        self.assertEqual(accounts._failures.get(MOBILE), None, "a replay is no password guess")
        # The connection's own nonce works, with SHA-256 as well.
        own = challenges_of(replay)[0][1]
        self.assertEqual((await b.ask("DESCRIBE", uri1, digest_header(own, uri1, algorithm="SHA-256"))).code, 404)
        # qop=auth: the nonce count must grow on its connection.
        c = await rtsp_connect("127.0.0.1", port)
        self.addCleanup(c.transport.loseConnection)
        nonce_c = challenges_of(await c.ask("DESCRIBE", uri1))[-1][1]
        self.assertEqual((await c.ask("DESCRIBE", uri1, digest_header(nonce_c, uri1, nc=1))).code, 404)
        self.assertEqual((await c.ask("DESCRIBE", uri1, digest_header(nonce_c, uri1, nc=1))).code, 401, "nc reused")
        self.assertEqual((await c.ask("DESCRIBE", uri1, digest_header(nonce_c, uri1, nc=2))).code, 404)
        # Equivalent forms of the URI: relative, another host spelling, a track of the stream.
        rel = f"/live/{CAMERA}/0/1"
        self.assertEqual((await c.ask("DESCRIBE", uri1, digest_header(nonce_c, rel))).code, 404)
        named = f"rtsp://proxy.example:{port}/live/{CAMERA}/0/1"
        self.assertEqual((await c.ask("DESCRIBE", uri1, digest_header(nonce_c, named))).code, 404)

    def test_i9_11_digest_replay_and_uri_refused(self) -> Deferred[None]:
        """RTSP Digest: nonces bound to their connection, uri checked, nc increasing, SHA-256 offered."""
        return Deferred.fromCoroutine(self._digest())


# --------------------------------------------------------------------------- issue 14 item 6

V6_CONFIG = """
[province]
cms_password = province-secret-1
[group]
cms_name = GlobalEye
"""
V6_CAMERA = "81100000021"


class Ipv6PublicHostTests(unittest.TestCase):
    timeout = 90

    async def _ipv6(self) -> None:
        import re

        import requests
        import zeep
        from twisted.internet import threads

        from globaleye.client.soap import McuClient
        from globaleye.sim.camera import Timing
        from globaleye.sim.fleet import Fleet
        from globaleye.store import Account, Binding, Device
        from tests.util import FFPROBE, probe, until

        config = STATUS_CONFIG.replace("roles = gateway, http, rtsp", "roles = gateway, http, group, rtsp")
        parsed = parse_config(config.format(public="::1", interface="::1") + V6_CONFIG)
        platform = PlatformService(parsed, SQLiteStore(":memory:"), reactor)
        platform.startService()
        self.addCleanup(platform.stopService)
        http_port, rtsp_port = platform.port_of("http"), platform.port_of("rtsp")
        base = f"http://[::1]:{http_port}"
        # The URLs the platform made for itself: /redirect's default province, GetMcuUrl's default.
        self.assertEqual(platform.redirector.default_province_url, f"{base}/register")
        self.assertEqual(platform.group_directory.default_url, f"{base}/soap/mcu")
        # §6.1 ReportAddress reaches the group (its own URL and the reported ones bracketed).
        assert platform.group_client is not None
        await until(lambda: platform.group_client is not None and platform.group_client.reported, timeout=10)
        report = await platform.store.get_province_report(platform.group_client.province)
        assert report is not None
        self.assertEqual((report.mcu_url, report.dev_url), (f"{base}/soap/mcu", f"{base}/register"))
        # The WSDL's soap:address, by Host header and without one (HTTP/1.0), and zeep using it.
        for raw in (b"GET /soap/group?wsdl HTTP/1.0\r\n\r\n",
                    f"GET /soap/group?wsdl HTTP/1.1\r\nHost: [::1]:{http_port}\r\nConnection: close\r\n\r\n".encode()):
            wsdl = await threads.deferToThread(_raw_http, "::1", http_port, raw)
            self.assertIn(f'location="{base}/soap/group"'.encode(), wsdl, raw)
        session = requests.Session()
        session.headers["Connection"] = "close"
        self.addCleanup(session.close)
        transport = zeep.Transport(session=session, timeout=20, operation_timeout=20)
        client = await threads.deferToThread(zeep.Client, f"{base}/soap/group?wsdl", transport=transport)
        answer = await threads.deferToThread(client.service.GetMcuUrl, MobileTel=MOBILE)
        self.assertEqual((answer.Result, answer.McuUrl), (0, f"{base}/soap/mcu"))
        # A camera on ::1 redirected (/redirect), registered and logged in at the URLs it was given.
        accounts, store = platform.accounts, platform.store
        now = reactor.seconds()
        fleet = Fleet(reactor, redirect_url=f"{base}/redirect", interface="::1",
                      timing=Timing(backoff_initial=0.05), http=http_client())
        self.addCleanup(fleet.stop)
        await fleet.prepare()
        camera = fleet.add(V6_CAMERA)
        await store.enroll_device(Device(dev_id=V6_CAMERA, dev_key=camera.state.dev_key, model="SIM"))
        await store.create_account(Account(MOBILE, await accounts.hash_password(PASSWORD), now, now))
        await store.bind_device(Binding(MOBILE, V6_CAMERA, 0, V6_CAMERA, now), 10)
        fleet.start()
        await camera.went_online
        # The phone's client at the McuUrl GetMcuUrl gave: §8.9 / §7.5.23 URLs of the camera on ::1.
        phone = McuClient(answer.McuUrl, http=http_client())
        await phone.login(MOBILE, PASSWORD)
        live = await phone.play_urls(V6_CAMERA, 0, 1)
        self.assertTrue(live.local.startswith(f"rtsp://[::1]:{fleet.rtsp_port}/realplay?"), live)
        name = camera.state.recordings(0)[-1].file_name
        played = await phone.call("GetPlaybackUrl", DevID=V6_CAMERA, ChannelNo=0, FileName=name)
        self.assertTrue(played["LocalPlayUrl"].startswith(f"rtsp://[::1]:{fleet.rtsp_port}/realplay?"), played)
        # The proxy plays the camera's recording back over ::1; its SDP says IN IP6.
        uri = f"rtsp://[::1]:{rtsp_port}/playback/{V6_CAMERA}/0/{name}"
        viewer = await rtsp_connect("::1", rtsp_port)
        self.addCleanup(viewer.transport.loseConnection)
        nonce = challenges_of(await viewer.ask("DESCRIBE", uri))[-1][1]
        response = await viewer.ask("DESCRIBE", uri, digest_header(nonce, uri))
        self.assertEqual(response.code, 200, response)
        sdp = response.body.decode()
        self.assertRegex(sdp, r"o=- \d+ 1 IN IP6 ::1\r\n")
        self.assertNotIn("IN IP4", sdp)
        if FFPROBE is not None:
            result = await probe(f"rtsp://{MOBILE}:{PASSWORD}@[::1]:{rtsp_port}/playback/{V6_CAMERA}/0/{name}")
            self.assertEqual(result.code, 0, result.err)
            self.assertTrue(re.search(r'"codec_name": "h264"', result.out), result.out)

    def test_i14_06_ipv6_public_host_urls(self) -> Deferred[None]:
        """public_host = ::1: every URL the platform hands out is bracketed, and a camera on ::1 plays back."""
        if not HAS_V6:
            raise unittest.SkipTest("no ::1 on this machine")
        return Deferred.fromCoroutine(self._ipv6())

    def test_i14_06_url_builders(self) -> None:
        from globaleye.media.rtsp.sdp import SessionDescription, rewrite_sdp
        from globaleye.util.urls import host_port, http_url, realplay_url, sdp_address

        self.assertEqual(host_port("::1", 80), "[::1]:80")
        self.assertEqual(host_port("[::1]", 80), "[::1]:80")
        self.assertEqual(host_port("fe80::1%eth0", 80), "[fe80::1%25eth0]:80")
        self.assertEqual(host_port("192.0.2.1", 80), "192.0.2.1:80")
        self.assertEqual(host_port("cms.example", 80), "cms.example:80")
        self.assertEqual(http_url("2001:db8::1", 8080, "/register"), "http://[2001:db8::1]:8080/register")
        self.assertEqual(realplay_url("::1", 554, "81100000001", 0, "t", file_name="f.ts"),
                         "rtsp://[::1]:554/realplay?devid=81100000001&channelno=0&filename=f.ts&hashtoken=t")
        self.assertEqual(sdp_address("::1"), "IN IP6 ::1")
        self.assertEqual(sdp_address("127.0.0.1"), "IN IP4 127.0.0.1")
        sdp = rewrite_sdp(SessionDescription((), ()), [], "::1", "x").decode()
        self.assertIn("IN IP6 ::1", sdp)
        self.assertNotIn("IN IP4", sdp)


def _raw_http(host: str, port: int, request: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
