"""The grid and the device page's viewing controls in Debian's Chromium (Playwright), through the
real portal: the web and rtsp roles, simulated cameras.

- a 4-camera grid plays in every tile over ONE HTTP request (GET /api/v1/live/mux.bin);
- a tile opens its camera's page; there mute toggles ``video.muted``, the snapshot button downloads
  a JPEG of the video's size (ffprobe reads it), local recording for ~3 s downloads an MP4 that
  ffprobe reads with ~3 s of video, and the main/sub switch changes the picture's size;
- a 9-camera layout plays 8 cameras at once (more than the 6 connections a browser opens to
  one origin) and shows the ninth, offline, as a placeholder.

Screenshots go to ``_trial_temp/screenshots/`` (grid-4, grid-9, grid-phone, device-controls).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests.browser import (
    PageErrors,
    launched,
    log_in,
    missing_browser,
    screenshots,
    start_live_portal,
)
from tests.util import FFMPEG, FFPROBE, http_client, run, until
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_PASSWORD as PASSWORD

CAMERAS = [DEV, *(f"813000000{n}" for n in range(13, 20))]  # 8: more than a browser's 6 connections
LATE = "81300000020"  # the ninth camera, stopped before the 9-camera layout is opened

FRAMES = "(() => [...document.querySelectorAll('#grid video')].map(v => v.getVideoPlaybackQuality().totalVideoFrames))()"


def in_browser(base: str, downloads: str, stop_camera: Any, stop_hub: Any) -> dict[str, Any]:
    """Drive the portal in Chromium (a worker thread); what was seen, for the test to check."""
    out: dict[str, Any] = {}
    shots = screenshots()
    with launched() as browser:
        context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900},
                                      accept_downloads=True)
        page = context.new_page()
        requests: list[str] = []
        errors = PageErrors(page)
        page.on("request", lambda r: requests.append(r.url))
        log_in(page, base, MOBILE, PASSWORD)
        page.wait_for_selector("#grid-link")

        # The 4-camera grid: every tile plays, over one request.
        page.click("#grid-link")  # the default layout: 4
        page.wait_for_selector("#grid.layout-4")
        page.wait_for_function(f"() => {FRAMES}.length === 4 && {FRAMES}.every(n => n > 10)", timeout=20000)
        first = page.evaluate(FRAMES)
        page.wait_for_timeout(2000)
        out["grid4_frames"] = [first, page.evaluate(FRAMES)]
        out["grid4_streams"] = page.evaluate(
            "[...document.querySelectorAll('#grid .tile')].map(t => [t.dataset.devId, t.dataset.stream,"
            " t.dataset.state])")
        out["grid4_sizes"] = page.evaluate(
            "[...document.querySelectorAll('#grid video')].map(v => [v.videoWidth, v.videoHeight])")
        out["mux_requests"] = [u for u in requests if "/live/mux.bin" in u]
        out["live_mp4_requests"] = [u for u in requests if "/live.mp4" in u]
        page.screenshot(path=os.path.join(shots, "grid-4.png"))

        # A tile opens its camera's page: mute, snapshot, local recording, main/sub.
        page.click(f"#grid .tile[data-dev-id='{DEV}']")
        page.wait_for_function("() => { const v = document.getElementById('live');"
                               " return v && v.getVideoPlaybackQuality().totalVideoFrames > 10; }", timeout=15000)
        out["hash"] = page.evaluate("location.hash")
        muted = [page.evaluate("document.getElementById('live').muted")]
        page.click("#mute")
        muted.append(page.evaluate("document.getElementById('live').muted"))
        muted.append(page.get_attribute("#mute", "aria-pressed"))
        page.click("#mute")
        muted.append(page.evaluate("document.getElementById('live').muted"))
        out["muted"] = muted
        # The page relabels the button on fullscreenchange, which fires after fullscreenElement
        # has changed (at the next animation frame): wait for both, or the label is read too early.
        label = "document.querySelector('#fullscreen').getAttribute('aria-label')"
        page.click("#fullscreen")
        page.wait_for_function(f"() => document.fullscreenElement !== null && {label} !== '全屏'", timeout=5000)
        fullscreen = [page.evaluate("document.fullscreenElement.className"),
                      page.get_attribute("#fullscreen", "aria-label")]
        page.click("#fullscreen")
        page.wait_for_function(f"() => document.fullscreenElement === null && {label} !== '退出全屏'", timeout=5000)
        out["fullscreen"] = [*fullscreen, page.get_attribute("#fullscreen", "aria-label")]
        out["video_size"] = page.evaluate("[document.getElementById('live').videoWidth,"
                                          " document.getElementById('live').videoHeight]")
        with page.expect_download() as snap:
            page.click("#snapshot")
        out["snapshot_name"] = snap.value.suggested_filename
        out["snapshot"] = os.path.join(downloads, "snapshot.jpg")
        snap.value.save_as(out["snapshot"])
        page.click("#record")
        started = time.monotonic()
        page.wait_for_timeout(3000)
        out["record_time"] = page.text_content("#record-time")
        page.screenshot(path=os.path.join(shots, "device-controls.png"))
        with page.expect_download() as rec:
            page.click("#record")
        out["recorded_s"] = time.monotonic() - started
        out["recording_name"] = rec.value.suggested_filename
        out["recording"] = os.path.join(downloads, "recording.mp4")
        rec.value.save_as(out["recording"])
        page.click("button[data-stream='sub']")
        page.wait_for_function("() => document.getElementById('live').videoWidth === 352", timeout=15000)
        out["sub_size"] = page.evaluate("[document.getElementById('live').videoWidth,"
                                        " document.getElementById('live').videoHeight]")

        # The 9-camera layout with a camera gone offline: its placeholder, the others play.
        blockingCallFromThread(reactor, stop_camera)
        opened = time.monotonic()
        page.goto(base + "/#/grid/9")
        page.wait_for_selector("#grid.layout-9")
        page.wait_for_function(f"() => {FRAMES}.length === 8 && {FRAMES}.every(n => n > 0)", timeout=30000)
        out["grid9_first_pictures_s"] = round(time.monotonic() - opened, 2)
        page.wait_for_function(f"() => {FRAMES}.length === 8 && {FRAMES}.every(n => n > 10)", timeout=30000)
        out["grid9_states"] = page.evaluate(
            "[...document.querySelectorAll('#grid .tile')].map(t => t.dataset.state)")
        out["grid9_offline"] = page.evaluate(
            "[...document.querySelectorAll('#grid .tile.offline')].map(t => [t.dataset.devId,"
            " t.querySelector('.tile-offline').textContent, !!t.querySelector('video')])")
        out["grid9_tiles"] = page.evaluate("document.querySelectorAll('#grid .tile').length")
        page.screenshot(path=os.path.join(shots, "grid-9.png"))
        # One camera's stream is lost: its tile says so, and the grid comes back by itself.
        tile = f"#grid .tile[data-dev-id='{CAMERAS[1]}']"
        blockingCallFromThread(reactor, stop_hub)
        page.wait_for_selector(f"{tile}[data-state='error']", timeout=10000)
        out["lost_text"] = page.text_content(f"{tile} .tile-state")
        page.wait_for_function(f"() => {{ const t = document.querySelector(\"{tile}\");"
                               " return t && t.dataset.state === 'playing'"
                               " && t.querySelector('video').getVideoPlaybackQuality().totalVideoFrames > 5; }",
                               timeout=20000)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=os.path.join(shots, "grid-9-phone.png"), full_page=True)
        out["phone9_columns"] = page.evaluate(
            "getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length")
        page.click("[data-layout='4']")
        page.wait_for_selector("#grid.layout-4")
        page.wait_for_function(f"() => {FRAMES}.length === 4 && {FRAMES}.every(n => n > 5)", timeout=20000)
        out["phone_columns"] = page.evaluate(
            "getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length")
        page.screenshot(path=os.path.join(shots, "grid-phone.png"), full_page=True)
        out["mux_requests_total"] = len([u for u in requests if "/live/mux.bin" in u])
        out["errors"] = errors
    return out


class WebGridTests(TestCase):
    timeout = 180

    async def setUp(self) -> None:  # type: ignore[override]
        if reason := missing_browser():
            raise SkipTest(reason)
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed")
        self.h, self.base = await start_live_portal(self, {dev: {} for dev in [*CAMERAS, LATE]})

    async def stop_camera(self) -> None:
        self.h.cameras[LATE].stop()
        await until(lambda: not self.h.platform.gateway.is_online(LATE), timeout=15)

    def stop_hub(self) -> None:
        self.h.factory.hubs[(CAMERAS[1], 0, 2)].stop("test: the camera's stream is lost")

    async def ffprobe(self, path: str, *extra: str) -> dict[str, Any]:
        result = await run(FFPROBE, ["-v", "error", "-print_format", "json", "-show_streams", "-show_format",
                                     *extra, path])
        self.assertEqual(result.code, 0, result.err)
        return json.loads(result.out)  # type: ignore[no-any-return]

    async def test_grid_and_controls(self) -> None:
        # The grid's first four tiles are the list's first four cameras: make them the four that stay online.
        http = http_client()
        login = await http.post(self.base + "/api/v1/session", json={"account": MOBILE, "password": PASSWORD})
        self.assertEqual(login.code, 200)
        await login.content()
        listed = await http.get(self.base + "/api/v1/devices", cookies={"ge_session": login.cookies()["ge_session"]})
        order = [d["devId"] for d in json.loads(await listed.content())["devices"]]
        self.assertEqual(sorted(order), sorted([*CAMERAS, LATE]))
        if LATE in order[:4]:
            raise SkipTest(f"the list's order puts {LATE} among the first four: {order}")

        downloads = os.path.abspath("downloads")
        os.makedirs(downloads, exist_ok=True)
        result = await deferToThread(in_browser, self.base, downloads, self.stop_camera, self.stop_hub)
        print(f"\ngrid in Chromium: {json.dumps({k: v for k, v in result.items() if k != 'errors'})}")

        # 4 tiles, sub streams, each one's frames grow, one mux.bin request and no live.mp4.
        before, after = result["grid4_frames"]
        self.assertEqual(len(after), 4)
        for n, m in zip(before, after, strict=True):
            self.assertGreater(m, n + 20, "every tile plays (25 fps for 2 s)")
        self.assertEqual([s for _, s, _ in result["grid4_streams"]], ["sub"] * 4)
        self.assertEqual([st for _, _, st in result["grid4_streams"]], ["playing"] * 4)
        self.assertEqual(result["grid4_sizes"], [[352, 288]] * 4)
        self.assertEqual(len(result["mux_requests"]), 1, result["mux_requests"])
        self.assertEqual(result["live_mp4_requests"], [])

        # The device page: opened by the tile; mute toggles video.muted.
        self.assertEqual(result["hash"], f"#/devices/{DEV}")
        self.assertEqual(result["muted"], [True, False, "false", True])
        self.assertEqual(result["fullscreen"], ["player", "退出全屏", "全屏"])

        # The snapshot: a JPEG named <devId>-<YYYYMMDD-HHMMSS>.jpg of the video's size.
        self.assertRegex(result["snapshot_name"], rf"^{DEV}-[0-9]{{8}}-[0-9]{{6}}\.jpg$")
        [picture] = (await self.ffprobe(result["snapshot"]))["streams"]
        self.assertEqual(picture["codec_name"], "mjpeg")
        self.assertEqual([picture["width"], picture["height"]], result["video_size"])
        self.assertEqual(result["video_size"], [1280, 720])

        # The local recording: an MP4 of ~3 s of H.264 at the main stream's size.
        self.assertRegex(result["recording_name"], rf"^{DEV}-[0-9]{{8}}-[0-9]{{6}}\.mp4$")
        self.assertRegex(result["record_time"] or "", r"00:0[2-4]")
        probed = await self.ffprobe(result["recording"], "-count_frames")
        [video] = [s for s in probed["streams"] if s["codec_type"] == "video"]
        self.assertEqual((video["codec_name"], video["width"], video["height"]), ("h264", 1280, 720))
        seconds = int(video["nb_read_frames"]) / 25
        span = float(video["duration"]) - float(video.get("start_time") or 0)
        self.assertLess(abs(float(video["start_time"])), 0.05, "the file starts at 0, not at the feed's clock")
        self.assertLess(abs(span - 3.0), 1.5, f"{span:.2f} s of video for a 3 s recording")
        print(f"recording: {seconds:.2f} s of video ({video['nb_read_frames']} frames at 25 fps), "
              f"format duration {probed['format'].get('duration')}, clicked for {result['recorded_s']:.2f} s")
        self.assertLess(abs(seconds - 3.0), 1.5, f"{seconds:.2f} s of pictures for a 3 s recording")
        if FFMPEG is not None:  # every picture decodes (the file starts at an IDR)
            decoded = await run(FFMPEG, ["-v", "error", "-i", result["recording"], "-f", "null", "-"])
            self.assertEqual((decoded.code, decoded.err.strip()), (0, ""))

        # The main/sub switch changes the stream.
        self.assertEqual(result["sub_size"], [352, 288])

        # 9 layout: the stopped camera is a placeholder (no video), the other four play.
        self.assertEqual(result["grid9_tiles"], 9)
        self.assertEqual(result["grid9_states"], ["playing"] * 8 + ["offline"])
        self.assertEqual(result["grid9_offline"], [[LATE, "摄像头离线", False]])
        self.assertEqual(result["lost_text"], "实时视频暂不可用")
        # Phone: 9 layout in one column, 4 layout 2x2.
        self.assertEqual(result["phone9_columns"], 1)
        self.assertEqual(result["phone_columns"], 2)
        self.assertEqual(result["mux_requests_total"], 4, "one request per grid shown (and one to recover)")
        self.assertEqual(result["errors"], [])
