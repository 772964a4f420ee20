"""Bench (issue 13): GlobalEye's RTSP proxy against GStreamer's rtsp-server, same camera stream.

    python bench/fanout_vs_gst.py --viewers 100 300 500 --seconds 8 [--transport tcp|udp] [--bit-rate 2000000]
                                  [--keepalive 10] [--profile out.txt] [--py-spy stacks.txt]

Needs Debian's ``/usr/bin/python3`` with ``python3-gi`` and ``gir1.2-gst-rtsp-server-1.0``
(``apt-get install -y gir1.2-gst-rtsp-server-1.0``) and 2 cores.  The pieces are
bench/proxy_fanout.py's: its simulated camera process, its epoll viewer process (N RTSP
viewers, here able to skip Digest for GStreamer's open mount), its platform configuration,
core pinning and JSON-line children.

One camera (its own process, CPU 1) feeds the platform's proxy (this process).  Then, one
after the other, for each N:

1. **GlobalEye**: N viewers (process on CPU 1) play ``/live/<DevID>/0/1`` from the proxy; the
   proxy process is pinned to CPU 0 and its CPU is measured over the window;
2. **GStreamer**: ``bench/gst_rtsp_relay.py`` (Debian's python3, pinned to CPU 0 by
   ``taskset``) relays the proxy's own live URL through a shared factory
   ``( rtspsrc ! rtph264depay ! rtph264pay )``; the proxy process moves to CPU 1 (it then
   serves one viewer, the relay) and N viewers play ``/relay``; the relay process's CPU
   (``/proc/<pid>/stat``) is measured over the window.

``--transport`` is how every viewer takes RTP, the same for both servers:

* ``tcp`` (default): ``RTP/AVP/TCP;unicast;interleaved=0-1``, media on the RTSP connection;
* ``udp``: ``RTP/AVP;unicast;client_port=a-b``, each viewer with its own pair of UDP sockets
  bound to 127.0.0.1 (RTP on an even port, RTCP on the next, 1 MiB receive buffer asked).
  Only RTP datagrams count as bytes; the servers' RTCP is read and dropped.  Each viewer
  sends an RTCP receiver report (RR + SDES CNAME) from its RTCP port to the server's every
  ``--keepalive`` seconds (10; the first at a random time in the first period, so they do
  not all go at once), which keeps the session past both servers' 60 s session timeout
  (GET_PARAMETER instead if SETUP named no server port); ``--keepalive 0`` sends none.
  On close a viewer sends TEARDOWN, then closes its sockets.  The viewer process polls at
  most every 20 ms (``COALESCE``), so a wake-up reads several datagrams per socket.

Each viewer's bytes in the window are counted; a viewer below 90 % of the median (or of
the upstream's rate), silent for the last 2 s of the window, or closed by the server is
reported as short.
Each line also gives the viewer process's own CPU over the window and, with UDP, how many
datagrams the kernel dropped for a full receive buffer (``/proc/net/snmp`` RcvbufErrors,
whole machine): a run whose viewer process is near 100 % or that has such drops measured
the viewers, not the server.  ``--profile`` adds, after the measured GlobalEye window at
the largest N, one more window under cProfile and writes the top functions; ``--py-spy
FILE`` one more sampled by ``py-spy record`` (folded stacks).  No third server (MediaMTX,
go2rtc): neither can be installed from the registries this project may use (see
docs/performance.md).  Bounded: at most 2000 viewers, every child answer within 60 s (adding N viewers: 60 + N / 10 s).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import proxy_fanout as pf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GST_PYTHON = "/usr/bin/python3"
SHORT = 0.9
#: Seconds without media at the window's end after which a viewer counts as short.
SILENT = 2.0
#: UDP viewers: the viewer process polls at most every 20 ms (see proxy_fanout.viewer_child).
COALESCE = 0.02


class Viewer(pf.RawViewer):
    """proxy_fanout's viewer, with Digest only when asked (GStreamer's mount is open) and any track name."""

    track = "trackID=0"

    def start(self) -> None:
        import re
        code, text = self.ask("DESCRIBE", self.url, "Accept: application/sdp")
        if code == 401:
            nonce = re.search(r'nonce="([^"]+)"', text)
            realm = re.search(r'realm="([^"]+)"', text)
            assert nonce and realm, text
            self.auth = (nonce.group(1), realm.group(1))
            code, text = self.ask("DESCRIBE", self.url, "Accept: application/sdp")
        assert code == 200, text
        self.setup_and_play(f"{self.url}/{self.track}")


def udp_receive_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (whole machine)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def proc_cpu(pid: int) -> float:
    """utime + stime of *pid* in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Relay:
    """bench/gst_rtsp_relay.py under Debian's python3, pinned to CPU 0; its port once bound."""

    def __init__(self, reactor: Any, upstream: str) -> None:
        from twisted.internet import defer, protocol

        relay = self
        self.port: defer.Deferred[int] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        buf = [b""]

        class P(protocol.ProcessProtocol):
            def outReceived(self, data: bytes) -> None:  # noqa: N802
                buf[0] += data
                if b"\n" in buf[0] and not relay.port.called:
                    relay.port.callback(json.loads(buf[0].split(b"\n", 1)[0])["port"])

            def errReceived(self, data: bytes) -> None:  # noqa: N802
                sys.stderr.write(data.decode(errors="replace"))

            def processEnded(self, reason: Any) -> None:  # noqa: N802
                relay.ended.callback(None)

        args = ["taskset", "-c", "0", GST_PYTHON, os.path.join(HERE, "gst_rtsp_relay.py"), upstream,
                "--user", pf.MOBILE, "--password", pf.PASSWORD]
        self.process = reactor.spawnProcess(P(), "/usr/bin/taskset", args, env=dict(os.environ),
                                            childFDs={0: "w", 1: "r", 2: "r"})
        self.port.addTimeout(pf.CHILD_TIMEOUT, reactor)

    async def stop(self) -> None:
        self.process.closeStdin()
        await self.ended


