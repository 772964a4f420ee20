"""``globaleye.client``: what the phone client of §3 does, as a library and the ``globaleye-client`` CLI.

Log in through the client API (SOAP, :mod:`.soap`), list cameras, ask for the §8.9
URLs and reach the camera with the same §15 path selection as the proxy
(:mod:`globaleye.rtsp.paths`), then watch (stream facts), take a snapshot (§3.5
local capture) or record (§3.6 local recording) with PyAV (:mod:`.media`).
"""


def main() -> None:
    """The ``globaleye-client`` command: one line, not a traceback, when the ``[client]`` extra is missing."""
    import sys

    try:
        from globaleye.client.cli import main as run
    except ModuleNotFoundError as e:
        if e.name not in ("av", "numpy"):
            raise
        print("globaleye-client: needs the [client] extra (PyAV and numpy): pip install 'globaleye[client]'",
              file=sys.stderr)
        raise SystemExit(2) from None
    run()
