"""An in-memory :class:`~globaleye.s3.backend.ObjectBackend` for tests of the layers above it.

It keeps the same rules as the real backends (missing buckets and keys, key order, atomic
replacement), so a test of the application layer or the FTP role exercises the same paths.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence

from globaleye.s3.backend import NoSuchBucket, NoSuchKey, ObjectInfo


class MemoryBackend:
    """Objects in a dict per bucket; ``clock`` stamps them (the reactor's ``seconds``)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.buckets: dict[str, dict[str, tuple[ObjectInfo, bytes]]] = {}

    def _bucket(self, bucket: str) -> dict[str, tuple[ObjectInfo, bytes]]:
        try:
            return self.buckets[bucket]
        except KeyError:
            raise NoSuchBucket(bucket) from None

    async def create_bucket(self, bucket: str) -> bool:
        if bucket in self.buckets:
            return False
        self.buckets[bucket] = {}
        return True

    async def bucket_exists(self, bucket: str) -> bool:
        return bucket in self.buckets

    async def put_file(self, bucket: str, key: str, path: str, *, etag: str,
                       content_type: str = "application/octet-stream") -> ObjectInfo:
        objects = self._bucket(bucket)
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
        info = ObjectInfo(bucket, key, len(data), etag, self.clock(), content_type)
        objects[key] = (info, data)
        return info

    async def put_bytes(self, bucket: str, key: str, data: bytes,
                        content_type: str = "application/octet-stream") -> ObjectInfo:
        objects = self._bucket(bucket)
        info = ObjectInfo(bucket, key, len(data), hashlib.md5(data).hexdigest(), self.clock(), content_type)
        objects[key] = (info, bytes(data))
        return info

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        entry = self._bucket(bucket).get(key)
        return entry[0] if entry else None

    async def read(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        entry = self._bucket(bucket).get(key)
        if entry is None:
            raise NoSuchKey(f"{bucket}/{key}")
        data = entry[1]
        return data[offset:] if length is None else data[offset:offset + length]

    async def delete(self, bucket: str, key: str) -> bool:
        return self._bucket(bucket).pop(key, None) is not None

    async def list(self, bucket: str, prefix: str = "", start_after: str = "",
                   limit: int = 1000) -> tuple[Sequence[ObjectInfo], bool]:
        keys = sorted((k for k in self._bucket(bucket) if k.startswith(prefix) and k > start_after),
                      key=lambda k: k.encode())
        chosen = keys[:limit]
        return [self.buckets[bucket][k][0] for k in chosen], len(keys) > limit
