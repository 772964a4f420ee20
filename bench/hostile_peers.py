"""Hostile peers: a CRM with an endless body, an SMGP gateway that floods (issue 14 items 1 and 3).

    python3 bench/hostile_peers.py --seconds 30 --scenarios crm-endless
    python3 bench/hostile_peers.py --code /tmp/orig --seconds 20 --scenarios smgp-unknown

For each scenario it runs two child processes of this script:

* the **peer** (``peer`` mode), always from this checkout: the hostile servers of
  ``tests/integration/test_hardening_logsms.py`` (``HostileCRM``, ``HostileGateway``/``HostileFixture``),
  with their safety limits lifted, counting what they push;
* the **platform side** (``platform`` mode), imported from ``--code`` (default: this
  checkout; point it at a worktree of an older commit to measure the code before a fix):
  ``HttpCRM`` or ``SMGPSender`` as the tests build them, with the shipped defaults, logging
  with ``textFileLogObserver`` to a file.  Its address space is capped (``--mem-limit-gb``,
  RLIMIT_AS) so that a leak cannot take the machine down.

This process reads the platform's ``VmRSS`` in ``/proc/PID/status`` every second during
``--seconds`` and prints one JSON object per scenario.  Scenarios:

``crm-endless``
    The CRM answers 200 with a chunked body that never ends.  A subscription check
    (``HttpCRM.may_open``, ``timeout`` 3 s, fail closed) starts at 0 s and every
    ``--check-every`` seconds.  Per check: answer time and answer; per connection (seen by
    the CRM): whether the platform closed it, and when.
``smgp-unknown``
    After login the gateway sends PDUs with an unknown RequestID, 500 per reactor turn, as
    fast as the platform reads.  An SMS is sent at half time (is the session still usable?).
``smgp-active-test``
    After login the gateway stops reading and floods Active_Test; every one asks the
    platform for an Active_Test_Resp the gateway never reads.  Shipped keep-alive defaults
    (``active_test_interval`` 60 s), so in a 30 s run the keep-alive does not drop the link.

A benchmark, not a test: run it by hand and record the figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("crm-endless", "smgp-unknown", "smgp-active-test")
PDU_BYTES = 12  # an unknown-RequestID PDU and an Active_Test are both a bare 12-byte header


# --------------------------------------------------------------------------- peer (this checkout)


def run_peer(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from twisted.internet import reactor

    from tests.integration.test_hardening_logsms import (
        HostileCRM,
        HostileCRMFactory,
        HostileFixture,
        HostileGateway,
    )

    connections: list[dict[str, Any]] = []

    class Counting:
        """Records when each of the hostile peer's connections opened and closed."""

        def connectionMade(self) -> None:  # noqa: N802
            super().connectionMade()  # type: ignore[misc]
            self.record: dict[str, Any] = {"opened": time.time(), "closed": None}
            connections.append(self.record)

        def connectionLost(self, reason: Any) -> None:  # noqa: N802
            self.record["closed"] = time.time()
            super().connectionLost(reason)  # type: ignore[misc]

    class CountingCRM(Counting, HostileCRM):
        pass

    class CountingGateway(Counting, HostileGateway):
        pass

    if args.mode == "crm-endless":
        crm = HostileCRMFactory("endless")
        crm.protocol = CountingCRM
        crm.give_up_after = float("inf")  # the test's safety stop: here the platform's RLIMIT_AS is the stop
        port = reactor.listenTCP(0, crm, interface="127.0.0.1")

        def stats() -> dict[str, Any]:
            return {"bytes_pushed": crm.sent, "requests": crm.requests, "connections": connections}
    else:
        mode = "unknown" if args.mode == "smgp-unknown" else "active_test"
        gateway = HostileFixture(mode, limit=10**15)
        gateway.buildProtocol = lambda addr: CountingGateway(gateway)  # type: ignore[method-assign]
        port = gateway.listen(reactor)

        def stats() -> dict[str, Any]:
            return {"pdus_pushed": gateway.sent, "bytes_pushed": gateway.sent * PDU_BYTES,
                    "logins": len(gateway.logins), "connections": connections,
                    "sms_received": len(gateway.submissions)}

    def snapshot(_signum: int, _frame: Any) -> None:
        Path(args.stats_file).write_text(json.dumps(stats()))

    signal.signal(signal.SIGUSR1, snapshot)
    Path(args.port_file).write_text(str(port.getHost().port))
    reactor.run()


