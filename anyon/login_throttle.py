"""Sign-in throttling (django-axes, configured in anyon/settings.py): the client's address and the lockout page.

A refused sign-in, on /login/ or /admin/login/, gets the ordinary sign-in page again with a plain message and
status 429: never a stack trace, and nothing that says whether the username exists.
"""

from __future__ import annotations

import ipaddress
import math

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


def client_ip(request: HttpRequest) -> str | None:
    """The address failures are counted against: ANYON_LOGIN_CLIENT_IP_HEADER (set by the reverse proxy in front;
    for X-Forwarded-For the right-most entry, the one the proxy added) when it holds an address, else the peer."""
    header = settings.ANYON_LOGIN_CLIENT_IP_HEADER.strip()
    if header:
        value = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        candidate = value.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR")


def lockout_message() -> str:
    minutes = max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    return (
        "Too many failed sign-ins for this account or from this address. Signing in is paused for "
        f"{minutes} minute{'s' if minutes != 1 else ''} after the last failed try; an administrator can lift it "
        "sooner."
    )


def locked_out(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE. django-axes passes (request, original_response, credentials) from its sync
    middleware and (request, credentials) from its async one; neither is needed here."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not next_url and request.path.startswith(reverse("admin:index")):
        next_url = reverse("admin:index")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    messages.error(request, lockout_message())
    return render(
        request,
        "registration/login.html",
        {"form": AuthenticationForm(request), "next": next_url},
        status=429,
    )
