"""Tests for globaleye.sim.commands: the simulated camera answers 60H-7BH like a device.

Every request goes over the wire form first (``to_xml`` then ``messages.parse``)
and every response comes back the same way, so what is tested is what the
gateway would see, not just Python objects.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from globaleye.device.protocol import messages as m
from globaleye.sim.commands import HANDLERS, SimResult, answer
from globaleye.sim.state import CameraState
from globaleye.util.clock import BEIJING

DEV_ID = "81100000001"
NVR_ID = "81200000002"
KEY = "0123456789abcdef"
#: 2026-11-02 10:03:20 Beijing time: the recordings end at 10:00.
NOW = datetime.datetime(2026, 11, 2, 10, 3, 20, tzinfo=BEIJING).timestamp()


def camera(**overrides: Any) -> CameraState:
    return CameraState.for_device(DEV_ID, KEY, clock=lambda: NOW, **overrides)


def nvr(**overrides: Any) -> CameraState:
    return CameraState.for_device(NVR_ID, KEY, dev_type=m.DevType.NVR, clock=lambda: NOW, **overrides)


def samples(dev_id: str) -> dict[type[m.Message], Any]:
    """One valid request per 60H-7BH class, as the platform would send it."""
    return {
        m.SetVideoParamsRequest: m.SetVideoParamsRequest(dev_id=dev_id, channel_no=0, stream_type=1,
                                                         frame_rate=20),
        m.GetVideoParamsRequest: m.GetVideoParamsRequest(dev_id=dev_id, channel_no=0, stream_type=2),
        m.QueryWifiRequest: m.QueryWifiRequest(dev_id=dev_id),
        m.SetWifiRequest: m.SetWifiRequest(dev_id=dev_id, ssid="Store-Guest", security=0),
        m.PtzRequest: m.PtzRequest(dev_id=dev_id, channel_no=0, ptz_direction=3),
        m.SetCloudAccountRequest: m.SetCloudAccountRequest(dev_id=dev_id, url="http://e.example/auth",
                                                           account="a", password="p"),
        m.GetCloudAccountRequest: m.GetCloudAccountRequest(dev_id=dev_id),
        m.AddRecordPolicyRequest: m.AddRecordPolicyRequest(dev_id=dev_id, channel_no=0, week_policy=(
            m.RecordPolicy(store_type=0, stream_type=1, week=1, start_time="08:00", end_time="12:00"),)),
        m.GetRecordPolicyRequest: m.GetRecordPolicyRequest(dev_id=dev_id, channel_no=0),
        m.DeleteRecordPolicyRequest: m.DeleteRecordPolicyRequest(dev_id=dev_id, channel_no=0, policy_id=1),
        m.SetRecordParamsRequest: m.SetRecordParamsRequest(dev_id=dev_id, channel_no=0, audio_input=0),
        m.GetRecordParamsRequest: m.GetRecordParamsRequest(dev_id=dev_id, channel_no=0),
        m.RebootRequest: m.RebootRequest(dev_id=dev_id),
        m.UpgradeRequest: m.UpgradeRequest(dev_id=dev_id, new_dev_ver="V1.0.1", ftp_ip="10.0.0.9", ftp_port=21,
                                           ftp_account="fw", ftp_password="pw", ftp_file_name="fw.bin"),
        m.NvrBindRequest: m.NvrBindRequest(dev_id=dev_id, channel_no=0, ipcam_dev_id=DEV_ID,
                                           ipcam_local_ip="192.168.1.64", onvif_port=80,
                                           onvif_account="admin", onvif_password="x"),
        m.NvrModifyBindingRequest: m.NvrModifyBindingRequest(dev_id=dev_id, ipcam_dev_id=DEV_ID,
                                                             ipcam_local_ip="192.168.1.65", onvif_port=8080),
        m.NvrUnbindRequest: m.NvrUnbindRequest(dev_id=dev_id, channel_no=0),
        m.NvrQueryBindingRequest: m.NvrQueryBindingRequest(dev_id=dev_id),
        m.RecordSearchRequest: m.RecordSearchRequest(dev_id=dev_id, channel_no=0, start_time="202611020800",
                                                     end_time="202611020900", page_no=1),
        m.RecordDeleteRequest: m.RecordDeleteRequest(dev_id=dev_id, channel_no=0,
                                                     file_name=f"{dev_id}_0_20261102080000.ts"),
        m.PlaybackVerifyRequest: m.PlaybackVerifyRequest(dev_id=dev_id, channel_no=0, file_name="x.ts",
                                                         hash_token="abc"),
        m.AddPicturePolicyRequest: m.AddPicturePolicyRequest(dev_id=dev_id, channel_no=0, store_type=1,
                                                             day_policy=(m.PicturePolicy(
                                                                 interval=60, start_time="09:00",
                                                                 end_time="18:00"),)),
        m.GetPicturePolicyRequest: m.GetPicturePolicyRequest(dev_id=dev_id, channel_no=0, store_type=1),
        m.DeletePicturePolicyRequest: m.DeletePicturePolicyRequest(dev_id=dev_id, channel_no=0, policy_id=1),
        m.SetFullDayRecordRequest: m.SetFullDayRecordRequest(dev_id=dev_id, channel_no=0, record_full=1),
        m.GetFullDayRecordRequest: m.GetFullDayRecordRequest(dev_id=dev_id, channel_no=0),
        m.SetLoopRecordRequest: m.SetLoopRecordRequest(dev_id=dev_id, record_loop=0),
        m.GetLoopRecordRequest: m.GetLoopRecordRequest(dev_id=dev_id),
    }


PLATFORM_COMMANDS = [cls for cmd, cls in sorted(m.REQUESTS.items()) if 0x60 <= cmd <= 0x7B]
NVR_COMMANDS = {m.NvrBindRequest, m.NvrModifyBindingRequest, m.NvrUnbindRequest, m.NvrQueryBindingRequest}
IPC_COMMANDS = {m.SetVideoParamsRequest, m.GetVideoParamsRequest, m.QueryWifiRequest, m.SetWifiRequest,
                m.PtzRequest, m.SetCloudAccountRequest, m.GetCloudAccountRequest, m.AddPicturePolicyRequest,
                m.GetPicturePolicyRequest, m.DeletePicturePolicyRequest}


class _Base(SynchronousTestCase):
    def ask(self, state: CameraState, request: m.Message) -> Any:
        """Send ``request`` over the wire form, answer it, and check the answer's contract."""
        wire_request = m.parse(request.to_xml())  # the codec strips padding, so not always equal
        self.assertIsInstance(wire_request, type(request))
        response: Any = answer(state, wire_request)
        self.assertIsInstance(response, m.response_type(type(request)))
        self.assertEqual(response.dev_id, state.dev_id)
        parsed = m.parse(response.to_xml())
        self.assertEqual(parsed, response)
        return parsed

    def ok(self, state: CameraState, request: m.Message) -> Any:
        response = self.ask(state, request)
        self.assertEqual(response.result, SimResult.OK, request)
        return response

    def refused(self, state: CameraState, request: m.Message, result: int | None = None) -> Any:
        response = self.ask(state, request)
        if result is None:
            self.assertNotEqual(response.result, SimResult.OK, request)
        else:
            self.assertEqual(response.result, result, request)
        return response


