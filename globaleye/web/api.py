"""The routes of ``/api/v1``: JSON in and out, one table for the router and the OpenAPI document.

:class:`WebApi` registers every route of :data:`globaleye.web.routes.ROUTES` with klein (the Twisted
project's router: werkzeug's URL rules on twisted.web, coroutines as handlers) and
:mod:`globaleye.web.openapi` documents the same table, so the two cannot drift.

No route decides anything itself: each calls the application layer (:mod:`globaleye.app`) the
way the SOAP face (:mod:`globaleye.api.clientapi`) does, and turns the answer into JSON, a §8 Result
into a status, an :class:`~globaleye.app.errors.AppError` into a problem
(:func:`globaleye.web.problem.from_app_error`).  Every device route first goes through the
application layer's access check, so another account's camera is 404 like one that does not
exist (tests/integration/test_web_api.py loops over this table to prove it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from klein import Klein
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.web import resource
from twisted.web.iweb import IRequest
from werkzeug.routing import Map, Rule

from globaleye.app import ClientServices
from globaleye.app.devices import DeviceEntry
from globaleye.app.errors import AppError, NoSuchDevice
from globaleye.guard.keyguard import source_of
from globaleye.users.accounts import OK, LoginSession
from globaleye.web.api_cloud import CloudApi
from globaleye.web.api_delivery import DeliveryApi
from globaleye.web.api_events import EventsApi
from globaleye.web.api_grid import GridApi
from globaleye.web.api_hls import HlsRoutes
from globaleye.web.api_pictures import PicturesApi
from globaleye.web.api_playback import PlaybackApi
from globaleye.web.api_settings import SettingsApi
from globaleye.web.api_snapshot import SnapshotApi
from globaleye.web.auth import Sessions, check_origin, log_refusal, peer_of
from globaleye.web.openapi import document
from globaleye.web.problem import Problem, bad_request, from_app_error
from globaleye.web.routes import PTZ_DIRECTIONS, ROUTES, STREAMS, Route

log = Logger(namespace="globaleye.web")

JSON = b"application/json; charset=utf-8"
#: §8.5 names each channel of a multi-channel camera "name #n": the camera's own name is without it.
CHANNEL_SUFFIX = re.compile(r" #[0-9]+$")


@attrs.frozen
class Reply:
    """A route's JSON answer (``data`` None: no body, e.g. 204)."""

    status: int = 200
    data: Any = None


Handler = Callable[..., Awaitable[Reply | resource.Resource]]


