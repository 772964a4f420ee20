"""Search of one camera's day in the cloud storage index (issue 12: "10 million indexed objects: p99 under 50 ms").

Builds a SQLite store with the platform's own schema (``globaleye.store.migrations``) holding ``--rows``
index entries — ``--cameras`` cameras, each uploading a 5-minute recording every 300 s (§7.1.1), inserted
in time order as the uploads would come — then asks :meth:`SQLiteStore.search_cloud_objects` (the code
path of SearchCloudFiles: the store's worker thread, the reactor waiting) for ``--queries`` random
"camera, day" searches, one whole day (288 files) per answer, and prints p50/p99/max.

    python3 bench/cloud_index.py --rows 10000000 --cameras 10000 --db /tmp/cloud-index.sqlite3

The database is kept (``--reuse`` skips the build when it already has the rows).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from globaleye.store import CLOUD_RECORD  # noqa: E402
from globaleye.store.migrations import connect, migrate  # noqa: E402
from globaleye.store.sqlite import SQLiteStore  # noqa: E402

T0 = 1_764_547_200.0  # 2025-12-01 00:00 Beijing = 2025-11-30 16:00 UTC; any day boundary will do
DAY = 86400.0
SEGMENT = 300.0


def dev_id(n: int) -> str:
    return f"{81100000000 + n:011d}"


def build(path: str, rows: int, cameras: int, batch: int = 100_000) -> dict[str, float]:
    if os.path.exists(path):
        os.unlink(path)
    connection = connect(path)
    migrate(connection)
    started = time.perf_counter()
    pending: list[tuple[Any, ...]] = []
    written = 0
    slot = 0
    while written < rows:
        start = T0 + slot * SEGMENT
        for n in range(cameras):
            if written >= rows:
                break
            dev = dev_id(n)
            key = f"{dev}_0_{time.strftime('%Y%m%d%H%M%S', time.gmtime(start + 8 * 3600))}.ts"
            pending.append((dev, 0, CLOUD_RECORD, start, SEGMENT, 2_000_000, "GlobalEyeRecord", key, "e", start + 310,
                            "s3"))
            written += 1
            if len(pending) >= batch:
                _flush(connection, pending)
        slot += 1
    _flush(connection, pending)
    elapsed = time.perf_counter() - started
    connection.close()
    return {"rows": rows, "build_seconds": round(elapsed, 1), "rows_per_second": round(rows / elapsed),
            "db_bytes": os.path.getsize(path)}


def _flush(connection: sqlite3.Connection, pending: list[tuple[Any, ...]]) -> None:
    connection.execute("BEGIN")
    connection.executemany(
        "INSERT INTO cloud_objects (dev_id, channel_no, kind, start, duration, size, bucket, key, etag, stored_at, "
        "source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", pending)
    connection.execute("COMMIT")
    pending.clear()


async def measure(path: str, cameras: int, days: int, queries: int, seed: int) -> dict[str, Any]:
    store = SQLiteStore(path)
    rng = random.Random(seed)
    latencies: list[float] = []
    files: list[int] = []
    try:
        for _ in range(queries):
            dev = dev_id(rng.randrange(cameras))
            day = T0 + rng.randrange(max(1, days)) * DAY
            started = time.perf_counter()
            page = await store.search_cloud_objects(dev, 0, CLOUD_RECORD, day, day + DAY, 0, 300)
            latencies.append((time.perf_counter() - started) * 1000)
            files.append(len(page.objects))
    finally:
        await store.close()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

    return {"queries": queries, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(latencies[-1], 2),
            "files_per_answer_mean": round(sum(files) / len(files), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--cameras", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--db", default="/tmp/cloud-index.sqlite3")
    parser.add_argument("--reuse", action="store_true", help="keep an existing database with enough rows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--cold", action="store_true",
                        help="first drop the database file's pages from the OS page cache (posix_fadvise DONTNEED: "
                             "this file only), so each camera's first search reads the disk")
    args = parser.parse_args()
    result: dict[str, Any] = {"cameras": args.cameras}
    have = 0
    if args.reuse and os.path.exists(args.db):
        with sqlite3.connect(args.db) as c:
            (have,) = c.execute("SELECT COUNT(*) FROM cloud_objects").fetchone()
    if have < args.rows:
        result["build"] = build(args.db, args.rows, args.cameras)
        print(json.dumps(result["build"]), flush=True)
    if args.cold:
        fd = os.open(args.db, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        result["cold"] = True
    days = int(args.rows / args.cameras * SEGMENT // DAY)
    result["days_per_camera"] = days

    def run(reactor: Any) -> defer.Deferred[None]:
        async def go() -> None:
            result["search"] = await measure(args.db, args.cameras, days, args.queries, args.seed)

        return defer.Deferred.fromCoroutine(go())

    task.react(lambda reactor: run(reactor).addCallback(lambda _: _report(result, args.json)))


def _report(result: dict[str, Any], path: str | None) -> None:
    print(json.dumps(result, indent=2))
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
