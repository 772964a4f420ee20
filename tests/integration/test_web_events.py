"""The portal's live event stream (GET /api/v1/events, Server-Sent Events) over real loopback: a real
platform with the web role, a simulated camera raising 34H alarms (§7.5.4) through the real gateway,
treq for the JSON API and a raw HTTP/1.0 client for the stream (so the test can stop reading, as a
phone on a bad link does, and sees the bytes exactly).
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import TestCase

from globaleye.device.protocol import messages as m
from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.testing import platform_config, start_platform
from globaleye.users.accounts import RecordingSmsSender
from globaleye.web import api_events
from tests.util import http_client, sleep, until

PASSWORD = "correct horse"
OWNER, GUEST, STRANGER = "13300000201", "13300000202", "13300000203"
CAMERA = "81100000201"


class Answer:
    def __init__(self, code: int, headers: Any, body: bytes) -> None:
        self.code, self.headers, self.body = code, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class Browser:
    """One person's JSON API client: the ge_session cookie and the CSRF token kept as the page does."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = http_client()
        self.cookie: str | None = None
        self.csrf: str | None = None

    async def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        sent: dict[str, list[str]] = {k: [v] for k, v in (headers or {}).items()}
        if self.cookie:
            sent["Cookie"] = [f"ge_session={self.cookie}"]
        if self.csrf:
            sent["X-CSRF-Token"] = [self.csrf]
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            sent["Content-Type"] = ["application/json"]
        response = await self.http.request(method, self.base + path, headers=sent, data=data)
        content = await response.content()
        for line in response.headers.getRawHeaders("set-cookie") or []:
            match = re.match(r"ge_session=([^;]*)", line)
            if match:
                self.cookie = match.group(1) or None
        return Answer(response.code, response.headers, content)


class EventReader(Protocol):
    """A raw HTTP/1.0 client of /api/v1/events: the status, headers and the SSE messages as they come."""

    def __init__(self, cookie: str | None, accept: str = "text/event-stream") -> None:
        self.cookie, self.accept = cookie, accept
        self.raw = b""
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.messages: list[tuple[str, str]] = []  # (event or "comment", data)
        self.opened: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.closed = False

    def connectionMade(self) -> None:  # noqa: N802
        lines = ["GET /api/v1/events HTTP/1.0", "Host: 127.0.0.1", f"Accept: {self.accept}"]
        if self.cookie:
            lines.append(f"Cookie: ge_session={self.cookie}")
        assert self.transport is not None
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.opened.callback(None)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.status is None:
            self.raw += data
            if b"\r\n\r\n" not in self.raw:
                return
            head, _, data = self.raw.partition(b"\r\n\r\n")
            first, *rest = head.decode("latin-1").split("\r\n")
            self.status = int(first.split()[1])
            self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in rest)}
        self.body += data
        while b"\n\n" in self.body:
            block, _, self.body = self.body.partition(b"\n\n")
            kind, payload = "message", []
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.messages.append(("comment", line[1:].strip()))
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    payload.append(line[6:])
                elif line.startswith("retry: "):
                    self.messages.append(("retry", line[7:]))
            if payload:
                self.messages.append((kind, "\n".join(payload)))

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.closed = True
        self.ended.callback(None)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(data) for k, data in self.messages if k == kind]


