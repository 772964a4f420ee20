"""``globaleye``: the operator's command line, against the same database as the platform.

    globaleye [--config FILE] device import devices.csv
    globaleye [--config FILE] device list
    globaleye [--config FILE] device show DEVID
    globaleye [--config FILE] device delete DEVID
    globaleye [--config FILE] device rotate-cloud-key DEVID [--grace SECONDS]
    globaleye [--config FILE] account devnum MOBILE N
    globaleye [--config FILE] config check
    globaleye [--config FILE] demo [--cameras N]

It goes through the same asynchronous :class:`~globaleye.store.Store` as the
platform (SQLite in WAL mode lets both work at once).  An import is checked whole
before anything is written, and written in one transaction: a bad line means
nothing of the file was imported, and the error names the line.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import secrets
import sqlite3
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from globaleye.device.gateway.service import DEV_ID
from globaleye.platform.config import ROLES, Config, ConfigError, load_config
from globaleye.store import AuditRecord, Device, OutboxItem
from globaleye.store.sqlite import SQLiteStore


class CLIError(Exception):
    pass


def parse_devices(text: str, vendors: frozenset[str], now: float) -> list[Device]:
    """Rows of ``DevID,DevKey,ManufacturerNo,Model[,DevType]``; a header line is allowed."""
    devices: list[Device] = []
    seen: set[str] = set()
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if number == 1 and row[0].strip().lower() in ("devid", "dev_id"):
            continue
        fields = [field.strip() for field in row]
        if len(fields) not in (4, 5):
            raise CLIError(f"line {number}: expected DevID,DevKey,ManufacturerNo,Model[,DevType], got {len(fields)} fields")
        dev_id, dev_key, vendor, model = fields[:4]
        if not DEV_ID.match(dev_id):
            raise CLIError(f"line {number}: DevID {dev_id!r} is not 11 digits")
        if dev_id[:3] not in vendors:
            raise CLIError(f"line {number}: vendor code {dev_id[:3]} of {dev_id} is not in [enrollment] vendors")
        if vendor and vendor != dev_id[:3]:
            raise CLIError(f"line {number}: ManufacturerNo {vendor} does not match DevID {dev_id}")
        if not dev_key or len(dev_key) > 64:
            raise CLIError(f"line {number}: DevKey must be 1-64 characters")
        dev_type = fields[4] if len(fields) == 5 else "1"
        if dev_type not in ("1", "2", "3"):
            raise CLIError(f"line {number}: DevType {dev_type!r} is not 1 (IPC), 2 (DVR) or 3 (NVR)")
        if dev_id in seen:
            raise CLIError(f"line {number}: DevID {dev_id} appears twice")
        seen.add(dev_id)
        devices.append(Device(dev_id=dev_id, dev_key=dev_key, manufacturer_no=vendor or dev_id[:3], model=model,
                              dev_type=int(dev_type), created_at=now))
    return devices


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


async def demo(config: Config, cameras: int, out: TextIO) -> None:
    """The platform and simulated cameras in one reactor, everything on localhost.

    The log goes to ``demo.log`` in ``data_dir``; the terminal gets only a summary, printed last:
    the URLs, the demo account, the cameras with their DevKeys, and how to watch one.
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from globaleye.device.protocol import messages as m
    from globaleye.platform.tap import PlatformService, open_store
    from globaleye.sim.cloud import CloudSettings
    from globaleye.sim.fleet import Fleet

    log_path = config.data_dir / "demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 -- open while the demo runs
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log_file)], redirectStandardIO=False)
    print(f"demo: starting; the log is {log_path}", file=out, flush=True)
    platform = PlatformService(config, open_store(config), reactor)
    platform.startService()
    # The cameras record and upload to the platform's store with their own keys (issue 12, §7.1.1)
    # once a cloud recording policy is on.
    fleet = Fleet(reactor, redirect_url=f"http://127.0.0.1:{platform.port_of('http')}/redirect", seed="demo",
                  cloud=CloudSettings())
    # Ctrl-C: the cameras, then the platform, stopped before the reactor goes (their thread pools,
    # the object store's and the uploads', would otherwise keep the process alive).
    reactor.addSystemEventTrigger("before", "shutdown", platform.stopService)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(fleet.stop()))
    await fleet.prepare()
    sims = [fleet.add(f"{81100000001 + index:011d}") for index in range(cameras)]
    fleet.start()
    for camera in sims:
        await camera.went_online
        dev_id = camera.state.dev_id
        answer = await platform.gateway.command(dev_id, m.PtzRequest(dev_id=dev_id, channel_no=0, ptz_direction=3))
        platform.log.info("demo: camera {dev_id} is online; PTZ left answered with Result {result}",
                          dev_id=dev_id, result=answer.result)
    if platform.storage is not None and "storage" in platform.ports:
        # The first camera records its main stream all day to the platform's store (6AH StoreType 1
        # and 78H, §7.1.1), looping over its quota (7AH): the portal's timeline has cloud files.
        dev_id = sims[0].state.dev_id
        for request in (m.SetRecordParamsRequest(dev_id=dev_id, channel_no=0, stream_type=1, store_type=1),
                        m.SetFullDayRecordRequest(dev_id=dev_id, channel_no=0, record_full=1),
                        m.SetLoopRecordRequest(dev_id=dev_id, record_loop=1)):
            await platform.gateway.command(dev_id, request)
    # The demo account owns every camera but the last of two or more: that one is left for the
    # README's client API example to add with its DevKey.
    owned = [camera.state.dev_id for camera in (sims[:-1] if len(sims) > 1 else sims)]
    if "rtsp" in platform.ports:
        await _demo_viewer(platform, owned, out)
    _demo_summary(platform, sims, owned, log_path, out)
    await Deferred()


