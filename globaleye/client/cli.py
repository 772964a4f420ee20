"""``globaleye-client``: log in, list cameras, play, snapshot, record.

    globaleye-client --mcu http://127.0.0.1:8080/soap/mcu --account 133… list
    globaleye-client … play 81100000001 [--channel 0] [--stream 1] [--seconds 3]
    globaleye-client … snapshot 81100000001 -o shot.jpg
    globaleye-client … record 81100000001 -o clip.ts --seconds 10      (.ts or .mp4, sound as AAC)
    globaleye-client … cloud list 81100000001 --from 20261201100000 --to 20261201110000 [--type picture]
    globaleye-client … cloud download 81100000001 81100000001_0_20261201100000.ts [-o file]
    globaleye-client … cloud download 81100000001 --from … --to … [-o directory]
    globaleye-client … cloud play 81100000001 --from 20261201100000 [--to …] [--record out.mp4]
    globaleye-client … cloud delete 81100000001 NAME | --from … --to …

The password comes from ``--password``, ``$GLOBALEYE_PASSWORD`` or a prompt.  Long
work shows one progress line on stderr; results go to stdout.  Exit status 0 on
success, 1 on an API or path failure, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task

from globaleye.client.cloud import CloudError, check_cloud_args, run_cloud
from globaleye.client.cloud import add_parser as add_cloud_parser
from globaleye.client.media import AudioSpec, Decoder, Recorder, StreamClock, jpeg
from globaleye.client.progress import Progress
from globaleye.client.soap import ApiError, McuClient
from globaleye.client.viewer import CameraViewer
from globaleye.media.rtsp.paths import PATHS, NoPath, PathSettings
from globaleye.media.rtsp.sdp import MediaSection
from globaleye.media.rtsp.upstream import UpstreamSession


def audio_spec(section: MediaSection) -> AudioSpec:
    """The audio track's codec, clock rate and channels (``a=rtpmap:8 PCMA/8000/1``; one channel if unsaid)."""
    channels = 1
    for line in section.lines:
        m = re.match(r"a=rtpmap:(\d+)\s+[^/\s]+/\d+/(\d+)", line)
        if m and (section.payload_type is None or int(m.group(1)) == section.payload_type):
            channels = int(m.group(2))
    return AudioSpec(section.encoding, section.clock_rate, channels)


