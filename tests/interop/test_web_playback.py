"""Playback of a camera's recording in a real browser: the platform's rtsp role (its §15 path
machinery), a simulated camera with recordings (real MPEG-TS files), globaleye.web.playback and
static/js/player.js's playRecording, played by Debian's Chromium driven by Playwright; the
download read by ffprobe; the seeked picture compared with FFmpeg's decode of the same file.

The page and the stream are served by a small loopback site with the account fixed (the portal's
route and session are the web API's, tested with it: tests/integration/test_web_api.py loops its
IDOR check over the playback routes too); the site is the platform's own LimitedSite with a short
idle timeout, and the page carries a strict Content-Security-Policy (no inline script).
The simulated camera records 2-minute files here (6AH FileDuration 2), so a download at the
camera's fastest Scale (4) takes 30 s rather than 75.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread, deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web import resource

from globaleye.guard.httpsite import LimitedSite
from globaleye.media.rtsp.upstream import UpstreamSession
from globaleye.sim.state import RecordParams
from globaleye.web.live import LiveUnavailable
from globaleye.web.playback import PlaybackVideo
from tests.browser import (
    ARGS,
    AUTOPLAY,
    CHROMIUM,
    PageErrors,
    launched,
    log_in,
    missing_browser,
    put_test_page,
    screenshots,
    start_live_portal,
)
from tests.util import FFMPEG, FFPROBE, ProxyHarness, closed_port, http_client, run, until
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_OTHER_DEV as OTHER_DEV

FILE_MINUTES = 2
#: Mean absolute difference (0-255 per RGB channel) between the browser's picture and FFmpeg's of the
#: same frame: colour conversion and scaling differ a little; a neighbouring second differs a lot.
TOLERANCE = 6.0

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>playback</title>
<script type="module" src="/page.js"></script></head>
<body><video id="v" muted playsinline></video><canvas id="c"></canvas><p id="state"></p></body></html>
"""

PAGE_JS = b"""import { playRecording } from '/js/player.js';
const video = document.getElementById('v');
window.states = [];
window.infos = [];
const params = new URLSearchParams(location.search);
window.player = playRecording(video, '/play.mp4?dev=' + (params.get('dev') || ''), {
  start: Number(params.get('start') || '0'),
  speed: Number(params.get('speed') || '1'),
  onState: (s, detail) => {
    window.states.push(detail ? s + ': ' + detail : s);
    if (s === 'playing') window.playingAt = performance.now();
    document.getElementById('state').textContent = s;
  },
  onInfo: (info) => window.infos.push(info),
});
// The picture on screen as RGB bytes (base64): what the page shows, drawn into a canvas.
window.grab = () => {
  const canvas = document.getElementById('c');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(video, 0, 0);
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const rgb = new Uint8Array(rgba.length / 4 * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
  }
  let s = '';
  for (let i = 0; i < rgb.length; i += 0x8000) s += String.fromCharCode.apply(null, rgb.subarray(i, i + 0x8000));
  return { w: canvas.width, h: canvas.height, rgb: btoa(s), t: video.currentTime };
};
"""


class PlayPage(resource.Resource):
    isLeaf = True

    def __init__(self, playback: PlaybackVideo, test: WebPlaybackTests, download: bool = False) -> None:
        super().__init__()
        self.playback, self.test, self.download = playback, test, download

    def render_GET(self, request: Any) -> Any:  # noqa: N802
        def arg(name: str, default: str) -> str:
            return (request.args.get(name.encode()) or [b""])[0].decode() or default

        dev = arg("dev", DEV)
        name = self.test.file_name if dev == DEV else f"{dev}_0_20260101000000.ts"
        from globaleye.web.live import write_problem

        try:
            return self.playback.render(request, MOBILE, dev, 0, name, float(arg("start", "0")),
                                        float(arg("speed", "1")), self.download)
        except LiveUnavailable as e:
            write_problem(request, e)
            return b""


