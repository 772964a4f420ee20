"""The client API of §8 (province) and §9.1 (group): what each SOAP operation does.

SOAP-free: handlers take the decoded request values and return the response values
(:mod:`globaleye.soap` does the XML).  Everything that touches a camera goes through
``gateway.command`` with the gateway's command timeout, and an offline, silent or
disconnected camera becomes a Result code (4 where §8 defines "device offline", 3
"device does not exist" otherwise) instead of a hanging request.  A camera that
answers with a non-zero Result is reported as a ``soap:Server`` Fault
``DeviceRefused``: §8 has no code for it, and inventing one would break strict
clients.  Every call is audit-logged with the account and the peer.

The province talks to its group platform (§6) through an optional
:class:`~globaleye.groupclient.GroupClient`: sign-up and closure are notices the
user does not wait for (§6.2, §6.4), and a camera the province does not know is
claimed from the group while the user waits (§6.5, §6.6).  Without a group, or
with the group unreachable, everything else keeps working.

Beyond §8 come the extensions the web client of §4 needs (recording windows and
flags, record search and playback, alarms, sharing): the platform checks what it
can (§7.5.13's four windows a day, no overlap) *before* the camera sees a request.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
from twisted.logger import Logger

from globaleye.accounts import EXPIRED, MOBILE, OK, AccountService, LoginSession
from globaleye.clock import parse_protocol_time, protocol_time
from globaleye.gateway.service import Gateway
from globaleye.groupclient import GroupClient
from globaleye.messaging import CommandError
from globaleye.protocol import messages as m
from globaleye.soap.envelope import SoapFault, client_fault
from globaleye.store import (
    BIND_ALREADY_MINE,
    BIND_LIMIT,
    BIND_OK,
    BIND_TAKEN,
    SHARE_NOT_OWNER,
    SHARE_OK,
    Binding,
    Device,
    Store,
)
from globaleye.urls import camera_endpoints, realplay_url

NO_DEVICE, OFFLINE, OTHER = 3, 4, 255
RULES = NO_SUCH = 5  # extensions: refused by the platform's rules / no such policy, share or account
#: §7.5.13: "一天最多可设置 4 条策略": at most 4 recording windows per channel and weekday.
MAX_WINDOWS_A_DAY = 4
PAGE_SIZE = 10
FILE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
HHMM = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
ADD_UNKNOWN, ADD_WRONG_KEY, ADD_LIMIT = 3, 4, 5
DEV_ID = re.compile(r"^[0-9]{11}$")

#: §8 FrameSize (1=720P, 2=D1, 3=CIF) -> device protocol FrameSize (§7.5.6 table).
CLIENT_TO_DEVICE_FRAME = {1: m.FrameSize.P720, 2: m.FrameSize.D1, 3: m.FrameSize.CIF}
#: Device FrameSize -> §8: VGA (640x480) and QVGA (320x240) have no §8 code and are shown as the
#: nearest §8 size, D1 (720x576) and CIF (352x288).
DEVICE_TO_CLIENT_FRAME: dict[int, int] = {m.FrameSize.P720: 1, m.FrameSize.VGA: 2, m.FrameSize.D1: 2, m.FrameSize.CIF: 3,
                          m.FrameSize.QVGA: 3}

Values = dict[str, Any]


@attrs.frozen
class ClientApiSettings:
    stun_host: str = "127.0.0.1"
    stun_port: int = 3478
    #: model (or "*") -> (version, ftp://user:password@host:port/file)
    firmware: Mapping[str, tuple[str, str]] = attrs.Factory(dict)


class DeviceRefused(SoapFault):
    pass


class McuApi:
    """§8.1–§8.17 (and ChangePassword) over an :class:`AccountService`, the store and the gateway."""

    log = Logger()

    def __init__(self, accounts: AccountService, store: Store, gateway: Gateway,
                 settings: ClientApiSettings | None = None, group: GroupClient | None = None) -> None:
        self.accounts = accounts
        self.store = store
        self.gateway = gateway
        self.settings = settings or ClientApiSettings()
        self.group = group
        self.handlers: dict[str, Callable[[Values, str], Awaitable[Values]]] = {
            "GetSmsCode": self.get_sms_code, "RegisterUser": self.register_user, "Login": self.login,
            "Logout": self.logout, "GetDeviceList": self._authed(self.device_list),
            "AddDevice": self._authed(self.add_device), "RemoveDevice": self._authed(self.remove_device),
            "CloseAccount": self._authed(self.close_account), "GetPlayUrl": self._authed(self.play_url),
            "PtzControl": self._authed(self.ptz), "GetVideoParams": self._authed(self.get_video),
            "SetVideoParams": self._authed(self.set_video), "QueryWifi": self._authed(self.query_wifi),
            "SetWifi": self._authed(self.set_wifi), "RebootDevice": self._authed(self.reboot),
            "GetFirmwareVersion": self._authed(self.firmware_version),
            "UpgradeDevice": self._authed(self.upgrade), "ChangePassword": self._authed(self.change_password),
            "AddRecordPolicy": self._authed(self.add_record_policy),
            "GetRecordPolicy": self._authed(self.get_record_policy),
            "DeleteRecordPolicy": self._authed(self.delete_record_policy),
            "SetFullDayRecord": self._authed(self.set_full_day), "GetFullDayRecord": self._authed(self.get_full_day),
            "SetLoopRecord": self._authed(self.set_loop), "GetLoopRecord": self._authed(self.get_loop),
            "SearchRecords": self._authed(self.search_records), "GetPlaybackUrl": self._authed(self.playback_url),
            "SearchAlarms": self._authed(self.search_alarms), "ShareDevice": self._authed(self.share),
            "UnshareDevice": self._authed(self.unshare), "GetShareList": self._authed(self.share_list),
            "GetStreamStatus": self._authed(self.stream_status),
        }
        #: The RTSP proxy's view of one device's streams (set by the platform when it runs the
        #: ``rtsp`` role in this process): dicts with the GetStreamStatus Stream fields.
        self.streams: Callable[[str], list[Values]] | None = None

    async def handle(self, operation: str, values: Values, peer: str) -> Values:
        return await self.handlers[operation](values, peer)

    # Without a session ---------------------------------------------------------------------

    async def get_sms_code(self, values: Values, peer: str) -> Values:
        return {"Result": await self.accounts.request_sms_code(values["MobileTel"], values["Type"], peer)}

    async def register_user(self, values: Values, peer: str) -> Values:
        result = await self.accounts.register(values["MobileTel"], values["Password"], values["SmsKey"], peer)
        if result == OK and self.group is not None:  # §6.2, sent in the background
            await self.group.notify("OpenService", {"MobileTel": values["MobileTel"],
                                                    "IpcamNum": self.accounts.settings.max_devices})
        return {"Result": result}

    async def login(self, values: Values, peer: str) -> Values:
        outcome = await self.accounts.login(values["Account"], values["Password"], values["Version"], peer)
        if outcome.session is None:
            return {"Result": outcome.result, "UpdateUrl": outcome.update_url or None}
        return {"Result": OK, "LoginSession": outcome.session.token,
                "DevNum": await self._dev_num(outcome.session.account),
                "Device": await self._devices(outcome.session.account)}

    async def _dev_num(self, account: str) -> int:
        """DevNum: the account's own (§6.3 ChangeService) or the configured default."""
        record = await self.store.get_account(account)
        if record is not None and record.dev_num is not None:
            return record.dev_num
        return self.accounts.settings.max_devices

    async def change_service(self, account: str, dev_num: int, peer: str = "operator") -> bool:
        """§6.3: the account may now own *dev_num* devices; the group is told (in the background)."""
        changed = await self.store.set_dev_num(account, dev_num)
        await self.accounts.audit("change-service", account, peer, OK if changed else 1, f"DevNum {dev_num}")
        if changed and self.group is not None:
            await self.group.notify("ChangeService", {"MobileTel": account, "IpcamNum": dev_num})
        return changed

    async def logout(self, values: Values, peer: str) -> Values:
        return {"Result": await self.accounts.logout(values["Account"], values["LoginSession"], peer)}

    def _authed(self, handler: Callable[[LoginSession, Values, str], Awaitable[Values]]
                ) -> Callable[[Values, str], Awaitable[Values]]:
        """Check Account + LoginSession first; without a live session the answer is always Result 2.

        Result 1 ("account does not exist") is never given to a caller without a session: it
        would make every operation an oracle for registered numbers.
        """
        action = handler.__name__.replace("_", "-")

        async def run(values: Values, peer: str) -> Values:
            session = self.accounts.authenticate(values["Account"], values["LoginSession"])
            if session is None:
                await self.accounts.audit(action, values["Account"], peer, EXPIRED, "no live session")
                return {"Result": EXPIRED}
            try:
                answer = await handler(session, values, peer)
            except SoapFault as fault:
                await self.accounts.audit(action, session.account, peer, -1, f"{fault} {fault.detail}".strip())
                raise
            detail = f"DevID {values['DevID']}" if "DevID" in values else ""
            await self.accounts.audit(action, session.account, peer, answer["Result"], detail)
            return answer

        return run

    # Accounts and bindings (§8.5–§8.8) -----------------------------------------------------------

    async def device_list(self, session: LoginSession, values: Values, peer: str) -> Values:
        return {"Result": OK, "Device": await self._devices(session.account)}

    async def _devices(self, account: str) -> list[Values]:
        entries: list[Values] = []
        for binding in await self.store.list_bindings(account):
            device = await self.store.get_device(binding.dev_id)
            ability = await self.store.get_ability(binding.dev_id)
            channels, ptz, videos = 1, 0, []
            if ability is not None:
                channels, ptz = max(1, ability.channel_num), 1 if ability.ptz_flag else 0
                videos = _client_videos(ability.xml)
            name = binding.name or (device.model if device is not None else "") or binding.dev_id
            for channel in range(channels):
                entries.append({
                    "DevID": binding.dev_id, "ChannelNo": channel,
                    "Name": name if channels == 1 else f"{name} #{channel + 1}",
                    "OnLine": 1 if self.gateway.is_online(binding.dev_id) else 0, "PtzFlag": ptz,
                    "ShareFlag": binding.share_flag, "Video": videos})
        return entries

    async def add_device(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        device = await self.store.get_device(dev_id) if DEV_ID.match(dev_id) else None
        if device is None and DEV_ID.match(dev_id) and self.group is not None:
            claimed = await self._claim(dev_id, values["DevKey"])
            if isinstance(claimed, int):
                return {"Result": claimed}
            device = claimed
        if device is None:
            return {"Result": ADD_UNKNOWN}
        if not _same(device.dev_key, values["DevKey"]):
            return {"Result": ADD_WRONG_KEY}
        outcome = await self.store.bind_device(
            Binding(session.account, dev_id, 0, device.model or dev_id, self.accounts.clock.seconds()),
            await self._dev_num(session.account))
        return {"Result": {BIND_OK: OK, BIND_ALREADY_MINE: OK, BIND_LIMIT: ADD_LIMIT, BIND_TAKEN: OTHER}.get(
            outcome, OTHER)}

    async def _claim(self, dev_id: str, dev_key: str) -> Device | int:
        """§6.5/§6.6 steps 6-7: ask the group for a camera we do not know; the device, or AddDevice's Result."""
        assert self.group is not None
        result, answer = await self.group.claim_device(dev_id, dev_key.strip())
        if result != 0:
            self.log.info("group refused the claim of {dev_id} (Result {result})", dev_id=dev_id, result=result)
            # 3 unknown to the group, 4 wrong key; anything else (another province has it, the group
            # is unreachable or refuses us) is "other error" for the user.
            return {3: ADD_UNKNOWN, 4: ADD_WRONG_KEY}.get(result, OTHER)
        device = Device(dev_id=dev_id, dev_key=dev_key.strip(), manufacturer_no=answer.get("ManufacturerNo") or "",
                        model=answer.get("Mode") or "", dev_type=answer.get("DevType") or 1, source="group",
                        created_at=self.accounts.clock.seconds())
        await self.store.enroll_device(device)
        return await self.store.get_device(dev_id) or device

    async def remove_device(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        binding = await self.store.get_binding(session.account, dev_id)
        device = await self.store.get_device(dev_id)
        if binding is None or binding.share_flag or device is None or not _same(device.dev_key, values["DevKey"]):
            return {"Result": NO_DEVICE}
        return {"Result": OK if await self.store.unbind_device(session.account, dev_id) else NO_DEVICE}

    async def close_account(self, session: LoginSession, values: Values, peer: str) -> Values:
        result = await self.accounts.close_account(session, peer)
        if result == OK and self.group is not None:  # §6.4, sent in the background
            await self.group.notify("CancelService", {"MobileTel": session.account})
        return {"Result": result}

    async def change_password(self, session: LoginSession, values: Values, peer: str) -> Values:
        return {"Result": await self.accounts.change_password(session, values["OldPassword"],
                                                              values["NewPassword"], peer)}

    # Cameras (§8.9–§8.17) ------------------------------------------------------------------------

    async def _binding(self, session: LoginSession, dev_id: str, channel_no: int | None = None,
                       own: bool = True) -> Binding | None:
        """The account's binding of *dev_id*, if it may use it (*own*: configure, not only view)."""
        binding = await self.store.get_binding(session.account, dev_id)
        if binding is None or (own and binding.share_flag):
            return None
        if channel_no is not None:
            ability = await self.store.get_ability(dev_id)
            channels = max(1, ability.channel_num) if ability is not None else 1
            if not 0 <= channel_no < channels:
                return None
        return binding

    async def _command(self, dev_id: str, request: m.Message) -> Any:
        """The device's answer, or None when it is offline, silent or gone; a refusal is a Fault."""
        try:
            response = await self.gateway.command(dev_id, request)
        except CommandError as e:
            self.log.info("client command {root} to {dev_id}: {error}", root=request.ROOT, dev_id=dev_id,
                          error=f"{type(e).__name__}: {e}")
            return None
        if response.result != 0:
            raise DeviceRefused("Server", f"the device refused <{request.ROOT}> with Result {response.result}",
                                f"DeviceRefused {response.result}")
        return response

    async def play_url(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel, stream = values["DevID"], values["ChannelNo"], values["StreamType"]
        _check(stream in (1, 2), "StreamType must be 1 (main) or 2 (sub)")
        if await self._binding(session, dev_id, channel, own=False) is None:
            return {"Result": NO_DEVICE}
        live = self.gateway.live.get(dev_id)
        if live is None:
            return {"Result": NO_DEVICE}  # offline: no URL could be played
        urls: Values = {}
        for name, endpoint in camera_endpoints(live.addresses).items():
            if endpoint is not None:
                # One token per URL: the client tries them in turn (§15), and a token is burnt by the
                # first verification, so a shared one would not survive a failed local attempt.
                token = await self.accounts.issue_token(session, dev_id, channel, stream)
                urls[name] = play_url(*endpoint, dev_id, channel, stream, token)
            else:
                urls[name] = ""
        return {"Result": OK, **urls, "StunIP": self.settings.stun_host, "StunPort": self.settings.stun_port}

    async def ptz(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel, direction = values["DevID"], values["ChannelNo"], values["PtzDirection"]
        _check(direction in m.PtzDirection.__members__.values(), "PtzDirection must be 0..4")
        if await self._binding(session, dev_id, channel, own=False) is None:
            return {"Result": NO_DEVICE}
        answer = await self._command(dev_id, m.PtzRequest(dev_id=dev_id, channel_no=channel, ptz_direction=direction))
        return {"Result": OK if answer is not None else OFFLINE}

    async def get_video(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel, stream = values["DevID"], values["ChannelNo"], values["StreamType"]
        _check(stream in (1, 2), "StreamType must be 1 (main) or 2 (sub)")
        if await self._binding(session, dev_id, channel) is None:
            return {"Result": NO_DEVICE}
        answer = await self._command(dev_id, m.GetVideoParamsRequest(dev_id=dev_id, channel_no=channel,
                                                                     stream_type=stream))
        if answer is None:
            return {"Result": NO_DEVICE}
        return {"Result": OK, "DevID": dev_id, "FrameSize": DEVICE_TO_CLIENT_FRAME.get(answer.frame_size, 0),
                "FrameRate": answer.frame_rate, "RateType": answer.rate_type, "BitRate": answer.bit_rate,
                "AudioInput": answer.audio_input}

    async def set_video(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel, stream = values["DevID"], values["ChannelNo"], values["StreamType"]
        _check(stream in (1, 2), "StreamType must be 1 (main) or 2 (sub)")
        size = values["FrameSize"]
        _check(size is None or size in CLIENT_TO_DEVICE_FRAME, "FrameSize must be 1 (720P), 2 (D1) or 3 (CIF)")
        _check(values["FrameRate"] is None or 2 <= values["FrameRate"] <= 25, "FrameRate must be 2..25")
        _check(values["RateType"] in (None, 1, 2), "RateType must be 1 (CBR) or 2 (VBR)")
        _check(values["BitRate"] is None or values["BitRate"] in m.BIT_RATES_KBPS, "BitRate must be 1..13")
        _check(values["AudioInput"] in (None, 0, 1), "AudioInput must be 0 or 1")
        if await self._binding(session, dev_id, channel) is None:
            return {"Result": NO_DEVICE}
        answer = await self._command(dev_id, m.SetVideoParamsRequest(
            dev_id=dev_id, channel_no=channel, stream_type=stream,
            frame_size=None if size is None else int(CLIENT_TO_DEVICE_FRAME[size]), frame_rate=values["FrameRate"],
            rate_type=values["RateType"], bit_rate=values["BitRate"], audio_input=values["AudioInput"]))
        return {"Result": OK if answer is not None else NO_DEVICE}

    async def query_wifi(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        if await self._binding(session, dev_id) is None:
            return {"Result": NO_DEVICE}
        answer = await self._command(dev_id, m.QueryWifiRequest(dev_id=dev_id))
        if answer is None:
            return {"Result": NO_DEVICE}
        hotspots = sorted(answer.wifi_ssid, key=lambda h: -h.signal)[:10]  # §8.13: the 10 strongest
        return {"Result": OK, "Wifi": [{"SSID": h.ssid, "Signal": h.signal, "Security": h.security,
                                        "InUser": h.in_use} for h in hotspots]}

    async def set_wifi(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        _check(values["Security"] in m.WifiSecurity.__members__.values(), "Security must be 0..5")
        if await self._binding(session, dev_id) is None:
            return {"Result": NO_DEVICE}
        answer = await self._command(dev_id, m.SetWifiRequest(dev_id=dev_id, ssid=values["SSID"],
                                                              security=values["Security"],
                                                              password=values["Password"]))
        return {"Result": OK if answer is not None else NO_DEVICE}

    async def reboot(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        if await self._binding(session, dev_id) is None:
            return {"Result": NO_DEVICE}
        answer = await self._command(dev_id, m.RebootRequest(dev_id=dev_id))
        return {"Result": OK if answer is not None else NO_DEVICE}

    def _newest(self, model: str) -> tuple[str, str] | None:
        return self.settings.firmware.get(model) or self.settings.firmware.get("*")

    async def _current_version(self, dev_id: str) -> tuple[str, str]:
        device = await self.store.get_device(dev_id)
        live = self.gateway.live.get(dev_id)
        current = live.dev_ver if live is not None else (device.dev_ver if device is not None else "")
        return current, device.model if device is not None else ""

    async def firmware_version(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        if await self._binding(session, dev_id, own=False) is None:
            return {"Result": NO_DEVICE}
        current, model = await self._current_version(dev_id)
        newest = self._newest(model)
        return {"Result": OK, "CurDevVer": current, "NewDevVer": newest[0] if newest is not None else current}

    async def upgrade(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        if await self._binding(session, dev_id) is None:
            return {"Result": NO_DEVICE}
        current, model = await self._current_version(dev_id)
        newest = self._newest(model)
        if newest is None or newest[0] == current:
            self.log.info("upgrade of {dev_id} asked by {account}: already at the newest known firmware",
                          dev_id=dev_id, account=session.account)
            return {"Result": OK}  # nothing to do: §8.16 showed NewDevVer == CurDevVer
        url = urlsplit(newest[1])
        answer = await self._command(dev_id, m.UpgradeRequest(
            dev_id=dev_id, new_dev_ver=newest[0], ftp_ip=url.hostname or "", ftp_port=url.port or 21,
            ftp_account=unquote(url.username or ""), ftp_password=unquote(url.password or ""),
            ftp_file_name=url.path.lstrip("/")))
        return {"Result": OK if answer is not None else NO_DEVICE}


    # Extensions for the web client (§4): recording (67H-69H, 78H-7BH) --------------------------

    async def _camera(self, session: LoginSession, dev_id: str, channel_no: int | None = None,
                      own: bool = True) -> int | None:
        """None when the account may use the camera and it is online; else the Result (3 or 4)."""
        if await self._binding(session, dev_id, channel_no, own) is None:
            return NO_DEVICE
        return None if self.gateway.is_online(dev_id) else OFFLINE

    async def add_record_policy(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel = values["DevID"], values["ChannelNo"]
        new = [_record_window(item) for item in values["RecordPolicy"]]
        refused = await self._camera(session, dev_id, channel)
        if refused is not None:
            return {"Result": refused}
        stored = await self._command(dev_id, m.GetRecordPolicyRequest(dev_id=dev_id, channel_no=channel))
        if stored is None:
            return {"Result": OFFLINE}
        why = window_rules(list(stored.week_policy), new)
        if why:
            self.log.info("recording windows for {dev_id} channel {channel} refused: {why}", dev_id=dev_id,
                          channel=channel, why=why)
            return {"Result": RULES}
        answer = await self._command(dev_id, m.AddRecordPolicyRequest(dev_id=dev_id, channel_no=channel,
                                                                      week_policy=tuple(new)))
        return {"Result": OK if answer is not None else OFFLINE}

    async def get_record_policy(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel = values["DevID"], values["ChannelNo"]
        refused = await self._camera(session, dev_id, channel)
        if refused is not None:
            return {"Result": refused}
        answer = await self._command(dev_id, m.GetRecordPolicyRequest(dev_id=dev_id, channel_no=channel))
        if answer is None:
            return {"Result": OFFLINE}
        return {"Result": OK, "RecordPolicy": [
            {"PolicyID": p.policy_id, "StoreType": p.store_type, "StreamType": p.stream_type, "Week": p.week,
             "StartTime": p.start_time, "EndTime": p.end_time} for p in answer.week_policy]}

    async def delete_record_policy(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel, policy_id = values["DevID"], values["ChannelNo"], values["PolicyID"]
        refused = await self._camera(session, dev_id, channel)
        if refused is not None:
            return {"Result": refused}
        stored = await self._command(dev_id, m.GetRecordPolicyRequest(dev_id=dev_id, channel_no=channel))
        if stored is None:
            return {"Result": OFFLINE}
        if all(p.policy_id != policy_id for p in stored.week_policy):
            return {"Result": NO_SUCH}
        answer = await self._command(dev_id, m.DeleteRecordPolicyRequest(dev_id=dev_id, channel_no=channel,
                                                                         policy_id=policy_id))
        return {"Result": OK if answer is not None else OFFLINE}

    async def set_full_day(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel = values["DevID"], values["ChannelNo"]
        _check(values["RecordFull"] in (0, 1), "RecordFull must be 0 or 1")
        refused = await self._camera(session, dev_id, channel)
        if refused is not None:
            return {"Result": refused}
        answer = await self._command(dev_id, m.SetFullDayRecordRequest(dev_id=dev_id, channel_no=channel,
                                                                       record_full=values["RecordFull"]))
        return {"Result": OK if answer is not None else OFFLINE}

    async def get_full_day(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel = values["DevID"], values["ChannelNo"]
        refused = await self._camera(session, dev_id, channel)
        if refused is not None:
            return {"Result": refused}
        answer = await self._command(dev_id, m.GetFullDayRecordRequest(dev_id=dev_id, channel_no=channel))
        return {"Result": OFFLINE} if answer is None else {"Result": OK, "RecordFull": answer.record_full}

    async def set_loop(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        _check(values["RecordLoop"] in (0, 1), "RecordLoop must be 0 or 1")
        refused = await self._camera(session, dev_id)
        if refused is not None:
            return {"Result": refused}
        answer = await self._command(dev_id, m.SetLoopRecordRequest(dev_id=dev_id, record_loop=values["RecordLoop"]))
        return {"Result": OK if answer is not None else OFFLINE}

    async def get_loop(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        refused = await self._camera(session, dev_id)
        if refused is not None:
            return {"Result": refused}
        answer = await self._command(dev_id, m.GetLoopRecordRequest(dev_id=dev_id))
        return {"Result": OFFLINE} if answer is None else {"Result": OK, "RecordLoop": answer.record_loop}

    # Record search and playback (72H, 74H) -------------------------------------------------------

    async def search_records(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, channel = values["DevID"], values["ChannelNo"]
        start, end = _minute_time("StartTime", values["StartTime"]), _minute_time("EndTime", values["EndTime"])
        _check(start <= end, "StartTime must not be after EndTime")
        page = values["PageNo"] or 1
        _check(page >= 1, "PageNo counts from 1")
        refused = await self._camera(session, dev_id, channel, own=False)
        if refused is not None:
            return {"Result": refused}
        answer = await self._command(dev_id, m.RecordSearchRequest(dev_id=dev_id, channel_no=channel,
                                                                   start_time=start, end_time=end, page_no=page))
        if answer is None:
            return {"Result": OFFLINE}
        return {"Result": OK, "TotalRecordNum": answer.total_record_num, "PageNo": page, "RecordFile": [
            {"FileName": f.file_name, "FileSize": f.file_size, "StartTime": f.start_time, "EndTime": f.end_time}
            for f in answer.file[:PAGE_SIZE]]}

    async def playback_url(self, session: LoginSession, values: Values, peer: str) -> Values:
        """§7.5.23's URL for one file; the camera checks the token with 74H (one token per URL, as §8.9)."""
        dev_id, channel, name = values["DevID"], values["ChannelNo"], values["FileName"]
        _check(bool(FILE_NAME.match(name)), "FileName must be 1-128 of A-Z a-z 0-9 _ . -")
        refused = await self._camera(session, dev_id, channel, own=False)
        if refused is not None:
            return {"Result": refused}
        live = self.gateway.live.get(dev_id)
        if live is None:
            return {"Result": OFFLINE}
        urls: Values = {}
        for field, endpoint in camera_endpoints(live.addresses).items():
            if endpoint is not None:
                token = await self.accounts.issue_token(session, dev_id, channel, 0, file_name=name)
                urls[field] = playback_url(*endpoint, dev_id, channel, name, token)
            else:
                urls[field] = ""
        return {"Result": OK, **urls, "StunIP": self.settings.stun_host, "StunPort": self.settings.stun_port}

    # Alarms (34H records) ---------------------------------------------------------------------------

    async def search_alarms(self, session: LoginSession, values: Values, peer: str) -> Values:
        """From the store, so it works with the camera offline (that is when alarms matter)."""
        dev_id = values["DevID"]
        low = _alarm_time("StartTime", values["StartTime"]) if values["StartTime"] else float("-inf")
        high = _alarm_time("EndTime", values["EndTime"]) if values["EndTime"] else float("inf")
        page = values["PageNo"] or 1
        _check(page >= 1, "PageNo counts from 1")
        if await self._binding(session, dev_id, own=False) is None:
            return {"Result": NO_DEVICE}
        found = [r for r in await self.store.list_exceptions(dev_id, 1000) if low <= r.received_at <= high]
        first = (page - 1) * PAGE_SIZE
        return {"Result": OK, "TotalNum": len(found), "Alarm": [
            {"ChannelNo": r.channel_no, "ExceptionType": r.exception_type, "ExceptionDesc": r.description,
             "Time": protocol_time(r.received_at)} for r in found[first:first + PAGE_SIZE]]}

    # Sharing (ShareFlag 1) ------------------------------------------------------------------------------

    async def share(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, guest = values["DevID"], values["ShareAccount"]
        if await self._binding(session, dev_id) is None:
            return {"Result": NO_DEVICE}
        if not MOBILE.match(guest):
            return {"Result": NO_SUCH}
        outcome = await self.store.share_device(session.account, dev_id, guest, self.accounts.clock.seconds())
        return {"Result": OK if outcome == SHARE_OK else NO_DEVICE if outcome == SHARE_NOT_OWNER else NO_SUCH}

    async def unshare(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id, guest = values["DevID"], values["ShareAccount"]
        if await self._binding(session, dev_id) is None:
            return {"Result": NO_DEVICE}
        return {"Result": OK if await self.store.unshare_device(dev_id, guest) else NO_SUCH}

    async def share_list(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        if await self._binding(session, dev_id) is None:
            return {"Result": NO_DEVICE}
        return {"Result": OK, "ShareAccount": [b.account for b in await self.store.list_shares(dev_id)]}


    async def stream_status(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        if await self._binding(session, dev_id, own=False) is None:
            return {"Result": NO_DEVICE}
        if self.streams is None:
            return {"Result": NO_SUCH}
        return {"Result": OK, "Stream": self.streams(dev_id)}


def window_rules(stored: list[m.RecordPolicyEntry], new: list[m.RecordPolicy]) -> str:
    """Why §7.5.13 forbids adding *new* windows to *stored* ones ("" when it does not).

    At most 4 windows per weekday, and none may overlap another (half-open: 10:00-12:00
    and 12:00-14:00 do not).  Checked here so that a refused schedule never reaches the
    camera, whose own check (the simulator has one) is then only a second line.
    """
    by_day: dict[int, list[tuple[int, int]]] = {}
    every: list[m.RecordPolicyEntry | m.RecordPolicy] = [*stored, *new]
    for window in every:
        by_day.setdefault(window.week, []).append((_minutes(window.start_time), _minutes(window.end_time)))
    for week, windows in sorted(by_day.items()):
        if len(windows) > MAX_WINDOWS_A_DAY:
            return f"{len(windows)} windows on weekday {week} (at most {MAX_WINDOWS_A_DAY})"
        ordered = sorted(windows)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if a[1] > b[0]:
                return f"windows {_hhmm(a)} and {_hhmm(b)} overlap on weekday {week}"
    return ""


def _minutes(text: str) -> int:
    match = HHMM.match(text.strip())
    return int(match[1]) * 60 + int(match[2]) if match else 0


def _hhmm(window: tuple[int, int]) -> str:
    return "-".join(f"{t // 60:02d}:{t % 60:02d}" for t in window)


def _record_window(item: Values) -> m.RecordPolicy:
    """One requested window, its values checked (a malformed one is a Client fault, as in §8)."""
    for name in ("StoreType", "StreamType", "Week", "StartTime", "EndTime"):
        _check(item.get(name) is not None, f"RecordPolicy: {name} is missing")
    _check(item["StoreType"] in (0, 1), "StoreType must be 0 (local) or 1 (cloud)")
    _check(item["StreamType"] in (1, 2), "StreamType must be 1 (main) or 2 (sub)")
    _check(1 <= item["Week"] <= 7, "Week must be 1..7")
    times = []
    for name in ("StartTime", "EndTime"):
        match = HHMM.match(item[name].strip())
        _check(match is not None, f"{name} must be HH:MM")
        assert match is not None
        hours, minutes = int(match[1]), int(match[2])
        _check(minutes < 60 and (hours < 24 or (name == "EndTime" and hours == 24 and minutes == 0)),
               f"{name} {item[name]!r} is not a time of day")
        times.append(hours * 60 + minutes)
    _check(times[0] < times[1], "StartTime must be before EndTime (split windows that cross midnight)")
    return m.RecordPolicy(store_type=item["StoreType"], stream_type=item["StreamType"], week=item["Week"],
                          start_time=f"{times[0] // 60:02d}:{times[0] % 60:02d}",
                          end_time=f"{times[1] // 60:02d}:{times[1] % 60:02d}")


def _minute_time(name: str, text: str) -> str:
    """72H's YYYYMMDDHHMM (a 14-digit time has its seconds dropped)."""
    text = text.strip()
    if len(text) == 14 and text.isdigit():
        text = text[:12]
    try:
        parse_protocol_time(text + "00")
    except ValueError:
        raise client_fault(f"{name} must be YYYYMMDDHHMM") from None
    return text


def _alarm_time(name: str, text: str) -> float:
    try:
        return parse_protocol_time(text)
    except ValueError:
        raise client_fault(f"{name} must be YYYYMMDDHHMMSS") from None


class GroupDirectory:
    """§9.1: which province serves a mobile number, from a configured prefix table."""

    log = Logger()

    def __init__(self, prefixes: Mapping[str, str], default_url: str, cms_name: str) -> None:
        self.prefixes = dict(prefixes)
        self.default_url = default_url
        self.cms_name = cms_name

    async def handle(self, operation: str, values: Values, peer: str) -> Values:
        mobile = values["MobileTel"]
        if not MOBILE.match(mobile):
            result: Values = {"Result": OTHER}
        else:
            matches = [p for p in self.prefixes if mobile.startswith(p)]
            url = self.prefixes[max(matches, key=len)] if matches else self.default_url
            result = {"Result": OK, "McuUrl": url, "CmsName": self.cms_name} if url else {"Result": 1}
        self.log.info("audit: get-mcu-url account={account} peer={peer} result={result} {url}", account=mobile,
                      peer=peer, result=result["Result"], url=result.get("McuUrl", ""))
        return result


def play_url(host: str, port: int, dev_id: str, channel_no: int, stream_type: int, token: str) -> str:
    """The §8.9/§7.5.5 URL: ``rtsp://ip:port/realplay?devid=…&channelno=…&streamtype=…&hashtoken=…``."""
    return realplay_url(host, port, dev_id, channel_no, token, stream_type=stream_type)


def playback_url(host: str, port: int, dev_id: str, channel_no: int, file_name: str, token: str) -> str:
    """The §7.5.23 URL: ``rtsp://ip:port/realplay?devid=…&channelno=…&filename=…&hashtoken=…``."""
    return realplay_url(host, port, dev_id, channel_no, token, file_name=file_name)


def _client_videos(ability_xml: bytes) -> list[Values]:
    """The §8.3/§8.5 encoding list from the stored 32H report, FrameSize in §8 codes, duplicates merged."""
    try:
        report = m.AbilityUpRequest.from_xml(ability_xml) if ability_xml else None
    except m.MessageError:
        return []
    seen: list[tuple[int, int]] = []
    for video in report.video if report is not None else ():
        pair = (video.stream_type, DEVICE_TO_CLIENT_FRAME.get(video.frame_size, 0))
        if pair[1] and pair not in seen:
            seen.append(pair)
    return [{"StreamType": stream, "FrameSize": size} for stream, size in seen]


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise client_fault(message)
