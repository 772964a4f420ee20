"""What a camera says it can do (its §7.5.2 ability report, 32H), and which requests that forbids.

§4 item 1: "对于不支持的功能，在查询到设备能力后应该灰掉不支持的按钮" — once the device's abilities are
known, what it cannot do is greyed out.  A face greys the buttons out from :class:`Abilities` and refuses
the request itself with the reason :func:`video_refusal` and friends give, so a hand-made request (or a
page loaded before the report came) gets the same answer as the greyed-out button promised.  Until the
camera has reported (``known`` False) nothing is refused: the camera's own answer decides.
"""

from __future__ import annotations

import attrs

from globaleye.app.access import CameraAccess
from globaleye.app.devices import client_videos

#: §8 FrameSize codes by name (1=720P, 2=D1, 3=CIF), the names a face shows.
FRAME_SIZES = {"720P": 1, "D1": 2, "CIF": 3}
FRAME_SIZE_NAMES = {code: name for name, code in FRAME_SIZES.items()}


@attrs.frozen
class Abilities:
    """One camera's 32H report, as far as the client's settings need it (``known`` False: none yet)."""

    known: bool
    channels: int = 1
    ptz: bool = False
    local_store: bool = False
    cloud_store: bool = False
    #: Stream type (1 main, 2 sub) -> the §8 FrameSize codes it encodes, in the report's order.
    frame_sizes: dict[int, tuple[int, ...]] = attrs.field(factory=dict)

    @property
    def records(self) -> bool:
        """Whether the camera records at all (on its own storage or to the cloud)."""
        return self.local_store or self.cloud_store


async def abilities_of(access: CameraAccess, account: str, dev_id: str, channel_no: int | None = None,
                       own: bool = True) -> Abilities:
    """The abilities of a camera *account* may use (*own*: configure), after the same access check as
    every camera operation (:class:`~globaleye.app.errors.NoSuchDevice` otherwise, so a refusal never
    tells another account's camera from an absent one)."""
    await access.require(account, dev_id, channel_no, own=own)
    report = await access.store.get_ability(dev_id)
    if report is None:
        return Abilities(known=False)
    sizes: dict[int, tuple[int, ...]] = {}
    for video in client_videos(report.xml):
        sizes[video.stream_type] = (*sizes.get(video.stream_type, ()), video.frame_size)
    return Abilities(known=True, channels=max(1, report.channel_num), ptz=bool(report.ptz_flag),
                     local_store=bool(report.local_store_flag), cloud_store=bool(report.estore_flag),
                     frame_sizes=sizes)


def video_refusal(abilities: Abilities, stream_type: int, frame_size: int | None) -> str:
    """Why the camera cannot take this encoding (60H) by its report ("" when it can, or is not known).

    A report with no ``<Video>`` at all (an NVR's, §7.5.2 gives Video to DVR/IPC) says nothing about
    encodings and refuses nothing."""
    if not abilities.known or not abilities.frame_sizes:
        return ""
    sizes = abilities.frame_sizes.get(stream_type)
    stream = "main" if stream_type == 1 else "sub"
    if sizes is None:
        return f"the camera reports no {stream} stream"
    if frame_size is not None and frame_size not in sizes:
        return (f"the camera's {stream} stream cannot be {FRAME_SIZE_NAMES.get(frame_size, frame_size)} "
                f"(it reports {', '.join(FRAME_SIZE_NAMES.get(s, str(s)) for s in sizes)})")
    return ""


def storage_refusal(abilities: Abilities, store_type: int) -> str:
    """Why a recording window on this storage (0 the camera's own, 1 the cloud) is refused ("" if not)."""
    if not abilities.known:
        return ""
    if store_type == 0 and not abilities.local_store:
        return "the camera reports no local storage (32H LocalStoreFlag 0)"
    if store_type == 1 and not abilities.cloud_store:
        return "the camera reports no cloud storage (32H EStoreFlag 0)"
    return ""


def local_store_refusal(abilities: Abilities, what: str) -> str:
    """Why *what* (loop recording, the camera's recordings) is refused: it needs the camera's own storage."""
    if abilities.known and not abilities.local_store:
        return f"{what} needs storage on the camera, and it reports none (32H LocalStoreFlag 0)"
    return ""


def recording_refusal(abilities: Abilities, what: str) -> str:
    """Why *what* (recording windows, full-day recording) is refused: it needs some storage."""
    if abilities.known and not abilities.records:
        return f"{what} needs storage, and the camera reports neither local nor cloud storage (32H)"
    return ""


__all__ = ["FRAME_SIZES", "FRAME_SIZE_NAMES", "Abilities", "abilities_of", "local_store_refusal",
           "recording_refusal", "storage_refusal", "video_refusal"]
