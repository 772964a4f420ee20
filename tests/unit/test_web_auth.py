"""The portal's refusal log lines are summarised per source address (a flood cannot flood the log)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from globaleye.web import auth


class _Request:
    def __init__(self, host: str) -> None:
        self.host = host

    def getClientAddress(self) -> IPv4Address:  # noqa: N802
        return IPv4Address("TCP", self.host, 40000)


class RefusalLogTests(SynchronousTestCase):
    def test_one_line_per_source_then_counted(self) -> None:
        # A summariser of its own: the module's one counts what earlier tests in this process refused.
        self.patch(auth, "_summary", None)
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for n in range(500):
            auth.log_refusal(_Request("192.0.2.7"), "csrf", "web: refused {n} from 192.0.2.7", n=n)  # type: ignore[arg-type]
        auth.log_refusal(_Request("192.0.2.8"), "csrf", "web: refused from 192.0.2.8")  # type: ignore[arg-type]
        lines = [e for e in events if e.get("log_namespace") == "globaleye.web"]
        self.assertEqual([e["log_format"] for e in lines],
                         ["web: refused {n} from 192.0.2.7", "web: refused from 192.0.2.8"])
