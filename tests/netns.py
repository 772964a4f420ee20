"""A per-test network of Linux network namespaces: platform, shop behind NAT, phone behind NAT.

The video paths of §15 (local address, UPnP address, TURN relay) only mean something
when the camera and the phone sit behind real NATs: on loopback every address
works, so a test there proves nothing about which path a client can take.  This
harness builds that network for one test, with the kernel's own NAT (iptables
MASQUERADE), optionally Debian's miniupnpd as the shop's IGD, optionally a symmetric
shop NAT (``MASQUERADE --random-fully``), and optionally a phone network that drops
UDP, and tears it all down afterwards, also when the test fails.  Topology and
addresses: ``docs/netns-tests.md``.

Every address is a TEST-NET (RFC 5737) or RFC 1918 address inside namespaces this
harness created; nothing is routed to the host's own network, so no packet can
leave the lab.  Namespace names are ``gent<random hex>-<role>``, so parallel runs
(and other engineers' runs on the same machine) never collide.

Processes inside a namespace run as ``ip netns exec NS argv`` through
``reactor.spawnProcess``: never a blocking call on the reactor thread, and every
wait is bounded (commands are SIGKILLed after their timeout, daemons get SIGTERM
then SIGKILL).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer, error, protocol, reactor
from twisted.internet.task import deferLater

from tests.util import ROOT, Result, run

PREFIX = "gent"

# The public side ("the Internet"): a router namespace "wan" with three links.
PLATFORM_IP = "198.51.100.10"  # gateway, HTTP, STUN primary, TURN
PLATFORM_ALT_IP = "198.51.100.11"  # STUN alternate address (RFC 3489 CHANGE-REQUEST)
WAN_PLATFORM_GW = "198.51.100.1"
SHOP_WAN_IP = "203.0.113.2"  # the shop router's public address (NAT, UPnP IGD)
SHOP_WAN_GW = "203.0.113.1"
PHONE_WAN_IP = "203.0.113.130"  # the phone network's NAT address
PHONE_WAN_GW = "203.0.113.129"
# The private sides.
SHOP_LAN_GW = "192.168.10.1"
CAMERA_IP = "192.168.10.20"
SHOP_PC_IP = "192.168.10.30"
PHONE_LAN_GW = "192.168.20.1"
PHONE_IP = "192.168.20.2"
#: The platform's leg on the shop's LAN (``Lab(platform_on_shop_lan=True)``): the one way its
#: RTSP proxy can reach the camera's local address (§15 path 1), see docs/netns-tests.md.
PLATFORM_SHOP_LAN_IP = "192.168.10.40"

CAMERA_RTSP_PORT = 554
PLATFORM_PORTS = {"http": 8080, "gateway": 8588, "stun": 3479, "stun_alt": 3480, "turn": 3478,
                  "rtsp": 8554, "web": 8000}  # rtsp and web: only with platform_config(live=True)
#: ``[ops] token`` of a live platform: ``GET /status/streams`` on its HTTP site shows the proxy's hubs
#: and the §15 path each one took.
OPS_TOKEN = "netns-operator-token-5f1c9a"
ROLES = ("wan", "platform", "shoprt", "camera", "shoppc", "phonert", "phone")
#: What the camera's NAT probe asks, in turn, from one UDP socket: the TURN server (where the
#: camera STUN-maps its media ports at SETUP), the STUN server, the STUN server's other port
#: (same address) and its other address (same port).  One public port for all four is an
#: endpoint-independent mapping; four different ports, a symmetric one.
NAT_PROBE_SERVERS = ((PLATFORM_IP, PLATFORM_PORTS["turn"]), (PLATFORM_IP, PLATFORM_PORTS["stun"]),
                     (PLATFORM_IP, PLATFORM_PORTS["stun_alt"]), (PLATFORM_ALT_IP, PLATFORM_PORTS["stun"]))


#: One direction of a conntrack flow: (src, sport, dst, dport).
Flow = tuple[str, int, str, int]


class NetnsError(Exception):
    """A command that builds the lab failed: the message has the command and its stderr."""


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)),
                                      None)


async def missing_prerequisites(*, need_miniupnpd: bool = False, need_random_fully: bool = False) -> str | None:
    """Why this machine cannot run the lab (None if it can): the tests skip with this reason.

    *need_random_fully*: the symmetric shop NAT needs MASQUERADE's ``--random-fully``
    (iptables 1.6.2, Linux 3.13), tried in the probe namespace.
    """
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (run the netns tests as root, e.g. in a CI container)"
    tools = {"ip": "iproute2", "iptables": "iptables", "ffprobe": "ffmpeg"}
    if need_miniupnpd:
        tools.update(miniupnpd="miniupnpd", nft="nftables")
    for tool, package in tools.items():
        if _which(tool) is None:
            return f"{tool} not installed (apt-get install -y {package})"
    probe = f"{PREFIX}{secrets.token_hex(4)}-probe"
    ip = _which("ip")
    assert ip is not None
    added = await run(ip, ["netns", "add", probe], timeout=10)
    if added.code != 0:
        return f"`ip netns add` failed: {added.err.strip() or added.code}"
    try:
        iptables = _which("iptables")
        assert iptables is not None
        nat = await run(ip, ["netns", "exec", probe, iptables, "-t", "nat", "-L", "-n"], timeout=10)
        if nat.code != 0:
            return f"iptables cannot use the nat table in a namespace: {nat.err.strip()}"
        if need_random_fully:
            masquerade = await run(ip, ["netns", "exec", probe, iptables, "-w", "-t", "nat", "-A", "POSTROUTING",
                                        "-o", "lo", "-j", "MASQUERADE", "--random-fully"], timeout=10)
            if masquerade.code != 0:
                return f"iptables MASQUERADE --random-fully (symmetric NAT) refused: {masquerade.err.strip()}"
    finally:
        await run(ip, ["netns", "del", probe], timeout=10)
    return None


class Daemon(protocol.ProcessProtocol):
    """A long-running process in a namespace: output kept (bounded), readiness by a regex."""

    MAX_OUTPUT = 1 << 20

    def __init__(self, name: str, ready: re.Pattern[str] | None) -> None:
        self.name = name
        self.pattern = ready
        self.output = ""
        self.ready: defer.Deferred[re.Match[str] | None] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.process: Any = None
        self.exit: Any = None
        if ready is None:
            self.ready.callback(None)

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.output = (self.output + data.decode(errors="replace"))[-self.MAX_OUTPUT:]
        if self.pattern is not None and not self.ready.called:
            match = self.pattern.search(self.output)
            if match:
                self.ready.callback(match)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.exit = reason.value
        if not self.ready.called:
            self.ready.errback(NetnsError(f"{self.name} exited before it was ready ({reason.value}):\n"
                                          f"{self.output[-3000:]}"))
        self.ended.callback(None)

    @property
    def running(self) -> bool:
        return not self.ended.called

    async def wait_ready(self, timeout: float) -> re.Match[str] | None:
        timer = reactor.callLater(timeout, self.ready.cancel)
        try:
            return await self.ready
        except defer.CancelledError:
            raise NetnsError(f"{self.name} not ready within {timeout:g} s:\n{self.output[-3000:]}") from None
        finally:
            if timer.active():
                timer.cancel()

    def signal(self, name: str) -> None:
        try:
            self.process.signalProcess(name)
        except (error.ProcessExitedAlready, OSError):
            pass

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, and SIGKILL if it is still there after *grace* seconds."""
        if not self.running:
            return
        self.signal("TERM")
        timer = reactor.callLater(grace, self.signal, "KILL")
        try:
            await self.ended
        finally:
            if timer.active():
                timer.cancel()


