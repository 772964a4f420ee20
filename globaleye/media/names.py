"""Recording and picture file names (§7.1): ``DevID_ChannelNo_YYYYMMDDHHMMSS.ts`` / ``.jpg``.

Pure (no I/O, no media libraries): the RTSP proxy routes a playback URL by the DevID in
its file name, and the simulated camera finds its recordings by it.
"""

from __future__ import annotations

import datetime
import re

import attrs

#: §7.1: a device records in 5-minute files.
RECORDING_SECONDS = 300

#: §7.1: DevID_ChannelNo_YYYYMMDDHHMMSS.ts
RECORDING_NAME = re.compile(r"^(?P<dev>[0-9A-Za-z]{1,32})_(?P<ch>\d{1,3})_(?P<ts>\d{14})\.ts$")


def _parse(pattern: re.Pattern[str], name: str) -> tuple[re.Match[str], datetime.datetime] | None:
    """The match of a §7.1 file name and its time (naive, device/Beijing time), or None."""
    m = pattern.match(name)
    if m is None:
        return None
    try:
        return m, datetime.datetime.strptime(m["ts"], "%Y%m%d%H%M%S")
    except ValueError:
        return None


@attrs.frozen
class RecordingName:
    dev_id: str
    channel_no: int
    start: datetime.datetime  # naive, device (Beijing) time

    @classmethod
    def parse(cls, name: str) -> RecordingName | None:
        """DevID_ChannelNo_YYYYMMDDHHMMSS.ts (§7.1), or None if it is not one."""
        found = _parse(RECORDING_NAME, name)
        return cls(found[0]["dev"], int(found[0]["ch"]), found[1]) if found else None

    def __str__(self) -> str:
        return f"{self.dev_id}_{self.channel_no}_{self.start:%Y%m%d%H%M%S}.ts"


#: §7.1.1: DevID_ChannelNo_YYYYMMDDHHMMSS.jpg in the picture bucket; §7.5.27 (36H) prints ``.JPG``.
PICTURE_NAME = re.compile(r"^(?P<dev>[0-9A-Za-z]{1,32})_(?P<ch>\d{1,3})_(?P<ts>\d{14})\.(?P<ext>jpg|JPG|jpeg|JPEG)$")


@attrs.frozen
class PictureName:
    """A picture's name: the device's Beijing time of the shot, and the extension as the camera wrote it."""

    dev_id: str
    channel_no: int
    start: datetime.datetime  # naive, device (Beijing) time
    extension: str = "jpg"

    @classmethod
    def parse(cls, name: str) -> PictureName | None:
        """DevID_ChannelNo_YYYYMMDDHHMMSS.jpg (§7.1.1; .JPG as in §7.5.27), or None if it is not one."""
        found = _parse(PICTURE_NAME, name)
        return cls(found[0]["dev"], int(found[0]["ch"]), found[1], found[0]["ext"]) if found else None

    def __str__(self) -> str:
        return f"{self.dev_id}_{self.channel_no}_{self.start:%Y%m%d%H%M%S}.{self.extension}"
