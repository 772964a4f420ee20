"""``globaleye.client``: what the phone client of §3 does, as a library and the ``globaleye-client`` CLI.

Log in through the client API (SOAP, :mod:`.soap`), list cameras, ask for the §8.9
URLs and reach the camera with the same §15 path selection as the proxy
(:mod:`globaleye.media.rtsp.paths`), then watch (stream facts), take a snapshot (§3.5
local capture) or record (§3.6 local recording) with PyAV (:mod:`.media`).
"""



def main() -> None:
    """The ``globaleye-client`` command (:func:`globaleye.util.extras.run_with_extra`)."""
    from globaleye.util.extras import run_with_extra

    run_with_extra("globaleye.client.cli", "globaleye-client", "client")
