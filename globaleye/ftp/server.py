"""The cameras' FTP server: picture uploads into the object store, firmware downloads (issue 12).

§7.2: REGISTER_RES gives the camera an FTP server and account (FtpIP, FtpPort, FtpAccount,
FtpPassword); §7.5.24 picture policies with StoreType 0 make it upload JPEGs there, and §7.5.27
(36H) tells the platform the file's name ``DevID_ChannelNo_YYYYMMDDHHMMSS.JPG``.  6DH gives it
``ftp://user:password@host:port/file`` firmware URLs (``[upgrade]``).

What a login may do, and nothing more (docs/security.md, "FTP"):

* **Accounts** are the camera's object-store credentials: the user name is its access key, the
  password its secret, looked up through the injected :class:`~globaleye.s3.backend.CredentialLookup`
  (the application layer implements it).  Only a camera's principal logs in (never the platform's,
  whose key may touch every object); there is no anonymous login.  Every password check goes
  through the platform's :class:`~globaleye.guard.keyguard.KeyGuard` under the identity
  ``key:<access key>`` (the same secret signs S3 requests), so FTP cannot be used to guess keys
  faster than any other face; a throttled guess gets the same 530 as a wrong one.
  ``[ftp] firmware_account`` (``user:password``) is a read-only account for the firmware URLs.
* **STOR** only of ``<DevID>_<ChannelNo>_<YYYYMMDDHHMMSS>.jpg`` (or ``.JPG``, §7.5.27) of the logged
  in camera, at the root: no directories, no ``..``, no absolute path other than ``/name``.  The body
  is bounded (``max_picture_size``; one byte more aborts the data connection, 552, nothing kept),
  must be a whole JPEG (SOI at the start, EOI at the end: a transfer cut short is not a picture),
  and is written to a staging file (fsync, in a thread) that
  :meth:`~globaleye.s3.backend.ObjectBackend.put_file` consumes atomically into ``GlobalEyePicture``;
  :meth:`~globaleye.s3.backend.StorageEvents.admit` is asked first (it may refuse: a quota), and
  :meth:`~globaleye.s3.backend.StorageEvents.stored` hears of the stored object.
* **RETR** only of a plain file of ``[ftp] firmware_dir`` (6DH), named at the root.
* **LIST/NLST** show the camera's own pictures (the first 1,000), nothing else; SIZE/MDTM answer
  for them.  MKD, RMD, DELE, RNFR/RNTO: refused.
* **Passive mode only** (PASV/EPSV), on ``passive_ports``, bound to the address the control
  connection came in on; a data connection from another address than the control connection's
  is refused (no port theft).  PORT/EPRT are refused: the server never connects out on a
  client's word (the FTP bounce attack).
* Timeouts: ``login_timeout`` to log in, ``idle_timeout`` between commands, ``transfer_timeout``
  without a byte during an upload.  Every refusal is logged with the peer and the reason, repeated
  ones summarised (:class:`txturn.logsummary.LogSummary`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application import service
from twisted.cred import credentials
from twisted.cred import error as cred_error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, interfaces, protocol
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.protocols import ftp
from twisted.python import filepath
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from globaleye.guard.keyguard import KeyGuard, source_of
from globaleye.media.names import PictureName
from globaleye.s3.backend import (
    PICTURE_BUCKET,
    CredentialLookup,
    NoSuchBucket,
    ObjectBackend,
    ObjectInfo,
    Principal,
    StorageEvents,
)
from txturn.logsummary import LogSummary

#: Longest user name looked at (an access key); longer ones are refused without a lookup.
MAX_USER = 128
#: Pictures a LIST shows at most.
LIST_LIMIT = 1000

Segments = list[str]
Listing = list[Any]


@attrs.frozen
class FtpSettings:
    """The ``[ftp]`` keys (globaleye/platform/config.py)."""

    interface: str = "127.0.0.1"
    port: int = 2121
    #: Passive data ports, first and last (inclusive).
    passive_ports: tuple[int, int] = (50000, 50099)
    max_picture_size: int = 2097152
    #: Directory whose plain files RETR serves (6DH firmware); empty: no downloads.
    firmware_dir: str = ""
    #: ``user:password`` of the read-only firmware account of the [upgrade] ftp:// URLs; empty: none.
    firmware_account: str = ""
    #: Where uploads are staged before the object store takes them; empty: <data_dir>/ftp-staging
    #: (the composition root resolves it).
    staging_dir: str = ""
    login_timeout: float = 30.0
    idle_timeout: float = 120.0
    transfer_timeout: float = 30.0


class _Refused(ftp.FTPCmdError):
    """An FTP refusal with its own reply text."""

    errorCode = ftp.FILENAME_NOT_ALLOWED

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.errorCode = code
        self.text = text

    def response(self) -> str:
        return f"{self.errorCode} {self.text}"


@implementer(credentials.IUsernamePassword)
class PeerCredentials(credentials.UsernamePassword):  # type: ignore[misc]
    """User name and password, and the address they came from (the KeyGuard counts per source)."""

    def __init__(self, username: bytes, password: bytes, peer: str) -> None:
        super().__init__(username, password)
        self.peer = peer


@attrs.frozen
class FirmwareReader:
    """The avatar id of the read-only firmware account."""

    user: str


@implementer(ICredentialsChecker)
class DeviceChecker:
    """Cameras' access keys and secrets through the KeyGuard, and the firmware account."""

    credentialInterfaces = (credentials.IUsernamePassword,)  # noqa: N815 (Twisted's name)

    def __init__(self, role: FtpRole) -> None:
        self.role = role

    def requestAvatarId(self, creds: Any) -> Deferred[Any]:  # noqa: N802 (Twisted's name)
        return Deferred.fromCoroutine(self._check(creds))

    async def _check(self, creds: Any) -> Principal | FirmwareReader:
        role = self.role
        peer = getattr(creds, "peer", "")
        user = creds.username.decode("utf-8", "replace") if isinstance(creds.username, bytes) else creds.username
        password = creds.password if isinstance(creds.password, bytes) else str(creds.password).encode()
        if not user or len(user) > MAX_USER or user.lower() in ("anonymous", "ftp"):
            role.refuse(peer, "login", "anonymous login refused" if user.lower() in ("anonymous", "ftp")
                        else "user name refused", user=user[:MAX_USER])
            raise cred_error.UnauthorizedLogin()
        ticket: Any = None
        if role.guard is not None:
            ticket = await role.guard.attempt(f"key:{user}", peer)
            if ticket.refused:
                role.counters["throttled"] += 1
                role.refuse(peer, "login", "throttled: {why}", user=user, why=ticket.reason)
                raise cred_error.UnauthorizedLogin()
        try:
            firmware = role.firmware_login
            if firmware is not None and secrets.compare_digest(user.encode(), firmware[0].encode()):
                if secrets.compare_digest(password, firmware[1].encode()):
                    if ticket is not None:
                        ticket.succeeded()
                    return FirmwareReader(user)
                principal = None
            else:
                principal = await role.credentials.principal(user)
            if principal is None or principal.is_platform or not principal.secret \
                    or not secrets.compare_digest(password, principal.secret.encode()):
                if ticket is not None:
                    ticket.failed()
                reason = "not a camera's key" if principal is not None and principal.is_platform else \
                    "wrong password or unknown user"
                role.refuse(peer, "login", reason, user=user)
                raise cred_error.UnauthorizedLogin()
            if ticket is not None:
                ticket.succeeded()
            return principal
        finally:
            if ticket is not None:
                ticket.done()  # a no-op after succeeded()/failed(); the store failing counts nothing


