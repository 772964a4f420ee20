"""``globaleye-client cloud``: what a camera stored in the cloud (§7.1.1), found, fetched, played (§7.1.2).

* ``list``: ``SearchCloudFiles`` (docs/protocol.md, "Cloud storage (issue 12), the platform's side");
* ``download``: ``GetCloudFileUrl``, then an HTTP GET of the short-lived presigned URL (the client never
  holds a store credential), streamed to ``<name>.part``, its length checked against ``Content-Length``
  and the index's size, then renamed: a file of the final name is always whole;
* ``delete``: ``DeleteCloudFiles``, one file or a time range;
* ``play``: the RTSP proxy's ``/cloud/<DevID>/<ch>/<start>[?end=…]`` URL (docs/protocol.md, "Cloud
  recordings through the RTSP proxy"), with the account's own credentials (Digest, as ffmpeg or VLC
  would give them), to the end of the programme (the proxy's RTCP BYE); ``--record`` muxes the H.264
  into ``.ts`` or ``.mp4`` with the live recorder (:class:`~globaleye.client.media.Recorder`), and the
  recordings' AAC copied beside it (:class:`AacCopy`).

The client API does not give the proxy's address (``GetPlayUrl`` names the camera's own URLs, §8.9), so
it is ``--proxy`` (``$GLOBALEYE_PROXY``), by default the host of ``--mcu`` on the proxy's port 8554.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import sys
from typing import Any
from urllib.parse import quote, urlsplit

import treq
from twisted.internet import defer

from globaleye.client.progress import Progress
from globaleye.client.soap import ApiError, McuClient
from globaleye.media.h264au import Picture, PictureAssembler
from globaleye.media.rtsp.message import RtspResponse
from globaleye.media.rtsp.upstream import PathFailed, UpstreamSession

#: Files fetched per SearchCloudFiles page when a range is downloaded or listed whole.
PAGE_SIZE = 200
#: The RTSP proxy's port when ``--proxy`` names none (``[rtsp] port``'s default).
PROXY_PORT = 8554
RTCP_BYE = 203
_DIGEST_HASH = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


class CloudError(Exception):
    """A download or playback that failed for a reason other than an API Result."""


def add_parser(sub: Any) -> None:
    """``cloud list|download|delete|play`` under the client's subcommands."""
    cloud = sub.add_parser("cloud", help="recordings and pictures the camera stored in the cloud (§7.1)")
    verbs = cloud.add_subparsers(dest="cloud_command", required=True)

    def common(p: argparse.ArgumentParser, times: bool = True, needed: bool = False) -> None:
        p.add_argument("dev_id")
        p.add_argument("--channel", type=int, default=0)
        p.add_argument("--type", choices=("record", "picture"), default="record")
        if times:
            p.add_argument("--from", dest="start", required=needed, help="YYYYMMDDHHMMSS, Beijing time")
            p.add_argument("--to", dest="end", required=needed, help="YYYYMMDDHHMMSS, Beijing time")

    p = verbs.add_parser("list", help="stored files overlapping a time range (SearchCloudFiles)")
    common(p, needed=True)
    p.add_argument("--page", type=int, default=None, help="one page of --page-size (default: every page)")
    p.add_argument("--page-size", type=int, default=20)
    p = verbs.add_parser("download", help="one stored file by name, or every file of a time range")
    common(p)
    p.add_argument("name", nargs="?", help="a FileName of `cloud list`")
    p.add_argument("-o", "--output", default=None,
                   help="the file (one name) or directory (a range); default: the file's name here")
    p = verbs.add_parser("delete", help="one stored file by name, or every file of a time range (owner only)")
    common(p)
    p.add_argument("name", nargs="?")
    p = verbs.add_parser("play", help="play stored recordings through the RTSP proxy, across files")
    common(p, times=False)
    p.add_argument("--from", dest="start", required=True, help="YYYYMMDDHHMMSS, Beijing time")
    p.add_argument("--to", dest="end", default=None, help="YYYYMMDDHHMMSS (default: a day, or what is stored)")
    p.add_argument("--proxy", default=os.environ.get("GLOBALEYE_PROXY"),
                   help=f"rtsp://host:port of the RTSP proxy (default: --mcu's host, port {PROXY_PORT})")
    p.add_argument("--record", default=None, metavar="FILE", help="save the H.264 to .ts or .mp4 as it is sent")
    p.add_argument("--seconds", type=float, default=None, help="stop after this much of the programme")


