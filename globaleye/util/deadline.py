"""One deadline per connection phase, for HTTP channels that time their request heads and bodies.

The platform's limited HTTP site (``globaleye.guard.httpsite``) and the object store's S3 endpoint
(``globaleye.s3.endpoint``) both give a request's head, then its body, a deadline of their own:
a slow or silent client is cut instead of holding a connection for ever.  The mixin keeps the one
armed timer; the channel says what happens when it expires (:meth:`_expired`).
"""

from __future__ import annotations

from typing import Any


class PhaseDeadline:
    """Mixin for a protocol with ``callLater`` (``twisted.web.http.HTTPChannel``): :meth:`_arm` a
    deadline named after the phase it guards, :meth:`_disarm` it when the phase ends."""

    _deadline: Any = None
    _phase: str = ""

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.callLater(seconds, self._expired)  # type: ignore[attr-defined]

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self) -> None:
        raise NotImplementedError