class EveryCommandTests(_Base):
    """The contract of :func:`answer` for each 60H-7BH request class."""

    def test_table_complete(self) -> None:
        """Every platform->device command has a handler and a sample; 74H is the device's."""
        self.assertEqual(len(PLATFORM_COMMANDS), 28)
        self.assertEqual(set(samples(DEV_ID)), set(PLATFORM_COMMANDS))
        self.assertEqual(set(PLATFORM_COMMANDS) - set(HANDLERS), {m.PlaybackVerifyRequest})

    def test_every_command_answered(self) -> None:
        """The right response type, our DevID, a valid wire form; success for valid requests."""
        for cls in PLATFORM_COMMANDS:
            state = nvr() if cls in NVR_COMMANDS else camera()
            if cls in (m.NvrModifyBindingRequest, m.NvrUnbindRequest):
                self.ok(state, samples(state.dev_id)[m.NvrBindRequest])
            if cls in (m.DeleteRecordPolicyRequest, m.DeletePicturePolicyRequest):
                add = m.AddRecordPolicyRequest if cls is m.DeleteRecordPolicyRequest else m.AddPicturePolicyRequest
                self.ok(state, samples(state.dev_id)[add])
            response = self.ask(state, samples(state.dev_id)[cls])
            expected = SimResult.OTHER if cls is m.PlaybackVerifyRequest else SimResult.OK
            self.assertEqual(response.result, expected, cls)

    def test_wrong_dev_id(self) -> None:
        """A command for another DevID is refused, answered with our own DevID."""
        for cls in PLATFORM_COMMANDS:
            state = nvr() if cls in NVR_COMMANDS else camera()
            response = self.refused(state, samples("81199999999")[cls])
            if cls is not m.PlaybackVerifyRequest:
                self.assertEqual(response.result, SimResult.WRONG_DEVICE, cls)

    def test_dev_id_whitespace_tolerated(self) -> None:
        """Vendors pad values (``<DevID> 811…</ DevID>``): the DevID compares stripped."""
        response: Any = answer(camera(), m.RebootRequest(dev_id=f" {DEV_ID} "))
        self.assertEqual((response.result, response.dev_id), (0, DEV_ID))

    def test_nvr_commands_on_ipc(self) -> None:
        """§7.5.18-21 are for NVRs: an IPC answers with an error Result."""
        for cls in NVR_COMMANDS:
            self.refused(camera(), samples(DEV_ID)[cls], SimResult.NOT_SUPPORTED)

    def test_ipc_commands_on_nvr(self) -> None:
        """The "(IPC)" sections are refused by an NVR."""
        for cls in IPC_COMMANDS:
            self.refused(nvr(), samples(NVR_ID)[cls], SimResult.NOT_SUPPORTED)

    def test_device_initiated_request(self) -> None:
        """A request the device itself sends (login) is answered Result 255, not an exception."""
        response: Any = answer(camera(), m.LoginRequest(dev_id=DEV_ID))
        self.assertIsInstance(response, m.LoginResponse)
        self.assertEqual((response.result, response.dev_id), (255, DEV_ID))

    def test_handler_failure_is_255(self) -> None:
        """A bug in the simulator still gives the platform an answer."""
        state = camera()
        state.hotspots = None  # type: ignore[assignment]
        self.assertEqual(self.ask(state, m.QueryWifiRequest(dev_id=DEV_ID)).result, 255)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_wrong_channel(self) -> None:
        """Every per-channel command refuses a ChannelNo the device does not have."""
        request: Any
        for cls, request in samples(DEV_ID).items():
            if "channel_no" not in attrs.fields_dict(cls) or cls is m.PlaybackVerifyRequest:
                continue
            state = nvr() if cls in NVR_COMMANDS else camera()
            bad = attrs.evolve(request, dev_id=state.dev_id, channel_no=state.channel_num)
            self.refused(state, bad, SimResult.NO_SUCH_CHANNEL)