def _range(args: argparse.Namespace, verb: str) -> tuple[str, str]:
    if args.name and (args.start or args.end):
        raise CloudError(f"cloud {verb}: a name or --from/--to, not both")
    if not args.name and not (args.start and args.end):
        raise CloudError(f"cloud {verb}: give a file name, or --from and --to")
    return args.start or "", args.end or ""


def check_cloud_args(args: argparse.Namespace) -> None:
    """Usage errors found before logging in (CloudError)."""
    if args.cloud_command in ("download", "delete"):
        _range(args, args.cloud_command)
    if args.cloud_command == "list" and (args.page is not None and args.page < 1 or not 1 <= args.page_size <= 200):
        raise CloudError("cloud list: --page counts from 1, --page-size is 1 to 200")


async def run_cloud(reactor: Any, mcu: McuClient, args: argparse.Namespace, password: str) -> int:
    """One ``cloud`` verb for a logged-in *mcu*; the exit status."""
    try:
        verb = args.cloud_command
        if verb == "list":
            return await _list(mcu, args)
        if verb == "download":
            return await _download(mcu, args)
        if verb == "delete":
            return await _delete(mcu, args)
        return await _play(reactor, mcu, args, password)
    except CloudError as e:
        print(f"globaleye-client: {e}", file=sys.stderr)
        return 1


async def search(mcu: McuClient, dev_id: str, channel: int, kind: str, start: str, end: str,
                 page: int | None = None, page_size: int = PAGE_SIZE) -> tuple[int, list[dict[str, Any]]]:
    """(TotalNum, files) of one page, or of every page when *page* is None."""
    files: list[dict[str, Any]] = []
    number = page or 1
    while True:
        answer = await mcu.call("SearchCloudFiles", DevID=dev_id, ChannelNo=channel, Type=kind, StartTime=start,
                                EndTime=end, PageNo=number, PageSize=page_size)
        got = list(answer.get("CloudFile", []))
        files += got
        total = int(answer.get("TotalNum") or 0)
        if page is not None or not got or number * page_size >= total:
            return total, files
        number += 1


async def _list(mcu: McuClient, args: argparse.Namespace) -> int:
    total, files = await search(mcu, args.dev_id, args.channel, args.type, args.start, args.end, args.page,
                                args.page_size if args.page else PAGE_SIZE)
    print(f"{'name':<36} {'start':<19} {'duration':>8} {'size':>12}")
    for f in files:
        s = str(f.get("StartTime", ""))
        when = f"{s[0:4]}-{s[4:6]}-{s[6:8]} {s[8:10]}:{s[10:12]}:{s[12:14]}" if len(s) == 14 else s
        print(f"{f.get('FileName', ''):<36} {when:<19} {f.get('Duration', 0):>7}s {f.get('FileSize', 0):>12}")
    shown = f"page {args.page}, " if args.page else ""
    print(f"{shown}{len(files)} of {total} file(s)")
    return 0


async def _download(mcu: McuClient, args: argparse.Namespace) -> int:
    start, end = _range(args, "download")
    if args.name:
        target = args.output or args.name
        if os.path.isdir(target):
            target = os.path.join(target, args.name)
        size = await fetch(mcu, args.dev_id, args.name, target)
        print(f"downloaded: {target} ({size} bytes)")
        return 0
    directory = args.output or "."
    os.makedirs(directory, exist_ok=True)
    _, files = await search(mcu, args.dev_id, args.channel, args.type, start, end)
    if not files:
        print("globaleye-client: no stored file in that range", file=sys.stderr)
        return 1
    total = 0
    for f in files:
        name = str(f["FileName"])
        if not _plain_name(name):
            raise CloudError(f"refusing to write a file named {name!r}")
        target = os.path.join(directory, name)
        total += await fetch(mcu, args.dev_id, name, target, int(f.get("FileSize") or 0) or None)
        print(f"downloaded: {target} ({f.get('FileSize')} bytes)")
    print(f"{len(files)} file(s), {total} bytes")
    return 0


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and "\0" not in name


