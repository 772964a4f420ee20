"""``globaleye-client cloud list|download|play|delete`` as a real process against a real platform.

The platform runs the storage and rtsp roles over its embedded object store (files under the test's
data directory); two consecutive recordings (the simulator's generator: H.264 320x240, 10 fps, 3 s
each) are written into the store's backend and reported to the platform's cloud index exactly as the
S3 endpoint reports a camera's upload (admit, the backend's write, ``stored``).  The owner account is
bound to the camera through the SOAP API; a stranger owns another camera.  The client runs as
``python -m globaleye.client``: SOAP (its own client), the presigned GET of the embedded S3 endpoint
(treq), the RTSP proxy's ``/cloud/`` URL with the account's Digest credentials; ffprobe reads what it
wrote.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.client.soap import McuClient
from globaleye.s3.backend import RECORD_BUCKET, Principal
from globaleye.store import Account, Device
from globaleye.testing import platform_config, start_platform
from globaleye.util.clock import BEIJING
from tests.util import FFPROBE, ROOT, run

DEV, OTHER, KEY = "81100000001", "81100000002", "key-cloud-1"
OWNER, STRANGER, PASSWORD = "13300000001", "13300000003", "secret-pw-1"
FPS, SECONDS = 10, 3


def _recording(directory: str) -> bytes:
    from globaleye.sim.media.recording import RecordingParams, write_generated_recording

    params = RecordingParams(width=320, height=240, fps=FPS, seconds=SECONDS, audio=True)
    return write_generated_recording(params, Path(directory) / params.file_name).read_bytes()


async def probe(path: str) -> dict[str, Any]:
    assert FFPROBE is not None
    result = await run(FFPROBE, ["-v", "error", "-show_entries",
                                 "stream=codec_type,codec_name,width,height,channels,sample_rate,start_time,duration"
                                 ":format=duration",
                                 "-of", "json", path])
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


class ClientCloudTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        try:
            import av  # noqa: F401
        except ImportError:
            raise SkipTest("PyAV (the client and media extras) is not installed") from None
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        data_dir = os.path.abspath(self.mktemp())
        self.platform = start_platform(self, platform_config("gateway, http, group, storage, rtsp",
                                                             data_dir=data_dir), reactor)
        store, accounts = self.platform.store, self.platform.accounts
        now = reactor.seconds()
        await store.import_devices([Device(DEV, KEY), Device(OTHER, KEY)])
        for mobile, dev in ((OWNER, DEV), (STRANGER, OTHER)):
            await store.create_account(Account(mobile, await accounts.hash_password(PASSWORD), now, now))
            mcu = McuClient(self.mcu, http=HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))))
            await mcu.login(mobile, PASSWORD)
            await mcu.call("AddDevice", DevID=dev, DevKey=KEY)
            await mcu.logout()
        # Two recordings end to end, an hour ago (Beijing time, §7.1.1 names), as a camera uploads them.
        self.start = (datetime.datetime.now(BEIJING) - datetime.timedelta(hours=1)).replace(microsecond=0,
                                                                                            tzinfo=None)
        self.data = await deferToThread(_recording, os.path.abspath(self.mktemp()))
        cloud = self.platform.cloud
        assert cloud is not None
        if not await cloud.backend.bucket_exists(RECORD_BUCKET):
            await cloud.backend.create_bucket(RECORD_BUCKET)
        camera = Principal("AKCLIENT", "secret", DEV)
        self.names = []
        for i in range(2):
            name = f"{DEV}_0_{self.start + datetime.timedelta(seconds=SECONDS * i):%Y%m%d%H%M%S}.ts"
            self.assertIsNone(await cloud.admit(camera, RECORD_BUCKET, name, len(self.data)))
            await cloud.stored(camera, await cloud.backend.put_bytes(RECORD_BUCKET, name, self.data))
            self.names.append(name)

    @property
    def mcu(self) -> str:
        return f"http://127.0.0.1:{self.platform.port_of('http')}/soap/mcu"

    def when(self, seconds: float) -> str:
        return f"{self.start + datetime.timedelta(seconds=seconds):%Y%m%d%H%M%S}"

    async def cli(self, *args: str, account: str = OWNER, timeout: float = 60) -> Any:
        return await run(sys.executable, ["-m", "globaleye.client", "--mcu", self.mcu, "--account", account,
                                          "--password", PASSWORD, "cloud", *args], timeout=timeout)

    async def test_list_download_play_delete(self) -> None:
        span = ["--from", self.when(-60), "--to", self.when(60)]
        listed = await self.cli("list", DEV, *span)
        self.assertEqual(listed.code, 0, listed.err)
        rows = [line.split() for line in listed.out.splitlines() if line.startswith(DEV)]
        self.assertEqual([r[0] for r in rows], self.names)
        self.assertEqual([r[-1] for r in rows], [str(len(self.data))] * 2)
        self.assertEqual([r[-2] for r in rows], [f"{SECONDS}s"] * 2, "durations from the files' own timestamps")
        self.assertIn("2 of 2 file(s)", listed.out)
        page = await self.cli("list", DEV, *span, "--page", "2", "--page-size", "1")
        self.assertEqual([line.split()[0] for line in page.out.splitlines() if line.startswith(DEV)], self.names[1:])
        pictures = await self.cli("list", DEV, *span, "--type", "picture")
        self.assertIn("0 of 0 file(s)", pictures.out)

        # One file by name: the bytes of the object, which ffprobe reads as H.264.
        target = os.path.abspath(self.mktemp() + ".ts")
        got = await self.cli("download", DEV, self.names[0], "-o", target)
        self.assertEqual(got.code, 0, got.err)
        self.assertEqual(Path(target).read_bytes(), self.data)
        facts = await probe(target)
        self.assertEqual((facts["streams"][0]["codec_name"], facts["streams"][0]["width"]), ("h264", 320))
        # A range: every file of it into a directory.
        directory = os.path.abspath(self.mktemp())
        got = await self.cli("download", DEV, *span, "-o", directory)
        self.assertEqual(got.code, 0, got.err)
        self.assertEqual(sorted(os.listdir(directory)), self.names)
        self.assertTrue(all((Path(directory) / n).read_bytes() == self.data for n in self.names))

        # Play both files through the RTSP proxy as one programme, recorded headless.
        clip = os.path.abspath(self.mktemp() + ".mp4")
        played = await self.cli("play", DEV, "--from", self.when(0), "--to", self.when(2 * SECONDS),
                                "--proxy", f"rtsp://127.0.0.1:{self.platform.port_of('rtsp')}", "--record", clip)
        self.assertEqual(played.code, 0, played.err)
        self.assertIn("RTCP BYE", played.out)
        self.assertIn(f"({2 * SECONDS * FPS} pictures", played.out, "every picture of both files")
        facts = await probe(clip)
        streams = {s["codec_type"]: s for s in facts["streams"]}
        self.assertEqual(streams["video"]["codec_name"], "h264")
        self.assertEqual((streams["audio"]["codec_name"], streams["audio"]["sample_rate"],
                          streams["audio"]["channels"]), ("aac", "8000", 1), "the files' AAC, copied")
        self.assertLess(abs(float(streams["audio"]["duration"]) - 2 * SECONDS), 0.3,
                        f"the sound of both files: {streams['audio']['duration']}")
        self.assertLess(abs(float(streams["audio"]["start_time"]) - float(streams["video"]["start_time"])), 0.13,
                        "sound and pictures start together (RTP-Info)")
        self.assertLess(abs(float(facts["format"]["duration"]) - 2 * SECONDS), 0.25,
                        f"both files, end to end: {facts['format']['duration']}")

        # Played without recording: decoded, stopped where asked.
        watched = await self.cli("play", DEV, "--from", self.when(SECONDS - 1), "--seconds", "1.5",
                                 "--proxy", f"rtsp://127.0.0.1:{self.platform.port_of('rtsp')}")
        self.assertEqual(watched.code, 0, watched.err)
        self.assertIn("stopped: --seconds reached", watched.out)
        decoded = int(watched.out.rsplit("decoded: ", 1)[1].split()[0])
        self.assertGreaterEqual(decoded, 10, watched.out)

        # Delete one by name, then the range; the objects go with the entries.
        gone = await self.cli("delete", DEV, self.names[0])
        self.assertEqual((gone.code, gone.out.strip()), (0, "deleted: 1 file(s)"), gone.err)
        backend = self.platform.cloud.backend  # type: ignore[union-attr]
        self.assertIsNone(await backend.head(RECORD_BUCKET, self.names[0]))
        gone = await self.cli("delete", DEV, *span)
        self.assertEqual((gone.code, gone.out.strip()), (0, "deleted: 1 file(s)"), gone.err)
        self.assertIsNone(await backend.head(RECORD_BUCKET, self.names[1]))
        listed = await self.cli("list", DEV, *span)
        self.assertIn("0 of 0 file(s)", listed.out)

    async def test_another_account_gets_what_an_unknown_camera_gets(self) -> None:
        span = ["--from", self.when(-60), "--to", self.when(60)]
        for verb in (["list", DEV, *span], ["download", DEV, self.names[0]], ["delete", DEV, self.names[0]]):
            theirs = await self.cli(*verb, account=STRANGER)
            unknown = await self.cli(*[("81199999999" if a == DEV else a) for a in verb])
            self.assertEqual(theirs.code, 1, theirs.out)
            self.assertEqual(theirs.err.replace(DEV, "X"), unknown.err.replace("81199999999", "X"))
            self.assertIn("Result 3", theirs.err)
        proxy = f"rtsp://127.0.0.1:{self.platform.port_of('rtsp')}"
        theirs = await self.cli("play", DEV, "--from", self.when(0), "--proxy", proxy, account=STRANGER)
        unknown = await self.cli("play", "81199999999", "--from", self.when(0), "--proxy", proxy)
        self.assertEqual((theirs.code, unknown.code), (1, 1))
        self.assertEqual(theirs.err.replace(DEV, "X"), unknown.err.replace("81199999999", "X"))
        self.assertIn("no stored recording", theirs.err)
        self.assertIsNotNone(await self.platform.cloud.backend.head(RECORD_BUCKET, self.names[0]))  # type: ignore[union-attr]
