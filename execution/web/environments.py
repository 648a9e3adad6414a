"""The environment pages: a list of the user's environments and one page per repository (thin: forms, selectors,
actions). A page of a repository without an environment is the empty form that creates one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from execution.environments import proposals, selectors
from execution.environments.actions import (
    do_accept_proposed_policy,
    do_delete_environment,
    do_delete_setup_secret,
    do_save_environment,
    do_set_setup_secret,
)
from execution.environments.forms import EnvironmentForm, RepositoryForm, SetupSecretForm, operator_bounds
from execution.models import Environment
from execution.snapshots import selectors as snapshot_selectors
from shared.lookups import found_or_404


def _repository(owner: str, name: str) -> str:
    form = RepositoryForm({"repository": f"{owner}/{name}"})
    if not form.is_valid():
        raise Http404
    return form.cleaned_data["repository"]


def _existing(request: HttpRequest, repository: str) -> Environment | None:
    try:
        return selectors.environment_for(user=request.user, repository=repository)
    except Environment.DoesNotExist:
        return None


@login_required
@require_http_methods(["GET", "POST"])
def environment_list(request: HttpRequest) -> HttpResponse:
    form = RepositoryForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        owner, name = form.cleaned_data["repository"].split("/")
        return redirect("environment-detail", owner=owner, name=name)
    context = {"environments": selectors.environments_for(user=request.user), "form": form}
    return render(request, "execution/environment_list.html", context, status=400 if form.errors else 200)


def _page(request, repository, environment, form, secret_form, status=200, editing=False) -> HttpResponse:
    proposal = proposals.latest_setup_proposal(user=request.user, repository=repository)
    context = {
        "proposal": proposal,
        "proposal_diff": proposals.diff(proposal, environment) if proposal else [],
        "editing_proposal": editing,
        "repository": repository,
        "owner_name": repository.split("/"),
        "environment": environment,
        "form": form,
        "secret_form": secret_form,
        "secrets": selectors.setup_secrets(environment=environment) if environment else [],
        "recent_runs": selectors.recent_runs(user=request.user, repository=repository),
        "snapshots": snapshot_selectors.environment_snapshots(environment=environment) if environment else [],
        "now": timezone.now(),
    }
    return render(request, "execution/environment_detail.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def environment_detail(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    repository = _repository(owner, name)
    environment = _existing(request, repository)
    if request.method == "POST":
        form = EnvironmentForm(request.POST)
        if not form.is_valid():
            return _page(request, repository, environment, form, SetupSecretForm(), status=400)
        data = form.cleaned_data
        do_save_environment(
            owner=request.user,
            repository=repository,
            setup_script=data["setup_script"],
            maintenance_script=data["maintenance_script"],
            variables=data["variables"],
            setup_network=form.network("setup"),
            agent_network=form.network("agent"),
        )
        messages.success(request, f"Environment for {repository} saved.")
        return redirect("environment-detail", owner=owner, name=name)
    initial = EnvironmentForm.initial_from(environment) if environment else None
    editing = request.GET.get("edit") == "proposal"
    if editing:  # the setup policy fields filled in from the proposal; saved only when the user submits
        proposal = _proposal(user=request.user, repository=repository)
        initial = (initial or {}) | {
            "setup_network_mode": "rules",
            "setup_network_presets": list(proposal.presets),
            "setup_network_rules": proposal.rules_text,
            "setup_network_read_only": False,
        }
    form = EnvironmentForm(initial=initial)
    return _page(request, repository, environment, form, SetupSecretForm(), editing=editing)


def _proposal(*, user, repository: str) -> proposals.Proposal:
    """The user's own latest setup proposal of ``repository``; 404 when there is none (another user's is never)."""
    proposal = proposals.latest_setup_proposal(user=user, repository=repository)
    if proposal is None:
        raise Http404
    return proposal


@login_required
@require_POST
def accept_proposed_policy(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    """Only the user's own latest proposal, and only the one they looked at (a newer one is shown first)."""
    repository = _repository(owner, name)
    proposal = _proposal(user=request.user, repository=repository)
    if request.POST.get("attempt") != str(proposal.attempt.pk):
        messages.warning(request, "A newer proposal arrived; look at it before accepting.")
        return redirect(reverse("environment-detail", args=[owner, name]) + "#proposal")
    dropped = do_accept_proposed_policy(
        owner=request.user,
        repository=repository,
        presets=proposal.presets,
        rules=proposal.rules,
        bounds=operator_bounds(),
    )
    for problem in dropped:
        messages.warning(request, f"Left out: {problem}.")
    messages.success(request, f"Setup policy of {repository} set to the proposal of attempt #{proposal.attempt.pk}.")
    return redirect("environment-detail", owner=owner, name=name)


@login_required
@require_POST
def setup_secret_save(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    repository = _repository(owner, name)
    environment = _existing(request, repository)
    form = SetupSecretForm(request.POST)
    if not form.is_valid():
        return _page(request, repository, environment, EnvironmentForm(initial=_initial(environment)), form, 400)
    if environment is None:  # a secret before the first save: the environment starts empty
        environment = do_save_environment(owner=request.user, repository=repository, setup_script="")
    do_set_setup_secret(environment=environment, name=form.cleaned_data["name"], value=form.cleaned_data["value"])
    messages.success(request, f"Setup secret {form.cleaned_data['name']} saved.")
    return redirect("environment-detail", owner=owner, name=name)


def _initial(environment: Environment | None) -> dict | None:
    return EnvironmentForm.initial_from(environment) if environment else None


@login_required
@require_POST
def setup_secret_delete(request: HttpRequest, owner: str, name: str, setup_secret_id: int) -> HttpResponse:
    environment = found_or_404(selectors.environment_for, user=request.user, repository=_repository(owner, name))
    item = found_or_404(
        selectors.setup_secret_for, user=request.user, environment_id=environment.pk, secret_id=setup_secret_id
    )
    do_delete_setup_secret(item=item, actor=request.user.get_username())
    messages.success(request, f"Setup secret {item.name} deleted.")
    return redirect("environment-detail", owner=owner, name=name)


@login_required
@require_POST
def environment_delete(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    environment = found_or_404(selectors.environment_for, user=request.user, repository=_repository(owner, name))
    do_delete_environment(environment=environment, actor=request.user.get_username())
    messages.success(request, f"Environment for {environment.repository} deleted.")
    return redirect("environment-list")
