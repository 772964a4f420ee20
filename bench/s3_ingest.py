"""Ingest of 2 MB PUTs (Signature V4 checked) into S3 endpoints, side by side with the disk's raw speed.

    python3 bench/s3_ingest.py                                   # moto's server + dd
    python3 bench/s3_ingest.py --uploaders 1,4,16 --puts 200 --json /tmp/s3.json
    python3 bench/s3_ingest.py --embedded-start --puts 300     # + GlobalEye's endpoint, started here
    python3 bench/s3_ingest.py --embedded http://127.0.0.1:9000 --embedded-keys AK:SECRET \\
        --embedded-pid 1234 --dir /var/lib/globaleye/storage  # + GlobalEye's own endpoint
    python3 bench/s3_ingest.py --no-moto --endpoint https://s3.example --keys AK:SECRET --region cn-gd

Issue 12's ingest figure: a camera uploads a 5-minute MPEG-TS segment as one PUT (§7.1.1); 10,000
cameras make about 33 such PUTs a second.  Each target is measured the same way:

* **uploaders**: N worker *processes* (so that the client's signing and hashing do not share one
  GIL), each with its own boto3 client (path addressing, Signature V4: over http boto3 signs the
  payload's SHA-256 too), PUTting the same 2 MiB body (``--size``) under keys of its own
  (``cam<worker>_1_<n>.ts``) until all ``--puts`` are done or ``--seconds`` are over.
* **MB/s and PUTs/s**: the bytes of the PUTs answered 200, from the first request sent to the last
  answer (MB is 10^6 bytes); every answer's ETag is compared with the body's MD5, and a listing at
  the end must show every key.  The keys are deleted after each run.
* **server CPU**: user+system time of the server process (``/proc/<pid>/stat``) over the run,
  100 % = one core; "MB/s per core" = MB/s divided by that.  moto's process is the bench's own
  child; ``--embedded-pid`` names the endpoint's (else no CPU figure).  The uploaders' CPU is
  reported too: on a small machine they compete with the server for the same cores.

Targets, in order: ``moto`` (``python -m moto.server`` started here on loopback with signature
checks on, tests/s3harness.py; it keeps objects in memory, so it measures the HTTP, signature and
XML work of an S3 server, not a disk), ``--endpoint`` (any S3 service) and ``--embedded`` (GlobalEye's
own endpoint at a URL; ``--embedded-start`` starts it here instead: bench/s3_endpoint_server.py, the
embedded endpoint over its FileBackend in a directory beside dd's, a dict of credentials, events that
only count).  Then the limit: ``dd if=/dev/zero bs=2M count=<--dd-count>`` into ``--dir`` (default: a
temporary directory on the file system of this checkout), once with ``oflag=direct`` and once with
``conv=fsync``.  A final line ``machine: ...`` says where it ran.

On a machine with 2 or more cores the servers (moto, the embedded endpoint) are pinned to core
``--server-core`` (0) and the uploaders to ``--client-core`` (1) with ``taskset``/``sched_setaffinity``,
so that the server's figure is one core's and the two sides do not take each other's core
(``--no-pin``: let the kernel place them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "globaleyerecord"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (and of its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def make_client(url: str, keys: tuple[str, str], region: str, addressing: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=url, region_name=region, aws_access_key_id=keys[0],
                        aws_secret_access_key=keys[1],
                        config=Config(s3={"addressing_style": addressing}, retries={"mode": "standard"},
                                      request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required",
                                      connect_timeout=5, read_timeout=60))


def uploader(job: dict[str, Any]) -> dict[str, Any]:
    """One worker process: its PUTs, one after the other."""
    if job.get("core") is not None:
        os.sched_setaffinity(0, {job["core"]})
    client = make_client(job["url"], tuple(job["keys"]), job["region"], job["addressing"])
    body = os.urandom(job["size"])
    md5 = hashlib.md5(body).hexdigest()
    client.head_bucket(Bucket=job["bucket"])  # connect and sign once before the clock starts
    done = bad = errors = 0
    first = last = 0.0
    cpu0 = time.process_time()
    job["barrier"].wait()
    deadline = time.monotonic() + job["seconds"]
    for n in range(job["puts"]):
        if time.monotonic() > deadline:
            break
        sent = time.time()
        first = first or sent
        try:
            answer = client.put_object(Bucket=job["bucket"], Key=f"cam{job['worker']:04d}_1_{n:06d}.ts", Body=body,
                                       ContentType="video/mp2t")
        except Exception as e:  # noqa: BLE001 - counted, and the first one shown
            errors += 1
            if errors == 1:
                print(f"  worker {job['worker']}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        last = time.time()
        done += 1
        if answer["ETag"].strip('"') != md5:
            bad += 1
    return {"done": done, "bad_etag": bad, "errors": errors, "first": first, "last": last,
            "cpu": time.process_time() - cpu0}


def run_target(name: str, url: str, keys: tuple[str, str], args: argparse.Namespace, pid: int | None,
               uploaders: int) -> dict[str, Any]:
    client = make_client(url, keys, args.region, args.addressing)
    bucket = args.bucket
    try:
        client.create_bucket(Bucket=bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    except client.exceptions.ClientError as e:
        if "BucketAlreadyExists" not in str(e):
            raise
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(uploaders + 1)
        share, extra = divmod(args.puts, uploaders)
        jobs = [{"url": url, "keys": keys, "region": args.region, "addressing": args.addressing, "bucket": bucket,
                 "size": args.size, "puts": share + (1 if w < extra else 0), "worker": w,
                 "seconds": args.seconds, "barrier": barrier,
                 "core": args.client_core if args.pin else None} for w in range(uploaders)]
        with ctx.Pool(uploaders) as pool:
            pending = pool.map_async(uploader, jobs)
            barrier.wait(timeout=120)
            cpu0 = cpu_seconds(pid) if pid else None
            results = pending.get(timeout=args.seconds + 300)
            cpu1 = cpu_seconds(pid) if pid else None
    done = sum(r["done"] for r in results)
    started = min((r["first"] for r in results if r["first"]), default=0.0)
    ended = max((r["last"] for r in results), default=0.0)
    wall = max(ended - started, 1e-9)
    listed = 0
    token = ""
    while True:
        page = client.list_objects_v2(Bucket=bucket, Prefix="cam", **({"ContinuationToken": token} if token else {}))
        keys_here = [o["Key"] for o in page.get("Contents", [])]
        listed += len(keys_here)
        for i in range(0, len(keys_here), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys_here[i:i + 1000]]})
        token = page.get("NextContinuationToken", "")
        if not page.get("IsTruncated"):
            break
    mbps = done * args.size / wall / 1e6
    server_cpu = (cpu1 - cpu0) / wall * 100 if cpu0 is not None and cpu1 is not None else None
    result = {
        "target": name, "uploaders": uploaders, "puts": done, "seconds": round(wall, 3),
        "MBps": round(mbps, 1), "puts_per_s": round(done / wall, 1),
        "server_cpu_pct": round(server_cpu, 1) if server_cpu is not None else None,
        "MBps_per_core": round(mbps / (server_cpu / 100), 1) if server_cpu else None,
        "client_cpu_pct": round(sum(r["cpu"] for r in results) / wall * 100, 1),
        "errors": sum(r["errors"] for r in results), "bad_etag": sum(r["bad_etag"] for r in results),
        "listed": listed,
    }
    print(f"{name} x{uploaders}: {json.dumps(result)}", flush=True)
    return result


_DD_RATE = re.compile(r"(\d+) bytes .* copied, ([\d.,]+) s")


def run_dd(directory: Path, count: int, size: int, flag: str) -> dict[str, Any]:
    """``dd if=/dev/zero of=<dir>/dd-bench bs=<size> count=<count> <flag>``: the disk's limit."""
    target = directory / "dd-bench"
    command = ["dd", "if=/dev/zero", f"of={target}", f"bs={size}", f"count={count}", flag]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        target.unlink(missing_ok=True)
    found = _DD_RATE.search(done.stderr)
    if done.returncode or not found:
        return {"target": f"dd {flag}", "error": done.stderr.strip().splitlines()[-1:] or ["?"]}
    copied, seconds = int(found.group(1)), float(found.group(2).replace(",", "."))
    result = {"target": f"dd {flag}", "command": " ".join(command), "MBps": round(copied / seconds / 1e6, 1),
              "puts_per_s": round(copied / size / seconds, 1), "seconds": seconds}
    print(f"{result['target']}: {json.dumps(result)}", flush=True)
    return result


