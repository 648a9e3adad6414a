from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from execution.attempts import selectors
from execution.attempts.actions import (
    AttemptBusy,
    do_cancel_attempt,
    do_cancel_job,
    do_create_task,
    do_request_delete_attempt,
    do_request_pull_request,
    do_start_attempt,
    do_start_follow_up,
)
from execution.environments.proposals import SETUP_PHASE
from execution.environments.selectors import repository_of
from execution.git import diffs, repositories
from execution.hosts import network
from execution.logs import selectors as log_selectors
from execution.models import Attempt, AttemptStatus, RunKind, RunStatus, Task
from execution.snapshots import selectors as snapshot_selectors
from execution.web.forms import FollowUpForm, TaskForm
from shared.docker.engine import EngineError
from shared.lookups import found_or_404

HISTORY_ON_PAGE = 200  # records rendered into the page; the websocket sends the rest


def _task(request: HttpRequest, task_id: int) -> Task:
    return found_or_404(selectors.task_for, user=request.user, task_id=task_id)


def _attempt(request: HttpRequest, attempt_id: int) -> Attempt:
    return found_or_404(selectors.attempt_for, user=request.user, attempt_id=attempt_id)


def _own_attempt(request: HttpRequest, attempt_id: int) -> Attempt:
    """Staff may look at any attempt and stop it, but only its owner makes it act or deletes it."""
    return found_or_404(selectors.own_attempt_for, user=request.user, attempt_id=attempt_id)


