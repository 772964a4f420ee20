"""Camera control (§8.10–§8.17): PTZ, video parameters, Wi-Fi, reboot, firmware.

Every operation is :class:`~globaleye.app.access.CameraAccess`'s prelude (the camera is
the caller's, has the channel) and one command to the camera; an offline camera is
:class:`~globaleye.app.errors.DeviceOffline`.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import attrs
from twisted.logger import Logger

from globaleye.app.access import CameraAccess
from globaleye.app.devices import CLIENT_TO_DEVICE_FRAME, DEVICE_TO_CLIENT_FRAME
from globaleye.app.errors import check
from globaleye.app.ports import DeviceGateway
from globaleye.app.settings import ClientApiSettings
from globaleye.device.protocol import messages as m
from globaleye.store import Store
from globaleye.users.accounts import LoginSession


@attrs.frozen
class VideoParams:
    """§8.11/§8.12's encoding parameters (FrameSize in §8 codes; None: leave as it is)."""

    frame_size: int | None = None
    frame_rate: int | None = None
    rate_type: int | None = None
    bit_rate: int | None = None
    audio_input: int | None = None


@attrs.frozen
class Hotspot:
    ssid: str
    signal: int
    security: int
    in_use: int


@attrs.frozen
class FirmwareVersion:
    current: str
    newest: str


def check_stream(stream_type: int) -> None:
    check(stream_type in (1, 2), "StreamType must be 1 (main) or 2 (sub)")


class ControlService:
    log = Logger()

    def __init__(self, access: CameraAccess, store: Store, gateway: DeviceGateway,
                 settings: ClientApiSettings) -> None:
        self.access = access
        self.store = store
        self.gateway = gateway
        self.settings = settings

    async def ptz(self, session: LoginSession, dev_id: str, channel_no: int, direction: int) -> None:
        """§8.10: turn a camera the account may view."""
        check(direction in m.PtzDirection.__members__.values(), "PtzDirection must be 0..4")
        await self.access.require(session.account, dev_id, channel_no, own=False)
        await self.access.command(dev_id, m.PtzRequest(dev_id=dev_id, channel_no=channel_no,
                                                       ptz_direction=direction))

    async def get_video(self, session: LoginSession, dev_id: str, channel_no: int, stream_type: int) -> VideoParams:
        check_stream(stream_type)
        await self.access.require(session.account, dev_id, channel_no)
        answer = await self.access.command(dev_id, m.GetVideoParamsRequest(
            dev_id=dev_id, channel_no=channel_no, stream_type=stream_type))
        return VideoParams(DEVICE_TO_CLIENT_FRAME.get(answer.frame_size, 0), answer.frame_rate, answer.rate_type,
                           answer.bit_rate, answer.audio_input)

    async def set_video(self, session: LoginSession, dev_id: str, channel_no: int, stream_type: int,
                        params: VideoParams) -> None:
        check_stream(stream_type)
        size = params.frame_size
        check(size is None or size in CLIENT_TO_DEVICE_FRAME, "FrameSize must be 1 (720P), 2 (D1) or 3 (CIF)")
        check(params.frame_rate is None or 2 <= params.frame_rate <= 25, "FrameRate must be 2..25")
        check(params.rate_type in (None, 1, 2), "RateType must be 1 (CBR) or 2 (VBR)")
        check(params.bit_rate is None or params.bit_rate in m.BIT_RATES_KBPS, "BitRate must be 1..13")
        check(params.audio_input in (None, 0, 1), "AudioInput must be 0 or 1")
        await self.access.require(session.account, dev_id, channel_no)
        await self.access.command(dev_id, m.SetVideoParamsRequest(
            dev_id=dev_id, channel_no=channel_no, stream_type=stream_type,
            frame_size=None if size is None else int(CLIENT_TO_DEVICE_FRAME[size]), frame_rate=params.frame_rate,
            rate_type=params.rate_type, bit_rate=params.bit_rate, audio_input=params.audio_input))

    async def query_wifi(self, session: LoginSession, dev_id: str) -> list[Hotspot]:
        """§8.13: the 10 strongest hotspots the camera sees."""
        await self.access.require(session.account, dev_id)
        answer = await self.access.command(dev_id, m.QueryWifiRequest(dev_id=dev_id))
        hotspots = sorted(answer.wifi_ssid, key=lambda h: -h.signal)[:10]
        return [Hotspot(h.ssid, h.signal, h.security, h.in_use) for h in hotspots]

    async def set_wifi(self, session: LoginSession, dev_id: str, ssid: str, security: int, password: str) -> None:
        check(security in m.WifiSecurity.__members__.values(), "Security must be 0..5")
        await self.access.require(session.account, dev_id)
        await self.access.command(dev_id, m.SetWifiRequest(dev_id=dev_id, ssid=ssid, security=security,
                                                           password=password))

    async def reboot(self, session: LoginSession, dev_id: str) -> None:
        await self.access.require(session.account, dev_id)
        await self.access.command(dev_id, m.RebootRequest(dev_id=dev_id))

    def _newest(self, model: str) -> tuple[str, str] | None:
        return self.settings.firmware.get(model) or self.settings.firmware.get("*")

    async def _current_version(self, dev_id: str) -> tuple[str, str]:
        device = await self.store.get_device(dev_id)
        live = self.gateway.live_version(dev_id)
        current = live if live is not None else (device.dev_ver if device is not None else "")
        return current, device.model if device is not None else ""

    async def firmware_version(self, session: LoginSession, dev_id: str) -> FirmwareVersion:
        """§8.16: the running version and the newest configured for the model (the same when none)."""
        await self.access.require(session.account, dev_id, own=False)
        current, model = await self._current_version(dev_id)
        newest = self._newest(model)
        return FirmwareVersion(current, newest[0] if newest is not None else current)

    async def upgrade(self, session: LoginSession, dev_id: str) -> None:
        """§8.17: send the camera the newest configured firmware (nothing when it has it)."""
        await self.access.require(session.account, dev_id)
        current, model = await self._current_version(dev_id)
        newest = self._newest(model)
        if newest is None or newest[0] == current:
            self.log.info("upgrade of {dev_id} asked by {account}: already at the newest known firmware",
                          dev_id=dev_id, account=session.account)
            return  # nothing to do: §8.16 showed NewDevVer == CurDevVer
        url = urlsplit(newest[1])
        await self.access.command(dev_id, m.UpgradeRequest(
            dev_id=dev_id, new_dev_ver=newest[0], ftp_ip=url.hostname or "", ftp_port=url.port or 21,
            ftp_account=unquote(url.username or ""), ftp_password=unquote(url.password or ""),
            ftp_file_name=url.path.lstrip("/")))