# --------------------------------------------------------------------------- platform side (--code)


def run_platform(args: argparse.Namespace) -> None:
    limit = int(args.mem_limit_gb * 1024**3)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import deferLater
    from twisted.logger import globalLogBeginner, textFileLogObserver

    import globaleye

    log = open(args.log, "a", encoding="utf-8")  # noqa: SIM115
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log)], redirectStandardIO=False)

    def emit(**event: Any) -> None:
        print(json.dumps({"t": time.time(), **event}), flush=True)

    emit(event="ready", globaleye=globaleye.__file__)
    sys.stdin.readline()  # "go"

    if args.mode == "crm-endless":
        from globaleye.users.crm import HttpCRM, HttpCRMSettings

        crm = HttpCRM(HttpCRMSettings(url=f"http://127.0.0.1:{args.port}/crm", timeout=3.0, fail_open=False))

        async def checks() -> None:
            while True:
                started = time.time()
                try:
                    allowed: Any = await crm.may_open("18900000001")
                except Exception as e:  # what the original does under the memory cap
                    allowed = f"{type(e).__name__}: {e}"[:200]
                emit(event="check", started=started, took=time.time() - started, allowed=allowed)
                wait = started + args.check_every - time.time()
                if wait > 0:
                    await deferLater(reactor, wait)

        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(checks()))
    else:
        from globaleye.users.sms.client import SMGPSender, SMGPSettings

        sender = SMGPSender(SMGPSettings(host="127.0.0.1", port=args.port, client_id="10000001", secret="s3cret",
                                         src_term_id="10659999", service_id="GLOBALEYE"))

        async def sms() -> None:
            started = time.time()
            try:
                await sender.send("18900000001", "still works?")
                result = "sent"
            except Exception as e:
                result = f"{type(e).__name__}: {e}"[:200]
            emit(event="sms", started=started, took=time.time() - started, result=result)

        reactor.callWhenRunning(sender.startService)
        reactor.callLater(args.sms_at, lambda: Deferred.fromCoroutine(sms()))
        reactor.addSystemEventTrigger("before", "shutdown", sender.stopService)
    reactor.run()
    emit(event="stopped")


# --------------------------------------------------------------------------- driver


