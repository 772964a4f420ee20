"""Regression tests for the newcomer's findings of issue 9 (items 7, 17-21)."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.trial import unittest
from twisted.trial.unittest import SkipTest, TestCase

from tests.util import ROOT, http_client, run, until
from txturn import stun


def _load_bench(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Impostor:
    """Another process's STUN server on a port: answers Binding over UDP and accepts TCP."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.1)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                data, peer = self.udp.recvfrom(2048)
            except OSError:
                continue
            request = stun.decode(data)
            self.udp.sendto(stun.encode(stun.Message(stun.Method.BINDING, stun.Class.SUCCESS,
                                                     request.transaction_id, {})), peer)

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.udp.close()
        self.tcp.close()


class TurnBenchPortsTests(unittest.TestCase):
    def test_i9_21_turn_bench_refuses_a_taken_port(self) -> None:
        """A port held by another process is refused, not measured."""
        bench = _load_bench("turn_bench")
        impostor = _Impostor()
        self.addCleanup(impostor.close)
        workdir = Path(tempfile.mkdtemp())
        sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
        with self.assertRaises(RuntimeError) as caught:
            server = bench.Server("txturn", sleeper, impostor.port, workdir)
            server.stop()
        self.assertIn(f"127.0.0.1:{impostor.port} is taken", str(caught.exception))
        self.assertEqual(bench.RUNNING, [])


DEFAULT_INI = ROOT / "etc" / "globaleye.ini"


def shipped_config(data_dir: str, **sections: dict[str, Any]) -> Any:
    """etc/globaleye.ini as shipped, with every listening port 0 (free) and state in *data_dir*."""
    from globaleye.platform.config import load_config

    config = load_config(DEFAULT_INI)
    ports = {"globaleye": {"data_dir": data_dir}, "http": {"port": 0}, "gateway": {"port": 0},
             "stun": {"port": 0, "alternate_port": 0}, "turn": {"port": 0}, "rtsp": {"port": 0},
             "web": {"port": 0}, "storage": {"port": 0}, "ftp": {"port": 0}}
    for name, keys in sections.items():
        ports.setdefault(name, {}).update(keys)
    return config.replace(**ports)


