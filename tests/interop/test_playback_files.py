"""Playback serves the recording's real MPEG-TS file (§7.1; §10.1 PLAY 4: Range and Scale).

The proof is by pictures: frames FFmpeg decodes from the camera's playback URL are
compared (MD5 of each decoded picture, as ``-f framemd5`` prints them) with the same
frames decoded from the ``.ts`` file itself by FFmpeg's demuxer and decoder (PyAV,
which does not use our demuxer).  The recording's pictures show their position in the
file (``MM:SS``), so no two seconds look alike and none looks like the live loop: a
match proves the file is what is served, and from where.

Players run as child processes under the reactor (``tests.util.run``); tests that
need them skip when ffmpeg is missing.  Only 127.0.0.1 is bound.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import tempfile
import time
from typing import Any

from twisted.internet import defer, reactor, task, threads
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.media import h264, mpegts, rtp
from globaleye.media.rtsp.message import InterleavedFrame, RtspParser
from globaleye.media.tsfile import Gop, Recording, index_recording
from globaleye.sim.media.recording import RecordingParams, write_generated_recording
from globaleye.sim.media.source import MediaLibrary, default_library
from globaleye.sim.rtsp.players import RecordingPlayer
from globaleye.sim.rtsp.server import RtspCamera, RtspCameraFactory
from globaleye.sim.rtsp.urls import OneTimeTokens, parse_url, state_recordings
from globaleye.sim.state import CameraState
from tests.util import CAMERA_DEV as DEV
from tests.util import CAMERA_RECORDING as RECORDING
from tests.util import (
    FFMPEG,
    FFPROBE,
    NO_FFMPEG,
    CameraCase,
    RawClient,
    ffprobe_streams,
    run,
    sdp_controls,
    sleep,
)

try:
    import av
except ImportError:  # pragma: no cover
    av = None

FPS = 25


# ---------------------------------------------------------------------- the file, decoded by FFmpeg


def _file_packets(path: str, kind: str) -> list[Any]:
    with av.open(path) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        return [(bytes(p), p.is_keyframe) for p in container.demux(stream) if p.size]


def file_frame_md5s(path: str, first: int, count: int) -> list[str]:
    """MD5s of decoded pictures first…first+count-1 of the file (FFmpeg's demuxer and decoder)."""
    packets = _file_packets(path, "video")
    assert packets[first][1], "the comparison must start at a keyframe"
    codec = av.CodecContext.create("h264", "r")
    md5s: list[str] = []
    for data, _ in packets[first:]:
        for frame in codec.decode(av.Packet(data)):
            md5s.append(hashlib.md5(frame.to_ndarray().tobytes()).hexdigest())
        if len(md5s) >= count:
            break
    else:
        md5s += [hashlib.md5(f.to_ndarray().tobytes()).hexdigest() for f in codec.decode(None)]
    return md5s[:count]


def file_aac_frames(path: str) -> list[bytes]:
    """The raw AAC frames of the file's audio as FFmpeg demuxes them (ADTS headers removed)."""
    out = []
    for data, _ in _file_packets(path, "audio"):
        if data[:2] in (b"\xff\xf1", b"\xff\xf9"):
            data = data[7 if data[1] & 1 else 9:]
        out.append(data)
    return out


def framemd5s(output: str) -> list[str]:
    """The MD5 column of ``ffmpeg -f framemd5`` output (one stream mapped)."""
    return [line.rsplit(",", 1)[1].strip() for line in output.splitlines()
            if line and not line.startswith("#")]


class TimedClient(RawClient):
    """A raw client that also notes when each interleaved frame arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        before = len(self.frames)
        super().dataReceived(data)
        self.arrivals += [reactor.seconds()] * (len(self.frames) - before)

    def pictures(self, since: int = 0) -> list[tuple[float, list[rtp.RtpPacket]]]:
        """Video pictures (RTP packets up to the marker) received from frame *since* on."""
        out: list[tuple[float, list[rtp.RtpPacket]]] = []
        current: list[rtp.RtpPacket] = []
        for when, frame in zip(self.arrivals[since:], self.frames[since:], strict=True):
            if frame.channel != 0:
                continue
            packet = rtp.parse_rtp(frame.data)
            current.append(packet)
            if packet.marker:
                out.append((when, current))
                current = []
        return out


class PlaybackCase(CameraCase):
    timeout = 120

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        super().setUp()
        if av is None:
            raise SkipTest("PyAV (pip install av) is not installed")
        # The shared 5-minute file: made (or found in the cache) in a worker thread.
        d: defer.Deferred[Any] = default_library().recording_async()
        return d.addCallback(self._ready)

    def _ready(self, recording: Recording) -> None:
        self.recording = recording
        self.path = recording.index.path

    async def timed_client(self) -> TimedClient:
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        c = await connectProtocol(endpoint, TimedClient())
        self.clients.append(c)
        return c

    async def session(self, audio: bool = False) -> tuple[TimedClient, str]:
        c = await self.timed_client()
        url = self.url(file=RECORDING)
        response = await c.request("DESCRIBE", url)
        self.assertEqual(response.code, 200)
        video_url, audio_url = sdp_controls(response.body)
        self.assertEqual((await c.setup(video_url, "RTP/AVP/TCP;unicast;interleaved=0-1")).code, 200)
        if audio:
            self.assertEqual((await c.setup(audio_url, "RTP/AVP/TCP;unicast;interleaved=2-3")).code, 200)
        return c, url

    def file_payloads(self, frame: int) -> tuple[bytes, ...]:
        gop = self.recording.read_gop(self.recording.index.gop_of(frame))
        return tuple(p for p, _ in gop.picture(frame).payloads)

    async def ffmpeg(self, *args: str, timeout: float = 40) -> Any:
        self.need_ffmpeg()
        assert FFMPEG is not None
        result = await run(FFMPEG, ["-nostdin", "-v", "error", *args], timeout=timeout)
        self.assertFalse(result.timed_out, "ffmpeg did not finish")
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.err.strip(), "", "no decoder or demuxer complaint at all")
        return result


class PlaybackFileTests(PlaybackCase):
    async def test_sdp_and_ffprobe_describe_the_file(self) -> None:
        index = self.recording.index
        c = await self.timed_client()
        response = await c.request("DESCRIBE", self.url(file=RECORDING))
        sdp = response.body.decode()
        self.assertIn("a=range:npt=0-300.000", sdp)  # the file's real length: 7500 pictures at 25 fps
        self.assertEqual(index.frames, 7500)
        # sprop-parameter-sets are the SPS/PPS of the file, as FFmpeg's demuxer finds them there.
        first, _ = (await threads.deferToThread(_file_packets, self.path, "video"))[0]
        nals = rtp.split_annexb(first)
        sps = next(n for n in nals if rtp.nal_type(n) == rtp.NAL_SPS)
        pps = next(n for n in nals if rtp.nal_type(n) == rtp.NAL_PPS)
        self.assertIn(f"sprop-parameter-sets={base64.b64encode(sps).decode()},{base64.b64encode(pps).decode()}",
                      sdp)
        self.assertIn(f"profile-level-id={sps[1:4].hex()}", sdp)
        self.assertIn("a=rtpmap:97 MPEG4-GENERIC/8000/1", sdp)
        self.assertIn("config=1588", sdp)  # AAC LC, 8 kHz, mono: the file's ADTS header
        self.need_ffmpeg()
        result = await self.ffprobe(self.url(file=RECORDING), "-rtsp_transport", "tcp")
        self.assertEqual(result.code, 0, result.err)
        streams = {s["codec_type"]: s for s in ffprobe_streams(result)}
        self.assertEqual((streams["video"]["codec_name"], streams["video"]["width"], streams["video"]["height"]),
                         ("h264", 1280, 720))
        self.assertEqual((streams["audio"]["codec_name"], streams["audio"]["sample_rate"]), ("aac", "8000"))

    async def test_first_frames_are_the_files(self) -> None:
        """ffmpeg over RTSP/TCP from the start: 50 pictures, each the file's, bit for bit."""
        result = await self.ffmpeg("-rtsp_transport", "tcp", "-i", self.url(file=RECORDING), "-map", "0:v",
                                   "-frames:v", "50", "-f", "framemd5", "-")
        served = framemd5s(result.out)
        expected = await threads.deferToThread(file_frame_md5s, self.path, 0, 50)
        self.assertEqual(len(served), 50)
        self.assertEqual(served, expected)
        self.assertEqual(len(set(served)), 2, "two seconds of the file: 00:00 and 00:01")
        # Not the live loop: its first picture is another one.
        loop = default_library().main()
        codec = av.CodecContext.create("h264", "r")
        live = [hashlib.md5(f.to_ndarray().tobytes()).hexdigest()
                for i in range(3) for f in codec.decode(av.Packet(loop.annexb(i)))]
        self.assertFalse(set(live) & set(served))

    async def test_seek_60_serves_the_files_pictures_from_60(self) -> None:
        """``-ss 60`` is PLAY Range npt=60.000-: the file's pictures 1500… (01:00), not 0… (00:00)."""
        result = await self.ffmpeg("-rtsp_transport", "tcp", "-ss", "60", "-i", self.url(file=RECORDING),
                                   "-map", "0:v", "-frames:v", "50", "-f", "framemd5", "-")
        served = framemd5s(result.out)
        expected = await threads.deferToThread(file_frame_md5s, self.path, 60 * FPS, 50)
        self.assertEqual(served, expected)
        start = await threads.deferToThread(file_frame_md5s, self.path, 0, 25)
        self.assertFalse(set(start) & set(served))

    async def test_end_of_file_ends_the_stream_cleanly(self) -> None:
        """From 298 s to the end: 50 pictures (the file's last ones), then RTCP BYE and ffmpeg exits 0."""
        result = await self.ffmpeg("-rtsp_transport", "tcp", "-ss", "298", "-i", self.url(file=RECORDING),
                                   "-map", "0:v", "-f", "framemd5", "-", timeout=20)
        served = framemd5s(result.out)
        self.assertEqual(served, await threads.deferToThread(file_frame_md5s, self.path, 298 * FPS, 50))
        # The same over RTP/UDP, with audio (ffmpeg ends when every stream has said BYE).
        await self.ffmpeg("-rtsp_transport", "udp", "-ss", "299", "-i", self.url(file=RECORDING), "-f", "null",
                          "-", timeout=20)

    async def test_audio_is_the_files_aac(self) -> None:
        c, url = await self.session(audio=True)
        response = await c.request("PLAY", url, ("Range", "npt=30-"))
        self.assertEqual(response.code, 200)
        await sleep(1.2)
        packets = c.rtp(2)
        self.assertGreater(len(packets), 6)  # 1024 samples at 8 kHz: 7.8 frames a second
        self.assertEqual({(p.payload_type, p.marker) for p in packets}, {(97, True)})
        units = [u for p in packets for u in rtp.parse_aac_hbr(p.payload)]
        self.assertEqual(len(units), len(packets))
        stamps = [p.timestamp for p in packets]
        self.assertEqual({(b - a) & 0xFFFFFFFF for a, b in zip(stamps, stamps[1:], strict=False)}, {1024})
        # The file's AAC frames (FFmpeg's demuxer), from the first at or after the 30 s picture on:
        # the tone repeats, so the position is taken from the PTS, not searched for.
        frames = await threads.deferToThread(file_aac_frames, self.path)
        index = self.recording.index
        self.assertEqual(len(frames), len(index.a_pts))
        at = next(j for j, pts in enumerate(index.a_pts) if pts >= index.v_pts[30 * FPS])
        self.assertEqual(frames[at:at + len(units)], units)
        # And FFmpeg decodes it over RTSP without a complaint.
        await self.ffmpeg("-rtsp_transport", "tcp", "-i", self.url(file=RECORDING), "-map", "0:a", "-t", "1",
                          "-f", "null", "-")


class PlaybackControlTests(PlaybackCase):
    async def test_scale_paces_pictures(self) -> None:
        """Scale s: 25·s pictures a second, RTP time at wall-clock speed (3600/s ticks apart), no audio at s≠1."""
        c, url = await self.session(audio=True)
        rates = {}
        for scale in ("0.25", "0.5", "1", "2", "4"):
            mark = len(c.frames)
            response = await c.request("PLAY", url, ("Range", "npt=10-"), ("Scale", scale))
            self.assertEqual((response.code, response.headers.get("Scale")), (200, scale))
            self.assertEqual(response.headers.get("Range"), "npt=10.000-300.000")
            [session] = self.camera.sessions.values()
            player = session.player
            assert isinstance(player, RecordingPlayer)
            for _ in range(10):  # memory per session: the GOP being sent and the one read ahead
                await sleep(0.1)
                self.assertLessEqual(player.player._window.held, 2)
                self.assertLessEqual(player.player._window.reading, 1)
            pictures = c.pictures(mark)
            times = [when for when, _ in pictures]
            rates[scale] = (len(times) - 1) / (times[-1] - times[0])
            stamps = [packets[0].timestamp for _, packets in pictures]
            self.assertEqual({(b - a) & 0xFFFFFFFF for a, b in zip(stamps, stamps[1:], strict=False)},
                             {round(3600 / float(scale))})
            # The file's pictures from 10 s on, in order.
            for k, (_, packets) in enumerate(pictures[:30]):
                self.assertEqual(tuple(p.payload for p in packets), self.file_payloads(10 * FPS + k))
            audio = [f for f in c.frames[mark:] if f.channel == 2]
            self.assertEqual(bool(audio), scale == "1", f"audio at Scale {scale}")
            self.assertEqual((await c.request("PAUSE", url)).code, 200)
        for scale, rate in rates.items():
            self.assertLess(abs(rate / (FPS * float(scale)) - 1.0), 0.2, f"Scale {scale}: {rates}")
        self.assertLess(abs(rates["2"] / rates["1"] - 2.0), 0.3, rates)

    async def test_pause_and_resume_where_it_paused(self) -> None:
        c, url = await self.session()
        response = await c.request("PLAY", url, ("Range", "npt=20-"))
        self.assertEqual(response.headers.get("Range"), "npt=20.000-300.000")
        await sleep(0.5)
        response = await c.request("PAUSE", url)
        self.assertEqual(response.code, 200)
        [session] = self.camera.sessions.values()
        paused_at = session.resume_frame
        self.assertEqual(response.headers.get("Range"), f"npt={paused_at / FPS:.3f}-")
        sent = c.pictures()
        self.assertEqual(len(sent), paused_at - 20 * FPS)  # every picture up to the pause, none lost
        count = len(c.frames)
        await sleep(0.4)
        self.assertEqual(len(c.frames), count, "paused: nothing flows")
        response = await c.request("PLAY", url)  # no Range: resume
        self.assertEqual(response.headers.get("Range"), f"npt={paused_at / FPS:.3f}-300.000")
        await sleep(0.3)
        resumed = c.pictures(count)
        self.assertGreater(len(resumed), 3)
        for k, (_, packets) in enumerate(resumed[:5]):  # the very next pictures of the file, no IDR needed
            self.assertEqual(tuple(p.payload for p in packets), self.file_payloads(paused_at + k))
        before, after = sent[-1][1][-1], resumed[0][1][0]
        self.assertEqual(after.sequence, (before.sequence + 1) & 0xFFFF)
        gap = (after.timestamp - before.timestamp) & 0xFFFFFFFF
        self.assertGreater(gap, 0.4 * 90000, "RTP time kept running through the pause")

    async def test_past_the_end_is_457_and_the_end_says_bye(self) -> None:
        c, url = await self.session(audio=True)
        for value in ("npt=300-", "npt=300.5-", "npt=10-5", "smpte=0:10:00-"):
            response = await c.request("PLAY", url, ("Range", value))
            self.assertEqual(response.code, 457, value)
        response = await c.request("PLAY", url, ("Range", "npt=299.5-"))
        self.assertEqual((response.code, response.headers.get("Range")), (200, "npt=299.000-300.000"))
        await sleep(1.6)
        [session] = self.camera.sessions.values()
        self.assertEqual((session.state, session.player, session.resume_frame), ("paused", None, 7500))
        self.assertEqual(len(c.pictures()), 25)
        byes = {}
        for frame in c.frames:
            if frame.channel in (1, 3):
                pos = 0
                while pos + 8 <= len(frame.data):
                    ptype, words = frame.data[pos + 1], struct.unpack_from("!H", frame.data, pos + 2)[0]
                    if ptype == 203:
                        byes[frame.channel] = struct.unpack_from("!I", frame.data, pos + 4)[0]
                    pos += 4 * (words + 1)
        self.assertEqual(byes, {1: c.rtp(0)[0].ssrc, 3: c.rtp(2)[0].ssrc}, "RTCP BYE on both tracks")
        response = await c.request("PLAY", url)
        self.assertEqual(response.code, 457, "no Range at the end: nothing left to play")
        response = await c.request("PLAY", url, ("Range", "npt=0-1"))
        self.assertEqual((response.code, response.headers.get("Range")), (200, "npt=0.000-1.000"))

    async def test_reads_are_off_the_reactor_and_shared(self) -> None:
        fresh = Recording(self.recording.index)  # an empty GOP cache
        self.addCleanup(fresh.close)
        d = self.factory.read_gop(fresh, 5)
        self.assertFalse(d.called, "the read runs in a worker thread")
        gop = await d
        self.assertEqual((gop.index, len(gop.pictures), gop.first_frame), (5, FPS, 5 * FPS))
        self.assertTrue(gop.pictures[0].keyframe)
        self.assertEqual({p.keyframe for p in gop.pictures[1:]}, {False})
        self.assertTrue(self.factory.read_gop(fresh, 5).called, "then it comes from the shared cache")
        self.assertEqual(fresh.reads, 1)
        # Every camera's recording of the same length is this one file: a day of 5-minute files
        # of another camera (72H) plays the same object.
        state = CameraState.for_device("81100000009", "k")
        other = RtspCamera("81100000009", self.tokens, media=default_library(),
                           recording_duration=state_recordings(state))
        names = [f.file_name for f in state.recordings(0)]
        self.assertEqual(len(names), 288)
        for name in (names[0], names[-1]):
            target, _ = parse_url(f"rtsp://h/realplay?devid=81100000009&channelno=0&filename={name}")
            self.assertIs(await other.recording(target), self.recording)


class OneFile(MediaLibrary):
    """A media library whose recording is a given :class:`Recording`."""

    def __init__(self, recording: Recording) -> None:
        super().__init__()
        self.file = recording

    def recording_async(self, seconds: int = 300, audio: bool = True) -> defer.Deferred[Recording]:
        return defer.succeed(self.file)


class RecordingPlayerClockTests(TestCase):
    """The player on a fake clock with reads we complete by hand: pacing, late reads, stalls."""

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        d: defer.Deferred[Any] = default_library().recording_async()
        return d.addCallback(self._ready)

    def _ready(self, shared: Recording) -> None:
        self.shared = shared
        self.recording = Recording(shared.index)  # the same file with an empty GOP cache
        self.addCleanup(self.recording.close)
        self.clock = task.Clock()
        self.tokens = OneTimeTokens(clock=self.clock.seconds)
        self.camera = RtspCamera(DEV, self.tokens, media=OneFile(self.recording), audio=False)
        self.factory = RtspCameraFactory(self.camera, reactor=self.clock)
        self.reads: dict[int, defer.Deferred[Gop]] = {}

        def read_gop(recording: Recording, gop: int) -> defer.Deferred[Gop]:
            self.assertNotIn(gop, self.reads, "each GOP is read once")
            d: defer.Deferred[Gop] = defer.Deferred()
            self.reads[gop] = d
            return d

        self.factory.read_gop = read_gop  # type: ignore[method-assign]
        self.proto = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.parser = RtspParser(max_body=1 << 20)
        self.cseq = 0
        self.url = (f"rtsp://10.0.0.1:554/realplay?devid={DEV}&channelno=0&filename={RECORDING}&hashtoken="
                    + self.tokens.issue("playback", DEV, 0, RECORDING))

    def tearDown(self) -> None:
        self.proto.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def request(self, method: str, *headers: str) -> None:
        self.cseq += 1
        session = f"Session: {next(iter(self.camera.sessions))}\r\n" if self.camera.sessions else ""
        extra = "".join(h + "\r\n" for h in headers)
        self.proto.dataReceived(f"{method} {self.url} RTSP/1.0\r\nCSeq: {self.cseq}\r\n{extra}{session}\r\n"
                                .encode())

    def pictures(self) -> list[rtp.RtpPacket]:
        """First packets of the pictures sent since the last call."""
        events = self.parser.feed(self.transport.value())
        self.transport.clear()
        packets = [rtp.parse_rtp(e.data) for e in events if isinstance(e, InterleavedFrame) and e.channel == 0]
        return [p for i, p in enumerate(packets) if i == 0 or packets[i - 1].marker]

    def deliver(self, gop: int) -> None:
        self.reads[gop].callback(self.shared.read_gop(gop))

    def test_late_reads_hold_the_timeline_and_stalls_resume_at_an_idr(self) -> None:
        self.request("DESCRIBE")
        self.request("SETUP", "Transport: RTP/AVP/TCP;interleaved=0-1")
        self.request("PLAY", "Range: npt=10-")
        self.pictures()
        self.assertEqual(list(self.reads), [10])
        self.clock.advance(0.5)  # a slow disk: nothing to send, nothing skipped
        self.assertEqual(self.pictures(), [])
        self.deliver(10)
        first = self.pictures()
        self.assertEqual(len(first), 1)
        self.assertEqual(rtp.nal_type(first[0].payload), rtp.NAL_SPS)  # the IDR at 10 s, at once
        self.assertEqual(list(self.reads), [10, 11], "the next GOP is read ahead")
        for _ in range(24):
            self.clock.advance(0.04)
        sent = self.pictures()
        self.assertEqual(len(sent), 24)
        self.assertEqual({b.timestamp - a.timestamp for a, b in zip(first + sent, sent, strict=False)}, {3600})
        self.clock.advance(0.3)  # GOP 11 is due but not read yet: wait, do not skip
        self.assertEqual(self.pictures(), [])
        self.deliver(11)
        resumed = self.pictures()
        self.assertEqual((len(resumed), rtp.nal_type(resumed[0].payload)), (1, rtp.NAL_SPS))
        self.assertEqual(resumed[0].timestamp - sent[-1].timestamp, 3600, "RTP time follows the file")
        [session] = self.camera.sessions.values()
        self.assertEqual(session.frames_dropped, 0)
        self.deliver(12)
        for _ in range(12):
            self.clock.advance(0.04)
        self.assertEqual(len(self.pictures()), 12)  # 11.04 .. 11.48 s
        self.clock.advance(0.92)  # the reactor stalled for 23 pictures: drop them, no burst
        self.assertEqual(self.pictures(), [])
        self.assertEqual(session.frames_dropped, 23)  # 11.52 .. 12.40 s; 12.40 s is not an IDR either
        for _ in range(15):
            self.clock.advance(0.04)
        self.assertEqual(self.pictures(), [], "dropping on to the next IDR")
        self.deliver(13)
        again = self.pictures()
        self.assertEqual(rtp.nal_type(again[0].payload), rtp.NAL_SPS, "resumed at the IDR of 13 s")
        self.request("PAUSE")
        self.assertEqual(session.resume_frame, 13 * 25 + 1)


class RecordingLibraryTests(TestCase):
    async def test_concurrent_requests_share_one_worker(self) -> None:
        """A burst of playback DESCRIBEs while the file is made uses one thread, not the pool."""
        calls = []

        class Slow(MediaLibrary):
            def recording(self, seconds: int = 300, audio: bool = True) -> Any:
                calls.append((seconds, audio))
                time.sleep(0.2)
                return "the file"

        library = Slow()
        results = await defer.gatherResults([library.recording_async() for _ in range(5)])
        self.assertEqual((results, calls), (["the file"] * 5, [(300, True)]))


# ---------------------------------------------------------------------- the pure parts


class H264SyntaxTests(TestCase):
    def test_exp_golomb_round_trip(self) -> None:
        w = h264.BitWriter()
        values = [0, 1, 2, 7, 255, 3600, 1 << 20]
        for v in values:
            w.ue(v)
            w.se(-v)
            w.se(v)
        r = h264.BitReader(w.rbsp())
        self.assertEqual([(r.ue(), r.se(), r.se()) for _ in values], [(v, -v, v) for v in values])

    def test_escape(self) -> None:
        raw = b"\x00\x00\x00\x00\x01\x00\x00\x02\x00\x00\x03\xff"
        escaped = h264.escape(raw)
        self.assertNotIn(b"\x00\x00\x00", escaped)
        self.assertNotIn(b"\x00\x00\x01", escaped)
        self.assertEqual(h264.unescape(escaped), raw)

    def test_sps_of_the_loops(self) -> None:
        for loop in (default_library().main(), default_library().sub()):
            sps = h264.parse_sps(loop.sps)
            self.assertEqual((sps.width, sps.height), (loop.width, loop.height))
            self.assertEqual(sps.profile_idc, 66)
            self.assertFalse(h264.parse_pps(loop.pps).cabac)

    def test_skip_slices_repeat_the_picture(self) -> None:
        if av is None:
            raise SkipTest("PyAV (pip install av) is not installed")
        loop = default_library().sub()
        sps, pps = h264.parse_sps(loop.sps), h264.parse_pps(loop.pps)
        codec = av.CodecContext.create("h264", "r")
        stream = [loop.annexb(0)] + [b"\x00\x00\x00\x01" + h264.skip_slice(sps, pps, k, 2 * k) for k in range(1, 40)]
        frames = [f for data in stream for f in codec.decode(av.Packet(data))] + list(codec.decode(None))
        self.assertEqual(len(frames), 40)  # frame_num wraps (MaxFrameNum 16 here) without complaint
        self.assertEqual(len({hashlib.md5(f.to_ndarray().tobytes()).digest() for f in frames}), 1)
        self.assertLess(len(h264.skip_slice(sps, pps, 1, 2)), 16)

    def test_cabac_is_refused(self) -> None:
        loop = default_library().sub()
        sps = h264.parse_sps(loop.sps)
        pps = h264.parse_pps(loop.pps)
        import attrs

        with self.assertRaises(h264.H264Error):
            h264.skip_slice(sps, attrs.evolve(pps, cabac=True), 1)


class GeneratedFileTests(TestCase):
    """A small generated recording, read back by FFmpeg (PyAV and ffprobe) and by our index."""

    def setUp(self) -> None:
        if av is None:
            raise SkipTest("PyAV (pip install av) is not installed")
        self.dir = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, self.dir, True)

    def test_index_matches_ffmpeg(self) -> None:
        params = RecordingParams(320, 240, fps=10, seconds=4, audio=True)
        path = write_generated_recording(params, os.path.join(self.dir, params.file_name))
        index = index_recording(path)
        with av.open(str(path)) as container:
            self.assertEqual(container.format.name, "mpegts")
            video = [p for p in container.demux(container.streams.video[0]) if p.size]
        with av.open(str(path)) as container:
            audio = [p for p in container.demux(container.streams.audio[0]) if p.size]
        with av.open(str(path)) as container:
            decoded = sum(1 for _ in container.decode(video=0))
        self.assertEqual(decoded, 40)
        self.assertEqual((index.frames, index.gops, index.width, index.height, index.fps), (40, 4, 320, 240, 10.0))
        self.assertEqual(list(index.keys), [0, 10, 20, 30])
        self.assertEqual([p.is_keyframe for p in video], [i % 10 == 0 for i in range(40)])
        self.assertEqual([int(p.pts) for p in video], list(index.v_pts))
        self.assertEqual([p.pos for p in video], list(index.v_start))  # where FFmpeg found each PES
        self.assertEqual(len(audio), len(index.a_pts))
        self.assertEqual([int(p.pts) for p in audio], list(index.a_pts))
        self.assertEqual(index.duration, 4.0)
        self.assertEqual((index.sample_rate, index.channels, index.audio_config), (8000, 1, b"\x15\x88"))
        # Reading every GOP back gives every picture and every AAC frame exactly once.
        recording = Recording(index)
        self.addCleanup(recording.close)
        gops = [recording.read_gop(g) for g in range(index.gops)]
        self.assertEqual([p.frame for g in gops for p in g.pictures], list(range(40)))
        self.assertEqual([u.frame for g in gops for u in g.audio], list(range(len(audio))))
        adts = bytes(audio[gops[1].audio[0].frame])
        self.assertEqual(rtp.parse_aac_hbr(gops[1].audio[0].payload), [adts[7 if adts[1] & 1 else 9:]])
        self.assertEqual(index.seek(2.5), 20)
        self.assertEqual(index.seek(0.0), 0)
        self.assertEqual(index.frame_at(2.5), 25)

    def test_without_audio(self) -> None:
        params = RecordingParams(320, 240, fps=5, seconds=2, audio=False)
        index = index_recording(write_generated_recording(params, os.path.join(self.dir, params.file_name)))
        self.assertFalse(index.has_audio)
        self.assertEqual(index.gop_audio(0), (0, 0))
        self.assertEqual(index.frames, 10)

    def test_ffprobe_reads_it(self) -> Any:
        if FFPROBE is None:
            raise SkipTest(NO_FFMPEG)
        params = RecordingParams(320, 240, fps=10, seconds=2, audio=True)
        path = write_generated_recording(params, os.path.join(self.dir, params.file_name))

        async def probe() -> None:
            assert FFPROBE is not None
            result = await run(FFPROBE, ["-v", "error", "-show_entries", "stream=codec_name,profile",
                                         "-of", "json", str(path)])
            self.assertEqual(result.code, 0, result.err)
            self.assertEqual(result.err, "")
            self.assertEqual(sorted((s["codec_name"], s["profile"]) for s in json.loads(result.out)["streams"]),
                             [("aac", "LC"), ("h264", "Constrained Baseline")])

        return defer.Deferred.fromCoroutine(probe())


