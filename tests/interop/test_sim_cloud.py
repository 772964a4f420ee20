"""The simulated camera's cloud side (§7.1.1) against real peers: moto's S3 server, ffprobe, ffmpeg.

A platform (globaleye.testing) hands the camera its cloud account in LOGIN_RES and turns cloud
recording and a cloud picture policy on through the gateway (6AH, 78H, 75H); the camera records
its live stream into 2-second TS files and uploads them and its pictures to moto's server, started
here on loopback.  A tiny reverse proxy in front of moto records the access key of every request
(moto accepts any key unless its IAM auth is on), so a 65H's new account is seen on the wire.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.proxy import ReverseProxyResource
from twisted.web.resource import Resource
from twisted.web.server import Site

from globaleye.device.protocol import messages as m
from globaleye.testing import platform_config, start_platform
from tests.util import closed_port, http_client, run, until

DEV = "81100000001"
PERIOD = 2
NAME = re.compile(rf"^{DEV}_0_(\d{{14}})\.(ts|jpg)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Moto(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.output = b""

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.output = (self.output + data)[-20000:]

    errReceived = outReceived  # noqa: N815

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.ended.callback(None)


class KeyRecorder(Resource):
    """Forwards every request to moto and notes (method, path, access key of its SigV4 Authorization)."""

    isLeaf = True

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.seen: list[tuple[str, str, str]] = []

    def render(self, request: Any) -> Any:
        found = re.search(r"Credential=([^/]+)/", (request.getHeader("authorization") or ""))
        self.seen.append((request.method.decode(), request.path.decode(), found.group(1) if found else ""))
        request.requestHeaders.removeHeader(b"expect")  # answered here by Twisted; moto must not answer it again
        return ReverseProxyResource("127.0.0.1", self.port, request.path).render(request)


class SimulatedCameraCloudTests(TestCase):
    timeout = 180

    async def start_moto(self) -> int:
        try:
            import boto3  # noqa: F401
            import moto.server  # noqa: F401
        except ImportError as e:
            raise SkipTest(f"needs boto3 and moto[server]: {e}") from None
        port = free_port()
        moto = _Moto()
        process = reactor.spawnProcess(moto, sys.executable, [sys.executable, "-m", "moto.server", "-H",
                                                              "127.0.0.1", "-p", str(port)], env=None)

        async def stop() -> None:
            if not moto.ended.called:
                process.signalProcess("TERM")
                killer = reactor.callLater(10, lambda: moto.ended.called or process.signalProcess("KILL"))
                await moto.ended
                if killer.active():
                    killer.cancel()

        self.addCleanup(lambda: defer.Deferred.fromCoroutine(stop()))

        async def answers() -> bool:
            try:
                response = await http_client().get(f"http://127.0.0.1:{port}/", timeout=2)
                await response.content()
                return True
            except Exception:
                return False

        for _ in range(300):  # moto's server starts in a few seconds
            if moto.ended.called:
                self.fail(f"moto's server ended: {moto.output[-2000:]!r}")
            if await answers():
                return port
            await defer.Deferred.fromCoroutine(_sleep(0.1))
        self.fail("moto's server did not answer within 30 s")

    def s3(self, port: int) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="test",
                            aws_secret_access_key="test", region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    async def test_records_uploads_follows_65h_and_takes_pictures(self) -> None:
        from globaleye.sim.camera import Timing
        from globaleye.sim.cloud import CloudSettings
        from globaleye.sim.fleet import Fleet

        ffprobe, ffmpeg = shutil.which("ffprobe"), shutil.which("ffmpeg")
        if ffprobe is None or ffmpeg is None:
            raise SkipTest("needs ffprobe and ffmpeg (apt-get install -y ffmpeg)")
        moto_port = await self.start_moto()
        recorder = KeyRecorder(moto_port)
        proxy = reactor.listenTCP(0, Site(recorder), interface="127.0.0.1")
        self.addCleanup(proxy.stopListening)
        eurl = f"http://127.0.0.1:{proxy.getHost().port}"
        platform = start_platform(self, platform_config(gateway={
            "cloud_url": eurl, "cloud_account": f"{DEV}_old", "cloud_password": "old-secret"}))
        fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{platform.port_of('http')}/register", relay=False,
                      timing=Timing(backoff_initial=0.05), http=http_client(),
                      cloud=CloudSettings(period=PERIOD, spool_dir=self.mktemp(), retry_delay=1.0, replan=1.0))
        self.addCleanup(fleet.stop)
        camera = fleet.add(DEV)
        cloud = fleet.clouds[DEV]
        fleet.start()
        await camera.went_online
        # §7.5.1: the account of LOGIN_RES is the camera's.
        self.assertEqual((camera.state.cloud.url, camera.state.cloud.account), (eurl, f"{DEV}_old"))
        gateway = platform.gateway
        assert gateway is not None
        for request in (m.SetRecordParamsRequest(dev_id=DEV, channel_no=0, stream_type=1, store_type=1),
                        m.SetFullDayRecordRequest(dev_id=DEV, channel_no=0, record_full=1),
                        m.AddPicturePolicyRequest(dev_id=DEV, channel_no=0, store_type=1, day_policy=(
                            m.PicturePolicy(interval=2, start_time="00:00", end_time="24:00"),))):
            self.assertEqual((await gateway.command(DEV, request)).result, 0, request)

        def ts_puts() -> list[tuple[str, str, str]]:
            return [s for s in recorder.seen if s[0] == "PUT" and s[1].endswith(".ts")]

        await until(lambda: len(ts_puts()) >= 2, timeout=60)
        # §7.5.11: a new account, used from the next upload on.
        response = await gateway.command(DEV, m.SetCloudAccountRequest(dev_id=DEV, url=eurl, account=f"{DEV}_new",
                                                                       password="new-secret"))
        self.assertEqual(response.result, 0)
        before = len(ts_puts())
        await until(lambda: len(ts_puts()) >= before + 2, timeout=30)
        keys = [s[2] for s in ts_puts()]
        self.assertEqual(keys[:before - 1], [f"{DEV}_old"] * (before - 1))
        # At most the one upload in flight at the 65H finishes with the old key; all later ones use the new.
        self.assertEqual(keys[before + 1:], [f"{DEV}_new"] * (len(keys) - before - 1))
        self.assertEqual(keys[-1], f"{DEV}_new")
        self.assertEqual([u.access_key for u in cloud.uploads if u.key.endswith(".ts")][-1], f"{DEV}_new")
        # Both buckets were created by the camera (§7.1.1) with its own key.
        created = {s[1] for s in recorder.seen if s[0] == "PUT" and s[1].count("/") == 1}
        self.assertEqual(created, {"/GlobalEyeRecord", "/GlobalEyePicture"})

        # What moto holds: §7.1 names, consecutive files PERIOD seconds apart.
        s3 = self.s3(moto_port)
        records = await deferToThread(lambda: [o["Key"] for o in s3.list_objects_v2(
            Bucket="GlobalEyeRecord")["Contents"]])
        self.assertTrue(all(NAME.match(k) and k.endswith(".ts") for k in records), records)
        starts = sorted(datetime.datetime.strptime(NAME.match(k).group(1), "%Y%m%d%H%M%S")  # type: ignore[union-attr]
                        for k in records)
        pair = next(((a, b) for a, b in zip(starts, starts[1:], strict=False) if (b - a).total_seconds() == PERIOD),
                    None)
        self.assertIsNotNone(pair, starts)
        assert pair is not None
        work = Path(self.mktemp())
        work.mkdir()
        paths = []
        for start in pair:
            path = work / f"{DEV}_0_{start:%Y%m%d%H%M%S}.ts"
            await deferToThread(s3.download_file, "GlobalEyeRecord", path.name, str(path))
            paths.append(path)

        probe = await run(ffprobe, ["-v", "error", "-show_entries", "stream=codec_name,width,height:format=duration",
                                    "-of", "json", str(paths[0])])
        self.assertEqual(probe.code, 0, probe.err)
        info = json.loads(probe.out)
        self.assertEqual([(s["codec_name"], s["width"], s["height"]) for s in info["streams"]], [("h264", 1280, 720)])
        self.assertAlmostEqual(float(info["format"]["duration"]), PERIOD, delta=0.1)

        for path in paths:  # each file plays alone: its first picture is a keyframe that decodes
            first = await run(ffprobe, ["-v", "error", "-select_streams", "v", "-read_intervals", "%+#1",
                                        "-show_entries", "packet=flags", "-of", "csv=p=0", str(path)])
            self.assertTrue(first.out.strip().startswith("K"), first.out)
            alone = await run(ffmpeg, ["-v", "warning", "-xerror", "-i", str(path), "-f", "null", "-"], timeout=60)
            self.assertEqual((alone.code, alone.err.strip()), (0, ""))

        joined = work / "joined.ts"
        joined.write_bytes(paths[0].read_bytes() + paths[1].read_bytes())
        decoded = await run(ffmpeg, ["-v", "warning", "-xerror", "-i", str(joined), "-f", "null", "-"], timeout=60)
        self.assertEqual((decoded.code, decoded.err.strip()), (0, ""))
        packets = await run(ffprobe, ["-v", "error", "-select_streams", "v", "-show_entries", "packet=pts",
                                      "-of", "csv=p=0", str(joined)])
        pts = [int(line.split(",")[0]) for line in packets.out.split()]
        steps = {b - a for a, b in zip(pts, pts[1:], strict=False)}
        self.assertEqual(len(pts), 2 * PERIOD * 25)
        self.assertEqual(steps, {90000 // 25})  # 25 fps, no gap at the file boundary

        # Pictures by the 75H cloud policy: JPEGs named by their time.
        await until(lambda: any(u.bucket == "GlobalEyePicture" for u in cloud.uploads), timeout=30)
        pictures = await deferToThread(lambda: [o["Key"] for o in s3.list_objects_v2(
            Bucket="GlobalEyePicture")["Contents"]])
        self.assertTrue(pictures and all(NAME.match(k) and k.endswith(".jpg") for k in pictures), pictures)
        jpeg = work / pictures[0]
        await deferToThread(s3.download_file, "GlobalEyePicture", pictures[0], str(jpeg))
        self.assertEqual(jpeg.read_bytes()[:2], b"\xff\xd8")
        probe = await run(ffprobe, ["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json",
                                    str(jpeg)])
        self.assertEqual([(s["codec_name"], s["width"], s["height"]) for s in json.loads(probe.out)["streams"]],
                         [("mjpeg", 1280, 720)])

        # An account whose store does not answer: 34H with §7.5.4 type 4 (upload failed) reaches the platform.
        dead = f"http://127.0.0.1:{closed_port()}"
        response = await gateway.command(DEV, m.SetCloudAccountRequest(dev_id=DEV, url=dead, account=f"{DEV}_x",
                                                                       password="x"))
        self.assertEqual(response.result, 0)

        async def reported() -> bool:
            return any(e.exception_type == m.ExceptionType.ESTORE_UPLOAD_FAILED
                       for e in await platform.store.list_exceptions(DEV))

        for _ in range(300):
            if await reported():
                break
            await defer.Deferred.fromCoroutine(_sleep(0.1))
        else:
            self.fail(f"no 34H type 4 reached the platform: {cloud.reports} {len(cloud.queue)} {cloud.dropped}")


async def _sleep(seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)