class StateTests(_Base):
    def test_for_device(self) -> None:
        """ManufacturerNo is the DevID's first three digits (§7.2); the model follows."""
        state = camera()
        self.assertEqual((state.manufacturer_no, state.model), ("811", "DS-2CD3T25-I3"))
        self.assertEqual((state.dev_type, state.channel_num, state.upnp_ip), (1, 1, "0.0.0.0"))
        box = nvr()
        self.assertEqual((box.manufacturer_no, box.model, box.channel_num), ("812", "NVR2108HS-S2", 4))
        self.assertEqual(CameraState.for_device("99912345678", "k", channel_num=2).model, "GE-SIM-IPC")
        self.assertEqual(CameraState.for_device("99912345678", "k", channel_num=2).channel_num, 2)

    def test_ability_report(self) -> None:
        """32H lists every encodable (stream, size) and, for an IPC, its ONVIF access."""
        report = m.parse(camera().ability_report().to_xml())
        assert isinstance(report, m.AbilityUpRequest)
        self.assertEqual((report.dev_id, report.channel_num, report.ptz_flag), (DEV_ID, 1, 1))
        self.assertIn(m.VideoAbility(stream_type=1, frame_size=m.FrameSize.P720), report.video)
        self.assertIn(m.VideoAbility(stream_type=2, frame_size=m.FrameSize.CIF), report.video)
        self.assertEqual({v.stream_type for v in report.video}, {1, 2})
        assert report.onvif is not None
        self.assertEqual((report.onvif.port, report.onvif.account), (80, "admin"))
        box = m.parse(nvr().ability_report().to_xml())
        assert isinstance(box, m.AbilityUpRequest)
        self.assertEqual((box.channel_num, box.ptz_flag, box.video, box.onvif), (4, 0, (), None))


class VideoTests(_Base):
    def test_defaults(self) -> None:
        """Main 720P, sub CIF."""
        main = self.ok(camera(), m.GetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=1))
        sub = self.ok(camera(), m.GetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=2))
        self.assertEqual((main.frame_size, sub.frame_size), (m.FrameSize.P720, m.FrameSize.CIF))
        self.assertEqual((main.frame_rate, main.rate_type, main.bit_rate, main.audio_input), (25, 2, 8, 1))

    def test_set_then_get(self) -> None:
        """Set fields change; absent ones stay; the other stream is untouched."""
        state = camera()
        self.ok(state, m.SetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=1, frame_size=3,
                                               frame_rate=12, rate_type=1, bit_rate=6))
        main = self.ok(state, m.GetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=1))
        self.assertEqual((main.frame_size, main.frame_rate, main.rate_type, main.bit_rate, main.audio_input),
                         (3, 12, 1, 6, 1))
        self.ok(state, m.SetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=1, audio_input=0))
        main = self.ok(state, m.GetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=1))
        self.assertEqual((main.frame_size, main.frame_rate, main.audio_input), (3, 12, 0))
        sub = self.ok(state, m.GetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=2))
        self.assertEqual((sub.frame_size, sub.frame_rate), (m.FrameSize.CIF, 15))

    def test_out_of_range_refused_and_unchanged(self) -> None:
        state = camera()
        base = m.SetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=1)
        for bad in (attrs.evolve(base, stream_type=3), attrs.evolve(base, frame_size=4),  # CIF not on main
                    attrs.evolve(base, frame_size=9), attrs.evolve(base, frame_rate=1),
                    attrs.evolve(base, frame_rate=26), attrs.evolve(base, rate_type=3),
                    attrs.evolve(base, bit_rate=0), attrs.evolve(base, bit_rate=14),
                    attrs.evolve(base, audio_input=2), attrs.evolve(base, bit_rate=5, frame_rate=30)):
            self.refused(state, bad, SimResult.BAD_VALUE)
        main = self.ok(state, m.GetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=1))
        self.assertEqual((main.frame_size, main.frame_rate, main.bit_rate), (1, 25, 8))
        self.refused(state, m.GetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=0),
                     SimResult.BAD_VALUE)

    def test_second_channel(self) -> None:
        state = camera(channel_num=2)
        self.ok(state, m.SetVideoParamsRequest(dev_id=DEV_ID, channel_no=1, stream_type=2, frame_size=5))
        one = self.ok(state, m.GetVideoParamsRequest(dev_id=DEV_ID, channel_no=1, stream_type=2))
        zero = self.ok(state, m.GetVideoParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=2))
        self.assertEqual((one.frame_size, zero.frame_size), (5, 4))


