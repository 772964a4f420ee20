"""Bench: one simulated camera fanned out by the RTSP proxy to N viewers, all in one process.

    python bench/proxy_fanout.py --viewers 10 100 --seconds 5

For each N: CPU (process time per wall second) and RSS with N viewers versus one,
per viewer; pictures each viewer skipped; and, for each §15 path forced alone,
the time from PLAY at the proxy to the first decodable picture (an IDR) sent to a
viewer.  Viewers are minimal raw RTSP clients (Digest, TCP interleaved) that count
bytes; camera, platform, proxy and viewers share one reactor and one core, so the
per-viewer cost is an upper bound of the proxy's own.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from typing import Any

import attrs

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, protocol, task  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from globaleye.config import parse_config  # noqa: E402
from globaleye.proxy.auth import ha1, md5_hex  # noqa: E402
from globaleye.proxy.paths import PathSettings  # noqa: E402
from globaleye.rtsp.message import Headers, RtspParser, RtspRequest, RtspResponse  # noqa: E402
from globaleye.sim.camera import Timing  # noqa: E402
from globaleye.sim.fleet import Fleet  # noqa: E402
from globaleye.store import Account, Binding, Device  # noqa: E402
from globaleye.store.sqlite import SQLiteStore  # noqa: E402
from globaleye.tap import PlatformService  # noqa: E402

DEV, MOBILE, PASSWORD = "81300000021", "13300000021", "bench-password"
CONFIG = """
[globaleye]
roles = gateway, http, turn, rtsp
[database]
url = sqlite:///:memory:
[http]
port = 0
[gateway]
port = 0
[turn]
port = 0
relay_ports = 54000-54999
allow_peers = 127.0.0.0/8
[rtsp]
port = 0
linger = 0.2
max_viewers = 10000
"""


class Viewer(protocol.Protocol):
    """DESCRIBE (with Digest), SETUP video over TCP, PLAY; then only counts bytes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.parser = RtspParser(max_body=1 << 20)
        self.waiting: defer.Deferred[RtspResponse] | None = None
        self.playing = False
        self.bytes = 0
        self.cseq = 0
        self.auth = ""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.playing:
            self.bytes += len(data)
            return
        for event in self.parser.feed(data):
            if isinstance(event, RtspResponse) and self.waiting is not None:
                d, self.waiting = self.waiting, None
                d.callback(event)

    async def ask(self, method: str, url: str, *headers: tuple[str, str]) -> RtspResponse:
        self.cseq += 1
        h = Headers([("CSeq", str(self.cseq)), *headers])
        if self.auth:
            nonce, realm = self.auth.split("|")
            h.add("Authorization", f'Digest username="{MOBILE}", realm="{realm}", nonce="{nonce}", '
                  f'uri="{url}", response="{md5_hex(ha1(MOBILE, realm, PASSWORD) + ":" + nonce + ":" + md5_hex(method + ":" + url))}"')
        self.waiting = defer.Deferred()
        d = self.waiting
        self.transport.write(RtspRequest(method, url, h).encode())
        return await d

    async def play(self) -> None:
        import re
        r = await self.ask("DESCRIBE", self.url)
        challenge = r.headers.get("WWW-Authenticate") or ""
        self.auth = (re.search(r'nonce="([^"]+)"', challenge).group(1) + "|"  # type: ignore[union-attr]
                     + re.search(r'realm="([^"]+)"', challenge).group(1))  # type: ignore[union-attr]
        r = await self.ask("DESCRIBE", self.url)
        assert r.code == 200, r
        r = await self.ask("SETUP", self.url + "/trackID=0", ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"))
        session = (r.headers.get("Session") or "").split(";")[0]
        r = await self.ask("PLAY", self.url, ("Session", session))
        assert r.code == 200, r
        self.playing = True


def usage() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return ru.ru_utime + ru.ru_stime, rss / 1e6


async def bench(reactor: Any, args: argparse.Namespace) -> None:
    platform = PlatformService(parse_config(CONFIG), SQLiteStore(":memory:"), reactor)
    platform.startService()
    turn_port = platform.turn.addresses["udp"][1] if platform.turn is not None else 0
    platform.mcu_api.settings = attrs.evolve(platform.mcu_api.settings, stun_host="127.0.0.1", stun_port=turn_port)
    from tests.util import http_client
    fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{platform.port_of('http')}/register",
                  timing=Timing(backoff_initial=0.05), http=http_client())
    await fleet.prepare()
    camera = fleet.add(DEV)
    now = reactor.seconds()
    await platform.store.create_account(Account(MOBILE, await platform.accounts.hash_password(PASSWORD), now, now))
    await platform.store.enroll_device(Device(dev_id=DEV, dev_key=camera.state.dev_key))
    await platform.store.bind_device(Binding(MOBILE, DEV, 0, DEV, now), 10)
    fleet.start()
    await camera.went_online
    await platform.accounts.login(MOBILE, PASSWORD, "1.0", "bench")
    while not (platform.gateway.live.get(DEV) and platform.gateway.live[DEV].addresses.rtsp_turn_relay_port):
        await deferLater(reactor, 0.1, lambda: None)
    factory = platform.rtsp_proxy.factory  # type: ignore[union-attr]
    port = platform.port_of("rtsp")
    url = f"rtsp://127.0.0.1:{port}/live/{DEV}/0/1"
    endpoint_factory = protocol.ClientCreator(reactor, Viewer, url)

    async def viewers(n: int) -> list[Viewer]:
        out = [await endpoint_factory.connectTCP("127.0.0.1", port) for _ in range(n)]
        await defer.gatherResults([defer.Deferred.fromCoroutine(v.play()) for v in out])
        return out

    print("| viewers | CPU % (process) | CPU % per extra viewer | RSS MB | RSS KB per extra viewer "
          "| bytes/s per viewer | pictures skipped |")
    print("|---|---|---|---|---|---|---|")
    base = await viewers(1)
    await deferLater(reactor, 1.0, lambda: None)
    cpu0, rss0 = usage()
    t0 = time.monotonic()
    await deferLater(reactor, args.seconds, lambda: None)
    cpu1, rss1 = usage()
    one = 100 * (cpu1 - cpu0) / (time.monotonic() - t0)
    print(f"| 1 | {one:.1f} | – | {rss1:.0f} | – | – | 0 |")
    for n in args.viewers:
        more = await viewers(n - 1)
        await deferLater(reactor, 1.0, lambda: None)
        b0 = sum(v.bytes for v in more)
        cpu0, _ = usage()
        t0 = time.monotonic()
        await deferLater(reactor, args.seconds, lambda: None)
        cpu1, rss = usage()
        wall = time.monotonic() - t0
        cpu = 100 * (cpu1 - cpu0) / wall
        rate = (sum(v.bytes for v in more) - b0) / wall / max(1, len(more))
        skipped = sum(s.viewer.frames_dropped for s in factory.sessions.values() if s.viewer is not None)
        print(f"| {n} | {cpu:.1f} | {(cpu - one) / max(1, n - 1):.2f} | {rss:.0f} | "
              f"{1000 * (rss - rss1) / max(1, n - 1):.0f} | {rate / 1000:.0f} kB | {skipped} |")
        for v in more:
            v.transport.loseConnection()
        await deferLater(reactor, 0.5, lambda: None)
    for v in base:
        v.transport.loseConnection()
    print()
    print("| path | PLAY → first IDR at the viewer (ms) | path selection (ms) |")
    print("|---|---|---|")
    for path in ("local", "turn-udp", "turn-tcp"):
        await deferLater(reactor, 0.5, lambda: None)  # linger over: the next viewer selects a path again
        factory.paths = PathSettings(connect_timeout=2, udp_timeout=5, media_timeout=5, paths=(path,))
        started = time.monotonic()
        v = (await viewers(1))[0]
        selected = (time.monotonic() - started) * 1000
        while not [s for s in factory.sessions.values() if s.viewer and s.viewer.first_frame_after is not None]:
            await deferLater(reactor, 0.005, lambda: None)
        first = [s.viewer.stats()["first_frame_ms"] for s in factory.sessions.values() if s.viewer][0]
        print(f"| {path} | {first} | {selected:.0f} |")
        v.transport.loseConnection()
    await fleet.stop()
    await platform.stopService()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--viewers", type=int, nargs="+", default=[10, 100])
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(bench(reactor, args)))


if __name__ == "__main__":
    main()