class ShippedRolesTests(TestCase):
    timeout = 90

    async def test_i9_17_shipped_configuration_runs_every_role(self) -> None:
        """The README's `twistd -n globaleye --config etc/globaleye.ini` and `globaleye-sim --redirect`:
        the camera is online, holds a TURN relay, and a player watches it through the RTSP proxy."""
        from globaleye.cli import DEMO_ACCOUNT, DEMO_PASSWORD, _demo_viewer
        from globaleye.platform.config import ROLES, SCHEMA
        from globaleye.platform.tap import PlatformService, open_store
        from globaleye.sim.camera import Timing
        from globaleye.sim.fleet import Fleet
        from globaleye.store import Device

        # Every role but ftp (plain FTP sends the cameras' keys in clear: an operator's choice).
        every_default = tuple(role for role in ROLES if role != "ftp")
        self.assertEqual(SCHEMA["globaleye"]["roles"].parse(SCHEMA["globaleye"]["roles"].default), every_default)
        config = shipped_config(str(Path(self.mktemp()).absolute()))
        self.assertEqual(set(config.roles), set(every_default))
        Path(config.data_dir).mkdir(parents=True)
        platform = PlatformService(config, open_store(config), reactor)
        platform.startService()
        self.addCleanup(platform.stopService)
        self.assertIsNotNone(platform.stun)
        self.assertIsNotNone(platform.turn)
        self.assertIn("rtsp", platform.ports)
        self.assertIn("web", platform.ports)
        fleet = Fleet(reactor, redirect_url=f"http://127.0.0.1:{platform.port_of('http')}/redirect",
                      timing=Timing(backoff_initial=0.05), http=http_client())
        self.addCleanup(fleet.stop)
        self.addCleanup(fleet.port.stopListening)
        dev_id = "81100000001"
        camera = fleet.add(dev_id)
        # Imported first, as an operator would: the camera comes online whether enrollment is open or closed.
        await platform.store.import_devices([Device(dev_id=dev_id, dev_key=camera.state.dev_key,
                                                    manufacturer_no="811", model="sim", dev_type=1, created_at=0.0)])
        fleet.start()
        await camera.went_online
        await until(lambda: camera.state.turn_relay_ip not in ("", "0.0.0.0"), timeout=20)
        await _demo_viewer(platform, [dev_id], io.StringIO())  # the demo account owns the camera
        self.assertEqual([b.dev_id for b in await platform.store.list_bindings(DEMO_ACCOUNT)], [dev_id])
        ffprobe = shutil.which("ffprobe")
        if ffprobe is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg): online and relayed, not watched")
        url = f"rtsp://{DEMO_ACCOUNT}:{DEMO_PASSWORD}@127.0.0.1:{platform.port_of('rtsp')}/live/{dev_id}/0/1"
        result = await run(ffprobe, ["-v", "error", "-rtsp_transport", "tcp", "-show_entries",
                                     "stream=codec_name,width,height", "-of", "csv", url], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        self.assertIn("h264,1280,720", result.out)


class EditableInstallTests(TestCase):
    timeout = 300

    async def test_i9_20_editable_install_registers_the_twistd_plugin(self) -> None:
        """`pip install -e .` in a fresh virtualenv, then `twistd --help` outside the repository lists globaleye."""
        from twisted.internet.utils import getProcessOutputAndValue

        if shutil.which("pip") is None and not (Path(sys.executable).parent / "pip").exists():
            raise SkipTest("pip not available")
        venv = Path(self.mktemp()).absolute()
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
        # The system's packages (Twisted and the other dependencies) are reused: only globaleye is installed.
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "venv", "--system-site-packages", str(venv)], env=env, reactor=reactor)
        self.assertEqual(code, 0, err)
        python = str(venv / "bin" / "python")
        out, err, code = await getProcessOutputAndValue(
            python, ["-m", "pip", "install", "-q", "-e", str(ROOT)], env=env, path=str(venv), reactor=reactor)
        if code != 0 and b"No matching distribution" in err:
            raise SkipTest(f"pip cannot reach an index for the build requirements: {err[-300:]!r}")
        self.assertEqual(code, 0, err)
        out, err, code = await getProcessOutputAndValue(
            python, ["-c", "from twisted.scripts.twistd import run; run()", "--help"], env=env, path=str(venv),
            reactor=reactor)
        self.assertIn(b"globaleye", out + err)