class WifiTests(_Base):
    def scan(self, state: CameraState) -> tuple[m.WifiHotspot, ...]:
        return self.ok(state, m.QueryWifiRequest(dev_id=DEV_ID)).wifi_ssid  # type: ignore[no-any-return]

    def test_query(self) -> None:
        """3..10 hotspots, strongest first, none in use before 63H."""
        hotspots = self.scan(camera())
        self.assertTrue(3 <= len(hotspots) <= 10)
        self.assertEqual([h.signal for h in hotspots], sorted((h.signal for h in hotspots), reverse=True))
        self.assertTrue(all(0 <= h.signal <= 100 and 0 <= h.security <= 5 for h in hotspots))
        self.assertEqual(sum(h.in_use for h in hotspots), 0)

    def test_set_then_query(self) -> None:
        state = camera()
        self.ok(state, m.SetWifiRequest(dev_id=DEV_ID, ssid="Store-Office", security=4, password="secret-pw"))
        in_use = [h.ssid for h in self.scan(state) if h.in_use]
        self.assertEqual(in_use, ["Store-Office"])
        self.assertEqual((state.wifi.ssid, state.wifi.password, state.wifi.joined),
                         ("Store-Office", "secret-pw", True))
        self.assertEqual(state.pending_reports[-1].exception_desc, "Wi-Fi connected to Store-Office")
        # Another network: the first is no longer in use.
        self.ok(state, m.SetWifiRequest(dev_id=DEV_ID, ssid="Store-Guest", security=0))
        self.assertEqual([h.ssid for h in self.scan(state) if h.in_use], ["Store-Guest"])

    def test_unknown_network_accepted_then_fails(self) -> None:
        """§7.5.9: answer at once; the failed join is reported later via 34H."""
        state = camera()
        self.ok(state, m.SetWifiRequest(dev_id=DEV_ID, ssid="Elsewhere", security=4, password="12345678"))
        self.assertEqual(sum(h.in_use for h in self.scan(state)), 0)
        self.assertIn("not found", state.pending_reports[-1].exception_desc)

    def test_bad_parameters(self) -> None:
        state = camera()
        for bad in (m.SetWifiRequest(dev_id=DEV_ID, ssid="", security=0),
                    m.SetWifiRequest(dev_id=DEV_ID, ssid="x" * 33, security=0),
                    m.SetWifiRequest(dev_id=DEV_ID, ssid="Store-Office", security=6, password="12345678"),
                    m.SetWifiRequest(dev_id=DEV_ID, ssid="Store-Office", security=4, password="short"),
                    m.SetWifiRequest(dev_id=DEV_ID, ssid="HUAWEI-B311-7E2D", security=1, password="1234")):
            self.refused(state, bad, SimResult.BAD_VALUE)
        self.assertEqual((state.wifi.ssid, state.pending_reports), ("", []))


class PtzTests(_Base):
    def test_moves_and_logs(self) -> None:
        state = camera()
        for direction in (m.PtzDirection.LEFT, m.PtzDirection.LEFT, m.PtzDirection.UP, m.PtzDirection.STOP):
            self.ok(state, m.PtzRequest(dev_id=DEV_ID, channel_no=0, ptz_direction=direction))
        position = state.ptz_position(0)
        self.assertEqual((position.pan, position.tilt, position.moving), (-10, 5, m.PtzDirection.STOP))
        self.assertEqual([e.direction for e in state.ptz_log], [3, 3, 1, 0])
        self.assertEqual(state.ptz_log[0].at, NOW)

    def test_limits_and_log_size(self) -> None:
        state = camera()
        for _ in range(100):
            self.ok(state, m.PtzRequest(dev_id=DEV_ID, channel_no=0, ptz_direction=m.PtzDirection.RIGHT))
        self.assertEqual(state.ptz_position(0).pan, 170)
        self.assertEqual(len(state.ptz_log), 20)

    def test_refused(self) -> None:
        self.refused(camera(), m.PtzRequest(dev_id=DEV_ID, channel_no=0, ptz_direction=5), SimResult.BAD_VALUE)
        self.refused(camera(ptz_flag=False), m.PtzRequest(dev_id=DEV_ID, channel_no=0, ptz_direction=1),
                     SimResult.NOT_SUPPORTED)


