"""The camera's UPnP IGD client against a fake IGD on loopback: the cases miniupnpd won't produce on demand.

The real-router behaviour (miniupnpd, NAT, a phone playing the mapped port) is in
``tests/interop/test_netns_video.py``; these tests cover what a real IGD rarely does when
asked: a port conflict (718) that must be retried on another random port, an IGD
that refuses, one that does not answer at all, and hostile XML.  Only 127.0.0.1 is
used: SSDP is sent to a unicast loopback port instead of the multicast group.

The upkeep (:meth:`CameraPortMapping.keep`) runs on a ``task.Clock``, so hours of
router life take no time, while every SOAP call and SSDP search still goes over real
loopback sockets to the fake IGD, which keeps a real mapping table: a router reboot
(table lost, new address), a port grabbed by another host, lease-only and
lease-converting IGDs, and an IGD that goes away and comes back at a new address.
The last class runs a simulated camera against the real platform and shows what
the gateway stores: the new UpnpIP/RtspUpnpPort from a heartbeat, 0.0.0.0 and
exception 12 when the IGD is gone, and the address again when it is back.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web import resource, server

from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.sim.upnp import (
    CameraPortMapping,
    IgdClient,
    UpnpError,
    UpnpSettings,
    parse_description,
    parse_soap,
)
from globaleye.testing import start_platform
from tests import netns
from tests.util import end_to_end_config, http_client, until

SERVICE = "urn:schemas-upnp-org:service:WANIPConnection:1"
DESCRIPTION = f"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device>
 <deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
 <deviceList><device><deviceList><device><serviceList>
  <service><serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType>
   <controlURL>/ctl/CmnIfCfg</controlURL></service>
  <service><serviceType>{SERVICE}</serviceType><controlURL>/ctl/IPConn</controlURL></service>
 </serviceList></device></deviceList></device></deviceList>
</device></root>""".encode()


def soap_answer(action: str, inner: str = "") -> bytes:
    return (f'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            f'<u:{action}Response xmlns:u="{SERVICE}">{inner}</u:{action}Response></s:Body></s:Envelope>').encode()


def soap_fault(code: int, text: str) -> bytes:
    return ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            '<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>'
            f'<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>{code}</errorCode>'
            f'<errorDescription>{text}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>'
            ).encode()


def argument(body: bytes, name: str) -> str:
    found = re.search(rf"<{name}>([^<]*)</{name}>".encode(), body)
    return found.group(1).decode() if found else ""


class FakeIgd(resource.Resource):
    """rootDesc.xml and a WANIPConnection control URL with a real mapping table; records the actions.

    ``lease_zero`` is what the IGD does with a permanent (lease 0) request: ``"accept"``,
    ``"refuse"`` (725, the way some IGDs misuse OnlyPermanentLeasesSupported) or a number
    of seconds it grants instead (IGD:2 style).  ``permanent_only`` refuses any other
    lease with 725, as the error code means.
    """

    isLeaf = True

    def __init__(self, conflicts: int = 0, refuse: int = 0, external_ip: str = "203.0.113.2",
                 lease_zero: str | int = "accept", permanent_only: bool = False) -> None:
        super().__init__()
        self.conflicts = conflicts
        self.refuse = refuse
        self.external_ip = external_ip
        self.lease_zero = lease_zero
        self.permanent_only = permanent_only
        self.table: dict[int, dict[str, str]] = {}  # external TCP port -> the mapping
        self.actions: list[tuple[str, bytes]] = []

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        return DESCRIPTION

    def fault(self, request: Any, code: int, text: str) -> bytes:
        request.setResponseCode(500)
        return soap_fault(code, text)

    def render_POST(self, request: Any) -> bytes:  # noqa: N802
        action = request.getHeader("SOAPAction").strip('"').split("#")[1]
        body = request.content.read()
        self.actions.append((action, body))
        port = int(argument(body, "NewExternalPort") or 0)
        if action == "GetExternalIPAddress":
            return soap_answer(action, f"<NewExternalIPAddress>{self.external_ip}</NewExternalIPAddress>")
        if action == "AddPortMapping":
            lease = int(argument(body, "NewLeaseDuration") or 0)
            if self.refuse:
                return self.fault(request, self.refuse, "ActionNotAuthorized")
            if self.conflicts:
                self.conflicts -= 1
                return self.fault(request, 718, "ConflictInMappingEntry")
            if lease == 0 and self.lease_zero == "refuse" or lease and self.permanent_only:
                return self.fault(request, 725, "OnlyPermanentLeasesSupported")
            client = argument(body, "NewInternalClient")
            if port in self.table and self.table[port]["NewInternalClient"] != client:
                return self.fault(request, 718, "ConflictInMappingEntry")
            if lease == 0 and isinstance(self.lease_zero, int):
                lease = self.lease_zero
            self.table[port] = {"NewInternalPort": argument(body, "NewInternalPort"), "NewInternalClient": client,
                                "NewEnabled": "1", "NewPortMappingDescription": argument(body, "NewPortMappingDescription"),
                                "NewLeaseDuration": str(lease)}
            return soap_answer(action)
        if action == "GetSpecificPortMappingEntry":
            if port not in self.table:
                return self.fault(request, 714, "NoSuchEntryInArray")
            return soap_answer(action, "".join(f"<{k}>{v}</{k}>" for k, v in self.table[port].items()))
        if action == "DeletePortMapping":
            if self.table.pop(port, None) is None:
                return self.fault(request, 714, "NoSuchEntryInArray")
            return soap_answer(action)
        return self.fault(request, 401, "Invalid Action")

    def asked(self, action: str) -> list[bytes]:
        return [body for a, body in self.actions if a == action]


