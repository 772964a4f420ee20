"""The camera's RTSP server against real players (ffprobe, ffmpeg) and a raw RTSP client.

Players run as child processes under the reactor (spawnProcess with a kill timer,
never subprocess.run); tests needing them skip with the reason when they are missing
(``apt-get install -y ffmpeg``).  Only 127.0.0.1 is bound.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from globaleye.device.protocol import messages as m
from globaleye.media import rtp
from globaleye.media.rtsp.message import (
    InterleavedFrame,
    RtspParser,
    parse_transport,
)
from globaleye.sim.media.source import default_library
from globaleye.sim.rtsp.server import RtspCamera, RtspCameraFactory, RtspCameraProtocol
from globaleye.sim.rtsp.urls import OneTimeTokens, platform_verifier, state_recordings
from globaleye.sim.state import CameraState
from tests.util import CAMERA_DEV as DEV
from tests.util import CAMERA_RECORDING as RECORDING
from tests.util import (
    FFMPEG,
    CameraCase,
    ffprobe_streams,
    run,
    sdp_controls,
    sleep,
)

try:
    import av
except ImportError:  # pragma: no cover
    av = None

class Collector(DatagramProtocol):
    noisy = False

    def __init__(self) -> None:
        self.packets: list[tuple[bytes, Any]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        self.packets.append((data, addr))



# ---------------------------------------------------------------------- real players


class PlayerTests(CameraCase):
    """ffprobe and ffmpeg, which know nothing of this code, play the camera."""

    @defer.inlineCallbacks
    def _probe_live(self, stream: int, size: tuple[int, int]) -> Any:
        self.need_ffmpeg()
        result = yield defer.Deferred.fromCoroutine(self.ffprobe(self.url(stream=stream), "-rtsp_transport", "tcp"))
        self.assertEqual(result.code, 0, result.err)
        streams = ffprobe_streams(result)
        video = [s for s in streams if s["codec_type"] == "video"]
        audio = [s for s in streams if s["codec_type"] == "audio"]
        self.assertEqual([(s["codec_name"], s["width"], s["height"]) for s in video], [("h264", *size)])
        self.assertEqual([(s["codec_name"], s["sample_rate"]) for s in audio], [("pcm_alaw", "8000")])

    def test_ffprobe_main_stream(self) -> Any:
        return self._probe_live(1, (1280, 720))

    def test_ffprobe_sub_stream(self) -> Any:
        return self._probe_live(2, (352, 288))

    async def _decode(self, transport: str) -> None:
        self.need_ffmpeg()
        assert FFMPEG is not None
        result = await run(FFMPEG, ["-nostdin", "-v", "error", "-rtsp_transport", transport, "-i", self.url(),
                                    "-frames:v", "25", "-f", "null", "-"])
        self.assertFalse(result.timed_out)
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.err.strip(), "")  # no decoder complaint at all
        self.assertEqual(self.camera.plays, 1)

    def test_ffmpeg_decodes_25_frames_tcp(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._decode("tcp"))

    def test_ffmpeg_decodes_25_frames_udp(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._decode("udp"))

    async def _token_reuse(self) -> None:
        self.need_ffmpeg()
        url = self.url()
        first = await self.ffprobe(url, "-rtsp_transport", "tcp")
        self.assertEqual(first.code, 0, first.err)
        second = await self.ffprobe(url, "-rtsp_transport", "tcp")
        self.assertNotEqual(second.code, 0)
        self.assertIn("401", second.err)
        self.assertEqual(self.camera.refusals[401], 1)
        self.assertEqual([ok for _, ok in self.tokens.checked], [True, False])

    def test_token_reuse_is_401(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._token_reuse())

    async def _wrong_channel(self) -> None:
        self.need_ffmpeg()
        result = await self.ffprobe(self.url(channel=7), "-rtsp_transport", "tcp")
        self.assertNotEqual(result.code, 0)
        self.assertIn("404", result.err)
        self.assertEqual(self.camera.refusals[404], 1)
        self.assertEqual(self.tokens.checked, [])  # the platform was not asked

    def test_wrong_channel_is_404(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._wrong_channel())

    async def _playback(self) -> None:
        self.need_ffmpeg()
        result = await self.ffprobe(self.url(file=RECORDING), "-rtsp_transport", "tcp")
        self.assertEqual(result.code, 0, result.err)
        video = [s for s in ffprobe_streams(result) if s["codec_type"] == "video"]
        self.assertEqual([(s["codec_name"], s["width"], s["height"]) for s in video], [("h264", 1280, 720)])
        self.assertAlmostEqual(float(json.loads(result.out)["format"]["duration"]), 300.0, delta=0.5)

    def test_ffprobe_reads_playback(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._playback())


# ---------------------------------------------------------------------- raw client


class RawTests(CameraCase):
    async def _errors(self) -> None:
        c = await self.client()
        cases = [
            (self.url(dev="81100000002"), 404),  # another device
            (self.url(channel=2), 404),  # channel_num is 2: channels 0 and 1
            (self.url(stream=3), 404),  # stream types are 1 and 2
            (self.url(file=f"{DEV}_1_20261101120000.ts", channel=0), 404),  # file of another channel
            (self.url(file="81100000002_0_20261101120000.ts"), 404),
            (self.url(issue=False), 401),  # no hashtoken
            (self.url(token="f" * 32), 401),  # a token the platform never issued
            (f"rtsp://127.0.0.1:{self.port.getHost().port}/other?devid={DEV}", 404),
        ]
        for url, code in cases:
            response = await c.request("DESCRIBE", url, ("Accept", "application/sdp"))
            self.assertEqual(response.code, code, url)
        self.closed_streams.add((0, 2))
        response = await c.request("DESCRIBE", self.url(stream=2))
        self.assertEqual((response.code, response.reason), (403, "Forbidden"))
        self.assertEqual(len(self.tokens.checked), 1)  # only the made-up token reached the verifier
        response = await c.request("FLY", self.url())
        self.assertEqual(response.code, 501)
        response = await c.request("PLAY", self.url())
        self.assertEqual(response.code, 454)  # no session

    def test_error_codes(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._errors())

    async def _verifier_down(self) -> None:
        async def down(*args: Any) -> bool:
            raise ConnectionError("platform unreachable")

        self.camera.verifier = down
        c = await self.client()
        response = await c.request("DESCRIBE", self.url())
        self.assertEqual(response.code, 503)

    def test_verifier_failure_is_503(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._verifier_down())

    async def _too_many(self) -> None:
        clients = []
        for _ in range(2):
            c = await self.client()
            url = self.url()
            self.assertEqual((await c.request("DESCRIBE", url)).code, 200)
            self.assertEqual((await c.setup(url + "&trackID=0", "RTP/AVP/TCP;unicast;interleaved=0-1")).code, 200)
            clients.append(c)
        third = await self.client()
        url = self.url()
        response = await third.request("DESCRIBE", url)
        self.assertEqual((response.code, response.reason), (453, "Not Enough Bandwidth"))
        # The refused client's token was not spent: after a TEARDOWN it plays.
        response = await clients[0].request("TEARDOWN", self.url(issue=False))
        self.assertEqual(response.code, 200)
        await clients[0].closed  # §10.1: the camera closes the socket after TEARDOWN
        self.assertEqual((await third.request("DESCRIBE", url)).code, 200)
        self.assertEqual(len(self.camera.sessions), 1)

    def test_session_limit_is_453(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._too_many())

    async def _tcp_media(self) -> None:
        c = await self.client()
        url = self.url()
        response = await c.request("DESCRIBE", url, ("Accept", "application/sdp"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.get("Content-Type"), "application/sdp")
        sdp = response.body.decode()
        loop = default_library().main()
        self.assertIn("m=video 0 RTP/AVP 96", sdp)
        self.assertIn("a=rtpmap:96 H264/90000", sdp)
        self.assertIn(f"profile-level-id={loop.profile_level_id}", sdp)
        self.assertIn(f"sprop-parameter-sets={loop.sprop_parameter_sets}", sdp)
        self.assertIn("m=audio 0 RTP/AVP 8", sdp)
        self.assertIn("a=rtpmap:8 PCMA/8000", sdp)
        video_url, audio_url = sdp_controls(response.body)
        self.assertEqual((await c.setup(video_url, "RTP/AVP/TCP;unicast;interleaved=0-1")).code, 200)
        response = await c.setup(audio_url, "RTP/AVP/TCP;unicast;interleaved=2-3")
        [transport] = parse_transport(response.headers.get("Transport"))
        self.assertEqual(transport.interleaved, (2, 3))
        response = await c.request("PLAY", url, ("Range", "npt=0-"))
        self.assertEqual(response.code, 200)
        info = {part.split(";")[0][4:]: dict(kv.split("=", 1) for kv in part.split(";")[1:])
                for part in response.headers.get("RTP-Info").split(",")}
        await sleep(1.2)
        video = c.rtp(0)
        audio = c.rtp(2)
        self.assertGreater(len(video), 20)
        self.assertEqual(video[0].sequence, int(info[video_url]["seq"]))
        self.assertEqual(video[0].timestamp, int(info[video_url]["rtptime"]))
        self.assertEqual(audio[0].timestamp, int(info[audio_url]["rtptime"]))
        seqs = [p.sequence for p in video]
        self.assertEqual(seqs, [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))])
        self.assertEqual({p.payload_type for p in video}, {96})
        self.assertEqual({(p.payload_type, len(p.payload)) for p in audio}, {(8, 160)})
        # Timestamps: 3600 ticks (40 ms) per picture, the marker on each picture's last packet.
        stamps = sorted({p.timestamp for p in video})
        self.assertEqual({b - a for a, b in zip(stamps, stamps[1:], strict=False)}, {3600})
        for a, b in zip(video, video[1:], strict=False):
            self.assertEqual(a.marker, a.timestamp != b.timestamp)
        depacketizer = rtp.H264Depacketizer()
        units: list[bytes] = []  # access units, cut at the marker bit
        current = b""
        for p in video:
            current += b"".join(b"\x00\x00\x00\x01" + n for n in depacketizer.feed(p.payload))
            if p.marker:
                units.append(current)
                current = b""
        self.assertEqual([rtp.nal_type(n) for n in rtp.split_annexb(units[0])[:3]], [7, 8, 5])  # SPS PPS IDR
        if av is not None:  # and FFmpeg's decoder agrees
            codec = av.CodecContext.create("h264", "r")
            pictures = []
            for unit in units:
                pictures += codec.decode(av.Packet(unit))
            pictures += codec.decode(None)
            self.assertGreater(len(pictures), 20)
            self.assertEqual({(f.width, f.height) for f in pictures}, {(1280, 720)})
        reports = [f.data for f in c.frames if f.channel == 1]  # RTCP SR on the odd channel
        self.assertTrue(reports and rtp.looks_like_rtcp(reports[0]) and reports[0][1] == 200)
        self.assertEqual(int.from_bytes(reports[0][4:8], "big"), video[0].ssrc)
        response = await c.request("GET_PARAMETER", url)
        self.assertEqual(response.code, 200)
        response = await c.request("TEARDOWN", url)
        self.assertEqual(response.code, 200)
        await c.closed

    def test_tcp_interleaved_media(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._tcp_media())

    async def _playback(self) -> None:
        c = await self.client()
        url = self.url(file=RECORDING)
        response = await c.request("DESCRIBE", url)
        self.assertEqual(response.code, 200)
        self.assertIn("a=range:npt=0-300.000", response.body.decode())
        video_url, _ = sdp_controls(response.body)
        self.assertEqual((await c.setup(video_url, "RTP/AVP/TCP;unicast;interleaved=0-1")).code, 200)
        # Seek to 62.5 s at double speed: answered from the IDR at or before it.
        response = await c.request("PLAY", url, ("Range", "npt=62.5-"), ("Scale", "2"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.get("Range"), "npt=62.000-300.000")
        self.assertEqual(response.headers.get("Scale"), "2")
        await sleep(0.5)
        video = c.rtp(0)
        stamps = sorted({p.timestamp for p in video})
        # Twice the pictures per second, and RTP time runs at wall-clock speed: 1800 ticks apart.
        self.assertGreater(len(stamps), 18)
        self.assertEqual({b - a for a, b in zip(stamps, stamps[1:], strict=False)}, {1800})
        response = await c.request("PAUSE", url)
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.get("Range").startswith("npt=6"))
        await sleep(0.1)
        count = len(c.frames)
        await sleep(0.3)
        self.assertEqual(len(c.frames), count)  # paused: nothing flows
        response = await c.request("PLAY", url, ("Scale", "3"))  # nearest supported speed
        self.assertEqual((response.code, response.headers.get("Scale")), (200, "4"))
        response = await c.request("PLAY", url, ("Range", "npt=10-20"), ("Scale", "0.25"))
        self.assertEqual((response.headers.get("Range"), response.headers.get("Scale")),
                         ("npt=10.000-20.000", "0.25"))
        response = await c.request("PLAY", url, ("Range", "npt=301-"))
        self.assertEqual(response.code, 457)
        response = await c.request("PLAY", url, ("Scale", "-1"))
        self.assertEqual(response.code, 456)

    def test_playback_range_and_scale(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._playback())

    async def _udp_punch(self) -> None:
        c = await self.client()
        url = self.url()
        declared, punched, rtcp = Collector(), Collector(), Collector()
        ports = [reactor.listenUDP(0, p, interface="127.0.0.1") for p in (declared, rtcp, punched)]
        self.udp += ports
        response = await c.request("DESCRIBE", url)
        video_url, _ = sdp_controls(response.body)
        client_ports = f"{ports[0].getHost().port}-{ports[1].getHost().port}"
        response = await c.setup(video_url, f"RTP/AVP;unicast;client_port={client_ports}")
        self.assertEqual(response.code, 200)
        [transport] = parse_transport(response.headers.get("Transport"))
        self.assertEqual(transport.client_port, (ports[0].getHost().port, ports[1].getHost().port))
        server_rtp = transport.server_port[0]
        self.assertEqual((await c.request("PLAY", url)).code, 200)
        await sleep(0.3)
        self.assertGreater(len(declared.packets), 0)
        self.assertEqual({addr for _, addr in declared.packets}, {("127.0.0.1", server_rtp)})
        # §15 step 3: an empty RTP packet from another port moves the stream there.
        ports[2].write(rtp.rtp_header(96, 0, 0, 0, False), ("127.0.0.1", server_rtp))
        await sleep(0.2)
        before = len(declared.packets)
        await sleep(0.3)
        self.assertEqual(len(declared.packets), before)
        self.assertGreater(len(punched.packets), 5)
        self.assertEqual(rtp.parse_rtp(punched.packets[-1][0]).payload_type, 96)

    def test_udp_and_punch_redirect(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._udp_punch())

    async def _garbage(self) -> None:
        c = await self.client()
        c.transport.write(b"\x16\x03\x01\x02\x00 not rtsp at all\r\n\r\n")
        await c.closed
        self.assertEqual(self.factory.refusals[400], 1)
        self.assertTrue(c.parser.failed or c.frames == [])

    def test_garbage_is_400_and_close(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._garbage())

    async def _platform_verifier(self) -> None:
        sent: list[Any] = []

        class FakeSession:
            """Stands in for the camera's 35H/74H session: accepts one known token."""

            def request(self, message: Any, timeout: float) -> defer.Deferred[Any]:
                sent.append(message)
                result = 0 if message.hash_token == "good" else 1
                return defer.succeed(m.TokenVerifyResponse(result=result, dev_id=message.dev_id))

        online: list[Any] = [FakeSession()]
        self.camera.verifier = platform_verifier(lambda: online[0])
        c = await self.client()
        self.assertEqual((await c.request("DESCRIBE", self.url(token="good"))).code, 200)
        self.assertEqual((await c.request("DESCRIBE", self.url(token="bad"))).code, 401)
        self.assertEqual((await c.request("DESCRIBE", self.url(file=RECORDING, token="good"))).code, 200)
        self.assertEqual([type(x).__name__ for x in sent],
                         ["TokenVerifyRequest", "TokenVerifyRequest", "PlaybackVerifyRequest"])
        self.assertEqual((sent[0].dev_id, sent[0].channel_no, sent[0].stream_type), (DEV, 0, 1))
        self.assertEqual(sent[2].file_name, RECORDING)
        online[0] = None  # camera offline: the token cannot be judged
        self.assertEqual((await c.request("DESCRIBE", self.url(token="other"))).code, 503)

    async def _state_recordings(self) -> None:
        state = CameraState.for_device(DEV, "key", clock=lambda: 1_793_500_000.0)
        self.camera.recording_duration = state_recordings(state)
        listed = state.recordings(0)[-1].file_name
        c = await self.client()
        response = await c.request("DESCRIBE", self.url(file=listed))
        self.assertEqual(response.code, 200)
        self.assertIn("a=range:npt=0-300.000", response.body.decode())
        self.assertEqual((await c.request("DESCRIBE", self.url(file=RECORDING))).code, 404)  # not listed

    def test_recordings_follow_the_72h_listing(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._state_recordings())

    def test_platform_verifier_sends_35h_and_74h(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._platform_verifier())

    async def _slow_socket(self) -> None:
        """A real socket whose reader stops: the server's buffer stays bounded."""
        c = await self.client()
        c.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        url = self.url(file=RECORDING)
        video_url, _ = sdp_controls((await c.request("DESCRIBE", url)).body)
        await c.setup(video_url, "RTP/AVP/TCP;unicast;interleaved=0-1")
        [session] = self.camera.sessions.values()
        server = session.owner.transport
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        play = c.request("PLAY", url, ("Scale", "4"))  # 100 pictures a second
        await sleep(0.05)
        c.transport.pauseProducing()  # stop reading
        high = 0
        for _ in range(30):
            await sleep(0.05)
            high = max(high, len(server.dataBuffer) - server.offset + server._tempDataLen)
        self.assertGreater(session.frames_dropped, 0)
        self.assertLess(high, server.bufferSize + 64 * 1024)  # one buffer plus one picture
        c.transport.resumeProducing()
        self.assertEqual((await play).code, 200)

    def test_slow_reader_socket_bounded(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._slow_socket())


