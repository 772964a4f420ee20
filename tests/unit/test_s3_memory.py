"""The backend contract (tests/backend_contract.py) on :class:`~globaleye.s3.memory.MemoryBackend`, so
that the layers tested on it meet the same rules as on the real backends."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial.unittest import TestCase

from globaleye.s3.backend import ObjectBackend
from globaleye.s3.memory import MemoryBackend
from tests.backend_contract import BackendContract


class MemoryBackendContract(BackendContract, TestCase):
    async def make_backend(self) -> ObjectBackend:
        return MemoryBackend(task.Clock().seconds)
