"""``globaleye-sim``: run N simulated cameras in one reactor.

    globaleye-sim --register http://127.0.0.1:8080/register --count 100
    globaleye-sim --redirect http://127.0.0.1:8080/redirect --count 10000 --first-id 81100000001
    globaleye-sim --register https://127.0.0.1:8443/register --ca-file platform.pem   # [http] tls_port
    globaleye-sim --count 100 --devices-csv > sim.csv   # for globaleye device import (closed enrollment)
    globaleye-sim --cloud-period 10    # 10-second cloud recordings instead of §7.1.1's 5 minutes

Each camera gets the DevID ``first-id + i`` and a key derived from ``--seed`` and
its DevID, so a restarted simulator presents the keys the platform pinned.
Cameras start spread over ``--ramp`` seconds, as a real fleet powers up.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall, deferLater, react
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from globaleye.sim.camera import Timing, http_client
from globaleye.sim.cloud import CloudSettings
from globaleye.sim.fleet import Fleet
from globaleye.sim.upnp import UpnpSettings

log = Logger()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="globaleye-sim", description="Run simulated cameras against GlobalEye.")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--register", default="", help="province registration URL (§7.2)")
    target.add_argument("--redirect", default="", help="group redirect URL (§5)")
    parser.add_argument("--ca-file", default="",
                        help="PEM certificate (or CA) trusted for https:// URLs (default: the system's CAs)")
    parser.add_argument("--count", type=int, default=1, help="number of cameras (default 1)")
    parser.add_argument("--first-id", default="81100000001", help="DevID of the first camera")
    parser.add_argument("--seed", default="globaleye-sim", help="seed of the per-device keys")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread the start over this many seconds")
    parser.add_argument("--heartbeat", type=float, default=120.0, help="heartbeat interval (§7.3.4: 120 s)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run forever)")
    parser.add_argument("--interface", default="127.0.0.1", help="address of the cameras' RTSP server")
    parser.add_argument("--rtsp-port", type=int, default=0, help="RTSP port shared by all cameras (0: any free)")
    parser.add_argument("--no-relay", action="store_true", help="do not keep a TURN relay (§14)")
    parser.add_argument("--upnp", action="store_true",
                        help="map each camera's RTSP port on the LAN's UPnP IGD (§7.3.2)")
    parser.add_argument("--upnp-timeout", type=float, default=3.0, help="seconds to wait for an IGD to answer")
    cloud = parser.add_argument_group("cloud storage (§7.1.1: recordings and pictures uploaded by the cameras)")
    cloud.add_argument("--no-cloud", action="store_true",
                       help="never record to or upload to the cloud store, whatever the platform asks")
    cloud.add_argument("--cloud-period", type=int, default=300,
                       help="seconds of live stream per recorded TS file (§7.1.1: 300, 5 minutes)")
    cloud.add_argument("--cloud-spool", default="",
                       help="directory where files wait for their upload (default: a temporary one)")
    cloud.add_argument("--cloud-max-files", type=int, default=12,
                       help="files and pictures waiting per camera at most; the oldest are dropped beyond")
    cloud.add_argument("--cloud-attempts", type=int, default=3, help="uploads of one file before it is dropped")
    cloud.add_argument("--cloud-retry", type=float, default=30.0, help="seconds between two uploads of one file")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every camera's events")
    parser.add_argument("--devices-csv", action="store_true",
                        help="print the cameras as DevID,DevKey,ManufacturerNo,Model rows for "
                             "'globaleye device import' (closed enrollment) and exit")
    return parser


def devices_csv(args: argparse.Namespace) -> str:
    from globaleye.sim.camera import device_key
    from globaleye.sim.state import CameraState

    rows = []
    for index in range(args.count):
        dev_id = f"{int(args.first_id) + index:011d}"
        state = CameraState.for_device(dev_id, device_key(args.seed, dev_id))
        rows.append(f"{dev_id},{state.dev_key},{state.manufacturer_no},{state.model}\n")
    return "".join(rows)


def cloud_settings(args: argparse.Namespace) -> CloudSettings | None:
    """The cameras' cloud side from the options (None: --no-cloud, or boto3 missing, said once)."""
    if args.no_cloud:
        return None
    if args.cloud_period < 1 or args.cloud_max_files < 1 or args.cloud_attempts < 1 or args.cloud_retry < 0:
        raise SystemExit("globaleye-sim: --cloud-period, --cloud-max-files and --cloud-attempts must be at least 1, "
                         "--cloud-retry not negative")
    import importlib.util

    if importlib.util.find_spec("boto3") is None:
        log.warn("globaleye-sim: boto3 is not installed (pip install 'globaleye[sim]'): the cameras upload nothing")
        return None
    return CloudSettings(period=args.cloud_period, spool_dir=args.cloud_spool, max_files=args.cloud_max_files,
                         attempts=args.cloud_attempts, retry_delay=args.cloud_retry)


async def simulate(reactor: Any, args: argparse.Namespace) -> None:
    if len(args.first_id) != 11 or not args.first_id.isdigit():
        raise SystemExit("globaleye-sim: --first-id must be 11 digits")
    if not (args.register or args.redirect):
        args.register = "http://127.0.0.1:8080/register"
    first = int(args.first_id)
    http = http_client(reactor, args.ca_file or None)
    cloud = cloud_settings(args)
    fleet = Fleet(reactor, register_url=args.register, redirect_url=args.redirect, seed=args.seed,
                  interface=args.interface, rtsp_port=args.rtsp_port, timing=Timing(heartbeat_interval=args.heartbeat),
                  relay=not args.no_relay, http=http,
                  upnp=UpnpSettings(discovery_timeout=args.upnp_timeout) if args.upnp else None, cloud=cloud)
    await fleet.prepare()
    cameras = [fleet.add(f"{first + index:011d}") for index in range(args.count)]
    fleet.start(args.ramp)

    def report() -> None:
        online = sum(camera.online for camera in cameras)
        answered = sum(camera.commands_answered for camera in cameras)
        log.info("{online}/{count} cameras online, {answered} commands answered", online=online,
                 count=len(cameras), answered=answered)

    status = LoopingCall(report)
    status.clock = reactor
    status.start(10, now=False)
    if args.duration > 0:
        await deferLater(reactor, args.duration, lambda: None)
    else:
        await Deferred()
    status.stop()
    report()
    await fleet.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.devices_csv:
        sys.stdout.write(devices_csv(args))
        return
    from globaleye.platform.tap import raise_file_limit

    soft, _ = raise_file_limit()
    if args.count + 100 > soft:
        print(f"globaleye-sim: warning: {args.count} cameras need more than the {soft} open files allowed",
              file=sys.stderr)
    level = LogLevel.debug if args.verbose else LogLevel.info
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stdout),
                                                           [LogLevelFilterPredicate(level)])])
    react(lambda reactor: Deferred.fromCoroutine(simulate(reactor, args)))


if __name__ == "__main__":
    main()
