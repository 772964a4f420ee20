"""One device's TCP session with the gateway (spec §7.3): the protocol adapter.

The session enforces the order of the conversation (nothing is served before a
successful LOGIN_REQ, a connection that does not log in soon is dropped, a session
silent for 360 s is closed) and turns frames into calls on the :class:`Gateway`,
which owns the decisions.  Requests are handled one at a time in arrival order so
a heartbeat can never be answered before the login it follows.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from globaleye.device.messaging import MessageProtocol
from globaleye.device.protocol import messages
from globaleye.device.protocol.frame import Frame
from globaleye.util.peerkey import source_address

if TYPE_CHECKING:
    from globaleye.device.gateway.service import Gateway


class DeviceSession(MessageProtocol):
    """The platform side of a device connection."""

    def __init__(self, gateway: Gateway, clock: IReactorTime) -> None:
        super().__init__(clock)
        self.gateway = gateway
        self.dev_id: str | None = None
        self.state = "new"  # new -> authenticating -> online -> closed
        self.connected_at = 0.0
        self.last_seen = 0.0
        self.cur_video_num = 0
        self.replaced = False
        self._timer: IDelayedCall | None = None
        self._queue: deque[tuple[Frame, messages.Message]] = deque()
        self._busy = False

    def describe(self) -> str:
        return f"device {self.dev_id} at {self.peer}" if self.dev_id else f"connection from {self.peer}"

    # Lifecycle --------------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self.connected_at = self.last_seen = self.clock.seconds()
        self._timer = self.clock.callLater(self.gateway.settings.login_timeout, self._expire, "no login")
        self.gateway.connection_opened(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.state = "closed"
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        super().connectionLost(reason)
        self.gateway.connection_closed(self, reason)

    def close(self, reason: str) -> None:
        if self.state == "online" or self.replaced:
            self.log.info("{who}: closing session: {reason}", who=self.describe(), reason=reason)
        else:  # not a logged-in device: summarised per source address
            self.gateway.refusal_log.event((source_address(self.peer), "close"), f"gateway closed connections from "
                                           f"{source_address(self.peer)} (last: {reason})",
                                           "{who}: closing session: {reason}", who=self.describe(), reason=reason)
        self.connected = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()  # no login or heartbeat deadline outlives the close
        self._timer = None
        if self.transport is not None:
            self.transport.loseConnection()

    def refuse(self, reason: str, close: bool = False) -> None:
        """Log a refusal (summarised per source address while not logged in); optionally close."""
        if self.state == "online":
            super().refuse(reason, close)
            return
        source = source_address(self.peer)
        self.gateway.refusal_log.event((source, "refuse"), f"gateway refusals from {source}",
                                       "{who}: refused: {reason}", who=self.describe(), reason=reason)
        if close and self.transport is not None:
            self.connected = False
            self.transport.loseConnection()

    def _expire(self, why: str) -> None:
        self._timer = None
        if why == "no login":
            self.refuse(f"no successful login within {self.gateway.settings.login_timeout:g} s", close=True)
        else:
            self.refuse(f"no heartbeat for {self.gateway.settings.heartbeat_timeout:g} s", close=True)

    def went_online(self, dev_id: str) -> None:
        self.dev_id = dev_id
        self.state = "online"
        self.touch()

    def touch(self) -> None:
        """A valid request arrived: restart the 360 s silence timer (§7.3.4)."""
        self.last_seen = self.clock.seconds()
        timeout = self.gateway.settings.heartbeat_timeout
        if self._timer is not None and self._timer.active():
            self._timer.reset(timeout)
        else:
            self._timer = self.clock.callLater(timeout, self._expire, "no heartbeat")

    # Requests ---------------------------------------------------------------------

    def request_received(self, frame: Frame, message: messages.Message) -> None:
        if self.state == "new":
            if not isinstance(message, messages.LoginRequest):
                self.refuse(f"<{message.ROOT}> before login", close=True)
                return
            self.state = "authenticating"
        elif self.state == "authenticating":
            self.refuse(f"<{message.ROOT}> while the login is being checked", close=True)
            return
        self._queue.append((frame, message))
        if not self._busy:
            self._next()

    def _next(self) -> None:
        while self._queue and self.connected:
            frame, message = self._queue.popleft()
            self._busy = True
            d = Deferred.fromCoroutine(self.gateway.handle_request(self, message))
            if not d.called:
                d.addBoth(self._handled, frame)
                return
            d.addBoth(self._handled, frame, resume=False)
        self._busy = False

    def _handled(self, result: Any, frame: Frame, resume: bool = True) -> None:
        if isinstance(result, Failure):
            self.log.failure("{who}: error handling cmd={cmd:#04x}", result, who=self.describe(), cmd=frame.cmd)
            result = None
        response, close = result if result is not None else (None, True)
        if response is not None:
            self.respond(frame, response)
        if close:
            self.close("session refused")
        if resume:
            self._busy = False
            self._next()