def ffmpeg_frame(path: str, second: float) -> tuple[int, int, bytes]:
    """FFmpeg's decode of the file's picture at *second*, as RGB24 (blocking: call in a thread)."""
    import subprocess

    assert FFMPEG is not None and FFPROBE is not None
    probe = json.loads(subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries",
                                       "stream=width,height", "-of", "json", path], capture_output=True,
                                      check=True).stdout)
    w, h = probe["streams"][0]["width"], probe["streams"][0]["height"]
    out = subprocess.run([FFMPEG, "-v", "error", "-i", path, "-ss", f"{second:.3f}", "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return w, h, out


def mean_abs_diff(a: bytes, b: bytes) -> float:
    import numpy as np

    return float(np.abs(np.frombuffer(a, np.uint8).astype(np.int16) - np.frombuffer(b, np.uint8).astype(np.int16)).mean())


class Browser:
    """Chromium with the page open (used from a worker thread only)."""

    def __init__(self, url: str) -> None:
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*ARGS, AUTOPLAY])
        self.page = self.browser.new_page()
        self.errors = PageErrors(self.page, ignore=lambda text: False)  # a page of its own: every console error counts
        self.page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
        self.page.goto(url)

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def wait(self, expression: str, timeout: float = 15.0) -> None:
        self.page.wait_for_function(expression, timeout=timeout * 1000)

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self.pw.stop()


PLAYING_AT = ("(t) => { const v = document.getElementById('v'); return window.states.at(-1) === 'playing'"
              " && v.currentTime >= t && !v.paused; }")


class WebPlaybackTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        if FFMPEG is None or FFPROBE is None:
            raise SkipTest("ffmpeg/ffprobe not installed")
        self.h = ProxyHarness(self)
        await self.h.start({DEV: {"record_params": {0: RecordParams(file_duration=FILE_MINUTES)}}, OTHER_DEV: {}})
        self.file_name = self.h.cameras[DEV].state.recordings(0)[-1].file_name  # the newest file (72H)
        self.camera = self.h.camera_rtsp(DEV)
        await self.camera.media.recording_async(FILE_MINUTES * 60, True)  # made once, before any timing
        self.playback = PlaybackVideo(self.h.factory)
        root = resource.Resource()
        put_test_page(root, PAGE, PAGE_JS)
        root.putChild(b"play.mp4", PlayPage(self.playback, self))
        root.putChild(b"download.mp4", PlayPage(self.playback, self, download=True))
        # A 2 s idle timeout: the stream must outlive it (suspended while streaming).
        self.site = LimitedSite(root, reactor, idle_timeout=2.0)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    async def browser(self, query: str = "") -> Browser:
        if reason := missing_browser():
            raise SkipTest(reason)
        # Playwright's synchronous API stays on the thread that started it: one thread of its own.
        self.pool = ThreadPool(1, 1, "playwright")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        b: Browser = await self.call(Browser, f"{self.base}/?{query}")
        self.addCleanup(lambda: self.call(b.close))
        return b

    def call(self, f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, self.pool, f, *args)

    def recording_path(self) -> str:
        recording = self.camera.media.recording_ready(FILE_MINUTES * 60, True)
        assert recording is not None, "the camera played its recording"
        return str(recording.index.path)

    async def no_camera_sessions(self) -> None:
        """Every browser request's camera session is torn down (TEARDOWN, the camera forgot it)."""
        await until(lambda: not self.playback.streams and not self.camera.sessions, timeout=10)

    async def test_seek_to_one_minute_shows_the_files_picture(self) -> None:
        """Seek to 01:00: the picture drawn from the video into a canvas is FFmpeg's decode of that frame."""
        b = await self.browser("start=10")
        await self.call(b.wait, f"() => ({PLAYING_AT})(10.5)")
        await self.call(b.js, "window.seekAt = performance.now(); window.player.seek(60)")
        await self.call(b.wait, f"() => ({PLAYING_AT})(60.2)")
        seek_ms = await self.call(b.js, "window.playingAt - window.seekAt")
        await self.call(b.js, "window.player.pause()")
        # Still for the rest of second 60: every picture of a second of the file is the same.
        shown = await self.call(b.js, "window.grab()")
        self.assertGreaterEqual(shown["t"], 60.0)
        self.assertLess(shown["t"], 61.0, "paused within second 60")
        path = self.recording_path()
        w, h, frame = await deferToThread(ffmpeg_frame, path, 60.0)
        _, _, other = await deferToThread(ffmpeg_frame, path, 61.0)
        self.assertEqual((shown["w"], shown["h"]), (w, h))
        import base64

        rgb = base64.b64decode(shown["rgb"])
        same, neighbour = mean_abs_diff(rgb, frame), mean_abs_diff(rgb, other)
        states = await self.call(b.js, "[window.states, window.infos]")
        print(f"\nseek to 01:00: playing {seek_ms:.0f} ms after the seek; "
              f"mean |browser - ffmpeg| {same:.2f} at 01:00, {neighbour:.2f} against 01:01 "
              f"(states and infos {states})")
        self.assertLess(same, TOLERANCE)
        self.assertGreater(neighbour, 2 * TOLERANCE, "the comparison tells seconds apart")
        self.assertEqual(b.errors, [])
        await self.no_camera_sessions()  # paused: the camera's session is gone

    async def test_pause_stops_time_and_speed_two_runs_twice_as_fast(self) -> None:
        """Pause: currentTime stands still; speed 2: currentTime advances about twice the wall time."""
        b = await self.browser("start=5")
        await self.call(b.wait, f"() => ({PLAYING_AT})(5.5)")
        await self.call(b.js, "window.player.pause()")
        t1 = await self.call(b.js, "document.getElementById('v').currentTime")
        await self.call(time.sleep, 1.5)
        t2 = await self.call(b.js, "document.getElementById('v').currentTime")
        self.assertEqual(t1, t2, "paused: the picture stands still")
        await self.no_camera_sessions()
        await self.call(b.js, "window.player.resume()")
        await self.call(b.wait, f"() => ({PLAYING_AT})({t2 + 0.3})")
        await self.call(b.js, "window.player.setSpeed(2)")
        await self.call(b.wait, "() => window.infos.length >= 3 && window.infos.at(-1).scale === 2")
        await self.call(b.wait, f"() => ({PLAYING_AT})({t2 + 1})")
        rates = []
        for _ in range(2):
            m0, w0 = await self.call(b.js, "[document.getElementById('v').currentTime, Date.now()]")
            await self.call(time.sleep, 3.0)
            m1, w1 = await self.call(b.js, "[document.getElementById('v').currentTime, Date.now()]")
            rates.append((m1 - m0) / ((w1 - w0) / 1000))
        states = await self.call(b.js, "window.states")
        print(f"\nspeed 2: currentTime advanced {rates[0]:.2f}x and {rates[1]:.2f}x the wall time; states {states}")
        self.assertTrue(all(1.6 < r < 2.4 for r in rates), rates)
        self.assertEqual(self.playback.started, 3, "play, resume, speed: one camera session each")
        self.assertEqual([s.scale for s in self.playback.streams], [2.0], "the camera plays at Scale 2")
        await self.call(b.js, "window.player.setSpeed(0.5)")
        await self.call(b.wait, "() => window.infos.length >= 4 && window.infos.at(-1).scale === 0.5")
        await self.call(b.wait, "() => window.states.at(-1) === 'playing'")
        await self.call(time.sleep, 0.5)
        m0, w0 = await self.call(b.js, "[document.getElementById('v').currentTime, Date.now()]")
        await self.call(time.sleep, 3.0)
        m1, w1 = await self.call(b.js, "[document.getElementById('v').currentTime, Date.now()]")
        slow = (m1 - m0) / ((w1 - w0) / 1000)
        print(f"speed 0.5: currentTime advanced {slow:.2f}x the wall time")
        self.assertTrue(0.35 < slow < 0.65, slow)
        self.assertEqual([s.scale for s in self.playback.streams], [0.5], "the camera plays at Scale 0.5")
        await self.call(b.js, "window.player.close()")
        await self.no_camera_sessions()
        self.assertEqual(b.errors, [])

    async def test_page_sees_the_end(self) -> None:
        """Played from 3 s before the end: the player ends the MediaSource and says 'ended' at the file's end."""
        end = FILE_MINUTES * 60
        b = await self.browser(f"start={end - 3}")
        await self.call(b.wait, "() => window.states.includes('ended')", 20.0)
        t = await self.call(b.js, "document.getElementById('v').currentTime")
        self.assertAlmostEqual(t, end, delta=0.1)
        self.assertEqual(await self.call(b.js, "document.getElementById('v').ended"), True)
        self.assertEqual(b.errors, [])
        await self.no_camera_sessions()

    async def test_download_is_the_whole_file(self) -> None:
        """download.mp4: an attachment ffprobe reads, with the recording's duration (±1 s)."""
        started = reactor.seconds()
        response = await http_client().get(f"{self.base}/download.mp4")
        body = await response.content()
        took = reactor.seconds() - started
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-disposition"),
                         [f'attachment; filename="{self.file_name[:-3]}.mp4"'])
        with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as f:
            f.write(body)
        self.addCleanup(os.unlink, f.name)
        result = await run(FFPROBE, ["-v", "error", "-show_entries", "format=duration:stream=codec_name,nb_read_frames",
                                     "-count_frames", "-of", "json", f.name], timeout=60)
        self.assertEqual(result.code, 0, result.err)
        probed = json.loads(result.out)
        duration = float(probed["format"]["duration"])
        frames = int(probed["streams"][0]["nb_read_frames"])
        print(f"\ndownload: {len(body) / 1e6:.1f} MB in {took:.1f} s, ffprobe: {duration:.2f} s, {frames} frames")
        self.assertEqual(probed["streams"][0]["codec_name"], "h264")
        self.assertAlmostEqual(duration, FILE_MINUTES * 60, delta=1.0)
        # The simulated camera drops the rest of a GOP when its (shared, loaded) reactor falls behind
        # (globaleye.sim.rtsp.players.RecordingPlayer): a picture or a second may be missing, not more.
        self.assertGreaterEqual(frames, FILE_MINUTES * 60 * 25 * 0.97)
        self.assertLessEqual(frames, FILE_MINUTES * 60 * 25)
        await self.no_camera_sessions()

    async def test_end_of_file_ends_the_answer(self) -> None:
        """Played from 3 s before the end: the answer ends cleanly with the last pictures, read by ffprobe."""
        response = await http_client().get(f"{self.base}/play.mp4?start={FILE_MINUTES * 60 - 3}")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("x-start"), [f"{FILE_MINUTES * 60 - 3:.3f}"])
        self.assertEqual(response.headers.getRawHeaders("x-duration"), [f"{FILE_MINUTES * 60:.3f}"])
        body = await response.content()  # ends: the camera's BYE at the end of the file
        with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as f:
            f.write(body)
        self.addCleanup(os.unlink, f.name)
        result = await run(FFPROBE, ["-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames",
                                     "-of", "json", f.name], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(int(json.loads(result.out)["streams"][0]["nb_read_frames"]), 75, "the last 3 s, 25 fps")
        await self.no_camera_sessions()

    async def test_browser_leaving_tears_the_camera_session_down(self) -> None:
        """The browser closes the connection mid-file: the camera's session ends (TEARDOWN)."""
        response = await http_client().get(f"{self.base}/play.mp4?start=20")
        self.assertEqual(response.code, 200)
        await until(lambda: self.camera.sessions, timeout=5)
        response.original.deliverBody(_Drop())  # close the connection without reading
        await self.no_camera_sessions()

    async def test_browser_that_reads_nothing_pauses_the_camera(self) -> None:
        """A client that reads nothing: the server writes no more than the sockets hold, and the
        camera's connection is paused (bounded memory); hanging up then tears the session down."""
        import socket

        from tests.util import sleep

        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        client.connect(("127.0.0.1", self.port.getHost().port))
        client.sendall(b"GET /play.mp4?start=0&speed=4 HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            await until(lambda: any(s.paused for s in self.playback.streams), timeout=30)
            (stream,) = self.playback.streams
            assert stream.upstream is not None and stream.upstream.protocol is not None
            written = stream.bytes
            await sleep(3.0)  # 12 s of file at Scale 4: none of it is taken from the camera
            print(f"\nreader asleep: {written // 1024} KiB written before the pause, "
                  f"{(stream.bytes - written) // 1024} KiB in the next 3 s")
            self.assertTrue(stream.paused)
            self.assertLess(stream.bytes - written, 64 * 1024, "nothing more is written")
            self.assertLess(stream.bytes, 1024 * 1024, "about the sockets' buffers")
            camera_side = stream.upstream.protocol.transport
            self.assertNotIn(camera_side, reactor.getReaders(), "the camera's connection is not read")
        finally:
            client.close()
        await self.no_camera_sessions()

    async def test_another_accounts_camera_is_404(self) -> None:
        """A camera not in the account's list is 404, and no camera session is opened."""
        response = await http_client().get(f"{self.base}/play.mp4?dev={OTHER_DEV}")
        self.assertEqual(response.code, 404)
        self.assertEqual((await response.json())["title"], "No such camera")
        self.assertEqual(self.h.camera_rtsp(OTHER_DEV).plays, 0)


class _Drop:
    """A body reader that closes the connection at once."""

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        pass

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        pass


def play_in_portal(base: str, dev: str, file_name: str) -> dict[str, Any]:
    """Log in on the portal, open the recording's page, seek, change speed, pause (in a worker thread)."""
    from tests.util import PROXY_PASSWORD as PASSWORD

    out: dict[str, Any] = {}
    with launched(AUTOPLAY) as browser:
        page = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844}).new_page()
        errors = PageErrors(page)
        log_in(page, base, MOBILE, PASSWORD)
        page.wait_for_selector(f"li[data-dev-id='{dev}'] a")
        page.goto(f"{base}/#/devices/{dev}/recordings/0/{file_name}")
        page.wait_for_function("() => document.getElementById('playback-state')?.dataset.state === 'playing'",
                               timeout=20000)
        out["seek_max"] = page.get_attribute("#playback-seek", "max")
        out["title"] = page.text_content("h1")
        out["download"] = page.get_attribute("#playback-download", "href")
        # Seek with the bar to 01:00, as a person dragging it would.
        page.eval_on_selector("#playback-seek", "(s) => { s.value = '60';"
                              " s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); }")
        page.wait_for_function("() => { const v = document.getElementById('playback');"
                               " return v.currentTime >= 60.2 && !v.paused; }", timeout=20000)
        page.click("button[data-speed='2']")
        page.wait_for_function("() => document.getElementById('playback').playbackRate === 2"
                               " && document.getElementById('playback-state').dataset.state === 'playing'",
                               timeout=20000)
        page.click("#playback-toggle")
        page.wait_for_function("() => document.getElementById('playback-state').dataset.state === 'paused'")
        out["paused_at"] = page.evaluate("document.getElementById('playback').currentTime")
        out["time_text"] = page.text_content("#playback-time")
        out["status_text"] = page.text_content("#playback-state")
        folder = screenshots()
        page.screenshot(path=os.path.join(folder, "playback.png"), full_page=True)
        out["errors"] = errors
    return out