class StartAndFullDiskTests(TestCase):
    timeout = 120

    async def spawn(self, args: list[str], cwd: Path) -> tuple[int, str, str]:
        from twisted.internet.utils import getProcessOutputAndValue

        out, err, code = await getProcessOutputAndValue(
            sys.executable, args, env=dict(os.environ, PYTHONPATH=str(ROOT)), path=str(cwd), reactor=reactor)
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    async def test_i9_18_busy_port_unwritable_or_full_data_dir_and_full_disk_at_runtime(self) -> None:
        """A busy port: one line naming role, address and port, exit non-zero (twistd -n and the demo);
        `config check` and start-up refuse an unwritable or full data_dir; a store that fails at run time
        (disk full) answers /register in protocol with a failure Result, not HTTP 500."""
        from globaleye.device.protocol import messages as m
        from globaleye.platform.config import parse_config
        from globaleye.platform.tap import PlatformService
        from globaleye.store.sqlite import SQLiteStore

        workdir = Path(self.mktemp()).absolute()
        workdir.mkdir()
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        ini = workdir / "busy.ini"
        ini.write_text(f"[globaleye]\ndata_dir = state\n[http]\nport = 0\n[gateway]\nport = {port}\n[stun]\nport = 0\n"
                       "[turn]\nport = 0\n[rtsp]\nport = 0\n", encoding="utf-8")
        twistd = ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "--logfile=log"]
        for args in (twistd + ["globaleye", "--config", str(ini)], ["-m", "globaleye.cli", "--config", str(ini), "demo"]):
            code, out, err = await self.spawn(args, workdir)
            self.assertNotEqual(code, 0)
            self.assertEqual(err.strip().splitlines(),
                             [f"globaleye: gateway cannot listen on 127.0.0.1 port {port}: Address already in use"])
            self.assertNotIn("Traceback", out + err)

        # config check and start-up: an unwritable data_dir, then one without enough free space.
        for extra, words in (("data_dir = /proc/globaleye-state\n", "is not writable"),
                             ("min_free_mb = 1000000000\n", "MiB free, less than min_free_mb")):
            bad = workdir / "bad.ini"
            bad.write_text(f"[globaleye]\n{extra}[http]\nport = 0\n[gateway]\nport = 0\n", encoding="utf-8")
            code, out, err = await self.spawn(["-m", "globaleye.cli", "--config", str(bad), "config", "check"], workdir)
            self.assertNotEqual(code, 0)
            self.assertIn(words, err)
            self.assertNotIn("OK", out)
            code, out, err = await self.spawn(twistd + ["globaleye", "--config", str(bad)], workdir)
            self.assertNotEqual(code, 0)
            self.assertIn(words, out + err)
        code, out, err = await self.spawn(["-m", "globaleye.cli", "--config", str(ini), "config", "check"], workdir)
        self.assertEqual(code, 0, err)
        self.assertIn("OK", out)

        class FullDisk(SQLiteStore):
            async def register_device(self, *args: Any, **kwargs: Any) -> Any:
                raise sqlite3.OperationalError("database or disk is full")

        config = parse_config("[globaleye]\nroles = gateway, http, group\n[database]\nurl = sqlite:///:memory:\n"
                              "[http]\nport = 0\n[gateway]\nport = 0\n")
        platform = PlatformService(config, FullDisk(":memory:"), reactor)
        platform.startService()
        self.addCleanup(platform.stopService)
        request = m.RegisterRequest(manufacturer_no="811", mode="IPC", dev_type=1,
                                                    dev_id="81100000001", dev_key="k1")
        response = await http_client().post(f"http://127.0.0.1:{platform.port_of('http')}/register",
                                            data=request.to_xml(), headers={b"Content-Type": [b"text/xml"]})
        body = await response.content()
        self.assertEqual(response.code, 200, body)
        answer = m.RegisterResponse.from_xml(body)
        self.assertEqual((answer.result, answer.dev_id), (255, "81100000001"))


class _DeviceClient(Protocol):
    """A device on a real TCP connection: frames out, decoded messages in."""

    def __init__(self) -> None:
        from globaleye.device.protocol.frame import FrameDecoder

        self.decoder = FrameDecoder()
        self.received: list[Any] = []

    def dataReceived(self, data: bytes) -> None:
        from globaleye.device.protocol import messages as m

        for frame in self.decoder.feed(data):
            self.received.append(m.parse(frame.data))

    def frames(self, messages: list[Any]) -> bytes:
        from globaleye.device.protocol.frame import Frame, encode_frame

        return b"".join(encode_frame(Frame(cmd=message.CMD, seq=index + 1, data=message.to_xml()))
                        for index, message in enumerate(messages))


