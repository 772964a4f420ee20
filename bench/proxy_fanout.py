"""Bench: one simulated camera fanned out by the RTSP proxy to N viewers, proxy alone on a core.

    python bench/proxy_fanout.py --viewers 10 100 500 --seconds 5 [--bit-rate 2000000] [--profile out.txt]

Three kinds of process, all on loopback:

* this one, **the proxy process**: the platform (gateway, HTTP, TURN, ``rtsp`` roles) and
  the proxy, pinned to CPU 0 (``os.sched_setaffinity``).  Its CPU time and RSS are what
  the tables report;
* a **camera process** (``--camera-child``): one simulated camera (main stream 1280x720
  25 fps, encoded at ``--bit-rate``), pinned to CPU 1;
* a **viewer process** (``--viewer-child``): N minimal RTSP viewers (Digest, TCP
  interleaved; bench/fanout_vs_gst.py can make them take RTP over UDP instead, see
  :class:`RawViewer`) on one epoll loop, pinned to CPU 1, that count bytes and the time from
  sending PLAY to the first media byte.  The proxy process drives it over a pipe (one
  JSON object a line).

For each N: the proxy process's CPU (process time per wall second) and RSS, per viewer;
the pictures skipped during the window (the proxy's own per-viewer counters); the
bytes per second each viewer received against the upstream's rate; then, for each §15
path forced alone, PLAY → first decodable picture (proxy side: the IDR leaves; viewer
side: the first media byte arrives), and recovery: the upstream's connection is cut under
10 viewers (as a camera that drops it), and the table gives the time until the upstream
is back, the longest silence each viewer saw, and how many viewers are still there.  Everything is bounded: at most 2000 viewers, each
window ``--seconds`` long, a child that does not answer within 60 s ends the run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import re
import resource
import select
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEV, MOBILE, PASSWORD = "81300000021", "13300000021", "bench-password"
SEED = "globaleye-sim"
MAX_VIEWERS = 2000
RECOVERY_VIEWERS = 10
CHILD_TIMEOUT = 60.0
#: Seconds between a UDP viewer's keep-alives (RTCP receiver reports): well inside the
#: servers' 60 s session timeout; real players report every 5 s or so (RFC 3550's minimum).
KEEPALIVE = 10.0
#: Datagrams read from one UDP socket per readiness event, at most.
UDP_READS = 64
#: Receive buffer asked for each RTP socket: an IDR picture arrives as a burst of datagrams,
#: and the viewer process may be busy with other sockets meanwhile (capped by rmem_max).
UDP_RCVBUF = 1 << 20
CONFIG = """
[globaleye]
roles = gateway, http, turn, rtsp
[enrollment]
mode = open
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
[limits]
# every viewer connects from 127.0.0.1: no per-address cap (the shipped default is 256)
per_address = 0
"""


def pin(cpu: int) -> str:
    """Pin this process to *cpu* when the machine has it; what was done, for the report."""
    cpus = list(range(os.cpu_count() or 1))  # not sched_getaffinity: a child inherits its parent's pinning
    if cpu not in cpus or len(cpus) < 2:
        return f"not pinned (CPUs {cpus})"
    os.sched_setaffinity(0, {cpu})
    return f"CPU {cpu}"


# --------------------------------------------------------------------------- the viewer process

class RawViewer:
    """A blocking RTSP handshake (Digest, video only), then non-blocking byte counting.

    RTP comes interleaved on the RTSP connection, or, with ``udp`` set on the class, over a
    pair of UDP sockets of its own (``client_port``), kept alive by RTCP receiver reports."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.url = f"rtsp://{host}:{port}{path}"
        self.sock = socket.create_connection((host, port), timeout=10)
        self.cseq = 0
        self.auth: tuple[str, str] | None = None
        self.bytes = 0
        self.play_sent = 0.0
        self.first_media: float | None = None
        self.last_media: float | None = None
        self.max_gap = 0.0  # the longest silence since the last "gaps" command
        self.rest = b""
        #: RTP over UDP (``udp`` set on the class by the viewer process): this viewer's RTP and
        #: RTCP sockets, bound to 127.0.0.1 before SETUP, and where its keep-alives go.
        self.rtp: socket.socket | None = None
        self.rtcp: socket.socket | None = None
        self.server_rtcp: tuple[str, int] | None = None
        self.session = ""
        self.ssrc = random.getrandbits(32)
        self.next_keepalive = 0.0

    def _digest(self, method: str) -> str:
        from globaleye.proxy.auth import ha1, md5_hex
        assert self.auth is not None
        nonce, realm = self.auth
        response = md5_hex(f"{ha1(MOBILE, realm, PASSWORD)}:{nonce}:{md5_hex(f'{method}:{self.url}')}")
        return (f'Digest username="{MOBILE}", realm="{realm}", nonce="{nonce}", uri="{self.url}", '
                f'response="{response}"')

    def ask(self, method: str, url: str, *headers: str) -> tuple[int, str]:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}", *headers]
        if self.auth is not None:
            lines.append("Authorization: " + self._digest(method))
        if method == "PLAY":
            self.play_sent = time.monotonic()
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = self.rest
        # Media before the reply ('$' frames) is counted and skipped: a shared media (GStreamer's
        # rtsp-server, bench/fanout_vs_gst.py) may send a viewer's first RTP before its PLAY reply.
        while True:
            while len(data) < 4:
                data += self._recv()
            if data[:1] != b"$":
                break
            size = 4 + int.from_bytes(data[2:4], "big")
            while len(data) < size:
                data += self._recv()
            self.got(size)
            data = data[size:]
        while b"\r\n\r\n" not in data:
            data += self._recv()
        head, _, body = data.partition(b"\r\n\r\n")
        text = head.decode("latin-1")
        m = re.search(r"(?im)^content-length:\s*(\d+)", text)
        length = int(m.group(1)) if m else 0
        while len(body) < length:
            body += self._recv()
        self.rest = body[length:]
        return int(text.split()[1]), text

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk

    def start(self) -> None:
        code, text = self.ask("DESCRIBE", self.url, "Accept: application/sdp")
        nonce = re.search(r'nonce="([^"]+)"', text)
        realm = re.search(r'realm="([^"]+)"', text)
        assert code == 401 and nonce and realm, text
        self.auth = (nonce.group(1), realm.group(1))
        code, text = self.ask("DESCRIBE", self.url, "Accept: application/sdp")
        assert code == 200, text
        self.setup_and_play(self.url + "/trackID=0")

    def setup_and_play(self, track_url: str) -> None:
        """SETUP the one track (TCP interleaved, or UDP when ``udp``), PLAY, then go non-blocking."""
        code, text = self.ask("SETUP", track_url, "Transport: " + self.transport())
        assert code == 200, text
        session = re.search(r"(?im)^session:\s*([^;\r\n]+)", text)
        assert session, text
        self.session = session.group(1).strip()
        if self.udp:
            self.set_up_udp(text)
        code, text = self.ask("PLAY", self.url, f"Session: {self.session}", "Range: npt=0.000-")
        assert code == 200, text
        if self.rest and not self.udp:
            self.got(len(self.rest))
        self.sock.setblocking(False)

    # -- RTP over UDP (bench/fanout_vs_gst.py --transport udp)

    #: Set on the class by the viewer process: SETUP asks for RTP/AVP over UDP (client_port),
    #: and an RTCP receiver report goes every *keepalive* seconds (0: none).
    udp = False
    keepalive = KEEPALIVE

    def transport(self) -> str:
        """The Transport header of SETUP; for UDP, binds this viewer's RTP/RTCP pair first."""
        if not self.udp:
            return "RTP/AVP/TCP;unicast;interleaved=0-1"
        self.rtp, self.rtcp = udp_pair()
        rtp_port = self.rtp.getsockname()[1]
        return f"RTP/AVP;unicast;client_port={rtp_port}-{rtp_port + 1}"

    def set_up_udp(self, reply: str) -> None:
        """Where keep-alives go: the server's RTCP port (``server_port``) at ``source`` or its host."""
        transport = re.search(r"(?im)^transport:\s*(.*)$", reply)
        assert transport, reply
        ports = re.search(r"server_port=(\d+)-(\d+)", transport.group(1))
        source = re.search(r"source=([^;\s]+)", transport.group(1))
        host = source.group(1) if source else self.sock.getpeername()[0]
        self.server_rtcp = (host, int(ports.group(2))) if ports else None
        # Spread the viewers' keep-alives over the period instead of sending them in one burst.
        self.next_keepalive = time.monotonic() + random.uniform(1.0, max(1.0, self.keepalive))

    def sockets(self) -> list[socket.socket]:
        """What the viewer process watches: the RTSP connection, and the UDP pair when there is one."""
        return [s for s in (self.sock, self.rtp, self.rtcp) if s is not None]

    def readable(self, sock: socket.socket, buf: bytearray) -> bool:
        """Read what *sock* has (bounded); False when the server closed the RTSP connection.

        Over TCP every byte is media (interleaved frames).  Over UDP only the RTP socket's
        datagrams count; RTCP (the server's sender reports) and anything on the RTSP
        connection (replies to keep-alives) are read and dropped."""
        if sock is self.sock:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if n and not self.udp:
                self.got(n)
            return n > 0
        total = 0
        for _ in range(UDP_READS):  # bounded: one busy socket does not starve the others
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP-induced errors on loopback: not the server closing
                break
            if sock is self.rtp:
                total += n
        if total:
            self.got(total)
        return True

    def tick(self, now: float) -> None:
        """Keep a UDP session alive (RFC 2326 §12.37, the proxy's 60 s session timeout).

        An RTCP receiver report from the viewer's RTCP port to the server's (GStreamer's
        rtsp-server matches it to the transport by that source address; GlobalEye's proxy
        counts any datagram on the session's ports), or GET_PARAMETER when SETUP named no
        server port."""
        if not self.udp or not self.keepalive or now < self.next_keepalive:
            return
        self.next_keepalive = now + self.keepalive
        try:
            if self.server_rtcp is not None and self.rtcp is not None:
                self.rtcp.sendto(receiver_report(self.ssrc), self.server_rtcp)
            else:
                self.cseq += 1
                self.sock.send(f"GET_PARAMETER {self.url} RTSP/1.0\r\nCSeq: {self.cseq}\r\n"
                               f"Session: {self.session}\r\n\r\n".encode())
        except OSError:
            pass  # a full buffer or a closed connection: the next read or keep-alive tells

    def close(self) -> None:
        """TEARDOWN a UDP session (its media goes on otherwise until the session times out), close all."""
        if self.udp and self.session:
            self.cseq += 1
            try:
                self.sock.send(f"TEARDOWN {self.url} RTSP/1.0\r\nCSeq: {self.cseq}\r\n"
                               f"Session: {self.session}\r\n\r\n".encode())
            except OSError:
                pass
        for s in self.sockets():
            s.close()

    def got(self, n: int) -> None:
        now = time.monotonic()
        if self.first_media is None and n:
            self.first_media = now
        if self.last_media is not None:
            self.max_gap = max(self.max_gap, now - self.last_media)
        self.last_media = now
        self.bytes += n