DEMO_ACCOUNT, DEMO_PASSWORD = "13300000000", "demo-password"


def _demo_summary(platform: Any, sims: list[Any], owned: list[str], log_path: Any, out: TextIO) -> None:
    """What a newcomer needs, after the start-up: URLs, account, cameras and how to watch."""
    http = f"http://127.0.0.1:{platform.port_of('http')}"
    lines = ["", "GlobalEye demo is running.",
             f"  client API (SOAP)   {http}/soap/mcu   (WSDL {http}/soap/mcu?wsdl)",
             f"  device HTTP         {http}/register, {http}/redirect",
             f"  device gateway      127.0.0.1:{platform.port_of('gateway')}"]
    if platform.turn is not None:
        lines.append(f"  TURN                127.0.0.1:{platform.turn.addresses['tcp'][1]}")
    if platform.stun is not None and platform.stun.primary_address is not None:
        host, port = platform.stun.primary_address[:2]
        lines.append(f"  STUN                {host}:{port}")
    if "web" in platform.ports:
        lines.append(f"  web portal          http://127.0.0.1:{platform.port_of('web')}/   "
                     f"(API /api/v1/openapi.json)")
    if "storage" in platform.ports:
        lines.append(f"  object store (S3)   http://127.0.0.1:{platform.port_of('storage')}/   "
                     f"(the cameras' recordings, §7.1)")
    if "ftp" in platform.ports:
        lines.append(f"  FTP (pictures)      ftp://127.0.0.1:{platform.port_of('ftp')}/")
    if "rtsp" in platform.ports:
        lines.append(f"  RTSP proxy          rtsp://127.0.0.1:{platform.port_of('rtsp')}/live/<DevID>/0/1")
        lines.append(f"  account             {DEMO_ACCOUNT}, password {DEMO_PASSWORD} (owns {', '.join(owned)})")
    lines.append("  cameras (DevID, DevKey):")
    for camera in sims:
        dev_id = camera.state.dev_id
        mine = "owned by the demo account" if dev_id in owned and "rtsp" in platform.ports else "not owned by anyone"
        lines.append(f"    {dev_id}  {camera.state.dev_key}  online, {mine}")
    if "rtsp" in platform.ports:
        lines.append("  watch:")
        for dev_id in owned:
            lines.append(f"    ffplay 'rtsp://{DEMO_ACCOUNT}:{DEMO_PASSWORD}@127.0.0.1:{platform.port_of('rtsp')}"
                         f"/live/{dev_id}/0/1'")
        lines.append(f"    globaleye-client --mcu {http}/soap/mcu --account {DEMO_ACCOUNT} --password {DEMO_PASSWORD} "
                     f"play {owned[0]}")
    if platform.config["sms"]["backend"] == "log":
        lines.append(f"  SMS codes ([sms] backend = log) go to the log:   grep 'SMS' {log_path}")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), file=out, flush=True)