class ReportFloodTests(TestCase):
    timeout = 120

    async def test_i9_07_exception_report_flood_bounded_and_old_reports_purged(self) -> None:
        """10,000 exception reports of 3 KB in one write over a real connection: at most
        reports_per_minute are stored, each at most report_max_chars; the next minute stores again; and the
        retention purge (reactor clock, bounded batches) deletes reports, picture notices and audit rows
        older than [retention] allows."""
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        from twisted.internet.task import Clock

        from globaleye.device.gateway import Gateway, GatewaySettings
        from globaleye.device.protocol import messages as m
        from globaleye.platform.config import parse_config
        from globaleye.store import AuditRecord, Device
        from globaleye.store.retention import DAY, Retention, RetentionSettings
        from globaleye.store.sqlite import SQLiteStore

        defaults = parse_config("")
        self.assertEqual((defaults["gateway"]["reports_per_minute"], defaults["gateway"]["report_max_chars"]),
                         (30, 512))
        self.assertEqual((defaults["retention"]["exceptions"], defaults["retention"]["pictures"],
                          defaults["retention"]["audit"]), (30, 30, 180))
        clock = Clock()
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        dev_id, key = "81100000001", "k1"
        await store.import_devices([Device(dev_id=dev_id, dev_key=key, model="IPC")])
        gateway = Gateway(store, clock, GatewaySettings(reports_per_minute=30, report_max_chars=512))
        port = reactor.listenTCP(0, gateway.factory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        device = _DeviceClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), device)
        self.addCleanup(device.transport.loseConnection)
        device.transport.write(device.frames([m.LoginRequest(
            dev_ver="1.0", dev_id=dev_id, dev_key=key, upnp_ip="0.0.0.0", local_ip="127.0.0.1", rtsp_local_port=554,
            turn_relay_ip="0.0.0.0", rtsp_turn_relay_port=0, net_type=1)]))
        await until(lambda: len(device.received) == 1)
        self.assertEqual(device.received[0].result, 0)

        report = m.ExceptionReportRequest(dev_id=dev_id, channel_no=1, exception_type=6, exception_desc="x" * 3000)
        device.transport.write(device.frames([report] * 10_000))  # one write
        await until(lambda: len(device.received) == 10_001, timeout=90)
        results = [answer.result for answer in device.received[1:]]
        self.assertEqual((results.count(0), results.count(255)), (30, 9970))
        stored = await store.list_exceptions(dev_id, limit=100_000)
        self.assertEqual(len(stored), 30)
        self.assertTrue(all(len(record.description) <= 513 for record in stored))

        clock.advance(61)  # the next minute: stored again
        device.transport.write(device.frames([report, m.FtpPictureNoticeRequest(
            dev_id=dev_id, channel_no=1, file_name=f"{dev_id}_1_20261201120000.JPG", time="20261201120000")]))
        await until(lambda: len(device.received) == 10_003)
        self.assertEqual(device.received[-2].result, 0)
        self.assertEqual(len(await store.list_exceptions(dev_id, limit=100_000)), 31)
        self.assertEqual(len(await store.list_pictures(dev_id)), 1)
        await store.add_audit(AuditRecord(at=0.0, account="13300000001", peer="127.0.0.1", action="login"))

        retention = Retention(store, clock, RetentionSettings(
            days={"exceptions": 30, "pictures": 30, "audit": 180}, interval=3600, batch=7))
        retention.startService()
        self.addCleanup(retention.stopService)
        await until(lambda: retention._running is None)
        self.assertEqual(sum(retention.deleted.values()), 0)  # nothing is old enough yet
        clock.advance(30 * DAY - 31)  # the 30 reports of minute 0 are older than 30 days, minute 1's are not
        await until(lambda: retention._running is None and retention.deleted["exceptions"] > 0)
        self.assertEqual(len(await store.list_exceptions(dev_id, limit=100_000)), 1)
        self.assertEqual(len(await store.list_pictures(dev_id)), 1)
        self.assertEqual(len(await store.list_audit("13300000001")), 1)  # 180 days
        clock.advance(150 * DAY + 60)
        await until(lambda: retention._running is None and retention.deleted["audit"] == 1)
        self.assertEqual(len(await store.list_pictures(dev_id)), 0)
        self.assertEqual(await store.list_audit("13300000001"), [])
        self.assertEqual(retention.deleted, {"exceptions": 31, "pictures": 1, "audit": 1})


