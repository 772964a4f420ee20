"""An :class:`~globaleye.s3.backend.ObjectBackend` on any S3-compatible service (``[storage] backend = s3``).

§7.1.1 puts the recordings and pictures in the carrier's cloud store (天翼云 object storage, which
speaks the S3 API); a platform that uses such a service instead of the embedded endpoint reaches it
through this backend.  The S3 client is **boto3**: request signing (Signature V4), retries with
back-off, multipart transfers and the service's error codes are not ours to write, and boto3 is the
client every S3-compatible service (AWS, Ceph RGW, MinIO, the carriers' stores) is tested against.

boto3 blocks, so it never runs on the reactor thread: every call goes to a bounded
:class:`~twisted.python.threadpool.ThreadPool` the backend owns, started and stopped with the backend
(it is a :class:`~twisted.application.service.Service`; add it to the role's service tree).  The
HTTP connection pool (botocore's ``max_pool_connections``) is as large as the thread pool, so a
thread never waits for a connection; the managed transfer of a large file runs its parts one after
the other in its own worker thread (``use_threads=False``), so the number of connections and threads
never exceeds ``threads``.  Timeouts (connect, read) and botocore's ``standard`` retry mode bound
every call: a dead or refusing service gives :class:`~globaleye.s3.backend.StorageError`, never a
hang.

Buckets.  The platform names buckets as §7.1.1 does (``GlobalEyeRecord``, ``GlobalEyePicture``:
the *logical* names every other layer uses), and by default the service's buckets have those very
names: when cameras upload straight to the carrier's store (their LOGIN_RES ``EURL`` is the
service's), their firmware creates and fills exactly those buckets, and the platform must read the
same ones.  When the service cannot have those names (upper case is refused by AWS and by many
S3-compatible services) or the operator must use buckets given to it (the carrier's account, one
bucket per province), the cameras upload to the platform's embedded endpoint and this backend stores
behind it under *physical* names: an explicit ``buckets`` mapping first (``GlobalEyeRecord`` →
``ctyun-gd-video``), else ``bucket_prefix`` + the logical name.  One platform serves one province
(its ``[province]``), so one mapping per platform is one carrier bucket per province; objects keep
the §7.1.1 names (``DevID_ChannelNo_YYYYMMDDHHMMSS``) as keys, and :class:`ObjectInfo` answers the
logical bucket name.

Import.  boto3 is needed only when ``[storage] backend = s3``: it is the ``[s3]`` extra
(``pip install 'globaleye[s3]'``).  This module imports without it; constructing an
:class:`S3Backend` without boto3 raises :class:`S3Unavailable`, whose message names the setting.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread, deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python.threadpool import ThreadPool

from globaleye.s3.backend import NoSuchBucket, NoSuchKey, ObjectInfo, StorageError
from globaleye.s3.sigv4 import attachment
from txturn.logsummary import LogSummary

T = TypeVar("T")

#: Objects from this size up go as a multipart upload (S3's minimum part size is 5 MiB).
MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024

#: S3 answers at most this many keys per ListObjectsV2.
_S3_MAX_KEYS = 1000

_log = Logger()



class S3Unavailable(StorageError):
    """boto3 is not installed but ``[storage] backend = s3`` asks for it."""


def require_boto3() -> None:
    """Raise :class:`S3Unavailable` naming the setting unless boto3 can be imported."""
    try:
        import boto3  # noqa: F401
        import botocore  # noqa: F401
    except ImportError as e:
        raise S3Unavailable(
            "[storage] backend = s3 needs boto3, which is not installed "
            f"({e}); install the extra: pip install 'globaleye[s3]'") from None


def _client_error(e: BaseException) -> Any:
    """The botocore ClientError behind ``e`` (s3transfer wraps it in S3UploadFailedError), or None."""
    from botocore.exceptions import ClientError

    seen: BaseException | None = e
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ClientError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _code(e: Any) -> str:
    return str(e.response.get("Error", {}).get("Code", "")) if e is not None else ""


class S3Backend(Service):
    """An external S3-compatible service as the platform's object store.

    ``endpoint``: the service's URL (``https://oos-cn.ctyunapi.cn``, ``http://127.0.0.1:9000``);
    ``addressing``: ``path`` (``endpoint/bucket/key``, what most on-premises services want) or
    ``virtual`` (``bucket.endpoint/key``, AWS's default).  ``threads``: the bound on concurrent
    calls (and connections) to the service.
    """

    def __init__(self, reactor: Any, *, endpoint: str, region: str, access_key: str, secret_key: str,
                 addressing: str = "path", buckets: Mapping[str, str] | None = None, bucket_prefix: str = "",
                 threads: int = 8, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 max_attempts: int = 3, multipart_threshold: int = MULTIPART_THRESHOLD,
                 multipart_chunksize: int = MULTIPART_CHUNKSIZE) -> None:
        require_boto3()
        if addressing not in ("path", "virtual"):
            raise ValueError(f"addressing must be 'path' or 'virtual', not {addressing!r}")
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.reactor = reactor
        self.endpoint = endpoint
        self.region = region
        self.addressing = addressing
        self.buckets = dict(buckets or {})
        self.bucket_prefix = bucket_prefix
        self.threads = threads
        self._access_key = access_key
        self._secret_key = secret_key
        self._timeouts = (connect_timeout, read_timeout)
        self._max_attempts = max_attempts
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self._pool: ThreadPool | None = None
        # A dead or refusing service fails every call: the first per (operation, code) and minute
        # in full, the rest counted (txturn.logsummary).
        self.failures = LogSummary(_log, reactor, interval=60.0, max_keys=100, level=LogLevel.warn,
                                   name="s3 service failures")
        self._client_obj: Any = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        # Never the secret.
        return f"<S3Backend {self.endpoint} region={self.region} key={self._access_key}>"

    # ------------------------------------------------------------------ service

    def startService(self) -> None:
        super().startService()
        self._pool = ThreadPool(minthreads=0, maxthreads=self.threads, name="s3-external")
        self._pool.start()

    def stopService(self) -> Deferred[None]:
        """Stop the pool: calls in progress and queued ones finish (each bounded by the timeouts and
        retries), their Deferreds fire; calls made from now on fail at once."""
        super().stopService()
        pool, self._pool = self._pool, None
        if pool is None:
            return Deferred.fromCoroutine(_nothing())
        # ThreadPool.stop joins the workers: in another thread, not the reactor's.
        return deferToThread(pool.stop)

    # ------------------------------------------------------------------ plumbing

    def physical(self, bucket: str) -> str:
        """The service's bucket name for the logical ``bucket`` (see the module's docstring)."""
        return self.buckets.get(bucket) or self.bucket_prefix + bucket

    def presign_get(self, bucket: str, key: str, expires: float, filename: str) -> str:
        """A short-lived GET URL of *bucket*/*key* at the external service (``globaleye.app.ports.Presigner``),
        answered as an attachment *filename*: signed by botocore locally (no request is made), with the
        platform's key, so users never get a camera's."""
        url: str = self._client().generate_presigned_url(
            "get_object", ExpiresIn=max(1, int(expires)),
            Params={"Bucket": self.physical(bucket), "Key": key,
                    "ResponseContentDisposition": attachment(filename)})
        return url

    def _client(self) -> Any:
        """The boto3 client, made on first use in a worker thread (clients are thread-safe; making one
        reads botocore's service models, which takes a moment)."""
        with self._client_lock:
            if self._client_obj is None:
                import boto3
                from botocore.config import Config

                connect, read = self._timeouts
                config = Config(
                    region_name=self.region,
                    signature_version="s3v4",
                    s3={"addressing_style": self.addressing},
                    retries={"mode": "standard", "max_attempts": self._max_attempts},
                    connect_timeout=connect,
                    read_timeout=read,
                    max_pool_connections=self.threads,
                    # Only what the operation requires: S3-compatible services differ in which
                    # flexible checksums they accept, and put_file checks Content-MD5 itself.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                session = boto3.session.Session(aws_access_key_id=self._access_key,
                                                aws_secret_access_key=self._secret_key,
                                                region_name=self.region)
                self._client_obj = session.client("s3", endpoint_url=self.endpoint, config=config)
            return self._client_obj

    async def _run(self, what: str, bucket: str, key: str, f: Callable[..., T], *args: Any) -> T:
        """``f(client, *args)`` in the pool; botocore's errors as ours, with the service's code."""
        pool = self._pool
        if pool is None:
            raise StorageError(f"s3 backend ({self.endpoint}) is not running")

        def call() -> T:
            return f(self._client(), *args)

        try:
            return await deferToThreadPool(self.reactor, pool, call)
        except StorageError:
            raise
        except Exception as e:
            error = self._error(what, bucket, key, e)
            if not isinstance(error, NoSuchBucket | NoSuchKey):
                kind = _code(_client_error(e)) or type(e).__name__
                self.failures.event((what, kind), f"s3 {what} at {self.endpoint} failed with {kind}",
                                    "s3: {error}", error=error)
            raise error from e

    def _error(self, what: str, bucket: str, key: str, e: Exception) -> StorageError:
        ce = _client_error(e)
        code = _code(ce)
        where = f"{bucket}/{key}" if key else bucket
        physical = self.physical(bucket)
        if code == "NoSuchBucket":
            return NoSuchBucket(f"{where}: the service {self.endpoint} has no bucket {physical} (NoSuchBucket)")
        if code == "NoSuchKey":
            return NoSuchKey(f"{where} (NoSuchKey)")
        if ce is not None:
            status = ce.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            message = ce.response.get("Error", {}).get("Message", "")
            return StorageError(f"s3 {what} {where} (bucket {physical} at {self.endpoint}): "
                                f"{code or 'error'} (HTTP {status}) {message}".rstrip())
        return StorageError(f"s3 {what} {where} (bucket {physical} at {self.endpoint}): "
                            f"{type(e).__name__}: {e}")

    def _info(self, bucket: str, key: str, size: int, etag: str, modified: Any,
              content_type: str = "application/octet-stream") -> ObjectInfo:
        return ObjectInfo(bucket, key, int(size), str(etag).strip('"'),
                          modified.timestamp() if modified is not None else self.reactor.seconds(),
                          content_type or "application/octet-stream")

    # ------------------------------------------------------------------ ObjectBackend

    async def create_bucket(self, bucket: str) -> bool:
        physical = self.physical(bucket)

        def create(client: Any) -> bool:
            from botocore.exceptions import ClientError

            # us-east-1 (and services that copy it) answers 200 to re-creating one's own bucket:
            # ask first.  BucketAlreadyOwnedByYou covers the race with another creator.
            try:
                client.head_bucket(Bucket=physical)
                return False
            except ClientError as e:
                if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            kwargs: dict[str, Any] = {"Bucket": physical}
            if self.region and self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                client.create_bucket(**kwargs)
            except ClientError as e:
                if _code(e) == "BucketAlreadyOwnedByYou":
                    return False
                raise
            return True

        return await self._run("create bucket", bucket, "", create)

    async def bucket_exists(self, bucket: str) -> bool:
        physical = self.physical(bucket)

        def exists(client: Any) -> bool:
            from botocore.exceptions import ClientError

            try:
                client.head_bucket(Bucket=physical)
            except ClientError as e:
                if _code(e) in ("404", "NoSuchBucket", "NotFound"):
                    return False
                raise
            return True

        return await self._run("head bucket", bucket, "", exists)

    async def put_file(self, bucket: str, key: str, path: str, *, etag: str,
                       content_type: str = "application/octet-stream") -> ObjectInfo:
        """Below :attr:`multipart_threshold` one PutObject with ``Content-MD5`` (the service checks the
        body against the caller's MD5); above, boto3's managed multipart transfer, then a HEAD for the
        service's ETag and time.  The staging file is removed once the service has the object; on
        an error it stays (the caller decides whether to retry)."""
        physical = self.physical(bucket)

        def put(client: Any) -> ObjectInfo:
            import os

            size = os.path.getsize(path)
            if size < self.multipart_threshold:
                kwargs: dict[str, Any] = {}
                md5 = _content_md5(etag)
                if md5:
                    kwargs["ContentMD5"] = md5
                with open(path, "rb") as body:
                    answer = client.put_object(Bucket=physical, Key=key, Body=body, ContentType=content_type,
                                               **kwargs)
                os.unlink(path)
                return self._info(bucket, key, size, answer["ETag"], None, content_type)
            from boto3.s3.transfer import TransferConfig

            config = TransferConfig(multipart_threshold=self.multipart_threshold,
                                    multipart_chunksize=self.multipart_chunksize, use_threads=False)
            client.upload_file(path, physical, key, ExtraArgs={"ContentType": content_type}, Config=config)
            answer = client.head_object(Bucket=physical, Key=key)
            os.unlink(path)
            return self._info(bucket, key, answer["ContentLength"], answer["ETag"], answer.get("LastModified"),
                              answer.get("ContentType", content_type))

        return await self._run("put", bucket, key, put)

    async def put_bytes(self, bucket: str, key: str, data: bytes,
                        content_type: str = "application/octet-stream") -> ObjectInfo:
        physical = self.physical(bucket)
        data = bytes(data)

        def put(client: Any) -> ObjectInfo:
            import hashlib

            md5 = hashlib.md5(data)
            answer = client.put_object(Bucket=physical, Key=key, Body=data, ContentType=content_type,
                                       ContentMD5=base64.b64encode(md5.digest()).decode())
            return self._info(bucket, key, len(data), answer["ETag"], None, content_type)

        # PutObject's answer has no time: the infos say the reactor's "now".
        return await self._run("put", bucket, key, put)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        physical = self.physical(bucket)

        def head(client: Any) -> ObjectInfo | None:
            from botocore.exceptions import ClientError

            try:
                answer = client.head_object(Bucket=physical, Key=key)
            except ClientError as e:
                if _code(e) not in ("404", "NoSuchKey", "NotFound"):
                    raise
                # A HEAD's 404 has no body: which is missing, the key or the bucket?
                try:
                    client.head_bucket(Bucket=physical)
                except ClientError as e2:
                    if _code(e2) in ("404", "NoSuchBucket", "NotFound"):
                        raise NoSuchBucket(f"{bucket}: the service {self.endpoint} has no bucket {physical} "
                                           "(NoSuchBucket)") from None
                    raise
                return None
            return self._info(bucket, key, answer["ContentLength"], answer["ETag"], answer.get("LastModified"),
                              answer.get("ContentType", ""))

        return await self._run("head", bucket, key, head)

    async def read(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """A ranged GetObject.  A range past the end gives ``b""`` (as the other backends) rather than
        S3's 416."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        if length == 0:
            if await self.head(bucket, key) is None:
                raise NoSuchKey(f"{bucket}/{key} (NoSuchKey)")
            return b""
        physical = self.physical(bucket)

        def get(client: Any) -> bytes:
            from botocore.exceptions import ClientError

            kwargs: dict[str, Any] = {}
            if offset or length is not None:
                end = "" if length is None else str(offset + length - 1)
                kwargs["Range"] = f"bytes={offset}-{end}"
            try:
                answer = client.get_object(Bucket=physical, Key=key, **kwargs)
            except ClientError as e:
                if _code(e) == "InvalidRange":
                    return b""
                raise
            with answer["Body"] as body:
                data: bytes = body.read()
            if "Range" in kwargs and answer.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200:
                # A service that ignores Range sends the whole object.
                data = data[offset:] if length is None else data[offset:offset + length]
            return data

        return await self._run("get", bucket, key, get)

    async def delete(self, bucket: str, key: str) -> bool:
        """S3's DeleteObject answers 204 whether or not the key was there: a HEAD first says which
        (another client may delete in between; then both say True, which harms nothing)."""
        if await self.head(bucket, key) is None:
            return False
        physical = self.physical(bucket)
        await self._run("delete", bucket, key, lambda client: client.delete_object(Bucket=physical, Key=key))
        return True

    async def list(self, bucket: str, prefix: str = "", start_after: str = "",
                   limit: int = 1000) -> tuple[Sequence[ObjectInfo], bool]:
        """ListObjectsV2 with ``StartAfter`` (pages of 1000 followed by continuation token up to
        ``limit``).  The listing has no content type: the infos say ``application/octet-stream``."""
        physical = self.physical(bucket)

        def listing(client: Any) -> tuple[list[ObjectInfo], bool]:
            infos: list[ObjectInfo] = []
            token = ""
            while True:
                want = min(_S3_MAX_KEYS, limit - len(infos))
                kwargs: dict[str, Any] = {"Bucket": physical, "Prefix": prefix, "MaxKeys": max(want, 1)}
                if token:
                    kwargs["ContinuationToken"] = token
                elif start_after:
                    kwargs["StartAfter"] = start_after
                answer = client.list_objects_v2(**kwargs)
                for item in answer.get("Contents", []):
                    if len(infos) == limit:
                        return infos, True
                    infos.append(self._info(bucket, item["Key"], item["Size"], item["ETag"],
                                            item.get("LastModified")))
                truncated = bool(answer.get("IsTruncated"))
                token = answer.get("NextContinuationToken", "")
                if not truncated or not token:
                    return infos, False
                if len(infos) >= limit:
                    return infos, True

        return await self._run("list", bucket, prefix, listing)


def parse_bucket_map(text: str) -> dict[str, str]:
    """``"GlobalEyeRecord=ctyun-gd-video, GlobalEyePicture=ctyun-gd-pictures"`` (a config value) as a
    mapping; ValueError naming the bad item (the caller adds the file and key)."""
    mapping: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        logical, sep, physical = (part.strip() for part in item.partition("="))
        if not sep or not logical or not physical or " " in physical:
            raise ValueError(f"{item!r} is not LOGICAL=BUCKET")
        if logical in mapping:
            raise ValueError(f"{logical} is mapped twice")
        mapping[logical] = physical
    return mapping


async def _nothing() -> None:
    return None


def _content_md5(etag: str) -> str:
    """``Content-MD5`` (base64) for a plain hex MD5 etag, or "" for anything else (a multipart etag)."""
    if len(etag) != 32:
        return ""
    try:
        return base64.b64encode(binascii.unhexlify(etag)).decode()
    except (binascii.Error, ValueError):
        return ""


__all__ = ["MULTIPART_CHUNKSIZE", "MULTIPART_THRESHOLD", "S3Backend", "S3Unavailable", "parse_bucket_map",
           "require_boto3"]
