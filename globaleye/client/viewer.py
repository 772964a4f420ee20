"""Watch one camera stream as the §3 phone client does: §8.9 URLs, §15 paths, pictures.

The path selection is the proxy's own (:func:`globaleye.media.rtsp.paths.connect_camera`),
fed with fresh URLs from ``GetPlayUrl`` for each attempt (every URL carries a
single-use HashToken).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer

from globaleye.client.media import Picture
from globaleye.client.soap import McuClient
from globaleye.media.h264au import PictureAssembler
from globaleye.media.rtsp.paths import Attempt, PathSettings, PlayUrls, connect_camera
from globaleye.media.rtsp.sdp import MediaSection
from globaleye.media.rtsp.upstream import UpstreamSession


@attrs.define
class StreamFacts:
    path: str = ""
    attempts: list[Attempt] = attrs.Factory(list)
    codec: str = ""
    width: int = 0
    height: int = 0
    fps: float | None = None
    audio: str = ""
    first_picture_ms: float | None = None  # from PLAY to the first whole picture (an IDR)
    first_frame_ms: float | None = None  # from PLAY to the first decoded frame
    pictures: int = 0

    def lines(self) -> list[str]:
        out = [f"path: {self.path}"]
        out += [f"  tried {a.path}: {'ok' if a.ok else 'failed'}: {a.reason} ({a.seconds:.2f} s)"
                for a in self.attempts]
        out.append(f"video: {self.codec} {self.width}x{self.height}"
                   + (f" {self.fps:.2f} fps" if self.fps else ""))
        if self.audio:
            out.append(f"audio: {self.audio}")
        if self.first_frame_ms is not None:
            out.append(f"first frame: {self.first_frame_ms:.0f} ms after PLAY")
        return out


class CameraViewer:
    def __init__(self, reactor: Any, mcu: McuClient, dev_id: str, channel_no: int = 0, stream_type: int = 1,
                 settings: PathSettings | None = None) -> None:
        self.reactor = reactor
        self.mcu = mcu
        self.dev_id = dev_id
        self.channel_no = channel_no
        self.stream_type = stream_type
        self.settings = settings or PathSettings()
        self.session: UpstreamSession | None = None
        self.assembler = PictureAssembler()
        self.facts = StreamFacts()
        self.on_picture: Callable[[Picture], None] = lambda picture: None
        self.video_track: int | None = None
        self.video: MediaSection | None = None
        self._timestamps: list[int] = []
        self.ended: defer.Deferred[str] = defer.Deferred()

    async def start(self) -> StreamFacts:
        async def fresh(path: str) -> PlayUrls:
            return await self.mcu.play_urls(self.dev_id, self.channel_no, self.stream_type)

        self.session, self.facts.attempts = await connect_camera(
            self.reactor, fresh, self.settings, on_session=self._attach,
            label=f"client {self.dev_id}/{self.channel_no}/{self.stream_type}")
        self.facts.path = self.session.path
        return self.facts

    def _attach(self, session: UpstreamSession) -> None:
        # Over UDP the first IDR can arrive before connect_camera returns: the session must be
        # ours from the first packet, or that picture is lost and the first frame waits a GOP.
        self.session = session
        description = session.description
        assert description is not None
        self.video_track = description.track("video")
        if self.video_track is not None:
            self.video = description.media[self.video_track]
            self.assembler = PictureAssembler(self.video.sprop_parameter_sets)
            self.facts.codec = self.video.encoding.lower()
            self.facts.fps = self.video.framerate
        audio = description.track("audio")
        if audio is not None:
            self.facts.audio = description.media[audio].encoding.lower()
        session.on_rtp = self._rtp
        session.on_lost = lambda reason: None if self.ended.called else self.ended.callback(reason)

    def _rtp(self, track: int, data: bytes) -> None:
        if track != self.video_track or self.session is None:
            return
        for picture in self.assembler.feed(data):
            self.facts.pictures += 1
            if self.facts.first_picture_ms is None:
                self.facts.first_picture_ms = (time.monotonic() - self.session.started_at) * 1000
            if len(self._timestamps) < 50:
                self._timestamps.append(picture.timestamp)
                if len(self._timestamps) >= 10:
                    span = (self._timestamps[-1] - self._timestamps[0]) & 0xFFFFFFFF
                    if span:
                        self.facts.fps = round(90000 * (len(self._timestamps) - 1) / span, 2)
            self.on_picture(picture)

    def frame_decoded(self, frame: Any) -> None:
        if self.facts.first_frame_ms is None and self.session is not None:
            self.facts.first_frame_ms = (time.monotonic() - self.session.started_at) * 1000
            self.facts.width, self.facts.height = frame.width, frame.height

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
