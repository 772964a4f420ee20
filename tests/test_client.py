"""``globaleye-client`` as a real process against a real platform: SOAP login, §15 paths, PyAV.

The CLI runs as ``python -m globaleye.client`` (the console script's entry point),
so its SOAP client, path selection, decoding and muxing are what a user gets; ffprobe
then reads the files it wrote.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, TestCase

from tests.test_proxy import DEV, FFPROBE, MOBILE, PASSWORD, ProxyHarness, closed_port
from tests.util import run

ROOT = Path(__file__).resolve().parent.parent


class ClientCliTests(TestCase):
    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self)
        await self.h.start(login=False)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    async def cli(self, *args: str, timeout: float = 40) -> Any:
        mcu = f"http://127.0.0.1:{self.h.platform.port_of('http')}/soap/mcu"
        return await run(sys.executable, ["-m", "globaleye.client", "--mcu", mcu, "--account", MOBILE,
                                          "--password", PASSWORD, *args], timeout=timeout)

    async def ffprobe(self, path: str) -> dict[str, Any]:
        assert FFPROBE is not None
        result = await run(FFPROBE, ["-v", "error", "-show_entries",
                                     "stream=codec_name,width,height:format=format_name,duration", "-of", "json",
                                     path])
        self.assertEqual(result.code, 0, result.err)
        return dict(json.loads(result.out))

    async def test_list_play_snapshot(self) -> None:
        result = await self.cli("list")
        self.assertEqual(result.code, 0, result.err)
        self.assertIn(DEV, result.out)
        self.assertIn("online", result.out)
        result = await self.cli("play", DEV, "--seconds", "1.5")
        self.assertEqual(result.code, 0, result.err)
        self.assertIn("path: local", result.out)
        self.assertIn("video: h264 1280x720 25.00 fps", result.out)
        self.assertIn("audio: pcma", result.out)
        self.assertIn("first frame:", result.out)
        shot = self.mktemp() + ".jpg"
        result = await self.cli("snapshot", DEV, "-o", shot)
        self.assertEqual(result.code, 0, result.err)
        info = await self.ffprobe(shot)
        self.assertEqual([(s["codec_name"], s["width"], s["height"]) for s in info["streams"]],
                         [("mjpeg", 1280, 720)])

    async def test_record_ts_and_mp4(self) -> None:
        for suffix, fmt in ((".ts", "mpegts"), (".mp4", "mov,mp4,m4a,3gp,3g2,mj2")):
            path = self.mktemp() + suffix
            result = await self.cli("record", DEV, "--stream", "2", "-o", path, "--seconds", "2")
            self.assertEqual(result.code, 0, result.err)
            self.assertIn("recording", result.err, "progress line on stderr")
            info = await self.ffprobe(path)
            self.assertEqual([(s["codec_name"], s["width"], s["height"]) for s in info["streams"]],
                             [("h264", 352, 288)])
            self.assertEqual(info["format"]["format_name"], fmt)
            self.assertGreaterEqual(float(info["format"]["duration"]), 1.9)

    async def test_play_falls_back_to_turn(self) -> None:
        """The client runs the proxy's §15 sequence: local refused → UPnP absent → TURN relay."""
        camera = self.h.cameras[DEV]
        live = self.h.platform.gateway.live[DEV]
        await self.h.relay_ready()
        import attrs
        live.addresses = attrs.evolve(live.addresses, rtsp_local_port=closed_port())
        result = await self.cli("play", DEV, "--seconds", "1")
        self.assertEqual(result.code, 0, result.err)
        self.assertIn("path: turn-udp", result.out)
        self.assertIn("tried local: failed", result.out)
        self.assertIn("tried upnp: failed: the camera reports no such address", result.out)
        del camera
