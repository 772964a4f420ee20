"""Everything a simulated camera knows, and the platform can query or change (§7.5).

:class:`CameraState` is the simulated device's memory: its identity (what it
presents at registration and login), its capabilities (what it reports in 32H)
and the settings the platform drives through 60H-7BH.  It is deliberately plain
data with a few derived views; the rules a real device applies when the
platform asks for a change live in :mod:`globaleye.sim.commands`, so this
module can be read as "what is on the device" and that one as "what the device
accepts".

Everything is deterministic given the clock, so a test (or ten thousand
simulated cameras) sees the same answers run after run: the recordings of
72H are derived from the DevID and the time, not from a random generator.
"""

from __future__ import annotations

import datetime
import time
import zlib
from collections.abc import Callable
from typing import Any, Self

import attrs

from globaleye.device.protocol import messages as m
from globaleye.util.clock import BEIJING

#: Models reported in REGISTER_REQ/Mode, by ManufacturerNo (the §7.2 table).
#: Plausible product names, so logs and the client API look like a real fleet.
MODELS: dict[str, tuple[str, str]] = {
    # ManufacturerNo: (IPC model, NVR model)
    "811": ("DS-2CD3T25-I3", "DS-7808N-K1"),
    "812": ("IPC-HFW1230S", "NVR2108HS-S2"),
    "813": ("HW-IPC720P", "HW-NVR08"),
    "814": ("KE-IPC200", "KE-NVR800"),
    "815": ("HMD-IPC-H1", "HMD-NVR-8"),
    "816": ("UK-IPC100", "UK-NVR8"),
    "817": ("SW-IP720", "SW-NVR8"),
    "818": ("HV-IPC210", "HV-NVR108"),
    "819": ("SNH-P6410BN", "SRN-873S"),
    "820": ("RA-IPC720", "RA-NVR8"),
    "821": ("YY-IPC-01", "YY-NVR-08"),
    "822": ("CW-IPC-2", "CW-NVR-8"),
    "823": ("FH-IPC-720", "FH-NVR-8"),
    "824": ("HM-IPC-M1", "HM-NVR-8"),
}
DEFAULT_MODELS = ("GE-SIM-IPC", "GE-SIM-NVR")

#: Encodings each stream can produce, in preference order (first = default).
#: They are what the 32H ``<Video>`` list advertises and what 60H accepts.
SUPPORTED_FRAME_SIZES: dict[int, tuple[int, ...]] = {
    m.StreamType.MAIN: (m.FrameSize.P720, m.FrameSize.VGA, m.FrameSize.D1),
    m.StreamType.SUB: (m.FrameSize.CIF, m.FrameSize.QVGA, m.FrameSize.D1),
}

#: Picture size of each §7.5.6 FrameSize code (the device protocol's table enumeration,
#: docs/protocol.md "Two FrameSize enumerations"), as the live stream is encoded.  The spec
#: names sizes only; D1 and CIF are the PAL sizes Chinese cameras use (704x576, 352x288).
FRAME_SIZE_PIXELS: dict[int, tuple[int, int]] = {
    m.FrameSize.P720: (1280, 720),
    m.FrameSize.VGA: (640, 480),
    m.FrameSize.D1: (704, 576),
    m.FrameSize.CIF: (352, 288),
    m.FrameSize.QVGA: (320, 240),
}

#: One PTZ command moves the head this many degrees (the simulator has no motor
#: running between "start" and "stop", so every command is one step).
PTZ_STEP = 5
PAN_RANGE = (-170, 170)
TILT_RANGE = (-15, 90)
PTZ_LOG_SIZE = 20

#: How far back the simulated recordings reach (72H): "the last day".
RECORDING_SPAN = datetime.timedelta(days=1)