def udp_pair(host: str = "127.0.0.1", tries: int = 50) -> tuple[socket.socket, socket.socket]:
    """Two non-blocking UDP sockets on *host*, RTP on an even port and RTCP on the next (RFC 3550 §11)."""
    for _ in range(tries):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        rtp.bind((host, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
            except OSError:
                rtcp.close()
            else:
                rtp.setblocking(False)
                rtcp.setblocking(False)
                return rtp, rtcp
        rtp.close()
    raise OSError(f"no even/odd UDP port pair on {host} after {tries} tries")


def receiver_report(ssrc: int) -> bytes:
    """A compound RTCP packet: an empty receiver report (RC=0) and an SDES CNAME (RFC 3550 §6.1)."""
    rr = struct.pack("!BBHI", 0x80, 201, 1, ssrc)
    cname = b"bench@127.0.0.1"
    item = bytes([1, len(cname)]) + cname
    chunk = struct.pack("!I", ssrc) + item + b"\0" * (4 - len(item) % 4)  # null-terminated, 32-bit aligned
    sdes = struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
    return rr + sdes


def viewer_child(host: str, port: int, path: str, make: Callable[[str, int, str], Any] | None = None,
                 coalesce: float = 0.0) -> None:
    """Serve the proxy process's commands on stdin; read every viewer socket on one epoll.

    *make* builds a viewer (default :class:`RawViewer`; bench/web_live.py gives its HTTP one): it
    has ``sock``, ``start()``, ``sockets()``, ``readable(sock, buf)``, ``tick(now)``, ``close()``,
    ``bytes``, ``play_sent``, ``first_media``, ``max_gap``.  A viewer is keyed by its RTSP
    connection's descriptor; its other sockets (RTP and RTCP over UDP) map to it too.

    *coalesce* > 0 (UDP viewers): the loop polls at most once per *coalesce* seconds, so each
    wake-up finds several datagrams per socket instead of one (a datagram is one read, and a
    wake-up per datagram would make this process, not the server, the limit at 1,000
    viewers); the RTP sockets' receive buffers (UDP_RCVBUF) hold far more than that."""
    make = make or RawViewer
    where = pin(1)
    poller = select.epoll()
    viewers: dict[int, Any] = {}
    owners: dict[int, tuple[Any, socket.socket]] = {}  # every watched descriptor -> (viewer, its socket)
    buf = bytearray(256 * 1024)
    stdin = sys.stdin.buffer.raw  # type: ignore[attr-defined]
    poller.register(stdin.fileno(), select.EPOLLIN)
    pending = b""
    next_tick = time.monotonic() + 1.0

    def forget(v: Any) -> None:
        for s in v.sockets():
            if owners.pop(s.fileno(), None) is not None:
                poller.unregister(s.fileno())
        viewers.pop(v.sock.fileno(), None)

    def drain(timeout: float) -> bool:
        """Read what is there; False when stdin closed."""
        nonlocal pending, next_tick
        for fd, _ev in poller.poll(timeout, 8192):
            if fd == stdin.fileno():
                chunk = os.read(fd, 65536)
                if not chunk:
                    return False
                pending += chunk
                continue
            owner = owners.get(fd)
            if owner is None:
                continue
            v, sock = owner
            if not v.readable(sock, buf):
                forget(v)
                v.close()
        now = time.monotonic()
        if now >= next_tick:  # keep-alives (UDP viewers), once a second at most
            next_tick = now + 1.0
            for v in viewers.values():
                v.tick(now)
        return True

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": where})
    while True:
        woke = time.monotonic()
        if not drain(0.2):
            break
        if coalesce > 0:
            time.sleep(max(0.0, coalesce - (time.monotonic() - woke)))
        while b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            command = json.loads(line)
            if "add" in command:
                firsts = []
                added = []
                for _ in range(min(int(command["add"]), MAX_VIEWERS - len(viewers))):
                    v = make(host, port, path)
                    v.start()
                    viewers[v.sock.fileno()] = v
                    for s in v.sockets():
                        owners[s.fileno()] = (v, s)
                        poller.register(s.fileno(), select.EPOLLIN)
                    added.append(v)
                    drain(0)  # the viewers already playing keep being read during the handshakes
                deadline = time.monotonic() + 5
                while any(v.first_media is None for v in added) and time.monotonic() < deadline:
                    drain(0.01)
                firsts = [round(1000 * (v.first_media - v.play_sent), 1) for v in added if v.first_media]
                reply({"added": len(added), "first_media_ms": firsts, "viewers": len(viewers)})
            elif "stats" in command:
                reply({"viewers": len(viewers), "bytes": sum(v.bytes for v in viewers.values())})
            elif "each" in command:  # every viewer's byte count (bench/fanout_vs_gst.py finds short ones)
                ru = resource.getrusage(resource.RUSAGE_SELF)
                now = time.monotonic()
                reply({"viewers": len(viewers), "ids": list(viewers), "bytes_each": [v.bytes for v in viewers.values()],
                       "silent_each": [now - (v.last_media or v.play_sent) for v in viewers.values()],
                       "cpu": ru.ru_utime + ru.ru_stime})
            elif "gaps" in command:  # each viewer's longest silence since the last "gaps"
                reply({"viewers": len(viewers), "gaps_ms": [round(1000 * v.max_gap) for v in viewers.values()]})
                for v in viewers.values():
                    v.max_gap = 0.0
            elif "close" in command:
                for v in list(viewers.values()):
                    forget(v)
                    v.close()
                viewers.clear()
                reply({"closed": True})


# --------------------------------------------------------------------------- the camera process

def camera_child(register_url: str, bit_rate: int) -> None:
    from twisted.internet import defer, task

    from globaleye.device.protocol.messages import BIT_RATES_KBPS
    from globaleye.sim.camera import Timing
    from globaleye.sim.fleet import Fleet
    from globaleye.sim.media.source import MediaLibrary
    from tests.util import http_client

    where = pin(1)

    async def run(reactor: Any) -> None:
        library = MediaLibrary()
        fleet = Fleet(reactor, register_url=register_url, timing=Timing(backoff_initial=0.05), http=http_client(),
                      seed=SEED, media=library)
        fleet.rtsp.media = library
        await fleet.prepare()
        camera = fleet.add(DEV)
        # The camera streams what its 60H settings say: the BitRate code nearest --bit-rate.
        code = min(BIT_RATES_KBPS, key=lambda c: abs(BIT_RATES_KBPS[c] * 1000 - bit_rate))
        camera.state.video(0, 1).bit_rate = code
        loop = await library.video_async(fleet.rtsp.cameras[DEV].encoding(0, 1).video, reactor)
        rate = sum(len(p) for f in loop.frames for p, _ in f.payloads) * 8 / loop.params.seconds
        fleet.start()
        await camera.went_online
        print(json.dumps({"online": where, "video_payload_bps": rate}), flush=True)
        done: defer.Deferred[None] = defer.Deferred()
        reactor.addReader(_StdinClosed(done))
        await done
        await fleet.stop()

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


class _StdinClosed:
    """A reader on stdin that fires when the parent closes it (the camera process then ends)."""

    def __init__(self, done: Any) -> None:
        self.done = done

    def fileno(self) -> int:
        return 0

    def doRead(self) -> None:  # noqa: N802
        if not os.read(0, 4096) and not self.done.called:
            from twisted.internet import reactor
            reactor.removeReader(self)  # type: ignore[attr-defined]
            self.done.callback(None)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        pass

    def logPrefix(self) -> str:  # noqa: N802
        return "stdin"


# --------------------------------------------------------------------------- the proxy process

class Child:
    """A child process spoken to in JSON lines, each answer awaited with a time limit."""

    def __init__(self, reactor: Any, args: list[str]) -> None:
        from twisted.internet import protocol

        child = self
        self.reactor = reactor
        self.lines: list[dict[str, Any]] = []
        self.waiting: Any = None
        self.buf = b""

        class P(protocol.ProcessProtocol):
            def outReceived(self, data: bytes) -> None:  # noqa: N802
                child.buf += data
                while b"\n" in child.buf:
                    line, _, child.buf = child.buf.partition(b"\n")
                    if line.startswith(b"{"):
                        child.lines.append(json.loads(line))
                child._wake()

            def errReceived(self, data: bytes) -> None:  # noqa: N802
                sys.stderr.write(data.decode(errors="replace"))

        self.protocol = P()
        self.process = reactor.spawnProcess(self.protocol, sys.executable, [sys.executable, *args],
                                            env=dict(os.environ), childFDs={0: "w", 1: "r", 2: "r"})

    def _wake(self) -> None:
        if self.lines and self.waiting is not None:
            d, self.waiting = self.waiting, None
            d.callback(self.lines.pop(0))

    async def answer(self, command: dict[str, Any] | None = None, timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
        from twisted.internet import defer
        if command is not None:
            self.process.writeToChild(0, (json.dumps(command) + "\n").encode())
        self.waiting = defer.Deferred()
        d = self.waiting
        self._wake()
        d.addTimeout(timeout, self.reactor)
        return await d  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            self.process.closeStdin()
        except Exception:
            pass


def usage() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return ru.ru_utime + ru.ru_stime, rss / 1e6


async def start_platform(reactor: Any) -> Any:
    """The platform (in this process) on an in-memory store, with the account owning the camera,
    logged in; STUN pointed at the platform's own TURN server.  Shared by the fan-out benchmarks."""
    import attrs

    from globaleye.platform.config import parse_config
    from globaleye.platform.tap import PlatformService
    from globaleye.sim.camera import device_key
    from globaleye.store import Account, Binding, Device
    from globaleye.store.sqlite import SQLiteStore

    platform = PlatformService(parse_config(CONFIG), SQLiteStore(":memory:"), reactor)
    platform.startService()
    turn_port = platform.turn.addresses["udp"][1] if platform.turn is not None else 0
    platform.client.media.settings = attrs.evolve(platform.client.media.settings, stun_host="127.0.0.1", stun_port=turn_port)
    now = reactor.seconds()
    await platform.store.create_account(Account(MOBILE, await platform.accounts.hash_password(PASSWORD), now, now))
    await platform.store.enroll_device(Device(dev_id=DEV, dev_key=device_key(SEED, DEV)))
    await platform.store.bind_device(Binding(MOBILE, DEV, 0, DEV, now), 10)
    await platform.accounts.login(MOBILE, PASSWORD, "1.0", "bench")
    return platform


async def start_camera(reactor: Any, platform: Any, bit_rate: int, relay: bool = True) -> tuple[Child, dict[str, Any]]:
    """The simulated camera's process, registered and online (its "online" answer); with *relay*,
    also until the platform knows its TURN relay (every §15 path can then be tried)."""
    from twisted.internet.task import deferLater

    camera = Child(reactor, [os.path.abspath(__file__), "--camera-child",
                             f"http://127.0.0.1:{platform.port_of('http')}/register", "--bit-rate", str(bit_rate)])
    online = await camera.answer()
    while relay and not ((addresses := platform.gateway.live_addresses(DEV)) and addresses.rtsp_turn_relay_port):
        await deferLater(reactor, 0.1, lambda: None)
    return camera, online


async def bench(reactor: Any, args: argparse.Namespace) -> None:
    from twisted.internet.task import deferLater

    from globaleye.media.rtsp.paths import PathSettings

    where = pin(0)
    platform = await start_platform(reactor)
    me = os.path.abspath(__file__)
    camera, online = await start_camera(reactor, platform, args.bit_rate)
    factory = platform.rtsp_proxy.factory  # type: ignore[union-attr]
    port = platform.port_of("rtsp")
    viewers = Child(reactor, [me, "--viewer-child", str(port), f"/live/{DEV}/0/1"])
    ready = await viewers.answer()
    print(f"proxy process: {where}; camera process: {online['online']}; viewer process: {ready['ready']}; "
          f"main stream 1280x720 25 fps, video payload {online['video_payload_bps'] / 1e6:.2f} Mbit/s "
          f"(--bit-rate {args.bit_rate})")
    print()

    def upstream_bytes() -> int:
        hub = factory.hubs.get((DEV, 0, 1))
        return hub.upstream.bytes if hub is not None and hub.upstream is not None else 0

    def dropped() -> int:
        return sum(s.viewer.frames_dropped for s in factory.sessions.values() if s.viewer is not None)

    async def window() -> dict[str, float]:
        cpu0, _ = usage()
        up0, drop0 = upstream_bytes(), dropped()
        got0 = (await viewers.answer({"stats": 1}))["bytes"]
        t0 = time.monotonic()
        await deferLater(reactor, args.seconds, lambda: None)
        stats = await viewers.answer({"stats": 1})
        wall = time.monotonic() - t0
        cpu1, rss = usage()
        return {"cpu": 100 * (cpu1 - cpu0) / wall, "rss": rss, "up": (upstream_bytes() - up0) / wall,
                "down": (stats["bytes"] - got0) / wall / max(1, stats["viewers"]), "dropped": dropped() - drop0,
                "viewers": stats["viewers"]}

    print("| viewers | proxy CPU % | CPU % per viewer | RSS MB | RSS KB per extra viewer | upstream kB/s "
          "| bytes/s per viewer | per viewer / upstream | pictures skipped (window) | PLAY → first media byte, "
          "viewer side, median / max (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    first = await viewers.answer({"add": 1})
    await deferLater(reactor, 1.0, lambda: None)
    base = await window()
    print(f"| 1 | {base['cpu']:.1f} | {base['cpu']:.2f} | {base['rss']:.0f} | – | {base['up'] / 1e3:.0f} | "
          f"{base['down'] / 1e3:.0f} kB | {base['down'] / max(1, base['up']):.2f} | {base['dropped']} | "
          f"{_ms(first['first_media_ms'])} |")
    profile: cProfile.Profile | None = None
    for n in args.viewers:
        n = min(n, MAX_VIEWERS)
        added = await viewers.answer({"add": n - 1})
        await deferLater(reactor, 1.0, lambda: None)
        if args.profile and n == max(args.viewers):
            profile = cProfile.Profile()
            profile.enable()
        w = await window()
        if profile is not None:
            profile.disable()
        print(f"| {w['viewers']} | {w['cpu']:.1f} | {w['cpu'] / w['viewers']:.3f} | {w['rss']:.0f} | "
              f"{1000 * (w['rss'] - base['rss']) / max(1, w['viewers'] - 1):.0f} | {w['up'] / 1e3:.0f} | "
              f"{w['down'] / 1e3:.0f} kB | {w['down'] / max(1, w['up']):.2f} | {w['dropped']} | "
              f"{_ms(added['first_media_ms'])} |", flush=True)
        await viewers.answer({"close": 1})
        await deferLater(reactor, 0.5, lambda: None)
        first = await viewers.answer({"add": 1})
        await deferLater(reactor, 0.5, lambda: None)
        base = {**base, "rss": usage()[1]}
    await viewers.answer({"close": 1})
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
        with open(args.profile, "w") as f:
            f.write(out.getvalue())
    async def recovery(hub: Any) -> tuple[str, str, int]:
        """Cut the upstream's connection under RECOVERY_VIEWERS viewers, as a camera that drops it."""
        if hub is None or hub.upstream is None or hub.upstream.protocol is None:
            return "–", "–", 0
        await viewers.answer({"add": RECOVERY_VIEWERS - 1})
        await deferLater(reactor, 1.0, lambda: None)
        await viewers.answer({"gaps": 1})
        before = hub.recoveries
        hub.upstream.protocol.transport.abortConnection()
        deadline = time.monotonic() + 40
        while hub.recoveries == before and hub.recovering and time.monotonic() < deadline:
            await deferLater(reactor, 0.01, lambda: None)
        await deferLater(reactor, 2.0, lambda: None)
        gaps = await viewers.answer({"gaps": 1})
        last = hub.last_recovery or {}
        back = f"{1000 * last['seconds']:.0f}, {last['tries']}" if last.get("ok") else f"failed: {last}"
        return back, _ms(gaps["gaps_ms"]), gaps["viewers"]

    print()
    print("| path | PLAY → first IDR sent (proxy side, ms) | PLAY → first media byte (viewer side, ms) "
          "| path selection (ms) | upstream dropped: back after (ms), tries | longest silence at the "
          f"{RECOVERY_VIEWERS} viewers, median / max (ms) | viewers left |")
    print("|---|---|---|---|---|---|---|")
    for path in ("local", "turn-udp", "turn-tcp"):
        await deferLater(reactor, 0.6, lambda: None)  # linger over: the next viewer selects a path again
        factory.paths = PathSettings(connect_timeout=2, udp_timeout=5, media_timeout=5, paths=(path,))
        started = time.monotonic()
        added = await viewers.answer({"add": 1})
        selected = (time.monotonic() - started) * 1000
        sessions = [s for s in factory.sessions.values() if s.viewer and s.viewer.first_frame_after is not None]
        hub = factory.hubs.get((DEV, 0, 1))
        chosen = hub.upstream.path if hub is not None and hub.upstream is not None else "?"
        firsts = [s.viewer.stats()["first_frame_ms"] for s in sessions]
        back, silence, left = await recovery(hub)
        print(f"| {path} ({chosen}) | {firsts[0] if firsts else '–'} | {_ms(added['first_media_ms'])} "
              f"| {selected:.0f} | {back} | {silence} | {left} |", flush=True)
        await viewers.answer({"close": 1})
    viewers.close()
    camera.close()
    await deferLater(reactor, 0.5, lambda: None)
    await platform.stopService()


def _ms(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.0f} / {max(values):.0f}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--viewers", type=int, nargs="+", default=[10, 100, 500])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--bit-rate", type=int, default=2_000_000, help="main stream's encoder bit rate (bit/s)")
    p.add_argument("--profile", help="cProfile the proxy process during the largest window; write the top here")
    p.add_argument("--camera-child", metavar="REGISTER_URL")
    p.add_argument("--viewer-child", nargs=2, metavar=("PORT", "PATH"))
    args = p.parse_args()
    if args.camera_child:
        camera_child(args.camera_child, args.bit_rate)
        return
    if args.viewer_child:
        viewer_child("127.0.0.1", int(args.viewer_child[0]), args.viewer_child[1])
        return
    from twisted.internet import defer, task
    task.react(lambda reactor: defer.Deferred.fromCoroutine(bench(reactor, args)))


if __name__ == "__main__":
    main()
