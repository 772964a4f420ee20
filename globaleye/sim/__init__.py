"""The camera simulator: the device side of the same protocols, for demos, tests and load."""


def main() -> None:
    """The ``globaleye-sim`` command: one line, not a traceback, when the ``[sim]`` extra is missing."""
    import sys

    try:
        from globaleye.sim.__main__ import main as run
    except ModuleNotFoundError as e:
        if e.name not in ("av", "numpy"):
            raise
        print("globaleye-sim: needs the [sim] extra (PyAV and numpy): pip install 'globaleye[sim]'",
              file=sys.stderr)
        raise SystemExit(2) from None
    run()
