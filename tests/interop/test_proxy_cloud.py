"""Cloud recordings through the RTSP proxy (``/cloud/<DevID>/<ch>/<start>``), ffmpeg/ffprobe as players.

Three consecutive 2-second TS recordings (the simulator's generator, H.264 10 fps, an
IDR every second) are stored in a :class:`~globaleye.s3.memory.MemoryBackend` as the
camera would name them (§7.1.1); the platform runs its ``rtsp`` role with a fake cloud
index in place of the application's (which decides who sees which camera).  Players:
the Debian ffmpeg tools over RTSP/TCP with the account's Digest credentials.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.proxy.cloud import CloudFile, CloudPlayback, ObjectCache
from globaleye.s3.backend import RECORD_BUCKET
from globaleye.s3.memory import MemoryBackend
from tests.util import (
    FFMPEG,
    FFPROBE,
    PROXY_DEV,
    PROXY_MOBILE,
    PROXY_PASSWORD,
    proxy_config,
    run,
    until,
)

FPS = 10
SECONDS = 2
FILES = 3
START = datetime.datetime(2026, 12, 2, 10, 0, 0)
STRANGER, STRANGER_PASSWORD = "13300000099", "secret-pw-9"


class FakeCloudIndex:
    """The application's cloud index as the proxy sees it: PROXY_MOBILE owns PROXY_DEV, nobody else."""

    def __init__(self, files: list[CloudFile]) -> None:
        self.files = files
        self.asked: list[tuple[str, str]] = []

    async def cloud_files(self, account: str, dev_id: str, channel_no: int, start: datetime.datetime,
                          end: datetime.datetime) -> Sequence[CloudFile] | None:
        self.asked.append((account, dev_id))
        if account != PROXY_MOBILE or dev_id != PROXY_DEV:
            return None
        return [f for f in self.files if f.start < end
                and f.start + datetime.timedelta(seconds=f.duration) > start and channel_no == 0]


def _recording(directory: str) -> Path:
    from globaleye.sim.media.recording import RecordingParams, write_generated_recording

    params = RecordingParams(width=320, height=240, fps=FPS, seconds=SECONDS, audio=True)
    return write_generated_recording(params, Path(directory) / params.file_name)


class ProxyCloudTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None or FFMPEG is None:
            raise SkipTest("ffprobe/ffmpeg not installed (apt-get install -y ffmpeg)")
        try:
            import av  # noqa: F401
        except ImportError:
            raise SkipTest("the simulator's media extra (PyAV) writes the recordings") from None
        from globaleye.platform.config import parse_config
        from globaleye.platform.tap import PlatformService
        from globaleye.store import Account
        from globaleye.store.sqlite import SQLiteStore

        work = tempfile.mkdtemp(prefix="cloudplay-")
        self.addCleanup(lambda: __import__("shutil").rmtree(work, ignore_errors=True))
        path = await deferToThread(_recording, work)
        data = path.read_bytes()
        self.backend = MemoryBackend(reactor.seconds)
        await self.backend.create_bucket(RECORD_BUCKET)
        files = []
        for i in range(FILES):
            start = START + datetime.timedelta(seconds=SECONDS * i)
            key = f"{PROXY_DEV}_0_{start:%Y%m%d%H%M%S}.ts"
            await self.backend.put_bytes(RECORD_BUCKET, key, data)
            files.append(CloudFile(RECORD_BUCKET, key, start, float(SECONDS)))
        self.index = FakeCloudIndex(files)
        self.cache = ObjectCache(self.backend, Path(work) / "cache", max_bytes=len(data) * 2)
        self.platform = PlatformService(parse_config(proxy_config()), SQLiteStore(":memory:"), reactor)
        self.platform.startService()
        self.addCleanup(self.platform.stopService)
        store, accounts = self.platform.store, self.platform.accounts
        now = reactor.seconds()
        for mobile, password in ((PROXY_MOBILE, PROXY_PASSWORD), (STRANGER, STRANGER_PASSWORD)):
            await store.create_account(Account(mobile, await accounts.hash_password(password), now, now))
            outcome = await accounts.login(mobile, password, "1.0", "127.0.0.1:1")  # backfills the Digest HA1
            assert outcome.session is not None
        self.factory = self.platform.rtsp_proxy.factory
        self.factory.cloud = CloudPlayback(self.index, self.cache)
        self.port = self.platform.port_of("rtsp")

    def url(self, path: str = f"/cloud/{PROXY_DEV}/0/{START:%Y%m%d%H%M%S}", user: str = PROXY_MOBILE,
            password: str = PROXY_PASSWORD) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}{path}"

    async def frames(self, url: str, transport: str = "tcp") -> tuple[list[float], str]:
        """Every decoded picture's time (ffprobe -show_frames, to the end of the stream: RTCP BYE)."""
        times, audio, err = await self.all_frames(url, transport)
        return times, err

    async def all_frames(self, url: str, transport: str = "tcp") -> tuple[list[float], list[float], str]:
        """The decoded pictures' and AAC frames' times."""
        assert FFPROBE is not None
        result = await run(FFPROBE, ["-v", "error", "-rtsp_transport", transport,
                                     "-show_frames", "-show_entries", "frame=media_type,pts_time,key_frame",
                                     "-of", "json", url], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        frames = json.loads(result.out)["frames"]
        video = [f for f in frames if f["media_type"] == "video"]
        audio = [float(f["pts_time"]) for f in frames if f["media_type"] == "audio" and "pts_time" in f]
        # ffmpeg's RTSP demuxer gives the very first access unit no timestamp (also from a camera):
        # it counts as a picture, and every later one must have its time.
        self.assertTrue(video and video[0].get("key_frame") == 1, "the stream starts with an IDR")
        times = [float(f["pts_time"]) for f in video[1:]]
        times.insert(0, times[0] - 1 / FPS if times else 0.0)
        return times, audio, result.err

    async def test_plays_across_file_boundaries_without_a_gap(self) -> None:
        """ffprobe decodes all three files as one stream: every picture, evenly spaced, no errors; the AAC too."""
        times, audio, err = await self.all_frames(self.url())
        self.assertEqual(err.strip(), "", "no decoder warnings")
        self.assertEqual(len(times), FILES * SECONDS * FPS, "every picture of every file")
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        self.assertGreater(min(steps), 0, "timestamps strictly increase")
        self.assertLessEqual(max(steps), 2 / FPS, f"no jump over two frame intervals: {max(steps)}")
        self.assertLess(abs(times[-1] - times[0] + 1 / FPS - FILES * SECONDS), 0.02)
        self.assertEqual(self.cache.fetches, FILES, "each object fetched once into the cache")
        aac = 1024 / 8000  # one AAC-LC frame at the generator's 8 kHz
        self.assertLess(abs(len(audio) * aac - FILES * SECONDS), 2 * aac * FILES, "the sound of every file")
        steps = [b - a for a, b in zip(audio, audio[1:], strict=False)]
        self.assertGreater(min(steps), 0)
        self.assertLessEqual(max(steps), 2 * aac, "no hole in the sound at the boundaries")
        await until(lambda: not self.factory.sessions)
        await until(lambda: self.factory.cloud.open_files == 0)

    async def test_viewers_of_the_same_files_share_them(self) -> None:
        """Two players at once: each object fetched and indexed once; all closed when both are done."""
        from twisted.internet.defer import Deferred, gatherResults

        results = await gatherResults([Deferred.fromCoroutine(self.frames(self.url())) for _ in range(2)])
        for times, err in results:
            self.assertEqual((len(times), err.strip()), (FILES * SECONDS * FPS, ""))
        self.assertEqual((self.cache.fetches, self.factory.cloud.indexed), (FILES, FILES))
        await until(lambda: not self.factory.sessions and self.factory.cloud.open_files == 0)

    async def test_over_udp(self) -> None:
        times, err = await self.frames(self.url(), "udp")
        self.assertEqual(err.strip(), "")
        self.assertEqual(len(times), FILES * SECONDS * FPS)
        self.assertLessEqual(max(b - a for a, b in zip(times, times[1:], strict=False)), 2 / FPS)

    async def test_describe_says_the_programme_length(self) -> None:
        assert FFPROBE is not None
        result = await run(FFPROBE, ["-v", "error", "-rtsp_transport", "tcp", "-show_entries",
                                     "format=duration:stream=codec_name,width,height", "-of", "json",
                                     self.url(f"/cloud/{PROXY_DEV}/0/{START:%Y%m%d%H%M%S}?end=20261202100005")])
        self.assertEqual(result.code, 0, result.err)
        facts = json.loads(result.out)
        self.assertEqual((facts["streams"][0]["codec_name"], facts["streams"][0]["width"]), ("h264", 320))
        self.assertLess(abs(float(facts["format"]["duration"]) - 5.0), 0.01, "the end cuts the last file")

    async def test_an_end_time_cuts_the_last_file(self) -> None:
        """?end= 5 s after the start: the third file is played to 5.0 s, then BYE ends the stream."""
        times, err = await self.frames(self.url(f"/cloud/{PROXY_DEV}/0/{START:%Y%m%d%H%M%S}?end=20261202100005"))
        self.assertEqual(err.strip(), "")
        self.assertEqual(len(times), 5 * FPS)

    async def test_range_seek_into_the_second_file(self) -> None:
        """ffmpeg's -ss on an RTSP input PAUSEs and PLAYs with Range: npt=3.000-, inside file 2 (2-4 s).

        ``-noaccurate_seek``: ffmpeg keeps what the server sends, so a server that ignored the
        Range would give all 60 pictures rather than the 30 from the IDR at 3 s.
        """
        assert FFMPEG is not None
        result = await run(FFMPEG, ["-v", "error", "-rtsp_transport", "tcp", "-noaccurate_seek", "-ss", "3",
                                    "-i", self.url(), "-f", "framecrc", "-"], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.err.strip(), "")
        pictures = [line for line in result.out.splitlines() if line.startswith("0,")]
        self.assertEqual(len(pictures), (FILES * SECONDS - 3) * FPS)

    async def test_a_stranger_and_an_unknown_camera_get_the_same_404(self) -> None:
        assert FFPROBE is not None
        stranger = await run(FFPROBE, ["-v", "error", "-rtsp_transport", "tcp",
                                       self.url(user=STRANGER, password=STRANGER_PASSWORD)])
        unknown = await run(FFPROBE, ["-v", "error", "-rtsp_transport", "tcp",
                                      self.url(f"/cloud/81399999999/0/{START:%Y%m%d%H%M%S}")])
        for result in (stranger, unknown):
            self.assertNotEqual(result.code, 0)
            self.assertIn("404", result.err)
        def answer(err: str) -> list[str]:
            return [line.split("]", 1)[-1] for line in err.splitlines() if "DESCRIBE failed" in line]

        self.assertEqual(answer(stranger.err), answer(unknown.err), "the same answer")
        self.assertIn((STRANGER, PROXY_DEV), self.index.asked, "the index decided, not the proxy")
        self.assertEqual(self.cache.fetches, 0, "nothing read for a refused viewer")

    async def test_wrong_password_401(self) -> None:
        assert FFPROBE is not None
        result = await run(FFPROBE, ["-v", "error", "-rtsp_transport", "tcp", self.url(password="nope")])
        self.assertIn("401", result.err)
        self.assertEqual(self.index.asked, [])

    async def test_pause_and_scale(self) -> None:
        """PAUSE answers where it stopped; PLAY with Scale: 2 plays the rest in half the time."""
        from tests.interop.test_proxy import RawViewer

        viewer = RawViewer(self.port, f"/cloud/{PROXY_DEV}/0/{START:%Y%m%d%H%M%S}")
        await viewer.start()
        self.addCleanup(viewer.close)
        await until(lambda: viewer.frames > 10)
        paused = await viewer.request("PAUSE", viewer.url, [("Session", viewer.session)])
        self.assertEqual(paused.code, 200)
        at = float((paused.headers.get("Range") or "").split("=")[1].split("-")[0])
        self.assertGreater(at, 0.0)
        self.assertLess(at, FILES * SECONDS)
        began = reactor.seconds()
        played = await viewer.request("PLAY", viewer.url, [("Session", viewer.session), ("Scale", "2")])
        self.assertEqual(played.code, 200)
        self.assertEqual(played.headers.get("Scale"), "2")
        session = self.factory.sessions[viewer.session]
        await until(lambda: session.player is None, timeout=10)
        took = reactor.seconds() - began
        self.assertLess(abs(took - (FILES * SECONDS - at) / 2), 0.5, f"{took:.2f} s from {at:.3f} at Scale 2")
        bad = await viewer.request("PLAY", viewer.url, [("Session", viewer.session), ("Scale", "-1")])
        self.assertEqual(bad.code, 456)


    async def test_gstreamer_plays_the_whole_programme(self) -> None:
        """Another player: GStreamer's rtspsrc (Digest, TCP) decodes every picture and stops at the BYE (EOS)."""
        import re
        import shutil

        launch, inspect = shutil.which("gst-launch-1.0"), shutil.which("gst-inspect-1.0")
        if launch is None or inspect is None or any(
                os.system(f"{inspect} --exists {e} >/dev/null 2>&1") != 0
                for e in ("rtspsrc", "rtph264depay", "h264parse", "avdec_h264")):
            raise SkipTest("GStreamer not installed (apt-get install -y gstreamer1.0-tools "
                           "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav)")
        url = f"rtsp://127.0.0.1:{self.port}/cloud/{PROXY_DEV}/0/{START:%Y%m%d%H%M%S}"
        result = await run(launch, [
            "-v", "rtspsrc", "name=src", f"location={url}", f"user-id={PROXY_MOBILE}", f"user-pw={PROXY_PASSWORD}",
            "protocols=tcp", "latency=200", "src.", "!", "application/x-rtp,media=video", "!", "rtph264depay", "!",
            "h264parse", "!", "avdec_h264", "!", "identity", "silent=false", "!", "fakesink", "sync=false",
            "src.", "!", "application/x-rtp,media=audio", "!", "fakesink", "sync=false"], timeout=40)
        self.assertEqual(result.code, 0, result.err[-2000:])
        self.assertIn("Got EOS", result.out, "the stream ended by itself (RTCP BYE)")
        self.assertRegex(result.out, r"video/x-raw.*width=\(int\)320")
        decoded = len(re.findall(r"identity\d+:.*chain", result.out))
        self.assertEqual(decoded, FILES * SECONDS * FPS, "every picture of the three files")


class SequencePlayerClockTests(TestCase):
    """The shared player on a driven clock: the file boundary in RTP terms, a late next file, BYE."""

    async def setUp(self) -> None:  # type: ignore[override]
        try:
            import av  # noqa: F401
        except ImportError:
            raise SkipTest("the simulator's media extra (PyAV) writes the recordings") from None
        from globaleye.media.tsfile import Recording

        work = tempfile.mkdtemp(prefix="cloudplay-")
        self.addCleanup(lambda: __import__("shutil").rmtree(work, ignore_errors=True))
        path = await deferToThread(_recording, work)
        self.recordings = [Recording.open(path) for _ in range(FILES)]
        for r in self.recordings:
            self.addCleanup(r.close)

    def test_boundary_is_one_picture_and_a_late_file_holds_the_timeline(self) -> None:
        from twisted.internet import defer
        from twisted.internet.task import Clock

        from globaleye.media import rtp
        from globaleye.media.rtsp.sequence import Position, RtpCounters, RtpTracks, SequencePlayer

        clock = Clock()
        sent: list[tuple[float, Any]] = []
        rtcp: list[bytes] = []
        ended: list[tuple[Position, str]] = []

        class Out:
            def send_rtp(self, track: int, data: bytes) -> None:
                sent.append((clock.seconds(), rtp.parse_rtp(data)))

            def send_rtcp(self, track: int, data: bytes) -> None:
                rtcp.append(data)

            def blocked(self) -> bool:
                return False

        opening: dict[int, defer.Deferred[Any]] = {}

        def open_segment(i: int) -> defer.Deferred[Any]:
            opening[i] = defer.Deferred()
            return opening[i]

        player = SequencePlayer(clock, RtpTracks(Out(), {0: RtpCounters()}, "test"), video=0, audio=None,
                                segments=FILES, first=self.recordings[0], start=Position(0, 0), scale=1.0,
                                open_segment=open_segment, read_gop=lambda r, g: defer.succeed(r.read_gop(g)),
                                on_end=lambda p, why: ended.append((p, why)))
        player.start()
        self.assertIn(1, opening, "the next file is opened as soon as the first starts")
        for _ in range(int((SECONDS + 0.5) * FPS)):  # file 2 is not there yet: nothing more goes out
            clock.advance(1 / FPS)
        per_file = SECONDS * FPS
        pictures = sorted({p.timestamp for _t, p in sent})
        self.assertEqual(len(pictures), per_file)
        opening[1].callback(self.recordings[1])  # 0.5 s late
        opening_time = clock.seconds()
        clock.advance(0)
        self.assertEqual(sent[-1][0], opening_time, "the held picture goes out at once")
        opening_count = len({p.timestamp for _t, p in sent})
        self.assertEqual(opening_count, per_file + 1, "one picture, not a burst of the 0.5 s missed")
        for _ in range(int(SECONDS * FPS * 3)):
            clock.advance(1 / FPS)
            if 2 in opening and not opening[2].called:
                opening[2].callback(self.recordings[2])
        stamps = sorted({p.timestamp for _t, p in sent})
        self.assertEqual(len(stamps), FILES * per_file)
        self.assertEqual({b - a for a, b in zip(stamps, stamps[1:], strict=False)}, {rtp.H264_CLOCK // FPS},
                         "every step one picture, across both boundaries")
        seqs = [p.sequence for _t, p in sent]
        self.assertEqual(seqs, [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))], "no gap in sequence numbers")
        self.assertEqual(ended, [(Position(FILES - 1, per_file), "end")])
        self.assertEqual(rtcp[-1][1], 200, "a last SR in front of the BYE")
        self.assertIn(bytes([0x81, 203]), rtcp[-1])
