"""Cloud recordings and pictures in ``/api/v1`` (issue 12, §7.1.2: search, play back, download, delete).

:class:`CloudApi` is a mixin of :class:`globaleye.web.api.WebApi`; its methods answer the routes of
the ``# --- cloud storage ---`` block of :data:`globaleye.web.routes.ROUTES` through
:class:`globaleye.app.cloud.CloudService` (``services.cloud``; None when this platform has no storage
role nor external store: 503 ``cloud-unavailable``).

**Access first.**  Every handler asks the application layer whether the account may watch the camera
(owner or share guest) before it looks at anything else — query, file name, whether storage exists —
so another account's camera answers exactly like a camera that does not exist (404
``no-such-device``; tests/integration/test_web_api.py loops over the table).  Deleting is the
owner's only (CloudService's own check; a guest is 404 like a stranger).

**Playback and download of a range** (``…/cloud-files/play.mp4`` and ``download.mp4``): the files of the
range are read from the store in bounded pieces (:data:`CHUNK`) and remuxed TS→fragmented MP4 here
(:class:`globaleye.media.tsremux.TsRemuxer`, H.264 passed through, no transcoding) — the simplest solid
path: no RTSP session and no camera in between, the index already says which files follow each other,
and the browser's player (``js/player.js`` ``playRecording``) needs only an fMP4 stream whose time is
the position in the range.  Time 0 is ``from``; ``start`` seeks (the first IDR at or after it);
speed is the browser's ``playbackRate`` (the data come as fast as the socket takes them, so any speed
is possible: ``X-Scale`` echoes the asked one).  Memory per stream: one piece of TS and one picture.
Twisted pauses this producer when the browser's socket is full, and the browser's player stops
reading 30 s ahead of its playhead, so nothing piles up.  The range is bounded
(:data:`MAX_PLAY_SECONDS`, :data:`MAX_DOWNLOAD_SECONDS`).

**Pictures** (kind ``picture``) are proxied through ``…/cloud-files/{fileName}/picture.jpg`` rather than
shown from presigned URLs: the storage role is another origin (its own port, or an external S3
host), and allowing it in the portal's ``img-src`` would widen the strict CSP to a host the operator
may change and that serves every object; through the API the picture is same-origin, checked by the
session like every route, and bounded (:data:`MAX_PICTURE_BYTES`).  The presigned URL remains for
downloads (``…/url``), where the browser navigates to it and no CSP applies.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web import resource
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from globaleye.app.errors import NoSuchDevice
from globaleye.media import mpegts
from globaleye.media.tsremux import CLOCK, TsRemuxer
from globaleye.s3.backend import PICTURE_BUCKET, NoSuchBucket, NoSuchKey, StorageError
from globaleye.users.accounts import OK, LoginSession
from globaleye.util.clock import BEIJING, parse_protocol_time, protocol_time
from globaleye.web.auth import peer_of
from globaleye.web.problem import Problem, bad_request
from globaleye.web.reply import json_reply

if TYPE_CHECKING:
    from globaleye.app import ClientServices
    from globaleye.app.cloud import CloudService
    from globaleye.store import CloudObject

log = Logger(namespace="globaleye.web")

#: TS bytes read from the store per call (a multiple of 188).
CHUNK = 188 * 2048
#: The longest range one play.mp4 covers (the timeline's day); the player asks again from a later point.
MAX_PLAY_SECONDS = 24 * 3600 + 60
#: The longest range one download.mp4 covers (12 five-minute files a hour: 24 files).
MAX_DOWNLOAD_SECONDS = 2 * 3600
#: A picture larger than this is not proxied (a JPEG of a 1080p camera is a few hundred KB).
MAX_PICTURE_BYTES = 8 << 20
#: Most files one play or download request reads (a day of 5-minute files is 288).
MAX_FILES = 1000




def _query(request: IRequest, name: str) -> str:
    values = (request.args or {}).get(name.encode())
    return values[0].decode("utf-8", "replace") if values else ""


def _time(name: str, text: str) -> float:
    try:
        if len(text) != 14 or not text.isdigit():
            raise ValueError
        return parse_protocol_time(text)
    except ValueError:
        raise bad_request(f"{name} must be YYYYMMDDHHMMSS (Beijing time)") from None


def iso(seconds: float) -> str:
    """Beijing time as ISO without zone (2026-12-02T08:05:00), as the recordings page shows 72H times."""
    return datetime.datetime.fromtimestamp(seconds, BEIJING).strftime("%Y-%m-%dT%H:%M:%S")


def _unavailable() -> Problem:
    return Problem(503, "cloud-unavailable", "Cloud storage not configured",
                   "this platform has no storage role nor external store")


class CloudApi:
    """The cloud-storage routes of :class:`~globaleye.web.api.WebApi` (a mixin)."""

    services: ClientServices

    async def _cloud(self, session: LoginSession, dev_id: str, channel: int | None = None) -> CloudService:
        """The access check (404 like a camera that does not exist), then the cloud service (503 if none)."""
        if not await self.services.devices.may_watch(session.account, dev_id, channel if channel is not None else 0):
            raise NoSuchDevice(f"{dev_id} is not {session.account}'s to watch")
        cloud = self.services.cloud
        if cloud is None:
            raise _unavailable()
        return cloud

    async def cloud_files(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                          channel: int) -> bytes:
        """One page of the camera's stored files of one kind overlapping [from, to)."""
        cloud = await self._cloud(session, devId, channel)
        kind = _query(request, "kind") or "record"
        if kind not in ("record", "picture"):
            raise bad_request("kind must be record or picture")
        begin, end = _query(request, "from"), _query(request, "to")
        _time("from", begin), _time("to", end)
        page_no, page_size = _int(_query(request, "page") or "1", "page"), _int(_query(request, "pageSize") or "50",
                                                                                "pageSize")
        page = await cloud.search(session, devId, channel, kind, begin, end, page_no, page_size)
        files = []
        for f in page.files:
            start = parse_protocol_time(f.start)
            files.append({"fileName": f.name, "kind": f.kind, "channel": f.channel_no, "start": iso(start),
                          "end": iso(start + f.duration), "startTime": f.start, "durationSeconds": f.duration,
                          "size": f.size})
        pages = max(1, -(-page.total // page.page_size))
        return json_reply(request, 200, {"total": page.total, "page": page.page_no, "pageSize": page.page_size,
                                     "pages": pages, "files": files})

    async def cloud_file_url(self, request: IRequest, session: LoginSession, body: None, fileName: str,  # noqa: N803
                             devId: str) -> bytes:  # noqa: N803
        """A short-lived presigned GET of one stored file."""
        cloud = await self._cloud(session, devId)
        name = _name(fileName)
        url = await cloud.download_url(session, devId, name)
        return json_reply(request, 200, {"url": url, "expiresIn": cloud.settings.url_lifetime})

    async def cloud_picture(self, request: IRequest, session: LoginSession, body: None, fileName: str,  # noqa: N803
                            devId: str) -> bytes:  # noqa: N803
        """One stored picture, through the API (same origin: the portal's CSP stays as it is)."""
        cloud = await self._cloud(session, devId)
        name = _name(fileName)
        if not name.startswith(devId + "_"):
            raise Problem(404, "not-found", "Not found", f"no stored picture {name}")
        obj = await cloud.store.get_cloud_object(PICTURE_BUCKET, name)
        if obj is None or obj.dev_id != devId:
            raise Problem(404, "not-found", "Not found", f"no stored picture {name}")
        if obj.size > MAX_PICTURE_BYTES:
            raise Problem(422, "not-supported", "Picture too large", f"larger than {MAX_PICTURE_BYTES} bytes")
        try:
            data = await cloud.backend.read(obj.bucket, obj.key, 0, MAX_PICTURE_BYTES)
        except (NoSuchKey, NoSuchBucket):
            raise Problem(404, "not-found", "Not found", f"no stored picture {name}") from None
        request.setHeader(b"content-type", b"image/jpeg")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"private, max-age=300")
        return data

    async def delete_cloud_file(self, request: IRequest, session: LoginSession, body: None, fileName: str,  # noqa: N803
                                devId: str) -> bytes:  # noqa: N803
        """Delete one stored file (owner only)."""
        cloud = await self._cloud(session, devId)
        name = _name(fileName)
        await cloud.delete(session, devId, name)
        await self.services.accounts.audit("web-cloud-delete", session.account, peer_of(request), OK,
                                           f"DevID {devId}: {name}")
        return json_reply(request, 204)

    async def delete_cloud_files(self, request: IRequest, session: LoginSession, body: dict[str, Any],
                                 devId: str, channel: int) -> bytes:  # noqa: N803
        """Delete every file of one kind overlapping [from, to) (owner only, at most 5000 a request)."""
        cloud = await self._cloud(session, devId, channel)
        kind, begin, end = body.get("kind", "record"), body.get("from"), body.get("to")
        if kind not in ("record", "picture") or not isinstance(begin, str) or not isinstance(end, str):
            raise bad_request("kind is record or picture; from and to are YYYYMMDDHHMMSS")
        _time("from", begin), _time("to", end)
        count = await cloud.delete_range(session, devId, channel, kind, begin, end)
        await self.services.accounts.audit("web-cloud-delete-range", session.account, peer_of(request), OK,
                                           f"DevID {devId} channel {channel}: {count} {kind} {begin}-{end}")
        return json_reply(request, 200, {"deleted": count})

    async def play_cloud(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                         channel: int) -> resource.Resource:
        return await self._range(request, session, devId, channel, download=False)

    async def download_cloud(self, request: IRequest, session: LoginSession, body: None, devId: str,  # noqa: N803
                             channel: int) -> resource.Resource:
        return await self._range(request, session, devId, channel, download=True)

    async def _range(self, request: IRequest, session: LoginSession, dev_id: str, channel: int,
                     download: bool) -> resource.Resource:
        cloud = await self._cloud(session, dev_id, channel)
        begin, end = _time("from", _query(request, "from")), _time("to", _query(request, "to"))
        limit = MAX_DOWNLOAD_SECONDS if download else MAX_PLAY_SECONDS
        if not begin < end <= begin + limit:
            raise bad_request(f"from must be before to, at most {limit} s apart")
        start, speed = 0.0, 1.0
        if not download:
            try:
                start = float(_query(request, "start") or "0")
                speed = float(_query(request, "speed") or "1")
            except ValueError:
                raise bad_request("start and speed are numbers") from None
            if not 0 <= start < end - begin or not 0.25 <= speed <= 4:
                raise bad_request("start is seconds into the range; speed is 0.25 to 4")
        files = await cloud.recordings(session.account, dev_id, channel, begin + start, end, MAX_FILES)
        if files is None:
            raise NoSuchDevice(f"{dev_id} is not {session.account}'s to watch")
        if not files:
            raise Problem(404, "not-found", "No recordings", "no cloud recordings in this range")
        name = f"{dev_id}_{channel}_{protocol_time(begin)}-{protocol_time(end)[8:]}.mp4"
        return CloudStreamResource(cloud, files, begin, end, start, speed, download, name, session.account)


def _name(name: str) -> str:
    """The ``{fileName}`` path segment (werkzeug's string rule already allows no slash)."""
    if not name or len(name) > 128 or not all(c.isalnum() or c in "_.-" for c in name):
        raise bad_request("fileName is a stored file's name (DevID_ChannelNo_YYYYMMDDHHMMSS.ts or .jpg)")
    return name


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None


@implementer(IPushProducer)
class CloudStreamResource(resource.Resource):
    """The range as one fMP4 answer: read a piece, remux, write, wait while the socket is full."""

    isLeaf = True

    def __init__(self, cloud: CloudService, files: list[CloudObject], begin: float, end: float, start: float,
                 speed: float, download: bool, name: str, account: str) -> None:
        super().__init__()
        self.cloud, self.files, self.begin, self.end = cloud, files, begin, end
        self.start, self.speed, self.download, self.name, self.account = start, speed, download, name, account
        self._resume: Deferred[None] | None = None
        self._gone = False
        self.sent = 0

    # IPushProducer
    def pauseProducing(self) -> None:  # noqa: N802
        if self._resume is None:
            self._resume = Deferred()

    def resumeProducing(self) -> None:  # noqa: N802
        waiting, self._resume = self._resume, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self) -> None:  # noqa: N802
        self._gone = True
        self.resumeProducing()

    def render_GET(self, request: Any) -> Any:  # noqa: N802
        request.notifyFinish().addBoth(lambda _: self.stopProducing())
        d = Deferred.fromCoroutine(self._run(request))
        d.addErrback(lambda f: log.failure("web: cloud stream {name} failed", f, name=self.name))
        return NOT_DONE_YET

    async def _run(self, request: Any) -> None:
        remux = TsRemuxer(start=round(self.start * CLOCK), end=round((self.end - self.begin) * CLOCK),
                          duration=self.end - self.begin)
        started = False
        peer = peer_of(request)
        try:
            for obj in self.files:
                if self._gone or remux.done:
                    break
                out = remux.begin_file(round((obj.start - self.begin) * CLOCK))
                offset = 0
                while not self._gone and not remux.done and offset < obj.size:
                    try:
                        data = await self.cloud.backend.read(obj.bucket, obj.key, offset, CHUNK)
                    except (NoSuchKey, NoSuchBucket):
                        log.info("web: cloud stream: {key} vanished meanwhile; skipped", key=obj.key)
                        break
                    if not data:
                        break
                    out += remux.feed(data, offset)
                    offset += len(data)
                    if out and remux.codec is not None:
                        if not started:
                            started = True
                            self._headers(request, remux)
                        await self._write(request, out)
                        out = b""
                out += remux.end_file()
                if out and started:
                    await self._write(request, out)
            if self._gone:
                return
            tail = remux.finish()
            if tail and started:
                await self._write(request, tail)
        except (StorageError, mpegts.TsError, ValueError) as e:
            log.info("web: cloud stream {name} for {account} from {peer} ended: {error}", name=self.name,
                     account=self.account, peer=peer, error=e)
            if not started and not self._gone:
                request.write(Problem(502, "cloud-unavailable", "The store failed", str(e)).write(request))
                request.finish()
                return
        if self._gone:
            return
        if not started:
            request.write(Problem(404, "not-found", "No recordings",
                                  "no H.264 picture in the cloud recordings of this range").write(request))
        log.info("web: cloud {what} {name} for {account} from {peer}: {pictures} pictures, {bytes} bytes",
                 what="download" if self.download else "playback", name=self.name, account=self.account, peer=peer,
                 pictures=remux.pictures, bytes=self.sent)
        request.unregisterProducer()
        request.finish()

    def _headers(self, request: Any, remux: TsRemuxer) -> None:
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"video/mp4")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"x-codec", (remux.codec or "").encode())
        request.setHeader(b"x-start", f"{(remux.first_time or 0) / CLOCK:.3f}".encode())
        request.setHeader(b"x-scale", f"{self.speed:g}".encode())
        request.setHeader(b"x-duration", f"{self.end - self.begin:.3f}".encode())
        if self.download:
            request.setHeader(b"content-disposition", f'attachment; filename="{self.name}"'.encode())
        request.registerProducer(self, True)

    async def _write(self, request: IRequest, data: bytes) -> None:
        if self._gone:  # the browser left (or the answer ended): nothing more is written
            return
        request.write(data)
        self.sent += len(data)
        if self._resume is not None:
            await self._resume


__all__ = ["MAX_DOWNLOAD_SECONDS", "MAX_PLAY_SECONDS", "CloudApi", "CloudStreamResource"]
