"""10,000 cameras each uploading a 5-minute segment every 5 minutes, paced, into one S3 endpoint process.

    python3 bench/camera_uploads.py                                  # embedded endpoint, 33.3/s for 60 s
    python3 bench/camera_uploads.py --targets embedded,moto --seconds 60 --json /tmp/cams.json
    python3 bench/camera_uploads.py --rate 66.7 --seconds 30         # twice the load

Issue 12's load: 10,000 cameras, each pushing its main stream as one 5-minute MPEG-TS file every
5 minutes (§7.1.1) = 10,000 / 300 s = 33.3 uploads/s sustained, about 70 MB/s, so about 2.1 MB per
upload (``--size``).  It is held by ONE endpoint process (pinned to ``--server-core``) if the
uploads go in at that rate, without errors, with a latency far below the period.

* **Open loop**: upload ``i`` is scheduled at ``start + i / rate`` whatever happened to the ones
  before (a slow server does not slow the cameras down); ``--seconds`` bounds the run (``rate *
  seconds`` uploads, no more).  Its latency is counted from its *scheduled* time to the server's
  answer, so an upload that waited for a free client thread counts that wait too (no coordinated
  omission); ``late`` counts uploads sent more than 100 ms after their time (then the clients, not
  the server, are short).
* **Cameras**: upload ``i`` is camera ``i mod --cameras``'s, signed with that camera's own key
  (bench/s3_endpoint_server.py :func:`camera_keys`; the endpoint's credential dict holds all
  ``--cameras`` principals and the platform's), object ``GlobalEyeRecord/<DevID>_1_<YYYYMMDDHHMMSS>.ts``
  (the camera may write only its own prefix).  In 60 s about 2,000 of the 10,000 upload, as in life.
* **Clients**: ``--clients`` processes x ``--threads`` threads pinned to ``--client-core``, each
  thread with one keep-alive ``http.client`` connection, sending raw PUTs signed with our own
  Signature V4 signer (:func:`globaleye.s3.sigv4.sign_v4`, header auth, the payload's hex SHA-256
  signed: the server hashes every body).  Not boto3: boto3 costs several ms of CPU per PUT in
  request building, hooks and hashing the body again, and on the one core left for the clients
  that would make the clients what is measured; here each process precomputes the SHA-256 and MD5
  of ``--bodies`` random bodies once and reuses them (a camera hashes its own file, on its own CPU).
  Every answer's ETag is checked against the body's MD5.
* **Server**: its CPU (user+system from /proc/<pid>/stat over the run, 100 % = one core), MB
  stored per CPU-second, RSS (VmRSS sampled every second: start, max, end); each core's busy time
  from /proc/stat.
* **Targets** (``--targets``): ``embedded``: GlobalEye's endpoint (bench/s3_endpoint_server.py:
  StorageService over the FileBackend in ``--dir``, fsync and rename per object, events that only
  count; ``--events cloud``: the platform's own CloudService behind it, see below); ``moto``: moto's server with signature checks on (tests/s3harness.py), the same paced
  load for the ratio; moto has one IAM key, so every upload is signed with it, and keeps the
  objects in memory (its RSS grows by what it stores).  One target at a time, each started fresh.
* ``--events cloud``: the embedded endpoint with the platform's application layer behind it, as
  ``twistd globaleye`` wires it: :class:`globaleye.app.cloud.CloudService` over an SQLite store
  holding the ``--cameras`` devices (bound to accounts, with device and account quotas) and their
  credentials; each upload is admitted through the quota checks, its duration read from its first
  and last PTS, and indexed.  The bodies are then real MPEG-TS (``--body ts``: H.264-typed access
  units of random bytes at 10 fps over 300 s, muxed by the simulator's TsMuxer, about ``--size``
  bytes) so that the duration is read as it would be; at the end the index must hold every upload.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from s3_endpoint_server import PLATFORM_KEYS, EmbeddedServer, camera_keys  # noqa: E402
from s3_ingest import cpu_seconds, machine_info  # noqa: E402

BUCKET = "GlobalEyeRecord"
REGION = "us-east-1"
#: The first segment's start time; camera n's k-th segment starts k * 300 s later.
EPOCH = 1_795_996_800  # 2026-12-01 00:00:00 UTC
PERIOD = 300


# --------------------------------------------------------------------------- clients


def segment_key(dev_id: str, k: int) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(EPOCH + k * PERIOD))
    return f"{dev_id}_1_{stamp}.ts"


def ts_body(size: int, seconds: int = PERIOD, fps: int = 10) -> bytes:
    """An MPEG-TS file of about ``size`` bytes: ``seconds`` of H.264-typed access units (random bytes, an
    IDR every second) muxed by the simulator's TsMuxer, so that its first and last PTS say ``seconds``."""
    import random

    from globaleye.sim.media.tsmux import PCR_LEAD, TS_CLOCK, TsMuxer

    frames = seconds * fps
    per = size / frames * 184 / 188 - 40
    body = b""
    for _ in range(3):  # TS packets make the size jump: correct the payload twice at most
        muxer, rng = TsMuxer(), random.Random(len(body))
        out = [muxer.tables()]
        for k in range(frames):
            key = k % fps == 0
            n = max(8, int(per * rng.uniform(0.5, 1.5)) * (3 if key else 1))
            out.append(muxer.access_unit([bytes([0x65 if key else 0x41]) + os.urandom(n)],
                                         PCR_LEAD + k * TS_CLOCK // fps, key))
        body = b"".join(out)
        if abs(len(body) - size) < size * 0.01:
            break
        per *= size / len(body)
    return body


def client_process(job: dict[str, Any]) -> dict[str, Any]:
    """One client process: its slots (``i`` with ``i % clients == index``), by ``threads`` threads."""
    from globaleye.s3 import sigv4

    if job["core"] is not None:
        os.sched_setaffinity(0, {job["core"]})
    bodies = []
    for _ in range(job["bodies"]):
        body = ts_body(job["size"]) if job["body"] == "ts" else os.urandom(job["size"])
        bodies.append((body, hashlib.sha256(body).hexdigest(), hashlib.md5(body).hexdigest()))
    host = f"127.0.0.1:{job['port']}"
    slots = iter(range(job["index"], job["total"], job["clients"]))
    lock = threading.Lock()
    records: list[tuple[float, float, float, int, str, int]] = []  # scheduled, sent, answered, status, error, size

    def keys_for(i: int) -> tuple[str, str, str]:
        camera = i % job["cameras"]
        dev_id, access, secret = camera_keys(camera)
        if job["shared_keys"]:
            access, secret = job["shared_keys"]
        return segment_key(dev_id, i // job["cameras"]), access, secret

    def worker() -> None:
        connection: http.client.HTTPConnection | None = None
        while True:
            with lock:
                i = next(slots, None)
            if i is None:
                break
            scheduled = job["start"] + i / job["rate"]
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
            key, access, secret = keys_for(i)
            body, sha256, md5 = bodies[i % len(bodies)]
            path = f"/{BUCKET}/{key}"
            headers = {"content-type": "video/mp2t"}
            headers.update(sigv4.sign_v4("PUT", host, path, [], headers, access, secret, REGION, time.time(),
                                         payload=sha256))
            headers["Host"] = host
            headers["Content-Length"] = str(len(body))
            sent = time.time()
            status, error = 0, ""
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, timeout=job["timeout"])
                connection.request("PUT", path, body=body, headers=headers)
                answer = connection.getresponse()
                text = answer.read()
                status = answer.status
                if status != 200:
                    error = f"HTTP {status} {text[:200]!r}"
                elif answer.getheader("ETag", "").strip('"') != md5:
                    error = f"wrong ETag {answer.getheader('ETag')}"
                if answer.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                error = f"{type(e).__name__}: {e}"
                if connection is not None:
                    connection.close()
                connection = None
            records.append((scheduled, sent, time.time(), status, error, len(body)))

    cpu0 = time.process_time()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(job["threads"])]
    for thread in threads:
        thread.start()
    deadline = job["start"] + job["total"] / job["rate"] + job["timeout"] + 30
    for thread in threads:
        thread.join(max(0.0, deadline - time.time()))
    return {"records": records, "cpu": time.process_time() - cpu0,
            "unfinished": sum(thread.is_alive() for thread in threads)}


# --------------------------------------------------------------------------- the server side


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def core_ticks() -> dict[str, tuple[int, int]]:
    """Per core: (busy ticks, all ticks) from /proc/stat (iowait counts as idle)."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values]
            idle = numbers[3] + numbers[4]
            ticks[name] = (sum(numbers) - idle, sum(numbers))
    return ticks


class Sampler(threading.Thread):
    """The server's RSS every second (bounded by ``limit`` seconds)."""

    def __init__(self, pid: int, limit: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.limit = limit
        self.rss: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.stopping.is_set() and time.monotonic() < deadline:
            value = rss_bytes(self.pid)
            if value is not None:
                self.rss.append(value)
            self.stopping.wait(1.0)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def create_bucket(url: str, keys: tuple[str, str]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id=keys[0],
                          aws_secret_access_key=keys[1])
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.ClientError as e:
        if "BucketAlreadyOwnedByYou" not in str(e) and "BucketAlreadyExists" not in str(e):
            raise


def run_target(name: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    pin = args.pin
    server: Any
    shared_keys: tuple[str, str] | None = None
    if name == "embedded":
        server = EmbeddedServer(scratch / "data", cameras=args.cameras, core=args.server_core if pin else None,
                                threads=args.server_threads, events=args.events).start()
        create_bucket(server.url, PLATFORM_KEYS)
        pid, url = server.pid, server.url
    elif name == "moto":
        from tests.s3harness import MotoServer

        server = MotoServer().start()
        if pin:
            subprocess.run(["taskset", "-a", "-p", "-c", str(args.server_core), str(server.pid)], check=True,
                           capture_output=True)
        shared_keys = tuple(server.good)
        create_bucket(server.url, shared_keys)
        pid, url = server.pid, server.url
    else:
        raise SystemExit(f"unknown target {name!r} (embedded, moto)")
    total = int(args.rate * args.seconds)
    port = int(url.rsplit(":", 1)[1])
    try:
        rss_start = rss_bytes(pid)
        start = time.time() + args.warmup
        jobs = [{"index": p, "clients": args.clients, "total": total, "rate": args.rate, "start": start,
                 "port": port, "cameras": args.cameras, "threads": args.threads, "size": args.size,
                 "bodies": args.bodies, "body": args.body, "timeout": args.timeout, "shared_keys": shared_keys,
                 "core": args.client_core if pin else None} for p in range(args.clients)]
        ctx = multiprocessing.get_context("spawn")
        sampler = Sampler(pid, args.seconds + args.warmup + args.timeout + 60)
        with ctx.Pool(args.clients) as pool:
            pending = pool.map_async(client_process, jobs)
            while time.time() < start:
                time.sleep(min(0.05, max(0.0, start - time.time())))
            cpu0, ticks0, t0 = cpu_seconds(pid), core_ticks(), time.time()
            sampler.start()
            results = pending.get(timeout=args.seconds + args.warmup + args.timeout + 120)
            cpu1, ticks1, t1 = cpu_seconds(pid), core_ticks(), time.time()
        sampler.stopping.set()
        sampler.join(5)
        rss_end = rss_bytes(pid)
    finally:
        counters = server.stop() if name == "embedded" else {}
        if name == "moto":
            server.stop()
    indexed = None
    if name == "embedded" and args.events == "cloud":
        import sqlite3

        with sqlite3.connect(scratch / "store.sqlite3") as db:
            indexed = db.execute("SELECT COUNT(*), COALESCE(SUM(duration), 0) FROM cloud_objects").fetchone()
    records = [r for result in results for r in result["records"]]
    ok = [r for r in records if not r[4]]
    errors: dict[str, int] = {}
    for r in records:
        if r[4]:
            kind = r[4].split(" ", 2)[0] + (" " + r[4].split(" ", 2)[1] if r[4].startswith("HTTP") else "")
            errors[kind] = errors.get(kind, 0) + 1
    latencies = [(r[2] - r[0]) * 1000 for r in ok]
    service = [(r[2] - r[1]) * 1000 for r in ok]
    last = max((r[2] for r in records), default=t1)
    window = max(last - start, 1e-9)
    wall = max(t1 - t0, 1e-9)
    server_cpu = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None
    stored_mb = sum(r[5] for r in ok) / 1e6
    busy = {core: round((ticks1[core][0] - ticks0[core][0]) / max(1, ticks1[core][1] - ticks0[core][1]) * 100, 1)
            for core in ticks1 if core in ticks0}
    result = {
        "target": name + ("+cloud" if name == "embedded" and args.events == "cloud" else ""),
        "body": args.body, "body_bytes": round(sum(r[5] for r in records) / max(1, len(records))), "cameras": args.cameras, "rate_target": round(args.rate, 2), "scheduled": total,
        "answered": len(records), "ok": len(ok), "unfinished": sum(r["unfinished"] for r in results) + total - len(records),
        "errors": errors,
        "achieved_per_s": round(len(ok) / window, 2), "MBps": round(stored_mb / window, 1),
        "seconds": round(window, 2),
        "late": sum(1 for r in records if r[1] - r[0] > 0.1),
        "latency_ms": {"p50": _round(percentile(latencies, 50)), "p90": _round(percentile(latencies, 90)),
                       "p99": _round(percentile(latencies, 99)), "max": _round(max(latencies, default=None))},
        "service_ms_p99": _round(percentile(service, 99)),
        "server_cpu_pct": round(server_cpu / wall * 100, 1) if server_cpu is not None else None,
        "MB_per_cpu_second": round(stored_mb / server_cpu, 1) if server_cpu else None,
        "server_rss_MB": {"start": _mb(rss_start), "max": _mb(max(sampler.rss, default=None)), "end": _mb(rss_end)},
        "client_cpu_pct": round(sum(r["cpu"] for r in results) / wall * 100, 1),
        "core_busy_pct": busy,
        "server_counters": counters,
        "indexed": {"objects": indexed[0], "seconds": indexed[1]} if indexed else None,
    }
    result["holds"] = (not errors and (indexed is None or indexed[0] == len(ok)) and result["unfinished"] == 0 and len(ok) == total
                       and result["achieved_per_s"] >= 0.98 * args.rate
                       and (result["latency_ms"]["p99"] or 0) < args.period_ms)
    print(f"{name}: {json.dumps(result)}", flush=True)
    return result


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def _mb(value: int | None) -> float | None:
    return round(value / 1e6, 1) if value is not None else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default="embedded", help="comma-separated: embedded, moto")
    ap.add_argument("--cameras", type=int, default=10000, help="camera principals (and cameras uploading)")
    ap.add_argument("--rate", type=float, default=10000 / PERIOD, help="uploads per second (10,000 / 300 s)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the paced load lasts")
    ap.add_argument("--size", type=int, default=2_100_000, help="bytes per upload (70 MB/s / 33.3)")
    ap.add_argument("--clients", type=int, default=2, help="client processes")
    ap.add_argument("--threads", type=int, default=16, help="threads (connections) per client process")
    ap.add_argument("--bodies", type=int, default=4, help="distinct random bodies per client process")
    ap.add_argument("--timeout", type=float, default=30.0, help="socket timeout of one upload")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds between starting the clients and slot 0")
    ap.add_argument("--period-ms", type=float, default=5000.0,
                    help="'holds' needs the p99 latency under this (the cameras' upload must not pile up)")
    ap.add_argument("--events", choices=("count", "cloud"), default="count",
                    help="behind the embedded endpoint: events that only count, or the platform's CloudService")
    ap.add_argument("--body", choices=("auto", "random", "ts"), default="auto",
                    help="upload bodies: random bytes or MPEG-TS (auto: ts with --events cloud)")
    ap.add_argument("--server-threads", type=int, default=4, help="the embedded endpoint's thread pool")
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--client-core", type=int, default=1)
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--dir", type=Path, help="where the embedded endpoint keeps its data (a temporary directory "
                    "made there, removed at the end); default: beside this checkout")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.body == "auto":
        args.body = "ts" if args.events == "cloud" else "random"
    args.pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    machine = machine_info()
    results = []
    for name in [t.strip() for t in args.targets.split(",") if t.strip()]:
        scratch = Path(tempfile.mkdtemp(prefix="camera-uploads-", dir=args.dir or ROOT))
        try:
            results.append(run_target(name, args, scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(f"{'target':15} {'rate':>6} {'ok':>5} {'err':>4} {'late':>4} {'achieved/s':>10} {'MB/s':>6} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'srv cpu%':>8} {'MB/cpu-s':>8} {'rss max MB':>10} {'cli cpu%':>8} holds")
    for r in results:
        lat = r["latency_ms"]
        print(f"{r['target']:15} {r['rate_target']:>6} {r['ok']:>5} {sum(r['errors'].values()):>4} {r['late']:>4} "
              f"{r['achieved_per_s']:>10} {r['MBps']:>6} {lat['p50']!s:>7} {lat['p99']!s:>7} {lat['max']!s:>7} "
              f"{r['server_cpu_pct']!s:>8} {r['MB_per_cpu_second']!s:>8} {r['server_rss_MB']['max']!s:>10} "
              f"{r['client_cpu_pct']:>8} {r['holds']}")
    print("machine: " + " ".join(f"{k}={v!r}" if " " in v else f"{k}={v}" for k, v in machine.items())
          + " pinned=" + (f"server:{args.server_core} clients:{args.client_core}" if args.pin else "no"))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "params": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=1))
        print(f"JSON written to {args.json}")


if __name__ == "__main__":
    main()
