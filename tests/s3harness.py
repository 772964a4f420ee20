"""moto's S3 server on loopback, with signature checks on, for tests and bench/s3_ingest.py.

moto (https://docs.getmoto.org, "IAM-like Access Control") checks signatures and IAM policies only
after its first ``INITIAL_NO_AUTH_ACTION_COUNT`` actions; the default is never.  The harness starts
``python -m moto.server -H 127.0.0.1 -p 0`` (the port the kernel picks, read from the server's log),
sets that count to 3 through ``POST /moto-api/reset-auth`` and spends exactly those 3 actions:
CreateUser, PutUserPolicy (``s3:*``), CreateAccessKey.  From then on every request must be signed
with that user's key: :attr:`MotoServer.good` signs, :attr:`MotoServer.bad_secret` (the same access
key, another secret) and :attr:`MotoServer.unknown_key` must be refused (SignatureDoesNotMatch,
InvalidAccessKeyId).

moto 5.2 computes the signature of a request whose key has non-ASCII characters from the decoded
path and refuses it (SignatureDoesNotMatch) although boto3 signed it right; ``MotoServer(auth=False)``
is the same server without the checks, for tests of such keys.

Blocking (subprocess, urllib, boto3): call :meth:`MotoServer.start` or :func:`shared_server` outside
the reactor thread (``deferToThread``, a plain script).  Nothing here imports Twisted.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

REGION = "us-east-1"

_RUNNING = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")

#: The policy of the harness's user: everything on S3, nothing else.
_POLICY = {"Version": "2012-10-17",
           "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


class Keys(NamedTuple):
    access_key: str
    secret_key: str


class MotoUnavailable(Exception):
    """moto's server is not installed or did not start."""


class MotoServer:
    """One ``moto.server`` process; :attr:`url` once :meth:`start` returned."""

    def __init__(self, start_timeout: float = 30.0, auth: bool = True) -> None:
        self.start_timeout = start_timeout
        self.auth = auth
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self.good = Keys("", "")
        self.bad_secret = Keys("", "")
        self.unknown_key = Keys("AKIAUNKNOWNUNKNOWN00", "x" * 40)
        self._log_dir = tempfile.TemporaryDirectory(prefix="moto-")
        self.log_path = Path(self._log_dir.name) / "moto.log"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def start(self) -> MotoServer:
        try:
            import moto.server  # noqa: F401
        except ImportError as e:
            raise MotoUnavailable(f"moto[server] is not installed: {e}") from None
        env = dict(os.environ)
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        # Its request log goes to a file: a pipe nobody reads would stop the server when full.
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            found = _RUNNING.search(self.log_path.read_bytes())
            if found:
                self.port = int(found.group(1))
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                text = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise MotoUnavailable(f"moto.server did not start: {text}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        if self.auth:
            self._enforce_auth()
        else:
            self.good = Keys("anything", "anything")
        return self

    def _post(self, path: str, body: bytes) -> dict[str, object]:
        # Not form-encoded (urllib's default): moto reads the raw body.
        request = urllib.request.Request(self.url + path, data=body, method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            result: dict[str, object] = json.loads(answer.read())
            return result

    def _enforce_auth(self) -> None:
        import boto3

        # Exactly three unauthenticated actions, then every request is checked.
        self._post("/moto-api/reset-auth", b"3")
        iam = boto3.client("iam", endpoint_url=self.url, region_name=REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="globaleye")
        iam.put_user_policy(UserName="globaleye", PolicyName="s3", PolicyDocument=json.dumps(_POLICY))
        key = iam.create_access_key(UserName="globaleye")["AccessKey"]
        self.good = Keys(key["AccessKeyId"], key["SecretAccessKey"])
        self.bad_secret = Keys(key["AccessKeyId"], "not-" + key["SecretAccessKey"][4:])

    def client(self, keys: Keys | None = None, **config: object) -> object:
        """A plain boto3 S3 client on this server (path addressing), signing with ``keys``."""
        import boto3
        from botocore.config import Config

        keys = keys or self.good
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=keys.access_key, aws_secret_access_key=keys.secret_key,
                            config=Config(s3={"addressing_style": "path"}, **config))  # type: ignore[arg-type]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._log_dir.cleanup()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_shared: dict[bool, MotoServer] = {}


def shared_server(auth: bool = True) -> MotoServer:
    """One server (with signature checks, or without: ``auth``) for the whole test process (Trial has
    no ``setUpClass``), started on first use and stopped when the process exits; tests keep apart by
    their own bucket names."""
    server = _shared.get(auth)
    if server is None or server.process is None or server.process.poll() is not None:
        server = _shared[auth] = MotoServer(auth=auth).start()
        atexit.register(server.stop)
    return server