@attrs.define
class Lab:
    """One test's namespaces.  ``await lab.build()``; ``await lab.close()`` always (addCleanup).

    ``upnp_igd`` runs miniupnpd on the shop router; ``block_phone_udp`` makes the
    phone router drop every UDP packet to or from the platform (a network where
    only TCP gets through, §15's last resort); ``symmetric_shop_nat`` makes the shop
    router's NAT symmetric (address- and port-dependent mapping: a new random public
    port for every new destination, ``MASQUERADE --random-fully``) instead of the
    port-preserving, endpoint-independent mapping of plain ``MASQUERADE``.
    ``block_shop_udp`` makes the shop router drop every UDP packet to or from the
    platform (the camera's network lets only TCP through: the platform's RTSP proxy
    is left with §15's TURN over TCP).  ``platform_on_shop_lan`` gives the platform a
    second interface on the shop's LAN bridge (192.168.10.40), as a platform (or an
    RTSP proxy) deployed in the shop's own network would have: the only way the
    proxy reaches the camera's *local* address.  Neither changes anything else.
    """

    workdir: Path
    upnp_igd: bool = False
    block_phone_udp: bool = False
    symmetric_shop_nat: bool = False
    block_shop_udp: bool = False
    platform_on_shop_lan: bool = False
    tag: str = attrs.field(factory=lambda: f"{PREFIX}{secrets.token_hex(4)}")
    created: list[str] = attrs.field(factory=list)
    daemons: list[Daemon] = attrs.field(factory=list)
    log: list[str] = attrs.field(factory=list)

    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    # ----------------------------------------------------------------- commands

    async def command(self, argv: list[str], timeout: float = 10.0, check: bool = True) -> Result:
        executable = _which(argv[0]) or argv[0]
        result = await run(executable, argv[1:], timeout=timeout)
        self.log.append(f"$ {' '.join(argv)} -> {result.code}")
        if check and (result.code != 0 or result.timed_out):
            raise NetnsError(f"{' '.join(argv)} failed ({result.code}): {result.err.strip()}")
        return result

    async def ip(self, role: str, *args: str) -> None:
        await self.command(["ip", "-n", self.ns(role), *args])

    async def exec(self, role: str, argv: list[str], timeout: float = 20.0, check: bool = False) -> Result:
        """Run *argv* inside the namespace of *role*; SIGKILL after *timeout*."""
        tool = _which(argv[0])
        return await self.command(["ip", "netns", "exec", self.ns(role), tool or argv[0], *argv[1:]],
                                  timeout=timeout, check=check)

    def spawn(self, role: str, argv: list[str], name: str, ready: str | None = None,
              env: dict[str, str] | None = None) -> Daemon:
        """Start a daemon inside the namespace of *role*; the lab stops it at close()."""
        daemon = Daemon(name, re.compile(ready) if ready else None)
        ip = _which("ip")
        assert ip is not None
        full_env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {}))
        daemon.process = reactor.spawnProcess(daemon, ip, [ip, "netns", "exec", self.ns(role), *argv],
                                              env=full_env, path=str(ROOT))
        self.daemons.append(daemon)
        return daemon

    # ----------------------------------------------------------------- topology

    async def _veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        # Both ends are created straight inside their namespaces: nothing touches the host's.
        await self.command(["ip", "link", "add", a_if, "netns", self.ns(a), "type", "veth",
                            "peer", "name", b_if, "netns", self.ns(b)])

    async def _addr(self, role: str, ifname: str, *cidrs: str) -> None:
        for cidr in cidrs:
            await self.ip(role, "addr", "add", cidr, "dev", ifname)
        await self.ip(role, "link", "set", ifname, "up")

    async def _iptables(self, role: str, *args: str) -> None:
        await self.exec(role, ["iptables", "-w", *args], check=True)

    async def _router(self, role: str) -> None:
        await self.exec(role, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True)

    async def _nat(self, role: str, wan: str, lan: str, *, symmetric: bool = False) -> None:
        """A home router: MASQUERADE out of *wan*; from *wan* in, only replies and port forwards.

        Plain MASQUERADE keeps a flow's source port when it can, so a socket has one
        public port towards every destination (endpoint-independent mapping).  With
        *symmetric*, ``--random-fully`` draws a random public port for every new flow,
        that is for every new destination address or port: a symmetric NAT (RFC 4787
        address- and port-dependent mapping).  Filtering is the same in both: conntrack
        lets in only replies to a flow the inside started.
        """
        await self._router(role)
        await self._iptables(role, "-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE",
                             *(["--random-fully"] if symmetric else []))
        await self._iptables(role, "-A", "FORWARD", "-i", wan, "-o", lan, "-m", "conntrack", "--ctstate",
                             "ESTABLISHED,RELATED,DNAT", "-j", "ACCEPT")
        await self._iptables(role, "-A", "FORWARD", "-i", wan, "-j", "DROP")

    async def build(self) -> None:
        for role in ROLES:
            await self.command(["ip", "netns", "add", self.ns(role)])
            self.created.append(self.ns(role))
            await self.ip(role, "link", "set", "lo", "up")
        # The Internet: "wan" routes between the platform and the two NAT routers.
        await self._veth("wan", "p0", "platform", "eth0")
        await self._veth("wan", "s0", "shoprt", "wan0")
        await self._veth("wan", "f0", "phonert", "wan0")
        await self._addr("wan", "p0", f"{WAN_PLATFORM_GW}/24")
        await self._addr("wan", "s0", f"{SHOP_WAN_GW}/25")
        await self._addr("wan", "f0", f"{PHONE_WAN_GW}/25")
        await self._router("wan")
        await self._addr("platform", "eth0", f"{PLATFORM_IP}/24", f"{PLATFORM_ALT_IP}/24")
        await self.ip("platform", "route", "add", "default", "via", WAN_PLATFORM_GW)
        # The shop: router with a LAN bridge (camera, a PC), NAT to the Internet.
        await self._addr("shoprt", "wan0", f"{SHOP_WAN_IP}/25")
        await self.ip("shoprt", "route", "add", "default", "via", SHOP_WAN_GW)
        await self.ip("shoprt", "link", "add", "br-lan", "type", "bridge", "mcast_snooping", "0")
        await self._addr("shoprt", "br-lan", f"{SHOP_LAN_GW}/24")
        for host, port_if, address in (("camera", "lan-cam", CAMERA_IP), ("shoppc", "lan-pc", SHOP_PC_IP)):
            await self._veth("shoprt", port_if, host, "eth0")
            await self.ip("shoprt", "link", "set", port_if, "master", "br-lan")
            await self.ip("shoprt", "link", "set", port_if, "up")
            await self._addr(host, "eth0", f"{address}/24")
            await self.ip(host, "route", "add", "default", "via", SHOP_LAN_GW)
        await self._nat("shoprt", "wan0", "br-lan", symmetric=self.symmetric_shop_nat)
        if self.platform_on_shop_lan:  # a leg of the platform on the shop's bridge; its default route stays public
            await self._veth("shoprt", "lan-plat", "platform", "eth1")
            await self.ip("shoprt", "link", "set", "lan-plat", "master", "br-lan")
            await self.ip("shoprt", "link", "set", "lan-plat", "up")
            await self._addr("platform", "eth1", f"{PLATFORM_SHOP_LAN_IP}/24")
        if self.block_shop_udp:
            for direction in ("-d", "-s"):
                await self._iptables("shoprt", "-I", "FORWARD", "-p", "udp", direction, f"{PLATFORM_IP}/24",
                                     "-j", "DROP")
        # The phone's network: a carrier-style NAT with the phone behind it.
        await self._addr("phonert", "wan0", f"{PHONE_WAN_IP}/25")
        await self.ip("phonert", "route", "add", "default", "via", PHONE_WAN_GW)
        await self._veth("phonert", "lan0", "phone", "eth0")
        await self._addr("phonert", "lan0", f"{PHONE_LAN_GW}/24")
        await self._addr("phone", "eth0", f"{PHONE_IP}/24")
        await self.ip("phone", "route", "add", "default", "via", PHONE_LAN_GW)
        await self._nat("phonert", "wan0", "lan0")
        if self.block_phone_udp:
            for direction in ("-d", "-s"):
                await self._iptables("phonert", "-I", "FORWARD", "-p", "udp", direction, f"{PLATFORM_IP}/24",
                                     "-j", "DROP")

    # ----------------------------------------------------------------- miniupnpd (the shop's IGD)

    async def start_miniupnpd(self) -> Daemon:
        """Debian's miniupnpd on the shop router: nftables backend, secure mode, no NAT-PMP.

        Start it once the platform runs: miniupnpd 2.3 refuses to forward ports when
        the WAN address is a reserved one, and TEST-NET addresses are reserved (even
        declared with ``ext_ip``, which it then rejects at start-up).  So it learns
        that its WAN address is really reachable the way it does behind an ISP:
        ``ext_perform_stun`` against a STUN server with an alternate address, which
        is the lab platform's own (nothing leaves the lab).  Its RFC 3489 test finds
        "no NAT, no firewall" and enables port forwarding.
        """
        if not self.upnp_igd:
            raise NetnsError("this lab was built without upnp_igd")
        ruleset = self.workdir / "miniupnpd.nft"
        ruleset.write_text(
            "table inet miniupnpd {\n"
            "  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }\n"
            "  chain miniupnpd { }\n"
            "  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }\n"
            "  chain postrouting { type nat hook postrouting priority 100; policy accept; "
            "jump postrouting_miniupnpd; }\n"
            "  chain prerouting_miniupnpd { }\n"
            "  chain postrouting_miniupnpd { }\n"
            "}\n")
        await self.exec("shoprt", ["nft", "-f", str(ruleset)], check=True)
        conf = self.workdir / "miniupnpd.conf"
        conf.write_text("\n".join([
            "ext_ifname=wan0",
            "ext_perform_stun=yes",
            f"ext_stun_host={PLATFORM_IP}",
            f"ext_stun_port={PLATFORM_PORTS['stun']}",
            "listening_ip=br-lan",
            "http_port=5000",
            "enable_natpmp=no",
            "enable_upnp=yes",
            "secure_mode=yes",
            "system_uptime=yes",
            "notify_interval=30",
            "clean_ruleset_interval=600",
            "ipv6_disable=yes",
            f"uuid=3e1f2c4a-9b7d-4e21-8f0a-{secrets.token_hex(6)}",
            "upnp_table_name=miniupnpd",
            "upnp_nat_table_name=miniupnpd",
            "upnp_forward_chain=miniupnpd",
            "upnp_nat_chain=prerouting_miniupnpd",
            "upnp_nat_postrouting_chain=postrouting_miniupnpd",
            f"lease_file={self.workdir / 'upnp.leases'}",
            # §7.3.2 asks for external ports 10000-60000; only the shop LAN may map, to any port.
            "allow 10000-60000 192.168.10.0/24 1-65535",
            "deny 0-65535 0.0.0.0/0 0-65535",
            "",
        ]))
        daemon = self.spawn("shoprt", ["miniupnpd", "-d", "-f", str(conf), "-P", str(self.workdir / "miniupnpd.pid")],
                            "miniupnpd", ready=r"HTTP listening on port \d+")
        await daemon.wait_ready(15)
        if "Port forwarding is now enabled" not in daemon.output:
            raise NetnsError(f"miniupnpd did not enable port forwarding:\n{daemon.output[-3000:]}")
        return daemon

    async def upnp_rules(self) -> str:
        """The shop router's current UPnP DNAT rules (empty when no mapping exists)."""
        result = await self.exec("shoprt", ["nft", "list", "chain", "inet", "miniupnpd", "prerouting_miniupnpd"],
                                 check=True)
        return "\n".join(line.strip() for line in result.out.splitlines() if "dnat" in line)

    async def udp_flows(self, role: str) -> list[tuple[Flow, Flow]]:
        """*role*'s conntrack UDP flows: (original, reply) (src, sport, dst, dport) tuples.

        A NATed flow's public port is the reply tuple's dport.  Read from the
        namespace's own ``/proc/net/nf_conntrack``.
        """
        result = await self.exec(role, ["cat", "/proc/net/nf_conntrack"], check=True)
        flows: list[tuple[Flow, Flow]] = []
        for line in result.out.splitlines():
            fields = line.split()
            if "udp" not in fields[:3]:
                continue
            tuples: list[Flow] = []
            values: dict[str, str] = {}
            for field in fields:
                key, _, value = field.partition("=")
                if key in ("src", "dst", "sport", "dport"):
                    values[key] = value
                    if key == "dport":
                        tuples.append((values["src"], int(values["sport"]), values["dst"], int(values["dport"])))
            if len(tuples) >= 2:
                flows.append((tuples[0], tuples[1]))
        return flows

    # ----------------------------------------------------------------- teardown

    async def close(self) -> None:
        """Stop every daemon, then delete every namespace (which deletes its links and rules)."""
        for daemon in reversed(self.daemons):
            await daemon.stop()
        for name in reversed(self.created):
            await self.command(["ip", "netns", "del", name], check=False)
        self.created.clear()


