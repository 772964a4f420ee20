"""Camera settings and the recordings on the camera, for ``/api/v1`` (issue 11, §2 item 1, §4 items 7, 11).

:class:`SettingsApi` is a mixin of :class:`globaleye.web.api.WebApi`: its methods answer the routes of
the ``# --- camera settings and recordings ---`` block of :data:`globaleye.web.routes.ROUTES`.  Each one
maps JSON to the values the application layer takes and calls it, as the SOAP face
(:mod:`globaleye.api.clientapi`) maps §8.11–§8.17 and the recording extensions: video parameters
(§8.11/§8.12, 60H/61H), Wi-Fi (§8.13/§8.14, 62H/63H), reboot (§8.15), firmware (§8.16/§8.17), recording
windows (67H–69H, §7.5.13's four a day), full-day and loop recording (78H–7BH), record search (72H).

What the camera's ability report (32H) says it cannot do is refused here before the camera is asked
(422 ``not-supported``, the reason in ``detail``; :mod:`globaleye.app.abilities` decides), after the
same access check as every route, so another account's camera is still 404 like an absent one.
A Wi-Fi password goes to the camera and nowhere else: no answer, log or audit line carries it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.web.iweb import IRequest

from globaleye.app.abilities import (
    FRAME_SIZE_NAMES,
    FRAME_SIZES,
    Abilities,
    abilities_of,
    local_store_refusal,
    recording_refusal,
    storage_refusal,
    video_refusal,
)
from globaleye.app.control import VideoParams
from globaleye.app.recording import MAX_WINDOWS_A_DAY, PAGE_SIZE, RecordWindow
from globaleye.device.protocol import messages as m
from globaleye.users.accounts import OK, LoginSession
from globaleye.util.clock import BEIJING
from globaleye.web.auth import peer_of
from globaleye.web.problem import Problem, bad_request
from globaleye.web.reply import json_reply
from globaleye.web.routes import STREAMS

if TYPE_CHECKING:
    from globaleye.app import ClientServices


#: §7.5.8/§7.5.9 Security by name (the API's ``security``).
WIFI_SECURITY = {"none": 0, "wep": 1, "wpa-psk": 2, "wpa-wpa2-psk": 3, "wpa2-psk": 4, "other": 5}
WIFI_SECURITY_NAMES = {code: name for name, code in WIFI_SECURITY.items()}
#: §7.5.6 RateType by name.
RATE_TYPES = {"cbr": 1, "vbr": 2}
RATE_TYPE_NAMES = {code: name for name, code in RATE_TYPES.items()}
#: §7.5.6 BitRate: kbit/s -> the code 60H carries (the API speaks kbit/s, people's unit).
BIT_RATE_CODES = {kbps: code for code, kbps in m.BIT_RATES_KBPS.items()}
#: 67H StoreType by name.
STORAGES = {"local": 0, "cloud": 1}
STORAGE_NAMES = {code: name for name, code in STORAGES.items()}
STREAM_NAMES = {number: name for name, number in STREAMS.items()}
DAY = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
TIME_OF_DAY = re.compile(r"^([0-9]{2}):([0-9]{2})$")




def not_supported(detail: str) -> Problem:
    """What the camera's 32H report says it cannot do (greyed out on the page, §4 item 1)."""
    return Problem(422, "not-supported", "The camera cannot do this", detail)


