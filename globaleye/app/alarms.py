"""Alarms: the cameras' exception reports (34H, §7.5.4), searched from the store.

From the store, so it works with the camera offline (that is when alarms matter).
"""

from __future__ import annotations

import attrs

from globaleye.app.access import CameraAccess
from globaleye.app.errors import InvalidRequest, check
from globaleye.store import Store
from globaleye.users.accounts import LoginSession
from globaleye.util.clock import parse_protocol_time, protocol_time

PAGE_SIZE = 10


@attrs.frozen
class Alarm:
    channel_no: int
    exception_type: int
    description: str
    time: str  # YYYYMMDDHHMMSS


@attrs.frozen
class AlarmPage:
    total: int
    alarms: tuple[Alarm, ...]


class AlarmService:
    def __init__(self, access: CameraAccess, store: Store) -> None:
        self.access = access
        self.store = store

    async def search(self, session: LoginSession, dev_id: str, start: str, end: str,
                     page_no: int | None) -> AlarmPage:
        """One page (10) of the alarms received between *start* and *end* (YYYYMMDDHHMMSS; empty: open)."""
        low = alarm_time("StartTime", start) if start else float("-inf")
        high = alarm_time("EndTime", end) if end else float("inf")
        page = page_no or 1
        check(page >= 1, "PageNo counts from 1")
        await self.access.require(session.account, dev_id, own=False)
        found = [r for r in await self.store.list_exceptions(dev_id, 1000) if low <= r.received_at <= high]
        first = (page - 1) * PAGE_SIZE
        return AlarmPage(len(found), tuple(
            Alarm(r.channel_no, r.exception_type, r.description, protocol_time(r.received_at))
            for r in found[first:first + PAGE_SIZE]))


def alarm_time(name: str, text: str) -> float:
    try:
        return parse_protocol_time(text)
    except ValueError:
        raise InvalidRequest(f"{name} must be YYYYMMDDHHMMSS") from None
