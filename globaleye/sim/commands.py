"""How a simulated camera answers the platform's commands (§7.5.6-§7.5.31, 60H-7BH).

One small handler per request class, registered in :data:`HANDLERS`.  Each
checks the request against the device as a real camera would (wrong channel,
value outside the spec's range, a rule of the device broken) and either changes
:class:`~globaleye.sim.state.CameraState` and returns the response's data, or
raises :class:`Refused` with a non-zero Result.  :func:`answer` does what is
common to all: the DevID check, "is this command for my kind of device", the
response's Result and DevID, and never letting an exception escape, because a
device that drops a command makes the platform wait for a timeout, whereas one
that answers Result 255 tells it at once.

The spec only says "0 success, other error" for most messages; the simulator
uses the codes of :class:`SimResult` throughout, so a test or a log says *why*
a command was refused.  Where a message has codes of its own (6AH, 73H) those
are used.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import string
from collections.abc import Callable, Iterable
from typing import Any, cast

import attrs
from twisted.logger import Logger

from globaleye.device.protocol import messages as m
from globaleye.sim import state as st
from globaleye.sim.state import (
    SUPPORTED_FRAME_SIZES,
    CameraState,
    CloudAccount,
    NvrBinding,
    StoredPicturePolicy,
    WifiConfig,
)

__all__ = ["HANDLERS", "Refused", "SimResult", "answer"]

log = Logger()


class SimResult(enum.IntEnum):
    """The simulator's Result codes (the spec: "0 success, other error")."""

    OK = 0
    NO_SUCH_CHANNEL = 1  # ChannelNo outside 0..ChannelNum-1 (6AH/6BH define 1 so too)
    BAD_VALUE = 2  # a value outside the spec's range (6AH defines 2 so too)
    REFUSED = 3  # a device rule: >4 record windows a day, overlap, channel already bound
    NOT_FOUND = 4  # no such PolicyID / binding
    NOT_SUPPORTED = 5  # the device lacks it: NVR command to an IPC, PTZ without a head
    WRONG_DEVICE = 6  # DevID is not this device's
    OTHER = 255  # unknown command, or the simulator failed


class Refused(Exception):
    """Raised by a handler: answer with ``result``; ``why`` goes to the log only."""

    def __init__(self, result: int, why: str) -> None:
        super().__init__(why)
        self.result = result
        self.why = why


Fields = dict[str, Any]
HandlerFunc = Callable[[CameraState, Any], Fields]


@attrs.frozen
class Handler:
    """One row of the table: the function and the device types the command is for."""

    func: HandlerFunc
    devices: frozenset[int]


IPC_LIKE = frozenset({m.DevType.IPCAM, m.DevType.DVR})  # §7.5 "(IPC)"
NVR_ONLY = frozenset({m.DevType.NVR})  # §7.5 "(NVR)"
ANY_DEVICE = IPC_LIKE | NVR_ONLY  # §7.5 "(IPC、NVR)"

#: Request class -> handler.  Requests missing here (31H-36H, 74H: the device
#: sends those, it does not receive them) are answered with Result 255.
HANDLERS: dict[type[m.Message], Handler] = {}