class CloudAccountTests(_Base):
    def test_set_then_get(self) -> None:
        state = camera()
        empty = self.ok(state, m.GetCloudAccountRequest(dev_id=DEV_ID))
        self.assertEqual((empty.url, empty.account, empty.password), ("", "", ""))
        self.ok(state, m.SetCloudAccountRequest(dev_id=DEV_ID, url="https://cloud.example/auth",
                                                account="shop42", password="s3cret"))
        got = self.ok(state, m.GetCloudAccountRequest(dev_id=DEV_ID))
        self.assertEqual((got.url, got.account, got.password), ("https://cloud.example/auth", "shop42", "s3cret"))

    def test_refused(self) -> None:
        state = camera()
        self.refused(state, m.SetCloudAccountRequest(dev_id=DEV_ID, url="ftp://x", account="a"),
                     SimResult.BAD_VALUE)
        self.refused(state, m.SetCloudAccountRequest(dev_id=DEV_ID, account="a"), SimResult.BAD_VALUE)
        self.refused(camera(e_store_flag=False), m.GetCloudAccountRequest(dev_id=DEV_ID), SimResult.NOT_SUPPORTED)


def window(week: int, start: str, end: str, store_type: int = 0, stream_type: int = 1) -> m.RecordPolicy:
    return m.RecordPolicy(store_type=store_type, stream_type=stream_type, week=week, start_time=start,
                          end_time=end)


class RecordPolicyTests(_Base):
    def add(self, state: CameraState, *policies: m.RecordPolicy, channel_no: int = 0) -> Any:
        return self.ask(state, m.AddRecordPolicyRequest(dev_id=state.dev_id, channel_no=channel_no,
                                                        week_policy=policies))

    def query(self, state: CameraState, channel_no: int = 0) -> tuple[m.RecordPolicyEntry, ...]:
        response = self.ok(state, m.GetRecordPolicyRequest(dev_id=state.dev_id, channel_no=channel_no))
        return response.week_policy  # type: ignore[no-any-return]

    def test_add_query_delete(self) -> None:
        state = camera()
        self.assertEqual(self.add(state, window(1, "08:00", "12:00"), window(1, "13:00", "18:00", 1, 2),
                                  window(7, "00:00", "24:00")).result, 0)
        entries = self.query(state)
        self.assertEqual([(e.week, e.start_time, e.end_time, e.store_type, e.stream_type) for e in entries],
                         [(1, "08:00", "12:00", 0, 1), (1, "13:00", "18:00", 1, 2), (7, "00:00", "24:00", 0, 1)])
        self.assertEqual(len({e.policy_id for e in entries}), 3)
        self.ok(state, m.DeleteRecordPolicyRequest(dev_id=DEV_ID, channel_no=0, policy_id=entries[1].policy_id))
        self.assertEqual([e.policy_id for e in self.query(state)], [entries[0].policy_id, entries[2].policy_id])
        self.refused(state, m.DeleteRecordPolicyRequest(dev_id=DEV_ID, channel_no=0,
                                                        policy_id=entries[1].policy_id), SimResult.NOT_FOUND)

    def test_ids_unique_across_channels(self) -> None:
        """§7.5.14: PolicyID is unique within the device, not the channel."""
        state = camera(channel_num=2)
        self.add(state, window(1, "08:00", "09:00"))
        self.add(state, window(1, "08:00", "09:00"), channel_no=1)
        ids = [e.policy_id for e in self.query(state)] + [e.policy_id for e in self.query(state, 1)]
        self.assertEqual(len(set(ids)), 2)
        self.refused(state, m.DeleteRecordPolicyRequest(dev_id=DEV_ID, channel_no=1, policy_id=ids[0]),
                     SimResult.NOT_FOUND)

    def test_at_most_four_a_day(self) -> None:
        state = camera()
        four = [window(3, f"{h:02d}:00", f"{h:02d}:30") for h in (1, 2, 3, 4)]
        self.assertEqual(self.add(state, *four).result, 0)
        self.assertEqual(self.add(state, window(3, "05:00", "06:00")).result, SimResult.REFUSED)
        self.assertEqual(self.add(state, window(4, "05:00", "06:00")).result, 0)  # another day is free
        self.assertEqual(len(self.query(state)), 5)
        fresh = camera()
        self.assertEqual(self.add(fresh, *four, window(3, "05:00", "06:00")).result, SimResult.REFUSED)
        self.assertEqual(self.query(fresh), ())

    def test_no_overlap(self) -> None:
        state = camera()
        self.add(state, window(2, "08:00", "12:00"))
        for start, end in (("11:59", "13:00"), ("07:00", "08:01"), ("09:00", "10:00"), ("00:00", "24:00")):
            self.assertEqual(self.add(state, window(2, start, end)).result, SimResult.REFUSED, (start, end))
        self.assertEqual(self.add(state, window(2, "12:00", "13:00"), window(2, "06:00", "08:00")).result, 0)
        self.assertEqual(self.add(state, window(5, "06:00", "09:00"), window(5, "08:00", "10:00")).result,
                         SimResult.REFUSED)  # within one request too
        self.assertEqual(len(self.query(state)), 3)

    def test_bad_values(self) -> None:
        state = camera()
        for bad in (window(0, "08:00", "09:00"), window(8, "08:00", "09:00"), window(1, "8h", "09:00"),
                    window(1, "09:00", "08:00"), window(1, "09:00", "09:00"), window(1, "24:00", "24:00"),
                    window(1, "08:60", "09:00"), window(1, "08:00", "09:00", store_type=2),
                    window(1, "08:00", "09:00", stream_type=3)):
            self.assertEqual(self.add(state, bad).result, SimResult.BAD_VALUE, bad)
        self.assertEqual(self.query(state), ())

    def test_missing_storage(self) -> None:
        state = camera(e_store_flag=False)
        self.assertEqual(self.add(state, window(1, "08:00", "09:00", store_type=1)).result,
                         SimResult.NOT_SUPPORTED)

    def test_nvr_main_stream_only(self) -> None:
        box = nvr()
        self.assertEqual(self.add(box, window(1, "08:00", "09:00", stream_type=2)).result, SimResult.BAD_VALUE)
        self.assertEqual(self.add(box, window(1, "08:00", "09:00"), channel_no=3).result, 0)


