"""The client API's settings, bound to `[soap]` keys by globaleye.platform.bindings."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen
class ClientApiSettings:
    stun_host: str = "127.0.0.1"
    stun_port: int = 3478
    #: model (or "*") -> (version, ftp://user:password@host:port/file)
    firmware: Mapping[str, tuple[str, str]] = attrs.Factory(dict)
