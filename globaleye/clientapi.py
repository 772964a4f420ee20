"""The client API of §8 (province) and §9.1 (group): what each SOAP operation does.

SOAP-free: handlers take the decoded request values and return the response values
(:mod:`globaleye.soap` does the XML).  Everything that touches a camera goes through
``gateway.command`` with the gateway's command timeout, and an offline, silent or
disconnected camera becomes a Result code (4 where §8 defines "device offline", 3
"device does not exist" otherwise) instead of a hanging request.  A camera that
answers with a non-zero Result is reported as a ``soap:Server`` Fault
``DeviceRefused``: §8 has no code for it, and inventing one would break strict
clients.  Every call is audit-logged with the account and the peer.
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
from globaleye.gateway.service import Gateway
from globaleye.messaging import CommandError
from globaleye.protocol import messages as m
from globaleye.soap.envelope import SoapFault, client_fault
from globaleye.store import BIND_ALREADY_MINE, BIND_LIMIT, BIND_OK, BIND_TAKEN, Binding, Store

NO_DEVICE, OFFLINE, OTHER = 3, 4, 255
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
                 settings: ClientApiSettings | None = None) -> None:
        self.accounts = accounts
        self.store = store
        self.gateway = gateway
        self.settings = settings or ClientApiSettings()
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
        }

    async def handle(self, operation: str, values: Values, peer: str) -> Values:
        return await self.handlers[operation](values, peer)

    # Without a session ---------------------------------------------------------------------

    async def get_sms_code(self, values: Values, peer: str) -> Values:
        return {"Result": await self.accounts.request_sms_code(values["MobileTel"], values["Type"], peer)}

    async def register_user(self, values: Values, peer: str) -> Values:
        return {"Result": await self.accounts.register(values["MobileTel"], values["Password"], values["SmsKey"],
                                                       peer)}

    async def login(self, values: Values, peer: str) -> Values:
        outcome = await self.accounts.login(values["Account"], values["Password"], values["Version"], peer)
        if outcome.session is None:
            return {"Result": outcome.result, "UpdateUrl": outcome.update_url or None}
        return {"Result": OK, "LoginSession": outcome.session.token, "DevNum": self.accounts.settings.max_devices,
                "Device": await self._devices(outcome.session.account)}

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
        if device is None:
            return {"Result": ADD_UNKNOWN}
        if not _same(device.dev_key, values["DevKey"]):
            return {"Result": ADD_WRONG_KEY}
        outcome = await self.store.bind_device(
            Binding(session.account, dev_id, 0, device.model or dev_id, self.accounts.clock.seconds()),
            self.accounts.settings.max_devices)
        return {"Result": {BIND_OK: OK, BIND_ALREADY_MINE: OK, BIND_LIMIT: ADD_LIMIT, BIND_TAKEN: OTHER}.get(
            outcome, OTHER)}

    async def remove_device(self, session: LoginSession, values: Values, peer: str) -> Values:
        dev_id = values["DevID"]
        binding = await self.store.get_binding(session.account, dev_id)
        device = await self.store.get_device(dev_id)
        if binding is None or binding.share_flag or device is None or not _same(device.dev_key, values["DevKey"]):
            return {"Result": NO_DEVICE}
        return {"Result": OK if await self.store.unbind_device(session.account, dev_id) else NO_DEVICE}

    async def close_account(self, session: LoginSession, values: Values, peer: str) -> Values:
        return {"Result": await self.accounts.close_account(session, peer)}

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
        a = live.addresses
        urls: Values = {}
        for name, host, port in (("LocalPlayUrl", a.local_ip, a.rtsp_local_port),
                                 ("UpnpPlayUrl", a.upnp_ip, a.rtsp_upnp_port),
                                 ("TurnPlayUrl", a.turn_relay_ip, a.rtsp_turn_relay_port)):
            if host and host != "0.0.0.0" and port:
                # One token per URL: the client tries them in turn (§15), and a token is burnt by the
                # first verification, so a shared one would not survive a failed local attempt.
                token = await self.accounts.issue_token(session, dev_id, channel, stream)
                urls[name] = play_url(host, port, dev_id, channel, stream, token)
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
    if ":" in host:
        host = f"[{host}]"
    return (f"rtsp://{host}:{port}/realplay?devid={dev_id}&channelno={channel_no}&streamtype={stream_type}"
            f"&hashtoken={token}")


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
