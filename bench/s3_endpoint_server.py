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
  no quota: the endpoint alone), or with ``--events cloud`` the platform's own application layer:
  :class:`globaleye.app.cloud.CloudService` over a :class:`~globaleye.store.sqlite.SQLiteStore` beside
  the data directory, filled first with the ``--cameras`` devices, one account per
  ``--cameras-per-account`` of them (bound), each device's credential, and device and account quotas
  (``--quota-mb``, large enough never to be reached): every upload then goes through the quota checks
  (``admit``), the reading of the recording's first and last PTS and the index insert (``stored``), as
  in ``twistd globaleye``.  Credentials are then the store's (CloudService's lookup and its cache),
  not a dict.

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


async def cloud_events(service: Any, reactor: Any, cameras: int, per_account: int, quota_mb: int,
                       db_path: Path) -> Any:
    """The platform's CloudService (credentials and events) over a store filled for ``cameras`` devices."""
    from globaleye.app.access import CameraAccess
    from globaleye.app.cloud import CloudService, CloudSettings
    from globaleye.store import Account, Binding, CloudCredential, Device
    from globaleye.store.sqlite import SQLiteStore

    store = SQLiteStore(str(db_path))
    now = reactor.seconds()
    await store.import_devices([Device(camera_keys(n)[0], "k", created_at=now) for n in range(cameras)])
    for n in range(cameras):
        dev_id, access, secret = camera_keys(n)
        account = f"bench{n // per_account:06d}"
        if n % per_account == 0:
            await store.create_account(Account(account, "h", created_at=now))
        await store.bind_device(Binding(account, dev_id, bound_at=now), per_account)
        await store.add_cloud_credential(CloudCredential(access, dev_id, secret, now))
    cloud = CloudService(store, service.backend, reactor,
                         CloudSettings(device_quota=quota_mb, account_quota=quota_mb * per_account,
                                       access_key=PLATFORM_KEYS[0], secret_key=PLATFORM_KEYS[1]),
                         CameraAccess(store, None))  # type: ignore[arg-type]  # no gateway: no 7BH asked
    service.endpoint.credentials = cloud
    service.endpoint.events = cloud
    return cloud


class EmbeddedServer:
    """This script in a child process (for the benches): :meth:`start`, then :attr:`url` and :attr:`pid`."""

    def __init__(self, data_dir: Path, cameras: int = 100, core: int | None = None, threads: int = 4,
                 start_timeout: float = 120.0, events: str = "count") -> None:
        self.data_dir = data_dir
        self.cameras = cameras
        self.core = core
        self.threads = threads
        self.start_timeout = start_timeout
        self.events = events
        self.process: Any = None
        self.url = ""
        self.pid = 0
        self.counters: dict[str, int] = {}

    def start(self) -> EmbeddedServer:
        import select
        import shutil
        import subprocess

        command = [sys.executable, str(Path(__file__).resolve()), "--data-dir", str(self.data_dir),
                   "--cameras", str(self.cameras), "--threads", str(self.threads), "--events", self.events]
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
    ap.add_argument("--events", choices=("count", "cloud"), default="count",
                    help="count: events that only count, credentials a dict; cloud: the platform's CloudService "
                    "over an SQLite store (index, quotas, the store's credentials)")
    ap.add_argument("--cameras-per-account", type=int, default=4, help="--events cloud: devices bound per account")
    ap.add_argument("--quota-mb", type=int, default=1_000_000, help="--events cloud: each device's quota (MB)")
    ap.add_argument("--log", type=Path, help="log (twisted.logger, text) to this file")
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
        counts = events.counts if args.events == "count" else {}
        print(json.dumps({**counts, **service.endpoint.counters}), file=sys.stderr, flush=True)
        reactor.callFromThread(reactor.stop)

    service.ready.addCallbacks(ready, failed)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.log:
        from twisted.logger import globalLogBeginner, textFileLogObserver

        globalLogBeginner.beginLoggingTo([textFileLogObserver(open(args.log, "a"))])  # noqa: SIM115
    if args.events == "cloud":
        from twisted.internet.defer import Deferred

        def setup() -> None:
            d = Deferred.fromCoroutine(cloud_events(service, reactor, args.cameras, args.cameras_per_account,
                                                    args.quota_mb, args.data_dir.parent / "store.sqlite3"))
            d.addCallbacks(lambda _: service.startService(), failed)

        reactor.callWhenRunning(setup)
    else:
        reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
