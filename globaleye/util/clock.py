"""Wall-clock formatting for the protocol's ``Time`` fields.

The spec's ``YYYYMMDDHHMMSS`` timestamps are "for reference synchronisation" of
devices sold in China, which show Beijing time; China has one time zone and no
daylight saving, so the platform answers in UTC+8 whatever the host's zone is
(see docs/protocol.md).  Time always comes from the reactor so tests can use
``task.Clock``.
"""

from __future__ import annotations

import datetime

BEIJING = datetime.timezone(datetime.timedelta(hours=8), "CST")


def protocol_time(seconds: float, tz: datetime.tzinfo = BEIJING) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz).strftime("%Y%m%d%H%M%S")


def parse_protocol_time(text: str, tz: datetime.tzinfo = BEIJING) -> float:
    """Seconds since the epoch of a ``YYYYMMDDHHMMSS`` string (ValueError if malformed)."""
    value = datetime.datetime.strptime(text.strip(), "%Y%m%d%H%M%S").replace(tzinfo=tz)
    return value.timestamp()
