"""Summarise repeated log events: one line per source and interval, not one per packet.

A flood of malformed or refused packets must not turn into a flood of log lines (log
amplification: a 25-byte datagram costing 130 bytes of disk).  :class:`LogSummary` logs
the first event of each key (typically the peer's address) in an interval in full, counts
the rest, and at the next event after the interval (or at :meth:`flush`) writes one line
per key with the count.  At most ``max_keys`` keys are logged per interval; events of
further keys (a spoofed-source flood) are counted together in one line.

It keeps no timer (so nothing is left scheduled when a server stops): the clock is read
when an event arrives.  Memory: at most ``max_keys`` keys.

This module is part of txturn and imports nothing from the platform; GlobalEye uses it
too (the dependency goes that way only).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

__all__ = ["LogSummary"]


class LogSummary:
    """Rate-limited logging of repeated events per key (see the module docstring)."""

    def __init__(
        self,
        log: Logger,
        clock: IReactorTime | None = None,
        interval: float = 60.0,
        max_keys: int = 50,
        level: LogLevel = LogLevel.info,
        name: str = "repeated events",
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as _reactor

            clock = _reactor  # type: ignore[assignment]
        self.log = log
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.interval = interval
        self.max_keys = max_keys
        self.level = level
        self.name = name
        self._started = self.clock.seconds()
        #: key -> [suppressed count, what (a short description of the first event)]
        self._seen: dict[Hashable, list[Any]] = {}
        self._overflow = 0
        #: Lines written (full events and summaries), for tests and statistics.
        self.lines = 0

    def event(self, key: Hashable, what: str, format: str, /, **fields: Any) -> bool:  # noqa: A002
        """One event of *key*: logged in full (returns True) or counted for the summary.

        *what* names the kind and source for the summary line (e.g. "STUN dropped malformed
        datagrams from 192.0.2.1"); *format* and *fields* are the full event's.
        """
        now = self.clock.seconds()
        if now - self._started >= self.interval:
            self.flush(now)
        seen = self._seen.get(key)
        if seen is not None:
            seen[0] += 1
            return False
        if len(self._seen) >= self.max_keys:
            self._overflow += 1
            return False
        self._seen[key] = [0, what]
        self.lines += 1
        self.log.emit(self.level, format, **fields)
        return True

    def flush(self, now: float | None = None) -> None:
        """Write the counts of the interval so far and start a new one."""
        if now is None:
            now = self.clock.seconds()
        seconds = max(0.0, now - self._started)
        for count, what in self._seen.values():
            if count:
                self.lines += 1
                self.log.emit(
                    self.level,
                    "{summary_what}: {summary_count} more in {summary_seconds:.0f} s (repeats summarised)",
                    summary_what=what,
                    summary_count=count,
                    summary_seconds=seconds,
                )
        if self._overflow:
            self.lines += 1
            self.log.emit(
                self.level,
                "{summary_name}: {summary_count} more beyond the first {summary_keys} sources or kinds "
                "in {summary_seconds:.0f} s (repeats summarised)",
                summary_name=self.name,
                summary_count=self._overflow,
                summary_keys=self.max_keys,
                summary_seconds=seconds,
            )
        self._seen = {}
        self._overflow = 0
        self._started = now
