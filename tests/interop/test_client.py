"""``globaleye-client`` as a real process against a real platform: SOAP login, §15 paths, PyAV.

The CLI runs as ``python -m globaleye.client`` (the console script's entry point),
so its SOAP client, path selection, decoding and muxing are what a user gets; ffprobe
and ffmpeg then read the files it wrote.  The recorder's lip sync (sender reports,
arrival time) is also tested in process with made-up sender reports, which no
simulated camera sends.
"""

from __future__ import annotations

import fractions
import json
import os
import random
import re
import sys
from typing import Any

from twisted.trial.unittest import SkipTest, TestCase

from globaleye.client.media import (
    AudioSpec,
    Picture,
    Recorder,
    StreamClock,
    g711_decode,
    sender_report,
)
from globaleye.media import rtp
from globaleye.sim.media.pattern import tone_pcma
from tests.util import FFMPEG, FFPROBE, ROOT, ProxyHarness, closed_port, run
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_PASSWORD as PASSWORD

LOUD = -25.0  # dB RMS: the simulated camera's tone is about -15 dB on its beeps, -35 dB between


async def probe(path: str) -> dict[str, Any]:
    """ffprobe's streams (codec, size, sample rate, start, duration) and format of a file."""
    assert FFPROBE is not None
    result = await run(FFPROBE, ["-v", "error", "-show_entries",
                                 "stream=codec_type,codec_name,width,height,sample_rate,channels,start_time,duration"
                                 ":format=format_name,duration", "-of", "json", path])
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


async def audio_levels(path: str) -> list[tuple[float, float]]:
    """(time in the file, RMS dB) of every 10 ms of the decoded audio, by ffmpeg (``-copyts``: file times)."""
    assert FFMPEG is not None
    result = await run(FFMPEG, ["-v", "error", "-copyts", "-i", path, "-map", "0:a", "-af",
                                "asetnsamples=n=80:p=0,astats=metadata=1:reset=1,"
                                "ametadata=mode=print:key=lavfi.astats.Overall.RMS_level:file=-", "-f", "null", "-"])
    assert result.code == 0, result.err
    times = [float(t) for t in re.findall(r"pts_time:(-?[0-9.]+)", result.out)]
    levels = [float(v) if v not in ("-inf", "inf", "nan") else -200.0
              for v in re.findall(r"RMS_level=(\S+)", result.out)]
    return list(zip(times, levels, strict=True))


async def mean_volume(path: str) -> float:
    assert FFMPEG is not None
    result = await run(FFMPEG, ["-hide_banner", "-i", path, "-map", "0:a", "-af", "volumedetect", "-f", "null", "-"])
    assert result.code == 0, result.err
    found = re.search(r"mean_volume: (-?[0-9.]+) dB", result.err)
    assert found is not None, result.err
    return float(found.group(1))


def beep_offset(levels: list[tuple[float, float]], video_start: float) -> float:
    """How far the camera's beeps sit from where the pictures say they should, in seconds.

    The simulated camera's tone beeps during the first half of every second of its loop
    and is 20 dB quieter in the second half; audio and video loops start together, and
    every IDR (a recording starts at one) is at a whole second of the loop.  So, with
    perfect lip sync, the sound is loud exactly when (t - first picture) mod 1 < 0.5.
    The offset (-0.5..0.5 s, 5 ms steps) that best explains the loud/quiet pattern is
    the sync error.
    """
    def agreement(offset: float) -> int:
        return sum(((t - video_start - offset) % 1.0 < 0.5) == (level > LOUD) for t, level in levels)

    return max((k / 200 for k in range(-100, 100)), key=lambda offset: (agreement(offset), -abs(offset)))


