"""RTSP (RFC 2326) for §10/§15: a pure message codec and the camera's server protocol."""
