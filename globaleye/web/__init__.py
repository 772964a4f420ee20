"""The shop owner's web portal (issue 11; spec §2 item 1, §3, §4): a browser face of the client API.

Like the SOAP face (:mod:`globaleye.api.clientapi`) it holds no business logic: every route calls the
application layer (:mod:`globaleye.app`) and the accounts service, and turns their results and
:class:`~globaleye.app.errors.AppError`\\ s into JSON and RFC 9457 problems.

* :mod:`~globaleye.web.site` builds the root resource: ``/`` the portal's static files,
  ``/api/`` the JSON API, security headers on every response;
* :mod:`~globaleye.web.api` the routes of ``/api/v1`` (one table, also the OpenAPI document's source);
* :mod:`~globaleye.web.auth` the session cookie (the platform's LoginSession) and CSRF;
* :mod:`~globaleye.web.problem` ``application/problem+json`` and the AppError → HTTP status map;
* :mod:`~globaleye.web.openapi` the OpenAPI 3.1 document served at ``/api/v1/openapi.json``.
"""