class WebApi(SettingsApi, EventsApi, PlaybackApi, GridApi, HlsRoutes, SnapshotApi, PicturesApi,
             DeliveryApi, CloudApi):
    """The ``/api`` resource: :data:`ROUTES` on klein, over the application services."""

    def __init__(self, services: ClientServices, sessions: Sessions, live: Any = None) -> None:
        self.services = services
        self.sessions = sessions
        #: :class:`globaleye.web.live.LiveVideo`, or None when no rtsp role runs in this process.
        self.live_video = live
        self.app = Klein()
        for route in ROUTES:
            self.app.route(route.klein_path(), methods=[route.method],
                           endpoint=f"{route.method} {route.path}")(self._dispatcher(route))
        # Anything else under /api: a problem (405 with Allow for a known path), not klein's HTML page.
        self.app.route("/", branch=True, endpoint="no-route")(self._no_route)
        self._paths = Map([Rule(route.klein_path(), methods=[route.method], endpoint=f"{route.method} {route.path}")
                           for route in ROUTES])

    def as_resource(self) -> resource.IResource:
        return self.app.resource()

    # Dispatch -------------------------------------------------------------------------------

    def _dispatcher(self, route: Route) -> Callable[..., Any]:
        handler: Handler = getattr(self, route.handler)

        async def dispatch(request: IRequest, **params: Any) -> bytes | resource.Resource:
            request.setHeader(b"cache-control", b"no-store")
            try:
                check_origin(request)
                session = self.sessions.require(request) if route.session else None
                if session is not None and route.csrf:
                    self.sessions.check_csrf(request, session)
                body = _json_body(request) if route.body is not None else None
                answer = await handler(request, session, body, **params)
            except Problem as problem:
                return _refused(request, problem)
            except AppError as error:
                answered = from_app_error(error)
                if answered.kind == "internal":
                    log.failure("web: {method} {path}", method=route.method, path=route.path)
                return _refused(request, answered, str(error))
            except CancelledError:
                raise  # the client went away: klein cancels the handler, nothing is written
            except Exception:
                # A defect, not a refusal: logged with its traceback, answered as a problem (no HTML page).
                log.failure("web: {method} {path} failed", method=route.method, path=route.path)
                return Problem(500, "internal", "Internal error").write(request)
            if isinstance(answer, Reply):
                request.setResponseCode(answer.status)
                if answer.data is None:
                    return b""
                request.setHeader(b"content-type", JSON)
                return json.dumps(answer.data, ensure_ascii=False).encode()
            return answer

        dispatch.__name__ = route.handler
        return dispatch

    def _no_route(self, request: IRequest) -> bytes:
        path = request.path.decode("latin-1")
        allowed = self._paths.bind("portal", "/api").allowed_methods(path.removeprefix("/api")) \
            if path.startswith("/api/") else []
        if allowed:
            request.setHeader(b"allow", ", ".join(sorted(set(allowed) - {"HEAD"})).encode())
            return Problem(405, "method-not-allowed", "Method not allowed",
                           f"{path} answers {', '.join(sorted(set(allowed) - {'HEAD'}))}").write(request)
        return Problem(404, "no-route", "No such API route", path).write(request)

    # Session ---------------------------------------------------------------------------------

    def _session_view(self, session: LoginSession) -> dict[str, Any]:
        return {"account": session.account, "csrfToken": self.sessions.csrf_token(session)}

    async def login(self, request: IRequest, session: None, body: dict[str, Any]) -> Reply:
        """§8.3 through the same gate as SOAP (slow-down, lockout, key guard).  Why a refusal came is
        read from the accounts service and the key guard before the attempt: a lock or a throttle
        already in force is 423 or 429 with Retry-After; a wrong password or account is 401 (the two are
        not told apart, unlike §8.3's Result 1)."""
        account, password = _text(body, "account"), _text(body, "password")
        peer = peer_of(request)
        accounts = self.services.accounts.accounts
        wait, _why, trusted = accounts.guard.refusal(f"acct:{account}", source_of(peer))
        locked = 0.0 if trusted else accounts.locked_for(account)
        # The portal ships with this platform: it is always the newest client (§8.3's version check).
        version = ".".join(str(part) for part in accounts.settings.min_mcu_version)
        outcome = await self.services.accounts.login(account, password, version, peer)
        if outcome.session is None:
            if locked > 0:
                raise Problem(423, "account-locked", "Account locked",
                              "too many wrong passwords; try again later", retry_after=locked)
            if wait > 0:
                raise Problem(429, "too-many-attempts", "Too many attempts",
                              "too many failed logins from this address; try again later", retry_after=wait)
            raise Problem(401, "login-failed", "Wrong account or password", "check the number and the password")
        self.sessions.set_cookie(request, outcome.session)
        return Reply(200, self._session_view(outcome.session))

    async def whoami(self, request: IRequest, session: LoginSession, body: None) -> Reply:
        return Reply(200, self._session_view(session))

    async def logout(self, request: IRequest, session: LoginSession, body: None) -> Reply:
        await self.services.accounts.logout(session.account, session.token, peer_of(request))
        self.sessions.clear_cookie(request)
        return Reply(204)

    # Accounts ----------------------------------------------------------------------------------

    async def sms_code(self, request: IRequest, session: None, body: dict[str, Any]) -> Reply:
        result = await self.services.accounts.request_sms_code(_text(body, "account"), 0, peer_of(request))
        if result != OK:
            raise Problem(429, "sms-not-sent", "Code not sent",
                          "check the number, or wait a minute before asking again")
        return Reply(202, {"sent": True})

    async def sign_up(self, request: IRequest, session: None, body: dict[str, Any]) -> Reply:
        account = _text(body, "account")
        result = await self.services.accounts.register(account, _text(body, "password"), _text(body, "smsCode"),
                                                       peer_of(request))
        if result == OK:
            return Reply(201, {"account": account})
        if result == 1:  # §8.2 Result 1: already registered (told only after the right code)
            raise Problem(409, "already-registered", "Already registered", "log in, or reset the password")
        if result == 2:
            raise Problem(422, "wrong-sms-code", "Wrong or expired code", "ask for a new code")
        raise Problem(422, "cannot-subscribe", "Cannot open the service",
                      "the number cannot open the service, or the password is not 6-32 characters")

    async def change_password(self, request: IRequest, session: LoginSession, body: dict[str, Any]) -> Reply:
        result = await self.services.accounts.change_password(session, _text(body, "oldPassword"),
                                                              _text(body, "newPassword"), peer_of(request))
        if result != OK:
            raise Problem(422, "wrong-password", "Password not changed",
                          "the old password is wrong or the new one is not 6-32 characters")
        self.sessions.clear_cookie(request)  # every session of the account has ended
        return Reply(204)

    async def close_account(self, request: IRequest, session: LoginSession, body: None) -> Reply:
        await self.services.accounts.close_account(session, peer_of(request))
        self.sessions.clear_cookie(request)
        return Reply(204)

    # Devices ---------------------------------------------------------------------------------

    async def devices(self, request: IRequest, session: LoginSession, body: None) -> Reply:
        return Reply(200, {"devices": _device_views(await self.services.devices.list_for(session))})

    async def add_device(self, request: IRequest, session: LoginSession, body: dict[str, Any]) -> Reply:
        dev_id = _text(body, "devId")
        await self.services.devices.add(session, dev_id, _text(body, "devKey"))
        await self._audit(request, session, "web-add-device", dev_id)
        return Reply(201, {"devId": dev_id})

    async def device(self, request: IRequest, session: LoginSession, body: None, devId: str) -> Reply:  # noqa: N803
        views = _device_views(await self.services.devices.list_for(session), devId)
        if not views:
            raise NoSuchDevice(f"{devId} is not in {session.account}'s list")
        return Reply(200, views[0])

    async def remove_device(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                            devId: str) -> Reply:  # noqa: N803
        await self.services.devices.remove(session, devId, _text(body, "devKey"))
        await self._audit(request, session, "web-remove-device", devId)
        return Reply(204)

    async def ptz(self, request: IRequest, session: LoginSession, body: dict[str, Any], devId: str) -> Reply:  # noqa: N803
        direction = body.get("direction")
        if direction not in PTZ_DIRECTIONS:
            raise bad_request(f"direction must be one of {', '.join(PTZ_DIRECTIONS)}")
        channel = _int(body.get("channel", 0), "channel")
        await self.services.control.ptz(session, devId, channel, PTZ_DIRECTIONS[direction])
        return Reply(204)

    async def alarms(self, request: IRequest, session: LoginSession, body: None, devId: str) -> Reply:  # noqa: N803
        page_no = _int(_query(request, "page") or "1", "page")
        page = await self.services.alarms.search(session, devId, _query(request, "start"), _query(request, "end"),
                                                 page_no)
        return Reply(200, {"total": page.total, "page": page_no, "alarms": [
            {"channel": a.channel_no, "type": a.exception_type, "description": a.description, "time": a.time}
            for a in page.alarms]})

    async def shares(self, request: IRequest, session: LoginSession, body: None, devId: str) -> Reply:  # noqa: N803
        return Reply(200, {"accounts": list(await self.services.devices.shares(session, devId))})

    async def share(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                    devId: str) -> Reply:  # noqa: N803
        guest = _text(body, "account")
        await self.services.devices.share(session, devId, guest)
        await self._audit(request, session, "web-share", f"{devId} with {guest}")
        return Reply(201, {"devId": devId, "account": guest})

    async def unshare(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                      account: str) -> Reply:
        await self.services.devices.unshare(session, devId, account)
        await self._audit(request, session, "web-unshare", f"{devId} with {account}")
        return Reply(204)

    async def live(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                   channel: int) -> resource.Resource:
        """The live stream: the access check here (404 for a camera not the account's), the fMP4
        stream by :class:`globaleye.web.live.LiveVideo` (the RTSP proxy's fan-out)."""
        stream = STREAMS.get(_query(request, "stream") or "main")
        if stream is None:
            raise bad_request("stream must be main or sub")
        if not await self.services.devices.may_watch(session.account, devId, channel):
            raise NoSuchDevice(f"{devId} channel {channel} is not {session.account}'s to watch")
        if self.live_video is None:
            raise Problem(503, "live-unavailable", "Live video unavailable",
                          "live video needs the rtsp role in this process")
        return LiveResource(self.live_video, session.account, devId, channel, stream)

    async def openapi(self, request: IRequest, session: None, body: None) -> Reply:
        return Reply(200, document(ROUTES))

    async def _audit(self, request: IRequest, session: LoginSession, action: str, what: str) -> None:
        await self.services.accounts.audit(action, session.account, peer_of(request), OK, f"DevID {what}")


