"""``globaleye.client``: what the phone client of §3 does, as a library and the ``globaleye-client`` CLI.

Log in through the client API (SOAP, :mod:`.soap`), list cameras, ask for the §8.9
URLs and reach the camera with the same §15 path selection as the proxy
(:mod:`globaleye.rtsp.paths`), then watch (stream facts), take a snapshot (§3.5
local capture) or record (§3.6 local recording) with PyAV (:mod:`.media`).
"""
