"""``twistd globaleye``: every configured role of the platform in one reactor.

Like ``twisted.names.tap``, this module turns command-line options into a service
tree.  Mistakes are caught in :meth:`Options.postOptions`, before anything
listens: twistd then prints the message, which names the file and the key, and
exits non-zero.
"""

from __future__ import annotations

import os
import resource as rlimit
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage
from twisted.web import resource

from globaleye import __version__
from globaleye.api.clientapi import McuApi
from globaleye.api.soap.operations import GROUP_NS, GROUP_OPERATIONS, MCU_NS, MCU_OPERATIONS
from globaleye.api.soap.resource import SoapResource
from globaleye.app import ClientApiSettings, EventBoard, build_services
from globaleye.app.access import CameraAccess
from globaleye.app.cloud import CloudService, CloudSettings
from globaleye.app.delivery import DeliverySettings, deliver_ftp
from globaleye.app.group import GroupDirectory, GroupService, GroupSettings, province_key
from globaleye.app.ports import Presigner, StreamBoard
from globaleye.device.gateway import Gateway, GatewaySettings
from globaleye.device.protocol import messages as m
from globaleye.device.registration import Redirector, Registrar, RegistrationSettings
from globaleye.device.web import XMLPostResource
from globaleye.ftp.server import FtpRole, FtpSettings
from globaleye.ftp.server import logged_in as ftp_logged_in
from globaleye.group.province import GroupClient, ProvinceSettings
from globaleye.group.soap import GroupSoap
from globaleye.guard.httpsite import LimitedSite
from globaleye.guard.httpsite import established as http_established
from globaleye.guard.keyguard import KeyGuard, KeyGuardSettings
from globaleye.guard.netlimits import ConnectionLimits, LimitSettings
from globaleye.guard.ops import OperatorGuard
from globaleye.media.rtsp.serving import IDLE_TIMEOUT as RTSP_IDLE_TIMEOUT
from globaleye.nat.turnauth import NEW_DEVICE_CLASS, DeviceCredentials
from globaleye.platform import logfile
from globaleye.platform.bindings import settings
from globaleye.platform.config import Config, ConfigError, load_config
from globaleye.proxy.cloud import CloudPlayback, IndexedFiles, ObjectCache
from globaleye.proxy.service import RtspProxyService, RtspProxySettings
from globaleye.s3.backend import ObjectBackend
from globaleye.s3.endpoint import StorageService, StorageSettings
from globaleye.s3.sigv4 import UrlSigner
from globaleye.store import RETENTION_KINDS
from globaleye.store.migrations import MigrationError
from globaleye.store.retention import Retention, RetentionSettings
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import AccountService, AccountSettings
from globaleye.users.crm import AllowAll, HttpCRM, HttpCRMSettings
from globaleye.users.sms.client import LogSender, SMGPSender, SMGPSettings
from globaleye.util.urls import http_url
from globaleye.web.site import live_video, web_root
from txturn.auth import ChainedLookup
from txturn.service import TurnServerConfig, TurnService, default_lookup, turn_service
from txturn.stunserver import StunServerConfig, StunService

