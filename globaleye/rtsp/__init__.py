"""RTSP (RFC 2326) for §10/§15: a pure message codec and the server connection base.

The simulated camera's server is :mod:`globaleye.sim.rtsp`; the RTSP proxy's is
:mod:`globaleye.proxy.server`.
"""
