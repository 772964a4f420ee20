"""Picture (snapshot) policies on the camera (§7.5.24–§7.5.26, 75H–77H): a web-client extension (§4).

§4 lists "picture policies" among a camera's settings and §7.5.24–§7.5.26 carry them, but the spec has
no client operation for them, and says little about their rules.  What it says: a policy is a
``<DayPolicy>`` (every day, no weekday) with an Interval in seconds and a window HH:MM–HH:MM, for one
StoreType (0 FTP, 1 天翼云 cloud); "ftp 存储类型, 平台将开始时间与结束时间设置相同, 间隔时间设置 0" — for FTP
the platform sets start == end and Interval 0 (one timed snapshot a day, pushed by SMS).  Where it is
silent, our rules (docs/protocol.md, "Extensions for the web client", item 25), checked here so a
refused request never reaches the camera:

* FTP: one snapshot at a time of day (end and interval, if given, must be that time and 0);
* cloud: Interval 1..86400 s over a same-day window start < end (24:00 ends the day; a window that
  crosses midnight is split by the client); windows of one channel do not overlap (half-open);
* at most :data:`MAX_PICTURE_POLICIES` policies per channel and store type, and no two FTP snapshots
  at one minute;
* owner only (a share is for watching), the camera online; cloud needs the 32H EStoreFlag (the face
  asks :mod:`globaleye.app.abilities`).

The simulated camera (:mod:`globaleye.sim.commands`) applies the same rules itself, a second line.
"""

from __future__ import annotations

import attrs
from twisted.logger import Logger

from globaleye.app.access import CameraAccess
from globaleye.app.errors import NotFound, RuleViolation, check
from globaleye.app.recording import HHMM
from globaleye.device.protocol import messages as m
from globaleye.users.accounts import LoginSession

#: The spec names no limit; a camera's memory has one (the simulator's, our choice).
MAX_PICTURE_POLICIES = 8
#: A day, in seconds: the longest interval that still takes a picture in a window.
MAX_INTERVAL = 86400
FTP = int(m.PictureStoreType.FTP)
CLOUD = int(m.PictureStoreType.ESTORE)


@attrs.frozen
class PictureWindow:
    """One requested picture policy, as given (checked by :func:`picture_policy`)."""

    start_time: str | None = None
    end_time: str | None = None
    interval: int | None = None


@attrs.frozen
class StoredPicture:
    """A policy as the camera keeps it, with its store type (76H answers per store type)."""

    store_type: int
    policy_id: int
    interval: int
    start_time: str
    end_time: str


class PictureService:
    """Add, list and delete a channel's picture policies (75H–77H) for the camera's owner."""

    log = Logger()

    def __init__(self, access: CameraAccess) -> None:
        self.access = access

    async def add_policy(self, session: LoginSession, dev_id: str, channel_no: int, store_type: int,
                         windows: list[PictureWindow]) -> None:
        """All of *windows* or none (one 75H), after the stored ones (76H) were checked against them."""
        check(store_type in (FTP, CLOUD), "StoreType must be 0 (FTP) or 1 (cloud)")
        check(bool(windows), "at least one picture policy")
        new = [picture_policy(store_type, window) for window in windows]
        await self.access.require(session.account, dev_id, channel_no, online=True)
        stored = await self._stored(dev_id, channel_no, store_type)
        why = picture_rules(store_type, list(stored), new)
        if why:
            self.log.info("picture policies for {dev_id} channel {channel} refused: {why}", dev_id=dev_id,
                          channel=channel_no, why=why)
            raise RuleViolation(why)
        await self.access.command(dev_id, m.AddPicturePolicyRequest(
            dev_id=dev_id, channel_no=channel_no, store_type=store_type, day_policy=tuple(new)))

    async def get_policies(self, session: LoginSession, dev_id: str, channel_no: int) -> tuple[StoredPicture, ...]:
        """Both store types' policies (two 76H), FTP first, each by start time."""
        await self.access.require(session.account, dev_id, channel_no, online=True)
        out: list[StoredPicture] = []
        for store_type in (FTP, CLOUD):
            for p in await self._stored(dev_id, channel_no, store_type):
                out.append(StoredPicture(store_type, p.policy_id, p.interval, p.start_time.strip(),
                                         p.end_time.strip()))
        return tuple(out)

    async def delete_policy(self, session: LoginSession, dev_id: str, channel_no: int, policy_id: int) -> None:
        """77H, once 76H showed the PolicyID on this channel (else :class:`NotFound`, nothing sent)."""
        stored = await self.get_policies(session, dev_id, channel_no)
        if all(p.policy_id != policy_id for p in stored):
            raise NotFound(f"no picture policy {policy_id}")
        await self.access.command(dev_id, m.DeletePicturePolicyRequest(dev_id=dev_id, channel_no=channel_no,
                                                                       policy_id=policy_id))

    async def _stored(self, dev_id: str, channel_no: int, store_type: int) -> tuple[m.PicturePolicyEntry, ...]:
        answer = await self.access.command(dev_id, m.GetPicturePolicyRequest(
            dev_id=dev_id, channel_no=channel_no, store_type=store_type))
        return tuple(answer.day_policy)