@implementer(IRealm)
class PictureRealm:
    def __init__(self, role: FtpRole) -> None:
        self.role = role

    def requestAvatar(self, avatar_id: Any, mind: Any, *wanted: Any) -> tuple[Any, Any, Callable[[], None]]:  # noqa: N802
        if ftp.IFTPShell not in wanted:
            raise NotImplementedError("only IFTPShell")
        principal = avatar_id if isinstance(avatar_id, Principal) else None
        shell = PictureShell(self.role, principal)
        return ftp.IFTPShell, shell, shell.logout


def _permissions(mode: int) -> filepath.Permissions:
    return filepath.Permissions(mode)


@implementer(ftp.IFTPShell)
class PictureShell:
    """One login's view: its own pictures (a camera) or the firmware files (both)."""

    def __init__(self, role: FtpRole, principal: Principal | None) -> None:
        self.role = role
        self.principal = principal
        self.peer = ""
        self.protocol: PictureFTP | None = None
        self.logged_out = False

    def logout(self) -> None:
        self.logged_out = True
        self.protocol = None

    def _refuse(self, command: str, reason: str, path: Any, code: str = ftp.FILENAME_NOT_ALLOWED) -> Deferred[Any]:
        name = "/".join(path) if isinstance(path, list | tuple) else str(path)
        self.role.refuse(self.peer, command, reason, name=name, dev=self.principal.dev_id if self.principal else "")
        return defer.fail(_Refused(code, f"{name}: {reason}"))

    # Writes ------------------------------------------------------------------------------------

    def check_name(self, name: str) -> PictureName:
        """A picture of this camera (§7.5.27's name), or :class:`_Refused` (553), logged."""
        if self.principal is None:
            self._fail("STOR", "this account may not upload", name)
        assert self.principal is not None
        picture = PictureName.parse(name)
        if picture is None:
            self._fail("STOR", "not a picture name DevID_ChannelNo_YYYYMMDDHHMMSS.jpg", name)
        assert picture is not None
        if picture.dev_id != self.principal.dev_id:
            self._fail("STOR", "not this camera's picture", name)
        return picture

    def _fail(self, command: str, reason: str, name: str) -> None:
        self.role.refuse(self.peer, command, reason, name=name[:256],
                         dev=self.principal.dev_id if self.principal else "")
        raise _Refused(ftp.FILENAME_NOT_ALLOWED, f"{name[:256]}: {reason}")

    def openForWriting(self, path: list[str]) -> Deferred[Any]:  # noqa: N802
        if len(path) != 1:
            return self._refuse("STOR", "pictures go to the root, no directories", path)
        try:
            picture = self.check_name(path[0])
        except _Refused as e:
            return defer.fail(e)
        assert self.principal is not None
        return defer.succeed(_PictureWriter(self, self.principal, picture, path[0]))

    def makeDirectory(self, path: list[str]) -> Deferred[Any]:  # noqa: N802
        return self._refuse("MKD", "no directories", path, ftp.PERMISSION_DENIED)

    def removeDirectory(self, path: list[str]) -> Deferred[Any]:  # noqa: N802
        return self._refuse("RMD", "no directories", path, ftp.PERMISSION_DENIED)

    def removeFile(self, path: list[str]) -> Deferred[Any]:  # noqa: N802
        return self._refuse("DELE", "pictures are not deleted over FTP", path, ftp.PERMISSION_DENIED)

    def rename(self, from_path: list[str], to_path: list[str]) -> Deferred[Any]:
        return self._refuse("RNTO", "no renaming", from_path, ftp.PERMISSION_DENIED)

    # Reads -------------------------------------------------------------------------------------

    def access(self, path: list[str]) -> Deferred[Any]:
        if path:
            return self._refuse("CWD", "no directories", path, ftp.FILE_NOT_FOUND)
        return defer.succeed(None)

    def _firmware_path(self, path: list[str]) -> str | None:
        root = self.role.settings.firmware_dir
        if not root or len(path) != 1 or path[0].startswith("."):
            return None
        base = os.path.realpath(root)
        full = os.path.realpath(os.path.join(base, path[0]))
        if os.path.dirname(full) != base or not os.path.isfile(full):
            return None
        return full

    def openForReading(self, path: list[str]) -> Deferred[Any]:  # noqa: N802
        full = self._firmware_path(path)
        if full is None:
            self.role.refuse(self.peer, "RETR", "no such firmware file", name="/".join(path)[:256])
            return defer.fail(ftp.FileNotFoundError("/".join(path)[:256]))
        try:
            f = open(full, "rb")  # noqa: SIM115 (the reader closes it when the transfer ends)
        except OSError as e:
            self.role.refuse(self.peer, "RETR", f"cannot open: {e.strerror}", name=path[0])
            return defer.fail(ftp.FileNotFoundError(path[0]))
        return defer.succeed(ftp._FileReader(f))

    def _entry(self, info: ObjectInfo, keys: tuple[str, ...]) -> tuple[str, list[Any]]:
        values = {"size": info.size, "directory": False, "permissions": _permissions(0o444), "hardlinks": 1,
                  "modified": info.modified, "owner": "camera", "group": "camera"}
        return info.key, [values[k] for k in keys]

    def stat(self, path: list[str], keys: tuple[str, ...] = ()) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._stat(path, keys))

    async def _stat(self, path: list[str], keys: tuple[str, ...]) -> list[Any]:
        if not path:
            values = {"size": 0, "directory": True, "permissions": _permissions(0o755), "hardlinks": 1,
                      "modified": 0.0, "owner": "camera", "group": "camera"}
            return [values[k] for k in keys]
        info = await self._own(path)
        if info is None:
            raise ftp.FileNotFoundError("/".join(path))
        return self._entry(info, keys)[1]

    async def _own(self, path: list[str]) -> ObjectInfo | None:
        if self.principal is None or len(path) != 1 or not self.principal.owns(path[0]):
            return None
        try:
            return await self.role.backend.head(PICTURE_BUCKET, path[0])
        except NoSuchBucket:
            return None

    def list(self, path: list[str], keys: tuple[str, ...] = ()) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._list(path, keys))

    async def _list(self, path: Segments, keys: tuple[str, ...]) -> Listing:
        if path:
            info = await self._own(path)
            if info is None:
                raise ftp.FileNotFoundError("/".join(path))
            return [self._entry(info, keys)]
        if self.principal is None:
            return []
        try:
            infos, _more = await self.role.backend.list(PICTURE_BUCKET, prefix=self.principal.dev_id + "_",
                                                        limit=LIST_LIMIT)
        except NoSuchBucket:
            return []
        return [self._entry(info, keys) for info in infos if self.principal.owns(info.key)]


