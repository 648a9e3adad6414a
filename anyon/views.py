from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from anyon.health import HEALTH_CHECKS, OK


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Machine-readable health: 200 when every required part is up, 503 otherwise. Only staff see the parts and
    their details (versions and error text tell an attacker what runs here)."""
    results = {name: check() for name, check in HEALTH_CHECKS.items()}
    healthy = all(not (c.required and c.failed) for c in results.values())
    body: dict = {"status": "ok" if healthy else "unavailable"}
    if request.user.is_authenticated and request.user.is_staff:
        body["checks"] = {
            name: {"ok": c.status == OK, "status": c.status, "detail": c.detail, "fix": c.fix}
            for name, c in results.items()
        }
    return JsonResponse(body, status=200 if healthy else 503)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")
