"""The user's snapshots (docs/USER_GUIDE.md, "Cached starts"): the list, and dropping one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from execution.snapshots import selectors
from execution.snapshots.actions import do_drop_snapshot, engine_if_reachable
from shared.lookups import found_or_404


@login_required
def snapshot_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "execution/snapshot_list.html",
        {"snapshots": selectors.snapshots_for(user=request.user), "now": timezone.now()},
    )


@login_required
@require_POST
def snapshot_drop(request: HttpRequest, snapshot_id: int) -> HttpResponse:
    """Another user's snapshot is not found (404), staff's included: theirs are dropped in the admin."""
    snapshot = found_or_404(selectors.own_snapshot_for, user=request.user, snapshot_id=snapshot_id)
    do_drop_snapshot(snapshot=snapshot, engine=engine_if_reachable())
    messages.success(request, f"Snapshot of {snapshot.repo_url} dropped: the next attempt runs its setup again.")
    back = request.POST.get("next", "")
    return redirect(
        back if url_has_allowed_host_and_scheme(back, allowed_hosts=None) and back.startswith("/") else "snapshot-list"
    )