class SsdpResponder(DatagramProtocol):
    def __init__(self, location: str) -> None:
        self.location = location
        self.searches = 0
        self.silent = False  # the router is off: searches go unanswered

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        if datagram.startswith(b"M-SEARCH"):
            self.searches += 1
            if not self.silent:
                self.transport.write(f"HTTP/1.1 200 OK\r\nST: x\r\nLOCATION: {self.location}\r\n\r\n".encode(),
                                     addr)


class UpnpClientTests(TestCase):
    def start_igd(self, igd: FakeIgd | None) -> tuple[int, SsdpResponder | None]:
        if igd is None:  # nobody answers: a UDP port that drops everything
            silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
            self.addCleanup(silent.stopListening)
            return silent.getHost().port, None
        web = reactor.listenTCP(0, server.Site(igd), interface="127.0.0.1")
        self.addCleanup(web.stopListening)
        responder = SsdpResponder(f"http://127.0.0.1:{web.getHost().port}/rootDesc.xml")
        ssdp = reactor.listenUDP(0, responder, interface="127.0.0.1")
        self.addCleanup(ssdp.stopListening)
        return ssdp.getHost().port, responder

    def mapping(self, ssdp_port: int, timeout: float = 2.0) -> CameraPortMapping:
        settings = UpnpSettings(discovery_timeout=timeout, request_timeout=2.0, ssdp_address=("127.0.0.1", ssdp_port))
        return CameraPortMapping(IgdClient(reactor, http_client(), settings), random.Random(7))

    async def test_conflict_retries_another_random_port_then_release(self) -> None:
        igd = FakeIgd(conflicts=2)
        port, _ = self.start_igd(igd)
        mapping = self.mapping(port)
        mapped = await mapping.map("127.0.0.1", 554)
        assert mapped is not None, mapping.failure
        adds = [body for action, body in igd.actions if action == "AddPortMapping"]
        self.assertEqual(len(adds), 3, "two conflicts, then success")
        ports = [int(body.split(b"<NewExternalPort>")[1].split(b"<")[0]) for body in adds]
        self.assertEqual(len(set(ports)), 3, "each retry picks another port")
        self.assertTrue(all(10000 <= p <= 60000 for p in ports))
        self.assertEqual(mapped, ("203.0.113.2", ports[-1]))
        self.assertIn(b"<NewInternalPort>554</NewInternalPort>", adds[-1])
        self.assertIn(b"<NewInternalClient>127.0.0.1</NewInternalClient>", adds[-1])
        await mapping.release()
        self.assertEqual(igd.actions[-1][0], "DeletePortMapping")
        self.assertIn(f"<NewExternalPort>{ports[-1]}</NewExternalPort>".encode(), igd.actions[-1][1])

    async def test_refusal_is_a_failure_with_the_reason(self) -> None:
        igd = FakeIgd(refuse=606)
        port, _ = self.start_igd(igd)
        mapping = self.mapping(port)
        self.assertIsNone(await mapping.map("127.0.0.1", 554))
        self.assertIn("606", mapping.failure)
        await mapping.release()  # nothing mapped: nothing to delete
        self.assertNotIn("DeletePortMapping", [a for a, _ in igd.actions])

    async def test_no_igd_fails_within_the_discovery_timeout(self) -> None:
        port, _ = self.start_igd(None)
        mapping = self.mapping(port, timeout=0.5)
        started = reactor.seconds()
        self.assertIsNone(await maybeDeferred(lambda: mapping.map("127.0.0.1", 554)))
        self.assertLess(reactor.seconds() - started, 2.0)
        self.assertIn("no IGD answered", mapping.failure)

    def test_description_and_soap_parsing(self) -> None:
        igd = parse_description("http://192.168.10.1:5000/rootDesc.xml", DESCRIPTION)
        self.assertEqual((igd.control_url, igd.service_type), ("http://192.168.10.1:5000/ctl/IPConn", SERVICE))
        with self.assertRaises(UpnpError) as caught:
            parse_soap("AddPortMapping", 500, soap_fault(718, "ConflictInMappingEntry"))
        self.assertEqual(caught.exception.code, 718)
        answer = parse_soap("GetExternalIPAddress", 200, soap_answer(
            "GetExternalIPAddress", "<NewExternalIPAddress>203.0.113.2</NewExternalIPAddress>"))
        self.assertEqual(answer, {"NewExternalIPAddress": "203.0.113.2"})

    def test_hostile_xml_is_refused_not_expanded(self) -> None:
        bomb = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
                b'<root xmlns="urn:schemas-upnp-org:device-1-0"><service><serviceType>' + SERVICE.encode()
                + b'</serviceType><controlURL>/&b;</controlURL></service></root>')
        try:
            igd = parse_description("http://192.168.10.1:5000/d.xml", bomb)
        except UpnpError:
            return
        self.assertNotIn("aaaaaaaaaa", igd.control_url, "entities must not be expanded")


