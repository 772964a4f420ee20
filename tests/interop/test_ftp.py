"""The ``ftp`` role (globaleye.ftp) with real FTP clients on loopback: Python's ftplib and curl.

Uploads land in the object store (an in-memory backend here) and ``stored`` hears of them with
the camera's principal; what a stranger or a camera may not do is refused and leaves nothing:
anonymous, a wrong password, paths out of the root, another camera's name, a name that is no
picture, an oversized or cut upload, active mode; a flood of guesses is throttled by the KeyGuard.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import random
import shutil
import socket
import struct
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.ftp import FtpRole, FtpSettings, PictureName
from globaleye.guard.keyguard import KeyGuard, KeyGuardSettings
from globaleye.s3.backend import PICTURE_BUCKET, Principal
from globaleye.s3.memory import MemoryBackend
from tests.ftputil import DictCredentials, Events, free_range
from tests.util import run, until

DEV = "81100000001"
OTHER = "81100000002"
KEY, SECRET = f"{DEV}_ftp", "s3cret-of-the-first-camera"
OTHER_KEY, OTHER_SECRET = f"{OTHER}_ftp", "s3cret-of-the-second-camera"
NAME = f"{DEV}_1_20261202031500.jpg"


def jpeg(size: int = 2000) -> bytes:
    """Bytes shaped like a JPEG (SOI, APP0 marker, filler, EOI): what the role checks."""
    body = bytes(random.getrandbits(8) for _ in range(max(0, size - 6)))
    return b"\xff\xd8\xff\xe0" + body + b"\xff\xd9"


class FtpHarness:
    def __init__(self, test: TestCase, guard: KeyGuard | None = None, **settings: Any) -> None:
        self.staging = tempfile.mkdtemp(prefix="ge-ftp-")
        test.addCleanup(shutil.rmtree, self.staging, True)
        self.backend = MemoryBackend(reactor.seconds)
        self.events = Events()
        self.credentials = DictCredentials(Principal(KEY, SECRET, DEV), Principal(OTHER_KEY, OTHER_SECRET, OTHER),
                                           Principal("platform-key", "platform-secret", ""))
        self.settings = FtpSettings(interface="127.0.0.1", port=0, passive_ports=free_range(),
                                    staging_dir=self.staging, **settings)
        self.guard = guard if guard is not None else KeyGuard(reactor)
        self.role = FtpRole(self.settings, self.credentials, self.backend, self.events, reactor, guard=self.guard)
        self.role.startService()
        test.addCleanup(self.role.stopService)
        self.port = self.role.listen()
        test.addCleanup(self.port.stopListening)
        # Last in, first out: the clients' connections are gone before the port stops.
        test.addCleanup(lambda: Deferred.fromCoroutine(until(lambda: self.role.factory.connectionCount == 0)))
        self.number = self.port.getHost().port

    def client(self, user: str = KEY, password: str = SECRET) -> ftplib.FTP:
        """Blocking: call from a thread."""
        ftp = ftplib.FTP(timeout=10)
        ftp.connect("127.0.0.1", self.number)
        ftp.login(user, password)
        return ftp

    async def call(self, fn: Any, *args: Any) -> Any:
        return await deferToThread(fn, *args)

    async def stor(self, name: str, data: bytes, user: str = KEY, password: str = SECRET) -> str:
        """Upload with ftplib; the final reply, or the error's text."""

        def go() -> str:
            ftp = self.client(user, password)
            try:
                return str(ftp.storbinary(f"STOR {name}", io.BytesIO(data)))
            except (ftplib.Error, OSError) as e:
                return str(e)
            finally:
                try:
                    ftp.quit()
                except (ftplib.Error, OSError):
                    ftp.close()

        return str(await self.call(go))

    async def objects(self) -> list[str]:
        if not await self.backend.bucket_exists(PICTURE_BUCKET):
            return []
        infos, _ = await self.backend.list(PICTURE_BUCKET)
        return [i.key for i in infos]

    def staged(self) -> list[str]:
        return os.listdir(self.staging)


class PictureNameTests(TestCase):
    def test_names(self) -> None:
        p = PictureName.parse(NAME)
        assert p is not None and p.dev_id == DEV and p.channel_no == 1 and p.start.hour == 3
        self.assertIsNotNone(PictureName.parse(NAME.replace(".jpg", ".JPG")))
        for bad in (f"{DEV}_1_20261302031500.jpg", f"{DEV}_1_2026120203150.jpg", f"{DEV}_1_20261202031500.png",
                    f"{DEV}_1_20261202031500.jpg.exe", f"../{NAME}", "", f"{DEV}_x_20261202031500.jpg"):
            self.assertIsNone(PictureName.parse(bad), bad)


