"""Helpers shared by the Trial tests: waiting on the real reactor, child processes, the platform
configurations several modules use, and the harnesses of the proxy, its authentication, the gateway's
device connection and the camera's RTSP server.

A test module imports shared helpers from here (or from :mod:`globaleye.testing`,
:mod:`txturn.testing`, tests/netns.py), never from another test module.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from argon2 import PasswordHasher
from treq.client import HTTPClient
from twisted.internet import defer, error, protocol, reactor, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.device.protocol import messages as m
from globaleye.device.protocol.frame import Frame, FrameDecoder, encode_frame
from globaleye.media import rtp
from globaleye.media.rtsp.message import (
    Headers,
    InterleavedFrame,
    RtspParser,
    RtspRequest,
    RtspResponse,
)

if TYPE_CHECKING:
    from globaleye.device.gateway import Gateway
    from globaleye.device.gateway.session import DeviceSession
    from globaleye.proxy.server import RtspProxyFactory, RtspProxyProtocol


#: The repository's root (the checkout these tests run from), whichever of tests/unit, tests/integration
#: and tests/interop a module sits in.
ROOT = Path(__file__).resolve().parent.parent


async def until(condition: Callable[[], object], timeout: float = 10.0, step: float = 0.01) -> None:
    """Spin the real reactor (store threads, sockets) until *condition* holds, or fail."""
    waited = 0.0
    while not condition():
        if waited > timeout:
            raise AssertionError(f"condition not reached within {timeout:g} s")
        await deferLater(reactor, step, lambda: None)
        waited += step


def http_client() -> HTTPClient:
    """A treq client without persistent connections, so no test leaves a socket open."""
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


@attrs.frozen
class Result:
    out: str
    err: str
    code: int | None
    timed_out: bool


class _Collector(protocol.ProcessProtocol):
    def __init__(self, done: defer.Deferred[Result]) -> None:
        self.done = done
        self.out = b""
        self.err = b""
        self.timed_out = False

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out += data

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.done.callback(Result(self.out.decode(errors="replace"), self.err.decode(errors="replace"),
                                  getattr(reason.value, "exitCode", None), self.timed_out))


async def run(executable: str, args: list[str], timeout: float = 20.0, env: dict[str, str] | None = None) -> Result:
    """Spawn a real peer (a player, a STUN client…); SIGKILL it after *timeout* seconds (a reactor timer)."""
    done: defer.Deferred[Result] = defer.Deferred()
    collector = _Collector(done)
    process = reactor.spawnProcess(collector, executable, [executable, *args],
                                   env=dict(os.environ) if env is None else env)

    def kill() -> None:
        collector.timed_out = True
        try:
            process.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    timer = reactor.callLater(timeout, kill)
    try:
        return await done
    finally:
        if timer.active():
            timer.cancel()


class CameraOnPlatform:
    """A platform (from *config*) with one simulated camera online, torn down with the test.

    ``start()`` is the body of the tests' setUp; ``token()`` a fresh single-use HashToken for
    the camera's live stream, as §8.9 would issue (straight into the store).
    """

    def __init__(self, test: Any, config: str, dev_id: str) -> None:
        self.test, self.config, self.dev_id = test, config, dev_id

    async def start(self) -> None:
        from globaleye.platform.config import parse_config
        from globaleye.platform.tap import PlatformService
        from globaleye.sim.camera import Timing
        from globaleye.sim.fleet import Fleet
        from globaleye.store.sqlite import SQLiteStore

        self.platform = PlatformService(parse_config(self.config), SQLiteStore(":memory:"), reactor)
        self.platform.startService()
        self.test.addCleanup(self.platform.stopService)
        self.fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{self.platform.port_of('http')}/register",
                           timing=Timing(backoff_initial=0.05), http=http_client())
        self.test.addCleanup(self.fleet.stop)
        await self.fleet.prepare()
        self.camera = self.fleet.add(self.dev_id)
        self.fleet.start()
        await self.camera.went_online

    async def token(self, stream_type: int = 1) -> str:
        import secrets

        from globaleye.store import HashToken
        value = secrets.token_hex(16)
        await self.platform.store.add_token(HashToken(token=value, dev_id=self.dev_id, channel_no=0,
                                                      stream_type=stream_type, expires_at=reactor.seconds() + 60,
                                                      account="13300000000"))
        return value


# Platform configurations several test modules share (built by globaleye.testing.platform_config) ---------


def end_to_end_config(db: str, gateway_extra: str = "", roles: str = "gateway, http, group") -> str:
    """The end-to-end platform: open enrollment without a per-address cap, a file database *db*, and
    [turn] on loopback (its port is also the one registration hands out)."""
    from globaleye.testing import platform_config

    return platform_config(roles, database=f"sqlite:///{db}", enrollment={"peer_limit": 0}, gateway=gateway_extra,
                           turn={"port": 0, "relay_ports": "51000-51999", "allow_peers": "127.0.0.0/8"})


#: The password of the accounts the SOAP tests create.
SOAP_PASSWORD = "correct horse"


def soap_config(db: str, soap_extra: str = "") -> str:
    """The §8 client API platform: province MCU URLs by number prefix, a firmware entry, one device per
    account, fast SMS; *soap_extra* adds [soap] lines."""
    from globaleye.testing import platform_config

    return platform_config(
        database=f"sqlite:///{db}", gateway={"port": 0, "command_timeout": 2},
        group={"mcu_urls": "133=http://sh.example.cn/soap/mcu, 1339=http://special.example.cn/soap/mcu",
               "cms_name": "GlobalEye Test"},
        soap="\n".join(["sms_interval = 0.01", "max_devices_per_account = 1",
                        "update_url = http://apps.example.cn/mcu.apk", "min_mcu_version = 1.2",
                        "stun_host = 198.51.100.1", "stun_port = 3478",
                        "firmware = * V2.0.0 ftp://upg:pw@198.51.100.9:2121/fw/V2.0.0.bin", soap_extra]))


def registration_config(mode: str | None = "open", roles: str = "gateway, http, group") -> str:
    """The §7.2 registration platform: a backup gateway, a TURN port and an FTP server to hand out;
    *mode* is [enrollment] mode (None: the default)."""
    from globaleye.testing import platform_config

    return platform_config(roles, enrollment_mode=mode, http={"port": 0}, gateway={
        "port": 0, "backup_host": "127.0.0.2", "backup_port": 8589, "turn_port": 3478,
        "ftp_host": "127.0.0.3", "ftp_account": "pics", "ftp_password": "pw"})


# The RTSP proxy's harness (tests/interop/test_proxy.py and the modules that play through the proxy) -------------

FFPROBE = shutil.which("ffprobe")
FFMPEG = shutil.which("ffmpeg")
PROXY_DEV, PROXY_OTHER_DEV = "81300000011", "81300000012"
PROXY_MOBILE, PROXY_PASSWORD = "13300000011", "secret-pw-1"
OPS_TOKEN = "operator-token-for-tests"


def proxy_config(linger: float = 0.5, udp_timeout: float = 5.0, ops_token: str = "", rtsp_extra: str = "") -> str:
    """Gateway, HTTP, TURN and the RTSP proxy on loopback, open enrollment, an in-memory database;
    *rtsp_extra* adds [rtsp] lines."""
    from globaleye.testing import platform_config

    return platform_config("gateway, http, turn, rtsp", public_host=None, cms_password=None,
                           turn={"relay_ports": "53000-53999"}, ops={"token": ops_token},
                           rtsp="\n".join([f"linger = {linger}", f"udp_timeout = {udp_timeout}", "connect_timeout = 2",
                                           rtsp_extra]))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class ProxyHarness:
    """A platform with the proxy role, one account, and simulated cameras bound to it."""

    def __init__(self, test: Any, linger: float = 0.5, udp_timeout: float = 5.0, rtsp_extra: str = "") -> None:
        from globaleye.platform.config import parse_config

        self.test = test
        self.config = parse_config(proxy_config(linger, udp_timeout, OPS_TOKEN, rtsp_extra))

    async def start(self, cameras: dict[str, dict[str, Any]] | None = None, login: bool = True,
                    database: str = ":memory:", create_account: bool = True) -> None:
        from globaleye.platform.tap import PlatformService
        from globaleye.sim.camera import Timing
        from globaleye.sim.fleet import Fleet
        from globaleye.store import Account, Binding
        from globaleye.store.sqlite import SQLiteStore

        self.platform = PlatformService(self.config, SQLiteStore(database), reactor)
        self.platform.startService()
        self.test.addCleanup(self.platform.stopService)
        turn_port = self.platform.turn.addresses["udp"][1] if self.platform.turn is not None else 0
        # §8.9 StunIP/StunPort: the TURN role answers Binding too.
        self.platform.client.media.settings = attrs.evolve(self.platform.client.media.settings, stun_host="127.0.0.1",
                                                            stun_port=turn_port)
        self.fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{self.platform.port_of('http')}/register",
                           timing=Timing(backoff_initial=0.05), http=http_client())
        self.test.addCleanup(self.fleet.stop)
        await self.fleet.prepare()
        store = self.platform.store
        accounts = self.platform.accounts
        now = reactor.seconds()
        if create_account:  # straight into the store, as an account from before HA1s were kept
            await store.create_account(Account(PROXY_MOBILE, await accounts.hash_password(PROXY_PASSWORD), now, now))
        self.cameras = {}
        for dev_id, overrides in (cameras or {PROXY_DEV: {}}).items():
            camera = self.fleet.add(dev_id)
            for key, value in overrides.items():
                setattr(camera.state, key, value)
            self.cameras[dev_id] = camera
            await store.enroll_device(_device(dev_id, camera.state.dev_key))
            if dev_id != PROXY_OTHER_DEV:
                await store.bind_device(Binding(PROXY_MOBILE, dev_id, 0, dev_id, now), 10)
        self.fleet.start()
        for camera in self.cameras.values():
            await camera.went_online
        if login:  # the app's login, which also backfills the account's Digest secret (HA1)
            outcome = await accounts.login(PROXY_MOBILE, PROXY_PASSWORD, "1.0", "127.0.0.1:1")
            assert outcome.session is not None

    @property
    def port(self) -> int:
        return self.platform.port_of("rtsp")

    def url(self, dev_id: str = PROXY_DEV, stream: int = 1, password: str = PROXY_PASSWORD, user: str = PROXY_MOBILE) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}/live/{dev_id}/0/{stream}"

    @property
    def factory(self) -> Any:
        assert self.platform.rtsp_proxy is not None
        return self.platform.rtsp_proxy.factory

    def camera_rtsp(self, dev_id: str = PROXY_DEV) -> Any:
        return self.fleet.rtsp.cameras[dev_id]

    async def relay_ready(self, dev_id: str = PROXY_DEV) -> None:
        camera = self.cameras[dev_id]
        await until(lambda: camera.turn is not None and camera.turn.relayed_address is not None)
        while True:
            addresses = self.platform.gateway.live_addresses(dev_id)
            if addresses is not None and addresses.rtsp_turn_relay_port:
                return
            await deferLater(reactor, 0.05, lambda: None)


def _device(dev_id: str, key: str) -> Any:
    from globaleye.store import Device

    return Device(dev_id=dev_id, dev_key=key, model="SIM")


async def probe(url: str, transport: str = "tcp", timeout: float = 20) -> Any:
    assert FFPROBE is not None
    return await run(FFPROBE, ["-v", "error", "-rtsp_transport", transport, "-show_entries",
                               "stream=codec_name,codec_type,width,height", "-of", "json", url], timeout=timeout)


def streams_of(result: Any) -> dict[str, Any]:
    return {s["codec_type"]: s for s in json.loads(result.out)["streams"]}


# The RTSP proxy's authentication harness (tests/interop/test_proxy_auth_limits.py, test_hardening_keys, _logs) ----

RTSP_REALM = "GlobalEye"
VIEWER_MOBILE, VIEWER_PASSWORD = "13300000001", "secret1"
VIEWER_URI = "rtsp://proxy:8554/live/81100000001/0/1"
#: argon2 at its cheapest: password checks in milliseconds.
HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def inline(function: Any, *args: Any) -> defer.Deferred[Any]:
    """Run 'in a thread' synchronously: keeps the Clock in charge of every wait."""
    return defer.succeed(function(*args))


class OfflineCameras:
    """A directory in which every account may watch every camera, and none is online (503)."""

    async def may_watch(self, account: str, target: Any) -> bool:
        return True

    def online(self, dev_id: str) -> bool:
        return False


class Viewer:
    """One player connection to the proxy, over a StringTransport from *host*."""

    def __init__(self, factory: RtspProxyFactory, host: str, port: int = 40000) -> None:
        address = IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)
        self.transport = StringTransport(peerAddress=address)
        self.protocol: RtspProxyProtocol = factory.buildProtocol(address)
        # These connections wait out lockouts on the clock; closing idle ones is test_rtsp_timeouts'.
        self.protocol.idle_timeout = 0
        self.protocol.makeConnection(self.transport)
        self.cseq = 0

    def send(self, authorization: str | None = None, method: str = "DESCRIBE", uri: str = VIEWER_URI) -> None:
        self.cseq += 1
        headers = Headers([("CSeq", str(self.cseq))])
        if authorization is not None:
            headers.add("Authorization", authorization)
        self.transport.clear()
        self.protocol.dataReceived(RtspRequest(method, uri, headers).encode())

    async def answer(self) -> RtspResponse:
        await until(lambda: b"\r\n\r\n" in self.transport.value(), timeout=5)
        events = RtspParser().feed(self.transport.value())
        assert len(events) == 1 and isinstance(events[0], RtspResponse), events
        return events[0]

    async def ask(self, authorization: str | None = None, method: str = "DESCRIBE") -> RtspResponse:
        self.send(authorization, method)
        return await self.answer()

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


def digest(nonce: str, password: str = VIEWER_PASSWORD, user: str = VIEWER_MOBILE, method: str = "DESCRIBE",
           uri: str = VIEWER_URI) -> str:
    """What a Digest player (RFC 2069 form, as the proxy asks) sends."""
    from globaleye.proxy import auth

    response = auth.md5_hex(f"{auth.ha1(user, RTSP_REALM, password)}:{nonce}:{auth.md5_hex(f'{method}:{uri}')}")
    return f'Digest username="{user}", realm="{RTSP_REALM}", nonce="{nonce}", uri="{uri}", response="{response}"'


# The gateway's harness: a fake device connection (tests/unit/test_gateway.py, test_hardening_logs, _newcomer) ---


class Device_:
    """One fake device connection: write frames in, read decoded messages out."""

    def __init__(self, gateway: Gateway, host: str = "127.0.0.5", port: int = 40000) -> None:
        self.session: DeviceSession = gateway.factory().buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.session.makeConnection(self.transport)
        self.decoder = FrameDecoder()
        self.received: list[tuple[Frame, m.Message]] = []
        self.seq = 0

    def send(self, message: m.Message, seq: int | None = None) -> int:
        assert message.CMD is not None
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.session.dataReceived(encode_frame(Frame(cmd=message.CMD, seq=seq, data=message.to_xml())))
        return seq

    def read(self) -> list[tuple[Frame, m.Message]]:
        data = self.transport.value()
        self.transport.clear()
        for frame in self.decoder.feed(data):
            assert isinstance(frame, Frame)
            self.received.append((frame, m.parse(frame.data)))
        return self.received

    async def answer(self, count: int = 1) -> list[tuple[Frame, m.Message]]:
        await until(lambda: len(self.read()) >= count)
        return self.received

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


# The simulated camera's RTSP server on loopback (tests/interop/test_rtsp_camera.py, test_playback_files, ...) -----

NO_FFMPEG = "ffmpeg/ffprobe not installed (apt-get install -y ffmpeg)"
CAMERA_DEV = "81100000001"
CAMERA_RECORDING = f"{CAMERA_DEV}_0_20261101120000.ts"


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


class RawClient(protocol.Protocol):
    """Just enough RTSP client to check the server's answers header by header."""

    def __init__(self) -> None:
        self.parser = RtspParser(max_body=1 << 20)
        self.cseq = 0
        self.pending: collections.deque[defer.Deferred[RtspResponse]] = collections.deque()
        self.frames: list[InterleavedFrame] = []
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.session: str | None = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for event in self.parser.feed(data):
            if isinstance(event, InterleavedFrame):
                self.frames.append(event)
            elif isinstance(event, RtspResponse) and self.pending:
                self.pending.popleft().callback(event)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        while self.pending:
            self.pending.popleft().errback(ConnectionError("closed"))
        self.closed.callback(None)

    def request(self, method: str, url: str, *headers: tuple[str, str], body: bytes = b"") -> defer.Deferred[
            RtspResponse]:
        self.cseq += 1
        h = Headers([("CSeq", str(self.cseq)), *headers])
        if self.session and "Session" not in h:
            h.add("Session", self.session)
        d: defer.Deferred[RtspResponse] = defer.Deferred()
        self.pending.append(d)
        self.transport.write(RtspRequest(method, url, h, body).encode())
        return d

    async def setup(self, url: str, transport: str) -> RtspResponse:
        response = await self.request("SETUP", url, ("Transport", transport))
        if response.code == 200:
            self.session = response.headers.get("Session").split(";")[0]
        return response

    def rtp(self, channel: int) -> list[rtp.RtpPacket]:
        return [rtp.parse_rtp(f.data) for f in self.frames if f.channel == channel]


