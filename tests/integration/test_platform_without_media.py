"""The platform's roles need neither PyAV nor numpy (issue 10 item 2).

PyAV and numpy are the ``[sim]`` and ``[client]`` extras: only the simulated cameras
(``globaleye/sim/``) and the phone client (``globaleye/client/``) import them.  A relay
host runs ``pip install .`` and ``twistd globaleye`` with the gateway, TURN and STUN roles.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import textwrap
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from tests.util import ROOT

#: Run first in a child interpreter: an import of either module then fails, as on a relay host.
BLOCK = "import sys\nsys.modules['av'] = None\nsys.modules['numpy'] = None\n"

ALL_ROLES = """
[globaleye]
roles = gateway, http, group, stun, turn, rtsp, web
data_dir = {data_dir}
[database]
url = sqlite:///:memory:
[province]
cms_password = p4ss
[http]
port = 0
[gateway]
port = 0
[stun]
port = 0
[turn]
port = 0
[rtsp]
port = 0
[web]
port = 0
"""

RELAY_ROLES = """
[globaleye]
roles = gateway, stun, turn
data_dir = state
[gateway]
port = 0
[stun]
port = 0
[turn]
port = 0
"""


class _Exit(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        self.ended.callback(None)


class PlatformWithoutMediaLibrariesTests(TestCase):
    timeout = 120

    async def python(self, script: str, cwd: Path) -> tuple[int, str]:
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-c", BLOCK + script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
            path=str(cwd), reactor=reactor)
        return code, (out + err).decode(errors="replace")

    async def test_all_platform_roles_start_with_av_and_numpy_blocked(self) -> None:
        """The twistd plugin, the CLI, the RTSP proxy and a PlatformService with every role start
        while ``import av`` and ``import numpy`` fail; ``globaleye config check`` works; the demo,
        which runs simulated cameras, says which extra it needs."""
        workdir = Path(self.mktemp()).absolute()
        workdir.mkdir()
        ini = workdir / "all.ini"
        ini.write_text(ALL_ROLES.format(data_dir=workdir / "state"), encoding="utf-8")
        script = textwrap.dedent(f"""
            import globaleye.cli, globaleye.proxy.server, globaleye.platform.tap, twisted.plugins.globaleye_plugin
            import globaleye.media.names, globaleye.media.tsfile  # what the platform may share with sim/
            from twisted.internet import reactor
            from globaleye.platform.config import load_config
            from globaleye.store.sqlite import SQLiteStore
            from globaleye.platform.tap import PlatformService
            platform = PlatformService(load_config({str(ini)!r}), SQLiteStore(":memory:"), reactor)
            platform.startService()
            print("listening", sorted(role for role in platform.ports if platform.port_of(role) > 0))
            platform.stopService()
            print("media libraries loaded:", [name for name in ("av", "numpy") if sys.modules.get(name)])
        """)
        code, output = await self.python(script, workdir)
        self.assertEqual(code, 0, output)
        # The web role too: its live view is video only then ([web] extra, globaleye.media.aacenc).
        self.assertIn("listening ['gateway', 'http', 'rtsp', 'web']", output)
        self.assertIn("media libraries loaded: []", output)

        code, output = await self.python(
            f"from globaleye.cli import main\nmain(['--config', {str(ini)!r}, 'config', 'check'])", workdir)
        self.assertEqual(code, 0, output)
        self.assertIn("OK", output)

        code, output = await self.python(
            f"from globaleye.cli import main\nmain(['--config', {str(ini)!r}, 'demo'])", workdir)
        self.assertEqual(code, 2, output)
        self.assertIn("pip install '.[sim]'", output)
        self.assertNotIn("Traceback", output)

    async def test_fresh_install_runs_relay_roles_without_av_or_numpy(self) -> None:
        """About 15 s (a venv and a `pip install .` from the local index).  A plain virtualenv (no system site
        packages) gets ``pip install .`` with no extras from this machine's package index; in it
        ``import av`` and ``import numpy`` fail, and ``twistd -n globaleye`` with the gateway, STUN
        and TURN roles starts and listens."""
        workdir = Path(self.mktemp()).absolute()
        workdir.mkdir()
        # A copy of the project: building in the checkout would leave build/ and *.egg-info behind.
        source = workdir / "src"
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "_trial_temp*", "var", "__pycache__", ".*cache",
            ".hypothesis", ".tox", "tests", "bench", "dropin.cache"))
        venv = workdir / "venv"
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "venv", str(venv)], env=env, path=str(workdir), reactor=reactor)
        if code != 0:
            raise SkipTest(f"cannot make a virtualenv: {err[-300:]!r}")
        python = str(venv / "bin" / "python")
        out, err, code = await getProcessOutputAndValue(
            python, ["-m", "pip", "install", "-q", str(source)], env=env, path=str(workdir), reactor=reactor)
        if code != 0 and (b"No matching distribution" in err or b"Could not find a version" in err):
            raise SkipTest(f"pip cannot reach a package index: {err[-300:]!r}")
        self.assertEqual(code, 0, err[-2000:])
        for module in ("av", "numpy"):
            out, err, code = await getProcessOutputAndValue(
                python, ["-c", f"import {module}"], env=env, path=str(workdir), reactor=reactor)
            self.assertNotEqual(code, 0, f"{module} was installed by `pip install .`")
            self.assertIn(b"ModuleNotFoundError", err)

        run = workdir / "run"
        run.mkdir()
        (run / "relay.ini").write_text(RELAY_ROLES, encoding="utf-8")
        log = run / "twistd.log"
        exit = _Exit()
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            exit, str(venv / "bin" / "twistd"),
            [str(venv / "bin" / "twistd"), "-n", "--pidfile=", f"--logfile={log}", "globaleye", "--config",
             "relay.ini"], env=env, path=str(run))
        try:
            wanted = ("gateway listening on", "STUN listening", "TURN udp listening", "TURN tcp listening")
            text = ""
            for _ in range(300):
                text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
                if all(line in text for line in wanted) or exit.ended.called:
                    break
                await deferLater(reactor, 0.1, lambda: None)
            for line in wanted:
                self.assertIn(line, text)
            self.assertNotIn("Traceback", text)
            gateway = next(line for line in text.splitlines() if "gateway listening on" in line)
            port = int(gateway.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
        finally:
            if not exit.ended.called:
                process.signalProcess("TERM")
            await exit.ended