class ClientCliTests(TestCase):
    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self)
        await self.h.start(login=False)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    async def cli(self, *args: str, timeout: float = 40) -> Any:
        mcu = f"http://127.0.0.1:{self.h.platform.port_of('http')}/soap/mcu"
        return await run(sys.executable, ["-m", "globaleye.client", "--mcu", mcu, "--account", MOBILE,
                                          "--password", PASSWORD, *args], timeout=timeout)

    async def ffprobe(self, path: str) -> dict[str, Any]:
        return await probe(path)

    async def test_list_play_snapshot(self) -> None:
        result = await self.cli("list")
        self.assertEqual(result.code, 0, result.err)
        self.assertIn(DEV, result.out)
        self.assertIn("online", result.out)
        result = await self.cli("play", DEV, "--seconds", "1.5")
        self.assertEqual(result.code, 0, result.err)
        self.assertIn("path: local", result.out)
        self.assertIn("video: h264 1280x720 25.00 fps", result.out)
        self.assertIn("audio: pcma", result.out)
        self.assertIn("first frame:", result.out)
        shot = self.mktemp() + ".jpg"
        result = await self.cli("snapshot", DEV, "-o", shot)
        self.assertEqual(result.code, 0, result.err)
        info = await self.ffprobe(shot)
        self.assertEqual([(s["codec_name"], s["width"], s["height"]) for s in info["streams"]],
                         [("mjpeg", 1280, 720)])

    async def test_record_ts_and_mp4(self) -> None:
        """Video as sent, the camera's G.711 tone as AAC: as long as the video, audible, and in sync."""
        if FFMPEG is None:
            raise SkipTest("ffmpeg not installed (apt-get install -y ffmpeg)")
        for suffix, fmt in ((".ts", "mpegts"), (".mp4", "mov,mp4,m4a,3gp,3g2,mj2")):
            path = self.mktemp() + suffix
            result = await self.cli("record", DEV, "--stream", "2", "-o", path, "--seconds", "2")
            self.assertEqual(result.code, 0, result.err)
            self.assertIn("recording", result.err, "progress line on stderr")
            self.assertIn("audio: AAC 8 kHz mono from pcma", result.out)
            self.assertIn("placed by sender reports", result.out)
            info = await self.ffprobe(path)
            video = [s for s in info["streams"] if s["codec_type"] == "video"]
            audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
            self.assertEqual([(s["codec_name"], s["width"], s["height"]) for s in video], [("h264", 352, 288)])
            self.assertEqual([(s["codec_name"], s["sample_rate"], s["channels"]) for s in audio],
                             [("aac", "8000", 1)])
            self.assertEqual(info["format"]["format_name"], fmt)
            self.assertGreaterEqual(float(info["format"]["duration"]), 1.9)
            video_seconds, audio_seconds = float(video[0]["duration"]), float(audio[0]["duration"])
            self.assertGreaterEqual(video_seconds, 1.9)
            self.assertLess(abs(audio_seconds - video_seconds), 0.5, (suffix, audio_seconds, video_seconds))
            self.assertGreater(await mean_volume(path), -40.0, "the tone, not silence")
            levels = await audio_levels(path)
            self.assertGreater(len(levels), 150)
            offset = beep_offset(levels, float(video[0]["start_time"]))
            self.assertLess(abs(offset), 0.045, f"{suffix}: the beeps are {offset * 1000:+.0f} ms off the pictures")

    async def test_record_without_audio_is_video_only(self) -> None:
        """A camera that sends no sound: the file has the video track only, as before."""
        self.h.camera_rtsp().audio = False
        path = self.mktemp() + ".mp4"
        result = await self.cli("record", DEV, "--stream", "2", "-o", path, "--seconds", "1")
        self.assertEqual(result.code, 0, result.err)
        self.assertIn("audio: none (the camera sends no sound)", result.out)
        info = await self.ffprobe(path)
        self.assertEqual([(s["codec_name"], s["width"], s["height"]) for s in info["streams"]],
                         [("h264", 352, 288)])

    async def test_play_falls_back_to_turn(self) -> None:
        """The client runs the proxy's §15 sequence: local refused → UPnP absent → TURN relay."""
        camera = self.h.cameras[DEV]
        live = self.h.platform.gateway.live[DEV]
        await self.h.relay_ready()
        import attrs
        live.addresses = attrs.evolve(live.addresses, rtsp_local_port=closed_port())
        result = await self.cli("play", DEV, "--seconds", "1")
        self.assertEqual(result.code, 0, result.err)
        self.assertIn("path: turn-udp", result.out)
        self.assertIn("tried local: failed", result.out)
        self.assertIn("tried upnp: failed: the camera reports no such address", result.out)
        del camera


