"""The RTSP proxy with real players: platform + simulated camera + proxy, ffprobe/ffmpeg as viewers.

Everything on loopback.  The camera is a :class:`~globaleye.sim.fleet.Fleet` camera
(its RTSP server reachable locally and through its TURN relay on the platform's own
TURN role); the proxy is the platform's ``rtsp`` role; players are the Debian
ffmpeg tools, run asynchronously with a kill timer.
"""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.platform.config import parse_config
from globaleye.platform.tap import PlatformService
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import RecordingSmsSender
from tests.util import (
    FFMPEG,
    FFPROBE,
    OPS_TOKEN,
    ProxyHarness,
    closed_port,
    http_client,
    probe,
    proxy_config,
    run,
    streams_of,
    until,
)
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_OTHER_DEV as OTHER_DEV
from tests.util import PROXY_PASSWORD as PASSWORD

NEW_PASSWORD = "secret-pw-2"

class ProxyLiveTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None or FFMPEG is None:
            raise SkipTest("ffprobe/ffmpeg not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self)
        await self.h.start({DEV: {}, OTHER_DEV: {}})

    async def test_ffprobe_digest_local(self) -> None:
        """ffprobe with the account's credentials: Digest challenge, local path, h264 720p + pcm_alaw."""
        result = await probe(self.h.url())
        self.assertEqual(result.code, 0, result.err)
        streams = streams_of(result)
        self.assertEqual((streams["video"]["codec_name"], streams["video"]["width"], streams["video"]["height"]),
                         ("h264", 1280, 720))
        self.assertEqual(streams["audio"]["codec_name"], "pcm_alaw")
        hub = self.h.factory.hubs[(DEV, 0, 1)]
        self.assertEqual(hub.attempts[-1].path, "local")
        self.assertTrue(hub.attempts[-1].ok)

    async def test_wrong_password_401(self) -> None:
        result = await probe(self.h.url(password="wrong-password"))
        self.assertNotEqual(result.code, 0)
        self.assertIn("401", result.err)
        self.assertGreater(self.h.factory.auth_failures, 0)
        self.assertEqual(self.h.camera_rtsp().plays, 0, "no upstream for a refused viewer")

    async def test_not_my_camera_404(self) -> None:
        result = await probe(self.h.url(OTHER_DEV))
        self.assertNotEqual(result.code, 0)
        self.assertIn("404", result.err)
        self.assertEqual(self.h.camera_rtsp(OTHER_DEV).plays, 0)

    async def test_ffmpeg_decodes_frames(self) -> None:
        assert FFMPEG is not None
        result = await run(FFMPEG, ["-v", "error", "-rtsp_transport", "tcp", "-i", self.h.url(),
                                    "-frames:v", "30", "-f", "null", "-"], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.err.strip(), "", "no decoder warnings")


class RawViewer:
    """A hand-made RTSP viewer (TCP interleaved, Digest) that can stop reading on purpose."""

    def __init__(self, port: int, path: str, rcvbuf: int = 0) -> None:
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}{path}"
        self.rcvbuf = rcvbuf
        self.frames = 0
        self.bytes = 0
        self.closed = False

    async def start(self) -> None:
        from twisted.internet import defer
        from twisted.internet.protocol import Factory, Protocol

        from globaleye.media.rtsp.message import RtspParser, RtspResponse

        viewer = self
        self.responses: list[Any] = []
        self.waiting: defer.Deferred[Any] | None = None

        class P(Protocol):
            def __init__(self) -> None:
                self.parser = RtspParser(max_body=1 << 20)

            def dataReceived(self, data: bytes) -> None:  # noqa: N802
                viewer.bytes += len(data)
                for event in self.parser.feed(data):
                    if isinstance(event, RtspResponse):
                        d, viewer.waiting = viewer.waiting, None
                        if d is not None:
                            d.callback(event)
                    else:
                        viewer.frames += 1

            def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
                viewer.closed = True

        sock = socket.socket()
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.connect(("127.0.0.1", self.port))
        sock.setblocking(False)
        factory = Factory.forProtocol(P)
        self.protocol = reactor.adoptStreamConnection(sock.fileno(), socket.AF_INET, factory)
        self.sock = sock
        self.cseq = 0
        self.auth = ""
        response = await self.request("DESCRIBE", self.url)
        assert response.code == 401, response
        challenge = response.headers.get("WWW-Authenticate") or ""
        import re

        from globaleye.proxy.auth import ha1, md5_hex
        nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
        realm = re.search(r'realm="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
        self.digest = lambda method: (
            f'Digest username="{MOBILE}", realm="{realm}", nonce="{nonce}", uri="{self.url}", response="'
            + md5_hex(f"{ha1(MOBILE, realm, PASSWORD)}:{nonce}:{md5_hex(f'{method}:{self.url}')}") + '"')
        response = await self.request("DESCRIBE", self.url)
        assert response.code == 200, response
        response = await self.request("SETUP", self.url + "/trackID=0",
                                      [("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")])
        assert response.code == 200, response
        self.session = (response.headers.get("Session") or "").split(";")[0]
        response = await self.request("PLAY", self.url, [("Session", self.session)])
        assert response.code == 200, response

    async def request(self, method: str, url: str, headers: list[tuple[str, str]] | None = None) -> Any:
        from twisted.internet import defer

        from globaleye.media.rtsp.message import Headers, RtspRequest
        self.cseq += 1
        h = Headers([("CSeq", str(self.cseq)), *(headers or [])])
        if hasattr(self, "digest"):
            h.add("Authorization", self.digest(method))
        self.waiting = defer.Deferred()
        d = self.waiting
        self.connection().write(RtspRequest(method, url, h).encode())
        return await d

    def connection(self) -> Any:
        return self._transport

    @property
    def _transport(self) -> Any:
        return self.protocol.transport if hasattr(self.protocol, "transport") else self.protocol

    def stop_reading(self) -> None:
        self._transport.stopReading()

    def close(self) -> None:
        self._transport.loseConnection()
        self.sock.close()


class ProxyFanOutTests(TestCase):
    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None or FFMPEG is None:
            raise SkipTest("ffprobe/ffmpeg not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self, linger=1.0)
        await self.h.start()

    async def test_viewers_share_one_upstream_and_it_lingers(self) -> None:
        """Five concurrent ffmpeg viewers, one camera session; it ends linger seconds after the last."""
        from twisted.internet import defer
        assert FFMPEG is not None
        runs = [defer.Deferred.fromCoroutine(run(FFMPEG, [
            "-v", "error", "-rtsp_transport", "tcp", "-i", self.h.url(), "-frames:v", "25", "-f", "null", "-"],
            timeout=40)) for _ in range(5)]
        results = await defer.gatherResults(runs)
        for result in results:
            self.assertEqual(result.code, 0, result.err)
        camera = self.h.camera_rtsp()
        self.assertEqual(camera.plays, 1, "one PLAY at the camera for five viewers")
        self.assertEqual(self.h.factory.upstream_starts, 1)
        self.assertEqual(len(camera.sessions), 1, "upstream lingers after the last viewer")
        await until(lambda: not camera.sessions, timeout=5)
        self.assertNotIn((DEV, 0, 1), self.h.factory.hubs)
        recent = self.h.factory.recent[-1]
        self.assertIn("no viewer for 1 s", recent["last_stop_reason"])

    async def test_slow_viewer_does_not_stall_fast_one(self) -> None:
        assert FFMPEG is not None
        slow = RawViewer(self.h.port, f"/live/{DEV}/0/1", rcvbuf=4096)
        await slow.start()
        self.addCleanup(slow.close)
        await until(lambda: slow.frames > 10)
        slow.stop_reading()
        result = await run(FFMPEG, ["-v", "error", "-rtsp_transport", "tcp", "-i", self.h.url(),
                                    "-frames:v", "75", "-f", "null", "-"], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.err.strip(), "")
        sessions = [s for s in self.h.factory.sessions.values() if s.interleaved and s.viewer is not None]
        slow_session = min(sessions, key=lambda s: s.viewer.frames_sent)
        self.assertGreater(slow_session.viewer.frames_dropped, 0, "the slow viewer skipped pictures")
        buffered = len(slow_session.owner.transport.dataBuffer) + sum(
            len(b) for b in slow_session.owner.transport._tempDataBuffer)
        self.assertLess(buffered, 512 * 1024, "a slow viewer costs a bounded buffer")
        self.assertEqual(self.h.camera_rtsp().plays, 1)


class ProxyRecoveryTests(TestCase):
    """The camera's stream goes away under a watching ffmpeg and comes back: ffmpeg never notices."""

    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        if FFMPEG is None:
            raise SkipTest("ffmpeg not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self, linger=1.0)
        await self.h.start()

    async def test_ffmpeg_keeps_playing_across_a_camera_outage(self) -> None:
        """The camera's RTSP server vanishes for 2 s (sessions cut, then 404s), then is back.

        The hub keeps the viewer, retries the §15 path selection with backoff, and feeds the
        new camera session into the same viewer session: ffmpeg decodes every one of its
        frames, with timestamps that go on across the outage, and exits 0.
        """
        assert FFMPEG is not None
        from twisted.internet import defer
        frames = 150  # 6 s at 25 fps; the outage is in the middle
        player = defer.Deferred.fromCoroutine(run(FFMPEG, [
            "-v", "error", "-rtsp_transport", "tcp", "-i", self.h.url(), "-map", "0:v", "-frames:v", str(frames),
            "-f", "framecrc", "-"], timeout=60))
        await until(lambda: (DEV, 0, 1) in self.h.factory.hubs and any(
            v.frames_sent > 25 for v in self.h.factory.hubs[(DEV, 0, 1)].viewers), timeout=20)
        hub = self.h.factory.hubs[(DEV, 0, 1)]
        rtsp = self.h.fleet.rtsp
        camera = rtsp.cameras[DEV]
        rtsp.remove(DEV)  # its sessions end and their connections close: the upstream is lost
        await until(lambda: hub.recovering, timeout=5)
        await deferLater(reactor, 2.0, lambda: None)
        self.assertTrue(hub.recovering, "still trying while the camera is away")
        self.assertTrue(hub.viewers, "the viewer is kept meanwhile")
        rtsp.add(camera)
        result = await player
        self.assertEqual(result.code, 0, result.err)
        tb = next(line for line in result.out.splitlines() if line.startswith("#tb 0:")).split(":")[1].strip()
        num, den = (int(x) for x in tb.split("/"))
        pts = [int(line.split(",")[2]) for line in result.out.splitlines()
               if line and not line.startswith("#") and line.split(",")[0].strip() == "0"]
        self.assertEqual(len(pts), frames, "every frame decoded: the viewer was never dropped")
        steps = [(b - a) * num / den for a, b in itertools.pairwise(pts)]
        self.assertGreater(min(steps), 0, "timestamps only go forward")
        self.assertGreater(max(steps), 1.5, "the outage shows as a pause in time")
        self.assertLess(max(steps), 10, "not the new camera session's RTP base")
        self.assertEqual(hub.recoveries, 1)
        assert hub.last_recovery is not None
        self.assertTrue(hub.last_recovery["ok"])
        self.assertGreater(hub.last_recovery["tries"], 1, "the first tries met a camera that was away")
        self.assertEqual(camera.plays, 2)


class ProxyPlaybackAndUdpTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None or FFMPEG is None:
            raise SkipTest("ffprobe/ffmpeg not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self)
        await self.h.start()
        name = self.h.cameras[DEV].state.recordings(0)[-1].file_name  # the camera's newest file (72H)
        self.playback = f"rtsp://{MOBILE}:{PASSWORD}@127.0.0.1:{self.h.port}/playback/{DEV}/0/{name}"

    async def test_live_to_udp_viewer(self) -> None:
        """A viewer asking for RTP over UDP gets it from the proxy's own ports."""
        assert FFMPEG is not None
        result = await run(FFMPEG, ["-v", "error", "-rtsp_transport", "udp", "-i", self.h.url(),
                                    "-frames:v", "25", "-f", "null", "-"], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(self.h.factory.recent[-1]["path"] if self.h.factory.recent else "local", "local")

    async def test_playback_with_range(self) -> None:
        """Playback is passed through (own upstream, Range from ffmpeg's -ss), here over TCP."""
        result = await probe(self.playback)
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(streams_of(result)["video"]["width"], 1280)
        assert FFMPEG is not None
        from twisted.logger import formatEvent, globalLogPublisher
        lines: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        result = await run(FFMPEG, ["-v", "error", "-rtsp_transport", "tcp", "-ss", "60", "-i", self.playback,
                                    "-frames:v", "10", "-f", "null", "-"], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        self.assertTrue([line for line in lines if "plays" in line and "(npt=60.000-300.000)" in line],
                        "ffmpeg's Range went to the camera and its answer came back")
        self.assertFalse(self.h.factory.hubs, "playback is not fanned out")

    async def test_playback_to_the_end_of_the_file_ends_the_player(self) -> None:
        """The camera's BYE at the end of the recording reaches ffmpeg through the proxy: it exits 0."""
        assert FFMPEG is not None
        for transport in ("tcp", "udp"):
            result = await run(FFMPEG, ["-v", "error", "-rtsp_transport", transport, "-ss", "298", "-i",
                                        self.playback, "-map", "0:v", "-f", "framecrc", "-"], timeout=40)
            self.assertEqual(result.code, 0, result.err)
            frames = [line for line in result.out.splitlines() if line and not line.startswith("#")]
            self.assertEqual(len(frames), 50, f"the last 2 s of the file over {transport}")

    async def test_status_json(self) -> None:
        result = await probe(self.h.url())
        self.assertEqual(result.code, 0, result.err)
        url = f"http://127.0.0.1:{self.h.platform.port_of('http')}/status/streams"
        self.assertEqual((await http_client().get(url)).code, 401, "operator only")
        response = await http_client().get(url, headers={"Authorization": f"Bearer {OPS_TOKEN}"})
        status = json.loads(await response.text())
        live = status["live"] or status["recent"]
        self.assertEqual(live[0]["path"] or live[0]["attempts"][-1]["path"], "local")
        self.assertEqual(status["upstream_starts"], 1)


class ProxyStreamStatusSoapTests(TestCase):
    """GetStreamStatus: the client API tells an app which §15 path the proxy uses, and why not the others."""

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self, linger=30.0)
        # The camera reports a LocalIP port nothing listens on: local fails, UPnP is 0.0.0.0, TURN wins.
        await self.h.start({DEV: {"rtsp_local_port": closed_port(), "upnp_ip": "0.0.0.0"}, OTHER_DEV: {}})
        await self.h.relay_ready()

    async def test_zeep_reads_the_winning_path_and_the_failures(self) -> None:
        import requests
        import zeep
        from twisted.internet import threads
        result = await probe(self.h.url(), timeout=30)
        self.assertEqual(result.code, 0, result.err)
        session = requests.Session()
        session.headers["Connection"] = "close"
        self.addCleanup(session.close)
        transport = zeep.Transport(session=session, timeout=20, operation_timeout=20)
        client = await threads.deferToThread(
            zeep.Client, f"http://127.0.0.1:{self.h.platform.port_of('http')}/soap/mcu?wsdl", transport=transport)
        outcome = await self.h.platform.accounts.login(MOBILE, PASSWORD, "1.0", "127.0.0.1:2")
        assert outcome.session is not None
        answer = await threads.deferToThread(client.service.GetStreamStatus, Account=MOBILE,
                                             LoginSession=outcome.session.token, DevID=DEV)
        self.assertEqual(answer.Result, 0)
        [stream] = answer.Stream
        self.assertEqual((stream.Kind, stream.ChannelNo, stream.StreamType), ("live", 0, 1))
        self.assertEqual(stream.State, "running", "lingering after ffprobe left")
        self.assertIn(stream.Path, ("turn-udp", "turn-tcp"))
        self.assertEqual(stream.Path, self.h.factory.hubs[(DEV, 0, 1)].upstream.path)
        self.assertRegex(stream.Attempts, r"^local=failed \(TCP connect to 127\.0\.0\.1:\d+ failed: "
                                          r"ConnectionRefusedError\); upnp=failed \(the camera reports no such "
                                          r"address\); turn-udp=")
        self.assertIn(f"{stream.Path}=ok (first RTP", stream.Attempts)
        self.assertEqual(stream.Viewers, 0)
        other = await threads.deferToThread(client.service.GetStreamStatus, Account=MOBILE,
                                            LoginSession=outcome.session.token, DevID=OTHER_DEV)
        self.assertEqual(other.Result, 3, "not a camera of this account")
        # After the upstream stops, the last stopped stream is still told, with why it stopped.
        self.h.factory.hubs[(DEV, 0, 1)].stop("operator test")
        await until(lambda: not self.h.factory.hubs)
        answer = await threads.deferToThread(client.service.GetStreamStatus, Account=MOBILE,
                                             LoginSession=outcome.session.token, DevID=DEV)
        [stream] = answer.Stream
        self.assertEqual((stream.State, stream.Path or "", stream.LastStopReason), ("stopped", "", "operator test"))
        self.assertIn("=ok (first RTP", stream.Attempts, "the attempts of its last start")


class ProxyTlsTests(TestCase):
    """RTSPS: the same proxy behind TLS ([rtsp] tls_port), played by ffprobe/ffmpeg."""

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None or FFMPEG is None:
            raise SkipTest("ffprobe/ffmpeg not installed (apt-get install -y ffmpeg)")
        from OpenSSL import crypto
        from twisted.internet import ssl
        directory = self.mktemp()
        import os
        os.makedirs(directory)
        key = ssl.KeyPair.generate(size=2048)
        cert = key.selfSignedCert(1, CN="127.0.0.1")
        self.cert, self.key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        with open(self.cert, "wb") as f:
            f.write(cert.dumpPEM())
        with open(self.key, "wb") as f:
            f.write(key.dump(crypto.FILETYPE_PEM))
        self.h = ProxyHarness(self, rtsp_extra=f"tls_port = 0\ntls_cert = {self.cert}\ntls_key = {self.key}\n")
        await self.h.start()
        self.url = f"rtsps://{MOBILE}:{PASSWORD}@127.0.0.1:{self.h.platform.port_of('rtsps')}/live/{DEV}/0/1"

    async def test_ffmpeg_plays_over_tls(self) -> None:
        assert FFMPEG is not None
        result = await probe(self.url)
        self.assertEqual(result.code, 0, result.err)
        streams = streams_of(result)
        self.assertEqual((streams["video"]["codec_name"], streams["video"]["width"]), ("h264", 1280))
        self.assertEqual(streams["audio"]["codec_name"], "pcm_alaw")
        result = await run(FFMPEG, ["-v", "error", "-rtsp_transport", "tcp", "-i", self.url, "-frames:v", "25",
                                    "-f", "null", "-"], timeout=30)
        self.assertEqual(result.code, 0, result.err)

    async def test_plain_rtsp_on_the_tls_port_gets_nothing(self) -> None:
        result = await probe(self.url.replace("rtsps://", "rtsp://"), timeout=15)
        self.assertNotEqual(result.code, 0)
        self.assertEqual(self.h.camera_rtsp().plays, 0)

    async def test_udp_media_refused_inside_tls(self) -> None:
        """ffmpeg never asks for UDP on rtsps://; a player that does gets 461 (no SRTP here)."""
        from twisted.internet import threads
        answers = await threads.deferToThread(self._setup_udp_over_tls)
        self.assertEqual([a.split(b"\r\n")[0] for a in answers],
                         [b"RTSP/1.0 401 Unauthorized", b"RTSP/1.0 200 OK", b"RTSP/1.0 461 Unsupported Transport"])
        self.assertEqual(self.h.factory.refusals[461], 1)

    def _setup_udp_over_tls(self) -> list[bytes]:
        import re
        import ssl as stdlib_ssl

        from globaleye.proxy.auth import ha1, md5_hex
        context = stdlib_ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = stdlib_ssl.CERT_NONE
        port = self.h.platform.port_of("rtsps")
        url = f"rtsps://127.0.0.1:{port}/live/{DEV}/0/1"
        answers: list[bytes] = []
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            def ask(text: str) -> bytes:
                tls.sendall(text.encode())
                data = b""
                while b"\r\n\r\n" not in data:
                    data += tls.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = re.search(rb"Content-Length: (\d+)", head)
                while length and len(rest) < int(length.group(1)):
                    rest += tls.recv(65536)
                answers.append(data)
                return head
            head = ask(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")
            nonce = re.search(rb'nonce="([^"]+)"', head).group(1).decode()  # type: ignore[union-attr]

            def auth(method: str, uri: str) -> str:
                response = md5_hex(f"{ha1(MOBILE, 'GlobalEye', PASSWORD)}:{nonce}:{md5_hex(f'{method}:{uri}')}")
                return (f'Authorization: Digest username="{MOBILE}", realm="GlobalEye", nonce="{nonce}", '
                        f'uri="{uri}", response="{response}"\r\n')
            ask(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\n{auth('DESCRIBE', url)}\r\n")
            track = url + "/trackID=0"
            ask(f"SETUP {track} RTSP/1.0\r\nCSeq: 3\r\n{auth('SETUP', track)}"
                "Transport: RTP/AVP;unicast;client_port=40000-40001\r\n\r\n")
        return answers

    def test_tls_port_needs_cert_and_key(self) -> None:
        from globaleye.platform.config import ConfigError
        with self.assertRaises(ConfigError) as e:
            parse_config("[rtsp]\ntls_port = 8555\n")
        self.assertIn("[rtsp] tls_port needs tls_cert and tls_key", str(e.exception))


class ProxyDigestAcrossRestartTests(TestCase):
    """Digest-only players against a restarted platform: the HA1 is kept with the account."""

    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        self.database = self.mktemp() + ".sqlite"
        # The first platform: the account signs up through the client API's rules (SMS code).
        first = PlatformService(parse_config(proxy_config()), SQLiteStore(self.database),
                                reactor)
        first.startService()
        sms = RecordingSmsSender()
        first.accounts.sms_sender = sms
        self.assertEqual(await first.accounts.request_sms_code(MOBILE, 0, "127.0.0.1:1"), 0)
        self.assertEqual(await first.accounts.register(MOBILE, PASSWORD, sms.last_code(MOBILE), "127.0.0.1:1"), 0)
        await first.stopService()
        # The restart: a new PlatformService over the same file, and no login of any kind since sign-up.
        self.h = ProxyHarness(self)
        await self.h.start(login=False, database=self.database, create_account=False)
        self.assertEqual(self.h.platform.accounts.sessions, {})

    async def test_digest_after_restart_then_password_change_and_closure(self) -> None:
        authenticator = self.h.platform.rtsp_proxy.authenticator if self.h.platform.rtsp_proxy else None
        assert authenticator is not None
        self.assertEqual(authenticator.schemes, ("digest",), "Digest only: the player cannot fall back to Basic")
        result = await probe(self.h.url())
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(streams_of(result)["video"]["codec_name"], "h264")

        accounts = self.h.platform.accounts
        session = (await accounts.login(MOBILE, PASSWORD, "1.0", "127.0.0.1:1")).session
        assert session is not None
        self.assertEqual(await accounts.change_password(session, PASSWORD, NEW_PASSWORD, "127.0.0.1:1"), 0)
        result = await probe(self.h.url())
        self.assertNotEqual(result.code, 0)
        self.assertIn("401", result.err, "the old password's digest is refused")
        result = await probe(self.h.url(password=NEW_PASSWORD))
        self.assertEqual(result.code, 0, result.err)

        session = (await accounts.login(MOBILE, NEW_PASSWORD, "1.0", "127.0.0.1:1")).session
        assert session is not None
        self.assertEqual(await accounts.close_account(session, "127.0.0.1:1"), 0)
        result = await probe(self.h.url(password=NEW_PASSWORD))
        self.assertNotEqual(result.code, 0)
        self.assertIn("401", result.err, "a closed account has no Digest secret")
