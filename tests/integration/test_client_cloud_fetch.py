"""``globaleye-client cloud download``'s fetch against a loopback HTTP server that misbehaves.

A download is whole or absent: a body cut short of its Content-Length, or of the size the index
gave, leaves no file of the target's name (nor its ``.part``); a refusal of the presigned URL is
reported with its status.  The server is a raw TCP protocol on 127.0.0.1, so it can lie.
"""

from __future__ import annotations

import os
from typing import Any

from treq.client import HTTPClient
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.client.cloud import CloudError, fetch

BODY = bytes(range(256)) * 40


class Liar(protocol.Protocol):
    """Answers a request with the factory's status, Content-Length and (perhaps fewer) bytes, then closes."""

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data
        if b"\r\n\r\n" not in self.received:
            return
        status, length, body = self.factory.answer  # type: ignore[attr-defined]
        self.transport.write(f"HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n".encode()
                             + body)
        self.transport.loseConnection()


class FakeMcu:
    def __init__(self, url: str) -> None:
        self.url = url

    async def call(self, name: str, **values: Any) -> dict[str, Any]:
        assert name == "GetCloudFileUrl"
        return {"Result": 0, "Url": self.url, "Expires": 300}


class FetchTests(TestCase):
    def setUp(self) -> None:
        self.factory = protocol.Factory.forProtocol(Liar)
        port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.mcu = FakeMcu(f"http://127.0.0.1:{port.getHost().port}/GlobalEyeRecord/x.ts?X-Amz-Signature=1")
        self.target = os.path.abspath(self.mktemp())

    def go(self, expected: int | None = None) -> Deferred[int]:
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        return Deferred.fromCoroutine(fetch(self.mcu, "81100000001", "x.ts", self.target,  # type: ignore[arg-type]
                                            expected, http=http))

    def assert_nothing_written(self) -> None:
        self.assertFalse(os.path.exists(self.target))
        self.assertFalse(os.path.exists(self.target + ".part"))

    async def test_whole(self) -> None:
        self.factory.answer = ("200 OK", len(BODY), BODY)  # type: ignore[attr-defined]
        self.assertEqual(await self.go(len(BODY)), len(BODY))
        with open(self.target, "rb") as f:
            self.assertEqual(f.read(), BODY)
        self.assertFalse(os.path.exists(self.target + ".part"))

    async def test_cut_short(self) -> None:
        self.factory.answer = ("200 OK", len(BODY), BODY[:1000])  # type: ignore[attr-defined]
        with self.assertRaises(CloudError) as caught:
            await self.go()
        self.assertIn("cut short after 1000 bytes", str(caught.exception))
        self.assert_nothing_written()

    async def test_not_the_indexed_size(self) -> None:
        self.factory.answer = ("200 OK", 1000, BODY[:1000])  # type: ignore[attr-defined]
        with self.assertRaises(CloudError) as caught:
            await self.go(len(BODY))
        self.assertIn(f"1000 bytes, the index's size says {len(BODY)}", str(caught.exception))
        self.assert_nothing_written()

    async def test_refused(self) -> None:
        self.factory.answer = ("403 Forbidden", 13, b"AccessDenied.")  # type: ignore[attr-defined]
        with self.assertRaises(CloudError) as caught:
            await self.go()
        self.assertIn("HTTP 403 AccessDenied.", str(caught.exception))
        self.assert_nothing_written()
