"""Interop on loopback with TURN clients nobody here wrote.

* coturn's ``turnutils_uclient`` (with ``turnutils_peer`` as the UDP echo peer):
  UDP relays over UDP and TCP control connections, channels and Send
  indications, EVEN-PORT/RESERVATION-TOKEN, many clients, and RFC 6062 TCP
  relays (``-T``: two allocations, Connect + ConnectionAttempt + ConnectionBind).
  Each run must end with as many bytes received as sent.
* aioice's TURN client (``aioice.turn.create_turn_endpoint``), UDP relays over UDP
  and over TCP; run in a child Python so its asyncio loop stays out of trial.

External tools run as child processes with a kill timer; the reactor never blocks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import textwrap
from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from txturn.testing import self_signed, start_server

UCLIENT = shutil.which("turnutils_uclient")
PEER = shutil.which("turnutils_peer")
USER, PASSWORD = "ninefingers", "youhavetoberealistic"

try:
    import aioice.turn  # noqa: F401

    HAVE_AIOICE = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_AIOICE = False


class _Collect(protocol.ProcessProtocol):
    def __init__(self, timeout: float) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.done: Deferred[tuple[bytes, bytes, int | None]] = Deferred()
        self.timeout = timeout
        self.timer: Any = None
        self.killed = False

    def connectionMade(self) -> None:  # noqa: N802
        self.timer = reactor.callLater(self.timeout, self._kill)

    def _kill(self) -> None:
        self.killed = True
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out += data

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.done.callback((bytes(self.out), bytes(self.err), reason.value.exitCode))


def run(argv: list[str], timeout: float = 60.0, env: dict[str, str] | None = None) -> Deferred:
    """Run a child process; fires with (stdout, stderr, exit code); killed after ``timeout``."""
    p = _Collect(timeout)
    reactor.spawnProcess(p, argv[0], argv, env=env if env is not None else dict(os.environ))
    return p.done


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uclient_stats(output: str) -> dict[str, int]:
    """The final totals uclient prints: ``tot_send_bytes ~ N, tot_recv_bytes ~ M``
    and ``Total lost packets L``."""
    sends = re.findall(r"tot_send_bytes ~ (\d+), tot_recv_bytes ~ (\d+)", output)
    msgs = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", output)
    lost = re.findall(r"Total lost packets (\d+)", output)
    if not sends or not msgs or not lost:
        raise AssertionError(f"no final statistics in uclient output:\n{output[-3000:]}")
    return {
        "send_bytes": int(sends[-1][0]),
        "recv_bytes": int(sends[-1][1]),
        "send_msgs": int(msgs[-1][0]),
        "recv_msgs": int(msgs[-1][1]),
        "lost": int(lost[-1]),
    }


class CoturnUclientTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        if not UCLIENT or not PEER:
            raise unittest.SkipTest("coturn's turnutils_uclient/turnutils_peer not installed")

    async def _uclient(self, flags: list[str], *, messages: int = 20, udp_peer: bool = True,
                       relay_ports: Any = (0, 0), expect_msgs: int | None = None,
                       tls: bool = False) -> dict[str, int]:
        extra: dict[str, Any] = {}
        if tls:
            cert, key = self_signed(self.mktemp())
            extra = {"tls_port": 0, "tls_cert": cert, "tls_key": key}
        svc = await start_server(self, realm="north.gov", relay_ports=relay_ports,
                                 users={USER: PASSWORD}, **extra)
        port = svc.addresses["tls" if tls else "udp"][1]
        argv = [UCLIENT, "-u", USER, "-w", PASSWORD, "-p", str(port), "-n", str(messages),
                "-l", "120", *flags]
        if udp_peer:
            peer_port = free_udp_port()
            peer = _Collect(120)
            reactor.spawnProcess(peer, PEER, [PEER, "-L", "127.0.0.1", "-p", str(peer_port)],
                                 env=dict(os.environ))
            self.addCleanup(lambda: peer.done)
            self.addCleanup(peer._kill)
            await _sleep(0.3)
            argv += ["-e", "127.0.0.1", "-r", str(peer_port)]
        argv.append("127.0.0.1")
        out, err, code = await run(argv, timeout=60)
        text = (out + err).decode(errors="replace")
        stats = uclient_stats(text)
        self.assertEqual(stats["lost"], 0, text[-2000:])
        self.assertGreater(stats["send_bytes"], 0)
        self.assertEqual(stats["recv_bytes"], stats["send_bytes"], text[-2000:])
        self.assertEqual(stats["recv_msgs"], stats["send_msgs"])
        if expect_msgs is not None:
            self.assertEqual(stats["send_msgs"], expect_msgs)
        self.assertEqual(code, 0, text[-2000:])
        return stats

    def test_udp_channels(self) -> Deferred:
        """``turnutils_uclient -c -e 127.0.0.1 -r PEER``: UDP relay, ChannelData."""
        return Deferred.fromCoroutine(self._uclient(["-c"], expect_msgs=20))

    def test_udp_send_indications(self) -> Deferred:
        """``-s``: Send/Data indications instead of channels."""
        return Deferred.fromCoroutine(self._uclient(["-c", "-s"], expect_msgs=20))

    def test_tcp_control_udp_relay(self) -> Deferred:
        """``-t``: TURN over TCP (padded ChannelData) with a UDP relay."""
        return Deferred.fromCoroutine(self._uclient(["-c", "-t"], expect_msgs=20))

    def test_even_port_reservation(self) -> Deferred:
        """Without ``-c`` uclient allocates RTP with EVEN-PORT(R) and RTCP with the
        RESERVATION-TOKEN it got back."""
        return Deferred.fromCoroutine(
            self._uclient([], relay_ports="50000-59999", expect_msgs=40)
        )

    def test_many_clients(self) -> Deferred:
        """``-m 10``: ten allocations at once."""
        return Deferred.fromCoroutine(self._uclient(["-c", "-m", "10"], expect_msgs=200))

    def test_rfc6062_tcp_relay(self) -> Deferred:
        """``-T``: two TCP allocations; each Connects to the other's relayed address,
        the other gets ConnectionAttempt and ConnectionBinds a data connection."""
        return Deferred.fromCoroutine(self._uclient(["-T"], udp_peer=False, expect_msgs=40))

    def test_rfc6062_tcp_relay_many(self) -> Deferred:
        """``-T -m 6``: uclient pairs its clients (client-to-client), 120 messages."""
        return Deferred.fromCoroutine(
            self._uclient(["-T", "-m", "6"], udp_peer=False, expect_msgs=120)
        )


    def test_tls_rfc6062_tcp_relay(self) -> Deferred:
        """``-S -T``: RFC 6062 with TLS control and data connections."""
        return Deferred.fromCoroutine(self._uclient(["-S", "-T"], udp_peer=False, expect_msgs=40,
                                                    tls=True))

    def test_tls_udp_relay(self) -> Deferred:
        """``-S -t -c``: TURN over TLS with a UDP relay."""
        return Deferred.fromCoroutine(self._uclient(["-S", "-t", "-c"], expect_msgs=20, tls=True))


AIOICE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from aioice.turn import create_turn_endpoint

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, t): self.t = t
        def datagram_received(self, data, addr): self.t.sendto(data, addr)

    class Sink(asyncio.DatagramProtocol):
        def __init__(self): self.got = []; self.event = asyncio.Event()
        def connection_made(self, t): pass
        def datagram_received(self, data, addr):
            self.got.append(data)
            if len(self.got) >= COUNT: self.event.set()

    COUNT = 50

    async def main():
        host, port, transport = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        loop = asyncio.get_running_loop()
        echo_t, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        peer = echo_t.get_extra_info("sockname")
        turn, sink = await create_turn_endpoint(
            Sink, (host, port), "ninefingers", "youhavetoberealistic", transport=transport)
        relayed = turn.get_extra_info("sockname")
        sent = [os.urandom(100 + i) for i in range(COUNT)]
        for d in sent:
            turn.sendto(d, peer)
            await asyncio.sleep(0.005)
        try:
            await asyncio.wait_for(sink.event.wait(), 10)
        except asyncio.TimeoutError:
            pass
        print(json.dumps({"relayed": list(relayed), "sent": sum(map(len, sent)),
                          "received": sum(map(len, sink.got)), "count": len(sink.got),
                          "intact": sorted(sink.got) == sorted(sent)}))
        turn.close()
        echo_t.close()
        await asyncio.sleep(0.1)

    asyncio.run(main())
    """
)


class AioiceTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        if not HAVE_AIOICE:
            raise unittest.SkipTest("aioice not installed")

    async def _aioice(self, transport: str) -> None:
        svc = await start_server(self, realm="north.gov", users={USER: PASSWORD})
        host, port = svc.addresses["udp"]
        out, err, code = await run(
            [sys.executable, "-c", AIOICE_SCRIPT, host, str(port), transport], timeout=40
        )
        self.assertEqual(code, 0, err.decode(errors="replace")[-3000:])
        result = json.loads(out.decode().strip().splitlines()[-1])
        self.assertEqual(result["received"], result["sent"], result)
        self.assertTrue(result["intact"], result)
        self.assertEqual(result["relayed"][0], "127.0.0.1")

    def test_udp(self) -> Deferred:
        """aioice over UDP: Allocate, ChannelBind, ChannelData both ways."""
        return Deferred.fromCoroutine(self._aioice("udp"))

    def test_tcp(self) -> Deferred:
        """aioice over TCP to the server, UDP relay."""
        return Deferred.fromCoroutine(self._aioice("tcp"))


def _sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