async def fetch(mcu: McuClient, dev_id: str, name: str, target: str, expected: int | None = None,
                http: Any = None) -> int:
    """GetCloudFileUrl, then the presigned GET streamed into ``target.part``; renamed when the length is
    right (``Content-Length``, and *expected*, the index's FileSize, when known).  Returns the bytes."""
    answer = await mcu.call("GetCloudFileUrl", DevID=dev_id, FileName=name)
    url = str(answer.get("Url") or "")
    if not url:
        raise CloudError(f"GetCloudFileUrl gave no URL for {name}")
    response = await (http or treq).get(url, unbuffered=True)
    if response.code != 200:
        body = (await response.content())[:300].decode("utf-8", "replace")
        raise CloudError(f"GET of {name}: HTTP {response.code} {body.strip()}")
    length = response.length if isinstance(response.length, int) else None
    partial = target + ".part"
    written = 0
    with open(partial, "wb") as out:
        def chunk(data: bytes) -> None:
            nonlocal written
            out.write(data)
            written += len(data)

        try:
            await treq.collect(response, chunk)
        except Exception as e:
            out.close()
            os.unlink(partial)
            raise CloudError(f"GET of {name} cut short after {written} bytes: {e.__class__.__name__}") from None
    for what, want in (("Content-Length", length), ("the index's size", expected)):
        if want is not None and written != want:
            os.unlink(partial)
            raise CloudError(f"GET of {name}: {written} bytes, {what} says {want}")
    os.replace(partial, target)
    return written


async def _delete(mcu: McuClient, args: argparse.Namespace) -> int:
    start, end = _range(args, "delete")
    if args.name:
        answer = await mcu.call("DeleteCloudFiles", DevID=args.dev_id, FileName=args.name)
    else:
        answer = await mcu.call("DeleteCloudFiles", DevID=args.dev_id, ChannelNo=args.channel, Type=args.type,
                                StartTime=start, EndTime=end)
    print(f"deleted: {answer.get('DeletedNum', 0)} file(s)")
    return 0


# Playback through the RTSP proxy -----------------------------------------------------------------------


def proxy_base(proxy: str | None, mcu_url: str) -> str:
    """``rtsp://host:port`` of the proxy: *proxy*, else the client API's host on :data:`PROXY_PORT`."""
    if proxy:
        base = proxy if "://" in proxy else f"rtsp://{proxy}"
        return base.rstrip("/")
    host = urlsplit(mcu_url).hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"rtsp://{host}:{PROXY_PORT}"


def cloud_url(base: str, dev_id: str, channel: int, start: str, end: str | None) -> str:
    """docs/protocol.md's form: ``/cloud/<DevID>/<ChannelNo>/<start>[?end=<end>]``."""
    url = f"{base}/cloud/{quote(dev_id, safe='')}/{channel}/{quote(start, safe='')}"
    return url + (f"?end={quote(end, safe='')}" if end else "")


def authorization(challenges: list[str], user: str, password: str, method: str, uri: str) -> str | None:
    """An ``Authorization`` answering the strongest challenge we speak: Digest SHA-256 or MD5 (RFC 7616,
    without qop, as the proxy offers), else Basic; None when none is offered."""
    basic = False
    for challenge in challenges:
        scheme, _, rest = challenge.strip().partition(" ")
        if scheme.lower() == "basic":
            basic = True
            continue
        if scheme.lower() != "digest":
            continue
        params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _PARAM.finditer(rest)}
        algorithm = (params.get("algorithm") or "MD5").upper()
        h = _DIGEST_HASH.get(algorithm)
        if h is None or "nonce" not in params:
            continue
        realm, nonce = params.get("realm", ""), params["nonce"]

        def hx(text: str, h: Any = h) -> str:
            return str(h(text.encode("utf-8")).hexdigest())

        response = hx(f"{hx(f'{user}:{realm}:{password}')}:{nonce}:{hx(f'{method}:{uri}')}")
        fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
                  f'response="{response}"', f"algorithm={algorithm}"]
        if "opaque" in params:
            fields.append(f'opaque="{params["opaque"]}"')
        return "Digest " + ", ".join(fields)
    if basic:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return None