class Router:
    """A fake IGD that can be switched off and on again (a new HTTP port each time), found by SSDP."""

    def __init__(self, test: TestCase, igd: FakeIgd) -> None:
        self.test = test
        self.igd = igd
        self.web: Any = None
        self.responder = SsdpResponder("")
        self.ssdp = reactor.listenUDP(0, self.responder, interface="127.0.0.1")
        test.addCleanup(self.ssdp.stopListening)
        self.on()

    @property
    def ssdp_port(self) -> int:
        return int(self.ssdp.getHost().port)

    def on(self, igd: FakeIgd | None = None) -> None:
        self.igd = igd or self.igd
        self.web = reactor.listenTCP(0, server.Site(self.igd), interface="127.0.0.1")
        self.test.addCleanup(lambda: maybeDeferred(self.web.stopListening))
        self.responder.location = f"http://127.0.0.1:{self.web.getHost().port}/rootDesc.xml"
        self.responder.silent = False

    async def off(self) -> None:
        self.responder.silent = True
        await maybeDeferred(self.web.stopListening)


def upkeep_settings(ssdp_port: int, **overrides: Any) -> UpnpSettings:
    values: dict[str, Any] = dict(discovery_timeout=0.5, request_timeout=2.0, ssdp_address=("127.0.0.1", ssdp_port),
                                  check_interval=600.0, check_jitter=0.1, lease=3600, retry_initial=30.0,
                                  retry_max=600.0)
    values.update(overrides)
    return UpnpSettings(**values)


