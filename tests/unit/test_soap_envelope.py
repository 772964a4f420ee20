"""The pure SOAP layer: envelope parsing (safely), Faults, request decoding, response encoding, WSDL."""

from __future__ import annotations

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from globaleye.api.soap.envelope import (
    SOAP_ENV,
    SoapFault,
    build_envelope,
    build_fault,
    parse_envelope,
)
from globaleye.api.soap.operations import MCU_NS, MCU_OPERATIONS, decode_request, encode_response
from globaleye.api.soap.wsdl import Wsdl

OPS = {op.name: op for op in MCU_OPERATIONS}


def envelope(body: str, header: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP_ENV}">{header}<s:Body>{body}'
            f"</s:Body></s:Envelope>").encode()


LOGIN = (f'<LoginRequest xmlns="{MCU_NS}"><Account> 13300000001 </Account><Password> pw with spaces </Password>'
         "<Version>1.0</Version></LoginRequest>")


class EnvelopeTests(SynchronousTestCase):
    def fault(self, data: bytes) -> SoapFault:
        with self.assertRaises(SoapFault) as caught:
            parse_envelope(data)
        return caught.exception

    def test_parse_and_decode(self) -> None:
        element = parse_envelope(envelope(LOGIN))
        values = decode_request(OPS["Login"], element)
        self.assertEqual(values, {"Account": "13300000001", "Password": " pw with spaces ", "Version": "1.0"})

    def test_unqualified_children_accepted(self) -> None:
        body = '<m:PtzControlRequest xmlns:m="urn:globaleye:soap:mcu:1"><Account>1</Account><LoginSession>s' \
               "</LoginSession><DevID>81100000001</DevID><ChannelNo>+0</ChannelNo><PtzDirection>3</PtzDirection>" \
               "</m:PtzControlRequest>"
        values = decode_request(OPS["PtzControl"], parse_envelope(envelope(body)))
        self.assertEqual((values["ChannelNo"], values["PtzDirection"]), (0, 3))

    def test_missing_and_malformed_values(self) -> None:
        element = parse_envelope(envelope(f'<LoginRequest xmlns="{MCU_NS}"><Account>1</Account></LoginRequest>'))
        with self.assertRaises(SoapFault) as caught:
            decode_request(OPS["Login"], element)
        self.assertIn("Password is missing", str(caught.exception))
        for bad in ("x", "99999999999", "1.5", ""):
            element = parse_envelope(envelope(f'<GetSmsCodeRequest xmlns="{MCU_NS}"><MobileTel>1</MobileTel>'
                                              f"<Type>{bad}</Type></GetSmsCodeRequest>"))
            self.assertRaises(SoapFault, decode_request, OPS["GetSmsCode"], element)

    def test_optional_fields_absent(self) -> None:
        body = (f'<SetVideoParamsRequest xmlns="{MCU_NS}"><Account>1</Account><LoginSession>s</LoginSession>'
                "<DevID>d</DevID><ChannelNo>0</ChannelNo><StreamType>1</StreamType><FrameRate>10</FrameRate>"
                "</SetVideoParamsRequest>")
        values = decode_request(OPS["SetVideoParams"], parse_envelope(envelope(body)))
        self.assertEqual((values["FrameSize"], values["FrameRate"], values["AudioInput"]), (None, 10, None))

    def test_hostile_documents(self) -> None:
        bomb = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
                + envelope("<x>&b;</x>"))
        self.assertIn("DOCTYPE", str(self.fault(bomb)))
        xxe = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + envelope("<x>&e;</x>")
        self.assertIn("DOCTYPE", str(self.fault(xxe)))
        self.assertIn("DOCTYPE", str(self.fault(b"<!doctype x>" + envelope("<x/>"))))
        self.assertIn("UTF-8", str(self.fault(envelope(LOGIN).decode().encode("utf-16"))))
        self.assertIn("larger", str(self.fault(envelope("<x>" + "a" * 70000 + "</x>"))))
        deep = "<a>" * 40 + "</a>" * 40
        self.assertIn("nesting", str(self.fault(envelope(deep))))
        self.assertIn("not well-formed", str(self.fault(envelope("<a><b></a>"))))

    def test_envelope_structure(self) -> None:
        self.assertEqual(self.fault(b'<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"/>').code,
                         "VersionMismatch")
        self.assertIn("no Body", str(self.fault(f'<s:Envelope xmlns:s="{SOAP_ENV}"/>'.encode())))
        self.assertIn("exactly one", str(self.fault(envelope("<a/><b/>"))))
        header = '<s:Header><h:Auth xmlns:h="urn:h" s:mustUnderstand="1"/></s:Header>'
        self.assertEqual(self.fault(envelope(LOGIN, header)).code, "MustUnderstand")
        ignorable = '<s:Header><h:Trace xmlns:h="urn:h">1</h:Trace></s:Header>'
        self.assertEqual(etree.QName(parse_envelope(envelope(LOGIN, ignorable))).localname, "LoginRequest")

    def test_response_and_fault(self) -> None:
        payload = encode_response(OPS["Login"], {
            "Result": 0, "LoginSession": "tok", "DevNum": 10, "UpdateUrl": None,
            "Device": [{"DevID": "81100000001", "ChannelNo": 0, "Name": "a<&b", "OnLine": 1, "PtzFlag": 1,
                        "ShareFlag": 0, "Video": [{"StreamType": 1, "FrameSize": 1}]}]}, MCU_NS)
        data = build_envelope(payload)
        root = etree.fromstring(data)
        ns = {"m": MCU_NS, "s": SOAP_ENV}
        self.assertEqual(root.findtext("s:Body/m:LoginResponse/m:Result", namespaces=ns), "0")
        self.assertIsNone(root.find("s:Body/m:LoginResponse/m:UpdateUrl", namespaces=ns))
        self.assertEqual(root.findtext("s:Body/m:LoginResponse/m:Device/m:Name", namespaces=ns), "a<&b")
        self.assertEqual(root.findtext("s:Body/m:LoginResponse/m:Device/m:Video/m:FrameSize", namespaces=ns), "1")
        fault = etree.fromstring(build_fault(SoapFault("Client", "bad \x01 thing", "why")))
        self.assertEqual(fault.findtext("s:Body/s:Fault/faultcode", namespaces=ns), "soap:Client")
        self.assertEqual(fault.findtext("s:Body/s:Fault/faultstring", namespaces=ns), "bad ? thing")

    def test_wsdl_declares_every_operation(self) -> None:
        document = etree.fromstring(Wsdl("GlobalEyeMcu", MCU_NS, MCU_OPERATIONS).document("http://h:1/soap/mcu"))
        xs = {"xs": "http://www.w3.org/2001/XMLSchema", "w": "http://schemas.xmlsoap.org/wsdl/",
              "soap": "http://schemas.xmlsoap.org/wsdl/soap/"}
        elements = set(document.xpath("//xs:schema/xs:element/@name", namespaces=xs))
        for op in MCU_OPERATIONS:
            self.assertIn(op.request_element, elements)
            self.assertIn(op.response_element, elements)
        self.assertEqual(document.xpath("//soap:address/@location", namespaces=xs), ["http://h:1/soap/mcu"])
        self.assertEqual(len(document.xpath("//w:binding/w:operation", namespaces=xs)), len(MCU_OPERATIONS))
