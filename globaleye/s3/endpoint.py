"""The embedded S3-compatible endpoint (the ``storage`` role): what cameras and ordinary S3 tools talk to.

§7.1.1: the camera creates the buckets ``GlobalEyeRecord`` and ``GlobalEyePicture`` and pushes its
5-minute MPEG-TS files and JPEG pictures straight to the store over HTTP, objects named
``DevID_ChannelNo_YYYYMMDDHHMMSS``; §7.1.2: the platform searches, plays back, downloads and
deletes.  This module serves the part of the S3 REST API that needs (docs/protocol.md, "Embedded S3
endpoint", lists it): ListBuckets, CreateBucket, HeadBucket, GetBucketLocation, PutObject,
GetObject (with Range), HeadObject, DeleteObject, ListObjects (V1 and V2), multipart upload
(Create, UploadPart, Complete, Abort), presigned GET/PUT.

How a request goes (all on the reactor thread, disk work in the service's thread pool):

1. the request line and headers arrive (within ``header_timeout``); before any body byte is read
   the request is *admitted*: its signature checked (:mod:`globaleye.s3.sigv4`; no anonymous
   access at all), the signer's :class:`~globaleye.s3.backend.Principal` looked up, the operation
   allowed for it (a camera touches only ``<DevID>_`` keys), the declared size checked against
   ``max_object_size``, the bucket's existence and :meth:`StorageEvents.admit`'s quota.  Meanwhile
   the connection is paused and ``Expect: 100-continue`` held back: a refused upload is answered
   (and the connection closed) without its body ever being read;
2. the body streams to a staging file through the thread pool (MD5, SHA-256 and the
   ``x-amz-checksum-*`` computed on the way), never held whole in memory; an aws-chunked body is
   decoded and its chunk signatures checked as it comes; a body passing the size limit is cut;
3. at its end the digests are checked (Content-MD5 -> BadDigest, x-amz-content-sha256 ->
   XAmzContentSHA256Mismatch), the staging file handed to the backend (fsync, rename: atomic),
   and only then :meth:`StorageEvents.stored` called.  A connection lost mid-body leaves nothing
   but a staging file, deleted at once (or at the next start after a crash).

Every refusal is answered as S3 XML with S3's code and logged with peer and reason through a
:class:`~txturn.logsummary.LogSummary` (once per peer and code per minute, then counts).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web import http, resource, server
from zope.interface import implementer

from globaleye.s3 import sigv4, xml
from globaleye.s3.backend import (
    PICTURE_BUCKET,
    RECORD_BUCKET,
    CredentialLookup,
    NoSuchBucket,
    NoSuchKey,
    ObjectBackend,
    ObjectInfo,
    Principal,
    StorageError,
    StorageEvents,
)
from globaleye.s3.files import FileBackend, InvalidName, check_key, valid_bucket
from globaleye.util.deadline import PhaseDeadline
from txturn.logsummary import LogSummary

log = Logger(namespace="globaleye.s3.endpoint")

#: Bodies kept in memory (CreateBucket's configuration, CompleteMultipartUpload's part list).
MAX_SMALL_BODY = xml.MAX_COMPLETE_BODY
#: S3's smallest part (all but the last), largest part number.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10000
#: Multipart uploads in progress, per principal and in all.
MAX_UPLOADS_PER_PRINCIPAL = 16
MAX_UPLOADS = 1000
#: Body bytes gathered before one write job goes to the thread pool; bytes queued before the
#: connection is paused, and resumed.
WRITE_BATCH = 256 * 1024
HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 2 * 1024 * 1024
#: Bytes of an object read per thread-pool job when answering a GET.
READ_PIECE = 1024 * 1024
#: A body must go on arriving at this many bytes per second on average (after body_timeout seconds).
MIN_BODY_RATE = 8 * 1024
LINGER = 2.0

_STATUS = {
    "AccessDenied": 403, "SignatureDoesNotMatch": 403, "InvalidAccessKeyId": 403, "RequestTimeTooSkewed": 403,
    "QuotaExceeded": 403, "AuthorizationHeaderMalformed": 400, "AuthorizationQueryParametersError": 400,
    "InvalidArgument": 400, "InvalidRequest": 400, "IncompleteBody": 400, "BadDigest": 400,
    "XAmzContentSHA256Mismatch": 400, "EntityTooLarge": 400, "EntityTooSmall": 400, "InvalidPart": 400,
    "InvalidPartOrder": 400, "MalformedXML": 400, "InvalidBucketName": 400, "KeyTooLongError": 400,
    "InvalidURI": 400, "MissingContentLength": 411, "NoSuchBucket": 404, "NoSuchKey": 404, "NoSuchUpload": 404,
    "InvalidRange": 416, "MethodNotAllowed": 405, "NotImplemented": 501, "RequestTimeout": 400,
    "InternalError": 500, "SlowDown": 503, "TooManyParts": 400,
}
_REASONS = {400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
            408: b"Request Timeout", 411: b"Length Required", 416: b"Range Not Satisfiable",
            500: b"Internal Server Error", 501: b"Not Implemented", 503: b"Service Unavailable"}


class S3Error(Exception):
    """An answer in S3's error form: ``code`` (S3's), ``message``, the HTTP status from the code."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS.get(code, 400)


@attrs.frozen
class StorageSettings:
    """The ``[storage]`` section (docs: etc/globaleye.ini)."""

    interface: str = "127.0.0.1"
    port: int = 9000
    data_dir: str = ""
    public_url: str = ""
    max_object_size: int = 5 * 1024 * 1024 * 1024
    multipart_expiry: float = 86400.0
    region: str = "us-east-1"
    backend: str = "file"
    endpoint: str = ""
    access_key: str = ""
    secret_key: str = ""
    addressing_style: str = "path"
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 60.0


# -- the endpoint's state -----------------------------------------------------------------------


@attrs.define
class Upload:
    """A multipart upload in progress (kept in memory; the parts under .multipart/<id>/)."""

    upload_id: str
    bucket: str
    key: str
    owner: str  # the access key that created it
    content_type: str
    directory: str
    parts: dict[int, tuple[str, int, bytes]] = attrs.field(factory=dict)  # number -> (etag, size, md5 digest)
    expiry: Any = None
    completing: bool = False

    @property
    def size(self) -> int:
        return sum(size for _, size, _ in self.parts.values())