class ProxySession(UpstreamSession):
    """An :class:`UpstreamSession` to the platform's proxy, answering its 401 with the account's
    credentials (the camera sessions of §15 carry a HashToken in the URL instead)."""

    def __init__(self, reactor: Any, url: str, user: str, password: str, **kwargs: Any) -> None:
        super().__init__(reactor, url, "proxy", **kwargs)
        self.user, self.password = user, password
        self.challenges: list[str] = []
        self.describe_body = b""

    async def _ask(self, method: str, uri: str, headers: list[tuple[str, str]] | None = None) -> RtspResponse:
        assert self.protocol is not None
        for attempt in range(2):
            h = list(headers or [])
            if self.session_id is not None:
                h.append(("Session", self.session_id))
            if self.challenges:
                answer = authorization(self.challenges, self.user, self.password, method, uri)
                if answer is not None:
                    h.append(("Authorization", answer))
            response = await self.protocol.request(method, uri, h, clock=self.reactor)
            if response.code == 401 and attempt == 0:
                offered = response.headers.get_all("WWW-Authenticate")
                stale = any("stale" in c.lower() for c in offered)
                if offered and (not self.challenges or stale):
                    self.challenges = offered
                    continue
            if response.code != 200:
                raise PathFailed(f"{method} answered {response.code} {response.reason}".strip(), response.code)
            if method == "DESCRIBE":
                self.describe_body = response.body
            return response
        raise PathFailed(f"{method}: authentication failed")


def programme_seconds(sdp: bytes) -> float | None:
    """The programme's length from DESCRIBE's ``a=range:npt=0-<total>``."""
    m = re.search(rb"a=range:npt=[0-9.]*-([0-9.]+)", sdp)
    return float(m.group(1)) if m else None


def _is_bye(data: bytes) -> bool:
    """Whether a (compound) RTCP packet holds a BYE (RFC 3550 §6.6)."""
    at = 0
    while at + 4 <= len(data):
        if data[at + 1] == RTCP_BYE:
            return True
        at += 4 * (int.from_bytes(data[at + 2:at + 4], "big") + 1)
    return False


def rtp_info(value: str, track_urls: list[str]) -> dict[int, int]:
    """``RTP-Info`` (RFC 2326 §12.33): each track's ``rtptime`` at the PLAY's start, by track index."""
    out: dict[int, int] = {}
    for entry in re.split(r",\s*(?=url=)", value or ""):
        params = dict(part.strip().split("=", 1) for part in entry.split(";") if "=" in part)
        url, rtptime = params.get("url", ""), params.get("rtptime", "")
        if not rtptime.isdigit():
            continue
        for index, track_url in enumerate(track_urls):
            if url == track_url or url.endswith(f"/trackID={index}"):
                out[index] = int(rtptime)
    return out