class UpnpUpkeepTests(TestCase):
    """The mapping is checked on the clock and follows the router: vanished, moved, leased, gone and back."""

    timeout = 30

    async def start(self, igd: FakeIgd, **settings: Any) -> tuple[Router, CameraPortMapping, task.Clock,
                                                                   list[tuple[Any, str]]]:
        router = Router(self, igd)
        clock = task.Clock()
        mapping = CameraPortMapping(IgdClient(reactor, http_client(), upkeep_settings(router.ssdp_port, **settings)),
                                    random.Random(3), clock=clock)
        self.addCleanup(mapping.stop)
        mapped = await mapping.map("127.0.0.1", 554)
        assert mapped is not None, mapping.failure
        changes: list[tuple[Any, str]] = []
        mapping.keep(lambda new, reason: changes.append((new, reason)))
        return router, mapping, clock, changes

    async def advance(self, mapping: CameraPortMapping, clock: task.Clock, seconds: float) -> None:
        """Let *seconds* pass on the clock and wait for the upkeep rounds they started."""
        rounds = mapping.rounds
        clock.advance(seconds)
        if mapping.rounds != rounds and mapping.checking is not None:
            await mapping.checking

    async def test_vanished_mapping_is_added_again_on_the_same_port(self) -> None:
        """A router reboot loses its table: the same port comes back; the platform's address stays right."""
        igd = FakeIgd()
        router, mapping, clock, changes = await self.start(igd)
        port = mapping.port
        assert port is not None
        await self.advance(mapping, clock, 540)  # before the first check (600 s - 10 % jitter)
        self.assertEqual(mapping.rounds, 0)
        self.assertEqual(igd.asked("GetSpecificPortMappingEntry"), [])
        igd.table.clear()
        await self.advance(mapping, clock, 120)
        self.assertEqual(mapping.rounds, 1)
        self.assertEqual(len(igd.asked("GetSpecificPortMappingEntry")), 1, "the mapping was checked")
        self.assertEqual(list(igd.table), [port], "added again, on the same port")
        self.assertEqual(igd.table[port]["NewInternalClient"], "127.0.0.1")
        self.assertEqual(mapping.mapped, ("203.0.113.2", port))
        self.assertEqual(changes, [], "nothing to report: UpnpIP/RtspUpnpPort are still right")
        del router

    async def test_vanished_and_taken_port_gets_a_new_port_reported(self) -> None:
        """After the reboot another host got the port first: a new random port, reported with the reason."""
        igd = FakeIgd()
        _router, mapping, clock, changes = await self.start(igd)
        old = mapping.port
        assert old is not None
        igd.table = {old: {"NewInternalPort": "80", "NewInternalClient": "192.168.10.99", "NewEnabled": "1",
                           "NewPortMappingDescription": "someone else", "NewLeaseDuration": "0"}}
        await self.advance(mapping, clock, 660)
        new = mapping.port
        assert new is not None and new != old
        self.assertTrue(10000 <= new <= 60000)
        self.assertEqual(igd.table[new]["NewInternalClient"], "127.0.0.1")
        self.assertEqual(igd.table[old]["NewInternalClient"], "192.168.10.99", "the other host's mapping is left alone")
        self.assertEqual(len(changes), 1)
        self.assertEqual(changes[0][0], ("203.0.113.2", new))
        self.assertIn(f"port {old} was taken by 192.168.10.99:80", changes[0][1])

    async def test_new_external_address_is_reported(self) -> None:
        igd = FakeIgd()
        _router, mapping, clock, changes = await self.start(igd)
        port = mapping.port
        igd.external_ip = "198.51.100.77"
        await self.advance(mapping, clock, 660)
        self.assertEqual(changes, [(("198.51.100.77", port), "external address changed from 203.0.113.2 to "
                                                              "198.51.100.77")])
        await self.advance(mapping, clock, 660)
        self.assertEqual(mapping.rounds, 2)
        self.assertEqual(len(changes), 1, "a steady router: nothing more to report")

    async def test_lease_zero_refused_with_725_uses_a_lease_renewed_at_half(self) -> None:
        igd = FakeIgd(lease_zero="refuse")
        _router, mapping, clock, changes = await self.start(igd, check_interval=7200.0, check_jitter=0.0)
        port = mapping.port
        assert port is not None
        leases = [argument(body, "NewLeaseDuration") for body in igd.asked("AddPortMapping")]
        self.assertEqual(leases, ["0", "3600"], "permanent refused (725), then a 3600 s lease")
        self.assertEqual(mapping.lease, 3600)
        await self.advance(mapping, clock, 1799)
        self.assertEqual(mapping.rounds, 0, "not before half the lease")
        await self.advance(mapping, clock, 1)
        self.assertEqual((mapping.rounds, mapping.renewals), (1, 1))
        self.assertEqual([argument(b, "NewLeaseDuration") for b in igd.asked("AddPortMapping")], ["0", "3600", "3600"])
        self.assertEqual(argument(igd.asked("AddPortMapping")[-1], "NewExternalPort"), str(port), "the same mapping")
        await self.advance(mapping, clock, 1800)
        self.assertEqual((mapping.rounds, mapping.renewals), (2, 2), "renewed every half lease")
        self.assertEqual(changes, [])

    async def test_granted_lease_instead_of_permanent_is_renewed(self) -> None:
        """An IGD that turns lease 0 into a running lease (IGD:2 style): leases of 3600 s from then on."""
        igd = FakeIgd(lease_zero=604800)
        _router, mapping, clock, _changes = await self.start(igd, check_jitter=0.0)
        await self.advance(mapping, clock, 600)  # the first check sees the running lease
        self.assertEqual(mapping.lease, 3600)
        self.assertEqual(mapping.renewals, 1)
        self.assertEqual(igd.table[mapping.port or 0]["NewLeaseDuration"], "3600")
        await self.advance(mapping, clock, 600)  # the check interval is shorter than half the lease
        self.assertEqual(mapping.renewals, 2)

    async def test_leases_refused_with_725_go_back_to_permanent(self) -> None:
        """The IGD changes to one that only keeps permanent mappings: 725 means exactly that."""
        igd = FakeIgd(lease_zero="refuse")
        router, mapping, clock, _changes = await self.start(igd, check_jitter=0.0)
        self.assertEqual(mapping.lease, 3600)
        igd.lease_zero, igd.permanent_only = "accept", True
        await self.advance(mapping, clock, 600)
        self.assertEqual(mapping.lease, 0)
        self.assertEqual(igd.table[mapping.port or 0]["NewLeaseDuration"], "0")
        del router

    async def test_igd_gone_reports_none_then_recovers_when_it_is_back(self) -> None:
        igd = FakeIgd()
        router, mapping, clock, changes = await self.start(igd, check_jitter=0.0)
        port = mapping.port
        first_location = router.responder.location
        await router.off()
        await self.advance(mapping, clock, 600)
        self.assertIsNone(mapping.mapped)
        self.assertIsNone(mapping.igd, "forgotten: it is searched for again")
        self.assertEqual(len(changes), 1)
        self.assertIsNone(changes[0][0])
        self.assertIn("IGD 127.0.0.1:", changes[0][1])
        self.assertIn("GetExternalIPAddress: ConnectionRefusedError", changes[0][1])
        searches = router.responder.searches
        await self.advance(mapping, clock, 29)
        self.assertEqual(router.responder.searches, searches, "no search before the first backoff (30 s)")
        await self.advance(mapping, clock, 1)
        self.assertGreater(router.responder.searches, searches, "searched again over SSDP")
        self.assertIn("no IGD answered", mapping.failure)
        self.assertEqual(len(changes), 1, "still none: nothing new to report")
        searches = router.responder.searches
        await self.advance(mapping, clock, 59)
        self.assertEqual(router.responder.searches, searches, "the backoff doubled to 60 s")
        router.on(FakeIgd())  # the router is back, at another HTTP port and with an empty table
        self.assertNotEqual(router.responder.location, first_location)
        await self.advance(mapping, clock, 1)
        self.assertEqual(mapping.mapped, ("203.0.113.2", port), "the old port again")
        self.assertEqual(list(router.igd.table), [port])
        self.assertEqual(changes[1], (("203.0.113.2", port), "IGD found again, mapping made"))
        await self.advance(mapping, clock, 600)
        self.assertEqual(len(router.igd.asked("GetSpecificPortMappingEntry")), 1, "checked every 600 s again")

    async def test_release_stops_the_upkeep_and_deletes(self) -> None:
        igd = FakeIgd()
        _router, mapping, clock, _changes = await self.start(igd)
        await mapping.release()
        self.assertEqual(igd.table, {})
        self.assertEqual(clock.getDelayedCalls(), [], "no more checks")


