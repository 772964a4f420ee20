"""The camera's G.711, transcoded once per stream to AAC-LC, in the browser's live fMP4 (issue 11):
ffprobe and ffmpeg read the feed's init segment and fragments, Chromium plays both tracks.

The platform's rtsp role and a simulated camera (its live audio: a 1 kHz tone in 1 Hz beeps,
G.711 A-law, with RTCP sender reports) as tests/interop/test_web_live.py sets them up.
"""

from __future__ import annotations

import json
import resource as rusage
import struct
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web import resource

from globaleye.guard.httpsite import LimitedSite
from globaleye.media import aacenc
from globaleye.web.live import LiveVideo
from tests.browser import (
    AUTOPLAY,
    CSP,
    LivePage,
    PageErrors,
    launched,
    missing_browser,
    put_test_page,
)
from tests.util import (
    FFMPEG,
    FFPROBE,
    ProxyHarness,
    StreamReader,
    http_client,
    run,
    top_boxes,
    trafs,
    until,
)
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_OTHER_DEV as OTHER_DEV

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>live</title>
<script type="module" src="/page.js"></script></head>
<body><button id="play">Play</button><video id="v" muted playsinline></video></body></html>
"""

# The click is the user gesture that lets the page unmute (autoplay needs muted) and start an
# AudioContext; the element's sound then goes through an AnalyserNode the test reads.
PAGE_JS = b"""import { playLive } from '/js/player.js';
const video = document.getElementById('v');
window.states = [];
window.levels = [];
document.getElementById('play').addEventListener('click', () => {
  window.player = playLive(video, '/live.mp4', { onState: (s) => window.states.push(s) });
  video.muted = false;
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  context.createMediaElementSource(video).connect(analyser);
  analyser.connect(context.destination);
  const buffer = new Float32Array(analyser.fftSize);
  setInterval(() => {
    analyser.getFloatTimeDomainData(buffer);
    let peak = 0;
    for (const x of buffer) peak = Math.max(peak, Math.abs(x));
    window.levels.push(peak);
  }, 50);
});
"""


def play_with_sound(base: str) -> dict[str, Any]:
    with launched(AUTOPLAY) as browser:
        page = browser.new_page()
        errors = PageErrors(page, ignore=lambda text: False)  # a page of its own: every console error counts
        page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
        page.goto(base + "/")
        aac = page.evaluate("MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.42E01E,mp4a.40.2\"')")
        page.click("#play")
        page.wait_for_timeout(5000)
        out = page.evaluate("(() => { const v = document.getElementById('v');"
                            " return {t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames,"
                            " audioBytes: v.webkitAudioDecodedByteCount, error: v.error && v.error.message,"
                            " muted: v.muted, levels: window.levels, states: window.states}; })()")
        out["aac"] = aac
        out["errors"] = errors
        page.evaluate("window.player.close()")
        return out


class _Feed(TestCase):
    async def serve(self) -> None:
        if aacenc.available() is not None:
            raise SkipTest(f"the [web] extra: {aacenc.available()}")
        self.h = ProxyHarness(self, rtsp_extra="stall_timeout = 2")
        await self.h.start({DEV: {}, OTHER_DEV: {}})
        self.live = LiveVideo(self.h.factory)
        self.assertTrue(self.live.audio)
        self.root = resource.Resource()
        self.root.putChild(b"live.mp4", LivePage(self.live))
        self.port = reactor.listenTCP(0, LimitedSite(self.root, reactor), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"


class WebLiveAudioStreamTests(_Feed):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        if FFMPEG is None or FFPROBE is None:
            raise SkipTest("ffmpeg/ffprobe not installed")
        await self.serve()

    async def test_ffmpeg_decodes_both_tracks(self) -> None:
        """Init segment and 8 s of fragments: ffprobe sees H.264 and AAC-LC 8 kHz mono, ffmpeg
        decodes the sound without an error, and its duration is the video's (±5 %)."""
        response = await http_client().get(self.base + "/live.mp4", unbuffered=True)
        self.assertEqual(response.code, 200)
        [codec] = response.headers.getRawHeaders("x-codec")
        self.assertRegex(codec, r"^avc1\.[0-9A-F]{6},mp4a\.40\.2$")
        reader = StreamReader()
        response.deliverBody(reader)
        await until(lambda: len(top_boxes(bytes(reader.data))) > 2 + 2 * 200, timeout=20)  # 8 s at 25 fps
        [feed] = self.live.feeds.values()
        assert feed.audio is not None
        self.assertEqual(feed.audio.timeline.placed_by, "sender reports", "the hub's last SRs, at once")
        reader.close()
        await reader.done
        boxes = top_boxes(bytes(reader.data))
        end = sum(8 + len(body) for _k, body in boxes)
        path = self.mktemp() + ".mp4"
        with open(path, "wb") as f:
            f.write(bytes(reader.data[:end]))
        assert FFMPEG is not None and FFPROBE is not None
        probe = await run(FFPROBE, ["-v", "error", "-show_entries",
                                    "stream=codec_type,codec_name,profile,sample_rate,channels", "-of", "json", path])
        streams = {s["codec_type"]: s for s in json.loads(probe.out)["streams"]}
        self.assertEqual(streams["video"]["codec_name"], "h264")
        audio = streams["audio"]
        self.assertEqual((audio["codec_name"], audio["profile"], audio["sample_rate"], audio["channels"]),
                         ("aac", "LC", "16000", 1))
        raw = path + ".s16"
        decoded = await run(FFMPEG, ["-v", "error", "-i", path, "-map", "0:a", "-f", "s16le", "-ac", "1", raw])
        self.assertEqual((decoded.code, decoded.err.strip()), (0, ""))
        pcm = Path(raw).read_bytes()
        audio_seconds = len(pcm) / 2 / 16000
        video = await run(FFPROBE, ["-v", "error", "-select_streams", "v", "-count_frames", "-show_entries",
                                    "stream=nb_read_frames", "-of", "json", path])
        video_seconds = int(json.loads(video.out)["streams"][0]["nb_read_frames"]) / 25
        # What the fragments say of the sound: its trafs' start and the sum of their durations.
        runs = [r[2] for r in (trafs(struct.pack("!I4s", 8 + len(body), b"moof") + body)
                               for kind, body in boxes if kind == b"moof") if 2 in r]
        declared = sum(d for _base, entries, _data in runs for d, _s in entries) / 16000
        audio_end = (runs[-1][0] + sum(d for d, _s in runs[-1][1])) / 16000
        print(f"\nlive AAC: {audio_seconds:.2f} s decoded of {declared:.2f} s in the fragments "
              f"(from {runs[0][0] / 16000:.3f} s), beside {video_seconds:.2f} s of video")
        self.assertEqual(runs[0][0] % 1024, 0, "16 kHz AAC frames from position 0")
        self.assertLess(abs(audio_seconds - declared), 0.05 * declared, "the decoded duration is the fragments'")
        self.assertLess(runs[0][0] / 16000, 0.3, "the sound starts with the pictures")
        self.assertLess(video_seconds - audio_end, 0.35, "and trails them by the encoder's frames only")
        samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
        self.assertGreater(max(abs(s) for s in samples[-16000:]), 2000, "the camera's tone, not silence")
        await until(lambda: not self.live.viewers, timeout=5)

    async def test_transcoding_cpu_per_stream(self) -> None:
        """The CPU the AAC transcoding of one camera stream costs (docs/performance.md)."""
        response = await http_client().get(self.base + "/live.mp4", unbuffered=True)
        reader = StreamReader()
        response.deliverBody(reader)
        await until(lambda: bool(self.live.feeds), timeout=10)
        [feed] = self.live.feeds.values()
        assert feed.audio is not None
        timeline = feed.audio.timeline
        spent = [0.0]
        write, fill = timeline.write, timeline.fill

        def timed(f: Any) -> Any:
            def call(*args: Any) -> Any:
                before = rusage.getrusage(rusage.RUSAGE_THREAD).ru_utime + rusage.getrusage(
                    rusage.RUSAGE_THREAD).ru_stime
                try:
                    return f(*args)
                finally:
                    spent[0] += rusage.getrusage(rusage.RUSAGE_THREAD).ru_utime + rusage.getrusage(
                        rusage.RUSAGE_THREAD).ru_stime - before
            return call

        timeline.write, timeline.fill = timed(write), timed(fill)  # type: ignore[method-assign]
        start, frames0 = reactor.seconds(), feed.audio.frames
        await deferLater(reactor, 10.0, lambda: None)
        wall = reactor.seconds() - start
        frames = feed.audio.frames - frames0
        print(f"\nAAC transcoding of one camera stream: {100 * spent[0] / wall:.2f} % of a core "
              f"({frames} AAC frames in {wall:.1f} s)")
        self.assertGreater(frames, 0.9 * wall * 16000 / 1024)
        self.assertLess(spent[0] / wall, 0.2)
        reader.close()
        await reader.done


class WebLiveAudioChromiumTests(_Feed):
    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        if reason := missing_browser():
            raise SkipTest(reason)
        await self.serve()
        put_test_page(self.root, PAGE, PAGE_JS)
        assert CSP

    async def test_chromium_plays_sound_and_pictures(self) -> None:
        result = await deferToThread(play_with_sound, self.base)
        levels = result.pop("levels")
        print(f"\nChromium with sound: {json.dumps(result)}; peak level {max(levels or [0]):.3f}")
        self.assertTrue(result["aac"], "this Chromium has no AAC in MSE")
        self.assertIsNone(result["error"])
        self.assertEqual(result["errors"], [])
        self.assertEqual(result["states"][:2], ["connecting", "playing"])
        self.assertGreater(result["frames"], 50, "the video still plays")
        self.assertGreater(result["audioBytes"], 0, "Chromium decoded the AAC track")
        self.assertGreater(max(levels), 0.05, "the camera's tone reached WebAudio")

