"""Recording on the camera (67H-69H, 78H-7BH) and record search (72H): extensions of §8 for the web client (§4).

The platform checks what it can (§7.5.13's four windows a day, no overlap) *before* the
camera sees a request.  Each operation needs the camera online (:class:`DeviceOffline`
before anything is sent).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs
from twisted.logger import Logger

from globaleye.app.access import CameraAccess
from globaleye.app.errors import InvalidRequest, NotFound, RuleViolation, check
from globaleye.device.protocol import messages as m
from globaleye.users.accounts import LoginSession
from globaleye.util.clock import parse_protocol_time

#: §7.5.13: "一天最多可设置 4 条策略": at most 4 recording windows per channel and weekday.
MAX_WINDOWS_A_DAY = 4
PAGE_SIZE = 10
HHMM = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")


@attrs.frozen
class RecordWindow:
    """One requested recording window, as given (checked by :func:`record_window`)."""

    store_type: int | None = None
    stream_type: int | None = None
    week: int | None = None
    start_time: str | None = None
    end_time: str | None = None


@attrs.frozen
class RecordFile:
    file_name: str
    file_size: int
    start_time: str
    end_time: str


@attrs.frozen
class RecordPage:
    total: int
    page_no: int
    files: tuple[RecordFile, ...]


class RecordingService:
    log = Logger()

    def __init__(self, access: CameraAccess) -> None:
        self.access = access
        #: Told of each loop flag the camera accepted (7AH): the cloud service's loop overwrite (§7.1.1).
        self.loop_listeners: list[Callable[[str, int], None]] = []

    async def add_policy(self, session: LoginSession, dev_id: str, channel_no: int,
                         windows: list[RecordWindow]) -> None:
        new = [record_window(window) for window in windows]
        await self.access.require(session.account, dev_id, channel_no, online=True)
        stored = await self.access.command(dev_id, m.GetRecordPolicyRequest(dev_id=dev_id, channel_no=channel_no))
        why = window_rules(list(stored.week_policy), new)
        if why:
            self.log.info("recording windows for {dev_id} channel {channel} refused: {why}", dev_id=dev_id,
                          channel=channel_no, why=why)
            raise RuleViolation(why)
        await self.access.command(dev_id, m.AddRecordPolicyRequest(dev_id=dev_id, channel_no=channel_no,
                                                                   week_policy=tuple(new)))

    async def get_policies(self, session: LoginSession, dev_id: str, channel_no: int
                           ) -> tuple[m.RecordPolicyEntry, ...]:
        await self.access.require(session.account, dev_id, channel_no, online=True)
        answer = await self.access.command(dev_id, m.GetRecordPolicyRequest(dev_id=dev_id, channel_no=channel_no))
        return tuple(answer.week_policy)

    async def delete_policy(self, session: LoginSession, dev_id: str, channel_no: int, policy_id: int) -> None:
        await self.access.require(session.account, dev_id, channel_no, online=True)
        stored = await self.access.command(dev_id, m.GetRecordPolicyRequest(dev_id=dev_id, channel_no=channel_no))
        if all(p.policy_id != policy_id for p in stored.week_policy):
            raise NotFound(f"no policy {policy_id}")
        await self.access.command(dev_id, m.DeleteRecordPolicyRequest(dev_id=dev_id, channel_no=channel_no,
                                                                      policy_id=policy_id))

    async def set_full_day(self, session: LoginSession, dev_id: str, channel_no: int, record_full: int) -> None:
        check(record_full in (0, 1), "RecordFull must be 0 or 1")
        await self.access.require(session.account, dev_id, channel_no, online=True)
        await self.access.command(dev_id, m.SetFullDayRecordRequest(dev_id=dev_id, channel_no=channel_no,
                                                                    record_full=record_full))

    async def get_full_day(self, session: LoginSession, dev_id: str, channel_no: int) -> int:
        await self.access.require(session.account, dev_id, channel_no, online=True)
        answer = await self.access.command(dev_id, m.GetFullDayRecordRequest(dev_id=dev_id, channel_no=channel_no))
        return int(answer.record_full)

    async def set_loop(self, session: LoginSession, dev_id: str, record_loop: int) -> None:
        check(record_loop in (0, 1), "RecordLoop must be 0 or 1")
        await self.access.require(session.account, dev_id, online=True)
        await self.access.command(dev_id, m.SetLoopRecordRequest(dev_id=dev_id, record_loop=record_loop))
        for listener in self.loop_listeners:
            listener(dev_id, record_loop)

    async def get_loop(self, session: LoginSession, dev_id: str) -> int:
        await self.access.require(session.account, dev_id, online=True)
        answer = await self.access.command(dev_id, m.GetLoopRecordRequest(dev_id=dev_id))
        return int(answer.record_loop)

    async def search(self, session: LoginSession, dev_id: str, channel_no: int, start: str, end: str,
                     page_no: int | None) -> RecordPage:
        """72H: one page (10) of the camera's recordings between *start* and *end* (YYYYMMDDHHMM)."""
        start, end = minute_time("StartTime", start), minute_time("EndTime", end)
        check(start <= end, "StartTime must not be after EndTime")
        page = page_no or 1
        check(page >= 1, "PageNo counts from 1")
        await self.access.require(session.account, dev_id, channel_no, own=False, online=True)
        answer = await self.access.command(dev_id, m.RecordSearchRequest(
            dev_id=dev_id, channel_no=channel_no, start_time=start, end_time=end, page_no=page))
        return RecordPage(answer.total_record_num, page, tuple(
            RecordFile(f.file_name, f.file_size, f.start_time, f.end_time) for f in answer.file[:PAGE_SIZE]))


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