class UpnpCameraReportTests(TestCase):
    """A simulated camera on the real platform: what the gateway stores as its mapping follows the router."""

    timeout = 60

    def start_platform(self) -> PlatformService:
        return start_platform(self, end_to_end_config(self.mktemp() + ".sqlite3"), reactor)

    async def test_changes_reach_the_platform(self) -> None:
        dev = "81100000007"
        platform = self.start_platform()
        igd = FakeIgd()
        router = Router(self, igd)
        clock = task.Clock()
        settings = upkeep_settings(router.ssdp_port, check_jitter=0.0)
        mapping = CameraPortMapping(IgdClient(reactor, http_client(), settings), random.Random(4), clock=clock)
        camera = SimulatedCamera(
            CameraState.for_device(dev, device_key("test", dev), local_ip="127.0.0.1", rtsp_local_port=554), reactor,
            register_url=f"http://127.0.0.1:{platform.port_of('http')}/register",
            timing=Timing(backoff_initial=0.05, backoff_max=0.2), rng=random.Random(1), http=http_client(),
            upnp=mapping)
        camera.start()

        async def stop() -> None:
            camera.stop()  # a second stop does nothing
            if camera.upnp_released is not None:
                await camera.upnp_released  # DeletePortMapping, as Fleet.stop waits for it

        self.addCleanup(stop)
        await camera.went_online
        live = platform.gateway.live
        port = mapping.port
        await until(lambda: dev in live and live[dev].addresses.upnp_ip == "203.0.113.2")
        self.assertEqual(live[dev].addresses.rtsp_upnp_port, port, "from LOGIN_REQ")

        async def round_(seconds: float = 600) -> None:
            rounds = mapping.rounds
            clock.advance(seconds)
            self.assertEqual(mapping.rounds, rounds + 1)
            assert mapping.checking is not None
            await mapping.checking

        igd.external_ip = "198.51.100.77"  # the ISP gave the router a new address
        await round_()
        await until(lambda: live[dev].addresses.upnp_ip == "198.51.100.77")  # a heartbeat at once
        self.assertEqual(live[dev].addresses.rtsp_upnp_port, port)

        await router.off()
        await round_()
        await until(lambda: live[dev].addresses.upnp_ip == "0.0.0.0")
        self.assertEqual(live[dev].addresses.rtsp_upnp_port, 0)
        for _ in range(500):  # the exception report goes to the store's thread
            reports = await platform.store.list_exceptions(dev)
            if reports:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual([r.exception_type for r in reports], [12], "exception 12 while online")
        self.assertIn("GetExternalIPAddress", reports[0].description)

        router.on(FakeIgd(external_ip="198.51.100.77"))
        await round_(30)  # the first retry, after retry_initial
        await until(lambda: live[dev].addresses.upnp_ip == "198.51.100.77")
        self.assertEqual(live[dev].addresses.rtsp_upnp_port, port, "the old port again")
        self.assertTrue(camera.online, "one session throughout: reported by heartbeats")
        self.assertEqual(camera.logins, 1)
        self.assertEqual(router.igd.table[port]["NewInternalPort"], "554")
        await stop()
        self.assertEqual(router.igd.table, {}, "the camera deleted its mapping on the IGD it found again")


