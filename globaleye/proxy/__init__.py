"""The RTSP proxy (``[rtsp]`` role): standard RTSP for ordinary players in front of cameras.

Players ask ``rtsp://proxy:8554/live/<DevID>/<channel>/<stream>`` with their platform
account; the proxy reaches the camera the way §15 tells a client to (local address,
UPnP address, TURN relay with RTP over UDP, TURN relay interleaved) and fans one
upstream out to every viewer of that stream.  Layers, as elsewhere in GlobalEye:
pure codecs (:mod:`.sdp`, :mod:`.auth` header handling, :mod:`.h264`), Twisted
protocols (:mod:`.upstream`, :mod:`.server`), and services (:mod:`.service`).
"""
