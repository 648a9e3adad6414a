"""A server the web process needs (the database, Redis) not answering is an outage, not a bug: the request gets a
503 page that says so in a sentence (JSON for a client that asks for JSON), the log gets one line per outage
(shared/outages.py) instead of a traceback per request, and ``Retry-After`` tells clients to come back."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from shared.outages import is_connection_error, outage, part_of

RETRY_AFTER_SECONDS = 30

MESSAGES = {
    "database": "Anyon Cloud cannot reach its database right now, so this page cannot be shown.",
    "redis": "Anyon Cloud cannot reach Redis (its task queue and cache) right now, so this cannot be done.",
    "a server": "Anyon Cloud cannot reach a server it depends on right now, so this page cannot be shown.",
}
PART_NAMES = {"database": "database", "redis": "Redis server", "a server": "server"}


class ServiceOutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 500:
            for part in ("database", "redis"):
                outage(part).answered()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_connection_error(exception):
            return None
        part = part_of(exception)
        outage(part).failed(f"web {request.method} {request.path}", exception)
        message = MESSAGES[part]
        if "json" in request.headers.get("Accept", "") and "html" not in request.headers.get("Accept", ""):
            response: HttpResponse = JsonResponse({"status": "unavailable", "failing": [part], "error": message})
            response.status_code = 503
        else:
            html = render_to_string("anyon/outage.html", {"message": message, "part_name": PART_NAMES[part]})
            response = HttpResponse(html, status=503)
        response._has_been_logged = True  # the outage's own line says it; not one more line per request
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response["Cache-Control"] = "no-store"
        return response
