"""Gateway load benchmark: N camera sessions against one gateway process on loopback.

    python3 bench/gateway_load.py --cameras 10000 --command-rate 1000 --command-seconds 10

Two processes, one core each on a two-core machine:

* the **gateway process** (``server`` mode of this script) runs the real
  :class:`~globaleye.platform.tap.PlatformService` with the gateway role, and, on request from
  the driver, issues platform→device commands at a fixed rate through the real
  ``gateway.command`` API, measuring each round trip;
* the **driver** (this process) holds N device sessions built on the same
  :class:`~globaleye.device.messaging.MessageProtocol` the simulator uses, answering
  commands with the simulator's own handlers.

It reports: sessions held, the gateway's RSS per session, the login storm (N
logins at once: time to the last LOGIN_RES), heartbeat throughput, and command
round-trip p50/p99 at the requested rate.  It is a benchmark, not a test: run it
by hand and record the figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import protocol, reactor  # noqa: E402
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol  # noqa: E402
from twisted.internet.task import LoopingCall, deferLater  # noqa: E402

from globaleye.device.messaging import MessageProtocol  # noqa: E402
from globaleye.device.protocol import messages as m  # noqa: E402
from globaleye.device.protocol.frame import Frame  # noqa: E402
from globaleye.sim.commands import answer  # noqa: E402
from globaleye.sim.state import CameraState  # noqa: E402
from globaleye.store import Device  # noqa: E402

FIRST_ID = 81100000001


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


# --------------------------------------------------------------------------- gateway process


async def serve(db: str) -> None:
    from twisted.protocols.basic import LineReceiver

    from globaleye.platform.config import parse_config
    from globaleye.platform.tap import PlatformService
    from globaleye.store.sqlite import SQLiteStore

    # Every simulated camera connects from 127.0.0.1: no per-address cap (the shipped default is 256).
    config = parse_config("[globaleye]\nroles = gateway\n[gateway]\nport = 0\nlogin_timeout = 600\n"
                          "[limits]\nper_address = 0\n")
    platform = PlatformService(config, SQLiteStore(db), reactor)
    platform.startService()
    gateway = platform.gateway
    done: Deferred[None] = Deferred()

    async def drive(rate: float, seconds: float) -> dict[str, Any]:
        devices = gateway.online_devices()
        rtts: list[float] = []
        errors = [0]
        pending = []
        index = [0]

        async def one(dev_id: str) -> None:
            start = time.perf_counter()
            try:
                await gateway.command(dev_id, m.PtzRequest(dev_id=dev_id, channel_no=0, ptz_direction=1), 5)
                rtts.append((time.perf_counter() - start) * 1000)
            except Exception:
                errors[0] += 1

        def tick() -> None:
            # 10 ms ticks, rate/100 commands each: a steady rate, not a burst per second.
            for _ in range(max(1, int(rate / 100))):
                dev_id = devices[index[0] % len(devices)]
                index[0] += 1
                pending.append(Deferred.fromCoroutine(one(dev_id)))

        loop = LoopingCall(tick)
        started = time.perf_counter()
        loop.start(0.01)
        await deferLater(reactor, seconds, lambda: None)
        loop.stop()
        await gatherResults(pending)
        elapsed = time.perf_counter() - started
        return {"sent": len(pending), "answered": len(rtts), "errors": errors[0],
                "rate": len(rtts) / elapsed, "p50_ms": percentile(rtts, 0.5), "p99_ms": percentile(rtts, 0.99),
                "max_ms": max(rtts) if rtts else float("nan")}

    class Control(LineReceiver):
        delimiter = b"\n"

        def reply(self, value: Any) -> None:
            self.sendLine(json.dumps(value).encode())

        def lineReceived(self, line: bytes) -> None:
            words = line.decode().split()
            if words[0] == "status":
                self.reply({"sessions": len(gateway.online_devices()), "rss_kib": rss_kib(os.getpid()),
                            "counters": gateway.counters})
            elif words[0] == "commands":
                Deferred.fromCoroutine(drive(float(words[1]), float(words[2]))).addCallback(self.reply)
            elif words[0] == "quit":
                done.callback(None)

    from twisted.internet.stdio import StandardIO

    control = Control()
    StandardIO(control)
    control.reply({"port": platform.port_of("gateway"), "rss_kib": rss_kib(os.getpid())})
    await done
    await platform.stopService()


# --------------------------------------------------------------------------- driver


class Camera(MessageProtocol):
    def __init__(self, state: CameraState) -> None:
        super().__init__(reactor)
        self.state = state

    def request_received(self, frame: Frame, message: m.Message) -> None:
        self.respond(frame, answer(self.state, message))


class Server(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.waiting: list[Deferred[Any]] = []
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if self.waiting:
                self.waiting.pop(0).callback(json.loads(line))

    def errReceived(self, data: bytes) -> None:
        sys.stderr.write(data.decode(errors="replace"))

    def ask(self, line: str | None) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiting.append(d)
        if line is not None:
            self.transport.write(line.encode() + b"\n")
        return d

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    from globaleye.store.sqlite import SQLiteStore

    workdir = Path(tempfile.mkdtemp(prefix="globaleye-bench-"))
    db = str(workdir / "bench.sqlite3")
    states = [CameraState.for_device(f"{FIRST_ID + i:011d}", f"key{i}") for i in range(args.cameras)]
    store = SQLiteStore(db)
    await store.import_devices([Device(dev_id=s.dev_id, dev_key=s.dev_key) for s in states])
    await store.close()

    server = Server()
    hello = server.ask(None)
    process = reactor.spawnProcess(server, sys.executable, [sys.executable, __file__, "server", db],
                                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if args.pin:
        os.sched_setaffinity(process.pid, {0})
        os.sched_setaffinity(0, {1})
    first = await hello
    port, rss_before = first["port"], first["rss_kib"]
    endpoint_args = ("127.0.0.1", port)

    # Login storm: every camera connects and logs in at once (connects limited to a window
    # so the driver's own accept backlog does not dominate).
    cameras = [Camera(s) for s in states]
    window = DeferredSemaphore(args.window)

    async def login(camera: Camera) -> float:
        await window.acquire()
        try:
            await connectProtocol(TCP4ClientEndpoint(reactor, *endpoint_args, timeout=30), camera)
            s = camera.state
            response = await camera.request(m.LoginRequest(dev_id=s.dev_id, dev_key=s.dev_key, dev_ver=s.dev_ver,
                                                           local_ip="127.0.0.1", upnp_ip="0.0.0.0"), 60)
            assert response.result == 0, response
            return time.perf_counter()
        finally:
            window.release()

    started = time.perf_counter()
    finished = await gatherResults([Deferred.fromCoroutine(login(c)) for c in cameras])
    storm = max(finished) - started
    status = await server.ask("status")
    sessions, rss_after = status["sessions"], status["rss_kib"]

    # Heartbeats: every session sends `rounds` heartbeats, all in flight together.
    rounds = args.heartbeat_rounds
    started = time.perf_counter()
    beats = []
    for _ in range(rounds):
        for camera in cameras:
            beats.append(camera.request(m.HeartbeatRequest(dev_id=camera.state.dev_id, local_ip="127.0.0.1",
                                                           upnp_ip="0.0.0.0"), 120))
    await gatherResults(beats)
    heartbeat_rate = len(beats) / (time.perf_counter() - started)

    commands = await server.ask(f"commands {args.command_rate} {args.command_seconds}")
    server.transport.write(b"quit\n")
    await server.ended
    for camera in cameras:
        if camera.transport is not None:
            camera.transport.loseConnection()
    return {
        "cameras": args.cameras,
        "sessions_held": sessions,
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_after_mib": round(rss_after / 1024, 1),
        "rss_per_session_kib": round((rss_after - rss_before) / max(1, sessions), 2),
        "login_storm_s": round(storm, 2),
        "logins_per_s": round(args.cameras / storm),
        "heartbeats_per_s": round(heartbeat_rate),
        "command_rate_target": args.command_rate,
        "command_rate_achieved": round(commands["rate"]),
        "command_errors": commands["errors"],
        "command_p50_ms": round(commands["p50_ms"], 2),
        "command_p99_ms": round(commands["p99_ms"], 2),
        "command_max_ms": round(commands["max_ms"], 2),
    }


def main() -> None:
    raise_fd_limit()
    if len(sys.argv) > 1 and sys.argv[1] == "server":
        from twisted.internet.task import react

        react(lambda r: Deferred.fromCoroutine(serve(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=1000)
    parser.add_argument("--window", type=int, default=2000, help="connections being opened at once")
    parser.add_argument("--heartbeat-rounds", type=int, default=3)
    parser.add_argument("--command-rate", type=float, default=1000)
    parser.add_argument("--command-seconds", type=float, default=10)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin the processes to cores")
    args = parser.parse_args()
    from twisted.internet.task import react

    async def run(_: Any) -> None:
        result = await drive(args)
        print(json.dumps(result, indent=2))
        print(f"median of one run; machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}",
              file=sys.stderr)
        _ = statistics

    react(lambda r: Deferred.fromCoroutine(run(r)))


if __name__ == "__main__":
    main()
