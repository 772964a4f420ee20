"""The CRM check against a tiny twisted.web CRM on 127.0.0.1.

The fake CRM answers by number: ...01 allowed, ...02 denied, ...03 garbage,
...04 HTTP 500, ...09 never answers (for the timeout and its policy).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from globaleye.users.crm import AllowAll, HttpCRM, HttpCRMSettings

ALLOWED, DENIED, GARBAGE, BROKEN, SILENT = (f"1890000000{n}" for n in (1, 2, 3, 4, 9))


class FakeCRM(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[bytes, str]] = []
        self.hanging: list[Request] = []

    def answer(self, request: Request, mobile: str) -> bytes | int:
        self.asked.append((request.method, mobile))
        request.setHeader(b"content-type", b"application/json")
        if mobile == ALLOWED:
            return json.dumps({"allowed": True}).encode()
        if mobile == DENIED:
            return json.dumps({"allowed": False, "reason": "arrears"}).encode()
        if mobile == GARBAGE:
            return b"<html>maintenance</html>"
        if mobile == BROKEN:
            request.setResponseCode(500)
            return b'{"allowed": true}'
        self.hanging.append(request)
        return NOT_DONE_YET

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        body = json.loads(request.content.read())
        return self.answer(request, body["mobile"])

    def render_GET(self, request: Request) -> bytes | int:
        assert request.args is not None
        return self.answer(request, request.args[b"mobile"][0].decode())


class HttpCRMTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.crm = FakeCRM()
        self.port = reactor.listenTCP(0, Site(self.crm), interface="127.0.0.1")  # type: ignore[attr-defined,arg-type]
        self.addCleanup(self.port.stopListening)
        port: Any = self.port.getHost()
        self.url = f"http://127.0.0.1:{port.port}/crm"

    def client(self, **kw: Any) -> HttpCRM:
        return HttpCRM(HttpCRMSettings(url=self.url, **kw))

    async def test_allow_all_default(self) -> None:
        self.assertTrue(await AllowAll().may_open(DENIED))

    async def test_allow_and_deny_post(self) -> None:
        crm = self.client()
        self.assertTrue(await crm.may_open(ALLOWED))
        self.assertFalse(await crm.may_open(DENIED))
        self.assertEqual(self.crm.asked, [(b"POST", ALLOWED), (b"POST", DENIED)])

    async def test_allow_and_deny_get(self) -> None:
        crm = self.client(method="GET")
        self.assertTrue(await crm.may_open(ALLOWED))
        self.assertFalse(await crm.may_open(DENIED))
        self.assertEqual(self.crm.asked, [(b"GET", ALLOWED), (b"GET", DENIED)])

    async def test_deny_is_not_overridden_by_fail_open(self) -> None:
        self.assertFalse(await self.client(fail_open=True).may_open(DENIED))

    async def test_timeout_fail_open(self) -> None:
        self.assertTrue(await self.client(timeout=0.2, fail_open=True).may_open(SILENT))
        self.assertEqual(len(self.crm.hanging), 1)

    async def test_timeout_fail_closed(self) -> None:
        self.assertFalse(await self.client(timeout=0.2, fail_open=False).may_open(SILENT))

    async def test_garbage_and_errors_follow_policy(self) -> None:
        for mobile in (GARBAGE, BROKEN):
            self.assertTrue(await self.client(fail_open=True).may_open(mobile), mobile)
            self.assertFalse(await self.client(fail_open=False).may_open(mobile), mobile)

    async def test_unreachable_follows_policy(self) -> None:
        await self.port.stopListening()  # type: ignore[misc]
        self.assertTrue(await self.client(timeout=2, fail_open=True).may_open(ALLOWED))
        self.assertFalse(await self.client(timeout=2, fail_open=False).may_open(ALLOWED))