@login_required
def task_list(request: HttpRequest) -> HttpResponse:
    return render(request, "execution/task_list.html", {"tasks": selectors.tasks_for(user=request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def task_create(request: HttpRequest) -> HttpResponse:
    form = TaskForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        task = do_create_task(owner=request.user, **form.cleaned_data)
        messages.success(request, "Task created. Start an attempt to run it.")
        return redirect("task-detail", task_id=task.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "execution/task_form.html", {"form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def task_repositories(request: HttpRequest) -> JsonResponse:
    """The signed-in user's GitHub repositories for the task form: GET reads (``?q=`` searches GitHub), POST
    (CSRF-checked) reloads the list from GitHub."""
    query = request.GET.get("q", "").strip()
    if query:
        found = repositories.search_repositories_for(user=request.user, query=query)
    else:
        found = repositories.repositories_for(user=request.user, refresh=request.method == "POST")
    return JsonResponse(found.as_json())


@login_required
def task_detail(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _task(request, task_id)
    return render(request, "execution/task_detail.html", {"task": task, "attempts": task.attempts.all()})


@login_required
@require_POST
def attempt_start(request: HttpRequest, task_id: int) -> HttpResponse:
    attempt = do_start_attempt(task=_task(request, task_id))
    return redirect("attempt-detail", attempt_id=attempt.pk)


def changes_note(attempt: Attempt, runs: list) -> str:
    """What the Changes section says when there is no diff to show: where the attempt really is."""
    if attempt.base_commit:
        return "No changes yet." if attempt.is_active else "No changes: the branch has nothing the base branch lacks."
    if attempt.is_active:
        return "Changes appear here once the repository is cloned and Claude has worked on it."
    ended = {
        AttemptStatus.CANCELLED: "Cancelled",
        AttemptStatus.TIMED_OUT: "Timed out",
        AttemptStatus.FAILED: "Failed",
    }.get(attempt.status, "Ended")
    if any(run.kind == RunKind.CLONE and run.status == RunStatus.SUCCEEDED for run in runs):
        return (
            f"{ended} after the repository was cloned, before any changes were recorded: there is nothing to "
            "show or open a pull request for."
        )
    if attempt.status == AttemptStatus.SUCCEEDED:
        return "This attempt's steps did not use a repository: there are no changes to show."
    return f"{ended} before the repository was cloned: there are no changes."


def _setup_proposal_url(attempt: Attempt, user) -> str:
    """Where the owner sees (and accepts) the setup policy observe mode proposed, when this attempt's setup ran so."""
    if attempt.task.owner_id != user.pk or SETUP_PHASE not in (attempt.network_record or {}).get("proposals", {}):
        return ""
    owner, name = repository_of(attempt.task.repo_url).split("/")
    return reverse("environment-detail", args=[owner, name]) + "#proposal"


@login_required
def attempt_detail(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = _attempt(request, attempt_id)
    records = list(attempt.log_records.order_by("-seq")[:HISTORY_ON_PAGE])[::-1]
    runs = list(attempt.runs.all())
    jobs = list(attempt.jobs.all())
    return render(
        request,
        "execution/attempt_detail.html",
        {
            "attempt": attempt,
            "task": attempt.task,
            "runs": runs,
            "changes_note": changes_note(attempt, runs),
            "records": records,
            "after_seq": records[-1].seq if records else 0,
            "jobs": jobs,
            "badge": selectors.attempt_badge(attempt, [(job.kind, job.status) for job in jobs]),
            "busy": attempt.is_active or any(job.is_active for job in jobs),
            # Staff may look and stop; acting (follow-up, pull request, delete) is the owner's alone.
            "is_owner": attempt.task.owner_id == request.user.pk,
            "follow_up_form": FollowUpForm(),
            "diff_added": sum(f["added"] for f in attempt.diff),
            "diff_removed": sum(f["removed"] for f in attempt.diff),
            "ci_paths": diffs.ci_paths(attempt.diff),
            "egress_blocked": selectors.egress_block_count(attempt=attempt),
            "network_blocks": selectors.network_blocks(attempt),
            "network_rows": selectors.network_record_rows(attempt),
            "network_note": network.user_hosts_note() if not settings.ANYON_EGRESS_USER_HOSTS else "",
            "sealed": network.egress.sealed(),
            "setup_proposal_url": _setup_proposal_url(attempt, request.user),
            "may_allow": network.may_allow(attempt=attempt, user=request.user),
            "waiting_note": selectors.waiting_note(attempt),
            "snapshot_note": snapshot_selectors.snapshot_note(attempt),
            "log_limit": settings.ANYON_ATTEMPT_LOG_MAX_CHARS,
            "log_removed_note": log_selectors.log_removed_note(attempt),
            "log_tails": attempt.log_summary.get("tails", []) if attempt.log_removed_at else [],
            "push": selectors.push_view(attempt),
            "several_hosts": len(settings.ANYON_WORKER_QUEUES) > 1,  # one host: naming it says nothing
        },
    )


@login_required
@require_GET
def tool_output(request: HttpRequest, attempt_id: int, run_id: int, number: int) -> JsonResponse:
    """The whole (masked) output of one tool call, for the log's "show full output": JSON, shown as text."""
    found = found_or_404(
        selectors.tool_output_for, user=request.user, attempt_id=attempt_id, run_id=run_id, number=number
    )
    response = JsonResponse({"text": found.text, "chars": found.chars, "kept": len(found.text)})
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_POST
def attempt_cancel(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = _attempt(request, attempt_id)
    if attempt.is_active:
        do_cancel_attempt(attempt=attempt, by=request.user.get_username())
        messages.info(request, "Cancelling…")
    else:  # the page's Cancel stops what runs: a follow-up or a pull request
        for job in selectors.active_jobs(attempt):
            do_cancel_job(job=job)
            messages.info(request, f"Cancelling the {job.get_kind_display().lower()}…")
    return redirect("attempt-detail", attempt_id=attempt.pk)


@login_required
@require_POST
def attempt_follow_up(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = _own_attempt(request, attempt_id)
    form = FollowUpForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["prompt"]))
    else:
        try:
            do_start_follow_up(attempt=attempt, prompt=form.cleaned_data["prompt"], requested_by=request.user)
        except AttemptBusy as exc:
            messages.error(request, str(exc))
    return redirect("attempt-detail", attempt_id=attempt.pk)


@login_required
@require_POST
def attempt_pull_request(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = _own_attempt(request, attempt_id)
    try:
        do_request_pull_request(attempt=attempt, requested_by=request.user)
        messages.info(request, "Pushing the branch and opening a pull request…")
    except AttemptBusy as exc:
        messages.error(request, str(exc))
    return redirect("attempt-detail", attempt_id=attempt.pk)


@login_required
@require_POST
def job_cancel(request: HttpRequest, attempt_id: int, job_id: int) -> HttpResponse:
    attempt = _attempt(request, attempt_id)
    job = found_or_404(attempt.jobs.get, pk=job_id)
    do_cancel_job(job=job)
    return redirect("attempt-detail", attempt_id=attempt.pk)


@login_required
@require_POST
def attempt_delete(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = _own_attempt(request, attempt_id)
    task_id = attempt.task_id
    try:
        deleted = do_request_delete_attempt(attempt=attempt, by=request.user.get_username())
    except (AttemptBusy, EngineError) as exc:
        messages.error(request, str(exc))
        return redirect("attempt-detail", attempt_id=attempt.pk)
    if deleted:
        messages.success(request, f"Attempt {attempt_id} deleted with its container and workspace.")
    else:
        messages.info(request, f"Attempt {attempt_id} will be deleted by a worker of its Docker host.")
    return redirect("task-detail", task_id=task_id)


@login_required
@require_POST
def attempt_allow_host(request: HttpRequest, attempt_id: int) -> HttpResponse:
    """ "Allow for this attempt" on a blocked line: the owner's alone (staff cannot act on another's attempt). The
    page's script asks for JSON (``Accept: application/json``) so nothing it shows is reloaded away."""
    attempt = _own_attempt(request, attempt_id)
    host, port = request.POST.get("host", ""), request.POST.get("port", "")
    ok, text = False, "Not a port."
    to_policy = request.POST.get("to") == "repository"  # "Add to this repository's policy": later runs too
    if port.isdigit():
        try:
            if to_policy:
                network.do_add_host_to_repository_policy(attempt=attempt, user=request.user, host=host, port=int(port))
                text = (
                    f"{host}:{port} is in this repository's network policy (agent phase) and allowed for this attempt."
                )
            else:
                network.do_allow_host_for_attempt(attempt=attempt, user=request.user, host=host, port=int(port))
                text = f"{host}:{port} is allowed for this attempt: the agent's next try goes through."
            ok = True
        except network.AllowRefused as exc:
            text = str(exc)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"ok": ok, "message": text}, status=200 if ok else 400)
    (messages.info if ok else messages.error)(request, text)
    return redirect("attempt-detail", attempt_id=attempt.pk)
