"""The endpoint's multipart uploads expire on the reactor's clock (a task.Clock here), their parts
removed from disk by the thread pool."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor, task
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest

from globaleye.s3.backend import Principal
from globaleye.s3.endpoint import S3Endpoint, StorageSettings, Upload
from globaleye.s3.memory import MemoryBackend


class ClockReactor(task.Clock):
    """A Clock for the timers; results of the thread pool still come back through the real reactor."""

    def callFromThread(self, f, *args, **kwargs):  # type: ignore[no-untyped-def]  # noqa: N802
        reactor.callFromThread(f, *args, **kwargs)


class Nobody:
    async def principal(self, access_key: str) -> Principal | None:
        return None


class Silent:
    async def admit(self, *args: object) -> str | None:
        return None

    async def stored(self, *args: object) -> None:
        pass

    async def deleted(self, *args: object) -> None:
        pass


class Expiry(unittest.TestCase):
    def test_unfinished_upload_expires(self) -> Any:
        pool = ThreadPool(1, 1, name="test-s3-expiry")
        pool.start()
        self.addCleanup(pool.stop)
        clock = ClockReactor()
        root = os.path.abspath(self.mktemp())
        endpoint = S3Endpoint(StorageSettings(data_dir=root, multipart_expiry=100), MemoryBackend(clock.seconds),
                              Nobody(), Silent(), clock, pool, os.path.join(root, ".staging"),
                              os.path.join(root, ".multipart"))
        directory = os.path.join(root, ".multipart", "u1")
        os.makedirs(directory)
        with open(os.path.join(directory, "1"), "wb") as f:
            f.write(b"part")
        upload = Upload("u1", "GlobalEyeRecord", "D1_x", "CAM1KEY", "video/mp2t", directory)
        endpoint.uploads["u1"] = upload
        endpoint.touch_upload(upload)
        clock.advance(99)
        endpoint.touch_upload(upload)  # a new part: the 100 s start again
        clock.advance(99)
        self.assertIn("u1", endpoint.uploads)
        self.assertTrue(os.path.exists(directory))
        clock.advance(1)
        self.assertNotIn("u1", endpoint.uploads)
        self.assertEqual(clock.getDelayedCalls(), [])
        d = endpoint.run(os.path.exists, directory)  # queued behind the removal in the one-thread pool
        d.addCallback(self.assertFalse)
        return d



