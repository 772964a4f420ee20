"""globaleye-sim and globaleye-client without their extras (issue 10 item 2): one line, exit 2."""

from __future__ import annotations

import contextlib
import io
import sys

from twisted.trial.unittest import SynchronousTestCase

import globaleye.client
import globaleye.sim


class ExtrasTests(SynchronousTestCase):
    def run_without(self, module: str, entry: object) -> tuple[int, str]:
        self.patch(sys, "modules", {**sys.modules, module: None})  # an import of it fails, as when not installed
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as exited:
            entry()  # type: ignore[operator]
        return int(exited.exception.code or 0), err.getvalue()

    def test_sim_without_pyav(self) -> None:
        # PyAV is imported lazily by the simulator (at the first encode): checked before anything starts.
        code, err = self.run_without("av", globaleye.sim.main)
        self.assertEqual(code, 2)
        self.assertEqual(err, "globaleye-sim: needs the [sim] extra (PyAV and numpy): pip install 'globaleye[sim]'\n")

    def test_client_without_numpy(self) -> None:
        code, err = self.run_without("numpy", globaleye.client.main)
        self.assertEqual(code, 2)
        self.assertIn("[client] extra", err)
        self.assertEqual(len(err.splitlines()), 1)
