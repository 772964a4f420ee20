"""``globaleye device rotate-cloud-key`` while the platform runs (issue 12; §7.5.11 65H, §7.5.1 LOGIN_RES).

The operator's command writes the store only (a process of its own, as in production); the running
platform's cloud service tells an online camera with 65H the first time the camera signs with an old
key after its cached lookup expires (the cache, 5 minutes by default, is shortened to nothing here), and
gives the new key in LOGIN_RES.  A simulated camera logs in over TCP; boto3 signs real S3 requests to the
platform's storage role with the keys: with a grace period the old key still uploads (and triggers the
65H), with ``--grace 0`` it is refused (403) at once, and the camera holds the newest key either way.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet import reactor, threads
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.device.protocol import messages as m
from globaleye.s3.backend import RECORD_BUCKET
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.store import CloudCredential
from globaleye.testing import platform_config, start_platform
from tests.util import ROOT, run, until

DEV = "81100000001"


def _put(url: str, credential: CloudCredential, key: str) -> int:
    """One PUT signed with *credential* (SigV4, boto3): the HTTP status."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=credential.access_key,
                      aws_secret_access_key=credential.secret, region_name="us-east-1",
                      config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
    try:
        s3.create_bucket(Bucket=RECORD_BUCKET)
    except ClientError:
        pass  # already there (or refused: the PUT below says which)
    try:
        return int(s3.put_object(Bucket=RECORD_BUCKET, Key=key, Body=b"x" * 100)["ResponseMetadata"]["HTTPStatusCode"])
    except ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"])


class RotateCloudKeyTests(TestCase):
    timeout = 90

    async def test_the_operator_rotates_while_the_platform_runs(self) -> None:
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise SkipTest("boto3 (the [test] extra) is not installed") from None
        text = platform_config("gateway, http, storage", database=f"sqlite:///{Path(self.mktemp()).absolute()}.db",
                               data_dir=str(Path(self.mktemp()).absolute()), gateway={"command_timeout": 3})
        ini = Path(self.mktemp() + ".ini").absolute()
        ini.write_text(text, encoding="utf-8")
        platform = start_platform(self, text, reactor)
        cloud = platform.cloud
        assert cloud is not None
        cloud.settings = attrs.evolve(cloud.settings, cache_seconds=0)  # "after the cache expires", now
        url = cloud.settings.url

        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        camera = SimulatedCamera(
            CameraState.for_device(DEV, device_key("test", DEV), rtsp_local_port=8554), reactor,
            register_url=f"http://127.0.0.1:{platform.port_of('http')}/register",
            timing=Timing(backoff_initial=0.05, backoff_max=0.2), rng=random.Random(1), http=http)
        camera.start()
        self.addCleanup(camera.stop)
        await camera.went_online
        await until(lambda: platform.gateway.is_online(DEV))
        first = await platform.store.device_cloud_credential(DEV)
        assert first is not None

        async def held() -> str:
            answer = await platform.gateway.command(DEV, m.GetCloudAccountRequest(dev_id=DEV))
            return str(answer.account)

        async def operator(*args: str) -> Any:
            return await run(sys.executable, ["-c", "from globaleye.cli import main; main()", "--config", str(ini),
                                              "device", *args], env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})

        async def put(credential: CloudCredential, name: str) -> int:
            return await threads.deferToThread(_put, url, credential, f"{DEV}_0_{name}.ts")

        self.assertEqual(await held(), first.access_key, "LOGIN_RES gave the camera its own key")
        self.assertEqual(await put(first, "20261201100000"), 200)

        # A rotation with a grace period: the old key still uploads, and that upload brings 65H.
        done = await operator("rotate-cloud-key", DEV, "--grace", "600")
        self.assertEqual(done.code, 0, done.err)
        second = await platform.store.device_cloud_credential(DEV)
        assert second is not None
        self.assertNotEqual(second.access_key, first.access_key)
        self.assertIn(f"new cloud key {second.access_key}", done.out)
        self.assertNotIn(second.secret, done.out + done.err, "the secret is never shown")
        self.assertEqual(await held(), first.access_key, "nothing told the camera yet")
        self.assertEqual(await put(first, "20261201100500"), 200, "within the grace period")
        await until(lambda: cloud._announced.get(DEV) == second.access_key)
        self.assertEqual(await held(), second.access_key, "65H gave the camera its new key")
        self.assertEqual(await put(second, "20261201101000"), 200)
        self.assertEqual(await cloud.cloud_account(DEV), (url, second.access_key, second.secret),
                         "what LOGIN_RES gives at the next login")

        # A leaked key: --grace 0 refuses it at once; the camera still gets its new one.
        done = await operator("rotate-cloud-key", DEV, "--grace", "0")
        self.assertEqual(done.code, 0, done.err)
        third = await platform.store.device_cloud_credential(DEV)
        assert third is not None
        self.assertEqual(await put(second, "20261201101500"), 403)
        await until(lambda: cloud._announced.get(DEV) == third.access_key)
        self.assertEqual(await held(), third.access_key)
        self.assertEqual(await put(third, "20261201102000"), 200)
        self.assertEqual(await put(first, "20261201102500"), 200, "the first key's grace is not over yet")

        unknown = await operator("rotate-cloud-key", "81199999999")
        self.assertEqual(unknown.code, 2)
        self.assertIn("no device 81199999999", unknown.err)