LISTEN_BACKLOG = 4096
SOFTWARE = f"GlobalEye {__version__}"


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = "Run the GlobalEye platform roles named in the configuration file."
    optParameters = [
        ["config", "c", None, "Configuration file (default: built-in defaults, see etc/globaleye.ini)."],
    ]

    config: Config
    store: SQLiteStore
    _options_parsed = False

    def parseArgs(self) -> None:  # noqa: N802 (Twisted's name): no arguments; next comes postOptions
        self._options_parsed = True

    def parseOptions(self, options: Any = None) -> None:  # noqa: N802
        """A mistake in the configuration (postOptions) is one line naming the file and the key, and
        exit status 1; twistd would print its whole usage text first, which is for wrong options."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if not self._options_parsed:
                raise
            raise SystemExit(f"twistd globaleye: {e}") from e

    def postOptions(self) -> None:
        try:
            self.config = load_config(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from e
        self.store = open_store(self.config)
        if getattr(self, "parent", None) is not None:  # run by twistd: a bounded log file instead of its unbounded one
            try:
                logfile.install(self.parent, self.config["log"])
            except ValueError as e:
                raise usage.UsageError(f"{self.config.path}: {e}") from e


def own_province_secret(config: Config) -> Config:
    """Give a one-process group and province a §6 link secret nobody else knows (issue 9 item 1).

    When this process runs both the group and the gateway (province) roles and ``[province]
    group_url`` is empty, the province reports to its own group over loopback.  An empty
    CmsPassword must never authenticate, and a well-known one shipped in ``etc/globaleye.ini``
    would be the same hole, so an empty ``[province] cms_password`` is replaced by a random one
    for this run only: it is never written or shown, both ends of the link live in this process,
    and a stranger's ReportAddress for the province can only fail.
    """
    roles, pr = config.roles, config["province"]
    if "group" in roles and "gateway" in roles and not pr["group_url"] and not pr["cms_password"]:
        return config.replace(province={"cms_password": secrets.token_urlsafe(24)})
    return config


def check_state_dir(config: Config) -> str:
    """The database's directory exists (made if need be), takes a new file and has ``min_free_mb`` free.

    Raises ConfigError naming the directory and the reason; returns a line describing it.
    """
    database = config.database_path()
    if database == ":memory:":
        return "database in memory"
    directory = Path(database).parent
    key = "[globaleye] data_dir" if directory.is_relative_to(config.data_dir) else "[database] url"
    where = f"{config.path or '<defaults>'}: {key}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".globaleye-check-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        raise ConfigError(f"{where}: {directory} is not writable: {e.strerror or e}") from e
    free_mb = shutil.disk_usage(directory).free // (1 << 20)
    wanted = config["globaleye"]["min_free_mb"]
    if free_mb < wanted:
        raise ConfigError(f"{where}: {directory} has {free_mb} MiB free, less than min_free_mb = {wanted}")
    return f"{directory} writable, {free_mb} MiB free"


def open_store(config: Config) -> SQLiteStore:
    """Open (and migrate) the database, turning every failure into a UsageError that names it."""
    try:
        check_state_dir(config)
    except ConfigError as e:
        raise usage.UsageError(str(e)) from e
    try:
        return SQLiteStore(config.database_path())
    except (ConfigError, MigrationError) as e:
        raise usage.UsageError(f"{config.path}: [database] url: {e}") from e
    except Exception as e:  # sqlite3.Error, OSError: anything that stops the database opening
        raise usage.UsageError(f"{config.path}: [database] url: cannot open {config['database']['url']!r}: {e}") from e


class CannotStart(Exception):
    """A role could not start (its port is taken, say): the message is one line that names it."""


class PlatformService(service.MultiService):
    """The platform: store, device gateway, device HTTP site; later issues add roles."""

    log = Logger()

    def __init__(self, config: Config, store: SQLiteStore, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        config = own_province_secret(config)
        self.config = config
        self.reactor = reactor
        self.store = store
        self.ports: dict[str, IListeningPort] = {}
        self._forgetting: Deferred[None] | None = None
        # Shared by every listener: per address, per role and in all (globaleye/guard/netlimits.py).
        self.limits = ConnectionLimits(reactor, settings(config, LimitSettings))
        # One throttle for every DevKey and password check of this process (docs/security.md).
        self.keyguard = KeyGuard(reactor, settings(config, KeyGuardSettings))
        g = config["gateway"]
        # The gateway reports alarms and online changes to the event board; the application layer's
        # event service (open pages' live streams) listens to it (globaleye/app/events.py).
        self.events = EventBoard()
        self.gateway = Gateway(store, reactor, settings(config, GatewaySettings), guard=self.keyguard,
                               reports=self.events)
        public = config["globaleye"]["public_host"]
        self.registrar = Registrar(store, reactor, settings(
            config, RegistrationSettings, gateway_host=public, backup_gateway_port=g["backup_port"] or 0,
            turn_host=g["turn_host"] or public, turn_port=g["turn_port"] or config["turn"]["port"],
            backup_turn_port=g["backup_turn_port"] or 0), online=self.gateway.is_online, guard=self.keyguard)
        self.redirector = Redirector(store, config["group"]["default_province_url"], reactor)
        so = config["soap"]
        r = config["rtsp"]
        self.accounts = AccountService(store, reactor, settings(
            # RTSP Digest needs HA1 kept per account; with [rtsp] auth = basic (or none) none is kept.
            config, AccountSettings, digest_realm=r["realm"] if "digest" in r["auth"] else ""),
            sms_sender=self._sms_sender(config, reactor), crm=self._crm(config, reactor), guard=self.keyguard)
        # §6: this province's client of its group (configured, or this process's own group role).
        pr = config["province"]
        self.group_client: GroupClient | None = None
        if "gateway" in config.roles and (pr["group_url"] or "group" in config.roles):
            self.group_client = GroupClient(settings(config, ProvinceSettings), reactor, store)
        # The application layer (globaleye.app) and its SOAP face; the stream-status board is
        # filled by the RTSP proxy below when this process runs one (GetStreamStatus).
        self.client = build_services(self.accounts, store, self.gateway, settings(
            config, ClientApiSettings, stun_host=so["stun_host"] or public,
            stun_port=so["stun_port"] or config["stun"]["port"]), group=self.group_client, streams=StreamBoard(),
            events=self.events)
        self.mcu_api = McuApi(self.client)
        gr = config["group"]
        self.group_directory = GroupDirectory(gr["mcu_urls"], gr["default_mcu_url"], gr["cms_name"])
        self.group_service = GroupService(store, reactor, settings(config, GroupSettings), self.group_directory)
        rt = config["retention"]
        self.retention = Retention(store, reactor, settings(
            config, RetentionSettings, days={kind: rt[kind] for kind in RETENTION_KINDS}))
        self.retention.setServiceParent(self)
        self.stun: StunService | None = None
        self.turn: TurnService | None = None
        if "stun" in config.roles:
            st = config["stun"]
            self.stun = StunService(settings(
                config, StunServerConfig, alternate_interface=st["alternate_interface"] or None, software=SOFTWARE),
                _LimitedListens(reactor, self.limits, "stun-tcp"))
            self.stun.setServiceParent(self)
        if "turn" in config.roles:
            t = config["turn"]
            turn_config = settings(
                config, TurnServerConfig, tls_cert=t["tls_cert"] or None, tls_key=t["tls_key"] or None,
                relay_interface=t["relay_interface"] or t["interface"], external_ip=t["external_ip"] or None,
                shared_secret=t["shared_secret"] or None, max_bps=t["max_bps"] or None, software=SOFTWARE,
                class_quotas={NEW_DEVICE_CLASS: t["new_device_quota"]})
            lookups: list[Any] = [default_lookup(turn_config, reactor)]
            if t["tls_port"] is not None:  # TURN over TLS with the platform's one TLS profile
                from globaleye.guard.tls import ServerTLS

                turn_config.tls_context = ServerTLS(t["tls_cert"], t["tls_key"])
            # Also the guard of every TURN credential check, a device's or not.
            devices = DeviceCredentials(store, device_quota=t["device_quota"], guard=self.keyguard)
            if t["device_credentials"]:
                lookups.append(devices)
            self.turn = turn_service(turn_config, ChainedLookup(tuple(lookups)), reactor, wrap=self._wrap_turn,
                                     guard=devices)
            self.turn.setServiceParent(self)
        self.cloud: CloudService | None = None
        self.storage: StorageService | None = None
        self.ftp: FtpRole | None = None
        self.signer: UrlSigner | None = None
        self._build_cloud(config, reactor)
        self.rtsp_proxy: RtspProxyService | None = None
        if "rtsp" in config.roles:
            self.rtsp_proxy = RtspProxyService(
                self.accounts, self.client.devices, self.client.media, self.gateway, reactor,
                settings(config, RtspProxySettings), streams=self.client.streams, cloud=self._cloud_playback())
            self.rtsp_proxy.setServiceParent(self)

    def _build_cloud(self, config: Config, reactor: Any) -> None:
        """Cloud storage (issue 12, §7.1): the object backend (the embedded files, or an external S3
        service with ``[storage] backend = s3``), the application layer's side (index, the cameras' own
        keys, quotas, retention, SOAP), and the roles that take uploads: ``storage`` (the S3 endpoint)
        and ``ftp`` (pictures).  None of it without either role or an external store to index."""
        st, roles = config["storage"], config.roles
        if "storage" not in roles and "ftp" not in roles and st["backend"] != "s3":
            return
        backend: ObjectBackend
        presigner: Presigner
        if st["backend"] == "s3":
            from globaleye.s3.external import S3Backend, S3Unavailable

            if not st["endpoint"]:
                raise CannotStart(f"{config.path or '<defaults>'}: [storage] endpoint: backend = s3 needs the "
                                  "external service's URL")
            try:
                external = S3Backend(reactor, endpoint=st["endpoint"], region=st["region"],
                                     access_key=st["access_key"], secret_key=st["secret_key"],
                                     addressing=st["addressing_style"])
            except S3Unavailable as e:
                raise CannotStart(f"{config.path or '<defaults>'}: [storage] backend: {e}") from None
            external.setServiceParent(self)
            backend = presigner = external
        # The S3 endpoint (and, for the embedded files, the backend and its thread pool) exists whenever
        # cloud storage does; it listens only with the storage role, under the platform's limits.
        self.storage = StorageService(settings(config, StorageSettings, data_dir=config.storage_dir()),
                                      backend if st["backend"] == "s3" else None, _Unset(), _Unset(), reactor,
                                      listen=False)
        self.storage.setServiceParent(self)
        if st["backend"] != "s3":
            backend = self.storage.backend
            cl = config["cloud"]
            # Presigned downloads of the embedded store are signed with the platform's key: configured, or
            # one for this run only (never written or shown; a URL lives minutes).
            self.signer = UrlSigner("", cl["access_key"], cl["secret_key"], reactor.seconds, st["region"])
            presigner = self.signer
        self.cloud = self.attach_cloud(backend, presigner, url="", ftp="ftp" in roles)
        self.storage.endpoint.credentials = self.cloud
        self.storage.endpoint.events = self.cloud
        if "ftp" in roles:
            f = settings(config, FtpSettings)
            if not f.staging_dir:
                f = attrs.evolve(f, staging_dir=str(config.data_dir / "ftp-staging"))
            try:
                self.ftp = FtpRole(f, self.cloud, backend, self.cloud, reactor, guard=self.keyguard)
            except ValueError as e:
                raise CannotStart(f"{config.path or '<defaults>'}: [ftp] {e}") from None
            self.ftp.setServiceParent(self)
            # FTP pictures (§7.5.24 StoreType 0) delivered to the owner: the open pages' 'picture' event,
            # an SMS with the portal's page (its port known once it listens); globaleye/app/delivery.py.
            def portal() -> str:
                scheme, port = ("https", "webs") if "webs" in self.ports else ("http", "web")
                return http_url(config["globaleye"]["public_host"], self.port_of(port), scheme=scheme) \
                    if port in self.ports else ""

            self.ftp.events = deliver_ftp(self.cloud, self.events, self.accounts.sms_sender, reactor,
                                          settings(config, DeliverySettings), portal)

    def _cloud_playback(self) -> CloudPlayback | None:
        """The RTSP proxy's ``/cloud/`` URLs (issue 12): the index through the application layer, the
        objects through a bounded cache beside the store's data (the embedded files are read in place)."""
        if self.cloud is None or self.storage is None:
            return None
        cache = ObjectCache(self.cloud.backend, os.path.join(self.storage.data_dir, ".playback-cache"))
        return CloudPlayback(files=IndexedFiles(self.cloud), cache=cache)

    def attach_cloud(self, backend: ObjectBackend, presigner: Presigner | None, url: str,
                     ftp: bool = False) -> CloudService:
        """Cloud storage, the platform's side (issue 12, §7.1.2), over the object *backend* (the storage
        role's or an external S3 service's): the index, the cameras' own keys in LOGIN_RES (*url* their
        EURL) and, with *ftp*, REGISTER_RES, the SOAP operations.  Called from ``__init__`` once the
        backend exists; the S3 endpoint and the FTP role take the returned service as their
        CredentialLookup and StorageEvents."""
        cloud = CloudService(self.store, backend, self.reactor, settings(self.config, CloudSettings, url=url),
                             CameraAccess(self.store, self.gateway), self.gateway, presigner)
        cloud.setServiceParent(self)
        self.gateway.cloud = cloud
        if ftp:
            self.registrar.ftp = cloud
        self.client.recording.loop_listeners.append(cloud.loop_changed)
        self.client = attrs.evolve(self.client, cloud=cloud)
        self.mcu_api.services = self.client
        return cloud

    def _sms_sender(self, config: Config, reactor: Any) -> Any:
        sms = config["sms"]
        if sms["backend"] != "smgp":
            return LogSender()
        sender = SMGPSender(settings(config, SMGPSettings), reactor)
        sender.setServiceParent(self)  # connects, logs in and keeps the session while the platform runs
        return sender

    def _crm(self, config: Config, reactor: Any) -> Any:
        crm = config["crm"]
        if crm["backend"] != "http":
            return AllowAll()
        return HttpCRM(settings(config, HttpCRMSettings), reactor)

    def port_of(self, role: str) -> int:
        address: Any = self.ports[role].getHost()
        return int(address.port)

    #: twistd -n: a role that cannot start ends the process with one line on stderr, not a traceback.
    exit_on_start_error = False

    def startService(self) -> None:
        try:
            self._start_roles()
        except (CannotStart, CannotListenError) as e:
            self._abandon_start()
            message = str(e) if isinstance(e, CannotStart) else self._listen_error(e)
            if self.exit_on_start_error:
                self.log.critical("cannot start: {message}", message=message)
                # twistd has pointed sys.stderr at the log: the operator's terminal is the original one.
                print(f"globaleye: {message}", file=sys.__stderr__ or sys.stderr, flush=True)
                raise SystemExit(1) from None
            raise CannotStart(message) from None

    def _listen_error(self, e: CannotListenError) -> str:
        """Name the role of a port a child service (STUN, TURN) could not listen on."""
        roles = {self.config["stun"]["port"]: "stun", self.config["stun"]["alternate_port"]: "stun",
                 self.config["turn"]["tls_port"]: "turn", self.config["turn"]["port"]: "turn"}
        reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
        return f"{roles.get(e.port, 'a role')} cannot listen on {e.interface or '*'} port {e.port}: {reason}"

    def _abandon_start(self) -> None:
        """Close what did start, so the process (or the test) is left with no half-open platform."""
        for port in self.ports.values():
            port.stopListening()
        self.ports.clear()
        for child in self:
            if child.running:
                child.stopService()
        self.running = False

    def _start_roles(self) -> None:
        super().startService()  # STUN and TURN first: REGISTER_RES gives the TURN port
        roles = self.config.roles
        if self.turn is not None and self.config["gateway"]["turn_port"] is None:
            self.registrar.settings = attrs.evolve(self.registrar.settings,
                                                   turn_port=self.turn.addresses["tcp"][1])
        if "gateway" in roles:
            g = self.config["gateway"]
            self.ports["gateway"] = self._listen("gateway", g["port"], self.gateway.factory(), g["interface"],
                                                 deadline=g["login_timeout"], established=_logged_in)
            self.registrar.settings = attrs.evolve(self.registrar.settings, gateway_port=self.port_of("gateway"))
        if self.rtsp_proxy is not None:
            r = self.config["rtsp"]
            self.ports["rtsp"] = self._listen("rtsp", r["port"], self.rtsp_proxy.factory, r["interface"],
                                              deadline=RTSP_IDLE_TIMEOUT, established=_rtsp_established)
            if r["tls_port"] is not None:
                self.ports["rtsps"] = self._listen("rtsps", r["tls_port"], self.rtsp_proxy.factory, r["interface"],
                                                   tls=(r["tls_cert"], r["tls_key"]), deadline=RTSP_IDLE_TIMEOUT,
                                                   established=_rtsp_established)
        if "http" in roles or "group" in roles:
            h = self.config["http"]
            lim = self.config["limits"]
            site = LimitedSite(self.http_root(), self.reactor, max_body=h["max_body"],
                               header_timeout=lim["http_header_timeout"], body_timeout=lim["http_body_timeout"],
                               idle_timeout=lim["http_idle_timeout"], log_interval=lim["log_interval"])
            self.ports["http"] = self._listen("http", h["port"], site, h["interface"],
                                              deadline=lim["http_header_timeout"], established=http_established)
            if h["tls_port"] is not None:  # the same site over TLS (SOAP passwords, DevKeys)
                self.ports["https"] = self._listen("https", h["tls_port"], site, h["interface"],
                                                   tls=(h["tls_cert"], h["tls_key"]),
                                                   deadline=lim["http_header_timeout"], established=http_established)
            if not self.redirector.default_province_url and "gateway" in roles:
                # The demo runs group and province in one process: redirect devices to ourselves.
                public = self.config["globaleye"]["public_host"]
                self.redirector.default_province_url = http_url(public, self.port_of("http"), "/register")
            if not self.group_directory.default_url and "gateway" in roles:
                public = self.config["globaleye"]["public_host"]
                self.group_directory.default_url = http_url(public, self.port_of("http"), "/soap/mcu")
        if self.storage is not None:
            self._start_storage()
        if "web" in roles:
            self._start_web()
        if self.group_client is not None:
            self._start_group_client()
        if "gateway" in roles:  # the role that serves accounts: drop HA1s the configuration no longer wants
            self._forgetting = Deferred.fromCoroutine(self._forget_digests())

    def _start_web(self) -> None:
        """The shop owner's portal and its JSON API (globaleye.web): the HTTP site's limits and
        [http] max_body, its own listener, and the same site over TLS when [web] tls_port is set."""
        w, lim = self.config["web"], self.config["limits"]
        site = LimitedSite(web_root(self.client, live_video(self.rtsp_proxy)), self.reactor,
                           max_body=self.config["http"]["max_body"], header_timeout=lim["http_header_timeout"],
                           body_timeout=lim["http_body_timeout"], idle_timeout=lim["http_idle_timeout"],
                           log_interval=lim["log_interval"])
        self.ports["web"] = self._listen("web", w["port"], site, w["interface"],
                                         deadline=lim["http_header_timeout"], established=http_established)
        if w["tls_port"] is not None:
            self.ports["webs"] = self._listen("webs", w["tls_port"], site, w["interface"],
                                              tls=(w["tls_cert"], w["tls_key"]),
                                              deadline=lim["http_header_timeout"], established=http_established)

    def _start_storage(self) -> None:
        """The object store's start-up work (directories checked, a crash's leftovers removed) before
        anyone is served; the S3 endpoint under the platform's connection limits with the storage role,
        and the EURL (LOGIN_RES, 65H) and presigned URLs now that its port is known; the FTP role, and
        REGISTER_RES's FTP address."""
        assert self.storage is not None and self.cloud is not None
        try:
            self.storage.prepare()
        except Exception as e:  # StorageError, OSError: the data directory is unusable
            raise CannotStart(f"{self.config.path or '<defaults>'}: [storage] data_dir: {e}") from None
        st, public, roles = self.config["storage"], self.config["globaleye"]["public_host"], self.config.roles
        lim = self.config["limits"]
        if "storage" in roles:
            self.ports["storage"] = self._listen("storage", st["port"], self.storage.site, st["interface"],
                                                 deadline=lim["http_header_timeout"],
                                                 established=http_established)
            url = st["public_url"] or http_url(public, self.port_of("storage"))
            self.cloud.settings = attrs.evolve(self.cloud.settings, url=url)
            if self.signer is not None:
                self.signer.base_url = url
        if self.signer is not None and not self.signer.secret:
            self.signer.access_key = "GEPLATFORM" + secrets.token_hex(5).upper()
            self.signer.secret = secrets.token_urlsafe(30)
        if self.signer is not None:
            self.cloud.use_platform_key(self.signer.access_key, self.signer.secret)
        if self.ftp is not None:
            f = self.ftp.settings
            self.ports["ftp"] = self._listen("ftp", f.port, self.ftp.factory, f.interface,
                                             deadline=f.login_timeout, established=ftp_logged_in)
            g = self.config["gateway"]
            self.registrar.settings = attrs.evolve(self.registrar.settings, ftp_host=g["ftp_host"] or public,
                                                   ftp_port=self.port_of("ftp") if not g["ftp_host"] else g["ftp_port"])

    async def _forget_digests(self) -> None:
        try:
            forgotten = await self.accounts.forget_digests()
        except Exception:
            self.log.failure("cannot clear stored RTSP Digest secrets")
            return
        if forgotten:
            self.log.info("cleared {n} stored RTSP Digest secrets ([rtsp] auth/realm changed)", n=forgotten)

    def _start_group_client(self) -> None:
        """§6.1 needs our own URLs, known only now that the HTTP site listens (its port may be 0)."""
        assert self.group_client is not None
        own = http_url(self.config["globaleye"]["public_host"], self.port_of("http")) if "http" in self.ports else ""
        group_url = ""
        if not self.config["province"]["group_url"] and own:
            # One process is group and province (the demo): the group trusts its own province, never
            # with an empty password (refused in __init__).
            settings = self.group_client.settings
            self.group_service.trust_own_province(province_key(settings.province_no, settings.cms_no),
                                                  settings.cms_password)
            group_url = own + "/soap/group"
        self.group_client.start(mcu_url=own and own + "/soap/mcu", register_url=own and own + "/register",
                                group_url=group_url)

    def http_root(self) -> resource.Resource:
        root = resource.Resource()
        max_body = self.config["http"]["max_body"]
        if "gateway" in self.config.roles:
            root.putChild(b"register", XMLPostResource(m.RegisterRequest, self.registrar.register, max_body))
        if "group" in self.config.roles:
            root.putChild(b"redirect", XMLPostResource(m.RedirectRequest, self.redirector.redirect, max_body))
        # The client API (§8 on a province, §9.1 on the group) as SOAP: /soap/mcu, /soap/group (?wsdl).
        soap = resource.Resource()
        public = self.config["globaleye"]["public_host"]
        if "gateway" in self.config.roles:
            soap.putChild(b"mcu", SoapResource("GlobalEyeMcu", MCU_NS, MCU_OPERATIONS, self.mcu_api.handle,
                                               max_body, public))
        if "group" in self.config.roles:
            soap.putChild(b"group", SoapResource("GlobalEyeGroup", GROUP_NS, GROUP_OPERATIONS,
                                                 GroupSoap(self.group_service).handle, max_body, public))
        root.putChild(b"soap", soap)
        if self.rtsp_proxy is not None and self.config["ops"]["token"]:  # operator only: see globaleye.guard.ops
            root.putChild(b"status", OperatorGuard(self.rtsp_proxy.status_resource(), self.config["ops"]["token"],
                                                   self.reactor))  # /status/streams
        return root

    def _listen(self, role: str, port: int, factory: Any, interface: str,
                tls: tuple[str, str] | None = None, deadline: float | None = None,
                established: Callable[[Any], bool] | None = None) -> IListeningPort:
        # A login storm (every camera of a province after a power cut) opens thousands of
        # connections at once; Twisted's default backlog of 50 would drop their SYNs and
        # stretch the storm by the clients' retransmission timers.
        if tls is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            from globaleye.guard.tls import ServerTLS

            # One TLS profile for every listener (globaleye.guard.tls); the files were checked with the
            # configuration, so a missing or mismatched key has already stopped start-up with its name.
            context = ServerTLS(*tls)
            # listenSSL, with the connection limits outside the TLS layer: a refusal costs no handshake.
            factory = TLSMemoryBIOFactory(context, False, factory)
        limited = self.limits.wrap(role, factory, deadline=deadline, established=established)
        try:
            listening = self.reactor.listenTCP(port, limited, backlog=LISTEN_BACKLOG, interface=interface)
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise CannotStart(f"{role} cannot listen on {interface or '*'} port {port}: {reason}") from None
        host = listening.getHost()
        self.log.info("{role} listening on {host}:{port}", role=role, host=host.host, port=host.port)
        return listening

    def _wrap_turn(self, name: str, factory: Any) -> Any:
        """TURN's TCP and TLS listeners (built inside txturn) under the same connection limits."""
        return self.limits.wrap(f"turn-{name}", factory, deadline=self.config["limits"]["turn_auth_timeout"],
                                established=_turn_established)

    async def _stop(self) -> None:
        if self._forgetting is not None:
            await self._forgetting
        for role, port in list(self.ports.items()):
            await maybeDeferred(port.stopListening)
            self.log.info("{role} stopped listening", role=role)
        self.gateway.close_all("platform shutting down")
        if self.group_client is not None:
            await self.group_client.stop()
        self.limits.stop()
        await self.store.close()

    def stopService(self) -> Any:
        from twisted.internet.defer import DeferredList

        d = super().stopService()
        own = Deferred.fromCoroutine(self._stop())
        return DeferredList([d, own]) if d is not None else own


