from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from anyon.health import HEALTH_CHECKS, OK
from shared.outages import is_connection_error


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Machine-readable health: 200 when every required part is up, 503 otherwise, with the names of the parts that
    failed. Only staff see every part's details (versions and error text tell an attacker what runs here); with the
    database down nobody is known as staff, and the names alone say where to look."""
    results = {name: check() for name, check in HEALTH_CHECKS.items()}
    failing = [name for name, c in results.items() if c.required and c.failed]
    body: dict = {"status": "unavailable" if failing else "ok"}
    if failing:
        body["failing"] = failing
    if _is_staff(request):
        body["checks"] = {
            name: {"ok": c.status == OK, "status": c.status, "detail": c.detail, "fix": c.fix}
            for name, c in results.items()
        }
    return JsonResponse(body, status=503 if failing else 200)


def _is_staff(request: HttpRequest) -> bool:
    """Whether the request comes from a staff member (False when the sessions or users cannot be read)."""
    try:
        return bool(request.user.is_authenticated and request.user.is_staff)
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        return False


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")