class WebPlaybackPortalTests(TestCase):
    """The same through the web role: the API routes (session, access check, problems) and the portal's page."""

    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        self.h, self.base = await start_live_portal(
            self, {DEV: {"record_params": {0: RecordParams(file_duration=FILE_MINUTES)}}, OTHER_DEV: {}})
        self.file_name = self.h.cameras[DEV].state.recordings(0)[-1].file_name
        self.camera = self.h.camera_rtsp(DEV)
        await self.camera.media.recording_async(FILE_MINUTES * 60, True)

    def url(self, dev: str, what: str, file_name: str | None = None) -> str:
        return f"{self.base}/api/v1/devices/{dev}/channels/0/recordings/{file_name or self.file_name}/{what}"

    async def test_routes(self) -> None:
        """play.mp4 and download.mp4 with the portal's session; 404 for another account's camera; 400, 401."""
        from tests.util import PROXY_PASSWORD as PASSWORD

        http = http_client()
        login = await http.post(self.base + "/api/v1/session", json={"account": MOBILE, "password": PASSWORD})
        self.assertEqual(login.code, 200)
        await login.content()
        cookies = {"ge_session": login.cookies()["ge_session"]}
        end = FILE_MINUTES * 60 - 2
        response = await http.get(self.url(DEV, f"play.mp4?start={end}&speed=0.5"), cookies=cookies)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["video/mp4"])
        self.assertEqual(response.headers.getRawHeaders("x-scale"), ["0.5"])
        self.assertEqual(response.headers.getRawHeaders("x-start"), [f"{end:.3f}"])
        body = await response.content()  # 2 s of file at half speed: ends after about 4 s
        self.assertGreater(len(body), 10_000)
        download = await http.get(self.url(DEV, "download.mp4"), cookies=cookies, unbuffered=True)
        self.assertEqual(download.code, 200)
        self.assertEqual(download.headers.getRawHeaders("x-scale"), ["4"])
        self.assertTrue(download.headers.getRawHeaders("content-disposition")[0].startswith("attachment;"))
        download.deliverBody(_Drop())
        await until(lambda: not self.camera.sessions, timeout=10)
        other = f"{OTHER_DEV}_0_20260101000000.ts"
        theirs = await http.get(self.url(OTHER_DEV, "play.mp4", other), cookies=cookies)
        nobodys = await http.get(self.url("81399999999", "play.mp4", other), cookies=cookies)
        self.assertEqual((theirs.code, await theirs.content()), (nobodys.code, await nobodys.content()))
        self.assertEqual(theirs.code, 404)
        self.assertEqual(self.h.camera_rtsp(OTHER_DEV).plays, 0)
        bad = await http.get(self.url(DEV, "play.mp4?speed=8"), cookies=cookies)
        self.assertEqual(bad.code, 400)
        self.assertEqual(json.loads(await bad.content())["status"], 400)
        missing = await http.get(self.url(DEV, "play.mp4", f"{DEV}_0_20200101000000.ts"), cookies=cookies)
        self.assertEqual(missing.code, 404, "a recording the camera does not have")
        self.assertEqual(json.loads(await missing.content())["title"], "No such recording")
        anonymous = await http_client().get(self.url(DEV, "play.mp4"))
        self.assertEqual(anonymous.code, 401)
        await anonymous.content()

    async def test_portal_page(self) -> None:
        """Log in, open #/devices/{id}/recordings/0/{file}: it plays, the seek bar seeks, speed 2, pause."""
        if reason := missing_browser():
            raise SkipTest(reason)
        result = await deferToThread(play_in_portal, self.base, DEV, self.file_name)
        print(f"\nportal playback page in Chromium: {json.dumps(result, ensure_ascii=False)}")
        self.assertEqual(result["seek_max"], str(FILE_MINUTES * 60))
        self.assertIn("录像回放", result["title"])
        self.assertTrue(result["download"].endswith(f"/recordings/{self.file_name}/download.mp4"))
        self.assertGreaterEqual(result["paused_at"], 60.2)
        self.assertEqual(result["status_text"], "已暂停")
        self.assertTrue(result["time_text"].startswith("01:0") and result["time_text"].endswith("/ 02:00"),
                        result["time_text"])
        self.assertEqual(result["errors"], [])
        await until(lambda: not self.camera.sessions, timeout=10)