# --------------------------------------------------------------------- the platform and the camera


def platform_config(workdir: Path, *, live: bool = False) -> Path:
    """A twistd configuration for the platform namespace: every role, on the public address.

    *live* adds the RTSP proxy and the web portal (roles ``rtsp`` and ``web``, on the
    fixed ports of PLATFORM_PORTS) and ``[ops] token`` = OPS_TOKEN, for the browser's
    live view through the lab (tests/interop/test_netns_browser.py).  The proxy gives a
    stream up on UDP after 3 s (§15 step 4's 5 s, shortened like the client's in the
    video tests) and keeps a camera stream 30 s after its last viewer, so a test reads
    the path the stream took after its browser closed.
    """
    p = PLATFORM_PORTS
    path = workdir / "platform.ini"
    roles = "gateway, http, group, stun, turn" + (", rtsp, web" if live else "")
    extra = f"""
[rtsp]
interface = {PLATFORM_IP}
port = {p['rtsp']}
linger = 30
udp_timeout = 3
connect_timeout = 2
[web]
interface = {PLATFORM_IP}
port = {p['web']}
[ops]
token = {OPS_TOKEN}
""" if live else ""
    path.write_text(f"""
[globaleye]
roles = {roles}
public_host = {PLATFORM_IP}
data_dir = {workdir}
[enrollment]
mode = open
[database]
url = sqlite:///{workdir / 'platform.sqlite3'}
[http]
interface = {PLATFORM_IP}
port = {p['http']}
[gateway]
interface = {PLATFORM_IP}
port = {p['gateway']}
heartbeat_timeout = 360
[stun]
interface = {PLATFORM_IP}
port = {p['stun']}
alternate_interface = {PLATFORM_ALT_IP}
alternate_port = {p['stun_alt']}
[turn]
interface = {PLATFORM_IP}
port = {p['turn']}
relay_ports = 50000-50999
allow_peers = 203.0.113.0/24, 198.51.100.0/24
[province]
cms_password = netns-province-secret
{extra}""")
    return path


