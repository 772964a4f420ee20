"""The embedded endpoint's :class:`~globaleye.s3.backend.ObjectBackend`: objects as files on a local disk.

Layout (``data_dir``):

* ``<bucket>/<name>``: one file per object.  ``<name>`` is the key's UTF-8 bytes with every byte
  outside ``A-Za-z0-9_-`` (and ``.``, except as the first byte) written ``%XX`` — §7.1.1's
  ``DevID_ChannelNo_YYYYMMDDHHMMSS.ts`` stays readable, and no key can name ``.``, ``..``, a
  sub-directory or anything outside its bucket.  A name that would pass 240 bytes (keys are up to
  1024 bytes, file names at most 255) is ``#`` and the SHA-256 of the key instead, the key kept in
  the file's ``user.s3.key`` extended attribute.
* the ETag, content type and key ride in extended attributes (``user.s3.etag``, ``user.s3.type``)
  set on the staging file before it is renamed into place, so data and metadata change together.
  The data directory's filesystem must support user xattrs (ext4, xfs, btrfs, tmpfs ≥ 6.6):
  :meth:`FileBackend.start` checks and refuses to start with a clear error otherwise.
* ``.staging/``: files being received (the endpoint's, and put_bytes'); emptied at start (what a
  crash left).  ``.multipart/``: the endpoint's multipart parts.

A write is: fsync the staging file, rename it over the object's name, fsync the directory — after
a crash the object is the old one or the new one, never a mix.  All disk work runs in the
service's thread pool, never on the reactor thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import fail
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from globaleye.s3.backend import NoSuchBucket, NoSuchKey, ObjectInfo, StorageError

T = TypeVar("T")

MAX_KEY_BYTES = 1024
MAX_NAME = 240
XATTR_ETAG = "user.s3.etag"
XATTR_TYPE = "user.s3.type"
XATTR_KEY = "user.s3.key"
STAGING = ".staging"
MULTIPART = ".multipart"
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
#: S3's bucket names, with the upper case the legacy rules allowed (§7.1.1's GlobalEyeRecord).
BUCKET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]\Z")


class InvalidName(StorageError):
    """A bucket name or key that is not acceptable (S3's InvalidBucketName / KeyTooLongError)."""


def valid_bucket(bucket: str) -> bool:
    return bool(BUCKET_NAME.match(bucket)) and ".." not in bucket


def check_key(key: str) -> bytes:
    raw = key.encode("utf-8", "strict")
    if not raw or len(raw) > MAX_KEY_BYTES:
        raise InvalidName(f"a key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8")
    return raw


def encode_key(key: str) -> str:
    """The file name of ``key`` in its bucket directory (see the module docstring)."""
    raw = check_key(key)
    name = "".join(chr(b) if b in _PLAIN and not (i == 0 and b == 0x2E) else f"%{b:02X}" for i, b in enumerate(raw))
    if len(name) > MAX_NAME:
        return "#" + hashlib.sha256(raw).hexdigest()
    return name


def decode_name(name: str) -> str | None:
    """The key of a plain file name (None for a hashed ``#`` name: read its xattr)."""
    if name.startswith("#"):
        return None
    out = bytearray()
    i = 0
    while i < len(name):
        if name[i] == "%":
            out.append(int(name[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(name[i]))
            i += 1
    return out.decode("utf-8")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBackend:
    """Objects as files under ``data_dir`` (see the module docstring); ``reactor`` gives the
    modification times (IReactorTime) and runs the thread pool's results."""

    def __init__(self, data_dir: str, reactor: Any, threadpool: ThreadPool) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.reactor = reactor
        self.threadpool = threadpool
        self.staging_dir = os.path.join(self.data_dir, STAGING)
        self.multipart_dir = os.path.join(self.data_dir, MULTIPART)

    def _run(self, function: Callable[..., T], *args: Any) -> Any:
        if self.threadpool.joined:
            # Stopped (the platform is shutting down): Twisted's pool drops new work without a word, and
            # the caller (a reconciliation still running) would wait forever; fail at once instead, as
            # the external backend does.
            return fail(StorageError("the object store is stopped"))
        return deferToThreadPool(self.reactor, self.threadpool, function, *args)

    # -- start ------------------------------------------------------------------------------

    async def start(self) -> int:
        """Create the directories, empty the staging area (a crash's leftovers) and check the
        filesystem keeps extended attributes.  Returns the number of leftovers removed."""
        return int(await self._run(self._start))

    def prepare(self) -> int:
        """:meth:`start` on the caller's thread: for the composition root at start-up, before the
        reactor serves anyone (as the database's migrations)."""
        return self._start()

    def _start(self) -> int:
        os.makedirs(self.data_dir, exist_ok=True)
        removed = 0
        for directory in (self.staging_dir, self.multipart_dir):
            if os.path.isdir(directory):
                removed += len(os.listdir(directory))
                shutil.rmtree(directory)
            os.makedirs(directory)
        probe = os.path.join(self.staging_dir, "xattr-probe")
        with open(probe, "wb"):
            pass
        try:
            os.setxattr(probe, XATTR_ETAG, b"probe")
        except OSError as error:
            raise StorageError(f"{self.data_dir}: the filesystem does not keep user extended attributes "
                               f"({error.strerror}); the object store needs them (ext4, xfs, btrfs, tmpfs on Linux "
                               "6.6 or later)") from None
        finally:
            os.unlink(probe)
        _fsync_dir(self.data_dir)
        return removed

    def new_staging_path(self) -> str:
        """A fresh file name in the staging directory (same filesystem as the objects)."""
        return os.path.join(self.staging_dir, uuid.uuid4().hex)

    # -- buckets ----------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> str:
        if not valid_bucket(bucket):
            raise InvalidName(f"{bucket!r} is not a bucket name")
        return os.path.join(self.data_dir, bucket)

    async def create_bucket(self, bucket: str) -> bool:
        path = self._bucket_dir(bucket)
        return bool(await self._run(self._create_bucket, path))

    def _create_bucket(self, path: str) -> bool:
        try:
            os.mkdir(path)
        except FileExistsError:
            return False
        _fsync_dir(self.data_dir)
        return True

    async def bucket_exists(self, bucket: str) -> bool:
        if not valid_bucket(bucket):
            return False
        return bool(await self._run(os.path.isdir, self._bucket_dir(bucket)))

    async def buckets(self) -> list[tuple[str, float]]:
        """(name, creation time) of every bucket (ListBuckets)."""
        result: list[tuple[str, float]] = await self._run(self._buckets)
        return result

    def _buckets(self) -> list[tuple[str, float]]:
        found = []
        with os.scandir(self.data_dir) as entries:
            for entry in entries:
                if entry.is_dir() and valid_bucket(entry.name):
                    found.append((entry.name, entry.stat().st_mtime))
        return sorted(found)

    # -- objects ----------------------------------------------------------------------------

    def _object_path(self, bucket: str, key: str) -> tuple[str, str]:
        directory = self._bucket_dir(bucket)
        return directory, os.path.join(directory, encode_key(key))

    async def put_file(self, bucket: str, key: str, path: str, *, etag: str,
                       content_type: str = "application/octet-stream") -> ObjectInfo:
        directory, target = self._object_path(bucket, key)
        info: ObjectInfo = await self._run(self._put_file, bucket, key, directory, target, path, etag, content_type,
                                           self.reactor.seconds())
        return info

    def _put_file(self, bucket: str, key: str, directory: str, target: str, path: str, etag: str,
                  content_type: str, now: float) -> ObjectInfo:
        if not os.path.isdir(directory):
            _unlink(path)
            raise NoSuchBucket(bucket)
        if os.stat(path).st_dev != os.stat(directory).st_dev:
            # Another filesystem: copy into our own staging first, so the final step is a rename.
            local = self.new_staging_path()
            shutil.copyfile(path, local)
            os.unlink(path)
            path = local
        try:
            os.setxattr(path, XATTR_ETAG, etag.encode())
            os.setxattr(path, XATTR_TYPE, content_type.encode()[:1024])
            if os.path.basename(target).startswith("#"):
                os.setxattr(path, XATTR_KEY, key.encode())
            os.utime(path, (now, now))
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            os.rename(path, target)
            _fsync_dir(directory)
        except BaseException:
            _unlink(path)
            raise
        return ObjectInfo(bucket, key, size, etag, now, content_type)

    async def put_bytes(self, bucket: str, key: str, data: bytes,
                        content_type: str = "application/octet-stream") -> ObjectInfo:
        path = self.new_staging_path()
        await self._run(_write, path, data)
        return await self.put_file(bucket, key, path, etag=hashlib.md5(data).hexdigest(), content_type=content_type)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        directory, target = self._object_path(bucket, key)
        info: ObjectInfo | None = await self._run(self._head, bucket, key, directory, target)
        return info

    def _head(self, bucket: str, key: str, directory: str, target: str) -> ObjectInfo | None:
        try:
            return _info(bucket, key, target)
        except FileNotFoundError:
            if not os.path.isdir(directory):
                raise NoSuchBucket(bucket) from None
            return None

    async def read(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        directory, target = self._object_path(bucket, key)
        data: bytes = await self._run(self._read, bucket, key, directory, target, offset, length)
        return data

    def _read(self, bucket: str, key: str, directory: str, target: str, offset: int, length: int | None) -> bytes:
        try:
            with open(target, "rb") as f:
                f.seek(offset)
                return f.read() if length is None else f.read(length)
        except FileNotFoundError:
            if not os.path.isdir(directory):
                raise NoSuchBucket(bucket) from None
            raise NoSuchKey(f"{bucket}/{key}") from None

    async def delete(self, bucket: str, key: str) -> bool:
        directory, target = self._object_path(bucket, key)
        return bool(await self._run(self._delete, bucket, directory, target))

    def _delete(self, bucket: str, directory: str, target: str) -> bool:
        try:
            os.unlink(target)
        except FileNotFoundError:
            if not os.path.isdir(directory):
                raise NoSuchBucket(bucket) from None
            return False
        _fsync_dir(directory)
        return True

    async def list(self, bucket: str, prefix: str = "", start_after: str = "",
                   limit: int = 1000) -> tuple[Sequence[ObjectInfo], bool]:
        directory = self._bucket_dir(bucket)
        result: tuple[Sequence[ObjectInfo], bool] = await self._run(self._list, bucket, directory, prefix,
                                                                    start_after, limit)
        return result

    def _list(self, bucket: str, directory: str, prefix: str, start_after: str,
              limit: int) -> tuple[Sequence[ObjectInfo], bool]:
        raw_prefix, raw_after = prefix.encode(), start_after.encode()
        keys: list[tuple[bytes, str, str]] = []
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            raise NoSuchBucket(bucket) from None
        for name in names:
            try:
                key = decode_name(name)
                if key is None:
                    key = os.getxattr(os.path.join(directory, name), XATTR_KEY).decode()
            except (OSError, ValueError):
                continue  # not one of ours (a stray file); never listed
            raw = key.encode()
            if raw.startswith(raw_prefix) and raw > raw_after:
                keys.append((raw, key, name))
        keys.sort()
        infos = []
        for _raw, key, name in keys[:limit]:
            try:
                infos.append(_info(bucket, key, os.path.join(directory, name)))
            except FileNotFoundError:
                continue  # deleted meanwhile
        return infos, len(keys) > limit


def _info(bucket: str, key: str, path: str) -> ObjectInfo:
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        try:
            etag = os.getxattr(fd, XATTR_ETAG).decode()
        except OSError as error:
            if error.errno != errno.ENODATA:
                raise
            etag = ""
        try:
            content_type = os.getxattr(fd, XATTR_TYPE).decode()
        except OSError:
            content_type = "application/octet-stream"
    finally:
        os.close(fd)
    return ObjectInfo(bucket, key, st.st_size, etag, st.st_mtime, content_type)


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["FileBackend", "InvalidName", "decode_name", "encode_key", "valid_bucket"]
