"""Fakes of the object store's other sides for the FTP role's tests (tests/interop/test_ftp.py,
tests/integration/test_ftp_sim.py): a CredentialLookup over a dict, StorageEvents that record, and a
free run of loopback ports for the passive range."""

from __future__ import annotations

import random
import socket

from globaleye.s3.backend import ObjectInfo, Principal


class DictCredentials:
    """A CredentialLookup over a dict (the application layer implements the real one)."""

    def __init__(self, *principals: Principal) -> None:
        self.principals = {p.access_key: p for p in principals}
        self.lookups = 0

    async def principal(self, access_key: str) -> Principal | None:
        self.lookups += 1
        return self.principals.get(access_key)


class Events:
    """StorageEvents that record what they hear and may refuse (a quota)."""

    def __init__(self) -> None:
        self.admitted: list[tuple[str, str, int]] = []
        self.stored_objects: list[tuple[Principal, ObjectInfo]] = []
        self.refuse: str | None = None

    async def admit(self, principal: Principal, bucket: str, key: str, size: int) -> str | None:
        self.admitted.append((principal.dev_id, key, size))
        return self.refuse

    async def stored(self, principal: Principal, info: ObjectInfo) -> None:
        self.stored_objects.append((principal, info))

    async def deleted(self, principal: Principal, bucket: str, key: str) -> None:
        pass


def free_range(count: int = 20) -> tuple[int, int]:
    """A run of loopback ports that were free a moment ago (the passive range)."""
    for _ in range(50):
        first = random.randrange(20000, 60000)
        ok = True
        for port in range(first, first + count):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return first, first + count - 1
    raise RuntimeError("no free port range")
