"""Entry points that need an optional extra: one line instead of a traceback when it is missing.

PyAV and numpy are the ``[sim]`` and ``[client]`` extras (issue 10 item 2): a platform host
installs neither, and ``globaleye-sim`` / ``globaleye-client`` say what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

#: The modules the extras bring.
EXTRA_MODULES = ("av", "numpy")


def run_with_extra(module: str, command: str, extra: str) -> None:
    """Import *module* and call its ``main()``; exit 2 with one line if an extra's module is missing
    (checked first: PyAV is imported lazily, at the first encode, where a traceback would be late)."""
    if not all(_installed(name) for name in EXTRA_MODULES):
        print(f"{command}: needs the [{extra}] extra (PyAV and numpy): pip install 'globaleye[{extra}]'",
              file=sys.stderr)
        raise SystemExit(2)
    importlib.import_module(module).main()


def _installed(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None  # None: an import blocked on purpose
    return importlib.util.find_spec(name) is not None
