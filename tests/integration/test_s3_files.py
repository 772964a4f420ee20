"""globaleye.s3.files.FileBackend on a real temporary directory, its disk work in a real thread pool."""

from __future__ import annotations

import hashlib
import os

from twisted.internet import defer, reactor
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest

from globaleye.s3 import files
from globaleye.s3.backend import NoSuchBucket, NoSuchKey, StorageError
from globaleye.s3.files import FileBackend


class Names(unittest.TestCase):
    def test_round_trip_and_no_traversal(self) -> None:
        for key in ("D1_1_20240101120000.ts", "../../etc/passwd", "a/b/../c", ".", "..", ".hidden", "%41",
                    "目录/文件 1", "a\x00b", "#x", "x" * 240):
            name = files.encode_key(key)
            self.assertNotIn("/", name)
            self.assertNotIn(name, (".", ".."))
            self.assertFalse(name.startswith("."))
            self.assertLessEqual(len(name.encode()), 255)
            self.assertEqual(files.decode_name(name), key)
        self.assertEqual(files.encode_key("D1_1_20240101120000.ts"), "D1_1_20240101120000.ts")
        long = "é" * 512
        self.assertTrue(files.encode_key(long).startswith("#"))
        self.assertIsNone(files.decode_name(files.encode_key(long)))
        for bad in ("", "x" * 1025):
            with self.assertRaises(files.InvalidName):
                files.encode_key(bad)

    def test_bucket_names(self) -> None:
        for good in ("GlobalEyeRecord", "GlobalEyePicture", "abc", "a.b-c"):
            self.assertTrue(files.valid_bucket(good), good)
        for bad in ("..", ".staging", ".multipart", "a/b", "ab", "a..b", "-ab", "x" * 64, ""):
            self.assertFalse(files.valid_bucket(bad), bad)


class Backend(unittest.TestCase):
    def setUp(self) -> None:
        self.pool = ThreadPool(1, 2, name="test-s3-files")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.dir = self.mktemp()
        self.backend = FileBackend(self.dir, reactor, self.pool)

    @defer.inlineCallbacks
    def test_objects(self):  # type: ignore[no-untyped-def]
        os.makedirs(os.path.join(self.dir, files.STAGING))
        with open(os.path.join(self.dir, files.STAGING, "leftover"), "wb") as f:
            f.write(b"half an upload")
        removed = yield defer.Deferred.fromCoroutine(self.backend.start())
        self.assertEqual(removed, 1)
        self.assertEqual(os.listdir(self.backend.staging_dir), [])
        self.assertTrue((yield defer.Deferred.fromCoroutine(self.backend.create_bucket("GlobalEyeRecord"))))
        self.assertFalse((yield defer.Deferred.fromCoroutine(self.backend.create_bucket("GlobalEyeRecord"))))
        with self.assertRaises(NoSuchBucket):
            yield defer.Deferred.fromCoroutine(self.backend.put_bytes("Nope", "k", b"x"))
        keys = ["D1_1_b", "D1_1_a", "D2_1_a", "é" * 400, "D1_1_a/b", "D1_1_\x7f"]
        for key in keys:
            info = yield defer.Deferred.fromCoroutine(
                self.backend.put_bytes("GlobalEyeRecord", key, key.encode() * 3, "video/mp2t"))
            self.assertEqual(info.etag, hashlib.md5(key.encode() * 3).hexdigest())
        head = yield defer.Deferred.fromCoroutine(self.backend.head("GlobalEyeRecord", "é" * 400))
        self.assertEqual((head.size, head.content_type, head.key), (2400, "video/mp2t", "é" * 400))
        listed, more = yield defer.Deferred.fromCoroutine(self.backend.list("GlobalEyeRecord"))
        self.assertEqual([i.key for i in listed], sorted(keys, key=str.encode))
        self.assertFalse(more)
        listed, more = yield defer.Deferred.fromCoroutine(self.backend.list("GlobalEyeRecord", "D1_", "D1_1_a", 2))
        self.assertEqual(([i.key for i in listed], more), (["D1_1_a/b", "D1_1_b"], True))
        data = yield defer.Deferred.fromCoroutine(self.backend.read("GlobalEyeRecord", "D1_1_a", 2, 5))
        self.assertEqual(data, (b"D1_1_a" * 3)[2:7])
        with self.assertRaises(NoSuchKey):
            yield defer.Deferred.fromCoroutine(self.backend.read("GlobalEyeRecord", "D9", 0, 1))
        self.assertTrue((yield defer.Deferred.fromCoroutine(self.backend.delete("GlobalEyeRecord", "D1_1_a"))))
        self.assertFalse((yield defer.Deferred.fromCoroutine(self.backend.delete("GlobalEyeRecord", "D1_1_a"))))
        self.assertIsNone((yield defer.Deferred.fromCoroutine(self.backend.head("GlobalEyeRecord", "D1_1_a"))))
        buckets = yield defer.Deferred.fromCoroutine(self.backend.buckets())
        self.assertEqual([name for name, _ in buckets], ["GlobalEyeRecord"])
        self.assertEqual(os.listdir(self.backend.staging_dir), [])

    @defer.inlineCallbacks
    def test_put_file_replaces_atomically(self):  # type: ignore[no-untyped-def]
        yield defer.Deferred.fromCoroutine(self.backend.start())
        yield defer.Deferred.fromCoroutine(self.backend.create_bucket("b01"))
        yield defer.Deferred.fromCoroutine(self.backend.put_bytes("b01", "k", b"old"))
        path = self.backend.new_staging_path()
        with open(path, "wb") as f:
            f.write(b"new body")
        info = yield defer.Deferred.fromCoroutine(self.backend.put_file("b01", "k", path, etag="e-1"))
        self.assertEqual((info.size, info.etag), (8, "e-1"))
        self.assertFalse(os.path.exists(path))
        self.assertEqual((yield defer.Deferred.fromCoroutine(self.backend.read("b01", "k"))), b"new body")
        self.assertEqual((yield defer.Deferred.fromCoroutine(self.backend.head("b01", "k"))).etag, "e-1")

    @defer.inlineCallbacks
    def test_no_xattrs_is_a_clear_error(self):  # type: ignore[no-untyped-def]
        original = os.setxattr

        def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise OSError(95, "Operation not supported")

        os.setxattr = refuse  # type: ignore[assignment]
        try:
            with self.assertRaises(StorageError) as caught:
                yield defer.Deferred.fromCoroutine(self.backend.start())
        finally:
            os.setxattr = original
        self.assertIn("extended attributes", str(caught.exception))


class Stopped(unittest.TestCase):
    async def test_calls_after_the_pool_stopped_fail_at_once(self) -> None:
        """Twisted's pool drops work given after its stop: the backend says so instead of never answering."""
        pool = ThreadPool(1, 2, name="test-s3-files-stopped")
        pool.start()
        backend = FileBackend(self.mktemp(), reactor, pool)
        await backend.start()
        pool.stop()
        listing = defer.Deferred.fromCoroutine(backend.list("GlobalEyeRecord"))
        self.assertTrue(listing.called)
        with self.assertRaises(StorageError):
            await listing
