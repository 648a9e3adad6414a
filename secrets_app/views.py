"""General Settings: the GitHub and Claude cards and the actions behind them. Thin: logic is in the services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from secrets_app import claude_login, selectors
from secrets_app.errors import ConnectError, SecretError
from secrets_app.forms import PersonalAccessTokenForm
from secrets_app.github_connect import (
    do_cancel_device_flow,
    do_check_github_secret,
    do_connect_pat,
    do_poll_device_flow,
    do_start_device_flow,
)
from secrets_app.models import DeviceFlowStatus, GitHubDeviceFlow, Provider, Secret
from secrets_app.secret_store import do_revoke_secret
from shared.lookups import found_or_404


def _session_key(request: HttpRequest) -> str:
    if not request.session.session_key:
        request.session.save()
    return request.session.session_key


def card_context(request: HttpRequest, *, pat_form: PersonalAccessTokenForm | None = None) -> dict:
    return selectors.settings_cards_context(
        owner=request.user,
        session_key=_session_key(request),
        claude_login=claude_login.current_session(request.user.pk),
        pat_form=pat_form or PersonalAccessTokenForm(),
    )


@login_required
@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    return render(request, "secrets_app/settings.html", card_context(request))


@login_required
@require_GET
def card(request: HttpRequest, provider: str) -> HttpResponse:
    """One card, rendered by the server: the same partial the page includes, for live updates."""
    if provider not in (Provider.GITHUB, Provider.CLAUDE):  # the cards; setup secrets live on environment pages
        raise Http404
    html = render_to_string(f"secrets_app/cards/{provider}.html", card_context(request), request=request)
    return HttpResponse(html)


@login_required
@require_POST
def github_pat(request: HttpRequest) -> HttpResponse:
    form = PersonalAccessTokenForm(request.POST)
    if form.is_valid():
        try:
            secret = do_connect_pat(owner=request.user, raw_token=form.cleaned_data["token"])
        except ConnectError as exc:
            form.add_error("token", str(exc))
        else:
            messages.success(request, f"GitHub connected as @{secret.account_login} with a personal access token.")
            return redirect("settings")
    # PasswordInput never renders the submitted value: the token is not sent back into the page.
    return render(request, "secrets_app/settings.html", card_context(request, pat_form=form), status=400)


@login_required
@require_POST
def github_device_start(request: HttpRequest) -> HttpResponse:
    try:
        do_start_device_flow(owner=request.user, session_key=_session_key(request))
    except ConnectError as exc:
        messages.error(request, str(exc))
    return redirect("settings")


def _own_flow(request: HttpRequest, flow_id: int) -> GitHubDeviceFlow:
    return found_or_404(
        selectors.device_flow_for_owner, owner=request.user, flow_id=flow_id, session_key=_session_key(request)
    )


@login_required
@require_POST
def github_device_poll(request: HttpRequest, flow_id: int) -> HttpResponse:
    flow = _own_flow(request, flow_id)
    flow = do_poll_device_flow(flow_id=flow.pk, owner=request.user)
    retry_in = max(0.0, (flow.next_poll_at - timezone.now()).total_seconds()) if flow.status == "pending" else None
    if request.headers.get("Accept") == "application/json":
        return JsonResponse(
            {"status": flow.status, "message": flow.message, "interval": flow.interval, "retry_in": retry_in}
        )
    if flow.status == DeviceFlowStatus.PENDING:
        messages.info(request, "Not approved yet. Enter the code on GitHub, then check again.")
    return redirect("settings")


@login_required
@require_POST
def github_device_cancel(request: HttpRequest, flow_id: int) -> HttpResponse:
    do_cancel_device_flow(flow=_own_flow(request, flow_id))
    return redirect("settings")


def _own_secret(request: HttpRequest, secret_id: int) -> Secret:
    return found_or_404(selectors.secret_for_owner, owner=request.user, secret_id=secret_id)


@login_required
@require_POST
def secret_check(request: HttpRequest, secret_id: int) -> HttpResponse:
    secret = _own_secret(request, secret_id)
    if secret.provider != Provider.GITHUB:
        raise Http404
    try:
        messages.success(request, do_check_github_secret(secret=secret, actor=request.user.get_username()))
    except (ConnectError, SecretError) as exc:
        messages.error(request, str(exc))
    return redirect("settings")


@login_required
@require_POST
def secret_revoke(request: HttpRequest, secret_id: int) -> HttpResponse:
    secret = _own_secret(request, secret_id)
    do_revoke_secret(secret=secret, actor=request.user.get_username())
    messages.success(request, f"{secret.get_provider_display()} {secret.get_kind_display().lower()} disconnected.")
    return redirect("settings")
