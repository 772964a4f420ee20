"""The grid's route: several live cameras in one answer (:mod:`globaleye.web.mux`), a mixin of
:class:`~globaleye.web.api.WebApi` (issue 11)."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import resource
from twisted.web.iweb import IRequest

from globaleye.users.accounts import LoginSession
from globaleye.web.auth import peer_of
from globaleye.web.problem import Problem, bad_request

log = Logger(namespace="globaleye.web")


class GridApi:
    """``GET /api/v1/live/mux.bin``: the request's streams checked as a whole here (400), each
    camera's access by the application layer when its stream opens (an error frame)."""

    services: Any
    live_video: Any

    async def live_mux(self, request: IRequest, session: LoginSession, body: None) -> resource.Resource:
        from globaleye.web.mux import BadMuxRequest, parse_specs

        values = [v.decode("utf-8", "replace") for v in (request.args or {}).get(b"s", [])]
        try:
            specs = parse_specs(values)
        except BadMuxRequest as e:
            raise bad_request(str(e)) from None
        if self.live_video is None:
            raise Problem(503, "live-unavailable", "Live video unavailable",
                          "live video needs the rtsp role in this process")
        return MuxResource(self.live_video, self.services.devices.may_watch, session.account, specs)


class MuxResource(resource.Resource):
    """Renders a :class:`globaleye.web.mux.MuxAnswer` (it writes the frames; NOT_DONE_YET)."""

    isLeaf = True

    def __init__(self, live: Any, may_watch: Any, account: str, specs: list[Any]) -> None:
        super().__init__()
        self.live, self.may_watch, self.account, self.specs = live, may_watch, account, specs

    def render_GET(self, request: IRequest) -> Any:  # noqa: N802
        from globaleye.web.mux import MuxAnswer

        return MuxAnswer(self.live, request, self.account, peer_of(request), self.specs, self.may_watch).start()
