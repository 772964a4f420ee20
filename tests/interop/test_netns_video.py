"""§15's paths from a phone to a camera, over real NATs in network namespaces, played by ffprobe.

On loopback every address of a camera works, so the video tests there cannot say
which of §15's paths a client really has.  Here the camera sits behind the shop's
NAT router, the phone behind its own NAT, the platform (twistd, every role) on a
public segment, and ffprobe runs inside the phone's (or a shop PC's) namespace
against the URLs the platform recorded from LOGIN_REQ/HEARTBEAT_REQ (read with
``globaleye device show`` in the platform's namespace).  Each test builds its own
network (``tests/netns.py``) and tears it down; they skip, with the reason, on a
machine without root, ``ip netns``, iptables or ffprobe.  See docs/netns-tests.md.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from pathlib import Path

from argon2 import PasswordHasher
from twisted.python import log
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.store import Account, Binding, HashToken
from globaleye.store.sqlite import SQLiteStore
from tests.netns import (
    CAMERA_IP,
    NAT_PROBE_SERVERS,
    PHONE_WAN_IP,
    PLATFORM_IP,
    PLATFORM_PORTS,
    ROOT,
    SHOP_WAN_IP,
    Daemon,
    Lab,
    missing_prerequisites,
    sleep,
    start_camera,
    start_platform,
)
from tests.util import Result

DEV = "81300000001"
CLI = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from globaleye.cli import main; main()"
CLIENT = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from globaleye.client.cli import main; main()"
ACCOUNT, PASSWORD = "13300000001", "netns-secret"
UDP_TIMEOUT = 3  # globaleye-client --udp-timeout: §15 step 4's 5 s, shortened for the tests
# A one-shot RFC 5389 Binding request with our own codec: prints the mapped address or "timeout".
STUN_PROBE = f"""
import socket, sys
sys.path.insert(0, {str(ROOT)!r})
from txturn import stun
request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, stun.new_transaction_id())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
for _ in range(3):
    s.sendto(stun.encode(request), ({PLATFORM_IP!r}, {PLATFORM_PORTS['stun']}))
    try:
        answer = stun.decode(s.recv(2048))
    except socket.timeout:
        continue
    print("%s:%d" % answer.attributes[stun.Attr.XOR_MAPPED_ADDRESS])
    break
else:
    print("timeout")