@implementer(interfaces.IConsumer)
class _PictureSink:
    """The upload's bytes, in memory up to ``max_picture_size`` (a picture is small: bounded memory is
    ``max_picture_size`` per upload, and the connection limits bound the uploads)."""

    def __init__(self, writer: _PictureWriter) -> None:
        self.writer = writer
        self.chunks: list[bytes] = []
        self.size = 0
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None

    def write(self, data: bytes) -> None:
        w = self.writer
        if w.failed:
            return
        w.touch()
        self.size += len(data)
        if self.size > w.role.settings.max_picture_size:
            self.chunks.clear()
            w.fail("552", f"larger than {w.role.settings.max_picture_size} bytes")
            return
        self.chunks.append(data)


@implementer(ftp.IWriteFile)
class _PictureWriter:
    """One STOR: receive into a bounded buffer, then (close) check, stage, store."""

    def __init__(self, shell: PictureShell, principal: Principal, picture: PictureName, name: str) -> None:
        self.shell = shell
        self.role = shell.role
        self.principal = principal
        self.picture = picture
        #: The object's key: the name as the camera sent it (its 36H notice names the same file).
        self.name = name
        self.sink = _PictureSink(self)
        self.failed: tuple[str, str] | None = None
        self._timer: Any = None

    def touch(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.role.settings.transfer_timeout)

    def fail(self, code: str, reason: str) -> None:
        """Stop the upload now: cut the data connection; close() answers *code*."""
        if self.failed is None:
            self.failed = (code, reason)
            protocol_ = self.shell.protocol
            dtp = getattr(protocol_, "dtpInstance", None)
            if dtp is not None and dtp.transport is not None:
                dtp.transport.abortConnection()

    def _stalled(self) -> None:
        self.fail("426", f"no data for {self.role.settings.transfer_timeout:g} seconds")

    def receive(self) -> Deferred[Any]:
        self._timer = self.role.clock.callLater(self.role.settings.transfer_timeout, self._stalled)
        return defer.succeed(self.sink)

    def close(self) -> Deferred[Any]:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        name = self.name
        if self.failed is not None:
            code, reason = self.failed
            raise self._refusal(code, reason)
        data = b"".join(self.sink.chunks)
        self.sink.chunks.clear()
        if not (data.startswith(b"\xff\xd8\xff") and data.rstrip(b"\0").endswith(b"\xff\xd9")):
            raise self._refusal("553", "not a whole JPEG (SOI ... EOI): a cut transfer or not a picture")
        if self.shell.logged_out:
            raise self._refusal("426", "the control connection closed before the upload ended")
        await self.role.store(self.principal, name, data, self.shell.peer)

    def _refusal(self, code: str, reason: str) -> _Refused:
        self.role.refuse(self.shell.peer, "STOR", reason, name=self.name, dev=self.principal.dev_id)
        return _Refused(code, f"{self.name}: {reason}; nothing stored")


