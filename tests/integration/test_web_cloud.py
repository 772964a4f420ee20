"""Cloud recordings and pictures in the JSON API (issue 12, §7.1.2) over real loopback.

A real platform with the web and storage roles (the embedded store under a temporary data dir); a
simulated camera registered through the gateway and added to the owner's account; three consecutive
2-second TS recordings (the simulator's generator: H.264 10 fps, an IDR every second) and a JPEG put
straight into the store through the backend and indexed by the cloud service's reconciliation, as an
upload the platform did not see would be.  Clients: treq as the browser (tests/browser.py), ffprobe
(Debian's ffmpeg) reading the range downloaded as MP4.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.s3.backend import PICTURE_BUCKET, RECORD_BUCKET, StorageError
from globaleye.testing import platform_config, start_platform
from globaleye.users.accounts import RecordingSmsSender
from tests.browser import PASSWORD, Answer, Browser, PortalPlatform
from tests.util import FFPROBE, run

OWNER, GUEST, STRANGER = "13300000301", "13300000302", "13300000303"
CAMERA = "81100000301"
FPS, SECONDS, FILES = 10, 2, 3
#: Beijing time, as §7.1.1's names.
START = datetime.datetime(2026, 12, 2, 10, 0, 0)


def jpeg() -> bytes:
    """A real 64×48 JPEG (PyAV's MJPEG encoder: the browser test sees it decoded)."""
    import fractions

    import av
    import numpy as np

    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = 64, 48, "yuvj420p"
    codec.time_base = fractions.Fraction(1, 25)
    picture = np.zeros((48, 64, 3), np.uint8)
    picture[:, :32] = (200, 40, 40)
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(p) for p in codec.encode(frame) + codec.encode(None))


def stamp(moment: datetime.datetime) -> str:
    return f"{moment:%Y%m%d%H%M%S}"


def generated_recording() -> bytes:
    """A 2-second TS file of the simulator's generator (PyAV), made once per run."""
    from globaleye.sim.media.recording import RecordingParams, write_generated_recording

    params = RecordingParams(width=320, height=240, fps=FPS, seconds=SECONDS, audio=True)
    path = Path(tempfile.gettempdir()) / f"globaleye-cloud-{params.file_name}"
    if not path.exists():
        write_generated_recording(params, path)
    return path.read_bytes()


