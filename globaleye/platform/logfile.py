"""A bounded log directory for ``twistd globaleye``: rotation by size with a maximum file count.

twistd's own log file (``--logfile``, or ``twistd.log`` for a daemon) rotates at 1 MB and
keeps every rotated file: a flood of log lines fills the disk.  The plugin's options
(:class:`globaleye.platform.tap.Options`) call :func:`install` once the configuration is read; it
names to twistd (through its ``--logger`` hook, ``ServerOptions["logger"]``, which twistd
imports by name once every option is parsed) :func:`bounded_observer`, which writes the
same file with ``[log] max_size`` and ``[log] max_files``.
An explicit ``--logger``, ``--syslog`` and logging to stdout (``--logfile=-``, or ``-n``
without ``--logfile``) are left as twistd makes them.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from typing import Any

from twisted.logger import ILogObserver, textFileLogObserver
from twisted.python.logfile import LogFile

MIN_SIZE = 4096


def bounded_log_file(path: str, max_size: int, max_files: int) -> LogFile:
    """A twistd-style LogFile that rotates at *max_size* bytes and keeps *max_files* rotated files."""
    if max_size < MIN_SIZE:
        raise ValueError(f"[log] max_size = {max_size}: at least {MIN_SIZE}")
    if max_files < 1:
        raise ValueError(f"[log] max_files = {max_files}: at least 1")
    return LogFile.fromFullPath(path, rotateLength=max_size, maxRotatedFiles=max_files)


def observer_factory(path: str, max_size: int, max_files: int) -> Callable[[], ILogObserver]:
    """What twistd's ``--logger`` takes: a callable that makes the observer when logging starts."""

    def make() -> ILogObserver:
        log_file = bounded_log_file(path, max_size, max_files)
        if not signal.getsignal(signal.SIGUSR1):  # twistd's own: SIGUSR1 rotates

            def rotate(_signum: int, _frame: Any) -> None:
                from twisted.internet import reactor

                reactor.callFromThread(log_file.rotate)  # type: ignore[attr-defined]

            signal.signal(signal.SIGUSR1, rotate)
        return textFileLogObserver(log_file)  # type: ignore[arg-type]  # LogFile is file-like

    return make


#: What :func:`install` chose for :func:`bounded_observer`: path, max_size, max_files.
_chosen: tuple[str, int, int] | None = None


def bounded_observer() -> ILogObserver:
    """The ``--logger`` factory :func:`install` names (twistd calls it when logging starts)."""
    if _chosen is None:
        raise RuntimeError("globaleye.platform.logfile.install was not called")
    return observer_factory(*_chosen)()


def install(server_options: Any, log: Mapping[str, Any]) -> bool:
    """Make twistd log to a bounded file where it would log to an unbounded one; True if it will."""
    if server_options.get("logger") or server_options.get("syslog"):
        return False
    path = server_options.get("logfile") or ""
    if path == "-" or (server_options.get("nodaemon") and not path):
        return False
    # Checked here, so that a bad value stops start-up with a usage error naming the keys.
    if log["max_size"] < MIN_SIZE or log["max_files"] < 1:
        raise ValueError(f"[log] max_size = {log['max_size']} (at least {MIN_SIZE}), "
                         f"max_files = {log['max_files']} (at least 1)")
    global _chosen
    _chosen = (path or "twistd.log", log["max_size"], log["max_files"])
    server_options["logger"] = f"{__name__}.bounded_observer"
    return True