class SlowReaderTests(TestCase):
    """A client that stops reading: frames are dropped, nothing piles up, restart at an IDR."""

    def test_drops_until_idr(self) -> None:
        clock = task.Clock()
        tokens = OneTimeTokens(clock=clock.seconds)
        camera = RtspCamera(DEV, tokens, media=default_library(), audio=False)
        factory = RtspCameraFactory(camera, reactor=clock)
        proto = factory.buildProtocol(None)
        assert isinstance(proto, RtspCameraProtocol)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertIs(transport.producer, proto)
        url = f"rtsp://10.0.0.1:554/realplay?devid={DEV}&channelno=0&streamtype=1&hashtoken=" + tokens.issue(
            "live", DEV, 0, 1)
        for i, (method, extra) in enumerate([("DESCRIBE", ""), ("SETUP", "Transport: RTP/AVP/TCP;interleaved=0-1\r\n"),
                                             ("PLAY", "")]):
            session = f"Session: {next(iter(camera.sessions))}\r\n" if camera.sessions else ""
            proto.dataReceived(f"{method} {url} RTSP/1.0\r\nCSeq: {i + 1}\r\n{extra}{session}\r\n".encode())
        for _ in range(25):
            clock.advance(0.04)
        [session] = camera.sessions.values()
        self.assertGreaterEqual(session.frames_sent, 25)
        # The kernel buffer is full: Twisted pauses its producer (us).
        proto.pauseProducing()
        transport.clear()
        sent = session.frames_sent
        for _ in range(50):
            clock.advance(0.04)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(session.frames_sent, sent)
        self.assertGreaterEqual(session.frames_dropped, 49)
        proto.resumeProducing()
        clock.advance(0.04)
        parser = RtspParser(max_body=1 << 20)
        for _ in range(30):  # at most one GOP until the next IDR
            clock.advance(0.04)
        frames = [e for e in parser.feed(transport.value()) if isinstance(e, InterleavedFrame)]
        self.assertGreater(len(frames), 0)
        first = rtp.parse_rtp(frames[0].data)
        self.assertEqual(rtp.nal_type(first.payload), rtp.NAL_SPS)  # resumes with SPS, PPS, IDR
        proto.connectionLost(None)
        self.assertEqual(camera.sessions, {})
        self.assertEqual(clock.getDelayedCalls(), [])