class UploadTests(TestCase):
    timeout = 60

    async def test_ftplib_upload_lands_in_store(self) -> None:
        h = FtpHarness(self)
        await h.backend.create_bucket(PICTURE_BUCKET)
        await h.backend.put_bytes(PICTURE_BUCKET, f"{OTHER}_1_20261202000000.jpg", jpeg(100))
        data = jpeg(50_000)
        reply = await h.stor(NAME, data)
        self.assertTrue(reply.startswith("226"), reply)
        self.assertEqual(await h.backend.read(PICTURE_BUCKET, NAME), data)
        [(principal, info)] = h.events.stored_objects
        self.assertEqual((principal.dev_id, info.key, info.size), (DEV, NAME, len(data)))
        self.assertEqual(info.etag, hashlib.md5(data).hexdigest())
        self.assertEqual(h.events.admitted, [(DEV, NAME, len(data))])
        self.assertEqual(h.staged(), [])  # the staging file was consumed

        def listing() -> tuple[list[str], list[str], int | None]:
            ftp = h.client()
            try:
                names = ftp.nlst()
                lines: list[str] = []
                ftp.retrlines("LIST", lines.append)
                try:
                    ftp.size(f"{OTHER}_1_20261202000000.jpg")
                    raise AssertionError("another camera's picture was seen")
                except ftplib.error_perm:
                    pass
                try:
                    ftp.retrlines(f"LIST {OTHER}_1_20261202000000.jpg", lines.append)
                    raise AssertionError("another camera's picture was listed")
                except ftplib.error_perm:
                    pass
                return names, lines, ftp.size(NAME)
            finally:
                ftp.quit()

        names, lines, size = await h.call(listing)
        self.assertEqual(names, [NAME])  # not the other camera's picture
        self.assertEqual(len(lines), 1)
        self.assertIn(NAME, lines[0])
        self.assertEqual(size, len(data))

    async def test_stale_staging_files_swept(self) -> None:
        """A crash between staging and the store leaves a staging file: the next start removes it
        (and nothing else of the directory)."""
        staging = tempfile.mkdtemp(prefix="ge-ftp-")
        self.addCleanup(shutil.rmtree, staging, True)
        for name in (".ftp-0123456789abcdef01234567.part", "keep.txt"):
            with open(os.path.join(staging, name), "wb") as out:
                out.write(b"x")
        role = FtpRole(FtpSettings(staging_dir=staging), DictCredentials(), MemoryBackend(reactor.seconds), Events(),
                       reactor)
        role.startService()
        self.addCleanup(role.stopService)
        self.assertEqual(await role.swept, 1)
        self.assertEqual(os.listdir(staging), ["keep.txt"])

    async def test_upper_case_extension_and_absolute_root(self) -> None:
        h = FtpHarness(self)
        upper = NAME.replace(".jpg", ".JPG")
        reply = await h.stor("/" + upper, jpeg())
        self.assertTrue(reply.startswith("226"), reply)
        self.assertEqual(await h.objects(), [upper])

    async def test_curl_upload_passive(self) -> None:
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl not installed")
        h = FtpHarness(self)
        path = os.path.join(h.staging, "..", os.path.basename(h.staging) + "-upload.jpg")
        data = jpeg(300_000)
        with open(path, "wb") as f:
            f.write(data)
        self.addCleanup(os.unlink, path)
        for flag, name in (("--ftp-pasv", NAME), ("--disable-epsv", NAME.replace("0315", "0316"))):
            result = await run(curl, ["-sS", "--max-time", "15", flag, "-T", path,
                                      f"ftp://{KEY}:{SECRET}@127.0.0.1:{h.number}/{name}"])
            self.assertEqual(result.code, 0, result.err)
            self.assertEqual(await h.backend.read(PICTURE_BUCKET, name), data)
        self.assertEqual([p.dev_id for p, _ in h.events.stored_objects], [DEV, DEV])
        # curl's refusals: a wrong password (exit 67: login denied), another camera's name (25: upload failed).
        bad = await run(curl, ["-sS", "--max-time", "15", "-T", path, f"ftp://{KEY}:nope@127.0.0.1:{h.number}/{NAME}"])
        self.assertEqual(bad.code, 67, bad.err)
        other = await run(curl, ["-sS", "--max-time", "15", "-T", path,
                                 f"ftp://{KEY}:{SECRET}@127.0.0.1:{h.number}/{OTHER}_1_20261202031500.jpg"])
        self.assertEqual(other.code, 25, other.err)
        self.assertEqual(len(await h.objects()), 2)