def status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (MB) and CPU seconds of a process; {} once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    out["cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def count_lines(path: Path) -> tuple[int, int]:
    lines = size = 0
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                lines += block.count(b"\n")
                size += len(block)
    except OSError:
        pass
    return lines, size


def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return f"killed (no exit within {grace:.0f} s of SIGTERM)"
        return "stopped by SIGTERM"
    return f"exited by itself, status {proc.returncode}"


def run_scenario(scenario: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    port_file, stats_file, log = work / f"{scenario}.port", work / f"{scenario}.stats", work / f"{scenario}.log"
    peer = subprocess.Popen([sys.executable, me, "peer", scenario, "--port-file", str(port_file),
                             "--stats-file", str(stats_file)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=open(work / "peer.err", "a"))  # noqa: SIM115
    try:
        while not port_file.exists() or not port_file.read_text():
            if peer.poll() is not None:
                raise SystemExit(f"peer exited: {peer.returncode}")
            time.sleep(0.05)
        port = int(port_file.read_text())
        platform = subprocess.Popen(
            [sys.executable, me, "platform", scenario, "--port", str(port), "--log", str(log),
             "--mem-limit-gb", str(args.mem_limit_gb), "--check-every", str(args.check_every),
             "--sms-at", str(args.seconds / 2)],
            env={**os.environ, "PYTHONPATH": str(args.code)}, cwd=work, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=open(work / f"{scenario}.err", "w"), text=True)  # noqa: SIM115
        assert platform.stdin is not None and platform.stdout is not None
        ready = json.loads(platform.stdout.readline())
        start = status(platform.pid)
        platform.stdin.write("go\n")
        platform.stdin.flush()
        t0 = time.time()
        series = [round(start["VmRSS"], 1)]
        peer_max = 0.0
        hwm = start.get("VmHWM", 0.0)
        cpu = start.get("cpu", 0.0)
        died_at = None
        for i in range(1, int(args.seconds) + 1):
            time.sleep(max(0.0, t0 + i - time.time()))
            s = status(platform.pid)
            if not s or platform.poll() is not None:
                died_at = round(time.time() - t0, 1)
                break
            series.append(round(s["VmRSS"], 1))
            hwm, cpu = max(hwm, s["VmHWM"]), s["cpu"]
            peer_max = max(peer_max, status(peer.pid).get("VmRSS", 0.0))
        window = time.time() - t0
        lines_window, bytes_window = count_lines(log)
        stats_file.unlink(missing_ok=True)
        peer.send_signal(signal.SIGUSR1)
        deadline = time.time() + 10
        while not (stats_file.exists() and stats_file.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        peer_stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        how = stop(platform)
        events = [json.loads(line) for line in platform.stdout.read().splitlines() if line.startswith("{")]
        lines_total, bytes_total = count_lines(log)
        memory_errors = sum(1 for line in log.open("rb") if b"MemoryError" in line) if log.exists() else 0
    finally:
        stop(peer)
    for c in peer_stats.get("connections", []):
        c["opened"] = round(c["opened"] - t0, 2)
        c["closed"] = None if c["closed"] is None else round(c["closed"] - t0, 2)
    result: dict[str, Any] = {
        "scenario": scenario,
        "code": str(args.code),
        "globaleye": ready["globaleye"],
        "seconds": round(window, 1),
        "platform": {
            "rss_mb_start": round(start["VmRSS"], 1),
            "rss_mb_max": round(max(series + [hwm]), 1),
            "rss_mb_end": series[-1],
            "cpu_s": round(cpu - start.get("cpu", 0.0), 1),
            "died_at_s": died_at,
            "exit": how,
            "log_lines": lines_window,
            "log_bytes": bytes_window,
            "log_lines_after_stop": lines_total,
            "log_memory_errors": memory_errors,
        },
        "peer": {**peer_stats, "rss_mb_max": round(peer_max, 1)},
        "rss_mb_every_second": series,
    }
    for e in events:
        e["at"] = round(e.pop("t") - t0, 2)
        if "started" in e:
            e["started"] = round(e["started"] - t0, 2)
        if "took" in e:
            e["took"] = round(e["took"], 3)
    result["events"] = [e for e in events if e["event"] in ("check", "sms")]
    if scenario.startswith("smgp") and not result["events"]:
        result["events"] = [{"event": "sms", "started": round(args.seconds / 2, 2), "result": "no answer by the end"}]
    if not args.keep_logs:
        log.unlink(missing_ok=True)
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("peer", "platform"):
        p = argparse.ArgumentParser()
        p.add_argument("role")
        p.add_argument("mode", choices=SCENARIOS)
        p.add_argument("--port-file")
        p.add_argument("--stats-file")
        p.add_argument("--port", type=int)
        p.add_argument("--log")
        p.add_argument("--mem-limit-gb", type=float, default=3.0)
        p.add_argument("--check-every", type=float, default=10.0)
        p.add_argument("--sms-at", type=float, default=15.0)
        child = p.parse_args()
        (run_peer if child.role == "peer" else run_platform)(child)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="how long the hostile peer keeps going")
    p.add_argument("--code", type=Path, default=ROOT,
                   help="checkout whose globaleye the platform side imports (default: this one)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of: " + ", ".join(SCENARIOS))
    p.add_argument("--mem-limit-gb", type=float, default=3.0, help="RLIMIT_AS of the platform process")
    p.add_argument("--check-every", type=float, default=10.0, help="seconds between CRM checks")
    p.add_argument("--keep-logs", action="store_true", help="keep the platform's log files (printed path)")
    p.add_argument("--json", type=Path, help="also append the results to this file, one object a line")
    args = p.parse_args()
    args.code = args.code.resolve()
    work = Path(tempfile.mkdtemp(prefix="hostile-peers-"))
    for scenario in args.scenarios.split(","):
        result = run_scenario(scenario.strip(), args, work)
        if args.keep_logs:
            result["log_dir"] = str(work)
        print(json.dumps(result), flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(result) + "\n")
    if not args.keep_logs:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
