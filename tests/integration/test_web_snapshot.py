"""The device list's pictures (GET /api/v1/devices/{devId}/channels/{channel}/snapshot.jpg) over real
loopback: a platform with the gateway, rtsp and web roles, simulated cameras (their H.264 made by
FFmpeg), a plain HTTP client, and PyAV decoding the JPEG the platform made (issue 11, §2 item 1)."""

from __future__ import annotations

import io
import json
import time
from typing import Any

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from globaleye.sim.media.pattern import MAIN_SIZE, SUB_SIZE
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_OTHER_DEV as OTHER_DEV
from tests.util import PROXY_PASSWORD as PASSWORD
from tests.util import ProxyHarness, http_client, until

SECOND = "81300000013"
ABSENT = "81300000099"


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Decode *data* with PyAV (FFmpeg's JPEG decoder, not our encoder): its picture's size."""
    import av

    with av.open(io.BytesIO(data), format="image2pipe") as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


class WebSnapshotTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        from globaleye.platform.config import parse_config
        from globaleye.testing import platform_config

        self.h = ProxyHarness(self)
        self.h.config = parse_config(platform_config(
            "gateway, http, turn, rtsp, web", public_host=None, cms_password=None, turn={"relay_ports": "53000-53999"},
            rtsp="linger = 0.5\nudp_timeout = 5\nconnect_timeout = 2"))
        await self.h.start({DEV: {}, SECOND: {}, OTHER_DEV: {}})
        self.base = f"http://127.0.0.1:{self.h.platform.port_of('web')}"
        http = http_client()
        login = await http.post(self.base + "/api/v1/session", json={"account": MOBILE, "password": PASSWORD})
        self.assertEqual(login.code, 200, await login.text())
        await login.content()
        self.cookies = {"ge_session": login.cookies()["ge_session"]}
        # Every hub the proxy makes, to count the upstreams opened (idle hubs leave factory.hubs).
        self.hubs: list[Any] = []
        factory = self.h.factory
        make = factory.hub

        def hub(target: Any) -> Any:
            made = make(target)
            if made not in self.hubs:
                self.hubs.append(made)
            return made

        factory.hub = hub
        self.addCleanup(lambda: setattr(factory, "hub", make))
        # The platform's "decoded" log lines: how many decodes ran, and their CPU time.
        self.decodes: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("snapshot_decoded"):
                self.decodes.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def starts(self, dev_id: str, stream: int) -> int:
        return sum(h.starts for h in self.hubs if h.key == (dev_id, 0, stream))

    async def get(self, dev_id: str, query: str = "", cookies: Any = None) -> tuple[int, Any, bytes]:
        response = await http_client().get(f"{self.base}/api/v1/devices/{dev_id}/channels/0/snapshot.jpg{query}",
                                           cookies=self.cookies if cookies is None else cookies)
        return response.code, response.headers, await response.content()

    async def test_a_cold_camera_gives_a_jpeg_of_its_stream_and_a_second_ask_reuses_it(self) -> None:
        """No hub running: the snapshot starts the upstream (one §15 path selection), takes its first
        IDR, and the JPEG decodes at the sub stream's size; within 60 s the same picture again, with no
        second upstream (the hub has lingered out meanwhile) and no second decode."""
        self.assertEqual(self.h.factory.hubs, {})
        asked = time.monotonic()
        code, headers, body = await self.get(DEV)
        cold = time.monotonic() - asked
        self.assertEqual(code, 200, body[:300])
        self.assertEqual(headers.getRawHeaders("content-type"), ["image/jpeg"])
        [cache] = headers.getRawHeaders("cache-control")
        self.assertRegex(cache, r"^private, max-age=(59|60)$")
        self.assertEqual(body[:2], b"\xff\xd8")
        self.assertEqual(jpeg_size(body), SUB_SIZE)
        self.assertEqual(self.starts(DEV, 2), 1)
        self.assertEqual(self.starts(DEV, 1), 0, "the default is the sub stream")
        [decoded] = self.decodes
        print(f"\nsnapshot, cold hub: {cold * 1000:.0f} ms to the JPEG over HTTP; decode+encode of one "
              f"{SUB_SIZE[0]}x{SUB_SIZE[1]} IDR: {decoded['cpu_ms']} ms CPU")
        # The hub lingers out (0.5 s here) with no viewer: the snapshot did not keep it.
        await until(lambda: (DEV, 0, 2) not in self.h.factory.hubs, timeout=10)
        code, headers, again = await self.get(DEV, "?stream=sub")
        self.assertEqual(code, 200)
        self.assertEqual(again, body, "the cached picture")
        self.assertEqual(self.starts(DEV, 2), 1, "no second upstream within 60 s")
        self.assertEqual(len(self.decodes), 1)
        # The main stream is its own picture, at its own size.
        code, _, main = await self.get(DEV, "?stream=main")
        self.assertEqual(code, 200, main[:300])
        self.assertEqual(jpeg_size(main), MAIN_SIZE)
        print(f"snapshot main stream: decode+encode of one {MAIN_SIZE[0]}x{MAIN_SIZE[1]} IDR: "
              f"{self.decodes[-1]['cpu_ms']} ms CPU")

    async def test_ten_at_once_share_one_decode(self) -> None:
        """Ten browsers ask at the same moment: one upstream, one decode, ten identical pictures."""
        answers = await defer.gatherResults([defer.Deferred.fromCoroutine(self.get(SECOND)) for _ in range(10)])
        self.assertEqual([code for code, _, _ in answers], [200] * 10)
        self.assertEqual(len({body for _, _, body in answers}), 1)
        self.assertEqual(len(self.decodes), 1)
        self.assertEqual(self.starts(SECOND, 2), 1)

    async def test_a_live_hub_gives_its_cached_idr(self) -> None:
        """A camera already watched (a viewer keeps its hub up): the picture comes from the hub's
        GOP cache, no second upstream."""
        from globaleye.proxy.platform import Target

        hub = self.h.factory.hub(Target("live", DEV, 0, 2))
        await hub.ensure(MOBILE)
        await until(lambda: bool(hub.gop), timeout=10)
        asked = time.monotonic()
        code, _, body = await self.get(DEV)
        warm = time.monotonic() - asked
        self.assertEqual(code, 200)
        self.assertEqual(jpeg_size(body), SUB_SIZE)
        self.assertEqual(hub.starts, 1)
        self.assertEqual(hub.gop_replays, 1)
        print(f"\nsnapshot, hub running: {warm * 1000:.0f} ms to the JPEG over HTTP")

    async def test_another_accounts_camera_is_404_like_none(self) -> None:
        """Another account's camera answers exactly as a camera that does not exist, and no upstream
        is opened for it."""
        theirs = await self.get(OTHER_DEV)
        absent = await self.get(ABSENT)
        self.assertEqual(theirs[0], 404)
        self.assertEqual(theirs[1].getRawHeaders("content-type"), ["application/problem+json"])
        self.assertEqual(theirs[2], absent[2])
        self.assertEqual(self.hubs, [])
        self.assertEqual(self.decodes, [])

    async def test_offline_is_503_bad_stream_400_no_session_401(self) -> None:
        self.h.cameras[SECOND].stop()
        await until(lambda: not self.h.platform.gateway.is_online(SECOND))
        code, headers, body = await self.get(SECOND)
        self.assertEqual(code, 503)
        self.assertEqual(headers.getRawHeaders("cache-control"), ["no-store"])
        self.assertIn("offline", json.loads(body)["detail"])
        self.assertEqual((await self.get(DEV, "?stream=hd"))[0], 400)
        self.assertEqual((await self.get(DEV, cookies={}))[0], 401)
        self.assertEqual(self.hubs, [])

    async def test_without_pyav_501(self) -> None:
        """No PyAV (no [web] extra): 501 with a detail that says so, and no upstream opened."""
        from globaleye.web import snapshot

        self.patch(snapshot, "available", lambda: "PyAV is not installed (pip install '.[web]')")
        code, headers, body = await self.get(DEV)
        self.assertEqual(code, 501)
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/problem+json"])
        self.assertIn("PyAV", json.loads(body)["detail"])
        self.assertEqual(self.hubs, [])
        # Access still comes first: another account's camera is 404, not 501.
        self.assertEqual((await self.get(OTHER_DEV))[0], 404)
