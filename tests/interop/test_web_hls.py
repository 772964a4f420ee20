"""HLS live view through the real portal (issue 11): the web role's routes and session, the rtsp
role's fan-out, a simulated camera, and ffmpeg's HLS demuxer as the player (what Safari without
MSE does natively: the playlist, EXT-X-MAP, fMP4 segments, the cookie on every request)."""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests.browser import launched, missing_browser, start_live_portal
from tests.util import FFMPEG, FFPROBE, http_client, run
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_OTHER_DEV as OTHER_DEV
from tests.util import PROXY_PASSWORD as PASSWORD


def watch_without_mse(base: str) -> dict[str, Any]:
    """The portal in a Chromium with MediaSource and ManagedMediaSource taken away (an old
    iPhone's Safari): log in, open the camera, measure its <video> (in a worker thread)."""
    out: dict[str, Any] = {}
    with launched() as browser:
        context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
        context.add_init_script("delete window.MediaSource; delete window.ManagedMediaSource;")
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        out["console"] = console
        failed: list[str] = []
        page.on("response", lambda r: failed.append(f"{r.status} {r.url.split('/channels/')[-1]}")
                if r.status >= 400 else None)
        out["failed"] = failed
        page.goto(base + "/")
        out["mse"] = page.evaluate("typeof window.MediaSource + '/' + typeof window.ManagedMediaSource")
        out["hls"] = page.evaluate("document.createElement('video').canPlayType('application/vnd.apple.mpegurl')")
        page.wait_for_selector("#login-form")
        page.fill("#login-form [name=account]", MOBILE)
        page.fill("#login-form [name=password]", PASSWORD)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector(f"li[data-dev-id='{DEV}'] a")
        opened = time.monotonic()
        page.click(f"li[data-dev-id='{DEV}'] a")
        page.wait_for_selector("#live")
        page.evaluate("(() => { const v = document.getElementById('live'); window.events = [];"
                      " for (const e of ['loadedmetadata', 'playing', 'waiting', 'error', 'stalled', 'pause'])"
                      "   v.addEventListener(e, () => window.events.push(e + '@' + v.currentTime.toFixed(2))); })()")
        try:
            page.wait_for_function("() => { const v = document.getElementById('live');"
                                   " return v && v.getVideoPlaybackQuality().totalVideoFrames > 50; }",
                                   timeout=20000)
            out["frames_50_after_s"] = time.monotonic() - opened
        except Exception as e:
            out["frames_50_error"] = str(e)
        t0 = page.evaluate("document.getElementById('live').currentTime")
        page.wait_for_timeout(2000)
        out.update(page.evaluate("(() => { const v = document.getElementById('live');"
                                 " return {t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames,"
                                 " src: v.currentSrc, w: v.videoWidth, error: v.error && v.error.message,"
                                 " muted: v.muted, paused: v.paused, ready: v.readyState, events: window.events};"
                                 " })()"))
        out["t0"] = t0
        out["hls_requests"] = sorted({r.split("?")[0].rsplit("/", 1)[1] for r in requests if "/channels/" in r})
    return out


class WebHlsTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        if FFMPEG is None or FFPROBE is None:
            raise SkipTest("ffmpeg/ffprobe not installed")
        self.h, self.base = await start_live_portal(self, {DEV: {}, OTHER_DEV: {}})
        http = http_client()
        login = await http.post(self.base + "/api/v1/session", json={"account": MOBILE, "password": PASSWORD})
        self.assertEqual(login.code, 200)
        await login.content()
        self.cookie = login.cookies()["ge_session"]
        self.url = f"{self.base}/api/v1/devices/{DEV}/channels/0/live.m3u8?stream=main"

    async def test_ffmpeg_plays_the_live_playlist(self) -> None:
        """ffmpeg reads the live playlist with the session cookie and decodes 6 s without an error."""
        assert FFMPEG is not None and FFPROBE is not None
        headers = f"Cookie: ge_session={self.cookie}\r\n"
        result = await run(FFMPEG, ["-v", "error", "-headers", headers, "-i", self.url, "-t", "6",
                                    "-f", "null", "-"], timeout=60)
        self.assertEqual((result.code, result.err.strip()), (0, ""))
        probe = await run(FFPROBE, ["-v", "error", "-headers", headers, "-show_entries",
                                    "stream=codec_type,codec_name,width,height,sample_rate", "-of", "json",
                                    self.url], timeout=60)
        self.assertEqual(probe.code, 0, probe.err)
        streams = {s["codec_type"]: s for s in json.loads(probe.out)["streams"]}
        self.assertEqual((streams["video"]["codec_name"], streams["video"]["width"]), ("h264", 1280))
        self.assertEqual((streams["audio"]["codec_name"], streams["audio"]["sample_rate"]), ("aac", "16000"))
        frames = await run(FFPROBE, ["-v", "error", "-headers", headers, "-read_intervals", "%+5",
                                     "-select_streams", "v", "-count_frames", "-show_entries",
                                     "stream=nb_read_frames", "-of", "json", self.url], timeout=60)
        counted = int(json.loads(frames.out)["streams"][0]["nb_read_frames"])
        print(f"\nHLS through the portal: {counted} pictures decoded in ffprobe's first 5 s")
        self.assertGreater(counted, 100)
        hub = self.h.factory.hubs[(DEV, 0, 1)]
        self.assertEqual(hub.starts, 1, "one upstream for every HLS request")

    async def test_playlist_and_segments_need_access(self) -> None:
        http = http_client()
        cookies = {"ge_session": self.cookie}
        playlist = await http.get(self.url, cookies=cookies)
        self.assertEqual(playlist.code, 200)
        self.assertEqual(playlist.headers.getRawHeaders("content-type"), ["application/vnd.apple.mpegurl"])
        text = (await playlist.content()).decode()
        self.assertTrue(text.startswith("#EXTM3U\n#EXT-X-VERSION:7\n"), text)
        segment = next(line for line in text.splitlines() if line.startswith("segment.m4s"))
        base = self.url.rsplit("/", 1)[0]
        own = await http.get(f"{base}/{segment}", cookies=cookies)
        self.assertEqual(own.code, 200)
        self.assertEqual((await own.content())[4:8], b"moof")
        anonymous = await http_client().get(f"{base}/{segment}")
        self.assertEqual(anonymous.code, 401)
        await anonymous.content()
        # Another account's camera: 404 for the playlist, the init segment and a segment alike.
        other = await self._second_account()
        for path in ("live.m3u8?stream=main", "init.mp4?stream=main", segment):
            theirs = await http.get(f"{base}/{path}", cookies=other)
            self.assertEqual(theirs.code, 404, path)
            self.assertEqual(json.loads(await theirs.content())["status"], 404)
        for path in ("live.m3u8?stream=main", "init.mp4?stream=main"):
            mine = await http.get(f"{self.base}/api/v1/devices/{OTHER_DEV}/channels/0/{path}", cookies=cookies)
            self.assertEqual(mine.code, 404, path)
            await mine.content()

    async def _second_account(self) -> dict[str, str]:
        from twisted.internet import reactor

        from globaleye.store import Account

        stranger = "13300000999"
        accounts, now = self.h.platform.accounts, reactor.seconds()
        await self.h.platform.store.create_account(
            Account(stranger, await accounts.hash_password("another password"), now, now))
        login = await http_client().post(self.base + "/api/v1/session",
                                         json={"account": stranger, "password": "another password"})
        self.assertEqual(login.code, 200, await login.text())
        return {"ge_session": login.cookies()["ge_session"]}

    async def test_chromium_without_mse_plays_hls(self) -> None:
        """The portal's player in a browser without MSE falls back to native HLS, and plays."""
        if reason := missing_browser():
            raise SkipTest(reason)
        result = await deferToThread(watch_without_mse, self.base)
        print(f"\nportal without MSE (native HLS) in Chromium: {json.dumps(result)}")
        self.assertEqual(result["mse"], "undefined/undefined")
        if not result["hls"]:
            raise SkipTest("this Chromium has no native HLS")
        self.assertIn("live.m3u8", result["src"])
        self.assertIn("segment.m4s", result["hls_requests"])
        self.assertNotIn("live.mp4", result["hls_requests"])
        self.assertNotIn("frames_50_error", result)
        self.assertGreater(result["t"], result["t0"])
        self.assertIsNone(result["error"])