class EventsTests(TestCase):
    timeout = 20

    async def setUp(self) -> None:  # type: ignore[override]
        config = platform_config("gateway, http, group, web", gateway={"command_timeout": 2},
                                 soap={"sms_interval": 0.01})
        self.platform: PlatformService = start_platform(self, config, reactor)
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        self.base = f"http://127.0.0.1:{self.platform.port_of('web')}"
        self.service = self.platform.client.events
        self.readers: list[tuple[EventReader, Any]] = []
        self.addCleanup(self.close_streams)

    async def close_streams(self) -> None:
        """Close every stream the test opened; the server sees it (no subscription, timer or socket left)."""
        for reader, connector in self.readers:
            if not reader.closed:
                connector.disconnect()
                await reader.ended
        await until(lambda: not self.service.subscriptions)

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
        return camera

    async def signed_up(self, account: str) -> Browser:
        browser = Browser(self.base)
        self.assertEqual((await browser.request("POST", "/api/v1/sms-codes", {"account": account})).code, 202)
        created = await browser.request("POST", "/api/v1/accounts", {
            "account": account, "password": PASSWORD, "smsCode": self.sms.last_code(account)})
        self.assertEqual(created.code, 201, created.body)
        answer = await browser.request("POST", "/api/v1/session", {"account": account, "password": PASSWORD})
        self.assertEqual(answer.code, 200, answer.body)
        browser.csrf = answer.json()["csrfToken"]
        return browser

    async def owner_with_camera(self) -> tuple[Browser, SimulatedCamera]:
        camera = await self.camera()
        owner = await self.signed_up(OWNER)
        added = await owner.request("POST", "/api/v1/devices", {"devId": CAMERA, "devKey": device_key("test", CAMERA)})
        self.assertEqual(added.code, 201, added.body)
        return owner, camera

    async def stream(self, browser: Browser | None, accept: str = "text/event-stream",
                     wait: bool = True) -> EventReader:
        """An open event stream of *browser*'s session (closed when the test ends)."""
        reader = EventReader(browser.cookie if browser is not None else None, accept)
        factory = ClientFactory.forProtocol(lambda: reader)
        connector = reactor.connectTCP("127.0.0.1", self.platform.port_of("web"), factory)
        self.readers.append((reader, connector))
        await reader.opened
        if wait:
            await until(lambda: reader.status is not None and (reader.status != 200 or reader.messages))
        return reader

    # -------------------------------------------------------------------------------------------

    async def test_alarm_reaches_owner_and_sharer_never_a_stranger_and_stops_at_revocation(self) -> None:
        owner, camera = await self.owner_with_camera()
        guest, stranger = await self.signed_up(GUEST), await self.signed_up(STRANGER)
        self.assertEqual((await owner.request("POST", f"/api/v1/devices/{CAMERA}/shares", {"account": GUEST})).code,
                         201)
        streams = {who: await self.stream(b) for who, b in ((OWNER, owner), (GUEST, guest), (STRANGER, stranger))}
        opened = streams[OWNER]
        self.assertEqual(opened.status, 200)
        self.assertEqual(opened.headers["content-type"], "text/event-stream; charset=utf-8")
        self.assertEqual(opened.headers["cache-control"], "no-store")
        self.assertEqual(opened.messages[0], ("retry", str(api_events.RETRY_MS)))
        self.assertEqual(self.service.count(OWNER), 1)

        started = reactor.seconds()
        self.assertEqual(await camera.raise_alarm(m.ExceptionType.DISK_ERROR, "硬盘错误 disk error"), 0)
        await until(lambda: streams[OWNER].events("alarm") and streams[GUEST].events("alarm"), timeout=2)
        self.assertLess(reactor.seconds() - started, 2.0)
        for who in (OWNER, GUEST):
            [alarm] = streams[who].events("alarm")
            self.assertEqual({k: alarm[k] for k in ("devId", "channel", "type", "text", "dropped")},
                             {"devId": CAMERA, "channel": 0, "type": 6, "text": "硬盘错误 disk error", "dropped": 0})
            self.assertRegex(alarm["time"], "^[0-9]{14}$")
        # What the stream said is what the alarm search has stored.
        [stored] = (await owner.request("GET", f"/api/v1/devices/{CAMERA}/alarms")).json()["alarms"]
        self.assertEqual((stored["type"], stored["description"], stored["time"]),
                         (6, "硬盘错误 disk error", streams[OWNER].events("alarm")[0]["time"]))

        # The owner revokes the share: the next alarm reaches the owner only.
        self.assertEqual((await owner.request("DELETE", f"/api/v1/devices/{CAMERA}/shares/{GUEST}")).code, 204)
        await camera.raise_alarm(m.ExceptionType.LENS_ERROR, "lens covered")
        await until(lambda: len(streams[OWNER].events("alarm")) == 2, timeout=2)
        await sleep(0.3)
        self.assertEqual(len(streams[GUEST].events("alarm")), 1, "a revoked share stops the flow")
        self.assertEqual(streams[STRANGER].events("alarm"), [], "another account's stream never gets it")

        # The camera goes offline: its owner's list can update live.
        camera.stop()
        await until(lambda: streams[OWNER].events("device"), timeout=5)
        self.assertEqual(streams[OWNER].events("device")[-1]["online"], False)
        self.assertEqual(streams[STRANGER].events("device"), [])
        self.assertFalse(any(r.closed for r in streams.values()), "the streams stay open")

    async def test_logout_and_expiry_end_the_stream(self) -> None:
        self.patch(api_events, "SESSION_CHECK", 0.1)
        owner, _camera = await self.owner_with_camera()
        reader = await self.stream(owner)
        self.assertEqual((await owner.request("DELETE", "/api/v1/session")).code, 204)
        started = reactor.seconds()
        await reader.ended
        self.assertLess(reactor.seconds() - started, 1.0)
        self.assertEqual(reader.events("session"), [{"state": "ended"}])
        await until(lambda: self.service.count(OWNER) == 0)
        # Reconnecting with the old cookie is refused: EventSource stops there.
        again = await self.stream(owner)
        self.assertEqual(again.status, 401)

        # An idle session expires even with a stream open (a stream does not keep it alive).
        owner2 = Browser(self.base)
        answer = await owner2.request("POST", "/api/v1/session", {"account": OWNER, "password": PASSWORD})
        self.assertEqual(answer.code, 200)
        import attrs

        accounts = self.platform.accounts
        accounts.settings = attrs.evolve(accounts.settings, session_idle_timeout=0.5)
        idle = await self.stream(owner2)
        self.assertEqual(idle.status, 200)
        started = reactor.seconds()
        await idle.ended
        self.assertLess(reactor.seconds() - started, 2.0)
        self.assertGreaterEqual(reactor.seconds() - started, 0.3)
        self.assertEqual(idle.events("session"), [{"state": "ended"}])

    async def test_refusals_cap_accept_and_session(self) -> None:
        self.patch(api_events, "MAX_STREAMS", 2)
        owner = await self.signed_up(OWNER)
        first, _second = await self.stream(owner), await self.stream(owner)
        self.assertEqual(self.service.count(OWNER), 2)
        third = await owner.request("GET", "/api/v1/events", headers={"Accept": "text/event-stream"})
        self.assertEqual(third.code, 429, third.body)
        self.assertEqual(third.headers.getRawHeaders("content-type"), ["application/problem+json"])
        self.assertEqual(third.json()["type"], "/api/v1/problems/too-many-streams")
        self.assertGreaterEqual(int(third.headers.getRawHeaders("retry-after")[0]), 1)
        # Another account is not limited by this one's streams.
        other = await self.stream(await self.signed_up(GUEST))
        self.assertEqual(other.status, 200)
        # Closing a page frees its place (the transport's closing unsubscribes).
        first.transport.loseConnection()  # type: ignore[union-attr]
        await first.ended
        await until(lambda: self.service.count(OWNER) == 1)
        self.assertEqual((await self.stream(owner)).status, 200)
        # Not an event-stream client: 406 rather than an endless answer; no session: 401.
        plain = await owner.request("GET", "/api/v1/events", headers={"Accept": "application/json"})
        self.assertEqual((plain.code, plain.json()["type"]), (406, "/api/v1/problems/not-acceptable"))
        anonymous = await self.stream(None)
        self.assertEqual(anonymous.status, 401)

    async def test_a_slow_reader_costs_bounded_memory(self) -> None:
        """A reader that stops reading: the server stops writing once the socket is full (the stream is
        a streaming producer), and the subscription keeps at most its queue, the rest dropped and counted;
        when the reader reads again it is told how many it missed and the stream goes on."""
        owner, camera = await self.owner_with_camera()
        self.service.queue_size = 16
        reader = await self.stream(owner)
        assert reader.transport is not None
        reader.transport.pauseProducing()  # type: ignore[attr-defined]
        [subscription] = self.service.subscriptions[OWNER]
        text = "x" * 16384
        for _ in range(100):
            for _ in range(20):
                self.platform.events.alarm(CAMERA, 0, 6, text, reactor.seconds())
            await until(lambda: not self.service.pending)
            if subscription.dropped > 100:
                break
        self.assertGreater(subscription.dropped, 100)
        self.assertLessEqual(len(subscription.queue), 16)
        self.assertEqual(self.service.counters["pending_dropped"], 0)
        delivered = subscription.delivered
        self.assertLess(delivered * len(text), 64 << 20, "what was written is bounded by the socket, not the events")
        # Reading again: the queued events, then a live alarm, with the count of those missed.
        reader.transport.resumeProducing()  # type: ignore[attr-defined]
        await until(lambda: len(reader.events("alarm")) >= delivered + len(subscription.queue) - 1, timeout=10)
        await camera.raise_alarm(m.ExceptionType.POWER_ERROR, "power")
        await until(lambda: reader.events("alarm") and reader.events("alarm")[-1]["type"] == 7, timeout=5)
        self.assertEqual(reader.events("alarm")[-1]["dropped"], subscription.dropped)
        self.assertFalse(reader.closed)
