"""The embedded S3 endpoint (the storage role) against real S3 clients on loopback: boto3, the AWS CLI
(v1) and s3cmd, plus raw HTTP for what no well-behaved client sends (issue 12, "Proof").

boto3 runs in threads (deferToThread); the AWS CLI and s3cmd run as subprocesses with temporary
configuration files.  The credentials and events are the test's own: a dict of principals and a
recorder of admit/stored/deleted.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from twisted.internet import reactor, task, threads
from twisted.trial import unittest

from globaleye.s3 import sigv4
from globaleye.s3.backend import ObjectInfo, Principal
from globaleye.s3.endpoint import StorageService, StorageSettings

try:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover
    boto3 = None

PLATFORM = Principal("PLATFORMKEY", "platform-secret")
CAM1 = Principal("CAM1KEY", "cam1-secret", "D1")
CAM2 = Principal("CAM2KEY", "cam2-secret", "D2")
MAX_OBJECT = 24 * 1024 * 1024


class DictCredentials:
    def __init__(self, *principals: Principal) -> None:
        self.table = {p.access_key: p for p in principals}

    async def principal(self, access_key: str) -> Principal | None:
        return self.table.get(access_key)


class RecordingEvents:
    """Records every event; refuses keys containing ``quota``."""

    def __init__(self) -> None:
        self.admits: list[tuple[str, str, str, int]] = []
        self.stores: list[tuple[str, ObjectInfo]] = []
        self.deletes: list[tuple[str, str, str]] = []

    async def admit(self, principal: Principal, bucket: str, key: str, size: int) -> str | None:
        self.admits.append((principal.access_key, bucket, key, size))
        return "the device's quota is used up" if "quota" in key else None

    async def stored(self, principal: Principal, info: ObjectInfo) -> None:
        self.stores.append((principal.access_key, info))

    async def deleted(self, principal: Principal, bucket: str, key: str) -> None:
        self.deletes.append((principal.access_key, bucket, key))


def client(url: str, who: Principal, **config: Any) -> Any:
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=who.access_key,
                        aws_secret_access_key=who.secret, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, **config))


def error_code(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
    try:
        call(*args, **kwargs)
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"], error.response["Error"]["Code"]
    raise AssertionError(f"{call} succeeded")


def read_object(s3: Any, **kwargs: Any) -> tuple[dict[str, Any], bytes]:
    """get_object and its body, read in the calling (non-reactor) thread."""
    answer = s3.get_object(**kwargs)
    return answer, answer["Body"].read()


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Harness(unittest.TestCase):
    timeout = 120

    def setUp(self) -> Any:
        if boto3 is None:
            raise unittest.SkipTest("boto3 is not installed")
        self.data_dir = os.path.abspath(self.mktemp())
        self.events = RecordingEvents()
        self.service = StorageService(
            StorageSettings(port=0, data_dir=self.data_dir, max_object_size=MAX_OBJECT, header_timeout=2,
                            body_timeout=2, idle_timeout=3, multipart_expiry=600),
            None, DictCredentials(PLATFORM, CAM1, CAM2), self.events, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        return self.service.ready

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def port(self) -> int:
        return int(self.service.port.getHost().port)

    def boto(self, who: Principal, **config: Any) -> Any:
        return client(self.url, who, **config)

    async def in_thread(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await threads.deferToThread(function, *args, **kwargs)

    async def make_bucket(self, name: str = "GlobalEyeRecord", who: Principal = CAM1) -> None:
        await self.in_thread(self.boto(who).create_bucket, Bucket=name)


class Boto3(Harness):
    async def test_put_get_ranges_list_delete(self) -> None:
        await self.make_bucket()
        cam = self.boto(CAM1)
        body = bytes(range(256)) * 40
        put = await self.in_thread(cam.put_object, Bucket="GlobalEyeRecord", Key="D1_1_20240101120000.ts", Body=body)
        self.assertEqual(put["ETag"], f'"{hashlib.md5(body).hexdigest()}"')
        self.assertEqual([(ak, info.key, info.size) for ak, info in self.events.stores],
                         [("CAM1KEY", "D1_1_20240101120000.ts", len(body))])
        for spec, expected in (("bytes=10-19", body[10:20]), ("bytes=10000-", body[10000:]),
                               ("bytes=-7", body[-7:]), ("bytes=100-999999", body[100:])):
            got, data = await self.in_thread(read_object, cam, Bucket="GlobalEyeRecord",
                                             Key="D1_1_20240101120000.ts", Range=spec)
            self.assertEqual(got["ResponseMetadata"]["HTTPStatusCode"], 206)
            self.assertEqual(data, expected)
        self.assertIn("bytes 10-19/10240", (await self.in_thread(
            read_object, cam, Bucket="GlobalEyeRecord", Key="D1_1_20240101120000.ts", Range="bytes=10-19"))[0]["ContentRange"])
        status = await self.in_thread(error_code, cam.get_object, Bucket="GlobalEyeRecord",
                                      Key="D1_1_20240101120000.ts", Range="bytes=20000-")
        self.assertEqual(status, (416, "InvalidRange"))
        _, whole = await self.in_thread(read_object, cam, Bucket="GlobalEyeRecord", Key="D1_1_20240101120000.ts")
        self.assertEqual(whole, body)
        head = await self.in_thread(cam.head_object, Bucket="GlobalEyeRecord", Key="D1_1_20240101120000.ts")
        self.assertEqual(head["ContentLength"], len(body))
        # 25 objects, listed 10 at a time: three pages through continuation tokens.
        for i in range(25):
            await self.in_thread(cam.put_object, Bucket="GlobalEyeRecord", Key=f"D1_2_{i:03d}.jpg", Body=b"%d" % i)
        pages = await self.in_thread(lambda: list(cam.get_paginator("list_objects_v2").paginate(
            Bucket="GlobalEyeRecord", Prefix="D1_2_", PaginationConfig={"PageSize": 10})))
        self.assertEqual([page["KeyCount"] for page in pages], [10, 10, 5])
        self.assertEqual([obj["Key"] for page in pages for obj in page["Contents"]],
                         [f"D1_2_{i:03d}.jpg" for i in range(25)])
        self.assertTrue(pages[0]["IsTruncated"])
        after = await self.in_thread(cam.list_objects_v2, Bucket="GlobalEyeRecord", Prefix="D1_2_",
                                     StartAfter="D1_2_020.jpg")
        self.assertEqual([obj["Key"] for obj in after["Contents"]], [f"D1_2_{i:03d}.jpg" for i in range(21, 25)])
        # Keys S3 allows: any UTF-8 up to 1024 bytes (the file name is hashed past 240 bytes), the
        # characters clients percent-encode differently, slashes.
        odd = ["D1_录像 (1)+a!*'~=&;$@,.ts", "D1_" + "é" * 510, "D1_a/../../b", "D1_%2F%41"]
        for key in odd:
            await self.in_thread(cam.put_object, Bucket="GlobalEyeRecord", Key=key, Body=key.encode())
            self.assertEqual((await self.in_thread(read_object, cam, Bucket="GlobalEyeRecord", Key=key))[1],
                             key.encode())
        listed = await self.in_thread(cam.list_objects_v2, Bucket="GlobalEyeRecord", Prefix="D1_")
        self.assertTrue(set(odd) <= {obj["Key"] for obj in listed["Contents"]})
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "b")))
        deleted = await self.in_thread(cam.delete_object, Bucket="GlobalEyeRecord", Key="D1_1_20240101120000.ts")
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.events.deletes, [("CAM1KEY", "GlobalEyeRecord", "D1_1_20240101120000.ts")])
        status = await self.in_thread(error_code, cam.get_object, Bucket="GlobalEyeRecord",
                                      Key="D1_1_20240101120000.ts")
        self.assertEqual(status, (404, "NoSuchKey"))
        status = await self.in_thread(error_code, cam.head_bucket, Bucket="GlobalEyePicture")
        self.assertEqual(status[0], 404)

    async def test_multipart_upload_file(self) -> None:
        await self.make_bucket()
        path = os.path.join(self.mktemp() + "-big")
        data = os.urandom(11 * 1024 * 1024 + 123)
        with open(path, "wb") as f:
            f.write(data)
        cam = self.boto(CAM1)
        config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        await self.in_thread(cam.upload_file, path, "GlobalEyeRecord", "D1_1_20240101120500.ts", Config=config)
        head = await self.in_thread(cam.head_object, Bucket="GlobalEyeRecord", Key="D1_1_20240101120500.ts")
        self.assertTrue(head["ETag"].endswith('-3"'), head["ETag"])
        _, got = await self.in_thread(read_object, cam, Bucket="GlobalEyeRecord", Key="D1_1_20240101120500.ts")
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest())
        self.assertEqual([info.size for _, info in self.events.stores], [len(data)])
        self.assertEqual(os.listdir(os.path.join(self.data_dir, ".multipart")), [])
        self.assertEqual(os.listdir(os.path.join(self.data_dir, ".staging")), [])
        # The ETag list is checked; an aborted upload leaves nothing.
        started = await self.in_thread(cam.create_multipart_upload, Bucket="GlobalEyeRecord", Key="D1_x")
        part = await self.in_thread(cam.upload_part, Bucket="GlobalEyeRecord", Key="D1_x", PartNumber=1,
                                    UploadId=started["UploadId"], Body=b"abc")
        status = await self.in_thread(error_code, cam.complete_multipart_upload, Bucket="GlobalEyeRecord", Key="D1_x",
                                      UploadId=started["UploadId"],
                                      MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0000"'}]})
        self.assertEqual(status, (400, "InvalidPart"))
        status = await self.in_thread(error_code, self.boto(CAM2).abort_multipart_upload, Bucket="GlobalEyeRecord",
                                      Key="D1_x", UploadId=started["UploadId"])
        self.assertEqual(status, (403, "AccessDenied"))
        await self.in_thread(cam.abort_multipart_upload, Bucket="GlobalEyeRecord", Key="D1_x",
                             UploadId=started["UploadId"])
        status = await self.in_thread(error_code, cam.complete_multipart_upload, Bucket="GlobalEyeRecord", Key="D1_x",
                                      UploadId=started["UploadId"],
                                      MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        self.assertEqual(status, (404, "NoSuchUpload"))
        self.assertEqual(os.listdir(os.path.join(self.data_dir, ".multipart")), [])

    async def test_presigned(self) -> None:
        await self.make_bucket()
        cam = self.boto(CAM1)
        await self.in_thread(cam.put_object, Bucket="GlobalEyeRecord", Key="D1_1_p.ts", Body=b"presigned body")
        url = await self.in_thread(cam.generate_presigned_url, "get_object",
                                   Params={"Bucket": "GlobalEyeRecord", "Key": "D1_1_p.ts"}, ExpiresIn=60)
        self.assertEqual(await self.in_thread(http_get, url), (200, b"presigned body"))
        ours = sigv4.presign_get(self.url, "GlobalEyeRecord", "D1_1_p.ts", PLATFORM.access_key, PLATFORM.secret,
                                 reactor.seconds(), 60)
        self.assertEqual(await self.in_thread(http_get, ours), (200, b"presigned body"))
        expired = sigv4.presign_get(self.url, "GlobalEyeRecord", "D1_1_p.ts", PLATFORM.access_key, PLATFORM.secret,
                                    reactor.seconds() - 120, 60)
        status, body = await self.in_thread(http_get, expired)
        self.assertEqual(status, 403)
        self.assertIn(b"<Code>AccessDenied</Code>", body)
        self.assertIn(b"Request has expired", body)
        status, body = await self.in_thread(http_get, ours.replace("D1_1_p.ts", "D1_1_q.ts"))
        self.assertEqual(status, 403)
        self.assertIn(b"SignatureDoesNotMatch", body)
        # A camera's presigned URL for another camera's object is refused like the camera itself.
        other = await self.in_thread(self.boto(CAM2).generate_presigned_url, "get_object",
                                     Params={"Bucket": "GlobalEyeRecord", "Key": "D1_1_p.ts"}, ExpiresIn=60)
        self.assertEqual((await self.in_thread(http_get, other))[0], 403)
        put_url = await self.in_thread(cam.generate_presigned_url, "put_object",
                                       Params={"Bucket": "GlobalEyeRecord", "Key": "D1_1_put.jpg"}, ExpiresIn=60)

        def put() -> tuple[int, bytes]:
            parts = urllib.parse.urlsplit(put_url)
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            try:
                connection.request("PUT", f"{parts.path}?{parts.query}", b"jpeg")
                answer = connection.getresponse()
                return answer.status, answer.read()
            finally:
                connection.close()
        self.assertEqual((await self.in_thread(put))[0], 200)
        # boto3 presigns with V2 (AWSAccessKeyId/Expires/Signature) unless told s3v4: both are accepted.
        self.assertIn("AWSAccessKeyId=", url)
        v4 = self.boto(CAM1, signature_version="s3v4")
        url4 = await self.in_thread(v4.generate_presigned_url, "get_object",
                                    Params={"Bucket": "GlobalEyeRecord", "Key": "D1_1_p.ts"}, ExpiresIn=60)
        self.assertIn("X-Amz-Signature=", url4)
        self.assertEqual(await self.in_thread(http_get, url4), (200, b"presigned body"))
        self.assertEqual((await self.in_thread(read_object, cam, Bucket="GlobalEyeRecord", Key="D1_1_put.jpg"))[1],
                         b"jpeg")

    async def test_refusals(self) -> None:
        await self.make_bucket()
        cam1, cam2 = self.boto(CAM1), self.boto(CAM2)
        await self.in_thread(cam1.put_object, Bucket="GlobalEyeRecord", Key="D1_1_a.ts", Body=b"mine")
        stored = len(self.events.stores)
        # Another camera's key: neither read nor written nor deleted nor listed.
        for call, kwargs in ((cam2.get_object, {"Key": "D1_1_a.ts"}), (cam2.head_object, {"Key": "D1_1_a.ts"}),
                             (cam2.put_object, {"Key": "D1_1_a.ts", "Body": b"theirs"}),
                             (cam2.delete_object, {"Key": "D1_1_a.ts"}),
                             (cam2.list_objects_v2, {"Prefix": "D1_"}), (cam2.list_objects_v2, {}),
                             (cam1.put_object, {"Key": "notmine.ts", "Body": b"x"}),
                             (cam1.put_object, {"Key": "D10_1.ts", "Body": b"x"})):
            status = await self.in_thread(error_code, call, Bucket="GlobalEyeRecord", **kwargs)
            self.assertEqual(status[0], 403, (call, kwargs, status))
            if call.__name__ != "head_object":
                self.assertEqual(status[1], "AccessDenied", (call, kwargs))
        listed = await self.in_thread(cam2.list_objects_v2, Bucket="GlobalEyeRecord", Prefix="D2_")
        self.assertEqual(listed["KeyCount"], 0)
        status = await self.in_thread(error_code, cam1.create_bucket, Bucket="SomethingElse")
        self.assertEqual(status, (403, "AccessDenied"))
        # Wrong secret, unknown key, anonymous.
        wrong = client(self.url, Principal("CAM1KEY", "not-the-secret"))
        self.assertEqual(await self.in_thread(error_code, wrong.get_object, Bucket="GlobalEyeRecord", Key="D1_1_a.ts"),
                         (403, "SignatureDoesNotMatch"))
        unknown = client(self.url, Principal("NOSUCHKEY", "x"))
        self.assertEqual(await self.in_thread(error_code, unknown.list_buckets), (403, "InvalidAccessKeyId"))
        status, body = await self.in_thread(http_get, f"{self.url}/GlobalEyeRecord/D1_1_a.ts")
        self.assertEqual(status, 403)
        self.assertIn(b"AccessDenied", body)
        # Content-MD5 mismatch, quota, oversize (refused before the body is read).
        status = await self.in_thread(error_code, cam1.put_object, Bucket="GlobalEyeRecord", Key="D1_1_b.ts",
                                      Body=b"body", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
        self.assertEqual(status, (400, "BadDigest"))
        status = await self.in_thread(error_code, cam1.put_object, Bucket="GlobalEyeRecord", Key="D1_quota.ts",
                                      Body=b"body")
        self.assertEqual(status, (403, "QuotaExceeded"))
        status = await self.in_thread(error_code, cam1.put_object, Bucket="GlobalEyeRecord", Key="D1_1_big.ts",
                                      Body=b"\0" * (MAX_OBJECT + 1))
        self.assertEqual(status, (400, "EntityTooLarge"))
        self.assertEqual(len(self.events.stores), stored)
        for key in ("D1_1_b.ts", "D1_quota.ts", "D1_1_big.ts"):
            self.assertEqual(await self.in_thread(error_code, cam1.head_object, Bucket="GlobalEyeRecord", Key=key),
                             (404, "404"))
        self.assertEqual(os.listdir(os.path.join(self.data_dir, ".staging")), [])
        self.assertEqual((await self.in_thread(read_object, cam1, Bucket="GlobalEyeRecord", Key="D1_1_a.ts"))[1],
                         b"mine")

    async def test_raw_http(self) -> None:
        """What a camera's own HTTP code may send: chunked bodies past the limit, a wrong payload
        hash, virtual-host style, aws-chunked with chunk signatures, slow headers."""
        await self.make_bucket("vhost-bucket", PLATFORM)

        def request(method: str, path: str, body: Any = b"", headers: dict[str, str] | None = None,
                    payload: str = sigv4.UNSIGNED_PAYLOAD, host: str = "", chunked: bool = False) -> tuple[int, bytes]:
            host = host or f"127.0.0.1:{self.port}"
            raw_path, _, raw_query = path.partition("?")
            signed = sigv4.sign_v4(method, host, raw_path, sigv4.split_query(raw_query), headers or {},
                                   PLATFORM.access_key, PLATFORM.secret, "us-east-1", time.time(), payload)
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                connection.putheader("Host", host)
                for name, value in {**(headers or {}), **signed}.items():
                    connection.putheader(name, value)
                if chunked:
                    connection.putheader("Transfer-Encoding", "chunked")
                    connection.endheaders()
                    try:
                        for piece in body:
                            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                        connection.send(b"0\r\n\r\n")
                    except OSError:
                        pass  # cut off: read the answer
                else:
                    connection.putheader("Content-Length", str(len(body)))
                    connection.endheaders(body)
                answer = connection.getresponse()
                return answer.status, answer.read()
            finally:
                connection.close()

        status, body = await self.in_thread(request, "PUT", "/vhost-bucket/k1", b"abc",
                                            payload=hashlib.sha256(b"abd").hexdigest())
        self.assertEqual(status, 400)
        self.assertIn(b"XAmzContentSHA256Mismatch", body)
        pieces = (b"\0" * 1024 * 1024 for _ in range(MAX_OBJECT // (1024 * 1024) + 2))
        status, body = await self.in_thread(request, "PUT", "/vhost-bucket/k2", pieces, chunked=True)
        self.assertEqual(status, 400)
        self.assertIn(b"EntityTooLarge", body)
        status, body = await self.in_thread(request, "PUT", "/k3", b"virtual", host=f"vhost-bucket.localhost:{self.port}")
        self.assertEqual(status, 200, body)
        status, body = await self.in_thread(request, "GET", "/vhost-bucket/k3")
        self.assertEqual((status, body), (200, b"virtual"))
        # aws-chunked with chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), as the AWS SDKs
        # send over TLS; the seed signature is the request's.
        data = os.urandom(200000)
        host = f"127.0.0.1:{self.port}"
        now = time.time()
        extra = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
        signed = sigv4.sign_v4("PUT", host, "/vhost-bucket/k4", [], extra, PLATFORM.access_key, PLATFORM.secret,
                               "us-east-1", now, sigv4.STREAMING_SIGNED)
        seed = signed["Authorization"].rsplit("Signature=", 1)[1]
        date = signed["x-amz-date"]
        mode = sigv4.PayloadMode(sigv4.STREAMING_SIGNED, seed=seed,
                                 chunk_key=sigv4.signing_key(PLATFORM.secret, date[:8], "us-east-1"),
                                 scope=f"{date[:8]}/us-east-1/s3/aws4_request", date=date)
        encoded = sigv4.encode_aws_chunked(data, 65536, mode)

        def streaming(body: bytes) -> tuple[int, bytes]:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                connection.request("PUT", "/vhost-bucket/k4", body, {"Host": host, **extra, **signed})
                answer = connection.getresponse()
                return answer.status, answer.read()
            finally:
                connection.close()
        self.assertEqual((await self.in_thread(streaming, encoded))[0], 200)
        self.assertEqual(await self.in_thread(request, "GET", "/vhost-bucket/k4"), (200, data))
        tampered = encoded.replace(data[70000:70010], bytes(10))
        status, body = await self.in_thread(streaming, tampered)
        self.assertEqual(status, 403)
        self.assertIn(b"SignatureDoesNotMatch", body)

        # Headers that never end: the connection is answered and closed after header_timeout (2 s).
        def slow_headers() -> bytes:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(b"GET /vhost-bucket/k3 HTTP/1.1\r\nHost: x\r\n")
                received = b""
                while True:
                    data = sock.recv(4096)
                    if not data:
                        return received
                    received += data
        started = time.monotonic()
        answer = await self.in_thread(slow_headers)
        self.assertIn(b"RequestTimeout", answer)
        self.assertLess(time.monotonic() - started, 8)

        # A body that stops coming: answered and closed after body_timeout (2 s) of silence, and
        # its staging file removed.
        def stalled_body() -> bytes:
            host = f"127.0.0.1:{self.port}"
            signed = sigv4.sign_v4("PUT", host, "/vhost-bucket/k5", [], {}, PLATFORM.access_key, PLATFORM.secret,
                                   "us-east-1", time.time())
            head = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(f"PUT /vhost-bucket/k5 HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: 1000000\r\n\r\n"
                             .encode() + b"x" * 300000)
                received = b""
                while True:
                    data = sock.recv(4096)
                    if not data:
                        return received
                    received += data
        started = time.monotonic()
        answer = await self.in_thread(stalled_body)
        self.assertIn(b"RequestTimeout", answer)
        self.assertLess(time.monotonic() - started, 8)
        status, _ = await self.in_thread(request, "GET", "/vhost-bucket/k5")
        self.assertEqual(status, 404)
        for _ in range(100):  # the abort's removal runs in the pool: bounded wait
            if not os.listdir(os.path.join(self.data_dir, ".staging")):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(os.listdir(os.path.join(self.data_dir, ".staging")), [])
        # A reader that stops reading: cut after idle_timeout (3 s) of a full send buffer.
        big = os.urandom(MAX_OBJECT - 1)
        self.assertEqual((await self.in_thread(request, "PUT", "/vhost-bucket/big", big))[0], 200)

        def stalled_reader() -> int:
            host = f"127.0.0.1:{self.port}"
            signed = sigv4.sign_v4("GET", host, "/vhost-bucket/big", [], {}, PLATFORM.access_key, PLATFORM.secret,
                                   "us-east-1", time.time())
            head = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            with sock:
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(f"GET /vhost-bucket/big HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
                time.sleep(5)
                received = 0
                try:
                    while data := sock.recv(65536):
                        received += len(data)
                except ConnectionResetError:
                    pass
                return received
        self.assertLess(await self.in_thread(stalled_reader), len(big))
        # An empty object.
        self.assertEqual((await self.in_thread(request, "PUT", "/vhost-bucket/empty", b""))[0], 200)
        self.assertEqual(await self.in_thread(request, "GET", "/vhost-bucket/empty"), (200, b""))


class AwsCli(Harness):
    def run_cli(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["aws", "--endpoint-url", self.url, *args], env=env, capture_output=True, text=True,
                              timeout=90, check=False)

    async def test_cp_multipart_ls(self) -> None:
        if shutil.which("aws") is None:
            raise unittest.SkipTest("the AWS CLI is not installed")
        await self.make_bucket()
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        with open(os.path.join(home, "credentials"), "w") as f:
            f.write(f"[default]\naws_access_key_id = {CAM1.access_key}\naws_secret_access_key = {CAM1.secret}\n")
        with open(os.path.join(home, "config"), "w") as f:
            f.write("[default]\nregion = us-east-1\n")
        env = {**os.environ, "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
               "AWS_CONFIG_FILE": os.path.join(home, "config"), "HOME": home}
        big = os.path.join(home, "segment.ts")
        data = os.urandom(9 * 1024 * 1024 + 7)
        with open(big, "wb") as f:
            f.write(data)
        done = await self.in_thread(self.run_cli, "s3", "cp", big, "s3://GlobalEyeRecord/D1_1_20240101121000.ts",
                                    env=env)
        self.assertEqual(done.returncode, 0, done.stderr)
        head = await self.in_thread(self.boto(CAM1).head_object, Bucket="GlobalEyeRecord",
                                    Key="D1_1_20240101121000.ts")
        self.assertRegex(head["ETag"], r'-2"$')  # 8 MB parts: a multipart upload
        back = os.path.join(home, "back.ts")
        done = await self.in_thread(self.run_cli, "s3", "cp", "s3://GlobalEyeRecord/D1_1_20240101121000.ts", back,
                                    env=env)
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(back, "rb") as f:
            self.assertEqual(f.read(), data)
        done = await self.in_thread(self.run_cli, "s3", "ls", "s3://GlobalEyeRecord/D1_", env=env)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("D1_1_20240101121000.ts", done.stdout)
        done = await self.in_thread(self.run_cli, "s3", "ls", "s3://GlobalEyeRecord/", env=env)
        self.assertNotEqual(done.returncode, 0)  # a camera lists only its own prefix
        self.assertIn("AccessDenied", done.stderr)
        # DeleteObjects: a camera removes its own objects; another camera's survive it.
        await self.in_thread(self.boto(CAM2).put_object, Bucket="GlobalEyeRecord", Key="D2_1_keep.ts", Body=b"x")
        await self.in_thread(self.boto(CAM1).put_object, Bucket="GlobalEyeRecord", Key="D1_2_more.jpg", Body=b"x")
        # (The CLI's recursive rm lists "D1_/": a camera's files are not in a directory; boto3 here.)
        answer = await self.in_thread(self.boto(CAM1).delete_objects, Bucket="GlobalEyeRecord", Delete={"Objects": [
            {"Key": "D1_1_20240101121000.ts"}, {"Key": "D1_2_more.jpg"}, {"Key": "D2_1_keep.ts"}]})
        self.assertEqual(sorted(obj["Key"] for obj in answer["Deleted"]), ["D1_1_20240101121000.ts", "D1_2_more.jpg"])
        self.assertEqual([(error["Key"], error["Code"]) for error in answer["Errors"]],
                         [("D2_1_keep.ts", "AccessDenied")])
        self.assertEqual(sorted(key for _, _, key in self.events.deletes), ["D1_1_20240101121000.ts", "D1_2_more.jpg"])
        listed = await self.in_thread(self.boto(PLATFORM).list_objects_v2, Bucket="GlobalEyeRecord")
        self.assertEqual([obj["Key"] for obj in listed["Contents"]], ["D2_1_keep.ts"])


class S3cmd(Harness):
    def config(self, who: Principal, *, v2: bool = False) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(textwrap.dedent(f"""\
                [default]
                access_key = {who.access_key}
                secret_key = {who.secret}
                host_base = 127.0.0.1:{self.port}
                host_bucket = 127.0.0.1:{self.port}
                use_https = False
                signature_v2 = {v2}
                bucket_location = us-east-1
                check_ssl_certificate = False
                """))
        return path

    def s3cmd(self, config: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["s3cmd", "-c", config, *args], capture_output=True, text=True, timeout=90, check=False)

    async def test_put_get_ls_v4_and_v2(self) -> None:
        if shutil.which("s3cmd") is None:
            raise unittest.SkipTest("s3cmd is not installed")
        await self.make_bucket("GlobalEyePicture")
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        picture = os.path.join(work, "p.jpg")
        data = os.urandom(300000)
        with open(picture, "wb") as f:
            f.write(data)
        for v2 in (False, True):
            config = self.config(CAM1, v2=v2)
            key = f"D1_1_2024010112000{int(v2)}.jpg"
            done = await self.in_thread(self.s3cmd, config, "put", picture, f"s3://GlobalEyePicture/{key}")
            self.assertEqual(done.returncode, 0, done.stderr + done.stdout)
            back = os.path.join(work, f"back{int(v2)}.jpg")
            done = await self.in_thread(self.s3cmd, config, "get", f"s3://GlobalEyePicture/{key}", back)
            self.assertEqual(done.returncode, 0, done.stderr)
            with open(back, "rb") as f:
                self.assertEqual(f.read(), data)
            done = await self.in_thread(self.s3cmd, config, "ls", "s3://GlobalEyePicture/D1_")
            self.assertEqual(done.returncode, 0, done.stderr)
            self.assertIn(key, done.stdout)
        self.assertEqual(len(self.events.stores), 2)
        other = self.config(CAM2)
        done = await self.in_thread(self.s3cmd, other, "get", "s3://GlobalEyePicture/D1_1_20240101120000.jpg",
                                    os.path.join(work, "stolen.jpg"))
        self.assertNotEqual(done.returncode, 0)
        self.assertFalse(os.path.exists(os.path.join(work, "stolen.jpg")) and
                         os.path.getsize(os.path.join(work, "stolen.jpg")) > 0)


SERVER = """
import json, sys
from twisted.internet import reactor
from globaleye.s3.backend import Principal
from globaleye.s3.endpoint import StorageService, StorageSettings

