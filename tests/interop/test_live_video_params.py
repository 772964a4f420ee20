"""The simulated camera's live picture follows its 60H video settings.

60H (SetVideoParams: FrameSize, FrameRate, RateType, BitRate, AudioInput) changes a
stream's encoding in the camera's state, 61H reports it, and the RTSP live stream is
encoded accordingly: the next viewer gets the new size, frame rate, bit rate and audio.
A session already playing keeps what its SDP announced (docs/protocol.md).  Encoding a
new loop takes seconds, so it runs in a worker thread while DESCRIBE waits; the reactor
stays free meanwhile, and concurrent DESCRIBEs share the one encode.

Real peers: ffprobe/ffmpeg over the camera's §8.9-form URL and through the RTSP proxy,
after the platform's real 60H command (``gateway.command``).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.python import threadable
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.device.protocol import messages as m
from globaleye.media import h264, rtp
from globaleye.media.rtsp.message import InterleavedFrame, RtspParser, RtspResponse
from globaleye.sim.fleet import DEFAULT_LOOPS, live_encoding
from globaleye.sim.media import source as source_module
from globaleye.sim.media.source import MAIN_PARAMS, LoopParams, MediaLibrary
from globaleye.sim.rtsp.players import Player
from globaleye.sim.rtsp.server import (
    LiveEncoding,
    RtspCamera,
    RtspCameraFactory,
    RtspCameraProtocol,
)
from globaleye.sim.rtsp.urls import OneTimeTokens
from globaleye.sim.state import FRAME_SIZE_PIXELS, SUPPORTED_FRAME_SIZES, CameraState, VideoParams
from globaleye.testing import platform_config
from tests.util import CameraOnPlatform, RawClient, Result, run, until

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
NO_FFMPEG = "ffmpeg/ffprobe not installed (apt-get install -y ffmpeg)"
DEV = "81300000021"
CONFIG = platform_config(public_host=None)


def sdp_value(sdp: bytes, prefix: str) -> str | None:
    for line in sdp.decode().splitlines():
        if line.startswith(prefix):
            return line[len(prefix):]
    return None


def live_url(host: str, port: int, token: str, stream_type: int = 1, dev_id: str = DEV) -> str:
    return f"rtsp://{host}:{port}/realplay?devid={dev_id}&channelno=0&streamtype={stream_type}&hashtoken={token}"


def block_encoder(test: Any) -> tuple[threading.Event, list[bool]]:
    """Encodes wait for the returned gate (set at cleanup); the list says, per encode, whether it
    ran on the reactor thread."""
    gate = threading.Event()
    on_reactor_thread: list[bool] = []
    real = source_module.encode_loop

    def slow(params: LoopParams, mtu: int = rtp.DEFAULT_MTU) -> Any:
        on_reactor_thread.append(threadable.isInIOThread())
        gate.wait(30)
        return real(params, mtu)

    test.patch(source_module, "encode_loop", slow)
    test.addCleanup(gate.set)
    return gate, on_reactor_thread


# ---------------------------------------------------------------------- the mapping


class MappingTests(TestCase):
    """60H codes → the loop streamed; 32H's list and 61H's defaults are what can be streamed."""

    def test_every_advertised_size_and_rate_is_a_loop(self) -> None:
        ability = CameraState.for_device("81100000001", "k").ability_report()
        advertised = {(v.stream_type, v.frame_size) for v in ability.video}
        self.assertEqual(advertised, {(s, f) for s, sizes in SUPPORTED_FRAME_SIZES.items() for f in sizes})
        for _stream, size in advertised:
            for fps in range(2, 26):  # 60H accepts 2..25
                for code, kbps in m.BIT_RATES_KBPS.items():
                    params = live_encoding(VideoParams(size, fps, m.RateType.VBR, code, 1)).video
                    self.assertEqual((params.width, params.height), FRAME_SIZE_PIXELS[size])
                    self.assertEqual((params.fps, params.gop, params.bit_rate), (fps, fps, kbps * 1000))
                    self.assertEqual(params.frames % params.gop, 0, "a whole number of GOPs")

    def test_sizes(self) -> None:
        self.assertEqual(FRAME_SIZE_PIXELS, {1: (1280, 720), 2: (640, 480), 3: (704, 576), 4: (352, 288),
                                             5: (320, 240)})

    def test_rate_type_does_not_change_the_encoding(self) -> None:
        cbr = live_encoding(VideoParams(m.FrameSize.VGA, 12, m.RateType.CBR, 6, 1))
        vbr = live_encoding(VideoParams(m.FrameSize.VGA, 12, m.RateType.VBR, 6, 1))
        self.assertEqual(cbr, vbr)

    def test_audio_input(self) -> None:
        self.assertFalse(live_encoding(VideoParams(m.FrameSize.CIF, 15, 2, 4, 0)).audio)
        self.assertTrue(live_encoding(VideoParams(m.FrameSize.CIF, 15, 2, 4, 1)).audio)

    def test_defaults_are_the_61h_defaults(self) -> None:
        state = CameraState.for_device("81100000001", "k")
        main, sub = DEFAULT_LOOPS
        self.assertEqual(main, MAIN_PARAMS, "the library's main loop is the camera's default main stream")
        self.assertEqual(live_encoding(state.video(0, 1)).video, main)
        self.assertEqual(live_encoding(state.video(0, 2)).video, sub)
        self.assertEqual((sub.width, sub.height, sub.fps, sub.bit_rate), (352, 288, 15, 256_000))


# ---------------------------------------------------------------------- the library


def tiny(fps: int = 5, width: int = 32, height: int = 32) -> LoopParams:
    return LoopParams.live(width, height, fps, 96_000)


class LibraryTests(TestCase):
    def test_lru_keeps_the_pinned(self) -> None:
        lib = MediaLibrary(max_loops=2)
        loops = [tiny(fps) for fps in (2, 3, 4, 5)]
        lib.pin(loops[0])
        for params in loops:
            lib.video(params)
        self.assertEqual(lib.loops(), [loops[0], loops[2], loops[3]], "the oldest unpinned went")
        self.assertIsNotNone(lib.video_ready(loops[2]))  # used: now the most recent
        lib.video(loops[1])
        self.assertEqual(set(lib.loops()), {loops[0], loops[2], loops[1]})
        self.assertEqual((lib.encodes, lib.evictions), (5, 2))
        self.assertIsNone(lib.video_ready(loops[3]))

    def test_prepare_pins(self) -> None:
        lib = MediaLibrary(max_loops=0)
        wanted = [tiny(2), tiny(3)]
        d = lib.prepare(recordings=False, live=wanted)

        def check(_: Any) -> None:
            lib.video(tiny(4))
            self.assertEqual(lib.loops(), wanted, "prepared loops stay; the other is evicted at once")

        return d.addCallback(check)

    async def test_async_shares_one_encode_in_a_thread(self) -> None:
        lib = MediaLibrary()
        gate, threads = block_encoder(self)
        first, second = lib.video_async(tiny()), lib.video_async(tiny())
        await until(lambda: threads)
        await deferLater(reactor, 0.1, lambda: None)  # the reactor runs while the encode waits
        self.assertFalse(first.called or second.called)
        gate.set()
        a, b = await first, await second
        self.assertIs(a, b)
        self.assertEqual(threads, [False], "one encode, not on the reactor thread")
        self.assertIs(await lib.video_async(tiny()), a, "then from memory")


# ---------------------------------------------------------------------- the camera's RTSP server


class ClockedConnection:
    """One RTSP connection to a camera on a task.Clock: requests in, responses and media out."""

    def __init__(self, factory: RtspCameraFactory) -> None:
        proto = factory.buildProtocol(None)
        assert isinstance(proto, RtspCameraProtocol)
        self.proto = proto
        self.transport = StringTransport()
        proto.makeConnection(self.transport)
        self.parser = RtspParser(max_body=1 << 20)
        self.frames: list[InterleavedFrame] = []
        self.cseq = 0
        self.session = ""

    def request(self, method: str, url: str, *headers: str) -> RtspResponse:
        self.cseq += 1
        extra = "".join(h + "\r\n" for h in headers)
        if self.session:
            extra += f"Session: {self.session}\r\n"
        self.proto.dataReceived(f"{method} {url} RTSP/1.0\r\nCSeq: {self.cseq}\r\n{extra}\r\n".encode())
        return self.read()

    def read(self) -> RtspResponse:
        responses: list[RtspResponse] = []
        for event in self.parser.feed(self.transport.value()):
            if isinstance(event, InterleavedFrame):
                self.frames.append(event)
            elif isinstance(event, RtspResponse):
                responses.append(event)
        self.transport.clear()
        assert len(responses) == 1, responses
        response = responses[0]
        session = response.headers.get("Session")
        if session:
            self.session = session.split(";")[0]
        return response

    def media(self) -> list[rtp.RtpPacket]:
        for event in self.parser.feed(self.transport.value()):
            if isinstance(event, InterleavedFrame):
                self.frames.append(event)
        self.transport.clear()
        return [rtp.parse_rtp(f.data) for f in self.frames]


class SessionTests(TestCase):
    """Which parameters a session plays (task.Clock; loops encoded in place: no threads)."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.tokens = OneTimeTokens(clock=self.clock.seconds)
        self.current = LiveEncoding(tiny(10, 64, 48), True)
        self.camera = RtspCamera(DEV, self.tokens, media=MediaLibrary(),
                                 live_encoding=lambda channel, stream: self.current)
        self.factory = RtspCameraFactory(self.camera, reactor=self.clock)

    def url(self) -> str:
        return live_url("10.0.0.1", 554, self.tokens.issue("live", DEV, 0, 1))

    def play(self, url: str, audio: bool = True) -> ClockedConnection:
        conn = ClockedConnection(self.factory)
        self.assertEqual(conn.request("DESCRIBE", url).code, 200)
        self.assertEqual(conn.request("SETUP", url + "&trackID=0", "Transport: RTP/AVP/TCP;interleaved=0-1").code,
                         200)
        if audio:
            self.assertEqual(conn.request("SETUP", url + "&trackID=1",
                                          "Transport: RTP/AVP/TCP;interleaved=2-3").code, 200)
        self.assertEqual(conn.request("PLAY", url).code, 200)
        return conn

    def tearDown(self) -> None:
        for session in list(self.camera.sessions.values()):
            session.destroy()

    def test_running_session_keeps_its_parameters(self) -> None:
        url = self.url()
        conn = ClockedConnection(self.factory)
        sdp = conn.request("DESCRIBE", url).body
        self.assertEqual(sdp_value(sdp, "a=x-dimensions:"), "64,48")
        self.assertEqual(sdp_value(sdp, "a=framerate:"), "10")
        # 60H between DESCRIBE and SETUP: the session still plays what the SDP said.
        self.current = LiveEncoding(tiny(5, 96, 64), False)
        self.assertEqual(conn.request("SETUP", url + "&trackID=0", "Transport: RTP/AVP/TCP;interleaved=0-1").code,
                         200)
        self.assertEqual(conn.request("SETUP", url + "&trackID=1", "Transport: RTP/AVP/TCP;interleaved=2-3").code,
                         200, "the SDP had audio, so the session has it")
        self.assertEqual(conn.request("PLAY", url).code, 200)
        for _ in range(50):
            self.clock.advance(0.02)
        [session] = self.camera.sessions.values()
        assert session.live is not None
        self.assertEqual((session.live.video.width, session.live.video.fps), (64, 10))
        packets = conn.media()
        sps = [p.payload for p in packets if p.payload_type == rtp.PT_H264 and rtp.nal_type(p.payload) == rtp.NAL_SPS]
        self.assertEqual((h264.parse_sps(sps[0]).width, h264.parse_sps(sps[0]).height), (64, 48))
        self.assertTrue(any(p.payload_type == rtp.PT_PCMA for p in packets))
        # PAUSE and PLAY again: the same session, the same loop.
        self.assertEqual(conn.request("PAUSE", url).code, 200)
        self.assertEqual(conn.request("PLAY", url).code, 200)
        assert isinstance(session.player, Player)
        self.assertEqual(session.player.video.width, 64)

        # A new viewer gets the new encoding: size, rate, and no audio track.
        other = ClockedConnection(self.factory)
        url2 = self.url()
        sdp = other.request("DESCRIBE", url2).body
        self.assertEqual(sdp_value(sdp, "a=x-dimensions:"), "96,64")
        self.assertEqual(sdp_value(sdp, "a=framerate:"), "5")
        self.assertNotIn(b"m=audio", sdp)
        self.assertEqual(other.request("SETUP", url2 + "&trackID=1", "Transport: RTP/AVP/TCP;interleaved=2-3").code,
                         404, "no audio track to set up")

    def test_setup_without_describe_gets_the_current_encoding(self) -> None:
        url = self.url()
        self.current = LiveEncoding(tiny(5, 96, 64), False)
        conn = ClockedConnection(self.factory)
        self.assertEqual(conn.request("SETUP", url + "&trackID=0", "Transport: RTP/AVP/TCP;interleaved=0-1").code,
                         200)
        [session] = self.camera.sessions.values()
        assert session.live is not None
        self.assertEqual((session.live.video.width, session.live.audio), (96, False))

    def test_camera_without_microphone(self) -> None:
        """``RtspCamera.audio`` False wins over AudioInput 1."""
        self.camera.audio = False
        sdp = ClockedConnection(self.factory).request("DESCRIBE", self.url()).body
        self.assertNotIn(b"m=audio", sdp)

    def test_audio_is_continuous_at_15_fps(self) -> None:
        """At 15 fps a picture is 533⅓ samples: the 20 ms packets are cut by time, not per picture."""
        self.current = LiveEncoding(tiny(15, 64, 48), True)
        conn = self.play(self.url())
        for _ in range(200):
            self.clock.advance(0.01)
        packets = conn.media()
        audio = [p for p in packets if p.payload_type == rtp.PT_PCMA]
        video_frames = sum(1 for p in packets if p.payload_type == rtp.PT_H264 and p.marker)
        self.assertEqual(video_frames, 31)  # t = 0 .. 2.0 s inclusive at 15 fps
        steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(audio, audio[1:], strict=False)}
        self.assertEqual(steps, {160}, "no gap, no overlap")
        self.assertTrue(all(len(p.payload) == 160 for p in audio))
        # Audio up to the end of the last picture sent: 31 pictures of 1/15 s = 16533 samples.
        self.assertEqual(len(audio), 31 * 8000 // 15 // 160)
        # Each picture's audio starts at its time: the video and audio clocks agree.
        self.assertLess(abs(len(audio) * 160 / 8000 - video_frames / 15), 0.02 + 0.001)


class DescribeDoesNotBlockTests(TestCase):
    """A DESCRIBE that needs a new loop waits for a worker thread; the reactor goes on."""

    timeout = 60

    async def test_describe_while_encoding(self) -> None:
        lib = MediaLibrary()
        gate, encoder_in_reactor_thread = block_encoder(self)
        tokens = OneTimeTokens()
        params = tiny(10, 96, 64)
        camera = RtspCamera(DEV, tokens, media=lib, live_encoding=lambda ch, st: LiveEncoding(params, True))
        factory = RtspCameraFactory(camera)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = int(getattr(port.getHost(), "port"))  # noqa: B009
        clients: list[RawClient] = []
        for _ in range(3):
            client = RawClient()
            await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", number), client)
            clients.append(client)

        async def close() -> None:
            for c in clients:
                if not c.closed.called and c.transport is not None:
                    c.transport.loseConnection()
                    await c.closed
            await until(lambda: factory.connections == 0)

        self.addCleanup(lambda: Deferred.fromCoroutine(close()))
        urls = [live_url("127.0.0.1", number, tokens.issue("live", DEV, 0, 1)) for _ in range(2)]
        first = clients[0].request("DESCRIBE", urls[0])
        second = clients[1].request("DESCRIBE", urls[1])
        await until(lambda: encoder_in_reactor_thread)
        # The encode is under way: timers fire on time and another client is answered.
        started = time.monotonic()
        await deferLater(reactor, 0.2, lambda: None)
        self.assertLess(time.monotonic() - started, 0.6)
        self.assertEqual((await clients[2].request("OPTIONS", urls[0])).code, 200)
        self.assertFalse(first.called or second.called, "DESCRIBE waits for its loop")
        gate.set()
        for response in (await first, await second):
            self.assertEqual(response.code, 200)
            self.assertEqual(sdp_value(response.body, "a=x-dimensions:"), "96,64")
        self.assertEqual(encoder_in_reactor_thread, [False], "one encode for both, in a worker thread")
        self.assertEqual(lib.encodes, 1)


# ---------------------------------------------------------------------- end to end: platform, 60H, ffprobe


async def probe_streams(url: str, extra: list[str] | None = None) -> dict[str, Any]:
    assert FFPROBE is not None
    result = await run(FFPROBE, ["-v", "error", "-rtsp_transport", "tcp", *(extra or []), "-show_entries",
                                 "stream=codec_type,codec_name,width,height,r_frame_rate", "-of", "json", url],
                       timeout=30)
    assert result.code == 0, result.err
    return {s["codec_type"]: s for s in json.loads(result.out)["streams"]}


class EndToEndTests(TestCase):
    """A platform, a simulated camera, the platform's 60H/61H, and ffprobe/ffmpeg on the live URL."""

    timeout = 180

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None or FFMPEG is None:
            raise SkipTest(NO_FFMPEG)
        self.setup = CameraOnPlatform(self, CONFIG, DEV)
        await self.setup.start()
        self.platform, self.fleet, self.camera = self.setup.platform, self.setup.fleet, self.setup.camera

    async def url(self, stream_type: int = 1) -> str:
        return live_url("127.0.0.1", self.fleet.rtsp_port, await self.setup.token(stream_type), stream_type)

    async def set_video(self, stream_type: int, **fields: int) -> None:
        response = await self.platform.gateway.command(DEV, m.SetVideoParamsRequest(
            dev_id=DEV, channel_no=0, stream_type=stream_type, **fields))
        self.assertEqual(response.result, 0)

    async def get_video(self, stream_type: int) -> Any:
        response = await self.platform.gateway.command(DEV, m.GetVideoParamsRequest(
            dev_id=DEV, channel_no=0, stream_type=stream_type))
        self.assertEqual(response.result, 0)
        return response

    def assert_61h_is_streamed(self, answer: Any, streams: dict[str, Any]) -> None:
        width, height = FRAME_SIZE_PIXELS[answer.frame_size]
        video = streams["video"]
        self.assertEqual((video["codec_name"], video["width"], video["height"], video["r_frame_rate"]),
                         ("h264", width, height, f"{answer.frame_rate}/1"))
        self.assertEqual("audio" in streams, bool(answer.audio_input))

    async def test_defaults_as_61h_reports_them(self) -> None:
        for stream_type in (1, 2):
            self.assert_61h_is_streamed(await self.get_video(stream_type), await probe_streams(await self.url(stream_type)))

    async def test_sub_stream_qvga_10_fps(self) -> None:
        await self.set_video(2, frame_size=m.FrameSize.QVGA, frame_rate=10)
        # The camera starts the new encode itself, as a camera restarts its encoder on 60H.
        wanted = live_encoding(self.camera.state.video(0, 2)).video
        await until(lambda: self.fleet.media.video_ready(wanted) is not None, timeout=20)
        answer = await self.get_video(2)
        self.assertEqual((answer.frame_size, answer.frame_rate), (m.FrameSize.QVGA, 10))
        streams = await probe_streams(await self.url(2))
        self.assert_61h_is_streamed(answer, streams)
        self.assertEqual((streams["video"]["width"], streams["video"]["height"]), (320, 240))
        # ffmpeg decodes 2 s of it without a warning, and the pictures come at 10 per second.
        assert FFMPEG is not None
        url = await self.url(2)
        started = reactor.seconds()
        result = await run(FFMPEG, ["-v", "warning", "-rtsp_transport", "tcp", "-i", url, "-map", "0:v",
                                    "-frames:v", "30", "-f", "null", "-"], timeout=30)
        self.assertEqual((result.code, result.err.strip()), (0, ""))
        self.assertGreater(reactor.seconds() - started, 2.0, "30 pictures at 10 fps take about 3 s")

    async def test_audio_input_off_and_on(self) -> None:
        await self.set_video(1, audio_input=0)
        self.assertEqual((await self.get_video(1)).audio_input, 0)
        streams = await probe_streams(await self.url(1))
        self.assertNotIn("audio", streams)
        self.assertEqual(streams["video"]["width"], 1280)
        await self.set_video(1, audio_input=1)
        self.assertEqual((await probe_streams(await self.url(1)))["audio"]["codec_name"], "pcm_alaw")

    async def bytes_of(self, seconds: int) -> int:
        """Bytes of H.264 a player receives in *seconds* of the main stream (from its first IDR)."""
        assert FFMPEG is not None
        path = self.mktemp() + ".h264"
        result: Result = await run(FFMPEG, ["-v", "error", "-rtsp_transport", "tcp", "-i", await self.url(1),
                                            "-map", "0:v", "-c", "copy", "-frames:v", str(25 * seconds),
                                            "-f", "h264", path], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        return os.path.getsize(path)

    async def test_lower_bit_rate_smaller_stream(self) -> None:
        high = await self.bytes_of(3)  # the default: BitRate 8, 1024 kbit/s
        await self.set_video(1, bit_rate=2)  # 128 kbit/s
        low = await self.bytes_of(3)
        for size, kbps in ((high, 1024), (low, 128)):
            self.assertGreater(size * 8 / 3 / 1000, 0.6 * kbps)
            self.assertLess(size * 8 / 3 / 1000, 1.5 * kbps)
        self.assertLess(low * 4, high)

    async def test_running_session_keeps_its_size(self) -> None:
        """60H while ffprobe reads: every picture of that session stays 1280x720; the next is VGA."""
        url = await self.url(1)
        assert FFPROBE is not None
        reading = Deferred.fromCoroutine(run(FFPROBE, [
            "-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-read_intervals", "%+#75",
            "-show_entries", "frame=width,height", "-of", "csv=p=0", url], timeout=30))
        rtsp = self.fleet.rtsp.cameras[DEV]
        await until(lambda: rtsp.plays > 0, timeout=20)
        await self.set_video(1, frame_size=m.FrameSize.VGA, frame_rate=12)
        self.assertTrue(rtsp.sessions, "60H arrived while the session was playing")
        result = await reading
        self.assertEqual(result.code, 0, result.err)
        frames = [line for line in result.out.splitlines() if line.strip()]
        self.assertGreaterEqual(len(frames), 75)
        self.assertEqual(set(frames), {"1280,720"})
        self.assert_61h_is_streamed(await self.get_video(1), await probe_streams(await self.url(1)))


class ThroughProxyTests(TestCase):
    """The proxy's next viewer, once the old upstream has stopped, gets the new SDP."""

    timeout = 180

    async def test_sub_stream_change_through_the_proxy(self) -> None:
        if FFPROBE is None:
            raise SkipTest(NO_FFMPEG)
        from tests.util import PROXY_DEV, ProxyHarness

        h = ProxyHarness(self)
        await h.start()
        before = await probe_streams(h.url(stream=2))
        self.assertEqual((before["video"]["width"], before["video"]["height"], before["video"]["r_frame_rate"]),
                         (352, 288, "15/1"))
        await until(lambda: (PROXY_DEV, 0, 2) not in h.factory.hubs, timeout=20)
        response = await h.platform.gateway.command(PROXY_DEV, m.SetVideoParamsRequest(
            dev_id=PROXY_DEV, channel_no=0, stream_type=2, frame_size=m.FrameSize.QVGA, frame_rate=10))
        self.assertEqual(response.result, 0)
        after = await probe_streams(h.url(stream=2))
        self.assertEqual((after["video"]["width"], after["video"]["height"], after["video"]["r_frame_rate"]),
                         (320, 240, "10/1"))

