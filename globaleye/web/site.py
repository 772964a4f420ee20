"""The web role's root resource: the portal's pages at ``/``, the JSON API at ``/api/``.

Every response, pages, API answers and errors alike, carries the security headers of
:data:`SECURITY_HEADERS`: a Content-Security-Policy with no inline script or style (the pages
are plain ES modules and one stylesheet), no framing, no MIME sniffing, no Referer.  The
listener itself (size and time limits on requests) is :class:`globaleye.guard.httpsite.LimitedSite`,
built by the composition root (:mod:`globaleye.platform.tap`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.web import resource, static
from twisted.web.iweb import IRequest

from globaleye.app import ClientServices
from globaleye.web.api import WebApi
from globaleye.web.auth import Sessions

log = Logger(namespace="globaleye.web")

STATIC = Path(__file__).resolve().parent / "static"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")

SECURITY_HEADERS = {
    b"content-security-policy": CSP.encode(),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
}


def secure(request: IRequest) -> None:
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


class StaticFiles(static.File):
    """The portal's files: no directory listings, ES modules as JavaScript (a module script
    served with another type is refused by browsers under ``nosniff``)."""

    contentTypes = {**static.File.contentTypes, ".js": "text/javascript; charset=utf-8",  # noqa: RUF012
                    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                    ".html": "text/html; charset=utf-8", ".json": "application/json", ".svg": "image/svg+xml"}

    def directoryListing(self) -> resource.Resource:  # noqa: N802
        return resource.NoResource("No such page.")


class PortalRoot(resource.Resource):
    """``/``: security headers first, then ``/api/...`` to the API and the rest to the files."""

    def __init__(self, files: resource.Resource, api: resource.IResource) -> None:
        super().__init__()
        self.files = files
        self.api = api

    def getChildWithDefault(self, name: bytes, request: IRequest) -> Any:  # noqa: N802
        secure(request)
        if name == b"api":
            return self.api
        return self.files.getChildWithDefault(name, request)

    def render(self, request: IRequest) -> Any:
        secure(request)
        return self.files.render(request)


def web_root(services: ClientServices, live: Any = None, sessions: Sessions | None = None,
             static_dir: Path = STATIC) -> PortalRoot:
    """The web role's resource tree over the application services (*live*: the live-video
    renderer, None without an rtsp role)."""
    sessions = sessions if sessions is not None else Sessions(services.accounts)
    api = WebApi(services, sessions, live)
    return PortalRoot(StaticFiles(str(static_dir)), api.as_resource())


def live_video(rtsp_proxy: Any) -> Any:
    """The live-video renderer over the RTSP proxy's fan-out (:mod:`globaleye.web.live`), or None
    when no proxy runs here or the module is not installed."""
    if rtsp_proxy is None:
        return None
    if importlib.util.find_spec("globaleye.web.live") is None:  # merged separately (issue 11)
        log.warn("web: globaleye.web.live is missing: live video answers 503")
        return None
    from globaleye.web.live import LiveVideo

    return LiveVideo(rtsp_proxy.factory)
