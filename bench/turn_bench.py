"""txturn vs coturn, side by side in one run: STUN, TURN allocations, RFC 6062 relaying.

    python3 bench/turn_bench.py                      # the full run (about 3 minutes)
    python3 bench/turn_bench.py --seconds 5 --json /tmp/turn.json
    python3 bench/turn_bench.py --profile-dir /tmp/prof --only txturn   # cProfile the server

One server at a time, each pinned to core 0 (``taskset -c 0``); this driver and its
load generators are pinned to core 1.  Servers, in order:

* ``txturn``         -- ``txturn.service.turn_service`` (this script's ``serve-txturn``
  mode), static user, relay ports 20000-24999, allow_peers=127.0.0.0/8, splice on;
* ``txturn-nosplice`` -- the same with ``use_splice=False`` (relay measures only);
* ``coturn``          -- Debian's ``turnserver`` (``-n --lt-cred-mech --allow-loopback-peers``,
  relay ports 25000-29999, default thread count, log to a file).

Measures (each bounded in time *and* count):

* **STUN Binding/s over UDP** -- ``turnload stun``: a C generator (compiled at start from
  the source below with ``cc``) keeps WINDOW requests in flight with sendmmsg/recvmmsg;
  every answer frees its slot, a slot unanswered for 200 ms counts as lost.
* **Authenticated TCP allocations/s** -- a Python generator on ``txturn.stun`` and
  ``selectors``: CONCURRENCY workers, each: connect, Allocate (REQUESTED-TRANSPORT
  TCP by default) -> 401, Allocate with USERNAME/REALM/NONCE/MESSAGE-INTEGRITY -> 200,
  Refresh LIFETIME 0 -> 200, close.
* **RFC 6062 relay throughput (MB/s, 1e6 bytes)** with 1, 10 and 100 connections -- the
  camera side is ``txturn.turnclient.TurnClient`` (peers=[127.0.0.1], the concrete
  peer, because coturn answers 403 to the spec-14 wildcard) with a discarding sink
  protocol in this process; ``turnload push`` (C, epoll, 256 KiB writes) opens N
  connections to the relayed address and writes for SECONDS.  The figure is the bytes
  the sink received between 1 s after the start and the end of the push, divided by
  that time.  After the push the sink's total must equal the bytes written (checked).

Besides each figure the script reports the CPU the server process used (100 % = its one
core) and how busy core 0 and core 1 were (from /proc/stat, kernel time included), so
a reader can see which side was the bottleneck.  Loopback only; servers and relay
ports are outside the ephemeral port range.  Servers are killed on exit.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from txturn import stun  # noqa: E402

USER, PASSWORD, REALM = "bench", "bench-password", "bench.realm"
HOST = "127.0.0.1"
TXTURN_PORT, TXTURN_RELAYS = 13478, (20000, 24999)
COTURN_PORT, COTURN_RELAYS = 13578, (25000, 29999)
SERVER_CORE, DRIVER_CORE = 0, 1

M, C, A = stun.Method, stun.Class, stun.Attr

TURNLOAD_C = r"""/* turnload: C load generator for bench/turn_bench.py (loopback only).
 *   turnload stun HOST PORT WINDOW SECONDS MAXCOUNT
 *       pipelined STUN Binding over UDP: WINDOW requests in flight, each answer
 *       (a Binding success with a tid we sent) frees its slot, which is re-sent
 *       at once; a slot unanswered for 200 ms counts as lost and is re-sent.
 *   turnload push HOST PORT NCONN SECONDS WRITESIZE
 *       NCONN TCP connections writing WRITESIZE-byte chunks (sendfile from a
 *       memfd) as fast as the kernel takes them for SECONDS; prints bytes written.
 * Output: one JSON line on stdout. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int stun(const char *host, int port, int window, double seconds, long maxcount) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {0}; sa.sin_family = AF_INET; sa.sin_port = htons(port);
    inet_pton(AF_INET, host, &sa.sin_addr);
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 2; }
    struct timeval tv = {0, 20000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (window > 4096) window = 4096;
    uint32_t *seq = calloc(window, 4); double *sent_at = calloc(window, sizeof(double));
    unsigned char req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42};
    long sent = 0, received = 0, lost = 0, bad = 0;
    #define BATCH 64
    struct mmsghdr out[BATCH], in[BATCH]; struct iovec oio[BATCH], iio[BATCH];
    unsigned char obuf[BATCH][20], ibuf[BATCH][1500];
    memset(out, 0, sizeof out); memset(in, 0, sizeof in);
    for (int i = 0; i < BATCH; i++) {
        oio[i].iov_base = obuf[i]; oio[i].iov_len = 20;
        out[i].msg_hdr.msg_iov = &oio[i]; out[i].msg_hdr.msg_iovlen = 1;
        iio[i].iov_base = ibuf[i]; iio[i].iov_len = 1500;
        in[i].msg_hdr.msg_iov = &iio[i]; in[i].msg_hdr.msg_iovlen = 1;
    }
    int pending[4096]; int npending = 0;
    double start = now(), deadline = start + seconds, last_scan = start;
    for (int s = 0; s < window; s++) pending[npending++] = s;
    while (1) {
        double t = now();
        if (t >= deadline || (maxcount > 0 && received >= maxcount)) break;
        /* send every pending slot, BATCH at a time */
        while (npending > 0) {
            int n = npending < BATCH ? npending : BATCH;
            for (int i = 0; i < n; i++) {
                int s = pending[npending - n + i];
                seq[s]++;
                memcpy(obuf[i], req, 8);
                uint32_t a = htonl((uint32_t)s), b = htonl(seq[s]), c = htonl(0x7475726e);
                memcpy(obuf[i] + 8, &a, 4); memcpy(obuf[i] + 12, &b, 4); memcpy(obuf[i] + 16, &c, 4);
                sent_at[s] = t;
            }
            int r = sendmmsg(fd, out, n, 0);
            if (r <= 0) { if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED) break; perror("sendmmsg"); return 2; }
            sent += r; npending -= r;
        }
        int r = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
        if (r > 0) {
            for (int i = 0; i < r; i++) {
                unsigned char *p = ibuf[i];
                if (in[i].msg_len < 20 || p[0] != 0x01 || p[1] != 0x01) { bad++; continue; }
                uint32_t s, q; memcpy(&s, p + 8, 4); memcpy(&q, p + 12, 4); s = ntohl(s); q = ntohl(q);
                if (s >= (uint32_t)window || q != seq[s]) { bad++; continue; }
                received++;
                pending[npending++] = s;
            }
        }
        if (t - last_scan > 0.05) {
            last_scan = t;
            for (int s = 0; s < window; s++) {
                int inflight = 1;
                for (int k = 0; k < npending; k++) if (pending[k] == s) { inflight = 0; break; }
                if (inflight && t - sent_at[s] > 0.2) { lost++; pending[npending++] = s; }
            }
        }
    }
    double el = now() - start;
    printf("{\"sent\": %ld, \"received\": %ld, \"lost\": %ld, \"bad\": %ld, \"seconds\": %.4f, \"rate\": %.1f}\n",
           sent, received, lost, bad, el, received / el);
    return 0;
}

