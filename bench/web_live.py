"""Bench: one simulated camera to N browser-protocol viewers (fMP4 over HTTP), beside N RTSP viewers.

    python bench/web_live.py --viewers 10 100 500 --seconds 5 [--bit-rate 2000000] [--kinds web rtsp]

The processes and pinning of ``bench/proxy_fanout.py`` (whose camera child, RTSP viewer child
and helpers this script reuses): the **platform process** (this one: gateway, HTTP, TURN and
``rtsp`` roles, plus :class:`globaleye.web.live.LiveVideo` on a loopback twisted.web site with
the account fixed) on CPU 0; one simulated camera (1280x720 25 fps at ``--bit-rate``) and the
viewers on CPU 1.  The **web viewers** are headless: plain sockets that send
``GET /live.mp4`` and count what arrives (the fragments a browser's player would append), on one
epoll loop; the **RTSP viewers** are proxy_fanout's (Digest, TCP interleaved, video only).

For each kind and N: the platform process's CPU (process time per wall second) and RSS, per
viewer; bytes per second per viewer against the upstream's rate; pictures skipped in the window
(the live view's and the proxy's own counters); request → first byte at the viewer (for the web
viewers that is the init segment and the first picture, sent together).  A benchmark, not a
test: run it by hand and record the figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import proxy_fanout as pf  # noqa: E402

MAX_VIEWERS = pf.MAX_VIEWERS


class HttpViewer(pf.RawViewer):
    """GET /live.mp4, then non-blocking byte counting (proxy_fanout's viewer, over HTTP)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        super().__init__(host, port, path)
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    def start(self) -> None:
        self.play_sent = time.monotonic()
        self.sock.sendall(self.request)
        self.sock.setblocking(False)


def web_viewer_child(host: str, port: int, path: str) -> None:
    """The viewer process of proxy_fanout, with HTTP viewers: commands on stdin, one epoll."""
    pf.viewer_child(host, port, path, HttpViewer)


async def bench(reactor: Any, args: argparse.Namespace) -> None:
    from twisted.internet.task import deferLater
    from twisted.web import resource

    from globaleye.guard.httpsite import LimitedSite
    from globaleye.web.live import LiveUnavailable, LiveVideo, write_problem

    where = pf.pin(0)
    platform = await pf.start_platform(reactor)
    factory = platform.rtsp_proxy.factory  # type: ignore[union-attr]
    live = LiveVideo(factory, reactor)

    class Live(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:  # noqa: N802
            try:
                return live.render(request, pf.MOBILE, pf.DEV, 0, 1)
            except LiveUnavailable as e:
                write_problem(request, e)
                return b""

    root = resource.Resource()
    root.putChild(b"live.mp4", Live())
    web_port = reactor.listenTCP(0, LimitedSite(root, reactor), interface="127.0.0.1", backlog=2048).getHost().port

    camera, online = await pf.start_camera(reactor, platform, args.bit_rate, relay=False)
    print(f"platform process: {where}; camera process: {online['online']}; main stream 1280x720 25 fps, "
          f"video payload {online['video_payload_bps'] / 1e6:.2f} Mbit/s (--bit-rate {args.bit_rate})")
    print()

    def upstream_bytes() -> int:
        hub = factory.hubs.get((pf.DEV, 0, 1))
        return hub.upstream.bytes if hub is not None and hub.upstream is not None else 0

    def skipped(kind: str) -> int:
        if kind == "web":
            return sum(v.skipped for v in live.viewers)
        return sum(s.viewer.frames_dropped for s in factory.sessions.values() if s.viewer is not None)

    print("| viewers | kind | platform CPU % | CPU % per viewer | RSS MB | RSS KB per extra viewer | upstream kB/s "
          "| bytes/s per viewer | per viewer / upstream | pictures skipped (window) | request → first byte, "
          "median / max (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        if kind == "web":
            viewers = pf.Child(reactor, [os.path.abspath(__file__), "--web-viewer-child", str(web_port)])
        else:
            viewers = pf.Child(reactor, [os.path.join(HERE, "proxy_fanout.py"), "--viewer-child",
                                         str(platform.port_of("rtsp")), f"/live/{pf.DEV}/0/1"])
        await viewers.answer()
        first = await viewers.answer({"add": 1})
        await deferLater(reactor, 1.0, lambda: None)
        _cpu, rss1 = pf.usage()
        for n in args.viewers:
            n = min(n, MAX_VIEWERS)
            added = await viewers.answer({"add": n - 1})
            await deferLater(reactor, 1.0, lambda: None)
            cpu0, _ = pf.usage()
            up0, skip0 = upstream_bytes(), skipped(kind)
            got0 = (await viewers.answer({"stats": 1}))["bytes"]
            t0 = time.monotonic()
            await deferLater(reactor, args.seconds, lambda: None)
            stats = await viewers.answer({"stats": 1})
            wall = time.monotonic() - t0
            cpu1, rss = pf.usage()
            cpu = 100 * (cpu1 - cpu0) / wall
            up = (upstream_bytes() - up0) / wall
            down = (stats["bytes"] - got0) / wall / max(1, stats["viewers"])
            firsts = first["first_media_ms"] + added["first_media_ms"]
            print(f"| {stats['viewers']} | {kind} | {cpu:.1f} | {cpu / max(1, stats['viewers']):.3f} | {rss:.0f} | "
                  f"{1000 * (rss - rss1) / max(1, stats['viewers'] - 1):.0f} | {up / 1e3:.0f} | {down / 1e3:.0f} kB | "
                  f"{down / max(1, up):.2f} | {skipped(kind) - skip0} | {pf._ms(firsts)} |", flush=True)
            await viewers.answer({"close": 1})
            await deferLater(reactor, 0.5, lambda: None)
            first = await viewers.answer({"add": 1})
            await deferLater(reactor, 0.5, lambda: None)
        await viewers.answer({"close": 1})
        viewers.close()
    camera.close()
    await deferLater(reactor, 0.5, lambda: None)
    await platform.stopService()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--viewers", type=int, nargs="+", default=[10, 100, 500])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--bit-rate", type=int, default=2_000_000, help="main stream's encoder bit rate (bit/s)")
    p.add_argument("--kinds", nargs="+", default=["web", "rtsp"], choices=["web", "rtsp"])
    p.add_argument("--web-viewer-child", metavar="PORT")
    args = p.parse_args()
    if args.web_viewer_child:
        web_viewer_child("127.0.0.1", int(args.web_viewer_child), "/live.mp4")
        return
    from twisted.internet import defer, task
    task.react(lambda reactor: defer.Deferred.fromCoroutine(bench(reactor, args)))


if __name__ == "__main__":
    main()