def sdp_controls(sdp: bytes) -> list[str]:
    return [line[len("a=control:"):] for line in sdp.decode().splitlines()
            if line.startswith("a=control:") and line != "a=control:*"]


class CameraCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        from globaleye.sim.media.source import default_library
        from globaleye.sim.rtsp.server import RtspCamera, RtspCameraFactory
        from globaleye.sim.rtsp.urls import OneTimeTokens

        self.tokens = OneTimeTokens()
        self.closed_streams: set[tuple[int, int]] = set()
        self.camera = RtspCamera(CAMERA_DEV, self.tokens, channel_num=2, max_sessions=2, media=default_library(),
                                 stream_open=lambda ch, st: (ch, st) not in self.closed_streams)
        self.factory = RtspCameraFactory(self.camera)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.clients: list[RawClient] = []
        self.udp: list[Any] = []

    async def _cleanup(self) -> None:
        for client in self.clients:
            if client.transport is not None and not client.closed.called:
                client.transport.loseConnection()
                await client.closed
        for port in self.udp:
            await port.stopListening()
        for _ in range(100):  # the server side notices the close a moment later
            if self.factory.connections == 0:
                break
            await sleep(0.02)
        for session in list(self.factory.sessions.values()):
            session.destroy()
        await self.port.stopListening()

    def tearDown(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._cleanup())

    def url(self, channel: int = 0, stream: int = 1, *, token: str | None = None, file: str | None = None,
            dev: str = CAMERA_DEV, issue: bool = True) -> str:
        host = f"rtsp://127.0.0.1:{self.port.getHost().port}/realplay"
        if file is not None:
            if token is None and issue:
                token = self.tokens.issue("playback", dev, channel, file)
            return f"{host}?devid={dev}&channelno={channel}&filename={file}&hashtoken={token or ''}"
        if token is None and issue:
            token = self.tokens.issue("live", dev, channel, stream)
        return f"{host}?devid={dev}&channelno={channel}&streamtype={stream}&hashtoken={token or ''}"

    async def client(self) -> RawClient:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        c = await connectProtocol(endpoint, RawClient())
        self.clients.append(c)
        return c

    def need_ffmpeg(self) -> None:
        if not (FFMPEG and FFPROBE):
            raise SkipTest(NO_FFMPEG)

    async def ffprobe(self, url: str, *extra: str) -> Result:
        assert FFPROBE is not None
        return await run(FFPROBE, ["-v", "error", *extra, "-show_entries",
                                   "stream=codec_name,codec_type,width,height,sample_rate:format=duration",
                                   "-of", "json", url])