class RecordingViewer(CameraViewer):
    """A :class:`CameraViewer` that also hands on the audio track and the sender reports.

    The plain viewer passes on video pictures only.  A recording needs the sound too,
    and every track's RTCP sender reports from the session's first packet on: the
    camera sends its first SR with its first media and the next one only seconds
    later, so a recorder that started listening at the first picture would have to
    guess the lip sync for that long.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audio_track: int | None = None
        self.audio_spec: AudioSpec | None = None
        self.clock_rates: dict[int, int] = {}
        self.clock = StreamClock()
        self.on_audio: Callable[[bytes], None] = lambda data: None
        self.on_report: Callable[[int, int, bytes], None] = lambda track, rate, data: None

    def _attach(self, session: UpstreamSession) -> None:
        super()._attach(session)
        description = session.description
        assert description is not None
        self.clock = StreamClock()  # a new session: new SSRCs, new timestamp bases
        self.clock_rates = {i: section.clock_rate for i, section in enumerate(description.media)}
        self.audio_track = description.track("audio")
        self.audio_spec = None if self.audio_track is None else audio_spec(description.media[self.audio_track])
        pictures = session.on_rtp

        def rtp_in(track: int, data: bytes) -> None:
            if track == self.audio_track:
                self.on_audio(data)
            else:
                pictures(track, data)

        def rtcp_in(track: int, data: bytes) -> None:
            if self.session is session:
                self.on_report(track, self.clock_rates.get(track, 0), data)

        session.on_rtp = rtp_in
        session.on_rtcp = rtcp_in


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="globaleye-client", description="GlobalEye client (§3): log in, list, watch.")
    p.add_argument("--mcu", default=os.environ.get("GLOBALEYE_MCU", "http://127.0.0.1:8080/soap/mcu"),
                   help="client API URL (/soap/mcu of the province)")
    p.add_argument("--account", default=os.environ.get("GLOBALEYE_ACCOUNT"), help="mobile number")
    p.add_argument("--password", default=None, help="password (default: $GLOBALEYE_PASSWORD or a prompt)")
    p.add_argument("--paths", default=",".join(PATHS), help=f"§15 paths to try, in order (default {','.join(PATHS)})")
    p.add_argument("--connect-timeout", type=float, default=3.0)
    p.add_argument("--udp-timeout", type=float, default=5.0, help="§15 step 4: give up RTP over UDP after this")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the account's cameras")
    add_cloud_parser(sub)
    for name, text in (("play", "reach the camera and print the stream's facts"),
                       ("snapshot", "save one picture as JPEG (§3.5)"),
                       ("record", "save the stream to .ts or .mp4: video as sent, G.711 sound as AAC (§3.6)")):
        c = sub.add_parser(name, help=text)
        c.add_argument("dev_id")
        c.add_argument("--channel", type=int, default=0)
        c.add_argument("--stream", type=int, default=1, choices=(1, 2), help="1 main, 2 sub")
        if name != "snapshot":
            c.add_argument("--seconds", type=float, default=3.0 if name == "play" else 10.0)
        if name != "play":
            c.add_argument("-o", "--output", required=True)
    return p


async def run(reactor: Any, args: argparse.Namespace) -> int:
    password = args.password or os.environ.get("GLOBALEYE_PASSWORD") or getpass.getpass("password: ")
    mcu = McuClient(args.mcu)
    try:
        devices = await mcu.login(args.account, password)
        if args.command == "list":
            for d in devices:
                print(f"{d.get('DevID')}  channel {d.get('ChannelNo')}  {'online ' if d.get('OnLine') else 'offline'}"
                      f"  {'shared' if d.get('ShareFlag') else 'own   '}  {d.get('Name')}")
            return 0
        if args.command == "cloud":
            return await run_cloud(reactor, mcu, args, password)
        settings = PathSettings(connect_timeout=args.connect_timeout, udp_timeout=args.udp_timeout,
                                media_timeout=max(args.udp_timeout, args.connect_timeout),
                                paths=tuple(p.strip() for p in args.paths.split(",") if p.strip()))
        kind = RecordingViewer if args.command == "record" else CameraViewer
        viewer = kind(reactor, mcu, args.dev_id, args.channel, args.stream, settings)
        try:
            return await _watch(reactor, viewer, args)
        finally:
            viewer.close()
    except ApiError as e:
        print(f"globaleye-client: {e}", file=sys.stderr)
        return 1
    except NoPath as e:
        print("globaleye-client: no way to the camera:", file=sys.stderr)
        for a in e.attempts:
            print(f"  {a.path}: {a.reason}", file=sys.stderr)
        return 1
    finally:
        await mcu.logout()


async def _watch(reactor: Any, viewer: CameraViewer, args: argparse.Namespace) -> int:
    progress = Progress()
    done: defer.Deferred[None] = defer.Deferred()
    decoder = Decoder()
    recorder: Recorder | None = None
    state: dict[str, Any] = {"snapshot": None, "decoded": 0}

    def finish() -> None:
        if not done.called:
            done.callback(None)

    def picture(p: Any) -> None:
        nonlocal recorder
        if args.command == "record":
            if recorder is None:
                facts = viewer.facts
                sets = viewer.assembler.sps_pps
                frames = decoder.decode(p)  # the size comes from the first IDR
                for f in frames:
                    viewer.frame_decoded(f)
                sound = viewer.audio_spec if isinstance(viewer, RecordingViewer) else None
                recorder = Recorder(args.output, facts.width or 1280, facts.height or 720, sets, facts.fps or 25,
                                    audio=sound, clock=getattr(viewer, "clock", None),
                                    tracks=(viewer.video_track or 0, getattr(viewer, "audio_track", None) or 0),
                                    label=f"client {args.dev_id}/{args.channel}/{args.stream}")
            recorder.write(p, reactor.seconds())
            sound_line = f"  audio {recorder.audio_seconds:4.1f} s" if recorder.audio is not None else ""
            progress.show(f"recording {recorder.seconds:5.1f}/{args.seconds:g} s  {recorder.frames} pictures  "
                          f"{recorder.bytes / 1e6:.1f} MB{sound_line}")
            if recorder.seconds >= args.seconds:
                finish()
            return
        for frame in decoder.decode(p):
            viewer.frame_decoded(frame)
            state["decoded"] += 1
            if args.command == "snapshot":
                state["snapshot"] = jpeg(frame)
                finish()
                return
        if args.command == "play":
            progress.show(f"playing via {viewer.facts.path}: {state['decoded']} frames decoded")

    def audio(data: bytes) -> None:
        if recorder is not None:
            recorder.write_audio(data, reactor.seconds())

    def report(track: int, rate: int, data: bytes) -> None:
        if recorder is not None:
            recorder.sender_report(track, rate, data)
        elif isinstance(viewer, RecordingViewer):
            viewer.clock.report(track, rate, data)

    viewer.on_picture = picture
    if isinstance(viewer, RecordingViewer):
        viewer.on_audio = audio
        viewer.on_report = report
    progress.show(f"connecting to {args.dev_id}/{args.channel}/{args.stream} …", force=True)
    facts = await viewer.start()
    progress.show(f"playing via {facts.path} …", force=True)
    viewer.ended.addCallback(lambda _reason: finish())
    limit = reactor.callLater(args.seconds if args.command == "play" else max(30.0, 3 * getattr(
        args, "seconds", 10.0)), finish)
    await done
    if limit.active():
        limit.cancel()
    progress.done()
    if recorder is not None:
        recorder.close()
    for line in facts.lines():
        print(line)
    if args.command == "snapshot":
        if state["snapshot"] is None:
            print("globaleye-client: no picture decoded", file=sys.stderr)
            return 1
        with open(args.output, "wb") as f:
            f.write(state["snapshot"])
        print(f"snapshot: {args.output} ({facts.width}x{facts.height} JPEG, {len(state['snapshot'])} bytes)")
    elif args.command == "record":
        if recorder is None:
            print("globaleye-client: nothing recorded", file=sys.stderr)
            return 1
        print(f"recorded: {args.output} ({recorder.frames} pictures, {recorder.seconds:.1f} s, "
              f"{recorder.bytes / 1e6:.2f} MB, video not re-encoded)")
        spec = viewer.audio_spec if isinstance(viewer, RecordingViewer) else None
        if recorder.audio is not None:
            track = recorder.audio
            print(f"audio: AAC {track.rate / 1000:g} kHz mono from {track.spec.encoding.lower()}, "
                  f"{track.seconds:.1f} s, placed by {track.placed_by or 'nothing (no sound arrived)'}"
                  + (f", {track.silence / track.rate:.2f} s of gaps filled with silence" if track.silence else ""))
        elif spec is not None:
            print(f"audio: {spec.encoding.lower() or 'unknown'}/{spec.clock_rate}/{spec.channels} not recorded "
                  "(only mono G.711 is transcoded)")
        else:
            print("audio: none (the camera sends no sound)")
    else:
        print(f"pictures: {facts.pictures}, decoded: {state['decoded']}")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not args.account:
        parser().error("--account (or $GLOBALEYE_ACCOUNT) is required")
    if args.command == "cloud":
        try:
            check_cloud_args(args)
        except CloudError as e:
            parser().error(str(e))

    async def go(reactor: Any) -> None:
        code = await run(reactor, args)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(go(reactor)))


if __name__ == "__main__":
    main()