class RecordParamsTests(_Base):
    def test_set_then_get(self) -> None:
        state = camera()
        got = self.ok(state, m.GetRecordParamsRequest(dev_id=DEV_ID, channel_no=0))
        self.assertEqual((got.stream_type, got.store_type, got.audio_input, got.file_duration), (1, 0, 1, 5))
        self.ok(state, m.SetRecordParamsRequest(dev_id=DEV_ID, channel_no=0, stream_type=2, store_type=1,
                                                file_duration=10))
        got = self.ok(state, m.GetRecordParamsRequest(dev_id=DEV_ID, channel_no=0))
        self.assertEqual((got.stream_type, got.store_type, got.audio_input, got.file_duration), (2, 1, 1, 10))

    def test_refused(self) -> None:
        """The 6AH codes: 1 no such channel, 2 value not supported."""
        state = camera()
        base = m.SetRecordParamsRequest(dev_id=DEV_ID, channel_no=0)
        for bad in (attrs.evolve(base, stream_type=3), attrs.evolve(base, store_type=2),
                    attrs.evolve(base, audio_input=2), attrs.evolve(base, file_duration=0),
                    attrs.evolve(base, file_duration=61)):
            self.refused(state, bad, 2)
        self.refused(camera(e_store_flag=False), attrs.evolve(base, store_type=1), 2)
        self.refused(state, attrs.evolve(base, channel_no=1), 1)


class DeviceControlTests(_Base):
    def test_reboot(self) -> None:
        state = camera()
        self.ok(state, m.RebootRequest(dev_id=DEV_ID))
        self.ok(state, m.RebootRequest(dev_id=DEV_ID))
        self.assertEqual(state.reboot_requested, 2)

    def test_upgrade(self) -> None:
        state = camera()
        self.ok(state, samples(DEV_ID)[m.UpgradeRequest])
        self.assertEqual((state.upgrade_version, state.upgrade_url), ("V1.0.1", "ftp://fw@10.0.0.9:21/fw.bin"))
        base = samples(DEV_ID)[m.UpgradeRequest]
        for bad in (attrs.evolve(base, new_dev_ver=""), attrs.evolve(base, ftp_ip=""),
                    attrs.evolve(base, ftp_port=0), attrs.evolve(base, ftp_file_name=" ")):
            self.refused(state, bad, SimResult.BAD_VALUE)


class FlagTests(_Base):
    def test_full_day(self) -> None:
        state = camera(channel_num=2)
        self.assertEqual(self.ok(state, m.GetFullDayRecordRequest(dev_id=DEV_ID, channel_no=1)).record_full, 0)
        self.ok(state, m.SetFullDayRecordRequest(dev_id=DEV_ID, channel_no=1, record_full=1))
        self.assertEqual(self.ok(state, m.GetFullDayRecordRequest(dev_id=DEV_ID, channel_no=1)).record_full, 1)
        self.assertEqual(self.ok(state, m.GetFullDayRecordRequest(dev_id=DEV_ID, channel_no=0)).record_full, 0)
        self.ok(state, m.SetFullDayRecordRequest(dev_id=DEV_ID, channel_no=1, record_full=0))
        self.assertEqual(self.ok(state, m.GetFullDayRecordRequest(dev_id=DEV_ID, channel_no=1)).record_full, 0)
        self.refused(state, m.SetFullDayRecordRequest(dev_id=DEV_ID, channel_no=1, record_full=2),
                     SimResult.BAD_VALUE)

    def test_loop(self) -> None:
        state = camera()
        self.assertEqual(self.ok(state, m.GetLoopRecordRequest(dev_id=DEV_ID)).record_loop, 1)
        self.ok(state, m.SetLoopRecordRequest(dev_id=DEV_ID, record_loop=0))
        self.assertEqual(self.ok(state, m.GetLoopRecordRequest(dev_id=DEV_ID)).record_loop, 0)
        self.ok(state, m.SetLoopRecordRequest(dev_id=DEV_ID, record_loop=1))
        self.assertEqual(self.ok(state, m.GetLoopRecordRequest(dev_id=DEV_ID)).record_loop, 1)
        self.refused(state, m.SetLoopRecordRequest(dev_id=DEV_ID, record_loop=7), SimResult.BAD_VALUE)


