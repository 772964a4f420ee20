"""The external S3 backend (globaleye/s3/external.py) against a real S3 peer: moto's server, started
here on loopback with signature checks on (tests/s3harness.py), through boto3.

The whole backend contract (tests/backend_contract.py) runs on it, plus what only an external
service has: refused credentials, an unreachable endpoint, the bucket mapping, objects other
clients wrote, the service's MD5 check, and a reactor that keeps running during a large upload.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import socket
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.s3.backend import RECORD_BUCKET, ObjectBackend, StorageError
from tests.backend_contract import BackendContract

try:
    import boto3  # noqa: F401

    from globaleye.s3.external import S3Backend
    from tests.s3harness import REGION, MotoUnavailable, shared_server
except ImportError as e:  # pragma: no cover - the [test] extra installs them
    _missing: str | None = str(e)
else:
    _missing = None

_prefixes = itertools.count()


class MotoCase(TestCase):
    """One moto server for the class (it takes about a second to start); every test its own buckets
    (a bucket prefix of its own), so the tests share no state."""

    server: Any = None
    #: Signature checks on (tests/s3harness.py).
    auth = True

    async def setUp(self) -> None:
        if _missing:
            raise SkipTest(f"boto3 / moto not installed: {_missing}")
        try:
            self.server = await deferToThread(shared_server, self.auth)
        except MotoUnavailable as e:
            raise SkipTest(str(e)) from None

    def prefix(self) -> str:
        return f"t{os.getpid()}-{next(_prefixes)}-"

    def s3backend(self, keys: Any = None, start: bool = True, **kwargs: Any) -> S3Backend:
        keys = keys or self.server.good
        kwargs.setdefault("bucket_prefix", self.prefix())
        kwargs.setdefault("region", REGION)
        backend = S3Backend(reactor, endpoint=self.server.url, access_key=keys.access_key,
                            secret_key=keys.secret_key, **kwargs)
        if start:
            backend.startService()
            self.addCleanup(backend.stopService)
        return backend


class S3BackendContract(BackendContract, MotoCase):
    """The contract, with a multipart threshold low enough that the 20 MB object goes in parts."""

    async def make_backend(self) -> ObjectBackend:
        return self.s3backend(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)

    # moto 5.2 refuses the signature of any request for a non-ASCII key (tests/s3harness.py): these
    # run in S3BackendContractUnsigned.
    _MOTO = "moto 5.2's signature check refuses non-ASCII keys; see S3BackendContractUnsigned"

    async def test_unicode_keys(self) -> None:
        pass

    async def test_list_order_utf8(self) -> None:
        pass

    async def test_list_start_after(self) -> None:
        pass

    test_unicode_keys.skip = test_list_order_utf8.skip = test_list_start_after.skip = _MOTO  # type: ignore[attr-defined]


class S3BackendContractUnsigned(S3BackendContract):
    """The contract on moto without signature checks, for the non-ASCII keys moto refuses when it
    checks signatures (the ASCII ones above prove the signing)."""

    auth = False
    test_unicode_keys = BackendContract.test_unicode_keys
    test_list_order_utf8 = BackendContract.test_list_order_utf8
    test_list_start_after = BackendContract.test_list_start_after


class S3BackendService(MotoCase):
    async def test_wrong_secret(self) -> None:
        """A wrong secret is the service's SignatureDoesNotMatch as a StorageError, at once (403s are
        not retried), not a hang; an unknown access key is InvalidAccessKeyId."""
        good = self.s3backend()
        await good.create_bucket(RECORD_BUCKET)
        for keys, code in ((self.server.bad_secret, "SignatureDoesNotMatch"),
                           (self.server.unknown_key, "InvalidAccessKeyId")):
            backend = self.s3backend(keys, bucket_prefix=good.bucket_prefix)
            started = reactor.seconds()
            for call in (backend.put_bytes(RECORD_BUCKET, "k", b"x"), backend.list(RECORD_BUCKET),
                         backend.read(RECORD_BUCKET, "k")):
                try:
                    await call
                except StorageError as e:
                    self.assertIn(code, str(e))
                    self.assertIn("403", str(e))
                    self.assertNotIn(keys.secret_key, str(e))
                else:
                    self.fail(f"{code}: not refused")
            self.assertLess(reactor.seconds() - started, 10)
            # Logged once per operation and code, the repeats counted (a refusing service is not a
            # log flood).
            self.assertEqual(backend.failures.lines, 3)
            for _ in range(3):
                with self.assertRaises(StorageError):
                    await backend.list(RECORD_BUCKET)
            self.assertEqual(backend.failures.lines, 3)
        self.assertEqual((await good.list(RECORD_BUCKET))[0], [], "nothing was stored")

    async def test_unreachable(self) -> None:
        """Nobody listening: a StorageError after the (short) connect retries."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        backend = S3Backend(reactor, endpoint=f"http://127.0.0.1:{port}", region=REGION, access_key="a",
                            secret_key="b", connect_timeout=1, read_timeout=2, max_attempts=2)
        backend.startService()
        self.addCleanup(backend.stopService)
        e = await self._raises(backend.put_bytes(RECORD_BUCKET, "k", b"x"))
        self.assertIn("EndpointConnectionError", str(e))

    async def test_silent_service(self) -> None:
        """A service that accepts the connection and never answers: StorageError after the read
        timeout (times the attempts), while the reactor goes on serving."""
        from twisted.internet.protocol import Factory, Protocol

        factory = Factory.forProtocol(Protocol)  # accepts, reads, never writes
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        backend = S3Backend(reactor, endpoint=f"http://127.0.0.1:{port.getHost().port}", region=REGION,
                            access_key="a", secret_key="b", connect_timeout=1, read_timeout=1, max_attempts=2)
        backend.startService()
        self.addCleanup(backend.stopService)
        started = reactor.seconds()
        e = await self._raises(backend.head(RECORD_BUCKET, "k"))
        took = reactor.seconds() - started
        self.assertIn("ReadTimeout", str(e))
        self.assertGreater(took, 1.5)
        self.assertLess(took, 10)

    async def _raises(self, call: Any) -> StorageError:
        try:
            await call
        except StorageError as e:
            return e
        self.fail("no StorageError")
        raise AssertionError

    async def test_not_running(self) -> None:
        backend = self.s3backend(start=False)
        e = await self._raises(backend.bucket_exists(RECORD_BUCKET))
        self.assertIn("not running", str(e))

    async def test_bucket_mapping(self) -> None:
        """The logical §7.1.1 names map to the operator's buckets (explicit, else prefix + name);
        the infos carry the logical name."""
        prefix = self.prefix()
        backend = self.s3backend(buckets={"GlobalEyePicture": prefix + "pictures-gd"}, bucket_prefix=prefix)
        self.assertTrue(await backend.create_bucket("GlobalEyeRecord"))
        self.assertTrue(await backend.create_bucket("GlobalEyePicture"))
        info = await backend.put_bytes("GlobalEyePicture", "cam_1_20261202030000.jpg", b"jpeg")
        self.assertEqual(info.bucket, "GlobalEyePicture")
        client: Any = self.server.client()
        names = {b["Name"] for b in client.list_buckets()["Buckets"] if b["Name"].startswith(prefix)}
        self.assertEqual(names, {prefix + "GlobalEyeRecord", prefix + "pictures-gd"})
        body = client.get_object(Bucket=prefix + "pictures-gd", Key="cam_1_20261202030000.jpg")["Body"].read()
        self.assertEqual(body, b"jpeg")

    async def test_objects_from_other_clients(self) -> None:
        """An object a camera wrote straight to the service (§7.1.1) is seen like any other."""
        backend = self.s3backend()
        await backend.create_bucket(RECORD_BUCKET)
        client: Any = self.server.client()
        body = os.urandom(300_000)
        client.put_object(Bucket=backend.physical(RECORD_BUCKET), Key="cam_1_20261202030000.ts", Body=body,
                          ContentType="video/mp2t")
        head = await backend.head(RECORD_BUCKET, "cam_1_20261202030000.ts")
        self.assertEqual((head.size, head.etag, head.content_type),
                         (len(body), hashlib.md5(body).hexdigest(), "video/mp2t"))
        infos, _ = await backend.list(RECORD_BUCKET, prefix="cam_")
        self.assertEqual([(i.key, i.size) for i in infos], [("cam_1_20261202030000.ts", len(body))])
        self.assertEqual(await backend.read(RECORD_BUCKET, "cam_1_20261202030000.ts", 1000, 10), body[1000:1010])

    async def test_md5_sent(self) -> None:
        """put_file below the multipart threshold sends the caller's MD5 as Content-MD5, so that a
        service checks the body against it (AWS, Ceph and MinIO answer BadDigest; moto 5.2 does not
        check, hence the header is what is tested here)."""
        backend = self.s3backend()
        await backend.create_bucket(RECORD_BUCKET)
        client: Any = await deferToThread(backend._client)
        sent: list[Any] = []
        client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request.headers))
        data = b"what was sent"
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        await backend.put_file(RECORD_BUCKET, "k", path, etag=hashlib.md5(data).hexdigest())
        self.assertEqual([h.get("Content-MD5") for h in sent], [base64.b64encode(hashlib.md5(data).digest())])

    async def test_region(self) -> None:
        """Outside us-east-1 the bucket is created with its LocationConstraint."""
        backend = self.s3backend(region="eu-west-1")
        self.assertTrue(await backend.create_bucket(RECORD_BUCKET))
        self.assertFalse(await backend.create_bucket(RECORD_BUCKET))
        client: Any = self.server.client()
        location = client.get_bucket_location(Bucket=backend.physical(RECORD_BUCKET))["LocationConstraint"]
        self.assertEqual(location, "eu-west-1")

    async def test_reactor_runs_during_large_put(self) -> None:
        """A 40 MB multipart upload goes on in the backend's threads: a 10 ms LoopingCall keeps
        ticking all along (no gap over 200 ms) while it lasts."""
        backend = self.s3backend(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)
        await backend.create_bucket(RECORD_BUCKET)
        path = self.mktemp()
        data = os.urandom(40 * 1024 * 1024)
        with open(path, "wb") as f:
            f.write(data)
        ticks: list[float] = []
        loop = task.LoopingCall(lambda: ticks.append(reactor.seconds()))
        loop.start(0.01)
        try:
            started = reactor.seconds()
            info = await backend.put_file(RECORD_BUCKET, "big", path, etag=hashlib.md5(data).hexdigest())
            ended = reactor.seconds()
        finally:
            loop.stop()
        self.assertEqual(info.size, len(data))
        took = ended - started
        self.assertGreater(took, 0.3, "the upload was too quick to tell")
        during = [t for t in ticks if started <= t <= ended]
        gaps = [b - a for a, b in zip([started, *during], [*during, ended], strict=True)]
        self.assertLess(max(gaps), 0.2, f"the reactor stalled {max(gaps):.3f} s during a {took:.2f} s upload")
        self.assertGreater(len(during), took / 0.01 / 4)