#: The camera's UPnP upkeep alone, in the lab's camera namespace, on the real reactor with
#: short intervals; one ``UPKEEP {json}`` line per round and per change, for the test to read.
UPKEEP_SCRIPT = """
import json, random, sys
from twisted.internet import defer, task
from globaleye.sim.upnp import CameraPortMapping, IgdClient, UpnpSettings
from tests.util import http_client

class Reporting(CameraPortMapping):
    async def check(self):
        await super().check()
        say("round")

def say(event, **extra):
    print("UPKEEP " + json.dumps(dict(event=event, mapped=mapping.mapped, port=mapping.port, lease=mapping.lease,
                                      rounds=mapping.rounds, renewals=mapping.renewals, failure=mapping.failure,
                                      **extra)), flush=True)

async def main(reactor):
    global mapping
    settings = UpnpSettings(discovery_timeout=2.0, request_timeout=2.0, check_interval=1.0, check_jitter=0.0,
                            lease=3600, retry_initial=1.0, retry_max=2.0)
    mapping = Reporting(IgdClient(reactor, http_client(), settings), random.Random(11))
    await mapping.map(sys.argv[1], int(sys.argv[2]))
    say("mapped")
    mapping.keep(lambda new, reason: say("change", reason=reason))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.Deferred.fromCoroutine(mapping.release()))
    await defer.Deferred()

task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
"""