class _Unset:
    """The S3 endpoint's lookups before the cloud service built on its backend takes their place."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the storage role's {name} was used before the cloud service was attached")


class _LimitedListens:
    """The reactor, with the connection limits applied to what listenTCP serves: for the STUN
    role's TCP listener, which txturn builds inside StunService (it has its own idle timeout)."""

    def __init__(self, reactor: Any, limits: ConnectionLimits, role: str) -> None:
        self._reactor = reactor
        self._limits = limits
        self._role = role

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:  # noqa: N802
        return self._reactor.listenTCP(port, self._limits.wrap(self._role, factory), backlog=backlog,
                                       interface=interface)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


def _logged_in(session: Any) -> bool:
    return getattr(session, "state", "") == "online"


def _rtsp_established(connection: Any) -> bool:
    return bool(connection.has_sessions() or connection.busy)


def _turn_established(connection: Any) -> bool:
    return bool(getattr(connection, "established", True))


def raise_file_limit() -> tuple[int, int]:
    """Every device session is a socket: lift the soft descriptor limit to the hard one."""
    soft, hard = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)
    if hard == rlimit.RLIM_INFINITY or soft < hard:
        target = hard if hard != rlimit.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            rlimit.setrlimit(rlimit.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


def makeService(options: Options) -> service.IService:
    soft, _hard = raise_file_limit()
    Logger().info("open file limit {soft}: about {sessions} device sessions", soft=soft, sessions=max(0, soft - 100))
    platform = PlatformService(options.config, options.store)
    parent = getattr(options, "parent", None)
    # In the foreground a role that cannot start prints one line and exits non-zero; a daemon's
    # failure goes to twistd, which reports it through the daemon's status pipe.
    platform.exit_on_start_error = bool(parent is None or parent.get("nodaemon"))
    return platform
