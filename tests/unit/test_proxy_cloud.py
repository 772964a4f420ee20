"""The proxy's ``/cloud/`` URLs and its object cache, without sockets (globaleye.proxy.cloud)."""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from globaleye.media.rtsp.sequence import nearest_scale, parse_scale
from globaleye.media.rtsp.serving import Refusal
from globaleye.proxy.cloud import CloudFile, CloudPlayback, ObjectCache, Programme
from globaleye.proxy.server import parse_proxy_url
from globaleye.s3.backend import RECORD_BUCKET, StorageError
from globaleye.s3.memory import MemoryBackend

DEV = "81300000011"
T0 = datetime.datetime(2026, 12, 2, 10, 0, 0)


class CloudUrlTests(TestCase):
    def test_start_only_defaults_to_a_day(self) -> None:
        target, track, base = parse_proxy_url(f"rtsp://h:8554/cloud/{DEV}/0/20261202100000")
        self.assertEqual((target.kind, target.dev_id, target.channel_no, track), ("cloud", DEV, 0, None))
        self.assertEqual(target.file_name, "20261202100000-20261203100000")
        self.assertEqual(base, f"rtsp://h:8554/cloud/{DEV}/0/20261202100000-20261203100000")

    def test_end_query_and_its_canonical_form_name_the_same_programme(self) -> None:
        _t, _k, base = parse_proxy_url(f"rtsp://h/cloud/{DEV}/1/20261202100000?end=20261202110000")
        self.assertEqual(base, f"rtsp://h/cloud/{DEV}/1/20261202100000-20261202110000")
        target, track, again = parse_proxy_url(base + "/trackID=0")
        self.assertEqual((again, track, target.channel_no), (base, 0, 1))

    def test_bad_ranges_are_404(self) -> None:
        for tail in ("2026120210000", "20261302100000", "20261202100000?end=20261202100000",
                     "20261202100000?end=20261202090000", "20261202100000-20261204100000", "x/20261202100000",
                     "20261202100000-abc"):
            with self.assertRaises(Refusal, msg=tail) as caught:
                parse_proxy_url(f"rtsp://h/cloud/{DEV}/0/{tail}")
            self.assertEqual(caught.exception.code, 404)

    def test_scales_of_section_10(self) -> None:
        self.assertEqual([parse_scale(v) for v in ("1", "2.0", "3", "0.3", "-1", "0", "inf", "x")],
                         [1.0, 2.0, 4.0, 0.25, None, None, None, None])
        self.assertEqual(nearest_scale(0.5), 0.5)


class ProgrammeTests(TestCase):
    def programme(self, start: datetime.datetime, end: datetime.datetime | None = None) -> Programme:
        files = [CloudFile(RECORD_BUCKET, f"{DEV}_0_{T0 + datetime.timedelta(seconds=300 * i):%Y%m%d%H%M%S}.ts",
                           T0 + datetime.timedelta(seconds=300 * i), 300.0) for i in range(3)]
        playback = CloudPlayback(files=None, cache=None)  # type: ignore[arg-type]
        return Programme(playback, files, start, "test", end)

    def test_npt_zero_is_the_asked_start_inside_the_first_file(self) -> None:
        p = self.programme(T0 + datetime.timedelta(seconds=120))
        self.assertEqual((p.offsets, p.lead, p.total), ([0.0, 300.0, 600.0], 120.0, 780.0))

    def test_an_end_inside_the_last_file_cuts_it(self) -> None:
        p = self.programme(T0 + datetime.timedelta(seconds=120), T0 + datetime.timedelta(seconds=700))
        self.assertEqual((p.cut, p.total), (100.0, 580.0))
        p = self.programme(T0, T0 + datetime.timedelta(seconds=900))
        self.assertEqual((p.cut, p.total), (None, 900.0))

    def test_a_start_before_the_first_file(self) -> None:
        p = self.programme(T0 - datetime.timedelta(seconds=30))
        self.assertEqual((p.lead, p.total), (0.0, 900.0))


