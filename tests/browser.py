"""The browser harness of the portal's tests (tests/interop/test_web_*.py, test_netns_browser.py): Debian's
Chromium (/usr/bin/chromium, headless) driven by Playwright for Python's synchronous API in a worker thread
(deferToThread), so that Trial's reactor goes on serving the pages, the API and the video while a script
clicks.  One place for the launch arguments, the skip reasons, the errors a page may not have, the
screenshots folder, the portal's login form, the platforms the portal runs on (PortalPlatform for its
pages, start_live_portal with the video roles) and the test pages of their own that serve the player
(put_test_page, LivePage), so that each test module says only what it checks.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web import resource, static
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.device.protocol import messages as m
from globaleye.platform.config import parse_config
from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.testing import platform_config, start_platform
from globaleye.users.accounts import RecordingSmsSender
from globaleye.web.live import LiveUnavailable, LiveVideo, write_problem
from tests.util import PROXY_DEV, PROXY_MOBILE, ProxyHarness, http_client, until

CHROMIUM = "/usr/bin/chromium"
#: The house's launch arguments (AGENTS rules): no sandbox (containers), no GPU, nothing fetched in the background.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
#: For the pages that play sound (a muted video plays without it): the live and playback test pages.
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"
#: The portal's player module, served by the test pages of their own (test_web_live, test_web_playback...).
PLAYER = Path(__file__).resolve().parents[1] / "globaleye" / "web" / "static" / "js" / "player.js"
#: The portal's Content-Security-Policy (no inline script), which those test pages carry too.
CSP = b"default-src 'self'; script-src 'self'; media-src 'self' blob:; style-src 'self'; object-src 'none'"


def missing_browser(*modules: str) -> str | None:
    """Why a browser test cannot run here (for SkipTest), or None: Chromium absent, Playwright for Python
    (or one of *modules*, e.g. ``axe_playwright_python``) not importable."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not installed (apt-get install -y chromium)"
    for module in ("playwright.sync_api", *modules):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed (pip install -e .[test])"
    return None


@contextmanager
def launched(*extra_args: str, executable: str = CHROMIUM, launch_timeout: float | None = None) -> Iterator[Any]:
    """Headless Chromium for the calling (worker) thread, closed on the way out whatever happened.
    *executable* may be a wrapper script (test_netns_browser runs Chromium inside a network namespace,
    with a longer *launch_timeout* in ms); *extra_args* go after ARGS (e.g. AUTOPLAY)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=[*ARGS, *extra_args],
                                             timeout=launch_timeout)
        try:
            yield browser
        finally:
            browser.close()


def run_in_browser(script: Callable[[Any], Any]) -> Deferred[Any]:
    """Run *script(browser)* in a worker thread against headless Chromium; its result, or its exception."""

    def run() -> Any:
        with launched() as browser:
            return script(browser)

    return threads.deferToThread(run)


def failed_load(text: str) -> bool:
    """The console lines that are not errors of a page: the portal asks for its session on load (401 before
    the login) and for the favicon (404); Chromium logs both as "Failed to load resource"."""
    return text.startswith("Failed to load resource")


class PageErrors(list[str]):
    """What a page says went wrong: its uncaught exceptions and its console errors (script errors, CSP
    refusals), but for those *ignore* says are not the page's own (by default the failed loads above)."""

    def __init__(self, page: Any, ignore: Callable[[str], bool] = failed_load) -> None:
        super().__init__()
        page.on("pageerror", lambda e: self.append(str(e)))
        page.on("console", lambda m: self.append(m.text) if m.type == "error" and not ignore(m.text) else None)


def screenshots() -> str:
    """``_trial_temp/screenshots`` (Trial runs in ``_trial_temp``; README, Development)."""
    folder = os.path.abspath("screenshots")
    os.makedirs(folder, exist_ok=True)
    return folder