class RefusalTests(TestCase):
    timeout = 60

    async def login_error(self, h: FtpHarness, user: str, password: str) -> str:
        def go() -> str:
            try:
                h.client(user, password).quit()
            except ftplib.error_perm as e:
                return str(e)
            return "logged in"

        return str(await h.call(go))

    async def test_logins_refused(self) -> None:
        h = FtpHarness(self)
        self.assertTrue((await self.login_error(h, "anonymous", "guest@")).startswith("530"))
        self.assertTrue((await self.login_error(h, "ftp", "")).startswith("530"))
        self.assertTrue((await self.login_error(h, KEY, "wrong")).startswith("530"))
        self.assertTrue((await self.login_error(h, "nobody", SECRET)).startswith("530"))
        # The platform's own key may touch every object: never an FTP login.
        self.assertTrue((await self.login_error(h, "platform-key", "platform-secret")).startswith("530"))
        self.assertEqual(await self.login_error(h, KEY, SECRET), "logged in")
        self.assertGreaterEqual(h.role.counters["refused"], 5)

    async def test_paths_names_refused(self) -> None:
        h = FtpHarness(self)
        for name in (f"../{NAME}", f"/etc/{NAME}", f"sub/{NAME}", f"sub/../{NAME}", f"{OTHER}_1_20261202031500.jpg",
                     f"{DEV}_1_20261202031500.txt", "notes.jpg", f"{DEV}_1_20261202031500.jpg.php", "..", "/"):
            reply = await h.stor(name, jpeg())
            self.assertTrue(reply.startswith("55"), f"{name}: {reply}")
        self.assertEqual(await h.objects(), [])
        self.assertEqual(h.events.admitted, [])

        def others() -> list[str]:
            ftp = h.client()
            replies = []
            try:
                for command in ("MKD x", "DELE " + NAME, "RNFR " + NAME, "CWD /etc", "PORT 127,0,0,1,4,1",
                                "EPRT |1|127.0.0.1|1025|"):
                    try:
                        replies.append(ftp.sendcmd(command))
                    except ftplib.Error as e:
                        replies.append(str(e))
                return replies
            finally:
                ftp.quit()

        for reply in await h.call(others):
            self.assertTrue(reply[:1] == "5", reply)

    async def test_not_a_jpeg_refused(self) -> None:
        h = FtpHarness(self)
        reply = await h.stor(NAME, b"#!/bin/sh\necho not a picture\n")
        self.assertTrue(reply.startswith("553"), reply)
        self.assertEqual(await h.objects(), [])

    async def test_oversize_cut(self) -> None:
        h = FtpHarness(self, max_picture_size=100_000)
        reply = await h.stor(NAME, jpeg(2_000_000))
        self.assertTrue(reply.startswith("552") or "reset" in reply.lower() or "broken" in reply.lower(), reply)
        self.assertEqual(await h.objects(), [])
        self.assertEqual(h.events.admitted, [])
        self.assertEqual(h.staged(), [])
        # Exactly the limit is fine.
        reply = await h.stor(NAME, jpeg(100_000))
        self.assertTrue(reply.startswith("226"), reply)

    async def test_oversize_answer(self) -> None:
        """The control connection says why (552) after the data connection is cut."""
        h = FtpHarness(self, max_picture_size=50_000)

        def go() -> str:
            ftp = h.client()
            try:
                ftp.voidcmd("TYPE I")
                conn = ftp.transfercmd(f"STOR {NAME}")
                try:
                    for _ in range(100):
                        conn.sendall(b"\xff" * 10_000)
                except OSError:
                    pass
                conn.close()
                try:
                    return str(ftp.voidresp())
                except ftplib.Error as e:
                    return str(e)
            finally:
                ftp.close()

        reply = await h.call(go)
        self.assertTrue(reply.startswith("552"), reply)
        self.assertIn("larger than 50000 bytes", reply)
        self.assertEqual(await h.objects(), [])

    async def test_timeouts(self) -> None:
        """Not logged in within login_timeout, idle past idle_timeout, an upload stalled past
        transfer_timeout: each connection is closed, nothing stored."""
        h = FtpHarness(self, login_timeout=0.5, idle_timeout=1.0, transfer_timeout=0.5)

        def go() -> list[str]:
            seen = []
            ftp = ftplib.FTP(timeout=10)
            ftp.connect("127.0.0.1", h.number)  # reads the 220
            try:
                seen.append(ftp.getline())  # 421 login timeout, then EOF
                try:
                    seen.append(ftp.getline())
                except EOFError:
                    seen.append("EOF")
            finally:
                ftp.close()
            ftp = h.client()
            try:
                seen.append(ftp.getline())  # idle: closed without a word
            except EOFError:  # not a socket timeout (10 s): the server closed it
                seen.append("EOF")
            finally:
                ftp.close()
            ftp = h.client()
            try:
                ftp.voidcmd("TYPE I")
                conn = ftp.transfercmd(f"STOR {NAME}")
                conn.sendall(jpeg(1000)[:500])  # and then nothing
                try:
                    seen.append(str(ftp.voidresp()))
                except ftplib.Error as e:
                    seen.append(str(e))
                conn.close()
            finally:
                ftp.close()
            return seen

        seen = await h.call(go)
        self.assertTrue(seen[0].startswith("421"), seen)
        self.assertEqual(seen[1], "EOF")
        self.assertTrue(seen[2].startswith("EOF"), seen)
        self.assertTrue(seen[3].startswith("426") and "no data" in seen[3], seen)
        self.assertEqual(await h.objects(), [])

    async def test_data_connection_from_another_address(self) -> None:
        """A passive port answers only the control connection's peer: a connection from 127.0.0.2
        (another loopback address) is dropped, the camera's own then goes through."""
        h = FtpHarness(self)

        def go() -> tuple[bytes, str]:
            ftp = h.client()
            try:
                ftp.voidcmd("TYPE I")
                host, port = ftp.makepasv()
                thief = socket.create_connection((host, port), timeout=5, source_address=("127.0.0.2", 0))
                thief.settimeout(5)
                try:
                    stolen = thief.recv(10)
                except OSError:
                    stolen = b""
                thief.close()
                conn = socket.create_connection((host, port), timeout=5)
                ftp.sendcmd(f"STOR {NAME}")
                conn.sendall(jpeg(5000))
                conn.close()
                return stolen, str(ftp.voidresp())
            finally:
                ftp.close()

        stolen, reply = await h.call(go)
        self.assertEqual(stolen, b"")
        self.assertTrue(reply.startswith("226"), reply)
        self.assertEqual(await h.objects(), [NAME])
        self.assertGreaterEqual(h.role.counters["refused"], 1)

    async def test_cut_transfer_leaves_nothing(self) -> None:
        """The data connection closed half way (a camera losing power mid-upload): nothing stored."""
        h = FtpHarness(self)
        data = jpeg(200_000)

        def go() -> str:
            ftp = h.client()
            try:
                ftp.voidcmd("TYPE I")
                conn = ftp.transfercmd(f"STOR {NAME}")
                conn.sendall(data[:100_000])
                conn.close()
                try:
                    return str(ftp.voidresp())
                except ftplib.Error as e:
                    return str(e)
            finally:
                ftp.close()

        reply = await h.call(go)
        self.assertTrue(reply.startswith("553"), reply)
        self.assertEqual(await h.objects(), [])

    async def test_camera_gone_mid_upload_leaves_nothing(self) -> None:
        """The camera loses power mid-upload: its control connection closes and its data connection
        is reset half way.  Nothing is kept, and the server lets go of both connections."""
        h = FtpHarness(self)
        data = jpeg(200_000)

        def go() -> None:
            ftp = h.client()
            ftp.voidcmd("TYPE I")
            conn = ftp.transfercmd(f"STOR {NAME}")
            conn.sendall(data[:100_000])
            ftp.sock.close()
            ftp.file.close()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            conn.close()

        await h.call(go)
        await until(lambda: h.role.factory.connectionCount == 0)
        self.assertEqual(await h.objects(), [])
        self.assertEqual(h.events.admitted, [])
        self.assertEqual(h.staged(), [])

    async def test_ascii_mode_stored_as_sent(self) -> None:
        h = FtpHarness(self)
        data = jpeg(20_000)
        data = data[:-2] + b"\r\n\r\n\xff\xd9"  # line ends that TYPE A would rewrite

        def go() -> str:
            ftp = h.client()
            try:
                ftp.voidcmd("TYPE A")
                conn = ftp.transfercmd(f"STOR {NAME}")
                conn.sendall(data)
                conn.close()
                return str(ftp.voidresp())
            finally:
                ftp.quit()

        reply = await h.call(go)
        self.assertTrue(reply.startswith("226"), reply)
        self.assertEqual(await h.backend.read(PICTURE_BUCKET, NAME), data)

    async def test_quota_refusal(self) -> None:
        h = FtpHarness(self)
        h.events.refuse = "the camera's quota is full"
        reply = await h.stor(NAME, jpeg())
        self.assertTrue(reply.startswith("552"), reply)
        self.assertEqual(await h.objects(), [])
        self.assertEqual(h.staged(), [])

    async def test_guess_flood_throttled(self) -> None:
        """Wrong passwords from one address: the KeyGuard backs off, and then even the right password
        is refused from that address (the same 530: a guesser learns nothing)."""
        guard = KeyGuard(reactor, KeyGuardSettings(pair_free=3, base=60.0))
        h = FtpHarness(self, guard=guard)

        def flood() -> list[str]:
            ftp = ftplib.FTP(timeout=10)
            ftp.connect("127.0.0.1", h.number)
            replies = []
            try:
                for i in range(8):
                    try:
                        replies.append(ftp.login(KEY, f"guess-{i}"))
                    except ftplib.error_perm as e:
                        replies.append(str(e))
                try:
                    replies.append(ftp.login(KEY, SECRET))
                except ftplib.error_perm as e:
                    replies.append(str(e))
            finally:
                ftp.close()
            return replies

        replies = await h.call(flood)
        self.assertTrue(all(r.startswith("530") for r in replies), replies)
        self.assertGreaterEqual(h.role.counters["throttled"], 5)
        self.assertEqual(guard.failures("p", f"key:{KEY}", "127.0.0.1"), 3)  # only admitted checks counted
        # The secret was never compared for the throttled ones: the lookups stopped at the backoff.
        self.assertEqual(h.credentials.lookups, 3)