def _disk_of(path: Path) -> str:
    """``<device> <fstype>`` of the file system holding ``path`` (from /proc/mounts)."""
    best = ("", "?", "?")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, fstype = line.split()[:3]
        if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) > len(best[0]):
            best = (mount, device, fstype)
    return f"{best[1]} {best[2]}"


def machine_info() -> dict[str, str]:
    import boto3

    try:
        import moto
        moto_version = moto.__version__
    except ImportError:
        moto_version = "not installed"
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?")
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(), "boto3": boto3.__version__, "moto": moto_version,
            "disk": _disk_of(ROOT), "load": " ".join(Path("/proc/loadavg").read_text().split()[:3])}


def print_table(results: list[dict[str, Any]]) -> None:
    print()
    print(f"{'target':22} {'uploaders':>9} {'PUTs':>6} {'MB/s':>8} {'PUTs/s':>8} {'server cpu%':>11} "
          f"{'MB/s per core':>13} {'client cpu%':>11} {'errors':>6}")
    for r in results:
        if "error" in r:
            print(f"{r['target']:22} {'':>9} {'':>6} {'failed: ' + ' '.join(r['error'])}")
            continue

        def f(key: str, fmt: str = "{:,.1f}", r: dict[str, Any] = r) -> str:
            value = r.get(key)
            return fmt.format(value) if value is not None else "-"

        print(f"{r['target']:22} {f('uploaders', '{}'):>9} {f('puts', '{}'):>6} {f('MBps'):>8} {f('puts_per_s'):>8} "
              f"{f('server_cpu_pct'):>11} {f('MBps_per_core'):>13} {f('client_cpu_pct'):>11} "
              f"{f('errors', '{}'):>6}")
    print()


