"""The calling side of the SOAP codec (a province calling its group): pure, no network."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from globaleye.api.soap.client import parse_response, request_envelope
from globaleye.api.soap.envelope import SoapFault, build_envelope, build_fault, parse_envelope
from globaleye.api.soap.operations import (
    GROUP_NS,
    GROUP_OPERATIONS,
    MCU_NS,
    MCU_OPERATIONS,
    decode_request,
    encode_response,
)

GROUP = {op.name: op for op in GROUP_OPERATIONS}
MCU = {op.name: op for op in MCU_OPERATIONS}


class SoapClientCodecTests(SynchronousTestCase):
    def test_request_round_trip(self) -> None:
        """What the client encodes is what the server decodes, repeated structs included."""
        op = GROUP["NotifyDeviceUsage"]
        values = {"ProvinceNo": "3100", "CmsNo": "01", "CmsPassword": " pw ", "DevID": "81100000001", "DevKey": "k"}
        self.assertEqual(decode_request(op, parse_envelope(request_envelope(op, values, GROUP_NS))), values)
        op = MCU["AddRecordPolicy"]
        windows = [{"PolicyID": None, "StoreType": 0, "StreamType": 1, "Week": 1, "StartTime": "08:00",
                    "EndTime": "09:00"}] * 2
        decoded = decode_request(op, parse_envelope(request_envelope(
            op, {"Account": "13300000001", "LoginSession": "s", "DevID": "81100000001", "ChannelNo": 0,
                 "RecordPolicy": windows}, MCU_NS)))
        self.assertEqual(decoded["RecordPolicy"], windows)

    def test_response_fault_and_wrong_answer(self) -> None:
        op = GROUP["NotifyDeviceUsage"]
        answer = build_envelope(encode_response(op, {"Result": 0, "Mode": "IPC-1", "DevType": 1}, GROUP_NS))
        self.assertEqual(parse_response(op, answer, GROUP_NS),
                         {"Result": 0, "ManufacturerNo": None, "Mode": "IPC-1", "DevType": 1})
        with self.assertRaises(SoapFault) as fault:
            parse_response(op, build_fault(SoapFault("Client", "CmsNo is missing")), GROUP_NS)
        self.assertEqual((fault.exception.code, fault.exception.string), ("Client", "CmsNo is missing"))
        other = build_envelope(encode_response(GROUP["OpenService"], {"Result": 0}, GROUP_NS))
        self.assertRaises(SoapFault, parse_response, op, other, GROUP_NS)
        self.assertRaises(SoapFault, parse_response, op, b"<!DOCTYPE x []><x/>", GROUP_NS)