class FirmwareTests(TestCase):
    timeout = 60

    def test_firmware_account_needs_a_password(self) -> None:
        for bad in ("upg", "upg:", ":secret"):
            with self.assertRaises(ValueError):
                FtpRole(FtpSettings(firmware_account=bad), DictCredentials(), MemoryBackend(reactor.seconds),
                        Events(), reactor)

    async def test_firmware_account_reads_only(self) -> None:
        firmware = tempfile.mkdtemp(prefix="ge-fw-")
        self.addCleanup(shutil.rmtree, firmware, True)
        blob = os.urandom(300_000)
        with open(os.path.join(firmware, "V1.1.0.bin"), "wb") as f:
            f.write(blob)
        with open(os.path.join(os.path.dirname(firmware), os.path.basename(firmware) + "-secret"), "wb") as out:
            out.write(b"outside")
        self.addCleanup(os.unlink, os.path.join(os.path.dirname(firmware), os.path.basename(firmware) + "-secret"))
        h = FtpHarness(self, firmware_dir=firmware, firmware_account="upg:fw-secret")

        def go() -> tuple[bytes, list[str]]:
            ftp = h.client("upg", "fw-secret")
            got = io.BytesIO()
            errors = []
            try:
                ftp.retrbinary("RETR V1.1.0.bin", got.write)
                for command in (f"RETR ../{os.path.basename(firmware)}-secret", "RETR /etc/passwd", "RETR nope.bin"):
                    try:
                        ftp.retrbinary(command, got.write)
                        errors.append("served")
                    except ftplib.Error as e:
                        errors.append(str(e))
                try:
                    ftp.storbinary(f"STOR {NAME}", io.BytesIO(jpeg()))
                    errors.append("stored")
                except ftplib.Error as e:
                    errors.append(str(e))
                return got.getvalue(), errors
            finally:
                ftp.quit()

        got, errors = await h.call(go)
        self.assertEqual(got, blob)
        self.assertTrue(all(e.startswith("55") for e in errors), errors)
        self.assertEqual(await h.objects(), [])
