"""``globaleye demo`` (the README's first command) as a real process: it prints a URL a player opens."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SkipTest, TestCase

from tests.util import ROOT, run

URL = re.compile(rb"ffplay '(rtsp://[^']+)'")


class Demo(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.url: Deferred[str] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        match = URL.search(self.output)
        if match and not self.url.called:
            self.url.callback(match.group(1).decode())

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class DemoTests(TestCase):
    timeout = 90

    async def test_demo_url_plays(self) -> None:
        ffprobe = shutil.which("ffprobe")
        if ffprobe is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        workdir = Path(self.mktemp()).absolute()
        workdir.mkdir()
        config = workdir / "demo.ini"
        config.write_text(
            "[globaleye]\nroles = gateway, http, group, stun, turn, rtsp\n[http]\nport = 0\n[gateway]\nport = 0\n"
            "[stun]\nport = 0\n[turn]\nport = 0\nrelay_ports = 53000-53999\nallow_peers = 127.0.0.0/8\n"
            "[rtsp]\nport = 0\n", encoding="utf-8")
        demo = Demo()
        process = reactor.spawnProcess(
            demo, sys.executable, [sys.executable, "-m", "globaleye.cli", "--config", str(config), "demo"],
            env=dict(os.environ, PYTHONPATH=str(ROOT)), path=str(workdir))
        try:
            timer = reactor.callLater(60, demo.url.cancel)
            url = await demo.url
            timer.cancel()
            result = await run(ffprobe, ["-v", "error", "-rtsp_transport", "tcp", "-show_entries",
                                         "stream=codec_name,width,height", "-of", "csv", url], timeout=30)
            self.assertEqual(result.code, 0, result.err)
            self.assertIn("h264,1280,720", result.out)
            self.assertIn("pcm_alaw", result.out)
        finally:
            process.signalProcess(signal.SIGTERM)
            await demo.ended