class AacCopy:
    """The proxy's AAC (RFC 3640 AAC-hbr, one 1024-sample frame per access unit) copied into the
    recording, not re-encoded, on the video's timeline: the PLAY answer's RTP-Info gives both tracks'
    RTP time at the same instant (npt), so no sender report is needed."""

    def __init__(self, rate: int, config: bytes, video_start: int, audio_start: int, channels: int = 1) -> None:
        self.rate, self.config, self.channels = rate, config, channels
        self.av: Any = None
        self.container: Any = None
        self.video_start, self.audio_start = video_start, audio_start
        self.stream: Any = None
        self.offset: int | None = None  # audio RTP time of the recording's first picture
        self.pending: list[tuple[int, bytes]] = []
        self.last = -1
        self.frames = 0

    def attach(self, container: Any, first_picture: int) -> None:
        """Add the track (before the first packet is muxed) once the first picture's time is known."""
        import fractions

        import av

        self.av = av
        self.stream = container.add_stream("aac", rate=self.rate)
        self.stream.codec_context.extradata = self.config
        self.stream.codec_context.layout = "mono" if self.channels == 1 else "stereo"
        self.stream.time_base = fractions.Fraction(1, self.rate)
        since = ((first_picture - self.video_start) & 0xFFFFFFFF) / 90000
        self.offset = (self.audio_start + round(since * self.rate)) & 0xFFFFFFFF
        self.container = container

    def packet(self, data: bytes) -> None:
        from globaleye.media import rtp

        try:
            packet = rtp.parse_rtp(data)
            units = rtp.parse_aac_hbr(packet.payload)
        except rtp.RtpError:
            return
        if len(self.pending) > 4096:  # no picture yet after minutes of sound: keep the newest
            del self.pending[:1024]
        for i, unit in enumerate(units):
            self.pending.append(((packet.timestamp + 1024 * i) & 0xFFFFFFFF, unit))
        if self.stream is not None:
            self.flush()

    def flush(self) -> None:
        import fractions

        assert self.offset is not None
        for timestamp, unit in self.pending:
            pts = (timestamp - self.offset) & 0xFFFFFFFF
            if pts >= 1 << 31 or pts <= self.last:  # before the first picture, or repeated
                continue
            out = self.av.Packet(unit)
            out.stream = self.stream
            out.pts = out.dts = pts
            out.time_base = fractions.Fraction(1, self.rate)
            self.container.mux(out)
            self.last = pts
            self.frames += 1
        self.pending.clear()

    @property
    def seconds(self) -> float:
        return (self.last + 1024) / self.rate if self.frames else 0.0


def aac_config(fmtp: str) -> bytes | None:
    """The AudioSpecificConfig of an AAC-hbr fmtp (``mode=AAC-hbr;…;config=1588``), or None."""
    m = re.search(r"config=([0-9A-Fa-f]+)", fmtp)
    if m is None or "aac-hbr" not in fmtp.lower() or len(m.group(1)) % 2:
        return None
    return bytes.fromhex(m.group(1))