static int push(const char *host, int port, int nconn, double seconds, int wsize) {
    struct sockaddr_in sa = {0}; sa.sin_family = AF_INET; sa.sin_port = htons(port);
    inet_pton(AF_INET, host, &sa.sin_addr);
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(0);
    int *fds = calloc(nconn, sizeof(int));
    long long *bytes = calloc(nconn, sizeof(long long));
    /* The payload lives in a memfd and goes out with sendfile(): the pages are
     * referenced, not copied, so the generator spends its core on TCP, not memcpy. */
    char *data = malloc(wsize); memset(data, 'x', wsize);
    int mfd = memfd_create("turnload", 0);
    if (mfd < 0 || write(mfd, data, wsize) != wsize) { perror("memfd"); return 2; }
    for (int i = 0; i < nconn; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 2; }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        fds[i] = fd;
    }
    struct epoll_event evs[256];
    long long total = 0; long errors = 0;
    double start = now(), deadline = start + seconds;
    while (now() < deadline) {
        int n = epoll_wait(ep, evs, 256, 50);
        for (int k = 0; k < n; k++) {
            int i = evs[k].data.u32;
            if (fds[i] < 0) continue;
            if (evs[k].events & (EPOLLERR | EPOLLHUP)) { errors++; epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL); close(fds[i]); fds[i] = -1; continue; }
            for (int w = 0; w < 4; w++) {
                off_t off = 0;
                ssize_t r = sendfile(fds[i], mfd, &off, wsize);
                if (r > 0) { bytes[i] += r; total += r; if (r < wsize) break; }
                else { if (errno != EAGAIN) { errors++; epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL); close(fds[i]); fds[i] = -1; } break; }
            }
        }
    }
    double el = now() - start;
    long long mn = -1, mx = 0;
    for (int i = 0; i < nconn; i++) { if (mn < 0 || bytes[i] < mn) mn = bytes[i]; if (bytes[i] > mx) mx = bytes[i]; if (fds[i] >= 0) close(fds[i]); }
    printf("{\"bytes\": %lld, \"seconds\": %.4f, \"errors\": %ld, \"min_conn_bytes\": %lld, \"max_conn_bytes\": %lld}\n",
           total, el, errors, mn, mx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 7 && !strcmp(argv[1], "stun"))
        return stun(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atol(argv[6]));
    if (argc == 7 && !strcmp(argv[1], "push"))
        return push(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atoi(argv[6]));
    fprintf(stderr, "usage: turnload stun HOST PORT WINDOW SECONDS MAXCOUNT | push HOST PORT NCONN SECONDS WRITESIZE\n");
    return 1;
}
"""


# --------------------------------------------------------------------------- server mode


def serve_txturn(args: argparse.Namespace) -> None:
    """Child process: run txturn.service.turn_service until SIGTERM."""
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    from txturn.service import TurnServerConfig, turn_service

    logfile = open(args.log, "a")  # noqa: SIM115
    observer = FilteringLogObserver(
        textFileLogObserver(logfile), [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    config = TurnServerConfig(
        interface=HOST,
        port=args.port,
        realm=REALM,
        relay_interface=HOST,
        relay_ports=(args.relay_min, args.relay_max),
        users={USER: PASSWORD},
        allow_peers=("127.0.0.0/8",),
        use_splice=bool(args.splice),
    )
    svc = turn_service(config, reactor=reactor)
    svc.startService()

    def report() -> None:
        print(json.dumps({"stats_spliced": svc.server.stats_spliced}), flush=True)

    reactor.addSystemEventTrigger("before", "shutdown", report)  # type: ignore[attr-defined]
    print("READY", flush=True)
    if args.cprofile:
        import cProfile

        prof = cProfile.Profile()
        prof.runcall(reactor.run)  # type: ignore[attr-defined]
        prof.dump_stats(args.cprofile)
    else:
        reactor.run()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- process helpers


def clk_tck() -> int:
    return os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """user+system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clk_tck()


