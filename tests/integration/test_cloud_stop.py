"""Stopping a platform whose cloud service is at work (issue 12): the stop completes.

The platform's services stop together: the storage role's thread pool may stop while a
reconciliation still reads the embedded store.  Twisted's pool drops work given to it after its
stop without a word, so the reconciliation waited forever and the platform never finished
stopping (found by tests/interop/test_cloud_end_to_end.py: a cleanup still running after 120 s).
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from globaleye.platform.tap import Options, PlatformService
from globaleye.s3.backend import RECORD_BUCKET
from globaleye.testing import platform_config


class StopDuringReconciliation(TestCase):
    timeout = 60

    async def test_the_platform_stops_while_the_store_is_reconciled(self) -> None:
        for attempt in range(25):
            data = Path(self.mktemp()).absolute()
            ini = Path(f"{data}.ini")
            # Reconciliation every 10 ms over objects nobody indexed: it reads the store all the time.
            ini.write_text(platform_config("gateway, http, storage", data_dir=str(data),
                                           database=f"sqlite:///{data}.sqlite3",
                                           cloud={"reconcile_interval": 0.01, "retention_interval": 0}),
                           encoding="utf-8")
            options = Options()
            options.parseOptions(["--config", str(ini)])
            platform = PlatformService(options.config, options.store, reactor)
            platform.startService()
            assert platform.cloud is not None
            backend = platform.cloud.backend
            await backend.create_bucket(RECORD_BUCKET)
            for n in range(40):
                await backend.put_bytes(RECORD_BUCKET, f"81100000001_0_20261202{n // 60:02d}{n % 60:02d}00.ts",
                                        b"x" * 1000)
            await deferLater(reactor, 0.01 * (attempt % 4), lambda: None)
            stopped: Deferred[object] = Deferred.fromCoroutine(_stop(platform))
            for _ in range(100):
                if stopped.called:
                    break
                await deferLater(reactor, 0.05, lambda: None)
            self.assertTrue(stopped.called, f"the platform did not stop within 5 s (attempt {attempt})")


async def _stop(platform: PlatformService) -> object:
    return await platform.stopService()
