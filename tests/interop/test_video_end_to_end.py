"""Video end to end: platform, simulated camera with its RTSP server, and ffprobe as the client.

The platform issues a HashToken; ffprobe opens the §8.9-form URL on the camera's
local address and, with another token, on the camera's TURN relay address (§14,
§15's last step: everything interleaved over TCP through the relay).  The camera
checks every token with the platform over its §7.3 session (35H), so a reused
token gets 401.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.testing import platform_config
from tests.util import CameraOnPlatform, run, until

FFPROBE = shutil.which("ffprobe")
DEV = "81300000001"
CONFIG = platform_config("gateway, http, group, turn", public_host=None,
                         turn={"relay_ports": "52000-52999"})


class VideoTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        self.setup = CameraOnPlatform(self, CONFIG, DEV)
        await self.setup.start()
        self.platform, self.fleet, self.camera = self.setup.platform, self.setup.fleet, self.setup.camera
        self.token = self.setup.token

    async def probe(self, host: str, port: int, token: str, stream_type: int = 1) -> Any:
        url = f"rtsp://{host}:{port}/realplay?devid={DEV}&channelno=0&streamtype={stream_type}&hashtoken={token}"
        assert FFPROBE is not None
        return await run(FFPROBE, ["-v", "error", "-rtsp_transport", "tcp", "-show_entries",
                                   "stream=codec_name,codec_type,width,height", "-of", "json", url], timeout=30)

    async def test_local_then_reuse_refused(self) -> None:
        addresses = await self.platform.store.get_addresses(DEV)
        assert addresses is not None
        self.assertEqual(addresses.rtsp_local_port, self.fleet.rtsp_port, "LOGIN_REQ carries RtspLocalPort")
        token = await self.token()
        result = await self.probe(addresses.local_ip, addresses.rtsp_local_port, token)
        self.assertEqual(result.code, 0, result.err)
        streams = {s["codec_type"]: s for s in json.loads(result.out)["streams"]}
        self.assertEqual((streams["video"]["codec_name"], streams["video"]["width"], streams["video"]["height"]),
                         ("h264", 1280, 720))
        self.assertEqual(streams["audio"]["codec_name"], "pcm_alaw")
        again = await self.probe(addresses.local_ip, addresses.rtsp_local_port, token)
        self.assertNotEqual(again.code, 0)
        self.assertIn("401", again.err)

    async def test_through_turn_relay(self) -> None:
        """The camera's relayed address, learnt by the platform from its heartbeat, carries RTSP."""
        await until(lambda: self.camera.turn is not None and self.camera.turn.relayed_address is not None)
        addresses: list[Any] = [None]

        async def reported() -> bool:
            addresses[0] = await self.platform.store.get_addresses(DEV)
            return addresses[0] is not None and addresses[0].rtsp_turn_relay_port != 0

        while not await reported():
            await deferLater(reactor, 0.05, lambda: None)
        relay = (addresses[0].turn_relay_ip, addresses[0].rtsp_turn_relay_port)
        result = await self.probe(*relay, await self.token(stream_type=2), stream_type=2)
        self.assertEqual(result.code, 0, result.err)
        video = [s for s in json.loads(result.out)["streams"] if s["codec_type"] == "video"][0]
        self.assertEqual((video["codec_name"], video["width"], video["height"]), ("h264", 352, 288))
