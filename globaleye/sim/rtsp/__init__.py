"""The simulated camera's RTSP server (§10, §15): live view and playback of a simulated IPC.

``urls`` (URL parsing, HashToken verifiers) ← ``nat`` (media ports, STUN, NAT opening) ←
``players`` (sessions, tracks, the live and the recording player) ← ``sdp`` ← ``server``
(the camera's state, the protocol and the factory).  Built on the shared RTSP library
(:mod:`globaleye.media.rtsp`) and the simulator's media (:mod:`globaleye.sim.media`).
"""
