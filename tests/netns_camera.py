"""Runner: one simulated camera (§7 session + RTSP server), started inside a network namespace.

    ip netns exec NS python -m tests.netns_camera --register http://198.51.100.10:8080/register \\
        --interface 192.168.10.20 --rtsp-port 554 [--upnp] [--upnp-timeout 2] \\
        [--stun HOST:PORT] [--nat-probe HOST:PORT ...]

It exists because a namespace is per process: the test process cannot put a camera
behind the shop's NAT itself.  Once the camera is logged in it prints one line
``NETNS-READY {json}`` (RTSP port, the UpnpIP/RtspUpnpPort it reports, the UPnP
failure if any, with ``--stun`` its STUN-mapped address, and with ``--nat-probe`` the
mappings of one socket towards several STUN servers: the shop NAT's mapping behaviour)
so the harness knows the camera's own view without a socket into the namespace.
SIGTERM stops it the way a camera shuts down: the UPnP mapping is deleted and
``NETNS-STOPPED`` is printed before the process exits.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver

from globaleye.sim.camera import Timing
from globaleye.sim.fleet import Fleet
from globaleye.sim.stun import BindingTransactions, mapped_address
from globaleye.sim.upnp import UpnpSettings
from tests.util import http_client

READY = "NETNS-READY"
STOPPED = "NETNS-STOPPED"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netns_camera")
    parser.add_argument("--register", required=True)
    parser.add_argument("--interface", required=True)
    parser.add_argument("--rtsp-port", type=int, default=554)
    parser.add_argument("--dev-id", default="81300000001")
    parser.add_argument("--upnp", action="store_true")
    parser.add_argument("--upnp-timeout", type=float, default=2.0)
    parser.add_argument("--stun", default="", help="HOST:PORT: learn the camera's mapped address (§15 step 3)")
    parser.add_argument("--nat-probe", action="append", default=[], metavar="HOST:PORT",
                        help="ask each of these STUN servers in turn from one socket (repeat the option)")
    return parser


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class _Probe(DatagramProtocol):
    noisy = False

    def __init__(self, transactions: BindingTransactions) -> None:
        self.transactions = transactions

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        self.transactions.received(datagram)


async def nat_probe(reactor: Any, servers: list[tuple[str, int]], interface: str) -> dict[str, Any]:
    """The public (ip, port) of ONE UDP socket as each of *servers* sees it (None: no answer).

    The same camera code as SETUP's media-port mapping (:class:`BindingTransactions`,
    classic RFC 3489 Binding).  Behind an endpoint-independent NAT every server sees
    one port; behind a symmetric NAT each new destination (address or port) gets its own.
    """
    transactions = BindingTransactions(reactor)
    port = reactor.listenUDP(0, _Probe(transactions), interface=interface)
    local_port = port.getHost().port
    try:
        mapped = [await transactions.query(port, server, timeout=3.0, interval=0.5) for server in servers]
    finally:
        await port.stopListening()
    return {"local_port": local_port, "servers": servers, "mapped": mapped}


async def main(reactor: Any, args: argparse.Namespace) -> None:
    fleet = Fleet(reactor, register_url=args.register, interface=args.interface, rtsp_port=args.rtsp_port,
                  timing=Timing(backoff_initial=0.2, backoff_max=2.0, request_timeout=5.0), http=http_client(),
                  upnp=UpnpSettings(discovery_timeout=args.upnp_timeout, request_timeout=3.0) if args.upnp else None)
    await fleet.prepare()
    camera = fleet.add(args.dev_id)
    stopped: Deferred[None] = Deferred()

    async def shutdown() -> None:
        await fleet.stop()
        print(STOPPED, flush=True)

    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(shutdown()))
    fleet.start()
    await camera.went_online
    s = camera.state
    stun = None
    if args.stun:
        stun = await mapped_address(reactor, _address(args.stun), interface=args.interface, timeout=3.0)
    probe = None
    if args.nat_probe:
        probe = await nat_probe(reactor, [_address(a) for a in args.nat_probe], args.interface)
    print(READY, json.dumps({"stun": stun, "nat_probe": probe, "dev_id": s.dev_id,
                             "local": [s.local_ip, s.rtsp_local_port],
                             "upnp": [s.upnp_ip, s.rtsp_upnp_port],
                             "upnp_failure": camera.upnp.failure if camera.upnp else None}), flush=True)
    await stopped  # until SIGTERM stops the reactor


def run(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, args)))


if __name__ == "__main__":
    run()