async def _play(reactor: Any, mcu: McuClient, args: argparse.Namespace, password: str) -> int:
    from globaleye.client.media import Decoder, Recorder

    url = cloud_url(proxy_base(args.proxy, mcu.url), args.dev_id, args.channel, args.start, args.end)
    session = ProxySession(reactor, url, mcu.account, password, connect_timeout=args.connect_timeout)
    progress = Progress()
    done: defer.Deferred[str] = defer.Deferred()
    state: dict[str, Any] = {"pictures": 0, "decoded": 0, "size": (0, 0), "first": None, "last": None}
    recorder: Recorder | None = None
    decoder = Decoder()

    def finish(why: str) -> None:
        if not done.called:
            done.callback(why)

    try:
        await session.connect()
        try:
            description = await session.describe()
        except PathFailed as e:
            if e.status == 404:  # the proxy's one answer for "not yours", "no such camera", "nothing stored"
                raise CloudError(f"{args.dev_id}: no stored recording in that time (or no such camera on this "
                                 "account)") from None
            raise
        video = description.track("video")
        if video is None:
            raise CloudError("the proxy offered no video track")
        section = description.media[video]
        assembler = PictureAssembler(section.sprop_parameter_sets)
        total = programme_seconds(session.describe_body)
        sound = description.track("audio")
        config = None
        if sound is not None and args.record:
            audio = description.media[sound]
            config = aac_config(audio.fmtp) if audio.encoding.upper() == "MPEG4-GENERIC" else None
        await session.setup([video] if config is None or sound is None else [video, sound])
        fps = section.framerate or 25.0
        aac: AacCopy | None = None
        wanted = args.seconds

        def picture(p: Picture) -> None:
            nonlocal recorder
            state["pictures"] += 1
            if state["first"] is None:
                state["first"] = p.timestamp
            state["last"] = p.timestamp
            if args.record:
                if recorder is None:
                    frames = decoder.decode(p)
                    if frames:
                        state["size"] = (frames[0].width, frames[0].height)
                    width, height = state["size"]
                    recorder = Recorder(args.record, width or 1280, height or 720, assembler.sps_pps, fps,
                                        label=f"client cloud {args.dev_id}/{args.channel}")
                    if aac is not None:
                        aac.attach(recorder.container, p.timestamp)
                recorder.write(p, reactor.seconds())
                played = recorder.seconds
                progress.show(f"recording {played:6.1f} s  {recorder.frames} pictures  {recorder.bytes / 1e6:.1f} MB")
            else:
                for frame in decoder.decode(p):
                    state["decoded"] += 1
                    state["size"] = (frame.width, frame.height)
                played = ((p.timestamp - state["first"]) & 0xFFFFFFFF) / 90000
                progress.show(f"playing {played:6.1f} s  {state['decoded']} frames decoded")
            if wanted is not None and played >= wanted:
                finish("--seconds reached")

        def rtp_in(track: int, data: bytes) -> None:
            if track == video:
                for p in assembler.feed(data):
                    picture(p)
            elif aac is not None and track == sound:
                aac.packet(data)

        def rtcp_in(track: int, data: bytes) -> None:
            if _is_bye(data):
                finish("end of the programme (RTCP BYE)")

        session.on_rtp = rtp_in
        session.on_rtcp = rtcp_in
        session.on_lost = lambda reason: finish(f"connection closed: {reason}")
        answer = await session.play()
        if config is not None and sound is not None:
            times = rtp_info(answer.headers.get("RTP-Info") or "", session.track_urls)
            if video in times and sound in times:
                track = description.media[sound]
                rtpmap = re.search(r"MPEG4-GENERIC/\d+/(\d+)", " ".join(track.lines), re.IGNORECASE)
                aac = AacCopy(track.clock_rate or 8000, config, times[video], times[sound],
                              int(rtpmap.group(1)) if rtpmap else 1)
        await session.wait_media(10.0)
        progress.show(f"playing {url} ({total if total is not None else '?'} s) …", force=True)
        # At Scale 1 the proxy sends in real time: a day-long programme is a day long; the limit only
        # guards against a proxy that never says BYE.
        limit = reactor.callLater(3600.0 * 25 if wanted is None else wanted + 30.0, finish, "time limit")
        why = await done
        if limit.active():
            limit.cancel()
    except PathFailed as e:
        raise CloudError(f"{url}: {e.reason}") from None
    finally:
        session.close()
        progress.done()
        if recorder is not None:
            recorder.close()
    print(f"url: {url}" + (f"  programme: {total:.1f} s" if total is not None else ""))
    print(f"video: {section.encoding.lower()} {state['size'][0]}x{state['size'][1]}  stopped: {why}")
    if args.record:
        if recorder is None:
            print("globaleye-client: nothing recorded", file=sys.stderr)
            return 1
        print(f"recorded: {args.record} ({recorder.frames} pictures, {recorder.seconds + 1 / fps:.1f} s, "
              f"{recorder.bytes / 1e6:.2f} MB, video not re-encoded)")
        if aac is not None and aac.frames:
            print(f"audio: AAC {aac.rate / 1000:g} kHz copied, {aac.frames} frames, {aac.seconds:.1f} s")
        else:
            print("audio: none (the recordings have no AAC, or the proxy sent none)")
    else:
        if not state["pictures"]:
            print("globaleye-client: no picture arrived", file=sys.stderr)
            return 1
        print(f"pictures: {state['pictures']}, decoded: {state['decoded']}")
    return 0


__all__ = ["ApiError", "CloudError", "add_parser", "authorization", "check_cloud_args", "cloud_url", "fetch", "proxy_base",
           "run_cloud", "search"]
