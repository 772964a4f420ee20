"""The SOAP face of the client API (§8 province, §9.1 group): envelopes to services and back.

What each operation does lives in the application layer (:mod:`globaleye.app`); this
module only turns a decoded request (the values :mod:`globaleye.api.soap` parsed) into a
service call, and the service's result or :class:`~globaleye.app.errors.AppError` into
the §8 answer values: ``Result`` codes, and Faults where §8 has no code — a malformed
request is a ``soap:Client`` Fault, a camera that answers with a non-zero Result a
``soap:Server`` Fault ``DeviceRefused`` (inventing a code would break strict clients).
An offline camera is Result 4 where §8 defines "device offline", 3 ("device does not
exist") in the operations that define no such code.  Every call that needs a session is
checked (Result 2 without one) and audit-logged with the account and the peer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.logger import Logger

from globaleye.api.soap.envelope import SoapFault, client_fault
from globaleye.app import ClientServices
from globaleye.app.cloud import CloudService, StorageUnavailable
from globaleye.app.control import VideoParams
from globaleye.app.devices import DeviceEntry
from globaleye.app.errors import (
    NO_DEVICE,
    AppError,
    DeviceOffline,
    InvalidRequest,
    SessionExpired,
)
from globaleye.app.errors import DeviceRefused as RefusedByDevice
from globaleye.app.media import PlayUrls
from globaleye.app.pictures import PictureWindow
from globaleye.app.recording import RecordWindow
from globaleye.users.accounts import OK, LoginSession

Values = dict[str, Any]
Handler = Callable[[LoginSession, Values, str], Awaitable[Values]]

#: §8 operations that define no "device offline" Result: an offline camera is "does not exist" (3) there.
OFFLINE_IS_NO_DEVICE = frozenset({"GetPlayUrl", "GetVideoParams", "SetVideoParams", "QueryWifi", "SetWifi",
                                  "RebootDevice", "UpgradeDevice"})


class DeviceRefused(SoapFault):
    pass


class McuApi:
    """§8.1–§8.17 (and ChangePassword, and the extensions for the web client) over :class:`ClientServices`."""

    log = Logger()

    def __init__(self, services: ClientServices) -> None:
        self.services = services
        s = services
        self.accounts = s.accounts
        authed: dict[str, Handler] = {
            "GetDeviceList": self.device_list, "AddDevice": self.add_device, "RemoveDevice": self.remove_device,
            "CloseAccount": self.close_account, "GetPlayUrl": self.play_url, "PtzControl": self.ptz,
            "GetVideoParams": self.get_video, "SetVideoParams": self.set_video, "QueryWifi": self.query_wifi,
            "SetWifi": self.set_wifi, "RebootDevice": self.reboot, "GetFirmwareVersion": self.firmware_version,
            "UpgradeDevice": self.upgrade, "ChangePassword": self.change_password,
            "AddRecordPolicy": self.add_record_policy, "GetRecordPolicy": self.get_record_policy,
            "DeleteRecordPolicy": self.delete_record_policy, "SetFullDayRecord": self.set_full_day,
            "GetFullDayRecord": self.get_full_day, "SetLoopRecord": self.set_loop, "GetLoopRecord": self.get_loop,
            "SearchRecords": self.search_records, "GetPlaybackUrl": self.playback_url,
            "SearchAlarms": self.search_alarms, "ShareDevice": self.share, "UnshareDevice": self.unshare,
            "GetShareList": self.share_list, "GetStreamStatus": self.stream_status,
            "AddPicturePolicy": self.add_picture_policy, "GetPicturePolicy": self.get_picture_policy,
            "DeletePicturePolicy": self.delete_picture_policy,
            "SearchCloudFiles": self.search_cloud, "GetCloudFileUrl": self.cloud_url,
            "DeleteCloudFiles": self.delete_cloud, "GetCloudRetention": self.cloud_retention,
            "SetCloudRetention": self.set_cloud_retention,
        }
        self.handlers: dict[str, Callable[[Values, str], Awaitable[Values]]] = {
            "GetSmsCode": self.get_sms_code, "RegisterUser": self.register_user, "Login": self.login,
            "Logout": self.logout,
            **{operation: self._authed(operation, handler) for operation, handler in authed.items()},
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
        return {"Result": OK, "LoginSession": outcome.session.token, "DevNum": outcome.dev_num,
                "Device": _devices(outcome.devices)}

    async def logout(self, values: Values, peer: str) -> Values:
        return {"Result": await self.accounts.logout(values["Account"], values["LoginSession"], peer)}

    def _authed(self, operation: str, handler: Handler) -> Callable[[Values, str], Awaitable[Values]]:
        """Check Account + LoginSession first; without a live session the answer is always Result 2.

        Result 1 ("account does not exist") is never given to a caller without a session: it
        would make every operation an oracle for registered numbers.  The service's errors
        become the operation's Result (or a Fault), audited like the answers.
        """
        action = handler.__name__.replace("_", "-")
        offline = NO_DEVICE if operation in OFFLINE_IS_NO_DEVICE else DeviceOffline.result

        async def run(values: Values, peer: str) -> Values:
            try:
                session = self.accounts.authenticate(values["Account"], values["LoginSession"])
            except SessionExpired as e:
                await self.accounts.audit(action, values["Account"], peer, e.result, "no live session")
                return {"Result": e.result}
            try:
                try:
                    answer = await handler(session, values, peer)
                except AppError as e:
                    answer = {"Result": _result(e, offline)}
            except SoapFault as fault:
                await self.accounts.audit(action, session.account, peer, -1, f"{fault} {fault.detail}".strip())
                raise
            detail = f"DevID {values['DevID']}" if "DevID" in values else ""
            await self.accounts.audit(action, session.account, peer, answer["Result"], detail)
            return answer

        return run

    # Accounts and bindings (§8.5–§8.8) -----------------------------------------------------------

    async def device_list(self, session: LoginSession, values: Values, peer: str) -> Values:
        return {"Result": OK, "Device": _devices(await self.services.devices.list_for(session))}

    async def add_device(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.devices.add(session, values["DevID"], values["DevKey"])
        return {"Result": OK}

    async def remove_device(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.devices.remove(session, values["DevID"], values["DevKey"])
        return {"Result": OK}

    async def close_account(self, session: LoginSession, values: Values, peer: str) -> Values:
        return {"Result": await self.accounts.close_account(session, peer)}

    async def change_password(self, session: LoginSession, values: Values, peer: str) -> Values:
        return {"Result": await self.accounts.change_password(session, values["OldPassword"],
                                                              values["NewPassword"], peer)}

    # Cameras (§8.9–§8.17) ------------------------------------------------------------------------

    async def play_url(self, session: LoginSession, values: Values, peer: str) -> Values:
        urls = await self.services.media.play_urls(session, values["DevID"], values["ChannelNo"],
                                                   values["StreamType"])
        return _urls(urls)

    async def ptz(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.control.ptz(session, values["DevID"], values["ChannelNo"], values["PtzDirection"])
        return {"Result": OK}

    async def get_video(self, session: LoginSession, values: Values, peer: str) -> Values:
        p = await self.services.control.get_video(session, values["DevID"], values["ChannelNo"],
                                                  values["StreamType"])
        return {"Result": OK, "DevID": values["DevID"], "FrameSize": p.frame_size, "FrameRate": p.frame_rate,
                "RateType": p.rate_type, "BitRate": p.bit_rate, "AudioInput": p.audio_input}

    async def set_video(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.control.set_video(session, values["DevID"], values["ChannelNo"], values["StreamType"],
                                              VideoParams(values["FrameSize"], values["FrameRate"],
                                                          values["RateType"], values["BitRate"],
                                                          values["AudioInput"]))
        return {"Result": OK}

    async def query_wifi(self, session: LoginSession, values: Values, peer: str) -> Values:
        hotspots = await self.services.control.query_wifi(session, values["DevID"])
        return {"Result": OK, "Wifi": [{"SSID": h.ssid, "Signal": h.signal, "Security": h.security,
                                        "InUser": h.in_use} for h in hotspots]}

    async def set_wifi(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.control.set_wifi(session, values["DevID"], values["SSID"], values["Security"],
                                             values["Password"])
        return {"Result": OK}

    async def reboot(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.control.reboot(session, values["DevID"])
        return {"Result": OK}

    async def firmware_version(self, session: LoginSession, values: Values, peer: str) -> Values:
        version = await self.services.control.firmware_version(session, values["DevID"])
        return {"Result": OK, "CurDevVer": version.current, "NewDevVer": version.newest}

    async def upgrade(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.control.upgrade(session, values["DevID"])
        return {"Result": OK}

    # Extensions for the web client (§4): recording (67H-69H, 78H-7BH) --------------------------

    async def add_record_policy(self, session: LoginSession, values: Values, peer: str) -> Values:
        windows = [RecordWindow(item.get("StoreType"), item.get("StreamType"), item.get("Week"),
                                item.get("StartTime"), item.get("EndTime")) for item in values["RecordPolicy"]]
        await self.services.recording.add_policy(session, values["DevID"], values["ChannelNo"], windows)
        return {"Result": OK}

    async def get_record_policy(self, session: LoginSession, values: Values, peer: str) -> Values:
        policies = await self.services.recording.get_policies(session, values["DevID"], values["ChannelNo"])
        return {"Result": OK, "RecordPolicy": [
            {"PolicyID": p.policy_id, "StoreType": p.store_type, "StreamType": p.stream_type, "Week": p.week,
             "StartTime": p.start_time, "EndTime": p.end_time} for p in policies]}

    async def delete_record_policy(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.recording.delete_policy(session, values["DevID"], values["ChannelNo"],
                                                    values["PolicyID"])
        return {"Result": OK}

    async def set_full_day(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.recording.set_full_day(session, values["DevID"], values["ChannelNo"],
                                                   values["RecordFull"])
        return {"Result": OK}

    async def get_full_day(self, session: LoginSession, values: Values, peer: str) -> Values:
        full = await self.services.recording.get_full_day(session, values["DevID"], values["ChannelNo"])
        return {"Result": OK, "RecordFull": full}

    async def set_loop(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.recording.set_loop(session, values["DevID"], values["RecordLoop"])
        return {"Result": OK}

    async def get_loop(self, session: LoginSession, values: Values, peer: str) -> Values:
        return {"Result": OK, "RecordLoop": await self.services.recording.get_loop(session, values["DevID"])}

    # Picture policies (75H-77H) -----------------------------------------------------------------

    async def add_picture_policy(self, session: LoginSession, values: Values, peer: str) -> Values:
        windows = [PictureWindow(item.get("StartTime"), item.get("EndTime"), item.get("Interval"))
                   for item in values["PicturePolicy"]]
        await self.services.pictures.add_policy(session, values["DevID"], values["ChannelNo"], values["StoreType"],
                                                windows)
        return {"Result": OK}

    async def get_picture_policy(self, session: LoginSession, values: Values, peer: str) -> Values:
        policies = await self.services.pictures.get_policies(session, values["DevID"], values["ChannelNo"])
        return {"Result": OK, "PicturePolicy": [
            {"PolicyID": p.policy_id, "StoreType": p.store_type, "Interval": p.interval, "StartTime": p.start_time,
             "EndTime": p.end_time} for p in policies]}

    async def delete_picture_policy(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.pictures.delete_policy(session, values["DevID"], values["ChannelNo"], values["PolicyID"])
        return {"Result": OK}

    # Record search and playback (72H, 74H) -------------------------------------------------------

    async def search_records(self, session: LoginSession, values: Values, peer: str) -> Values:
        page = await self.services.recording.search(session, values["DevID"], values["ChannelNo"],
                                                    values["StartTime"], values["EndTime"], values["PageNo"])
        return {"Result": OK, "TotalRecordNum": page.total, "PageNo": page.page_no, "RecordFile": [
            {"FileName": f.file_name, "FileSize": f.file_size, "StartTime": f.start_time, "EndTime": f.end_time}
            for f in page.files]}

    async def playback_url(self, session: LoginSession, values: Values, peer: str) -> Values:
        urls = await self.services.media.playback_urls(session, values["DevID"], values["ChannelNo"],
                                                       values["FileName"])
        return _urls(urls)

    # Alarms (34H records) ---------------------------------------------------------------------------

    async def search_alarms(self, session: LoginSession, values: Values, peer: str) -> Values:
        page = await self.services.alarms.search(session, values["DevID"], values["StartTime"], values["EndTime"],
                                                 values["PageNo"])
        return {"Result": OK, "TotalNum": page.total, "Alarm": [
            {"ChannelNo": a.channel_no, "ExceptionType": a.exception_type, "ExceptionDesc": a.description,
             "Time": a.time} for a in page.alarms]}

    # Cloud storage (§7.1.2) ---------------------------------------------------------------------------

    def _cloud(self) -> CloudService:
        if self.services.cloud is None:
            raise StorageUnavailable("no cloud storage is configured on this platform")
        return self.services.cloud

    async def search_cloud(self, session: LoginSession, values: Values, peer: str) -> Values:
        page = await self._cloud().search(session, values["DevID"], values["ChannelNo"], values["Type"],
                                          values["StartTime"], values["EndTime"], values["PageNo"],
                                          values["PageSize"])
        return {"Result": OK, "TotalNum": page.total, "PageNo": page.page_no, "CloudFile": [
            {"FileName": f.name, "Type": f.kind, "ChannelNo": f.channel_no, "StartTime": f.start,
             "Duration": round(f.duration), "FileSize": f.size} for f in page.files]}

    async def cloud_url(self, session: LoginSession, values: Values, peer: str) -> Values:
        cloud = self._cloud()
        url = await cloud.download_url(session, values["DevID"], values["FileName"])
        return {"Result": OK, "Url": url, "Expires": round(cloud.settings.url_lifetime)}

    async def delete_cloud(self, session: LoginSession, values: Values, peer: str) -> Values:
        cloud = self._cloud()
        if values["FileName"]:
            return {"Result": OK, "DeletedNum": await cloud.delete(session, values["DevID"], values["FileName"])}
        missing = [name for name in ("ChannelNo", "Type", "StartTime", "EndTime") if values[name] is None]
        if missing:
            raise client_fault(f"DeleteCloudFiles needs FileName, or {', '.join(missing)} for a range")
        count = await cloud.delete_range(session, values["DevID"], values["ChannelNo"], values["Type"],
                                         values["StartTime"], values["EndTime"])
        return {"Result": OK, "DeletedNum": count}

    async def cloud_retention(self, session: LoginSession, values: Values, peer: str) -> Values:
        days, own = await self._cloud().retention(session)
        return {"Result": OK, "RetentionDays": round(days), "OwnChoice": int(own)}

    async def set_cloud_retention(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self._cloud().set_retention(session, values["RetentionDays"])
        return {"Result": OK}

    # Sharing (ShareFlag 1) ------------------------------------------------------------------------------

    async def share(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.devices.share(session, values["DevID"], values["ShareAccount"])
        return {"Result": OK}

    async def unshare(self, session: LoginSession, values: Values, peer: str) -> Values:
        await self.services.devices.unshare(session, values["DevID"], values["ShareAccount"])
        return {"Result": OK}

    async def share_list(self, session: LoginSession, values: Values, peer: str) -> Values:
        return {"Result": OK, "ShareAccount": list(await self.services.devices.shares(session, values["DevID"]))}

    async def stream_status(self, session: LoginSession, values: Values, peer: str) -> Values:
        return {"Result": OK, "Stream": [dict(s) for s in await self.services.media.stream_status(
            session, values["DevID"])]}


def _result(error: AppError, offline: int) -> int:
    """The §8 Result of a service error; a Fault where §8 has no code for it."""
    if isinstance(error, InvalidRequest):
        raise client_fault(str(error)) from None
    if isinstance(error, RefusedByDevice):
        raise DeviceRefused("Server", str(error), f"DeviceRefused {error.device_result}") from None
    if isinstance(error, DeviceOffline):
        return offline
    return error.result


def _urls(urls: PlayUrls) -> Values:
    return {"Result": OK, "LocalPlayUrl": urls.local, "UpnpPlayUrl": urls.upnp, "TurnPlayUrl": urls.turn,
            "StunIP": urls.stun_host, "StunPort": urls.stun_port}


def _devices(entries: tuple[DeviceEntry, ...]) -> list[Values]:
    """The §8.3/§8.5 Device list."""
    return [{"DevID": e.dev_id, "ChannelNo": e.channel_no, "Name": e.name, "OnLine": 1 if e.online else 0,
             "PtzFlag": 1 if e.ptz else 0, "ShareFlag": e.shared,
             "Video": [{"StreamType": v.stream_type, "FrameSize": v.frame_size} for v in e.videos]} for e in entries]



__all__ = ["DeviceRefused", "McuApi"]