def _minute(name: str, text: str | None, *, end: bool = False) -> int:
    check(isinstance(text, str), f"{name} is missing")
    assert isinstance(text, str)
    match = HHMM.match(text.strip())
    check(match is not None, f"{name} must be HH:MM")
    assert match is not None
    hours, minutes = int(match[1]), int(match[2])
    check(minutes < 60 and (hours < 24 or (end and hours == 24 and minutes == 0)),
          f"{name} {text!r} is not a time of day")
    return hours * 60 + minutes


def _text(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def picture_policy(store_type: int, item: PictureWindow) -> m.PicturePolicy:
    """One requested policy, its values checked (malformed: :class:`InvalidRequest`; against the FTP
    rule of §7.5.24: :class:`RuleViolation`)."""
    start = _minute("StartTime", item.start_time)
    if store_type == FTP:
        # §7.5.24: for FTP the platform sets EndTime = StartTime and Interval 0 itself.
        end = start if item.end_time is None else _minute("EndTime", item.end_time)
        interval = 0 if item.interval is None else item.interval
        if end != start or interval != 0:
            raise RuleViolation("an FTP picture policy is one snapshot: EndTime = StartTime, Interval 0 (§7.5.24)")
        return m.PicturePolicy(interval=0, start_time=_text(start), end_time=_text(start))
    end = _minute("EndTime", item.end_time, end=True)
    check(item.interval is not None, "Interval is missing")
    assert item.interval is not None
    if not 1 <= item.interval <= MAX_INTERVAL:
        raise RuleViolation(f"a cloud picture policy's Interval is 1 to {MAX_INTERVAL} seconds")
    check(start < end, "StartTime must be before EndTime (split windows that cross midnight)")
    return m.PicturePolicy(interval=item.interval, start_time=_text(start), end_time=_text(end))


def picture_rules(store_type: int, stored: list[m.PicturePolicyEntry], new: list[m.PicturePolicy]) -> str:
    """Why adding *new* to the *stored* policies of one channel and store type is refused ("" if not)."""
    every: list[m.PicturePolicyEntry | m.PicturePolicy] = [*stored, *new]
    if len(every) > MAX_PICTURE_POLICIES:
        return f"{len(every)} picture policies (at most {MAX_PICTURE_POLICIES} per channel and storage)"
    if store_type == FTP:
        times = sorted(p.start_time.strip() for p in every)
        for a, b in zip(times, times[1:], strict=False):
            if a == b:
                return f"two snapshots at {a}"
        return ""
    windows = sorted((_loose(p.start_time), _loose(p.end_time)) for p in every)
    for low, high in zip(windows, windows[1:], strict=False):
        if low[1] > high[0]:
            return (f"picture windows {_text(low[0])}-{_text(low[1])} and {_text(high[0])}-{_text(high[1])} "
                    "overlap")
    return ""


def _loose(text: str) -> int:
    """A stored time as minutes (what the camera answered is not ours to refuse)."""
    match = HHMM.match(text.strip())
    return int(match[1]) * 60 + int(match[2]) if match else 0


__all__ = ["CLOUD", "FTP", "MAX_INTERVAL", "MAX_PICTURE_POLICIES", "PictureService", "PictureWindow",
           "StoredPicture", "picture_policy", "picture_rules"]
