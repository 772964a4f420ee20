"""The simulated camera's FTP pictures: §7.5.24 policies with StoreType 0, uploaded, then 36H (issue 12).

A real camera with a picture policy of StoreType 0 (FTP) takes a JPEG every ``Interval`` seconds
inside the policy's window (or once at StartTime when Interval is 0, §7.5.24), uploads it to the
FTP server and account REGISTER_RES gave it (§7.2: FtpIP, FtpPort, FtpAccount, FtpPassword) as
``DevID_ChannelNo_YYYYMMDDHHMMSS.JPG`` (§7.5.27's name; Beijing time, as the device's clock), and
then tells the platform with 36H NOTIFY_PICTURE_REQ (FileName, Time).  This module does that on the
reactor clock: a check every ``check_interval`` seconds of the policies the camera stores
(:attr:`CameraState.picture_policies`, filled by 75H), the picture drawn from the simulator's test
pattern and encoded as JPEG by PyAV in a thread, the upload by Twisted's
:class:`~twisted.protocols.ftp.FTPClient` in passive mode.

Cloud pictures (StoreType 1) are not done here.  A failed upload sends no 36H (the camera has
nothing to tell); it is logged and counted in :attr:`FtpPictures.failures`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientCreator
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.protocols.ftp import FTPClient

from globaleye.device.protocol import messages as m
from globaleye.util.clock import BEIJING

if TYPE_CHECKING:
    from globaleye.sim.camera import SimulatedCamera

#: The picture's size: the sub stream's CIF, what a store camera sends as a snapshot.
PICTURE_SIZE = (352, 288)


def pattern_jpeg(text: str, size: tuple[int, int] = PICTURE_SIZE) -> bytes:
    """A JPEG of the simulator's test pattern with *text* (digits) drawn on it (PyAV, in a thread)."""
    import av  # the simulator's media extra
    import numpy as np

    from globaleye.sim.media.pattern import diagonal_gradient, draw_digits

    w, h = size
    y = (diagonal_gradient(w, h) % 200 + 16).astype(np.uint8)
    digit_h = max(16, h // 8)
    y[4:digit_h + 12, 4:12 + digit_h * len(text)] = 16
    draw_digits(y, text, 8, 8, digit_h)
    uv = np.full((h // 2, w), 128, dtype=np.uint8)  # the two chroma planes, (h/2, w/2) each, as one (h/2, w)
    frame = av.VideoFrame.from_ndarray(np.concatenate([y, uv], axis=0), format="yuv420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = w, h
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    packets = list(encoder.encode(frame.reformat(format="yuvj420p"))) + list(encoder.encode(None))
    return b"".join(bytes(p) for p in packets)


class FtpPictures:
    """Runs one camera's FTP picture policies; :meth:`shoot` takes and uploads one picture now."""

    log = Logger()

    def __init__(self, camera: SimulatedCamera, *, check_interval: float = 1.0, timeout: float = 20.0,
                 picture: Callable[[str], bytes] = pattern_jpeg) -> None:
        self.camera = camera
        self.check_interval = check_interval
        self.timeout = timeout
        self.picture = picture
        #: File names uploaded and announced (36H answered), oldest first.
        self.uploaded: list[str] = []
        self.failures = 0
        self.last_error = ""
        #: PolicyID -> clock second of its latest picture.
        self._last: dict[int, float] = {}
        self._busy: set[int] = set()
        self._loop: LoopingCall | None = None

    def start(self) -> None:
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.camera.clock
        self._loop.start(self.check_interval, now=False).addErrback(
            lambda f: self.log.failure("FTP picture policies stopped", f))

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.camera.clock.seconds(), BEIJING)

    def due(self) -> list[tuple[int, int]]:
        """(channel, PolicyID) of the FTP policies due now: inside the window and Interval seconds since
        the last picture, or (Interval 0) at StartTime's minute and not yet in it."""
        now = self.camera.clock.seconds()
        local = self._now()
        minute = local.hour * 60 + local.minute
        wanted = []
        for channel, policies in sorted(self.camera.state.picture_policies.items()):
            for stored in policies:
                if stored.store_type != m.PictureStoreType.FTP:
                    continue
                p = stored.entry
                start, end = _minutes(p.start_time), _minutes(p.end_time)
                last = self._last.get(p.policy_id)
                if p.interval == 0:
                    if minute == start and (last is None or now - last >= 60):
                        wanted.append((channel, p.policy_id))
                elif start <= minute < end and (last is None or now - last >= p.interval):
                    wanted.append((channel, p.policy_id))
        return wanted

    def _tick(self) -> None:
        if not self.camera.online or self.camera.registration is None:
            return
        for channel, policy_id in self.due():
            if policy_id in self._busy:
                continue
            self._last[policy_id] = self.camera.clock.seconds()
            self._busy.add(policy_id)
            d: Deferred[Any] = Deferred.fromCoroutine(self.shoot(channel))
            d.addErrback(lambda f: None)  # counted and logged in shoot
            d.addBoth(self._done, policy_id)

    def _done(self, _result: Any, policy_id: int) -> None:
        self._busy.discard(policy_id)

    async def shoot(self, channel_no: int) -> str:
        """Take a picture, upload it to REGISTER_RES's FTP account, send 36H; the file name."""
        camera, state = self.camera, self.camera.state
        registration = camera.registration
        try:
            if registration is None or not registration.ftp_ip or not registration.ftp_port:
                raise RuntimeError("REGISTER_RES gave no FTP server")
            local = self._now()
            stamp = f"{local:%Y%m%d%H%M%S}"
            name = f"{state.dev_id}_{channel_no}_{stamp}.JPG"
            jpeg = await deferToThread(self.picture, f"{local:%H%M%S}")
            await self._upload(registration.ftp_ip, registration.ftp_port, registration.ftp_account,
                               registration.ftp_password, name, jpeg)
            session = camera.session
            if session is None or not camera.online:
                raise RuntimeError("offline after the upload: no 36H sent")
            await session.request(m.FtpPictureNoticeRequest(dev_id=state.dev_id, channel_no=channel_no,
                                                            file_name=name, time=stamp), camera.timing.request_timeout)
        except Exception as e:
            self.failures += 1
            self.last_error = f"FTP picture of channel {channel_no}: {e}"
            self.log.warn("camera {dev_id}: {error}", dev_id=state.dev_id, error=self.last_error)
            raise
        self.uploaded.append(name)
        return name

    async def _upload(self, host: str, port: int, user: str, password: str, name: str, data: bytes) -> None:
        clock: Any = self.camera.clock
        creator = ClientCreator(clock, FTPClient, user, password, passive=1)
        client: FTPClient = await creator.connectTCP(host, port, timeout=self.timeout)
        transport: Any = client.transport
        watchdog = clock.callLater(self.timeout, transport.abortConnection)
        try:
            consumer_d, done_d = client.storeFile(name)
            consumer = await consumer_d
            consumer.write(data)
            consumer.finish()
            await done_d
            # 221 then the server closes; a connection lost first is no failure of the upload.
            await client.quit().addErrback(lambda f: None)
        finally:
            if watchdog.active():
                watchdog.cancel()
            transport.loseConnection()


def _minutes(value: str) -> int:
    hours, _, minutes = value.strip().partition(":")
    return int(hours) * 60 + int(minutes[:2] or 0)


__all__ = ["FtpPictures", "pattern_jpeg"]