class _SamePeerFactory(protocol.Factory):
    """The passive data port accepts the control connection's peer only (no port theft)."""

    noisy = False  # one listening port per transfer: no "starting on" line each time

    def __init__(self, inner: Any, peer: str, role: FtpRole) -> None:
        self.inner = inner
        self.peer = peer
        self.role = role

    def doStart(self) -> None:  # noqa: N802
        self.inner.doStart()

    def doStop(self) -> None:  # noqa: N802
        self.inner.doStop()

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        if getattr(addr, "host", None) != self.peer:
            self.role.refuse(getattr(addr, "host", "?"), "data", "data connection from another address than "
                             "the control connection's ({peer_of_control})", peer_of_control=self.peer)
            return None
        return self.inner.buildProtocol(addr)


class PictureFTP(ftp.FTP):  # type: ignore[misc]
    """Twisted's FTP protocol interpreter with the role's rules: logins carry the peer, passive
    only (bound to the control connection's address), raw paths checked, a login deadline."""

    role: FtpRole
    _login_timer: Any = None
    FEATURES = ["FEAT", "MDTM", "PASV", "EPSV", "SIZE", "TYPE A;I"]

    def callLater(self, period: float, func: Callable[[], Any]) -> Any:  # noqa: N802 (TimeoutMixin)
        return self.role.clock.callLater(period, func)

    @property
    def peer(self) -> str:
        transport = self.transport
        return str(getattr(transport.getPeer(), "host", "")) if transport is not None else ""

    def connectionMade(self) -> None:  # noqa: N802
        self.listenFactory = self.role.clock.listenTCP  # type: ignore[method-assign]
        super().connectionMade()
        self._login_timer = self.role.clock.callLater(self.role.settings.login_timeout, self._login_expired)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        if self._login_timer is not None and self._login_timer.active():
            self._login_timer.cancel()
        super().connectionLost(reason)

    def _login_expired(self) -> None:
        if self.state != self.AUTHED and self.transport is not None:
            self.role.refuse(self.peer, "login", f"not logged in within {self.role.settings.login_timeout:g} s")
            self.sendLine("421 Login timeout, closing control connection.")
            self.transport.loseConnection()

    def ftp_PASS(self, password: str) -> Deferred[Any]:  # noqa: N802
        """:meth:`ftp.FTP.ftp_PASS` with the peer in the credentials and never an anonymous login."""
        user = self._user
        del self._user
        peer = self.peer
        creds = PeerCredentials(user.encode("utf-8", "replace"), password.encode("utf-8", "replace"), peer)

        def logged_in(result: tuple[Any, Any, Any]) -> str:
            _iface, shell, logout = result
            self.shell = shell
            shell.peer = peer
            shell.protocol = self
            self.logout = logout
            self.workingDirectory: list[str] = []
            self.state = self.AUTHED
            self.role.counters["logins"] += 1
            if self._login_timer is not None and self._login_timer.active():
                self._login_timer.cancel()
            return ftp.USR_LOGGED_IN_PROCEED

        def refused(failure: Any) -> None:
            failure.trap(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials)
            self.state = self.UNAUTH
            raise ftp.AuthorizationError

        portal: Any = self.portal
        d = portal.login(creds, None, ftp.IFTPShell)
        d.addCallbacks(logged_in, refused)
        return d

    def getDTPPort(self, factory: Any, interface: str = "") -> Any:  # noqa: N802
        """Passive ports of ``passive_ports`` on the control connection's own address, for its peer."""
        transport: Any = self.transport
        host = transport.getHost().host
        guarded: Any = _SamePeerFactory(factory, self.peer, self.role)
        last: Exception | None = None
        for number in self.passivePortRange:
            try:
                return self.listenFactory(number, guarded, interface=host)
            except CannotListenError as e:
                last = e
        self.role.refuse(self.peer, "PASV", "no passive port free in {ports}",
                         ports=f"{self.passivePortRange.start}-{self.passivePortRange.stop - 1}")
        raise CannotListenError(host, 0, f"no passive port free ({last})")

    def ftp_PASV(self) -> Any:  # noqa: N802
        try:
            return super().ftp_PASV()
        except CannotListenError:
            return defer.fail(_Refused(ftp.CANT_OPEN_DATA_CNX, "no passive port free, try later"))

    def ftp_EPSV(self, protocol_: str = "") -> Any:  # noqa: N802
        try:
            return super().ftp_EPSV(protocol_)
        except CannotListenError:
            return defer.fail(_Refused(ftp.CANT_OPEN_DATA_CNX, "no passive port free, try later"))

    def ftp_NLST(self, path: str = "") -> Any:  # noqa: N802 (a bare NLST is the root, as ftplib sends it)
        return super().ftp_NLST(path)

    def ftp_RNFR(self, from_name: str) -> Any:  # noqa: N802
        self.role.refuse(self.peer, "RNFR", "no renaming", name=from_name[:256])
        return defer.fail(_Refused(ftp.PERMISSION_DENIED, f"{from_name[:256]}: no renaming"))

    def ftp_PORT(self, address: str) -> Any:  # noqa: N802
        self.role.refuse(self.peer, "PORT", "active mode refused (passive only)")
        return defer.fail(_Refused("502", "active mode is not served: use PASV or EPSV"))

    def ftp_EPRT(self, address: str) -> Any:  # noqa: N802
        self.role.refuse(self.peer, "EPRT", "active mode refused (passive only)")
        return defer.fail(_Refused("502", "active mode is not served: use PASV or EPSV"))

    def ftp_STOR(self, path: str) -> Any:  # noqa: N802
        """Twisted's STOR with the role's checks first and its own replies.

        The raw path first: a bare name or ``/name``; ``..``, directories and other absolute paths are
        refused here, before Twisted's normalisation could turn ``a/../x.jpg`` into ``x.jpg``.  Then the
        name (:meth:`PictureShell.check_name`).  A refusal at the end of the transfer (too large, not a
        JPEG, the store refused) is an answer, not an error: it is logged once, as a refusal."""
        if self.dtpInstance is None:
            raise ftp.BadCmdSequenceError("PASV or EPSV required before STOR")
        name = path[1:] if path.startswith("/") else path
        if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
            self.role.refuse(self.peer, "STOR", "path refused: pictures go to the root by name", name=path[:256])
            return defer.fail(_Refused(ftp.FILENAME_NOT_ALLOWED, f"{path[:256]}: pictures go to the root by name"))
        if self.workingDirectory:
            return defer.fail(_Refused(ftp.FILENAME_NOT_ALLOWED, "pictures go to the root"))
        shell: PictureShell = self.shell
        try:
            shell.check_name(name)
        except _Refused as e:
            return defer.fail(e)
        self.setTimeout(None)  # the upload has its own transfer_timeout

        async def transfer() -> Any:
            try:
                writer = await shell.openForWriting([name])
                # Stored as sent, also after TYPE A: a picture is binary, and rewriting its line ends
                # would only break it (the JPEG check would not always see it).
                consumer = await writer.receive()
                received = self.dtpInstance.registerConsumer(consumer)
                if self.dtpInstance.isConnected:
                    self.reply(ftp.DATA_CNX_ALREADY_OPEN_START_XFR)
                else:
                    self.reply(ftp.FILE_STATUS_OK_OPEN_DATA_CNX)
                await received
                await writer.close()
                return (ftp.TXFR_COMPLETE_OK,) if self.transport is not None else None
            except ftp.FTPCmdError:
                if self.transport is None:
                    return None  # the control connection is gone: nobody to answer (refusal logged)
                raise
            except Exception:
                self.role.log.failure("FTP upload of {name} from {peer} failed", name=name, peer=self.peer)
                return (ftp.CNX_CLOSED_TXFR_ABORTED,) if self.transport is not None else None
            finally:
                if self.transport is not None:
                    self.setTimeout(self.factory.timeOut)

        return Deferred.fromCoroutine(transfer())