@attrs.define
class VideoParams:
    """One stream's encoding: exactly the fields of §7.5.6/§7.5.7 (codes as there)."""

    frame_size: int
    frame_rate: int
    rate_type: int
    bit_rate: int
    audio_input: int

    @property
    def pixels(self) -> tuple[int, int]:
        """Width and height of FrameSize (60H only accepts sizes of :data:`FRAME_SIZE_PIXELS`)."""
        return FRAME_SIZE_PIXELS[self.frame_size]

    @property
    def bits_per_second(self) -> int:
        """BitRate's code as bit/s (kbit/s of ``BIT_RATES_KBPS`` × 1000)."""
        return m.BIT_RATES_KBPS[self.bit_rate] * 1000


def default_video(stream_type: int) -> VideoParams:
    """Main 720P/25 fps/1 Mbit/s, sub CIF/15 fps/256 kbit/s: a typical 2014 store camera."""
    if stream_type == m.StreamType.MAIN:
        return VideoParams(m.FrameSize.P720, 25, m.RateType.VBR, 8, 1)
    return VideoParams(m.FrameSize.CIF, 15, m.RateType.VBR, 4, 1)


@attrs.define
class RecordParams:
    """6AH/6BH (our definition, see :class:`messages.SetRecordParamsRequest`)."""

    stream_type: int = m.StreamType.MAIN
    store_type: int = m.RecordStoreType.LOCAL
    audio_input: int = 1
    file_duration: int = 5  # minutes, §7.1


@attrs.define
class CloudAccount:
    """65H/66H: the 天翼云 (cloud storage) account the device uploads with."""

    url: str = ""
    account: str = ""
    password: str = ""


@attrs.define
class WifiConfig:
    """63H: the network the platform asked the device to join.

    ``joined`` is whether the (simulated) association succeeded; only then does
    62H show the hotspot as InUse.
    """

    ssid: str = ""
    security: int = m.WifiSecurity.NONE
    password: str = ""
    joined: bool = False


@attrs.frozen
class PtzEvent:
    """One PTZ command as received, for tests and the simulator's status page."""

    at: float
    channel_no: int
    direction: int


@attrs.define
class PtzPosition:
    """Where the head points, in degrees; ``moving`` is the last direction (0 = stopped)."""

    pan: int = 0
    tilt: int = 0
    moving: int = m.PtzDirection.STOP


@attrs.frozen
class StoredPicturePolicy:
    """A 75H policy as kept: 76H filters by StoreType, 77H deletes by PolicyID alone."""

    store_type: int
    entry: m.PicturePolicyEntry


@attrs.define
class NvrBinding:
    """6EH/6FH: which IPC an NVR channel records and how it reaches it over ONVIF."""

    ipcam_dev_id: str
    ipcam_local_ip: str
    onvif_port: int
    onvif_account: str
    onvif_password: str


def default_hotspots() -> list[m.WifiHotspot]:
    """What a camera in a small shop typically sees (62H); InUse is computed on query."""
    return [
        m.WifiHotspot(ssid="ChinaNet-8A3F", signal=86, security=m.WifiSecurity.WPA_WPA2_PSK),
        m.WifiHotspot(ssid="Store-Office", signal=74, security=m.WifiSecurity.WPA2_PSK),
        m.WifiHotspot(ssid="TP-LINK_5C21", signal=61, security=m.WifiSecurity.WPA_PSK),
        m.WifiHotspot(ssid="Store-Guest", signal=48, security=m.WifiSecurity.NONE),
        m.WifiHotspot(ssid="HUAWEI-B311-7E2D", signal=23, security=m.WifiSecurity.WEP),
    ]


