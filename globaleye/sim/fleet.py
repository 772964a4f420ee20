"""A fleet of simulated cameras with their RTSP servers, in one reactor.

Each camera is a :class:`~globaleye.sim.camera.SimulatedCamera` (the §7 session) and
an :class:`~globaleye.sim.rtsp.server.RtspCamera` (the §10 media side).  The RTSP side of
the whole fleet shares one listening port: ten thousand cameras would otherwise cost
ten thousand listening sockets, and the ``devid`` of every §7.5.5 URL already says
which camera is meant.  The same factory serves what reaches a camera through its
TURN relay (§14), so a client sees the same RTSP server locally and through the relay.
Tokens are checked with the platform over the camera's own session (35H/74H).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import treq
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.device.protocol import messages as m
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.cloud import CameraCloud, CloudService, CloudSettings
from globaleye.sim.media.source import LoopParams, MediaLibrary, default_library
from globaleye.sim.rtsp.server import LiveEncoding, RtspCamera, RtspCameraFactory
from globaleye.sim.rtsp.urls import platform_verifier, state_recordings
from globaleye.sim.state import CameraState, VideoParams, default_video
from globaleye.sim.upnp import CameraPortMapping, IgdClient, UpnpSettings


def live_encoding(video: VideoParams) -> LiveEncoding:
    """A stream's 60H settings as the loop it streams.

    FrameSize (the §7.5 table's codes) gives the picture size, FrameRate the frame rate
    and the GOP (one IDR a second), BitRate x264's average rate, AudioInput the audio
    track.  RateType is not used: CBR and VBR average the same rate, a client cannot
    tell them apart on this synthetic picture, and ignoring it halves the distinct
    encodes; 61H still reports what was set.
    """
    width, height = video.pixels
    return LiveEncoding(LoopParams.live(width, height, video.frame_rate, video.bits_per_second),
                        bool(video.audio_input))


def state_live_encoding(state: CameraState) -> Callable[[int, int], LiveEncoding]:
    """``RtspCamera.live_encoding`` from the camera's 60H/61H settings (read at each new session)."""

    def encoding(channel_no: int, stream_type: int) -> LiveEncoding:
        return live_encoding(state.video(channel_no, stream_type))

    return encoding


#: What every simulated camera streams until 60H changes it (its 61H defaults).
DEFAULT_LOOPS = tuple(live_encoding(default_video(s)).video for s in (m.StreamType.MAIN, m.StreamType.SUB))


class Fleet:
    log = Logger()

    def __init__(self, reactor: Any, *, register_url: str = "", redirect_url: str = "", seed: str = "globaleye-sim",
                 interface: str = "127.0.0.1", rtsp_port: int = 0, timing: Timing | None = None,
                 media: MediaLibrary | None = None, relay: bool = True, http: Any = None,
                 rng: random.Random | None = None, upnp: UpnpSettings | None = None,
                 cloud: CloudSettings | None = None) -> None:
        self.reactor = reactor
        self.register_url = register_url
        self.redirect_url = redirect_url
        self.seed = seed
        self.interface = interface
        self.timing = timing or Timing()
        self.media = media or default_library()
        self.relay = relay
        self.http = http
        self.rng = rng or random.Random(seed)
        self.upnp = upnp  # §7.3.2: None = the cameras do no UPnP
        self.rtsp = RtspCameraFactory(reactor=reactor)
        self.port: IListeningPort = reactor.listenTCP(rtsp_port, self.rtsp, backlog=1024, interface=interface)
        self.rtsp_port = int(getattr(self.port.getHost(), "port"))  # noqa: B009
        self.cameras: list[SimulatedCamera] = []
        # §7.1.1: the cameras record and upload to the cloud store themselves (None: they do not).
        self.cloud = CloudService(reactor, cloud, self.media) if cloud is not None else None
        self.clouds: dict[str, CameraCloud] = {}
        self.log.info("simulated cameras serve RTSP on {host}:{port}", host=interface, port=self.rtsp_port)

    async def prepare(self) -> None:
        """Encode (or load) the default live loops and make the 5-minute recording file, off the
        reactor thread, before any viewer comes (every camera's recordings are that one file).

        The defaults are the cameras' 61H defaults (main 720P 25 fps 1024 kbit/s, sub CIF
        15 fps 256 kbit/s) and stay in the library for good; a stream 60H changes gets
        its loop when it changes."""
        await self.media.prepare(live=DEFAULT_LOOPS)

    def add(self, dev_id: str, **state_overrides: Any) -> SimulatedCamera:
        state = CameraState.for_device(dev_id, device_key(self.seed, dev_id), local_ip=self.interface,
                                       rtsp_local_port=self.rtsp_port, **state_overrides)
        camera = SimulatedCamera(state, self.reactor, register_url=self.register_url,
                                 redirect_url=self.redirect_url, timing=self.timing,
                                 rng=random.Random(self.rng.random()), http=self.http,
                                 relay_factory=self.rtsp if self.relay else None, upnp=self._port_mapping())

        def sessions_changed(count: int) -> None:
            state.cur_video_num = count  # reported as CurVideoNum in the next heartbeat (§7.5.3)

        rtsp = RtspCamera(
            dev_id, platform_verifier(lambda: camera.session if camera.online else None,
                                      timeout=self.timing.request_timeout),
            channel_num=state.channel_num, media=self.media, recording_duration=state_recordings(state),
            recording_audio=lambda channel: bool(state.recording(channel).audio_input),  # 6AH AudioInput
            live_encoding=state_live_encoding(state),  # 60H: FrameSize, FrameRate, BitRate, AudioInput
            on_sessions_changed=sessions_changed, stun_server=camera.stun_server)

        def video_changed(channel_no: int, stream_type: int) -> None:
            # 60H: encode the stream's new loop now, in a worker thread, as a camera restarts its encoder.
            rtsp.prepare_live(channel_no, stream_type, self.reactor)

        state.on_video_changed = video_changed
        self.rtsp.add(rtsp)
        self.cameras.append(camera)
        if self.cloud is not None:
            self.clouds[dev_id] = self.cloud.attach(camera)
        return camera

    def _port_mapping(self) -> CameraPortMapping | None:
        if self.upnp is None:
            return None
        http = self.http or treq.client.HTTPClient(Agent(self.reactor, pool=HTTPConnectionPool(self.reactor)))
        return CameraPortMapping(IgdClient(self.reactor, http, self.upnp), random.Random(self.rng.random()))

    def start(self, ramp: float = 0.0) -> None:
        """Start every camera, spread over *ramp* seconds as a real fleet powers up."""
        for index, camera in enumerate(self.cameras):
            self.reactor.callLater(ramp * index / max(1, len(self.cameras)), self._start, camera)

    def _start(self, camera: SimulatedCamera) -> None:
        camera.start()
        cloud = self.clouds.get(camera.state.dev_id)
        if cloud is not None:
            cloud.start()

    async def stop(self) -> None:
        for camera in self.cameras:
            camera.stop()
            self.rtsp.remove(camera.state.dev_id)
        for camera in self.cameras:
            if camera.upnp_released is not None:
                await camera.upnp_released  # bounded by the UPnP request timeout
        if self.cloud is not None:
            await self.cloud.stop()
        await maybeDeferred(self.port.stopListening)