class LiveResource(resource.Resource):
    """Renders :meth:`LiveVideo.render` (it writes the stream and returns NOT_DONE_YET); its
    ``LiveUnavailable``, raised before anything is written, becomes a problem."""

    isLeaf = True

    def __init__(self, live: Any, account: str, dev_id: str, channel: int, stream: int) -> None:
        super().__init__()
        self.live, self.account, self.dev_id, self.channel, self.stream = live, account, dev_id, channel, stream

    def render_GET(self, request: IRequest) -> Any:  # noqa: N802
        from globaleye.web.live import (
            LiveUnavailable,  # the live-video module (issue 11, merged separately)
        )

        try:
            return self.live.render(request, self.account, self.dev_id, self.channel, self.stream)
        except LiveUnavailable as e:
            log.info("web: live {dev_id}/{channel}/{stream} for {account} unavailable: {detail}",
                     dev_id=self.dev_id, channel=self.channel, stream=self.stream, account=self.account,
                     detail=e.detail)
            return Problem(e.status, "live-unavailable", e.title, e.detail).write(request)


# Helpers -------------------------------------------------------------------------------------


def _refused(request: IRequest, problem: Problem, why: str = "") -> bytes:
    """Answer *problem*, logged with the peer and the reason (CSRF and Origin refusals are logged
    where they are found, with what was wrong)."""
    if problem.kind not in ("csrf", "origin"):
        log_refusal(request, problem.kind, "web: {peer} {method} {path}: {status} {kind}: {why}", peer=peer_of(request),
                 method=request.method.decode("latin-1"), path=request.path.decode("latin-1"),
                 status=problem.status, kind=problem.kind, why=why or problem.detail or problem.title)
    return problem.write(request)


