"""The device list's pictures in Debian's Chromium (Playwright): log in on the portal and the online
camera's row shows its picture (a JPEG the platform decoded from the camera's stream, loaded and
drawn: ``naturalWidth > 0``), the offline camera's a placeholder.  On a phone-sized screen, with the
portal's strict CSP (a refused image or script is a console error, which fails the test).
The screenshot goes to ``_trial_temp/screenshots/device-list.png``."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from globaleye.sim.media.pattern import SUB_SIZE
from tests.browser import PageErrors, launched, log_in, screenshots, start_live_portal
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_OTHER_DEV as OTHER_DEV
from tests.util import PROXY_PASSWORD as PASSWORD
from tests.util import until

SECOND = "81300000013"


def device_list(base: str, pictures: bool = True) -> dict[str, Any]:
    """Log in, wait for the list's pictures, measure them and take the screenshot (a worker thread)."""
    out: dict[str, Any] = {}
    with launched() as browser:
        page = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844}).new_page()
        # Before the login the portal asks for its session (401) and the favicon (404): not errors
        # of the pictures; script errors and CSP refusals are.
        errors = PageErrors(page)
        log_in(page, base, MOBILE, PASSWORD)
        page.wait_for_selector(f"li[data-dev-id='{DEV}']")
        if not pictures:  # the platform cannot decode pictures (501): the list shows none
            page.wait_for_selector("#device-list.no-thumbs", timeout=20000)
            out["thumbs"] = page.evaluate("document.querySelectorAll('#device-list .thumb').length")
            out["errors"] = errors
            return out
        page.wait_for_function(f"() => {{ const i = document.querySelector(\"li[data-dev-id='{DEV}'] img\");"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=20000)
        out.update(page.evaluate(f"""() => {{
            const img = document.querySelector("li[data-dev-id='{DEV}'] img");
            const box = img.getBoundingClientRect();
            const off = document.querySelector("li[data-dev-id='{SECOND}'] .thumb");
            return {{natural: [img.naturalWidth, img.naturalHeight], alt: img.alt, loading: img.loading,
                     name: document.querySelector("li[data-dev-id='{DEV}'] .name").textContent,
                     src: img.getAttribute('src'), shown: [box.width, box.height],
                     offline_imgs: document.querySelectorAll("li[data-dev-id='{SECOND}'] img").length,
                     offline_text: off ? off.textContent : null,
                     page_width: document.documentElement.scrollWidth}};
        }}"""))
        folder = screenshots()
        page.screenshot(path=os.path.join(folder, "device-list.png"), full_page=True)
        out["errors"] = errors
    return out


class WebSnapshotPortalTests(TestCase):
    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        self.h, self.base = await start_live_portal(self, {DEV: {}, SECOND: {}, OTHER_DEV: {}})

    async def test_the_device_list_shows_the_online_cameras_picture(self) -> None:
        self.h.cameras[SECOND].stop()
        await until(lambda: not self.h.platform.gateway.is_online(SECOND))
        out = await deferToThread(device_list, self.base)
        self.assertEqual(out["errors"], [])
        self.assertEqual(tuple(out["natural"]), SUB_SIZE, out)
        self.assertIn("/snapshot.jpg?stream=sub", out["src"])
        self.assertEqual(out["alt"], out["name"])
        self.assertEqual(out["loading"], "lazy")
        self.assertGreater(out["shown"][0], 40)
        self.assertEqual(out["offline_imgs"], 0, "no picture asked of an offline camera")
        self.assertEqual(out["offline_text"], "离线")
        self.assertLessEqual(out["page_width"], 390, "no sideways scrolling on a phone")

    async def test_no_pictures_when_the_platform_cannot_decode(self) -> None:
        """Without PyAV the snapshot route answers 501: the list drops its pictures, and the page
        has no error (the 501 is asked once, by fetch)."""
        from globaleye.web import snapshot

        self.patch(snapshot, "available", lambda: "PyAV is not installed (pip install '.[web]')")
        out = await deferToThread(device_list, self.base, False)
        self.assertEqual(out["thumbs"], 0)
        self.assertEqual(out["errors"], [])