async def bench(reactor: Any, args: argparse.Namespace) -> None:
    from twisted.internet.task import deferLater

    where = pf.pin(0)
    platform = await pf.start_platform(reactor)
    camera, online = await pf.start_camera(reactor, platform, args.bit_rate)
    factory = platform.rtsp_proxy.factory  # type: ignore[union-attr]
    port = platform.port_of("rtsp")
    live = f"/live/{pf.DEV}/0/1"
    print(f"proxy process: {where}; camera process: {online['online']}; main stream 1280x720 25 fps, "
          f"video payload {online['video_payload_bps'] / 1e6:.2f} Mbit/s (--bit-rate {args.bit_rate}); "
          f"window {args.seconds} s; viewers: RTP over {args.transport.upper()}"
          + (" (RTP/AVP client_port pairs on 127.0.0.1, RTCP receiver report every "
             f"{args.keepalive:g} s)".replace("every 0 s", "never") if args.transport == "udp"
             else " (interleaved)"))

    def upstream_bytes() -> int:
        hub = factory.hubs.get((pf.DEV, 0, 1))
        return hub.upstream.bytes if hub is not None and hub.upstream is not None else 0

    def dropped() -> int:
        return sum(s.viewer.frames_dropped for s in factory.sessions.values() if s.viewer is not None)

    async def window(viewers: pf.Child, cpu: Any) -> dict[str, Any]:
        c0, up0, drop0, udp0 = cpu(), upstream_bytes(), dropped(), udp_receive_errors()
        e0 = await viewers.answer({"each": 1})
        t0 = time.monotonic()
        await deferLater(reactor, args.seconds, lambda: None)
        e1 = await viewers.answer({"each": 1})
        wall = time.monotonic() - t0
        c1, up1 = cpu(), upstream_bytes()
        b0 = dict(zip(e0["ids"], e0["bytes_each"], strict=True))
        b1 = dict(zip(e1["ids"], e1["bytes_each"], strict=True))
        silent = dict(zip(e1["ids"], e1["silent_each"], strict=True))
        each = {v: (b - b0[v]) / wall for v, b in b1.items() if v in b0}  # a closed viewer leaves the list
        up = (up1 - up0) / wall
        med = statistics.median(each.values()) if each else 0.0
        # Short: under 90 % of the median or of the upstream, or silent at the window's end (a
        # server that stops sending to every viewer at once lowers the median with them).
        short = [v for v, e in each.items() if e < SHORT * med or e < SHORT * up or silent[v] > SILENT]
        short += [v for v in b0 if v not in b1]  # viewers the server closed during the window
        return {"cpu": 100 * (c1 - c0) / wall, "n": len(each), "started": len(b0), "up": up, "median": med,
                "min": min(each.values()) if each else 0.0, "short": len(short), "dropped": dropped() - drop0,
                "viewer_cpu": 100 * (e1["cpu"] - e0["cpu"]) / wall, "udp_drops": udp_receive_errors() - udp0}

    async def py_spy(viewers: pf.Child, cpu: Any) -> None:
        """One more window sampled by py-spy (--nonblocking: the proxy is not paused; no --native then)."""
        import subprocess
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(os.getpid()), "--duration", str(int(args.seconds)),
                                "--rate", "200", "--nonblocking", "--format", "raw",
                                "--output", args.py_spy], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        w = await window(viewers, cpu)
        while spy.poll() is None:
            await deferLater(reactor, 0.2, lambda: None)
        print(f"  py-spy window: CPU {w['cpu']:.1f} % (sampled), stacks in {args.py_spy}", flush=True)

    async def run(name: str, rtsp_port: int, path: str, track: str, cpu: Any,
                  profile_at: int | None = None) -> dict[int, dict[str, Any]]:
        viewers = pf.Child(reactor, [os.path.abspath(__file__), "--viewer-child", str(rtsp_port), path, track,
                                     "--transport", args.transport, "--keepalive", str(args.keepalive)])
        await viewers.answer()
        results: dict[int, dict[str, Any]] = {}
        for n in args.viewers:
            n = min(n, pf.MAX_VIEWERS)
            # Handshakes are one after the other; a server saturated by the viewers already
            # playing answers slowly, so the limit grows with N (1,000 viewers: 160 s).
            added = await viewers.answer({"add": n}, timeout=pf.CHILD_TIMEOUT + 0.1 * n)
            await deferLater(reactor, 1.5, lambda: None)
            w = await window(viewers, cpu)
            w["added"] = added["added"]
            results[n] = w
            print(f"  {name} {n}: CPU {w['cpu']:.1f} %, {w['n']} viewers, median {w['median'] / 1e3:.1f} kB/s, "
                  f"min {w['min'] / 1e3:.1f} kB/s, upstream {w['up'] / 1e3:.1f} kB/s, short {w['short']}, "
                  f"skipped pictures {w['dropped']}, viewer process CPU {w['viewer_cpu']:.1f} %"
                  + (f", UDP receive-buffer drops {w['udp_drops']}" if args.transport == "udp" else ""), flush=True)
            if profile_at == n and args.profile:
                profile = cProfile.Profile()
                profile.enable()
                await window(viewers, cpu)
                profile.disable()
                out = io.StringIO()
                stats = pstats.Stats(profile, stream=out)
                stats.sort_stats("tottime").print_stats(40)
                stats.sort_stats("cumulative").print_stats(40)
                with open(args.profile, "w") as f:
                    f.write(out.getvalue())
            if profile_at == n and args.py_spy:
                await py_spy(viewers, cpu)
            await viewers.answer({"close": 1})
            await deferLater(reactor, 1.0, lambda: None)
        viewers.close()
        return results

    me = os.getpid()
    ours = await run("GlobalEye", port, live, "trackID=0", lambda: proc_cpu(me),
                     max(args.viewers) if args.profile or args.py_spy else None)
    pf.pin(1)  # the proxy (serving only the relay now) leaves CPU 0 to GStreamer
    relay = Relay(reactor, f"rtsp://127.0.0.1:{port}{live}")
    gst_port = await relay.port
    gst_pid = relay.process.pid
    theirs = await run("GStreamer", gst_port, "/relay", "stream=0", lambda: proc_cpu(gst_pid))
    await relay.stop()
    print()
    print("| viewers | GlobalEye proxy CPU % | per viewer | GStreamer rtsp-server CPU % | per viewer | ratio "
          "(GlobalEye / GStreamer) | bytes/s per viewer, median / min (GlobalEye; GStreamer) | short viewers "
          "(GlobalEye; GStreamer) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.viewers:
        a, b = ours[n], theirs[n]
        print(f"| {n} | {a['cpu']:.1f} | {a['cpu'] / max(1, a['n']):.3f} | {b['cpu']:.1f} | "
              f"{b['cpu'] / max(1, b['n']):.3f} | {a['cpu'] / max(0.01, b['cpu']):.2f}× | "
              f"{a['median'] / 1e3:.0f} / {a['min'] / 1e3:.0f} kB; {b['median'] / 1e3:.0f} / {b['min'] / 1e3:.0f} kB | "
              f"{a['short']} of {a['started']}; {b['short']} of {b['started']} |", flush=True)
    camera.close()
    await deferLater(reactor, 0.5, lambda: None)
    try:
        camera.process.signalProcess("TERM")  # the camera child may still be stopping its fleet
    except Exception:
        pass
    await platform.stopService()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--viewers", type=int, nargs="+", default=[100, 300, 500])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--bit-rate", type=int, default=2_000_000, help="main stream's encoder bit rate (bit/s)")
    p.add_argument("--profile", help="cProfile the proxy over one more window at the largest N; write the top here")
    p.add_argument("--py-spy", help="py-spy record (raw folded stacks) over one more window at the largest N")
    p.add_argument("--transport", choices=("tcp", "udp"), default="tcp",
                   help="how the viewers take RTP: interleaved on the RTSP connection, or UDP client_port pairs")
    p.add_argument("--keepalive", type=float, default=pf.KEEPALIVE,
                   help="UDP viewers: seconds between RTCP receiver reports (0: none, to see the servers' "
                        "60 s session timeout end them)")
    p.add_argument("--viewer-child", nargs=3, metavar=("PORT", "PATH", "TRACK"))
    args = p.parse_args()
    if args.viewer_child:
        Viewer.track = args.viewer_child[2]
        Viewer.udp = args.transport == "udp"
        Viewer.keepalive = args.keepalive
        pf.viewer_child("127.0.0.1", int(args.viewer_child[0]), args.viewer_child[1], make=Viewer,
                        coalesce=COALESCE if Viewer.udp else 0.0)
        return
    from twisted.internet import defer, task
    task.react(lambda reactor: defer.Deferred.fromCoroutine(bench(reactor, args)))


if __name__ == "__main__":
    main()
