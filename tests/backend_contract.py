"""The contract every :class:`~globaleye.s3.backend.ObjectBackend` keeps, as a Trial mixin.

A backend's test module runs the whole contract with one class::

    class FileBackendContract(BackendContract, TestCase):
        async def make_backend(self) -> ObjectBackend:
            return FileBackend(...)

:meth:`BackendContract.make_backend` returns a fresh, empty, running backend (register its stopping
with ``self.addCleanup``); :meth:`BackendContract.staging_dir` is where the tests write the staging
files they hand to ``put_file`` (override it when the backend wants them on its own file system).
Run against :class:`~globaleye.s3.memory.MemoryBackend` (tests/unit/test_s3_memory.py) and
:class:`~globaleye.s3.external.S3Backend` on moto's server (tests/interop/test_s3_external.py).

What differs between backends and so is not part of the contract: the etag of an object stored by
a multipart upload (S3's ``<md5 of part md5s>-<parts>``: only "the same etag from put and head"
holds), the content type in a listing (ListObjectsV2 has none), ``modified`` beyond being a time.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from typing import Any

from globaleye.s3.backend import (
    PICTURE_BUCKET,
    RECORD_BUCKET,
    NoSuchBucket,
    NoSuchKey,
    ObjectBackend,
    ObjectInfo,
)

#: Keys whose UTF-8 byte order differs from their UTF-16 order (U+FF5E before U+1F600 in UTF-8,
#: after it in UTF-16) and from a case-insensitive order.
UTF8_KEYS = ["34020000001320000001_1_20261202030000.ts", "B", "a", "é", "中", "～", "😀"]


class BackendContract:
    """The mixin: put it before ``TestCase`` in the bases."""

    #: The large object of :meth:`test_large_put_file` (enough for a multipart upload on S3).
    large_size = 20 * 1024 * 1024

    backend: ObjectBackend

    # -------------------------------------------------------------- the hooks

    async def make_backend(self) -> ObjectBackend:
        """A fresh, empty, started backend."""
        raise NotImplementedError

    def staging_dir(self) -> str:
        path: str = self.mktemp()  # type: ignore[attr-defined]
        os.makedirs(path)
        return path

    # -------------------------------------------------------------- helpers

    def setUp(self) -> Any:
        from twisted.internet.defer import Deferred

        parent = super().setUp  # type: ignore[misc]

        async def set_up() -> None:
            # The test case's own setUp first (a harness the backend needs).
            started = parent()
            if inspect.isawaitable(started):
                await started
            self.backend = await self.make_backend()
            self._staging = self.staging_dir()
            self._staged = 0

        return Deferred.fromCoroutine(set_up())

    def stage(self, data: bytes) -> tuple[str, str]:
        """A staging file holding ``data``, and its hex MD5 (what the S3 endpoint computes on receipt)."""
        self._staged += 1
        path = os.path.join(self._staging, f"staged-{self._staged}")
        with open(path, "wb") as f:
            f.write(data)
        return path, hashlib.md5(data).hexdigest()

    async def bucket(self, name: str = RECORD_BUCKET) -> str:
        self.assertTrue(await self.backend.create_bucket(name))  # type: ignore[attr-defined]
        return name

    async def keys(self, bucket: str, **kwargs: Any) -> list[str]:
        infos, truncated = await self.backend.list(bucket, **kwargs)
        self.assertFalse(truncated)  # type: ignore[attr-defined]
        return [i.key for i in infos]

    async def assertRaisesAsync(self, exc: type[Exception], awaitable: Any) -> Exception:
        try:
            await awaitable
        except exc as e:
            return e
        self.fail(f"{exc.__name__} not raised")  # type: ignore[attr-defined]
        raise AssertionError  # unreachable

    # -------------------------------------------------------------- buckets

    async def test_create_bucket(self) -> None:
        t: Any = self
        t.assertFalse(await self.backend.bucket_exists(RECORD_BUCKET))
        t.assertTrue(await self.backend.create_bucket(RECORD_BUCKET))
        t.assertTrue(await self.backend.bucket_exists(RECORD_BUCKET))
        t.assertFalse(await self.backend.create_bucket(RECORD_BUCKET))
        t.assertFalse(await self.backend.bucket_exists(PICTURE_BUCKET))
        t.assertEqual(await self.keys(RECORD_BUCKET), [])

    async def test_missing_bucket(self) -> None:
        """Every operation on a bucket that does not exist says so, and creates nothing."""
        b = PICTURE_BUCKET
        await self.assertRaisesAsync(NoSuchBucket, self.backend.put_bytes(b, "k", b"x"))
        path, etag = self.stage(b"x")
        await self.assertRaisesAsync(NoSuchBucket, self.backend.put_file(b, "k", path, etag=etag))
        await self.assertRaisesAsync(NoSuchBucket, self.backend.head(b, "k"))
        await self.assertRaisesAsync(NoSuchBucket, self.backend.read(b, "k"))
        await self.assertRaisesAsync(NoSuchBucket, self.backend.delete(b, "k"))
        await self.assertRaisesAsync(NoSuchBucket, self.backend.list(b))
        self.assertFalse(await self.backend.bucket_exists(b))  # type: ignore[attr-defined]

    async def test_buckets_apart(self) -> None:
        """The same key in two buckets is two objects."""
        t: Any = self
        await self.bucket(RECORD_BUCKET)
        await self.bucket(PICTURE_BUCKET)
        await self.backend.put_bytes(RECORD_BUCKET, "k", b"record")
        t.assertEqual(await self.keys(PICTURE_BUCKET), [])
        await self.backend.put_bytes(PICTURE_BUCKET, "k", b"picture")
        t.assertEqual(await self.backend.read(RECORD_BUCKET, "k"), b"record")
        t.assertTrue(await self.backend.delete(PICTURE_BUCKET, "k"))
        t.assertEqual(await self.backend.read(RECORD_BUCKET, "k"), b"record")

    # -------------------------------------------------------------- objects

    async def test_missing_key(self) -> None:
        t: Any = self
        b = await self.bucket()
        t.assertIsNone(await self.backend.head(b, "nothing"))
        await self.assertRaisesAsync(NoSuchKey, self.backend.read(b, "nothing"))
        await self.assertRaisesAsync(NoSuchKey, self.backend.read(b, "nothing", 0, 0))
        t.assertFalse(await self.backend.delete(b, "nothing"))

    async def test_put_bytes(self) -> None:
        t: Any = self
        b = await self.bucket(PICTURE_BUCKET)
        data = b"\xff\xd8 a picture \xff\xd9"
        info = await self.backend.put_bytes(b, "cam_1_20261202030000.jpg", data, "image/jpeg")
        t.assertIsInstance(info, ObjectInfo)
        t.assertEqual((info.bucket, info.key, info.size, info.etag),
                      (b, "cam_1_20261202030000.jpg", len(data), hashlib.md5(data).hexdigest()))
        t.assertIsInstance(info.modified, float)
        head = await self.backend.head(b, "cam_1_20261202030000.jpg")
        t.assertIsNotNone(head)
        t.assertEqual((head.bucket, head.key, head.size, head.etag, head.content_type),
                      (b, info.key, len(data), info.etag, "image/jpeg"))
        t.assertEqual(await self.backend.read(b, info.key), data)

    async def test_empty_object(self) -> None:
        t: Any = self
        b = await self.bucket()
        info = await self.backend.put_bytes(b, "empty", b"")
        t.assertEqual((info.size, info.etag), (0, hashlib.md5(b"").hexdigest()))
        t.assertEqual(await self.backend.read(b, "empty"), b"")
        t.assertEqual(await self.backend.read(b, "empty", 0, 10), b"")
        t.assertEqual((await self.backend.head(b, "empty")).size, 0)

    async def test_put_file(self) -> None:
        """put_file stores the staging file's bytes under the caller's MD5 and consumes the file."""
        t: Any = self
        b = await self.bucket()
        data = os.urandom(100_000)
        path, etag = self.stage(data)
        info = await self.backend.put_file(b, "cam_1_20261202030000.ts", path, etag=etag, content_type="video/mp2t")
        t.assertEqual((info.bucket, info.key, info.size, info.etag), (b, "cam_1_20261202030000.ts", len(data), etag))
        t.assertFalse(os.path.exists(path), "the staging file is consumed")
        head = await self.backend.head(b, info.key)
        t.assertEqual((head.size, head.etag, head.content_type), (len(data), etag, "video/mp2t"))
        t.assertEqual(await self.backend.read(b, info.key), data)

    async def test_put_file_replaces(self) -> None:
        """A new version replaces the old whole: one object, the new bytes, the new etag."""
        t: Any = self
        b = await self.bucket()
        old, new = b"old " * 10_000, b"new!" * 30_000
        path, etag = self.stage(old)
        await self.backend.put_file(b, "k", path, etag=etag)
        path, etag = self.stage(new)
        info = await self.backend.put_file(b, "k", path, etag=etag)
        t.assertEqual(info.etag, etag)
        t.assertEqual((await self.backend.head(b, "k")).etag, etag)
        t.assertEqual(await self.backend.read(b, "k"), new)
        t.assertEqual(await self.keys(b), ["k"])

    async def test_put_file_atomic(self) -> None:
        """While a large new version is being stored, readers see the whole old version or the whole
        new one, never a mixture or a part."""
        from twisted.internet.defer import Deferred

        t: Any = self
        b = await self.bucket()
        old, new = b"o" * 2_000_000, b"n" * 6_000_000
        await self.backend.put_bytes(b, "k", old)
        path, etag = self.stage(new)
        putting = Deferred.fromCoroutine(self.backend.put_file(b, "k", path, etag=etag))
        for _ in range(1000):
            data = await self.backend.read(b, "k")
            t.assertIn(data, (old, new))
            if putting.called:
                break
        await putting
        t.assertEqual(await self.backend.read(b, "k"), new)

    async def test_ranged_read(self) -> None:
        t: Any = self
        b = await self.bucket()
        data = bytes(range(256)) * 40
        await self.backend.put_bytes(b, "k", data)
        t.assertEqual(await self.backend.read(b, "k", 0, 10), data[:10])
        t.assertEqual(await self.backend.read(b, "k", 100, 1000), data[100:1100])
        t.assertEqual(await self.backend.read(b, "k", 9000), data[9000:])
        t.assertEqual(await self.backend.read(b, "k", len(data) - 1, 50), data[-1:])
        t.assertEqual(await self.backend.read(b, "k", 5000, 0), b"")
        t.assertEqual(await self.backend.read(b, "k", len(data)), b"")
        t.assertEqual(await self.backend.read(b, "k", len(data) + 10, 5), b"")

    async def test_delete_twice(self) -> None:
        t: Any = self
        b = await self.bucket()
        await self.backend.put_bytes(b, "a", b"1")
        await self.backend.put_bytes(b, "b", b"2")
        t.assertTrue(await self.backend.delete(b, "a"))
        t.assertFalse(await self.backend.delete(b, "a"))
        t.assertIsNone(await self.backend.head(b, "a"))
        await self.assertRaisesAsync(NoSuchKey, self.backend.read(b, "a"))
        t.assertEqual(await self.keys(b), ["b"])

    async def test_large_put_file(self) -> None:
        """A 20 MB recording (a 5-minute segment at about 0.5 Mbit/s) stored from a staging file and
        read back in bounded pieces."""
        t: Any = self
        b = await self.bucket()
        data = os.urandom(self.large_size)
        path, etag = self.stage(data)
        info = await self.backend.put_file(b, "cam_1_20261202030000.ts", path, etag=etag)
        t.assertEqual(info.size, len(data))
        t.assertFalse(os.path.exists(path))
        head = await self.backend.head(b, info.key)
        t.assertEqual((head.size, head.etag), (len(data), info.etag))
        piece, got = 4 * 1024 * 1024, hashlib.md5()
        for offset in range(0, len(data), piece):
            chunk = await self.backend.read(b, info.key, offset, piece)
            t.assertEqual(len(chunk), min(piece, len(data) - offset))
            got.update(chunk)
        t.assertEqual(got.hexdigest(), etag)

    async def test_unicode_keys(self) -> None:
        t: Any = self
        b = await self.bucket()
        key = "店铺 camera/01_é😀 ~!$&'()+,;=@[].jpg"
        await self.backend.put_bytes(b, key, b"unicode")
        t.assertEqual((await self.backend.head(b, key)).key, key)
        t.assertEqual(await self.backend.read(b, key), b"unicode")
        t.assertEqual(await self.keys(b), [key])
        t.assertEqual(await self.keys(b, prefix="店铺 "), [key])
        t.assertTrue(await self.backend.delete(b, key))
        t.assertEqual(await self.keys(b), [])

    # -------------------------------------------------------------- listing

    async def test_list_order_utf8(self) -> None:
        """S3 lists in the order of the keys' UTF-8 bytes."""
        t: Any = self
        b = await self.bucket()
        for key in reversed(UTF8_KEYS):
            await self.backend.put_bytes(b, key, key.encode())
        infos, truncated = await self.backend.list(b)
        t.assertFalse(truncated)
        t.assertEqual([i.key for i in infos], sorted(UTF8_KEYS, key=lambda k: k.encode()))
        t.assertEqual([i.key for i in infos], UTF8_KEYS)
        for i in infos:
            t.assertEqual((i.bucket, i.size, i.etag), (b, len(i.key.encode()), hashlib.md5(i.key.encode()).hexdigest()))

    async def test_list_prefix(self) -> None:
        t: Any = self
        b = await self.bucket()
        for key in ["cam1_1_a", "cam1_2_b", "cam10_1_a", "cam2_1_a", "cam1"]:
            await self.backend.put_bytes(b, key, b"")
        t.assertEqual(await self.keys(b, prefix="cam1_"), ["cam1_1_a", "cam1_2_b"])
        t.assertEqual(await self.keys(b, prefix="cam1"), ["cam1", "cam10_1_a", "cam1_1_a", "cam1_2_b"])
        t.assertEqual(await self.keys(b, prefix="cam3"), [])

    async def test_list_start_after(self) -> None:
        t: Any = self
        b = await self.bucket()
        for key in UTF8_KEYS:
            await self.backend.put_bytes(b, key, b"")
        t.assertEqual(await self.keys(b, start_after="a"), ["é", "中", "～", "😀"])
        t.assertEqual(await self.keys(b, start_after="aa"), ["é", "中", "～", "😀"])
        t.assertEqual(await self.keys(b, start_after="～"), ["😀"])
        t.assertEqual(await self.keys(b, start_after="😀"), [])
        t.assertEqual(await self.keys(b, start_after="", prefix="B"), ["B"])
        t.assertEqual(await self.keys(b, start_after="B", prefix="B"), [])

    async def test_list_limit(self) -> None:
        """Pages of ``limit`` keys, the last key of one page the ``start_after`` of the next."""
        t: Any = self
        b = await self.bucket()
        keys = [f"cam_1_2026120203{m:02d}00.ts" for m in range(7)]
        for key in keys:
            await self.backend.put_bytes(b, key, b"x")
        pages, after = [], ""
        for _ in range(10):
            infos, truncated = await self.backend.list(b, start_after=after, limit=3)
            pages.append(([i.key for i in infos], truncated))
            if not truncated:
                break
            after = infos[-1].key
        t.assertEqual(pages, [(keys[0:3], True), (keys[3:6], True), (keys[6:], False)])
        infos, truncated = await self.backend.list(b, limit=7)
        t.assertEqual(([i.key for i in infos], truncated), (keys, False))
        infos, truncated = await self.backend.list(b, prefix="cam_1_20261202030", limit=1)
        t.assertEqual(([i.key for i in infos], truncated), (keys[:1], True))
