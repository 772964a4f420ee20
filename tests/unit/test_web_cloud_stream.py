"""The cloud range stream of the web API (globaleye.web.api_cloud.CloudStreamResource) without sockets:
it reads the store piece by piece and stops reading while the socket is full (Twisted's push-producer
pause), resumes, ends cleanly, and stops for good when the browser goes away."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from globaleye.store import CLOUD_RECORD, CloudObject
from globaleye.web.api_cloud import CloudStreamResource
from tests.unit.test_tsremux import recording


class Backend:
    """Reads answered at once, counted."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.reads: list[tuple[str, int]] = []

    def read(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> Deferred[bytes]:
        self.reads.append((key, offset))
        data = self.objects[key]
        return succeed(data[offset:offset + length if length is not None else None])


class Cloud:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend


class Request(DummyRequest):
    """DummyRequest with a push producer kept (its own registerProducer loops for pull producers)."""

    def __init__(self) -> None:
        super().__init__([b""])
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None


class CloudStreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        from globaleye.web import api_cloud

        self.patch(api_cloud, "CHUNK", 188 * 100)  # pieces of 18 KB: a minute's file is several
        big = recording(60)
        self.assertGreater(len(big), 4 * api_cloud.CHUNK)
        self.backend = Backend({"a.ts": big, "b.ts": big})
        self.files = [CloudObject("81100000001", 0, CLOUD_RECORD, 1000.0 + 60 * i, 60.0, len(big), "GlobalEyeRecord",
                                  key) for i, key in enumerate(("a.ts", "b.ts"))]

    def stream(self, request: Request) -> CloudStreamResource:
        resource = CloudStreamResource(Cloud(self.backend), self.files, 1000.0, 1120.0, 0.0, 1.0,  # type: ignore[arg-type]
                                       True, "x.mp4", "13300000001")
        request.producer = None
        original = request.write

        def write(data: bytes) -> None:
            original(data)
            if request.producer is not None and len(request.written) == 1:
                request.producer.pauseProducing()  # the socket is full after the first write

        request.write = write  # type: ignore[method-assign]
        resource.render_GET(request)
        return resource

    def test_paused_stops_reading_and_resume_goes_on_to_the_end(self) -> None:
        request = Request()
        resource = self.stream(request)
        reads = len(self.backend.reads)
        self.assertEqual(request.responseCode, 200)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-disposition"),
                         [b'attachment; filename="x.mp4"'])
        self.assertEqual(len(request.written), 1, "one write, then paused")
        self.assertEqual(reads, 1, "no read while the socket is full")
        self.assertFalse(request.finished)
        resource.resumeProducing()
        self.assertEqual(request.finished, 1)
        self.assertEqual(len(self.backend.reads), len({r for r in self.backend.reads}), "each piece read once")
        self.assertEqual({key for key, _ in self.backend.reads}, {"a.ts", "b.ts"})
        self.assertEqual(resource.sent, sum(len(w) for w in request.written))
        self.assertGreater(resource.sent, 0)

    def test_the_browser_leaving_stops_the_stream(self) -> None:
        request = Request()
        resource = self.stream(request)
        resource.stopProducing()
        reads = len(self.backend.reads)
        self.assertEqual(reads, 1)
        self.assertFalse(request.finished, "nothing more written or finished for a browser that left")
        self.assertEqual(len(request.written), 1)