def handles(request_cls: type[m.Message],
            devices: frozenset[int] = ANY_DEVICE) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register the decorated function as the handler of ``request_cls``."""

    def register(func: HandlerFunc) -> HandlerFunc:
        HANDLERS[request_cls] = Handler(func, devices)
        return func

    return register


def answer(state: CameraState, request: m.Message) -> m.Message:
    """The device's response to one platform request; never raises for a request.

    The response always carries the device's own DevID.  A non-request (a
    response object) is a programming error of the caller and raises TypeError.
    """
    # response_type() is typed type[Message]; every 60H-7BH answer is a Response.
    response_cls = cast(type[m.Response], m.response_type(type(request)))
    handler = HANDLERS.get(type(request))
    fields: Fields = {}
    result: int = SimResult.OK
    dev_id = str(getattr(request, "dev_id", "")).strip()
    kind = state.dev_type if state.dev_type in ANY_DEVICE else m.DevType.IPCAM
    if handler is None:
        result = SimResult.OTHER
        log.debug("camera {dev_id}: no handler for <{root}>", dev_id=state.dev_id, root=request.ROOT)
    elif dev_id != state.dev_id:
        result = SimResult.WRONG_DEVICE
        log.debug("camera {dev_id}: <{root}> addressed to {other!r}", dev_id=state.dev_id,
                  root=request.ROOT, other=dev_id)
    elif kind not in handler.devices:
        result = SimResult.NOT_SUPPORTED
        log.debug("camera {dev_id}: <{root}> is not for device type {kind}", dev_id=state.dev_id,
                  root=request.ROOT, kind=int(kind))
    else:
        try:
            fields = handler.func(state, request)
        except Refused as e:
            result = e.result
            log.debug("camera {dev_id} refuses <{root}> with Result {result}: {why}", dev_id=state.dev_id,
                      root=request.ROOT, result=e.result, why=e.why)
        except Exception:
            result = SimResult.OTHER
            fields = {}
            log.failure("camera {dev_id}: handler for <{root}> failed", dev_id=state.dev_id, root=request.ROOT)
    if result != SimResult.OK:
        fields = {}
    return response_cls(result=int(result), dev_id=state.dev_id, **fields)


# --------------------------------------------------------------------------- checks


def _channel(state: CameraState, channel_no: int, result: int = SimResult.NO_SUCH_CHANNEL) -> int:
    if not state.has_channel(channel_no):
        raise Refused(result, f"ChannelNo {channel_no} not in 0..{state.channel_num - 1}")
    return channel_no


def _one_of(name: str, value: int | None, allowed: Iterable[int], result: int = SimResult.BAD_VALUE) -> None:
    """None passes: in 60H/6AH an absent element means "leave unchanged"."""
    allowed = [int(a) for a in allowed]
    if value is not None and value not in allowed:
        raise Refused(result, f"{name} {value} not in {allowed}")


def _between(name: str, value: int | None, low: int, high: int, result: int = SimResult.BAD_VALUE) -> None:
    if value is not None and not low <= value <= high:
        raise Refused(result, f"{name} {value} not in {low}..{high}")


_HHMM = re.compile(r"(\d{1,2}):(\d{2})")


def _minute_of_day(name: str, value: str, *, end: bool = False) -> int:
    """ "HH:MM" -> minutes since midnight; "24:00" is accepted as an end time."""
    match = _HHMM.fullmatch(value.strip())
    if match is None:
        raise Refused(SimResult.BAD_VALUE, f"{name} {value!r} is not HH:MM")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise Refused(SimResult.BAD_VALUE, f"{name} {value!r} is not a time of day")
    return hours * 60 + minutes


def _window(start: str, end: str) -> tuple[int, int]:
    """A same-day window [start, end): the platform splits windows that cross midnight."""
    low, high = _minute_of_day("StartTime", start), _minute_of_day("EndTime", end, end=True)
    if low >= high:
        raise Refused(SimResult.BAD_VALUE, f"window {start}-{end} is empty or crosses midnight")
    return low, high


def _overlapping(windows: list[tuple[int, int]]) -> bool:
    """Half-open windows: 10:00-12:00 and 12:00-14:00 do not overlap."""
    ordered = sorted(windows)
    return any(a[1] > b[0] for a, b in zip(ordered, ordered[1:], strict=False))


def _is_hex(text: str) -> bool:
    return all(c in string.hexdigits for c in text)


def _search_time(name: str, value: str) -> str:
    """72H "YYYYMMDDHHMM" (a 14-digit time with seconds is tolerated and truncated)."""
    text = value.strip()
    if len(text) == 14 and text.isdigit():
        text = text[:12]
    if len(text) != 12 or not text.isdigit():
        raise Refused(SimResult.BAD_VALUE, f"{name} {value!r} is not YYYYMMDDHHMM")
    month, day, hour, minute = int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59):
        raise Refused(SimResult.BAD_VALUE, f"{name} {value!r} is not a valid time")
    return text


def _ipv4(name: str, value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise Refused(SimResult.BAD_VALUE, f"{name} {value!r} is not an IPv4 address") from None


# --------------------------------------------------------------------------- 60H-66H (IPC)


@handles(m.SetVideoParamsRequest, IPC_LIKE)
def _set_video(state: CameraState, req: m.SetVideoParamsRequest) -> Fields:
    """60H: change one stream's encoding; absent (None) fields are left alone.

    Refused (nothing changed): ChannelNo unknown (1); StreamType not 1/2,
    FrameSize not one this stream encodes (main 720P/VGA/D1, sub CIF/QVGA/D1,
    as 32H advertised), FrameRate outside 2..25 (the 61H table and the example;
    the 60H table's 5..25 would refuse what 61H may report), RateType not 1/2,
    BitRate not 1..13, AudioInput not 0/1 (2).

    The live RTSP stream follows: new sessions get the new size, rate and
    audio; sessions already playing keep theirs until they end (their SDP said
    so; docs/protocol.md).  ``state.on_video_changed`` is told, so the new loop
    is encoded before the next viewer asks.
    """
    _channel(state, req.channel_no)
    _one_of("StreamType", req.stream_type, SUPPORTED_FRAME_SIZES)
    _one_of("FrameSize", req.frame_size, SUPPORTED_FRAME_SIZES[req.stream_type])
    _between("FrameRate", req.frame_rate, 2, 25)
    _one_of("RateType", req.rate_type, m.RateType)
    _one_of("BitRate", req.bit_rate, m.BIT_RATES_KBPS)
    _one_of("AudioInput", req.audio_input, (0, 1))
    video = state.video(req.channel_no, req.stream_type)
    before = attrs.evolve(video)
    for name in ("frame_size", "frame_rate", "rate_type", "bit_rate", "audio_input"):
        value = getattr(req, name)
        if value is not None:
            setattr(video, name, value)
    if video != before:
        width, height = video.pixels
        log.info("camera {dev_id}: stream {ch}/{st} now {w}x{h} (FrameSize {size}), {fps} fps, BitRate {rate} "
                 "({kbps} kbit/s), RateType {rt}, AudioInput {audio} (60H); new live sessions get it",
                 dev_id=state.dev_id, ch=req.channel_no, st=req.stream_type, w=width, h=height,
                 size=int(video.frame_size), fps=video.frame_rate, rate=int(video.bit_rate),
                 kbps=m.BIT_RATES_KBPS[video.bit_rate], rt=int(video.rate_type), audio=int(video.audio_input))
        if state.on_video_changed is not None:
            try:
                state.on_video_changed(req.channel_no, req.stream_type)
            except Exception:  # the setting is made: the answer must still be 0
                log.failure("camera {dev_id}: preparing stream {ch}/{st} failed", dev_id=state.dev_id,
                            ch=req.channel_no, st=req.stream_type)
    return {}


@handles(m.GetVideoParamsRequest, IPC_LIKE)
def _get_video(state: CameraState, req: m.GetVideoParamsRequest) -> Fields:
    """61H: one stream's encoding.  Refused: ChannelNo unknown (1), StreamType not 1/2 (2)."""
    _channel(state, req.channel_no)
    _one_of("StreamType", req.stream_type, SUPPORTED_FRAME_SIZES)
    return attrs.asdict(state.video(req.channel_no, req.stream_type))


@handles(m.QueryWifiRequest, IPC_LIKE)
def _query_wifi(state: CameraState, req: m.QueryWifiRequest) -> Fields:
    """62H: the 10 strongest visible hotspots, InUse on the one joined through 63H."""
    return {"wifi_ssid": state.wifi_scan()}


@handles(m.SetWifiRequest, IPC_LIKE)
def _set_wifi(state: CameraState, req: m.SetWifiRequest) -> Fields:
    """63H: join a network.

    §7.5.9: the device checks the parameters, answers at once and reports the
    outcome later through 34H (queued in ``state.pending_reports``).  So only
    malformed parameters are refused here (2): SSID empty or over 32 bytes,
    Security not 0..5, a password that cannot be a key of that security (WEP
    5/13 characters or 10/26 hex digits, WPA 8..63 characters or 64 hex
    digits, "other" non-empty).  An SSID out of range, or with another
    security, is accepted and then fails to join, as on a real device.
    """
    ssid = req.ssid
    if not ssid or len(ssid.encode()) > 32:
        raise Refused(SimResult.BAD_VALUE, f"SSID {ssid!r} is not 1..32 bytes")
    _one_of("Security", req.security, m.WifiSecurity)
    password = req.password
    if req.security == m.WifiSecurity.WEP:
        valid = len(password) in (5, 13) or (len(password) in (10, 26) and _is_hex(password))
    elif req.security in (m.WifiSecurity.WPA_PSK, m.WifiSecurity.WPA_WPA2_PSK, m.WifiSecurity.WPA2_PSK):
        valid = 8 <= len(password) <= 63 or (len(password) == 64 and _is_hex(password))
    elif req.security == m.WifiSecurity.OTHER:
        valid = bool(password)
    else:
        valid = True
    if not valid:
        raise Refused(SimResult.BAD_VALUE, f"password unfit for Security {req.security}")
    seen = next((h for h in state.hotspots if h.ssid == ssid), None)
    joined = seen is not None and seen.security == req.security
    state.wifi = WifiConfig(ssid=ssid, security=req.security, password=password, joined=joined)
    if joined:
        desc = f"Wi-Fi connected to {ssid}"
    elif seen is None:
        desc = f"Wi-Fi connection to {ssid} failed: network not found"
    else:
        desc = f"Wi-Fi connection to {ssid} failed: security mismatch"
    state.pending_reports.append(m.ExceptionReportRequest(
        dev_id=state.dev_id, channel_no=0, exception_type=m.ExceptionType.UNKNOWN, exception_desc=desc))
    return {}


@handles(m.PtzRequest, IPC_LIKE)
def _ptz(state: CameraState, req: m.PtzRequest) -> Fields:
    """64H: move the head one step (the sim has no motor running until "stop").

    Refused: ChannelNo unknown (1), PtzDirection not 0..4 (2), no PTZ head
    (PTZFlag 0 in 32H) (5).  Every accepted command is logged in
    ``state.ptz_log`` (the last 20).
    """
    _channel(state, req.channel_no)
    _one_of("PtzDirection", req.ptz_direction, m.PtzDirection)
    if not state.ptz_flag:
        raise Refused(SimResult.NOT_SUPPORTED, "no PTZ head")
    position = state.ptz_position(req.channel_no)
    direction = m.PtzDirection(req.ptz_direction)
    dx = {m.PtzDirection.LEFT: -st.PTZ_STEP, m.PtzDirection.RIGHT: st.PTZ_STEP}.get(direction, 0)
    dy = {m.PtzDirection.DOWN: -st.PTZ_STEP, m.PtzDirection.UP: st.PTZ_STEP}.get(direction, 0)
    position.pan = min(max(position.pan + dx, st.PAN_RANGE[0]), st.PAN_RANGE[1])
    position.tilt = min(max(position.tilt + dy, st.TILT_RANGE[0]), st.TILT_RANGE[1])
    position.moving = direction
    state.ptz_log.append(st.PtzEvent(at=state.clock(), channel_no=req.channel_no, direction=direction))
    del state.ptz_log[:-st.PTZ_LOG_SIZE]
    return {}


@handles(m.SetCloudAccountRequest, IPC_LIKE)
def _set_cloud(state: CameraState, req: m.SetCloudAccountRequest) -> Fields:
    """65H: store the 天翼云 account.  An empty URL clears it.

    Refused: no cloud storage (EStoreFlag 0) (5); a URL that is not http(s)
    or an account without a URL (2).
    """
    if not state.e_store_flag:
        raise Refused(SimResult.NOT_SUPPORTED, "no cloud storage")
    url = req.url.strip()
    if url and not url.lower().startswith(("http://", "https://")):
        raise Refused(SimResult.BAD_VALUE, f"URL {url!r} is not http(s)")
    if not url and req.account:
        raise Refused(SimResult.BAD_VALUE, "account without URL")
    state.cloud = CloudAccount(url=url, account=req.account, password=req.password)
    return {}


@handles(m.GetCloudAccountRequest, IPC_LIKE)
def _get_cloud(state: CameraState, req: m.GetCloudAccountRequest) -> Fields:
    """66H: the stored account (empty strings when none).  Refused: no cloud storage (5)."""
    if not state.e_store_flag:
        raise Refused(SimResult.NOT_SUPPORTED, "no cloud storage")
    return attrs.asdict(state.cloud)


# --------------------------------------------------------------------------- 67H-6BH


#: §7.5.13: "一天最多可设置 4 条策略" — per channel and weekday.
MAX_RECORD_WINDOWS_A_DAY = 4


def _check_store(state: CameraState, store_type: int, *, cloud: int, local: int) -> None:
    _one_of("StoreType", store_type, (local, cloud))
    if store_type == cloud and not state.e_store_flag:
        raise Refused(SimResult.NOT_SUPPORTED, "no cloud storage")
    if store_type == local and not state.local_store_flag:
        raise Refused(SimResult.NOT_SUPPORTED, "no local storage")


def _stream_types(state: CameraState) -> tuple[int, ...]:
    """§7.5.13: an NVR records its main stream only."""
    return (m.StreamType.MAIN,) if state.is_nvr else (m.StreamType.MAIN, m.StreamType.SUB)


@handles(m.AddRecordPolicyRequest)
def _add_record_policy(state: CameraState, req: m.AddRecordPolicyRequest) -> Fields:
    """67H: add weekly recording windows; all or nothing.

    §7.5.13 leaves the overlap check to the platform, but a real device does
    not trust it: refused are ChannelNo unknown (1); StoreType/StreamType/Week
    out of range or bad HH:MM, an empty window or one crossing midnight (2); a
    storage the device lacks (5); more than 4 windows on one weekday, or
    windows overlapping each other or the stored ones (3).  IDs are assigned
    device-wide (§7.5.14: "设备内全局唯一").
    """
    _channel(state, req.channel_no)
    existing = state.record_policies.get(req.channel_no, [])
    by_day: dict[int, list[tuple[int, int]]] = {}
    for entry in existing:
        by_day.setdefault(entry.week, []).append(_window(entry.start_time, entry.end_time))
    for policy in req.week_policy:
        _check_store(state, policy.store_type, local=m.RecordStoreType.LOCAL, cloud=m.RecordStoreType.ESTORE)
        _one_of("StreamType", policy.stream_type, _stream_types(state))
        _between("Week", policy.week, 1, 7)
        by_day.setdefault(policy.week, []).append(_window(policy.start_time, policy.end_time))
    for week, windows in by_day.items():
        if len(windows) > MAX_RECORD_WINDOWS_A_DAY:
            raise Refused(SimResult.REFUSED, f"{len(windows)} windows on weekday {week}")
        if _overlapping(windows):
            raise Refused(SimResult.REFUSED, f"overlapping windows on weekday {week}")
    added = []
    for policy in req.week_policy:
        added.append(m.RecordPolicyEntry(
            policy_id=state.next_record_policy_id, store_type=policy.store_type,
            stream_type=policy.stream_type, week=policy.week, start_time=policy.start_time.strip(),
            end_time=policy.end_time.strip()))
        state.next_record_policy_id += 1
    state.record_policies[req.channel_no] = existing + added
    return {}


@handles(m.GetRecordPolicyRequest)
def _get_record_policy(state: CameraState, req: m.GetRecordPolicyRequest) -> Fields:
    """68H: the channel's windows by weekday and start.  Refused: ChannelNo unknown (1)."""
    _channel(state, req.channel_no)
    entries = sorted(state.record_policies.get(req.channel_no, []), key=lambda e: (e.week, e.start_time))
    return {"week_policy": tuple(entries)}


@handles(m.DeleteRecordPolicyRequest)
def _delete_record_policy(state: CameraState, req: m.DeleteRecordPolicyRequest) -> Fields:
    """69H: delete one window.  Refused: ChannelNo unknown (1), no such PolicyID on it (4)."""
    _channel(state, req.channel_no)
    entries = state.record_policies.get(req.channel_no, [])
    kept = [e for e in entries if e.policy_id != req.policy_id]
    if len(kept) == len(entries):
        raise Refused(SimResult.NOT_FOUND, f"no record policy {req.policy_id} on channel {req.channel_no}")
    state.record_policies[req.channel_no] = kept
    return {}


@handles(m.SetRecordParamsRequest)
def _set_record_params(state: CameraState, req: m.SetRecordParamsRequest) -> Fields:
    """6AH (our definition): how a channel records; None leaves a field alone.

    Refused with the 6AH codes: ChannelNo unknown (1); StreamType not 1/2 (an
    NVR: 1 only), StoreType not 0/1 or a storage the device lacks, AudioInput
    not 0/1, FileDuration not 1..60 minutes (2).
    """
    _channel(state, req.channel_no)
    _one_of("StreamType", req.stream_type, _stream_types(state))
    if req.store_type is not None:
        try:
            _check_store(state, req.store_type, local=m.RecordStoreType.LOCAL, cloud=m.RecordStoreType.ESTORE)
        except Refused as e:
            raise Refused(SimResult.BAD_VALUE, e.why) from None
    _one_of("AudioInput", req.audio_input, (0, 1))
    _between("FileDuration", req.file_duration, 1, 60)
    params = state.recording(req.channel_no)
    for name in ("stream_type", "store_type", "audio_input", "file_duration"):
        value = getattr(req, name)
        if value is not None:
            setattr(params, name, value)
    return {}


@handles(m.GetRecordParamsRequest)
def _get_record_params(state: CameraState, req: m.GetRecordParamsRequest) -> Fields:
    """6BH (our definition).  Refused: ChannelNo unknown (1)."""
    _channel(state, req.channel_no)
    return attrs.asdict(state.recording(req.channel_no))


# --------------------------------------------------------------------------- 6CH-6DH


@handles(m.RebootRequest)
def _reboot(state: CameraState, req: m.RebootRequest) -> Fields:
    """6CH: accepted; ``reboot_requested`` counts them (the session decides whether to drop)."""
    state.reboot_requested += 1
    return {}


@handles(m.UpgradeRequest)
def _upgrade(state: CameraState, req: m.UpgradeRequest) -> Fields:
    """6DH: §7.5.17 "simple check of the parameters, answer at once".

    Refused (2): NewDevVer, FtpIP or FtpFileName empty, FtpPort 0.  The order
    is remembered as ``upgrade_version``/``upgrade_url`` (no password in it).
    """
    if not req.new_dev_ver.strip():
        raise Refused(SimResult.BAD_VALUE, "NewDevVer empty")
    if not req.ftp_ip.strip() or not req.ftp_file_name.strip():
        raise Refused(SimResult.BAD_VALUE, "FtpIP or FtpFileName empty")
    _between("FtpPort", req.ftp_port, 1, m.PORT_MAX)
    user = f"{req.ftp_account}@" if req.ftp_account else ""
    state.upgrade_version = req.new_dev_ver.strip()
    state.upgrade_url = f"ftp://{user}{req.ftp_ip.strip()}:{req.ftp_port}/{req.ftp_file_name.strip().lstrip('/')}"
    return {}


# --------------------------------------------------------------------------- 6EH-71H (NVR)


def _onvif(req: m.NvrBindRequest | m.NvrModifyBindingRequest) -> NvrBinding:
    ipcam = req.ipcam_dev_id.strip()
    if not ipcam:
        raise Refused(SimResult.BAD_VALUE, "IpcamDevID empty")
    _between("OnvifPort", req.onvif_port, 1, m.PORT_MAX)
    return NvrBinding(ipcam_dev_id=ipcam, ipcam_local_ip=_ipv4("IpcamLocalIP", req.ipcam_local_ip),
                      onvif_port=req.onvif_port, onvif_account=req.onvif_account,
                      onvif_password=req.onvif_password)


@handles(m.NvrBindRequest, NVR_ONLY)
def _nvr_bind(state: CameraState, req: m.NvrBindRequest) -> Fields:
    """6EH: bind an IPC to a free channel (rebinding the same IPC updates it).

    Refused: ChannelNo unknown (1); IpcamDevID empty, IpcamLocalIP not IPv4,
    OnvifPort 0 (2); channel bound to another IPC, or this IPC already on
    another channel (3).  An IPC answers 5 (see :func:`answer`).
    """
    _channel(state, req.channel_no)
    binding = _onvif(req)
    current = state.nvr_bindings.get(req.channel_no)
    if current is not None and current.ipcam_dev_id != binding.ipcam_dev_id:
        raise Refused(SimResult.REFUSED, f"channel {req.channel_no} records {current.ipcam_dev_id}")
    for channel, other in state.nvr_bindings.items():
        if channel != req.channel_no and other.ipcam_dev_id == binding.ipcam_dev_id:
            raise Refused(SimResult.REFUSED, f"{binding.ipcam_dev_id} already on channel {channel}")
    state.nvr_bindings[req.channel_no] = binding
    return {}


@handles(m.NvrModifyBindingRequest, NVR_ONLY)
def _nvr_modify(state: CameraState, req: m.NvrModifyBindingRequest) -> Fields:
    """6FH: the IPC's address changed.  §7.5.19: an unknown IpcamDevID is ignored
    (Result 0).  Refused: bad address or port (2)."""
    binding = _onvif(req)
    for channel, current in state.nvr_bindings.items():
        if current.ipcam_dev_id == binding.ipcam_dev_id:
            state.nvr_bindings[channel] = binding
    return {}


@handles(m.NvrUnbindRequest, NVR_ONLY)
def _nvr_unbind(state: CameraState, req: m.NvrUnbindRequest) -> Fields:
    """70H: free a channel and, as §7.5.20 says, drop its recording policies.

    Refused: ChannelNo unknown (1), channel not bound (4).
    """
    _channel(state, req.channel_no)
    if state.nvr_bindings.pop(req.channel_no, None) is None:
        raise Refused(SimResult.NOT_FOUND, f"channel {req.channel_no} not bound")
    state.record_policies.pop(req.channel_no, None)
    return {}


@handles(m.NvrQueryBindingRequest, NVR_ONLY)
def _nvr_query(state: CameraState, req: m.NvrQueryBindingRequest) -> Fields:
    """71H: bound channels only (§7.5.21), by channel number."""
    return {"channel": tuple(m.IpcamBinding(channel_no=channel, ipcam_dev_id=b.ipcam_dev_id)
                             for channel, b in sorted(state.nvr_bindings.items()))}


# --------------------------------------------------------------------------- 72H-73H recordings


@handles(m.RecordSearchRequest)
def _record_search(state: CameraState, req: m.RecordSearchRequest) -> Fields:
    """72H: files overlapping [StartTime, EndTime), oldest first, 10 a page.

    A file [s, e) matches when s < EndTime and e > StartTime, so "08:00 to
    09:00" is exactly the twelve 5-minute files of that hour.  A page past
    the last is empty (Result 0, TotalRecordNum still right).  Refused:
    ChannelNo unknown (1); times not YYYYMMDDHHMM, StartTime after EndTime,
    PageNo 0 (2).
    """
    _channel(state, req.channel_no)
    start, end = _search_time("StartTime", req.start_time), _search_time("EndTime", req.end_time)
    if start > end:
        raise Refused(SimResult.BAD_VALUE, f"StartTime {start} after EndTime {end}")
    if req.page_no < 1:
        raise Refused(SimResult.BAD_VALUE, "PageNo counts from 1")
    found = [f for f in state.recordings(req.channel_no) if f.start_time < end and f.end_time > start]
    size = m.RecordSearchRequest.PAGE_SIZE
    first = (req.page_no - 1) * size
    return {"total_record_num": len(found), "file": tuple(found[first:first + size])}


#: 73H's own codes (see :class:`messages.RecordDeleteResponse`).
NO_SUCH_FILE = 1
FILE_IN_USE = 2


@handles(m.RecordDeleteRequest)
def _record_delete(state: CameraState, req: m.RecordDeleteRequest) -> Fields:
    """73H (our definition): delete one recording named by 72H.

    Refused with the 73H codes: ChannelNo unknown or no such file on it (1),
    file being written or played back (``state.files_in_use``) (2).
    """
    _channel(state, req.channel_no, NO_SUCH_FILE)
    name = req.file_name.strip()
    files = state.recordings(req.channel_no)
    index = next((i for i, f in enumerate(files) if f.file_name == name), None)
    if index is None:
        raise Refused(NO_SUCH_FILE, f"no file {name!r} on channel {req.channel_no}")
    if name in state.files_in_use:
        raise Refused(FILE_IN_USE, f"{name} is in use")
    del files[index]
    return {}


# --------------------------------------------------------------------------- 75H-77H pictures (IPC)


#: The spec sets no limit on picture windows; a device's memory does (our choice).
MAX_PICTURE_POLICIES = 8
MAX_PICTURE_INTERVAL = 86400


@handles(m.AddPicturePolicyRequest, IPC_LIKE)
def _add_picture_policy(state: CameraState, req: m.AddPicturePolicyRequest) -> Fields:
    """75H: add snapshot policies for one store type; all or nothing.

    Interval 0 is a single snapshot at StartTime (§7.5.24: FTP/SMS push sets
    start == end), so it needs start == end; Interval 1..86400 s needs a
    same-day window start < end.  Refused: ChannelNo unknown (1); StoreType not
    0/1, bad times, Interval out of range or inconsistent with the times (2);
    cloud without cloud storage (5); more than 8 policies for this channel and
    store type, overlapping windows or two snapshots at one time (3).
    """
    _channel(state, req.channel_no)
    _one_of("StoreType", req.store_type, m.PictureStoreType)
    if req.store_type == m.PictureStoreType.ESTORE and not state.e_store_flag:
        raise Refused(SimResult.NOT_SUPPORTED, "no cloud storage")
    stored = state.picture_policies.get(req.channel_no, [])
    same_store = [p.entry for p in stored if p.store_type == req.store_type]
    windows: list[tuple[int, int]] = []
    shots: list[int] = []
    candidates: list[m.PicturePolicy | m.PicturePolicyEntry] = [*same_store, *req.day_policy]
    for policy in candidates:
        _between("Interval", policy.interval, 0, MAX_PICTURE_INTERVAL)
        if policy.interval == 0:
            at = _minute_of_day("StartTime", policy.start_time)
            if _minute_of_day("EndTime", policy.end_time) != at:
                raise Refused(SimResult.BAD_VALUE, "Interval 0 needs StartTime == EndTime")
            shots.append(at)
        else:
            windows.append(_window(policy.start_time, policy.end_time))
    if len(candidates) > MAX_PICTURE_POLICIES:
        raise Refused(SimResult.REFUSED, f"{len(candidates)} picture policies > {MAX_PICTURE_POLICIES}")
    if _overlapping(windows) or len(set(shots)) != len(shots):
        raise Refused(SimResult.REFUSED, "overlapping picture policies")
    for policy in req.day_policy:
        entry = m.PicturePolicyEntry(policy_id=state.next_picture_policy_id, interval=policy.interval,
                                     start_time=policy.start_time.strip(), end_time=policy.end_time.strip())
        state.next_picture_policy_id += 1
        stored = [*stored, StoredPicturePolicy(store_type=req.store_type, entry=entry)]
    state.picture_policies[req.channel_no] = stored
    return {}


@handles(m.GetPicturePolicyRequest, IPC_LIKE)
def _get_picture_policy(state: CameraState, req: m.GetPicturePolicyRequest) -> Fields:
    """76H: the channel's policies of one store type, by start time.

    Refused: ChannelNo unknown (1), StoreType not 0/1 (2).
    """
    _channel(state, req.channel_no)
    _one_of("StoreType", req.store_type, m.PictureStoreType)
    entries = [p.entry for p in state.picture_policies.get(req.channel_no, []) if p.store_type == req.store_type]
    return {"day_policy": tuple(sorted(entries, key=lambda e: (e.start_time, e.policy_id)))}


@handles(m.DeletePicturePolicyRequest, IPC_LIKE)
def _delete_picture_policy(state: CameraState, req: m.DeletePicturePolicyRequest) -> Fields:
    """77H: delete by PolicyID.  Refused: ChannelNo unknown (1), no such PolicyID on it (4)."""
    _channel(state, req.channel_no)
    stored = state.picture_policies.get(req.channel_no, [])
    kept = [p for p in stored if p.entry.policy_id != req.policy_id]
    if len(kept) == len(stored):
        raise Refused(SimResult.NOT_FOUND, f"no picture policy {req.policy_id} on channel {req.channel_no}")
    state.picture_policies[req.channel_no] = kept
    return {}


# --------------------------------------------------------------------------- 78H-7BH flags


@handles(m.SetFullDayRecordRequest)
def _set_full_day(state: CameraState, req: m.SetFullDayRecordRequest) -> Fields:
    """78H: per channel.  Refused: ChannelNo unknown (1), RecordFull not 0/1 (2)."""
    _channel(state, req.channel_no)
    _one_of("RecordFull", req.record_full, (0, 1))
    state.record_full[req.channel_no] = req.record_full
    return {}


@handles(m.GetFullDayRecordRequest)
def _get_full_day(state: CameraState, req: m.GetFullDayRecordRequest) -> Fields:
    """79H: per channel, 0 (record by policy) until set.  Refused: ChannelNo unknown (1)."""
    _channel(state, req.channel_no)
    return {"record_full": state.record_full.get(req.channel_no, 0)}


@handles(m.SetLoopRecordRequest)
def _set_loop(state: CameraState, req: m.SetLoopRecordRequest) -> Fields:
    """7AH: device-wide.  Refused: RecordLoop not 0/1 (2)."""
    _one_of("RecordLoop", req.record_loop, (0, 1))
    state.record_loop = req.record_loop
    return {}


@handles(m.GetLoopRecordRequest)
def _get_loop(state: CameraState, req: m.GetLoopRecordRequest) -> Fields:
    """7BH: device-wide loop flag."""
    return {"record_loop": state.record_loop}