async def _demo_viewer(platform: Any, dev_ids: list[str], out: TextIO) -> None:
    """A demo account that owns the cameras, made through the real sign-up and add-device paths."""
    from globaleye.app.errors import AppError
    from globaleye.users.accounts import RecordingSmsSender

    accounts = platform.accounts
    if await platform.store.get_account(DEMO_ACCOUNT) is None:
        sender, recorder = accounts.sms_sender, RecordingSmsSender()
        accounts.sms_sender = recorder  # read the §8.1 code instead of texting it
        try:
            await accounts.request_sms_code(DEMO_ACCOUNT, 0, "demo")
        finally:
            accounts.sms_sender = sender
        await accounts.register(DEMO_ACCOUNT, DEMO_PASSWORD, recorder.last_code(DEMO_ACCOUNT), "demo")
    outcome = await accounts.login(DEMO_ACCOUNT, DEMO_PASSWORD, "9.9", "demo")
    if outcome.session is None:
        print(f"demo: could not log in as {DEMO_ACCOUNT} (Result {outcome.result})", file=out)
        return
    for dev_id in dev_ids:
        device = await platform.store.get_device(dev_id)
        try:
            await platform.client.devices.add(outcome.session, dev_id, device.dev_key)
        except AppError as e:  # already bound elsewhere, or over the limit: the demo goes on
            print(f"demo: could not add {dev_id} (Result {e.result})", file=out)


