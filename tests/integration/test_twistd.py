"""The real ``twistd globaleye`` process: plugin discovery, start-up, a camera, clean shutdown."""

from __future__ import annotations

import os
import random
import re
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from tests.util import ROOT, http_client, until

LISTENING = re.compile(rb"(\w+) listening on 127\.0\.0\.1:(\d+)")


class Twistd(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ports: dict[str, int] = {}
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[tuple[int | None, int | None]] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        for role, port in LISTENING.findall(self.output):
            self.ports[role.decode()] = int(port)
        if {"gateway", "http"} <= set(self.ports) and not self.ready.called:
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback((reason.value.exitCode, getattr(reason.value, "signal", None)))


class TwistdTests(TestCase):
    timeout = 60

    async def test_camera_against_twistd(self) -> None:
        workdir = Path(self.mktemp()).absolute()
        workdir.mkdir()
        config = workdir / "globaleye.ini"
        config.write_text("[globaleye]\nroles = gateway, http, group\ndata_dir = state\n[enrollment]\nmode = open\n"
                          "[http]\nport = 0\n[gateway]\nport = 0\n[province]\ncms_password = twistd-secret\n", encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        twistd = Twistd()
        process = reactor.spawnProcess(
            twistd, sys.executable,
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             "--logfile=-", "globaleye", "--config", str(config)], env=env, path=str(workdir))
        try:
            timer = reactor.callLater(20, twistd.ready.cancel)
            await twistd.ready
            timer.cancel()
            http = http_client()
            dev_id = "81500000001"
            camera = SimulatedCamera(CameraState.for_device(dev_id, device_key("t", dev_id)), reactor,
                                     redirect_url=f"http://127.0.0.1:{twistd.ports['http']}/redirect",
                                     timing=Timing(backoff_initial=0.05), rng=random.Random(3), http=http)
            camera.start()
            self.addCleanup(camera.stop)
            await camera.went_online
            # The platform logs the login after sending LOGIN_RES: its line may reach us a moment later.
            await until(lambda: f"device {dev_id} logged in".encode() in twistd.output)
            # The operator CLI reads the same database while the platform runs.
            out, err, code = await getProcessOutputAndValue(
                sys.executable, ["-c", "from globaleye.cli import main; main()", "--config", str(config),
                                 "device", "show", dev_id], env=env, path=str(workdir), reactor=reactor)
            self.assertEqual(code, 0, err)
            self.assertIn(b"open", out)
            self.assertRegex(out.decode(), r"last login\s+\d{4}-")
        finally:
            process.signalProcess(signal.SIGTERM)
        # twistd shuts down cleanly, then re-raises SIGTERM so its exit status tells why it stopped.
        code, sig = await twistd.ended
        self.assertIn((code, sig), [(0, None), (None, signal.SIGTERM)], twistd.output[-2000:].decode(errors="replace"))
        self.assertIn(b"Server Shut Down.", twistd.output)
        self.assertIn(b"gateway stopped listening", twistd.output)