class NvrBindingTests(_Base):
    def bind(self, state: CameraState, channel_no: int, ipcam: str, ip: str = "192.168.1.64") -> Any:
        return self.ask(state, m.NvrBindRequest(dev_id=NVR_ID, channel_no=channel_no, ipcam_dev_id=ipcam,
                                                ipcam_local_ip=ip, onvif_port=80, onvif_account="admin",
                                                onvif_password="pw"))

    def bound(self, state: CameraState) -> list[tuple[int, str]]:
        response = self.ok(state, m.NvrQueryBindingRequest(dev_id=NVR_ID))
        return [(c.channel_no, c.ipcam_dev_id) for c in response.channel]

    def test_bind_query_modify_unbind(self) -> None:
        box = nvr()
        self.assertEqual(self.bound(box), [])
        self.assertEqual(self.bind(box, 2, "81100000011").result, 0)
        self.assertEqual(self.bind(box, 0, "81100000010").result, 0)
        self.assertEqual(self.bound(box), [(0, "81100000010"), (2, "81100000011")])
        self.ok(box, m.NvrModifyBindingRequest(dev_id=NVR_ID, ipcam_dev_id="81100000011",
                                               ipcam_local_ip="192.168.1.99", onvif_port=8899))
        self.assertEqual((box.nvr_bindings[2].ipcam_local_ip, box.nvr_bindings[2].onvif_port),
                         ("192.168.1.99", 8899))
        # §7.5.19: an IPC on no channel is ignored.
        self.ok(box, m.NvrModifyBindingRequest(dev_id=NVR_ID, ipcam_dev_id="81100000099",
                                               ipcam_local_ip="192.168.1.98", onvif_port=80))
        self.ok(box, m.NvrUnbindRequest(dev_id=NVR_ID, channel_no=2))
        self.assertEqual(self.bound(box), [(0, "81100000010")])
        self.refused(box, m.NvrUnbindRequest(dev_id=NVR_ID, channel_no=2), SimResult.NOT_FOUND)

    def test_conflicts(self) -> None:
        box = nvr()
        self.bind(box, 0, "81100000010")
        self.assertEqual(self.bind(box, 0, "81100000010", "192.168.1.70").result, 0)  # same IPC: update
        self.assertEqual(self.bind(box, 0, "81100000011").result, SimResult.REFUSED)
        self.assertEqual(self.bind(box, 1, "81100000010").result, SimResult.REFUSED)
        self.assertEqual(self.bind(box, 1, "81100000012", "not-an-ip").result, SimResult.BAD_VALUE)
        self.assertEqual(self.bind(box, 1, "").result, SimResult.BAD_VALUE)
        self.assertEqual(self.bound(box), [(0, "81100000010")])

    def test_unbind_drops_policies(self) -> None:
        """§7.5.20: unbinding deletes the channel's recording policies."""
        box = nvr()
        self.bind(box, 1, "81100000010")
        self.ok(box, m.AddRecordPolicyRequest(dev_id=NVR_ID, channel_no=1, week_policy=(window(1, "08:00", "09:00"),)))
        self.ok(box, m.NvrUnbindRequest(dev_id=NVR_ID, channel_no=1))
        self.assertEqual(self.ok(box, m.GetRecordPolicyRequest(dev_id=NVR_ID, channel_no=1)).week_policy, ())


DAY_START, DAY_END = "202611011000", "202611021000"


class RecordSearchTests(_Base):
    def search(self, state: CameraState, page_no: int, start: str = DAY_START, end: str = DAY_END,
               channel_no: int = 0) -> Any:
        return self.ask(state, m.RecordSearchRequest(dev_id=state.dev_id, channel_no=channel_no, start_time=start,
                                                     end_time=end, page_no=page_no))

    def test_paging_over_the_day(self) -> None:
        """288 five-minute files: 28 full pages of 10, then 8; past the end, none."""
        state = camera()
        first = self.search(state, 1)
        self.assertEqual((first.result, first.total_record_num, len(first.file)), (0, 288, 10))
        self.assertEqual(first.file[0], m.RecordFile(
            file_name=f"{DEV_ID}_0_20261101100000.ts", file_size=first.file[0].file_size,
            start_time="202611011000", end_time="202611011005"))
        last = self.search(state, 29)
        self.assertEqual((last.total_record_num, len(last.file)), (288, 8))
        self.assertEqual(last.file[-1].file_name, f"{DEV_ID}_0_20261102095500.ts")
        self.assertEqual(last.file[-1].end_time, "202611021000")
        beyond = self.search(state, 30)
        self.assertEqual((beyond.result, beyond.total_record_num, beyond.file), (0, 288, ()))
        names = [f.file_name for page in range(1, 30) for f in self.search(state, page).file]
        self.assertEqual(len(set(names)), 288)
        self.assertEqual(names, sorted(names))

    def test_plausible_and_deterministic(self) -> None:
        """Sizes follow the 1 Mbit/s main stream (±15 %); the same on every run."""
        files = self.search(camera(), 1).file
        nominal = 1024 * 1000 // 8 * 300
        self.assertTrue(all(0.85 * nominal <= f.file_size <= 1.15 * nominal for f in files))
        self.assertEqual(files, self.search(camera(), 1).file)
        self.assertGreater(len({f.file_size for f in files}), 1)

    def test_window(self) -> None:
        """One hour is twelve files; a partial page holds the remainder."""
        state = camera()
        page1 = self.search(state, 1, "202611020800", "202611020900")
        page2 = self.search(state, 2, "202611020800", "202611020900")
        self.assertEqual((page1.total_record_num, len(page1.file), len(page2.file)), (12, 10, 2))
        self.assertEqual(page2.file[-1].start_time, "202611020855")
        self.assertEqual(self.search(state, 1, "202611030000", "202611032359").total_record_num, 0)

    def test_bad_requests(self) -> None:
        state = camera()
        for page, start, end in ((0, DAY_START, DAY_END), (1, "2026110110", DAY_END),
                                 (1, DAY_START, "20261302x000"), (1, DAY_END, DAY_START),
                                 (1, "202613011000", DAY_END)):
            self.assertEqual(self.search(state, page, start, end).result, SimResult.BAD_VALUE, (page, start, end))

    def test_delete(self) -> None:
        """73H codes: 0 deleted, 1 no such file, 2 in use; the count follows."""
        state = camera()
        name = self.search(state, 1).file[3].file_name
        self.ok(state, m.RecordDeleteRequest(dev_id=DEV_ID, channel_no=0, file_name=name))
        first = self.search(state, 1)
        self.assertEqual(first.total_record_num, 287)
        self.assertNotIn(name, [f.file_name for f in first.file])
        self.refused(state, m.RecordDeleteRequest(dev_id=DEV_ID, channel_no=0, file_name=name), 1)
        busy = first.file[0].file_name
        state.files_in_use.add(busy)
        self.refused(state, m.RecordDeleteRequest(dev_id=DEV_ID, channel_no=0, file_name=busy), 2)
        self.assertEqual(self.search(state, 29).total_record_num, 287)
        self.assertEqual(len(self.search(state, 29).file), 7)


