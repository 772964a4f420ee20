"""The object store's interfaces: the backend the bytes live in, the credentials that sign, the events.

Everything here returns awaitables: a backend's work (disk writes with fsync, an external S3
service) happens off the reactor thread.  The S3 endpoint (the ``storage`` role), the FTP role and
the application layer depend only on these Protocols; the embedded file backend and the external
S3 backend implement :class:`ObjectBackend`, the application layer implements
:class:`CredentialLookup` and :class:`StorageEvents`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

#: §7.1.1: "IPC 进行录像存储时，首先需要在天翼云平台创建 Bucket（名称为：GlobalEyeRecord）".
RECORD_BUCKET = "GlobalEyeRecord"
#: §7.1.1: "IPC 进行图片存储时，首先需要在天翼云平台创建 Bucket（名称为：GlobalEyePicture）".
PICTURE_BUCKET = "GlobalEyePicture"


@attrs.frozen
class ObjectInfo:
    """One stored object as S3 lists it."""

    bucket: str
    key: str
    size: int
    #: Hex MD5 of the body for a single PUT; ``<md5 of the parts' md5s>-<parts>`` after a multipart
    #: upload (what S3 answers).  Without quotes.
    etag: str
    #: POSIX time the object was last written.
    modified: float
    content_type: str = "application/octet-stream"


@attrs.frozen
class Principal:
    """Who signed a request: a camera (``dev_id`` set) or the platform itself (``dev_id`` empty).

    A camera may write, read and delete only objects whose key starts with ``<DevID>_`` (§7.1.1
    names every object ``DevID_ChannelNo_YYYYMMDDHHMMSS``), in any bucket; it never sees another
    camera's objects, not even in a listing.  The platform may do everything.
    """

    access_key: str
    secret: str
    dev_id: str = ""

    @property
    def is_platform(self) -> bool:
        return not self.dev_id

    def owns(self, key: str) -> bool:
        """May this principal read, write or delete ``key``?"""
        return self.is_platform or key.startswith(self.dev_id + "_")

    def may_list(self, prefix: str) -> bool:
        """A camera lists only under its own prefix (``<DevID>_...``)."""
        return self.is_platform or prefix.startswith(self.dev_id + "_")


class StorageError(Exception):
    """A backend could not do what was asked (an I/O error, the external service refused)."""


class NoSuchBucket(StorageError):
    pass


class NoSuchKey(StorageError):
    pass


class ObjectBackend(Protocol):
    """Where the bytes live.  Writes are atomic: an object is either all there or not there."""

    async def create_bucket(self, bucket: str) -> bool:
        """Create ``bucket``; False if it existed already (S3's BucketAlreadyOwnedByYou is not an error)."""

    async def bucket_exists(self, bucket: str) -> bool: ...

    async def put_file(self, bucket: str, key: str, path: str, *, etag: str,
                       content_type: str = "application/octet-stream") -> ObjectInfo:
        """Store the complete file at ``path`` (a staging file the caller wrote and checked) as
        ``bucket/key``, replacing any object of that name, and consume ``path``.  Atomic: until it
        returns, readers see the old object (or none); after, the new one.  :class:`NoSuchBucket`
        if the bucket does not exist."""

    async def put_bytes(self, bucket: str, key: str, data: bytes,
                        content_type: str = "application/octet-stream") -> ObjectInfo:
        """:meth:`put_file` for a small body held in memory (a picture, a test)."""

    async def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    async def read(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes (None: to the end) from ``offset``; callers read large objects in bounded
        pieces.  :class:`NoSuchKey` if absent."""

    async def delete(self, bucket: str, key: str) -> bool:
        """Remove ``bucket/key``; False if it was not there."""

    async def list(self, bucket: str, prefix: str = "", start_after: str = "",
                   limit: int = 1000) -> tuple[Sequence[ObjectInfo], bool]:
        """Objects of ``bucket`` whose key starts with ``prefix`` and sorts after ``start_after``, in
        key order (UTF-8 bytes, as S3), at most ``limit``; and whether more follow."""


class CredentialLookup(Protocol):
    """The signing keys: each camera has its own (sent in LOGIN_RES and 65H), the platform one."""

    async def principal(self, access_key: str) -> Principal | None:
        """The principal of ``access_key``, or None if there is none (or it was revoked)."""


class StorageEvents(Protocol):
    """What the application layer hears from the store's faces (the S3 endpoint, the FTP role)."""

    async def admit(self, principal: Principal, bucket: str, key: str, size: int) -> str | None:
        """Before ``size`` bytes are written to ``bucket/key``: None to go on, or the reason it is
        refused (a quota: the application layer may first remove the oldest objects, §7.1.1's loop
        overwrite).  Called before the body is read when its length is known."""

    async def stored(self, principal: Principal, info: ObjectInfo) -> None:
        """An object was written (complete, durable)."""

    async def deleted(self, principal: Principal, bucket: str, key: str) -> None:
        """An object was removed by a client of the store."""


__all__ = ["PICTURE_BUCKET", "RECORD_BUCKET", "CredentialLookup", "NoSuchBucket", "NoSuchKey", "ObjectBackend",
           "ObjectInfo", "Principal", "StorageError", "StorageEvents"]