def ffprobe_streams(result: Result) -> list[dict[str, Any]]:
    return json.loads(result.out)["streams"]


class StreamReader(protocol.Protocol):
    """An HTTP body reader that keeps what it got and when, and can hang up."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.arrivals: list[float] = []
        self.done: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data
        self.arrivals.append(reactor.seconds())

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.done.callback(None)

    def close(self) -> None:
        self.transport.stopProducing()


def top_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The whole top-level boxes at the start of *data* (a cut-off last one is left out)."""
    out = []
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from("!I4s", data, pos)
        if size < 8 or pos + size > len(data):
            break
        out.append((kind, data[pos + 8:pos + size]))
        pos += size
    return out


# fMP4 read back (tests of globaleye.media.fmp4 and the browser's live view) -------------------

# x264 baseline, 320x240 (ffmpeg -f lavfi -i testsrc=size=320x240 -profile:v baseline)
SPS = bytes.fromhex("6742c00dd90141fb011000000300100000030320f142a480")
PPS = bytes.fromhex("68cb83cb20")


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, bytes]]:
    """(type, offset, payload) of the boxes in data[start:end]; fails on a size that does not fit."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos < end:
        size, kind = struct.unpack_from("!I4s", data, pos)
        assert size >= 8 and pos + size <= end, (kind, size, pos, end)
        out.append((kind, pos, data[pos + 8:pos + size]))
        pos += size
    assert pos == end
    return out


CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"mvex", b"moof", b"traf"}


def tree(data: bytes) -> dict[str, bytes]:
    """Every box by its path ("moov/trak/mdia/mdhd"), containers opened."""
    found: dict[str, bytes] = {}

    def walk(payload: bytes, prefix: str) -> None:
        for kind, _pos, body in boxes(payload):
            path = prefix + kind.decode()
            found[path] = body
            if kind in CONTAINERS:
                walk(body, path + "/")
    walk(data, "")
    return found


def trafs(fragment: bytes) -> dict[int, tuple[int, list[tuple[int, int]], bytes]]:
    """track id -> (base decode time, [(duration, size)], the samples' bytes) of a moof+mdat."""
    (kind, moof_at, moof), = [b for b in boxes(fragment) if b[0] == b"moof"]
    assert kind == b"moof"
    out = {}
    for kind, _pos, traf in boxes(moof):
        if kind != b"traf":
            continue
        t = {k: body for k, _p, body in boxes(traf)}
        flags, track = struct.unpack_from("!II", t[b"tfhd"])
        assert flags == 0x020000
        base = struct.unpack_from("!Q", t[b"tfdt"], 4)[0]
        count, offset = struct.unpack_from("!Ii", t[b"trun"], 4)
        entries = [struct.unpack_from("!III", t[b"trun"], 12 + 12 * i)[:2] for i in range(count)]
        start = moof_at + offset
        data = fragment[start:start + sum(size for _d, size in entries)]
        out[track] = (base, [(d, s) for d, s in entries], data)
    return out