class S3Endpoint:
    """The S3 API over a backend, with injected credentials and events (see the module docstring)."""

    def __init__(self, settings: StorageSettings, backend: ObjectBackend, credentials: CredentialLookup,
                 events: StorageEvents, reactor: Any, threadpool: ThreadPool, staging_dir: str,
                 multipart_dir: str, virtual_hosts: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.backend = backend
        self.credentials = credentials
        self.events = events
        self.reactor = reactor
        self.threadpool = threadpool
        self.staging_dir = staging_dir
        self.multipart_dir = multipart_dir
        #: Host names whose sub-domains name a bucket (virtual-host style ``<bucket>.<host>``).
        self.virtual_hosts = tuple(host.lower() for host in virtual_hosts if host)
        self.uploads: dict[str, Upload] = {}
        self.refusals = LogSummary(log, reactor, interval=60.0, max_keys=1000, level=LogLevel.warn,
                                   name="S3 refusals")
        self.counters = {"requests": 0, "refused": 0, "stored": 0, "bytes_stored": 0}

    def run(self, function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return deferToThreadPool(self.reactor, self.threadpool, function, *args)

    def new_staging_path(self) -> str:
        return os.path.join(self.staging_dir, uuid.uuid4().hex)

    def refused(self, peer: str, error: S3Error, what: str) -> None:
        self.counters["refused"] += 1
        self.refusals.event((peer, error.code), f"S3 {error.code} refusals for {peer}",
                            "S3 request {what} from {peer} refused: {code} ({reason})",
                            what=what, peer=peer, code=error.code, reason=error.message)

    # -- multipart expiry --------------------------------------------------------------------

    def touch_upload(self, upload: Upload) -> None:
        if upload.expiry is not None and upload.expiry.active():
            upload.expiry.cancel()
        upload.expiry = self.reactor.callLater(self.settings.multipart_expiry, self._expire, upload.upload_id)

    def _expire(self, upload_id: str) -> None:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.completing:
            return
        log.info("multipart upload {id} of {bucket}/{key} expired unfinished", id=upload_id, bucket=upload.bucket,
                 key=upload.key)
        self.drop_upload(upload)

    def drop_upload(self, upload: Upload) -> defer.Deferred[Any]:
        self.uploads.pop(upload.upload_id, None)
        if upload.expiry is not None and upload.expiry.active():
            upload.expiry.cancel()
        return self.run(shutil.rmtree, upload.directory, True)

    def stop(self) -> None:
        for upload in list(self.uploads.values()):
            if upload.expiry is not None and upload.expiry.active():
                upload.expiry.cancel()


# -- the body's way to disk -----------------------------------------------------------------------


@attrs.frozen
class Digests:
    size: int
    md5: bytes
    sha256: str
    checksum: str


class StagingWriter:
    """Writes a body to a staging file in the thread pool, one job at a time, computing its digests
    there too (hashlib releases the GIL).  ``on_backlog(True)`` asks the caller to pause the
    connection when more than :data:`HIGH_WATER` bytes wait, ``on_backlog(False)`` to resume."""

    def __init__(self, endpoint: S3Endpoint, path: str, checksum: str | None,
                 on_backlog: Callable[[bool], None]) -> None:
        self.endpoint = endpoint
        self.path = path
        self.on_backlog = on_backlog
        self._file: Any = None
        self._md5 = hashlib.md5()
        self._sha256 = hashlib.sha256()
        self._checksum = sigv4.Checksum(checksum) if checksum else None
        self._size = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._backlog = 0
        self._paused = False
        self._tail: defer.Deferred[Any] = defer.succeed(None)
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        self._backlog += len(data)
        if self._buffered >= WRITE_BATCH:
            self._flush()
        if self._backlog > HIGH_WATER and not self._paused:
            self._paused = True
            self.on_backlog(True)

    def _flush(self) -> None:
        if not self._buffer:
            return
        chunk = b"".join(self._buffer)
        self._buffer, self._buffered = [], 0
        self._then(self._write_job, chunk)

    def _then(self, function: Callable[..., Any], *args: Any) -> None:
        def job(_: object) -> defer.Deferred[Any]:
            return self.endpoint.run(function, *args)
        self._tail.addCallback(job)

    def _write_job(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 (closed by the finishing job)
        self._file.write(chunk)
        self._md5.update(chunk)
        self._sha256.update(chunk)
        if self._checksum is not None:
            self._checksum.update(chunk)
        self._size += len(chunk)
        self.endpoint.reactor.callFromThread(self._written, len(chunk))

    def _written(self, count: int) -> None:
        self._backlog -= count
        if self._paused and self._backlog < LOW_WATER:
            self._paused = False
            self.on_backlog(False)

    def finish(self) -> defer.Deferred[Digests]:
        """Write what is left, close the file; the digests (the file stays for the backend)."""
        self._flush()
        self.closed = True
        self._then(self._close_job)
        result: defer.Deferred[Digests] = self._tail
        return result

    def _close_job(self) -> Digests:
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115
        self._file.close()
        return Digests(self._size, self._md5.digest(), self._sha256.hexdigest(),
                       self._checksum.value() if self._checksum else "")

    def abort(self) -> None:
        """Drop the body: the staging file is removed once the job under way is done."""
        if self.closed and self._file is None and not self._buffer:
            pass
        self.closed = True
        self._buffer = []

        def remove(_: object) -> defer.Deferred[Any]:
            return self.endpoint.run(self._remove_job)
        self._tail.addBoth(remove)
        self._tail.addErrback(lambda failure: log.failure("removing staging file {path}", failure, path=self.path))

    def _remove_job(self) -> None:
        if self._file is not None:
            self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# -- one request ----------------------------------------------------------------------------------


@attrs.define
class Target:
    """What a request names: the operation and its bucket, key and query."""

    op: str
    bucket: str = ""
    key: str = ""
    query: dict[str, str] = attrs.field(factory=dict)
    raw_path: str = "/"
    raw_query: str = ""
    bucket_from_host: str = ""


def _split_target(raw: bytes) -> tuple[str, str]:
    text = raw.decode("latin-1")
    if "://" in text.split("?", 1)[0]:
        parts = urlsplit(text)
        return parts.path or "/", parts.query
    path, _, query = text.partition("?")
    return path or "/", query


def resolve(method: str, raw_target: bytes, host: str, virtual_hosts: tuple[str, ...]) -> Target:
    """The operation a request asks for (S3Error if it names nothing we serve)."""
    raw_path, raw_query = _split_target(raw_target)
    try:
        path = unquote(raw_path, errors="strict")
        pairs = sigv4.split_query(raw_query)
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", "the URI is not UTF-8") from None
    query = dict(pairs)
    hostname = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host
    from_host = ""
    for base in virtual_hosts:
        if hostname.endswith("." + base):
            from_host = host.rsplit(":", 1)[0][: -len(base) - 1]
            break
    if from_host:
        bucket, key = from_host, path[1:]
    else:
        bucket, _, key = path[1:].partition("/")
    target = Target("", bucket, key, query, raw_path, raw_query, from_host)
    if not bucket:
        target.op = "ListBuckets" if method in ("GET", "HEAD") else ""
    elif not key:
        if method == "PUT" and not query:
            target.op = "CreateBucket"
        elif method == "HEAD":
            target.op = "HeadBucket"
        elif method == "GET" and "location" in query:
            target.op = "GetBucketLocation"
        elif method == "POST" and "delete" in query:
            target.op = "DeleteObjects"
        elif method == "GET" and "uploads" not in query and not (set(query) & sigv4.V2_SUBRESOURCES - {"location"}):
            target.op = "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
    else:
        if method == "PUT" and "partNumber" in query and "uploadId" in query:
            target.op = "UploadPart"
        elif method == "PUT" and not (set(query) & sigv4.V2_SUBRESOURCES):
            target.op = "PutObject"
        elif method == "POST" and "uploads" in query:
            target.op = "CreateMultipartUpload"
        elif method == "POST" and "uploadId" in query:
            target.op = "CompleteMultipartUpload"
        elif method == "DELETE" and "uploadId" in query:
            target.op = "AbortMultipartUpload"
        elif method in ("GET", "HEAD") and not (set(query) & (sigv4.V2_SUBRESOURCES - {
                "response-cache-control", "response-content-disposition", "response-content-encoding",
                "response-content-language", "response-content-type", "response-expires", "partNumber",
                "versionId"})):
            target.op = "GetObject" if method == "GET" else "HeadObject"
        elif method == "DELETE" and not (set(query) & (sigv4.V2_SUBRESOURCES - {"versionId"})):
            target.op = "DeleteObject"
    if not target.op:
        raise S3Error("NotImplemented", f"{method} {raw_path[:200]} with {sorted(query)[:5]} is not served here")
    if target.op != "ListBuckets" and not valid_bucket(bucket):
        raise S3Error("InvalidBucketName", "The specified bucket is not valid.")
    if key:
        try:
            check_key(key)
        except InvalidName as error:
            raise S3Error("KeyTooLongError", str(error)) from None
    return target


@attrs.frozen
class Admitted:
    principal: Principal
    mode: sigv4.PayloadMode
    target: Target


#: Operations whose body is the object's bytes (streamed to a staging file).
STREAMED = frozenset(("PutObject", "UploadPart"))


class Exchange:
    """One request from its headers to its answer (see the module docstring)."""

    def __init__(self, endpoint: S3Endpoint, request: S3Request, method: str, raw_target: bytes,
                 length: int | None) -> None:
        self.endpoint = endpoint
        self.request = request
        self.method = method
        self.raw_target = raw_target
        self.length = length
        self.peer = request.peer_name()
        self.admitted: Admitted | None = None
        self.failed: S3Error | None = None
        self.processing = False
        self.writer: StagingWriter | None = None
        self.small = io.BytesIO()
        self.decoder: sigv4.AwsChunkedDecoder | None = None
        self.received = 0
        self.limit = MAX_SMALL_BODY
        self.pending: list[bytes] = []
        self.continue_pending = False
        self.settled = False
        self.staging_path = ""
        self.upload: Upload | None = None
        self.admission: defer.Deferred[None] = defer.Deferred.fromCoroutine(self._admit())

    @property
    def what(self) -> str:
        return f"{self.method} {self.raw_target[:200].decode('latin-1')}"

    def header(self, name: bytes) -> str | None:
        values = self.request.requestHeaders.getRawHeaders(name)
        return values[0].decode("latin-1") if values else None

    # -- admission -------------------------------------------------------------------------

    async def _admit(self) -> None:
        transport = self.request.channel.transport
        paused = False
        if self.length != 0 and transport is not None:
            transport.pauseProducing()
            paused = True
        try:
            self.admitted = await self._check()
            if self.admitted.target.op in STREAMED:
                self._open_writer()
        except S3Error as error:
            self.fail(error)
        except Exception:
            log.failure("admitting {what}", what=self.what)
            self.fail(S3Error("InternalError", "We encountered an internal error. Please try again."))
        finally:
            self.settled = True
        if self.request._disconnected:
            if self.writer is not None and not self.writer.closed:
                self.writer.abort()  # the client left while it was being admitted
            return
        if self.failed is None:
            pending, self.pending = self.pending, []
            for data in pending:
                self._consume(data)
            if self.continue_pending and self.failed is None:
                self.request.channel.send_continue()
            if paused and self.failed is None and transport is not None and not (
                    self.writer is not None and self.writer._paused):
                transport.resumeProducing()

    async def _check(self) -> Admitted:
        request = self.request
        headers = {name.decode("latin-1").lower(): [value.decode("latin-1") for value in values]
                   for name, values in request.requestHeaders.getAllRawHeaders()}
        host = (headers.get("host") or [""])[0]
        target = resolve(self.method, self.raw_target, host, self.endpoint.virtual_hosts)
        try:
            auth = sigv4.parse_auth(self.method, target.raw_path, target.raw_query, headers,
                                    bucket_from_host=target.bucket_from_host)
        except sigv4.AuthError as error:
            raise S3Error(error.code, error.message) from None
        if auth is None:
            raise S3Error("AccessDenied", "Anonymous access is not allowed: sign the request.")
        principal = await self.endpoint.credentials.principal(auth.access_key)
        if principal is None:
            raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        try:
            mode = auth.verify(principal.secret, self.endpoint.reactor.seconds())
        except sigv4.AuthError as error:
            raise S3Error(error.code, error.message) from None
        self._authorize(principal, target)
        if target.op in STREAMED:
            await self._admit_body(principal, target, mode)
        return Admitted(principal, mode, target)

    def _authorize(self, principal: Principal, target: Target) -> None:
        if principal.is_platform:
            return
        op = target.op
        if op == "CreateBucket" and target.bucket not in (RECORD_BUCKET, PICTURE_BUCKET):
            raise S3Error("AccessDenied", f"a camera may create only {RECORD_BUCKET} and {PICTURE_BUCKET}")
        if op in ("ListObjects", "ListObjectsV2") and not principal.may_list(target.query.get("prefix", "")):
            raise S3Error("AccessDenied", f"a camera lists only with a prefix starting {principal.dev_id}_")
        if target.key and not principal.owns(target.key):
            raise S3Error("AccessDenied", f"a camera may touch only keys starting {principal.dev_id}_")

    async def _admit_body(self, principal: Principal, target: Target, mode: sigv4.PayloadMode) -> None:
        settings = self.endpoint.settings
        declared: int | None = self.length
        if mode.streaming:
            decoded = self.header(b"x-amz-decoded-content-length")
            declared = int(decoded) if decoded and decoded.isdigit() else None
        limit = settings.max_object_size
        if target.op == "UploadPart":
            upload = self.endpoint.uploads.get(target.query.get("uploadId", ""))
            if upload is None or upload.bucket != target.bucket or upload.key != target.key or \
                    upload.owner != principal.access_key or upload.completing:
                raise S3Error("NoSuchUpload", "The specified multipart upload does not exist.")
            try:
                number = int(target.query["partNumber"])
            except ValueError:
                raise S3Error("InvalidArgument", "partNumber is not a number") from None
            if not 1 <= number <= MAX_PARTS:
                raise S3Error("InvalidArgument", f"partNumber must be 1 to {MAX_PARTS}")
            limit = settings.max_object_size - upload.size + upload.parts.get(number, ("", 0, b""))[1]
            self.upload = upload
        if declared is not None and declared > limit:
            raise S3Error("EntityTooLarge", f"Your proposed upload exceeds the maximum allowed size "
                                            f"({settings.max_object_size} bytes).")
        if self.length is None and not mode.streaming and self.request.requestHeaders.getRawHeaders(
                b"transfer-encoding") is None:
            raise S3Error("MissingContentLength", "You must provide the Content-Length HTTP header.")
        self.limit = limit
        if not await self.endpoint.backend.bucket_exists(target.bucket):
            raise S3Error("NoSuchBucket", "The specified bucket does not exist")
        refusal = await self.endpoint.events.admit(principal, target.bucket, target.key,
                                                   declared if declared is not None else limit)
        if refusal is not None:
            raise S3Error("QuotaExceeded", f"The upload is refused: {refusal}")
        if mode.streaming:
            self.decoder = sigv4.AwsChunkedDecoder(mode, self._sink)

    def _open_writer(self) -> None:
        checksum = None
        for algorithm in sigv4.Checksum.ALGORITHMS:
            if self.header(b"x-amz-checksum-" + algorithm.encode()) is not None:
                checksum = algorithm
        trailer = (self.header(b"x-amz-trailer") or "").strip().lower()
        if trailer.startswith("x-amz-checksum-") and trailer[len("x-amz-checksum-"):] in sigv4.Checksum.ALGORITHMS:
            checksum = trailer[len("x-amz-checksum-"):]
        self.staging_path = self.endpoint.new_staging_path()
        self.writer = StagingWriter(self.endpoint, self.staging_path, checksum, self._backlog)

    def _backlog(self, full: bool) -> None:
        transport = self.request.channel.transport
        if transport is None:
            return
        if full:
            transport.pauseProducing()
        elif self.settled:
            transport.resumeProducing()

    # -- the body ----------------------------------------------------------------------------

    def body(self, data: bytes) -> None:
        if self.failed is not None:
            return
        if not self.settled:
            self.pending.append(data)
            return
        self._consume(data)

    def _consume(self, data: bytes) -> None:
        if self.failed is not None:
            return
        if self.decoder is not None:
            try:
                self.decoder.feed(data)
            except sigv4.ChunkError as error:
                self.fail(S3Error(error.code, error.message))
            return
        self._sink(data)

    def _sink(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.limit:
            if self.writer is not None:
                self.fail(S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."))
            else:
                self.fail(S3Error("MalformedXML" if self.method == "POST" else "InvalidRequest",
                                  f"the request body is larger than {self.limit} bytes"))
            return
        if self.writer is not None:
            self.writer.write(data)
        elif self.admitted is not None and self.admitted.target.op in ("CreateBucket", "CompleteMultipartUpload",
                                                                        "DeleteObjects"):
            self.small.write(data)

    def fail(self, error: S3Error) -> None:
        """Refuse: at once on the connection if the body is still arriving, else in the answer."""
        if self.failed is not None:
            return
        self.failed = error
        self.pending = []
        if self.writer is not None:
            self.writer.abort()
        self.endpoint.refused(self.peer, error, self.what)
        if not self.processing and self.length != 0:
            self.request.channel.refuse(error.status, _error_body(error, self.raw_target, self.request_id),
                                        self.request_id)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def connection_lost(self) -> None:
        """The client went away: a body not received whole is dropped (a complete one is stored)."""
        if self.writer is not None and not self.writer.closed:
            self.writer.abort()


def _error_body(error: S3Error, raw_target: bytes, request_id: str) -> bytes:
    resource = raw_target.decode("latin-1").split("?", 1)[0]
    return xml.error(error.code, error.message, resource, request_id)


# -- twisted.web ---------------------------------------------------------------------------------


class S3Request(server.Request):
    """Starts the :class:`Exchange` when the headers are in and streams the body into it."""

    channel: S3Channel
    exchange: Exchange | None = None
    defaultContentType = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_id = uuid.uuid4().hex[:16].upper()

    def peer_name(self) -> str:
        transport = self.channel.transport
        peer = transport.getPeer() if transport is not None else None
        return str(getattr(peer, "host", peer))

    def gotLength(self, length: int | None) -> None:  # noqa: N802
        self.content = io.BytesIO()
        endpoint = self.channel.site.endpoint
        endpoint.counters["requests"] += 1
        self.exchange = Exchange(endpoint, self, self.channel._command.decode("latin-1"), self.channel._path, length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        self.channel.body_activity(len(data))
        if self.exchange is not None:
            self.exchange.body(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        if self.exchange is not None:
            self.exchange.processing = True
            if self.exchange.failed is not None and self.exchange.settled and self.channel.refused:
                return  # answered on the connection already
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        if self.exchange is not None:
            self.exchange.connection_lost()
        super().connectionLost(reason)


class S3Channel(PhaseDeadline, http.HTTPChannel):
    """HTTP/1.1 with a header deadline, a body deadline (``body_timeout`` of silence, and a
    minimum average rate), ``Expect: 100-continue`` held until the request is admitted, and
    refusal on the connection before the body is read (the way globaleye.guard.httpsite does it)."""

    site: S3Site
    transport: Any
    header_timeout = 10.0
    body_timeout = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.refused = False
        self._deadline: Any = None
        self._phase = ""
        self._body_started = 0.0
        self._body_last = 0.0
        self._body_bytes = 0
        self._linger: Any = None
        #: Whole request heads received (the platform's connection limits count a connection that sent
        #: one as established: globaleye.guard.httpsite.established).
        self.requests_seen = 0

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self._arm(self.header_timeout, "headers")

    def _expired(self) -> None:
        self._deadline = None
        now = self.site.reactor.seconds()
        if self._phase == "body":
            quiet = now - self._body_last
            elapsed = now - self._body_started
            slow = elapsed > self.body_timeout and self._body_bytes < MIN_BODY_RATE * (elapsed - self.body_timeout)
            if quiet < self.body_timeout and not slow:
                self._arm(self.body_timeout - quiet, "body")
                return
        request = self.requests[-1] if self.requests else None
        exchange = getattr(request, "exchange", None)
        error = S3Error("RequestTimeout", f"request {self._phase} not complete in time")
        if exchange is not None and not exchange.processing:
            exchange.fail(error)
        else:
            self.site.endpoint.refused(str(getattr(self.transport.getPeer(), "host", "?")), error, self._phase)
            self.refuse(400, xml.error(error.code, error.message, "", ""), "")

    def body_activity(self, count: int) -> None:
        self._body_last = self.site.reactor.seconds()
        self._body_bytes += count

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.refused:
            return
        if self._deadline is None and not self._handlingRequest and data:
            self._arm(self.header_timeout, "headers")
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if not self.refused:
            super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self.refused:
            super().rawDataReceived(data)

    def allHeadersReceived(self) -> None:  # noqa: N802
        self._disarm()
        self.requests_seen += 1
        super().allHeadersReceived()
        if self.length != 0 and not self.refused:
            now = self.site.reactor.seconds()
            self._body_started = self._body_last = now
            self._body_bytes = 0
            self._arm(self.body_timeout, "body")

    def allContentReceived(self) -> None:  # noqa: N802
        if self.refused:
            return
        self._disarm()
        super().allContentReceived()

    def _send100Continue(self) -> None:  # noqa: N802
        request = self.requests[-1] if self.requests else None
        exchange = getattr(request, "exchange", None)
        if exchange is not None and not exchange.settled:
            exchange.continue_pending = True  # sent once the request is admitted
        elif exchange is None or exchange.failed is None:
            super()._send100Continue()

    def send_continue(self) -> None:
        if not self.refused and self.transport is not None:
            super()._send100Continue()

    def refuse(self, status: int, body: bytes, request_id: str) -> None:
        """Answer ``status`` with the S3 error ``body`` at once and close, reading nothing more."""
        if self.refused or self.transport is None:
            return
        self.refused = True
        self._disarm()
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nx-amz-request-id: %s\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (status, _REASONS.get(status, b"Refused"), request_id.encode(), len(body), body))
        self.transport.resumeProducing()  # read (and drop) what the client is still sending
        if hasattr(self.transport, "loseWriteConnection"):
            # Lingering close (as nginx and the platform's HTTP site): FIN after the answer, then
            # read and drop a moment, so a client still sending its body gets the answer, not a reset.
            self.transport.loseWriteConnection()
            self._linger = self.callLater(LINGER, self._abort)
        else:
            self.transport.loseConnection()

    def _abort(self) -> None:
        self._linger = None
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.site.channels.discard(self)
        self._disarm()
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        super().connectionLost(reason)


class S3Resource(resource.Resource):
    """Every path is the S3 API's: the exchange decides."""

    isLeaf = True

    def render(self, request: S3Request) -> Any:  # type: ignore[override]
        exchange = request.exchange
        if exchange is None:
            request.setResponseCode(400)
            return b""
        d = defer.Deferred.fromCoroutine(_answer(exchange))
        d.addErrback(lambda failure: log.failure("answering {what}", failure, what=exchange.what))
        return server.NOT_DONE_YET


class S3Site(server.Site):
    """``server.Site`` with :class:`S3Channel` and :class:`S3Request` (no request logging per hit)."""

    protocol = S3Channel  # type: ignore[assignment]
    requestFactory = S3Request

    def __init__(self, endpoint: S3Endpoint, *, header_timeout: float = 10.0, body_timeout: float = 30.0,
                 idle_timeout: float = 60.0) -> None:
        super().__init__(S3Resource(), timeout=idle_timeout, reactor=endpoint.reactor,
                         parsePOSTFormSubmission=False)
        self.endpoint = endpoint
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        #: Open connections, closed when the role stops.
        self.channels: set[S3Channel] = set()

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        channel = super().buildProtocol(addr)
        channel.header_timeout = self.header_timeout
        channel.body_timeout = self.body_timeout
        self.channels.add(channel)
        return channel

    def close_all(self) -> None:
        for channel in list(self.channels):
            if channel.transport is not None:
                channel.transport.abortConnection()

    def log(self, request: Any) -> None:
        pass

    def stopFactory(self) -> None:  # noqa: N802
        super().stopFactory()
        self.endpoint.refusals.flush()


# -- the answers ---------------------------------------------------------------------------------


def _respond(request: S3Request, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
             content_type: str = "application/xml") -> None:
    if request.finished or request._disconnected:
        return
    request.setResponseCode(status)
    request.setHeader(b"x-amz-request-id", request.request_id.encode())
    request.setHeader(b"server", b"GlobalEye")
    if body or content_type:
        request.setHeader(b"content-type", content_type.encode())
    for name, value in (headers or {}).items():
        request.setHeader(name.encode(), value.encode("latin-1", "replace"))
    request.setHeader(b"content-length", str(len(body)).encode())
    if request.method != b"HEAD" and body:
        request.write(body)
    request.finish()


def _respond_error(exchange: Exchange, error: S3Error) -> None:
    request = exchange.request
    body = b"" if request.method == b"HEAD" else _error_body(error, exchange.raw_target, request.request_id)
    _respond(request, error.status, body)


async def _answer(exchange: Exchange) -> None:
    await exchange.admission
    if exchange.failed is not None:
        if not exchange.request.channel.refused:
            _respond_error(exchange, exchange.failed)
        return
    assert exchange.admitted is not None
    try:
        await _serve(exchange, exchange.admitted)
    except S3Error as error:
        exchange.endpoint.refused(exchange.peer, error, exchange.what)
        if exchange.writer is not None:
            exchange.writer.abort()
        _respond_error(exchange, error)
    except Exception:
        log.failure("serving {what}", what=exchange.what)
        if exchange.writer is not None:
            exchange.writer.abort()
        _respond_error(exchange, S3Error("InternalError", "We encountered an internal error. Please try again."))


async def _serve(exchange: Exchange, admitted: Admitted) -> None:
    target = admitted.target
    handler = _HANDLERS[target.op]
    await handler(exchange, admitted)


def _backend_errors(error: Exception) -> S3Error:
    if isinstance(error, NoSuchBucket):
        return S3Error("NoSuchBucket", "The specified bucket does not exist")
    if isinstance(error, NoSuchKey):
        return S3Error("NoSuchKey", "The specified key does not exist.")
    if isinstance(error, InvalidName):
        return S3Error("InvalidArgument", str(error))
    return S3Error("InternalError", f"the store failed: {error}")


async def _list_buckets(exchange: Exchange, admitted: Admitted) -> None:
    backend = exchange.endpoint.backend
    lister = getattr(backend, "buckets", None)
    if lister is not None:
        buckets = await lister()
    else:
        buckets = [(name, 0.0) for name in (RECORD_BUCKET, PICTURE_BUCKET) if await backend.bucket_exists(name)]
    _respond(exchange.request, 200, xml.list_buckets(buckets, admitted.principal.dev_id or "platform"))


async def _create_bucket(exchange: Exchange, admitted: Admitted) -> None:
    bucket = admitted.target.bucket
    try:
        created = await exchange.endpoint.backend.create_bucket(bucket)
    except StorageError as error:
        raise _backend_errors(error) from None
    if created:
        log.info("bucket {bucket} created by {who}", bucket=bucket,
                 who=admitted.principal.dev_id or admitted.principal.access_key)
    _respond(exchange.request, 200, headers={"Location": "/" + bucket}, content_type="")


async def _head_bucket(exchange: Exchange, admitted: Admitted) -> None:
    if not await exchange.endpoint.backend.bucket_exists(admitted.target.bucket):
        raise S3Error("NoSuchBucket", "The specified bucket does not exist")
    _respond(exchange.request, 200, content_type="")


async def _bucket_location(exchange: Exchange, admitted: Admitted) -> None:
    if not await exchange.endpoint.backend.bucket_exists(admitted.target.bucket):
        raise S3Error("NoSuchBucket", "The specified bucket does not exist")
    region = exchange.endpoint.settings.region
    _respond(exchange.request, 200, xml.location("" if region == "us-east-1" else region))


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None


async def _collect(exchange: Exchange, bucket: str, prefix: str, after: str, delimiter: str,
                   max_keys: int) -> tuple[list[ObjectInfo], list[str], bool, str]:
    """Up to ``max_keys`` objects and common prefixes after ``after``; whether more follow; the
    last key or prefix returned (the next page starts after it)."""
    backend = exchange.endpoint.backend
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    last = after
    rounds = 0
    while len(objects) + len(prefixes) < max_keys:
        rounds += 1
        page, more = await backend.list(bucket, prefix, last, max_keys - len(objects) - len(prefixes))
        for info in page:
            if delimiter:
                rest = info.key[len(prefix):]
                cut = rest.find(delimiter)
                if cut >= 0:
                    common = prefix + rest[:cut + len(delimiter)]
                    if common not in prefixes:
                        prefixes.append(common)
                    last = common + "\U0010ffff"
                    break  # go on listing after the whole common prefix
            objects.append(info)
            last = info.key
        else:
            if not more:
                return objects, prefixes, False, last
            continue
        if rounds > 10 * max_keys + 10:
            break
    _, more = await backend.list(bucket, prefix, last, 1)
    return objects, prefixes, bool(more), last


def _max_keys(query: Mapping[str, str]) -> int:
    text = query.get("max-keys", "1000")
    try:
        value = int(text)
    except ValueError:
        raise S3Error("InvalidArgument", "max-keys is not a number") from None
    if value < 0:
        raise S3Error("InvalidArgument", "max-keys must not be negative")
    return min(value, 1000)


async def _list_objects(exchange: Exchange, admitted: Admitted) -> None:
    target = admitted.target
    query = target.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    max_keys = _max_keys(query)
    v2 = target.op == "ListObjectsV2"
    token = query.get("continuation-token", "")
    after = _untoken(token) if v2 and token else (query.get("start-after", "") if v2 else query.get("marker", ""))
    if not admitted.principal.is_platform and after and not after.startswith(prefix):
        after = max(after, prefix)
    try:
        if max_keys:
            objects, prefixes, truncated, last = await _collect(exchange, target.bucket, prefix, after, delimiter,
                                                                max_keys)
        else:
            objects, prefixes, truncated, last = [], [], False, after
            if not await exchange.endpoint.backend.bucket_exists(target.bucket):
                raise NoSuchBucket(target.bucket)
    except StorageError as error:
        raise _backend_errors(error) from None
    encoding = query.get("encoding-type", "")
    if v2:
        page = xml.ListV2(target.bucket, prefix, objects, truncated, max_keys, continuation_token=token,
                          next_continuation_token=_token(last) if truncated else "",
                          start_after=query.get("start-after", ""), encoding_type=encoding,
                          delimiter=delimiter, common_prefixes=prefixes)
        body = page.to_xml()
    else:
        body = xml.list_v1(target.bucket, prefix, query.get("marker", ""), delimiter, max_keys, objects, prefixes,
                           truncated, last if truncated and delimiter else "", encoding)
    _respond(exchange.request, 200, body)


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """(first, last) of a ``bytes=`` range; None to serve it all; S3Error InvalidRange if unsatisfiable."""
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first_text:
            suffix = int(last_text)
            if suffix <= 0:
                raise S3Error("InvalidRange", "The requested range is not satisfiable")
            return max(size - suffix, 0), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size:
        raise S3Error("InvalidRange", "The requested range is not satisfiable")
    if last < first:
        return None
    return first, min(last, size - 1)


def _object_headers(info: ObjectInfo) -> dict[str, str]:
    return {"ETag": f'"{info.etag}"', "Last-Modified": xml.http_time(info.modified), "Accept-Ranges": "bytes"}


@implementer(IPushProducer)
class _Pause:
    """The GET loop's flow control: the transport pauses and resumes it."""

    def __init__(self) -> None:
        self.waiting: defer.Deferred[None] | None = None
        self.stopped = False

    def pauseProducing(self) -> None:  # noqa: N802
        if self.waiting is None:
            self.waiting = defer.Deferred()

    def resumeProducing(self) -> None:  # noqa: N802
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self) -> None:  # noqa: N802
        self.stopped = True
        self.resumeProducing()


async def _get_object(exchange: Exchange, admitted: Admitted) -> None:
    target, request = admitted.target, exchange.request
    backend = exchange.endpoint.backend
    try:
        info = await backend.head(target.bucket, target.key)
    except StorageError as error:
        raise _backend_errors(error) from None
    if info is None:
        raise S3Error("NoSuchKey", "The specified key does not exist.")
    headers = _object_headers(info)
    first, last, status = 0, info.size - 1, 200
    spec = exchange.header(b"range")
    if spec is not None and info.size > 0:
        try:
            chosen = _parse_range(spec, info.size)
        except S3Error:
            request.setHeader(b"content-range", f"bytes */{info.size}".encode())
            raise
        if chosen is not None:
            first, last, status = chosen[0], chosen[1], 206
            headers["Content-Range"] = f"bytes {first}-{last}/{info.size}"
    elif spec is not None and info.size == 0 and _parse_range(spec, 1) is not None:
        request.setHeader(b"content-range", b"bytes */0")
        raise S3Error("InvalidRange", "The requested range is not satisfiable")
    length = last - first + 1 if info.size else 0
    content_type = target.query.get("response-content-type") or info.content_type
    for name in ("content-disposition", "cache-control", "content-encoding", "content-language", "expires"):
        override = target.query.get("response-" + name)
        if override:
            headers[name.title()] = override
    request.setResponseCode(status)
    request.setHeader(b"x-amz-request-id", request.request_id.encode())
    request.setHeader(b"content-type", content_type.encode("latin-1", "replace"))
    for name, value in headers.items():
        request.setHeader(name.encode(), value.encode("latin-1", "replace"))
    request.setHeader(b"content-length", str(length).encode())
    if request.method == b"HEAD" or length == 0:
        request.finish()
        return
    pause = _Pause()
    request.registerProducer(pause, True)
    position, end = first, last + 1
    try:
        while position < end and not pause.stopped and not request._disconnected:
            piece = await backend.read(target.bucket, target.key, position, min(READ_PIECE, end - position))
            if not piece:
                break  # the object shrank (replaced) meanwhile: the client sees a short body
            request.write(piece)
            position += len(piece)
            if pause.waiting is not None:
                # A reader that stops reading holds a connection and a coroutine: not for longer
                # than idle_timeout seconds at a stretch.
                stall = exchange.endpoint.reactor.callLater(exchange.endpoint.settings.idle_timeout,
                                                            pause.stopProducing)
                await pause.waiting
                if stall.active():
                    stall.cancel()
                elif not request._disconnected:
                    exchange.endpoint.refused(exchange.peer, S3Error("RequestTimeout", "the client stopped reading"),
                                              exchange.what)
    except StorageError as error:
        log.warn("reading {bucket}/{key} for {peer} failed: {error}", bucket=target.bucket, key=target.key,
                 peer=exchange.peer, error=error)
    finally:
        request.unregisterProducer()
    if request._disconnected:
        return
    if position < end:
        request.channel.transport.abortConnection()  # never a short body presented as whole
        return
    request.finish()


async def _delete_object(exchange: Exchange, admitted: Admitted) -> None:
    target = admitted.target
    try:
        removed = await exchange.endpoint.backend.delete(target.bucket, target.key)
    except StorageError as error:
        raise _backend_errors(error) from None
    if removed:
        await exchange.endpoint.events.deleted(admitted.principal, target.bucket, target.key)
    _respond(exchange.request, 204, content_type="")


async def _finish_body(exchange: Exchange, admitted: Admitted) -> Digests:
    """Check the received body against what the request promised; the digests."""
    if exchange.decoder is not None:
        try:
            exchange.decoder.finish()
        except sigv4.ChunkError as error:
            raise S3Error(error.code, error.message) from None
    assert exchange.writer is not None
    digests = await exchange.writer.finish()
    mode = admitted.mode
    if mode.streaming:
        declared = exchange.header(b"x-amz-decoded-content-length")
        if declared is not None and declared.isdigit() and int(declared) != digests.size:
            raise S3Error("IncompleteBody", "The body is not x-amz-decoded-content-length bytes long.")
    if mode.kind == "sha256" and mode.sha256 != digests.sha256:
        raise S3Error("XAmzContentSHA256Mismatch",
                      "The provided 'x-amz-content-sha256' header does not match what was computed.")
    md5 = exchange.header(b"content-md5")
    if md5 is not None and not sigv4.content_md5_ok(md5, digests.md5):
        raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
    if digests.checksum:
        for algorithm in sigv4.Checksum.ALGORITHMS:
            name = "x-amz-checksum-" + algorithm
            given = exchange.header(name.encode())
            if given is None and exchange.decoder is not None:
                given = exchange.decoder.trailers.get(name)
            if given is not None and given.strip() != digests.checksum:
                raise S3Error("BadDigest", f"The {algorithm.upper()} you specified did not match the calculated "
                                           "checksum.")
    return digests


async def _put_object(exchange: Exchange, admitted: Admitted) -> None:
    target = admitted.target
    digests = await _finish_body(exchange, admitted)
    etag = digests.md5.hex()
    content_type = exchange.header(b"content-type") or "application/octet-stream"
    try:
        info = await exchange.endpoint.backend.put_file(target.bucket, target.key, exchange.staging_path, etag=etag,
                                                        content_type=content_type)
    except StorageError as error:
        raise _backend_errors(error) from None
    exchange.endpoint.counters["stored"] += 1
    exchange.endpoint.counters["bytes_stored"] += info.size
    await exchange.endpoint.events.stored(admitted.principal, info)
    headers = {"ETag": f'"{etag}"'}
    if digests.checksum:
        headers["x-amz-checksum-" + (exchange.writer._checksum.algorithm if exchange.writer and
                                     exchange.writer._checksum else "crc32")] = digests.checksum
    _respond(exchange.request, 200, headers=headers, content_type="")


async def _create_multipart(exchange: Exchange, admitted: Admitted) -> None:
    endpoint, target, principal = exchange.endpoint, admitted.target, admitted.principal
    if not await endpoint.backend.bucket_exists(target.bucket):
        raise S3Error("NoSuchBucket", "The specified bucket does not exist")
    mine = sum(1 for upload in endpoint.uploads.values() if upload.owner == principal.access_key)
    if mine >= MAX_UPLOADS_PER_PRINCIPAL or len(endpoint.uploads) >= MAX_UPLOADS:
        raise S3Error("SlowDown", "Too many multipart uploads in progress; complete or abort some first.")
    upload_id = uuid.uuid4().hex
    directory = os.path.join(endpoint.multipart_dir, upload_id)
    await endpoint.run(os.makedirs, directory)
    upload = Upload(upload_id, target.bucket, target.key, principal.access_key,
                    exchange.header(b"content-type") or "application/octet-stream", directory)
    endpoint.uploads[upload_id] = upload
    endpoint.touch_upload(upload)
    _respond(exchange.request, 200, xml.initiate_multipart(target.bucket, target.key, upload_id))


async def _upload_part(exchange: Exchange, admitted: Admitted) -> None:
    endpoint, target = exchange.endpoint, admitted.target
    digests = await _finish_body(exchange, admitted)
    upload = exchange.upload
    assert upload is not None
    if endpoint.uploads.get(upload.upload_id) is not upload or upload.completing:
        raise S3Error("NoSuchUpload", "The specified multipart upload does not exist.")
    number = int(target.query["partNumber"])
    if upload.size - upload.parts.get(number, ("", 0, b""))[1] + digests.size > endpoint.settings.max_object_size:
        raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
    await endpoint.run(os.replace, exchange.staging_path, os.path.join(upload.directory, str(number)))
    etag = digests.md5.hex()
    upload.parts[number] = (etag, digests.size, digests.md5)
    endpoint.touch_upload(upload)
    _respond(exchange.request, 200, headers={"ETag": f'"{etag}"'}, content_type="")


def _concatenate(directory: str, numbers: list[int], path: str) -> int:
    size = 0
    with open(path, "wb") as out:
        for number in numbers:
            with open(os.path.join(directory, str(number)), "rb") as part:
                shutil.copyfileobj(part, out, 1024 * 1024)
                size = out.tell()
    return size


async def _complete_multipart(exchange: Exchange, admitted: Admitted) -> None:
    endpoint, target = exchange.endpoint, admitted.target
    upload = endpoint.uploads.get(target.query.get("uploadId", ""))
    if upload is None or upload.bucket != target.bucket or upload.key != target.key or \
            upload.owner != admitted.principal.access_key or upload.completing:
        raise S3Error("NoSuchUpload", "The specified multipart upload does not exist.")
    body = _small_body(exchange, admitted)
    try:
        listed = xml.parse_complete(body)
    except xml.XMLError as error:
        raise S3Error("MalformedXML", f"The XML you provided was not well-formed: {error}") from None
    numbers = [number for number, _ in listed]
    if numbers != sorted(set(numbers)):
        raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order.")
    for index, (number, etag) in enumerate(listed):
        part = upload.parts.get(number)
        if part is None or part[0] != etag.lower():
            raise S3Error("InvalidPart", f"Part {number} was not uploaded or its ETag does not match.")
        if index < len(listed) - 1 and part[1] < MIN_PART_SIZE:
            raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.")
    upload.completing = True
    staging = endpoint.new_staging_path()
    try:
        await endpoint.run(_concatenate, upload.directory, numbers, staging)
        etag = hashlib.md5(b"".join(upload.parts[number][2] for number in numbers)).hexdigest() + f"-{len(numbers)}"
        info = await endpoint.backend.put_file(target.bucket, target.key, staging, etag=etag,
                                               content_type=upload.content_type)
    except StorageError as error:
        upload.completing = False
        await endpoint.run(_unlink_quietly, staging)
        raise _backend_errors(error) from None
    except BaseException:
        upload.completing = False
        await endpoint.run(_unlink_quietly, staging)
        raise
    await endpoint.drop_upload(upload)
    endpoint.counters["stored"] += 1
    endpoint.counters["bytes_stored"] += info.size
    await endpoint.events.stored(admitted.principal, info)
    location = f"/{target.bucket}/{sigv4.uri_encode(target.key, keep_slash=True)}"
    _respond(exchange.request, 200, xml.complete_multipart(location, target.bucket, target.key, etag))


def _small_body(exchange: Exchange, admitted: Admitted) -> bytes:
    """An in-memory request body, its SHA-256 and Content-MD5 checked."""
    body = exchange.small.getvalue()
    if admitted.mode.kind == "sha256" and hashlib.sha256(body).hexdigest() != admitted.mode.sha256:
        raise S3Error("XAmzContentSHA256Mismatch",
                      "The provided 'x-amz-content-sha256' header does not match what was computed.")
    md5 = exchange.header(b"content-md5")
    if md5 is not None and not sigv4.content_md5_ok(md5, hashlib.md5(body).digest()):
        raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
    return body


async def _delete_objects(exchange: Exchange, admitted: Admitted) -> None:
    """DeleteObjects (``POST /bucket?delete``: ``aws s3 rm --recursive``): each key as DeleteObject,
    a camera's foreign keys answered AccessDenied one by one."""
    endpoint, target, principal = exchange.endpoint, admitted.target, admitted.principal
    try:
        keys, quiet = xml.parse_delete(_small_body(exchange, admitted))
    except xml.XMLError as error:
        raise S3Error("MalformedXML", f"The XML you provided was not well-formed: {error}") from None
    deleted: list[str] = []
    errors: list[tuple[str, str, str]] = []
    for key in keys:
        if not principal.owns(key):
            errors.append((key, "AccessDenied", f"a camera may touch only keys starting {principal.dev_id}_"))
            continue
        try:
            check_key(key)
            removed = await endpoint.backend.delete(target.bucket, key)
        except StorageError as error:
            mapped = _backend_errors(error)
            errors.append((key, mapped.code, mapped.message))
            continue
        if removed:
            await endpoint.events.deleted(principal, target.bucket, key)
        deleted.append(key)
    _respond(exchange.request, 200, xml.delete_result([] if quiet else deleted, errors))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def _abort_multipart(exchange: Exchange, admitted: Admitted) -> None:
    endpoint, target = exchange.endpoint, admitted.target
    upload = endpoint.uploads.get(target.query.get("uploadId", ""))
    if upload is None or upload.bucket != target.bucket or upload.key != target.key or \
            upload.owner != admitted.principal.access_key:
        raise S3Error("NoSuchUpload", "The specified multipart upload does not exist.")
    if not upload.completing:
        await endpoint.drop_upload(upload)
    _respond(exchange.request, 204, content_type="")


_HANDLERS: dict[str, Callable[[Exchange, Admitted], Any]] = {
    "ListBuckets": _list_buckets, "CreateBucket": _create_bucket, "HeadBucket": _head_bucket,
    "GetBucketLocation": _bucket_location, "ListObjects": _list_objects, "ListObjectsV2": _list_objects,
    "GetObject": _get_object, "HeadObject": _get_object, "DeleteObject": _delete_object, "PutObject": _put_object,
    "CreateMultipartUpload": _create_multipart, "UploadPart": _upload_part,
    "CompleteMultipartUpload": _complete_multipart, "AbortMultipartUpload": _abort_multipart,
    "DeleteObjects": _delete_objects,
}


# -- the service ---------------------------------------------------------------------------------


def _clean_dir(path: str) -> int:
    removed = 0
    if os.path.isdir(path):
        removed = len(os.listdir(path))
        shutil.rmtree(path)
    os.makedirs(path)
    return removed


class StorageService(service.Service):
    """The ``storage`` role: the S3 endpoint listening on ``[storage] interface:port``.

    ``backend`` None builds the embedded :class:`~globaleye.s3.files.FileBackend` over
    ``settings.data_dir`` with this service's thread pool (which it owns: all disk work of the
    role runs there).  ``staging`` and ``.multipart`` live under ``data_dir`` and are emptied at
    start (what a crash left: a half-received body is never an object).
    """

    name = "storage"

    def __init__(self, settings: StorageSettings, backend: ObjectBackend | None, credentials: CredentialLookup,
                 events: StorageEvents, reactor: Any, *, threads: int = 4, listen: bool = True) -> None:
        if not settings.data_dir:
            raise ValueError("StorageSettings.data_dir must be set")
        self.settings = settings
        self.reactor = reactor
        self.threadpool = ThreadPool(1, threads, name="globaleye-storage")
        self.data_dir = os.path.abspath(settings.data_dir)
        self.backend: ObjectBackend = backend if backend is not None else FileBackend(self.data_dir, reactor,
                                                                                         self.threadpool)
        public = urlsplit(settings.public_url).hostname if settings.public_url else None
        hosts = tuple(host for host in (public, "localhost") if host)
        self.endpoint = S3Endpoint(settings, self.backend, credentials, events, reactor, self.threadpool,
                                   os.path.join(self.data_dir, ".staging"), os.path.join(self.data_dir, ".multipart"),
                                   virtual_hosts=hosts)
        self.site = S3Site(self.endpoint, header_timeout=settings.header_timeout,
                           body_timeout=settings.body_timeout, idle_timeout=settings.idle_timeout)
        self.port: Any = None
        #: False: the composition root listens with :attr:`site` itself (under the platform's connection
        #: limits), or nobody does (the FTP role alone uses the embedded backend).
        self.listen = listen
        self.ready: defer.Deferred[None] = defer.Deferred()

    def public_url_for(self, port: int) -> str:
        """The EURL cameras get (LOGIN_RES, 65H): ``public_url`` or ``http://<interface>:<port>``."""
        return self.settings.public_url or f"http://{self.settings.interface}:{port}"

    @property
    def url(self) -> str:
        """The URL the endpoint is reachable at on this host (after start)."""
        port = self.port.getHost().port if self.port is not None else self.settings.port
        return f"http://{self.settings.interface}:{port}"

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.threadpool.start()
        d = defer.Deferred.fromCoroutine(self._start())
        d.addCallbacks(self.ready.callback, self.ready.errback)
        d.addErrback(lambda failure: log.failure("the storage role did not start", failure))

    def prepare(self) -> None:
        """Start-up work on the caller's thread, for a composition root that listens with :attr:`site`
        itself (``listen`` False): the backend's directories made and checked (a filesystem without
        extended attributes stops start-up with its name), and what a crash left removed, before
        anyone is served."""
        prepare = getattr(self.backend, "prepare", None)
        removed = int(prepare()) if prepare is not None else _clean_dir(self.endpoint.staging_dir) + \
            _clean_dir(self.endpoint.multipart_dir)
        if removed:
            log.info("storage: removed {count} unfinished uploads left by an earlier run", count=removed)

    async def _start(self) -> None:
        if not self.listen:
            return  # prepared by the composition root (prepare())
        start = getattr(self.backend, "start", None)
        if start is not None:
            removed = int(await start())  # the FileBackend empties the same .staging and .multipart
        else:
            removed = int(await self.endpoint.run(_clean_dir, self.endpoint.staging_dir))
            removed += int(await self.endpoint.run(_clean_dir, self.endpoint.multipart_dir))
        if removed:
            log.info("storage: removed {count} unfinished uploads left by an earlier run", count=removed)
        server_endpoint = endpoints.TCP4ServerEndpoint(self.reactor, self.settings.port,
                                                       interface=self.settings.interface)
        self.port = await server_endpoint.listen(self.site)
        log.info("S3 endpoint listening on {url} (data in {dir})", url=self.url, dir=self.data_dir)

    def stopService(self) -> defer.Deferred[None] | None:  # noqa: N802
        super().stopService()
        self.endpoint.stop()
        port, self.port = self.port, None
        d: defer.Deferred[Any] = defer.maybeDeferred(port.stopListening) if port is not None else defer.succeed(None)
        d.addBoth(lambda _: self.site.close_all())
        d.addBoth(lambda _: self.threadpool.stop())
        return d


__all__ = ["S3Endpoint", "S3Error", "S3Site", "StorageService", "StorageSettings"]