class PictureFTPFactory(ftp.FTPFactory):  # type: ignore[misc]
    protocol = PictureFTP
    allowAnonymous = False
    welcomeMessage = "GlobalEye FTP"

    def __init__(self, role: FtpRole, portal: Portal) -> None:
        super().__init__(portal)
        self.role = role
        self.timeOut = max(1, round(role.settings.idle_timeout))
        first, last = role.settings.passive_ports
        self.passivePortRange = range(first, last + 1)

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        p = super().buildProtocol(addr)
        if p is not None:
            p.wrappedProtocol.role = self.role
        return p


class FtpRole(service.Service):
    """The ``ftp`` role: the factory to listen with (:attr:`factory`) and the thread pool that stages
    uploads (started and stopped with this service).

    The composition root builds it with the store's credentials, backend and events and the shared
    KeyGuard, adds it to its service tree, and listens on ``[ftp] interface``/``port`` with
    :attr:`factory` (through its connection limits).  :meth:`listen` does that alone (tests)."""

    log = Logger()

    def __init__(self, settings: FtpSettings, credentials: CredentialLookup, backend: ObjectBackend,
                 events: StorageEvents, clock: Any, guard: KeyGuard | None = None,
                 pool: ThreadPool | None = None) -> None:
        self.settings = settings
        self.credentials = credentials
        self.backend = backend
        self.events = events
        self.clock = clock
        self.guard = guard
        self.firmware_login: tuple[str, str] | None = None
        if settings.firmware_account:
            user, _, password = settings.firmware_account.partition(":")
            if not user.strip() or not password:
                # Never an account with an empty password (it would open the firmware to anyone).
                raise ValueError("[ftp] firmware_account: not user:password with a password")
            self.firmware_login = (user.strip(), password)
        self.staging_dir = settings.staging_dir or "ftp-staging"
        self._own_pool = pool is None
        self.pool = pool if pool is not None else ThreadPool(minthreads=0, maxthreads=4, name="globaleye-ftp")
        self.portal = Portal(PictureRealm(self), [DeviceChecker(self)])
        self.factory = PictureFTPFactory(self, self.portal)
        self.refusals = LogSummary(self.log, clock, interval=60.0, max_keys=1000, level=LogLevel.warn,
                                   name="FTP refusals")
        self.counters = {"stored": 0, "refused": 0, "throttled": 0, "logins": 0}
        self._bucket_ready = False

    def startService(self) -> None:  # noqa: N802
        super().startService()
        os.makedirs(self.staging_dir, exist_ok=True)
        if self._own_pool:
            self.pool.start()
        #: Staging files left by a crash between staging and the store (nothing refers to them).
        self.swept: Deferred[Any] = deferToThreadPool(self.clock, self.pool, _sweep, self.staging_dir)
        self.swept.addErrback(self._sweep_failed)

    def _sweep_failed(self, failure: Any) -> int:
        self.log.failure("cannot sweep the FTP staging directory {dir}", failure, dir=self.staging_dir)
        return 0

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        if self._own_pool:
            self.pool.stop()

    def listen(self, port: int | None = None, interface: str | None = None) -> Any:
        """Listen with :attr:`factory` alone (tests and single-role tools; the platform uses its limits)."""
        s = self.settings
        return self.clock.listenTCP(s.port if port is None else port, self.factory,
                                    interface=s.interface if interface is None else interface)

    def refuse(self, peer: str, command: str, reason: str, **fields: Any) -> None:
        """Log a refusal with the peer and the reason; repeats per source and command summarised."""
        self.counters["refused"] += 1
        detail = reason.format(**fields) if "{" in reason else reason
        extra = " ".join(f"{k}={v!r}" for k, v in fields.items() if f"{{{k}}}" not in reason and v)
        self.refusals.event((source_of(peer) if peer else "?", command),
                            f"FTP {command} refusals from {peer}",
                            "FTP {command} from {peer} refused: {reason} {extra}",
                            command=command, peer=peer, reason=detail, extra=extra)

    async def store(self, principal: Principal, key: str, data: bytes, peer: str) -> ObjectInfo:
        """Admit, stage (fsync, in the pool), hand to the backend, tell the events."""
        refusal = await self.events.admit(principal, PICTURE_BUCKET, key, len(data))
        if refusal is not None:
            self.refuse(peer, "STOR", "refused by the store: {why}", name=key, why=refusal)
            raise _Refused(ftp.EXCEEDED_STORAGE_ALLOC, f"{key}: {refusal}; nothing stored")
        path, etag = await deferToThreadPool(self.clock, self.pool, _stage, self.staging_dir, data)
        try:
            info = await self._put(key, path, etag)
        except Exception:
            await deferToThreadPool(self.clock, self.pool, _discard, path)
            self.log.failure("FTP upload of {key} from {peer} not stored", key=key, peer=peer)
            raise _Refused(ftp.REQ_ACTN_ABRTD_LOCAL_ERR, f"{key}: the store failed; nothing stored") from None
        self.counters["stored"] += 1
        self.log.info("FTP picture {key} ({size} bytes) stored from {peer}", key=key, size=info.size, peer=peer)
        try:
            await self.events.stored(principal, info)
        except Exception:
            self.log.failure("storage event for {key} failed", key=key)
        return info

    async def _put(self, key: str, path: str, etag: str) -> ObjectInfo:
        if not self._bucket_ready:
            if not await self.backend.bucket_exists(PICTURE_BUCKET):
                await self.backend.create_bucket(PICTURE_BUCKET)
            self._bucket_ready = True
        try:
            return await self.backend.put_file(PICTURE_BUCKET, key, path, etag=etag, content_type="image/jpeg")
        except NoSuchBucket:  # removed behind our back: once more
            self._bucket_ready = False
            await self.backend.create_bucket(PICTURE_BUCKET)
            self._bucket_ready = True
            return await self.backend.put_file(PICTURE_BUCKET, key, path, etag=etag, content_type="image/jpeg")


def logged_in(connection: Any) -> bool:
    """The ``established`` test of the platform's connection limits (globaleye.guard.netlimits): a
    connection of this role has got past its pre-login deadline once it logged in.  *connection* is
    what :attr:`FtpRole.factory` built (Twisted's FTPFactory wraps each protocol)."""
    inner = getattr(connection, "wrappedProtocol", connection)
    return bool(getattr(inner, "state", None) == ftp.FTP.AUTHED)


def _stage(directory: str, data: bytes) -> tuple[str, str]:
    """Write *data* to a new staging file, durably (in a pool thread); its path and MD5."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f".ftp-{secrets.token_hex(12)}.part")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _discard(path)
        raise
    os.close(fd)
    return path, hashlib.md5(data).hexdigest()


def _sweep(directory: str) -> int:
    """Remove the staging files (``.ftp-*.part``) a previous run left; how many."""
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".ftp-") and entry.name.endswith(".part") and entry.is_file(follow_symlinks=False):
                _discard(entry.path)
                removed += 1
    return removed


def _discard(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["DeviceChecker", "FtpRole", "logged_in", "FtpSettings", "PictureFTP", "PictureFTPFactory", "PictureName",
           "PictureRealm", "PictureShell"]