def core_times() -> dict[int, tuple[int, int]]:
    """{cpu: (busy, total)} jiffies from /proc/stat (busy excludes idle and iowait)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals]
            total = sum(v[:8])
            out[int(name[3:])] = (total - v[3] - v[4], total)
    return out


class Meter:
    """CPU use of the server process and of each core over an interval."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.t0 = time.monotonic()
        self.cpu0 = proc_cpu(server_pid)
        self.cores0 = core_times()
        self.self0 = os.times()

    def done(self) -> dict[str, float]:
        el = time.monotonic() - self.t0
        cores1 = core_times()
        self1 = os.times()
        out = {"server_cpu_pct": round(100 * (proc_cpu(self.pid) - self.cpu0) / el, 1)}
        for cpu in (SERVER_CORE, DRIVER_CORE):
            b0, t0 = self.cores0[cpu]
            b1, t1 = cores1[cpu]
            out[f"core{cpu}_busy_pct"] = round(100 * (b1 - b0) / max(1, t1 - t0), 1)
        used = sum(self1[:4]) - sum(self.self0[:4])  # this process + reaped children
        out["driver_cpu_pct"] = round(100 * used / el, 1)
        return out


def udp_binding_ok(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    try:
        tid = stun.new_transaction_id()
        s.sendto(stun.encode(stun.Message(M.BINDING, C.REQUEST, tid, {})), (HOST, port))
        data = s.recv(2048)
        return stun.decode(data).transaction_id == tid
    except OSError:
        return False
    finally:
        s.close()


def tcp_ok(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
        return True
    except OSError:
        return False


class PortTaken(RuntimeError):
    pass


def ensure_free(name: str, port: int) -> None:
    """Refuse to start *name* on a port another process holds: the run would measure that process."""
    for kind, proto in ((socket.SOCK_STREAM, "TCP"), (socket.SOCK_DGRAM, "UDP")):
        s = socket.socket(socket.AF_INET, kind)
        if kind == socket.SOCK_STREAM:  # a TIME_WAIT left by an earlier run is no owner
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise PortTaken(f"{name}: {proto} {HOST}:{port} is taken by another process ({e.strerror}); "
                            f"stop it first: this benchmark would measure that process") from e
        finally:
            s.close()


class Server:
    def __init__(self, name: str, argv: list[str], port: int, workdir: Path) -> None:
        self.name = name
        self.port = port
        self.logpath = workdir / f"{name}.log"
        self.outpath = workdir / f"{name}.out"
        self.argv = ["taskset", "-c", str(SERVER_CORE), *argv]
        ensure_free(name, port)  # or the checks below would be answered by whoever holds it
        out = open(self.outpath, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )
        out.close()
        RUNNING.append(self)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.outpath.read_text()[-2000:]}")
            if udp_binding_ok(port) and tcp_ok(port):
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{name} did not answer on {HOST}:{port}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self in RUNNING:
            RUNNING.remove(self)


RUNNING: list[Server] = []


def _kill_all() -> None:
    for s in list(RUNNING):
        try:
            s.proc.kill()
            s.proc.wait(5)
        except Exception:
            pass
        RUNNING.remove(s)


def start_txturn(workdir: Path, splice: bool, cprofile: str | None, name: str) -> Server:
    argv = [
        sys.executable, str(Path(__file__).resolve()), "serve-txturn",
        "--port", str(TXTURN_PORT),
        "--relay-min", str(TXTURN_RELAYS[0]), "--relay-max", str(TXTURN_RELAYS[1]),
        "--splice", "1" if splice else "0",
        "--log", str(workdir / f"{name}.log"),
    ]
    if cprofile:
        argv += ["--cprofile", cprofile]
    return Server(name, argv, TXTURN_PORT, workdir)


def coturn_argv(workdir: Path) -> list[str]:
    return [
        "turnserver", "-n",
        f"--listening-ip={HOST}", f"--listening-port={COTURN_PORT}",
        f"--relay-ip={HOST}", f"--min-port={COTURN_RELAYS[0]}", f"--max-port={COTURN_RELAYS[1]}",
        f"--user={USER}:{PASSWORD}", f"--realm={REALM}", "--lt-cred-mech",
        "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls",
        f"--log-file={workdir / 'coturn.log'}", "--simple-log",
        f"--pidfile={workdir / 'coturn.pid'}",
    ]


def start_coturn(workdir: Path) -> Server:
    return Server("coturn", coturn_argv(workdir), COTURN_PORT, workdir)


def build_turnload(workdir: Path) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("a C compiler (cc) is needed for the load generator")
    src = workdir / "turnload.c"
    src.write_text(TURNLOAD_C)
    exe = workdir / "turnload"
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    return str(exe)


# --------------------------------------------------------------------------- STUN


def bench_stun(turnload: str, server: Server, seconds: float, window: int, max_count: int) -> dict:
    meter = Meter(server.pid)
    out = subprocess.run(
        [turnload, "stun", HOST, str(server.port), str(window), str(seconds), str(max_count)],
        check=True, capture_output=True, text=True, timeout=seconds + 30,
    ).stdout
    result = json.loads(out)
    result.update(meter.done())
    return result


# --------------------------------------------------------------------------- allocations


class _Worker:
    __slots__ = ("sock", "state", "buf", "tid", "nonce", "t0")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = "connect"
        self.buf = bytearray()
        self.tid = b""
        self.nonce = ""
        self.t0 = time.monotonic()


def bench_allocations(
    server: Server, seconds: float, max_count: int, concurrency: int, transport: int
) -> dict:
    """Allocate (401 round) + authenticated Allocate + Refresh 0, one TCP connection each."""
    sel = selectors.DefaultSelector()
    keys: dict[str, bytes] = {}
    done = 0
    started = 0
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    meter = Meter(server.pid)
    t_start = time.monotonic()
    deadline = t_start + seconds

    def open_one() -> None:
        nonlocal started
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        s.connect_ex((HOST, server.port))
        started += 1
        sel.register(s, selectors.EVENT_WRITE, _Worker(s))

    def finish(w: _Worker, error: str | None) -> None:
        nonlocal done
        sel.unregister(w.sock)
        w.sock.close()
        if error is None:
            done += 1
            latencies.append(time.monotonic() - w.t0)
        else:
            errors[error] += 1
        if time.monotonic() < deadline and started < max_count:
            open_one()

    def send(w: _Worker, method: int, attributes: dict[int, Any], realm: str | None) -> None:
        w.tid = os.urandom(12)
        key = None
        if realm is not None:
            attributes = {
                **attributes, A.USERNAME: USER, A.REALM: realm, A.NONCE: w.nonce,
            }
            key = keys.get(realm)
            if key is None:
                key = keys[realm] = stun.long_term_key(USER, realm, PASSWORD)
        w.sock.send(stun.encode(stun.Message(method, C.REQUEST, w.tid, attributes), integrity_key=key))

    realm_seen: dict[str, str] = {}

    def on_message(w: _Worker, msg: stun.Message) -> None:
        if msg.transaction_id != w.tid:
            return finish(w, "unexpected transaction id")
        code = msg.attributes.get(A.ERROR_CODE, (0, ""))[0]
        if w.state == "challenge":
            if code != 401:
                return finish(w, f"first Allocate got {code or 'success'}")
            realm_seen["r"] = msg.attributes[A.REALM]
            w.nonce = msg.attributes[A.NONCE]
            w.state = "allocate"
            send(w, M.ALLOCATE, {A.REQUESTED_TRANSPORT: transport}, realm_seen["r"])
        elif w.state == "allocate":
            if code == 438:
                w.nonce = msg.attributes[A.NONCE]
                return send(w, M.ALLOCATE, {A.REQUESTED_TRANSPORT: transport}, realm_seen["r"])
            if msg.msg_class != C.SUCCESS or A.XOR_RELAYED_ADDRESS not in msg.attributes:
                return finish(w, f"Allocate got {code}")
            w.state = "refresh"
            send(w, M.REFRESH, {A.LIFETIME: 0}, realm_seen["r"])
        elif w.state == "refresh":
            if msg.msg_class != C.SUCCESS:
                return finish(w, f"Refresh 0 got {code}")
            finish(w, None)

    for _ in range(min(concurrency, max_count)):
        open_one()
    hard_deadline = deadline + 10
    while sel.get_map() and time.monotonic() < hard_deadline:
        for key, _mask in sel.select(0.5):
            w: _Worker = key.data
            if w.state == "connect":
                err = w.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(w, f"connect: {os.strerror(err)}")
                    continue
                sel.modify(w.sock, selectors.EVENT_READ, w)
                w.state = "challenge"
                send(w, M.ALLOCATE, {A.REQUESTED_TRANSPORT: transport}, None)
                continue
            try:
                data = w.sock.recv(65536)
            except OSError as e:
                finish(w, f"recv: {e.strerror}")
                continue
            if not data:
                finish(w, f"closed by server in state {w.state}")
                continue
            w.buf += data
            while w.state != "closed":
                size = stun.message_length(w.buf)
                if size is None or len(w.buf) < size:
                    break
                frame = bytes(w.buf[:size])
                del w.buf[:size]
                before = done + sum(errors.values())
                on_message(w, stun.decode(frame))
                if done + sum(errors.values()) != before:
                    w.state = "closed"
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
        errors["unfinished at the deadline"] += 1
    elapsed = time.monotonic() - t_start
    result = {
        "allocations": done,
        "seconds": round(elapsed, 3),
        "rate": round(done / elapsed, 1),
        "errors": dict(errors),
        "concurrency": concurrency,
        "requested_transport": "tcp" if transport == 6 else "udp",
    }
    if latencies:
        latencies.sort()
        result["latency_ms_p50"] = round(1000 * latencies[len(latencies) // 2], 2)
        result["latency_ms_p99"] = round(1000 * latencies[int(len(latencies) * 0.99)], 2)
    result.update(meter.done())
    return result


# --------------------------------------------------------------------------- RFC 6062 relay


def make_sink_factory() -> Any:
    from twisted.internet import protocol, reactor

    class TruncReader:
        """Reads the relayed socket with recv(MSG_TRUNC): Linux TCP counts and
        discards the bytes without copying them, so the camera side is cheap."""

        def __init__(self, sink: Any, real: Any) -> None:
            self.sink = sink
            self.real = real
            self.sock = real.socket
            self.buf = bytearray(1 << 20)

        def fileno(self) -> int:
            return self.sock.fileno()

        def logPrefix(self) -> str:  # noqa: N802
            return "TruncReader"

        def doRead(self) -> None:  # noqa: N802
            for _ in range(16):
                try:
                    n = self.sock.recv_into(self.buf, len(self.buf), socket.MSG_TRUNC)
                except BlockingIOError:
                    return
                except OSError:
                    n = 0
                if n == 0:
                    reactor.removeReader(self)
                    self.real.loseConnection()
                    return
                self.sink.factory.bytes += n

        def connectionLost(self, reason: Any) -> None:  # noqa: N802
            reactor.removeReader(self)

    class Sink(protocol.Protocol):
        def connectionMade(self) -> None:  # noqa: N802
            f = self.factory
            f.open += 1
            f.conns_total += 1
            # The relayed transport wraps the real TCP transport; take its socket over.
            real = getattr(self.transport, "_transport", self.transport)
            real.stopReading()
            self.reader = TruncReader(self, real)
            reactor.callLater(0, reactor.addReader, self.reader)

        def dataReceived(self, data: bytes) -> None:  # noqa: N802
            self.factory.bytes += len(data)

        def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
            self.factory.open -= 1
            reactor.removeReader(self.reader)

    class SinkFactory(protocol.Factory):
        noisy = False

        def __init__(self) -> None:
            self.bytes = 0
            self.open = 0
            self.conns_total = 0

    SinkFactory.protocol = Sink  # type: ignore[assignment]
    return SinkFactory()


def _at(samples: list[tuple[float, int]], t: float, before: bool) -> tuple[float, int]:
    if before:
        cands = [s for s in samples if s[0] <= t]
        return cands[-1] if cands else samples[0]
    cands = [s for s in samples if s[0] >= t]
    return cands[0] if cands else samples[-1]


async def bench_relay(
    reactor: Any, turnload: str, server: Server, sink: Any, relayed: tuple[str, int],
    n: int, seconds: float, write_size: int, warmup: float,
) -> dict:
    from twisted.internet import task, utils

    sink.bytes = sink.conns_total = 0
    samples: list[tuple[float, int]] = []
    lc = task.LoopingCall(lambda: samples.append((time.monotonic(), sink.bytes)))
    lc.start(0.05)
    meters: list[Meter] = []
    t0 = time.monotonic()
    reactor.callLater(warmup, lambda: meters.append(Meter(server.pid)))
    out, err, code = await utils.getProcessOutputAndValue(
        turnload,
        ["push", relayed[0], str(relayed[1]), str(n), str(seconds), str(write_size)],
        env=os.environ, reactor=reactor,
    )
    t_end = time.monotonic()
    cpu = meters[0].done() if meters else {}
    if code != 0:
        lc.stop()
        raise RuntimeError(f"turnload push failed: {err.decode()}")
    pushed = json.loads(out)
    # Drain: until every relayed connection has closed and the count is stable.
    drain_deadline = time.monotonic() + 15
    while time.monotonic() < drain_deadline and (sink.open > 0 or sink.bytes < pushed["bytes"]):
        await task.deferLater(reactor, 0.1, lambda: None)
    lc.stop()
    samples.append((time.monotonic(), sink.bytes))
    (ta, ba), (tb, bb) = _at(samples, t0 + warmup, False), _at(samples, t_end, True)
    rate = (bb - ba) / (tb - ta) / 1e6 if tb > ta else 0.0
    return {
        "connections": n,
        "MBps": round(rate, 1),
        "Gbitps": round(rate * 8 / 1000, 2),
        "window_s": round(tb - ta, 2),
        "pushed_bytes": pushed["bytes"],
        "delivered_bytes": sink.bytes,
        "lossless": sink.bytes == pushed["bytes"],
        "relayed_connections_seen": sink.conns_total,
        "push_errors": pushed["errors"],
        "min_conn_bytes": pushed["min_conn_bytes"],
        **cpu,
    }


# --------------------------------------------------------------------------- reporting


def machine_info() -> dict[str, str]:
    import platform

    import twisted

    model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), "?",
    )
    try:
        cv = subprocess.run(["turnserver", "--version"], capture_output=True, text=True, timeout=10)
        coturn = (cv.stdout or cv.stderr).strip().splitlines()[-1]
    except Exception:
        coturn = "not installed"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "coturn": coturn,
    }


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}"