class Credentials:
    async def principal(self, access_key):
        return Principal("PLATFORMKEY", "platform-secret") if access_key == "PLATFORMKEY" else None

class Events:
    def note(self, *what):
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps(what) + "\\n")
    async def admit(self, principal, bucket, key, size):
        self.note("admit", key, size)
    async def stored(self, principal, info):
        self.note("stored", info.key, info.size)
    async def deleted(self, principal, bucket, key):
        self.note("deleted", key)

service = StorageService(StorageSettings(port=0, data_dir=sys.argv[1]), None, Credentials(), Events(), reactor)
def ready(_):
    print(service.port.getHost().port, flush=True)
service.ready.addCallback(ready)
reactor.callWhenRunning(service.startService)
reactor.run()
"""


class Crash(unittest.TestCase):
    """SIGKILL of the endpoint mid-upload: no partial object, no stored event, staging emptied."""

    timeout = 120

    def start(self, data_dir: str, events: str) -> tuple[subprocess.Popen[str], int]:
        process = subprocess.Popen([sys.executable, "-c", SERVER, data_dir, events], stdout=subprocess.PIPE,
                                   text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        self.addCleanup(lambda: process.poll() is None and process.kill())
        line = process.stdout.readline() if process.stdout else ""
        if not line.strip():
            raise AssertionError("the endpoint subprocess did not start")
        return process, int(line)

    @staticmethod
    def send(port: int, method: str, path: str, body: bytes, total: int | None = None) -> Any:
        host = f"127.0.0.1:{port}"
        signed = sigv4.sign_v4(method, host, path, [], {}, PLATFORM.access_key, PLATFORM.secret, "us-east-1",
                               time.time())
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.putrequest(method, path, skip_host=True)
        connection.putheader("Host", host)
        for name, value in signed.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(total if total is not None else len(body)))
        connection.endheaders(body)
        if total is not None:
            return connection  # the rest never comes
        answer = connection.getresponse()
        result = (answer.status, answer.read())
        connection.close()
        return result

    def test_sigkill_mid_upload(self) -> Any:
        return threads.deferToThread(self._crash)

    def _crash(self) -> None:
        data_dir, events = os.path.abspath(self.mktemp()), os.path.abspath(self.mktemp() + ".events")
        process, port = self.start(data_dir, events)
        self.assertEqual(self.send(port, "PUT", "/GlobalEyeRecord", b"")[0], 200)
        self.assertEqual(self.send(port, "PUT", "/GlobalEyeRecord/D1_1_x.ts", b"old object")[0], 200)
        connection = self.send(port, "PUT", "/GlobalEyeRecord/D1_1_x.ts", b"\1" * (3 * 1024 * 1024),
                               total=10 * 1024 * 1024)
        staging = os.path.join(data_dir, ".staging")
        deadline = time.monotonic() + 20
        while not any(os.path.getsize(os.path.join(staging, name)) for name in os.listdir(staging)):
            self.assertLess(time.monotonic(), deadline, "the body never reached the staging file")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        connection.close()
        self.assertTrue(os.listdir(staging))  # the crash left a partial staging file behind...
        with open(events) as f:
            before = f.read()
        process, port = self.start(data_dir, events)
        self.assertEqual(os.listdir(staging), [])  # ...which the restart removed
        self.assertEqual(self.send(port, "GET", "/GlobalEyeRecord/D1_1_x.ts", b""), (200, b"old object"))
        with open(events) as f:
            lines = f.read().splitlines()
        self.assertEqual([line for line in lines if '"stored"' in line],
                         ['["stored", "D1_1_x.ts", 10]'])
        self.assertIn('"admit", "D1_1_x.ts", 10485760', before)
        process.kill()
        process.wait(10)