async def store_files(case: TestCase, platform: object, dev_id: str) -> list[str]:
    """The recordings and one picture put into the store and indexed (reconciliation); their names."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise SkipTest("the simulator's media extra (PyAV) writes the recordings") from None
    data = await deferToThread(generated_recording)
    cloud = platform.cloud  # type: ignore[attr-defined]
    for bucket in (RECORD_BUCKET, PICTURE_BUCKET):
        try:
            await cloud.backend.create_bucket(bucket)
        except StorageError:
            pass  # already there
    names = []
    for i in range(FILES):
        name = f"{dev_id}_0_{stamp(START + datetime.timedelta(seconds=SECONDS * i))}.ts"
        await cloud.backend.put_bytes(RECORD_BUCKET, name, data)
        names.append(name)
    picture = f"{dev_id}_0_{stamp(START + datetime.timedelta(seconds=1))}.jpg"
    case.picture = jpeg()  # type: ignore[attr-defined]
    await cloud.backend.put_bytes(PICTURE_BUCKET, picture, case.picture)  # type: ignore[attr-defined]
    added, _ = await cloud.reconcile()
    case.assertEqual(added, FILES + 1)
    return [*names, picture]


class CloudApiTests(PortalPlatform):
    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        config = platform_config("gateway, http, group, web, storage", gateway={"command_timeout": 2},
                                 soap={"sms_interval": 0.01}, data_dir=os.path.abspath(self.mktemp()))
        self.platform = start_platform(self, config, reactor)
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        self.base = f"http://127.0.0.1:{self.platform.port_of('web')}"
        await self.start_camera(CAMERA)
        await self.sign_up(OWNER, PASSWORD, CAMERA)
        for account in (GUEST, STRANGER):
            await self.sign_up(account, PASSWORD)
        self.owner = await self.browser(OWNER)
        shared = await self.owner.request("POST", f"/api/v1/devices/{CAMERA}/shares", {"account": GUEST})
        self.assertEqual(shared.code, 201, shared.body)
        self.names = await store_files(self, self.platform, CAMERA)

    async def browser(self, account: str) -> Browser:
        browser = Browser(self.base)
        self.assertEqual((await browser.login(account)).code, 200)
        return browser

    def files_path(self, kind: str = "record", start: datetime.datetime = START,
                   end: datetime.datetime = START + datetime.timedelta(hours=1), dev_id: str = CAMERA) -> str:
        return (f"/api/v1/devices/{dev_id}/channels/0/cloud-files?kind={kind}&from={stamp(start)}&to={stamp(end)}")

    def range_path(self, what: str, seconds: int = SECONDS * FILES, dev_id: str = CAMERA) -> str:
        return (f"/api/v1/devices/{dev_id}/channels/0/cloud-files/{what}?from={stamp(START)}"
                f"&to={stamp(START + datetime.timedelta(seconds=seconds))}")

    def assertProblem(self, answer: Answer, status: int, kind: str) -> None:  # noqa: N802
        self.assertEqual(answer.code, status, answer.body)
        self.assertEqual(answer.header("content-type"), "application/problem+json")
        self.assertEqual(answer.json()["type"], f"/api/v1/problems/{kind}")

    async def test_search_by_kind_time_and_page(self) -> None:
        found = await self.owner.request("GET", self.files_path())
        self.assertEqual(found.code, 200, found.body)
        body = found.json()
        self.assertEqual(body["total"], FILES)
        self.assertEqual([f["fileName"] for f in body["files"]], self.names[:FILES])
        first = body["files"][0]
        self.assertEqual((first["kind"], first["channel"], first["start"], first["startTime"]),
                         ("record", 0, "2026-12-02T10:00:00", "20261202100000"))
        self.assertAlmostEqual(first["durationSeconds"], SECONDS, delta=0.2)
        self.assertEqual(first["end"], "2026-12-02T10:00:02")
        # A range that starts inside the first file still finds it; one after everything finds nothing.
        inside = await self.owner.request("GET", self.files_path(start=START + datetime.timedelta(seconds=1),
                                                                 end=START + datetime.timedelta(seconds=3)))
        self.assertEqual([f["fileName"] for f in inside.json()["files"]], self.names[:2])
        later = await self.owner.request("GET", self.files_path(start=START + datetime.timedelta(hours=2),
                                                                end=START + datetime.timedelta(hours=3)))
        self.assertEqual(later.json()["total"], 0)
        paged = await self.owner.request("GET", self.files_path() + "&pageSize=2&page=2")
        self.assertEqual((paged.json()["pages"], [f["fileName"] for f in paged.json()["files"]]),
                         (2, self.names[2:3]))
        pictures = await self.owner.request("GET", self.files_path("picture"))
        self.assertEqual([f["fileName"] for f in pictures.json()["files"]], self.names[3:])
        # The share guest may search too (a share is for watching).
        guest = await self.browser(GUEST)
        self.assertEqual((await guest.request("GET", self.files_path())).json()["total"], FILES)
        for bad in ("kind=video", "from=2026", "to=tomorrow"):
            path = self.files_path().replace(bad.split("=")[0] + "=", f"{bad}&x=", 1)
            self.assertProblem(await self.owner.request("GET", path), 400, "invalid-request")

    async def test_download_url_and_picture(self) -> None:
        """The presigned URL fetches the object from the storage role (a real HTTP GET); the picture
        comes through the API, same origin."""
        answer = await self.owner.request("GET", f"/api/v1/devices/{CAMERA}/cloud-files/{self.names[0]}/url")
        self.assertEqual(answer.code, 200, answer.body)
        url = answer.json()["url"]
        self.assertGreater(answer.json()["expiresIn"], 0)
        self.assertIn("X-Amz-Signature=", url)
        fetched = await Browser("").request("GET", url)
        self.assertEqual(fetched.code, 200, fetched.body[:300])
        self.assertEqual(fetched.body[:1], b"\x47", "a transport stream")
        picture = await self.owner.request("GET", f"/api/v1/devices/{CAMERA}/cloud-files/{self.names[3]}/picture.jpg")
        self.assertEqual((picture.code, picture.header("content-type"), picture.body), (200, "image/jpeg", self.picture))
        # A recording is not a picture; a name of another camera is not found.
        self.assertProblem(await self.owner.request(
            "GET", f"/api/v1/devices/{CAMERA}/cloud-files/{self.names[0]}/picture.jpg"), 404, "not-found")
        self.assertProblem(await self.owner.request(
            "GET", f"/api/v1/devices/{CAMERA}/cloud-files/81100000999_0_20261202100001.jpg/url"), 404, "not-found")

    async def test_range_as_one_mp4(self) -> None:
        """The three files as one MP4: ffprobe reads H.264 of the range's length, every picture in order."""
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        answer = await self.owner.request("GET", self.range_path("download.mp4"))
        self.assertEqual(answer.code, 200, answer.body[:300])
        self.assertEqual(answer.header("content-type"), "video/mp4")
        self.assertIn("attachment", answer.header("content-disposition") or "")
        path = os.path.join(self.mktemp() + ".mp4")
        with open(path, "wb") as f:
            f.write(answer.body)
        result = await run(FFPROBE, ["-v", "error", "-show_entries", "stream=codec_name:format=duration",
                                     "-show_frames", "-of", "json", path], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.err.strip(), "", "no decoder warnings")
        probe = json.loads(result.out)
        self.assertEqual([s["codec_name"] for s in probe["streams"]], ["h264"])
        self.assertAlmostEqual(float(probe["format"]["duration"]), SECONDS * FILES, delta=0.3)
        times = [float(f["pts_time"]) for f in probe["frames"] if "pts_time" in f]
        self.assertEqual(len(times), FPS * SECONDS * FILES, "every picture of every file")
        steps = {round(b - a, 3) for a, b in zip(times, times[1:], strict=False)}
        self.assertEqual(steps, {1 / FPS}, "evenly spaced across the file boundaries")
        # play.mp4 from 2.5 s: the first IDR at or after it (3.0 s, in the second file), to the end.
        play = await self.owner.request("GET", self.range_path("play.mp4") + "&start=2.5&speed=2")
        self.assertEqual(play.code, 200, play.body[:300])
        self.assertEqual((play.header("x-start"), play.header("x-scale"), play.header("x-duration")),
                         ("3.000", "2", "6.000"))
        self.assertTrue((play.header("x-codec") or "").startswith("avc1."))
        # Bounded: more than two hours is refused for a download.
        self.assertProblem(await self.owner.request("GET", self.range_path("download.mp4", 3 * 3600)), 400,
                           "invalid-request")
        empty = await self.owner.request("GET", self.range_path("play.mp4").replace("20261202", "20261203"))
        self.assertProblem(empty, 404, "not-found")

    async def test_delete_one_and_a_range(self) -> None:
        """Owner only, CSRF as every state change; the object and its index entry go."""
        guest = await self.browser(GUEST)
        one = f"/api/v1/devices/{CAMERA}/cloud-files/{self.names[0]}"
        self.assertProblem(await guest.request("DELETE", one), 404, "no-such-device")
        self.assertProblem(await self.owner.request("DELETE", one, csrf=False), 403, "csrf")
        self.assertEqual((await self.owner.request("DELETE", one)).code, 204)
        self.assertIsNone(await self.platform.cloud.backend.head(RECORD_BUCKET, self.names[0]))
        self.assertEqual((await self.owner.request("GET", self.files_path())).json()["total"], FILES - 1)
        self.assertProblem(await self.owner.request("DELETE", one), 404, "not-found")
        ranged = f"/api/v1/devices/{CAMERA}/channels/0/cloud-files"
        body = {"kind": "record", "from": stamp(START), "to": stamp(START + datetime.timedelta(hours=1))}
        self.assertProblem(await guest.request("DELETE", ranged, body), 404, "no-such-device")
        answer = await self.owner.request("DELETE", ranged, body)
        self.assertEqual((answer.code, answer.json()), (200, {"deleted": FILES - 1}))
        self.assertEqual((await self.owner.request("GET", self.files_path())).json()["total"], 0)
        for name in self.names[:FILES]:
            self.assertIsNone(await self.platform.cloud.backend.head(RECORD_BUCKET, name))
        self.assertEqual((await self.owner.request("GET", self.files_path("picture"))).json()["total"], 1)
        self.assertProblem(await self.owner.request("DELETE", ranged, {"kind": "record", "from": "x", "to": "y"}),
                           400, "invalid-request")

    async def test_another_account_sees_nothing(self) -> None:
        """A stranger's answer for the owner's camera is the answer for a camera that does not exist."""
        stranger = await self.browser(STRANGER)
        for method, path in (("GET", self.files_path()), ("GET", self.range_path("play.mp4")),
                             ("GET", self.range_path("download.mp4")),
                             ("GET", f"/api/v1/devices/{CAMERA}/cloud-files/{self.names[0]}/url"),
                             ("GET", f"/api/v1/devices/{CAMERA}/cloud-files/{self.names[3]}/picture.jpg"),
                             ("DELETE", f"/api/v1/devices/{CAMERA}/cloud-files/{self.names[0]}")):
            theirs = await stranger.request(method, path)
            nobodys = await stranger.request(method, path.replace(CAMERA, "81100000999"))
            self.assertProblem(theirs, 404, "no-such-device")
            self.assertEqual(theirs.body, nobodys.body, path)
        self.assertEqual((await self.owner.request("GET", self.files_path())).json()["total"], FILES)


class NoStorageTests(PortalPlatform):
    timeout = 60

    async def test_not_configured_is_503(self) -> None:
        """Without a storage role nor external store: 503 cloud-unavailable for the owner, after the access
        check (a stranger still gets 404 no-such-device)."""
        config = platform_config("gateway, http, group, web", gateway={"command_timeout": 2},
                                 soap={"sms_interval": 0.01})
        self.platform = start_platform(self, config, reactor)
        self.assertIsNone(self.platform.cloud)
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        self.base = f"http://127.0.0.1:{self.platform.port_of('web')}"
        await self.start_camera(CAMERA)
        await self.sign_up(OWNER, PASSWORD, CAMERA)
        await self.sign_up(STRANGER, PASSWORD)
        path = f"/api/v1/devices/{CAMERA}/channels/0/cloud-files?from=20261202100000&to=20261202110000"
        owner, stranger = Browser(self.base), Browser(self.base)
        await owner.login(OWNER)
        await stranger.login(STRANGER)
        answer = await owner.request("GET", path)
        self.assertEqual((answer.code, answer.json()["type"]), (503, "/api/v1/problems/cloud-unavailable"))
        self.assertEqual((await stranger.request("GET", path)).code, 404)