@attrs.define
class CameraState:
    """A simulated device's identity, capabilities and platform-controlled settings.

    Channel numbers count from 0 (§7.5.6).  Per-channel settings are created on
    first use with the device's defaults, so overriding ``channel_num`` needs no
    other change.  ``clock`` gives seconds since the epoch; tests pin it.
    """

    # Identity (§7.2 registration, §7.5.1 login, §7.5.3 heartbeat).
    dev_id: str
    dev_key: str
    manufacturer_no: str = ""
    model: str = DEFAULT_MODELS[0]
    dev_type: int = m.DevType.IPCAM
    dev_ver: str = "V1.0.0 build 20261101"
    upnp_ip: str = "0.0.0.0"  # §7.5.1: no UPnP mapping
    rtsp_upnp_port: int = 0
    local_ip: str = "127.0.0.1"
    rtsp_local_port: int = 0  # set once the RTSP server listens
    turn_relay_ip: str = ""
    rtsp_turn_relay_port: int = 0
    net_type: int = m.NetType.WIRED
    cur_video_num: int = 0

    # Capabilities (§7.5.2).
    channel_num: int = 1
    ptz_flag: bool = True
    e_store_flag: bool = True
    local_store_flag: bool = True
    onvif_port: int = 80
    onvif_account: str = "admin"
    onvif_password: str = ""

    # Settings the platform drives.
    video_params: dict[tuple[int, int], VideoParams] = attrs.Factory(dict)  # (channel, stream)
    hotspots: list[m.WifiHotspot] = attrs.Factory(default_hotspots)
    wifi: WifiConfig = attrs.Factory(WifiConfig)
    ptz: dict[int, PtzPosition] = attrs.Factory(dict)
    ptz_log: list[PtzEvent] = attrs.Factory(list)
    cloud: CloudAccount = attrs.Factory(CloudAccount)
    record_policies: dict[int, list[m.RecordPolicyEntry]] = attrs.Factory(dict)
    picture_policies: dict[int, list[StoredPicturePolicy]] = attrs.Factory(dict)
    next_record_policy_id: int = 1
    next_picture_policy_id: int = 1
    record_params: dict[int, RecordParams] = attrs.Factory(dict)
    record_full: dict[int, int] = attrs.Factory(dict)
    record_loop: int = 1  # most devices overwrite the oldest files by default
    nvr_bindings: dict[int, NvrBinding] = attrs.Factory(dict)
    reboot_requested: int = 0
    upgrade_version: str = ""
    upgrade_url: str = ""
    #: Recordings that are being written or played back: 73H refuses to delete them.
    files_in_use: set[str] = attrs.Factory(set)
    #: 34H reports the device owes the platform (Wi-Fi join outcome, §7.5.9);
    #: the session sends and clears them.
    pending_reports: list[m.ExceptionReportRequest] = attrs.Factory(list)
    #: Told (channel, stream type) when 60H changed a stream's encoding, as a real camera
    #: restarts its encoder then (the fleet prepares the new live loop).
    on_video_changed: Callable[[int, int], None] | None = attrs.field(default=None, eq=False, repr=False)

    clock: Callable[[], float] = attrs.field(default=time.time, eq=False, repr=False)
    _recordings: dict[int, list[m.RecordFile]] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def for_device(cls, dev_id: str, dev_key: str, **overrides: Any) -> Self:
        """A state for one DevID: the vendor comes from its first three digits (§7.2).

        An NVR (``dev_type=3``) defaults to 4 channels, no PTZ and no cloud
        storage, because that is what such a box is; anything can be overridden.
        """
        manufacturer_no = dev_id[:3]
        dev_type = int(overrides.get("dev_type", m.DevType.IPCAM))
        models = MODELS.get(manufacturer_no, DEFAULT_MODELS)
        defaults: dict[str, Any] = {
            "manufacturer_no": manufacturer_no,
            "model": models[1] if dev_type == m.DevType.NVR else models[0],
            "onvif_password": dev_key[:8] or "admin",
        }
        if dev_type == m.DevType.NVR:
            defaults.update(channel_num=4, ptz_flag=False, e_store_flag=False)
        defaults.update(overrides)
        return cls(dev_id=dev_id, dev_key=dev_key, **defaults)

    # ------------------------------------------------------------------ derived views

    @property
    def is_nvr(self) -> bool:
        return self.dev_type == m.DevType.NVR

    def has_channel(self, channel_no: int) -> bool:
        return 0 <= channel_no < self.channel_num

    def video(self, channel_no: int, stream_type: int) -> VideoParams:
        """The live encoding of one stream, created with the defaults on first use."""
        key = (channel_no, stream_type)
        if key not in self.video_params:
            self.video_params[key] = default_video(stream_type)
        return self.video_params[key]

    def recording(self, channel_no: int) -> RecordParams:
        if channel_no not in self.record_params:
            self.record_params[channel_no] = RecordParams()
        return self.record_params[channel_no]

    def ptz_position(self, channel_no: int) -> PtzPosition:
        if channel_no not in self.ptz:
            self.ptz[channel_no] = PtzPosition()
        return self.ptz[channel_no]

    def wifi_scan(self) -> tuple[m.WifiHotspot, ...]:
        """62H: the 10 strongest hotspots, strongest first, InUse on the joined one."""
        joined = self.wifi.ssid if self.wifi.joined else None
        ranked = sorted(self.hotspots, key=lambda h: -h.signal)[:10]
        return tuple(attrs.evolve(h, in_use=int(h.ssid == joined)) for h in ranked)

    def ability_report(self) -> m.AbilityUpRequest:
        """32H from the state.

        ``<Video>`` lists every (stream, frame size) the device can encode,
        since 60H accepts exactly those; §7.5.2 gives Video to DVR/IPC and
        Onvif to IPC only, so an NVR reports neither.
        """
        video: tuple[m.VideoAbility, ...] = ()
        onvif = None
        if not self.is_nvr:
            video = tuple(m.VideoAbility(stream_type=int(stream), frame_size=int(size))
                          for stream, sizes in SUPPORTED_FRAME_SIZES.items() for size in sizes)
        if self.dev_type == m.DevType.IPCAM:
            onvif = m.OnvifAccess(port=self.onvif_port, account=self.onvif_account,
                                  password=self.onvif_password)
        return m.AbilityUpRequest(
            dev_id=self.dev_id, channel_num=self.channel_num, ptz_flag=int(self.ptz_flag),
            e_store_flag=int(self.e_store_flag), local_store_flag=int(self.local_store_flag),
            video=video, onvif=onvif)

    # ------------------------------------------------------------------ recordings (72H/73H)

    def recordings(self, channel_no: int) -> list[m.RecordFile]:
        """The channel's recorded files, oldest first, generated on first use.

        A continuous day of ``file_duration``-minute MPEG-TS files ending at the
        last file boundary before "now" (Beijing time, as the device's clock
        shows).  Generated once and then kept, so 73H deletions stick.  Sizes
        follow the recorded stream's bitrate with a deterministic ±15 % spread
        (the DevID and name seed it), so every run sees the same listing.

        Every listed file can be played back: the RTSP side serves, for each name,
        the media library's real MPEG-TS recording of the file's length (one file
        shared by every camera, :mod:`globaleye.sim.media.recording`), so what is kept
        here per camera is the listing alone.  FileSize stays the nominal size at the
        stream's bit rate, not the size of that shared file.
        """
        files = self._recordings.get(channel_no)
        if files is None:
            files = self._recordings[channel_no] = self._generate_recordings(channel_no)
        return files

    def _generate_recordings(self, channel_no: int) -> list[m.RecordFile]:
        params = self.recording(channel_no)
        minutes = max(1, params.file_duration)
        step = datetime.timedelta(minutes=minutes)
        now = datetime.datetime.fromtimestamp(self.clock(), BEIJING).replace(second=0, microsecond=0)
        end = now - datetime.timedelta(minutes=(now.hour * 60 + now.minute) % minutes)
        kbps = m.BIT_RATES_KBPS.get(self.video(channel_no, params.stream_type).bit_rate, 1024)
        nominal = kbps * 1000 // 8 * minutes * 60
        files: list[m.RecordFile] = []
        start = end - RECORDING_SPAN
        while start < end:
            stop = start + step
            name = f"{self.dev_id}_{channel_no}_{start:%Y%m%d%H%M%S}.ts"
            spread = zlib.crc32(name.encode()) % 3001 - 1500  # -15.00 % .. +15.00 %
            files.append(m.RecordFile(file_name=name, file_size=nominal + nominal * spread // 10000,
                                      start_time=f"{start:%Y%m%d%H%M}", end_time=f"{stop:%Y%m%d%H%M}"))
            start = stop
        return files
