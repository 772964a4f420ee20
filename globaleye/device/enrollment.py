"""Open enrollment's limits (issue 9 item 2): how many new devices may enrol, per source and in all.

With ``[enrollment] mode = open`` anyone who reaches ``/register`` can enrol an unused DevID
with a key of their choosing (and so pin it, and get TURN credentials).  Closed enrollment is
the shipped default; where open enrollment is wanted (the demo, a lab), these limits bound how
fast DevIDs can be taken: ``peer_limit`` new devices per source address (an IPv6 /64: one
subscriber's block) and ``total_limit`` in all, per ``limit_window`` seconds.  Only enrolments
count: a known device registering is never limited here, and an attempt that did not enrol
(wrong key, a device that already exists, a store failure) is given back.

Refusals are logged once per source and window, with a summary of the ones left unsaid.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from globaleye.users.accounts import RateLimiter
from globaleye.util.peerkey import source_address
from txturn.logsummary import LogSummary


@attrs.frozen
class Reservation:
    """One enrolment counted against the limits, to be kept or given back."""

    source: str
    peer_at: float | None
    total_at: float | None


class EnrollmentLimits:
    log = Logger()

    def __init__(self, clock: IReactorTime, peer_limit: int, total_limit: int, window: float) -> None:
        self.clock = clock
        self.window = window
        self.peers = RateLimiter(clock, peer_limit, window) if peer_limit > 0 else None
        self.total = RateLimiter(clock, total_limit, window, max_keys=1) if total_limit > 0 else None
        # The first refusal per source and window in full, the rest counted (txturn.logsummary).
        self.refusals = LogSummary(self.log, clock, interval=window, max_keys=1000, level=LogLevel.warn,
                                   name="enrolment refusals")

    def reserve(self, peer: str) -> Reservation | str:
        """Count one enrolment from *peer* (``host:port``), or say which limit refuses it."""
        source = source_address(peer)
        peer_at = total_at = None
        if self.peers is not None:
            peer_at = self.peers.reserve(source)
            if peer_at is None:
                return f"enrollment limit: {self.peers.limit} new devices per {self.window:g} s from {source}"
        if self.total is not None:
            total_at = self.total.reserve("")
            if total_at is None:
                if self.peers is not None and peer_at is not None:
                    self.peers.undo(source, peer_at)
                return f"enrollment limit: {self.total.limit} new devices per {self.window:g} s in all"
        return Reservation(source, peer_at, total_at)

    def give_back(self, reservation: Reservation) -> None:
        """The attempt did not enrol a device: it does not count."""
        if self.peers is not None and reservation.peer_at is not None:
            self.peers.undo(reservation.source, reservation.peer_at)
        if self.total is not None and reservation.total_at is not None:
            self.total.undo("", reservation.total_at)

    def refused(self, dev_id: str, peer: str, reason: str) -> None:
        """Log a refusal: the first per source and window in full, the rest as one summary later."""
        source = source_address(peer)
        self.refusals.event(source, f"enrolments from {source} refused by the enrollment limits",
                            "registration of {dev_id!r} from {peer} refused (Result 255): {reason}; further "
                            "refusals from {source} are summarised", dev_id=dev_id, peer=peer, reason=reason,
                            source=source)