def shot(start: str, end: str | None = None, interval: int = 0) -> m.PicturePolicy:
    return m.PicturePolicy(interval=interval, start_time=start, end_time=end or start)


class PicturePolicyTests(_Base):
    def add(self, state: CameraState, store_type: int, *policies: m.PicturePolicy) -> int:
        response = self.ask(state, m.AddPicturePolicyRequest(dev_id=DEV_ID, channel_no=0, store_type=store_type,
                                                             day_policy=policies))
        return response.result  # type: ignore[no-any-return]

    def query(self, state: CameraState, store_type: int) -> tuple[m.PicturePolicyEntry, ...]:
        response = self.ok(state, m.GetPicturePolicyRequest(dev_id=DEV_ID, channel_no=0, store_type=store_type))
        return response.day_policy  # type: ignore[no-any-return]

    def test_add_query_delete(self) -> None:
        state = camera()
        self.assertEqual(self.add(state, 0, shot("09:30"), shot("18:00")), 0)  # FTP: timed snapshots
        self.assertEqual(self.add(state, 1, shot("08:00", "12:00", 60)), 0)  # cloud: every minute
        ftp, cloud = self.query(state, 0), self.query(state, 1)
        self.assertEqual([(p.start_time, p.end_time, p.interval) for p in ftp], [("09:30", "09:30", 0),
                                                                                ("18:00", "18:00", 0)])
        self.assertEqual([(p.start_time, p.end_time, p.interval) for p in cloud], [("08:00", "12:00", 60)])
        self.assertEqual(len({p.policy_id for p in ftp + cloud}), 3)
        self.ok(state, m.DeletePicturePolicyRequest(dev_id=DEV_ID, channel_no=0, policy_id=ftp[0].policy_id))
        self.assertEqual([p.policy_id for p in self.query(state, 0)], [ftp[1].policy_id])
        self.refused(state, m.DeletePicturePolicyRequest(dev_id=DEV_ID, channel_no=0, policy_id=ftp[0].policy_id),
                     SimResult.NOT_FOUND)

    def test_rules(self) -> None:
        state = camera()
        self.assertEqual(self.add(state, 1, shot("08:00", "12:00", 60)), 0)
        self.assertEqual(self.add(state, 1, shot("11:00", "13:00", 30)), SimResult.REFUSED)
        self.assertEqual(self.add(state, 0, shot("11:00", "13:00", 30)), 0)  # the other store type is apart
        self.assertEqual(self.add(state, 0, shot("09:00"), shot("09:00")), SimResult.REFUSED)
        self.assertEqual(self.add(state, 0, *[shot(f"{h:02d}:00") for h in range(8)]), SimResult.REFUSED)
        for bad in (shot("09:00", "10:00"), shot("10:00", "09:00", 5), shot("25:00"),
                    shot("09:00", "10:00", 86401)):
            self.assertEqual(self.add(state, 0, bad), SimResult.BAD_VALUE, bad)
        self.assertEqual(self.add(state, 2, shot("09:00")), SimResult.BAD_VALUE)
        self.assertEqual(self.add(camera(e_store_flag=False), 1, shot("09:00")), SimResult.NOT_SUPPORTED)
        self.refused(state, m.GetPicturePolicyRequest(dev_id=DEV_ID, channel_no=0, store_type=2),
                     SimResult.BAD_VALUE)
        self.assertEqual(len(self.query(state, 0)) + len(self.query(state, 1)), 2)