DEMO_INI = ("[globaleye]\ndata_dir = var\n[http]\nport = 0\n[gateway]\nport = 0\n[stun]\nport = 0\n[turn]\nport = 0\n"
            "relay_ports = 54000-54999\nallow_peers = 127.0.0.0/8\n[rtsp]\nport = 0\n[storage]\nport = 0\n")


class _Interactive(ProcessProtocol):
    """A process whose prompts are answered by *answer(prompt_text)* as they appear."""

    def __init__(self, answer: Any = None) -> None:
        self.output = b""
        self.answer = answer
        self.answered = 0
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if self.answer is not None and self.output.rstrip().endswith(b":"):
            line = self.output.rstrip().rsplit(b"\n", 1)[-1].decode()
            self.transport.write((self.answer(line) + "\n").encode())
            self.answered += 1

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)


class ReadmeTests(TestCase):
    timeout = 180

    def blocks(self, kind: str) -> list[str]:
        return re.findall(rf"```{kind}\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)

    async def shell(self, line: str, workdir: Path, env: dict[str, str], answer: Any = None) -> tuple[int, str]:
        process = _Interactive(answer)
        reactor.spawnProcess(process, "/bin/sh", ["/bin/sh", "-c", line], env=env, path=str(workdir))
        code = await process.ended
        return code, process.output.decode(errors="replace")

    async def test_i9_19_readme_examples_run_against_the_demo(self) -> None:
        """The README's shell, zeep, globaleye-client and operator examples, run as written against a
        running `globaleye demo` (only the HTTP port differs: the test's demo listens on a free one)."""
        if shutil.which("curl") is None:
            raise SkipTest("curl not installed")
        workdir = Path(self.mktemp()).absolute()
        (workdir / "etc").mkdir(parents=True)
        (workdir / "etc" / "globaleye.ini").write_text(DEMO_INI, encoding="utf-8")
        shutil.copy(ROOT / "etc" / "devices.example.csv", workdir / "etc" / "devices.example.csv")
        bin_dir = workdir / "bin"
        bin_dir.mkdir()
        for name, module in (("globaleye", "globaleye.cli"), ("globaleye-client", "globaleye.client")):
            (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" -u -m {module} "$@"\n')
            (bin_dir / name).chmod(0o755)
        (bin_dir / "python").symlink_to(sys.executable)
        env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{bin_dir}:{os.environ['PATH']}")

        demo = _Interactive()
        process = reactor.spawnProcess(demo, sys.executable, [sys.executable, "-u", "-m", "globaleye.cli", "--config",
                                                              "etc/globaleye.ini", "demo"], env=env, path=str(workdir))
        self.addCleanup(lambda: demo.ended)
        self.addCleanup(process.signalProcess, "TERM")
        await until(lambda: b"Press Ctrl-C to stop." in demo.output or demo.ended.called, timeout=90, step=0.1)
        summary = demo.output.decode()
        self.assertIn("Press Ctrl-C to stop.", summary)
        self.assertTrue(summary.rstrip().endswith("Press Ctrl-C to stop."))
        self.assertLess(len(summary.splitlines()), 25)  # the summary, not the log
        self.assertIn("demo-password", summary)
        self.assertIn("ffplay 'rtsp://", summary)
        port = re.search(r"client API \(SOAP\)\s+http://127\.0\.0\.1:(\d+)/soap/mcu", summary).group(1)  # type: ignore[union-attr]
        dev_key = re.search(r"81100000002\s+(\S+)\s+online", summary).group(1)  # type: ignore[union-attr]
        log = workdir / "var" / "demo.log"
        self.assertTrue(log.exists())
        env["GLOBALEYE_MCU"] = f"http://127.0.0.1:{port}/soap/mcu"

        def here(block: str) -> str:
            return block.replace("127.0.0.1:8080", f"127.0.0.1:{port}")

        # The curl example.
        [curl] = [block for block in self.blocks("sh") if "GetSmsCodeRequest" in block]
        code, out = await self.shell(here(curl), workdir, env)
        self.assertEqual(code, 0, out)
        self.assertIn("<Result>0</Result>", out)

        # The zeep example, its two prompts answered from the demo's log and its summary.
        def answer(prompt: str) -> str:
            if prompt.startswith("SMS code"):
                codes = re.findall(r"SMS \(log only\) to 13300000002: GlobalEye verification code (\d+)",
                                   log.read_text(encoding="utf-8"))
                return codes[-1]
            return dev_key

        [zeep_example] = [block for block in self.blocks("python") if "import zeep" in block]
        script = workdir / "readme_zeep.py"
        script.write_text(here(zeep_example), encoding="utf-8")
        code, out = await self.shell(f"python -u {script}", workdir, env, answer)
        self.assertEqual(code, 0, out)
        lines = out.splitlines()
        # GetSmsCode, RegisterUser (after the prompt), AddDevice (after the prompt): Result 0 each.
        self.assertEqual([lines[0], lines[1].rsplit(": ", 1)[-1], lines[2].rsplit(": ", 1)[-1]], ["0", "0", "0"], out)
        self.assertIn("81100000002 0 1 1", lines)  # GetDeviceList: the added camera, channel 0, online, PTZ
        self.assertTrue(any(line.startswith("rtsp://") and "devid=81100000002" in line for line in lines), out)
        self.assertEqual(lines[-1], "0", out)  # PtzControl

        # The globaleye-client examples and the operator commands, line by line.
        # (The cloud commands' block needs stored recordings: test_client_cloud runs those.)
        [client] = [block for block in self.blocks("sh") if "globaleye-client" in block and " cloud " not in block]
        [operator] = [block for block in self.blocks("sh") if "device import" in block]
        for line in client.strip().splitlines() + operator.strip().splitlines():
            code, out = await self.shell(line, workdir, env)
            self.assertEqual(code, 0, f"{line}\n{out}")
            if " list" in line and "globaleye-client" in line:
                self.assertIn("81100000001", out)
            if "device show" in line:
                self.assertIn("81200000001", out)
        self.assertGreater((workdir / "picture.jpg").stat().st_size, 1000)
        self.assertGreater((workdir / "clip.mp4").stat().st_size, 1000)


class GatewayFullDiskTests(TestCase):
    """Issue 9 item 18 at the gateway: a store that cannot write answers LOGIN_RES 255, not a dropped session."""

    async def test_i9_18_full_disk_at_gateway_login_answered_in_protocol(self) -> None:
        from twisted.internet.task import Clock

        from globaleye.device.gateway import Gateway
        from globaleye.device.gateway.service import LOGIN_OTHER
        from globaleye.device.protocol import messages as m
        from globaleye.store import Device
        from globaleye.store.sqlite import SQLiteStore
        from tests.util import Device_

        class FullStore(SQLiteStore):
            full = False

            async def login_device(self, *args: Any, **kwargs: Any) -> Any:
                if self.full:
                    raise sqlite3.OperationalError("database or disk is full")
                return await super().login_device(*args, **kwargs)

        store = FullStore(":memory:")
        self.addCleanup(store.close)
        await store.import_devices([Device(dev_id="81100000001", dev_key="k")])
        gateway = Gateway(store, Clock())
        store.full = True
        device = Device_(gateway)
        device.send(m.LoginRequest(dev_ver="1", dev_id="81100000001", dev_key="k", net_type=1))
        (_frame, answer), = await device.answer()
        self.assertIsInstance(answer, m.LoginResponse)
        self.assertEqual(answer.result, LOGIN_OTHER)
        store.full = False  # the disk has room again: the device's retry logs in
        again = Device_(gateway, port=40001)
        again.send(m.LoginRequest(dev_ver="1", dev_id="81100000001", dev_key="k", net_type=1))
        (_frame, answer), = await again.answer()
        self.assertEqual(answer.result, 0)