class WebPlaybackTurnTests(TestCase):
    """The §15 fallback serves the browser's playback too: local refused, no UPnP, the TURN relay."""

    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        if FFMPEG is None or FFPROBE is None:
            raise SkipTest("ffmpeg/ffprobe not installed")
        self.h = ProxyHarness(self, udp_timeout=1.0)
        await self.h.start({DEV: {"rtsp_local_port": closed_port(), "upnp_ip": "0.0.0.0",
                                  "record_params": {0: RecordParams(file_duration=FILE_MINUTES)}}})
        await self.h.relay_ready()
        self.file_name = self.h.cameras[DEV].state.recordings(0)[-1].file_name
        self.camera = self.h.camera_rtsp(DEV)
        await self.camera.media.recording_async(FILE_MINUTES * 60, True)
        self.playback = PlaybackVideo(self.h.factory)
        root = resource.Resource()
        root.putChild(b"play.mp4", PlayPage(self.playback, self))  # type: ignore[arg-type]
        self.port = reactor.listenTCP(0, LimitedSite(root, reactor, idle_timeout=2.0), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    async def play_end(self) -> dict[str, Any]:
        """The last 3 s of the file over the path found: the answer ends; ffprobe counts its pictures."""
        response = await http_client().get(f"{self.base}/play.mp4?start={FILE_MINUTES * 60 - 3}")
        self.assertEqual(response.code, 200)
        body = await response.content()
        with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as f:
            f.write(body)
        self.addCleanup(os.unlink, f.name)
        result = await run(FFPROBE, ["-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames",
                                     "-of", "json", f.name], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        frames = int(json.loads(result.out)["streams"][0]["nb_read_frames"])
        await until(lambda: not self.camera.sessions, timeout=10)
        ended = self.playback.recent[-1]
        print(f"\nplayback via {ended['path']}: {frames} pictures, {ended['reason']}")
        self.assertEqual(ended["reason"], "end of the recording")
        return {"frames": frames, "path": ended["path"]}

    async def test_turn_udp(self) -> None:
        result = await self.play_end()
        self.assertEqual(result["path"], "turn-udp")
        self.assertGreaterEqual(result["frames"], 70, "3 s at 25 fps over loopback UDP")

    async def test_turn_tcp(self) -> None:
        original = UpstreamSession.rtp_in

        def firewall(session: UpstreamSession, track: int, data: bytes) -> None:
            if not session.udp:
                original(session, track, data)

        self.patch(UpstreamSession, "rtp_in", firewall)
        result = await self.play_end()
        self.assertEqual(result["path"], "turn-tcp")
        self.assertEqual(result["frames"], 75)
