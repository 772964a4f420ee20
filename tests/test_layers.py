"""The import layers of .importlinter hold (issue 10 item 5): txturn stands alone, the codecs are pure,
the platform imports neither the simulator nor the client, the packages form layers without cycles."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent


class LayerTests(SynchronousTestCase):
    def test_import_contracts_kept(self) -> None:
        if importlib.util.find_spec("importlinter") is None:
            raise SkipTest("import-linter is not installed (pip install -e '.[test]')")
        # This checkout's packages first on the path, as in the other tests' child processes.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        result = subprocess.run(
            [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
             "sys.exit(lint_imports(config_filename='.importlinter', no_cache=True, no_logo=True))"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("0 broken", result.stdout)