class SettingsApi:
    """The settings and recordings routes of :class:`~globaleye.web.api.WebApi` (a mixin)."""

    services: ClientServices

    # Abilities ------------------------------------------------------------------------------------

    async def _abilities(self, session: LoginSession, dev_id: str, channel: int | None = None,
                         own: bool = True) -> Abilities:
        return await abilities_of(self.services.control.access, session.account, dev_id, channel, own)

    async def abilities(self, request: IRequest, session: LoginSession, body: None, devId: str) -> bytes:  # noqa: N803
        """What the page may offer: the 32H report in the API's names, and the values 60H takes."""
        ab = await self._abilities(session, devId, own=False)
        return json_reply(request, 200, {
            "known": ab.known, "channels": ab.channels, "ptz": ab.ptz, "localStore": ab.local_store,
            "cloudStore": ab.cloud_store,
            "streams": {STREAM_NAMES[stream]: [FRAME_SIZE_NAMES[s] for s in sizes if s in FRAME_SIZE_NAMES]
                        for stream, sizes in sorted(ab.frame_sizes.items()) if stream in STREAM_NAMES}
            if ab.known and ab.frame_sizes else {name: list(FRAME_SIZES) for name in STREAMS},
            "bitRates": sorted(BIT_RATE_CODES), "frameRate": {"min": 2, "max": 25},
            "maxWindowsPerDay": MAX_WINDOWS_A_DAY})

    # Video parameters (§8.11/§8.12, 60H/61H) --------------------------------------------------------

    async def get_video(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                        channel: int) -> bytes:
        stream = _stream(_query(request, "stream") or "main")
        p = await self.services.control.get_video(session, devId, channel, stream)
        return json_reply(request, 200, _video_view(channel, stream, p))

    async def set_video(self, request: IRequest, session: LoginSession, body: dict[str, Any], devId: str,  # noqa: N803
                        channel: int) -> bytes:
        stream = _stream(body.get("stream", "main"))
        params = VideoParams(
            frame_size=_choice(body, "frameSize", FRAME_SIZES), frame_rate=_optional_int(body, "frameRate"),
            rate_type=_choice(body, "rateType", RATE_TYPES), bit_rate=_choice(body, "bitRate", BIT_RATE_CODES),
            audio_input=None if body.get("audioInput") is None else int(_bool(body, "audioInput")))
        why = video_refusal(await self._abilities(session, devId, channel), stream, params.frame_size)
        if why:
            raise not_supported(why)
        await self.services.control.set_video(session, devId, channel, stream, params)
        await self._audit_setting(request, session, "web-set-video", f"{devId} channel {channel} "
                                  f"{STREAM_NAMES[stream]}")
        p = await self.services.control.get_video(session, devId, channel, stream)
        return json_reply(request, 200, _video_view(channel, stream, p))

    # Wi-Fi (§8.13/§8.14, 62H/63H) ---------------------------------------------------------------------

    async def wifi(self, request: IRequest, session: LoginSession, body: None, devId: str) -> bytes:  # noqa: N803
        hotspots = await self.services.control.query_wifi(session, devId)
        return json_reply(request, 200, {"hotspots": [
            {"ssid": h.ssid, "signal": h.signal, "security": WIFI_SECURITY_NAMES.get(h.security, "other"),
             "inUse": bool(h.in_use)} for h in hotspots]})

    async def set_wifi(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                       devId: str) -> bytes:  # noqa: N803
        """63H: the camera checks the values and answers at once; it joins afterwards and tells the
        outcome later (a 34H report, §7.5.9), hence 202.  The password is not in the answer."""
        ssid = _text(body, "ssid")
        security = _choice(body, "security", WIFI_SECURITY)
        if not ssid or len(ssid.encode()) > 32:
            raise bad_request("ssid must be 1 to 32 bytes")
        password = body.get("password", "")
        if not isinstance(password, str):
            raise bad_request("password must be a string")
        await self.services.control.set_wifi(session, devId, ssid, 0 if security is None else security, password)
        await self._audit_setting(request, session, "web-set-wifi", f"{devId} to SSID {ssid!r}")
        return json_reply(request, 202, {"ssid": ssid, "security": WIFI_SECURITY_NAMES[security or 0], "joining": True})

    # Reboot and firmware (§8.15–§8.17) -------------------------------------------------------------

    async def reboot(self, request: IRequest, session: LoginSession, body: None, devId: str) -> bytes:  # noqa: N803
        await self.services.control.reboot(session, devId)
        await self._audit_setting(request, session, "web-reboot", devId)
        return json_reply(request, 202, {"rebooting": True})

    async def firmware(self, request: IRequest, session: LoginSession, body: None, devId: str) -> bytes:  # noqa: N803
        version = await self.services.control.firmware_version(session, devId)
        return json_reply(request, 200, {"current": version.current, "newest": version.newest,
                            "upgradable": version.newest != version.current})

    async def upgrade(self, request: IRequest, session: LoginSession, body: None, devId: str) -> bytes:  # noqa: N803
        """§8.17: the newest configured firmware is sent (202); with nothing newer, nothing is (200)."""
        await self.services.control.upgrade(session, devId)
        version = await self.services.control.firmware_version(session, devId)
        if version.newest == version.current:
            return json_reply(request, 200, {"upgrading": False, "current": version.current, "newest": version.newest})
        await self._audit_setting(request, session, "web-upgrade", f"{devId} to {version.newest}")
        return json_reply(request, 202, {"upgrading": True, "current": version.current, "newest": version.newest})

    # Recording windows (67H–69H), full-day (78H/79H) and loop recording (7AH/7BH) -----------------------

    async def record_windows(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                             channel: int) -> bytes:
        why = recording_refusal(await self._abilities(session, devId, channel), "recording windows")
        if why:
            raise not_supported(why)
        return await self._windowsjson_reply(request, session, devId, channel, 200)

    async def add_record_windows(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                                 devId: str, channel: int) -> bytes:  # noqa: N803
        """§7.5.13's rules (four windows a day, no overlap) are the application's: a window that breaks
        them is 422 ``rule-violation`` with the rule in ``detail``, and never reaches the camera."""
        items = body.get("windows")
        if not isinstance(items, list) or not items or len(items) > 7 * MAX_WINDOWS_A_DAY:
            raise bad_request(f"windows must be a list of 1 to {7 * MAX_WINDOWS_A_DAY} windows")
        windows = []
        for item in items:
            if not isinstance(item, dict):
                raise bad_request("each window must be an object")
            windows.append(RecordWindow(
                store_type=_choice(item, "storage", STORAGES, default=0),
                stream_type=_choice(item, "stream", STREAMS, default=1), week=_optional_int(item, "week"),
                start_time=_optional_text(item, "start"), end_time=_optional_text(item, "end")))
        abilities = await self._abilities(session, devId, channel)
        for window in windows:
            why = storage_refusal(abilities, window.store_type or 0)
            if why:
                raise not_supported(why)
        await self.services.recording.add_policy(session, devId, channel, windows)
        await self._audit_setting(request, session, "web-add-record-windows",
                                  f"{devId} channel {channel}: {len(windows)}")
        return await self._windowsjson_reply(request, session, devId, channel, 201)

    async def delete_record_window(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                                   devId: str, channel: int) -> bytes:  # noqa: N803
        policy_id = _int(body.get("id"), "id")
        await self.services.recording.delete_policy(session, devId, channel, policy_id)
        await self._audit_setting(request, session, "web-delete-record-window",
                                  f"{devId} channel {channel}: {policy_id}")
        return json_reply(request, 204)

    async def _windowsjson_reply(self, request: IRequest, session: LoginSession, dev_id: str, channel: int,
                             status: int) -> bytes:
        policies = await self.services.recording.get_policies(session, dev_id, channel)
        return json_reply(request, status, {"maxPerDay": MAX_WINDOWS_A_DAY, "windows": [
            {"id": p.policy_id, "week": p.week, "start": p.start_time, "end": p.end_time,
             "storage": STORAGE_NAMES.get(p.store_type, "local"), "stream": STREAM_NAMES.get(p.stream_type, "main")}
            for p in sorted(policies, key=lambda p: (p.week, p.start_time))]})

    async def full_day_recording(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                                 channel: int) -> bytes:
        why = recording_refusal(await self._abilities(session, devId, channel), "full-day recording")
        if why:
            raise not_supported(why)
        full = await self.services.recording.get_full_day(session, devId, channel)
        return json_reply(request, 200, {"enabled": bool(full)})

    async def set_full_day_recording(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                                     devId: str, channel: int) -> bytes:  # noqa: N803
        enabled = _bool(body, "enabled")
        why = recording_refusal(await self._abilities(session, devId, channel), "full-day recording")
        if why:
            raise not_supported(why)
        await self.services.recording.set_full_day(session, devId, channel, int(enabled))
        await self._audit_setting(request, session, "web-full-day-recording",
                                  f"{devId} channel {channel}: {'on' if enabled else 'off'}")
        return json_reply(request, 200, {"enabled": bool(await self.services.recording.get_full_day(session, devId, channel))})

    async def loop_recording(self, request: IRequest, session: LoginSession, body: None, devId: str) -> bytes:  # noqa: N803
        why = local_store_refusal(await self._abilities(session, devId), "loop recording")
        if why:
            raise not_supported(why)
        return json_reply(request, 200, {"enabled": bool(await self.services.recording.get_loop(session, devId))})

    async def set_loop_recording(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                                 devId: str) -> bytes:  # noqa: N803
        enabled = _bool(body, "enabled")
        why = local_store_refusal(await self._abilities(session, devId), "loop recording")
        if why:
            raise not_supported(why)
        await self.services.recording.set_loop(session, devId, int(enabled))
        await self._audit_setting(request, session, "web-loop-recording", f"{devId}: {'on' if enabled else 'off'}")
        return json_reply(request, 200, {"enabled": bool(await self.services.recording.get_loop(session, devId))})

    # Recordings on the camera (72H) --------------------------------------------------------------------

    async def recordings(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                         channel: int) -> bytes:
        """One page (10) of the camera's files that overlap *day* from *from* to *to* (the camera's local
        time, Beijing time as §7.4's timestamps; the day defaults to today there)."""
        day_text = _query(request, "day")
        if day_text:
            match = DAY.match(day_text)
            if match is None:
                raise bad_request("day must be YYYY-MM-DD")
            try:
                day = datetime.date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                raise bad_request("day must be YYYY-MM-DD") from None
        else:
            now = self.services.devices.accounts.clock.seconds()
            day = datetime.datetime.fromtimestamp(now, BEIJING).date()
        first, last = _minute(_query(request, "from") or "00:00", "from"), _minute(_query(request, "to") or "24:00",
                                                                                   "to")
        if first >= last:
            raise bad_request("from must be before to")
        page_no = _int(_query(request, "page") or "1", "page")
        if page_no < 1:
            raise bad_request("page counts from 1")
        midnight = datetime.datetime(day.year, day.month, day.day)
        start = midnight + datetime.timedelta(minutes=first)
        end = midnight + datetime.timedelta(minutes=last)
        why = local_store_refusal(await self._abilities(session, devId, channel, own=False),
                                  "searching the camera's recordings")
        if why:
            raise not_supported(why)
        page = await self.services.recording.search(session, devId, channel, f"{start:%Y%m%d%H%M}",
                                                    f"{end:%Y%m%d%H%M}", page_no)
        return json_reply(request, 200, {
            "day": f"{day:%Y-%m-%d}", "total": page.total, "page": page.page_no, "pageSize": PAGE_SIZE,
            "pages": max(1, -(-page.total // PAGE_SIZE)), "recordings": [
                {"fileName": f.file_name, "size": f.file_size, "start": _iso(f.start_time), "end": _iso(f.end_time),
                 "durationSeconds": _duration(f.start_time, f.end_time)} for f in page.files]})

    async def _audit_setting(self, request: IRequest, session: LoginSession, action: str, what: str) -> None:
        await self.services.accounts.audit(action, session.account, peer_of(request), OK, f"DevID {what}")


# Helpers --------------------------------------------------------------------------------------------


def _video_view(channel: int, stream: int, p: VideoParams) -> dict[str, Any]:
    return {"channel": channel, "stream": STREAM_NAMES[stream],
            "frameSize": FRAME_SIZE_NAMES.get(p.frame_size or 0), "frameRate": p.frame_rate,
            "rateType": RATE_TYPE_NAMES.get(p.rate_type or 0),
            "bitRate": m.BIT_RATES_KBPS.get(p.bit_rate or 0),
            "audioInput": None if p.audio_input is None else bool(p.audio_input)}


def _stream(value: Any) -> int:
    if value not in STREAMS:
        raise bad_request("stream must be main or sub")
    return STREAMS[value]


def _choice(body: Mapping[str, Any], name: str, names: Mapping[Any, int], default: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or value not in names:
        raise bad_request(f"{name} must be one of {', '.join(str(n) for n in names)}")
    return names[value]


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string")
    return value


def _optional_text(body: Mapping[str, Any], name: str) -> str | None:
    return None if body.get(name) is None else _text(body, name)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise bad_request(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an integer") from None


def _optional_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{name} must be an integer")
    return value


def _bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false")
    return value


def _query(request: IRequest, name: str) -> str:
    values = (request.args or {}).get(name.encode())
    return values[0].decode("utf-8", "replace") if values else ""


def _minute(text: str, name: str) -> int:
    """HH:MM as minutes of the day (24:00 is the day's end)."""
    match = TIME_OF_DAY.match(text)
    if match is None or int(match[2]) > 59 or int(match[1]) * 60 + int(match[2]) > 24 * 60:
        raise bad_request(f"{name} must be HH:MM, 00:00 to 24:00")
    return int(match[1]) * 60 + int(match[2])


def _iso(text: str) -> str:
    """72H's YYYYMMDDHHMM as ISO 8601 (the camera's local time): 2026-12-01T08:05."""
    return f"{text[0:4]}-{text[4:6]}-{text[6:8]}T{text[8:10]}:{text[10:12]}" if len(text) >= 12 else text


def _duration(start: str, end: str) -> int | None:
    try:
        a = datetime.datetime.strptime(start[:12], "%Y%m%d%H%M")
        b = datetime.datetime.strptime(end[:12], "%Y%m%d%H%M")
    except ValueError:
        return None
    return int((b - a).total_seconds())


__all__ = ["SettingsApi", "not_supported"]