def wait_for(condition: Any, timeout: float = 10.0) -> Any:
    """Poll *condition* from the browser's thread (it reads what the reactor thread writes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def log_in(page: Any, base: str, account: str, password: str, timeout: float | None = None) -> None:
    """Log in on the portal's form (its fields are named account and password) and land on the device list;
    *timeout* (ms) for the page's first load, where the network is slow (test_netns_browser)."""
    page.goto(base + "/#/login", timeout=timeout)  # None: Playwright's default
    page.wait_for_selector("#login-form", timeout=timeout)
    page.fill("#login-form [name=account]", account)
    page.fill("#login-form [name=password]", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/#/devices")


class Bytes(resource.Resource):
    """A test page's own file (its HTML, its script), served with the portal's CSP."""

    isLeaf = True

    def __init__(self, body: bytes, kind: bytes) -> None:
        super().__init__()
        self.body, self.kind = body, kind

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        request.setHeader(b"content-type", self.kind)
        request.setHeader(b"content-security-policy", CSP)
        return self.body


def put_test_page(root: resource.Resource, page: bytes, page_js: bytes) -> None:
    """A test page of its own under *root*: ``/`` its HTML, ``/page.js`` its script, ``/js/player.js`` the
    portal's player, all with the portal's CSP but the player (a static file, as the portal serves it)."""
    root.putChild(b"", Bytes(page, b"text/html; charset=utf-8"))
    root.putChild(b"page.js", Bytes(page_js, b"text/javascript"))
    js = resource.Resource()
    js.putChild(b"player.js", static.File(str(PLAYER), defaultType="text/javascript"))
    root.putChild(b"js", js)


async def start_live_portal(case: TestCase, cameras: dict[str, dict[str, Any]]) -> tuple[ProxyHarness, str]:
    """The platform with the portal and the video roles (gateway, http, turn, rtsp, web) and simulated
    *cameras* (tests.util.ProxyHarness: PROXY_MOBILE's, password PROXY_PASSWORD); and the portal's address."""
    harness = ProxyHarness(case)
    harness.config = parse_config(platform_config(
        "gateway, http, turn, rtsp, web", public_host=None, cms_password=None, turn={"relay_ports": "53000-53999"},
        rtsp="linger = 0.5\nudp_timeout = 5\nconnect_timeout = 2"))
    await harness.start(cameras)
    return harness, f"http://127.0.0.1:{harness.platform.port_of('web')}"


class LivePage(resource.Resource):
    """The live view's stream for a test page of its own: the account fixed (PROXY_MOBILE), the camera
    ``?dev=`` (PROXY_DEV by default) and ``?stream=`` (1, the main one); a refusal as problem+json."""

    isLeaf = True

    def __init__(self, live: LiveVideo) -> None:
        super().__init__()
        self.live = live

    def render_GET(self, request: Any) -> Any:  # noqa: N802
        dev = (request.args.get(b"dev") or [b""])[0].decode() or PROXY_DEV
        stream = int((request.args.get(b"stream") or [b"1"])[0])
        try:
            return self.live.render(request, PROXY_MOBILE, dev, 0, stream)
        except LiveUnavailable as e:
            write_problem(request, e)
            return b""


class PortalPlatform(TestCase):
    """A base for the portal's browser tests: a real platform with the web role (gateway, http, group, web),
    an SMS sender that records the codes, simulated cameras registered through the real gateway, and
    accounts made through the JSON API.  Sets ``self.platform``, ``self.sms`` and ``self.base``."""

    async def start_portal(self, *modules: str, gateway: dict[str, Any] | None = None,
                           soap: dict[str, Any] | None = None) -> None:
        """Skip without a browser (or *modules*); else start the platform."""
        reason = missing_browser(*modules)
        if reason:
            raise SkipTest(reason)
        config = platform_config("gateway, http, group, web", gateway=gateway or {"command_timeout": 2},
                                 soap={"sms_interval": 0.01, **(soap or {})})
        self.platform: PlatformService = start_platform(self, config, reactor)
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        self.base = f"http://127.0.0.1:{self.platform.port_of('web')}"

    async def start_settings_portal(self, owner: str, password: str, camera: str, no_storage: str,
                                    nvr: str) -> None:
        """The settings pages' platform (test_web_settings_portal, test_web_pictures_portal): a firmware
        offered (FTP), *owner*'s account with *camera*, *no_storage* (no local nor cloud storage in its
        32H report) and *nvr*, in ``self.cameras``."""
        await self.start_portal(gateway={"command_timeout": 3},
                                soap={"firmware": "* V2.0.0 ftp://upg:pw@198.51.100.9:2121/fw/V2.0.0.bin"})
        self.cameras = {dev_id: await self.start_camera(dev_id, **extra) for dev_id, extra in (
            (camera, {}), (no_storage, {"local_store_flag": False, "e_store_flag": False}),
            (nvr, {"dev_type": m.DevType.NVR}))}
        await self.sign_up(owner, password, camera, no_storage, nvr)

    async def start_camera(self, dev_id: str, ability: bool = True, **state: Any) -> SimulatedCamera:
        """A simulated camera online on the platform (and, with *ability*, its 32H report stored)."""
        base = f"http://127.0.0.1:{self.platform.port_of('http')}"
        camera = SimulatedCamera(
            CameraState.for_device(dev_id, device_key("test", dev_id), rtsp_local_port=8554, **state), reactor,
            register_url=base + "/register", timing=Timing(backoff_initial=0.05, backoff_max=0.2),
            rng=random.Random(1), http=http_client())
        camera.start()
        self.addCleanup(camera.stop)
        await camera.went_online
        await until(lambda: self.platform.gateway.is_online(dev_id))
        while ability and await self.platform.store.get_ability(dev_id) is None:
            await until(lambda: True, step=0.02)
        return camera

    async def sign_up(self, account: str, password: str, *cameras: str) -> None:
        """An account made through the API (§8.1 code, §8.2), with *cameras* added."""
        http = http_client()
        base = self.base + "/api/v1"
        await (await http.post(base + "/sms-codes", json={"account": account})).content()
        await (await http.post(base + "/accounts", json={"account": account, "password": password,
                                                         "smsCode": self.sms.last_code(account)})).content()
        login = await http.post(base + "/session", json={"account": account, "password": password})
        headers: dict[bytes | str, bytes | str] = {"X-CSRF-Token": (await login.json())["csrfToken"]}
        cookie = login.cookies()["ge_session"]
        for dev_id in cameras:
            added = await http.post(base + "/devices", json={"devId": dev_id, "devKey": device_key("test", dev_id)},
                                    headers=headers, cookies={"ge_session": cookie})
            self.assertEqual(added.code, 201)
            await added.content()


# The portal's JSON API as a person's HTTP client (tests/integration/test_web_*.py) ---------------

#: The password the API tests' accounts sign up with.
PASSWORD = "correct horse"


class Answer:
    def __init__(self, code: int, headers: Any, body: bytes) -> None:
        self.code, self.headers, self.body = code, headers, body

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Browser:
    """One person's HTTP client: the ge_session cookie kept as a browser would, the CSRF token sent."""

    def __init__(self, base: str, source: str | None = None) -> None:
        self.base = base
        self.http = http_client() if source is None else HTTPClient(Agent(
            reactor, bindAddress=(source, 0), pool=HTTPConnectionPool(reactor, persistent=False)))
        self.cookie: str | None = None
        self.csrf: str | None = None
        self.set_cookies: list[str] = []

    async def request(self, method: str, path: str, body: Any = None, *, csrf: bool | str = True,
                      headers: dict[str, str] | None = None, raw: bytes | None = None) -> Answer:
        sent: dict[str, list[str]] = {k: [v] for k, v in (headers or {}).items()}
        if self.cookie:
            sent["Cookie"] = [f"ge_session={self.cookie}"]
        if csrf is True and self.csrf:
            sent["X-CSRF-Token"] = [self.csrf]
        elif isinstance(csrf, str):
            sent["X-CSRF-Token"] = [csrf]
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            sent["Content-Type"] = ["application/json"]
        response = await self.http.request(method, self.base + path, headers=sent, data=data)
        content = await response.content()
        for line in response.headers.getRawHeaders("set-cookie") or []:
            self.set_cookies.append(line)
            match = re.match(r"ge_session=([^;]*)", line)
            if match:
                self.cookie = match.group(1) or None
        return Answer(response.code, response.headers, content)

    async def login(self, account: str, password: str = PASSWORD) -> Answer:
        answer = await self.request("POST", "/api/v1/session", {"account": account, "password": password})
        if answer.code == 200:
            self.csrf = answer.json()["csrfToken"]
        return answer
