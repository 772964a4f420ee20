"""Restart storm: SIGKILL the platform with N cameras online, start it again, time the way back.

    python3 bench/restart_storm.py --cameras 2000
    python3 bench/restart_storm.py --cameras 2000 --kill-at 0.25   # kill in the middle of the first storm

Two processes on loopback:

* the **platform**: a real ``twistd -n globaleye`` (roles gateway and http, SQLite in a
  temporary directory, enrollment closed: the N cameras are imported first with
  ``globaleye device import``, as an operator would);
* the **driver** (this process): N simulated cameras (:class:`globaleye.sim.fleet.Fleet`,
  the simulator's own cameras with the spec's timers: §7.2's 5 minutes, §7.3.3's 3 minutes,
  back-off from 1 s to 60 s), no TURN relay.

The driver waits until ``--kill-at`` of the cameras are online (1.0: all of them), sends
SIGKILL to twistd, starts it again at once on the same ports and database, and reports:
the time until it listens again, until every camera is online again, how many cameras
registered again and how many registrations were refused; then, with the platform stopped,
``PRAGMA integrity_check`` and the device count of the database.  A benchmark, not a test:
record the figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from globaleye.sim.camera import Timing, device_key  # noqa: E402
from globaleye.sim.fleet import Fleet  # noqa: E402

FIRST_ID = 81100000001
SEED = "restart-storm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Platform:
    def __init__(self, workdir: Path, cameras: int) -> None:
        self.workdir = workdir
        self.http_port, self.gateway_port = free_port(), free_port()
        self.config = workdir / "globaleye.ini"
        self.config.write_text(f"""
[globaleye]
roles = gateway, http
public_host = 127.0.0.1
data_dir = {workdir}
[database]
url = sqlite:///{workdir / 'globaleye.sqlite3'}
[http]
port = {self.http_port}
[gateway]
port = {self.gateway_port}
[limits]
# Every simulated shop connects from 127.0.0.1; in the field each has its own address.
per_address = 0
""", encoding="utf-8")
        self.env = dict(os.environ, PYTHONPATH=str(ROOT))
        devices = workdir / "devices.csv"
        with devices.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            for index in range(cameras):
                dev_id = f"{FIRST_ID + index:011d}"
                writer.writerow([dev_id, device_key(SEED, dev_id), dev_id[:3], "IPC-bench"])
        subprocess.run([sys.executable, "-c", "from globaleye.cli import main; main()", "--config", str(self.config),
                        "device", "import", str(devices)], check=True, env=self.env, stdout=subprocess.DEVNULL)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.workdir / f"twistd-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             "--logfile=-", "globaleye", "--config", str(self.config)],
            env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait()

    def log_count(self, text: str) -> int:
        return sum((self.workdir / f"twistd-{n}.log").read_text(errors="replace").count(text)
                   for n in range(1, self.starts + 1))


async def wait_for(condition: Any, timeout: float, step: float = 0.05) -> float | None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            return None
        await deferLater(reactor, step, lambda: None)
    return time.monotonic() - start


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="restart-storm-"))
    platform = Platform(workdir, args.cameras)
    try:
        return await storm(args, workdir, platform)
    finally:
        if platform.process is not None and platform.process.poll() is None:
            platform.kill(signal.SIGTERM)  # also when the run gives up: leave no platform behind


async def storm(args: argparse.Namespace, workdir: Path, platform: Platform) -> dict[str, Any]:
    platform.start()
    up = await wait_for(lambda: listening(platform.http_port) and listening(platform.gateway_port), 30)
    if up is None:
        raise SystemExit(f"the platform did not start; see {workdir}")
    fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{platform.http_port}/register", seed=SEED,
                  relay=False, timing=Timing())
    cameras = [fleet.add(f"{FIRST_ID + index:011d}") for index in range(args.cameras)]
    fleet.start(ramp=args.ramp)

    def online() -> int:
        return sum(camera.online for camera in cameras)

    first = await wait_for(lambda: online() >= args.kill_at * args.cameras, args.timeout)
    if first is None:
        raise SystemExit(f"only {online()} of {args.cameras} cameras came online; see {workdir}")
    registered_before = sum(camera.registered_at is not None for camera in cameras)
    registrations_before = {id(c): c.registered_at for c in cameras}
    logins_before = {id(c): c.logins for c in cameras}
    online_at_kill = online()
    platform.kill()
    killed = time.monotonic()
    platform.start()
    relisten = await wait_for(lambda: listening(platform.http_port) and listening(platform.gateway_port), 30)
    progress: list[tuple[float, int]] = []
    last = [0.0]

    def all_back() -> bool:
        count = online()
        now = time.monotonic() - killed
        if now - last[0] >= 5:
            last[0] = now
            progress.append((round(now, 1), count))
            print(f"  {now:6.1f} s after the kill: {count}/{args.cameras} online", flush=True)
        # Online again means logged in to the new process: a login after the kill.
        return count == args.cameras and all(c.logins > logins_before[id(c)] or not logins_before[id(c)]
                                             for c in cameras)

    back = await wait_for(all_back, args.timeout)
    recovered = time.monotonic() - killed if back is not None else None
    reregistered = sum(c.registered_at != registrations_before[id(c)] for c in cameras)
    online_at_end = online()
    await fleet.stop()
    platform.kill(signal.SIGTERM)
    connection = sqlite3.connect(workdir / "globaleye.sqlite3")
    integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    devices, registered, logged_in = connection.execute(
        "SELECT COUNT(*), COUNT(registered_at), COUNT(login_at) FROM devices").fetchone()
    connection.close()
    return {
        "cameras": args.cameras, "kill_at": args.kill_at, "first_storm_s": round(first, 1),
        "online_at_kill": online_at_kill, "registered_at_kill": registered_before,
        "relisten_s": round(relisten, 2) if relisten is not None else None,
        "all_online_again_s": round(recovered, 1) if recovered is not None else None,
        "online_at_end": online_at_end, "cameras_that_registered_again": reregistered,
        "registrations_refused_too_soon": platform.log_count("between registrations"),
        "integrity_check": integrity, "devices_in_db": devices, "devices_registered": registered,
        "devices_logged_in": logged_in, "progress": progress, "workdir": str(workdir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=2000)
    parser.add_argument("--kill-at", type=float, default=1.0, help="fraction online when the platform is killed")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread the first start over this many seconds")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    raise_fd_limit()
    result: dict[str, Any] = {}

    async def go() -> None:
        result.update(await run(args))

    done: Deferred[None] = Deferred.fromCoroutine(go())
    done.addErrback(lambda f: (result.setdefault("error", f.getErrorMessage()), f.printTraceback()))
    done.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    if "error" in result or result.get("all_online_again_s") is None:
        sys.exit(1)


if __name__ == "__main__":
    main()