def print_table(results: dict) -> None:
    s = results["servers"]
    ours, nos, cot = s.get("txturn", {}), s.get("txturn-nosplice", {}), s.get("coturn", {})

    def g(d: dict, *path: str) -> Any:
        for p in path:
            if not isinstance(d, dict) or p not in d:
                return None
            d = d[p]
        return d

    rows = [("STUN Binding/s (UDP)", ("stun", "rate"), ("stun", "server_cpu_pct"), "{:,.0f}"),
            ("TCP allocations/s (401 round + Refresh 0)", ("alloc", "rate"), ("alloc", "server_cpu_pct"), "{:,.0f}")]
    for n in results["params"]["conns"]:
        rows.append((f"RFC 6062 relay, {n} conn, MB/s", ("relay", str(n), "MBps"),
                     ("relay", str(n), "server_cpu_pct"), "{:,.1f}"))
    print()
    print(f"{'measure':44} {'txturn':>12} {'(cpu%)':>7} {'coturn':>12} {'(cpu%)':>7} {'ours/coturn':>11}")
    for label, path, cpath, fmt in rows:
        a, b = g(ours, *path), g(cot, *path)
        ca, cb = g(ours, *cpath), g(cot, *cpath)
        print(f"{label:44} {fmt.format(a) if a is not None else '-':>12} {ca if ca is not None else '':>7} "
              f"{fmt.format(b) if b is not None else '-':>12} {cb if cb is not None else '':>7} {_ratio(a, b):>11}")
    for n in results["params"]["conns"]:
        a, b = g(nos, "relay", str(n), "MBps"), g(cot, "relay", str(n), "MBps")
        ca = g(nos, "relay", str(n), "server_cpu_pct")
        if a is None:
            continue
        print(f"{'  txturn Python path (no splice), ' + str(n) + ' conn':44} {a:>12,.1f} {ca:>7} "
              f"{'':>12} {'':>7} {_ratio(a, b):>11}")
    if ours.get("relay") and nos.get("relay"):
        for n in results["params"]["conns"]:
            a, b = g(ours, "relay", str(n), "MBps"), g(nos, "relay", str(n), "MBps")
            print(f"{'  splice / Python path, ' + str(n) + ' conn':44} {_ratio(a, b):>12}")
    print()


