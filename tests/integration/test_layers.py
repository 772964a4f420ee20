"""The import layers of .importlinter hold (issue 10 item 5): txturn stands alone, the codecs are pure,
the platform imports neither the simulator nor the client, the packages form layers without cycles."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.util import ROOT


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

    def test_application_layer_has_no_transport(self) -> None:
        """The application layer (globaleye/app, issue 10 item 1) imports no twisted.web and none of the faces
        (SOAP, the device HTTP site, the RTSP proxy), not even through other modules. import-linter can only
        forbid a whole external package, so twisted.web is looked for in the layer's own import statements."""
        app = ROOT / "globaleye" / "app"
        if not app.is_dir():
            raise SkipTest("no globaleye/app yet (issue 10 item 1)")
        faces = ("globaleye.api.soap", "globaleye.api.clientapi", "globaleye.device.web", "globaleye.guard.httpsite",
                 "globaleye.guard.ops", "globaleye.proxy", "globaleye.platform.tap", "globaleye.cli", "globaleye.web")
        for path in sorted(app.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
                for name in names:
                    self.assertFalse(name == "twisted.web" or name.startswith(("twisted.web.", *faces)),
                                     f"{path.relative_to(ROOT)} imports {name}")
        if importlib.util.find_spec("grimp") is None:
            return
        import grimp

        graph = grimp.build_graph("globaleye")
        for face in faces:
            if face in graph.modules:
                self.assertFalse(graph.chain_exists("globaleye.app", face, as_packages=True),
                                 f"globaleye.app reaches {face}")