async def run(config: Config, args: argparse.Namespace, out: TextIO) -> None:
    if args.area == "demo":
        if config.path is None:
            # The embedded default shows everything on localhost: STUN and TURN too, and the
            # TURN relay may carry loopback peers (the "phone" is on this host).
            config = config.replace(globaleye={"roles": ROLES}, turn={"allow_peers": ("127.0.0.0/8",)})
        if not config["province"]["cms_password"] and not config["province"]["group_url"]:
            # Group and province in this one process: their §6 link gets a password nobody else knows
            # (an empty one never authenticates).
            config = config.replace(province={"cms_password": secrets.token_urlsafe(24)})
        # Only the demo enrols devices on first contact (its simulated cameras are nobody's imports),
        # all from 127.0.0.1: open, without the per-source limit.
        config = config.replace(enrollment={"mode": "open", "peer_limit": 0, "total_limit": 0})
        if not config["cloud"]["device_quota"]:
            # The demo's camera records all day: 512 MB of it kept (the oldest files go first, §7.1.1).
            config = config.replace(cloud={"device_quota": 512})
        try:
            import globaleye.sim.fleet  # noqa: F401 -- the simulated cameras need PyAV and numpy
        except ImportError as e:
            raise CLIError(f"the demo runs simulated cameras, which need the [sim] extra: "
                           f"pip install '.[sim]' ({e})") from None
        await demo(config, args.cameras, out)
        return
    if args.area == "config":
        from globaleye.platform.tap import check_state_dir

        state = check_state_dir(config)  # ConfigError (exit 2) for an unwritable or full data_dir
        print(f"{config.path or '<defaults>'}: OK (roles: {', '.join(config.roles)}; "
              f"database {config.database_path()}; {state})", file=out)
        return
    store = SQLiteStore(config.database_path())
    try:
        if args.area == "account":
            await change_dev_num(store, args.mobile, args.count, out)
        elif args.action == "import":
            with open(args.file, encoding="utf-8-sig") as f:
                devices = parse_devices(f.read(), config["enrollment"]["vendors"], time.time())
            count = await store.import_devices(devices)
            print(f"imported {count} devices from {args.file}", file=out)
        elif args.action == "list":
            print(f"{'DevID':<12} {'vendor':<6} {'model':<16} {'source':<7} {'registered':<19} last login", file=out)
            for d in await store.list_devices():
                print(f"{d.dev_id:<12} {d.manufacturer_no:<6} {d.model[:16]:<16} {d.source:<7} "
                      f"{_when(d.registered_at):<19} {_when(d.login_at)}", file=out)
        elif args.action == "show":
            device = await store.get_device(args.dev_id)
            if device is None:
                raise CLIError(f"no device {args.dev_id}")
            addresses = await store.get_addresses(args.dev_id)
            ability = await store.get_ability(args.dev_id)
            for name, value in (("DevID", device.dev_id), ("vendor", device.manufacturer_no), ("model", device.model),
                                ("type", device.dev_type), ("source", device.source), ("firmware", device.dev_ver),
                                ("registered", _when(device.registered_at)), ("last login", _when(device.login_at))):
                print(f"{name:<12} {value}", file=out)
            if addresses is not None:
                print(f"{'public':<12} {addresses.public_ip}:{addresses.public_port}", file=out)
                print(f"{'local':<12} {addresses.local_ip}:{addresses.rtsp_local_port}", file=out)
                print(f"{'upnp':<12} {addresses.upnp_ip}:{addresses.rtsp_upnp_port}", file=out)
                print(f"{'turn relay':<12} {addresses.turn_relay_ip}:{addresses.rtsp_turn_relay_port}", file=out)
            if ability is not None:
                print(f"{'channels':<12} {ability.channel_num} (PTZ {ability.ptz_flag})", file=out)
            for record in await store.list_exceptions(args.dev_id, limit=10):
                print(f"{'exception':<12} {_when(record.received_at)} channel {record.channel_no} "
                      f"type {record.exception_type}: {record.description}", file=out)
        elif args.action == "delete":
            if not await store.delete_device(args.dev_id):
                raise CLIError(f"no device {args.dev_id}")
            print(f"deleted {args.dev_id}", file=out)
        elif args.action == "rotate-cloud-key":
            await rotate_cloud_key(store, args.dev_id, args.grace, out)
    finally:
        await store.close()


async def change_dev_num(store: SQLiteStore, mobile: str, count: int, out: TextIO) -> None:
    """§6.3 service change: the account's DevNum, and the ChangeService notice for the group.

    The notice goes into the outbox the running platform sends from (within ``[province]
    retry_interval``), so this command needs neither the platform nor the group to be up.
    """
    if count < 0:
        raise CLIError("DevNum must not be negative")
    if not await store.set_dev_num(mobile, count):
        raise CLIError(f"no account {mobile}")
    now = time.time()
    await store.add_outbox(OutboxItem("ChangeService", json.dumps({"MobileTel": mobile, "IpcamNum": count}), now,
                                      0, now))
    await store.add_audit(AuditRecord(now, mobile, "operator", "change-service", 0, f"DevNum {count}"))
    print(f"{mobile}: DevNum {count}; the group is told by the running platform", file=out)