"""


class NetnsVideoTests(TestCase):
    """One network per test; each test proves one of §15's paths (and that the others are closed)."""

    timeout = 100

    async def up(self, *, igd: bool = False, camera_upnp: bool = True, block_phone_udp: bool = False,
                 symmetric_shop_nat: bool = False) -> None:
        reason = await missing_prerequisites(need_miniupnpd=igd, need_random_fully=symmetric_shop_nat)
        if reason is not None:
            raise SkipTest(reason)
        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir(parents=True)
        media_cache = Path("netns-media-cache").resolve()  # in trial's temp directory: shared by a run's tests
        media_cache.mkdir(exist_ok=True)
        self.lab = Lab(workdir, upnp_igd=igd, block_phone_udp=block_phone_udp, symmetric_shop_nat=symmetric_shop_nat)
        self.addCleanup(self.lab.close)
        await self.lab.build()
        self.platform, self.config = await start_platform(self.lab)
        if igd:
            await self.lab.start_miniupnpd()  # after the platform: it asks the platform's STUN server
        self.camera, self.report = await start_camera(self.lab, upnp=camera_upnp, media_cache=media_cache,
                                                      stun=True)
        self.store = SQLiteStore(str(workdir / "platform.sqlite3"))
        self.addCleanup(self.store.close)
        # A client account that owns the camera, for globaleye-client's §8 login and §8.9 URLs.
        now = time.time()
        await self.store.create_account(Account(ACCOUNT, PasswordHasher().hash(PASSWORD), now, now))
        await self.store.bind_device(Binding(ACCOUNT, DEV, 0, "shop", now), 10)

    # ----------------------------------------------------------------- helpers

    async def device_show(self) -> dict[str, list[str]]:
        """``globaleye device show`` in the platform namespace, as {field: [values]}."""
        result = await self.lab.exec("platform", [sys.executable, "-c", CLI, "--config", str(self.config),
                                                  "device", "show", DEV], timeout=20)
        self.assertEqual(result.code, 0, result.err)
        fields: dict[str, list[str]] = {}
        for line in result.out.splitlines():
            name, value = line[:12].strip(), line[12:].strip()
            fields.setdefault(name, []).append(value)
        return fields

    async def relay_reported(self) -> None:
        """Wait (bounded) until the camera's heartbeat has given the platform its TURN relay address."""
        for _ in range(150):
            addresses = await self.store.get_addresses(DEV)
            if addresses is not None and addresses.rtsp_turn_relay_port:
                return
            await sleep(0.1)
        self.fail("the camera never reported a TURN relay address")

    async def token(self, stream_type: int) -> str:
        value = secrets.token_hex(16)
        await self.store.add_token(HashToken(token=value, dev_id=DEV, channel_no=0, stream_type=stream_type,
                                             expires_at=time.time() + 60, account="13300000000"))
        return value

    async def probe(self, role: str, address: str, stream_type: int = 1, timeout: float = 25) -> Result:
        """ffprobe (RTP over TCP interleaved) inside *role*'s namespace on a §8.9-form URL."""
        url = (f"rtsp://{address}/realplay?devid={DEV}&channelno=0&streamtype={stream_type}"
               f"&hashtoken={await self.token(stream_type)}")
        return await self.lab.exec(role, ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-timeout", "4000000",
                                          "-show_entries", "stream=codec_name,codec_type,width,height", "-of", "json",
                                          url], timeout=timeout)

    def assert_video(self, result: Result, size: tuple[int, int]) -> None:
        self.assertEqual(result.code, 0, f"ffprobe failed: {result.err}")
        video = [s for s in json.loads(result.out)["streams"] if s["codec_type"] == "video"]
        self.assertEqual([(v["codec_name"], v["width"], v["height"]) for v in video], [("h264", *size)])

    def assert_unreachable(self, result: Result) -> None:
        self.assertNotEqual(result.code, 0, f"expected no path, but ffprobe played: {result.out}")

    async def stun_from_phone(self) -> str:
        result = await self.lab.exec("phone", [sys.executable, "-c", STUN_PROBE], timeout=15)
        self.assertEqual(result.code, 0, result.err)
        return result.out.strip()

    def shop_nat_ports(self) -> tuple[int, list[int]]:
        """The camera's NAT probe: its socket's local port, and its public port towards each of NAT_PROBE_SERVERS."""
        probe = self.report["nat_probe"]
        self.assertEqual([tuple(server) for server in probe["servers"]], list(NAT_PROBE_SERVERS), probe)
        self.assertNotIn(None, probe["mapped"], f"a STUN server did not answer the camera: {probe}")
        self.assertEqual({ip for ip, _ in probe["mapped"]}, {SHOP_WAN_IP}, probe)
        return probe["local_port"], [port for _, port in probe["mapped"]]

    async def client_path(self, role: str) -> str:
        """``globaleye-client play`` inside *role*'s namespace: the §15 path it chose (after §8 login, §8.9 URLs)."""
        result = await self.lab.exec(role, [sys.executable, "-c", CLIENT, "--mcu",
                                            f"http://{PLATFORM_IP}:{PLATFORM_PORTS['http']}/soap/mcu",
                                            "--account", ACCOUNT, "--password", PASSWORD,
                                            "--udp-timeout", str(UDP_TIMEOUT), "play", DEV, "--seconds", "1"],
                                     timeout=40)
        log.msg(f"globaleye-client play in {role} (exit {result.code}):\n{result.out}")
        self.assertEqual(result.code, 0, f"globaleye-client failed:\n{result.out}\n{result.err[-2000:]}")
        self.assertIn("video: h264 1280x720", result.out)
        paths = [line.split(":", 1)[1].strip() for line in result.out.splitlines() if line.startswith("path:")]
        self.assertEqual(len(paths), 1, result.out)
        self.client_output = result.out
        return paths[0]

    def client_attempts(self) -> dict[str, tuple[bool, str, float]]:
        """The last client run's ``tried PATH: ok|failed: REASON (SECONDS s)`` lines, by path."""
        attempts: dict[str, tuple[bool, str, float]] = {}
        for line in self.client_output.splitlines():
            match = re.fullmatch(r"  tried (\S+): (ok|failed): (.*) \((\d+\.\d+) s\)", line)
            if match:
                attempts[match[1]] = (match[2] == "ok", match[3], float(match[4]))
        return attempts

    async def stop(self, daemon: Daemon) -> None:
        await daemon.stop(grace=8)

    # ----------------------------------------------------------------- cases

    async def test_a_shop_lan_client_plays_local_url(self) -> None:
        """(a) A PC on the shop's LAN plays the LocalIP/RtspLocalPort URL the platform recorded."""
        await self.up(camera_upnp=False)
        shown = await self.device_show()
        self.assertEqual(shown["local"], [f"{CAMERA_IP}:554"])
        # The gateway saw the camera from the shop router's public address: the NAT is real.
        self.assertTrue(shown["public"][0].startswith(f"{SHOP_WAN_IP}:"), shown["public"])
        self.assert_video(await self.probe("shoppc", shown["local"][0]), (1280, 720))
        self.assertEqual(await self.client_path("shoppc"), "local")

    async def test_b_upnp_address_reached_from_phone_behind_nat(self) -> None:
        """(b) With miniupnpd as the shop's IGD, the camera maps a random port in 10000-60000 and the phone plays it.

        Also: the mapping really is on the router (an nftables DNAT rule), the phone
        cannot use the local URL, and a stopping camera deletes its mapping.
        """
        await self.up(igd=True)
        upnp_ip, upnp_port = self.report["upnp"]
        self.assertEqual(upnp_ip, SHOP_WAN_IP, self.report)
        self.assertTrue(10000 <= upnp_port <= 60000, self.report)
        shown = await self.device_show()
        self.assertEqual(shown["upnp"], [f"{SHOP_WAN_IP}:{upnp_port}"], "LOGIN_REQ carried UpnpIP/RtspUpnpPort")
        self.assertNotIn("exception", shown)
        self.assertIn(f"dport {upnp_port} ", (await self.lab.upnp_rules()) + " ")
        self.assert_video(await self.probe("phone", shown["upnp"][0]), (1280, 720))
        self.assert_unreachable(await self.probe("phone", shown["local"][0], timeout=15))
        self.assertEqual(await self.client_path("phone"), "upnp")
        await self.stop(self.camera)
        self.assertIn("NETNS-STOPPED", self.camera.output)
        self.assertEqual(await self.lab.upnp_rules(), "", "the camera deleted its mapping when it stopped")

    async def test_c_no_upnp_turn_relay_with_udp_open(self) -> None:
        """(c) No IGD: the camera reports 0.0.0.0 and exception 12; only the TURN relay reaches it from the phone."""
        await self.up()
        self.assertEqual(self.report["upnp"], ["0.0.0.0", 0], self.report)
        # §15 step 3, camera side: the platform's STUN server sees the camera at the shop's NAT address.
        self.assertEqual(self.report["stun"][0], SHOP_WAN_IP, self.report)
        # ... through an endpoint-independent, port-preserving mapping: one socket keeps its own
        # port towards every server (the contrast to case (e)'s symmetric NAT).
        local_port, public_ports = self.shop_nat_ports()
        self.assertEqual(public_ports, [local_port] * len(NAT_PROBE_SERVERS), self.report["nat_probe"])
        await self.relay_reported()
        for _ in range(50):  # the 34H report follows the login
            shown = await self.device_show()
            if "exception" in shown:
                break
            await sleep(0.2)
        self.assertEqual(shown["upnp"], ["0.0.0.0:0"])
        self.assertTrue(any(" type 12: " in e for e in shown.get("exception", [])), shown)
        relay = shown["turn relay"][0]
        self.assertTrue(relay.startswith(f"{PLATFORM_IP}:"), relay)
        # UDP to the platform works from the phone (STUN shows the phone network's NAT address) ...
        self.assertTrue((await self.stun_from_phone()).startswith(f"{PHONE_WAN_IP}:"))
        # ... but neither the camera's local address nor the shop's public address reaches it ...
        self.assert_unreachable(await self.probe("phone", shown["local"][0], timeout=15))
        self.assert_unreachable(await self.probe("phone", f"{SHOP_WAN_IP}:554", timeout=15))
        # ... while the relay does.
        self.assert_video(await self.probe("phone", relay), (1280, 720))
        # §15 step 3 end to end: signalling through the relay, RTP over UDP straight from the
        # camera's NAT mapping to the phone's, both learnt from STUN and opened by punching.
        path = await self.client_path("phone")
        self.assertEqual(path, "turn-udp", self.client_output)
        # The camera answered SETUP with its STUN-mapped media ports (source=203.0.113.2), not its LAN ones.
        self.assertRegex(self.camera.output, rf"media ports {CAMERA_IP}:\d+ mapped to {SHOP_WAN_IP}:\d+-\d+")

    async def test_d_udp_blocked_turn_tcp_still_works(self) -> None:
        """(d) A phone network that drops UDP: no STUN at all, yet RTSP over the TURN TCP relay plays."""
        await self.up(block_phone_udp=True)
        await self.relay_reported()
        self.assertEqual(await self.stun_from_phone(), "timeout", "UDP to the platform is blocked")
        shown = await self.device_show()
        self.assert_video(await self.probe("phone", shown["turn relay"][0], stream_type=2), (352, 288))
        self.assertEqual(await self.client_path("phone"), "turn-tcp")

    async def test_e_symmetric_nat_turn_tcp(self) -> None:
        """(e) A symmetric shop NAT: the camera's STUN-mapped media port means nothing to the phone; turn-tcp plays.

        §15 step 3 needs the port the camera learns from STUN to be the port its
        media leave by towards the phone.  Behind MASQUERADE --random-fully each new
        destination gets a new random port, so the phone's punch goes to a port that
        only the TURN server may use, and the camera's media come from a port the
        phone's NAT never opened.  The client gives up UDP after its timeout and
        plays through the relay's TCP (§15 step 4).
        """
        await self.up(symmetric_shop_nat=True)
        # The NAT really is symmetric: one camera socket, four destinations (the TURN server, the
        # STUN server, its other port, its other address), a new public port for each.  Plain
        # MASQUERADE gives one port (case (c)); a NAT whose mapping depended on the address only
        # would give two.  At least three, so that one chance coincidence of --random-fully's
        # random ports (about 1 in 10^4) does not fail the test; every run so far gave four.
        _, public_ports = self.shop_nat_ports()
        self.assertGreaterEqual(len(set(public_ports)), 3, self.report["nat_probe"])
        log.msg(f"(e) NAT probe: {len(set(public_ports))} public ports for {len(public_ports)} destinations")
        self.assertEqual(self.report["upnp"], ["0.0.0.0", 0], self.report)
        await self.relay_reported()
        # UDP itself is open from the phone (unlike case (d)): what fails is the camera's mapping.
        self.assertTrue((await self.stun_from_phone()).startswith(f"{PHONE_WAN_IP}:"))
        path = await self.client_path("phone")
        self.assertEqual(path, "turn-tcp", self.client_output)
        attempts = self.client_attempts()
        self.assertEqual(sorted(attempts), ["local", "turn-tcp", "turn-udp", "upnp"], self.client_output)
        udp_ok, udp_reason, udp_seconds = attempts["turn-udp"]
        self.assertFalse(udp_ok, self.client_output)
        self.assertEqual(udp_reason, f"no media within {UDP_TIMEOUT:g} s after PLAY", self.client_output)
        self.assertTrue(attempts["turn-tcp"][0], self.client_output)
        # The camera answered the UDP SETUP with the port STUN gave it (it cannot tell, with one
        # server, that the mapping is symmetric) and sent its NAT opener and media from that socket.
        # The shop router's conntrack shows why nothing arrived: the flow to the phone got
        # another public port than the one towards the TURN server, and the phone's punch to
        # the announced port found no flow and ended at the router itself.
        announced = re.findall(rf"media ports {re.escape(CAMERA_IP)}:(\d+) mapped to {re.escape(SHOP_WAN_IP)}:(\d+)-\d+",
                               self.camera.output)
        self.assertTrue(announced, self.camera.output[-3000:])
        flows = await self.lab.udp_flows("shoprt")
        for rtp_port, public in ((int(a), int(b)) for a, b in announced):
            to_turn = [reply[3] for orig, reply in flows
                       if orig[:3] == (CAMERA_IP, rtp_port, PLATFORM_IP) and orig[3] == PLATFORM_PORTS["turn"]]
            self.assertEqual(to_turn, [public], flows)
            to_phone = [reply[3] for orig, reply in flows if orig[:3] == (CAMERA_IP, rtp_port, PHONE_WAN_IP)]
            self.assertEqual(len(to_phone), 1, flows)
            self.assertNotEqual(to_phone[0], public, "the media flow kept the STUN-mapped port: not symmetric")
            punches = [reply for orig, reply in flows if orig[0] == PHONE_WAN_IP and orig[2:] == (SHOP_WAN_IP, public)]
            self.assertTrue(punches, f"no punch from the phone to {SHOP_WAN_IP}:{public}: {flows}")
            self.assertTrue(all(reply[0] == SHOP_WAN_IP for reply in punches), punches)  # not NATed to the camera
        # The camera closed the failed session's media sockets when the client hung up (TEARDOWN and
        # the relayed connection's close): none of them is still bound, nothing waits or leaks.
        media_ports = {int(port) for port in re.findall(r"_UdpPort starting on (\d+)", self.camera.output)}
        self.assertGreaterEqual(len(media_ports), 2 * len(announced), self.camera.output[-3000:])
        for _ in range(50):
            sockets = (await self.lab.exec("camera", ["ss", "-Huan"], check=True)).out
            bound = {int(line.split()[3].rpartition(":")[2]) for line in sockets.splitlines() if line.strip()}
            if not bound & media_ports:
                break
            await sleep(0.1)
        self.assertFalse(bound & media_ports, f"media ports still open after the client left:\n{sockets}")
        fallback = sum(seconds for ok, _, seconds in attempts.values() if not ok)
        log.msg(f"(e) turn-udp failed after {udp_seconds:.2f} s; turn-tcp chosen {fallback:.2f} s after the first "
                "attempt started")
