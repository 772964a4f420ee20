"""The RTSP proxy (``[rtsp]`` role): standard RTSP for ordinary players in front of cameras.

Players ask ``rtsp://proxy:8554/live/<DevID>/<channel>/<stream>`` with their platform
account; the proxy reaches the camera the way §15 tells a client to (local address,
UPnP address, TURN relay with RTP over UDP, TURN relay interleaved) and fans one
upstream out to every viewer of that stream.  The RTSP library it builds on (SDP, the
client session to a camera, §15's paths, the server connection base) is
:mod:`globaleye.media.rtsp`, shared with ``globaleye-client``; the RTP rewriting of the
fan-out is :mod:`globaleye.media.h264rtp`.  Here: :mod:`.auth` (Digest/Basic), the
fan-out (:mod:`.fanout`), the server (:mod:`.server`), the platform side
(:mod:`.platform`) and the service (:mod:`.service`).
"""
