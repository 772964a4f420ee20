"""The browser's live view through each of §15's paths, over real NATs in network namespaces.

tests/interop/test_netns_video.py proves §15's paths for an RTSP client (ffprobe,
``globaleye-client``) on the phone.  A browser plays no RTSP: it asks the web portal for
fragmented MP4, and the platform's RTSP proxy is the one that reaches the camera, by the
same §15 path sequence (``globaleye/media/rtsp/paths.py``).  So here the platform runs the
``rtsp`` and ``web`` roles too (``platform_config(live=True)``), Debian's Chromium runs
headless *inside the phone's namespace* (behind the phone network's NAT, Playwright's pipe
passes through ``ip netns exec``), logs in on the portal at the platform's public address,
opens the camera and must see its video play; then the test reads, from the platform's
``/status/streams`` (operator token), which path the proxy's upstream for that stream took.

The path is decided between the proxy (on the public segment, no NAT, no firewall) and
the camera (behind the shop's NAT), so each case shapes the *shop's* side:

- **local**: the proxy reaches the camera's LAN address only if it has a route to the
  shop's LAN.  The lab models a platform with a leg in the shop's network
  (``Lab(platform_on_shop_lan=True)``: a second interface, 192.168.10.40, on the shop's
  bridge; its default route stays public, so the camera still registers through the NAT
  and the phone still reaches the public address).  Without that leg ``local`` is tried
  and fails at once (the "wan" router has no route to 192.168.0.0/16), which the other
  three cases assert.
- **upnp**: miniupnpd on the shop router, the camera maps its RTSP port; ``local`` fails.
- **turn-udp**: no IGD; signalling through the camera's TURN relay, RTP over UDP from the
  camera's STUN-mapped port straight to the proxy's public address.
- **turn-tcp**: the shop router drops every UDP packet to or from the platform
  (``Lab(block_shop_udp=True)``); the proxy gives UDP up after its ``udp_timeout`` (3 s
  here) and plays interleaved over the relay's TCP.  A symmetric shop NAT, which makes the
  *phone's* ``globaleye-client`` fall back to TCP in test_netns_video.py (e), would not
  do it here: the proxy sits on a public address without a firewall and takes RTP from
  whatever port the camera's NAT picked (``_UdpMedia`` does not filter by source):
  ``test_symmetric_shop_nat_still_turn_udp`` shows it.

Each test builds its own network and tears it down (``Lab.close`` in addCleanup); they
skip, with the reason, without root, ``ip netns``, iptables, ffprobe, Chromium or
Playwright (and miniupnpd/nft for the UPnP case).  See docs/netns-tests.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from twisted.internet import defer, reactor
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.python import log
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.store import Account, Binding
from globaleye.store.sqlite import SQLiteStore
from tests.browser import CHROMIUM, PageErrors, launched, log_in, missing_browser
from tests.netns import (
    CAMERA_IP,
    OPS_TOKEN,
    PHONE_WAN_IP,
    PLATFORM_IP,
    PLATFORM_PORTS,
    SHOP_WAN_IP,
    Lab,
    _which,
    missing_prerequisites,
    sleep,
    start_camera,
    start_platform,
)

DEV = "81300000001"
ACCOUNT, PASSWORD = "13300000001", "netns-browser-secret"
PORTAL = f"http://{PLATFORM_IP}:{PLATFORM_PORTS['web']}"
STATUS = f"http://{PLATFORM_IP}:{PLATFORM_PORTS['http']}/status/streams"
STATUS_GET = ("import sys, urllib.request\n"
              f"request = urllib.request.Request({STATUS!r}, headers={{'Authorization': 'Bearer {OPS_TOKEN}'}})\n"
              "sys.stdout.write(urllib.request.urlopen(request, timeout=5).read().decode())\n")
#: The first picture may wait for the paths before the winning one: at most the proxy's 3 s UDP
#: wait, 2 s connect timeouts, and the camera's own STUN query at SETUP (1.5 s).
FIRST_PICTURE_TIMEOUT_MS = 20000
#: The issue's proof, given ~10 s here (the NATs and the relay are in the way): 50 pictures.
FRAMES_TIMEOUT_MS = 10000


def watch_in_phone(wrapper: Path, status: Any) -> dict[str, Any]:
    """Chromium (through *wrapper*, so in the phone's namespace): log in, open the camera, measure.

    Runs in a worker thread (Playwright's sync API).  *status()* is called, from this
    thread, while the video still plays: it returns the platform's ``/status/streams``.
    """
    out: dict[str, Any] = {}
    with launched(executable=str(wrapper), launch_timeout=30000) as browser:
        page = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844}).new_page()
        errors = PageErrors(page)
        log_in(page, PORTAL, ACCOUNT, PASSWORD, timeout=15000)
        page.wait_for_selector(f"li[data-dev-id='{DEV}'] a", timeout=15000)
        clicked = time.monotonic()
        page.click(f"li[data-dev-id='{DEV}'] a")
        page.wait_for_function("() => { const v = document.getElementById('live');"
                               " return v && v.getVideoPlaybackQuality().totalVideoFrames > 0; }",
                               timeout=FIRST_PICTURE_TIMEOUT_MS)
        out["first_picture_s"] = time.monotonic() - clicked
        out["t0"] = page.evaluate("document.getElementById('live').currentTime")
        try:
            page.wait_for_function("() => document.getElementById('live')"
                                   ".getVideoPlaybackQuality().totalVideoFrames > 50", timeout=FRAMES_TIMEOUT_MS)
            out["frames_50_after_s"] = time.monotonic() - clicked
        except Exception as e:
            out["frames_50_error"] = str(e)
        out["status"] = status()  # while the browser still watches
        page.wait_for_timeout(500)
        out.update(page.evaluate("(() => { const v = document.getElementById('live');"
                                 " const q = v.getVideoPlaybackQuality();"
                                 " return {t: v.currentTime, frames: q.totalVideoFrames, w: v.videoWidth,"
                                 " h: v.videoHeight, state: document.getElementById('live-state').dataset.state};"
                                 " })()"))
        out["errors"] = errors
    return out


class NetnsBrowserTests(TestCase):
    """One network per test; each proves that the browser plays through one of §15's paths."""

    timeout = 90

    async def up(self, *, stun: bool = False, **lab: bool) -> None:
        reason = await missing_prerequisites(need_miniupnpd=lab.get("upnp_igd", False)) or missing_browser()
        if reason is not None:
            raise SkipTest(reason)
        self.workdir = Path(self.mktemp()).resolve()
        self.workdir.mkdir(parents=True)
        media_cache = Path("netns-media-cache").resolve()  # in trial's temp directory: shared by a run's tests
        media_cache.mkdir(exist_ok=True)
        self.lab = Lab(self.workdir, **lab)
        self.addCleanup(self.lab.close)
        await self.lab.build()
        self.platform, self.config = await start_platform(self.lab, live=True)
        if lab.get("upnp_igd"):
            await self.lab.start_miniupnpd()  # after the platform: it asks the platform's STUN server
        self.camera, self.report = await start_camera(self.lab, upnp=True, media_cache=media_cache,
                                                      stun=stun)
        store = SQLiteStore(str(self.workdir / "platform.sqlite3"))
        self.addCleanup(store.close)
        now = time.time()  # the portal's account, owner of the camera (written as test_netns_video.py does)
        await store.create_account(Account(ACCOUNT, PasswordHasher().hash(PASSWORD), now, now))
        await store.bind_device(Binding(ACCOUNT, DEV, 0, "shop", now), 10)
        if lab.get("block_shop_udp") or not lab.get("upnp_igd"):
            await self.relay_reported(store)

    async def relay_reported(self, store: SQLiteStore) -> None:
        """Wait (bounded) until the camera's heartbeat has given the platform its TURN relay address."""
        for _ in range(150):
            addresses = await store.get_addresses(DEV)
            if addresses is not None and addresses.rtsp_turn_relay_port:
                return
            await sleep(0.1)
        self.fail("the camera never reported a TURN relay address")

    async def observe(self) -> dict[str, Any]:
        """While the browser plays: the proxy's ``/status/streams`` (operator token) and the portal's peers.

        Both read inside the platform's namespace: Python's urllib, and ``ss`` for the portal's TCP connections.
        """
        result = await self.lab.exec("platform", [sys.executable, "-c", STATUS_GET], timeout=10)
        self.assertEqual(result.code, 0, result.err)
        peers = await self.lab.exec("platform", ["ss", "-Htn", "sport", "=", f":{PLATFORM_PORTS['web']}"], check=True)
        return {"streams": json.loads(result.out), "peers": peers.out}

    async def play(self, expected: str) -> dict[str, Any]:
        """The browser in the phone's namespace plays the camera; the proxy's upstream took *expected*."""
        wrapper = self.workdir / "chromium-in-phone"
        ip = _which("ip")  # /usr/sbin/ip may not be on the PATH Playwright hands the wrapper
        wrapper.write_text(f"#!/bin/sh\nexec {ip} netns exec {self.lab.ns('phone')} {CHROMIUM} \"$@\"\n")
        wrapper.chmod(0o755)

        def status() -> dict[str, Any]:
            return blockingCallFromThread(reactor, lambda: defer.Deferred.fromCoroutine(self.observe()))

        result = await deferToThread(watch_in_phone, wrapper, status)
        observed = result.pop("status")
        hubs = [hub for hub in observed["streams"]["live"] if hub["key"] == [DEV, 0, 1]]
        summary = {k: v for k, v in result.items() if k != "errors"}
        print(f"\nbrowser in the phone namespace, path {expected}: first picture "
              f"{result['first_picture_s']:.2f} s after the click; {json.dumps(summary)}")
        log.msg(f"netns browser {expected}: {json.dumps(result)}; hubs {json.dumps(hubs)}")
        self.assertNotIn("frames_50_error", result)
        self.assertLess(result["frames_50_after_s"], FRAMES_TIMEOUT_MS / 1000 + FIRST_PICTURE_TIMEOUT_MS / 1000)
        self.assertGreater(result["frames"], 50)
        self.assertGreater(result["t"], result["t0"])
        self.assertEqual((result["w"], result["h"]), (1280, 720))
        self.assertEqual(result["state"], "playing")
        self.assertEqual(result["errors"], [])
        self.assertEqual(len(hubs), 1, hubs)
        hub = hubs[0]
        self.assertEqual(hub["path"], expected, hub["attempts_summary"])
        self.assertEqual(hub["starts"], 1, hub)
        self.assertTrue(hub["attempts"][-1]["ok"], hub["attempts_summary"])
        self.assertEqual(hub["attempts"][-1]["path"], expected)
        self.assertFalse(any(a["ok"] for a in hub["attempts"][:-1]), hub["attempts_summary"])
        self.assertEqual(len(hub["viewers"]), 1, "one viewer: the browser's feed")
        # The portal's connections come from the phone network's NAT address: the browser was in the phone.
        self.assertIn(f"{PHONE_WAN_IP}:", observed["peers"], "the browser reached the portal through the phone's NAT")
        self.hub = hub
        return result

    def attempt(self, path: str) -> dict[str, Any]:
        return next(a for a in self.hub["attempts"] if a["path"] == path)

    # ----------------------------------------------------------------- cases

    async def test_local(self) -> None:
        """§15 path 1: the proxy, with a leg on the shop's LAN, plays the camera's local address."""
        await self.up(platform_on_shop_lan=True)
        await self.play("local")
        self.assertIn(f"{CAMERA_IP}:554", self.attempt("local")["url"])
        self.assertEqual(len(self.hub["attempts"]), 1, self.hub["attempts_summary"])

    async def test_upnp(self) -> None:
        """§15 path 2: miniupnpd on the shop router maps the camera's RTSP port; local fails first."""
        await self.up(upnp_igd=True)
        upnp_ip, upnp_port = self.report["upnp"]
        self.assertEqual(upnp_ip, SHOP_WAN_IP, self.report)
        await self.play("upnp")
        self.assertIn(f"{SHOP_WAN_IP}:{upnp_port}", self.attempt("upnp")["url"])
        self.assertEqual([a["path"] for a in self.hub["attempts"]], ["local", "upnp"], self.hub["attempts_summary"])
        self.assertIn(f"dport {upnp_port} ", (await self.lab.upnp_rules()) + " ")

    async def test_turn_udp(self) -> None:
        """§15 path 3: no IGD; signalling through the TURN relay, RTP over UDP through the shop's NAT."""
        await self.up()
        self.assertEqual(self.report["upnp"], ["0.0.0.0", 0], self.report)
        await self.play("turn-udp")
        self.assertEqual([a["path"] for a in self.hub["attempts"]], ["local", "upnp", "turn-udp"],
                         self.hub["attempts_summary"])
        self.assertEqual(self.attempt("upnp")["reason"], "the camera reports no such address")
        self.assertIn(f"{PLATFORM_IP}:50", self.attempt("turn-udp")["url"])
        # The camera answered the proxy's UDP SETUP with its STUN-mapped media ports.
        self.assertRegex(self.camera.output, rf"media ports {CAMERA_IP}:\d+ mapped to {SHOP_WAN_IP}:\d+-\d+")

    async def test_turn_tcp(self) -> None:
        """§15 path 4: the shop's network drops UDP to the platform; the proxy gives UDP up and plays over TCP."""
        await self.up(block_shop_udp=True)
        await self.play("turn-tcp")
        self.assertEqual([a["path"] for a in self.hub["attempts"]], ["local", "upnp", "turn-udp", "turn-tcp"],
                         self.hub["attempts_summary"])
        self.assertFalse(self.attempt("turn-udp")["ok"])
        self.assertIn("no media within 3 s", self.attempt("turn-udp")["reason"])


    async def test_symmetric_shop_nat_still_turn_udp(self) -> None:
        """A symmetric shop NAT does not push the proxy off turn-udp (unlike the phone's client, video test (e)).

        The camera's media leave by another public port than the STUN-mapped one it
        announced, so the proxy's punch opens nothing; but the proxy is on a public
        address with no firewall, and its RTP socket takes the packets from whichever
        port they come.  (A platform behind a filtering firewall would fall back to
        turn-tcp here, as the phone's client does.)
        """
        await self.up(symmetric_shop_nat=True, stun=True)
        probe = self.report["nat_probe"]  # one camera socket, four STUN destinations: a port for each
        self.assertNotIn(None, probe["mapped"], probe)
        self.assertGreaterEqual(len({port for _, port in probe["mapped"]}), 3, probe)
        await self.play("turn-udp")
        self.assertEqual([a["path"] for a in self.hub["attempts"]], ["local", "upnp", "turn-udp"],
                         self.hub["attempts_summary"])