class UpnpUpkeepMiniupnpdTests(TestCase):
    """The upkeep against Debian's miniupnpd in the lab's shop router (root, namespaces, miniupnpd)."""

    timeout = 120

    async def test_router_restart_without_its_table(self) -> None:
        """miniupnpd restarts with an empty table: the camera finds it again and maps the same port."""
        reason = await netns.missing_prerequisites(need_miniupnpd=True)
        if reason:
            raise SkipTest(reason)
        workdir = Path(self.mktemp()).resolve()  # the lab's processes run from the repository
        workdir.mkdir(parents=True)
        lab = netns.Lab(workdir, upnp_igd=True)
        self.addCleanup(lab.close)
        await lab.build()
        await netns.start_platform(lab)  # miniupnpd's STUN check asks the platform
        igd = await lab.start_miniupnpd()
        camera = lab.spawn("camera", [sys.executable, "-c", UPKEEP_SCRIPT, netns.CAMERA_IP, "554"], "upkeep",
                           ready=r"UPKEEP (\{.*\"event\": \"mapped\".*\})\n")
        ready = await camera.wait_ready(30)
        assert ready is not None
        first = json.loads(ready.group(1))
        self.assertEqual(first["mapped"][0], netns.SHOP_WAN_IP, camera.output)
        port = first["port"]
        self.assertIn(f"dport {port} ", await lab.upnp_rules() + " ")

        def events() -> list[dict[str, Any]]:
            return [json.loads(line[len("UPKEEP "):]) for line in camera.output.splitlines()
                    if line.startswith("UPKEEP {")]

        # A few rounds against the real IGD: GetSpecificPortMappingEntry finds the mapping each time.
        await until(lambda: sum(e["event"] == "round" for e in events()) >= 3, timeout=20)
        rounds = [e for e in events() if e["event"] == "round"]
        self.assertTrue(all(e["mapped"] == [netns.SHOP_WAN_IP, port] for e in rounds), rounds)
        self.assertFalse([e for e in events() if e["event"] == "change"], "a steady router: no change")
        lease = rounds[-1]["lease"]  # 0 if miniupnpd keeps a permanent mapping, 3600 if it runs a lease
        self.assertIn(lease, (0, 3600))
        if lease:
            self.assertGreater(rounds[-1]["renewals"], 0, "a leased mapping is renewed")

        # The router restarts and forgets: no daemon, no rules, no lease file.
        await igd.stop()
        await lab.exec("shoprt", ["nft", "flush", "chain", "inet", "miniupnpd", "prerouting_miniupnpd"], check=True)
        await lab.exec("shoprt", ["nft", "flush", "chain", "inet", "miniupnpd", "miniupnpd"], check=True)
        (workdir / "upnp.leases").unlink(missing_ok=True)
        self.assertEqual(await lab.upnp_rules(), "")
        await until(lambda: any(e["event"] == "change" and e["mapped"] is None for e in events()), timeout=20)
        await lab.start_miniupnpd()
        await until(lambda: any(e["event"] == "change" and e["mapped"] is not None for e in events()), timeout=40)
        changes = [e for e in events() if e["event"] == "change"]
        self.assertEqual([c["mapped"] for c in changes], [None, [netns.SHOP_WAN_IP, port]], changes)
        self.assertIn("GetExternalIPAddress", changes[0]["reason"])
        self.assertEqual(changes[1]["reason"], "IGD found again, mapping made")
        self.assertIn(f"dport {port} ", await lab.upnp_rules() + " ", "the DNAT rule is back, same port")
        await camera.stop()
        self.assertEqual(await lab.upnp_rules(), "", "deleted when the camera stopped")
