"""The web portal's JSON API (/api/v1) over real loopback: a real platform with the web role, a
simulated camera, treq as the browser's HTTP client (cookies handled by hand, so their flags are seen).

The routes are taken from the router's own table (globaleye.web.routes.ROUTES): the IDOR and CSRF
checks and the OpenAPI check cover a route added later without a new test.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sys
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.testing import platform_config, start_platform
from globaleye.users.accounts import RecordingSmsSender
from globaleye.web.routes import ROUTES, Route
from globaleye.web.site import CSP
from tests.browser import PASSWORD, Answer, Browser
from tests.util import ROOT, http_client, until

OWNER, STRANGER = "13300000101", "13300000102"
CAMERA = "81100000101"
ABSENT = "81100000999"


def path_of(route: Route, dev_id: str, channel: int = 0, account: str = STRANGER) -> str:
    return "/api/v1" + route.path.replace("{devId}", dev_id).replace("{channel}", str(channel)) \
        .replace("{account}", account)


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (its SAN); (cert, key) paths."""
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "web.pem"), os.path.join(directory, "web.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class _Twistd(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.port: Deferred[int] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.output += data
        match = re.search(rb"web listening on 127\.0\.0\.1:(\d+)", self.output)
        if match and not self.port.called:
            self.port.callback(int(match.group(1)))

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.ended.callback(None)


class WebRoleTests(TestCase):
    timeout = 60

    async def test_twistd_runs_the_web_role(self) -> None:
        """``twistd globaleye`` with the web role listens, serves the portal and the API, and stops cleanly."""
        workdir = Path(self.mktemp()).absolute()
        workdir.mkdir()
        config = workdir / "globaleye.ini"
        config.write_text(platform_config("gateway, http, group, web", database=None, data_dir="state"),
                          encoding="utf-8")
        twistd = _Twistd()
        process = reactor.spawnProcess(
            twistd, sys.executable, [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                                     "--pidfile=", "--logfile=-", "globaleye", "--config", str(config)],
            env=dict(os.environ, PYTHONPATH=str(ROOT)), path=str(workdir))
        try:
            timer = reactor.callLater(20, twistd.port.cancel)
            port = await twistd.port
            timer.cancel()
            browser = Browser(f"http://127.0.0.1:{port}")
            page = await browser.request("GET", "/")
            self.assertEqual(page.code, 200)
            self.assertIn(b'src="app.js"', page.body)
            self.assertEqual(page.header("content-security-policy"), CSP)
            document = await browser.request("GET", "/api/v1/openapi.json")
            self.assertEqual(document.json()["openapi"], "3.1.0")
        finally:
            process.signalProcess(signal.SIGTERM)
            await twistd.ended
        self.assertIn(b"web stopped listening", twistd.output)


class WebTlsTests(TestCase):
    timeout = 30

    async def test_secure_cookie_over_tls(self) -> None:
        """[web] tls_port: the same portal over HTTPS (the platform's TLS profile), its cookie marked Secure."""
        from twisted.internet.ssl import Certificate
        from twisted.web.client import BrowserLikePolicyForHTTPS

        cert, key = make_certificate(self.mktemp())
        config = platform_config("gateway, http, group, web", soap={"sms_interval": 0.01},
                                 web={"tls_port": 0, "tls_cert": cert, "tls_key": key})
        platform = start_platform(self, config, reactor)
        sms = RecordingSmsSender()
        platform.accounts.sms_sender = sms
        with open(cert, "rb") as f:
            policy = BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(f.read()))
        browser = Browser(f"https://127.0.0.1:{platform.port_of('webs')}")
        browser.http = HTTPClient(Agent(reactor, contextFactory=policy,
                                        pool=HTTPConnectionPool(reactor, persistent=False)))
        self.assertEqual((await browser.request("POST", "/api/v1/sms-codes", {"account": OWNER})).code, 202)
        self.assertEqual((await browser.request("POST", "/api/v1/accounts", {
            "account": OWNER, "password": PASSWORD, "smsCode": sms.last_code(OWNER)})).code, 201)
        answer = await browser.login(OWNER)
        self.assertEqual(answer.code, 200, answer.body)
        self.assertEqual(answer.header("content-security-policy"), CSP)
        [line] = [c for c in browser.set_cookies if c.startswith("ge_session=")]
        attributes = {part.strip().lower() for part in line.split(";")[1:]}
        self.assertEqual(attributes, {"path=/", "httponly", "samesite=strict", "secure"})
        # Origin is https://host:port there: the plain-HTTP origin of the same host is another one.
        refused = await browser.request("POST", "/api/v1/devices", {"devId": CAMERA, "devKey": "k"},
                                        headers={"Origin": f"http://127.0.0.1:{platform.port_of('webs')}"})
        self.assertEqual(refused.code, 403)
        self.assertEqual((await browser.request("GET", "/api/v1/session")).code, 200)


class WebApiTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        config = platform_config("gateway, http, group, web", gateway={"command_timeout": 2},
                                 soap={"sms_interval": 0.01, "login_slowdown_after": 50, "login_lockout_after": 3})
        self.platform: PlatformService = start_platform(self, config, reactor)
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        self.base = f"http://127.0.0.1:{self.platform.port_of('web')}"

    async def camera(self, dev_id: str = CAMERA) -> SimulatedCamera:
        base = f"http://127.0.0.1:{self.platform.port_of('http')}"
        camera = SimulatedCamera(
            CameraState.for_device(dev_id, device_key("test", dev_id), rtsp_local_port=8554), reactor,
            register_url=base + "/register", timing=Timing(backoff_initial=0.05, backoff_max=0.2),
            rng=random.Random(1), http=http_client())
        camera.start()
        self.addCleanup(camera.stop)
        await camera.went_online
        await until(lambda: self.platform.gateway.is_online(dev_id))
        while await self.platform.store.get_ability(dev_id) is None:
            await until(lambda: True, step=0.02)
        return camera

    async def signed_up(self, account: str) -> Browser:
        """A person who signed up through the API (§8.1 code, §8.2) and logged in."""
        browser = Browser(self.base)
        sent = await browser.request("POST", "/api/v1/sms-codes", {"account": account})
        self.assertEqual(sent.code, 202, sent.body)
        created = await browser.request("POST", "/api/v1/accounts", {
            "account": account, "password": PASSWORD, "smsCode": self.sms.last_code(account)})
        self.assertEqual(created.code, 201, created.body)
        self.assertEqual((await browser.login(account)).code, 200)
        return browser

    def assertProblem(self, answer: Answer, status: int, kind: str) -> dict[str, Any]:  # noqa: N802
        self.assertEqual(answer.code, status, answer.body)
        self.assertEqual(answer.header("content-type"), "application/problem+json")
        problem = answer.json()
        self.assertEqual((problem["status"], problem["type"]), (status, f"/api/v1/problems/{kind}"))
        self.assertTrue(problem["title"])
        return dict(problem)

    # Sessions ----------------------------------------------------------------------------------

    async def test_login_sets_the_cookie_with_its_flags(self) -> None:
        browser = await self.signed_up(OWNER)
        [line] = [c for c in browser.set_cookies if c.startswith("ge_session=") and len(c.split(";")[0]) > 11]
        attributes = {part.strip().lower() for part in line.split(";")[1:]}
        self.assertEqual(attributes, {"path=/", "httponly", "samesite=strict"}, "no Secure over plain HTTP")
        who = await browser.request("GET", "/api/v1/session")
        self.assertEqual(who.code, 200)
        self.assertEqual(who.json(), {"account": OWNER, "csrfToken": browser.csrf})
        self.assertRegex(browser.csrf or "", "^[0-9a-f]{64}$")
        # The cookie is the platform's LoginSession: the SOAP face's sessions know it.
        account, token = (browser.cookie or "").split(".", 1)
        self.assertIsNotNone(self.platform.accounts.authenticate(account, token))
        # Logout ends it there too, and clears the cookie.
        self.assertEqual((await browser.request("DELETE", "/api/v1/session")).code, 204)
        self.assertIsNone(browser.cookie)
        self.assertIsNone(self.platform.accounts.authenticate(account, token))
        browser.cookie = f"{account}.{token}"
        self.assertProblem(await browser.request("GET", "/api/v1/session"), 401, "session-expired")

    async def test_wrong_password_and_unknown_account_are_the_same_401(self) -> None:
        await self.signed_up(OWNER)
        stranger = Browser(self.base)
        wrong = self.assertProblem(await stranger.login(OWNER, "wrong password"), 401, "login-failed")
        unknown = self.assertProblem(await stranger.login("13300000199", PASSWORD), 401, "login-failed")
        self.assertEqual(wrong, unknown)
        self.assertIsNone(stranger.cookie)
        self.assertProblem(await stranger.request("GET", "/api/v1/session"), 401, "session-expired")

    async def test_locked_account_is_423_with_retry_after(self) -> None:
        """[soap] login_lockout_after = 3 here: three wrong passwords (from one address, its whole share
        of the account's count) lock the account as a SOAP login would; then even the right password, from
        another address, is 423 with the lock's Retry-After."""
        await self.signed_up(OWNER)
        guesser = Browser(self.base, source="127.0.0.2")
        for _ in range(3):
            self.assertProblem(await guesser.login(OWNER, "wrong password"), 401, "login-failed")
        self.assertProblem(await guesser.login(OWNER, PASSWORD), 423, "account-locked")
        owner = Browser(self.base, source="127.0.0.3")
        locked = await owner.login(OWNER, PASSWORD)
        self.assertProblem(locked, 423, "account-locked")
        self.assertGreater(int(locked.header("retry-after") or "0"), 800)  # [soap] login_lockout 900 s
        self.assertIsNone(owner.cookie)

    async def test_throttled_address_is_429_with_retry_after(self) -> None:
        """The key guard's budget of one address ([keyguard] source_free, 10 failed checks over every
        account): beyond it a login from there is 429 with Retry-After, the right password included,
        while the account itself stays usable from elsewhere."""
        await self.signed_up(OWNER)
        guesser = Browser(self.base, source="127.0.0.4")
        for n in range(10):
            self.assertProblem(await guesser.login(f"1330000030{n}", PASSWORD), 401, "login-failed")
        refused = await guesser.login(OWNER, PASSWORD)
        self.assertProblem(refused, 429, "too-many-attempts")
        self.assertGreaterEqual(int(refused.header("retry-after") or "0"), 1)
        self.assertIsNone(guesser.cookie)
        self.assertEqual((await Browser(self.base, source="127.0.0.5").login(OWNER)).code, 200)

    async def test_sign_up_refusals(self) -> None:
        browser = Browser(self.base)
        self.assertEqual((await browser.request("POST", "/api/v1/sms-codes", {"account": OWNER})).code, 202)
        code = self.sms.last_code(OWNER)
        wrong = "000000" if code != "000000" else "111111"
        self.assertProblem(await browser.request("POST", "/api/v1/accounts", {
            "account": OWNER, "password": PASSWORD, "smsCode": wrong}), 422, "wrong-sms-code")
        self.assertEqual((await browser.request("POST", "/api/v1/accounts", {
            "account": OWNER, "password": PASSWORD, "smsCode": code})).code, 201)
        self.assertProblem(await browser.request("POST", "/api/v1/sms-codes", {"account": "12345"}), 429,
                           "sms-not-sent")

    # CSRF and Origin ---------------------------------------------------------------------------

    async def test_csrf_missing_or_wrong_is_403_and_changes_nothing(self) -> None:
        await self.camera()
        browser = await self.signed_up(OWNER)
        add = {"devId": CAMERA, "devKey": device_key("test", CAMERA)}
        self.assertProblem(await browser.request("POST", "/api/v1/devices", add, csrf=False), 403, "csrf")
        self.assertProblem(await browser.request("POST", "/api/v1/devices", add, csrf="0" * 64), 403, "csrf")
        self.assertEqual(await self.platform.store.list_bindings(OWNER), [])
        self.assertProblem(await browser.request("POST", "/api/v1/devices", add,
                                                 headers={"Origin": "http://evil.example"}), 403, "origin")
        self.assertEqual(await self.platform.store.list_bindings(OWNER), [])
        own = await browser.request("POST", "/api/v1/devices", add, headers={"Origin": self.base})
        self.assertEqual(own.code, 201, own.body)
        self.assertEqual([b.dev_id for b in await self.platform.store.list_bindings(OWNER)], [CAMERA])
        # Every state-changing route with a session refuses a request without the token, before anything.
        for route in ROUTES:
            if route.session and route.csrf and route.method != "GET":
                answer = await browser.request(route.method, path_of(route, CAMERA), route.example, csrf=False)
                self.assertProblem(answer, 403, "csrf")
        self.assertEqual([b.dev_id for b in await self.platform.store.list_bindings(OWNER)], [CAMERA])
        self.assertEqual((await browser.request("GET", "/api/v1/session")).code, 200, "the session lives on")
        # Login from another origin is refused too (no login CSRF).
        self.assertProblem(await Browser(self.base).request(
            "POST", "/api/v1/session", {"account": OWNER, "password": PASSWORD},
            headers={"Origin": "http://evil.example"}), 403, "origin")

    # Devices -----------------------------------------------------------------------------------

    async def test_devices_list_detail_ptz_alarms_remove(self) -> None:
        camera = await self.camera()
        browser = await self.signed_up(OWNER)
        key = device_key("test", CAMERA)
        self.assertProblem(await browser.request("POST", "/api/v1/devices", {"devId": CAMERA, "devKey": "nope"}),
                           422, "wrong-dev-key")
        self.assertProblem(await browser.request("POST", "/api/v1/devices", {"devId": ABSENT, "devKey": key}),
                           422, "unknown-camera")
        self.assertEqual((await browser.request("POST", "/api/v1/devices", {"devId": CAMERA, "devKey": key})).code,
                         201)
        listed = await browser.request("GET", "/api/v1/devices")
        self.assertEqual(listed.code, 200)
        [device] = listed.json()["devices"]
        self.assertEqual((device["devId"], device["online"], device["shared"], device["abilitiesKnown"]),
                         (CAMERA, True, False, True))
        self.assertEqual(device["abilities"], {"ptz": True, "streams": ["main", "sub"]})
        self.assertEqual(device["channels"], [{"channel": 0, "name": camera.state.model}])
        detail = await browser.request("GET", f"/api/v1/devices/{CAMERA}")
        self.assertEqual(detail.json(), device)
        # PTZ reaches the simulated camera (its PTZ log).
        turned = await browser.request("POST", f"/api/v1/devices/{CAMERA}/ptz", {"direction": "left"})
        self.assertEqual(turned.code, 204, turned.body)
        self.assertEqual([e.direction.name for e in camera.state.ptz_log], ["LEFT"])
        self.assertProblem(await browser.request("POST", f"/api/v1/devices/{CAMERA}/ptz", {"direction": "spin"}),
                           400, "invalid-request")
        alarms = await browser.request("GET", f"/api/v1/devices/{CAMERA}/alarms")
        self.assertEqual(alarms.code, 200, alarms.body)
        self.assertEqual((alarms.json()["page"], type(alarms.json()["alarms"])), (1, list))
        # Live video needs the rtsp role, which this platform does not run.
        live = await browser.request("GET", f"/api/v1/devices/{CAMERA}/channels/0/live.mp4?stream=sub")
        self.assertProblem(live, 503, "live-unavailable")
        self.assertProblem(await browser.request("GET", f"/api/v1/devices/{CAMERA}/channels/0/live.mp4?stream=x"),
                           400, "invalid-request")
        # Removal needs the DevKey; then the camera is gone from the list.
        self.assertProblem(await browser.request("DELETE", f"/api/v1/devices/{CAMERA}", {"devKey": "nope"}),
                           404, "no-such-device")
        self.assertEqual((await browser.request("DELETE", f"/api/v1/devices/{CAMERA}", {"devKey": key})).code, 204)
        self.assertEqual((await browser.request("GET", "/api/v1/devices")).json(), {"devices": []})

    async def test_camera_offline_is_503(self) -> None:
        camera = await self.camera()
        browser = await self.signed_up(OWNER)
        await browser.request("POST", "/api/v1/devices", {"devId": CAMERA, "devKey": device_key("test", CAMERA)})
        camera.stop()
        await until(lambda: not self.platform.gateway.is_online(CAMERA))
        [device] = (await browser.request("GET", "/api/v1/devices")).json()["devices"]
        self.assertFalse(device["online"])
        self.assertProblem(await browser.request("POST", f"/api/v1/devices/{CAMERA}/ptz", {"direction": "up"}),
                           503, "camera-offline")

    async def test_shared_camera_is_the_guests_to_watch_not_to_configure(self) -> None:
        camera = await self.camera()
        owner = await self.signed_up(OWNER)
        key = device_key("test", CAMERA)
        await owner.request("POST", "/api/v1/devices", {"devId": CAMERA, "devKey": key})
        guest = await self.signed_up(STRANGER)
        self.assertProblem(await owner.request("POST", f"/api/v1/devices/{CAMERA}/shares",
                                               {"account": "13300000199"}), 404, "not-found")
        shared = await owner.request("POST", f"/api/v1/devices/{CAMERA}/shares", {"account": STRANGER})
        self.assertEqual(shared.code, 201, shared.body)
        self.assertEqual((await owner.request("GET", f"/api/v1/devices/{CAMERA}/shares")).json(),
                         {"accounts": [STRANGER]})
        [seen] = (await guest.request("GET", "/api/v1/devices")).json()["devices"]
        self.assertEqual((seen["devId"], seen["shared"], seen["online"]), (CAMERA, True, True))
        self.assertEqual((await guest.request("POST", f"/api/v1/devices/{CAMERA}/ptz", {"direction": "up"})).code,
                         204)
        self.assertEqual([e.direction.name for e in camera.state.ptz_log], ["UP"])
        # Viewing only: the guest can neither remove nor re-share it (404, as for a camera not theirs).
        self.assertProblem(await guest.request("DELETE", f"/api/v1/devices/{CAMERA}", {"devKey": key}), 404,
                           "no-such-device")
        self.assertProblem(await guest.request("POST", f"/api/v1/devices/{CAMERA}/shares", {"account": OWNER}),
                           404, "no-such-device")
        # Revoked: the camera is gone from the guest's list and every route.
        self.assertEqual((await owner.request("DELETE", f"/api/v1/devices/{CAMERA}/shares/{STRANGER}")).code, 204)
        self.assertEqual((await guest.request("GET", "/api/v1/devices")).json(), {"devices": []})
        self.assertProblem(await guest.request("GET", f"/api/v1/devices/{CAMERA}"), 404, "no-such-device")
        self.assertProblem(await owner.request("DELETE", f"/api/v1/devices/{CAMERA}/shares/{STRANGER}"), 404,
                           "not-found")

    async def test_another_accounts_camera_is_404_on_every_device_route(self) -> None:
        """IDOR: for every route of the table with a DevID, the stranger's answer for the owner's camera is
        the answer for a camera that does not exist: 404 no-such-device, and nothing happens to it."""
        camera = await self.camera()
        owner = await self.signed_up(OWNER)
        key = device_key("test", CAMERA)
        self.assertEqual((await owner.request("POST", "/api/v1/devices", {"devId": CAMERA, "devKey": key})).code, 201)
        stranger = await self.signed_up(STRANGER)
        device_routes = [route for route in ROUTES if "{devId}" in route.path]
        self.assertGreaterEqual(len(device_routes), 5)
        for route in device_routes:
            body = dict(route.example) if route.example is not None else None
            if body is not None and "devKey" in body:
                body["devKey"] = key  # even with the right DevKey
            theirs = await stranger.request(route.method, path_of(route, CAMERA), body)
            nobodys = await stranger.request(route.method, path_of(route, ABSENT), body)
            self.assertProblem(theirs, 404, "no-such-device")
            self.assertEqual((theirs.code, theirs.body), (nobodys.code, nobodys.body), route.path)
        self.assertEqual(camera.state.ptz_log, [], "the stranger's PTZ never reached the camera")
        self.assertEqual([b.dev_id for b in await self.platform.store.list_bindings(OWNER)], [CAMERA])
        self.assertEqual((await stranger.request("GET", "/api/v1/devices")).json(), {"devices": []})
        self.assertEqual((await owner.request("GET", f"/api/v1/devices/{CAMERA}")).code, 200)

    # Errors, documents, headers ---------------------------------------------------------------------

    async def test_malformed_bodies_are_400_problems(self) -> None:
        browser = await self.signed_up(OWNER)
        for raw in (b"{not json", b"[1, 2]", b"\xff\xfe", b""):
            self.assertProblem(await browser.request("POST", "/api/v1/devices", raw=raw), 400, "invalid-request")
        self.assertProblem(await browser.request("POST", "/api/v1/devices", {"devId": 5, "devKey": "k"}), 400,
                           "invalid-request")
        self.assertProblem(await Browser(self.base).request("POST", "/api/v1/session", raw=b"account=1&password=2"),
                           400, "invalid-request")
        self.assertProblem(await browser.request("GET", "/api/v1/nothing/here"), 404, "no-route")
        # The listener's body limit ([http] max_body) stops a large body before any route sees it.
        too_big = await browser.request("POST", "/api/v1/devices", raw=b"{" + b" " * 70000 + b"}")
        self.assertEqual(too_big.code, 413)
        self.assertEqual((await browser.request("GET", "/api/v1/session")).code, 200)
        wrong_method = await browser.request("PATCH", "/api/v1/devices", {})
        self.assertProblem(wrong_method, 405, "method-not-allowed")
        self.assertEqual(wrong_method.header("allow"), "GET, POST")

    async def test_a_defect_is_a_logged_500_problem(self) -> None:
        browser = await self.signed_up(OWNER)

        async def broken(session: Any) -> Any:
            raise RuntimeError("a defect in a service")

        self.patch(self.platform.client.devices, "list_for", broken)
        self.assertProblem(await browser.request("GET", "/api/v1/devices"), 500, "internal")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual((await browser.request("GET", "/api/v1/session")).code, 200)

    async def test_openapi_document_lists_every_route(self) -> None:
        browser = Browser(self.base)
        answer = await browser.request("GET", "/api/v1/openapi.json")
        self.assertEqual(answer.code, 200)
        document = answer.json()
        self.assertEqual(document["openapi"], "3.1.0")
        from openapi_spec_validator import validate  # a [test] requirement

        validate(document)
        documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
        self.assertEqual(documented, {(route.method, route.path) for route in ROUTES})
        # Every documented operation exists in the router: none answers "no such route".
        owner = await self.signed_up(OWNER)
        for method, path in sorted(documented):
            concrete = "/api/v1" + path.replace("{devId}", ABSENT).replace("{channel}", "0") \
                .replace("{account}", STRANGER)
            reply = await owner.request(method, concrete, {})
            if reply.header("content-type") == "application/problem+json":
                self.assertNotEqual(reply.json()["type"], "/api/v1/problems/no-route", (method, path))
            await owner.login(OWNER)  # DELETE /session and /account end the session: log in again

    async def test_security_headers_on_every_response(self) -> None:
        browser = Browser(self.base)
        for path in ("/", "/index.html", "/app.js", "/i18n.js", "/style.css", "/nothing.html", "/js/",
                     "/api/v1/session", "/api/v1/openapi.json", "/api/v1/nothing"):
            answer = await browser.request("GET", path)
            self.assertEqual(answer.header("content-security-policy"), CSP, path)
            self.assertEqual(answer.header("x-content-type-options"), "nosniff", path)
            self.assertEqual(answer.header("referrer-policy"), "no-referrer", path)
        self.assertIn("default-src 'self'", CSP)
        self.assertNotIn("unsafe-inline", CSP)
        page = await browser.request("GET", "/")
        self.assertEqual(page.code, 200)
        self.assertIn(b'<script type="module" src="app.js"></script>', page.body)
        self.assertNotRegex(page.body.decode(), r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=")
        script = await browser.request("GET", "/app.js")
        self.assertEqual(script.header("content-type"), "text/javascript; charset=utf-8")
        self.assertEqual((await browser.request("GET", "/js/")).code, 404, "no directory listing")
