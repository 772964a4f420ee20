"""RTSP (RFC 2326) for §10/§15, the library both sides use.

* :mod:`.message`: the pure message codec (requests, responses, interleaved frames);
* :mod:`.serving`: the server connection base (one refusal type, one method dispatch,
  the Session-header lookup, timeouts), under the simulated camera's server
  (:mod:`globaleye.sim.rtsp.server`) and the proxy's (:mod:`globaleye.proxy.server`);
* :mod:`.sdp`: SDP as far as a client and a relay need it (pure);
* :mod:`.upstream`: the client session that reaches a camera (TCP interleaved, or UDP
  with STUN and hole punching); :mod:`.paths`: §15's choice of the way to a camera.

The proxy and ``globaleye-client`` are applications on top of it.
"""