class RtpAacAndByeTests(TestCase):
    def test_aac_hbr_round_trip(self) -> None:
        payload = rtp.aac_hbr_payload(b"\x21\x10" * 100)
        self.assertEqual(payload[:4], struct.pack("!HH", 16, 200 << 3))
        self.assertEqual(rtp.parse_aac_hbr(payload), [b"\x21\x10" * 100])
        with self.assertRaises(rtp.RtpError):
            rtp.aac_hbr_payload(b"\x00" * 8192)

    def test_bye_compound(self) -> None:
        packet = rtp.rtcp_bye(0x1234, 0.0, 99, 10, 1000, "cam@globaleye", "end of recording")
        types = []
        pos = 0
        while pos < len(packet):
            types.append(packet[pos + 1])
            pos += 4 * (struct.unpack_from("!H", packet, pos + 2)[0] + 1)
        self.assertEqual((types, pos), ([200, 202, 203], len(packet)))  # SR first, BYE last, lengths exact
        self.assertTrue(rtp.looks_like_rtcp(packet))

    def test_demuxer_drops_a_pes_it_saw_only_the_end_of(self) -> None:
        demux = mpegts.TsDemuxer({0x100: mpegts.STREAM_TYPE_H264})
        continuation = bytes([0x47, 0x01, 0x00, 0x10]) + b"\xaa" * 184
        pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + bytes([0x21, 0, 1, 0, 1]) + b"\x00\x00\x00\x01\x09\xf0"
        start = bytes([0x47, 0x41, 0x00, 0x11]) + pes + b"\xff" * (184 - len(pes))
        found = demux.feed(continuation + start, 0) + demux.flush()
        self.assertEqual([(p.start, p.end, p.pts) for p in found], [(188, 376, 0)])
        self.assertIsInstance(found[0], mpegts.Pes)
