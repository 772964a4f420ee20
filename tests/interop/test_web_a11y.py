"""An accessibility audit of the portal (issue 11: "keyboard and screen-reader labels"): axe-core (bundled
by axe-playwright-python, no npm and no CDN) run in Debian's Chromium (/usr/bin/chromium, headless, driven
by Playwright for Python) on each main page, against a real platform with the web role and simulated
cameras; and the keyboard: Tab through the login form in order, Enter submits, the PTZ pad's buttons are
reached by Tab and pressed with Enter and Space (the simulated camera's PTZ log shows it).

No page may have a ``serious`` or ``critical`` axe violation; the lesser ones are printed (the test's
log) to be read, not hidden.
"""

from __future__ import annotations

from typing import Any

from tests.browser import PortalPlatform, log_in, run_in_browser, wait_for

OWNER, PASSWORD = "13300000501", "correct horse"
CAMERA = "81100000501"
BLOCKING = ("serious", "critical")
#: WCAG 2.0-2.2 A and AA (2.2 adds the 24 px target size, which matters on a phone) and axe's best practices.
AXE_OPTIONS = {"resultTypes": ["violations", "incomplete"], "runOnly": {"type": "tag", "values": [
    "wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]}}


def audit(page: Any, name: str, found: dict[str, list[dict[str, Any]]]) -> None:
    """Run axe on *page* as it is now; keep its violations under *name* and print what axe could not
    decide ("incomplete": text over a video's pictures, a camera's video without captions), for a person."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=AXE_OPTIONS).response
    found[name] = [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                    "nodes": [n["target"] for n in v["nodes"]][:5]} for v in results["violations"]]
    for v in results["incomplete"]:
        print(f"a11y {name}: to review: {v['impact']} {v['id']}: {v['help']} {[n['target'] for n in v['nodes']][:5]}")


class WebA11yTests(PortalPlatform):
    timeout = 240

    async def setUp(self) -> None:  # type: ignore[override]
        await self.start_portal("axe_playwright_python")
        self.camera = await self.start_camera(CAMERA)
        await self.sign_up(OWNER, PASSWORD, CAMERA)

    async def test_no_serious_or_critical_violation_on_the_main_pages(self) -> None:
        base = self.base
        recording = self.camera.state.recordings(0)[0].file_name

        titles: dict[str, str] = {}
        seen_region: list[str] = []

        def script(browser: Any) -> dict[str, list[dict[str, Any]]]:
            found: dict[str, list[dict[str, Any]]] = {}
            for locale, name in (("zh-CN", "login zh-CN"), ("en-US", "login en")):
                context = browser.new_context(locale=locale)
                page = context.new_page()
                page.goto(base + "/#/login")
                page.wait_for_selector("#login-form")
                audit(page, name, found)
                if locale == "zh-CN":  # the error state: a wrong password said on the page
                    page.locator("#login-form input[name=account]").fill(OWNER)
                    page.locator("#login-form input[name=password]").fill("wrong password")
                    page.click("#login-form button[type=submit]")
                    page.wait_for_selector("#notice.error:not([hidden])")
                    # The live region around the notice was there before its words (so they are read out).
                    seen_region.append(page.evaluate("document.getElementById('notice').parentElement.getAttribute('role')"))
                    audit(page, "login error", found)
                context.close()
            context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
            page = context.new_page()
            page.goto(base + "/#/signup")
            page.wait_for_selector("form")
            audit(page, "sign-up", found)
            log_in(page, base, OWNER, PASSWORD)
            page.wait_for_selector(f"li[data-dev-id='{CAMERA}']")
            audit(page, "devices", found)
            for name, hash_, ready in (
                    ("device", f"#/devices/{CAMERA}", "#settings-link"),
                    ("settings", f"#/devices/{CAMERA}/settings", "#picture-policies li"),
                    ("recordings", f"#/devices/{CAMERA}/recordings", "#timeline[data-files]"),
                    ("alarms", "#/alarms", "main h1"),
                    ("grid", "#/grid", "main h1"),
                    ("playback", f"#/devices/{CAMERA}/recordings/0/{recording}", "main video")):
                page.goto(base + "/" + hash_)
                page.wait_for_selector(ready, timeout=20000)
                page.wait_for_timeout(500)  # the page's own loads settle (statuses, lists)
                audit(page, name, found)
                titles[name] = page.title()
                if name == "settings":  # the in-page confirmation of a reboot
                    page.click("#reboot")
                    page.wait_for_selector("#reboot-confirm:not([hidden])")
                    audit(page, "settings confirm", found)
            # The device page in English on a desktop.
            page.click("#lang-switch")
            page.set_viewport_size({"width": 1280, "height": 800})
            page.goto(base + f"/#/devices/{CAMERA}")
            page.wait_for_selector("#settings-link")
            page.wait_for_timeout(500)
            audit(page, "device en", found)
            context.close()
            return found

        found = await run_in_browser(script)
        blocking = {}
        for name, violations in found.items():
            for v in violations:
                print(f"a11y {name}: {v['impact']} {v['id']}: {v['help']} {v['nodes']}")
            if [v for v in violations if v["impact"] in BLOCKING]:
                blocking[name] = [v for v in violations if v["impact"] in BLOCKING]
        self.assertEqual(len(found), 13, sorted(found))
        self.assertEqual(blocking, {})
        self.assertEqual(seen_region, ["status"])
        print("a11y titles:", titles)
        # Each page its own title (WCAG 2.4.2), the page's heading then the portal's name.
        self.assertEqual(len(set(titles.values())), len(titles), titles)
        self.assertTrue(all(title.endswith(" · 手机看店") for title in titles.values()), titles)

    async def test_keyboard_login_and_ptz_pad(self) -> None:
        base = self.base
        state = self.camera.state

        def script(browser: Any) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            context = browser.new_context(locale="zh-CN")
            page = context.new_page()
            page.goto(base + "/#/login")
            page.wait_for_selector("#login-form input[name=account]")
            # Tab from the top of the page: the form's fields and its button in order.
            page.locator("body").focus()
            order = []
            for _ in range(12):
                page.keyboard.press("Tab")
                order.append(page.evaluate(
                    "() => { const e = document.activeElement; return e.closest('#login-form') ? "
                    "(e.name || e.type) : e.id || e.tagName }"))
            seen["order"] = order
            page.locator("#login-form input[name=account]").focus()
            page.keyboard.type(OWNER)
            page.keyboard.press("Tab")
            page.keyboard.type(PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url("**/#/devices")
            page.wait_for_selector(f"li[data-dev-id='{CAMERA}']")
            # The new page has the focus (its <main>): a screen reader reads it, Tab goes on from there.
            seen["focus_after_login"] = page.evaluate("document.activeElement.id")
            seen["lang_zh"] = page.evaluate("document.documentElement.lang")
            page.click("#lang-switch")
            page.wait_for_function("document.documentElement.lang === 'en'")
            seen["lang_en"] = page.evaluate("document.documentElement.lang")
            page.goto(base + f"/#/devices/{CAMERA}")
            page.wait_for_selector(".ptz button")
            names = page.locator(".ptz button").evaluate_all(
                "l => l.map(b => b.getAttribute('aria-label') || b.textContent.trim())")
            seen["ptz_names"] = names
            # Tab until the pad's first button has the focus; then Enter on it, Space on the next.
            reached = []
            for _ in range(60):
                page.keyboard.press("Tab")
                inside = page.evaluate("() => Boolean(document.activeElement.closest('.ptz'))")
                if inside:
                    reached.append(page.evaluate("() => document.activeElement.dataset.direction || "
                                                 "document.activeElement.getAttribute('aria-label')"))
                    if len(reached) == 1:
                        page.keyboard.press("Enter")
                        wait_for(lambda: len(state.ptz_log) >= 1)
                    elif len(reached) == 2:
                        page.keyboard.press("Space")
                        wait_for(lambda: len(state.ptz_log) >= 2)
                        break
            seen["reached"] = reached
            context.close()
            return seen

        seen = await run_in_browser(script)
        login = [item for item in seen["order"] if item in ("account", "password", "submit")]
        self.assertEqual(login[:3], ["account", "password", "submit"], seen["order"])
        self.assertEqual(seen["focus_after_login"], "view")
        self.assertEqual((seen["lang_zh"], seen["lang_en"]), ("zh-CN", "en"))
        self.assertEqual(len(seen["reached"]), 2, seen)
        self.assertGreaterEqual(len(self.camera.state.ptz_log), 2)
        self.assertTrue(all(seen["ptz_names"]), seen["ptz_names"])