async def start_platform(lab: Lab, *, live: bool = False) -> tuple[Daemon, Path]:
    """``twistd -n globaleye --config …`` in the platform namespace; ready once HTTP listens.

    The platform's roles start STUN and TURN first and HTTP last (then the web portal,
    with *live*), so that line in the log means every role is up.
    """
    config = platform_config(lab.workdir, live=live)
    last = "web" if live else "http"
    daemon = lab.spawn("platform", [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                                    "--pidfile=", "globaleye", "--config", str(config)],
                       "platform", ready=rf"{last} listening on {re.escape(PLATFORM_IP)}:{PLATFORM_PORTS[last]}")
    await daemon.wait_ready(20)
    return daemon, config


async def start_camera(lab: Lab, *, upnp: bool, media_cache: Path, stun: bool = False) -> tuple[Daemon, dict[str, Any]]:
    """The simulated camera (``tests.netns_camera``) in the camera namespace; its NETNS-READY report."""
    import json

    argv = [sys.executable, "-m", "tests.netns_camera", "--register",
            f"http://{PLATFORM_IP}:{PLATFORM_PORTS['http']}/register", "--interface", CAMERA_IP,
            "--rtsp-port", str(CAMERA_RTSP_PORT)]
    if upnp:
        argv += ["--upnp", "--upnp-timeout", "2"]
    if stun:
        argv += ["--stun", f"{PLATFORM_IP}:{PLATFORM_PORTS['stun']}"]
        for host, port in NAT_PROBE_SERVERS:
            argv += ["--nat-probe", f"{host}:{port}"]
    daemon = lab.spawn("camera", argv, "camera", ready=r"NETNS-READY (\{.*\})\n",
                       env={"GLOBALEYE_MEDIA_CACHE": str(media_cache)})
    match = await daemon.wait_ready(40)
    assert match is not None
    return daemon, json.loads(match.group(1))


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)

