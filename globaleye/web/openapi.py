"""The OpenAPI 3.1 document of ``/api/v1``, built from the router's own table (:data:`globaleye.web.routes.ROUTES`).

Served at ``/api/v1/openapi.json``.  Because the router and this document read the same
:class:`~globaleye.web.api.Route` entries, a route cannot exist undocumented or be documented
without existing (tests/integration/test_web_api.py checks both against the running site).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from globaleye import __version__
from globaleye.web.auth import COOKIE, CSRF_HEADER
from globaleye.web.problem import KINDS, TYPE_BASE
from globaleye.web.routes import Route

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The document of *routes* (the router's :data:`~globaleye.web.routes.ROUTES`)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "GlobalEye web portal API", "version": __version__,
                 "description": "The shop owner's portal (spec §2 item 1, §3, §4) over the platform's client API. "
                                "Errors are RFC 9457 application/problem+json. State changes with a session need "
                                "the X-CSRF-Token header (GET /session gives it)."},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE.decode(),
                            "description": "set by POST /session; HttpOnly, SameSite=Strict"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                         "description": f"the csrfToken of GET /session ({CSRF_HEADER.decode()})"},
            },
            "schemas": {
                "Problem": {
                    "type": "object", "required": ["type", "title", "status"],
                    "properties": {
                        "type": {"type": "string", "enum": [TYPE_BASE + kind for kind in KINDS]},
                        "title": {"type": "string"}, "status": {"type": "integer"},
                        "detail": {"type": "string"}},
                },
            },
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary}
    if route.params:
        operation["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required or p.where == "path", "schema": dict(p.schema),
             **({"description": p.description} if p.description else {})} for p in route.params]
    if route.body is not None:
        content: dict[str, Any] = {"schema": dict(route.body)}
        if route.example is not None:
            content["example"] = dict(route.example)
        operation["requestBody"] = {"required": True, "content": {"application/json": content}}
    if route.session:
        operation["security"] = [{"session": [], "csrf": []}] if route.csrf and route.method != "GET" \
            else [{"session": []}]
    else:
        operation["security"] = []
    responses: dict[str, Any] = {}
    for status, text in sorted(route.responses.items()):
        answer: dict[str, Any] = {"description": text}
        if status < 300 and status != 204:
            answer["content"] = {route.content_type: {}}
        elif status >= 400:
            answer["content"] = {"application/problem+json": {"schema": PROBLEM}}
        responses[str(status)] = answer
    if route.session:
        responses.setdefault("401", {"description": "no live session",
                                     "content": {"application/problem+json": {"schema": PROBLEM}}})
        if route.method != "GET":
            responses.setdefault("403", {"description": "CSRF token missing or wrong, or another origin",
                                         "content": {"application/problem+json": {"schema": PROBLEM}}})
    responses["default"] = {"description": "an error", "content": {"application/problem+json": {"schema": PROBLEM}}}
    operation["responses"] = responses
    return operation
