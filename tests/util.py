"""Helpers shared by the Trial tests that run on the real reactor."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet import defer, error, protocol, reactor
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool


async def until(condition: Callable[[], object], timeout: float = 10.0, step: float = 0.01) -> None:
    """Spin the real reactor (store threads, sockets) until *condition* holds, or fail."""
    waited = 0.0
    while not condition():
        if waited > timeout:
            raise AssertionError(f"condition not reached within {timeout:g} s")
        await deferLater(reactor, step, lambda: None)
        waited += step


def http_client() -> HTTPClient:
    """A treq client without persistent connections, so no test leaves a socket open."""
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


@attrs.frozen
class Result:
    out: str
    err: str
    code: int | None
    timed_out: bool


class _Collector(protocol.ProcessProtocol):
    def __init__(self, done: defer.Deferred[Result]) -> None:
        self.done = done
        self.out = b""
        self.err = b""
        self.timed_out = False

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out += data

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.done.callback(Result(self.out.decode(errors="replace"), self.err.decode(errors="replace"),
                                  getattr(reason.value, "exitCode", None), self.timed_out))


async def run(executable: str, args: list[str], timeout: float = 20.0, env: dict[str, str] | None = None) -> Result:
    """Spawn a real peer (a player, a STUN client…); SIGKILL it after *timeout* seconds (a reactor timer)."""
    done: defer.Deferred[Result] = defer.Deferred()
    collector = _Collector(done)
    process = reactor.spawnProcess(collector, executable, [executable, *args],
                                   env=dict(os.environ) if env is None else env)

    def kill() -> None:
        collector.timed_out = True
        try:
            process.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    timer = reactor.callLater(timeout, kill)
    try:
        return await done
    finally:
        if timer.active():
            timer.cancel()


class CameraOnPlatform:
    """A platform (from *config*) with one simulated camera online, torn down with the test.

    ``start()`` is the body of the tests' setUp; ``token()`` a fresh single-use HashToken for
    the camera's live stream, as §8.9 would issue (straight into the store).
    """

    def __init__(self, test: Any, config: str, dev_id: str) -> None:
        self.test, self.config, self.dev_id = test, config, dev_id

    async def start(self) -> None:
        from globaleye.config import parse_config
        from globaleye.sim.camera import Timing
        from globaleye.sim.fleet import Fleet
        from globaleye.store.sqlite import SQLiteStore
        from globaleye.tap import PlatformService

        self.platform = PlatformService(parse_config(self.config), SQLiteStore(":memory:"), reactor)
        self.platform.startService()
        self.test.addCleanup(self.platform.stopService)
        self.fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{self.platform.port_of('http')}/register",
                           timing=Timing(backoff_initial=0.05), http=http_client())
        self.test.addCleanup(self.fleet.stop)
        await self.fleet.prepare()
        self.camera = self.fleet.add(self.dev_id)
        self.fleet.start()
        await self.camera.went_online

    async def token(self, stream_type: int = 1) -> str:
        import secrets

        from globaleye.store import HashToken
        value = secrets.token_hex(16)
        await self.platform.store.add_token(HashToken(token=value, dev_id=self.dev_id, channel_no=0,
                                                      stream_type=stream_type, expires_at=reactor.seconds() + 60,
                                                      account="13300000000"))
        return value


# Platform configurations several test modules share (built by globaleye.testing.platform_config) ---------


def end_to_end_config(db: str, gateway_extra: str = "", roles: str = "gateway, http, group") -> str:
    """The end-to-end platform: open enrollment without a per-address cap, a file database *db*, and
    [turn] on loopback (its port is also the one registration hands out)."""
    from globaleye.testing import platform_config

    return platform_config(roles, database=f"sqlite:///{db}", enrollment={"peer_limit": 0}, gateway=gateway_extra,
                           turn={"port": 0, "relay_ports": "51000-51999", "allow_peers": "127.0.0.0/8"})


#: The password of the accounts the SOAP tests create.
SOAP_PASSWORD = "correct horse"


def soap_config(db: str, soap_extra: str = "") -> str:
    """The §8 client API platform: province MCU URLs by number prefix, a firmware entry, one device per
    account, fast SMS; *soap_extra* adds [soap] lines."""
    from globaleye.testing import platform_config

    return platform_config(
        database=f"sqlite:///{db}", gateway={"port": 0, "command_timeout": 2},
        group={"mcu_urls": "133=http://sh.example.cn/soap/mcu, 1339=http://special.example.cn/soap/mcu",
               "cms_name": "GlobalEye Test"},
        soap="\n".join(["sms_interval = 0.01", "max_devices_per_account = 1",
                        "update_url = http://apps.example.cn/mcu.apk", "min_mcu_version = 1.2",
                        "stun_host = 198.51.100.1", "stun_port = 3478",
                        "firmware = * V2.0.0 ftp://upg:pw@198.51.100.9:2121/fw/V2.0.0.bin", soap_extra]))


def registration_config(mode: str | None = "open", roles: str = "gateway, http, group") -> str:
    """The §7.2 registration platform: a backup gateway, a TURN port and an FTP server to hand out;
    *mode* is [enrollment] mode (None: the default)."""
    from globaleye.testing import platform_config

    return platform_config(roles, enrollment_mode=mode, http={"port": 0}, gateway={
        "port": 0, "backup_host": "127.0.0.2", "backup_port": 8589, "turn_port": 3478,
        "ftp_host": "127.0.0.3", "ftp_account": "pics", "ftp_password": "pw"})
