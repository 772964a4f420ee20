"""txturn is a library apart from the application (issue 10 item 3): no module of it imports globaleye."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import txturn

PACKAGE = Path(txturn.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


class LayoutTests(SynchronousTestCase):
    def test_txturn_imports_no_globaleye(self) -> None:
        modules = sorted(PACKAGE.glob("*.py"))
        self.assertIn(PACKAGE / "allocation.py", modules)
        offenders = {path.name: sorted(name for name in _imports(path) if name.split(".")[0] == "globaleye")
                     for path in modules}
        self.assertEqual({name: found for name, found in offenders.items() if found}, {})

    def test_public_names_of_turnserver(self) -> None:
        """The split keeps the names importers use importable from txturn.turnserver."""
        from txturn import turnserver

        for name in ("TurnServer", "ServerSettings", "FiveTuple", "TurnUdpProtocol", "TurnStreamProtocol",
                     "TurnStreamFactory", "Pipe", "SplicePump", "PeerProtocol"):
            self.assertTrue(hasattr(turnserver, name), name)