# --------------------------------------------------------------------------- driver


async def run(reactor: Any, args: argparse.Namespace) -> None:
    from twisted.internet import defer

    from txturn.turnclient import TurnClient

    workdir = Path(tempfile.mkdtemp(prefix="turnbench-"))
    turnload = build_turnload(workdir)
    conns = [int(x) for x in args.conns.split(",")]
    results: dict[str, Any] = {
        "machine": machine_info(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "params": {
            "seconds": args.seconds, "stun_window": args.window, "stun_max": args.stun_max,
            "alloc_concurrency": args.concurrency, "alloc_max": args.alloc_max,
            "alloc_transport": args.alloc_transport, "conns": conns,
            "write_size": args.write_size, "warmup": args.warmup,
            "server_core": SERVER_CORE, "driver_core": DRIVER_CORE,
            "coturn_argv": coturn_argv(workdir),
        },
        "workdir": str(workdir),
        "servers": {},
    }
    transport = 6 if args.alloc_transport == "tcp" else 17
    only = set(args.only.split(",")) if args.only else {"txturn", "txturn-nosplice", "coturn"}

    if args.profile_dir:
        pdir = Path(args.profile_dir)
        pdir.mkdir(parents=True, exist_ok=True)
        import pstats

        for phase in ("stun", "alloc"):
            prof = str(pdir / f"txturn-{phase}.prof")
            srv = start_txturn(workdir, True, prof, f"txturn-profile-{phase}")
            try:
                if phase == "stun":
                    r = bench_stun(turnload, srv, args.seconds, args.window, args.stun_max)
                else:
                    r = bench_allocations(srv, args.seconds, args.alloc_max, args.concurrency, transport)
            finally:
                srv.stop()
            print(f"== profile {phase} (under cProfile): {json.dumps(r)}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile_top)
        return

    plan = [p for p in ("txturn", "txturn-nosplice", "coturn") if p in only]
    for name in plan:
        if name == "coturn" and shutil.which("turnserver") is None:
            print("coturn's turnserver is not installed; skipping")
            continue
        if name == "coturn":
            server = start_coturn(workdir)
        else:
            server = start_txturn(workdir, name == "txturn", None, name)
        r: dict[str, Any] = {"pid": server.pid, "argv": server.argv}
        try:
            if name != "txturn-nosplice":
                r["stun"] = bench_stun(turnload, server, args.seconds, args.window, args.stun_max)
                print(f"{name} STUN: {json.dumps(r['stun'])}", flush=True)
                r["alloc"] = bench_allocations(
                    server, args.seconds, args.alloc_max, args.concurrency, transport
                )
                print(f"{name} allocations: {json.dumps(r['alloc'])}", flush=True)
                time.sleep(1)
            sink = make_sink_factory()
            client = TurnClient((HOST, server.port), USER, PASSWORD, sink, reactor=reactor,
                                peers=[(HOST, 0)], max_backoff=2.0)
            d = client.start()
            d.addTimeout(15, reactor)
            relayed = await d
            r["relayed_address"] = list(relayed)
            r["relay"] = {}
            for n in conns:
                r["relay"][str(n)] = await bench_relay(
                    reactor, turnload, server, sink, relayed, n, args.seconds, args.write_size,
                    args.warmup,
                )
                print(f"{name} relay x{n}: {json.dumps(r['relay'][str(n)])}", flush=True)
            await defer.maybeDeferred(client.stop).addTimeout(10, reactor)
        finally:
            server.stop()
        if name.startswith("txturn"):
            for line in server.outpath.read_text().splitlines():
                if line.startswith("{"):
                    r.update(json.loads(line))
        results["servers"][name] = r

    print_table(results)
    text = json.dumps(results, indent=2)
    if args.json:
        Path(args.json).write_text(text)
        print(f"JSON written to {args.json}")
    else:
        print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode")
    sv = sub.add_parser("serve-txturn", help="(internal) run the txturn server")
    sv.add_argument("--port", type=int, default=TXTURN_PORT)
    sv.add_argument("--relay-min", type=int, default=TXTURN_RELAYS[0])
    sv.add_argument("--relay-max", type=int, default=TXTURN_RELAYS[1])
    sv.add_argument("--splice", type=int, default=1)
    sv.add_argument("--log", default="/dev/null")
    sv.add_argument("--cprofile", default=None)
    ap.add_argument("--seconds", type=float, default=8.0, help="duration of each measure")
    ap.add_argument("--window", type=int, default=256, help="STUN requests in flight")
    ap.add_argument("--stun-max", type=int, default=5_000_000, help="STUN answers bound")
    ap.add_argument("--concurrency", type=int, default=32, help="allocation workers")
    ap.add_argument("--alloc-max", type=int, default=200_000, help="allocations bound")
    ap.add_argument("--alloc-transport", choices=("tcp", "udp"), default="tcp")
    ap.add_argument("--conns", default="1,10,100", help="relay connection counts")
    ap.add_argument("--write-size", type=int, default=256 * 1024)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--only", default="", help="comma list of txturn,txturn-nosplice,coturn")
    ap.add_argument("--json", default=None, help="write the JSON here (else print it)")
    ap.add_argument("--profile-dir", default=None,
                    help="instead of the comparison: cProfile the txturn server during STUN and allocations")
    ap.add_argument("--profile-top", type=int, default=25)
    args = ap.parse_args()
    if args.mode == "serve-txturn":
        serve_txturn(args)
        return
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: server on core 0, load on core 1")
    wanted = [name.strip() for name in args.only.split(",") if name.strip()] or ["txturn", "coturn"]
    try:  # before the minutes of a run, not at the server that finds its port taken
        for name, port in (("txturn", TXTURN_PORT), ("coturn", COTURN_PORT)):
            if any(w.startswith(name) for w in wanted):
                ensure_free(name, port)
    except PortTaken as e:
        raise SystemExit(f"turn_bench: {e}") from None
    os.sched_setaffinity(0, {DRIVER_CORE})
    atexit.register(_kill_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from twisted.internet import task

    task.react(run, [args])


if __name__ == "__main__":
    main()
