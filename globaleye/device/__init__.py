"""Device access (§5, §7): the binary frame and XML codecs, the message protocol, the gateway's device sessions, registration, enrollment, the devices' HTTP calls."""