def record_window(item: RecordWindow) -> m.RecordPolicy:
    """One requested window, its values checked (a malformed one is :class:`InvalidRequest`)."""
    given = {"StoreType": item.store_type, "StreamType": item.stream_type, "Week": item.week,
             "StartTime": item.start_time, "EndTime": item.end_time}
    for name, value in given.items():
        check(value is not None, f"RecordPolicy: {name} is missing")
    assert item.store_type is not None and item.stream_type is not None and item.week is not None
    check(item.store_type in (0, 1), "StoreType must be 0 (local) or 1 (cloud)")
    check(item.stream_type in (1, 2), "StreamType must be 1 (main) or 2 (sub)")
    check(1 <= item.week <= 7, "Week must be 1..7")
    times = []
    for name in ("StartTime", "EndTime"):
        text = given[name]
        assert isinstance(text, str)
        match = HHMM.match(text.strip())
        check(match is not None, f"{name} must be HH:MM")
        assert match is not None
        hours, minutes = int(match[1]), int(match[2])
        check(minutes < 60 and (hours < 24 or (name == "EndTime" and hours == 24 and minutes == 0)),
              f"{name} {text!r} is not a time of day")
        times.append(hours * 60 + minutes)
    check(times[0] < times[1], "StartTime must be before EndTime (split windows that cross midnight)")
    return m.RecordPolicy(store_type=item.store_type, stream_type=item.stream_type, week=item.week,
                          start_time=f"{times[0] // 60:02d}:{times[0] % 60:02d}",
                          end_time=f"{times[1] // 60:02d}:{times[1] % 60:02d}")


def minute_time(name: str, text: str) -> str:
    """72H's YYYYMMDDHHMM (a 14-digit time has its seconds dropped)."""
    text = text.strip()
    if len(text) == 14 and text.isdigit():
        text = text[:12]
    try:
        parse_protocol_time(text + "00")
    except ValueError:
        raise InvalidRequest(f"{name} must be YYYYMMDDHHMM") from None
    return text


__all__ = ["RecordFile", "RecordPage", "RecordWindow", "RecordingService", "window_rules"]
