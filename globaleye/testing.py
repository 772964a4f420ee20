"""Test tooling for GlobalEye (issue 10 item 6), for the test suite and for anyone embedding the platform.

Three kinds of test, from fastest to most real:

* In memory, ``task.Clock`` time: :func:`pump_camera_and_gateway` connects the real gateway session
  (:class:`~globaleye.device.gateway.Gateway`'s factory) to a real :class:`~globaleye.sim.camera.SimulatedCamera`
  through ``twisted.test.iosim`` -- no socket, no thread, every timer on one clock. Both sides speak
  through :class:`~globaleye.device.messaging.MessageProtocol` (§7.3's framing, §7.5's messages).
* Real loopback: :func:`platform_config` writes the INI text of a platform on 127.0.0.1 with every
  port 0, :func:`start_platform` starts it (the same ``--config`` path ``twistd globaleye`` takes)
  and stops it when the test ends.
* Third-party peers (ffmpeg, GStreamer, VLC, coturn, network namespaces) stay in the interop tests.

``tests/`` has one folder per kind: ``unit`` (in memory), ``integration`` (loopback, our own
processes), ``interop`` (third-party peers); ``python -m globaleye.testing unit`` (``integration``,
``interop``; ``fast`` is unit, ``slow`` the other two) prints the test modules of one kind
(README, "Development").

txturn's own harnesses are in :mod:`txturn.testing`. Nothing here imports Trial at module level.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import attrs
from twisted.internet.address import IPv4Address

from globaleye.device.gateway import Gateway, GatewaySettings
from globaleye.device.protocol import messages as m
from globaleye.platform.tap import Options, PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing
from globaleye.sim.state import CameraState
from globaleye.store import Device
from globaleye.store.migrations import configure, connect, migrate
from globaleye.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from twisted.internet.testing import MemoryReactorClock
    from twisted.test.iosim import IOPump
    from twisted.trial.unittest import TestCase

    from globaleye.device.gateway.session import DeviceSession
    from globaleye.platform.config import Config
    from globaleye.sim.camera import CameraSession

#: ``[province] cms_password`` of every test platform (§6's CmsPassword of its own province).
CMS_PASSWORD = "test-province-secret"

#: The roles most tests run.
DEFAULT_ROLES = "gateway, http, group"

#: Roles whose section gets ``port = 0`` (the group role answers on the http port).
_LISTENING = ("http", "gateway", "stun", "turn", "rtsp", "web", "storage", "ftp")

Section = Mapping[str, object] | str


def _lines(section: Section) -> list[str]:
    if isinstance(section, str):
        return [line for line in section.strip("\n").splitlines()]
    return [f"{key} = {value}" for key, value in section.items()]


def platform_config(roles: str = DEFAULT_ROLES, *, public_host: str | None = "127.0.0.1",
                    enrollment_mode: str | None = "open", per_address: int | None = None,
                    database: str | None = "sqlite:///:memory:", data_dir: str | None = None,
                    cms_password: str | None = CMS_PASSWORD, turn_peers: str | None = "127.0.0.0/8",
                    **sections: Section) -> str:
    """The INI text of a test platform on loopback.

    Every listening role in *roles* gets ``port = 0`` (the kernel picks; read it back with
    ``PlatformService.port_of``); ``[turn] allow_peers`` is *turn_peers* when the TURN role runs
    (None: the default, no loopback peers). Explicit choices, None leaving the key out:

    * *enrollment_mode*: ``[enrollment] mode`` (``open``: any DevID of a known vendor registers, §7.2);
    * *per_address*: ``[limits] per_address`` (0 where one address runs many cameras);
    * *cms_password*: ``[province] cms_password`` (§6);
    * *database*: ``[database] url`` (an in-memory SQLite database unless told);
    * *data_dir*: ``[globaleye] data_dir`` (give a fresh ``test.mktemp()`` where files are written).

    Each further keyword is a section: a mapping of keys, or raw ``key = value`` lines; its keys
    follow (and so override) the ones above.
    """
    wanted: dict[str, list[str]] = {"globaleye": [f"roles = {roles}"]}
    if public_host is not None:
        wanted["globaleye"].append(f"public_host = {public_host}")
    if data_dir is not None:
        wanted["globaleye"].append(f"data_dir = {data_dir}")
    if enrollment_mode is not None:
        wanted["enrollment"] = [f"mode = {enrollment_mode}"]
    if database is not None:
        wanted["database"] = [f"url = {database}"]
    running = {role.strip() for role in roles.split(",")}
    for role in _LISTENING:
        if role in running:
            wanted.setdefault(role, []).append("port = 0")
    if "turn" in running and turn_peers is not None:
        wanted["turn"].append(f"allow_peers = {turn_peers}")
    if per_address is not None:
        wanted["limits"] = [f"per_address = {per_address}"]
    if cms_password is not None:
        wanted["province"] = [f"cms_password = {cms_password}"]
    for name, section in sections.items():
        wanted.setdefault(name, []).extend(_lines(section))
    out: list[str] = []
    for name, lines in wanted.items():
        # A later line of the same key wins: keep one, so configparser sees no duplicate.
        keyed: dict[str, str] = {}
        for line in lines:
            keyed[line.split("=", 1)[0].strip() if "=" in line else line] = line
        out.append(f"[{name}]")
        out.extend(keyed.values())
    return "\n".join(out) + "\n"


def start_platform(test: TestCase, config: str | Config, reactor: Any = None) -> PlatformService:
    """Start a platform from INI text (written to a file and read the way ``twistd globaleye
    --config`` reads it: Options, its checks, its store) or from a parsed Config (store as the
    configuration says); stopped when *test* ends."""
    if isinstance(config, str):
        path = test.mktemp() + ".ini"
        Path(path).write_text(config, encoding="utf-8")
        options = Options()
        options.parseOptions(["--config", path])
        platform = PlatformService(options.config, options.store, reactor)
    else:
        from globaleye.platform.tap import open_store

        platform = PlatformService(config, open_store(config), reactor)
    platform.startService()
    test.addCleanup(platform.stopService)
    return platform


# --------------------------------------------------------------------------- in memory


class InlineStore(SQLiteStore):
    """The real SQLite store in memory, on the caller's thread: each call is done when it returns,
    so a test on ``task.Clock`` needs no reactor (the platform's store runs on a worker thread)."""

    def __init__(self) -> None:
        self.path = ":memory:"
        self._connection = connect(":memory:")
        configure(self._connection)
        migrate(self._connection)

    async def _run(self, function: Any, *args: Any) -> Any:
        return function(self._connection, *args)

    async def close(self) -> None:
        self._connection.close()


class _NoHTTP:
    """The camera's HTTP client when it never registers (the pump starts it registered)."""

    def post(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the pumped camera does not speak HTTP")

    get = post

    def close(self) -> None:
        pass


@attrs.define
class CameraLink:
    """A simulated camera and a gateway joined by an iosim pump, on one :class:`MemoryReactorClock`.

    The camera dials the gateway on ``clock`` (its ``connectTCP`` is recorded, not made); each
    :meth:`connect` completes the latest dial with a fresh gateway session and an ``IOPump``.
    """

    clock: MemoryReactorClock
    gateway: Gateway
    camera: SimulatedCamera
    peer: tuple[str, int]
    pump: IOPump | None = None
    server: DeviceSession | None = None
    client: CameraSession | None = None

    def connect(self) -> IOPump:
        """Complete the camera's pending dial; the greeting (the login, §7.3.3) is pumped."""
        from twisted.test.iosim import FakeTransport, connectedServerAndClient

        if not self.clock.tcpClients:
            raise AssertionError("the camera has not dialled the gateway")
        host, port, factory, _timeout, _bind = self.clock.tcpClients.pop(0)
        self.clock.connectors.pop(0)
        here = IPv4Address("TCP", host, port)
        there = IPv4Address("TCP", *self.peer)
        client, server, pump = connectedServerAndClient(
            lambda: self.gateway.factory().buildProtocol(there), lambda: factory.buildProtocol(here),
            clientTransportFactory=lambda p: FakeTransport(p, False, hostAddress=there, peerAddress=here),
            serverTransportFactory=lambda p: FakeTransport(p, True, hostAddress=here, peerAddress=there),
            greet=False, clock=self.clock)
        self.pump, self.server = pump, cast("DeviceSession", server)
        # The endpoint's wrapper around the camera's session.
        self.client = cast("CameraSession", getattr(client, "_wrappedProtocol", client))
        self.flush()
        return pump

    def flush(self) -> None:
        """Deliver everything both sides have written, and what that causes, at the present time."""
        if self.pump is not None:
            self.pump.flush()

    def advance(self, seconds: float, step: float = 1.0) -> None:
        """Let *seconds* pass in *step*s, delivering bytes after each."""
        left = seconds
        while left > 0:
            self.clock.advance(min(step, left))
            left -= step
            self.flush()

    def stop(self) -> None:
        self.camera.stop()
        self.flush()


def pump_camera_and_gateway(store: SQLiteStore, dev_id: str = "81100000001", dev_key: str = "pumped-key",
                            *, settings: GatewaySettings | None = None, timing: Timing | None = None,
                            gateway_address: tuple[str, int] = ("127.0.0.1", 8589),
                            camera_address: tuple[str, int] = ("192.0.2.7", 40000),
                            connect: bool = True, **state: Any) -> CameraLink:
    """A registered simulated camera (``dev_id``, ``dev_key``; *state* overrides its
    :class:`CameraState`) dialling a :class:`Gateway` over *store*, connected in memory.

    The device must be in *store* (see :func:`known_device`). With *connect* the link is made and
    the login and ability report (§7.3.3, §7.5.2) are pumped; otherwise call ``link.connect()``.
    """
    from twisted.internet.testing import MemoryReactorClock  # it imports Trial: not at module level

    clock = MemoryReactorClock()
    gateway = Gateway(store, clock, settings or GatewaySettings())
    camera = SimulatedCamera(CameraState.for_device(dev_id, dev_key, **state), clock, timing=timing,
                             rng=random.Random(1), http=_NoHTTP())
    host, port = gateway_address
    camera.registration = m.RegisterResponse(result=0, nat_ip=host, nat_port=port)
    camera.registered_at = clock.seconds()
    link = CameraLink(clock, gateway, camera, camera_address)
    camera.start()
    if connect:
        link.connect()
    return link


def known_device(dev_id: str = "81100000001", dev_key: str = "pumped-key", model: str = "IPC-1") -> Device:
    """The store's row for a device :func:`pump_camera_and_gateway` may log in with."""
    return Device(dev_id=dev_id, dev_key=dev_key, model=model)


# --------------------------------------------------------------------------- kinds of test

#: The folders of ``tests/``, from fastest to most real: ``unit`` runs in memory or on a
#: ``task.Clock`` (seconds); ``integration`` on real loopback sockets and real processes of our own
#: (twistd, the simulator, globaleye-client, pip and virtualenvs, lint-imports); ``interop`` against
#: third-party peers (ffmpeg/ffprobe, GStreamer, VLC, coturn, stun clients, zeep, aioice, nmap,
#: miniupnpd, network namespaces).
KINDS = ("unit", "integration", "interop")

#: The older names: ``fast`` is ``unit``, ``slow`` the other two.
ALIASES = {"fast": ("unit",), "slow": ("integration", "interop")}


def test_modules(root: Path | None = None, kind: str | None = None) -> list[str]:
    """Every ``tests/<kind>/test_*.py`` of the repository (this checkout, else the working
    directory) as a module name, sorted; every kind's when *kind* is None."""
    if root is None:
        checkout = Path(__file__).resolve().parents[1]
        root = checkout if (checkout / "tests").is_dir() else Path.cwd()
    kinds = KINDS if kind is None else (kind,)
    return sorted(f"tests.{folder}.{path.stem}" for folder in kinds
                  for path in (root / "tests" / folder).glob("test_*.py"))


def main(argv: list[str]) -> int:
    """``python -m globaleye.testing unit|integration|interop`` (or ``fast``, ``slow``): the test
    modules of that kind, one per line."""
    if len(argv) != 1 or argv[0] not in (*KINDS, *ALIASES):
        print("usage: python -m globaleye.testing unit|integration|interop|fast|slow", file=sys.stderr)
        return 2
    for kind in ALIASES.get(argv[0], (argv[0],)):
        for name in test_modules(kind=kind):
            print(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