def _json_body(request: IRequest) -> dict[str, Any]:
    """The request's JSON object (400 ``invalid-request`` otherwise; its size LimitedSite bounds)."""
    raw = request.content.read() if request.content is not None else b""
    try:
        value = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"the body is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise bad_request("the body must be a JSON object")
    return value


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string")
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise bad_request(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an integer") from None


def _query(request: IRequest, name: str) -> str:
    values = (request.args or {}).get(name.encode())
    return values[0].decode("utf-8", "replace") if values else ""


def _device_views(entries: tuple[DeviceEntry, ...], only: str | None = None) -> list[dict[str, Any]]:
    """The §8.5 entries (one per channel) as one object per camera, in list order, with what the
    ability report says it can do (``abilitiesKnown`` false: no report yet, nothing greyed out)."""
    by_id: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if only is not None and entry.dev_id != only:
            continue
        view = by_id.get(entry.dev_id)
        if view is None:
            streams = sorted({name for name, number in STREAMS.items()
                              for video in entry.videos if video.stream_type == number})
            view = by_id[entry.dev_id] = {
                "devId": entry.dev_id, "name": CHANNEL_SUFFIX.sub("", entry.name),
                "online": entry.online, "shared": bool(entry.shared), "channels": [],
                "abilitiesKnown": bool(entry.videos),
                "abilities": {"ptz": entry.ptz, "streams": streams or ["main", "sub"]}}
        view["channels"].append({"channel": entry.channel_no, "name": entry.name})
    return list(by_id.values())