async def rotate_cloud_key(store: SQLiteStore, dev_id: str, grace: float, out: TextIO) -> None:
    """A new cloud-store key for *dev_id* (§7.1.1; LOGIN_RES EAccount/EPassword, 65H), its older keys
    revoked *grace* seconds from now.

    The command writes the store only, as the platform may be running: its cloud service gives the new
    key in LOGIN_RES at the camera's next login (it reads the live key from the store), and an online
    camera gets 65H (§7.5.11) the first time it signs with an old key after its cached lookup (``[cloud]``
    cache, 5 minutes) expires: within the grace period that upload still passes, so nothing is lost. A
    grace of 0 (a key that leaked) refuses the old key at once (after that cache), the camera's upload in
    flight then with it. The secret is never shown.
    """
    from globaleye.app.cloud import new_credential

    if grace < 0:
        raise CLIError("--grace must not be negative")
    if await store.get_device(dev_id) is None:
        raise CLIError(f"no device {dev_id}")
    now = time.time()
    credential = new_credential(dev_id, now)
    await store.add_cloud_credential(credential)
    revoked = await store.revoke_cloud_credentials(dev_id, now + grace, keep=credential.access_key)
    await store.add_audit(AuditRecord(now, "", "operator", "rotate-cloud-key", 0,
                                      f"{dev_id}: new key {credential.access_key}, {revoked} older revoked in {grace:g} s"))
    print(f"{dev_id}: new cloud key {credential.access_key}; {revoked} older key(s) revoked "
          f"{'now' if grace == 0 else f'in {grace:g} s'}. The running platform sends it with 65H when the camera "
          "next uses an old key, or in LOGIN_RES at its next login.", file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="globaleye", description="GlobalEye operator commands.")
    parser.add_argument("--config", "-c", default=None, help="configuration file (default: built-in defaults)")
    areas = parser.add_subparsers(dest="area", required=True)
    device = areas.add_parser("device", help="devices known to this province platform")
    actions = device.add_subparsers(dest="action", required=True)
    imp = actions.add_parser("import", help="import devices from CSV: DevID,DevKey,ManufacturerNo,Model[,DevType]")
    imp.add_argument("file")
    actions.add_parser("list", help="list devices")
    for name in ("show", "delete"):
        action = actions.add_parser(name, help=f"{name} one device")
        action.add_argument("dev_id")
    rotate = actions.add_parser("rotate-cloud-key", help="give a camera a new cloud-store key (65H), revoking "
                                "its older ones after a grace period")
    rotate.add_argument("dev_id")
    rotate.add_argument("--grace", type=float, default=900.0,
                        help="seconds the old key keeps working while the camera learns the new one (default "
                             "900; 0: at once, for a leaked key)")
    account = areas.add_parser("account", help="client accounts of this province platform")
    devnum = account.add_subparsers(dest="action", required=True).add_parser(
        "devnum", help="set how many devices an account may own (§6.3 service change)")
    devnum.add_argument("mobile")
    devnum.add_argument("count", type=int)
    demo = areas.add_parser("demo", help="run the platform with simulated cameras on localhost")
    demo.add_argument("--cameras", type=int, default=2,
                      help="number of simulated cameras (default 2: the demo account owns all but the last)")
    config = areas.add_parser("config", help="configuration")
    config.add_subparsers(dest="action", required=True).add_parser("check", help="check the configuration file")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> None:
    args = build_parser().parse_args(argv)
    stream = out or sys.stdout

    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"globaleye: {e}", file=sys.stderr)
        sys.exit(2)

    from globaleye.platform.tap import (
        CannotStart,  # a demo role's port taken: one line, exit non-zero
    )

    async def guarded() -> None:
        try:
            await run(config, args, stream)
        except (ConfigError, CLIError, OSError, sqlite3.Error, CannotStart) as e:
            # The demo points sys.stderr at its log: the message goes to the terminal's own stderr.
            print(f"globaleye: {e}", file=sys.__stderr__ or sys.stderr, flush=True)
            raise SystemExit(2) from e

    react(lambda reactor: Deferred.fromCoroutine(guarded()))


if __name__ == "__main__":
    main()