def parse_keys(text: str) -> tuple[str, str]:
    access, _, secret = text.partition(":")
    if not secret:
        raise argparse.ArgumentTypeError("keys are ACCESS_KEY:SECRET_KEY")
    return access, secret


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--uploaders", default="1,4,16", help="comma-separated numbers of concurrent uploaders")
    ap.add_argument("--puts", type=int, default=100, help="PUTs per run (and dd's count)")
    ap.add_argument("--size", type=int, default=2 * 1024 * 1024,
                    help="bytes per PUT (2 MiB: dd's bs=2M, a multiple of the block size oflag=direct needs)")
    ap.add_argument("--dd-count", type=int, default=500, help="dd's count of --size blocks (500: about 1 GB)")
    ap.add_argument("--seconds", type=float, default=120.0, help="upper bound of one run")
    ap.add_argument("--bucket", default=BUCKET)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--addressing", choices=("path", "virtual"), default="path")
    ap.add_argument("--no-moto", action="store_true", help="skip moto's server")
    ap.add_argument("--endpoint", help="another S3 endpoint URL")
    ap.add_argument("--keys", type=parse_keys, help="ACCESS:SECRET for --endpoint")
    ap.add_argument("--endpoint-pid", type=int, help="the --endpoint server's pid, for its CPU")
    ap.add_argument("--embedded", help="GlobalEye's own S3 endpoint URL")
    ap.add_argument("--embedded-keys", type=parse_keys, help="ACCESS:SECRET for --embedded")
    ap.add_argument("--embedded-pid", type=int, help="the platform's pid, for its CPU")
    ap.add_argument("--embedded-start", action="store_true",
                    help="start GlobalEye's embedded endpoint here (bench/s3_endpoint_server.py), data in --dir")
    ap.add_argument("--server-core", type=int, default=0, help="the core the servers are pinned to")
    ap.add_argument("--client-core", type=int, default=1, help="the core the uploaders are pinned to")
    ap.add_argument("--no-pin", action="store_true", help="pin nothing")
    ap.add_argument("--dir", type=Path, help="where dd writes and --embedded-start keeps its data (in a "
                    "temporary directory made there); default: beside this checkout")
    ap.add_argument("--no-dd", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    counts = [int(n) for n in args.uploaders.split(",") if n.strip()]
    args.pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None

    machine = machine_info()
    results: list[dict[str, Any]] = []
    targets: list[tuple[str, str, tuple[str, str], int | None]] = []
    moto_server = embedded_server = None
    scratch = Path(tempfile.mkdtemp(prefix="s3-ingest-", dir=args.dir or ROOT))
    try:
        if not args.no_moto:
            from tests.s3harness import MotoServer

            moto_server = MotoServer().start()
            if args.pin:
                subprocess.run(["taskset", "-a", "-p", "-c", str(args.server_core), str(moto_server.pid)],
                               check=True, capture_output=True)
            targets.append(("moto (signed)", moto_server.url, tuple(moto_server.good), moto_server.pid))
        if args.endpoint:
            if not args.keys:
                ap.error("--endpoint needs --keys")
            targets.append(("endpoint", args.endpoint, args.keys, args.endpoint_pid))
        if args.embedded:
            if not args.embedded_keys:
                ap.error("--embedded needs --embedded-keys")
            targets.append(("embedded", args.embedded, args.embedded_keys, args.embedded_pid))
        if args.embedded_start:
            from s3_endpoint_server import PLATFORM_KEYS, EmbeddedServer

            embedded_server = EmbeddedServer(scratch / "data", core=args.server_core if args.pin else None).start()
            targets.append(("embedded (started)", embedded_server.url, PLATFORM_KEYS, embedded_server.pid))
        for name, url, keys, pid in targets:
            for n in counts:
                results.append(run_target(name, url, keys, args, pid, n))
        if embedded_server is not None:
            print(f"embedded endpoint's counters: {json.dumps(embedded_server.stop())}", flush=True)
        if not args.no_dd:
            results.append(run_dd(scratch, args.dd_count, args.size, "oflag=direct"))
            results.append(run_dd(scratch, args.dd_count, args.size, "conv=fsync"))
    finally:
        if moto_server is not None:
            moto_server.stop()
        if embedded_server is not None:
            embedded_server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(results)
    print("machine: " + " ".join(f"{k}={v!r}" if " " in v else f"{k}={v}" for k, v in machine.items())
          + " pinned=" + (f"server:{args.server_core} uploaders:{args.client_core}" if args.pin else "no"))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "params": {k: str(v) for k, v in vars(args).items()
                                                                       if k not in ("keys", "embedded_keys")},
                                         "results": results}, indent=1))
        print(f"JSON written to {args.json}")


if __name__ == "__main__":
    main()
