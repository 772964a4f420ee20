"""The camera's UPnP IGD client against a fake IGD on loopback: the cases miniupnpd won't produce on demand.

The real-router behaviour (miniupnpd, NAT, a phone playing the mapped port) is in
``tests/test_netns_video.py``; these tests cover what a real IGD rarely does when
asked: a port conflict (718) that must be retried on another random port, an IGD
that refuses, one that does not answer at all, and hostile XML.  Only 127.0.0.1 is
used: SSDP is sent to a unicast loopback port instead of the multicast group.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from globaleye.sim.upnp import (
    CameraPortMapping,
    IgdClient,
    UpnpError,
    UpnpSettings,
    parse_description,
    parse_soap,
)
from tests.util import http_client

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


class FakeIgd(resource.Resource):
    """rootDesc.xml and a WANIPConnection control URL; records the actions it was asked."""

    isLeaf = True

    def __init__(self, conflicts: int = 0, refuse: int = 0) -> None:
        super().__init__()
        self.conflicts = conflicts
        self.refuse = refuse
        self.actions: list[tuple[str, bytes]] = []

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        return DESCRIPTION

    def render_POST(self, request: Any) -> bytes:  # noqa: N802
        action = request.getHeader("SOAPAction").strip('"').split("#")[1]
        body = request.content.read()
        self.actions.append((action, body))
        if action == "GetExternalIPAddress":
            return soap_answer(action, "<NewExternalIPAddress>203.0.113.2</NewExternalIPAddress>")
        if action == "AddPortMapping" and self.refuse:
            request.setResponseCode(500)
            return soap_fault(self.refuse, "ActionNotAuthorized")
        if action == "AddPortMapping" and self.conflicts:
            self.conflicts -= 1
            request.setResponseCode(500)
            return soap_fault(718, "ConflictInMappingEntry")
        return soap_answer(action)


class SsdpResponder(DatagramProtocol):
    def __init__(self, location: str) -> None:
        self.location = location
        self.searches = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        if datagram.startswith(b"M-SEARCH"):
            self.searches += 1
            self.transport.write(f"HTTP/1.1 200 OK\r\nST: x\r\nLOCATION: {self.location}\r\n\r\n".encode(), addr)


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
