"""GlobalEye's embedded S3 endpoint alone in a process, for the storage benches (not a product entry point).

    python3 bench/s3_endpoint_server.py --data-dir /tmp/s3data --cameras 10000
    taskset -c 0 python3 bench/s3_endpoint_server.py --data-dir DIR --port 0     # what the benches do

Starts :class:`globaleye.s3.endpoint.StorageService` on 127.0.0.1 (``--port``, 0: the kernel picks) over
the embedded :class:`~globaleye.s3.files.FileBackend` in ``--data-dir`` (fsync and rename per object),
with

* a dict :class:`~globaleye.s3.backend.CredentialLookup`: the platform's key (``--platform-key``,
  :data:`PLATFORM_KEYS` by default) and ``--cameras`` camera principals, :func:`camera_keys` (the
  benches' clients derive the same keys);
* a :class:`~globaleye.s3.backend.StorageEvents` that admits everything and only counts (no index,
  no quota: the benches measure the endpoint, not the application layer behind it).

Once listening it prints one JSON line ``{"port": ..., "pid": ...}`` on stdout; SIGTERM or SIGINT
stop it, printing the counters as a last JSON line on stderr.  The lead wires the storage role into
``twistd globaleye`` (platform/tap.py); this script exists so that the benches need no platform.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: The platform's own key in the benches (it may create buckets, list and delete everything).
PLATFORM_KEYS = ("BENCHPLATFORMKEY", "bench-platform-secret")


def camera_keys(n: int) -> tuple[str, str, str]:
    """Camera number ``n``'s (DevID, access key, secret): derived, so that clients need no list.

    The access key starts with ``<DevID>_`` as the cameras' keys do (globaleye/s3/backend.py)."""
    dev_id = f"BENCH{n:06d}"
    return dev_id, f"{dev_id}_AK", hashlib.sha256(f"bench-secret-{n}".encode()).hexdigest()[:40]


class DictCredentials:
    """All principals in one dict, looked up without I/O (the platform's lookup is a cache too)."""

    def __init__(self, principals: dict[str, Any]) -> None:
        self.principals = principals

    async def principal(self, access_key: str) -> Any:
        return self.principals.get(access_key)


class CountingEvents:
    """Admits every upload, counts what was stored and deleted."""

    def __init__(self) -> None:
        self.counts = {"admitted": 0, "stored": 0, "bytes_stored": 0, "deleted": 0}

    async def admit(self, principal: Any, bucket: str, key: str, size: int) -> str | None:
        self.counts["admitted"] += 1
        return None

    async def stored(self, principal: Any, info: Any) -> None:
        self.counts["stored"] += 1
        self.counts["bytes_stored"] += info.size

    async def deleted(self, principal: Any, bucket: str, key: str) -> None:
        self.counts["deleted"] += 1


class EmbeddedServer:
    """This script in a child process (for the benches): :meth:`start`, then :attr:`url` and :attr:`pid`."""

    def __init__(self, data_dir: Path, cameras: int = 100, core: int | None = None, threads: int = 4,
                 start_timeout: float = 60.0) -> None:
        self.data_dir = data_dir
        self.cameras = cameras
        self.core = core
        self.threads = threads
        self.start_timeout = start_timeout
        self.process: Any = None
        self.url = ""
        self.pid = 0
        self.counters: dict[str, int] = {}

    def start(self) -> EmbeddedServer:
        import select
        import shutil
        import subprocess

        command = [sys.executable, str(Path(__file__).resolve()), "--data-dir", str(self.data_dir),
                   "--cameras", str(self.cameras), "--threads", str(self.threads)]
        if self.core is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(self.core), *command]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        ready, _, _ = select.select([self.process.stdout], [], [], self.start_timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"the embedded endpoint did not start: {self.process.stderr.read()[-2000:]}")
        started = json.loads(line)
        self.pid = int(started["pid"])
        self.url = f"http://127.0.0.1:{started['port']}"
        return self

    def stop(self) -> dict[str, int]:
        """SIGTERM, wait (bounded), then the counters it printed."""
        import signal
        import subprocess

        if self.process is None or self.process.poll() is not None:
            return self.counters
        self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
        for line in reversed((err or "").splitlines()):
            if line.startswith("{"):
                self.counters = json.loads(line)
                break
        return self.counters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, type=Path, help="the FileBackend's directory (created if missing)")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--cameras", type=int, default=100, help="camera principals in the credential dict")
    ap.add_argument("--threads", type=int, default=4, help="the service's thread pool (disk work)")
    ap.add_argument("--platform-key", default=":".join(PLATFORM_KEYS), help="ACCESS:SECRET of the platform")
    args = ap.parse_args()

    import signal

    from twisted.internet import reactor

    from globaleye.s3.backend import Principal
    from globaleye.s3.endpoint import StorageService, StorageSettings

    access, _, secret = args.platform_key.partition(":")
    principals: dict[str, Any] = {access: Principal(access, secret)}
    for n in range(args.cameras):
        dev_id, camera_access, camera_secret = camera_keys(n)
        principals[camera_access] = Principal(camera_access, camera_secret, dev_id)
    events = CountingEvents()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    service = StorageService(StorageSettings(port=args.port, data_dir=str(args.data_dir)), None,
                             DictCredentials(principals), events, reactor, threads=args.threads)

    def ready(_: object) -> None:
        print(json.dumps({"port": service.port.getHost().port, "pid": os.getpid()}), flush=True)

    def failed(failure: Any) -> None:
        print(f"the endpoint did not start: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()

    def stop(*_: object) -> None:
        print(json.dumps({**events.counts, **service.endpoint.counters}), file=sys.stderr, flush=True)
        reactor.callFromThread(reactor.stop)

    service.ready.addCallbacks(ready, failed)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