def _h264_pictures(count: int, fps: int = 25) -> list[Picture]:
    """*count* pictures of 64x64 H.264 (an IDR every second), 90 kHz timestamps from 0."""
    import av
    import numpy as np

    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 64, "yuv420p"
    encoder.time_base = fractions.Fraction(1, fps)
    encoder.options = {"g": str(fps), "bf": "0", "tune": "zerolatency", "preset": "ultrafast"}
    packets = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(np.full((96, 64), (i * 5) % 200 + 16, dtype=np.uint8), format="yuv420p")
        frame.pts = i
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return [Picture(i * 90000 // fps, tuple(rtp.split_annexb(bytes(p)))) for i, p in enumerate(packets)]


def _sr(ntp: float, timestamp: int) -> bytes:
    return rtp.rtcp_sender_report(0x1234, ntp - rtp.NTP_EPOCH_OFFSET, timestamp, 0, 0, "test")


class RecorderSyncTests(TestCase):
    """The recorder places the sound with the sender reports, whatever the timestamps or arrival say."""

    timeout = 30

    def setUp(self) -> None:
        if FFPROBE is None or FFMPEG is None:
            raise SkipTest("ffmpeg/ffprobe not installed (apt-get install -y ffmpeg)")

    def record(self, audio_delay: float, with_reports: bool, arrival_delay: float) -> str:
        """2 s of video at 25 fps; the tone begins *audio_delay* s after the first picture (by the SRs).

        The audio's RTP clock starts at a random value, and its packets arrive *arrival_delay*
        s after the pictures they belong with: neither says where the sound belongs.
        """
        pictures = _h264_pictures(50)
        path = self.mktemp() + ".mp4"
        clock = StreamClock()
        rng = random.Random(5)
        audio_base = rng.getrandbits(32)
        if with_reports:
            clock.report(0, 90000, _sr(3_900_000_000.0, 0))
            clock.report(1, 8000, _sr(3_900_000_000.0 + audio_delay, audio_base))
        recorder = Recorder(path, 64, 64, [n for n in pictures[0].nals if rtp.nal_type(n) in (7, 8)], 25,
                            audio=AudioSpec("PCMA", 8000), clock=clock, tracks=(0, 1), label="test")
        tone = tone_pcma(2.0)
        packets = [(k / 8000 + audio_delay,
                    rtp.rtp_header(rtp.PT_PCMA, k // 160, (audio_base + k) & 0xFFFFFFFF, 1, False) + tone[k:k + 160])
                   for k in range(0, len(tone), 160)]
        events: list[tuple[float, int, Picture | bytes]] = [(i / 25, 0, p) for i, p in enumerate(pictures)]
        events += [(at + arrival_delay - audio_delay, 1, data) for at, data in packets]
        for at, _kind, item in sorted(events, key=lambda e: (e[0], e[1])):
            if isinstance(item, Picture):
                recorder.write(item, 100.0 + at)
            else:
                recorder.write_audio(item, 100.0 + at)
        recorder.close()
        assert recorder.audio is not None
        self.placed_by = recorder.audio.placed_by
        return path

    async def first_sound(self, path: str) -> float:
        info = await probe(path)
        video = [s for s in info["streams"] if s["codec_type"] == "video"][0]
        levels = await audio_levels(path)
        start = float(video["start_time"])
        return next(t for t, level in levels if level > LOUD) - start

    async def test_sender_reports_place_the_sound(self) -> None:
        path = self.record(audio_delay=0.3, with_reports=True, arrival_delay=0.0)
        self.assertEqual(self.placed_by, "sender reports")
        self.assertAlmostEqual(await self.first_sound(path), 0.3, delta=0.02)

    async def test_without_reports_arrival_time_places_the_sound(self) -> None:
        path = self.record(audio_delay=0.0, with_reports=False, arrival_delay=0.5)
        self.assertEqual(self.placed_by, "arrival time")
        self.assertAlmostEqual(await self.first_sound(path), 0.5, delta=0.02)

    def test_sender_report_and_g711(self) -> None:
        sr = _sr(3_900_000_000.25, 0xFFFFFFF0)
        self.assertEqual(sender_report(sr), (3_900_000_000.25, 0xFFFFFFF0))
        self.assertIsNone(sender_report(bytes([0x81, 201, 0, 1]) + b"\x00" * 4))  # a receiver report
        clock = StreamClock()
        clock.report(0, 8000, sr)
        self.assertEqual(clock.wallclock(0, 0x10), 3_900_000_000.25 + 32 / 8000, "across the 32-bit wrap")
        samples = [0, 1000, -1000, 20000, -32000]
        decoded = g711_decode(rtp.alaw_encode(samples), "PCMA") * 32768
        for want, got in zip(samples, decoded, strict=True):
            self.assertLess(abs(want - got), max(16, abs(want) / 16))
        ulaw = g711_decode(bytes([0xFF, 0x7F, 0x80, 0x00]), "PCMU") * 32768
        self.assertEqual([round(x) for x in ulaw], [0, 0, 32124, -32124])
