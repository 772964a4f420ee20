"""The JSON answer every handler of the web API writes, for the mixins of :class:`~globaleye.web.api.WebApi`.

The mixins (``api_settings``, ``api_pictures``, ``api_cloud``, ``api_delivery``...) cannot import
``api.py`` (it imports them for WebApi's bases: a cycle the layers contract forbids), so what they
share lives here, below them.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest

JSON = b"application/json; charset=utf-8"


def json_reply(request: IRequest, status: int, data: Any = None) -> bytes:
    """The JSON answer, written as WebApi's dispatcher writes a ``Reply``: *status*, and *data* as UTF-8
    JSON (no body for None)."""
    request.setResponseCode(status)
    if data is None:
        return b""
    request.setHeader(b"content-type", JSON)
    return json.dumps(data, ensure_ascii=False).encode()
