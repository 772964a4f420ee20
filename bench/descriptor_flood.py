"""Descriptor flood: one address opens connections to the gateway as fast as it can.

    python3 bench/descriptor_flood.py --flood 3000 --fd-limit 1024 --seconds 8

Issue 9 item 3: one address holding thousands of idle connections to the gateway
took the process to its descriptor limit, and every role failed.  This script runs,
for each of two configurations, a platform process (``server`` mode of this script:
the real :class:`~globaleye.platform.tap.PlatformService` with gateway, http and group roles,
its soft RLIMIT_NOFILE lowered to ``--fd-limit``) and, from this process:

* a **flood** from 127.0.0.1: ``--flood`` connections to the gateway, opened as fast
  as the kernel lets (``--window`` connects in flight) and held, sending nothing;
* **probes** from 127.0.0.2 every 0.25 s during ``--seconds``: an HTTP GET of
  ``/soap/mcu?wsdl`` and a device login on the gateway (connect, LOGIN_REQ with the
  right key, LOGIN_RES), each with a 5 s limit.  Before the flood, the same probes
  give the quiet figures.

The configurations: ``uncapped`` (``[limits] per_address = 0``, a total far above
the descriptor limit, no role share: what main had) and ``capped`` (the shipped
``[limits]`` defaults).  It prints one JSON object per configuration.  A benchmark,
not a test: run it by hand and record the figures in docs/performance.md.
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
from twisted.internet.task import deferLater  # noqa: E402

from globaleye.device.messaging import MessageProtocol  # noqa: E402
from globaleye.device.protocol import messages as m  # noqa: E402
from globaleye.device.protocol.frame import Frame  # noqa: E402
from globaleye.store import Device  # noqa: E402

DEV_ID, DEV_KEY = "81100000001", "flood-bench-key"
LIMITS = {
    "uncapped": "per_address = 0\ntotal = 1000000\nrole_share = 1\npressure = 1\n",
    "capped": "",
}
PROBE_TIMEOUT = 5.0


# --------------------------------------------------------------------------- server


async def serve(db: str, limits: str, fd_limit: int) -> None:
    from globaleye.platform.config import parse_config
    from globaleye.platform.tap import PlatformService
    from globaleye.store.sqlite import SQLiteStore

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, hard))
    config = parse_config("[globaleye]\nroles = gateway, http, group\n[http]\nport = 0\n"
                          f"[gateway]\nport = 0\n[limits]\n{limits}")
    platform = PlatformService(config, SQLiteStore(db), reactor)
    platform.startService()
    print(json.dumps({"gateway": platform.port_of("gateway"), "http": platform.port_of("http")}), flush=True)
    await Deferred()  # until killed


# --------------------------------------------------------------------------- driver


class Quiet(protocol.Protocol):
    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost.callback(None)


class HttpProbe(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(b"GET /soap/mcu?wsdl HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.done.callback(self.data)


class DeviceProbe(MessageProtocol):
    def __init__(self) -> None:
        super().__init__(reactor)

    def request_received(self, frame: Frame, message: m.Message) -> None:
        pass


async def within(d: Deferred[Any], seconds: float) -> Any:
    timer = reactor.callLater(seconds, d.cancel)
    try:
        return await d
    finally:
        if timer.active():
            timer.cancel()


async def probe_http(port: int) -> float | None:
    started = time.perf_counter()
    try:
        p = await within(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5,
                                                            bindAddress=("127.0.0.2", 0)), HttpProbe()),
                         PROBE_TIMEOUT)
        data = await within(p.done, PROBE_TIMEOUT - (time.perf_counter() - started))
    except Exception:
        return None
    return (time.perf_counter() - started) * 1000 if data.startswith(b"HTTP/1.1 200") else None


async def probe_login(port: int) -> float | None:
    started = time.perf_counter()
    device = DeviceProbe()
    try:
        await within(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5,
                                                        bindAddress=("127.0.0.2", 0)), device), PROBE_TIMEOUT)
        response = await device.request(m.LoginRequest(dev_id=DEV_ID, dev_key=DEV_KEY, dev_ver="1.0",
                                                       local_ip="127.0.0.2", upnp_ip="0.0.0.0"),
                                        PROBE_TIMEOUT - (time.perf_counter() - started))
        ok = response.result == 0
    except Exception:
        ok = False
    finally:
        if device.transport is not None:
            device.transport.abortConnection()
    return (time.perf_counter() - started) * 1000 if ok else None


def summary(values: list[float | None]) -> dict[str, Any]:
    good = sorted(v for v in values if v is not None)
    return {
        "probes": len(values),
        "failed": len(values) - len(good),
        "p50_ms": round(statistics.median(good), 1) if good else None,
        "max_ms": round(good[-1], 1) if good else None,
    }


async def probes(ports: dict[str, int], seconds: float) -> dict[str, Any]:
    http: list[float | None] = []
    login: list[float | None] = []
    end = time.perf_counter() + seconds
    running: list[Deferred[Any]] = []
    while time.perf_counter() < end:
        running.append(Deferred.fromCoroutine(probe_http(ports["http"])).addCallback(http.append))
        running.append(Deferred.fromCoroutine(probe_login(ports["gateway"])).addCallback(login.append))
        await deferLater(reactor, 0.25, lambda: None)
    await gatherResults(running)
    return {"http_wsdl": summary(http), "device_login": summary(login)}


class ServerProcess(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ready: Deferred[dict[str, int]] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.buffer = b""

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.buffer += data
        if b"\n" in self.buffer and not self.ready.called:
            self.ready.callback(json.loads(self.buffer.split(b"\n", 1)[0]))

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        sys.stderr.write(data.decode(errors="replace"))

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.ended.callback(None)


async def run_one(name: str, args: argparse.Namespace, db: str) -> dict[str, Any]:
    server = ServerProcess()
    process = reactor.spawnProcess(server, sys.executable,
                                   [sys.executable, __file__, "server", db, name, str(args.fd_limit)],
                                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    ports = await server.ready
    quiet = await probes(ports, 2.0)

    held: list[Quiet] = []
    window = DeferredSemaphore(args.window)
    failed_connects = 0

    async def one() -> None:
        nonlocal failed_connects
        await window.acquire()
        try:
            q = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", ports["gateway"], timeout=5,
                                                         bindAddress=("127.0.0.1", 0)), Quiet())
            held.append(q)
        except Exception:
            failed_connects += 1
        finally:
            window.release()

    started = time.perf_counter()
    flood = gatherResults([Deferred.fromCoroutine(one()) for _ in range(args.flood)])
    during = await probes(ports, args.seconds)
    await flood
    flood_s = time.perf_counter() - started
    still_open = sum(1 for q in held if not q.lost.called)
    for q in held:
        if not q.lost.called and q.transport is not None:
            q.transport.abortConnection()
    process.signalProcess("TERM")
    await server.ended
    return {
        "limits": name,
        "fd_limit": args.fd_limit,
        "flood_connects": args.flood,
        "flood_connected": len(held),
        "flood_connect_failures": failed_connects,
        "flood_still_open_at_end": still_open,
        "flood_s": round(flood_s, 2),
        "quiet": quiet,
        "during_flood": during,
    }


async def drive(args: argparse.Namespace) -> list[dict[str, Any]]:
    from globaleye.store.sqlite import SQLiteStore

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = []
    for name in args.limits:
        db = str(Path(tempfile.mkdtemp(prefix="globaleye-flood-")) / "bench.sqlite3")
        store = SQLiteStore(db)
        await store.import_devices([Device(dev_id=DEV_ID, dev_key=DEV_KEY)])
        await store.close()
        result = await run_one(name, args, db)
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "server":
        db, name, fd_limit = sys.argv[2], sys.argv[3], int(sys.argv[4])
        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(serve(db, LIMITS[name], fd_limit)))
        reactor.run()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", type=int, default=3000, help="connections the flooding address opens")
    parser.add_argument("--window", type=int, default=500, help="connects in flight at once")
    parser.add_argument("--fd-limit", type=int, default=1024, help="the platform's soft RLIMIT_NOFILE")
    parser.add_argument("--seconds", type=float, default=8.0, help="probing time during the flood")
    parser.add_argument("--limits", nargs="+", default=list(LIMITS), choices=list(LIMITS))
    args = parser.parse_args()
    outcome: list[Any] = []

    async def run() -> None:
        try:
            outcome.extend(await drive(args))
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()))
    reactor.run()


if __name__ == "__main__":
    main()