class ObjectCacheTests(TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.backend = MemoryBackend(reactor.seconds)
        await self.backend.create_bucket(RECORD_BUCKET)
        self.dir = tempfile.mkdtemp(prefix="cloudcache-")
        self.addCleanup(lambda: __import__("shutil").rmtree(self.dir, ignore_errors=True))

    async def test_fetched_once_in_pieces_then_served_from_disk(self) -> None:
        from globaleye.proxy import cloud

        self.patch(cloud, "READ_PIECE", 1000)
        body = os.urandom(4500)
        await self.backend.put_bytes(RECORD_BUCKET, "a", body)
        reads: list[tuple[int, int | None]] = []
        original = self.backend.read

        async def counting(bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
            reads.append((offset, length))
            return await original(bucket, key, offset, length)

        self.backend.read = counting  # type: ignore[method-assign]
        cache = ObjectCache(self.backend, self.dir)
        from twisted.internet.defer import Deferred, gatherResults
        paths = await gatherResults([Deferred.fromCoroutine(cache.path(RECORD_BUCKET, "a")) for _ in range(3)])
        self.assertEqual(len(set(paths)), 1, "three viewers at once: one fetch")
        self.assertEqual(Path(paths[0]).read_bytes(), body)
        self.assertEqual(reads, [(0, 1000), (1000, 1000), (2000, 1000), (3000, 1000), (4000, 500)])
        self.assertEqual(await cache.path(RECORD_BUCKET, "a"), paths[0])
        self.assertEqual(cache.fetches, 1)
        self.assertEqual([n for n in os.listdir(Path(paths[0]).parent) if n.endswith(".part")], [])

    async def test_an_overwritten_object_is_fetched_again(self) -> None:
        cache = ObjectCache(self.backend, self.dir)
        await self.backend.put_bytes(RECORD_BUCKET, "a", b"old" * 10)
        first = await cache.path(RECORD_BUCKET, "a")
        await self.backend.put_bytes(RECORD_BUCKET, "a", b"new" * 10)
        second = await cache.path(RECORD_BUCKET, "a")
        self.assertNotEqual(first, second)
        self.assertEqual(Path(second).read_bytes(), b"new" * 10)

    async def test_bounded_least_recently_used_out(self) -> None:
        cache = ObjectCache(self.backend, self.dir, max_bytes=2500)
        for key in "abc":
            await self.backend.put_bytes(RECORD_BUCKET, key, key.encode() * 1000)
        a = await cache.path(RECORD_BUCKET, "a")
        b = await cache.path(RECORD_BUCKET, "b")
        await cache.path(RECORD_BUCKET, "a")  # a used again: b is now the oldest
        c = await cache.path(RECORD_BUCKET, "c")
        self.assertTrue(os.path.exists(a) and os.path.exists(c))
        self.assertFalse(os.path.exists(b), "the least recently used file went")

    async def test_missing_and_oversized_objects_are_storage_errors(self) -> None:
        cache = ObjectCache(self.backend, self.dir, max_bytes=100)
        with self.assertRaises(StorageError):
            await cache.path(RECORD_BUCKET, "nothing")
        await self.backend.put_bytes(RECORD_BUCKET, "big", b"x" * 101)
        with self.assertRaises(StorageError):
            await cache.path(RECORD_BUCKET, "big")
        self.assertEqual(os.listdir(self.dir) if os.path.exists(self.dir) else [], [])

    async def test_a_backend_with_files_is_read_in_place(self) -> None:
        """The optional ``local_path`` (plain or async): no copy, no read through the backend."""
        where = os.path.join(self.dir, "object.ts")
        Path(where).write_bytes(b"x")

        class FileBackend(MemoryBackend):
            async def local_path(self, bucket: str, key: str) -> str | None:
                return where if key == "here" else None

        backend = FileBackend(reactor.seconds)
        await backend.create_bucket(RECORD_BUCKET)
        await backend.put_bytes(RECORD_BUCKET, "elsewhere", b"y")
        cache = ObjectCache(backend, os.path.join(self.dir, "cache"))
        self.assertEqual(await cache.path(RECORD_BUCKET, "here"), where)
        self.assertEqual(cache.fetches, 0)
        self.assertNotEqual(await cache.path(RECORD_BUCKET, "elsewhere"), where)
        self.assertEqual(cache.fetches, 1)
